//! `semi2k`: additive secret sharing over Z_2^k among `n ≥ 2` parties, semi-honest, secure
//! against any `n − 1` of them, with a trusted dealer for the preprocessing (CrypTen's TTP
//! mode; MP-SPDZ's dealer protocol).
//!
//! A value is `x = Σ x_i`, party `i` holding `x_i`. The dealer is the mesh's last party
//! (id `n`); it never sees data. Before the computation it walks the public program and
//! sends every party the seed of its share of all correlated randomness, and the last party
//! the corrections ([`prep`]); then it leaves. The online phase:
//!
//! - input: 0 rounds. The owner and each other party share a PRG key; party `j`'s share
//!   is drawn from it, the owner's is the value minus all of those;
//! - reveal: 1 round, every party sends its share to the receiver;
//! - product, matrix product, lookup: 1 round each ([`arith`]);
//! - rescale, requantization, clamp, max: `L + 2` rounds ([`select`]), `L` the depth of
//!   the comparison tree (3 for 24-bit values); argmax: `⌈log2 row⌉ + 1` of those.
//!
//! Every round is all-to-all among the computing parties, and every party takes part in
//! every round of every primitive, so instructions can share rounds.

pub(crate) mod arith;
pub(crate) mod chunks;
pub(crate) mod cost;
mod dealer;
mod fss;
mod gates;
pub(crate) mod prep;
pub(crate) mod select;

pub use cost::Semi2kCosts;
pub use dealer::Dealer;
pub use fss::key_bytes_per_comparison;

use crate::coins::{Coins, KeyId, OsCoins};
use crate::mux::{self, Port, Reply, Request};
use crate::net::{NetError, Stats, Transport};
use crate::stream::Stream;
use crate::word::{matmul_words, Word};
use crate::Core;
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant};
use rayon::prelude::*;
use std::marker::PhantomData;

type R<T> = Result<T, ProtocolError>;

/// How the parties compute comparisons, roundings and clamps: the one difference between
/// `semi2k` and `fss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gates {
    /// `semi2k`: XOR-shared comparison tables and a tree of Beaver ANDs ([`select`]),
    /// `2 + log2(units)` rounds, any number of parties.
    Beaver,
    /// `fss`: the dealer's DCF keys, one masked opening per comparison or rounding
    /// ([`fss`]), two parties.
    Fss,
}

impl Gates {
    /// The protocol's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Gates::Beaver => "semi2k",
            Gates::Fss => "fss",
        }
    }
}

/// A party of `semi2k` or `fss` over the ring of `W`.
pub struct Semi2k<W: Word> {
    me: PartyId,
    gates: Gates,
    /// Computing parties; the dealer is party `n` of the mesh.
    n: usize,
    net: Box<dyn Transport>,
    /// `keys[p]`: the key shared with party `p` (`None` for `me`), for inputs.
    keys: Vec<Option<[u8; 32]>>,
    prep: prep::Source,
    /// The current instruction's streams of `keys`, drawn lazily.
    input_streams: Vec<Option<Stream>>,
    /// The current instruction's stream number ([`crate::task_id`]).
    task: u64,
    /// Traffic of the dealer's messages and the key set-up: not online.
    offline: Stats,
    _ring: PhantomData<W>,
}

impl<W: Word> Semi2k<W> {
    /// Receive the dealer's preprocessing (one message from party `n`), then agree on
    /// pairwise input keys: party `i` draws the key of each pair `(i, j)`, `j > i`, from
    /// the operating system and sends it to `j` (one round, 32 bytes per pair).
    pub fn setup(net: Box<dyn Transport>) -> R<Self> {
        Self::setup_with(net, Gates::Beaver)
    }

    /// [`Semi2k::setup`] for the gates `gates` (`fss` needs exactly 2 parties).
    pub fn setup_with(net: Box<dyn Transport>, gates: Gates) -> R<Self> {
        Self::setup_with_coins(net, gates, &OsCoins)
    }

    /// [`Semi2k::setup_with`] with the key seeds from `coins`.
    pub fn setup_with_coins(
        mut net: Box<dyn Transport>,
        gates: Gates,
        coins: &dyn Coins,
    ) -> R<Self> {
        let total = net.parties();
        if total < 3 {
            return Err(ProtocolError::Invalid(format!(
                "{} needs at least 2 parties and the dealer, not {total} in all",
                gates.name()
            )));
        }
        if gates == Gates::Fss && total != 3 {
            return Err(ProtocolError::Invalid(format!(
                "fss runs with exactly 2 parties and the dealer, not {total} in all"
            )));
        }
        let (me, n) = (net.party(), total - 1);
        if me >= n {
            return Err(ProtocolError::Invalid(
                "the dealer cannot compute; run it with `Dealer`".into(),
            ));
        }
        let dealer = n;
        // The last party's material comes in chunks as it goes; every other party
        // starts with its seed (and, under fss, reads chunks of public bytes too).
        let source = if me == n - 1 {
            prep::Source::new(dealer, None, true)
        } else {
            let msg = crate::net::receive_long(net.as_mut(), dealer)?;
            let seed: [u8; 32] = msg.as_slice().try_into().map_err(|_| ProtocolError::Peer {
                party: dealer,
                what: format!("the dealer sent a seed of {} bytes", msg.len()),
            })?;
            prep::Source::new(dealer, Some(seed), gates == Gates::Fss)
        };
        let mut keys: Vec<Option<[u8; 32]>> = vec![None; n];
        let mut out = Vec::new();
        for (j, key) in keys.iter_mut().enumerate().skip(me + 1) {
            let k = coins.seed(KeyId {
                purpose: "semi2k input pair",
                holders: &[me, j],
                index: 0,
            })?;
            *key = Some(k);
            out.push((j, k.to_vec()));
        }
        let from: Vec<(PartyId, usize)> = (0..me).map(|i| (i, 32)).collect();
        for (i, m) in net.exchange_sized(out, &from)? {
            keys[i] = m.as_slice().try_into().ok();
        }
        let offline = net.stats();
        Ok(Semi2k {
            me,
            gates,
            n,
            net,
            keys,
            prep: source,
            input_streams: (0..n).map(|_| None).collect(),
            task: 0,
            offline,
            _ring: PhantomData,
        })
    }

    /// Tell the peers this party stops, and why.
    pub fn abort(&mut self, reason: &str) {
        self.net.abort(reason);
    }

    /// Online traffic so far (preprocessing and key set-up excluded).
    pub fn stats(&self) -> Stats {
        self.net
            .stats()
            .since(self.offline.plus(self.prep.traffic()))
    }

    fn start(&mut self, task: u64) {
        self.task = task;
        self.prep.begin(task, self.net.as_mut());
        self.input_streams = (0..self.n).map(|_| None).collect();
    }

    /// A copy running the instruction `task` beside others ([`Core::fork`]); its
    /// material's source reads the chunks before it first unless `reads` is false
    /// ([`Core::fork_input`]).
    fn fork_reading(&mut self, task: u64, port: Port, reads: bool) -> Semi2k<W> {
        let prep = self
            .prep
            .fork(task, self.net.as_mut(), port.fetcher(), reads);
        Semi2k {
            me: self.me,
            gates: self.gates,
            n: self.n,
            net: Box::new(port),
            keys: self.keys.clone(),
            prep,
            input_streams: (0..self.n).map(|_| None).collect(),
            task,
            offline: Stats::default(),
            _ring: PhantomData,
        }
    }

    /// One round: send `msg` to every other computing party and receive as many bytes
    /// from each. Returns their messages in party order.
    fn all_round(&mut self, msg: Vec<u8>) -> R<Vec<Vec<u8>>> {
        let len = msg.len();
        let peers: Vec<PartyId> = (0..self.n).filter(|&p| p != self.me).collect();
        let out = peers.iter().map(|&p| (p, msg.clone())).collect();
        let expect: Vec<(PartyId, usize)> = peers.iter().map(|&p| (p, len)).collect();
        Ok(self
            .net
            .exchange_sized(out, &expect)?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    /// Open additive shares to every party (1 round).
    fn open_words(&mut self, x: Vec<W>) -> R<Vec<W>> {
        let n = x.len();
        let got = self.all_round(crate::word::encode(&x))?;
        let mut sum = x;
        for m in got {
            let theirs: Vec<W> = crate::word::decode(&m, n).ok_or_else(|| {
                ProtocolError::Net(NetError::Garbage {
                    party: self.me,
                    what: "a share vector of the wrong length".into(),
                })
            })?;
            for (s, t) in sum.iter_mut().zip(theirs) {
                *s = s.add(t);
            }
        }
        Ok(sum)
    }

    /// Open values of `m ≤ 64` bits, `mine` this party's shares mod 2^m (1 round,
    /// `⌈m/8⌉` bytes per value to every other party): the masked openings of [`select`]
    /// and [`fss`].
    fn open_low(&mut self, mine: Vec<u64>, m: u32) -> R<Vec<u64>> {
        let (n, ob, mask) = (
            mine.len(),
            (m as usize).div_ceil(8),
            crate::bitvec::low_mask(m),
        );
        let mut msg = Vec::with_capacity(n * ob);
        for v in &mine {
            msg.extend_from_slice(&v.to_le_bytes()[..ob]);
        }
        let mut sum = mine;
        for theirs in self.all_round(msg)? {
            for (i, s) in sum.iter_mut().enumerate() {
                let mut bytes = [0u8; 8];
                bytes[..ob].copy_from_slice(&theirs[i * ob..(i + 1) * ob]);
                *s = s.wrapping_add(u64::from_le_bytes(bytes)) & mask;
            }
        }
        Ok(sum)
    }

    /// `len` words of the current instruction's stream of the key shared with `peer`.
    fn input_draw(&mut self, peer: PartyId, len: usize) -> R<Vec<W>> {
        let key = self.keys[peer].ok_or_else(|| {
            ProtocolError::Invalid(format!("party {} has no key with party {peer}", self.me))
        })?;
        let task = self.task;
        let rng = self.input_streams[peer].get_or_insert_with(|| prep::stream(&key, task));
        Ok(prep::draw::<W>(rng, &prep::Layout::words(len)).words)
    }

    fn public_words(&self, v: &[W]) -> Vec<W> {
        if self.me == 0 {
            v.to_vec()
        } else {
            vec![W::ZERO; v.len()]
        }
    }

    fn lift(values: &[i64]) -> Vec<W> {
        values.iter().map(|&v| W::from_i64(v)).collect()
    }
}

impl<W: Word> crate::func::Selection for Semi2k<W> {
    /// fss: a DCF key rounds or clamps on one opening, not both.
    fn splits_rounding(&self) -> bool {
        self.gates == Gates::Fss
    }
    fn select_with(
        &mut self,
        x: &Vec<W>,
        q: &Requant,
        b: Bounds,
        plan: &select::Plan,
    ) -> R<Vec<W>> {
        match self.gates {
            Gates::Beaver => select::eval(self, x, q, b, plan),
            Gates::Fss => fss::eval(self, x, q, b, plan),
        }
    }
    fn lookup(&mut self, x: &Vec<W>, table: &[i64], offset: i64) -> R<Vec<W>> {
        arith::lookup(self, x, table, offset)
    }
}

impl<W: Word> Core for Semi2k<W> {
    type Shares = Vec<W>;

    /// Beaver triples: a product opens its masked operands.
    fn products_open_operands(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        self.gates.name()
    }
    fn party(&self) -> PartyId {
        self.me
    }
    fn parties(&self) -> usize {
        self.n
    }
    fn begin_instruction(&mut self, task: u64) {
        self.start(task);
    }
    fn begin_run(&mut self, run: u64) -> R<()> {
        if run > 0 {
            self.prep.next_run();
        }
        Ok(())
    }
    fn end_run(&mut self) -> R<()> {
        self.prep.end_run(self.net.as_mut())
    }
    fn shares_rounds(&self) -> bool {
        true
    }

    fn fork(&mut self, task: u64, port: Port) -> Option<Self> {
        Some(self.fork_reading(task, port, true))
    }

    fn fork_input(&mut self, task: u64, port: Port) -> Option<Self> {
        Some(self.fork_reading(task, port, false))
    }

    fn exchange_merged(&mut self, requests: Vec<Request>) -> R<Vec<Reply>> {
        Ok(mux::exchange_merged(self.net.as_mut(), requests)?)
    }

    fn fetch_material(&mut self) -> R<()> {
        self.prep.fetch(self.net.as_mut())
    }

    fn input(&mut self, owner: PartyId, values: Option<&[i64]>, len: usize) -> R<Vec<W>> {
        if self.me != owner {
            return self.input_draw(owner, len);
        }
        let v = values.ok_or_else(|| {
            ProtocolError::Invalid(format!("party {owner} has no value for its input"))
        })?;
        if v.len() != len {
            return Err(ProtocolError::Invalid(format!(
                "party {owner} input has {} values, the program expects {len}",
                v.len()
            )));
        }
        let mut share = Self::lift(v);
        for peer in (0..self.n).filter(|&p| p != owner) {
            let theirs = self.input_draw(peer, len)?;
            for (s, t) in share.iter_mut().zip(theirs) {
                *s = s.sub(t);
            }
        }
        Ok(share)
    }

    fn reveal(&mut self, x: &Vec<W>, to: PartyId) -> R<Option<Vec<i64>>> {
        let n = x.len();
        if self.me != to {
            self.net
                .exchange_sized(vec![(to, crate::word::encode(x))], &[])?;
            return Ok(None);
        }
        let from: Vec<(PartyId, usize)> = (0..self.n)
            .filter(|&p| p != to)
            .map(|p| (p, n * W::BYTES))
            .collect();
        let mut sum = x.to_vec();
        for (p, m) in self.net.exchange_sized(Vec::new(), &from)? {
            let theirs: Vec<W> = crate::word::decode(&m, n).ok_or_else(|| {
                ProtocolError::Net(NetError::Garbage {
                    party: p,
                    what: "a share vector of the wrong length".into(),
                })
            })?;
            for (s, t) in sum.iter_mut().zip(theirs) {
                *s = s.add(t);
            }
        }
        Ok(Some(sum.into_iter().map(W::to_i64).collect()))
    }

    fn public(&self, values: &[i64]) -> Vec<W> {
        self.public_words(&Self::lift(values))
    }

    fn add(&self, a: &Vec<W>, b: &Vec<W>) -> Vec<W> {
        a.par_iter()
            .zip(b.par_iter())
            .map(|(x, y)| x.add(*y))
            .collect()
    }
    fn sub(&self, a: &Vec<W>, b: &Vec<W>) -> Vec<W> {
        a.par_iter()
            .zip(b.par_iter())
            .map(|(x, y)| x.sub(*y))
            .collect()
    }
    fn add_public(&self, a: &Vec<W>, c: &[i64]) -> Vec<W> {
        let c = self.public(c);
        self.add(a, &c)
    }
    fn mul_public(&self, a: &Vec<W>, c: &[i64]) -> Vec<W> {
        a.par_iter()
            .zip(c.par_iter())
            .map(|(x, &c)| x.mul(W::from_i64(c)))
            .collect()
    }
    fn matmul_public(
        &self,
        secret: &Vec<W>,
        public: &[i64],
        d: MatDims,
        public_left: bool,
    ) -> Vec<W> {
        let p = Self::lift(public);
        if public_left {
            matmul_words(&p, secret, d)
        } else {
            matmul_words(secret, &p, d)
        }
    }

    fn mul(&mut self, a: &Vec<W>, b: &Vec<W>) -> R<Vec<W>> {
        if a.is_empty() {
            return Ok(Vec::new());
        }
        arith::mul(self, a, b)
    }
    fn matmul(&mut self, a: &Vec<W>, b: &Vec<W>, d: MatDims) -> R<Vec<W>> {
        arith::matmul(self, a, b, d)
    }
}

#[cfg(test)]
mod tests;
