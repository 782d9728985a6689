//! A product of two secrets whose only reader is its requantization (after adding a
//! bias) becomes one `convrequant` or `matmulrequant`.
//!
//! `requant(conv(x, w) + bias)` is every layer of a quantized network. Under `rep3` a
//! product of two secrets leaves each party an additive part that one round reshares into
//! replicated shares; the requantization's first round opens a masked value. Fused, the
//! opening takes the parts directly (docs/protocols.md), so a layer takes one round and
//! one ring word per element less. Other protocols run the fused instruction as the three
//! it replaces.

use crate::ir::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Reg};
use qmpc_bytecode::{ConstTensor, Instr, Visibility};

/// Fuse every secret `conv`/`matmul` → (`add` of a bias) → `requant` chain.
pub fn fuse_product(g: &mut Graph) {
    let requants: Vec<NodeIndex> =
        g.g.node_indices()
            .filter(|&n| matches!(g.g[n].op, Op::Compute(Instr::Requant { .. })))
            .collect();
    for r in requants {
        fuse(g, r);
    }
}

fn is_secret(g: &Graph, n: NodeIndex) -> bool {
    g.decl(n).vis == Visibility::Secret
}

/// A `conv` or `matmul` of two secrets read only by `reader`.
fn secret_product(g: &Graph, n: NodeIndex, reader: NodeIndex) -> bool {
    matches!(
        g.g[n].op,
        Op::Compute(Instr::Conv { .. } | Instr::MatMul { .. })
    ) && g.only_reader(n) == Some(reader)
        && g.operands(n).iter().all(|&o| is_secret(g, o))
}

fn fuse(g: &mut Graph, requant: NodeIndex) {
    let Op::Compute(Instr::Requant { lo, hi, .. }) = g.g[requant].op else {
        return;
    };
    let ops = g.operands(requant);
    let [x, num, den, zp] = ops[..] else {
        return;
    };
    // The product, and the bias added to it (if any).
    let (product, bias, add) = if secret_product(g, x, requant) {
        (x, None, None)
    } else if matches!(g.g[x].op, Op::Compute(Instr::Add { .. }))
        && g.only_reader(x) == Some(requant)
    {
        let a = g.operands(x);
        let Some(k) = (0..2).find(|&k| secret_product(g, a[k], x)) else {
            return;
        };
        // The sum must have the product's shape: the bias broadcasts into it.
        if a[0] == a[1] || g.dims(x) != g.dims(a[k]) {
            return;
        }
        (a[k], Some(a[1 - k]), Some(x))
    } else {
        return;
    };
    let origin = g.g[product].origin.clone();
    let bias = bias.unwrap_or_else(|| {
        let dtype = g.decl(product).ty.dtype;
        g.add_const(
            ConstTensor {
                dtype,
                dims: vec![1],
                data: vec![0],
            },
            &origin,
        )
    });
    let instr = match &g.g[product].op {
        Op::Compute(Instr::Conv {
            strides,
            pads,
            dilations,
            group,
            ..
        }) => Instr::ConvRequant {
            dst: Dst(0),
            x: Reg(0),
            w: Reg(1),
            bias: Reg(2),
            num: Reg(3),
            den: Reg(4),
            zp: Reg(5),
            strides: strides.clone(),
            pads: pads.clone(),
            dilations: dilations.clone(),
            group: *group,
            lo,
            hi,
        },
        _ => Instr::MatMulRequant {
            dst: Dst(0),
            a: Reg(0),
            b: Reg(1),
            bias: Reg(2),
            num: Reg(3),
            den: Reg(4),
            zp: Reg(5),
            lo,
            hi,
        },
    };
    let p = g.operands(product);
    let dtype = g.decl(requant).ty.dtype;
    let Ok(fused) = g.add_compute(
        instr,
        &[p[0], p[1], bias, num, den, zp],
        None,
        Some(dtype),
        &origin,
    ) else {
        return;
    };
    g.move_readers(requant, fused);
    g.g.remove_node(requant);
    if let Some(add) = add {
        g.g.remove_node(add);
    }
    g.g.remove_node(product);
}
