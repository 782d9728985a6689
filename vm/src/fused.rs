//! `convrequant` and `matmulrequant`: `requant(product + bias)` where the product of two
//! secrets has no reader but its requantization, so a protocol may requantize the
//! product's unreshared parts ([`Protocol::product_requantize`]). With a public operand
//! they run as the three instructions they fuse.

use crate::bytecode::{Instr, Program};
use crate::interp::{
    conv_plan, conv_secret_operands, elementwise, get, matmul, matmul_secret_operands, requant,
    requant_params, Elementwise, Fail, Shared, Value,
};
use crate::tensor::broadcast_to;
use qmpc_protocols::{Bounds, Protocol};

/// Runs a fused instruction; `dst_dims` gives a register's shape at this batch.
pub(crate) fn product_requant<P: Protocol>(
    p: &Program,
    proto: &mut P,
    regs: &[Option<Value<P::Shares>>],
    ins: &Instr,
    dst_dims: &dyn Fn(u32) -> Vec<usize>,
) -> Result<Value<P::Shares>, Fail> {
    let (dst, bias, num, den, zp, lo, hi) = match ins {
        Instr::ConvRequant {
            dst,
            bias,
            num,
            den,
            zp,
            lo,
            hi,
            ..
        }
        | Instr::MatMulRequant {
            dst,
            bias,
            num,
            den,
            zp,
            lo,
            hi,
            ..
        } => (dst.0, bias.0, num.0, den.0, zp.0, lo.0, hi.0),
        _ => return Err(Fail::Msg("not a fused product".into())),
    };
    let dims = dst_dims(dst);
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

/// Bounds of the sum a fused instruction requantizes, as the verifier infers them.
fn accumulator_bounds(p: &Program, ins: &Instr) -> Result<Bounds, Fail> {
    let (_, (lo, hi)) = qmpc_bytecode::verify::accumulator(p, ins)?.ok_or("not a fused product")?;
    let fit = |v: i128| i64::try_from(v).map_err(|_| Fail::Msg("accumulator beyond i64".into()));
    Ok(Bounds {
        lo: fit(lo)?,
        hi: fit(hi)?,
    })
}
