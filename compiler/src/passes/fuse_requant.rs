//! Rescale, zero point and clamp as one `requant` instruction.
//!
//! A secret `rescale` with constant factors, read only by an `add` of a constant zero point
//! (or by nothing else but the `clamp`), read only by a `clamp`, becomes one `requant`. A
//! protocol then shares work between the truncation and the comparisons: in `rep3` the
//! clamp's tests become comparisons of the accumulator with public thresholds, made in the
//! same rounds as the truncation's borrow (see `docs/protocols.md`).

use crate::ir::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Int, Reg};
use qmpc_bytecode::ConstTensor;
use qmpc_bytecode::{DType, Instr, Visibility};

/// Fuse every secret `rescale` → (`add` zero point) → `clamp` chain.
pub fn fuse_requant(g: &mut Graph) {
    let rescales: Vec<NodeIndex> =
        g.g.node_indices()
            .filter(|&n| {
                matches!(g.g[n].op, Op::Compute(Instr::Rescale { .. }))
                    && g.decl(n).vis == Visibility::Secret
            })
            .collect();
    for r in rescales {
        fuse(g, r);
    }
}

fn is_const(g: &Graph, n: NodeIndex) -> bool {
    matches!(g.g[n].op, Op::Const { .. })
}

fn fuse(g: &mut Graph, rescale: NodeIndex) {
    let ops = g.operands(rescale);
    if ops.len() != 3 || !is_const(g, ops[1]) || !is_const(g, ops[2]) {
        return;
    }
    let dims = g.dims(rescale).to_vec();
    let Some(next) = g.only_reader(rescale) else {
        return;
    };
    // The zero point: the constant operand of an `add` of the same shape, or none.
    let (zp, clamp) = match &g.g[next].op {
        Op::Compute(Instr::Add { .. }) if g.dims(next) == dims.as_slice() => {
            let a = g.operands(next);
            let zp = if a[0] == rescale { a[1] } else { a[0] };
            if !is_const(g, zp) || a[0] == a[1] {
                return;
            }
            let Some(c) = g.only_reader(next) else {
                return;
            };
            (Some(zp), c)
        }
        _ => (None, next),
    };
    let Op::Compute(Instr::Clamp { lo, hi, .. }) = g.g[clamp].op else {
        return;
    };
    if g.dims(clamp) != dims.as_slice() {
        return;
    }
    let origin = g.g[clamp].origin.clone();
    let zp = zp.unwrap_or_else(|| {
        g.add_const(
            ConstTensor {
                dtype: DType::I8,
                dims: vec![1],
                data: vec![0],
            },
            &origin,
        )
    });
    let instr = Instr::Requant {
        dst: Dst(0),
        x: Reg(0),
        num: Reg(1),
        den: Reg(2),
        zp: Reg(3),
        lo,
        hi: Int(hi.0),
    };
    let dtype = g.decl(clamp).ty.dtype;
    let Ok(fused) = g.add_compute(
        instr,
        &[ops[0], ops[1], ops[2], zp],
        None,
        Some(dtype),
        &origin,
    ) else {
        return;
    };
    g.move_readers(clamp, fused);
    g.g.remove_node(clamp);
    if next != clamp {
        g.g.remove_node(next);
    }
    g.g.remove_node(rescale);
}
