//! `spdz2k`: additive secret sharing with MACs over Z_2^(k+s) among `n ≥ 2` parties,
//! secure with abort against any `n − 1` that deviate arbitrarily (SPDZ2k, Cramer et al.,
//! CRYPTO 2018), with a trusted dealer for the preprocessing.
//!
//! Shares live in Z_2^128: a value of the program's ring Z_2^k (`k` = 32 or 64) is the low
//! `k` bits of a sharing `[x]`, authenticated by shares of `α·x` under the dealer's MAC key
//! `α` (64 random bits, additively shared), so `s = 128 − k ≥ 64`. The structure is
//! `semi2k`'s ([`crate::semi2k`]) with every value and every piece of the dealer's
//! material authenticated:
//!
//! - input: 1 round. The dealer gives the owner a random `r` and everyone `[r]`; the
//!   owner sends `x − r mod 2^k` to every party;
//! - product, matrix product, lookup: 1 round each, Beaver triples and one-hot vectors;
//! - rescale, requantize, clamp, max, argmax: `semi2k`'s plan ([`select`]) with the
//!   comparison bits as authenticated values whose meaning is their low bit;
//! - reveal: a MAC check of everything opened so far (4 rounds, [`check`]), one masked
//!   opening `x + r` to all, a second check, and only then the receiver removes its `r`.
//!
//! Every opening reveals only the low bits it needs and goes to the [`check::Ledger`]; no
//! output exists before a check has passed. On a failed check every honest party returns
//! [`ProtocolError::Cheat`] naming the check.
//!
//! The dealer (the mesh's last party) is trusted, as in `semi2k`; a dealer-free offline
//! phase (OT or HE triples) would implement the same material interface ([`dealer`]).

mod auth;
mod check;
mod cost;
mod dealer;
mod gates;
mod select;
#[cfg(test)]
mod tests;

pub use auth::Auth;
pub use cost::Spdz2kCosts;
pub use dealer::Spdz2kDealer;

use crate::cheat::{self, Cheater};
use crate::coins::{Coins, KeyId, OsCoins};
use crate::net::{Stats, Transport};
use crate::planes::{Mac, Words};
use crate::semi2k::arith;
use crate::semi2k::prep::{self, Layout};
use crate::semi2k::select::Plan;
use crate::word::{matmul_public_words, scale_by};
use crate::word::{matmul_words, Word};
use crate::Core;
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant};
use auth::{lift, Ctx};
use rayon::prelude::*;
use std::marker::PhantomData;

type R<T> = Result<T, ProtocolError>;

/// The material index of the set-up record (the MAC key's shares).
const SETUP: u64 = u32::MAX as u64;

/// A party of `spdz2k` over the ring of `W` (its shares are always Z_2^128).
pub struct Spdz2k<W: Word> {
    me: PartyId,
    /// Computing parties; the dealer is party `n` of the mesh.
    n: usize,
    net: Box<dyn Transport>,
    /// This party's share of the MAC key.
    alpha: u128,
    prep: prep::Source,
    ledger: check::Ledger,
    coins: check::CoinChain,
    /// Traffic of the dealer's messages and the set-up: not online.
    offline: Stats,
    /// Tests: the number of opened groups to let pass before this party adds `delta` to
    /// its share of the next one's first value (a consistent lie: its own view changes
    /// with it).
    #[cfg(test)]
    tamper_open: Option<(usize, u128)>,
    /// Fault injection (a test-only feature; a no-op otherwise).
    cheat: Cheater,
    _ring: PhantomData<W>,
}

impl<W: Word> Spdz2k<W> {
    /// Receive the dealer's material, take the MAC key share and commit to the first coin
    /// seed of the checks (one round).
    pub fn setup(net: Box<dyn Transport>) -> R<Self> {
        Self::setup_with_coins(net, &OsCoins)
    }

    /// [`Spdz2k::setup`] with this party's private randomness from `coins`.
    pub fn setup_with_coins(net: Box<dyn Transport>, coins: &dyn Coins) -> R<Self> {
        let mut net = cheat::wrap(net);
        if W::BITS > 64 {
            return Err(ProtocolError::Invalid(format!(
                "spdz2k computes in Z_2^32 or Z_2^64 (with 64 bits of MAC headroom), not Z_2^{}",
                W::BITS
            )));
        }
        let total = net.parties();
        if total < 3 {
            return Err(ProtocolError::Invalid(format!(
                "spdz2k needs at least 2 parties and the dealer, not {total} in all"
            )));
        }
        let (me, n) = (net.party(), total - 1);
        if me >= n {
            return Err(ProtocolError::Invalid(
                "the dealer cannot compute; run it with `Spdz2kDealer`".into(),
            ));
        }
        let dealer = n;
        // Every party's start message: a seed, or the last party's share of the MAC key
        // (its corrections follow in chunks as it goes).
        let start = crate::net::receive_long(net.as_mut(), dealer)?;
        let bad = |what: &str| ProtocolError::Peer {
            party: dealer,
            what: format!("the dealer sent {what} of {} bytes", start.len()),
        };
        let (source, alpha) = if me == n - 1 {
            let share: [u8; 16] = start
                .as_slice()
                .try_into()
                .map_err(|_| bad("a key share"))?;
            (
                prep::Source::new(dealer, None, true),
                u128::from_le_bytes(share),
            )
        } else {
            let seed: [u8; 32] = start.as_slice().try_into().map_err(|_| bad("a seed"))?;
            let mut source = prep::Source::new(dealer, Some(seed), false);
            source.begin(SETUP, net.as_mut());
            let alpha = source.take::<u128>(&Layout::words(1), net.as_mut())?.words[0];
            (source, alpha)
        };
        let chain = check::CoinChain::new(
            coins.seed(KeyId {
                purpose: "spdz2k check coins",
                holders: &[me],
                index: 0,
            })?,
            n,
        );
        let mut p = Spdz2k {
            me,
            n,
            net,
            alpha,
            prep: source,
            ledger: check::Ledger::new(),
            coins: chain,
            offline: Stats::default(),
            #[cfg(test)]
            tamper_open: None,
            cheat: Cheater::for_party(me),
            _ring: PhantomData,
        };
        let commitment = p.coins.commitment().to_vec();
        for (q, c) in p.peers().into_iter().zip(p.all_round(commitment)?) {
            let c: [u8; 32] = c.try_into().unwrap_or_default();
            p.coins.set_commitment(q, c);
        }
        p.offline = p.net.stats();
        Ok(p)
    }

    /// Tell the peers this party stops, and why.
    pub fn abort(&mut self, reason: &str) {
        self.net.abort(reason);
    }

    /// Online traffic so far (preprocessing and set-up excluded).
    pub fn stats(&self) -> Stats {
        self.net
            .stats()
            .since(self.offline.plus(self.prep.traffic()))
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            first: self.me == 0,
            alpha: self.alpha,
        }
    }

    fn peers(&self) -> Vec<PartyId> {
        (0..self.n).filter(|&p| p != self.me).collect()
    }

    /// One round: `msg` to every other computing party, as many bytes back from each.
    fn all_round(&mut self, msg: Vec<u8>) -> R<Vec<Vec<u8>>> {
        let len = msg.len();
        let peers = self.peers();
        let out = peers.iter().map(|&p| (p, msg.clone())).collect();
        let expect: Vec<(PartyId, usize)> = peers.iter().map(|&p| (p, len)).collect();
        Ok(self
            .net
            .exchange_sized(out, &expect)?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    /// Check the openings first when the ledger is full ([`check::CHECK_EVERY`]): its
    /// memory stays bounded however much a run opens before its reveal.
    fn check_if_full(&mut self) -> R<()> {
        if self.ledger.len() >= check::CHECK_EVERY {
            self.check()?;
        }
        Ok(())
    }

    /// This party's shares of the next `count` authenticated values of the material
    /// (after a check when the ledger is full; the dealer's `supply` mirrors it).
    fn take_auth(&mut self, count: usize) -> R<Vec<auth::Auth>> {
        self.check_if_full()?;
        // Straight into shares: a selection's material is hundreds of MB.
        let mut out = Vec::with_capacity(count);
        let mut value = None;
        self.prep
            .take_words_with::<u128>(2 * count, self.net.as_mut(), |w| match value.take() {
                None => value = Some(w),
                Some(x) => out.push(auth::Auth { x, m: w }),
            })?;
        Ok(out)
    }

    /// The next `count` values the dealer gave this party alone, in the clear.
    fn take_private(&mut self, count: usize) -> R<Vec<u128>> {
        Ok(self
            .prep
            .take::<u128>(&Layout::words(count), self.net.as_mut())?
            .words)
    }

    /// Open several groups of shares in one round, all 128 bits of each (the dealer's
    /// masks are uniform in Z_2^128, so the bits above a value's meaning reveal nothing).
    /// Every opening goes to the ledger. `site` says what the opening is for (where a
    /// corrupted party of the fault-injection tests deviates).
    fn open(&mut self, site: cheat::Kind, groups: &[&[auth::Auth]]) -> R<Vec<Vec<u128>>> {
        let total: usize = groups.iter().map(|g| g.len()).sum();
        let mut msg = Vec::with_capacity(16 * total);
        let lie = self.cheat.fires(site);
        for (g, shares) in groups.iter().enumerate() {
            let mut mine: Vec<u128> = shares.iter().map(|s| s.x).collect();
            if let (true, 0, Some(first)) = (lie, g, mine.first_mut()) {
                *first = first.wrapping_add(1);
            }
            #[cfg(test)]
            if let (Some((k, delta)), Some(first)) = (self.tamper_open.as_mut(), mine.first_mut()) {
                if *k == 0 {
                    *first = first.wrapping_add(*delta);
                }
                *k = k.wrapping_sub(1);
            }
            for v in mine {
                msg.extend_from_slice(&v.to_le_bytes());
            }
        }
        let got = self.all_round(msg.clone())?;
        let mut sums: Vec<u128> = msg
            .chunks_exact(16)
            .map(|c| u128::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        for m in &got {
            for (s, c) in sums.iter_mut().zip(m.chunks_exact(16)) {
                *s = s.wrapping_add(u128::from_le_bytes(c.try_into().unwrap_or_default()));
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        let mut at = 0;
        let forge = self.cheat.fires(cheat::Kind::Mac);
        for (g, shares) in groups.iter().enumerate() {
            let v = sums[at..at + shares.len()].to_vec();
            match (forge, g) {
                (true, 0) => {
                    let mut forged = shares.to_vec();
                    if let Some(first) = forged.first_mut() {
                        first.m = first.m.wrapping_add(1);
                    }
                    self.ledger.record(&forged, &v, self.alpha);
                }
                _ => self.ledger.record(shares, &v, self.alpha),
            }
            at += shares.len();
            out.push(v);
        }
        Ok(out)
    }

    /// Open one group.
    fn open_one(&mut self, site: cheat::Kind, shares: &[auth::Auth]) -> R<Vec<u128>> {
        Ok(self.open(site, &[shares])?.swap_remove(0))
    }

    /// A Beaver triple's shares: the next `count` authenticated values, which a
    /// corrupted party of the fault-injection tests may alter.
    fn take_triple(&mut self, count: usize) -> R<Vec<auth::Auth>> {
        let mut t = self.take_auth(count)?;
        if self.cheat.fires(cheat::Kind::Material) {
            if let Some(first) = t.first_mut() {
                first.x = first.x.wrapping_add(1);
            }
        }
        Ok(t)
    }

    fn k_mask() -> u64 {
        crate::bitvec::low_mask(W::BITS)
    }
}

/// Bytes of `n` values of `width` bits on the wire.
pub(super) fn encoded_len(n: usize, width: u32) -> usize {
    if width == 1 {
        crate::bitvec::bit_bytes(n)
    } else {
        n * (width as usize).div_ceil(8)
    }
}

fn encode_low(v: &[u64], width: u32, out: &mut Vec<u8>) {
    if width == 1 {
        let mut packed = vec![0u64; crate::bitvec::words(v.len())];
        for (i, &b) in v.iter().enumerate() {
            crate::bitvec::set(&mut packed, i, b & 1);
        }
        crate::bitvec::pack(&packed, v.len(), out);
    } else {
        let b = (width as usize).div_ceil(8);
        for x in v {
            out.extend_from_slice(&x.to_le_bytes()[..b]);
        }
    }
}

fn decode_low(bytes: &[u8], n: usize, width: u32) -> Vec<u64> {
    if width == 1 {
        let packed = crate::bitvec::unpack(bytes, n);
        (0..n).map(|i| crate::bitvec::get(&packed, i)).collect()
    } else {
        let b = (width as usize).div_ceil(8);
        bytes
            .chunks_exact(b)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..b].copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect()
    }
}

impl<W: Word> crate::func::Selection for Spdz2k<W> {
    fn max_selection(&self) -> Option<usize> {
        Some(select::MAX_SELECTION)
    }
    fn max_lookup_words(&self) -> Option<usize> {
        Some(select::MAX_LOOKUP_WORDS)
    }
    fn select_with(
        &mut self,
        x: &Mac<Vec<u128>>,
        q: &Requant,
        b: Bounds,
        plan: &Plan,
    ) -> R<Mac<Vec<u128>>> {
        Ok(macs(select::eval(self, &auths(x), q, b, plan)?))
    }
    fn lookup(&mut self, x: &Self::Shares, table: &[i64], offset: i64) -> R<Self::Shares> {
        select::lookup_in_pieces(x, table.len(), |_, x| {
            Ok(macs(self.lookup_auth(&auths(x), table, offset)?))
        })
    }
}

/// `x` as one value per element (the layout `select.rs` and the openings work in).
pub(crate) fn auths(x: &Mac<Vec<u128>>) -> Vec<Auth> {
    auth::zip(x.x.clone(), x.m.clone())
}

/// Shares in the plane layout of [`Core`].
pub(crate) fn macs(x: Vec<Auth>) -> Mac<Vec<u128>> {
    let (x, m) = auth::planes(&x);
    Mac { x, m }
}

impl<W: Word> Core for Spdz2k<W> {
    type Shares = Mac<Vec<u128>>;

    /// Beaver triples: a product opens its masked operands.
    fn products_open_operands(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "spdz2k"
    }
    fn party(&self) -> PartyId {
        self.me
    }
    fn parties(&self) -> usize {
        self.n
    }
    fn begin_instruction(&mut self, task: u64) {
        self.prep.begin(task, self.net.as_mut());
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

    fn check(&mut self) -> R<()> {
        Spdz2k::check(self)
    }

    fn input(&mut self, owner: PartyId, values: Option<&[i64]>, len: usize) -> R<Self::Shares> {
        Ok(macs(self.input_auth(owner, values, len)?))
    }
    fn reveal(&mut self, x: &Self::Shares, to: PartyId) -> R<Option<Vec<i64>>> {
        self.reveal_auth(&auths(x), to)
    }
    fn public(&self, values: &[i64]) -> Self::Shares {
        let ctx = self.ctx();
        let x = values
            .iter()
            .map(|&v| if ctx.first { lift(v) } else { 0 })
            .collect();
        let m = values
            .iter()
            .map(|&v| ctx.alpha.wrapping_mul(lift(v)))
            .collect();
        Mac { x, m }
    }
    fn add(&self, a: &Self::Shares, b: &Self::Shares) -> Self::Shares {
        a.zip_with(b, u128::wrapping_add)
    }
    fn sub(&self, a: &Self::Shares, b: &Self::Shares) -> Self::Shares {
        a.zip_with(b, u128::wrapping_sub)
    }
    fn add_public(&self, a: &Self::Shares, c: &[i64]) -> Self::Shares {
        self.add(a, &self.public(c))
    }
    fn mul_public(&self, a: &Self::Shares, c: &[i64]) -> Self::Shares {
        a.map_components(|u| scale_by(u, c))
    }
    fn matmul_public(
        &self,
        secret: &Self::Shares,
        public: &[i64],
        d: MatDims,
        left: bool,
    ) -> Self::Shares {
        matmul_public_words(secret, public, d, left)
    }
    fn mul(&mut self, a: &Self::Shares, b: &Self::Shares) -> R<Self::Shares> {
        Ok(macs(self.mul_auth(&auths(a), &auths(b))?))
    }
    fn matmul(&mut self, a: &Self::Shares, b: &Self::Shares, d: MatDims) -> R<Self::Shares> {
        Ok(macs(self.matmul_auth(&auths(a), &auths(b), d)?))
    }
}

impl<W: Word> Spdz2k<W> {
    fn input_auth(&mut self, owner: PartyId, values: Option<&[i64]>, len: usize) -> R<Vec<Auth>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        // Before the input's round, as the dealer counts it.
        self.check_if_full()?;
        let k = Self::k_mask();
        let width = W::BITS;
        let bytes = encoded_len(len, width);
        let d: Vec<u64> = if self.me == owner {
            let v = values.ok_or_else(|| {
                ProtocolError::Invalid(format!("party {owner} has no value for its input"))
            })?;
            if v.len() != len {
                return Err(ProtocolError::Invalid(format!(
                    "party {owner} input has {} values, the program expects {len}",
                    v.len()
                )));
            }
            let r = self.take_private(len)?;
            let d: Vec<u64> = v
                .iter()
                .zip(&r)
                .map(|(&x, &r)| (lift(x).wrapping_sub(r) as u64) & k)
                .collect();
            let mut msg = Vec::with_capacity(bytes);
            encode_low(&d, width, &mut msg);
            let mut out: Vec<(PartyId, Vec<u8>)> =
                self.peers().into_iter().map(|p| (p, msg.clone())).collect();
            if self.cheat.fires(cheat::Kind::Input) {
                // Another value to the first peer than to the rest (and itself).
                let mut other = d.clone();
                other[0] = other[0].wrapping_add(1) & k;
                out[0].1.clear();
                encode_low(&other, width, &mut out[0].1);
            }
            self.net.exchange_sized(out, &[])?;
            d
        } else {
            let got = self.net.exchange_sized(Vec::new(), &[(owner, bytes)])?;
            decode_low(&got[0].1, len, width)
        };
        self.ledger.broadcast(&d);
        let r = self.take_auth(len)?;
        let ctx = self.ctx();
        Ok(r.iter()
            .zip(&d)
            .map(|(r, &d)| ctx.add_const(*r, u128::from(d)))
            .collect())
    }

    fn reveal_auth(&mut self, x: &[Auth], to: PartyId) -> R<Option<Vec<i64>>> {
        // Nothing derived from an unchecked opening leaves the parties.
        self.check()?;
        let r = if self.me == to {
            Some(self.take_private(x.len())?)
        } else {
            None
        };
        let masks = self.take_auth(x.len())?;
        let masked = auth::add(x, &masks);
        let opened = if x.is_empty() {
            Vec::new()
        } else {
            self.open_one(cheat::Kind::Open, &masked)?
        };
        self.check()?;
        Ok(r.map(|r| {
            opened
                .iter()
                .zip(r)
                .map(|(&c, r)| W::from_u128(c.wrapping_sub(r)).to_i64())
                .collect()
        }))
    }

    fn mul_auth(&mut self, a: &[Auth], b: &[Auth]) -> R<Vec<Auth>> {
        let n = a.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let t = self.take_triple(3 * n)?;
        let (ta, tb, tc) = (&t[..n], &t[n..2 * n], &t[2 * n..]);
        let d = auth::sub(a, ta);
        let e = auth::sub(b, tb);
        let o = self.open(cheat::Kind::Mul, &[&d, &e])?;
        let ctx = self.ctx();
        Ok((0..n)
            .into_par_iter()
            .map(|i| {
                let (d, e) = (o[0][i], o[1][i]);
                let z = tc[i].add(tb[i].scale(d)).add(ta[i].scale(e));
                ctx.add_const(z, d.wrapping_mul(e))
            })
            .collect())
    }

    fn matmul_auth(&mut self, a: &[Auth], b: &[Auth], d: MatDims) -> R<Vec<Auth>> {
        let (l, r, o) = arith::mat_sizes(d);
        if arith::matmul_is_trivial(d) {
            return Ok(vec![Auth::ZERO; o]);
        }
        let t = self.take_triple(l + r + o)?;
        let (ta, tb, tc) = (&t[..l], &t[l..l + r], &t[l + r..]);
        let dx = auth::sub(a, ta);
        let ey = auth::sub(b, tb);
        let mut opened = self.open(cheat::Kind::Mul, &[&dx, &ey])?;
        let ev = opened.pop().unwrap_or_default();
        let dv = opened.pop().unwrap_or_default();
        // Z = C + D·B + A·E + D·E.
        let (bx, bm) = auth::planes(tb);
        let (ax, am) = auth::planes(ta);
        let z = auth::zip(matmul_words(&dv, &bx, d), matmul_words(&dv, &bm, d));
        let ae = auth::zip(matmul_words(&ax, &ev, d), matmul_words(&am, &ev, d));
        let de = matmul_words(&dv, &ev, d);
        let ctx = self.ctx();
        Ok((0..o)
            .into_par_iter()
            .map(|i| ctx.add_const(z[i].add(ae[i]).add(tc[i]), de[i]))
            .collect())
    }

    fn lookup_auth(&mut self, x: &[Auth], table: &[i64], offset: i64) -> R<Vec<Auth>> {
        let n = x.len();
        let bits = arith::lookup_bits(table.len());
        let ctx = self.ctx();
        if bits == 0 || n == 0 {
            // One entry: x must be `offset`.
            let v = lift(table.first().copied().unwrap_or(0));
            return Ok(vec![ctx.constant(v); n]);
        }
        let len = 1usize << bits;
        let mat = self.take_auth(n * (1 + len))?;
        let shift = lift(offset).wrapping_neg();
        let masked: Vec<Auth> = (0..n)
            .map(|i| ctx.add_const(x[i], shift).add(mat[i]))
            .collect();
        let lmask = len as u64 - 1;
        let c: Vec<u64> = self
            .open_one(cheat::Kind::Compare, &masked)?
            .into_iter()
            .map(|v| v as u64 & lmask)
            .collect();
        let table: Vec<u128> = (0..len)
            .map(|j| lift(table.get(j).copied().unwrap_or(0)))
            .collect();
        Ok((0..n)
            .into_par_iter()
            .map(|i| {
                let onehot = &mat[n + i * len..n + (i + 1) * len];
                onehot.iter().enumerate().fold(Auth::ZERO, |acc, (j, h)| {
                    acc.add(h.scale(table[(c[i].wrapping_sub(j as u64) & lmask) as usize]))
                })
            })
            .collect())
    }
}
