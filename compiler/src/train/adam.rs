//! Adam's update in fixed point (docs/training.md, "Adam"): the moments stay shared
//! across steps, and `m / √v` is computed with `v` normalized to a mantissa in `[1, 2]`
//! by its octave, so that the inverse square root works on a fixed range whatever the
//! gradients' magnitude.
//!
//! With `ĝ` the batch-mean gradient (clipped to ± [`Numerics::adam_grad`]):
//!
//! ```text
//! m ← β1 m + (1 − β1) ĝ            (frac bits: MOMENT_FRAC)
//! v ← β2 v + (1 − β2) ĝ²           (frac bits: ADAM_VFRAC; v ≥ 2^-40 in effect)
//! w ← w − lr · c_t · m / √v        c_t = √(1 − β2^t) / (1 − β1^t)
//! ```
//!
//! `c_t` is PyTorch's two bias corrections in one public number per step; the runner
//! supplies it in the state [`ADAM_SCALE`] before each step, so one compiled step serves
//! every step. `1/√v` is `2^((40 − j)/2) / √(v / 2^j)` for the octave `j` of `v`'s
//! integer (`nonlinear::normalize`): `m · 2^((40 − j)/2)` is computed per octave
//! column, each clipped to the ratio's bound, and picked through the one-hot vector (a
//! small `m` goes with a small `v`, which interval arithmetic cannot see), then
//! `nonlinear::rsqrt_mantissa` inverts the mantissa's root.

use super::emit::{Emit, R};
use super::nonlinear::{self, fixed, Normalized};
use super::Numerics;
use petgraph::stable_graph::NodeIndex;

/// The state the runner sets before each step to `c_t` ([`adam_scale`]).
pub const ADAM_SCALE: &str = "adam:scale";
/// Fractional bits of `c_t`.
pub const SCALE_FRAC: u32 = 20;
/// Fractional bits of the second moment `v`: a gradient of 2^-20 still counts.
pub const ADAM_VFRAC: u32 = 40;
/// Fractional bits of the mean gradient and the first moment `m`.
pub const MOMENT_FRAC: u32 = 24;
/// Octaves of `v`'s integer: `v ≤ adam_grad² = 2^4`, so the integer is at most
/// `2^44`.
const OCTAVES: usize = 44;

/// `c_t` for step `t` (from 1) in fixed point with [`SCALE_FRAC`] bits.
pub fn adam_scale(beta1: f64, beta2: f64, t: u64) -> i64 {
    let t = t.min(i32::MAX as u64) as i32;
    let c = (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t));
    fixed(c, SCALE_FRAC)
}

/// The bounds of `v`'s state: `[0, adam_grad² · 2^ADAM_VFRAC]`.
pub(crate) fn v_bound(num: &Numerics) -> i64 {
    fixed(num.adam_grad * num.adam_grad, ADAM_VFRAC)
}

/// One parameter's update. Returns the new parameter, first and second moment.
pub(crate) struct Moments {
    pub w: NodeIndex,
    pub m: NodeIndex,
    pub v: NodeIndex,
}

/// The hyperparameters one update needs.
pub(crate) struct Adam<'a> {
    pub num: &'a Numerics,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub batch: usize,
    /// The loaded [`ADAM_SCALE`].
    pub scale: NodeIndex,
}

impl Adam<'_> {
    /// `w`, its gradient summed over the batch, and its moments `m`, `v` → the updated
    /// three.
    pub fn update(
        &self,
        e: &mut Emit,
        w: NodeIndex,
        grad: NodeIndex,
        m: NodeIndex,
        v: NodeIndex,
    ) -> R<Moments> {
        let frac = self.num.frac;
        // The mean gradient and m keep MOMENT_FRAC bits: a small gradient still moves
        // its weight, as Adam's normalization means it should.
        let gmax = fixed(self.num.adam_grad, MOMENT_FRAC);
        let den = 1i64 << 16;
        let gm = e.requant(
            grad,
            (1 << (MOMENT_FRAC - frac), self.batch as i64),
            (-gmax, gmax),
            MOMENT_FRAC,
        )?;
        // m ← β1 m + (1 − β1) ĝ: a convex combination, within ±adam_grad.
        let b1 = e.int(fixed(self.beta1, 16));
        let c1 = e.int(den - fixed(self.beta1, 16));
        let (mb, gb) = (e.mul(m, b1)?, e.mul(gm, c1)?);
        let msum = e.add(mb, gb)?;
        let m2 = e.requant(msum, (1, den), (-gmax, gmax), MOMENT_FRAC)?;
        // v ← β2 v + (1 − β2) ĝ².
        let sq = e.mul(gm, gm)?;
        let vmax = v_bound(self.num);
        let sq = e.trunc(sq, 2 * MOMENT_FRAC - ADAM_VFRAC, (0, vmax))?;
        let c2 = e.int(den - fixed(self.beta2, 16));
        let b2 = e.int(fixed(self.beta2, 16));
        let (sqc, vb) = (e.mul(sq, c2)?, e.mul(v, b2)?);
        let vsum = e.add(sqc, vb)?;
        let v2 = e.requant(vsum, (1, den), (0, vmax), ADAM_VFRAC)?;
        // m · c_t (c_t ≤ 1), beside the octave search.
        let mc = e.mul(m2, self.scale)?;
        let mscaled = e.trunc(mc, SCALE_FRAC, (-gmax, gmax))?;
        let ratio = self.ratio(e, mscaled, v2)?;
        // w ← w − lr · ratio, clipped to the weights' range.
        let wmax = fixed(self.num.weight, frac);
        let lr_den = 1i64 << 20;
        let (lr_num, lr_den_n) = (e.int(fixed(self.lr, 20)), e.int(lr_den));
        let dims = e.dims(w);
        let ratio = e.reshape(ratio, &dims)?;
        let scaled_w = e.mul(w, lr_den_n)?;
        let step = e.mul(ratio, lr_num)?;
        let target = e.sub(scaled_w, step)?;
        let w2 = e.requant(target, (1, lr_den), (-wmax, wmax), frac)?;
        Ok(Moments {
            w: w2,
            m: m2,
            v: v2,
        })
    }

    /// `mc / √v` elementwise (a column `[n, 1]` with `frac` fractional bits; `mc` has
    /// [`MOMENT_FRAC`] bits, `v` [`ADAM_VFRAC`], read as at least `2^-ADAM_VFRAC`).
    fn ratio(&self, e: &mut Emit, mc: NodeIndex, v: NodeIndex) -> R<NodeIndex> {
        let frac = self.num.frac;
        let n: usize = e.dims(v).iter().product();
        let v = e.reshape(v, &[n, 1])?;
        let mc = e.reshape(mc, &[n, 1])?;
        let Normalized { onehot, mant } = nonlinear::normalize(e, v, OCTAVES)?;
        // mc · 2^((ADAM_VFRAC − j)/2) per octave, each clipped to the ratio's bound
        // (|m / √v · √mantissa| ≤ 32 · √2 for β1² < β2, docs): only the picked column
        // counts.
        let qmax = fixed(64.0, frac);
        let k = 14;
        let nums: Vec<i64> = (0..OCTAVES)
            .map(|j| fixed(2f64.powf((ADAM_VFRAC as f64 - j as f64) / 2.0), k))
            .collect();
        let shift = MOMENT_FRAC - frac + k;
        let dens = vec![1 << shift; OCTAVES];
        let scaled = nonlinear::columns(e, mc, nums, dens, (-qmax, qmax), frac)?;
        let picked = e.mul(onehot, scaled)?;
        let q = e.sum_cols(picked)?;
        let r = nonlinear::rsqrt_mantissa(e, mant)?;
        let qr = e.mul(q, r)?;
        e.trunc(qr, frac, (-qmax, qmax))
    }
}
