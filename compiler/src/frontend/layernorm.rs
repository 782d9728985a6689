//! `LayerNormalization` inside the network (`DequantizeLinear` → `LayerNormalization` →
//! `QuantizeLinear`), over the trailing axes from `axis`, on the quantized input's
//! integers `v` (scale `s`, `n` elements per row):
//!
//! `c = n·v − Σv` (exact, `n` times the centred value), `W = Σc² + round(n³·ε/s²)`, so that
//! the normalized value is `c·√n/√W`. `1/√W` is `2^(−k/2)/√σ` with `k = bitlen(W) − 1`
//! (one comparison of `W` against every power of two, counted), `σ = W/2^k ∈ [1, 2)` and a
//! table plus one Newton step for `1/√σ` (`recip.rs`); `2^(−k/2)` is a public table over
//! `k`. `γ·√n/y_scale` and `β/y_scale` are public per element of the row (2^-30 relative);
//! the output is rounded once, half to even. Error against the exact value: below 10^-4
//! output steps (docs/semantics.md).

use super::ops::{arg, check_attrs, norm_axis, one, real_of};
use super::real::{plain, QParams};
use super::recip::F;
use super::sym::{IntVal, Real, Sym};
use super::{attrs, dtype_of, Importer, R};
use crate::onnx::proto::NodeProto;

/// Fractional bits of `c/√W` (at most 1 in magnitude).
const G: u32 = 20;
/// Bits of `2^(−k/2)` before the product with `c`.
const H: u32 = 40;
/// Bits of the largest public factor `γ·√n/y_scale`.
const GAMMA_BITS: u32 = 38;

/// A `LayerNormalization` waiting for its `QuantizeLinear`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub real: Real,
    pub axis: usize,
    /// `Scale` and `B`, broadcast to the normalized axes and flattened.
    pub gamma: Vec<f64>,
    pub beta: Vec<f64>,
    pub eps: f64,
}

pub(super) fn layer_norm(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["axis", "epsilon", "stash_type"])?;
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(
            "the Mean and InvStdDev outputs of LayerNormalization are not supported".into(),
        );
    }
    let r = real_of(imp, arg(inputs, 0, "X")?)?;
    plain(&r)?;
    if !r.scale.is_scalar() {
        return Err("LayerNormalization of a per-channel quantized tensor is not supported".into());
    }
    let dims = imp.sym_dims(&Sym::Real(r.clone()))?;
    let a = attrs(node);
    let axis = norm_axis(a.int("axis", -1)?, dims.len())?;
    if axis == 0 {
        return Err("LayerNormalization over the batch axis is not supported".into());
    }
    let norm_dims = dims[axis..].to_vec();
    let spread = |s: &Sym, what: &str| -> R<Vec<f64>> {
        let (dims, v) = constant_values(s)
            .ok_or_else(|| format!("{what} must be a constant (or a DequantizeLinear of one)"))?;
        qmpc_bytecode::shapes::broadcast(&dims, &norm_dims)
            .ok()
            .filter(|d| *d == norm_dims)
            .ok_or_else(|| format!("{what} of shape {dims:?} does not fit {norm_dims:?}"))?;
        let src = qmpc_bytecode::tensor::Tensor::new(dims, v);
        Ok(qmpc_bytecode::tensor::broadcast_to(&src, &norm_dims))
    };
    let gamma = spread(arg(inputs, 1, "Scale")?, "Scale")?;
    let n: usize = norm_dims.iter().product();
    let beta = match inputs.get(2).and_then(Option::as_ref) {
        Some(b) => spread(b, "B")?,
        None => vec![0.0; n],
    };
    one(Sym::LayerNorm(Box::new(LayerNorm {
        real: r,
        axis,
        gamma,
        beta,
        eps: a.float("epsilon", 1e-5)? as f64,
    })))
}

/// The float values of a constant: a float initializer, or the `DequantizeLinear` of an
/// integer one (onnxruntime's quantizer quantizes a LayerNormalization's Scale and B).
fn constant_values(s: &Sym) -> Option<(Vec<usize>, Vec<f64>)> {
    match s {
        Sym::Const(t) => Some((
            t.dims.clone(),
            t.floats()?.iter().map(|&x| x as f64).collect(),
        )),
        Sym::Real(r) if r.func.is_none() && r.divisor.is_none() => {
            let IntVal::Const { data, .. } = &r.v else {
                return None;
            };
            let ints = data.ints()?;
            let dims = data.dims.clone();
            let axis = r.scale.axis;
            let inner: usize = dims.get(axis + 1..).map_or(1, |d| d.iter().product());
            let channels = dims.get(axis).copied().unwrap_or(1).max(1);
            let vals = ints
                .iter()
                .enumerate()
                .map(|(i, &q)| q as f64 * r.scale.get((i / inner.max(1)) % channels).to_f64())
                .collect();
            Some((dims, vals))
        }
        _ => None,
    }
}

impl Importer<'_> {
    /// `QuantizeLinear(LayerNormalization(x))`.
    pub fn quantize_layer_norm(&mut self, ln: &LayerNorm, q: &QParams) -> R<Sym> {
        if q.scale.len() != 1 {
            return Err(
                "per-axis quantization of a LayerNormalization's output is not supported".into(),
            );
        }
        let (qlo, qhi) = q.range()?;
        let ys = q.scale[0] as f64;
        let v = self.int_node(&ln.real.v)?;
        let dims = self.g.dims(v).to_vec();
        let n: usize = dims[ln.axis..].iter().product();
        let mut rows = dims[..ln.axis].to_vec();
        rows.push(n);
        let x = self.reshape_to(v, &rows, None)?;
        let last = rows.len() - 1;
        // c = n·v − Σv; W = Σc² + E.
        let sum = self.reduce_axis(x, last, false)?;
        let nx = self.times(x, n as i64)?;
        let c = self.sub_nodes(nx, sum)?;
        let c2 = self.mul_nodes(c, c)?;
        let ss = self.reduce_axis(c2, last, false)?;
        let s = ln.real.scale.get(0).to_f64();
        let e = ((n as f64).powi(3) * ln.eps / (s * s))
            .round()
            .clamp(1.0, 1e15) as i64;
        let w = self.add_scalar(ss, e)?;
        // 1/√W = 2^(−k/2) / √σ, k = bitlen(W) − 1, on W/2^d where W is wide.
        let (w, bits, d) = self.narrowed(w)?;
        let k = self.bit_count(w, bits)?;
        let p = self.table_lookup(k, (0..bits).map(|e| 1i64 << (bits - 1 - e)).collect(), 0)?;
        let sigma = self.normalized(w, p, bits)?;
        let rs = self.rsqrt(sigma)?;
        let half_pow: Vec<i64> = (0..bits)
            .map(|k| ((1u64 << H) as f64 * 2f64.powf(-((k + d) as f64) / 2.0)).round() as i64)
            .collect();
        let t = self.table_lookup(k, half_pow, 0)?;
        // c·2^(−k/2) ≤ √2 as c² ≤ W < 2^(k+1): kept at G bits.
        let u = self.mul_nodes(c, t)?;
        let u = self.shift(u, G as i32 - H as i32)?;
        let u = self.clamp_to(u, -(2 << G), 2 << G, None)?;
        let a = self.mul_nodes(u, rs)?;
        let a = self.shift(a, -(F as i32))?;
        // y = a·√n·γ/2^G + β, in output steps.
        let root_n = (n as f64).sqrt();
        let top = ln
            .gamma
            .iter()
            .map(|g| (g * root_n / ys).abs())
            .fold(1.0f64, f64::max);
        let qs = GAMMA_BITS as i32 - top.log2().ceil() as i32;
        let scale_of = |x: f64, k: i32| (x * 2f64.powi(k)).round() as i64;
        let gam: Vec<i64> = ln
            .gamma
            .iter()
            .map(|g| scale_of(g * root_n / ys, qs))
            .collect();
        let shift = qs + G as i32;
        if !(1..=60).contains(&shift) {
            return Err(format!(
                "a LayerNormalization scale of {top} output steps is not supported"
            ));
        }
        let bet: Vec<i64> = ln.beta.iter().map(|b| scale_of(b / ys, shift)).collect();
        let mut cdims = vec![1; rows.len()];
        cdims[last] = n;
        let gk = self.konst(cdims.clone(), gam);
        let bk = self.konst(cdims, bet);
        let y = self.mul_nodes(a, gk)?;
        let y = self.add_nodes(y, bk)?;
        let y = self.shift(y, -shift)?;
        let y = self.add_scalar(y, q.zp[0])?;
        let y = self.clamp_to(y, qlo, qhi, None)?;
        let y = self.reshape_to(y, &dims, Some(dtype_of(q.onnx)?))?;
        Ok(Sym::Int {
            node: y,
            onnx: q.onnx,
        })
    }
}
