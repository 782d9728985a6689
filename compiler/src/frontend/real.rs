//! Float ONNX ops on exact real values `v · scale`, and the quantize / dequantize steps
//! that enter and leave them.

use super::rational::Rational;
use super::sym::{ElemFn, IntVal, Real, Scale, Sym};
use super::{dtype_of, Importer, R};
use crate::onnx::proto::data_type;
use crate::onnx::{TensorData, Values};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Index, Int, Ints, Reg};
use qmpc_bytecode::verify::RING_BOUND;
use qmpc_bytecode::{ConstTensor, QuantParams};
use qmpc_bytecode::{DType, Instr};

/// Quantization parameters read from a (scale, zero point) pair of ONNX tensors.
pub struct QParams {
    pub scale: Vec<f32>,
    pub zp: Vec<i64>,
    pub axis: usize,
    /// Block size along `axis` (ONNX blocked quantization); 0 for per-tensor or per-axis.
    pub block: usize,
    /// ONNX element type of the quantized tensor.
    pub onnx: i32,
}

impl QParams {
    pub fn read(
        scale: &TensorData,
        zp: Option<&TensorData>,
        axis: i64,
        rank: usize,
        default_type: i32,
    ) -> R<QParams> {
        let s = scale.floats().ok_or("scale must be float")?.to_vec();
        if s.iter().any(|x| !x.is_finite() || *x <= 0.0) {
            return Err(format!("scale {s:?} must be positive and finite"));
        }
        let (z, onnx) = match zp {
            Some(z) => (
                z.ints()
                    .ok_or("zero point must be an integer tensor")?
                    .to_vec(),
                z.dtype,
            ),
            None => (vec![0; s.len()], default_type),
        };
        if !matches!(onnx, data_type::INT8 | data_type::UINT8 | data_type::INT32) {
            return Err(format!(
                "unsupported type {} (qmpc quantizes to int8, uint8 and int32)",
                data_type::name(onnx)
            ));
        }
        if z.len() != s.len() && !(z.len() == 1 && s.len() > 1) {
            return Err(format!("{} scales but {} zero points", s.len(), z.len()));
        }
        if scale.dims.len() > 1 {
            return Err("blocked quantization (scale of rank > 1) is not supported".into());
        }
        let z = if z.len() == s.len() {
            z
        } else {
            vec![z[0]; s.len()]
        };
        let axis = if axis < 0 { axis + rank as i64 } else { axis };
        let axis = usize::try_from(axis).map_err(|_| format!("bad axis {axis}"))?;
        if s.len() > 1 && axis >= rank {
            return Err(format!("axis {axis} out of range for rank {rank}"));
        }
        Ok(QParams {
            scale: s,
            zp: z,
            axis,
            block: 0,
            onnx,
        })
    }

    /// Blocked parameters (opset 21): the scale has the shape of `dims` with `axis` shortened
    /// to `ceil(dims[axis] / block)`.
    pub fn read_blocked(
        scale: &TensorData,
        zp: Option<&TensorData>,
        axis: i64,
        block: i64,
        dims: &[usize],
        default_type: i32,
    ) -> R<QParams> {
        let rank = dims.len();
        let axis = if axis < 0 { axis + rank as i64 } else { axis };
        let axis = usize::try_from(axis)
            .ok()
            .filter(|&a| a < rank)
            .ok_or_else(|| format!("axis {axis} out of range for rank {rank}"))?;
        let block = usize::try_from(block)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| format!("block_size {block} must be positive"))?;
        let mut want = dims.to_vec();
        want[axis] = dims[axis].div_ceil(block);
        if scale.dims != want || zp.is_some_and(|z| z.dims != want) {
            return Err(format!(
                "blocked quantization of a {dims:?} tensor with block_size {block} along axis \
                 {axis} needs scale and zero point of shape {want:?}, got {:?}",
                scale.dims
            ));
        }
        let flat = |t: &TensorData| TensorData {
            dims: vec![t.numel()],
            ..t.clone()
        };
        let mut q = QParams::read(&flat(scale), zp.map(flat).as_ref(), 0, 1, default_type)?;
        q.axis = axis;
        q.block = block;
        Ok(q)
    }

    pub fn range(&self) -> R<(i64, i64)> {
        Ok(dtype_of(self.onnx)?.range())
    }

    pub fn scale_exact(&self) -> R<Scale> {
        if self.block > 0 {
            return Err(
                "blocked quantization is supported only at graph inputs and outputs".into(),
            );
        }
        let r = self
            .scale
            .iter()
            .map(|&s| Rational::from_f32(s).ok_or("scale out of range"))
            .collect::<Result<_, _>>()?;
        Ok(Scale {
            r,
            axis: self.axis,
            hint: None,
        })
    }

    pub fn to_quant(&self) -> QuantParams {
        QuantParams {
            scale: self.scale.clone(),
            zero_point: self.zp.clone(),
            axis: self.axis,
            block: self.block,
        }
    }
}

/// Shape `[1, .., n, .., 1]` of rank `rank` with `n` at `axis` (per-channel constants).
pub fn channel_dims(rank: usize, axis: usize, n: usize) -> Vec<usize> {
    let mut d = vec![1; rank.max(1)];
    if n > 1 {
        d[axis] = n;
    } else {
        d.truncate(1);
    }
    d
}

impl Importer<'_> {
    /// `DequantizeLinear`.
    pub fn dequantize(&mut self, x: &Sym, q: &QParams) -> R<Real> {
        let scale = q.scale_exact()?;
        match x {
            Sym::Int { node, .. } => {
                let dims = self.g.dims(*node).to_vec();
                let v = if q.zp.iter().all(|&z| z == 0) {
                    *node
                } else {
                    let zd = channel_dims(dims.len(), q.axis, q.zp.len());
                    let z = self.konst(zd, q.zp.clone());
                    self.compute(
                        Instr::Sub {
                            dst: Dst(0),
                            a: Reg(0),
                            b: Reg(1),
                        },
                        &[*node, z],
                    )?
                };
                Ok(Real {
                    v: IntVal::Node(v),
                    scale,
                    divisor: None,
                    func: None,
                    raw: Some((*node, q.to_quant())),
                })
            }
            Sym::Const(t) => {
                let vals = t.ints().ok_or("DequantizeLinear of a float tensor")?;
                let (lo, hi) = dtype_of(t.dtype)?.range();
                let quant = q.to_quant();
                let data: Vec<i64> = vals
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v - q.zp[quant.param_index(i, &t.dims)])
                    .collect();
                let zmin = *q.zp.iter().min().unwrap_or(&0);
                let zmax = *q.zp.iter().max().unwrap_or(&0);
                let data = TensorData {
                    dtype: t.dtype,
                    dims: t.dims.clone(),
                    values: Values::Int(data),
                };
                let name = self.origin.clone();
                Ok(Real::plain(
                    IntVal::Const {
                        data,
                        name,
                        lo: lo - zmax,
                        hi: hi - zmin,
                    },
                    scale,
                ))
            }
            _ => Err("DequantizeLinear needs an integer tensor".into()),
        }
    }

    /// `QuantizeLinear` of a real value: one `rescale`, the zero point, saturation.
    pub fn quantize(&mut self, x: Real, q: &QParams) -> R<Sym> {
        let (qlo, qhi) = q.range()?;
        let dtype = dtype_of(q.onnx)?;
        if q.scale.len() != 1 {
            return Err(
                "per-axis output quantization of a computed tensor is not supported".into(),
            );
        }
        let ys = Rational::from_f32(q.scale[0]).ok_or("scale out of range")?;
        let zy = q.zp[0];
        if let Some(ElemFn::ChannelAffine(ca)) = &x.func {
            return self.quantize_channel_affine(&x, ca, q);
        }
        let v = self.int_node(&x.v)?;
        if let Some(f) = &x.func {
            if x.divisor.is_some() || !x.scale.is_scalar() {
                return Err(
                    "an element-wise function after pooling or per-channel scales is not supported"
                        .into(),
                );
            }
            let d = self.g.decl(v).clone();
            if d.hi - d.lo > 1 << 16 {
                return Err(
                    "the input of an element-wise function has more than 2^16 values".into(),
                );
            }
            let s = x.scale.get(0);
            let table: Vec<i64> = (d.lo..=d.hi)
                .map(|i| -> R<i64> { Ok((f.quantized(i, s, ys)? + zy).clamp(qlo, qhi)) })
                .collect::<Result<_, _>>()?;
            if let Some(n) = self.piecewise(f, v, s, ys, zy, (qlo, qhi), &table, dtype)? {
                return Ok(Sym::Int {
                    node: n,
                    onnx: q.onnx,
                });
            }
            let t = self.g.add_table(ConstTensor {
                dtype: DType::fitting(qlo, qhi),
                dims: vec![table.len()],
                data: table,
            });
            let n = self.compute_to(
                Instr::Lookup {
                    dst: Dst(0),
                    x: Reg(0),
                    table: Index(t),
                    offset: Int(d.lo),
                },
                &[v],
                &[],
                Some(dtype),
            )?;
            return Ok(Sym::Int {
                node: n,
                onnx: q.onnx,
            });
        }
        // Multiplier per channel: onnxruntime's f32 value where it fuses, else exact.
        let channels = x.scale.r.len();
        let mut mults = Vec::with_capacity(channels);
        for c in 0..channels {
            let m = match &x.scale.hint {
                Some(h) => Rational::from_f32(h[if h.len() == 1 { 0 } else { c }] / q.scale[0])
                    .ok_or("multiplier out of range")?,
                None => x
                    .scale
                    .get(c)
                    .checked_div(ys)
                    .ok_or("multiplier out of range")?,
            };
            mults.push(m);
        }
        let vd = self.g.decl(v).clone();
        let rank = vd.ty.dims.len();
        let cd = channel_dims(rank, x.scale.axis, channels);
        let (cdims, div) = match &x.divisor {
            None => (vec![1], vec![1i64]),
            Some(t) => (t.dims.clone(), t.ints().ok_or("bad divisor")?.to_vec()),
        };
        // Full num/den tensors: channel multipliers broadcast against the divisor.
        let dims = qmpc_bytecode::tensor::broadcast_dims(&cd, &cdims).ok_or("divisor shape")?;
        let ct =
            qmpc_bytecode::tensor::Tensor::new(cd.clone(), (0..channels).collect::<Vec<usize>>());
        let ch = qmpc_bytecode::tensor::broadcast_to(&ct, &dims);
        let dt = qmpc_bytecode::tensor::Tensor::new(cdims.clone(), div.clone());
        let dv = qmpc_bytecode::tensor::broadcast_to(&dt, &dims);
        let vmax = (vd.lo as i128).abs().max((vd.hi as i128).abs()).max(1);
        let mut num = Vec::with_capacity(ch.len());
        let mut den = Vec::with_capacity(ch.len());
        for (c, d) in ch.iter().zip(&dv) {
            let mut m = mults[*c]
                .checked_div(Rational::int(*d))
                .ok_or("multiplier out of range")?;
            let fits = |m: &Rational| {
                m.num.abs() < (1i128 << 62)
                    && m.den < (1i128 << 62)
                    && vmax
                        .checked_mul(m.num.abs())
                        .is_some_and(|p| p < RING_BOUND)
            };
            if !fits(&m) {
                // The exact multiplier does not fit the ring: use its nearest f32, as
                // onnxruntime's float kernels do.
                m = m.round_f32().ok_or("multiplier out of range")?;
                while !fits(&m) && m.den > 1 && m.den % 2 == 0 && m.num % 2 == 0 {
                    m = Rational::new(m.num / 2, m.den / 2).ok_or("multiplier")?;
                }
                if !fits(&m) {
                    return Err(format!(
                        "requantization of values up to {vmax} by {} overflows the ring",
                        m.to_f64()
                    ));
                }
            }
            num.push(m.num as i64);
            den.push(m.den as i64);
        }
        let (dims_n, num, den) =
            if num.iter().all(|&n| n == num[0]) && den.iter().all(|&d| d == den[0]) {
                (vec![1], vec![num[0]], vec![den[0]])
            } else {
                (dims.clone(), num, den)
            };
        let nn = self.konst(dims_n.clone(), num);
        let dn = self.konst(dims_n, den);
        let mut y = self.compute(
            Instr::Rescale {
                dst: Dst(0),
                x: Reg(0),
                num: Reg(1),
                den: Reg(2),
            },
            &[v, nn, dn],
        )?;
        if zy != 0 {
            let z = self.konst(vec![1], vec![zy]);
            y = self.compute(
                Instr::Add {
                    dst: Dst(0),
                    a: Reg(0),
                    b: Reg(1),
                },
                &[y, z],
            )?;
        }
        let y = self.compute_to(
            Instr::Clamp {
                dst: Dst(0),
                x: Reg(0),
                lo: Int(qlo),
                hi: Int(qhi),
            },
            &[y],
            &[],
            Some(dtype),
        )?;
        Ok(Sym::Int {
            node: y,
            onnx: q.onnx,
        })
    }

    /// Quantize a compile-time float tensor.
    pub fn quantize_const(&self, t: &TensorData, q: &QParams) -> R<Sym> {
        let x = t.floats().ok_or("QuantizeLinear of an integer tensor")?;
        let (lo, hi) = q.range()?;
        let quant = q.to_quant();
        let vals = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = quant.param_index(i, &t.dims);
                let r = (v / q.scale[c]).round_ties_even() as i64;
                r.saturating_add(q.zp[c]).clamp(lo, hi)
            })
            .collect();
        Ok(Sym::Const(TensorData {
            dtype: q.onnx,
            dims: t.dims.clone(),
            values: Values::Int(vals),
        }))
    }

    /// Bias of a GEMM-like op: added to the accumulator when its scale is the product scale.
    fn add_bias(
        &mut self,
        acc: NodeIndex,
        acc_scale: &Scale,
        bias: &Real,
        bias_dims: Vec<usize>,
    ) -> R<NodeIndex> {
        if bias.divisor.is_some() || bias.func.is_some() {
            return Err("bias must be a plain quantized tensor".into());
        }
        let channels = acc_scale.r.len().max(bias.scale.r.len());
        for c in 0..channels {
            let (a, b) = (acc_scale.get(c).to_f64(), bias.scale.get(c).to_f64());
            if ((a - b) / a).abs() > 1e-6 {
                return Err(format!(
                    "bias scale {b} differs from input scale × weight scale {a}"
                ));
            }
        }
        let bv = match &bias.v {
            IntVal::Const { data, name, lo, hi } => {
                let mut d = data.clone();
                d.dims = bias_dims;
                IntVal::Const {
                    data: d,
                    name: name.clone(),
                    lo: *lo,
                    hi: *hi,
                }
            }
            IntVal::Node(n) => {
                let n = self.compute_to(
                    Instr::Reshape {
                        dst: Dst(0),
                        x: Reg(0),
                    },
                    &[*n],
                    &bias_dims,
                    None,
                )?;
                IntVal::Node(n)
            }
        };
        let b = self.int_node(&bv)?;
        self.compute(
            Instr::Add {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[acc, b],
        )
    }

    /// Output scale of a product: exact `sa · sb[c]`, with onnxruntime's f32 product as hint.
    fn product_scale(&self, a: &Scale, b: &Scale, axis: usize, alpha: f32) -> R<Scale> {
        if !a.is_scalar() {
            return Err("per-channel scales on the activation operand are not supported".into());
        }
        let al = Rational::from_f32(alpha).ok_or("bad alpha")?;
        let n = b.r.len();
        let mut r = Vec::with_capacity(n);
        let mut hint = Vec::with_capacity(n);
        for c in 0..n {
            r.push(
                a.get(0)
                    .checked_mul(b.get(c))
                    .and_then(|x| x.checked_mul(al))
                    .ok_or("scale out of range")?,
            );
            let h = (a.get(0).to_f64() as f32) * (b.get(c).to_f64() as f32);
            hint.push(if alpha == 1.0 { h } else { h * alpha });
        }
        Ok(Scale {
            r,
            axis,
            hint: Some(hint),
        }
        .simplified())
    }

    /// Float `Conv` on reals (from QDQ or QLinearConv).
    pub fn conv(&mut self, x: &Real, w: &Real, b: Option<&Real>, geo: ConvGeometry) -> R<Real> {
        plain(x)?;
        plain(w)?;
        if !w.scale.is_scalar() && w.scale.axis != 0 {
            return Err("per-channel weight scales must be along the output-channel axis".into());
        }
        let xv = self.int_node(&x.v)?;
        let wv = self.int_node(&w.v)?;
        let instr = Instr::Conv {
            dst: Dst(0),
            x: Reg(0),
            w: Reg(1),
            strides: Ints(geo.strides.clone()),
            pads: Ints(geo.pads.clone()),
            dilations: Ints(geo.dilations.clone()),
            group: Int(geo.group),
        };
        let mut acc = self.compute(instr, &[xv, wv])?;
        let scale = self.product_scale(&x.scale, &w.scale, 1, 1.0)?;
        if let Some(b) = b {
            let m = self.g.dims(wv)[0];
            acc = self.add_bias(acc, &scale, b, vec![1, m, 1, 1])?;
        }
        Ok(Real::plain(IntVal::Node(acc), scale))
    }

    /// Float `MatMul` / `Gemm` core: `a [.., m, k] x b [k, n]` (+ bias broadcast on the last axis).
    pub fn matmul(&mut self, a: &Real, b: &Real, bias: Option<&Real>, alpha: f32) -> R<Real> {
        plain(a)?;
        plain(b)?;
        let av = self.int_node(&a.v)?;
        let bv = self.int_node(&b.v)?;
        let brank = self.g.dims(bv).len();
        if !b.scale.is_scalar() && b.scale.axis + 1 != brank {
            return Err(
                "per-channel scales of the right operand must be along its last axis".into(),
            );
        }
        let mut acc = self.compute(
            Instr::MatMul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[av, bv],
        )?;
        let rank = self.g.dims(acc).len();
        let scale = self.product_scale(&a.scale, &b.scale, rank - 1, alpha)?;
        if let Some(c) = bias {
            let bd = match &c.v {
                IntVal::Const { data, .. } => data.dims.clone(),
                IntVal::Node(n) => self.g.dims(*n).to_vec(),
            };
            acc = self.add_bias(acc, &scale, c, bd)?;
        }
        Ok(Real::plain(IntVal::Node(acc), scale))
    }

    /// Float `Add` (or `Sub`) of two reals, exact on a common scale.
    pub fn add(&mut self, a: &Real, b: &Real, subtract: bool) -> R<Real> {
        plain(a)?;
        plain(b)?;
        if !a.scale.is_scalar() || !b.scale.is_scalar() {
            return Err("Add of per-channel quantized tensors is not supported".into());
        }
        let (g, k) = common_scale(&[a.scale.get(0), b.scale.get(0)])?;
        let av = self.int_node(&a.v)?;
        let bv = self.int_node(&b.v)?;
        let av = self.times(av, k[0])?;
        let bv = self.times(bv, k[1])?;
        let instr = if subtract {
            Instr::Sub {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            }
        } else {
            Instr::Add {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            }
        };
        let s = self.compute(instr, &[av, bv])?;
        Ok(Real::plain(IntVal::Node(s), Scale::scalar(g)))
    }

    pub fn times(&mut self, v: NodeIndex, k: i64) -> R<NodeIndex> {
        if k == 1 {
            return Ok(v);
        }
        let c = self.konst(vec![1], vec![k]);
        self.compute(
            Instr::Mul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[v, c],
        )
    }

    /// Float `Mul` of two reals.
    pub fn mul(&mut self, a: &Real, b: &Real) -> R<Real> {
        plain(a)?;
        plain(b)?;
        if !a.scale.is_scalar() || !b.scale.is_scalar() {
            return Err("Mul of per-channel quantized tensors is not supported".into());
        }
        let av = self.int_node(&a.v)?;
        let bv = self.int_node(&b.v)?;
        let p = self.compute(
            Instr::Mul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[av, bv],
        )?;
        let r = a
            .scale
            .get(0)
            .checked_mul(b.scale.get(0))
            .ok_or("scale out of range")?;
        Ok(Real::plain(IntVal::Node(p), Scale::scalar(r)))
    }

    /// Multiply a real by a compile-time float (scalar, or one value per channel of the last axis).
    pub fn mul_const(&mut self, a: &Real, c: &TensorData) -> R<Real> {
        let vals = c.floats().ok_or("Mul by an integer constant")?;
        let mut out = a.clone();
        out.raw = None;
        let rank = match &a.v {
            IntVal::Node(n) => self.g.dims(*n).len(),
            IntVal::Const { data, .. } => data.dims.len(),
        };
        if vals.len() == 1 {
            let k = Rational::from_f32(vals[0]).ok_or("bad constant")?;
            if !k.is_positive() {
                return Err("Mul by a non-positive constant is not supported".into());
            }
            out.scale.r = out
                .scale
                .r
                .iter()
                .map(|r| r.checked_mul(k).ok_or("scale out of range"))
                .collect::<Result<_, _>>()?;
            out.scale.hint = None;
        } else if a.scale.is_scalar()
            && c.dims.iter().filter(|&&d| d > 1).count() == 1
            && c.dims.last() == Some(&vals.len())
        {
            out.scale.r = vals
                .iter()
                .map(|&v| {
                    Rational::from_f32(v)
                        .filter(|k| k.is_positive())
                        .and_then(|k| a.scale.get(0).checked_mul(k))
                        .ok_or("bad constant")
                })
                .collect::<Result<_, _>>()?;
            out.scale.axis = rank - 1;
            out.scale.hint = None;
        } else {
            return Err("Mul by a constant of this shape is not supported".into());
        }
        Ok(out)
    }

    /// Divide a real by a positive scalar float constant: exact, a change of scale.
    pub fn div_const(&mut self, a: &Real, c: &TensorData) -> R<Real> {
        let v = c
            .floats()
            .and_then(|v| v.first().copied())
            .ok_or("bad divisor")?;
        let k = Rational::from_f32(v)
            .filter(|k| k.is_positive())
            .ok_or_else(|| format!("Div by {v}: only positive constant divisors are supported"))?;
        let mut out = a.clone();
        out.raw = None;
        out.scale.hint = None;
        out.scale.r = a
            .scale
            .r
            .iter()
            .map(|r| r.checked_div(k).ok_or("scale out of range"))
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// `Relu`, or `Clip` with real bounds, on a real.
    pub fn clip_real(&mut self, a: &Real, min: Option<f32>, max: Option<f32>) -> R<Real> {
        if let (Some(ElemFn::ChannelAffine(ca)), None) = (&a.func, &a.divisor) {
            let narrowed = super::batchnorm::clamped(ca, min, max);
            return Ok(Real {
                func: Some(ElemFn::ChannelAffine(std::sync::Arc::new(narrowed))),
                raw: None,
                ..a.clone()
            });
        }
        if a.func.is_some() && a.divisor.is_none() {
            // After a float function: part of the function's table.
            use super::expr::{Expr, Unary};
            let lo = min.map_or(f64::NEG_INFINITY, f64::from);
            let hi = max.map_or(f64::INFINITY, f64::from);
            let clip = Expr::Unary(Unary::Clip(lo, hi), std::sync::Arc::new(Expr::X));
            let f = super::sym::ElemFn::Expr(std::sync::Arc::new(clip));
            return Ok(Real {
                func: Some(super::expr::then(a, f)?),
                raw: None,
                ..a.clone()
            });
        }
        plain(a)?;
        // Relu commutes with any positive scale; other bounds need one scale.
        let relu_only = min.is_none_or(|m| m == 0.0) && max.is_none();
        if !a.scale.is_scalar() && !relu_only {
            return Err("Clip of a per-channel quantized tensor is not supported".into());
        }
        let v = self.int_node(&a.v)?;
        let d = self.g.decl(v).clone();
        let s = a.scale.get(0);
        let steps = |m: f32| {
            Rational::from_f32(m)
                .and_then(|m| m.checked_div(s))
                .ok_or("bad bound")
        };
        let lo = match min {
            Some(m) => steps(m)?.ceil().max(d.lo as i128) as i64,
            None => d.lo,
        };
        let hi = match max {
            Some(m) => steps(m)?.floor().min(d.hi as i128) as i64,
            None => d.hi,
        };
        let n = self.compute(
            Instr::Clamp {
                dst: Dst(0),
                x: Reg(0),
                lo: Int(lo),
                hi: Int(hi.max(lo)),
            },
            &[v],
        )?;
        Ok(Real::plain(IntVal::Node(n), a.scale.clone()))
    }

    /// `MaxPool` on a real or an integer node (the maximum commutes with a positive scale).
    pub fn maxpool_node(&mut self, v: NodeIndex, geo: &ConvGeometry) -> R<NodeIndex> {
        let instr = Instr::MaxPool {
            dst: Dst(0),
            x: Reg(0),
            kernel: Ints(geo.kernel.clone()),
            strides: Ints(geo.strides.clone()),
            pads: Ints(geo.pads.clone()),
            dilations: Ints(geo.dilations.clone()),
        };
        let d = self.g.decl(v).ty.dtype;
        self.compute_to(instr, &[v], &[], Some(d))
    }

    /// `AveragePool` / `GlobalAveragePool`: window sums, with the window counts as divisor.
    pub fn avgpool(
        &mut self,
        a: &Real,
        geo: &ConvGeometry,
        count_include_pad: bool,
        ceil_extra: [usize; 2],
    ) -> R<Real> {
        plain(a)?;
        let v = self.int_node(&a.v)?;
        let dims = self.g.dims(v).to_vec();
        let instr = Instr::SumPool {
            dst: Dst(0),
            x: Reg(0),
            kernel: Ints(geo.kernel.clone()),
            strides: Ints(geo.strides.clone()),
            pads: Ints(geo.pads.clone()),
            dilations: Ints(geo.dilations.clone()),
        };
        let s = self.compute(instr, &[v])?;
        let od = self.g.dims(s).to_vec();
        let (h, w) = (dims[2] as i64, dims[3] as i64);
        let (k, st, p, dl) = (&geo.kernel, &geo.strides, &geo.pads, &geo.dilations);
        // Explicit pads (without the extra end padding of ceil mode) count with count_include_pad.
        let (pb_h, pb_w) = (p[2] - ceil_extra[0] as i64, p[3] - ceil_extra[1] as i64);
        let mut counts = Vec::with_capacity(od[2] * od[3]);
        for oy in 0..od[2] as i64 {
            for ox in 0..od[3] as i64 {
                let mut n = 0;
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let y = oy * st[0] + ky * dl[0] - p[0];
                        let x = ox * st[1] + kx * dl[1] - p[1];
                        let inside = if count_include_pad {
                            y >= -p[0] && y < h + pb_h && x >= -p[1] && x < w + pb_w
                        } else {
                            y >= 0 && y < h && x >= 0 && x < w
                        };
                        n += inside as i64;
                    }
                }
                counts.push(n.max(1));
            }
        }
        let divisor = if counts.iter().all(|&c| c == counts[0]) {
            TensorData {
                dtype: data_type::INT64,
                dims: vec![1],
                values: Values::Int(vec![counts[0]]),
            }
        } else {
            TensorData {
                dtype: data_type::INT64,
                dims: vec![1, 1, od[2], od[3]],
                values: Values::Int(counts),
            }
        };
        Ok(Real {
            v: IntVal::Node(s),
            scale: a.scale.clone(),
            divisor: Some(divisor),
            func: None,
            raw: None,
        })
    }
}

/// Window geometry of a conv or pooling node.
#[derive(Clone, Debug)]
pub struct ConvGeometry {
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    /// top, left, bottom, right
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
    pub group: i64,
}

/// The exact common scale `g` of several scales and the integer factors `k` with `r = k · g`:
/// `g = gcd(numerators) / lcm(denominators)`.
pub fn common_scale(rs: &[Rational]) -> R<(Rational, Vec<i64>)> {
    let gn = rs.iter().fold(0, |g, r| gcd(g, r.num));
    let ld = rs
        .iter()
        .try_fold(1i128, |l, r| (l / gcd(l, r.den)).checked_mul(r.den))
        .ok_or("scales too far apart")?;
    let g = Rational::new(gn, ld).ok_or("scale")?;
    let ks = rs
        .iter()
        .map(|r| {
            r.checked_div(g)
                .filter(|k| k.den == 1 && k.num <= 1 << 40)
                .map(|k| k.num as i64)
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("the scales of the operands are too far apart")?;
    Ok((g, ks))
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Reject reals that carry a pending divisor or function: those must be quantized first.
pub fn plain(r: &Real) -> R<()> {
    if r.divisor.is_some() {
        return Err("an averaged tensor must be quantized before further arithmetic".into());
    }
    if r.func.is_some() {
        return Err(
            "an element-wise function's result must be quantized before further arithmetic".into(),
        );
    }
    Ok(())
}
