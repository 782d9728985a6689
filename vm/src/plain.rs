//! `convrequant` on plaintext values in one pass: for a protocol whose shares are the
//! values themselves (`clear`: [`Core::values`]), a convolution goes straight into its
//! requantization, channel by channel, without the general path's copies — the
//! parameters and the bias broadcast to every element, the product and the sum as
//! tensors of their own, and a depthwise convolution's columns (`kh·kw` copies of its
//! input, read by a product whose blocks are a single row).
//!
//! The result is the definition's, element for element: the product wraps in Z_2^64 as
//! [`qmpc_protocols::gemm::gemm_i64`] does, the bias is added wrapping, and each element
//! goes through [`Requant::apply`] with its channel's parameters.
//!
//! [`Core::values`]: qmpc_protocols::Core::values

use crate::tensor::Window;
use qmpc_protocols::{gemm, MatDims, Requant};
use rayon::prelude::*;

/// A requantization whose parameters (and bias) vary at most along the channel axis of
/// its `[N, M, OH, OW]` output: entry `c` of each vector is channel `c`'s.
pub(crate) struct ChannelRequant {
    pub bias: Vec<i64>,
    pub q: Requant,
}

/// `t`'s values per channel of `out` (`[N, M, ...]`) where `t` broadcast to `out` varies
/// along the channel axis only, else `None`.
pub(crate) fn per_channel(t_dims: &[usize], t: &[i64], out: &[usize]) -> Option<Vec<i64>> {
    if t_dims.len() > out.len() || out.len() < 2 {
        return None;
    }
    let lead = out.len() - t_dims.len();
    let dim = |a: usize| a.checked_sub(lead).map_or(1, |i| t_dims[i]);
    let only_channels = (0..out.len()).all(|a| a == 1 || dim(a) == 1 || out[a] == 1);
    if !only_channels || t.len() != t_dims.iter().product::<usize>() {
        return None;
    }
    let m = out[1];
    match dim(1) {
        1 => t.first().map(|&v| vec![v; m]),
        d if d == m => {
            // The other axes are of length 1 in `t` or in `out`: where `out`'s is 1 and
            // `t`'s is too, `t` holds one value per channel in order.
            (t.len() == m).then(|| t.to_vec())
        }
        _ => None,
    }
}

/// One channel's requantization ([`Requant::apply`]) with its division prepared. A
/// power-of-two divisor (every GEMM multiplier) is a shift of a 64-bit product wherever
/// that product cannot overflow; otherwise the quotient comes from one floating-point
/// estimate, and only where it can land inside the clamp is it made exact (a correction
/// by the remainder, in integers) — no 64- or 128-bit division per element.
struct ChannelQ<'q> {
    q: &'q Requant,
    ch: usize,
    num: i64,
    den: i64,
    zp: i64,
    lo: i64,
    hi: i64,
    /// `num / den`, and the estimates beyond which the clamp decides: `None` where the
    /// reference runs (clamp bounds too wide for the estimate's margin).
    fast: Option<(f64, f64, f64)>,
    /// `den = 2^s`: `s`, and the largest `|x|` whose `x·num + den/2` stays under 2^63.
    shift: Option<(u32, u64)>,
}

impl<'q> ChannelQ<'q> {
    /// The estimate is trusted to within one only below this magnitude; beyond the
    /// clamp's margin its relative error (a few 2^-53) cannot cross it.
    const EXACT_BELOW: i64 = 1 << 40;

    fn new(q: &'q Requant, ch: usize) -> Self {
        let (num, den, zp) = (q.num[ch], q.den[ch], q.zp[ch]);
        let (t_lo, t_hi) = (q.lo.checked_sub(zp), q.hi.checked_sub(zp));
        let fast = match (t_lo, t_hi) {
            (Some(a), Some(b))
                if den > 0 && a.abs() < Self::EXACT_BELOW && b.abs() < Self::EXACT_BELOW =>
            {
                Some((num as f64 / den as f64, a as f64 - 2.0, b as f64 + 2.0))
            }
            _ => None,
        };
        // `|x·num| ≤ 2^62` and `den/2 ≤ 2^61`: the rounding's sum cannot overflow.
        let shift = (den > 0 && den.count_ones() == 1 && den <= 1 << 62).then(|| {
            let x_max = (1u64 << 62)
                .checked_div(num.unsigned_abs())
                .unwrap_or(u64::MAX);
            (den.trailing_zeros(), x_max)
        });
        ChannelQ {
            q,
            ch,
            num,
            den,
            zp,
            lo: q.lo,
            hi: q.hi,
            fast,
            shift,
        }
    }

    #[inline(always)]
    fn apply(&self, x: i64) -> i64 {
        match self.shift {
            Some((s, x_max)) if x.unsigned_abs() <= x_max => {
                // Round half up by adding half the divisor, then back to even at an exact
                // tie (nothing left below the shift) whose quotient came out odd.
                let t = x * self.num + (self.den >> 1);
                let q = t >> s;
                let tie = s > 0 && t & (self.den - 1) == 0;
                let q = q - i64::from(tie & (q & 1 == 1));
                q.saturating_add(self.zp).clamp(self.lo, self.hi)
            }
            _ => self.apply_estimated(x),
        }
    }

    #[inline(never)]
    fn apply_estimated(&self, x: i64) -> i64 {
        let Some((ratio, below, above)) = self.fast else {
            return self.q.apply(self.ch, x);
        };
        // `x·(num/den)` in floating point: the product often passes 64 bits, and a
        // 128-bit conversion is a library call.
        let est = x as f64 * ratio;
        if est.abs() >= 4e18 {
            // Near 2^63 the reference's quotient wraps as it leaves i64: its own way.
            return self.q.apply(self.ch, x);
        }
        // Far outside: the rounded quotient plus the zero point is past the bound (the
        // estimate, four roundings, is within a relative 2^-50 of the quotient, and the
        // bounds are small).
        if est > above {
            return self.hi;
        }
        if est < below {
            return self.lo;
        }
        // Inside (|est| < 2^40 + 2): truncated, the floor is off by at most one; the
        // remainder says which way.
        let q0 = est as i64;
        let r0 = if self.den <= 1 << 61 {
            // The remainder is within (−2·den, 2·den): exact in wrapping 64-bit
            // arithmetic, whatever the product's width.
            i128::from(
                x.wrapping_mul(self.num)
                    .wrapping_sub(q0.wrapping_mul(self.den)),
            )
        } else {
            i128::from(x) * i128::from(self.num) - i128::from(q0) * i128::from(self.den)
        };
        let (den, mut q, mut r) = (i128::from(self.den), i128::from(q0), r0);
        while r < 0 {
            q -= 1;
            r += den;
        }
        while r >= den {
            q += 1;
            r -= den;
        }
        if 2 * r > den || (2 * r == den && q & 1 == 1) {
            q += 1;
        }
        (q as i64).saturating_add(self.zp).clamp(self.lo, self.hi)
    }
}

/// The wrapping integer lanes a convolution accumulates in: 32 bits where no partial sum
/// can leave their range, 64 otherwise.
trait Lane: Copy + Default + Send + Sync {
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn widen(self) -> i64;
}

impl Lane for i32 {
    fn mul_add(self, a: Self, b: Self) -> Self {
        self.wrapping_add(a.wrapping_mul(b))
    }
    fn widen(self) -> i64 {
        i64::from(self)
    }
}

impl Lane for i64 {
    fn mul_add(self, a: Self, b: Self) -> Self {
        self.wrapping_add(a.wrapping_mul(b))
    }
    fn widen(self) -> i64 {
        self
    }
}

/// A tensor's values, row-major, borrowed.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub dims: &'a [usize],
    pub data: &'a [i64],
}

/// `requant(conv(x, w) + bias)` with `x` `[N, C, H, W]`, `w` `[M, C/group, kh, kw]` and
/// the output `[N, M, OH, OW]` (row-major); the bare convolution where `per` is `None`.
pub(crate) fn conv_requant(
    x: View<'_>,
    w: View<'_>,
    win: &Window,
    group: usize,
    per: Option<&ChannelRequant>,
) -> Result<Vec<i64>, String> {
    if x.dims.len() != 4 || w.dims.len() != 4 {
        return Err(format!("a 2-D convolution of {:?} by {:?}", x.dims, w.dims));
    }
    let (n, c, h, wd) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let m = w.dims[0];
    let kk = win.kernel[0] * win.kernel[1];
    let (oh, ow) = win
        .out_hw(h, wd)
        .ok_or("convolution window larger than the input")?;
    if group == 0 || !c.is_multiple_of(group) || !m.is_multiple_of(group) || w.dims[1] * group != c
    {
        return Err(format!(
            "weights {:?} do not fit an input of {c} channels in {group} groups",
            w.dims
        ));
    }
    if per.is_some_and(|p| p.bias.len() != m || p.q.num.len() != m) {
        return Err(format!(
            "requantization parameters for {m} channels expected"
        ));
    }
    let k = w.dims[1] * kk;
    let geometry = Geometry {
        c,
        h,
        w: wd,
        m,
        group,
        oh,
        ow,
        win: *win,
    };
    if x.data.len() != n * c * h * wd || w.data.len() != m * k {
        return Err("convolution operands do not hold their shapes' elements".into());
    }
    let mut out = vec![0i64; n * m * oh * ow];
    if w.dims[1] == 1 {
        // Each output channel reads one input channel: taps straight from the input.
        let max_abs = |v: &[i64]| v.par_iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
        let narrow = u128::from(max_abs(x.data)) * u128::from(max_abs(w.data)) * k as u128;
        if narrow < 1 << 31 {
            let (x, w) = (narrowed(x.data), narrowed(w.data));
            depthwise::<i32>(&x, &w, &geometry, per, &mut out);
        } else {
            depthwise::<i64>(x.data, w.data, &geometry, per, &mut out);
        }
    } else {
        by_blocks(x, w, &geometry, per, &mut out)?;
    }
    Ok(out)
}

/// `x` (`[N, M, ...]`) requantized element by element with its channel's parameters
/// (`q`'s vectors have one entry per channel).
pub(crate) fn requantize(x: View<'_>, q: &Requant) -> Vec<i64> {
    let inner: usize = x.dims[2..].iter().product();
    let m = x.dims[1];
    let mut out = vec![0i64; x.data.len()];
    if inner == 0 {
        return out;
    }
    out.par_chunks_mut(inner)
        .zip(x.data.par_chunks(inner))
        .enumerate()
        .with_min_len((1 << 12) / inner.max(1) + 1)
        .for_each(|(plane, (o, v))| {
            let cq = ChannelQ::new(q, plane % m);
            for (o, &v) in o.iter_mut().zip(v) {
                *o = cq.apply(v);
            }
        });
    out
}

/// How an operand of an element-wise operation meets its output `[N, M, ...]`: its own
/// values in the output's order, one value for all, or one value per channel.
pub(crate) enum Spread<'a> {
    Same(&'a [i64]),
    One(i64),
    Channels(Vec<i64>),
}

/// A plane's worth of one operand: a slice of it, or one value.
enum Row<'a> {
    Slice(&'a [i64]),
    Value(i64),
}

impl<'a> Spread<'a> {
    /// `v` broadcast to `out`, read in place; `None` where it is none of the three.
    pub(crate) fn of(v: View<'a>, out: &[usize]) -> Option<Spread<'a>> {
        let n: usize = out.iter().product();
        let lead = out.len().checked_sub(v.dims.len())?;
        let aligned = out[..lead].iter().all(|&d| d == 1) && v.dims == &out[lead..];
        if aligned && v.data.len() == n {
            return Some(Spread::Same(v.data));
        }
        if let [one] = v.data {
            return Some(Spread::One(*one));
        }
        per_channel(v.dims, v.data, out).map(Spread::Channels)
    }

    /// Its elements in plane `plane` (channel `ch`) of `inner` elements.
    fn row(&self, plane: usize, ch: usize, inner: usize) -> Row<'_> {
        match self {
            Spread::Same(d) => Row::Slice(&d[plane * inner..(plane + 1) * inner]),
            Spread::One(v) => Row::Value(*v),
            Spread::Channels(c) => Row::Value(c[ch]),
        }
    }
}

/// `f(a, b)` element by element over an output of shape `out`, its planes (the axes after
/// the channel) in parallel: no operand is broadcast to a tensor of its own.
pub(crate) fn zip_spread(
    a: &Spread<'_>,
    b: &Spread<'_>,
    out: &[usize],
    f: impl Fn(i64, i64) -> i64 + Sync,
) -> Vec<i64> {
    let len: usize = out.iter().product();
    let (m, inner) = match out {
        [_, m, rest @ ..] => (*m, rest.iter().product()),
        _ => (1, len),
    };
    let mut o = vec![0i64; len];
    if len == 0 || inner == 0 {
        return o;
    }
    o.par_chunks_mut(inner)
        .enumerate()
        .with_min_len((1 << 12) / inner + 1)
        .for_each(|(plane, o)| {
            let ch = plane % m;
            match (a.row(plane, ch, inner), b.row(plane, ch, inner)) {
                (Row::Slice(x), Row::Slice(y)) => {
                    for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                        *o = f(x, y);
                    }
                }
                (Row::Slice(x), Row::Value(y)) => {
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = f(x, y);
                    }
                }
                (Row::Value(x), Row::Slice(y)) => {
                    for (o, &y) in o.iter_mut().zip(y) {
                        *o = f(x, y);
                    }
                }
                (Row::Value(x), Row::Value(y)) => o.fill(f(x, y)),
            }
        });
    o
}

/// The maximum of each window of `x` (`[N, C, H, W]`), padding never winning; the output
/// `[N, C, OH, OW]`.
pub(crate) fn max_pool(x: View<'_>, win: &Window) -> Result<Vec<i64>, String> {
    if x.dims.len() != 4 || x.data.len() != x.dims.iter().product::<usize>() {
        return Err(format!("pooling needs [N,C,H,W], has {:?}", x.dims));
    }
    let (h, w) = (x.dims[2], x.dims[3]);
    let (oh, ow, plan) = win
        .gather_plan(h, w)
        .ok_or("pooling window larger than the input")?;
    let kk = win.kernel[0] * win.kernel[1];
    if plan
        .chunks(kk.max(1))
        .any(|taps| taps.iter().all(Option::is_none))
    {
        return Err("empty pooling window".into());
    }
    let mut out = vec![0i64; x.dims[0] * x.dims[1] * oh * ow];
    if h * w == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(oh * ow)
        .zip(x.data.par_chunks(h * w))
        .for_each(|(o, plane)| {
            for (v, taps) in o.iter_mut().zip(plan.chunks(kk)) {
                *v = taps.iter().flatten().map(|&i| plane[i]).max().unwrap_or(0);
            }
        });
    Ok(out)
}

/// The shape of one convolution.
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    group: usize,
    oh: usize,
    ow: usize,
    win: Window,
}

fn narrowed(v: &[i64]) -> Vec<i32> {
    v.par_iter().map(|&x| x as i32).collect()
}

/// Accumulators `acc` of channel `ch` into `out`: requantized as the channel where `per`
/// says so, else as they are.
fn requantize_into(
    acc: impl Iterator<Item = i64>,
    ch: usize,
    per: Option<&ChannelRequant>,
    out: &mut [i64],
) {
    let Some(per) = per else {
        for (o, v) in out.iter_mut().zip(acc) {
            *o = v;
        }
        return;
    };
    let (bias, cq) = (per.bias[ch], ChannelQ::new(&per.q, ch));
    for (o, v) in out.iter_mut().zip(acc) {
        *o = cq.apply(v.wrapping_add(bias));
    }
}

/// A convolution whose every output channel reads a single input channel, one output
/// plane at a time: each kernel tap adds its weight times a shifted (strided) run of the
/// input row to the plane's accumulator.
fn depthwise<L: Lane>(
    x: &[L],
    w: &[L],
    g: &Geometry,
    per: Option<&ChannelRequant>,
    out: &mut [i64],
) {
    let (ohw, kk) = (g.oh * g.ow, g.win.kernel[0] * g.win.kernel[1]);
    let per_group = g.m / g.group;
    out.par_chunks_mut(ohw).enumerate().for_each(|(plane, o)| {
        let (b, ch) = (plane / g.m, plane % g.m);
        let input = b * g.c + ch / per_group;
        let xp = &x[input * g.h * g.w..(input + 1) * g.h * g.w];
        let taps = &w[ch * kk..(ch + 1) * kk];
        let mut acc = vec![L::default(); ohw];
        for (t, &wv) in taps.iter().enumerate() {
            let (ky, kx) = (t / g.win.kernel[1], t % g.win.kernel[1]);
            let dy = (ky * g.win.dilations[0]) as isize - g.win.pads[0] as isize;
            let dx = (kx * g.win.dilations[1]) as isize - g.win.pads[1] as isize;
            let sx = g.win.strides[1];
            // The outputs whose input column `ox·sx + dx` lies in `0..w`.
            let first = if dx >= 0 {
                0
            } else {
                ((-dx) as usize).div_ceil(sx)
            };
            let last = match usize::try_from(g.w as isize - 1 - dx) {
                Ok(span) => (span / sx + 1).min(g.ow),
                Err(_) => 0,
            };
            for oy in 0..g.oh {
                let iy = (oy * g.win.strides[0]) as isize + dy;
                if iy < 0 || iy as usize >= g.h || first >= last {
                    continue;
                }
                let row = &xp[iy as usize * g.w..(iy as usize + 1) * g.w];
                let dst = &mut acc[oy * g.ow + first..oy * g.ow + last];
                let start = (first * sx) as isize + dx;
                if sx == 1 {
                    let src = &row[start as usize..start as usize + dst.len()];
                    for (a, &v) in dst.iter_mut().zip(src) {
                        *a = a.mul_add(wv, v);
                    }
                } else {
                    let src = row[start as usize..].iter().step_by(sx);
                    for (a, &v) in dst.iter_mut().zip(src) {
                        *a = a.mul_add(wv, v);
                    }
                }
            }
        }
        requantize_into(acc.into_iter().map(L::widen), ch, per, o);
    });
}

/// A convolution as one product per (sample, group) block: `[M/G, K]` weights times the
/// block's `[K, OH·OW]` columns (the input itself for a pointwise window), then each
/// output row requantized as its channel.
fn by_blocks(
    x: View<'_>,
    w: View<'_>,
    g: &Geometry,
    per: Option<&ChannelRequant>,
    out: &mut [i64],
) -> Result<(), String> {
    let (cg, mg, ohw) = (g.c / g.group, g.m / g.group, g.oh * g.ow);
    let kk = g.win.kernel[0] * g.win.kernel[1];
    let k = cg * kk;
    let pointwise = g.win.kernel == [1, 1] && g.win.strides == [1, 1] && g.win.pads == [0; 4];
    let plan = if pointwise {
        None
    } else {
        Some(
            g.win
                .gather_plan(g.h, g.w)
                .ok_or("convolution window larger than the input")?
                .2,
        )
    };
    let n = x.dims[0];
    for b in 0..n {
        for gi in 0..g.group {
            let first_in = (b * g.c + gi * cg) * g.h * g.w;
            let inputs = &x.data[first_in..first_in + cg * g.h * g.w];
            let cols: std::borrow::Cow<'_, [i64]> = match &plan {
                None => inputs.into(),
                Some(plan) => columns(inputs, plan, cg, kk, ohw, g.h * g.w).into(),
            };
            let weights = &w.data[gi * mg * k..(gi + 1) * mg * k];
            let dims = MatDims {
                batch: 1,
                m: mg,
                k,
                n: ohw,
                a_batched: false,
                b_batched: false,
            };
            let first_out = (b * g.m + gi * mg) * ohw;
            let rows = out[first_out..first_out + mg * ohw].par_chunks_mut(ohw);
            match gemm::gemm_narrow(weights, &cols, dims) {
                Some(product) => {
                    rows.zip(product.par_chunks(ohw))
                        .enumerate()
                        .for_each(|(row, (o, p))| {
                            requantize_into(p.iter().map(|&v| i64::from(v)), gi * mg + row, per, o)
                        })
                }
                None => {
                    let product = gemm::gemm(weights, &cols, dims);
                    rows.zip(product.par_chunks(ohw))
                        .enumerate()
                        .for_each(|(row, (o, p))| {
                            requantize_into(p.iter().copied(), gi * mg + row, per, o)
                        })
                }
            }
        }
    }
    Ok(())
}

/// The `[cg·kk, ohw]` columns of `cg` input planes of `hw` elements each, by the window's
/// gather plan (`[ohw][kk]`, `None` reading zero).
fn columns(
    planes: &[i64],
    plan: &[Option<usize>],
    cg: usize,
    kk: usize,
    ohw: usize,
    hw: usize,
) -> Vec<i64> {
    let mut cols = vec![0i64; cg * kk * ohw];
    cols.par_chunks_mut(ohw).enumerate().for_each(|(r, row)| {
        let (ci, t) = (r / kk, r % kk);
        let plane = &planes[ci * hw..(ci + 1) * hw];
        for (o, v) in row.iter_mut().enumerate() {
            if let Some(i) = plan[o * kk + t] {
                *v = plane[i];
            }
        }
    });
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition: one wrapping dot product per output, the bias added wrapping, then
    /// the channel's requantization.
    fn reference(
        x: View<'_>,
        w: View<'_>,
        win: &Window,
        group: usize,
        per: Option<&ChannelRequant>,
    ) -> Vec<i64> {
        let (n, c, h, wd) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
        let (m, cg) = (w.dims[0], w.dims[1]);
        let (kh, kw) = (win.kernel[0], win.kernel[1]);
        let (oh, ow) = win.out_hw(h, wd).unwrap();
        let mut out = Vec::new();
        for b in 0..n {
            for oc in 0..m {
                let g = oc / (m / group);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0i64;
                        for ci in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * win.strides[0] + ky * win.dilations[0]) as isize
                                        - win.pads[0] as isize;
                                    let ix = (ox * win.strides[1] + kx * win.dilations[1]) as isize
                                        - win.pads[1] as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                                        continue;
                                    }
                                    let xi = ((b * c + g * cg + ci) * h + iy as usize) * wd
                                        + ix as usize;
                                    let wi = ((oc * cg + ci) * kh + ky) * kw + kx;
                                    s = s.wrapping_add(w.data[wi].wrapping_mul(x.data[xi]));
                                }
                            }
                        }
                        out.push(per.map_or(s, |p| p.q.apply(oc, s.wrapping_add(p.bias[oc]))));
                    }
                }
            }
        }
        out
    }

    /// A xorshift stream from `seed` of values in `-bound..=bound`.
    fn values_within(seed: u64) -> impl FnMut(i64) -> i64 {
        let mut s = seed | 1;
        move |bound: i64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % (2 * bound as u64 + 1)) as i64 - bound
        }
    }

    /// One convolution's shape: samples, groups, input and output channels per group,
    /// the input's height and width, and its window.
    #[derive(Debug, Clone)]
    struct Case {
        n: usize,
        g: usize,
        cg: usize,
        mg: usize,
        h: usize,
        w: usize,
        win: Window,
    }

    fn cases() -> impl Strategy<Value = Case> {
        let window = (
            (1usize..4, 1usize..4),
            (1usize..3, 1usize..4),
            (0usize..3, 0usize..3, 0usize..3, 0usize..3),
            (1usize..3, 1usize..3),
        )
            .prop_map(|((kh, kw), (sy, sx), (p0, p1, p2, p3), (dy, dx))| Window {
                kernel: [kh, kw],
                strides: [sy, sx],
                pads: [p0, p1, p2, p3],
                dilations: [dy, dx],
            });
        (
            1usize..3,
            1usize..4,
            1usize..3,
            1usize..3,
            1usize..8,
            1usize..8,
            window,
        )
            .prop_map(|(n, g, cg, mg, h, w, win)| Case {
                n,
                g,
                cg,
                mg,
                h,
                w,
                win,
            })
    }

    proptest! {
        /// Depthwise (one input channel per group) and general blocks, narrow (32-bit
        /// lanes) and wide values, padding, strides and dilations all equal the
        /// definition.
        #[test]
        fn conv_requant_equals_the_definition(
            case in cases(),
            wide in any::<bool>(),
            seed in any::<u64>(),
            (lo, span) in (-300i64..0, 1i64..600),
        ) {
            let Case { n, g, cg, mg, h, w: wd, win } = case;
            let kernel = win.kernel;
            prop_assume!(win.out_hw(h, wd).is_some());
            let (c, m) = (g * cg, g * mg);
            let mut next = values_within(seed);
            let bound = if wide { 1 << 40 } else { 100 };
            let x: Vec<i64> = (0..n * c * h * wd).map(|_| next(bound)).collect();
            let w: Vec<i64> = (0..m * cg * kernel[0] * kernel[1]).map(|_| next(bound)).collect();
            let per = ChannelRequant {
                bias: (0..m).map(|_| next(1000)).collect(),
                q: Requant {
                    num: (0..m).map(|_| next(60)).collect(),
                    den: (0..m).map(|_| 1 + next(300).abs()).collect(),
                    zp: (0..m).map(|_| next(20)).collect(),
                    lo,
                    hi: lo + span,
                },
            };
            let xv = View { dims: &[n, c, h, wd], data: &x };
            let wv = View { dims: &[m, cg, kernel[0], kernel[1]], data: &w };
            let got = conv_requant(xv, wv, &win, g, Some(&per)).unwrap();
            prop_assert_eq!(got, reference(xv, wv, &win, g, Some(&per)));
            let bare = conv_requant(xv, wv, &win, g, None).unwrap();
            prop_assert_eq!(bare, reference(xv, wv, &win, g, None));
        }

        /// Each window's maximum over its real elements, with padding, strides and
        /// dilations.
        #[test]
        fn max_pool_takes_each_windows_largest_real_element(
            case in cases(),
            values in proptest::collection::vec(-1000i64..1000, 1..20),
        ) {
            let Case { n, g: c, h, w, win, .. } = case;
            let Some((oh, ow)) = win.out_hw(h, w) else { return Ok(()) };
            let x: Vec<i64> = (0..n * c * h * w).map(|i| values[i * 7 % values.len()]).collect();
            let view = View { dims: &[n, c, h, w], data: &x };
            let mut want = Vec::new();
            let mut empty = false;
            for plane in 0..n * c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut best: Option<i64> = None;
                        for ky in 0..win.kernel[0] {
                            for kx in 0..win.kernel[1] {
                                let iy = (oy * win.strides[0] + ky * win.dilations[0]) as isize - win.pads[0] as isize;
                                let ix = (ox * win.strides[1] + kx * win.dilations[1]) as isize - win.pads[1] as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let v = x[(plane * h + iy as usize) * w + ix as usize];
                                    best = Some(best.map_or(v, |b| b.max(v)));
                                }
                            }
                        }
                        empty |= best.is_none();
                        want.push(best.unwrap_or(0));
                    }
                }
            }
            match max_pool(view, &win) {
                Ok(got) => prop_assert_eq!(got, want),
                Err(e) => prop_assert!(empty, "{e}"),
            }
        }

        /// A requantization by channel equals the definition with its parameters
        /// broadcast to every element.
        #[test]
        fn requantize_applies_each_channels_parameters(
            (n, m, inner) in (1usize..3, 1usize..5, 0usize..40),
            seed in any::<u64>(),
        ) {
            let mut next = values_within(seed);
            let x: Vec<i64> = (0..n * m * inner).map(|_| next(1 << 20)).collect();
            let q = Requant {
                num: (0..m).map(|_| next(60)).collect(),
                den: (0..m).map(|_| 1 + next(300).abs()).collect(),
                zp: (0..m).map(|_| next(20)).collect(),
                lo: -128,
                hi: 127,
            };
            let want: Vec<i64> = x.iter().enumerate().map(|(i, &v)| q.apply(i / inner.max(1) % m, v)).collect();
            let got = requantize(View { dims: &[n, m, inner], data: &x }, &q);
            prop_assert_eq!(got, want);
        }

        /// An element-wise operation on operands read in place (whole, one value, one
        /// per channel, in any rank that broadcasts) equals the definition on operands
        /// broadcast to the output.
        #[test]
        fn zip_spread_equals_the_broadcast_definition(
            (n, m, h, w) in (1usize..3, 1usize..5, 0usize..6, 1usize..5),
            kinds in (0usize..5, 0usize..5),
            seed in any::<u64>(),
        ) {
            use crate::tensor::{broadcast_to, Tensor};
            let out = [n, m, h, w];
            let mut next = values_within(seed);
            // 0: whole, 1: whole without its unit batch axis, 2: one value, 3: per
            // channel as [m, 1, 1], 4: per channel as [1, m, 1, 1].
            let shape = |k: usize| -> Vec<usize> {
                match k {
                    0 => out.to_vec(),
                    1 if n == 1 => vec![m, h, w],
                    1 => out.to_vec(),
                    2 => vec![1],
                    3 => vec![m, 1, 1],
                    _ => vec![1, m, 1, 1],
                }
            };
            let mut tensor = |k: usize| {
                let dims = shape(k);
                let len = dims.iter().product::<usize>();
                Tensor::new(dims, (0..len).map(|_| next(1 << 40)).collect::<Vec<i64>>())
            };
            let (a, b) = (tensor(kinds.0), tensor(kinds.1));
            let (sa, sb) = (
                Spread::of(View { dims: &a.dims, data: &a.data }, &out),
                Spread::of(View { dims: &b.dims, data: &b.data }, &out),
            );
            let (Some(sa), Some(sb)) = (sa, sb) else {
                return Err(TestCaseError::fail("a supported broadcast was not read in place"));
            };
            let (fa, fb) = (broadcast_to(&a, &out), broadcast_to(&b, &out));
            let f = |x: i64, y: i64| x.wrapping_mul(3).wrapping_sub(y);
            let want: Vec<i64> = fa.iter().zip(&fb).map(|(&x, &y)| f(x, y)).collect();
            prop_assert_eq!(zip_spread(&sa, &sb, &out, f), want);
            // A broadcast along the spatial axes is left to the general path.
            let spatial: Vec<i64> = (0..h * w).map(|v| v as i64).collect();
            let space_dims = [1, 1, h, w];
            let along_space = Spread::of(View { dims: &space_dims, data: &spatial }, &out);
            prop_assert!(m == 1 || h * w <= 1 || along_space.is_none());
        }

        /// The prepared division gives [`Requant::apply`]'s result for every value:
        /// near and far from the clamp, at ties, for divisors small and huge (powers of
        /// two among them), multipliers of either sign, products past 64 bits, and
        /// clamps too wide for the shortcut.
        #[test]
        fn a_prepared_requantization_is_the_reference(
            seed in any::<u64>(),
            scale in 0u32..63,
            den_bits in 1u32..63,
            pow2 in any::<bool>(),
            negative in any::<bool>(),
            wide_clamp in any::<bool>(),
        ) {
            let mut next = values_within(seed);
            let den = if pow2 {
                1 << (den_bits - 1)
            } else {
                (next(1 << 62).unsigned_abs() >> (62 - den_bits.min(62))).max(1) as i64
            };
            let num = (next(1 << 62).abs() >> scale) * if negative { -1 } else { 1 };
            let (lo, hi) = if wide_clamp { (i64::MIN, i64::MAX) } else {
                let lo = next(1 << 20);
                (lo, lo + next(1 << 10).abs())
            };
            let q = Requant { num: vec![num], den: vec![den], zp: vec![next(300)], lo, hi };
            let cq = ChannelQ::new(&q, 0);
            for _ in 0..64 {
                let x = next(1 << 62) >> (next(64).unsigned_abs() as u32 % 63);
                prop_assert_eq!(cq.apply(x), q.apply(0, x), "x {} num {} den {}", x, num, den);
            }
            // Quotients inside and around the clamp: x ≈ (t·den + r) / num.
            let (t_lo, t_hi) = (lo.saturating_sub(q.zp[0]), hi.saturating_sub(q.zp[0]));
            for _ in 0..64 {
                let t = (t_lo.max(-(1 << 30)) - 3 + next(1 << 12).abs()).min(t_hi.min(1 << 30) + 3);
                let n = i128::from(t) * i128::from(den) + i128::from(next(den / 2).abs() * 2);
                if let Ok(x) = i64::try_from(n / i128::from(num.max(1))) {
                    prop_assert_eq!(cq.apply(x), q.apply(0, x), "x {} num {} den {}", x, num, den);
                }
            }
            // Ties: x·num = (k + 1/2)·den, with num = 1.
            if den % 2 == 0 {
                let q1 = Requant { num: vec![1], ..q.clone() };
                let cq1 = ChannelQ::new(&q1, 0);
                for k in -3i64..3 {
                    let base = (q1.lo.saturating_sub(q1.zp[0])).clamp(-(1 << 20), 1 << 20) + k;
                    if let Some(x) = base.checked_mul(den).and_then(|v| v.checked_add(den / 2)) {
                        prop_assert_eq!(cq1.apply(x), q1.apply(0, x));
                    }
                }
            }
        }

        /// Small divisors, 1 among them (no rounding at all), on every small value.
        #[test]
        fn a_prepared_requantization_of_small_divisors_is_the_reference(
            num in -7i64..8,
            s in 0u32..4,
            zp in -3i64..4,
        ) {
            let q = Requant { num: vec![num], den: vec![1 << s], zp: vec![zp], lo: -40, hi: 40 };
            let cq = ChannelQ::new(&q, 0);
            for x in -20..20 {
                prop_assert_eq!(cq.apply(x), q.apply(0, x), "x {} num {} s {}", x, num, s);
            }
        }

        /// Parameters broadcast along the channel axis only are per-channel vectors; any
        /// other broadcast is not.
        #[test]
        fn per_channel_reads_channel_broadcasts_only(m in 1usize..5, rank in 1usize..5, other in 2usize..4) {
            let out = [2, m, 3, 3];
            let scalar = per_channel(&vec![1; rank.min(4)], &[7], &out);
            prop_assert_eq!(scalar, Some(vec![7; m]));
            let values: Vec<i64> = (0..m as i64).collect();
            prop_assert_eq!(per_channel(&[m, 1, 1], &values, &out), Some(values.clone()));
            prop_assert_eq!(per_channel(&[1, m, 1, 1], &values, &out), Some(values.clone()));
            let spatial: Vec<i64> = (0..other as i64 * 3).collect();
            prop_assert_eq!(per_channel(&[other, 3], &spatial, &[2, m, other, 3]), None);
            let per_sample = [0, 1];
            prop_assert_eq!(per_channel(&[2, 1, 1, 1], &per_sample, &out), None);
        }
    }
}
