//! Exponential, reciprocal and softmax in fixed point, written once with the instructions
//! every protocol runs (products, fused requantizations, small public lookups), so every
//! protocol of the registry has them. Error bounds and costs: docs/training.md.
//!
//! Every clip below is on a value's true range, so it changes nothing but the bounds the
//! verifier can prove (interval arithmetic does not know that `y − round(y)` is at most
//! one half).

use super::emit::{Emit, R};
use petgraph::stable_graph::NodeIndex;

/// `round(v · 2^frac)`.
pub(crate) fn fixed(v: f64, frac: u32) -> i64 {
    (v * (1u64 << frac) as f64).round() as i64
}

/// Largest exponent input kept: `exp(d)` for `d < −24.5 / log2(e) ≈ −17` is below
/// `2^-24` and rounds to zero at 16 fractional bits.
const EXP2_FLOOR: f64 = 24.5;

/// `exp(d)` for `d ≤ 0` with `frac` fractional bits, in `[0, 1]`: `2^y` for
/// `y = d · log2(e)` split as `y = n + f` with `n = round(y)` (a public lookup of `2^n`)
/// and `|f| ≤ 1/2` (a degree-5 Taylor polynomial of `2^f`, error below 3.5e-6).
pub(crate) fn exp_nonpositive(e: &mut Emit, d: NodeIndex) -> R<NodeIndex> {
    let frac = e.frac(d);
    let one = 1i64 << frac;
    // y = d · log2(e), clipped to [−24.5, 0].
    let log2e = fixed(std::f64::consts::LOG2_E, 20);
    let y = e.requant(d, (log2e, 1 << 20), (-fixed(EXP2_FLOOR, frac), 0), frac)?;
    let n = e.rescale(y, (1, one), 0)?;
    let unit = e.konst(frac, &[1], vec![one]);
    let n_fx = e.mul(n, unit)?;
    let f = e.sub(y, n_fx)?;
    // f, f², f³, f⁴, f⁵ (three levels of products), each clipped to its true range.
    let sq = e.mul(f, f)?;
    let f2 = e.trunc(sq, frac, (0, one / 4))?;
    let cube = e.mul(f2, f)?;
    let f3 = e.trunc(cube, frac, (-one / 8, one / 8))?;
    let quad = e.mul(f2, f2)?;
    let f4 = e.trunc(quad, frac, (0, one / 16))?;
    let quint = e.mul(f4, f)?;
    let f5 = e.trunc(quint, frac, (-one / 32, one / 32))?;
    // Σ (ln 2)^k / k! · f^k, summed with 2·frac fractional bits, then truncated once.
    let mut coef = 1.0f64;
    let mut acc = e.konst(2 * frac, &[1], vec![one * one]);
    for (k, p) in [f, f2, f3, f4, f5].into_iter().enumerate() {
        coef *= std::f64::consts::LN_2 / (k + 1) as f64;
        let c = e.konst(frac, &[1], vec![fixed(coef, frac)]);
        let term = e.mul(p, c)?;
        acc = e.add(acc, term)?;
    }
    let p = e.trunc(acc, frac, (fixed(0.70, frac), fixed(1.42, frac)))?;
    // 2^n for every n the verifier allows (n ≥ −25; 2^1, and under probabilistic
    // truncation 2^2 and 2^−26, never happen but are in range).
    let (lo, hi) = (e.g.decl(n).lo, e.g.decl(n).hi);
    let table: Vec<i64> = (lo..=hi)
        .map(|n| fixed(2f64.powi(n as i32), frac))
        .collect();
    let pow = e.lookup(n, table, lo, frac)?;
    let prod = e.mul(pow, p)?;
    e.trunc(prod, frac, (0, one))
}

/// `1 / s` for `1 ≤ s ≤ smax` with `frac` fractional bits: a public table of `1 / (k/16)`
/// at `k = round(16 s)` (relative error at most 1/32), then two Newton steps
/// `r ← r (2 − s r)` (error below 1e-6 before the last rounding).
pub(crate) fn reciprocal(e: &mut Emit, s: NodeIndex, smax: f64) -> R<NodeIndex> {
    let frac = e.frac(s);
    let one = 1i64 << frac;
    let k = e.rescale(s, (1, one / 16), 0)?;
    let (lo, hi) = (e.g.decl(k).lo, e.g.decl(k).hi);
    let table: Vec<i64> = (lo..=hi)
        .map(|k| fixed(1.0 / (k as f64 / 16.0).max(1.0), frac))
        .collect();
    let mut r = e.lookup(k, table, lo, frac)?;
    let two = e.konst(frac, &[1], vec![2 * one]);
    for _ in 0..2 {
        let sr = e.mul(s, r)?;
        let t = e.trunc(sr, frac, (0, 2 * one))?;
        let u = e.sub(two, t)?;
        let ru = e.mul(r, u)?;
        r = e.trunc(ru, frac, (fixed(1.0 / smax, frac) / 2, one))?;
    }
    Ok(r)
}

/// `1 / √m` for `1 ≤ m ≤ 2` with `frac` fractional bits: a public table of `1 / √(k/16)`
/// at `k = round(16 m)` (relative error below 1.6 %), then two Newton steps
/// `r ← r (3 − m r²) / 2`, each squaring the relative error (times 3/2): below 1e-6
/// before the last rounding.
pub(crate) fn rsqrt_mantissa(e: &mut Emit, m: NodeIndex) -> R<NodeIndex> {
    let frac = e.frac(m);
    let one = 1i64 << frac;
    let k = e.rescale(m, (1, one / 16), 0)?;
    let (lo, hi) = (e.g.decl(k).lo, e.g.decl(k).hi);
    let table: Vec<i64> = (lo..=hi)
        .map(|k| fixed(1.0 / (k as f64 / 16.0).clamp(1.0, 2.0).sqrt(), frac))
        .collect();
    let mut r = e.lookup(k, table, lo, frac)?;
    let three = e.konst(frac, &[1], vec![3 * one]);
    // r stays in [1/√2 − 1 %, 1 + 1 %] all along.
    let (rlo, rhi) = (fixed(0.70, frac), fixed(1.01, frac));
    for _ in 0..2 {
        let sq = e.mul(r, r)?;
        let r2 = e.trunc(sq, frac, (fixed(0.49, frac), fixed(1.03, frac)))?;
        let mr = e.mul(m, r2)?;
        let mr2 = e.trunc(mr, frac, (fixed(0.9, frac), fixed(1.1, frac)))?;
        let h = e.sub(three, mr2)?;
        let rh = e.mul(r, h)?;
        r = e.requant(rh, (1, 2 * one), (rlo, rhi), frac)?;
    }
    Ok(r)
}

/// A column of values `v` (`[n, 1]`, integers below `2^octaves`) as `2^j · mantissa`:
/// the one-hot octave `j` (`[n, octaves]`) and the mantissa in `[1, 2]` with 16
/// fractional bits (`v < 1` reads as 1, octave 0).
pub(crate) struct Normalized {
    pub onehot: NodeIndex,
    pub mant: NodeIndex,
}

/// Normalize the column `v` ([`Normalized`]): `octaves − 1` comparisons per value in one
/// call, then the mantissa through the one-hot vector (one product round): low octaves
/// are exact products of `v` clipped to `2^17`, high ones rounding divisions.
pub(crate) fn normalize(e: &mut Emit, v: NodeIndex, octaves: usize) -> R<Normalized> {
    const MANT_FRAC: u32 = 16;
    let onehot = octave(e, v, octaves)?;
    let unit = 1i64 << MANT_FRAC;
    let low = e.clamp(v, 0, 2 * unit)?;
    let ups: Vec<i64> = (0..=MANT_FRAC).map(|j| 1i64 << (MANT_FRAC - j)).collect();
    let ups = e.konst(0, &[1, ups.len()], ups);
    let up = e.mul(low, ups)?;
    let up = e.cast(up, MANT_FRAC)?;
    let dens: Vec<i64> = (MANT_FRAC as usize + 1..octaves)
        .map(|j| 1i64 << (j - MANT_FRAC as usize))
        .collect();
    let width = dens.len();
    let down = columns(
        e,
        v,
        vec![1; width],
        dens,
        (0, 1 << (octaves - 1)),
        MANT_FRAC,
    )?;
    let cols = e.concat(&[up, down], 1)?;
    let picked = e.mul(onehot, cols)?;
    let mant = e.sum_cols(picked)?;
    let mant = e.requant(mant, (1, 1), (unit, 2 * unit), MANT_FRAC)?;
    Ok(Normalized { onehot, mant })
}

/// `1 / √v` for the column `v` (`[n, 1]`, `frac(v)` fractional bits, integers below
/// `2^octaves`; values below `2^-frac(v)` read as that), with 16 fractional bits:
/// `2^((frac − j)/2) / √mantissa`, the factor a public product through the one-hot
/// vector. Relative error below 1e-4 (the factor's 16 bits), see docs/training.md.
pub(crate) fn rsqrt(e: &mut Emit, v: NodeIndex, octaves: usize) -> R<NodeIndex> {
    let vfrac = e.frac(v) as f64;
    let Normalized { onehot, mant } = normalize(e, v, octaves)?;
    let r = rsqrt_mantissa(e, mant)?;
    const F: u32 = 16;
    let f: Vec<i64> = (0..octaves)
        .map(|j| fixed(2f64.powf((vfrac - j as f64) / 2.0), F))
        .collect();
    let top = f[0];
    let fk = e.konst(F, &[octaves, 1], f);
    let factor = e.matmul(onehot, fk)?;
    let y = e.mul(r, factor)?;
    e.trunc(y, F, (0, top))
}

/// The column `x` (`[n, 1]`) requantized once per column of `nums` / `dens` (`[n, k]`),
/// to `frac` fractional bits within `[lo, hi]`: a value times a factor per octave.
pub(crate) fn columns(
    e: &mut Emit,
    x: NodeIndex,
    nums: Vec<i64>,
    dens: Vec<i64>,
    (lo, hi): (i64, i64),
    frac: u32,
) -> R<NodeIndex> {
    let k = nums.len();
    // A requantization keeps its operand's shape: widen `x` to the columns first.
    let ones = e.konst(0, &[1, k], vec![1; k]);
    let wide = e.mul(x, ones)?;
    let (nums, dens) = (e.konst(0, &[1, k], nums), e.konst(0, &[1, k], dens));
    e.requant_by(wide, (nums, dens), (lo, hi), frac)
}

/// The one-hot octave of the column `v`'s integers (`[n, 1]` → `[n, octaves]`): column
/// `j` is 1 where `2^j ≤ v < 2^(j+1)`, column 0 also for `v < 1`.
fn octave(e: &mut Emit, v: NodeIndex, octaves: usize) -> R<NodeIndex> {
    let frac = e.frac(v);
    // b_j = [v ≥ 2^j] for j = 1..octaves−1: clip(v − 2^j + 1, 0, 1).
    let thresholds: Vec<i64> = (1..octaves).map(|j| 1 - (1i64 << j)).collect();
    let t = e.konst(frac, &[1, octaves - 1], thresholds);
    let shifted = e.add(v, t)?;
    let bits = e.requant(shifted, (1, 1), (0, 1), 0)?;
    // onehot_j = b_j − b_{j+1} with b_0 = 1 and b_octaves = 0 (column k of `bits` is
    // b_{k+1}), from slices so the verifier sees every entry within [−1, 1].
    let n = e.dims(v)[0];
    let last = octaves - 2;
    let lower = e.slice(bits, &[0, 0], &[1, 1], &[n, last])?;
    let upper = e.slice(bits, &[0, 1], &[1, 1], &[n, last])?;
    let middle = e.sub(lower, upper)?;
    let b1 = e.slice(bits, &[0, 0], &[1, 1], &[n, 1])?;
    let one = e.konst(0, &[1, 1], vec![1]);
    let first = e.sub(one, b1)?;
    let top = e.slice(bits, &[0, last], &[1, 1], &[n, 1])?;
    e.concat(&[first, middle, top], 1)
}

/// A softmax and the parts the cross-entropy needs: `p = exp(z − max) / sum`.
pub(crate) struct Softmax {
    pub p: NodeIndex,
    /// Each row's maximum (`[n, 1]`).
    pub max: NodeIndex,
    /// Each row's `Σ exp(z − max)`, in `[1, c]` (`[n, 1]`).
    pub sum: NodeIndex,
}

/// `ln s` for `1 ≤ s ≤ smax` with `frac` fractional bits: `k = round(16 s)`, public tables
/// of `ln(k/16)` and `16/k`, then `ln(1 + u)` for `u = s·16/k − 1` (`|u| ≤ 1/32`) by its
/// degree-3 Taylor polynomial (error below 2.5e-7).
pub(crate) fn ln_range(e: &mut Emit, s: NodeIndex) -> R<NodeIndex> {
    let frac = e.frac(s);
    let one = 1i64 << frac;
    let k = e.rescale(s, (1, one / 16), 0)?;
    // Values below 1 (never, but the bounds allow them) read as 1.
    let (lo, hi) = (e.g.decl(k).lo, e.g.decl(k).hi);
    let at = |k: i64| k.max(16) as f64 / 16.0;
    let ln: Vec<i64> = (lo..=hi).map(|k| fixed(at(k).ln(), frac)).collect();
    let inv: Vec<i64> = (lo..=hi).map(|k| fixed(1.0 / at(k), frac)).collect();
    let base = e.lookup(k, ln, lo, frac)?;
    let scale = e.lookup(k, inv, lo, frac)?;
    let t = e.mul(s, scale)?;
    let u1 = e.trunc(t, frac, (one - one / 16, one + one / 16))?;
    let unit = e.konst(frac, &[1], vec![one]);
    let u = e.sub(u1, unit)?;
    let sq = e.mul(u, u)?;
    let u2 = e.trunc(sq, frac, (0, one / 256))?;
    let cube = e.mul(u2, u)?;
    let u3 = e.trunc(cube, frac, (-one / 4096, one / 4096))?;
    // u − u²/2 + u³/3, then ln(k/16).
    let half = e.rescale(u2, (1, 2), frac)?;
    let third = e.rescale(u3, (1, 3), frac)?;
    let a = e.sub(u, half)?;
    let b = e.add(a, third)?;
    e.add(base, b)
}

/// Softmax along the last axis of the matrix `z` (`[n, c]`), with the row maximum
/// subtracted first so that every exponent is at most zero and the sum is in `[1, c]`.
pub(crate) fn softmax(e: &mut Emit, z: NodeIndex) -> R<NodeIndex> {
    Ok(softmax_parts(e, z)?.p)
}

/// [`softmax`], with the row maxima and sums.
pub(crate) fn softmax_parts(e: &mut Emit, z: NodeIndex) -> R<Softmax> {
    let frac = e.frac(z);
    let one = 1i64 << frac;
    let d = e.dims(z);
    let (n, c) = (d[0], d[1]);
    let z4 = e.reshape(z, &[n, 1, 1, c])?;
    let m4 = e.maxpool(z4, [1, c], [1, c])?;
    let m = e.reshape(m4, &[n, 1])?;
    let shifted = e.sub(z, m)?;
    let ex = exp_nonpositive(e, shifted)?;
    let s = e.sum_cols(ex)?;
    let r = reciprocal(e, s, c as f64)?;
    let p = e.mul(ex, r)?;
    let p = e.trunc(p, frac, (0, one))?;
    Ok(Softmax { p, max: m, sum: s })
}
