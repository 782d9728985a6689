//! `shamir`: Shamir secret sharing over F_p, p = 2^127 − 1, among `n ≥ 3` parties,
//! semi-honest, secure against any `t = ⌊(n − 1)/2⌋` of them (honest majority). No dealer
//! and no preprocessing: correlated randomness comes from keys agreed at set-up
//! ([`streams`]).
//!
//! A value `x` is `f(0)` for a random polynomial `f` of degree `t`; party `i` holds
//! `f(α_i)`, `α_i = i + 1`. Program values are integers embedded in F_p (negatives as
//! `p − |v|`); every intermediate value of the protocol stays far below `p/2`, so the
//! field computes the integers exactly. The online phase:
//!
//! - input: 1 round; the owner deals, sending to the `n − 1 − t` parties that do not draw
//!   their share from a stream they share with it;
//! - reveal: 1 round, `t` parties send their shares to the receiver;
//! - product, matrix product: 1 round; each of parties `0..=2t` reshares its degree-`2t`
//!   local product (one resharing per output of a matrix product) and every party
//!   recombines (Gennaro, Rabin, Rabin, PODC 1998);
//! - rescale, requantization, clamp, max: `⌈log2 w⌉ + 3` rounds ([`select`]), `w` the
//!   widest comparison; argmax: `⌈log2 row⌉ + 1` of those; lookup: `⌈log2 ℓ⌉ + 2`;
//! - with three parties, random bits are daBits ([`dabits`], 2 rounds, one element per
//!   party per bit) and comparisons run over replicated boolean shares ([`boolean`]):
//!   a selection takes `⌈log2 w⌉ + 5` rounds, `w` the widest comparison in bits, and a
//!   lookup one more than above.

mod boolean;
pub(crate) mod compare;
mod cost;
mod dabits;
mod gates;
mod geometry;
mod select;
mod streams;
mod wide;

pub use cost::ShamirCosts;

/// The most parties `shamir` runs with: each party holds `C(n − 1, t)` subset keys (462
/// at 12) and draws from each for every random element.
pub const MAX_PARTIES: usize = 12;

use crate::coins::{Coins, OsCoins};
use crate::field::{point, Fp};
use crate::mux::{self, Port, Reply, Request};
use crate::net::{NetError, Stats, Transport};
use crate::Core;

use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant};
use geometry::{Geometry, ELEM};
use rayon::prelude::*;
use std::sync::Arc;
use streams::Streams;

type R<T> = Result<T, ProtocolError>;

/// One party of `shamir`.
pub struct Shamir {
    me: PartyId,
    geo: Arc<Geometry>,
    net: Box<dyn Transport>,
    streams: Streams,
    /// Traffic of the key agreement: not online.
    setup: Stats,
}

impl Shamir {
    /// Agree on the pairwise and subset keys (one round, 32 bytes per key).
    pub fn setup(net: Box<dyn Transport>) -> R<Shamir> {
        Self::setup_with_coins(net, &OsCoins)
    }

    /// [`Shamir::setup`] with the key seeds from `coins`.
    pub fn setup_with_coins(mut net: Box<dyn Transport>, coins: &dyn Coins) -> R<Shamir> {
        let n = net.parties();
        if !(3..=MAX_PARTIES).contains(&n) {
            return Err(ProtocolError::Invalid(format!(
                "shamir runs with 3 to {MAX_PARTIES} parties, not {n}"
            )));
        }
        let geo = Arc::new(Geometry::new(n));
        let streams = Streams::agree(net.as_mut(), &geo, coins)?;
        let setup = net.stats();
        Ok(Shamir {
            me: net.party(),
            geo,
            net,
            streams,
            setup,
        })
    }

    /// Tell the peers this party stops, and why.
    pub fn abort(&mut self, reason: &str) {
        self.net.abort(reason);
    }

    /// Online traffic so far (key agreement excluded).
    pub fn stats(&self) -> Stats {
        self.net.stats().since(self.setup)
    }

    fn n(&self) -> usize {
        self.geo.n
    }

    fn garbage(party: PartyId) -> ProtocolError {
        ProtocolError::Net(NetError::Garbage {
            party,
            what: "a vector of field elements of the wrong length or out of range".into(),
        })
    }

    fn decode(party: PartyId, m: &[u8], len: usize) -> R<Vec<Fp>> {
        if m.len() != len * ELEM {
            return Err(Self::garbage(party));
        }
        (0..len).map(|i| Self::element(party, m, i)).collect()
    }

    /// Element `i` of an encoded vector from `party` (its length already checked).
    fn element(party: PartyId, m: &[u8], i: usize) -> R<Fp> {
        let bytes = m
            .get(i * ELEM..(i + 1) * ELEM)
            .ok_or_else(|| Self::garbage(party))?;
        let v = u128::from_le_bytes(bytes.try_into().unwrap_or_default());
        (v < crate::field::MODULUS)
            .then(|| Fp::new(v))
            .ok_or_else(|| Self::garbage(party))
    }

    fn encode(v: &[Fp]) -> Vec<u8> {
        let mut out = Vec::with_capacity(v.len() * ELEM);
        for x in v {
            out.extend_from_slice(&x.value().to_le_bytes());
        }
        out
    }

    /// Open a degree-`deg` sharing to every party (1 round): parties `0..=deg` send
    /// their shares to all others.
    fn open(&mut self, x: &[Fp], deg: usize) -> R<Vec<Fp>> {
        let req = self.open_request(x, deg);
        let got = self.net.exchange_sized(req.out, &req.expect)?;
        self.open_reply(x, deg, got)
    }

    /// An opening of `x` and a resharing of the products `h` in one round.
    fn open_and_reshare(&mut self, x: &[Fp], deg: usize, h: Vec<Fp>) -> R<(Vec<Fp>, Vec<Fp>)> {
        if h.is_empty() {
            return Ok((self.open(x, deg)?, Vec::new()));
        }
        let open = self.open_request(x, deg);
        let (reshare, mine) = self.reshare_request(&h)?;
        let mut got = mux::exchange_merged(self.net.as_mut(), vec![open, reshare])?.into_iter();
        let opened = self.open_reply(x, deg, got.next().unwrap_or_default())?;
        let products = self.reshare_reply(h.len(), mine, got.next().unwrap_or_default())?;
        Ok((opened, products))
    }

    fn open_request(&self, x: &[Fp], deg: usize) -> Request {
        let (me, n, len) = (self.me, self.n(), x.len());
        let openers = self.geo.openers(deg);
        let out = if openers.contains(&me) {
            let msg = Self::encode(x);
            (0..n)
                .filter(|&p| p != me)
                .map(|p| (p, msg.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let expect = openers
            .filter(|&p| p != me)
            .map(|p| (p, len * ELEM))
            .collect();
        Request { out, expect }
    }

    fn open_reply(&self, x: &[Fp], deg: usize, got: Reply) -> R<Vec<Fp>> {
        let (me, len) = (self.me, x.len());
        let lambda = if deg == self.geo.t {
            &self.geo.lambda_t
        } else {
            &self.geo.lambda_2t
        };
        let mut shares: Vec<Option<Vec<Fp>>> = vec![None; deg + 1];
        if self.geo.openers(deg).contains(&me) {
            shares[me] = Some(x.to_vec());
        }
        for (p, m) in got {
            shares[p] = Some(Self::decode(p, &m, len)?);
        }
        let shares: Vec<Vec<Fp>> = shares.into_iter().map(Option::unwrap_or_default).collect();
        Ok((0..len)
            .into_par_iter()
            .map(|e| {
                shares
                    .iter()
                    .zip(lambda)
                    .fold(Fp::ZERO, |a, (s, &l)| a + l * s[e])
            })
            .collect())
    }

    /// This party as dealer of `values`: the shares of every party, with those of
    /// `keyed[me]` drawn from the pair streams.
    fn deal(&mut self, values: &[Fp]) -> R<Vec<Vec<Fp>>> {
        let (me, n, len) = (self.me, self.n(), values.len());
        let keyed = self.geo.keyed[me].clone();
        let mut shares: Vec<Vec<Fp>> = vec![Vec::new(); n];
        for &k in &keyed {
            shares[k] = self.streams.pair(me, k, len)?;
        }
        let geo = self.geo.clone();
        // Evaluate the other points from (value, keyed shares).
        let keyed_shares: Vec<Vec<Fp>> = keyed.iter().map(|&k| shares[k].clone()).collect();
        for (j, slot) in shares.iter_mut().enumerate() {
            if keyed.contains(&j) {
                continue;
            }
            let coef = &geo.deal[me][j];
            *slot = (0..len)
                .into_par_iter()
                .map(|e| {
                    let mut acc = coef[0] * values[e];
                    for (c, s) in coef[1..].iter().zip(&keyed_shares) {
                        acc = acc + *c * s[e];
                    }
                    acc
                })
                .collect();
        }
        Ok(shares)
    }

    /// Reduce degree-`2t` products `h` to degree-`t` shares (1 round).
    fn reshare(&mut self, h: Vec<Fp>) -> R<Vec<Fp>> {
        let (req, mine) = self.reshare_request(&h)?;
        let got = self.net.exchange_sized(req.out, &req.expect)?;
        self.reshare_reply(h.len(), mine, got)
    }

    /// The shares this party deals of its products (if it is a resharer), and its own.
    fn reshare_request(&mut self, h: &[Fp]) -> R<(Request, Option<Vec<Fp>>)> {
        let (me, len) = (self.me, h.len());
        let geo = self.geo.clone();
        let mut mine = None;
        let mut out = Vec::new();
        if geo.resharers().contains(&me) {
            let mut shares = self.deal(h)?;
            for (j, s) in shares.iter_mut().enumerate() {
                if geo.sends(me, j) {
                    out.push((j, Self::encode(s)));
                }
            }
            mine = Some(std::mem::take(&mut shares[me]));
        }
        let expect = geo
            .resharers()
            .filter(|&i| geo.sends(i, me))
            .map(|i| (i, len * ELEM))
            .collect();
        Ok((Request { out, expect }, mine))
    }

    fn reshare_reply(&mut self, len: usize, mut mine: Option<Vec<Fp>>, got: Reply) -> R<Vec<Fp>> {
        let me = self.me;
        let geo = self.geo.clone();
        let mut parts: Vec<Vec<Fp>> = vec![Vec::new(); geo.resharers().len()];
        for (i, m) in got {
            parts[i] = Self::decode(i, &m, len)?;
        }
        for i in geo.resharers() {
            if i == me {
                parts[i] = mine.take().unwrap_or_default();
            } else if !geo.sends(i, me) {
                parts[i] = self.streams.pair(i, me, len)?;
            }
        }
        let lambda = &geo.lambda_2t;
        Ok((0..len)
            .into_par_iter()
            .map(|e| {
                parts
                    .iter()
                    .zip(lambda)
                    .fold(Fp::ZERO, |a, (p, &l)| a + l * p[e])
            })
            .collect())
    }

    fn lift(values: &[i64]) -> Vec<Fp> {
        values.iter().map(|&v| Fp::from_i64(v)).collect()
    }

    /// The signed integer of an opened value, or an error naming the party that made it
    /// leave the program's range.
    fn to_i64(v: Fp) -> R<i64> {
        i64::try_from(v.to_i128()).map_err(|_| {
            ProtocolError::Invalid("an opened value is outside the 64-bit range".into())
        })
    }
}

/// `a · b` for matrices of field elements.
fn matmul_fp(a: &[Fp], b: &[Fp], d: MatDims) -> Vec<Fp> {
    let (m, k, n) = (d.m, d.k, d.n);
    let mut out = vec![Fp::ZERO; d.batch * m * n];
    out.par_chunks_mut(n).enumerate().for_each(|(row, o)| {
        let (bi, i) = (row / m, row % m);
        let a_off = if d.a_batched { bi * m * k } else { 0 } + i * k;
        let b_off = if d.b_batched { bi * k * n } else { 0 };
        for (j, oj) in o.iter_mut().enumerate() {
            let mut acc = Fp::ZERO;
            for l in 0..k {
                acc = acc + a[a_off + l] * b[b_off + l * n + j];
            }
            *oj = acc;
        }
    });
    out
}

impl crate::func::Selection for Shamir {
    fn max_selection(&self) -> Option<usize> {
        Some(select::MAX_SELECTION)
    }
    fn max_lookup_words(&self) -> Option<usize> {
        Some(select::MAX_LOOKUP_WORDS)
    }
    fn splits_rounding(&self) -> bool {
        true
    }
    fn select_with(
        &mut self,
        x: &Vec<Fp>,
        q: &Requant,
        b: Bounds,
        plan: &crate::semi2k::select::Plan,
    ) -> R<Vec<Fp>> {
        match select::plan(q, b, plan, &self.geo)? {
            Some(sp) => select::eval(self, x, q, b, sp),
            None => wide::requantize(self, x, q, b),
        }
    }
}

impl Core for Shamir {
    type Shares = Vec<Fp>;

    fn name(&self) -> &'static str {
        "shamir"
    }
    fn party(&self) -> PartyId {
        self.me
    }
    fn parties(&self) -> usize {
        self.n()
    }
    fn begin_instruction(&mut self, task: u64) {
        self.streams.begin(task as usize);
    }
    fn shares_rounds(&self) -> bool {
        true
    }
    fn fork(&mut self, task: u64, port: Port) -> Option<Self> {
        Some(Shamir {
            me: self.me,
            geo: self.geo.clone(),
            net: Box::new(port),
            streams: self.streams.fork(task as usize),
            setup: Stats::default(),
        })
    }
    fn exchange_merged(&mut self, requests: Vec<Request>) -> R<Vec<Reply>> {
        Ok(mux::exchange_merged(self.net.as_mut(), requests)?)
    }

    fn input(&mut self, owner: PartyId, values: Option<&[i64]>, len: usize) -> R<Vec<Fp>> {
        let me = self.me;
        if me == owner {
            let v = values.ok_or_else(|| {
                ProtocolError::Invalid(format!("party {owner} has no value for its input"))
            })?;
            if v.len() != len {
                return Err(ProtocolError::Invalid(format!(
                    "party {owner} input has {} values, the program expects {len}",
                    v.len()
                )));
            }
            let mut shares = self.deal(&Self::lift(v))?;
            let out = (0..self.n())
                .filter(|&j| self.geo.sends(me, j))
                .map(|j| (j, Self::encode(&shares[j])))
                .collect();
            self.net.exchange_sized(out, &[])?;
            return Ok(std::mem::take(&mut shares[me]));
        }
        // Every party takes part in the round, even with nothing to receive, so that
        // instructions sharing rounds stay in step.
        if self.geo.sends(owner, me) {
            let got = self
                .net
                .exchange_sized(Vec::new(), &[(owner, len * ELEM)])?;
            let m = got.into_iter().next().map(|(_, m)| m).unwrap_or_default();
            Self::decode(owner, &m, len)
        } else {
            self.net.exchange_sized(Vec::new(), &[])?;
            self.streams.pair(owner, me, len)
        }
    }

    fn reveal(&mut self, x: &Vec<Fp>, to: PartyId) -> R<Option<Vec<i64>>> {
        let (me, len) = (self.me, x.len());
        let from = self.geo.revealers(to);
        if me != to {
            let out = if from.contains(&me) {
                vec![(to, Self::encode(x))]
            } else {
                Vec::new()
            };
            self.net.exchange_sized(out, &[])?;
            return Ok(None);
        }
        let expect: Vec<(PartyId, usize)> = from.iter().map(|&p| (p, len * ELEM)).collect();
        let got = self.net.exchange_sized(Vec::new(), &expect)?;
        let mut who = vec![to];
        let mut shares = vec![x.to_vec()];
        for (p, m) in got {
            who.push(p);
            shares.push(Self::decode(p, &m, len)?);
        }
        let xs: Vec<Fp> = who.iter().map(|&p| point(p)).collect();
        let lambda = geometry::lagrange_at(&xs, Fp::ZERO);
        (0..len)
            .map(|e| {
                let v = shares
                    .iter()
                    .zip(&lambda)
                    .fold(Fp::ZERO, |a, (s, &l)| a + l * s[e]);
                Self::to_i64(v)
            })
            .collect::<R<Vec<i64>>>()
            .map(Some)
    }

    fn public(&self, values: &[i64]) -> Vec<Fp> {
        Self::lift(values)
    }
    fn add(&self, a: &Vec<Fp>, b: &Vec<Fp>) -> Vec<Fp> {
        a.par_iter()
            .zip(b.par_iter())
            .map(|(&x, &y)| x + y)
            .collect()
    }
    fn sub(&self, a: &Vec<Fp>, b: &Vec<Fp>) -> Vec<Fp> {
        a.par_iter()
            .zip(b.par_iter())
            .map(|(&x, &y)| x - y)
            .collect()
    }
    fn add_public(&self, a: &Vec<Fp>, c: &[i64]) -> Vec<Fp> {
        a.par_iter()
            .zip(c.par_iter())
            .map(|(&x, &c)| x + Fp::from_i64(c))
            .collect()
    }
    fn mul_public(&self, a: &Vec<Fp>, c: &[i64]) -> Vec<Fp> {
        a.par_iter()
            .zip(c.par_iter())
            .map(|(&x, &c)| x * Fp::from_i64(c))
            .collect()
    }
    fn matmul_public(
        &self,
        secret: &Vec<Fp>,
        public: &[i64],
        d: MatDims,
        public_left: bool,
    ) -> Vec<Fp> {
        let p = Self::lift(public);
        if public_left {
            matmul_fp(&p, secret, d)
        } else {
            matmul_fp(secret, &p, d)
        }
    }

    fn mul(&mut self, a: &Vec<Fp>, b: &Vec<Fp>) -> R<Vec<Fp>> {
        if a.is_empty() {
            return Ok(Vec::new());
        }
        let h = a
            .par_iter()
            .zip(b.par_iter())
            .map(|(&x, &y)| x * y)
            .collect();
        self.reshare(h)
    }
    fn matmul(&mut self, a: &Vec<Fp>, b: &Vec<Fp>, d: MatDims) -> R<Vec<Fp>> {
        if d.batch * d.m * d.n == 0 {
            return Ok(Vec::new());
        }
        let h = matmul_fp(a, b, d);
        self.reshare(h)
    }
}

#[cfg(test)]
mod tests;
