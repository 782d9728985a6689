//! `convrequant` and `matmulrequant`: `requant(product + bias)` where the product of two
//! secrets has no reader but its requantization, so a protocol may requantize the
//! product's unreshared parts ([`Protocol::product_requantize`]). With a public operand
//! they run as the three instructions they fuse.

use crate::bytecode::{Instr, Program};
use crate::interp::{
    conv_plan, conv_secret_operands, elementwise, get, matmul, matmul_secret_operands,
    plain_requant, requant, requant_params, Elementwise, Fail, Shared, Value,
};
use crate::plain::{conv_requant, per_channel, ChannelRequant, View};
use crate::tensor::broadcast_to;
use qmpc_protocols::{Bounds, Protocol, Requant};

/// Runs a fused instruction; `dst_dims` gives a register's shape at this batch.
pub(crate) fn product_requant<P: Protocol>(
    p: &Program,
    proto: &mut P,
    regs: &[Option<Value<P::Shares>>],
    ins: &Instr,
    dst_dims: &dyn Fn(u32) -> Vec<usize>,
) -> Result<Value<P::Shares>, Fail> {
    let (dst, bias) = match ins {
        Instr::ConvRequant { dst, bias, .. } | Instr::MatMulRequant { dst, bias, .. } => {
            (dst.0, bias.0)
        }
        _ => return Err(Fail::Msg("not a fused product".into())),
    };
    let q = ins
        .requantization()
        .ok_or_else(|| Fail::Msg("not a fused product".into()))?;
    let (num, den, zp, lo, hi) = (q.num, q.den, q.zp, q.lo, q.hi);
    let dims = dst_dims(dst);
    if let Some(out) = plain_conv(proto, regs, ins, (bias, num, den, zp), (lo, hi), &dims)? {
        return Ok(out);
    }
    if let Some(out) = plain_matmul(p, proto, regs, ins, (bias, num, den, zp), (lo, hi), &dims)? {
        return Ok(out);
    }
    let q = requant_params(regs, (num, den, zp), (lo, hi), &dims)?;
    let bounds = accumulator_bounds(p, ins)?;
    let bias = get(regs, bias)?;
    let fused = |proto: &mut P, a: &P::Shares, b: &P::Shares, d| -> Result<_, Fail> {
        let bias = match bias {
            Value::Secret(s) => s.broadcast(&dims).into_owned(),
            Value::Public(t) => proto.public(&broadcast_to(t, &dims)),
        };
        let out = proto.product_requantize(a, b, d, &bias, &q, bounds, p.trunc)?;
        Ok(Value::Secret(Shared::new(dims.clone(), out)))
    };
    let product = match ins {
        Instr::ConvRequant {
            x,
            w,
            strides,
            pads,
            dilations,
            group,
            ..
        } => {
            let (x, w) = (get(regs, x.0)?, get(regs, w.0)?);
            let geometry = (&strides.0[..], &pads.0[..], &dilations.0[..]);
            let plan = conv_plan(x.dims(), w.dims(), geometry, group.0 as usize, &dims)?;
            if let (Value::Secret(xs), Value::Secret(ws)) = (x, w) {
                let (wb, cols) = conv_secret_operands(&plan, xs, ws)?;
                return fused(proto, &wb, &cols, plan.dims);
            }
            crate::interp::conv_value(proto, x, w, &plan, group.0 as usize, &dims)?
        }
        Instr::MatMulRequant { a, b, .. } => {
            let (a, b) = (get(regs, a.0)?, get(regs, b.0)?);
            if let (Value::Secret(xs), Value::Secret(ys)) = (a, b) {
                let (xa, ya, d) = matmul_secret_operands(xs, ys, &dims);
                return fused(proto, &xa, &ya, d);
            }
            matmul(proto, a, b, &dims)?
        }
        _ => return Err(Fail::Msg("not a fused product".into())),
    };
    let sum = elementwise(proto, &product, bias, dims, Elementwise::Add)?;
    requant(proto, &sum, &q, bounds, p.trunc)
}

/// `convrequant` in one plaintext pass ([`crate::plain`]) where the protocol's shares are
/// the values ([`qmpc_protocols::Core::values`]) and the bias and parameters vary along
/// the output's channels only; `None` where the general steps run.
fn plain_conv<P: Protocol>(
    proto: &P,
    regs: &[Option<Value<P::Shares>>],
    ins: &Instr,
    (bias, num, den, zp): (u32, u32, u32, u32),
    (lo, hi): (i64, i64),
    dims: &[usize],
) -> Result<Option<Value<P::Shares>>, Fail> {
    let Instr::ConvRequant {
        x,
        w,
        strides,
        pads,
        dilations,
        group,
        ..
    } = ins
    else {
        return Ok(None);
    };
    let view = |r: u32| -> Result<Option<View<'_>>, Fail> { Ok(get(regs, r)?.plain(proto)) };
    let (Some(xv), Some(wv), Some(bv)) = (view(x.0)?, view(w.0)?, view(bias)?) else {
        return Ok(None);
    };
    // The result is secret (shares that are the values) where any operand is, else public.
    let like = [x.0, w.0, bias]
        .into_iter()
        .filter_map(|r| get(regs, r).ok())
        .find(|v| matches!(v, Value::Secret(_)))
        .unwrap_or(get(regs, x.0)?);
    let public =
        |r: u32| view(r)?.ok_or(Fail::Msg("requantization parameters must be public".into()));
    let channels = |v: View<'_>| per_channel(v.dims, v.data, dims);
    let params = (
        channels(bv),
        channels(public(num)?),
        channels(public(den)?),
        channels(public(zp)?),
    );
    let (Some(bias), Some(num), Some(den), Some(zp)) = params else {
        return Ok(None);
    };
    let per = ChannelRequant {
        bias,
        q: Requant {
            num,
            den,
            zp,
            lo,
            hi,
        },
    };
    let win = crate::shapes::window(&wv.dims[2..], &strides.0, &pads.0, &dilations.0)?;
    let out = conv_requant(xv, wv, &win, group.0 as usize, Some(&per))?;
    if out.len() != dims.iter().product::<usize>() {
        return Err("the convolution's output does not have its register's shape".into());
    }
    Ok(like.like(proto, dims.to_vec(), out))
}

/// `matmulrequant` on plaintext operands ([`Value::plain`]) whose parameters vary along
/// the output's channels only: the product, then the bias and the requantization by
/// channel in plaintext passes ([`crate::plain`]) instead of parameters and bias
/// broadcast to every element; `None` where the general steps run.
fn plain_matmul<P: Protocol>(
    p: &Program,
    proto: &mut P,
    regs: &[Option<Value<P::Shares>>],
    ins: &Instr,
    (bias, num, den, zp): (u32, u32, u32, u32),
    (lo, hi): (i64, i64),
    dims: &[usize],
) -> Result<Option<Value<P::Shares>>, Fail> {
    let Instr::MatMulRequant { a, b, .. } = ins else {
        return Ok(None);
    };
    let (a, b, bias) = (get(regs, a.0)?, get(regs, b.0)?, get(regs, bias)?);
    let plain = |v: &Value<P::Shares>| v.plain(&*proto).is_some();
    if dims.len() < 2 || !(plain(a) && plain(b) && plain(bias)) {
        return Ok(None);
    }
    let product = matmul(proto, a, b, dims)?;
    let sum = elementwise(proto, &product, bias, dims.to_vec(), Elementwise::Add)?;
    if let Some(out) = plain_requant(proto, regs, &sum, (num, den, zp), (lo, hi), dims) {
        return Ok(Some(out));
    }
    // Parameters that vary along more than the channels: the general requantization.
    let q = requant_params(regs, (num, den, zp), (lo, hi), dims)?;
    requant(proto, &sum, &q, accumulator_bounds(p, ins)?, p.trunc).map(Some)
}

/// Bounds of the sum a fused instruction requantizes, as the verifier infers them.
fn accumulator_bounds(p: &Program, ins: &Instr) -> Result<Bounds, Fail> {
    let (_, (lo, hi)) = qmpc_bytecode::verify::accumulator(p, ins)?.ok_or("not a fused product")?;
    let fit = |v: i128| i64::try_from(v).map_err(|_| Fail::Msg("accumulator beyond i64".into()));
    Ok(Bounds {
        lo: fit(lo)?,
        hi: fit(hi)?,
    })
}
