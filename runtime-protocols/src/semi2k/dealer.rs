//! The dealer of `semi2k`: a [`Protocol`] that holds no data. The VM walks the program
//! against it exactly as against a party, and each primitive call supplies the material
//! the parties' same call takes. Counting mode records the sizes and the online message
//! pattern only, which is how the cost formulas get their figures.

use super::chunks::{self, Dealt, Outbox};
use super::prep::{self, Block, Layout};
use super::select::Plan;
use super::{arith, fss, Gates};
use crate::coins::{Coins, KeyId, OsCoins};
use crate::cost::Rounds;
use crate::net::{long_message_bytes, Stats, Transport};
use crate::planes::{Len, Plane};
use crate::stream::Stream;
use crate::word::Word;
use crate::Core;
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant};
use std::marker::PhantomData;

type R<T> = Result<T, ProtocolError>;

/// What a generating dealer holds besides the sizes.
struct Generating {
    /// Seeds of parties `0..n − 1`.
    seeds: Vec<[u8; 32]>,
    /// The dealer's own randomness.
    rng: Stream,
    /// Streams of parties `0..n − 1` for the current instruction.
    streams: Vec<Stream>,
    /// The chunks on their way: corrections and public bytes to the last party, public
    /// bytes to the parties with a seed (`fss`).
    outbox: Outbox,
}

/// The trusted dealer of `n` computing parties over the ring of `W`.
pub struct Dealer<W: Word> {
    n: usize,
    gates: Gates,
    current: usize,
    /// The blocks of material, in walking order.
    dealt: Vec<Dealt>,
    /// DCF keys made, and their bytes per party (correction words and root seeds).
    keys: (u64, u64),
    /// Online rounds of the calls so far.
    rounds: Rounds,
    gen: Option<Generating>,
    _ring: PhantomData<W>,
}

impl<W: Word> Dealer<W> {
    /// A dealer that generates material, every seed from the operating system.
    pub fn new(parties: usize, gates: Gates) -> R<Self> {
        Self::with_coins(parties, gates, &OsCoins)
    }

    /// [`Dealer::new`] with the seeds from `coins`: party `p`'s seed is held by `p` and
    /// the dealer (party `parties`), the dealer's own by the dealer alone.
    pub fn with_coins(parties: usize, gates: Gates, coins: &dyn Coins) -> R<Self> {
        let dealer = parties;
        let seeds = (0..parties.saturating_sub(1))
            .map(|p| {
                coins.seed(KeyId {
                    purpose: "semi2k dealer seed",
                    holders: &[p, dealer],
                    index: 0,
                })
            })
            .collect::<R<Vec<_>>>()?;
        let mut d = Dealer::counting(parties, gates);
        d.gen = Some(Generating {
            seeds,
            rng: Stream::new(
                coins.seed(KeyId {
                    purpose: "semi2k dealer own",
                    holders: &[dealer],
                    index: 0,
                })?,
                0,
            ),
            streams: Vec::new(),
            outbox: Outbox::new(parties - 1, d.public_receivers()),
        });
        Ok(d)
    }

    /// A dealer that only counts sizes and rounds.
    pub fn counting(parties: usize, gates: Gates) -> Self {
        Dealer {
            n: parties,
            gates,
            current: 0,
            dealt: Vec::new(),
            keys: (0, 0),
            rounds: Vec::new(),
            gen: None,
            _ring: PhantomData,
        }
    }

    /// The online rounds recorded so far, leaving none.
    pub fn take_rounds(&mut self) -> Rounds {
        std::mem::take(&mut self.rounds)
    }

    /// The parties that receive the public records: those with a seed, under `fss`
    /// (the last party reads public bytes from its own records).
    fn public_receivers(&self) -> Vec<PartyId> {
        match self.gates {
            Gates::Fss => (0..self.n.saturating_sub(1)).collect(),
            Gates::Beaver => Vec::new(),
        }
    }

    /// Bytes the dealer sends every party in a run (framing included; each message is a
    /// long message): its seed to each but the last, then (`fss`) the chunks of public
    /// records; the chunks of corrections and public bytes to the last
    /// ([`chunks::chunk_bytes`]).
    pub fn bytes_per_party(&self) -> Vec<u64> {
        let public = if self.public_receivers().is_empty() {
            0
        } else {
            chunks::chunk_bytes(&self.dealt, true)
        };
        let mut out = vec![long_message_bytes(32) + public; self.n.saturating_sub(1)];
        out.push(chunks::chunk_bytes(&self.dealt, false));
        out
    }

    /// DCF keys made so far, and their bytes per party.
    pub fn keys(&self) -> (u64, u64) {
        self.keys
    }

    pub(super) fn count_keys(&mut self, keys: usize, bytes: usize) {
        self.keys.0 += keys as u64;
        self.keys.1 += bytes as u64;
    }

    /// Deal over `net` (the dealer is its party `n`): every party with a seed gets it at
    /// once; the material follows in chunks as the VM walks the program, each run ending
    /// with [`Core::end_run`]. A generating dealer must be attached before it walks.
    pub fn attach(&mut self, net: Box<dyn Transport>) {
        if let Some(g) = self.gen.as_mut() {
            let seeds = g.seeds.iter().enumerate().map(|(p, s)| (p, s.to_vec()));
            g.outbox.attach(net, seeds.collect());
        }
    }

    /// The traffic sent so far.
    pub fn session_stats(&self) -> Stats {
        self.gen
            .as_ref()
            .map(|g| g.outbox.stats())
            .unwrap_or_default()
    }

    /// Tell the parties that the dealer stops, and why.
    pub fn abort_session(&mut self, reason: &str) {
        if let Some(g) = self.gen.as_mut() {
            g.outbox.abort(reason);
        }
    }

    /// Record an online round that takes no material (an opening).
    pub(super) fn record(&mut self, round: crate::cost::Round) {
        self.rounds.push(round);
    }

    /// Supply one call's material and record its online rounds. `make` makes the values
    /// from the dealer's randomness and the shares of every party but the last (which
    /// `fss` keys need: party 0's root seeds are its share).
    pub(super) fn supply(
        &mut self,
        layout: Layout,
        rounds: Rounds,
        make: impl FnOnce(&mut Stream, &[Block<W>]) -> Block<W>,
    ) {
        self.rounds.extend(rounds);
        let bytes = layout.bytes(W::BYTES);
        if bytes == 0 {
            return;
        }
        self.dealt.push(Dealt {
            index: self.current,
            bytes,
            public: layout.public,
        });
        if let Some(g) = self.gen.as_mut().filter(|g| !g.outbox.failed()) {
            let shares: Vec<Block<W>> = g
                .streams
                .iter_mut()
                .map(|s| prep::draw(s, &layout))
                .collect();
            let mut block = make(&mut g.rng, &shares);
            for s in &shares {
                prep::remove_share(&mut block, s);
            }
            g.outbox
                .append(self.current, |out| prep::encode_block(&block, out));
            if !block.public.is_empty() {
                g.outbox.append_public(self.current, &block.public);
            }
        }
    }
}

impl<W: Word> crate::func::Selection for Dealer<W> {
    /// fss: a DCF key rounds or clamps on one opening, not both.
    fn splits_rounding(&self) -> bool {
        self.gates == Gates::Fss
    }
    fn select_with(&mut self, x: &Len, q: &Requant, b: Bounds, plan: &Plan) -> R<Len> {
        let n = x.len();
        match self.gates {
            Gates::Beaver => {
                self.supply(plan.layout(n), plan.pattern(n, self.n), |rng, _| {
                    plan.deal(q, rng)
                });
            }
            Gates::Fss => fss::supply(self, q, b, plan)?,
        }
        Ok(Len(n))
    }
    fn lookup(&mut self, x: &Len, table: &[i64], _: i64) -> R<Len> {
        let n = x.len();
        let len = table.len();
        let mut masks = None;
        self.supply(
            arith::lookup_head(n, len),
            arith::lookup_pattern(n, len, self.n),
            |rng, _| {
                let m = arith::lookup_masks(n, len, rng);
                let words = m.iter().map(|&r| W::from_u128(u128::from(r))).collect();
                masks = Some(m);
                Block::of_words(words)
            },
        );
        for (range, _) in arith::lookup_pieces(n, len, W::BYTES) {
            let piece = Layout::words(range.len() * (1 << arith::lookup_bits(len)));
            self.supply(piece, Vec::new(), |_, _| {
                Block::of_words(
                    masks
                        .as_ref()
                        .map_or_else(Vec::new, |m| arith::one_hot(&m[range], len)),
                )
            });
        }
        Ok(*x)
    }
}

impl<W: Word> Core for Dealer<W> {
    type Shares = Len;

    /// As the parties it deals to: the triples are for their products' operands.
    fn products_open_operands(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        self.gates.name()
    }
    /// The dealer's id in the mesh: no role of the program is its.
    fn party(&self) -> PartyId {
        self.n
    }
    fn parties(&self) -> usize {
        self.n
    }
    fn begin_instruction(&mut self, task: u64) {
        self.current = crate::task_index(task);
        if let Some(g) = self.gen.as_mut() {
            g.streams = g.seeds.iter().map(|s| prep::stream(s, task)).collect();
        }
    }
    fn end_run(&mut self) -> R<()> {
        match self.gen.as_mut() {
            Some(g) => g.outbox.end_run(),
            None => Ok(()),
        }
    }

    fn input(&mut self, _: PartyId, _: Option<&[i64]>, len: usize) -> R<Len> {
        Ok(Len(len))
    }
    fn reveal(&mut self, x: &Len, to: PartyId) -> R<Option<Vec<i64>>> {
        let bytes = (x.len() * W::BYTES) as u64;
        self.rounds.push(crate::cost::Round::of(
            (0..self.n).filter(|&p| p != to).map(|p| (p, to, bytes)),
        ));
        Ok(None)
    }
    crate::cost::shape_only_locals!();
    fn mul(&mut self, a: &Len, _: &Len) -> R<Len> {
        let n = a.len();
        if n > 0 {
            self.supply(
                arith::mul_layout(n),
                arith::mul_pattern(n, self.n, W::BYTES),
                |rng, _| arith::mul_deal(n, rng),
            );
        }
        Ok(*a)
    }
    fn matmul(&mut self, _: &Len, _: &Len, d: MatDims) -> R<Len> {
        if !arith::matmul_is_trivial(d) {
            self.supply(
                arith::matmul_layout(d),
                arith::matmul_pattern(d, self.n, W::BYTES),
                |rng, _| arith::matmul_deal(d, rng),
            );
        }
        Ok(Len(d.batch * d.m * d.n))
    }
}
