//! The loader's verifier: a program that passes it cannot make the interpreter index out of
//! bounds, read an unwritten register, mix public and secret values the wrong way, or
//! overflow the 64-bit ring (every register's bounds are re-derived by interval arithmetic).

use crate::shapes;
use crate::types::DType;
use crate::types::Visibility;
use crate::{ConstTensor, InputDecl, Instr, Program, RegDecl, StateDecl, WeightDecl};
use qmpc_semantics::TruncMode;

/// Why a program was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("instruction {index} (`{mnemonic}`, node `{node}`): {msg}")]
    Instr {
        index: usize,
        mnemonic: &'static str,
        node: String,
        msg: String,
    },
    #[error("{0}")]
    Program(String),
}

/// Values in the ring must stay below this magnitude so that no intermediate wraps.
pub const RING_BOUND: i128 = 1 << 62;

/// Check a decoded program.
/// The most elements one register may hold (2 GiB of i64 at batch 1): a corrupted shape is
/// rejected here rather than exhausting memory in the interpreter.
pub const MAX_REGISTER_ELEMS: usize = 1 << 28;

pub fn verify(p: &Program) -> Result<(), VerifyError> {
    if p.origins.len() != p.code.len() {
        return Err(VerifyError::Program(format!(
            "{} instructions but {} origin entries",
            p.code.len(),
            p.origins.len()
        )));
    }
    for (i, r) in p.registers.iter().enumerate() {
        let (lo, hi) = r.ty.dtype.range();
        if r.lo > r.hi || r.lo < lo || r.hi > hi {
            return Err(VerifyError::Program(format!(
                "register %{i}: bounds [{}, {}] do not fit {}",
                r.lo, r.hi, r.ty.dtype
            )));
        }
        if r.ty.batched && r.ty.dims.is_empty() {
            return Err(VerifyError::Program(format!(
                "register %{i}: batched but has no dimensions"
            )));
        }
        if r.ty
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none_or(|n| n > MAX_REGISTER_ELEMS)
        {
            return Err(VerifyError::Program(format!(
                "register %{i}: shape {:?} is too large",
                r.ty.dims
            )));
        }
    }
    for (i, c) in p.consts.iter().enumerate() {
        let (lo, hi) = c.dtype.range();
        if let Some(v) = c.data.iter().find(|&&v| v < lo || v > hi) {
            return Err(VerifyError::Program(format!(
                "constant #{i}: value {v} does not fit {}",
                c.dtype
            )));
        }
    }
    for (i, st) in p.states.iter().enumerate() {
        let (lo, hi) = st.ty.dtype.range();
        if st.lo > st.hi
            || st.lo < lo
            || st.hi > hi
            || (st.lo as i128).abs() >= RING_BOUND
            || (st.hi as i128).abs() >= RING_BOUND
        {
            return Err(VerifyError::Program(format!(
                "state {i} `{}`: bounds [{}, {}] do not fit {} within the ring",
                st.name, st.lo, st.hi, st.ty.dtype
            )));
        }
        if (st.ty.batched && st.ty.dims.is_empty())
            || st
                .ty
                .dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|n| n > MAX_REGISTER_ELEMS)
        {
            return Err(VerifyError::Program(format!(
                "state {i} `{}`: bad shape {}",
                st.name, st.ty
            )));
        }
    }
    for o in &p.outputs {
        if let Some(q) = &o.dequant {
            check_quant(q, &format!("output `{}`", o.name))?;
        }
    }
    for inp in &p.inputs {
        if let Some(q) = &inp.quant {
            check_quant(q, &format!("input `{}`", inp.name))?;
        }
    }
    let mut written = vec![false; p.registers.len()];
    let mut outputs_done = vec![false; p.outputs.len()];
    let mut stored = vec![false; p.states.len()];
    for (index, ins) in p.code.iter().enumerate() {
        let fail = |msg: String| VerifyError::Instr {
            index,
            mnemonic: ins.mnemonic(),
            node: p.origins[index].clone(),
            msg,
        };
        for s in ins.srcs() {
            if s as usize >= p.registers.len() {
                return Err(fail(format!("reads undeclared register %{s}")));
            }
            if !written[s as usize] {
                return Err(fail(format!("reads %{s} before it is written")));
            }
        }
        if let Some(d) = ins.dst() {
            if d as usize >= p.registers.len() {
                return Err(fail(format!("writes undeclared register %{d}")));
            }
            if std::mem::replace(&mut written[d as usize], true) {
                return Err(fail(format!("writes %{d} a second time")));
            }
        }
        check_instr(p, ins, &mut outputs_done, &mut stored).map_err(fail)?;
    }
    if let Some(i) = outputs_done.iter().position(|d| !d) {
        return Err(VerifyError::Program(format!(
            "output `{}` is never produced",
            p.outputs[i].name
        )));
    }
    Ok(())
}

fn check_quant(q: &crate::QuantParams, what: &str) -> Result<(), VerifyError> {
    if q.scale.is_empty() || q.scale.len() != q.zero_point.len() {
        return Err(VerifyError::Program(format!(
            "{what}: {} scales and {} zero points",
            q.scale.len(),
            q.zero_point.len()
        )));
    }
    if q.scale.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(VerifyError::Program(format!(
            "{what}: scales must be positive and finite"
        )));
    }
    Ok(())
}

/// Bounds of values `(lo, hi)`, wide enough for products of any two `i64` bounds.
pub type Bounds = (i128, i128);

fn mul_bounds(a: Bounds, b: Bounds) -> Bounds {
    let c = [a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1];
    (*c.iter().min().unwrap_or(&0), *c.iter().max().unwrap_or(&0))
}

/// Bounds of `rescale(x, num, den)` with `den ≥ den_lo ≥ 1`; probabilistic truncation
/// rounds half down and may add one.
fn rescale_bounds(x: Bounds, num: Bounds, den_lo: i128, trunc: TruncMode) -> Bounds {
    let prod = mul_bounds(x, num);
    let slack = match trunc {
        TruncMode::Exact => 1,
        TruncMode::Probabilistic => 2,
    };
    (prod.0.min(0) / den_lo - 1, prod.1.max(0) / den_lo + slack)
}

fn scale_bounds(a: Bounds, k: usize) -> Bounds {
    (a.0.min(0) * k as i128, a.1.max(0) * k as i128)
}

/// Checks that `x` `[N, C, H, W]`, the output gradient `gy` `[N, M, OH, OW]` and the weight
/// `w` `[M, C/group, kh, kw]` of a convolution fit each other (`dst` is the result's
/// declared shape, one of `x` or `w`).
#[allow(clippy::too_many_arguments)]
fn conv_grad_geometry(
    x: &[usize],
    gy: &[usize],
    w: &[usize],
    dst: &[usize],
    strides: &crate::operand::Ints,
    pads: &crate::operand::Ints,
    dilations: &crate::operand::Ints,
    group: i64,
) -> Result<(), String> {
    let g = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or("group must be positive")?;
    if x.len() != 4 || gy.len() != 4 || w.len() != 4 || dst.len() != 4 {
        return Err(format!(
            "a conv gradient needs 4-D tensors: input {x:?}, output gradient {gy:?}, weight {w:?}"
        ));
    }
    let win = shapes::window(&w[2..], &strides.0, &pads.0, &dilations.0)?;
    let fits = x[0] == gy[0]
        && gy[1] == w[0]
        && w[0].is_multiple_of(g)
        && x[1] == w[1] * g
        && win.out_hw(x[2], x[3]) == Some((gy[2], gy[3]));
    if !fits {
        return Err(format!(
            "input {x:?}, output gradient {gy:?} and weight {w:?} are not one convolution with group {g}"
        ));
    }
    Ok(())
}

/// What the verifier derives for an instruction's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inferred {
    pub dims: Vec<usize>,
    pub batched: bool,
    pub vis: Visibility,
    pub lo: i128,
    pub hi: i128,
}

/// The tables an instruction may refer to while its result type is inferred.
pub trait InferCtx {
    fn reg(&self, r: u32) -> &RegDecl;
    fn konst(&self, i: u32) -> Option<&ConstTensor>;
    fn input(&self, i: u32) -> Option<&InputDecl>;
    fn weight(&self, i: u32) -> Option<&WeightDecl>;
    fn state(&self, i: u32) -> Option<&StateDecl>;
    /// The program's truncation mode: probabilistic rescales may round one above exact.
    fn trunc(&self) -> TruncMode;
}

impl InferCtx for Program {
    fn trunc(&self) -> TruncMode {
        self.trunc
    }
    fn reg(&self, r: u32) -> &RegDecl {
        &self.registers[r as usize]
    }
    fn konst(&self, i: u32) -> Option<&ConstTensor> {
        self.consts.get(i as usize)
    }
    fn input(&self, i: u32) -> Option<&InputDecl> {
        self.inputs.get(i as usize)
    }
    fn weight(&self, i: u32) -> Option<&WeightDecl> {
        self.weights.get(i as usize)
    }
    fn state(&self, i: u32) -> Option<&StateDecl> {
        self.states.get(i as usize)
    }
}

/// A `store` must keep its state's invariant: same type and shape, values within the
/// declared bounds (so every later `load` may assume them).
fn check_store(x: &RegDecl, st: &StateDecl) -> Result<(), String> {
    if x.ty != st.ty {
        return Err(format!(
            "stores a {} value into state `{}` of type {}",
            x.ty, st.name, st.ty
        ));
    }
    if x.lo < st.lo || x.hi > st.hi {
        return Err(format!(
            "values may reach [{}, {}], state `{}` promises [{}, {}]",
            x.lo, x.hi, st.name, st.lo, st.hi
        ));
    }
    Ok(())
}

/// The scale rules of fixed-point types (integers have 0 fractional bits): sums, maxima
/// and layout moves keep their operands' scale, products add them. Rescales,
/// requantizations, lookups, casts and loads may set any scale: their public parameters
/// say what it is, and the compiler states it in the destination's type.
pub fn check_scales(ins: &Instr, dst: DType, operands: &[DType]) -> Result<(), String> {
    let f = |d: DType| d.frac() as u32;
    let want = match ins {
        Instr::Add { .. } | Instr::Sub { .. } | Instr::Max { .. } | Instr::Concat { .. } => {
            let first = operands.first().map_or(0, |&d| f(d));
            if operands.iter().any(|&d| f(d) != first) {
                return Err(format!(
                    "operands of different scales ({})",
                    operands
                        .iter()
                        .map(|d| d.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            first
        }
        Instr::Mul { .. }
        | Instr::MatMul { .. }
        | Instr::Conv { .. }
        | Instr::ConvGradW { .. }
        | Instr::ConvGradX { .. } => operands.iter().map(|&d| f(d)).sum(),
        Instr::ConvRequant { .. } | Instr::MatMulRequant { .. } => {
            // The bias is added to the product: it has the product's scale.
            if let [x, w, bias, ..] = operands {
                if f(*x) + f(*w) != f(*bias) {
                    return Err(format!(
                        "a bias of scale {bias} added to a product of {x} and {w}"
                    ));
                }
            }
            return Ok(());
        }
        Instr::SumPool { .. }
        | Instr::MaxPool { .. }
        | Instr::Clamp { .. }
        | Instr::Reshape { .. }
        | Instr::Transpose { .. }
        | Instr::Window { .. }
        | Instr::Unwindow { .. }
        | Instr::Slice { .. }
        | Instr::Pad { .. } => operands.first().map_or(0, |&d| f(d)),
        _ => return Ok(()),
    };
    if want != f(dst) {
        return Err(format!(
            "result has {want} fractional bits, the destination is {dst}"
        ));
    }
    Ok(())
}

fn check_instr(
    p: &Program,
    ins: &Instr,
    outputs_done: &mut [bool],
    stored: &mut [bool],
) -> Result<(), String> {
    if let Instr::Store { x, index } = ins {
        let i = index.0 as usize;
        let st = p.states.get(i).ok_or(format!("no state {i}"))?;
        if std::mem::replace(&mut stored[i], true) {
            return Err(format!("state {i} `{}` stored twice", st.name));
        }
        return check_store(p.reg(x.0), st);
    }
    if let Instr::Output { index, .. } = ins {
        let i = index.0 as usize;
        if i >= outputs_done.len() {
            return Err(format!("no output {i}"));
        }
        if std::mem::replace(&mut outputs_done[i], true) {
            return Err(format!("output {i} produced twice"));
        }
        return Ok(());
    }
    let Some(dst) = ins.dst() else { return Ok(()) };
    let r = p.reg(dst);
    let inf = infer(p, ins, &r.ty.dims)?;
    let declared_dtype = match ins {
        Instr::Load { index, .. } => p.state(index.0).map(|d| d.ty.dtype),
        Instr::Input { index, .. } => p.input(index.0).map(|d| d.ty.dtype),
        Instr::Weight { index, .. } => p.weight(index.0).map(|d| d.ty.dtype),
        Instr::Const { index, .. } => p.konst(index.0).map(|c| c.dtype),
        _ => None,
    };
    if let Some(dt) = declared_dtype.filter(|&dt| dt != r.ty.dtype) {
        return Err(format!(
            "loads a {dt} tensor into %{dst}, declared {}",
            r.ty
        ));
    }
    if r.ty.dims != inf.dims {
        return Err(format!(
            "result has shape {:?}, %{dst} is declared {}",
            inf.dims, r.ty
        ));
    }
    if r.ty.batched != inf.batched {
        return Err(format!(
            "result batched={}, %{dst} is declared {}",
            inf.batched, r.ty
        ));
    }
    if r.vis != inf.vis {
        return Err(format!(
            "result is {}, %{dst} is declared {}",
            inf.vis.name(),
            r.vis.name()
        ));
    }
    let operand_types: Vec<DType> = ins.srcs().iter().map(|&s| p.reg(s).ty.dtype).collect();
    check_scales(ins, r.ty.dtype, &operand_types)?;
    // A weight's declared bounds may be narrower than its type: they are a public promise
    // (e.g. a bias clamped where its requantization saturates) that the interpreter checks
    // the model owner's values against when it loads them.
    let promised = matches!(ins, Instr::Weight { .. });
    if !promised && (inf.lo < r.lo as i128 || inf.hi > r.hi as i128) {
        return Err(format!(
            "values may reach [{}, {}], %{dst} is declared [{}, {}]",
            inf.lo, inf.hi, r.lo, r.hi
        ));
    }
    Ok(())
}

/// Shape and bounds of `matmul(a, b)`.
fn matmul_product(p: &dyn InferCtx, a: u32, b: u32) -> Result<(Vec<usize>, Bounds), String> {
    let (ad, bd) = (&p.reg(a).ty.dims, &p.reg(b).ty.dims);
    let d = shapes::matmul(ad, bd)?;
    let k = ad[ad.len() - 1];
    let bnd = |r: u32| (p.reg(r).lo as i128, p.reg(r).hi as i128);
    Ok((d, scale_bounds(mul_bounds(bnd(a), bnd(b)), k)))
}

/// Shape and bounds of the product a `conv`, `matmul` or fused instruction computes;
/// `None` for every other instruction.
pub fn product(p: &dyn InferCtx, ins: &Instr) -> Result<Option<(Vec<usize>, Bounds)>, String> {
    let bnd = |r: u32| (p.reg(r).lo as i128, p.reg(r).hi as i128);
    match ins {
        Instr::MatMul { a, b, .. } | Instr::MatMulRequant { a, b, .. } => {
            matmul_product(p, a.0, b.0).map(Some)
        }
        Instr::Conv {
            x,
            w,
            strides,
            pads,
            dilations,
            group,
            ..
        }
        | Instr::ConvRequant {
            x,
            w,
            strides,
            pads,
            dilations,
            group,
            ..
        } => {
            let wd = &p.reg(w.0).ty.dims;
            if wd.len() != 4 {
                return Err(format!("conv weight must be 4-D, is {wd:?}"));
            }
            let win = shapes::window(&wd[2..], &strides.0, &pads.0, &dilations.0)?;
            let d = shapes::conv(&p.reg(x.0).ty.dims, wd, &win, group.0)?;
            if p.reg(w.0).ty.batched {
                return Err("conv weight cannot have a batch dimension".into());
            }
            let k = wd[1] * wd[2] * wd[3];
            Ok(Some((d, scale_bounds(mul_bounds(bnd(x.0), bnd(w.0)), k))))
        }
        _ => Ok(None),
    }
}

/// Shape and bounds of the sum `product + bias` a fused `convrequant` or `matmulrequant`
/// requantizes (no register holds it); `None` for every other instruction.
pub fn accumulator(p: &dyn InferCtx, ins: &Instr) -> Result<Option<(Vec<usize>, Bounds)>, String> {
    let bias = match ins {
        Instr::ConvRequant { bias, .. } | Instr::MatMulRequant { bias, .. } => bias.0,
        _ => return Ok(None),
    };
    let (d, b) = product(p, ins)?.ok_or("not a product")?;
    let bias_dims = &p.reg(bias).ty.dims;
    if shapes::broadcast(&d, bias_dims)? != d {
        return Err(format!(
            "a bias of shape {bias_dims:?} does not broadcast to the product's {d:?}"
        ));
    }
    let acc = (b.0 + p.reg(bias).lo as i128, b.1 + p.reg(bias).hi as i128);
    if acc.0.abs() >= RING_BOUND || acc.1.abs() >= RING_BOUND {
        return Err(format!(
            "the product and bias may reach [{}, {}], beyond the exact range of the 64-bit ring",
            acc.0, acc.1
        ));
    }
    Ok(Some((d, acc)))
}

/// Bounds of `requant` on values of shape `x_dims` within `acc`, its parameters in
/// registers `(num, den, zp)`; the checks of the parameters.
fn requant_result(
    p: &dyn InferCtx,
    x_dims: &[usize],
    acc: Bounds,
    (num, den, zp): (u32, u32, u32),
    (lo, hi): (i64, i64),
) -> Result<Bounds, String> {
    let reg = |r: u32| p.reg(r);
    let bnd = |r: u32| (reg(r).lo as i128, reg(r).hi as i128);
    if [num, den, zp]
        .iter()
        .any(|&r| reg(r).vis == Visibility::Secret)
    {
        return Err("requant factors and zero point must be public".into());
    }
    if lo > hi {
        return Err(format!("requant bounds {lo} > {hi}"));
    }
    let mut d = x_dims.to_vec();
    for r in [num, den, zp] {
        d = shapes::broadcast(&d, &reg(r).ty.dims)?;
    }
    if d != x_dims {
        return Err("requant parameters must broadcast to the operand's shape".into());
    }
    if bnd(den).0 < 1 {
        return Err("requant denominator must be positive".into());
    }
    // The bounds the unfused rescale, add and clamp would give.
    let r = rescale_bounds(acc, bnd(num), bnd(den).0, p.trunc());
    let (zl, zh) = bnd(zp);
    let mid = (r.0 + zl, r.1 + zh);
    let (l, h) = (lo as i128, hi as i128);
    Ok((mid.0.clamp(l, h), mid.1.clamp(l, h)))
}

/// Result type, visibility and bounds of `ins` from its operands' declarations. `dst_dims` is
/// the declared shape of the result, consulted only where an instruction takes its shape from
/// its destination (`reshape`, `cast`, `argmax`'s kept axis).
pub fn infer(p: &dyn InferCtx, ins: &Instr, dst_dims: &[usize]) -> Result<Inferred, String> {
    let reg = |r: u32| p.reg(r);
    let dims = |r: u32| reg(r).ty.dims.clone();
    let bnd = |r: u32| (reg(r).lo as i128, reg(r).hi as i128);
    let secret = |r: u32| reg(r).vis == Visibility::Secret;
    // Expected output: (dims, batched, visibility, bounds).
    let batched_any = |rs: &[u32]| rs.iter().any(|&r| reg(r).ty.batched);
    let vis_of = |rs: &[u32]| {
        if rs.iter().any(|&r| secret(r)) {
            Visibility::Secret
        } else {
            Visibility::Public
        }
    };
    let (out_dims, out_batched, out_vis, out_b): (Vec<usize>, bool, Visibility, Bounds) = match ins
    {
        Instr::Input { index, .. } => {
            let d = p.input(index.0).ok_or(format!("no input {}", index.0))?;
            let (lo, hi) = d.ty.dtype.range();
            (
                d.ty.dims.clone(),
                d.ty.batched,
                Visibility::Secret,
                (lo as i128, hi as i128),
            )
        }
        Instr::Weight { index, .. } => {
            let d = p.weight(index.0).ok_or(format!("no weight {}", index.0))?;
            // The type's range; the register may promise less (see `check_instr`).
            let (lo, hi) = d.ty.dtype.range();
            (
                d.ty.dims.clone(),
                d.ty.batched,
                Visibility::Secret,
                (lo as i128, hi as i128),
            )
        }
        Instr::Load { index, .. } => {
            let d = p.state(index.0).ok_or(format!("no state {}", index.0))?;
            (
                d.ty.dims.clone(),
                d.ty.batched,
                Visibility::Secret,
                (d.lo as i128, d.hi as i128),
            )
        }
        Instr::Store { x, .. } => (dims(x.0), reg(x.0).ty.batched, vis_of(&[x.0]), bnd(x.0)),
        Instr::Const { index, .. } => {
            let c = p.konst(index.0).ok_or(format!("no constant {}", index.0))?;
            let lo = c.data.iter().copied().min().unwrap_or(0) as i128;
            let hi = c.data.iter().copied().max().unwrap_or(0) as i128;
            (c.dims.clone(), false, Visibility::Public, (lo, hi))
        }
        Instr::Add { a, b, .. }
        | Instr::Sub { a, b, .. }
        | Instr::Mul { a, b, .. }
        | Instr::Max { a, b, .. } => {
            let d = shapes::broadcast(&dims(a.0), &dims(b.0))?;
            let (x, y) = (bnd(a.0), bnd(b.0));
            let bb = match ins {
                Instr::Add { .. } => (x.0 + y.0, x.1 + y.1),
                Instr::Sub { .. } => (x.0 - y.1, x.1 - y.0),
                Instr::Mul { .. } => mul_bounds(x, y),
                _ => (x.0.max(y.0), x.1.max(y.1)),
            };
            if matches!(ins, Instr::Max { .. }) && dims(a.0) != dims(b.0) {
                return Err("max operands must have the same shape".into());
            }
            (d, batched_any(&[a.0, b.0]), vis_of(&[a.0, b.0]), bb)
        }
        Instr::MatMul { a, b, .. } => {
            let (d, bb) = matmul_product(p, a.0, b.0)?;
            (d, batched_any(&[a.0, b.0]), vis_of(&[a.0, b.0]), bb)
        }
        Instr::Conv { x, w, .. } => {
            let (d, bb) = product(p, ins)?.ok_or("not a product")?;
            (d, reg(x.0).ty.batched, vis_of(&[x.0, w.0]), bb)
        }
        Instr::ConvRequant {
            x,
            w,
            bias,
            num,
            den,
            zp,
            lo,
            hi,
            ..
        }
        | Instr::MatMulRequant {
            a: x,
            b: w,
            bias,
            num,
            den,
            zp,
            lo,
            hi,
            ..
        } => {
            let (d, acc) = accumulator(p, ins)?.ok_or("not a fused product")?;
            let out = requant_result(p, &d, acc, (num.0, den.0, zp.0), (lo.0, hi.0))?;
            let srcs = [x.0, w.0, bias.0];
            (d, batched_any(&srcs), vis_of(&srcs), out)
        }
        Instr::ConvGradW {
            x,
            gy,
            strides,
            pads,
            dilations,
            group,
            ..
        } => {
            if reg(x.0).ty.batched || reg(gy.0).ty.batched {
                return Err(
                    "a weight gradient sums over the batch: its operands need a fixed batch".into(),
                );
            }
            let (xd, gd) = (dims(x.0), dims(gy.0));
            conv_grad_geometry(
                &xd, &gd, dst_dims, dst_dims, strides, pads, dilations, group.0,
            )?;
            let k = xd[0] * gd[2] * gd[3];
            (
                dst_dims.to_vec(),
                false,
                vis_of(&[x.0, gy.0]),
                scale_bounds(mul_bounds(bnd(x.0), bnd(gy.0)), k),
            )
        }
        Instr::ConvGradX {
            gy,
            w,
            strides,
            pads,
            dilations,
            group,
            ..
        } => {
            if reg(w.0).ty.batched {
                return Err("conv weight cannot have a batch dimension".into());
            }
            let (gd, wd) = (dims(gy.0), dims(w.0));
            conv_grad_geometry(
                dst_dims, &gd, &wd, dst_dims, strides, pads, dilations, group.0,
            )?;
            let k = wd[0] / group.0.max(1) as usize * wd[2] * wd[3];
            (
                dst_dims.to_vec(),
                reg(gy.0).ty.batched,
                vis_of(&[gy.0, w.0]),
                scale_bounds(mul_bounds(bnd(gy.0), bnd(w.0)), k),
            )
        }
        Instr::Window {
            x,
            kernel,
            strides,
            pads,
            dilations,
            ..
        }
        | Instr::Unwindow {
            x,
            kernel,
            strides,
            pads,
            dilations,
            ..
        } => {
            if reg(x.0).ty.batched {
                return Err("windows move the batch axis: the operand needs a fixed batch".into());
            }
            let k = shapes::kernel_of(&kernel.0)?;
            let win = shapes::window(&k, &strides.0, &pads.0, &dilations.0)?;
            let kk = k[0] * k[1];
            let xd = dims(x.0);
            let b = bnd(x.0);
            if let Instr::Window { .. } = ins {
                if xd.len() != 4 {
                    return Err(format!("window needs [N, C, H, W], not {xd:?}"));
                }
                let (oh, ow) = win
                    .out_hw(xd[2], xd[3])
                    .ok_or("window larger than the input")?;
                (
                    vec![kk, xd[0], xd[1], oh, ow],
                    false,
                    vis_of(&[x.0]),
                    (b.0.min(0), b.1.max(0)),
                )
            } else {
                let d = dst_dims;
                let ok = d.len() == 4
                    && xd.len() == 5
                    && xd[0] == kk
                    && xd[1..3] == d[..2]
                    && win.out_hw(d[2], d[3]) == Some((xd[3], xd[4]));
                if !ok {
                    return Err(format!(
                        "unwindow of {xd:?} onto {d:?} does not match the window"
                    ));
                }
                (d.to_vec(), false, vis_of(&[x.0]), scale_bounds(b, kk))
            }
        }
        Instr::SumPool {
            x,
            kernel,
            strides,
            pads,
            dilations,
            ..
        } => {
            let k = shapes::kernel_of(&kernel.0)?;
            let win = shapes::window(&k, &strides.0, &pads.0, &dilations.0)?;
            let d = shapes::pool(&dims(x.0), &win)?;
            (
                d,
                reg(x.0).ty.batched,
                vis_of(&[x.0]),
                scale_bounds(bnd(x.0), k[0] * k[1]),
            )
        }
        Instr::MaxPool {
            x,
            kernel,
            strides,
            pads,
            dilations,
            ..
        } => {
            let k = shapes::kernel_of(&kernel.0)?;
            let win = shapes::window(&k, &strides.0, &pads.0, &dilations.0)?;
            let d = shapes::pool(&dims(x.0), &win)?;
            let (h, w) = (dims(x.0)[2], dims(x.0)[3]);
            if let Some((_, _, plan)) = win.gather_plan(h, w) {
                if plan
                    .chunks(k[0] * k[1])
                    .any(|c| c.iter().all(Option::is_none))
                {
                    return Err("a max-pooling window lies entirely in the padding".into());
                }
            }
            (d, reg(x.0).ty.batched, vis_of(&[x.0]), bnd(x.0))
        }
        Instr::Rescale { x, num, den, .. } => {
            if secret(num.0) || secret(den.0) {
                return Err("rescale factors must be public".into());
            }
            let d = shapes::broadcast(&dims(x.0), &dims(num.0))?;
            let d = shapes::broadcast(&d, &dims(den.0))?;
            if d != dims(x.0) {
                return Err("rescale factors must broadcast to the operand's shape".into());
            }
            let dl = bnd(den.0).0;
            if dl < 1 {
                return Err("rescale denominator must be positive".into());
            }
            (
                d,
                reg(x.0).ty.batched,
                vis_of(&[x.0]),
                rescale_bounds(bnd(x.0), bnd(num.0), dl, p.trunc()),
            )
        }
        Instr::Requant {
            x,
            num,
            den,
            zp,
            lo,
            hi,
            ..
        } => {
            let out = requant_result(p, &dims(x.0), bnd(x.0), (num.0, den.0, zp.0), (lo.0, hi.0))?;
            (dims(x.0), reg(x.0).ty.batched, vis_of(&[x.0]), out)
        }
        Instr::Clamp { x, lo, hi, .. } => {
            if lo.0 > hi.0 {
                return Err(format!("clamp bounds {} > {}", lo.0, hi.0));
            }
            let b = bnd(x.0);
            let l = b.0.clamp(lo.0 as i128, hi.0 as i128);
            let h = b.1.clamp(lo.0 as i128, hi.0 as i128);
            (dims(x.0), reg(x.0).ty.batched, vis_of(&[x.0]), (l, h))
        }
        Instr::ArgMax {
            x,
            axis,
            select_last,
            ..
        } => {
            if !(0..=1).contains(&select_last.0) {
                return Err("select_last must be 0 or 1".into());
            }
            let xd = dims(x.0);
            let d = shapes::argmax(&xd, axis.0, dst_dims)?;
            if reg(x.0).ty.batched && axis.0 == 0 {
                return Err("argmax over the batch dimension".into());
            }
            let n = xd.get(axis.0 as usize).copied().unwrap_or(1);
            (d, reg(x.0).ty.batched, vis_of(&[x.0]), (0, n as i128 - 1))
        }
        Instr::Lookup {
            x, table, offset, ..
        } => {
            let t = p.konst(table.0).ok_or(format!("no constant {}", table.0))?;
            let (xl, xh) = bnd(x.0);
            if t.data.is_empty()
                || xl < offset.0 as i128
                || xh >= offset.0 as i128 + t.data.len() as i128
            {
                return Err(format!(
                    "table of {} entries from {} does not cover operand bounds [{xl}, {xh}]",
                    t.data.len(),
                    offset.0
                ));
            }
            let lo = t.data.iter().copied().min().unwrap_or(0) as i128;
            let hi = t.data.iter().copied().max().unwrap_or(0) as i128;
            (dims(x.0), reg(x.0).ty.batched, vis_of(&[x.0]), (lo, hi))
        }
        Instr::Reshape { x, .. } => {
            let a = &reg(x.0).ty;
            if a.dims.iter().product::<usize>() != dst_dims.iter().product::<usize>() {
                return Err(format!(
                    "reshape from {a} to {dst_dims:?} changes the element count"
                ));
            }
            if a.batched && dst_dims.first() != a.dims.first() {
                return Err(format!(
                    "reshape from {a} to {dst_dims:?} moves the batch dimension"
                ));
            }
            (dst_dims.to_vec(), a.batched, vis_of(&[x.0]), bnd(x.0))
        }
        Instr::Transpose { x, perm, .. } => {
            let d = shapes::transpose(&dims(x.0), &perm.0)?;
            if reg(x.0).ty.batched && perm.0.first() != Some(&0) {
                return Err("transpose moves the batch dimension".into());
            }
            (d, reg(x.0).ty.batched, vis_of(&[x.0]), bnd(x.0))
        }
        Instr::Pad { x, pads, value, .. } => {
            let d = shapes::pad(&dims(x.0), &pads.0)?;
            let n = dims(x.0).len();
            if reg(x.0).ty.batched && (pads.0[0] != 0 || pads.0[n] != 0) {
                return Err("pad along the batch dimension".into());
            }
            let b = bnd(x.0);
            let v = value.0 as i128;
            (
                d,
                reg(x.0).ty.batched,
                vis_of(&[x.0]),
                (b.0.min(v), b.1.max(v)),
            )
        }
        Instr::Concat { xs, axis, .. } => {
            let all: Vec<Vec<usize>> = xs.0.iter().map(|&r| dims(r)).collect();
            let refs: Vec<&[usize]> = all.iter().map(|v| v.as_slice()).collect();
            let d = shapes::concat(&refs, axis.0)?;
            // Unbatched operands of a batched concat are repeated for every sample, so they
            // must have one along the batch axis.
            let batched = batched_any(&xs.0);
            if batched
                && (axis.0 == 0
                    || xs
                        .0
                        .iter()
                        .any(|&r| !reg(r).ty.batched && dims(r).first() != Some(&1)))
            {
                return Err(
                    "a batched concat runs along the batch, or an unbatched operand has no \
                     leading axis of 1 to repeat over the batch"
                        .into(),
                );
            }
            let lo = xs.0.iter().map(|&r| bnd(r).0).min().unwrap_or(0);
            let hi = xs.0.iter().map(|&r| bnd(r).1).max().unwrap_or(0);
            (d, batched, vis_of(&xs.0), (lo, hi))
        }
        Instr::Slice {
            x, starts, steps, ..
        } => {
            let xd = dims(x.0);
            let (st, sp) = shapes::slice(&xd, &starts.0, &steps.0, dst_dims)?;
            let batched = reg(x.0).ty.batched;
            if batched && (st[0] != 0 || sp[0] != 1 || dst_dims[0] != xd[0]) {
                return Err("slice along the batch dimension".into());
            }
            (dst_dims.to_vec(), batched, vis_of(&[x.0]), bnd(x.0))
        }
        Instr::Cast { x, .. } => (dims(x.0), reg(x.0).ty.batched, vis_of(&[x.0]), bnd(x.0)),
        Instr::Output { x, .. } => (dims(x.0), reg(x.0).ty.batched, vis_of(&[x.0]), bnd(x.0)),
    };
    let (lo, hi) = out_b;
    if lo.abs() >= RING_BOUND || hi.abs() >= RING_BOUND {
        return Err(format!(
            "values may reach [{lo}, {hi}], beyond the exact range of the 64-bit ring"
        ));
    }
    Ok(Inferred {
        dims: out_dims,
        batched: out_batched,
        vis: out_vis,
        lo,
        hi,
    })
}
