//! Rounding of wide values by divisors that are not powers of two, where one selection's
//! multiply-shift (`v = y·⌈num·2^S/d⌉`, about twice as many bits as `y`) would not fit
//! the field: QDQ additions, whose exact rational rescales put 35–40-bit values over
//! 25-bit odd divisors.
//!
//! Round half to even is a sum of floors (`⌊a/d⌋` for an odd `d`, `a = w + (d − 1)/2`;
//! `⌊a/D⌋ + ⌊(a − d − 1)/D⌋ + 1` for an even one, `D = 2d`, `a = w + d/2`), and each
//! floor by `D` (`2^f ≤ D < 2^(f+1)`) is three narrow steps:
//!
//! 1. `t = ⌊a/2^f⌋`: a power-of-two rescale of `2a + 1 − 2^f` by `2^(f+1)` (never a tie);
//! 2. `r = round_half_even(t·2^f/D)`, on `t`'s few bits; as `t·2^f ≤ a < t·2^f + D`,
//!    `⌊a/D⌋` is `r − 1`, `r` or `r + 1`;
//! 3. `⌊a/D⌋ = r − 1 + [a ≥ r·D] + [a ≥ (r + 1)·D]`, two clamps of values within `±3D`.
//!
//! Only [`Protocol`] calls, so the parties and the cost formulas run the same steps.

use crate::planes::{Plane, PAD};
use crate::{Bounds, Protocol, ProtocolError, Requant};

type R<T> = Result<T, ProtocolError>;

/// The most bits of `t` the second step takes (its own multiply-shift doubles them).
const NARROW_BITS: u32 = 30;

fn bits(v: i128) -> u32 {
    128 - v.unsigned_abs().leading_zeros()
}

fn too_wide() -> ProtocolError {
    ProtocolError::Invalid(
        "shamir: a rescaled value does not fit the field with its statistical mask".into(),
    )
}

/// `round_half_even(x·num/d) + zp` for `x` in `b` (`num ≥ 0`), clamped to `[q.lo, q.hi]`.
pub fn requantize<P: Protocol>(p: &mut P, x: &P::Shares, q: &Requant, b: Bounds) -> R<P::Shares> {
    let len = x.len();
    let w = p.mul_public(x, &q.num);
    // Floors to take: (element, offset added to w, divisor).
    let mut items: Vec<(usize, i128, i128)> = Vec::new();
    for (i, &d) in q.den.iter().enumerate() {
        let d = d as i128;
        if d % 2 == 1 {
            items.push((i, (d - 1) / 2, d));
        } else {
            items.push((i, d / 2, 2 * d));
            items.push((i, d / 2 - d - 1, 2 * d));
        }
    }
    let fit = |v: i128| i64::try_from(v).map_err(|_| too_wide());
    let args = w.gather(&items.iter().map(|&(i, _, _)| i).collect::<Vec<_>>());
    let offsets: Vec<i64> = items.iter().map(|&(_, o, _)| fit(o)).collect::<R<_>>()?;
    let a = p.add_public(&args, &offsets);
    let (mut lo, mut hi) = (i128::MAX, i128::MIN);
    for &(i, o, _) in &items {
        let n = q.num[i] as i128;
        lo = lo.min(b.lo as i128 * n + o);
        hi = hi.max(b.hi as i128 * n + o);
    }
    let divisors: Vec<i128> = items.iter().map(|&(_, _, d)| d).collect();
    let floors = floor_div(p, &a, (lo, hi), &divisors)?;
    // q_i = Σ its floors + (count − 1) + zp; items of one element are adjacent.
    let (mut first, mut second) = (Vec::with_capacity(len), Vec::with_capacity(len));
    let mut extra = vec![0i64; len];
    let mut k = 0;
    while k < items.len() {
        let i = items[k].0;
        first.push(k);
        if items.get(k + 1).is_some_and(|it| it.0 == i) {
            second.push(k + 1);
            extra[i] = 1;
            k += 2;
        } else {
            second.push(PAD);
            k += 1;
        }
    }
    let (first, second) = (floors.gather(&first), floors.gather(&second));
    let rounded = p.add(&first, &second);
    let add: Vec<i64> = (0..len).map(|i| extra[i] + q.zp[i]).collect();
    let out = p.add_public(&rounded, &add);
    p.clamp(&out, q.lo, q.hi, q.mid_bounds(b, crate::TruncMode::Exact))
}

/// `⌊a_k/D_k⌋` for `a` within `(lo, hi)`.
fn floor_div<P: Protocol>(
    p: &mut P,
    a: &P::Shares,
    (lo, hi): (i128, i128),
    d: &[i128],
) -> R<P::Shares> {
    let n = a.len();
    let fit = |v: i128| i64::try_from(v).map_err(|_| too_wide());
    let f: Vec<u32> = d.iter().map(|&d| 127 - d.leading_zeros() - 1).collect();
    if f.iter().any(|&f| bits(hi - lo) > f + NARROW_BITS) {
        return Err(too_wide());
    }
    // 1. t = ⌊a/2^f⌋ = round_half_even((2a + 1 − 2^f)/2^(f+1)).
    let twice = p.mul_public(a, &vec![2; n]);
    let shift: Vec<i64> = f.iter().map(|&f| fit(1 - (1i128 << f))).collect::<R<_>>()?;
    let z = p.add_public(&twice, &shift);
    let f_max = f.iter().copied().max().unwrap_or(0);
    let zb = Bounds {
        lo: fit(2 * lo + 1 - (1i128 << f_max))?,
        hi: fit(2 * hi + 1)?,
    };
    let ones = vec![1i64; n];
    let pow: Vec<i64> = f.iter().map(|&f| fit(1i128 << (f + 1))).collect::<R<_>>()?;
    let t = p.rescale(&z, &ones, &pow, zb, crate::TruncMode::Exact)?;
    // 2. r = round_half_even(t·2^f/D).
    let f_min = f.iter().copied().min().unwrap_or(0);
    let tb = Bounds {
        lo: fit(lo
            .div_euclid(1i128 << f_min)
            .min(lo.div_euclid(1i128 << f_max)))?,
        hi: fit(hi
            .div_euclid(1i128 << f_min)
            .max(hi.div_euclid(1i128 << f_max)))?,
    };
    let half: Vec<i64> = f.iter().map(|&f| fit(1i128 << f)).collect::<R<_>>()?;
    let dd: Vec<i64> = d.iter().map(|&d| fit(d)).collect::<R<_>>()?;
    let r = p.rescale(&t, &half, &dd, tb, crate::TruncMode::Exact)?;
    // 3. u = a − r·D ∈ (−2D, 2D); ⌊a/D⌋ = r − 1 + [u ≥ 0] + [u − D ≥ 0].
    let rd = p.mul_public(&r, &dd);
    let u = p.sub(a, &rd);
    let neg_d: Vec<i64> = dd.iter().map(|&d| -d).collect();
    let u2 = p.add_public(&u, &neg_d);
    let both = P::Shares::concat(&[&u, &u2]);
    let plus_one = p.add_public(&both, &vec![1; 2 * n]);
    let d_max = d.iter().copied().max().unwrap_or(1);
    let ub = Bounds {
        lo: fit(-3 * d_max)?,
        hi: fit(2 * d_max + 1)?,
    };
    let g = p.clamp(&plus_one, 0, 1, ub)?;
    let g_sum = p.add(&g.slice(0..n), &g.slice(n..2 * n));
    let q = p.add(&r, &g_sum);
    Ok(p.add_public(&q, &vec![-1; n]))
}
