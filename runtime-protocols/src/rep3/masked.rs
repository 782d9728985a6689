//! Everything non-linear in `rep3` rests on one masked division.
//!
//! To learn `q = ⌊v / d⌋` for a secret `v ∈ [0, 2^b)` and a public `d`:
//! 1. *open* (1 round): party 0 sends party 1 its component 0 plus a mask `r < 2^(b+σ)`
//!    drawn from `key_0`, which parties 0 and 2 hold. Party 1 learns `c = v + r` (no
//!    wrap-around, as `b + σ + 1 ≤ k`), which hides `v` up to statistical distance `2^-σ`,
//!    `σ = 40`. Parties 0 and 2 know `r`.
//! 2. *input* (1 round): party 1 shares `⌊c/d⌋` (arithmetic, when needed) and
//!    `c mod d` with `⌊c/d⌋ mod 2` (boolean); parties 0 and 2 hold `⌊r/d⌋` and `r mod d`
//!    as component 0 for free.
//! 3. *compare* (`1 + ⌈log2(w+1)⌉` rounds, `w` = bits of `d − 1`): the borrow
//!    `β = [c mod d < r mod d]`, so that `q = ⌊c/d⌋ − ⌊r/d⌋ − β`; the same tree gives
//!    `[c mod d = r mod d]`, which is `[v mod d = 0]`.
//! 4. *inject* (2 rounds): the one bit the caller needs becomes arithmetic.
//!
//! Exact requantization `round_half_even(x·num/den)` is one such division of
//! `v = 2·x·num + den` by `d = 2·den` (round half up), minus one at exact ties whose
//! quotient is odd: `5 + ⌈log2(w+1)⌉` rounds. Probabilistic requantization divides
//! `2·x·num + den − 1` (round half down) and skips the borrow: 2 rounds, and the result is
//! `round_half_even` or one more. A sign test `[v ≥ 0]` divides `v + 2^p` by `2^p`.

use super::assist::SignTest;
use super::{Rep, Rep3, Xor};
use crate::bitvec::bits_of;
use crate::word::Word;
use crate::{Bounds, PartyId, ProtocolError, TruncMode};
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;

/// Statistical security parameter of masked openings.
pub const SIGMA: u32 = 40;
/// The party that sees masked values.
pub(super) const OPENER: PartyId = 1;

/// What a masked opening leaves with each party.
enum Known {
    /// Party 1: `c = v + r`.
    Opened(Vec<u128>),
    /// Parties 0 and 2: `r`.
    Mask(Vec<u128>),
}

fn low_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The outcome of step 1–3 of a division, in this party.
struct Division<W> {
    /// Shares of `⌊c/d⌋` (only when asked for).
    cq: Vec<Rep<W>>,
    /// `⌊r/d⌋` as shares (component 0).
    rq: Vec<Rep<W>>,
    /// Borrow `[c mod d < r mod d]`, lane 0.
    lt: Vec<Rep<Xor>>,
    /// `[c mod d = r mod d] ∧ extra`, lane 0.
    tie: Vec<Rep<Xor>>,
    /// `⌊c/d⌋ ⊕ ⌊r/d⌋ ⊕ extra` in lane 0 (the parity of `q + β` with the extra bit).
    parity: Vec<Rep<Xor>>,
}

impl<W: Word> Rep3<W> {
    /// Step 1: party 1 learns `v + r`, parties 0 and 2 learn `r`. `v` must lie in
    /// `[0, 2^bits)`.
    fn open_masked(&mut self, v: &[Rep<W>], bits: u32) -> R<Known> {
        check_opening(bits, W::BITS)?;
        let n = v.len();
        let m = low_mask(bits + SIGMA);
        match self.me {
            0 | 2 => {
                let r: Vec<u128> = self
                    .draw::<W>(0, n)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| w.to_u128() & m)
                    .collect();
                if self.me == 0 {
                    let msg: Vec<W> = v
                        .iter()
                        .zip(&r)
                        .map(|(s, &r)| s.a.add(W::from_u128(r)))
                        .collect();
                    self.round(vec![(OPENER, msg)], &[])?;
                } else {
                    self.round::<W>(Vec::new(), &[])?;
                }
                Ok(Known::Mask(r))
            }
            _ => {
                let got = self.round::<W>(Vec::new(), &[(0, n)])?;
                let got = got.into_iter().next().unwrap_or_default();
                Ok(Known::Opened(
                    v.iter()
                        .zip(got)
                        .map(|(s, m0)| s.a.add(s.b).add(m0).to_u128())
                        .collect(),
                ))
            }
        }
    }

    /// Steps 1–3 for `v ∈ [0, 2^bits)` and divisors `d` (per element, `1 ≤ d < 2^63`).
    /// `extra` is a public bit per element XORed into the parity lane.
    fn divide(
        &mut self,
        v: &[Rep<W>],
        d: &[u128],
        bits: u32,
        extra: &[u64],
        want_quotient: bool,
        want_borrow: bool,
    ) -> R<Division<W>> {
        let n = v.len();
        let w = divisor_width(d)?;
        let known = self.open_masked(v, bits)?;
        let word = |q: u128, m: u128, e: u64| ((m as u64) << 1) | ((q as u64 ^ e) & 1);
        // A twin's values are all zero: no division to do (u128 divisions dominate here).
        let (c_d, c_m) = (
            |c: &u128, d: &u128| if W::DATA { c / d } else { 0 },
            |c: &u128, d: &u128| if W::DATA { c % d } else { 0 },
        );
        let (cq, x, rq_vals, y) = match known {
            Known::Opened(c) => {
                let q: Vec<W> = c
                    .iter()
                    .zip(d)
                    .map(|(c, d)| W::from_u128(c_d(c, d)))
                    .collect();
                let xw: Vec<Xor> = c
                    .iter()
                    .zip(d)
                    .map(|(c, d)| Xor(word(c_d(c, d), c_m(c, d), 0)))
                    .collect();
                let nq = if want_quotient { n } else { 0 };
                let (cq, x) = self.share_two_from(OPENER, Some(&q[..nq]), nq, Some(&xw), n)?;
                (cq, x, None, None)
            }
            Known::Mask(r) => {
                let nq = if want_quotient { n } else { 0 };
                let (cq, x) = self.share_two_from::<W, Xor>(OPENER, None, nq, None, n)?;
                let rq: Vec<W> = r
                    .iter()
                    .zip(d)
                    .map(|(r, d)| W::from_u128(c_d(r, d)))
                    .collect();
                let yw: Vec<Xor> = r
                    .iter()
                    .zip(d)
                    .zip(extra)
                    .map(|((r, d), e)| Xor(word(c_d(r, d), c_m(r, d), *e)))
                    .collect();
                (cq, x, Some(rq), Some(yw))
            }
        };
        let rq = self.known_to_comp(0, rq_vals.as_deref(), n);
        let y = self.known_to_comp(0, y.as_deref(), n);
        let parity: Vec<Rep<Xor>> = x
            .iter()
            .zip(&y)
            .map(|(a, b)| Rep {
                a: Xor((a.a.0 ^ b.a.0) & 1),
                b: Xor((a.b.0 ^ b.b.0) & 1),
            })
            .collect();
        let (lt, tie) = if want_borrow {
            self.compare(&x, &y, w)?
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Division {
            cq,
            rq,
            lt,
            tie,
            parity,
        })
    }

    /// Arithmetic `[v ≥ 0]` for `v ∈ [lo, hi]`: `5 + ⌈log2(p+1)⌉` rounds, `2^p ≥ max(−lo, hi+1)`.
    fn non_negative(&mut self, v: &[Rep<W>], lo: i64, hi: i64) -> R<Vec<Rep<W>>> {
        let p = sign_test_bits(lo, hi);
        let d = 1u128 << p;
        let shifted = self.add_words(v, W::from_u128(d));
        let n = v.len();
        let div = self.divide(&shifted, &vec![d; n], p + 1, &vec![0; n], false, true)?;
        let ge: Vec<Rep<Xor>> = div
            .lt
            .iter()
            .zip(&div.parity)
            .map(|(l, q)| Rep {
                a: Xor(l.a.0 ^ q.a.0),
                b: Xor(l.b.0 ^ q.b.0),
            })
            .collect();
        self.bit_to_arith(&ge)
    }

    /// `[t_i ≥ 0]·f` for the `k = factors.len() / t.len()` factors of each test (factor `j`
    /// of test `i` at `j·n + i`), for `t ∈ [lo, hi]`: nothing when the bounds decide the
    /// test, else the dealer-assisted test ([`super::assist`]) where it fits 64 bits, else a
    /// masked division and a multiplication.
    fn select_non_negative(
        &mut self,
        t: &[Rep<W>],
        lo: i64,
        hi: i64,
        factors: &[Rep<W>],
    ) -> R<Vec<Rep<W>>> {
        if t.is_empty() {
            return Ok(Vec::new());
        }
        if lo >= 0 {
            return Ok(factors.to_vec());
        }
        if hi < 0 {
            return Ok(vec![Rep::default(); factors.len()]);
        }
        if let Some(test) = SignTest::new(lo, hi, W::BITS, self.favor) {
            return super::assist::select(self, &test, t, lo, factors);
        }
        let ge = self.non_negative(t, lo, hi)?;
        let k = factors.len().checked_div(t.len()).unwrap_or(0);
        let ges: Vec<Rep<W>> = (0..k).flat_map(|_| ge.iter().copied()).collect();
        self.mul_shares(&ges, factors)
    }

    /// Add a public ring constant to every element.
    fn add_words(&self, v: &[Rep<W>], c: W) -> Vec<Rep<W>> {
        let cs = self.public_shares(&vec![c; v.len()]);
        v.iter()
            .zip(cs)
            .map(|(x, c)| Rep {
                a: x.a.add(c.a),
                b: x.b.add(c.b),
            })
            .collect()
    }
}

/// Public parameters of a requantization: per element, `v = 2·x·num + offset` is divided
/// by `d = 2·den`; `kq = K / d` undoes the offset `K` that keeps `v` non-negative.
pub(super) struct RescalePlan {
    pub d: Vec<u128>,
    pub offset: Vec<i128>,
    pub kq: Vec<i128>,
    /// Bits of the largest `v`.
    pub bits: u32,
}

impl RescalePlan {
    pub fn new(num: &[i64], den: &[i64], bounds: Bounds, mode: TruncMode) -> R<RescalePlan> {
        let exact = mode == TruncMode::Exact;
        let n = num.len();
        let mut d = Vec::with_capacity(n);
        let mut offset = Vec::with_capacity(n);
        let mut kq = Vec::with_capacity(n);
        let mut bits = 1;
        for (&nm, &dn) in num.iter().zip(den) {
            let e = Element::new(nm, dn, bounds, exact)?;
            bits = bits.max(e.bits);
            d.push(e.d as u128);
            offset.push(e.shift + e.k);
            kq.push(e.k / e.d);
        }
        Ok(RescalePlan {
            d,
            offset,
            kq,
            bits,
        })
    }
}

/// One element's part of a [`RescalePlan`].
struct Element {
    /// `2·den`.
    d: i128,
    /// `den` (exact) or `den − 1` (probabilistic).
    shift: i128,
    /// The multiple of `d` that keeps `v` non-negative.
    k: i128,
    /// Bits of the largest `v + k`.
    bits: u32,
}

impl Element {
    fn new(nm: i64, dn: i64, bounds: Bounds, exact: bool) -> R<Element> {
        if dn <= 0 {
            return Err(ProtocolError::Invalid(format!(
                "rescale by a non-positive denominator {dn}"
            )));
        }
        let (a, b) = (
            bounds.lo as i128 * nm as i128,
            bounds.hi as i128 * nm as i128,
        );
        let shift = dn as i128 - if exact { 0 } else { 1 };
        let (vlo, vhi) = (2 * a.min(b) + shift, 2 * a.max(b) + shift);
        let d = 2 * dn as i128;
        let k = if vlo < 0 { (-vlo + d - 1) / d * d } else { 0 };
        Ok(Element {
            d,
            shift,
            k,
            bits: bits_of((vhi + k) as u128),
        })
    }
}

/// Whether [`rescale`] of these parameters fits a ring of `ring_bits` (its masked opening
/// with the statistical headroom), without building the plan.
pub(super) fn division_fits(
    num: &[i64],
    den: &[i64],
    bounds: Bounds,
    mode: TruncMode,
    ring_bits: u32,
) -> bool {
    let exact = mode == TruncMode::Exact;
    num.iter()
        .zip(den)
        .try_fold(1, |bits: u32, (&nm, &dn)| {
            Element::new(nm, dn, bounds, exact).map(|e| bits.max(e.bits))
        })
        .is_ok_and(|bits| check_opening(bits, ring_bits).is_ok())
}

/// A masked opening of `bits`-bit values must not wrap around a ring of `ring_bits`.
pub(super) fn check_opening(bits: u32, ring_bits: u32) -> R<()> {
    if bits + SIGMA + 1 > ring_bits {
        return Err(ProtocolError::Invalid(format!(
            "a masked opening of {bits}-bit values needs a ring of {} bits; this run uses {ring_bits}",
            bits + SIGMA + 1
        )));
    }
    Ok(())
}

/// Lanes the comparator needs for remainders of the divisors `d`.
pub(super) fn divisor_width(d: &[u128]) -> R<u32> {
    let w = d.iter().map(|&d| bits_of(d - 1)).max().unwrap_or(1).max(1);
    if w > 63 {
        // The comparator packs a remainder and one extra bit into 64 lanes.
        return Err(ProtocolError::Invalid(format!(
            "a division by a {w}-bit divisor is beyond rep3's 63-bit comparator"
        )));
    }
    Ok(w)
}

/// `p` of a sign test of values in `[lo, hi]`: `2^p ≥ max(−lo, hi + 1)`.
pub(super) fn sign_test_bits(lo: i64, hi: i64) -> u32 {
    let span = (-(lo as i128)).max(hi as i128 + 1).max(1) as u128;
    bits_of(span - 1).max(1)
}

fn lin<W: Word>(terms: &[(&[Rep<W>], i64)], konst: &[Rep<W>]) -> Vec<Rep<W>> {
    (0..konst.len())
        .map(|i| {
            let mut acc = konst[i];
            for (t, c) in terms {
                let c = W::from_i64(*c);
                acc.a = acc.a.add(t[i].a.mul(c));
                acc.b = acc.b.add(t[i].b.mul(c));
            }
            acc
        })
        .collect()
}

/// `round_half_even(x·num/den)`, exactly or within one (see the module doc).
pub(super) fn rescale<W: Word>(
    p: &mut Rep3<W>,
    x: &[Rep<W>],
    num: &[i64],
    den: &[i64],
    bounds: Bounds,
    mode: TruncMode,
) -> R<Vec<Rep<W>>> {
    let n = x.len();
    let exact = mode == TruncMode::Exact;
    let RescalePlan {
        d,
        offset,
        kq,
        bits,
    } = RescalePlan::new(num, den, bounds, mode)?;
    let v: Vec<Rep<W>> = {
        let twice: Vec<W> = num
            .iter()
            .map(|&m| W::from_i64(m).mul(W::from_i64(2)))
            .collect();
        let z = p.mul_public_words(x, &twice);
        let c: Vec<W> = offset.iter().map(|&o| W::from_u128(o as u128)).collect();
        let cs = p.public_shares(&c);
        z.iter()
            .zip(cs)
            .map(|(z, c)| Rep {
                a: z.a.add(c.a),
                b: z.b.add(c.b),
            })
            .collect()
    };
    let extra: Vec<u64> = kq.iter().map(|&k| (k & 1) as u64).collect();
    let div = p.divide(&v, &d, bits, &extra, true, exact)?;
    let kqs = p.public_shares(
        &kq.iter()
            .map(|&k| W::from_u128(k as u128))
            .collect::<Vec<_>>(),
    );
    let base = lin(
        &[(&div.cq, 1), (&div.rq, -1), (&kqs, -1)],
        &vec![Rep::default(); n],
    );
    if !exact {
        return Ok(base);
    }
    // Round half up, minus one at ties with an odd quotient; the borrow and the tie are
    // never both set.
    let t: Vec<Rep<Xor>> = div
        .lt
        .iter()
        .zip(&div.tie)
        .map(|(l, t)| Rep {
            a: Xor(l.a.0 ^ t.a.0),
            b: Xor(l.b.0 ^ t.b.0),
        })
        .collect();
    let t = p.bit_to_arith(&t)?;
    Ok(lin(&[(&t, -1)], &base))
}

/// `min(max(x, lo), hi)`: one or two sign tests in parallel, then one multiplication round.
pub(super) fn clamp<W: Word>(
    p: &mut Rep3<W>,
    x: &[Rep<W>],
    lo: i64,
    hi: i64,
    b: Bounds,
) -> R<Vec<Rep<W>>> {
    let n = x.len();
    let need_lo = b.lo < lo;
    let need_hi = b.hi > hi;
    let Some((tlo, thi)) = clamp_tests(lo, hi, b) else {
        return Ok(x.to_vec());
    };
    let zero = vec![Rep::default(); n];
    if need_lo && need_hi && hi.checked_sub(lo) == Some(1) {
        // Nothing lies strictly between: `lo + [x ≥ hi]`, one sign test (a comparison's bit).
        let hi_s = p.public_shares(&vec![W::from_i64(hi); n]);
        let t = lin(&[(x, 1), (&hi_s, -1)], &zero);
        let one = p.public_shares(&vec![W::from_i64(1); n]);
        let ge = p.select_non_negative(&t, tlo, thi, &one)?;
        return Ok(p.add_words(&ge, W::from_i64(lo)));
    }
    // d1 = x − lo ≥ 0 keeps x over lo; d2 = hi − x ≥ 0 keeps it under hi.
    let lo_s = p.public_shares(&vec![W::from_i64(lo); n]);
    let hi_s = p.public_shares(&vec![W::from_i64(hi); n]);
    let d1 = lin(&[(x, 1), (&lo_s, -1)], &zero);
    let d2 = lin(&[(x, -1), (&hi_s, 1)], &zero);
    let mut tests = Vec::new();
    if need_lo {
        tests.extend_from_slice(&d1);
    }
    if need_hi {
        tests.extend_from_slice(&d2);
    }
    // y = x + (1 − ge1)(lo − x) + (1 − ge2)(hi − x) = x − (1 − ge1)·d1 + (1 − ge2)·d2;
    // each test is its own factor.
    let prod = p.select_non_negative(&tests, tlo, thi, &tests)?;
    let mut y = x.to_vec();
    let mut at = 0;
    if need_lo {
        // − (d1 − ge1·d1)
        y = lin(&[(&d1, -1), (&prod[at..at + n], 1)], &y);
        at += n;
    }
    if need_hi {
        y = lin(&[(&d2, 1), (&prod[at..at + n], -1)], &y);
    }
    Ok(y)
}

/// The value range of the sign tests [`clamp`] runs on values in `b`; `None` where the
/// bounds decide the clamp.
pub(super) fn clamp_tests(lo: i64, hi: i64, b: Bounds) -> Option<(i64, i64)> {
    let need_lo = b.lo < lo;
    let need_hi = b.hi > hi;
    if need_lo && need_hi && hi.checked_sub(lo) == Some(1) {
        // One test, `[x − hi ≥ 0]`.
        return Some((b.lo - hi, b.hi - hi));
    }
    // `x − lo` and `hi − x`, the ones the bounds do not decide.
    let ranges = [
        need_lo.then(|| (b.lo - lo, b.hi - lo)),
        need_hi.then(|| (hi - b.hi, hi - b.lo)),
    ];
    ranges
        .into_iter()
        .flatten()
        .reduce(|(l1, h1), (l2, h2)| (l1.min(l2), h1.max(h2)))
}

/// Element-wise maximum: one sign test of `a − b`, then `b + [a ≥ b]·(a − b)`.
pub(super) fn max<W: Word>(
    p: &mut Rep3<W>,
    a: &[Rep<W>],
    b: &[Rep<W>],
    bounds: Bounds,
) -> R<Vec<Rep<W>>> {
    let zero = vec![Rep::default(); a.len()];
    let diff = lin(&[(a, 1), (b, -1)], &zero);
    let span = bounds.hi.saturating_sub(bounds.lo);
    let prod = p.select_non_negative(&diff, -span, span, &diff)?;
    Ok(lin(&[(&prod, 1)], b))
}

/// Index of the maximum of each row: `⌈log2(row_len)⌉` stages of a tournament, each one
/// sign test and one multiplication round (value and index selected together).
pub(super) fn argmax<W: Word>(
    p: &mut Rep3<W>,
    x: &[Rep<W>],
    row_len: usize,
    select_last: bool,
    bounds: Bounds,
) -> R<Vec<Rep<W>>> {
    let row_len = row_len.max(1);
    let rows = x.len() / row_len;
    // Candidates per row, lowest index first: (value, index).
    let mut vals: Vec<Vec<Rep<W>>> = (0..rows)
        .map(|r| x[r * row_len..(r + 1) * row_len].to_vec())
        .collect();
    let mut idxs: Vec<Vec<Rep<W>>> = (0..rows)
        .map(|_| {
            let i: Vec<W> = (0..row_len as i64).map(W::from_i64).collect();
            p.public_shares(&i)
        })
        .collect();
    let span = bounds.hi.saturating_sub(bounds.lo);
    while vals.first().is_some_and(|v| v.len() > 1) {
        // Pair (2j, 2j+1) of every row; the left one wins ties unless `select_last`.
        let mut diff = Vec::new();
        let mut dval = Vec::new();
        let mut didx = Vec::new();
        let mut rights_v = Vec::new();
        let mut rights_i = Vec::new();
        for (v, ix) in vals.iter().zip(&idxs) {
            for j in 0..v.len() / 2 {
                let (l, r) = (v[2 * j], v[2 * j + 1]);
                let d = Rep {
                    a: l.a.sub(r.a),
                    b: l.b.sub(r.b),
                };
                dval.push(d);
                diff.push(d);
                didx.push(Rep {
                    a: ix[2 * j].a.sub(ix[2 * j + 1].a),
                    b: ix[2 * j].b.sub(ix[2 * j + 1].b),
                });
                rights_v.push(r);
                rights_i.push(ix[2 * j + 1]);
            }
        }
        let (lo, hi) = if select_last {
            // [l − r − 1 ≥ 0] = [l > r]
            let one = p.public_shares(&vec![W::ONE; diff.len()]);
            diff = lin(&[(&diff, 1), (&one, -1)], &vec![Rep::default(); diff.len()]);
            (-span - 1, span - 1)
        } else {
            (-span, span)
        };
        let mut f = dval;
        f.extend_from_slice(&didx);
        let prod = p.select_non_negative(&diff, lo, hi, &f)?;
        let m = diff.len();
        let mut at = 0;
        for (v, ix) in vals.iter_mut().zip(idxs.iter_mut()) {
            let pairs = v.len() / 2;
            let mut nv = Vec::with_capacity(pairs + 1);
            let mut ni = Vec::with_capacity(pairs + 1);
            for _ in 0..pairs {
                let (pv, pi) = (prod[at], prod[m + at]);
                nv.push(Rep {
                    a: rights_v[at].a.add(pv.a),
                    b: rights_v[at].b.add(pv.b),
                });
                ni.push(Rep {
                    a: rights_i[at].a.add(pi.a),
                    b: rights_i[at].b.add(pi.b),
                });
                at += 1;
            }
            if v.len() % 2 == 1 {
                nv.push(v[v.len() - 1]);
                ni.push(ix[ix.len() - 1]);
            }
            *v = nv;
            *ix = ni;
        }
    }
    Ok(idxs.into_iter().flatten().collect())
}

/// `table[x − offset]`: party 1 opens `x − offset` under a mask whose value mod the table
/// length parties 0 and 2 know, shares the one-hot vector of the masked index (`len`
/// elements), and an inner product with the table rotated by the mask gives the result.
/// 3 rounds; `len + 3` ring elements per element.
pub(super) fn lookup<W: Word>(
    p: &mut Rep3<W>,
    x: &[Rep<W>],
    table: &[i64],
    offset: i64,
) -> R<Vec<Rep<W>>> {
    let n = x.len();
    let len = table.len();
    if len == 0 {
        return Err(ProtocolError::Invalid("lookup in an empty table".into()));
    }
    let shifted = p.add_words(x, W::from_i64(offset.wrapping_neg()));
    let bits = bits_of(len as u128 - 1).max(1);
    let known = p.open_masked(&shifted, bits)?;
    let (onehot, rotation): (Option<Vec<W>>, Option<Vec<u128>>) = match known {
        Known::Opened(c) => {
            let mut e = vec![W::ZERO; n * len];
            for (i, c) in c.iter().enumerate() {
                e[i * len + (c % len as u128) as usize] = W::ONE;
            }
            (Some(e), None)
        }
        Known::Mask(r) => (None, Some(r.iter().map(|r| r % len as u128).collect())),
    };
    let e = p.share_from(OPENER, onehot.as_deref(), n * len)?;
    // T_r[j] = table[(j − r) mod len], known to the holders of component 0.
    let rotated: Option<Vec<W>> = rotation.map(|rot| {
        rot.par_iter()
            .flat_map_iter(|&r| {
                (0..len).map(move |j| W::from_i64(table[(j + len - r as usize) % len]))
            })
            .collect()
    });
    let t = p.known_to_comp(0, rotated.as_deref(), n * len);
    let z: Vec<W> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut acc = W::ZERO;
            for j in i * len..(i + 1) * len {
                let (u, v) = (e[j], t[j]);
                acc = acc.add(u.a.mul(v.a)).add(u.a.mul(v.b)).add(u.b.mul(v.a));
            }
            acc
        })
        .collect();
    p.reshare(z)
}
