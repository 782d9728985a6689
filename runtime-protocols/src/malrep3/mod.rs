//! `mal-rep3`: three-party replicated secret sharing over Z_2^k, secure with abort against
//! one party that deviates arbitrarily (honest majority). docs/core.md has the design and
//! why; docs/protocols.md what each party learns.
//!
//! Arithmetic is `rep3`'s over Z_2^128 with a MAC half (SPDZ-wise replicated sharing,
//! Abspoel–Dalskov–Escudero–Nof): a value of the program's ring Z_2^k is the low `k` bits
//! of `[x]`, authenticated by `[α·x]`, `s = 128 − k ≥ 64` ([`auth`]).
//!
//! - input: 1 round (`rep3`'s: the owner sends one component to one party; the other two
//!   come from pairwise keys, so the two holders of each component take it from one
//!   source and the sharing is consistent whatever the owner sends) and 1 round for the
//!   MAC, `[α]·[x]`;
//! - product, matrix product: 1 round, `rep3`'s resharing of both halves (two words per
//!   output element per party); each output pair goes to the MAC check's ledger;
//! - openings: checked on receipt ([`open`]);
//! - reveal: the MAC check of everything produced so far ([`check`], 3 rounds), then the
//!   opening to the receiver, checked on receipt. No output exists before a check passed.

mod auth;
// The comparisons (next) are its users; until then only the tests call `and`.
mod boolean;
mod check;
mod circuits;
// daBits without a dealer (7 words per bit): the gate set's masks; the selections use the
// dealt ones (`dealt.rs`)
mod convert;
mod cost;
mod dealt;
mod gates;
mod lookup;
mod open;
mod pair;
mod prove;
mod select;
#[cfg(test)]
mod tests;

pub use auth::Auth;
pub use cost::MalRep3Costs;

use crate::cheat::{self, Cheater};
use crate::coins::{Coins, KeyId, OsCoins};
use crate::net::{Stats, Transport};
use crate::planes::{Mac, Pair, Words};
use crate::rep3::{Rep, Rep3};
use crate::word::{matmul_public_words, scale_by};
use crate::word::{matmul_words, Word};
use crate::Core;
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant};
use auth::{join, lift, lower, macs, values, Key};
use rayon::prelude::*;
use std::marker::PhantomData;

type R<T> = Result<T, ProtocolError>;

/// A twin's unchecked relations and pairs, by size (costs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pending {
    bits: [prove::Size; 3],
    ints: [prove::Size; 3],
    /// Ledger pairs.
    macs: usize,
}

/// A party of `mal-rep3` over the program's ring of `W` (shares are Z_2^128).
pub struct MalRep3<W: Word> {
    rep: Rep3<u128>,
    key: Key,
    ledger: check::Ledger,
    /// Bit relations (AND words, dealt carries) since the last proof.
    bits: prove::Relations<u64>,
    /// Integer relations of dealt values since the last proof.
    ints: prove::Relations<crate::field::Fp>,
    /// Proofs run so far (each draws fresh streams).
    proofs: u64,
    /// This party's own seed: the proofs' final masks.
    own_seed: [u8; 32],
    /// Openings so far: bound into each opening's hash.
    openings: u64,
    /// Traffic of the set-up: not online.
    setup: Stats,
    cheat: Cheater,
    /// A data-free twin (costs): it sends what a party sends and checks nothing.
    twin: bool,
    _ring: PhantomData<W>,
}

impl<W: Word> MalRep3<W> {
    /// Agree on the pairwise keys (one round) and draw the MAC key's components from them.
    pub fn setup(net: Box<dyn Transport>) -> R<Self> {
        Self::setup_with_coins(net, &OsCoins)
    }

    /// [`MalRep3::setup`] with the key seeds from `coins`.
    pub fn setup_with_coins(net: Box<dyn Transport>, coins: &dyn Coins) -> R<Self> {
        if W::BITS > 64 {
            return Err(ProtocolError::Invalid(format!(
                "mal-rep3 computes in Z_2^32 or Z_2^64 (with 64 bits of MAC headroom), not Z_2^{}",
                W::BITS
            )));
        }
        let mut rep =
            Rep3::<u128>::setup_with_coins(cheat::wrap(net), coins).map_err(|e| match e {
                ProtocolError::Invalid(m) => ProtocolError::Invalid(m.replace("rep3", "mal-rep3")),
                e => e,
            })?;
        let me = rep.me;
        let alpha = Rep {
            a: rep.draw::<u128>(me, 1).unwrap_or_default()[0],
            b: rep.draw::<u128>(me + 1, 1).unwrap_or_default()[0],
        };
        let own_seed = coins.seed(KeyId {
            purpose: "mal-rep3 proof masks",
            holders: &[me],
            index: 0,
        })?;
        let setup = rep.stats();
        Ok(MalRep3 {
            rep,
            key: Key { alpha },
            ledger: check::Ledger::default(),
            bits: Default::default(),
            ints: Default::default(),
            proofs: 0,
            own_seed,
            openings: 0,
            setup,
            cheat: Cheater::for_party(me),
            twin: false,
            _ring: PhantomData,
        })
    }

    /// What a twin has not checked yet, by size: the next check's proofs and MAC check
    /// (a twin of the next call starts from it, so the reveal that checks
    /// pays for everything before it, as a party does).
    pub(crate) fn pending(&self) -> Pending {
        Pending {
            bits: self.bits.size(),
            ints: self.ints.size(),
            macs: self.ledger.len(),
        }
    }

    /// A twin that starts with `p` unchecked.
    pub(crate) fn twin_with(me: PartyId, net: Box<dyn Transport>, p: &Pending) -> Self {
        let mut t = Self::twin(me, net);
        t.bits = prove::Relations::phantom(p.bits);
        t.ints = prove::Relations::phantom(p.ints);
        t.ledger = check::Ledger::counting(p.macs);
        t
    }

    /// Party `me`'s twin over `net` (see [`crate::dry_run`]): fixed keys, real code on
    /// zeros, every comparison of received data skipped (a dry run answers with zeros).
    pub(crate) fn twin(me: PartyId, net: Box<dyn Transport>) -> Self {
        let rep = Rep3::<u128>::twin(me, net);
        MalRep3 {
            rep,
            key: Key {
                alpha: Rep::default(),
            },
            ledger: check::Ledger::counting(0),
            bits: prove::Relations::phantom(Default::default()),
            ints: prove::Relations::phantom(Default::default()),
            proofs: 0,
            own_seed: [0; 32],
            openings: 0,
            setup: Stats::default(),
            cheat: Cheater::default(),
            twin: true,
            _ring: PhantomData,
        }
    }

    /// Online traffic so far (key set-up excluded).
    pub fn stats(&self) -> Stats {
        self.rep.stats().since(self.setup)
    }

    /// Tell the peers this party stops, and why.
    pub fn abort(&mut self, reason: &str) {
        self.rep.abort(reason);
    }

    /// Everything that must hold before a value leaves the secret domain.
    pub fn check(&mut self) -> R<()> {
        let bits = std::mem::take(&mut self.bits);
        self.prove_bits(bits)?;
        let ints = std::mem::take(&mut self.ints);
        self.prove(ints)?;
        self.mac_check()
    }

    /// Reshare this party's additive parts of values and MACs in one round, and ledger
    /// the pairs.
    fn reshare_pairs(&mut self, mut z: Vec<u128>, m: Vec<u128>) -> R<Vec<Auth>> {
        self.check_if_full()?;
        let n = z.len();
        if self.cheat.fires(cheat::Kind::Mul) && n > 0 {
            z[0] = z[0].wrapping_add(1);
        }
        z.extend(m);
        let mut both = self.rep.reshare(z)?;
        let m = both.split_off(n);
        self.ledger.push(&both, &m);
        Ok(join(both, m))
    }

    /// `[α]·[x]` for each `x` (1 round): the MACs of fresh values.
    fn authenticate(&mut self, x: Vec<Rep<u128>>) -> R<Vec<Auth>> {
        self.check_if_full()?;
        let alpha = vec![self.key.alpha; x.len()];
        let mut m = Rep3::<u128>::mul_local(&alpha, &x);
        // An input's owner that keeps another component than it sent, or any party that
        // alters its part of a MAC: the MAC half is off by a value chosen without `α`.
        let lie = self.cheat.fires(cheat::Kind::Input) | self.cheat.fires(cheat::Kind::Mac);
        if lie && !m.is_empty() {
            m[0] = m[0].wrapping_add(1);
        }
        let m = self.rep.reshare(m)?;
        self.ledger.push(&x, &m);
        Ok(join(x, m))
    }

    /// One round in which party `from` tells the others it accepted what it received.
    fn confirm(&mut self, from: PartyId) -> R<()> {
        let me = self.rep.me;
        if me == from {
            let out = (0..3)
                .filter(|&p| p != me)
                .map(|p| (p, vec![1u8]))
                .collect();
            self.rep.net.exchange_sized(out, &[])?;
        } else {
            let got = self.rep.net.exchange_sized(Vec::new(), &[(from, 1)])?;
            if !self.twin && got.first().map(|(_, b)| b.as_slice()) != Some(&[1u8][..]) {
                return Err(ProtocolError::Peer {
                    party: from,
                    what: "did not confirm the output it received".into(),
                });
            }
        }
        Ok(())
    }
}

impl<W: Word> crate::func::Selection for MalRep3<W> {
    /// Round first, then clamp the rounded value: a clamp test then compares the few bits
    /// of the result, not the many of the product (every compared bit is a proven AND).
    fn splits_rounding(&self) -> bool {
        true
    }
    fn max_selection(&self) -> Option<usize> {
        Some(select::MAX_SELECTION)
    }
    fn select_with(
        &mut self,
        x: &Mac<Pair<u128>>,
        q: &Requant,
        b: Bounds,
        plan: &crate::semi2k::select::Plan,
    ) -> R<Mac<Pair<u128>>> {
        Ok(mac_planes(self.select(&auths(x), q, b, plan)?))
    }
    fn lookup(&mut self, x: &Self::Shares, table: &[i64], offset: i64) -> R<Self::Shares> {
        Ok(mac_planes(self.lookup_auth(&auths(x), table, offset)?))
    }
}

/// `x` as one value per element (the layout the openings, proofs and selections work in).
pub(crate) fn auths(x: &Mac<Pair<u128>>) -> Vec<Auth> {
    join(crate::rep3::reps(&x.x), crate::rep3::reps(&x.m))
}

/// Shares in the plane layout of [`Core`].
pub(crate) fn mac_planes(x: Vec<Auth>) -> Mac<Pair<u128>> {
    let (v, m): (Vec<_>, Vec<_>) = x.into_iter().map(|s| (s.x, s.m)).unzip();
    Mac {
        x: crate::rep3::planes(v),
        m: crate::rep3::planes(m),
    }
}

/// The local part of products of replicated shares: `x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i`.
fn mul_local(x: &Pair<u128>, y: &Pair<u128>) -> Vec<u128> {
    (&x.a, &x.b, &y.a, &y.b)
        .into_par_iter()
        .map(|(&xa, &xb, &ya, &yb)| {
            xa.wrapping_mul(ya)
                .wrapping_add(xa.wrapping_mul(yb))
                .wrapping_add(xb.wrapping_mul(ya))
        })
        .collect()
}

impl<W: Word> Core for MalRep3<W> {
    type Shares = Mac<Pair<u128>>;

    fn name(&self) -> &'static str {
        "mal-rep3"
    }
    fn party(&self) -> PartyId {
        self.rep.me
    }
    fn parties(&self) -> usize {
        3
    }

    fn check(&mut self) -> R<()> {
        MalRep3::check(self)
    }

    fn input(&mut self, owner: PartyId, values: Option<&[i64]>, len: usize) -> R<Self::Shares> {
        Ok(mac_planes(self.input_auth(owner, values, len)?))
    }
    fn reveal(&mut self, x: &Self::Shares, to: PartyId) -> R<Option<Vec<i64>>> {
        self.reveal_auth(&auths(x), to)
    }
    fn public(&self, values: &[i64]) -> Self::Shares {
        let me = self.rep.me;
        let key = self.key;
        let consts: Vec<Auth> = values.iter().map(|&v| key.constant(me, lift(v))).collect();
        mac_planes(consts)
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
        public_left: bool,
    ) -> Self::Shares {
        if self.twin {
            return <Self::Shares as crate::planes::Plane>::zeros(d.batch * d.m * d.n);
        }
        matmul_public_words(secret, public, d, public_left)
    }
    fn mul(&mut self, a: &Self::Shares, b: &Self::Shares) -> R<Self::Shares> {
        let z = mul_local(&a.x, &b.x);
        let m = mul_local(&a.m, &b.x);
        Ok(mac_planes(self.reshare_pairs(z, m)?))
    }
    fn matmul(&mut self, a: &Self::Shares, b: &Self::Shares, d: MatDims) -> R<Self::Shares> {
        if self.twin {
            // Products of zeros: only their length matters to a twin, and the four
            // 128-bit GEMMs were a quarter of `cost`'s time on ResNet-18.
            let out = d.batch * d.m * d.n;
            return Ok(mac_planes(self.reshare_pairs(vec![0; out], vec![0; out])?));
        }
        // x_i·(y_i + y_{i+1}) + x_{i+1}·y_i, summed over k before resharing; the MAC half
        // with α·x in place of x.
        let y = &b.x;
        let ysum: Vec<u128> =
            y.a.par_iter()
                .zip(&y.b)
                .map(|(p, q)| p.wrapping_add(*q))
                .collect();
        let local = |x: &Pair<u128>| -> Vec<u128> {
            let t1 = matmul_words(&x.a, &ysum, d);
            let t2 = matmul_words(&x.b, &y.a, d);
            t1.into_par_iter()
                .zip(t2)
                .map(|(p, q)| p.wrapping_add(q))
                .collect()
        };
        let (z, m) = (local(&a.x), local(&a.m));
        Ok(mac_planes(self.reshare_pairs(z, m)?))
    }
}

impl<W: Word> MalRep3<W> {
    fn input_auth(&mut self, owner: PartyId, values: Option<&[i64]>, len: usize) -> R<Vec<Auth>> {
        let lifted: Option<Vec<u128>> = values.map(|v| v.iter().map(|&x| lift(x)).collect());
        let x = self.rep.share_from::<u128>(owner, lifted.as_deref(), len)?;
        self.authenticate(x)
    }

    fn reveal_auth(&mut self, x: &[Auth], to: PartyId) -> R<Option<Vec<i64>>> {
        // Nothing derived from an unchecked value leaves the parties.
        self.check()?;
        let opened = self.open_to(cheat::Kind::Open, &values(x), to)?;
        // The receiver confirms, so that the other parties learn of a failed opening (and
        // stop with an error) instead of finishing as if the output had arrived.
        self.confirm(to)?;
        Ok(opened.map(|v| v.into_iter().map(lower::<W>).collect()))
    }

    fn mul_auth(&mut self, a: &[Auth], b: &[Auth]) -> R<Vec<Auth>> {
        let y = values(b);
        let z = Rep3::<u128>::mul_local(&values(a), &y);
        let m = Rep3::<u128>::mul_local(&macs(a), &y);
        self.reshare_pairs(z, m)
    }

    fn lookup_auth(&mut self, x: &[Auth], table: &[i64], offset: i64) -> R<Vec<Auth>> {
        self.lookup_pieces(x, table, offset)
    }
}
