//! `rep3`: three-party replicated secret sharing over Z_2^k (Araki et al., CCS'16; ABY3),
//! semi-honest with an honest majority.
//!
//! A value `x = x_0 + x_1 + x_2` is held as components: party `i` holds `(x_i, x_{i+1})`
//! (indices mod 3), so component `j` is known to parties `j` and `j − 1` and hidden from
//! party `j + 1`. The two holders of component `j` share a PRG key, `key_j`, set up once at
//! start-up; every piece of correlated randomness (zero shares, input masks, the masks of
//! masked openings) is drawn from those keys without communication.
//!
//! The interactive steps and their cost (per element, `W` = bytes of a ring word):
//! - multiplication and matrix product: 1 round, one `W` per party per *output* element;
//! - input: 1 round, the owner sends one `W` to one party; reveal: 1 round, one `W`;
//! - masked division, comparison, requantization: see [`masked`].
//!
//! Boolean shares (XOR, up to 64 bit lanes per element) use the same components.

pub(crate) mod assist;
mod bits;
mod cost;
pub(crate) mod elem;
mod gates;
mod lookup;
mod masked;
mod requant;
use requant::Operand;
mod tree;

pub use cost::Rep3Costs;
pub use elem::{Elem, Xor};

use crate::coins::{Coins, KeyId, OsCoins};
use crate::cost::Call;
use crate::mux::{self, Port, Reply, Request};
use crate::net::{NetError, Stats, Transport};
use crate::planes::{Pair, Words};
use crate::stream::{Stream, Tap};
use crate::wires::{Dealing, Narrowing, Pending, Reads, Wires};
use crate::word::{matmul_public_words, matmul_words, scale_by, Word};
use crate::Core;
use crate::{Bounds, Favor, MatDims, PartyId, ProtocolError, Requant, TruncMode};
use chacha20::rand_core::Rng;
use rayon::prelude::*;
use std::marker::PhantomData;
use std::sync::Arc;

/// The width of narrow words ([`crate::wires`]).
const NARROW_BITS: u32 = 32;

/// Shares in Z_2^32 of a wider ring's shares (the low 32 bits of each component).
fn narrow<W: Word>(x: &Pair<W>) -> Pair<W::Narrow> {
    Pair {
        a: x.a.par_iter().map(|v| v.narrow()).collect(),
        b: x.b.par_iter().map(|v| v.narrow()).collect(),
    }
}

/// Shares of Z_2^32 as shares of the wider ring, right modulo 2^32.
fn widen<W: Word>(x: Pair<W::Narrow>) -> Pair<W> {
    Pair {
        a: x.a.into_par_iter().map(W::widen).collect(),
        b: x.b.into_par_iter().map(W::widen).collect(),
    }
}

/// Two vectors of shares of possibly different kinds, shared in one round.
type SharedPair<E, F> = (Vec<Rep<E>>, Vec<Rep<F>>);

/// One party's two components of a shared element: `a` is component `me`, `b` is
/// component `me + 1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rep<E> {
    pub a: E,
    pub b: E,
}

/// A party of `rep3` over the ring of `W`.
pub struct Rep3<W: Word> {
    pub(crate) me: PartyId,
    pub(crate) net: Box<dyn Transport>,
    /// `keys[0]` is `key_me` (shared with party `me − 1`), `keys[1]` is `key_{me+1}`
    /// (shared with party `me + 1`).
    keys: [Stream; 2],
    /// Traffic of the key set-up, which is not part of the online figures.
    setup: Stats,
    /// The program's wires ([`Core::set_wires`]) and the running instruction's.
    wires: Option<Arc<[Wires]>>,
    wire: Wires,
    /// How its comparison trees are cut ([`Rep3::favoring`]).
    favor: Favor,
    _ring: PhantomData<W>,
}

/// The transport of a party whose own has been lent to its narrow self
/// ([`Rep3::narrowed`]) for the length of one call: it is never used.
struct Lent(PartyId);

impl Transport for Lent {
    fn party(&self) -> PartyId {
        self.0
    }
    fn parties(&self) -> usize {
        3
    }
    fn exchange(
        &mut self,
        _: Vec<(PartyId, Vec<u8>)>,
        _: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        Err(NetError::Disconnected { party: self.0 })
    }
    fn stats(&self) -> Stats {
        Stats::default()
    }
    fn abort(&mut self, _: &str) {}
}

/// Which of a party's two slots holds component `j`, if any.
fn slot(me: PartyId, j: usize) -> Option<usize> {
    if j % 3 == me {
        Some(0)
    } else if j % 3 == (me + 1) % 3 {
        Some(1)
    } else {
        None
    }
}

impl<W: Word> Rep3<W> {
    /// Agree on pairwise PRG keys: party `i` draws `key_{i+1}` from the operating system and
    /// sends it to party `i + 1` (one round, 32 bytes, before the computation).
    pub fn setup(net: Box<dyn Transport>) -> Result<Self, ProtocolError> {
        Self::setup_with_coins(net, &OsCoins)
    }

    /// [`Rep3::setup`] with the key seeds from `coins`.
    pub fn setup_with_coins(
        mut net: Box<dyn Transport>,
        coins: &dyn Coins,
    ) -> Result<Self, ProtocolError> {
        if net.parties() != 3 {
            return Err(ProtocolError::Invalid(format!(
                "rep3 runs with exactly 3 parties, not {}",
                net.parties()
            )));
        }
        let me = net.party();
        let (prev, next) = ((me + 2) % 3, (me + 1) % 3);
        let mine = coins.seed(KeyId {
            purpose: "rep3 pair",
            holders: &[me, next],
            index: 0,
        })?;
        let got = net.exchange(vec![(next, mine.to_vec())], &[prev])?;
        let theirs: [u8; 32] = got
            .first()
            .and_then(|(_, m)| m.as_slice().try_into().ok())
            .ok_or_else(|| ProtocolError::Peer {
                party: prev,
                what: "sent a malformed key".into(),
            })?;
        let setup = net.stats();
        Ok(Rep3 {
            me,
            net,
            keys: [Stream::new(theirs, 0), Stream::new(mine, 0)],
            setup,
            wires: None,
            wire: Wires::default(),
            favor: Favor::Bytes,
            _ring: PhantomData,
        })
    }

    /// This party cutting its comparison trees for `favor` ([`Favor`]): fewer, wider units
    /// that one round combines ([`Favor::Rounds`]), or the default's narrower ones. Every
    /// party (and the cost twins, [`Rep3Costs::favor`]) must favour the same.
    pub fn favoring(mut self, favor: Favor) -> Self {
        self.favor = favor;
        self
    }

    /// Party `me`'s data-free twin over `net` (see [`crate::dry_run`]): fixed keys, never
    /// recorded in the tests' mask ledger; with [`crate::word::Shape`] words it does no
    /// arithmetic and draws no ring masks.
    pub(crate) fn twin(me: PartyId, net: Box<dyn Transport>) -> Self {
        let key = |i: u8| Stream::with_tap(&Tap::default(), [i; 32], 0);
        Rep3 {
            me,
            net,
            keys: [key(0), key(1)],
            setup: Stats::default(),
            wires: None,
            wire: Wires::default(),
            favor: Favor::Bytes,
            _ring: PhantomData,
        }
    }

    /// Tell the peers this party stops, and why.
    pub fn abort(&mut self, reason: &str) {
        self.net.abort(reason);
    }

    /// A copy of this party for one of several instructions that run at the same time: its
    /// rounds go through `port`, and its randomness comes from ChaCha stream `task + 1` of
    /// each pairwise key, so the order in which instructions draw does not matter.
    fn fork_with(&self, task: u64, port: Port) -> Self {
        let derive = |k: &Stream| Stream::new(k.seed(), task + 1);
        Rep3 {
            me: self.me,
            net: Box::new(port),
            keys: [derive(&self.keys[0]), derive(&self.keys[1])],
            setup: Stats::default(),
            wires: self.wires.clone(),
            wire: crate::wires::of_task(self.wires.as_deref(), task),
            favor: self.favor,
            _ring: PhantomData,
        }
    }

    /// Run `f` on this party as a party of Z_2^32 (the same keys and transport, whose
    /// streams it goes on drawing from): a call whose operands and result are narrow
    /// ([`Wires`]) opens 32-bit words and sends 32-bit ones.
    fn narrowed<T>(&mut self, f: impl FnOnce(&mut Rep3<W::Narrow>) -> T) -> T {
        let spare = || Stream::with_tap(&Tap::default(), [0; 32], 0);
        let mut narrow = Rep3::<W::Narrow> {
            me: self.me,
            net: std::mem::replace(&mut self.net, Box::new(Lent(self.me))),
            keys: std::mem::replace(&mut self.keys, [spare(), spare()]),
            setup: self.setup,
            wires: None,
            wire: self.wire.inner(),
            favor: self.favor,
            _ring: PhantomData,
        };
        let out = f(&mut narrow);
        self.net = narrow.net;
        self.keys = narrow.keys;
        out
    }

    /// The elements of group `g` (dealt by party `g`) of a call on `n`: split by this
    /// instruction's [`crate::wires::Deal`].
    pub(super) fn group(&self, n: usize, g: usize) -> std::ops::Range<usize> {
        self.wire.deal.range(n, g)
    }

    /// Whether this call's result travels in 32-bit words (the ring is wider).
    fn narrows_out(&self) -> bool {
        W::BITS > NARROW_BITS && self.wire.narrow_out
    }

    /// Whether this call runs on 32-bit words: its operands and its result are narrow.
    fn runs_narrow(&self) -> bool {
        self.narrows_out() && self.wire.narrow_in
    }

    /// `f` on this party as a party of Z_2^32 ([`Rep3::narrowed`]), its result's shares
    /// widened back (right modulo 2^32).
    fn narrow_call(
        &mut self,
        f: impl FnOnce(&mut Rep3<W::Narrow>) -> Result<Pair<W::Narrow>, ProtocolError>,
    ) -> Result<Pair<W>, ProtocolError> {
        Ok(widen(self.narrowed(f)?))
    }

    /// The widest opening this call's operands allow: the narrow width where some operand
    /// is right only in it.
    fn opening_cap(&self) -> u32 {
        if self.wire.narrow_in {
            W::BITS.min(NARROW_BITS)
        } else {
            W::BITS
        }
    }

    /// Run `f` with full-width wires: the steps of a functionality that falls back on
    /// others (a masked division, then a clamp) pass intermediates that their next step
    /// reads whole, so only the instruction's own products may narrow their results.
    fn full_width<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let wire = self.wire;
        self.wire = wire.full_width();
        let out = f(self);
        self.wire = wire;
        out
    }

    /// Reshare additive parts into the result's width: 32-bit words where the result is
    /// narrow.
    fn reshare_wired(&mut self, z: Vec<W>) -> Result<Pair<W>, ProtocolError> {
        if self.narrows_out() {
            let z: Vec<W::Narrow> = z.into_par_iter().map(W::narrow).collect();
            return Ok(widen(self.reshare_planes(z)?));
        }
        self.reshare_planes(z)
    }

    /// The seed of `key_j`, if this party holds it (for streams of other purposes than the
    /// protocol's own draws, such as a proof's pads and challenges).
    pub(crate) fn key_seed(&self, j: usize) -> Option<[u8; 32]> {
        slot(self.me, j).map(|s| self.keys[s].seed())
    }

    /// Online traffic so far (key set-up excluded).
    pub fn stats(&self) -> Stats {
        self.net.stats().since(self.setup)
    }

    pub(crate) fn next(&self) -> PartyId {
        (self.me + 1) % 3
    }
    pub(crate) fn prev(&self) -> PartyId {
        (self.me + 2) % 3
    }

    /// `n` pseudo-random elements from the key of component `j`; `None` if this party does
    /// not hold it.
    pub(crate) fn draw<E: Elem>(&mut self, j: usize, n: usize) -> Option<Vec<E>> {
        let s = slot(self.me, j)?;
        if !W::DATA {
            // A twin draws nothing: its masks would mask nothing.
            return Some(vec![E::default(); n]);
        }
        let mut bytes = vec![0u8; n * E::BYTES];
        self.keys[s].fill_bytes(&mut bytes);
        Some(bytes.chunks_exact(E::BYTES).map(E::read).collect())
    }

    /// This party's part of a fresh sharing of zero: `F(key_{me+1}) − F(key_me)`.
    pub(crate) fn zero_share<E: Elem>(&mut self, n: usize) -> Vec<E> {
        let me = self.me;
        let hi: Vec<E> = self.draw(me + 1, n).unwrap_or_default();
        let lo: Vec<E> = self.draw(me, n).unwrap_or_default();
        hi.into_iter().zip(lo).map(|(h, l)| h.minus(l)).collect()
    }

    /// One round: send each message, receive one from each of `from`, each exactly
    /// `counts[i]` elements long.
    pub(crate) fn round<E: Elem>(
        &mut self,
        out: Vec<(PartyId, Vec<E>)>,
        from: &[(PartyId, usize)],
    ) -> Result<Vec<Vec<E>>, ProtocolError> {
        let out = out
            .into_iter()
            .map(|(p, v)| (p, elem::encode(&v)))
            .collect();
        let expect: Vec<(PartyId, usize)> = from.iter().map(|&(p, n)| (p, n * E::BYTES)).collect();
        let got = self.net.exchange_sized(out, &expect)?;
        got.into_iter()
            .zip(from)
            .map(|((p, bytes), (_, n))| {
                elem::decode(&bytes, *n).ok_or_else(|| {
                    ProtocolError::Net(NetError::Garbage {
                        party: p,
                        what: format!(
                            "a message of {} bytes where {} were due",
                            bytes.len(),
                            n * E::BYTES
                        ),
                    })
                })
            })
            .collect()
    }

    /// Turn this party's additive part `z` (parts of all parties sum to the value) into
    /// replicated shares: add a zero share, send to `me − 1`, receive from `me + 1`.
    pub(crate) fn reshare<E: Elem>(&mut self, z: Vec<E>) -> Result<Vec<Rep<E>>, ProtocolError> {
        let p = self.reshare_planes(z)?;
        Ok(pair(p.a, p.b))
    }

    /// [`Rep3::reshare`] into planes.
    pub(crate) fn reshare_planes<E: Elem>(&mut self, z: Vec<E>) -> Result<Pair<E>, ProtocolError> {
        let n = z.len();
        let alpha: Vec<E> = self.zero_share(n);
        let mine: Vec<E> = z.into_iter().zip(alpha).map(|(z, a)| z.plus(a)).collect();
        let (prev, next) = (self.prev(), self.next());
        let got = self.round(vec![(prev, mine.clone())], &[(next, n)])?;
        // `round` checked the length of `next`'s message.
        let b = got.into_iter().next().unwrap_or_default();
        Ok(Pair { a: mine, b })
    }

    /// Share `n` values held by `owner` (1 round; the owner sends one element per value to
    /// party `owner − 1`). Component `owner + 2` is zero, component `owner + 1` comes from
    /// `key_{owner+1}`, and component `owner` is the value minus that mask.
    pub(crate) fn share_from<E: Elem>(
        &mut self,
        owner: PartyId,
        values: Option<&[E]>,
        n: usize,
    ) -> Result<Vec<Rep<E>>, ProtocolError> {
        let (x, _) = self.share_two_from::<E, Xor>(owner, values, n, None, 0)?;
        Ok(x)
    }

    /// [`Rep3::share_from`] of two vectors of possibly different kinds in one round.
    fn share_two_from<E: Elem, F: Elem>(
        &mut self,
        owner: PartyId,
        first: Option<&[E]>,
        n1: usize,
        second: Option<&[F]>,
        n2: usize,
    ) -> Result<SharedPair<E, F>, ProtocolError> {
        let me = self.me;
        if me == owner {
            let missing =
                || ProtocolError::Invalid(format!("party {owner} has no value for its input"));
            let v1 = first.ok_or_else(missing)?;
            let v2 = if n2 == 0 {
                &[][..]
            } else {
                second.ok_or_else(missing)?
            };
            if v1.len() != n1 || v2.len() != n2 {
                return Err(ProtocolError::Invalid(format!(
                    "party {owner} input has {} values, the program expects {n1}",
                    v1.len()
                )));
            }
            let rho1: Vec<E> = self.draw(owner + 1, n1).unwrap_or_default();
            let rho2: Vec<F> = self.draw(owner + 1, n2).unwrap_or_default();
            let a1: Vec<E> = v1.iter().zip(&rho1).map(|(x, r)| x.minus(*r)).collect();
            let a2: Vec<F> = v2.iter().zip(&rho2).map(|(x, r)| x.minus(*r)).collect();
            let mut msg = elem::encode(&a1);
            msg.extend(elem::encode(&a2));
            let prev = self.prev();
            self.net.exchange_sized(vec![(prev, msg)], &[])?;
            Ok((pair(a1, rho1), pair(a2, rho2)))
        } else if me == (owner + 1) % 3 {
            // Every party takes part in every round, so instructions that share rounds
            // stay aligned across parties.
            self.net.exchange_sized(Vec::new(), &[])?;
            let rho1: Vec<E> = self.draw(owner + 1, n1).unwrap_or_default();
            let rho2: Vec<F> = self.draw(owner + 1, n2).unwrap_or_default();
            Ok((
                rho1.into_iter()
                    .map(|a| Rep { a, b: E::default() })
                    .collect(),
                rho2.into_iter()
                    .map(|a| Rep { a, b: F::default() })
                    .collect(),
            ))
        } else {
            let split = n1 * E::BYTES;
            let got = self
                .net
                .exchange_sized(Vec::new(), &[(owner, split + n2 * F::BYTES)])?;
            let bytes = got.into_iter().next().map(|(_, b)| b).unwrap_or_default();
            let garbage = || {
                ProtocolError::Net(NetError::Garbage {
                    party: owner,
                    what: format!(
                        "an input message of {} bytes where {} were due",
                        bytes.len(),
                        split + n2 * F::BYTES
                    ),
                })
            };
            if bytes.len() != split + n2 * F::BYTES {
                return Err(garbage());
            }
            let b1: Vec<E> = elem::decode(&bytes[..split], n1).ok_or_else(garbage)?;
            let b2: Vec<F> = elem::decode(&bytes[split..], n2).ok_or_else(garbage)?;
            Ok((
                b1.into_iter().map(|b| Rep { a: E::default(), b }).collect(),
                b2.into_iter().map(|b| Rep { a: F::default(), b }).collect(),
            ))
        }
    }

    /// Shares of values known to both holders of component `j` (`Some` exactly there):
    /// the value is component `j`, the others are zero. No communication.
    pub(crate) fn known_to_comp<E: Elem>(
        &self,
        j: usize,
        values: Option<&[E]>,
        n: usize,
    ) -> Vec<Rep<E>> {
        match (slot(self.me, j), values) {
            (Some(0), Some(v)) => v.iter().map(|&a| Rep { a, b: E::default() }).collect(),
            (Some(1), Some(v)) => v.iter().map(|&b| Rep { a: E::default(), b }).collect(),
            _ => vec![Rep::default(); n],
        }
    }

    /// Open `x` to party `to`: party `to + 1` sends it the component it lacks.
    pub(crate) fn open_to<E: Elem>(
        &mut self,
        x: &[Rep<E>],
        to: PartyId,
    ) -> Result<Option<Vec<E>>, ProtocolError> {
        let me = self.me;
        let helper = (to + 1) % 3;
        if me == helper {
            self.round(vec![(to, x.iter().map(|s| s.b).collect())], &[])?;
            Ok(None)
        } else if me == to {
            let got = self.round(Vec::new(), &[(helper, x.len())])?;
            Ok(Some(
                x.iter()
                    .zip(got.into_iter().next().unwrap_or_default())
                    .map(|(s, c)| s.a.plus(s.b).plus(c))
                    .collect(),
            ))
        } else {
            self.round::<E>(Vec::new(), &[])?;
            Ok(None)
        }
    }

    /// Local part of an element-wise product: `x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i`.
    pub(crate) fn mul_local(a: &[Rep<W>], b: &[Rep<W>]) -> Vec<W> {
        a.par_iter()
            .zip(b.par_iter())
            .map(|(x, y)| x.a.mul(y.a).add(x.a.mul(y.b)).add(x.b.mul(y.a)))
            .collect()
    }

    /// Element-wise products of shares, one round.
    fn mul_shares(&mut self, a: &[Rep<W>], b: &[Rep<W>]) -> Result<Vec<Rep<W>>, ProtocolError> {
        let z = Self::mul_local(a, b);
        self.reshare(z)
    }

    /// Multiply by public ring constants (local).
    fn mul_public_words(&self, x: &[Rep<W>], c: &[W]) -> Vec<Rep<W>> {
        x.par_iter()
            .zip(c.par_iter())
            .map(|(s, &c)| Rep {
                a: s.a.mul(c),
                b: s.b.mul(c),
            })
            .collect()
    }

    fn lift(values: &[i64]) -> Vec<W> {
        values.iter().map(|&v| W::from_i64(v)).collect()
    }

    /// Shares of public values: component 0 holds them.
    fn public_shares(&self, values: &[W]) -> Vec<Rep<W>> {
        self.known_to_comp(0, Some(values), values.len())
    }
}

pub(crate) fn pair<E>(a: Vec<E>, b: Vec<E>) -> Vec<Rep<E>> {
    a.into_iter().zip(b).map(|(a, b)| Rep { a, b }).collect()
}

/// `x` as one value per element (the layout `masked.rs`, `assist.rs` and `requant.rs`
/// still work in).
pub(crate) fn reps<E: Copy>(x: &Pair<E>) -> Vec<Rep<E>> {
    x.a.iter().zip(&x.b).map(|(&a, &b)| Rep { a, b }).collect()
}

/// Shares in the plane layout of [`Core`].
pub(crate) fn planes<E: Copy>(x: Vec<Rep<E>>) -> Pair<E> {
    let (a, b) = x.into_iter().map(|s| (s.a, s.b)).unzip();
    Pair { a, b }
}

impl<W: Word> Core for Rep3<W> {
    type Shares = Pair<W>;

    fn name(&self) -> &'static str {
        "rep3"
    }
    fn party(&self) -> PartyId {
        self.me
    }
    fn parties(&self) -> usize {
        3
    }

    fn shares_rounds(&self) -> bool {
        true
    }

    fn fork(&mut self, task: u64, port: Port) -> Option<Self> {
        Some(self.fork_with(task, port))
    }

    fn begin_instruction(&mut self, task: u64) {
        self.wire = crate::wires::of_task(self.wires.as_deref(), task);
    }

    fn narrowing(&self) -> Option<Narrowing> {
        narrowing(W::BITS)
    }

    fn dealing(&self) -> Option<Dealing> {
        Some(dealing(W::BITS, self.favor))
    }

    fn pending(&self) -> Option<Pending> {
        Some(pending(W::BITS))
    }
    fn set_wires(&mut self, wires: Arc<[Wires]>) {
        self.wires = Some(wires);
    }

    fn exchange_merged(&mut self, requests: Vec<Request>) -> Result<Vec<Reply>, ProtocolError> {
        Ok(mux::exchange_merged(self.net.as_mut(), requests)?)
    }

    fn input(
        &mut self,
        owner: PartyId,
        values: Option<&[i64]>,
        len: usize,
    ) -> Result<Pair<W>, ProtocolError> {
        if self.narrows_out() {
            return self.narrow_call(|p| p.input(owner, values, len));
        }
        let lifted = values.map(Self::lift);
        Ok(planes(self.share_from(owner, lifted.as_deref(), len)?))
    }

    fn reveal(&mut self, x: &Pair<W>, to: PartyId) -> Result<Option<Vec<i64>>, ProtocolError> {
        Ok(self
            .open_to(&reps(x), to)?
            .map(|v| v.into_iter().map(W::to_i64).collect()))
    }

    fn public(&self, values: &[i64]) -> Pair<W> {
        planes(self.public_shares(&Self::lift(values)))
    }

    fn add(&self, a: &Pair<W>, b: &Pair<W>) -> Pair<W> {
        a.zip_with(b, W::add)
    }
    fn sub(&self, a: &Pair<W>, b: &Pair<W>) -> Pair<W> {
        a.zip_with(b, W::sub)
    }
    fn add_public(&self, a: &Pair<W>, c: &[i64]) -> Pair<W> {
        let c = self.public(c);
        self.add(a, &c)
    }
    fn mul_public(&self, a: &Pair<W>, c: &[i64]) -> Pair<W> {
        a.map_components(|u| scale_by(u, c))
    }
    fn matmul_public(
        &self,
        secret: &Pair<W>,
        public: &[i64],
        d: MatDims,
        public_left: bool,
    ) -> Pair<W> {
        matmul_public_words(secret, public, d, public_left)
    }

    fn mul(&mut self, a: &Pair<W>, b: &Pair<W>) -> Result<Pair<W>, ProtocolError> {
        // x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i, then one resharing.
        let z = (&a.a, &a.b, &b.a, &b.b)
            .into_par_iter()
            .map(|(&xa, &xb, &ya, &yb)| xa.mul(ya).add(xa.mul(yb)).add(xb.mul(ya)))
            .collect();
        self.reshare_wired(z)
    }

    fn matmul(&mut self, a: &Pair<W>, b: &Pair<W>, d: MatDims) -> Result<Pair<W>, ProtocolError> {
        if self.runs_narrow() {
            let (a, b) = (narrow(a), narrow(b));
            return self.narrow_call(|p| p.matmul(&a, &b, d));
        }
        let z = product_parts(a, b, d);
        self.reshare_wired(z)
    }
}

/// This party's additive part of `a·b`: `x_i·(y_i + y_{i+1}) + x_{i+1}·y_i`, summed over
/// `k` (the three parties' parts sum to the product).
fn product_parts<W: Word>(a: &Pair<W>, b: &Pair<W>, d: MatDims) -> Vec<W> {
    let bsum: Vec<W> = b.a.par_iter().zip(&b.b).map(|(x, y)| x.add(*y)).collect();
    let t1 = matmul_words(&a.a, &bsum, d);
    let t2 = matmul_words(&a.b, &b.a, d);
    t1.into_par_iter().zip(t2).map(|(x, y)| x.add(y)).collect()
}

/// The fused requantization's plan where `rep3` prefers it to the masked division (then
/// a clamp): always for power-of-two divisors (fewer rounds and bytes), and for any other
/// divisor only where the masked division's 40 bits of statistical headroom do not fit the
/// ring — the masked division sends fewer bytes, the fused one takes fewer rounds and needs
/// no headroom (so `Add`, `Concat` and average pools of int8 networks fit Z_2^64 or
/// Z_2^32 instead of Z_2^128).
/// `cap` is the widest opening the operands allow (the ring's width, or the narrow one).
/// Whether there is a plan, and its opening's width, do not depend on `favor` (only its
/// comparison tree does): the pending and narrowing probes ask with the default.
fn fused_plan(
    q: &Requant,
    b: Bounds,
    mode: TruncMode,
    cap: u32,
    favor: Favor,
) -> Option<requant::RequantPlan> {
    let dyadic = q.den.iter().all(|&d| d > 1 && d.count_ones() == 1);
    if !dyadic && masked::division_fits(&q.num, &q.den, b, mode, cap) {
        return None;
    }
    requant::RequantPlan::new(q, b, cap, favor)
}

/// `rep3`'s dealer rotation in a ring of `ring_bits`: a narrow requantization's dealer
/// sends ≈ 92 bytes per element (tables 43, arithmetic words 32, triples 9, its product
/// part to both evaluators 8), an evaluator ≈ 15 (its opening, the tree, the opened bits,
/// the resharing). Favouring rounds, the dealer's tables and last-level products grow by
/// about 70 bytes per element (docs/protocols.md, *Rounds or bytes*): 140 left the three parties of MobileNetV2, ResNet-18 and
/// ResNet-50 within 1–2% of each other (77 left ResNet-50's 9% apart).
fn dealing(ring_bits: u32, favor: Favor) -> Dealing {
    Dealing {
        word_bytes: ring_bits / 8,
        surplus: match favor {
            Favor::Bytes => 77,
            Favor::Rounds => 140,
        },
    }
}

/// `rep3`'s narrowing in a ring of `ring_bits` ([`crate::wires`]): 32-bit words where the
/// ring is wider.
fn narrowing(ring_bits: u32) -> Option<Narrowing> {
    (ring_bits > NARROW_BITS).then_some(Narrowing {
        bits: NARROW_BITS,
        reads,
    })
}

/// `rep3`'s pending results in a ring of `ring_bits` ([`Pending`]): the fused
/// requantization (of shares or of a product's parts) and the lookup with the dealer leave
/// them and open them (each reads `A`'s and `B`'s components of its group only, and ends
/// in a resharing of their parts). Both must take that construction at the width they
/// open.
fn pending(ring_bits: u32) -> Pending {
    Pending {
        ring_bits,
        leaves: |call, cap| dealt_lookup(call) || fused(call, cap),
        opens: |call, cap| match call {
            Call::Lookup { .. } => dealt_lookup(call),
            Call::Requantize { .. } => fused(call, cap),
            _ => false,
        },
    }
}

/// Whether a lookup takes the dealer-assisted construction (`lookup.rs`).
fn dealt_lookup(call: Call<'_>) -> bool {
    match call {
        Call::Lookup {
            table_len, lo, hi, ..
        } => lookup::Shape::of(table_len, lo, hi).is_some(),
        _ => false,
    }
}

/// Whether a requantization opening at most `cap` bits runs fused ([`fused_plan`]).
fn fused(call: Call<'_>, cap: u32) -> bool {
    match call {
        Call::Requantize { q, bounds, mode }
        | Call::ProductRequantize {
            q, bounds, mode, ..
        } => fused_plan(q, bounds, mode, cap, Favor::Bytes).is_some(),
        _ => false,
    }
}

/// What each opening of `rep3` reads of narrow operands ([`Narrowing::reads`]): its
/// constructions open `c = y + r mod 2^m` for the `m` their plan takes at the narrow width,
/// and the sign tests' selections (clamp, max, argmax) return their operands.
fn reads(call: Call<'_>) -> Reads {
    let fresh = |plan: Option<requant::RequantPlan>| plan.map_or(Reads::All, |p| Reads::Fresh(p.m));
    let selects = |tests: &[(i64, i64)]| {
        if tests.iter().all(|&(lo, hi)| {
            lo >= 0 || hi < 0 || assist::SignTest::new(lo, hi, NARROW_BITS, Favor::Bytes).is_some()
        }) {
            Reads::Selects(NARROW_BITS)
        } else {
            Reads::All
        }
    };
    match call {
        Call::Requantize { q, bounds, mode }
        | Call::ProductRequantize {
            q, bounds, mode, ..
        } => fresh(fused_plan(q, bounds, mode, NARROW_BITS, Favor::Bytes)),
        Call::Rescale {
            num,
            den,
            bounds,
            mode,
        } => fresh(
            crate::func::rescale_selection(num, den, bounds)
                .filter(|_| mode == TruncMode::Exact)
                .and_then(|s| fused_plan(&s.q, s.bounds, mode, NARROW_BITS, Favor::Bytes)),
        ),
        Call::Clamp { lo, hi, bounds, .. } => match masked::clamp_tests(lo, hi, bounds) {
            Some(range) => selects(&[range]),
            None => Reads::Selects(0),
        },
        Call::Max { bounds, .. } => {
            let span = bounds.hi.saturating_sub(bounds.lo);
            selects(&[(-span, span)])
        }
        Call::Argmax { bounds, .. } => {
            let span = bounds.hi.saturating_sub(bounds.lo);
            selects(&[(-span - 1, span)])
        }
        Call::Lookup {
            table_len, lo, hi, ..
        } => match lookup::Shape::of(table_len, lo, hi) {
            Some(shape) => Reads::Fresh(shape.m),
            None => Reads::All,
        },
        Call::Input { .. } | Call::Reveal { .. } | Call::Mul { .. } | Call::MatMul(_) => Reads::All,
    }
}

/// `rep3`'s functionalities are its own constructions with the third party as a dealer
/// (`masked.rs`, `assist.rs`, `requant.rs`): they override every default of [`crate::func`].
/// Its selection is its exact requantization, so the defaults run on `rep3` too, and
/// `rep3/tests.rs` holds each override to its default (bit-exact, no more rounds or bytes).
impl<W: Word> crate::func::Selection for Rep3<W> {
    fn select_with(
        &mut self,
        x: &Pair<W>,
        q: &Requant,
        b: Bounds,
        _: &crate::semi2k::select::Plan,
    ) -> Result<Pair<W>, ProtocolError> {
        crate::func::Selection::requantize(self, x, q, b, TruncMode::Exact)
    }
    fn rescale(
        &mut self,
        x: &Pair<W>,
        num: &[i64],
        den: &[i64],
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Pair<W>, ProtocolError> {
        if self.runs_narrow() {
            let x = narrow(x);
            return self
                .narrow_call(|p| crate::func::Selection::rescale(p, &x, num, den, bounds, mode));
        }
        // An exact rescale is one fused requantization where rep3 prefers it
        // ([`fused_plan`]): 4 rounds where the masked division takes 8 (the default of
        // `func` found it).
        let cap = self.opening_cap();
        let fused = crate::func::rescale_selection(num, den, bounds)
            .filter(|_| mode == TruncMode::Exact)
            .and_then(|s| Some((fused_plan(&s.q, s.bounds, mode, cap, self.favor)?, s)));
        if let Some((plan, s)) = fused {
            let x = match &s.signs {
                Some(signs) => self.mul_public(x, signs),
                None => x.clone(),
            };
            return requant::requantize(self, &plan, &s.q, Operand::Shares(&x), s.bounds);
        }
        Ok(planes(masked::rescale(
            self,
            &reps(x),
            num,
            den,
            bounds,
            mode,
        )?))
    }

    fn requantize(
        &mut self,
        x: &Pair<W>,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Pair<W>, ProtocolError> {
        if self.runs_narrow() {
            let x = narrow(x);
            return self
                .narrow_call(|p| crate::func::Selection::requantize(p, &x, q, bounds, mode));
        }
        if let Some(plan) = fused_plan(q, bounds, mode, self.opening_cap(), self.favor) {
            return requant::requantize(self, &plan, q, Operand::Shares(x), bounds);
        }
        self.full_width(|p| crate::requantize_unfused(p, x, q, bounds, mode))
    }

    /// The product's parts go to the requantization's opening unreshared (the bias's
    /// component `me` added to them) where the fused requantization runs.
    fn product_requantize(
        &mut self,
        a: &Pair<W>,
        b: &Pair<W>,
        d: MatDims,
        bias: &Pair<W>,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Pair<W>, ProtocolError> {
        if self.runs_narrow() {
            let (a, b, bias) = (narrow(a), narrow(b), narrow(bias));
            return self.narrow_call(|p| {
                crate::func::Selection::product_requantize(p, &a, &b, d, &bias, q, bounds, mode)
            });
        }
        let Some(plan) = fused_plan(q, bounds, mode, self.opening_cap(), self.favor) else {
            // Its product is an intermediate that the masked division reads whole.
            return self.full_width(|p| {
                crate::product_requantize_unfused(p, a, b, d, bias, q, bounds, mode)
            });
        };
        let z: Vec<W> = product_parts(a, b, d)
            .into_par_iter()
            .zip(&bias.a)
            .map(|(z, c)| z.add(*c))
            .collect();
        requant::requantize(self, &plan, q, Operand::Parts(&z), bounds)
    }

    fn clamp(
        &mut self,
        x: &Pair<W>,
        lo: i64,
        hi: i64,
        bounds: Bounds,
    ) -> Result<Pair<W>, ProtocolError> {
        if self.runs_narrow() {
            let x = narrow(x);
            return self.narrow_call(|p| crate::func::Selection::clamp(p, &x, lo, hi, bounds));
        }
        Ok(planes(masked::clamp(self, &reps(x), lo, hi, bounds)?))
    }

    fn max(&mut self, a: &Pair<W>, b: &Pair<W>, bounds: Bounds) -> Result<Pair<W>, ProtocolError> {
        if self.runs_narrow() {
            let (a, b) = (narrow(a), narrow(b));
            return Ok(widen(
                self.narrowed(|p| crate::func::Selection::max(p, &a, &b, bounds))?,
            ));
        }
        Ok(planes(masked::max(self, &reps(a), &reps(b), bounds)?))
    }

    fn argmax(
        &mut self,
        x: &Pair<W>,
        row_len: usize,
        select_last: bool,
        bounds: Bounds,
    ) -> Result<Pair<W>, ProtocolError> {
        if self.runs_narrow() {
            let x = narrow(x);
            return self.narrow_call(|p| {
                crate::func::Selection::argmax(p, &x, row_len, select_last, bounds)
            });
        }
        Ok(planes(masked::argmax(
            self,
            &reps(x),
            row_len,
            select_last,
            bounds,
        )?))
    }
    fn lookup(
        &mut self,
        x: &Pair<W>,
        table: &[i64],
        offset: i64,
    ) -> Result<Pair<W>, ProtocolError> {
        if self.runs_narrow() {
            let x = narrow(x);
            return self.narrow_call(|p| crate::func::Selection::lookup(p, &x, table, offset));
        }
        match lookup::Shape::new(table) {
            Some(shape) if lookup::rotates(shape, x.a.len(), self.favor) => Ok(planes(
                lookup::lookup_rotated(self, shape, &reps(x), table, offset)?,
            )),
            Some(shape) => Ok(planes(lookup::lookup(
                self,
                shape,
                &reps(x),
                table,
                offset,
            )?)),
            None => Ok(planes(masked::lookup(self, &reps(x), table, offset)?)),
        }
    }
}

#[cfg(test)]
mod tests;
