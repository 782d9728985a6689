//! The dealer of `spdz2k`: a [`Protocol`] with no data that the VM walks like a party,
//! each call supplying the authenticated material the parties' same call takes, and
//! recording the call's online rounds. In counting mode it makes nothing, which is how
//! [`super::Spdz2kCosts`] gets its figures: the costs come from this code, not from a
//! second formula.
//!
//! Material is shared as in `semi2k` ([`crate::semi2k::prep`]): parties `0..n − 1` draw
//! their shares of values and MACs from a seed, the last party receives the corrections.
//! This is the interface a dealer-free generator (OT or HE triples with MACs) would
//! implement later: the same calls, the same order, the same material.

use super::{auth, check, select, SETUP};
use crate::coins::{Coins, KeyId, OsCoins};
use crate::cost::{Round, Rounds};
use crate::net::{long_message_bytes, Stats, Transport};
use crate::planes::{Len, Plane};
use crate::semi2k::arith;
use crate::semi2k::chunks::{self, Dealt, Outbox};
use crate::semi2k::prep::{self, Block, Layout};
use crate::semi2k::select::{all_to_all, Plan};
use crate::stream::Stream;
use crate::word::Word;
use crate::Core;
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant};
use chacha20::rand_core::Rng;
use std::marker::PhantomData;

type R<T> = Result<T, ProtocolError>;

/// What a generating dealer holds besides the sizes.
struct Generating {
    alpha: u128,
    seeds: Vec<[u8; 32]>,
    rng: Stream,
    streams: Vec<Stream>,
    /// The last party's start message: its share of the MAC key.
    start_last: Vec<u8>,
    /// The chunks of corrections on their way to the last party.
    outbox: Outbox,
}

/// The trusted dealer of `n` computing parties of `spdz2k` in the ring of `W`.
pub struct Spdz2kDealer<W: Word> {
    n: usize,
    current: usize,
    /// The blocks of material to the last party, in walking order.
    dealt: Vec<Dealt>,
    rounds: Rounds,
    /// Values the parties opened since their last check: as their ledgers'
    /// ([`check::CHECK_EVERY`]).
    unchecked: u64,
    gen: Option<Generating>,
    _ring: PhantomData<W>,
}

impl<W: Word> Spdz2kDealer<W> {
    /// A dealer that generates material from the operating system's randomness.
    pub fn new(parties: usize) -> R<Self> {
        Self::with_coins(parties, &OsCoins)
    }

    /// [`Spdz2kDealer::new`] with the seeds from `coins`.
    pub fn with_coins(parties: usize, coins: &dyn Coins) -> R<Self> {
        let dealer = parties;
        let seeds = (0..parties.saturating_sub(1))
            .map(|p| {
                coins.seed(KeyId {
                    purpose: "spdz2k dealer seed",
                    holders: &[p, dealer],
                    index: 0,
                })
            })
            .collect::<R<Vec<_>>>()?;
        let mut rng = Stream::new(
            coins.seed(KeyId {
                purpose: "spdz2k dealer own",
                holders: &[dealer],
                index: 0,
            })?,
            0,
        );
        // α: s = 64 random bits.
        let alpha = u128::from(rng.next_u64());
        Ok(Self::build(
            parties,
            Some(Generating {
                alpha,
                seeds,
                rng,
                streams: Vec::new(),
                start_last: Vec::new(),
                outbox: Outbox::new(parties - 1, Vec::new()),
            }),
        ))
    }

    /// A dealer that only counts sizes and rounds.
    pub fn counting(parties: usize) -> Self {
        Self::build(parties, None)
    }

    /// [`Spdz2kDealer::counting`] for parties that opened `unchecked` values since their
    /// last check.
    pub(super) fn counting_after(parties: usize, unchecked: u64) -> Self {
        let mut d = Self::build(parties, None);
        d.unchecked = unchecked;
        d
    }

    /// Values opened since the last check.
    pub(super) fn unchecked(&self) -> u64 {
        self.unchecked
    }

    /// A dealer with the MAC key's shares made: the parties with a seed draw theirs
    /// from its stream [`SETUP`], the last party's is its start message.
    fn build(parties: usize, mut gen: Option<Generating>) -> Self {
        if let Some(g) = gen.as_mut() {
            let l = Layout::words(1);
            let mut block = Block::of_words(vec![g.alpha]);
            for s in &g.seeds {
                prep::remove_share(&mut block, &prep::draw(&mut prep::stream(s, SETUP), &l));
            }
            prep::encode_block(&block, &mut g.start_last);
        }
        Spdz2kDealer {
            n: parties,
            current: 0,
            dealt: Vec::new(),
            rounds: Vec::new(),
            unchecked: 0,
            gen,
            _ring: PhantomData,
        }
    }

    fn begin(&mut self, task: u64) {
        self.current = crate::task_index(task);
        if let Some(g) = self.gen.as_mut() {
            g.streams = g.seeds.iter().map(|s| prep::stream(s, task)).collect();
        }
    }

    /// The online rounds recorded so far, leaving none.
    pub fn take_rounds(&mut self) -> Rounds {
        std::mem::take(&mut self.rounds)
    }

    /// Bytes the dealer sends every party in a run (framing included; each message is a
    /// long message): a seed to each but the last; the last its share of the MAC key,
    /// then the chunks of corrections ([`chunks::chunk_bytes`]).
    pub fn bytes_per_party(&self) -> Vec<u64> {
        let mut out = vec![long_message_bytes(32); self.n.saturating_sub(1)];
        out.push(long_message_bytes(16) + chunks::chunk_bytes(&self.dealt, false));
        out
    }

    /// Deal over `net`, as [`crate::semi2k::Dealer::attach`]: the MAC key stays the same
    /// for every run.
    pub fn attach(&mut self, net: Box<dyn Transport>) {
        if let Some(g) = self.gen.as_mut() {
            let mut start: Vec<(PartyId, Vec<u8>)> = g
                .seeds
                .iter()
                .enumerate()
                .map(|(p, s)| (p, s.to_vec()))
                .collect();
            start.push((self.n - 1, g.start_last.clone()));
            g.outbox.attach(net, start);
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

    /// Count a block of `bytes` for the last party.
    fn grow(&mut self, bytes: usize) {
        self.dealt.push(Dealt {
            index: self.current,
            bytes,
            public: 0,
        });
    }

    /// Share the ring words `make` returns (layout `l`): parties with a seed draw theirs,
    /// the last party gets the rest.
    fn supply_words(
        &mut self,
        l: Layout,
        make: impl FnOnce(&mut Generating) -> Vec<u128>,
    ) -> R<()> {
        let bytes = l.bytes(16);
        if bytes == 0 {
            return Ok(());
        }
        self.grow(bytes);
        if let Some(g) = self.gen.as_mut().filter(|g| !g.outbox.failed()) {
            let mut block = Block::of_words(make(g));
            // Each party's share a piece at a time: a block may be hundreds of MB.
            for s in &mut g.streams {
                prep::remove_drawn_share(&mut block, s, &l);
            }
            g.outbox
                .append(self.current, |out| prep::encode_block(&block, out));
        }
        Ok(())
    }

    /// Authenticate and share `count` values from `make`. The parties check first when
    /// their ledgers are full, as they do when they take them ([`super::Spdz2k::take_auth`]).
    fn supply(&mut self, count: usize, make: impl FnOnce(&mut Stream) -> Vec<u128>) -> R<()> {
        self.check_if_full();
        self.supply_words(Layout::words(2 * count), |g| {
            let values = make(&mut g.rng);
            auth::to_words(&values, g.alpha)
        })
    }

    /// `count` random values given to `owner` alone (its stream, or the last party's
    /// record); returned for the dealer's own use.
    fn supply_private(&mut self, owner: PartyId, count: usize) -> R<Vec<u128>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let l = Layout::words(count);
        if owner + 1 < self.n {
            return Ok(self.gen.as_mut().map_or_else(Vec::new, |g| {
                prep::draw::<u128>(&mut g.streams[owner], &l).words
            }));
        }
        self.grow(l.bytes(16));
        Ok(match self.gen.as_mut() {
            Some(g) => {
                let v = prep::random_words::<u128>(&mut g.rng, count);
                let block = Block::of_words(v.clone());
                g.outbox
                    .append(self.current, |out| prep::encode_block(&block, out));
                v
            }
            None => Vec::new(),
        })
    }

    /// A check's rounds (it takes no material).
    fn check(&mut self) {
        self.rounds.extend(check::pattern(self.n));
        self.unchecked = 0;
    }

    /// A check where the parties make one: their ledgers are full.
    fn check_if_full(&mut self) {
        if self.unchecked >= check::CHECK_EVERY {
            self.check();
        }
    }

    /// Rounds that open values (every computing party sends each other 16 bytes per
    /// value), counted for the ledger.
    fn open(&mut self, rounds: Rounds) {
        for r in rounds {
            self.unchecked += r.payload(0, 1) / 16;
            self.rounds.push(r);
        }
    }

    /// One round opening `values` values.
    fn open_values(&mut self, values: usize) {
        self.open(vec![all_to_all(self.n, 16 * values)]);
    }
}

impl<W: Word> crate::func::Selection for Spdz2kDealer<W> {
    /// As the parties': the dealer deals each piece as they take it.
    fn max_selection(&self) -> Option<usize> {
        Some(select::MAX_SELECTION)
    }
    fn max_lookup_words(&self) -> Option<usize> {
        Some(select::MAX_LOOKUP_WORDS)
    }
    fn select_with(&mut self, x: &Len, q: &Requant, _: Bounds, plan: &Plan) -> R<Len> {
        let n = x.len();
        self.supply(select::count(plan, n), |rng| select::deal(plan, q, rng))?;
        self.open(select::pattern(plan, n, self.n));
        Ok(Len(n))
    }
    fn lookup(&mut self, x: &Len, table: &[i64], _: i64) -> R<Len> {
        select::lookup_in_pieces(x, table.len(), |_, x| self.lookup_piece(x, table))
    }
}

impl<W: Word> Spdz2kDealer<W> {
    /// One piece of a lookup ([`select::lookup_in_pieces`]).
    fn lookup_piece(&mut self, x: &Len, table: &[i64]) -> R<Len> {
        let n = x.len();
        let bits = arith::lookup_bits(table.len());
        if bits > 0 && n > 0 {
            let len = 1usize << bits;
            // r, with random bits above the table's index bits.
            self.supply(n * (1 + len), |rng| {
                let mut words = arith::lookup_deal::<u128>(n, table.len(), rng).words;
                let high = prep::random_words::<u128>(rng, n);
                for (r, h) in words.iter_mut().zip(high) {
                    *r = r.wrapping_add(h << bits);
                }
                words
            })?;
            self.open_values(n);
        }
        Ok(*x)
    }
}

impl<W: Word> Core for Spdz2kDealer<W> {
    type Shares = Len;

    /// As the parties it deals to: the triples are for their products' operands.
    fn products_open_operands(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "spdz2k"
    }
    /// The dealer's id in the mesh: no role of the program is its.
    fn party(&self) -> PartyId {
        self.n
    }
    fn parties(&self) -> usize {
        self.n
    }
    fn begin_instruction(&mut self, task: u64) {
        self.begin(task);
    }
    fn end_run(&mut self) -> R<()> {
        match self.gen.as_mut() {
            Some(g) => g.outbox.end_run(),
            None => Ok(()),
        }
    }

    fn input(&mut self, owner: PartyId, _: Option<&[i64]>, len: usize) -> R<Len> {
        if len == 0 {
            return Ok(Len(0));
        }
        self.check_if_full();
        let r = self.supply_private(owner, len)?;
        self.supply(len, |_| r)?;
        let bytes = super::encoded_len(len, W::BITS) as u64;
        self.rounds.push(Round::of(
            (0..self.n)
                .filter(|&p| p != owner)
                .map(|p| (owner, p, bytes)),
        ));
        Ok(Len(len))
    }

    fn reveal(&mut self, x: &Len, to: PartyId) -> R<Option<Vec<i64>>> {
        let n = x.len();
        self.check();
        let r = self.supply_private(to, n)?;
        self.supply(n, |_| r)?;
        if n > 0 {
            self.open_values(n);
        }
        self.check();
        Ok(None)
    }

    crate::cost::shape_only_locals!();

    fn mul(&mut self, a: &Len, _: &Len) -> R<Len> {
        let n = a.len();
        if n > 0 {
            self.supply(3 * n, |rng| arith::mul_deal::<u128>(n, rng).words)?;
            self.open(arith::mul_pattern(n, self.n, 16));
        }
        Ok(*a)
    }

    fn matmul(&mut self, _: &Len, _: &Len, d: MatDims) -> R<Len> {
        let (l, r, o) = arith::mat_sizes(d);
        if !arith::matmul_is_trivial(d) {
            self.supply(l + r + o, |rng| arith::matmul_deal::<u128>(d, rng).words)?;
            self.open(arith::matmul_pattern(d, self.n, 16));
        }
        Ok(Len(o))
    }
}

/// The dealer's side of the gate set ([`super::gates`]): masks are authenticated values,
/// `and` a product, openings all 128 bits of each value.
impl<W: Word> crate::func::gates::GateSet for Spdz2kDealer<W> {
    type Bits = Len;

    fn domain(&self) -> crate::func::Domain {
        crate::func::Domain::Ring { bits: W::BITS }
    }

    fn masks(&mut self, n: usize, m: u32, _: u32) -> R<crate::func::gates::Masks<Len, Len>> {
        self.supply(super::gates::mask_count(n, m), |rng| {
            let r = prep::random_words::<u128>(rng, n);
            super::gates::mask_values(n, m, W::BITS, &r)
        })?;
        let m = m as usize;
        Ok(crate::func::gates::Masks {
            bits: Len(m * n),
            arith: Len(m * n),
            high: Len(n),
            top: Len(n),
            above: Some(Len(n)),
        })
    }
    fn open_all(&mut self, x: &Len) -> R<Vec<u128>> {
        self.open_values(x.len());
        Ok(vec![0; x.len()])
    }
    fn and(&mut self, a: &Len, b: &Len) -> R<Len> {
        self.mul(a, b)
    }
    fn either(&self, a: &Len, _: &Len) -> Len {
        *a
    }
    fn xor_public(&self, a: &Len, _: &crate::planes::BitPlane) -> Len {
        *a
    }
    fn b2a(&mut self, a: &Len) -> R<Len> {
        Ok(*a)
    }
}
