//! `BatchNormalization` left unfolded between `DequantizeLinear` and `QuantizeLinear` (as
//! an MXNet export keeps it): a per-channel affine step `k[c] · x + b[c]`, perhaps clamped
//! by a following `Relu` / `Clip`, evaluated in f64 and rounded once at the quantization.
//! It runs as one integer form per channel found at compile time, `clamp(round((i·a[c] +
//! b[c]) / 2^j))`, checked to equal that table on every input value of every channel: a
//! local affine map, one truncation and a clamp (no per-channel lookup exists).

use super::ops::{arg, check_attrs, konst, one, real_of};
use super::real::{channel_dims, QParams};
use super::sym::{ElemFn, Real, Sym};
use super::{attrs, Importer, R};
use crate::onnx::proto::NodeProto;
use qmpc_semantics::ring;
use std::sync::Arc;

/// Per-channel `clamp(k[c] · x + b[c], lo, hi)` along `axis`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelAffine {
    pub axis: usize,
    pub k: Vec<f64>,
    pub b: Vec<f64>,
    pub lo: f64,
    pub hi: f64,
}

/// Every register of the integer form stays under this (as `elemfn.rs`'s forms do).
const BOUND: i128 = 1 << 40;

pub(super) fn batch_norm(
    imp: &mut Importer,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(
        node,
        &["epsilon", "momentum", "training_mode", "spatial", "is_test"],
    )?;
    let a = attrs(node);
    if a.int("training_mode", 0)? != 0 || node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("BatchNormalization in training mode is not supported".into());
    }
    if opset < 9 && a.int("spatial", 1)? != 1 {
        return Err("BatchNormalization with spatial = 0 is not supported".into());
    }
    let eps = a.float("epsilon", 1e-5)? as f64;
    let floats = |i: usize, what: &str| -> R<Vec<f64>> {
        konst(inputs, i, what)?
            .floats()
            .map(|v| v.iter().map(|&x| x as f64).collect())
            .ok_or_else(|| format!("{what} must be a float tensor"))
    };
    let (gamma, beta) = (floats(1, "scale")?, floats(2, "B")?);
    let (mean, var) = (floats(3, "input_mean")?, floats(4, "input_var")?);
    let c = gamma.len();
    if [beta.len(), mean.len(), var.len()].iter().any(|&n| n != c) {
        return Err("scale, B, mean and var differ in length".into());
    }
    let x = arg(inputs, 0, "X")?;
    if let Sym::Const(_) = x {
        return Err(
            "BatchNormalization of a constant: fold it before quantizing (quant_pre_process)"
                .into(),
        );
    }
    let mut r = real_of(imp, x)?;
    if r.func.is_some() || r.divisor.is_some() {
        return Err("the input of BatchNormalization must be dequantized, not computed".into());
    }
    let dims = imp.sym_dims(x)?;
    if dims.len() < 2 || dims[1] != c {
        return Err(format!(
            "{c} channels of parameters for an input of shape {dims:?}"
        ));
    }
    let k: Vec<f64> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let b: Vec<f64> = (0..c).map(|i| beta[i] - mean[i] * k[i]).collect();
    if k.iter().chain(&b).any(|v| !v.is_finite()) {
        return Err("BatchNormalization's parameters give a non-finite factor".into());
    }
    r.func = Some(ElemFn::ChannelAffine(Arc::new(ChannelAffine {
        axis: 1,
        k,
        b,
        lo: f64::NEG_INFINITY,
        hi: f64::INFINITY,
    })));
    r.raw = None;
    one(Sym::Real(r))
}

impl Importer<'_> {
    /// `QuantizeLinear` of a per-channel affine step.
    pub(super) fn quantize_channel_affine(
        &mut self,
        x: &Real,
        ca: &ChannelAffine,
        q: &QParams,
    ) -> R<Sym> {
        if x.divisor.is_some() {
            return Err("an averaged tensor must be quantized before BatchNormalization".into());
        }
        if !x.scale.is_scalar() && x.scale.axis != ca.axis {
            return Err("per-channel scales along another axis than the channels".into());
        }
        let (qlo, qhi) = q.range()?;
        let dtype = super::dtype_of(q.onnx)?;
        let ys = q.scale[0] as f64;
        let zy = q.zp[0];
        let v = self.int_node(&x.v)?;
        let d = self.g.decl(v).clone();
        if d.hi - d.lo > 1 << 16 {
            return Err("the input of BatchNormalization has more than 2^16 values".into());
        }
        let channels = ca.k.len();
        let s = |c: usize| x.scale.get(c).to_f64();
        let want = |c: usize, i: i64| -> i64 {
            let y = (ca.k[c] * (i as f64 * s(c)) + ca.b[c]).clamp(ca.lo, ca.hi);
            ((y / ys).round_ties_even() as i64 + zy).clamp(qlo, qhi)
        };
        let bound = |v: f64| (v / ys).round_ties_even() as i64 + zy;
        let lo = if ca.lo.is_finite() {
            qlo.max(bound(ca.lo))
        } else {
            qlo
        };
        let hi = if ca.hi.is_finite() {
            qhi.min(bound(ca.hi))
        } else {
            qhi
        };
        let imax = (d.lo.unsigned_abs().max(d.hi.unsigned_abs()) as i128).max(1);
        let mut found = None;
        'search: for j in 4..40 {
            let den = 1i128 << j;
            let a: Vec<i128> = (0..channels)
                .map(|c| (ca.k[c] * s(c) / ys * den as f64).round() as i128)
                .collect();
            let b: Vec<i128> = (0..channels)
                .map(|c| (ca.b[c] / ys * den as f64).round() as i128 + zy as i128 * den)
                .collect();
            if (0..channels).any(|c| imax * a[c].abs() + b[c].abs() >= BOUND) {
                break;
            }
            for c in 0..channels {
                for i in d.lo..=d.hi {
                    let t = ring::div_round_half_even(i as i128 * a[c] + b[c], den);
                    if t.clamp(lo as i128, hi as i128) as i64 != want(c, i) {
                        continue 'search;
                    }
                }
            }
            found = Some((a, b, den));
            break;
        }
        let Some((a, b, den)) = found else {
            return Err(
                "this unfolded BatchNormalization has no exact integer form within the ring; \
                 fold it into the preceding convolution before quantizing (quant_pre_process)"
                    .into(),
            );
        };
        let rank = d.ty.dims.len();
        let cd = channel_dims(rank, ca.axis, channels);
        let ka = self.konst(cd.clone(), a.iter().map(|&v| v as i64).collect());
        let kb = self.konst(cd, b.iter().map(|&v| v as i64).collect());
        let u = self.mul_nodes(v, ka)?;
        let u = self.add_nodes(u, kb)?;
        let r = self.rescale_by(u, 1, den as i64)?;
        let y = self.clamp_to(r, lo, hi.max(lo), Some(dtype))?;
        Ok(Sym::Int {
            node: y,
            onnx: q.onnx,
        })
    }
}

/// A `Relu` / `Clip` after the affine step narrows its clamp.
pub(super) fn clamped(ca: &ChannelAffine, min: Option<f32>, max: Option<f32>) -> ChannelAffine {
    ChannelAffine {
        lo: min.map_or(ca.lo, |m| ca.lo.max(m as f64)),
        hi: max.map_or(ca.hi, |m| ca.hi.min(m as f64)),
        ..ca.clone()
    }
}
