//! `Softmax` inside the network (a `QuantizeLinear` after it, or onnxruntime's
//! `QLinearSoftmax`), on any non-batch axis, as attention's rows need: per row,
//! `e = exp(s·(v − max v))` is a public table over the quantized input's integers (20
//! fractional bits), `Σ e`'s reciprocal is `recip.rs`'s (relative error below 2^-19), and
//! `e · (1/Σ e)` is requantized to the output's parameters with one rounding, half to even.
//! onnxruntime computes the same in f32, so an output within float error of a tie may land
//! one step apart (docs/semantics.md).

use super::rational::Rational;
use super::real::{plain, QParams};
use super::recip::F;
use super::sym::{Real, Sym};
use super::{dtype_of, Importer, R};

/// Fractional bits of the exponentials.
const K: u32 = 20;
/// Fractional bits of `e·P` (below 2).
const G: u32 = 20;

impl Importer<'_> {
    /// `QuantizeLinear(Softmax(x, axis))`.
    pub fn quantize_softmax(&mut self, x: &Real, axis: usize, q: &QParams) -> R<Sym> {
        plain(x)?;
        if !x.scale.is_scalar() {
            return Err("a Softmax of a per-channel quantized tensor is not supported".into());
        }
        if q.scale.len() != 1 {
            return Err("per-axis quantization of a Softmax's output is not supported".into());
        }
        let (qlo, qhi) = q.range()?;
        let v = self.int_node(&x.v)?;
        let d = self.g.decl(v).clone();
        if d.hi - d.lo > 1 << 16 {
            return Err(
                "the input of a Softmax inside the network has more than 2^16 values; \
                 quantize it first (QuantizeLinear → DequantizeLinear)"
                    .into(),
            );
        }
        // e = round(2^K · exp(s · (v − max))), v − max ≤ 0 (the table's other entries are
        // never read).
        let m = self.reduce_axis(v, axis, true)?;
        let diff = self.sub_nodes(v, m)?;
        let s = x.scale.get(0).to_f64();
        let (lo, hi) = (self.g.decl(diff).lo, self.g.decl(diff).hi);
        let table: Vec<i64> = (lo..=hi)
            .map(|t| ((1u64 << K) as f64 * (s * t.min(0) as f64).exp()).round() as i64)
            .collect();
        let e = self.table_lookup(diff, table, lo)?;
        // Σ e ≥ 2^K (the maximum's own term); 1/Σ e = P·r / 2^(bits−1+F).
        let sum = self.reduce_axis(e, axis, false)?;
        let (sum, bits, d) = self.narrowed(sum)?;
        let bits = bits.max(K + 1 - d);
        let p = self.normalizer(sum, bits)?;
        let sn = self.normalized(sum, p, bits)?;
        let r = self.reciprocal(sn)?;
        // e·P/2^(bits−1+d) < 2 as e ≤ Σ e.
        let ep = self.mul_nodes(e, p)?;
        let ep = self.shift(ep, G as i32 - (bits as i32 - 1) - d as i32)?;
        let ep = self.clamp_to(ep, 0, 2 << G, None)?;
        let a = self.mul_nodes(ep, r)?;
        // y = a / 2^(G+F); the output step is y_scale.
        let ys = Rational::from_f32(q.scale[0]).ok_or("bad output scale")?;
        let mult = Rational::new(1, 1i128 << (G + F))
            .and_then(|u| u.checked_div(ys))
            .ok_or("output scale out of range")?;
        let amax = self.g.decl(a).hi.max(1) as i128;
        if mult.den >= 1 << 62 || mult.num.checked_mul(amax).is_none_or(|x| x >= 1 << 62) {
            return Err(format!(
                "a Softmax output scale of {} is not supported",
                q.scale[0]
            ));
        }
        let y = self.rescale_by(a, mult.num as i64, mult.den as i64)?;
        let y = self.add_scalar(y, q.zp[0])?;
        let y = self.clamp_to(y, qlo, qhi, Some(dtype_of(q.onnx)?))?;
        Ok(Sym::Int {
            node: y,
            onnx: q.onnx,
        })
    }
}
