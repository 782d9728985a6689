//! One handler per ONNX op, dispatched on (domain, op type, opset).

use super::layout::Layout;
use super::rational::Rational;
use super::real::{ConvGeometry, QParams};
use super::sym::{ElemFn, IntVal, Real, Scale, Sym};
use super::{attrs, dtype_of, float_scalar, Importer, R};
use crate::onnx::proto::{data_type, NodeProto};
use crate::onnx::{TensorData, Values};
use qmpc_bytecode::operand::{Dst, Int, Ints, Reg};
use qmpc_bytecode::Instr;

type Handler = fn(&mut Importer, &NodeProto, i64, &[Option<Sym>]) -> R<Vec<Sym>>;

/// (domain, op type, first opset version supported, handler).
const OPS: &[(&str, &str, i64, Handler)] = &[
    ("ai.onnx", "QuantizeLinear", 10, quantize_linear),
    ("ai.onnx", "DequantizeLinear", 10, dequantize_linear),
    ("ai.onnx", "QLinearConv", 10, qlinear_conv),
    ("ai.onnx", "QLinearMatMul", 10, qlinear_matmul),
    ("ai.onnx", "MatMulInteger", 10, matmul_integer),
    ("ai.onnx", "ConvInteger", 10, conv_integer),
    ("com.microsoft", "QGemm", 1, qgemm),
    ("com.microsoft", "QLinearAdd", 1, qlinear_add),
    ("com.microsoft", "QLinearMul", 1, qlinear_mul),
    ("com.microsoft", "QLinearAveragePool", 1, qlinear_avgpool),
    (
        "com.microsoft",
        "QLinearGlobalAveragePool",
        1,
        qlinear_global_avgpool,
    ),
    ("com.microsoft", "QLinearConcat", 1, qlinear_concat),
    ("com.microsoft", "QLinearLeakyRelu", 1, qlinear_leaky_relu),
    ("com.microsoft", "QLinearSigmoid", 1, qlinear_sigmoid),
    ("com.microsoft", "QLinearSoftmax", 1, qlinear_softmax),
    ("ai.onnx", "Conv", 1, conv),
    ("ai.onnx", "MatMul", 1, matmul),
    ("ai.onnx", "Gemm", 1, gemm),
    ("ai.onnx", "Add", 1, add),
    ("ai.onnx", "Sub", 1, sub),
    ("ai.onnx", "Mul", 1, mul),
    ("ai.onnx", "Relu", 1, relu),
    ("ai.onnx", "Clip", 1, clip),
    ("ai.onnx", "LeakyRelu", 1, leaky_relu),
    ("ai.onnx", "Sigmoid", 1, sigmoid),
    ("ai.onnx", "MaxPool", 1, maxpool),
    ("ai.onnx", "AveragePool", 1, avgpool),
    ("ai.onnx", "GlobalAveragePool", 1, global_avgpool),
    ("ai.onnx", "Reshape", 5, reshape),
    ("ai.onnx", "Flatten", 1, flatten),
    ("ai.onnx", "Transpose", 1, transpose),
    ("ai.onnx", "Squeeze", 1, squeeze),
    ("ai.onnx", "Unsqueeze", 1, unsqueeze),
    ("ai.onnx", "Identity", 1, identity),
    ("ai.onnx", "Concat", 1, concat),
    ("ai.onnx", "Pad", 1, pad),
    ("ai.onnx", "Cast", 1, cast),
    ("ai.onnx", "Constant", 1, constant),
    ("ai.onnx", "ConstantOfShape", 9, constant_of_shape),
    ("ai.onnx", "Shape", 1, shape),
    ("ai.onnx", "Gather", 1, super::select::gather),
    ("ai.onnx", "Resize", 10, super::select::resize),
    ("ai.onnx", "Upsample", 7, super::select::resize),
    (
        "ai.onnx",
        "BatchNormalization",
        1,
        super::batchnorm::batch_norm,
    ),
    ("ai.onnx", "Softmax", 1, softmax),
    (
        "ai.onnx",
        "LayerNormalization",
        17,
        super::layernorm::layer_norm,
    ),
    ("ai.onnx", "ArgMax", 1, argmax),
    (
        "ai.onnx",
        "DynamicQuantizeLinear",
        11,
        super::dynamic::dynamic_quantize,
    ),
    ("ai.onnx", "HardSigmoid", 1, hard_sigmoid),
    ("ai.onnx", "HardSwish", 14, hard_swish),
    ("ai.onnx", "Slice", 1, super::select::slice),
    ("ai.onnx", "Split", 1, super::select::split),
    ("ai.onnx", "ReduceMean", 1, super::reduce::reduce_mean),
    ("ai.onnx", "ReduceSum", 1, super::reduce::reduce_sum),
    ("ai.onnx", "ReduceMax", 1, super::reduce::reduce_max),
    ("ai.onnx", "ReduceMin", 1, super::reduce::reduce_min),
    ("ai.onnx", "Div", 1, div),
    ("ai.onnx", "Pow", 1, pow),
    ("ai.onnx", "Max", 1, max),
    ("ai.onnx", "Min", 1, min),
    ("ai.onnx", "Erf", 9, super::expr::erf),
    ("ai.onnx", "Tanh", 1, super::expr::tanh),
    ("ai.onnx", "Exp", 1, super::expr::exp),
    ("ai.onnx", "Log", 1, super::expr::log),
    ("ai.onnx", "Sqrt", 1, super::expr::sqrt),
    ("ai.onnx", "Neg", 1, super::expr::neg),
    ("ai.onnx", "Abs", 1, super::expr::abs),
    ("ai.onnx", "Reciprocal", 1, super::expr::reciprocal),
    ("ai.onnx", "Softplus", 1, super::expr::softplus),
    ("ai.onnx", "Gelu", 20, super::expr::gelu),
    ("ai.onnx", "Elu", 1, super::expr::elu),
];

/// Whether qmpc has a handler for this op (any opset).
pub fn is_supported(domain: &str, op: &str) -> bool {
    OPS.iter().any(|(d, o, _, _)| *d == domain && *o == op)
}

/// The supported ops, for error messages.
pub fn supported_list() -> String {
    let mut v: Vec<String> = OPS
        .iter()
        .map(|(d, o, _, _)| {
            if *d == "ai.onnx" {
                o.to_string()
            } else {
                format!("{d}::{o}")
            }
        })
        .collect();
    v.sort();
    v.join(", ")
}

/// The newest ai.onnx opset qmpc knows. What opsets 24 to 28 changed in the supported ops is
/// new element types (int2/uint2, float8e8m0, ...) and attributes (QuantizeLinear's
/// `precision`), which the type and attribute checks reject; on int8/uint8/int32 tensors with
/// float32 scales they compute what opset 23 does.
const MAX_OPSET: i64 = 28;

pub fn dispatch(
    imp: &mut Importer,
    node: &NodeProto,
    domain: &str,
    opset: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    let Some(&(_, _, since, h)) = OPS
        .iter()
        .find(|(d, o, _, _)| *d == domain && *o == node.op_type)
    else {
        return Err(format!(
            "unsupported op; qmpc compiles: {}",
            supported_list()
        ));
    };
    if opset < since {
        return Err(format!(
            "opset {opset} is older than the {since} qmpc supports for this op"
        ));
    }
    if opset > MAX_OPSET && domain == "ai.onnx" {
        return Err(format!(
            "opset {opset} is newer than qmpc knows (up to {MAX_OPSET})"
        ));
    }
    h(imp, node, opset, inputs)
}

pub(super) fn arg<'a>(inputs: &'a [Option<Sym>], i: usize, what: &str) -> R<&'a Sym> {
    inputs
        .get(i)
        .and_then(Option::as_ref)
        .ok_or_else(|| format!("missing input {i} ({what})"))
}

pub(super) fn opt(inputs: &[Option<Sym>], i: usize) -> Option<&Sym> {
    inputs.get(i).and_then(Option::as_ref)
}

pub(super) fn konst<'a>(inputs: &'a [Option<Sym>], i: usize, what: &str) -> R<&'a TensorData> {
    match arg(inputs, i, what)? {
        Sym::Const(t) => Ok(t),
        _ => Err(format!(
            "{what} must be a constant (an initializer), not computed at run time"
        )),
    }
}

pub(super) fn opt_konst<'a>(
    inputs: &'a [Option<Sym>],
    i: usize,
    what: &str,
) -> R<Option<&'a TensorData>> {
    match opt(inputs, i) {
        None => Ok(None),
        Some(Sym::Const(t)) => Ok(Some(t)),
        Some(_) => Err(format!("{what} must be a constant (an initializer)")),
    }
}

pub(super) fn ints_of(t: &TensorData, what: &str) -> R<Vec<i64>> {
    t.ints()
        .map(<[i64]>::to_vec)
        .ok_or_else(|| format!("{what} must be integers"))
}

pub(super) fn norm_axis(axis: i64, rank: usize) -> R<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a)
        .ok()
        .filter(|&a| a < rank.max(1))
        .ok_or_else(|| format!("axis {axis} out of range for rank {rank}"))
}

pub(super) fn check_attrs(node: &NodeProto, known: &[&str]) -> R<()> {
    match attrs(node).unknown(known) {
        Some(a) => Err(format!("attribute `{a}` is not supported")),
        None => Ok(()),
    }
}

pub(super) fn real_of(imp: &mut Importer, s: &Sym) -> R<Real> {
    match s {
        Sym::Real(r) => Ok(r.clone()),
        Sym::Int { node, onnx } if *onnx == data_type::INT32 => Ok(Real::plain(IntVal::Node(*node), Scale::scalar(Rational::int(1)))),
        Sym::FloatInput { .. } => Err("a float input must be quantized (QuantizeLinear) before arithmetic".into()),
        Sym::Const(t) if t.is_float() => {
            Err("float arithmetic on a float constant: qmpc computes on quantized tensors (a float model must be quantized first)".into())
        }
        Sym::Int { onnx, .. } => {
            let _ = imp;
            Err(format!(
                "arithmetic on a raw {} tensor (ONNX wraps around on overflow): qmpc \
                 computes on quantized tensors; use QLinear* ops or DequantizeLinear first",
                data_type::name(*onnx)
            ))
        }
        _ => {
            let _ = imp;
            Err("expected a dequantized (real) tensor".into())
        }
    }
}

fn qparams(
    inputs: &[Option<Sym>],
    si: usize,
    zi: usize,
    axis: i64,
    rank: usize,
    default: i32,
) -> R<QParams> {
    let s = konst(inputs, si, "scale")?;
    let z = opt_konst(inputs, zi, "zero point")?;
    QParams::read(s, z, axis, rank, default)
}

pub(super) fn one(s: Sym) -> R<Vec<Sym>> {
    Ok(vec![s])
}

// ---- quantize / dequantize -------------------------------------------------------------

fn quantize_linear(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["axis", "saturate", "output_dtype", "block_size"])?;
    let a = attrs(node);
    let x = arg(inputs, 0, "x")?;
    let dims = imp.sym_dims(x)?;
    let out_t = a.int("output_dtype", 0)? as i32;
    let default_t = if out_t != 0 { out_t } else { data_type::UINT8 };
    let q = qdq_params(
        inputs,
        a.int("axis", 1)?,
        a.int("block_size", 0)?,
        &dims,
        default_t,
    )?;
    if q.block > 0 && !matches!(x, Sym::FloatInput { .. } | Sym::Const(_)) {
        return Err(
            "blocked quantization of a computed tensor is not supported (only of graph inputs)"
                .into(),
        );
    }
    if out_t != 0 && out_t != q.onnx {
        return Err("output_dtype differs from the zero point's type".into());
    }
    match x {
        Sym::FloatInput {
            name,
            dims,
            batched,
        } => {
            let ty = qmpc_bytecode::TensorType {
                dtype: dtype_of(q.onnx)?,
                dims: dims.clone(),
                batched: *batched,
            };
            let decl = qmpc_bytecode::InputDecl {
                name: name.clone(),
                external: qmpc_bytecode::ExternalType::F32,
                quant: Some(q.to_quant()),
                ty,
            };
            let o = imp.origin.clone();
            let node = imp.g.add_input(decl, &o);
            one(Sym::Int { node, onnx: q.onnx })
        }
        Sym::Real(r) => one(imp.quantize(r.clone(), &q)?),
        Sym::Softmax { real, axis } => one(imp.quantize_softmax(real, *axis, &q)?),
        Sym::LayerNorm(ln) => one(imp.quantize_layer_norm(ln, &q)?),
        Sym::Const(t) if t.is_float() => one(imp.quantize_const(t, &q)?),
        _ => Err("QuantizeLinear needs a float tensor".into()),
    }
}

fn dequantize_linear(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["axis", "block_size", "output_dtype"])?;
    let a = attrs(node);
    let x = arg(inputs, 0, "x")?;
    let dims = imp.sym_dims(x)?;
    let xt = match x {
        Sym::Int { onnx, .. } => *onnx,
        Sym::Const(t) => t.dtype,
        _ => return Err("DequantizeLinear needs an integer tensor".into()),
    };
    let out_t = a.int("output_dtype", 0)? as i32;
    if !matches!(out_t, 0 | data_type::FLOAT) {
        return Err(format!(
            "output_dtype {} is not supported (float32 only)",
            data_type::name(out_t)
        ));
    }
    let q = qdq_params(
        inputs,
        a.int("axis", 1)?,
        a.int("block_size", 0)?,
        &dims,
        xt,
    )?;
    match x {
        Sym::Int { node, .. } if q.block > 0 => one(Sym::BlockedReal {
            node: *node,
            quant: q.to_quant(),
        }),
        _ => one(Sym::Real(imp.dequantize(x, &q)?)),
    }
}

/// Scale and zero point of `QuantizeLinear` / `DequantizeLinear` (inputs 1 and 2).
fn qdq_params(
    inputs: &[Option<Sym>],
    axis: i64,
    block: i64,
    dims: &[usize],
    default: i32,
) -> R<QParams> {
    if block == 0 {
        return qparams(inputs, 1, 2, axis, dims.len(), default);
    }
    let s = konst(inputs, 1, "scale")?;
    let z = opt_konst(inputs, 2, "zero point")?;
    QParams::read_blocked(s, z, axis, block, dims, default)
}

// ---- convolution and matrix products ----------------------------------------------------

fn geometry(
    imp: &Importer,
    node: &NodeProto,
    x_dims: &[usize],
    kernel: Vec<i64>,
    group: i64,
) -> R<(ConvGeometry, [usize; 2])> {
    let a = attrs(node);
    if x_dims.len() != 4 || kernel.len() != 2 {
        return Err(format!(
            "only 2-D windows over [N, C, H, W] are supported (input {x_dims:?})"
        ));
    }
    let strides = a.ints("strides")?.unwrap_or(vec![1, 1]);
    let dilations = a.ints("dilations")?.unwrap_or(vec![1, 1]);
    if strides.len() != 2
        || dilations.len() != 2
        || strides.iter().chain(&dilations).any(|&v| v < 1)
    {
        return Err("strides and dilations must be 2 positive values".into());
    }
    let auto_pad = a.string("auto_pad", "NOTSET")?;
    let ceil = a.int("ceil_mode", 0)? == 1;
    let ext = |i: usize| (kernel[i] - 1) * dilations[i] + 1;
    let (h, w) = (x_dims[2] as i64, x_dims[3] as i64);
    let mut pads = match auto_pad.as_str() {
        "NOTSET" => {
            let p = a.ints("pads")?.unwrap_or(vec![0; 4]);
            if p.len() != 4 || p.iter().any(|&v| v < 0) {
                return Err(format!("pads {p:?} must be 4 non-negative values"));
            }
            // ONNX order is [top, left, bottom, right]: begins then ends.
            vec![p[0], p[1], p[2], p[3]]
        }
        "VALID" => vec![0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = vec![0; 4];
            for (i, n) in [h, w].into_iter().enumerate() {
                let out = (n + strides[i] - 1) / strides[i];
                let total = ((out - 1) * strides[i] + ext(i) - n).max(0);
                let (small, big) = (total / 2, total - total / 2);
                if auto_pad == "SAME_UPPER" {
                    p[i] = small;
                    p[i + 2] = big;
                } else {
                    p[i] = big;
                    p[i + 2] = small;
                }
            }
            p
        }
        other => return Err(format!("auto_pad `{other}` is not supported")),
    };
    let mut extra = [0usize; 2];
    if ceil {
        for (i, n) in [h, w].into_iter().enumerate() {
            let span = n + pads[i] + pads[i + 2] - ext(i);
            if span < 0 {
                return Err("window larger than the input".into());
            }
            let mut out = (span + strides[i] - 1) / strides[i] + 1;
            // The last window must start inside the input or its begin padding.
            if (out - 1) * strides[i] >= n + pads[i] {
                out -= 1;
            }
            let need = (out - 1) * strides[i] + ext(i) - (n + pads[i] + pads[i + 2]);
            if need > 0 {
                pads[i + 2] += need;
                extra[i] = need as usize;
            }
        }
    }
    let _ = imp;
    Ok((
        ConvGeometry {
            kernel,
            strides,
            pads,
            dilations,
            group,
        },
        extra,
    ))
}

fn conv_attrs(node: &NodeProto) -> R<()> {
    check_attrs(
        node,
        &[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
        ],
    )
}

fn conv_real(
    imp: &mut Importer,
    node: &NodeProto,
    x: &Real,
    w: &Real,
    b: Option<&Real>,
) -> R<Real> {
    conv_attrs(node)?;
    let xd = match &x.v {
        IntVal::Node(n) => imp.g.dims(*n).to_vec(),
        IntVal::Const { data, .. } => data.dims.clone(),
    };
    let wd = match &w.v {
        IntVal::Node(n) => imp.g.dims(*n).to_vec(),
        IntVal::Const { data, .. } => data.dims.clone(),
    };
    if wd.len() != 4 {
        return Err(format!(
            "only 2-D convolutions are supported (weight {wd:?})"
        ));
    }
    let group = attrs(node).int("group", 1)?;
    let (geo, _) = geometry(imp, node, &xd, vec![wd[2] as i64, wd[3] as i64], group)?;
    imp.conv(x, w, b, geo)
}

fn qlinear_conv(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    let x = arg(inputs, 0, "x")?;
    let w = arg(inputs, 3, "w")?;
    let (xr, wr) = (imp.sym_dims(x)?.len(), imp.sym_dims(w)?.len());
    let xq = qparams(inputs, 1, 2, 1, xr, data_type::UINT8)?;
    let wq = qparams(inputs, 4, 5, 0, wr, data_type::UINT8)?;
    let yq = qparams(inputs, 6, 7, 1, xr, data_type::UINT8)?;
    let xr = imp.dequantize(x, &xq)?;
    let wr = imp.dequantize(w, &wq)?;
    let b = bias_real(inputs, 8, &xq, &wq)?;
    let y = conv_real(imp, node, &xr, &wr, b.as_ref())?;
    one(imp.quantize(y, &yq)?)
}

/// An int32 bias of a QOperator op: scale `x_scale · w_scale`.
fn bias_real(inputs: &[Option<Sym>], i: usize, xq: &QParams, wq: &QParams) -> R<Option<Real>> {
    let Some(b) = opt_konst(inputs, i, "bias")? else {
        return Ok(None);
    };
    let xs = xq.scale_exact()?;
    let ws = wq.scale_exact()?;
    let r = (0..ws.r.len())
        .map(|c| xs.get(0).checked_mul(ws.get(c)).ok_or("scale out of range"))
        .collect::<Result<Vec<_>, _>>()?;
    let (lo, hi) = dtype_of(b.dtype)?.range();
    Ok(Some(Real::plain(
        IntVal::Const {
            data: b.clone(),
            name: "bias".into(),
            lo,
            hi,
        },
        Scale {
            r,
            axis: 0,
            hint: None,
        },
    )))
}

fn conv(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    let x = real_of(imp, arg(inputs, 0, "X")?)?;
    let w = real_of(imp, arg(inputs, 1, "W")?)?;
    let b = opt(inputs, 2).map(|b| real_of(imp, b)).transpose()?;
    one(Sym::Real(conv_real(imp, node, &x, &w, b.as_ref())?))
}

fn matmul(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    let a = real_of(imp, arg(inputs, 0, "A")?)?;
    let b = real_of(imp, arg(inputs, 1, "B")?)?;
    one(Sym::Real(imp.matmul(&a, &b, None, 1.0)?))
}

fn qlinear_matmul(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    let a = arg(inputs, 0, "a")?;
    let b = arg(inputs, 3, "b")?;
    let (ar, br) = (imp.sym_dims(a)?.len(), imp.sym_dims(b)?.len());
    let aq = qparams(inputs, 1, 2, 1, ar, data_type::UINT8)?;
    let bq = qparams(inputs, 4, 5, br as i64 - 1, br, data_type::UINT8)?;
    let yq = qparams(inputs, 6, 7, 1, ar, data_type::UINT8)?;
    let ar = imp.dequantize(a, &aq)?;
    let br = imp.dequantize(b, &bq)?;
    let y = imp.matmul(&ar, &br, None, 1.0)?;
    one(imp.quantize(y, &yq)?)
}

/// Integer matmul / conv: `(a - a_zp) · (b - b_zp)` in int32.
fn integer_operands(imp: &mut Importer, inputs: &[Option<Sym>], b_axis: i64) -> R<(Real, Real)> {
    let a = arg(inputs, 0, "A")?;
    let b = arg(inputs, 1, "B")?;
    let (ar, br) = (imp.sym_dims(a)?.len(), imp.sym_dims(b)?.len());
    let at = match a {
        Sym::Int { onnx, .. } => *onnx,
        Sym::Const(t) => t.dtype,
        _ => return Err("MatMulInteger/ConvInteger need integer operands".into()),
    };
    let bt = match b {
        Sym::Int { onnx, .. } => *onnx,
        Sym::Const(t) => t.dtype,
        _ => return Err("MatMulInteger/ConvInteger need integer operands".into()),
    };
    let one_f = TensorData {
        dtype: data_type::FLOAT,
        dims: vec![],
        values: Values::Float(vec![1.0]),
    };
    let bz = opt_konst(inputs, 3, "b_zero_point")?;
    // A DynamicQuantizeLinear's zero point is secret, per sample.
    let dynamic_a = match (a, opt(inputs, 2)) {
        (Sym::Int { node, .. }, Some(Sym::Int { node: zp, .. })) => {
            Some(imp.minus_dynamic_zero_point(*node, *zp)?)
        }
        _ => None,
    };
    let az = if dynamic_a.is_some() {
        None
    } else {
        opt_konst(inputs, 2, "a_zero_point")?
    };
    let aq = QParams::read(&one_f, az, 1, ar, at)?;
    let b_axis = if bz.is_some_and(|z| z.numel() > 1) {
        b_axis
    } else {
        0
    };
    let bones = TensorData {
        dtype: data_type::FLOAT,
        dims: vec![bz.map_or(1, |z| z.numel())],
        values: Values::Float(vec![1.0; bz.map_or(1, |z| z.numel())]),
    };
    let bq = QParams::read(
        if bz.is_some_and(|z| z.numel() > 1) {
            &bones
        } else {
            &one_f
        },
        bz,
        b_axis,
        br,
        bt,
    )?;
    let a = match dynamic_a {
        Some(r) => r,
        None => imp.dequantize(a, &aq)?,
    };
    Ok((a, imp.dequantize(b, &bq)?))
}

fn int32_of(imp: &mut Importer, r: Real) -> R<Vec<Sym>> {
    let n = imp.int_node(&r.v)?;
    one(Sym::Int {
        node: n,
        onnx: data_type::INT32,
    })
}

fn matmul_integer(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    let br = imp.sym_dims(arg(inputs, 1, "B")?)?.len() as i64;
    let (a, b) = integer_operands(imp, inputs, br - 1)?;
    let y = imp.matmul(&a, &b, None, 1.0)?;
    int32_of(imp, y)
}

fn conv_integer(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    let (x, w) = integer_operands(imp, inputs, 0)?;
    let y = conv_real(imp, node, &x, &w, None)?;
    int32_of(imp, y)
}

/// Transpose a compile-time 2-D operand, or emit a transpose for a run-time one.
fn transpose_2d(imp: &mut Importer, r: &Real) -> R<Real> {
    let s = Sym::Real(r.clone());
    let d = imp.sym_dims(&s)?;
    if d.len() != 2 {
        return Err(format!("Gemm operands must be 2-D, is {d:?}"));
    }
    match imp.layout(&s, &Layout::Transpose(vec![1, 0]))? {
        Sym::Real(out) => Ok(out),
        _ => Err("transpose".into()),
    }
}

fn gemm_core(imp: &mut Importer, node: &NodeProto, a: Real, b: Real, c: Option<Real>) -> R<Real> {
    let at = attrs(node);
    let alpha = at.float("alpha", 1.0)?;
    let beta = at.float("beta", 1.0)?;
    let a = if at.int("transA", 0)? == 1 {
        transpose_2d(imp, &a)?
    } else {
        a
    };
    let mut b = if at.int("transB", 0)? == 1 {
        transpose_2d(imp, &b)?
    } else {
        b
    };
    if !b.scale.is_scalar() {
        b.scale.axis = 1; // per output channel: the last axis of [K, N]
    }
    if alpha <= 0.0 {
        return Err("Gemm alpha must be positive".into());
    }
    let c = match c {
        Some(mut c) if beta != 1.0 => {
            let k = Rational::from_f32(beta).ok_or("bad beta")?;
            c.scale.r = c
                .scale
                .r
                .iter()
                .map(|r| r.checked_mul(k).ok_or("scale"))
                .collect::<Result<_, _>>()?;
            Some(c)
        }
        c => c,
    };
    imp.matmul(&a, &b, c.as_ref(), alpha)
}

fn gemm(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["alpha", "beta", "transA", "transB"])?;
    let a = real_of(imp, arg(inputs, 0, "A")?)?;
    let b = real_of(imp, arg(inputs, 1, "B")?)?;
    let c = opt(inputs, 2).map(|c| real_of(imp, c)).transpose()?;
    one(Sym::Real(gemm_core(imp, node, a, b, c)?))
}

fn qgemm(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["alpha", "transA", "transB"])?;
    let a = arg(inputs, 0, "A")?;
    let b = arg(inputs, 3, "B")?;
    let (ar, br) = (imp.sym_dims(a)?.len(), imp.sym_dims(b)?.len());
    let at = attrs(node);
    let b_axis = if at.int("transB", 0)? == 1 {
        0
    } else {
        br as i64 - 1
    };
    let aq = qparams(inputs, 1, 2, 1, ar, data_type::UINT8)?;
    let bq = qparams(inputs, 4, 5, b_axis, br, data_type::UINT8)?;
    let a = imp.dequantize(a, &aq)?;
    let b = imp.dequantize(b, &bq)?;
    let c = bias_real(inputs, 6, &aq, &bq)?;
    let y = gemm_core(imp, node, a, b, c)?;
    match opt(inputs, 7) {
        Some(_) => {
            let yq = qparams(inputs, 7, 8, 1, ar, data_type::UINT8)?;
            one(imp.quantize(y, &yq)?)
        }
        None => one(Sym::Real(y)),
    }
}

// ---- element-wise -----------------------------------------------------------------------

fn binary(imp: &mut Importer, node: &NodeProto, inputs: &[Option<Sym>], op: &str) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    let (a, b) = (arg(inputs, 0, "A")?, arg(inputs, 1, "B")?);
    if let (Sym::Const(x), Sym::Const(y)) = (a, b) {
        return one(Sym::Const(fold_binary(x, y, op)?));
    }
    if let Some(y) = dynamic_binary(imp, a, b, op)? {
        return one(y);
    }
    let pending = |s: &Sym| matches!(s, Sym::Real(r) if r.func.is_some());
    // A positive constant factor or divisor is a change of scale (exact, free); another
    // scalar (a negative one) falls through to the table below.
    if op == "Mul" && !pending(a) && !pending(b) {
        if let (Sym::Real(r), Sym::Const(c)) | (Sym::Const(c), Sym::Real(r)) = (a, b) {
            if c.is_float() {
                match imp.mul_const(r, c) {
                    Ok(y) => return one(Sym::Real(y)),
                    Err(e) if c.numel() != 1 => return Err(e),
                    Err(_) => {}
                }
            }
        }
    }
    if op == "Div" && !pending(a) {
        if let (Sym::Real(r), Sym::Const(c)) = (a, b) {
            if c.is_float() && c.numel() == 1 {
                if let Ok(y) = imp.div_const(r, c) {
                    return one(Sym::Real(y));
                }
            }
        }
    }
    // A float function of one quantized tensor (GELU's parts, SiLU's product, an added
    // constant): evaluated at compile time for every value of that tensor.
    let float_const = |s: &Sym| matches!(s, Sym::Const(t) if t.is_float());
    let as_expr = pending(a)
        || pending(b)
        || !matches!(op, "Add" | "Sub" | "Mul")
        || float_const(a)
        || float_const(b);
    if as_expr {
        let f = match op {
            "Add" => super::expr::Binary::Add,
            "Sub" => super::expr::Binary::Sub,
            "Mul" => super::expr::Binary::Mul,
            "Div" => super::expr::Binary::Div,
            "Pow" => super::expr::Binary::Pow,
            "Max" => super::expr::Binary::Max,
            _ => super::expr::Binary::Min,
        };
        return match super::expr::binary(a, b, f) {
            Some(r) => one(Sym::Real(r)),
            None => Err(format!(
                "{op} of these operands is not supported: qmpc computes float {op} where its \
                 operands are functions of one quantized tensor or scalar constants"
            )),
        };
    }
    if let (Sym::Int { node: x, onnx: t }, Sym::Int { node: y, .. }) = (a, b) {
        let instr = match op {
            "Add" => Instr::Add {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            "Sub" => Instr::Sub {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            _ => Instr::Mul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
        };
        let n = imp.compute(instr, &[*x, *y])?;
        return one(Sym::Int {
            node: n,
            onnx: if *t == data_type::INT64 {
                *t
            } else {
                data_type::INT32
            },
        });
    }
    let (x, y) = (real_of(imp, a)?, real_of(imp, b)?);
    one(Sym::Real(match op {
        "Add" => imp.add(&x, &y, false)?,
        "Sub" => imp.add(&x, &y, true)?,
        _ => imp.mul(&x, &y)?,
    }))
}

/// The float tail of dynamic quantization (`frontend/dynamic.rs`): a dynamic scale times a
/// constant or a real, and a float constant added to a real too wide for a table.
fn dynamic_binary(imp: &mut Importer, a: &Sym, b: &Sym, op: &str) -> R<Option<Sym>> {
    use super::dynamic::{is_wide, positive_scalar};
    match (a, b) {
        (Sym::DynScale { range, unit }, Sym::Const(c))
        | (Sym::Const(c), Sym::DynScale { range, unit })
            if op == "Mul" =>
        {
            let k = positive_scalar(c)
                .ok_or("a dynamic scale may be multiplied only by a positive float scalar")?;
            let unit = unit.checked_mul(k).ok_or("scale out of range")?;
            Ok(Some(Sym::DynScale {
                range: *range,
                unit,
            }))
        }
        (Sym::DynScale { range, unit }, Sym::Real(r))
        | (Sym::Real(r), Sym::DynScale { range, unit })
            if op == "Mul" =>
        {
            Ok(Some(Sym::Real(imp.times_dynamic_scale(r, *range, *unit)?)))
        }
        (Sym::DynScale { .. }, _) | (_, Sym::DynScale { .. }) => Err(format!(
            "{op} of a DynamicQuantizeLinear scale: qmpc takes it only as a factor of a \
             MatMulInteger / ConvInteger result, after a Mul by the weight scale (as \
             onnxruntime's quantize_dynamic writes it)"
        )),
        (Sym::Real(r), Sym::Const(c)) | (Sym::Const(c), Sym::Real(r))
            if matches!(op, "Add" | "Sub")
                && c.is_float()
                && r.func.is_none()
                && r.divisor.is_none()
                && r.scale.is_scalar()
                && is_wide(imp, r) =>
        {
            let real_first = matches!(a, Sym::Real(_));
            let (sign, const_sign) = match (op, real_first) {
                ("Sub", true) => (1, -1),
                ("Sub", false) => (-1, 1),
                _ => (1, 1),
            };
            Ok(Some(Sym::Real(
                imp.add_const_rounded(r, c, sign, const_sign)?,
            )))
        }
        _ => Ok(None),
    }
}

fn fold_binary(x: &TensorData, y: &TensorData, op: &str) -> R<TensorData> {
    let dims = qmpc_bytecode::shapes::broadcast(&x.dims, &y.dims)?;
    let bx = |t: &TensorData| -> R<Vec<i64>> {
        Ok(qmpc_bytecode::tensor::broadcast_to(
            &qmpc_bytecode::tensor::Tensor::new(t.dims.clone(), ints_of(t, "operand")?),
            &dims,
        ))
    };
    if x.is_float() || y.is_float() {
        let fx = |t: &TensorData| -> R<Vec<f32>> {
            let v = t.floats().ok_or("mixed float and integer constants")?;
            Ok(qmpc_bytecode::tensor::broadcast_to(
                &qmpc_bytecode::tensor::Tensor::new(t.dims.clone(), v.to_vec()),
                &dims,
            ))
        };
        let (a, b) = (fx(x)?, fx(y)?);
        let v = a.iter().zip(&b).map(|(p, q)| match op {
            "Add" => p + q,
            "Sub" => p - q,
            "Div" => p / q,
            "Pow" => p.powf(*q),
            "Max" => p.max(*q),
            "Min" => p.min(*q),
            _ => p * q,
        });
        return Ok(TensorData {
            dtype: data_type::FLOAT,
            dims,
            values: Values::Float(v.collect()),
        });
    }
    let (a, b) = (bx(x)?, bx(y)?);
    if op == "Div" && b.contains(&0) {
        return Err("integer division by zero".into());
    }
    let v = a.iter().zip(&b).map(|(p, q)| match op {
        "Add" => p.wrapping_add(*q),
        "Sub" => p.wrapping_sub(*q),
        // ONNX's integer Div truncates toward zero, as Rust's does.
        "Div" => p.wrapping_div(*q),
        "Pow" => p.wrapping_pow((*q).clamp(0, 64) as u32),
        "Max" => *p.max(q),
        "Min" => *p.min(q),
        _ => p.wrapping_mul(*q),
    });
    Ok(TensorData {
        dtype: x.dtype,
        dims,
        values: Values::Int(v.collect()),
    })
}

fn add(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    binary(imp, node, inputs, "Add")
}
fn sub(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    binary(imp, node, inputs, "Sub")
}
fn mul(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    binary(imp, node, inputs, "Mul")
}
fn div(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    binary(imp, node, inputs, "Div")
}
fn pow(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    binary(imp, node, inputs, "Pow")
}
/// `Max` / `Min` of two operands (ONNX allows any number; exporters emit two).
fn extremum(imp: &mut Importer, node: &NodeProto, inputs: &[Option<Sym>], op: &str) -> R<Vec<Sym>> {
    if inputs.iter().flatten().count() != 2 {
        return Err(format!("{op} of {} operands: qmpc takes two", inputs.len()));
    }
    binary(imp, node, inputs, op)
}
fn max(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    extremum(imp, node, inputs, "Max")
}
fn min(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    extremum(imp, node, inputs, "Min")
}

fn qlinear_binary(
    imp: &mut Importer,
    node: &NodeProto,
    inputs: &[Option<Sym>],
    is_mul: bool,
) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    let a = arg(inputs, 0, "A")?;
    let b = arg(inputs, 3, "B")?;
    let (ar, br) = (imp.sym_dims(a)?.len(), imp.sym_dims(b)?.len());
    let aq = qparams(inputs, 1, 2, 1, ar, data_type::UINT8)?;
    let bq = qparams(inputs, 4, 5, 1, br, data_type::UINT8)?;
    let cq = qparams(inputs, 6, 7, 1, ar.max(br), data_type::UINT8)?;
    let (x, y) = (imp.dequantize(a, &aq)?, imp.dequantize(b, &bq)?);
    let r = if is_mul {
        imp.mul(&x, &y)?
    } else {
        imp.add(&x, &y, false)?
    };
    one(imp.quantize(r, &cq)?)
}

fn qlinear_add(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    qlinear_binary(imp, node, inputs, false)
}
fn qlinear_mul(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    qlinear_binary(imp, node, inputs, true)
}

fn relu(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    match arg(inputs, 0, "X")? {
        Sym::Int { node, onnx } => {
            let hi = imp.g.decl(*node).hi.max(0);
            let d = imp.g.decl(*node).ty.dtype;
            let n = imp.compute_to(
                Instr::Clamp {
                    dst: Dst(0),
                    x: Reg(0),
                    lo: Int(0),
                    hi: Int(hi),
                },
                &[*node],
                &[],
                Some(d),
            )?;
            one(Sym::Int {
                node: n,
                onnx: *onnx,
            })
        }
        s => {
            let r = real_of(imp, s)?;
            one(Sym::Real(imp.clip_real(&r, Some(0.0), None)?))
        }
    }
}

fn clip(imp: &mut Importer, node: &NodeProto, opset: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    let a = attrs(node);
    let (min, max): (Option<TensorData>, Option<TensorData>) = if opset < 11 {
        check_attrs(node, &["min", "max"])?;
        let f = |n: &str| -> R<Option<TensorData>> {
            Ok(if a.has(n) {
                Some(TensorData {
                    dtype: data_type::FLOAT,
                    dims: vec![],
                    values: Values::Float(vec![a.float(n, 0.0)?]),
                })
            } else {
                None
            })
        };
        (f("min")?, f("max")?)
    } else {
        check_attrs(node, &[])?;
        (
            opt_konst(inputs, 1, "min")?.cloned(),
            opt_konst(inputs, 2, "max")?.cloned(),
        )
    };
    match arg(inputs, 0, "input")? {
        Sym::Int { node, onnx } => {
            let d = imp.g.decl(*node).clone();
            let lo = min
                .as_ref()
                .map(|t| ints_of(t, "min"))
                .transpose()?
                .map_or(d.lo, |v| v[0]);
            let hi = max
                .as_ref()
                .map(|t| ints_of(t, "max"))
                .transpose()?
                .map_or(d.hi, |v| v[0]);
            let n = imp.compute_to(
                Instr::Clamp {
                    dst: Dst(0),
                    x: Reg(0),
                    lo: Int(lo),
                    hi: Int(hi.max(lo)),
                },
                &[*node],
                &[],
                Some(d.ty.dtype),
            )?;
            one(Sym::Int {
                node: n,
                onnx: *onnx,
            })
        }
        Sym::Const(_) => Err("Clip of a constant".into()),
        s => {
            let r = real_of(imp, s)?;
            let f = |t: Option<TensorData>| -> R<Option<f32>> {
                t.map(|t| float_scalar(&t, "bound").map(|v| v[0]))
                    .transpose()
            };
            one(Sym::Real(imp.clip_real(&r, f(min)?, f(max)?)?))
        }
    }
}

pub(super) fn with_func(imp: &mut Importer, inputs: &[Option<Sym>], f: ElemFn) -> R<Real> {
    let mut r = real_of(imp, arg(inputs, 0, "X")?)?;
    if r.divisor.is_some() {
        return Err("an averaged tensor must be quantized before a float function".into());
    }
    r.func = Some(super::expr::then(&r, f)?);
    r.raw = None;
    Ok(r)
}

fn leaky_relu(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["alpha"])?;
    let alpha = attrs(node).float("alpha", 0.01)?;
    one(Sym::Real(with_func(imp, inputs, ElemFn::LeakyRelu(alpha))?))
}

fn sigmoid(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    one(Sym::Real(with_func(imp, inputs, ElemFn::Sigmoid)?))
}

fn hard_sigmoid(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["alpha", "beta"])?;
    let a = attrs(node);
    let f = ElemFn::HardSigmoid {
        alpha: a.float("alpha", 0.2)?,
        beta: a.float("beta", 0.5)?,
    };
    one(Sym::Real(with_func(imp, inputs, f)?))
}

fn hard_swish(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    one(Sym::Real(with_func(imp, inputs, ElemFn::HardSwish)?))
}

/// The dequantized `X` of a one-input com.microsoft op (`X, X_scale, X_zp, Y_scale, Y_zp`)
/// and the parameters of its output.
fn qlinear_operand(imp: &mut Importer, inputs: &[Option<Sym>]) -> R<(Real, QParams)> {
    let x = arg(inputs, 0, "X")?;
    let r = imp.sym_dims(x)?.len();
    let xq = qparams(inputs, 1, 2, 1, r, data_type::UINT8)?;
    let yq = qparams(inputs, 3, 4, 1, r, data_type::UINT8)?;
    Ok((imp.dequantize(x, &xq)?, yq))
}

fn qlinear_unary(imp: &mut Importer, inputs: &[Option<Sym>], f: ElemFn) -> R<Vec<Sym>> {
    let (mut xr, yq) = qlinear_operand(imp, inputs)?;
    xr.func = Some(f);
    one(imp.quantize(xr, &yq)?)
}

fn qlinear_leaky_relu(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["alpha"])?;
    qlinear_unary(
        imp,
        inputs,
        ElemFn::LeakyRelu(attrs(node).float("alpha", 0.01)?),
    )
}

fn qlinear_sigmoid(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    qlinear_unary(imp, inputs, ElemFn::Sigmoid)
}

/// onnxruntime's `QLinearSoftmax` (QOperator form): its `opset` attribute says which
/// Softmax it is (before 13, the trailing axes from `axis` are one; only the last is taken).
fn qlinear_softmax(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["axis", "opset"])?;
    let a = attrs(node);
    let opset = a.int("opset", 13)?;
    let (xr, yq) = qlinear_operand(imp, inputs)?;
    let rank = imp.sym_dims(&Sym::Real(xr.clone()))?.len();
    let axis = norm_axis(a.int("axis", if opset >= 13 { -1 } else { 1 })?, rank)?;
    if opset < 13 && axis + 1 != rank {
        return Err(
            "QLinearSoftmax of a Softmax before opset 13 flattens trailing axes; only the last \
             axis is supported"
                .into(),
        );
    }
    one(imp.quantize_softmax(&xr, axis, &yq)?)
}

// ---- pooling ------------------------------------------------------------------------------

fn pool_kernel(node: &NodeProto) -> R<Vec<i64>> {
    attrs(node)
        .ints("kernel_shape")?
        .ok_or_else(|| "kernel_shape is required".to_string())
}

fn maxpool(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(
        node,
        &[
            "auto_pad",
            "ceil_mode",
            "dilations",
            "kernel_shape",
            "pads",
            "storage_order",
            "strides",
        ],
    )?;
    if node.output.len() > 1 && !node.output[1].is_empty() {
        return Err("the Indices output of MaxPool is not supported".into());
    }
    let x = arg(inputs, 0, "X")?;
    let dims = imp.sym_dims(x)?;
    let (geo, _) = geometry(imp, node, &dims, pool_kernel(node)?, 1)?;
    match x {
        Sym::Int { node, onnx } => {
            let n = imp.maxpool_node(*node, &geo)?;
            one(Sym::Int {
                node: n,
                onnx: *onnx,
            })
        }
        s => {
            let r = real_of(imp, s)?;
            super::real::plain(&r)?;
            let v = imp.int_node(&r.v)?;
            let n = imp.maxpool_node(v, &geo)?;
            one(Sym::Real(Real::plain(IntVal::Node(n), r.scale)))
        }
    }
}

fn avgpool_real(imp: &mut Importer, node: &NodeProto, r: &Real) -> R<Real> {
    let dims = imp.sym_dims(&Sym::Real(r.clone()))?;
    let (geo, extra) = geometry(imp, node, &dims, pool_kernel(node)?, 1)?;
    let cip = attrs(node).int("count_include_pad", 0)? == 1;
    imp.avgpool(r, &geo, cip, extra)
}

fn avgpool(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(
        node,
        &[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
        ],
    )?;
    let r = real_of(imp, arg(inputs, 0, "X")?)?;
    one(Sym::Real(avgpool_real(imp, node, &r)?))
}

fn global_real(imp: &mut Importer, r: &Real) -> R<Real> {
    let dims = imp.sym_dims(&Sym::Real(r.clone()))?;
    if dims.len() != 4 {
        return Err(format!(
            "GlobalAveragePool needs [N, C, H, W], has {dims:?}"
        ));
    }
    let geo = ConvGeometry {
        kernel: vec![dims[2] as i64, dims[3] as i64],
        strides: vec![1, 1],
        pads: vec![0; 4],
        dilations: vec![1, 1],
        group: 1,
    };
    imp.avgpool(r, &geo, false, [0, 0])
}

fn global_avgpool(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    let r = real_of(imp, arg(inputs, 0, "X")?)?;
    one(Sym::Real(global_real(imp, &r)?))
}

fn channels_last(node: &NodeProto) -> R<()> {
    if attrs(node).int("channels_last", 0)? != 0 {
        return Err("channels_last = 1 is not supported".into());
    }
    Ok(())
}

fn qlinear_avgpool(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(
        node,
        &[
            "auto_pad",
            "ceil_mode",
            "channels_last",
            "count_include_pad",
            "kernel_shape",
            "pads",
            "strides",
        ],
    )?;
    channels_last(node)?;
    let (xr, yq) = qlinear_operand(imp, inputs)?;
    let y = avgpool_real(imp, node, &xr)?;
    one(imp.quantize(y, &yq)?)
}

fn qlinear_global_avgpool(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["channels_last"])?;
    channels_last(node)?;
    let (xr, yq) = qlinear_operand(imp, inputs)?;
    let y = global_real(imp, &xr)?;
    one(imp.quantize(y, &yq)?)
}

// ---- layout -------------------------------------------------------------------------------

fn reshape(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["allowzero"])?;
    let x = arg(inputs, 0, "data")?;
    let from = imp.sym_dims(x)?;
    let target = ints_of(konst(inputs, 1, "shape")?, "shape")?;
    let allowzero = attrs(node).int("allowzero", 0)? == 1;
    let total: usize = from.iter().product();
    let mut dims = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                dims.push(1);
            }
            0 if !allowzero => dims.push(*from.get(i).ok_or("shape 0 beyond the input's rank")?),
            t if t >= 0 => dims.push(t as usize),
            _ => return Err(format!("bad shape {target:?}")),
        }
    }
    if let Some(i) = infer {
        let known: usize = dims.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {from:?} to {target:?}"));
        }
        dims[i] = total / known;
    }
    if dims.iter().product::<usize>() != total {
        return Err(format!("cannot reshape {from:?} to {target:?}"));
    }
    one(imp.layout(x, &Layout::Reshape(dims))?)
}

fn flatten(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["axis"])?;
    let x = arg(inputs, 0, "input")?;
    let d = imp.sym_dims(x)?;
    let axis = attrs(node).int("axis", 1)?;
    let a = if axis < 0 {
        axis + d.len() as i64
    } else {
        axis
    };
    let a = usize::try_from(a)
        .ok()
        .filter(|&a| a <= d.len())
        .ok_or(format!("bad axis {axis}"))?;
    let dims = vec![d[..a].iter().product(), d[a..].iter().product()];
    one(imp.layout(x, &Layout::Reshape(dims))?)
}

fn transpose(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["perm"])?;
    let x = arg(inputs, 0, "data")?;
    let n = imp.sym_dims(x)?.len();
    let perm = match attrs(node).ints("perm")? {
        Some(p) => p
            .iter()
            .map(|&v| norm_axis(v, n))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..n).rev().collect(),
    };
    qmpc_bytecode::shapes::transpose(
        &vec![1; n],
        &perm.iter().map(|&v| v as i64).collect::<Vec<_>>(),
    )?;
    one(imp.layout(x, &Layout::Transpose(perm))?)
}

fn axes_of(node: &NodeProto, opset: i64, inputs: &[Option<Sym>]) -> R<Option<Vec<i64>>> {
    if opset >= 13 {
        check_attrs(node, &[])?;
        opt_konst(inputs, 1, "axes")?
            .map(|t| ints_of(t, "axes"))
            .transpose()
    } else {
        check_attrs(node, &["axes"])?;
        attrs(node).ints("axes")
    }
}

fn squeeze(
    imp: &mut Importer,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    let x = arg(inputs, 0, "data")?;
    let d = imp.sym_dims(x)?;
    let axes = match axes_of(node, opset, inputs)? {
        Some(a) => a
            .iter()
            .map(|&v| norm_axis(v, d.len()))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..d.len()).filter(|&i| d[i] == 1).collect(),
    };
    if axes.iter().any(|&a| d[a] != 1) {
        return Err(format!("cannot squeeze axes {axes:?} of {d:?}"));
    }
    let dims = (0..d.len())
        .filter(|i| !axes.contains(i))
        .map(|i| d[i])
        .collect();
    one(imp.layout(x, &Layout::Reshape(dims))?)
}

fn unsqueeze(
    imp: &mut Importer,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    let x = arg(inputs, 0, "data")?;
    let d = imp.sym_dims(x)?;
    let axes = axes_of(node, opset, inputs)?.ok_or("axes are required")?;
    let n = d.len() + axes.len();
    let axes = axes
        .iter()
        .map(|&v| norm_axis(v, n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut it = d.iter();
    let dims = (0..n)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                *it.next().unwrap_or(&1)
            }
        })
        .collect();
    one(imp.layout(x, &Layout::Reshape(dims))?)
}

fn identity(_: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &[])?;
    one(arg(inputs, 0, "input")?.clone())
}

fn concat(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["axis"])?;
    let xs: Vec<Sym> = inputs.iter().flatten().cloned().collect();
    let rank = imp.sym_dims(xs.first().ok_or("no inputs")?)?.len();
    let axis = norm_axis(attrs(node).int("axis", 0)?, rank)?;
    one(imp.concat(&xs, axis)?)
}

fn qlinear_concat(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["axis"])?;
    if inputs.len() < 5 || !(inputs.len() - 2).is_multiple_of(3) {
        return Err(
            "QLinearConcat takes Y_scale, Y_zero_point and (X, X_scale, X_zero_point) triples"
                .into(),
        );
    }
    let x0 = arg(inputs, 2, "X")?;
    let rank = imp.sym_dims(x0)?.len();
    let axis = norm_axis(attrs(node).int("axis", 0)?, rank)?;
    let yq = qparams(inputs, 0, 1, 1, rank, data_type::UINT8)?;
    let mut parts = Vec::new();
    for k in 0..(inputs.len() - 2) / 3 {
        let i = 2 + 3 * k;
        let x = arg(inputs, i, "X")?;
        let xq = qparams(inputs, i + 1, i + 2, 1, rank, yq.onnx)?;
        // Inputs already in the output's parameters pass through untouched.
        if xq.scale == yq.scale && xq.zp == yq.zp {
            parts.push(x.clone());
        } else {
            let r = imp.dequantize(x, &xq)?;
            parts.push(imp.quantize(r, &yq)?);
        }
    }
    one(imp.concat(&parts, axis)?)
}

fn pad(imp: &mut Importer, node: &NodeProto, opset: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    let a = attrs(node);
    let mode = a.string("mode", "constant")?;
    if mode != "constant" {
        return Err(format!("pad mode `{mode}` is not supported"));
    }
    let x = arg(inputs, 0, "data")?;
    let rank = imp.sym_dims(x)?.len();
    let (pads, value) = if opset < 11 {
        check_attrs(node, &["mode", "pads", "value"])?;
        (
            a.ints("pads")?.ok_or("pads are required")?,
            Values::Float(vec![a.float("value", 0.0)?]),
        )
    } else {
        check_attrs(node, &["mode"])?;
        let p = ints_of(konst(inputs, 1, "pads")?, "pads")?;
        let v = opt_konst(inputs, 2, "constant_value")?
            .map_or(Values::Int(vec![0]), |t| t.values.clone());
        if opt(inputs, 3).is_some() {
            return Err("the axes input of Pad is not supported".into());
        }
        (p, v)
    };
    if pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) {
        return Err(format!(
            "pads {pads:?} must be {} non-negative values",
            2 * rank
        ));
    }
    let v = match value {
        Values::Int(v) => *v.first().unwrap_or(&0),
        Values::Float(v) => {
            let f = *v.first().unwrap_or(&0.0);
            if f.fract() != 0.0 {
                return Err("a fractional pad value is not supported".into());
            }
            f as i64
        }
    };
    let pads: Vec<usize> = pads.iter().map(|&p| p as usize).collect();
    // The padded shape before anything is built from it (a constant is padded here).
    let dims = imp.sym_dims(x)?;
    let padded: Option<Vec<usize>> = (0..rank)
        .map(|i| dims[i].checked_add(pads[i])?.checked_add(pads[i + rank]))
        .collect();
    let padded = padded.ok_or_else(|| format!("pads {pads:?} overflow the shape {dims:?}"))?;
    crate::ir::check_size(&padded)?;
    one(imp.layout(x, &Layout::Pad(pads, v))?)
}

fn cast(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["to", "saturate", "round_mode"])?;
    let to = attrs(node).int("to", 0)? as i32;
    match arg(inputs, 0, "input")? {
        Sym::Const(t) => {
            let values = match (&t.values, to) {
                (Values::Float(v), data_type::FLOAT) => Values::Float(v.clone()),
                (Values::Int(v), data_type::FLOAT) => {
                    Values::Float(v.iter().map(|&x| x as f32).collect())
                }
                (Values::Int(v), _) => Values::Int(v.clone()),
                (Values::Float(v), _) => Values::Int(v.iter().map(|&x| x as i64).collect()),
            };
            one(Sym::Const(TensorData {
                dtype: to,
                dims: t.dims.clone(),
                values,
            }))
        }
        Sym::Int { node, onnx } => {
            if to == data_type::FLOAT {
                return one(Sym::Real(Real::plain(
                    IntVal::Node(*node),
                    Scale::scalar(Rational::int(1)),
                )));
            }
            if to == *onnx {
                return one(Sym::Int {
                    node: *node,
                    onnx: *onnx,
                });
            }
            let dt = dtype_of(to)?;
            let n = imp
                .compute_to(
                    Instr::Cast {
                        dst: Dst(0),
                        x: Reg(0),
                    },
                    &[*node],
                    &[],
                    Some(dt),
                )
                .map_err(|e| format!("Cast to {} would wrap values: {e}", data_type::name(to)))?;
            one(Sym::Int { node: n, onnx: to })
        }
        s @ Sym::Real(_) if to == data_type::FLOAT => one(s.clone()),
        _ => Err(format!(
            "Cast to {} of this tensor is not supported",
            data_type::name(to)
        )),
    }
}

fn constant(_: &mut Importer, node: &NodeProto, _o: i64, _: &[Option<Sym>]) -> R<Vec<Sym>> {
    let a = attrs(node);
    for name in [
        "value",
        "value_float",
        "value_int",
        "value_ints",
        "value_floats",
    ] {
        if let Some(t) = a.tensor(name)? {
            return one(Sym::Const(t));
        }
    }
    Err("Constant without a supported value attribute".into())
}

fn constant_of_shape(
    _: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["value"])?;
    let shape = ints_of(konst(inputs, 0, "input")?, "shape")?;
    let dims: Vec<usize> = shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| "negative shape"))
        .collect::<Result<_, _>>()?;
    let n = crate::ir::check_size(&dims)?;
    let v = attrs(node).tensor("value")?.unwrap_or(TensorData {
        dtype: data_type::FLOAT,
        dims: vec![1],
        values: Values::Float(vec![0.0]),
    });
    let values = match &v.values {
        Values::Int(x) => Values::Int(vec![*x.first().unwrap_or(&0); n]),
        Values::Float(x) => Values::Float(vec![*x.first().unwrap_or(&0.0); n]),
    };
    one(Sym::Const(TensorData {
        dtype: v.dtype,
        dims,
        values,
    }))
}

fn shape(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["start", "end"])?;
    let d = imp.sym_dims(arg(inputs, 0, "data")?)?;
    let n = d.len() as i64;
    let a = attrs(node);
    let clampi = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
    let (s, e) = (clampi(a.int("start", 0)?), clampi(a.int("end", n)?));
    let v: Vec<i64> = d[s..e.max(s)].iter().map(|&x| x as i64).collect();
    one(Sym::Const(TensorData {
        dtype: data_type::INT64,
        dims: vec![v.len()],
        values: Values::Int(v),
    }))
}

fn softmax(
    imp: &mut Importer,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["axis"])?;
    let r = real_of(imp, arg(inputs, 0, "input")?)?;
    let rank = imp.sym_dims(&Sym::Real(r.clone()))?.len();
    let default = if opset >= 13 { -1 } else { 1 };
    let axis = norm_axis(attrs(node).int("axis", default)?, rank)?;
    if opset < 13 && axis + 1 != rank {
        return Err(
            "Softmax before opset 13 flattens trailing axes; only the last axis is supported"
                .into(),
        );
    }
    one(Sym::Softmax { real: r, axis })
}

fn argmax(imp: &mut Importer, node: &NodeProto, _o: i64, inputs: &[Option<Sym>]) -> R<Vec<Sym>> {
    check_attrs(node, &["axis", "keepdims", "select_last_index"])?;
    let a = attrs(node);
    let x = arg(inputs, 0, "data")?;
    let v = match x {
        Sym::Int { node, .. } => *node,
        Sym::Real(r) | Sym::Softmax { real: r, .. } => {
            super::real::plain(r)?;
            if !r.scale.is_scalar() {
                return Err("ArgMax of a per-channel quantized tensor is not supported".into());
            }
            imp.int_node(&r.v)?
        }
        _ => return Err("ArgMax of a constant or unquantized input".into()),
    };
    let d = imp.g.dims(v).to_vec();
    let axis = norm_axis(a.int("axis", 0)?, d.len())?;
    let mut out = d.clone();
    if a.int("keepdims", 1)? == 1 {
        out[axis] = 1;
    } else {
        out.remove(axis);
    }
    let sl = a.int("select_last_index", 0)?;
    let n = imp.compute_to(
        Instr::ArgMax {
            dst: Dst(0),
            x: Reg(0),
            axis: Int(axis as i64),
            select_last: Int(sl),
        },
        &[v],
        &out,
        Some(qmpc_bytecode::DType::I64),
    )?;
    one(Sym::Int {
        node: n,
        onnx: data_type::INT64,
    })
}

#[allow(dead_code)]
fn unused(_: Ints) {}
