//! Dynamic quantization, the graphs onnxruntime's `quantize_dynamic` writes:
//! `DynamicQuantizeLinear` picks each tensor's uint8 scale and zero point from the tensor's
//! own range at run time, `MatMulInteger` / `ConvInteger` take that zero point, and a float
//! tail (`Cast`, `Mul` by the secret scale times the weight scale, `Add` of the bias, `Relu`,
//! `MaxPool`, `Flatten`) leads to the next `DynamicQuantizeLinear` or to the output.
//!
//! Everything stays in integers, so every protocol computes it bit-exactly like `clear`:
//! - a float tensor of the tail is held in fixed point, integers times `2^-FRAC`,
//!   saturating at `±SATURATION` units (±8192); a float graph input is shared the same way
//!   by its owner (saturating at ±32768);
//! - `DynamicQuantizeLinear` of `v` (unit `t`), per sample: `mx = max(0, max v)`,
//!   `mn = min(0, min v)`, `R = mx − mn`; `y = clamp(round(255·v/R) + zp, 0, 255)` and
//!   `zp = clamp(round(−255·mn/R), 0, 255)`, with `1/R` a fixed-point reciprocal of
//!   relative error below 2^-19: `R` is normalized by a secret power of two `P` (from its
//!   bit length, one comparison against every power of two), a public table gives `1/R·P`
//!   to 10 bits and one Newton step squares the error. The scale `R·t/255` stays secret
//!   ([`Sym::DynScale`]); the product that uses it rescales its range by the public factor
//!   first, so the secret product stays within the ring.
//!
//! onnxruntime computes the same steps in f32; the differences (float rounding, the
//! fixed-point tail's 2^-16 steps) are documented with measured errors in docs/semantics.md
//! ("Dynamic quantization"). The range is per sample: for a batch of one, the tensor's range
//! as ONNX defines it; a larger batch quantizes each sample on its own (the data of one
//! sample does not change another's result).

use super::ops::{arg, check_attrs};
use super::rational::Rational;
use super::real::plain;
use super::recip::{bit_len, round_half_even, F};
use super::sym::{IntVal, Real, Scale, Sym};
use super::{Importer, R};
use crate::onnx::proto::{data_type, NodeProto};
use crate::onnx::{TensorData, Values};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Int, Ints, Reg, Regs};
use qmpc_bytecode::{DType, Instr, QuantParams};

/// Fractional bits of the fixed-point float tail.
pub const FRAC: u32 = 16;
/// Saturation of the fixed-point tail, in units of `2^-FRAC`.
pub const SATURATION: i64 = 1 << 29;
/// Largest magnitude the range computation takes as it is (a wider tensor is first
/// rescaled by a power of two): `R < 2^31`, so `R·P < 2^61` and `v·P < 2^60`.
const MAX_INPUT: i64 = (1 << 30) - 1;
/// Fractional bits of the normalized values `v·P`.
const G: u32 = 20;
/// Bits of the range after its public rescaling in a product by the secret scale.
const RANGE_BITS: u32 = 30;
/// Fractional bits of that public factor.
const FACTOR_BITS: u32 = 24;

/// The unit of the fixed-point tail, `2^-FRAC`.
pub fn unit() -> Rational {
    Rational {
        num: 1,
        den: 1 << FRAC,
    }
}

pub(super) fn dynamic_quantize(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    let r = match arg(inputs, 0, "x")? {
        Sym::FloatInput {
            name,
            dims,
            batched,
        } => imp.fixed_input(name, dims, *batched),
        Sym::Real(r) => r.clone(),
        _ => return Err("DynamicQuantizeLinear needs a float tensor".into()),
    };
    plain(&r)?;
    if !r.scale.is_scalar() {
        return Err("DynamicQuantizeLinear of a per-channel scaled tensor is not supported".into());
    }
    let v = imp.int_node(&r.v)?;
    let (y, range, zp, unit) = imp.dynamic_quantize_node(v, r.scale.get(0))?;
    Ok(vec![
        Sym::Int {
            node: y,
            onnx: data_type::UINT8,
        },
        Sym::DynScale {
            range,
            unit: unit
                .checked_div(Rational::int(255))
                .ok_or("scale out of range")?,
        },
        Sym::Int {
            node: zp,
            onnx: data_type::UINT8,
        },
    ])
}

impl Importer<'_> {
    /// A float graph input shared in fixed point (`2^-FRAC`, int32) by its owner.
    fn fixed_input(&mut self, name: &str, dims: &[usize], batched: bool) -> Real {
        let decl = qmpc_bytecode::InputDecl {
            name: name.to_string(),
            external: qmpc_bytecode::ExternalType::F32,
            quant: Some(QuantParams {
                scale: vec![unit().to_f64() as f32],
                zero_point: vec![0],
                axis: 0,
                block: 0,
            }),
            ty: qmpc_bytecode::TensorType {
                dtype: DType::I32,
                dims: dims.to_vec(),
                batched,
            },
        };
        let o = self.origin.clone();
        let node = self.g.add_input(decl, &o);
        Real::plain(IntVal::Node(node), Scale::scalar(unit()))
    }

    /// A per-sample scalar `[N, 1]` as `[N, 1, …, 1]` of rank `rank` (or `[1, …]` unbatched).
    pub fn per_sample(&mut self, s: NodeIndex, rank: usize) -> R<NodeIndex> {
        let lead = self.g.dims(s)[0];
        let mut dims = vec![1; rank.max(1)];
        dims[0] = lead;
        if self.g.dims(s) == dims.as_slice() {
            return Ok(s);
        }
        self.reshape_to(s, &dims, None)
    }

    /// Per sample, `max(0, max v)` and `−min(0, min v)`, each `[N, 1]`: one comparison tree
    /// over `v` and `−v` side by side, with a zero appended to each.
    fn extremes(&mut self, v: NodeIndex) -> R<(NodeIndex, NodeIndex)> {
        let decl = self.g.decl(v).clone();
        let dims = &decl.ty.dims;
        let lead = if decl.ty.batched { dims[0] } else { 1 };
        let len = dims.iter().product::<usize>() / lead;
        let x = self.reshape_to(v, &[lead, 1, 1, len], None)?;
        let neg = self.times(x, -1)?;
        let both = self.compute(
            Instr::Concat {
                dst: Dst(0),
                xs: Regs(vec![0, 1]),
                axis: Int(1),
            },
            &[x, neg],
        )?;
        let padded = self.compute(
            Instr::Pad {
                dst: Dst(0),
                x: Reg(0),
                pads: Ints(vec![0, 0, 0, 0, 0, 0, 0, 1]),
                value: Int(0),
            },
            &[both],
        )?;
        let m = self.compute(
            Instr::MaxPool {
                dst: Dst(0),
                x: Reg(0),
                kernel: Ints(vec![1, len as i64 + 1]),
                strides: Ints(vec![1, 1]),
                pads: Ints(vec![0; 4]),
                dilations: Ints(vec![1, 1]),
            },
            &[padded],
        )?;
        let m = self.reshape_to(m, &[lead, 2], None)?;
        let mut pick = |i: i64| {
            self.compute_to(
                Instr::Slice {
                    dst: Dst(0),
                    x: Reg(0),
                    starts: Ints(vec![0, i]),
                    steps: Ints(vec![1, 1]),
                },
                &[m],
                &[lead, 1],
                None,
            )
        };
        Ok((pick(0)?, pick(1)?))
    }

    /// `round(255 · x·P / (R·P))` for `x·P` scaled to `2^G` (`xp`) and the reciprocal
    /// `2^(2F)/s` (`r`).
    fn times_255_over_range(&mut self, xp: NodeIndex, r: NodeIndex) -> R<NodeIndex> {
        let p = self.mul_nodes(xp, r)?;
        self.rescale_by(p, 255, 1i64 << (G + F))
    }

    /// `DynamicQuantizeLinear` of `v` (unit `t`): `(y, R, zp, unit of R)`, `R` and `zp` per
    /// sample `[N, 1]`.
    fn dynamic_quantize_node(
        &mut self,
        v: NodeIndex,
        t: Rational,
    ) -> R<(NodeIndex, NodeIndex, NodeIndex, Rational)> {
        let d = self.g.decl(v).clone();
        let rank = d.ty.dims.len();
        let vmax = (d.lo as i128).abs().max((d.hi as i128).abs());
        let (v, t) = if vmax > MAX_INPUT as i128 {
            let k = bit_len(vmax) - bit_len(MAX_INPUT as i128);
            let t = t
                .checked_mul(Rational::int(1i64 << k))
                .ok_or("scale out of range")?;
            (self.shift(v, -(k as i32))?, t)
        } else {
            (v, t)
        };
        let (mx, negmn) = self.extremes(v)?;
        let range = self.add_nodes(mx, negmn)?;
        let bits = bit_len(self.g.decl(range).hi as i128).max(1);
        let p = self.normalizer(range, bits)?;
        // s = R·P scaled to [2^F, 2^(F+1)]; 2^F where R = 0 (then every v is 0).
        let s = self.normalized(range, p, bits)?;
        let r = self.reciprocal(s)?;
        // |v·P| ≤ R·P < 2^bits, so v·P/2^(bits−1) is within ±2 (scaled to 2^G).
        let pb = self.per_sample(p, rank)?;
        let vp = self.mul_nodes(v, pb)?;
        let vp = self.shift(vp, G as i32 - (bits as i32 - 1))?;
        let vp = self.clamp_to(vp, -(2 << G), 2 << G, None)?;
        let rb = self.per_sample(r, rank)?;
        let q = self.times_255_over_range(vp, rb)?;
        let mp = self.mul_nodes(negmn, p)?;
        let mp = self.shift(mp, G as i32 - (bits as i32 - 1))?;
        let mp = self.clamp_to(mp, 0, 2 << G, None)?;
        let zp = self.times_255_over_range(mp, r)?;
        let zp = self.clamp_to(zp, 0, 255, Some(DType::U8))?;
        let zpb = self.per_sample(zp, rank)?;
        let y = self.add_nodes(q, zpb)?;
        let y = self.clamp_to(y, 0, 255, Some(DType::U8))?;
        Ok((y, range, zp, t))
    }

    /// `a − zp` for a `MatMulInteger` / `ConvInteger` operand with the secret per-sample
    /// zero point of a `DynamicQuantizeLinear`.
    pub fn minus_dynamic_zero_point(&mut self, a: NodeIndex, zp: NodeIndex) -> R<Real> {
        let rank = self.g.dims(a).len();
        let zb = self.per_sample(zp, rank)?;
        let d = self.sub_nodes(a, zb)?;
        Ok(Real::plain(
            IntVal::Node(d),
            Scale::scalar(Rational::int(1)),
        ))
    }

    /// `a · R·unit` (a real times a dynamic scale) in the fixed-point tail: the range is
    /// first multiplied by the public factor `scale(a)·unit/2^-FRAC` (rescaled to
    /// `RANGE_BITS` bits), then one secret product and a power-of-two rescale, saturating.
    pub fn times_dynamic_scale(&mut self, a: &Real, range: NodeIndex, unit: Rational) -> R<Real> {
        plain(a)?;
        if !a.scale.is_scalar() {
            return Err(
                "a per-channel scaled tensor times a dynamic scale is not supported".into(),
            );
        }
        let x = self.int_node(&a.v)?;
        let m = a
            .scale
            .get(0)
            .checked_mul(unit)
            .and_then(|m| m.checked_div(super::dynamic::unit()))
            .ok_or("scale out of range")?;
        let rhi = self.g.decl(range).hi.max(1) as f64;
        // 2^j·m·R stays below 2^RANGE_BITS; the factor 2^j·m is rounded to FACTOR_BITS
        // fractional bits, so that the rescale is by a power of two (the cheapest in every
        // protocol, and within shamir's field).
        let j = ((1u64 << RANGE_BITS) as f64 / (rhi * m.to_f64()))
            .log2()
            .floor() as i32;
        let shifted = if j >= 0 {
            m.checked_mul(Rational::int(1i64 << j.min(62)))
        } else {
            m.checked_div(Rational::int(1i64 << (-j).min(62)))
        }
        .and_then(|x| x.checked_mul(Rational::int(1i64 << FACTOR_BITS)))
        .ok_or("scale out of range")?;
        let mut num = round_half_even(shifted).max(1) as i64;
        let mut den = 1i64 << FACTOR_BITS;
        while num % 2 == 0 && den > 1 {
            (num, den) = (num / 2, den / 2);
        }
        let rs = self.rescale_by(range, num, den)?;
        let rank = self.g.dims(x).len();
        let rb = self.per_sample(rs, rank)?;
        let p = self.mul_nodes(x, rb)?;
        let y = self.shift(p, -j)?;
        let yd = self.g.decl(y).clone();
        let y = if yd.lo < -SATURATION || yd.hi > SATURATION {
            self.clamp_to(y, -SATURATION, SATURATION, None)?
        } else {
            y
        };
        Ok(Real::plain(
            IntVal::Node(y),
            Scale::scalar(super::dynamic::unit()),
        ))
    }

    /// `a ± c` for a float constant `c` and a real whose integers span more than a table
    /// can (the fixed-point tail's bias): `c` rounded to the real's own step, the one
    /// rounding of a float constant qmpc makes (at most half a step, `2^-17` for the tail).
    pub fn add_const_rounded(
        &mut self,
        a: &Real,
        c: &TensorData,
        sign: i64,
        const_sign: i64,
    ) -> R<Real> {
        let x = self.int_node(&a.v)?;
        let s = a.scale.get(0);
        let vals = c.floats().ok_or("expected a float constant")?;
        let ints = vals
            .iter()
            .map(|&f| {
                let q = Rational::from_f32(f)
                    .and_then(|q| q.checked_div(s))
                    .ok_or_else(|| format!("constant {f} out of range"))?;
                let r = round_half_even(q);
                i64::try_from(r).map_err(|_| format!("constant {f} out of range"))
            })
            .collect::<R<Vec<i64>>>()?;
        let k = self.konst(
            c.dims.clone(),
            ints.iter().map(|&i| i * const_sign).collect(),
        );
        let x = if sign < 0 { self.times(x, -1)? } else { x };
        let y = self.add_nodes(x, k)?;
        Ok(Real::plain(IntVal::Node(y), a.scale.clone()))
    }
}

/// Whether a real's integers span more values than a table of an element-wise function may
/// have, so that a float constant is added in its own steps.
pub fn is_wide(imp: &Importer, r: &Real) -> bool {
    match &r.v {
        IntVal::Node(n) => {
            let d = imp.g.decl(*n);
            (d.hi as i128 - d.lo as i128) > 1 << 16
        }
        IntVal::Const { .. } => false,
    }
}

/// A float scalar constant, for `Mul` of a dynamic scale.
pub fn positive_scalar(t: &TensorData) -> Option<Rational> {
    match &t.values {
        Values::Float(v) if v.len() == 1 => Rational::from_f32(v[0]).filter(|r| r.is_positive()),
        _ => None,
    }
}
