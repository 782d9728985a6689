//! The nonlinear gates of `fss`: two parties and the dealer's DCF keys ([`crate::dcf`]),
//! after AriaNN (Ryffel, Tholoniat, Pointcheval, Bach, PETS 2022) and the gates of Boyle
//! et al. (Eurocrypt 2021). Each gate is one masked opening and local key evaluations.
//!
//! With `x ∈ [x_lo, x_hi]` and `y = x − x_lo < 2^ℓ`, the dealer shares a mask `r < N = 2^m`
//! and the parties open `c = y + r mod N` (1 round, `⌈m/8⌉` bytes per element each way).
//!
//! - **compare** (`den = 1`; `m = ℓ`): `clamp(num·x + zp, lo, hi)`, so clamp, ReLU and max.
//!   With `D(v) = [v < r]` and `R(v) = r·[v < r]`, one key of `[v < r]` with payload
//!   `(1, r)`, and `y = c − r + N·D(c)`, every threshold test and its product with `y` is
//!   linear in key outputs at public points:
//!   `[y ≥ T] = [c ≥ T] + D(c) − D(c − T mod N)`, and
//!   `[y ≥ T]·y = c·[y ≥ T] − ([c ≥ T]·r + R(c) − R(c − T mod N)) + N·[y ≥ T]·D(c)` where
//!   `[y ≥ T]·D(c)` is `D(c)` if `c ≥ T`, else `D(c) − D(c − T + N)` (nested sets). The
//!   result is `lo + (g_lo − g_hi)·(num·x + zp − lo) + g_hi·(hi − lo)`.
//! - **round** (`m = ℓ + 1`): `round_half_even(x·num/d) + zp`. As `y < N/2`, `y = c − r'`
//!   with `r' = r` when `c`'s top bit is set and `r' = r − N·r_top` otherwise, so
//!   `x·num + ⌊d/2⌋ = P − Q` with `P = (c + x_lo)·num + ⌊d/2⌋` public and `Q = r'·num` the
//!   dealer's. With `D = d` (odd `d`) or `2d` (even), `(H, u) = divmod(P, D)`,
//!   `(Q_h, s) = divmod(Q, D)` and `E(v) = [v < s]`:
//!   odd `d`: `H − Q_h − E(u)` (no ties);
//!   even `d`: round-half-even is `2⌊a/2d⌋ + [a mod 2d > d]` for `a = x·num + d/2`, which is
//!   `2H − 2Q_h + [u ≥ d + 1] − E(u) − E(u − d − 1 mod D)`.
//!   The dealer keys both readings of `r'`; the public top bit of `c` picks one.
//!
//! A requantization whose clamp binds is a round then a compare (2 rounds): a comparison
//! key cannot also carry the borrow of the rounding, whose product with the clamp's
//! selector is a function of two secret thresholds at once. Everything a party sees is
//! `c`, uniform because `r` is, and keys, pseudo-random one at a time.

use super::dealer::Dealer;
use super::prep::{self, random_words, Block, Layout};
use super::select::{all_to_all, Plan};
use super::Semi2k;
use crate::bitvec::{bits_of, low_mask};
use crate::cost::Rounds;
use crate::dcf::{self, Seed, SEED_BYTES};
use crate::stream::Stream;
use crate::word::Word;
use crate::{Bounds, ProtocolError, Requant};
use chacha20::rand_core::Rng;
use rayon::prelude::*;
use std::ops::Range;

type R<T> = Result<T, ProtocolError>;

/// Payload words of a compare key: `1` and `r`.
const COMPARE_PAYLOAD: usize = 2;
/// Payload words of a round key: `1`.
const ROUND_PAYLOAD: usize = 1;

/// Bytes of the key material of one comparison on `bits`-bit values in a ring of
/// `word_bytes`-byte words, per party: the correction words and the root seed.
pub fn key_bytes_per_comparison(bits: u32, word_bytes: usize) -> usize {
    dcf::key_bytes(bits, COMPARE_PAYLOAD, word_bytes) + SEED_BYTES
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Compare,
    Round,
}

/// The public shape of one gate call.
struct Gate {
    kind: Kind,
    /// Bits of the opening.
    m: u32,
    /// Elements that open `c` and evaluate keys, in order.
    keyed: Vec<usize>,
    /// Per keyed element, input bits of its keys.
    dom: Vec<u32>,
}

/// `D` of the round gate: `d`, or `2d` for even `d`.
fn modulus(d: i64) -> i128 {
    if d % 2 == 0 {
        2 * d as i128
    } else {
        d as i128
    }
}

impl Gate {
    fn new(q: &Requant, b: Bounds, plan: &Plan) -> Gate {
        let span = (b.hi as i128 - b.lo as i128) as u128;
        let bits = bits_of(span).max(1);
        let varies = |t: u64| t > 0 && t as u128 <= span;
        let th = plan.thresholds();
        if plan.rounds() {
            let keyed: Vec<usize> = (0..q.num.len())
                .filter(|&i| q.den[i] > 1 && plan.public_selectors(i) == (true, false))
                .collect();
            let dom = keyed
                .iter()
                .map(|&i| bits_of((modulus(q.den[i]) - 1) as u128))
                .collect();
            Gate {
                kind: Kind::Round,
                m: bits + 1,
                keyed,
                dom,
            }
        } else {
            let keyed: Vec<usize> = (0..q.num.len())
                .filter(|&i| varies(th[i].0) || varies(th[i].1))
                .collect();
            let dom = vec![bits; keyed.len()];
            Gate {
                kind: Kind::Compare,
                m: bits,
                keyed,
                dom,
            }
        }
    }

    fn keys_per_element(&self) -> usize {
        match self.kind {
            Kind::Compare => 1,
            Kind::Round => 2,
        }
    }

    fn payload(&self) -> usize {
        match self.kind {
            Kind::Compare => COMPARE_PAYLOAD,
            Kind::Round => ROUND_PAYLOAD,
        }
    }

    /// Bytes of the correction words of keyed element `j`'s keys.
    fn key_bytes(&self, j: usize, word_bytes: usize) -> usize {
        dcf::key_bytes(self.dom[j], self.payload(), word_bytes)
    }

    /// Words per keyed element: `r` (and both readings of `Q_h` for round).
    fn words_per_element(&self) -> usize {
        match self.kind {
            Kind::Compare => 1,
            Kind::Round => 3,
        }
    }

    /// The head block: the shares of `r` (and `Q_h`) and the root seeds (XOR shares:
    /// party 0's is its draw). The keys' correction words follow in [`Gate::pieces`].
    fn head(&self) -> Layout {
        let k = self.keyed.len();
        Layout::words(self.words_per_element() * k).seg(128 * self.keys_per_element() * k)
    }

    /// The keyed elements whose correction words travel as one block each, in order, and
    /// their bytes ([`prep::pieces`]).
    fn pieces(&self, word_bytes: usize) -> Vec<(Range<usize>, usize)> {
        let kp = self.keys_per_element();
        prep::pieces(self.keyed.len(), |j| kp * self.key_bytes(j, word_bytes))
    }

    fn open_bytes(&self) -> usize {
        (self.m as usize).div_ceil(8)
    }

    fn pattern(&self) -> Rounds {
        if self.keyed.is_empty() {
            return Vec::new();
        }
        vec![all_to_all(2, self.keyed.len() * self.open_bytes())]
    }

    /// The dealer's values of the head block (`share0` is party 0's share of it, its
    /// root seeds), and the secrets its keys are made of.
    fn deal_head<W: Word>(
        &self,
        q: &Requant,
        rng: &mut Stream,
        share0: &Block<W>,
    ) -> (Block<W>, Secrets) {
        let k = self.keyed.len();
        let kp = self.keys_per_element();
        let mask = low_mask(self.m);
        let masks: Vec<u64> = (0..k).map(|_| rng.next_u64() & mask).collect();
        let own: Vec<u64> = random_words(rng, 2 * kp * k);
        let mut words: Vec<W> = masks.iter().map(|&r| W::from_u128(u128::from(r))).collect();
        if self.kind == Kind::Round {
            for (j, &r) in masks.iter().enumerate() {
                let big_d = modulus(q.den[self.keyed[j]]);
                for rv in self.readings(r) {
                    let qv = rv * q.num[self.keyed[j]] as i128;
                    words.push(W::from_u128(qv.div_euclid(big_d) as u128));
                }
            }
        }
        let first = share0.segs.first().cloned().unwrap_or_default();
        // The value of the root segment is s0 ⊕ s1, so party 1's correction is its root.
        let value: Vec<u64> = own.iter().zip(&first).map(|(a, b)| a ^ b).collect();
        let block = Block {
            words,
            segs: vec![value],
            public: Default::default(),
        };
        (
            block,
            Secrets {
                masks,
                roots: [first, own],
            },
        )
    }

    /// Both readings of `r'` (the top bit of `c` picks one).
    fn readings(&self, r: u64) -> [i128; 2] {
        let top = (r >> (self.m - 1)) & 1;
        [r as i128 - ((top as i128) << self.m), r as i128]
    }

    /// The correction words of the keys of keyed elements `range`, made in parallel.
    fn deal_keys<W: Word>(&self, q: &Requant, sec: &Secrets, range: Range<usize>) -> Vec<u8> {
        let kp = self.keys_per_element();
        let roots = |j: usize, key: usize| -> [Seed; 2] {
            let at = 2 * (j * kp + key);
            [seed_at(&sec.roots[0], at), seed_at(&sec.roots[1], at)]
        };
        let made: Vec<Vec<u8>> = range
            .into_par_iter()
            .map(|j| {
                let (i, r) = (self.keyed[j], sec.masks[j]);
                let mut key = Vec::with_capacity(kp * self.key_bytes(j, W::BYTES));
                match self.kind {
                    Kind::Compare => {
                        let beta = [W::ONE, W::from_u128(u128::from(r))];
                        dcf::gen::<W, 2>(self.m, r, beta, roots(j, 0), &mut key);
                    }
                    Kind::Round => {
                        let big_d = modulus(q.den[i]);
                        for (v, rv) in self.readings(r).into_iter().enumerate() {
                            let s = (rv * q.num[i] as i128).rem_euclid(big_d) as u64;
                            dcf::gen::<W, 1>(self.dom[j], s, [W::ONE], roots(j, v), &mut key);
                        }
                    }
                }
                key
            })
            .collect();
        made.concat()
    }
}

/// What the dealer makes a gate's keys of, kept from its head block to its last piece.
struct Secrets {
    /// Per keyed element, `r`.
    masks: Vec<u64>,
    /// The root seeds of party 0 and of party 1, packed.
    roots: [Vec<u64>; 2],
}

/// The 16-byte seed at word `at` of a packed segment.
fn seed_at(seg: &[u64], at: usize) -> Seed {
    let mut s = [0u8; SEED_BYTES];
    s[..8].copy_from_slice(&seg[at].to_le_bytes());
    s[8..].copy_from_slice(&seg[at + 1].to_le_bytes());
    s
}

/// The dealer's side of a gate call: the head block, then the keys piece by piece.
pub(super) fn supply<W: Word>(d: &mut Dealer<W>, q: &Requant, b: Bounds, plan: &Plan) -> R<()> {
    let g = Gate::new(q, b, plan);
    let pieces = g.pieces(W::BYTES);
    let keys = g.keys_per_element() * g.keyed.len();
    let key_bytes: usize = pieces.iter().map(|p| p.1).sum();
    d.count_keys(keys, key_bytes + keys * SEED_BYTES);
    let mut secrets = None;
    d.supply(g.head(), g.pattern(), |rng, shares| match shares.first() {
        Some(share0) => {
            let (block, sec) = g.deal_head(q, rng, share0);
            secrets = Some(sec);
            block
        }
        None => Block::default(),
    });
    for (range, bytes) in pieces {
        d.supply(Layout::default().public(bytes), Vec::new(), |_, _| {
            let public = match &secrets {
                Some(sec) => g.deal_keys::<W>(q, sec, range).into(),
                None => Default::default(),
            };
            Block {
                public,
                ..Block::default()
            }
        });
    }
    Ok(())
}

/// The key's values at 1 to 3 points, walked in lockstep.
fn eval_points<W: Word, const P: usize>(
    me: usize,
    root: &Seed,
    key: &[u8],
    bits: u32,
    points: &[u64],
) -> Vec<[W; P]> {
    match *points {
        [a] => dcf::eval::<W, P, 1>(me, root, key, bits, [a]).to_vec(),
        [a, b] => dcf::eval::<W, P, 2>(me, root, key, bits, [a, b]).to_vec(),
        [a, b, c, ..] => dcf::eval::<W, P, 3>(me, root, key, bits, [a, b, c]).to_vec(),
        [] => Vec::new(),
    }
}

/// Party `p`'s share of `q` on `x` (values in `b`); see the module doc.
pub(super) fn eval<W: Word>(
    p: &mut Semi2k<W>,
    x: &[W],
    q: &Requant,
    b: Bounds,
    plan: &Plan,
) -> R<Vec<W>> {
    let g = Gate::new(q, b, plan);
    let mat: Block<W> = p.prep.take(&g.head(), p.net.as_mut())?;
    let me = p.me;
    let first = me == 0;
    let pubw = |v: W| if first { v } else { W::ZERO };
    let ring = |v: i128| W::from_u128(v as u128);
    let neg_lo = W::from_i64(b.lo).neg();
    let mask = low_mask(g.m);
    let k = g.keyed.len();

    // The opening of c = y + r mod N.
    let mine: Vec<u64> = g
        .keyed
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            let y = if first { x[i].add(neg_lo) } else { x[i] };
            (y.add(mat.words[j]).to_u128() as u64) & mask
        })
        .collect();
    let c = if k == 0 {
        Vec::new()
    } else {
        p.open_low(mine, g.m)?
    };

    // Elements without keys: public selectors, `d = 1`.
    let mut out: Vec<W> = (0..x.len())
        .map(|i| match plan.public_selectors(i) {
            (true, _) => x[i]
                .mul(W::from_i64(q.num[i]))
                .add(pubw(W::from_i64(q.zp[i]))),
            (false, true) => pubw(W::from_i64(q.hi)),
            (false, false) => pubw(W::from_i64(q.lo)),
        })
        .collect();

    // The keys, a piece at a time as they come from the dealer.
    let kp = g.keys_per_element();
    for (range, bytes) in g.pieces(W::BYTES) {
        let keys = p
            .prep
            .take::<W>(&Layout::default().public(bytes), p.net.as_mut())?
            .public;
        let mut offsets = Vec::with_capacity(range.len());
        let mut at = 0;
        for j in range.clone() {
            offsets.push(at);
            at += kp * g.key_bytes(j, W::BYTES);
        }
        let first = range.start;
        let values: Vec<W> = range
            .clone()
            .into_par_iter()
            .map(|j| {
                let i = g.keyed[j];
                let key_len = g.key_bytes(j, W::BYTES);
                let key = |v: usize| &keys[offsets[j - first] + v * key_len..][..key_len];
                let root = |v: usize| seed_at(&mat.segs[0], 2 * (j * kp + v));
                match g.kind {
                    Kind::Compare => {
                        let (t_lo, t_hi) = plan.thresholds()[i];
                        let span = (b.hi as i128 - b.lo as i128) as u128;
                        let y = x[i].add(pubw(neg_lo));
                        let r = mat.words[j];
                        let cj = c[j];
                        let big_n = W::from_u128(1u128 << g.m);
                        let varies = |t: u64| t > 0 && t as u128 <= span;
                        // The key at c and at c − t for each threshold that varies, in lockstep.
                        let mut points = vec![cj];
                        for t in [t_lo, t_hi] {
                            if varies(t) {
                                points.push(cj.wrapping_sub(t) & mask);
                            }
                        }
                        let vals = eval_points::<W, 2>(me, &root(0), key(0), g.m, &points);
                        let at_c = vals[0];
                        // Shares of [y ≥ t] and [y ≥ t]·y; `at` the index of c − t's value.
                        let select = |t: u64, at: usize| -> (W, W) {
                            if !varies(t) {
                                let f = Plan::fixed(t);
                                return (
                                    pubw(W::from_u128(u128::from(f))),
                                    y.mul(W::from_u128(u128::from(f))),
                                );
                            }
                            let above = cj >= t;
                            let at_t = vals[at];
                            let g = pubw(W::from_u128(u128::from(above)))
                                .add(at_c[0])
                                .sub(at_t[0]);
                            let g_r = if above { r } else { W::ZERO }.add(at_c[1]).sub(at_t[1]);
                            let g_w = if above { at_c[0] } else { at_c[0].sub(at_t[0]) };
                            let gy = g
                                .mul(W::from_u128(u128::from(cj)))
                                .sub(g_r)
                                .add(big_n.mul(g_w));
                            (g, gy)
                        };
                        let (g_lo, gy_lo) = select(t_lo, 1);
                        let (g_hi, gy_hi) = select(t_hi, if varies(t_lo) { 2 } else { 1 });
                        let num = q.num[i] as i128;
                        let base = ring(num * b.lo as i128 + q.zp[i] as i128 - q.lo as i128);
                        pubw(W::from_i64(q.lo))
                            .add(ring(num).mul(gy_lo.sub(gy_hi)))
                            .add(base.mul(g_lo.sub(g_hi)))
                            .add(ring(q.hi as i128 - q.lo as i128).mul(g_hi))
                    }
                    Kind::Round => {
                        let d = q.den[i] as i128;
                        let big_d = modulus(q.den[i]);
                        let cj = c[j];
                        let v = ((cj >> (g.m - 1)) & 1) as usize;
                        let pv = (cj as i128 + b.lo as i128) * q.num[i] as i128 + d / 2;
                        let (h, u) = (pv.div_euclid(big_d), pv.rem_euclid(big_d));
                        let qh = mat.words[k + 2 * j + v];
                        let zp = pubw(W::from_i64(q.zp[i]));
                        let (root, key, dom) = (root(v), key(v), g.dom[j]);
                        if d % 2 == 1 {
                            let [[e1]] = dcf::eval::<W, 1, 1>(me, &root, key, dom, [u as u64]);
                            pubw(ring(h)).sub(qh).sub(e1).add(zp)
                        } else {
                            let u2 = (u - d - 1).rem_euclid(big_d);
                            let [[e1], [e2]] =
                                dcf::eval::<W, 1, 2>(me, &root, key, dom, [u as u64, u2 as u64]);
                            let public = 2 * h + i128::from(u > d);
                            pubw(ring(public)).sub(qh.add(qh)).sub(e1).sub(e2).add(zp)
                        }
                    }
                }
            })
            .collect();
        for (j, v) in range.zip(values) {
            out[g.keyed[j]] = v;
        }
    }
    Ok(out)
}
