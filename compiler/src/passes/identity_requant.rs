//! A requantization that changes nothing but the zero point becomes a local `add`.
//!
//! QDQ exports put `DequantizeLinear → QuantizeLinear` pairs with one scale around ops that
//! keep it (MaxPool, Flatten): `requant(x − zp₁, 1/1, zp₂)` whose clamp can never bind. It
//! is `x − zp₁ + zp₂` exactly, which every protocol computes without communication, while a
//! requantization costs rounds of comparisons.

use crate::ir::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Reg};
use qmpc_bytecode::Instr;

/// Replace every requantization by one whose clamp never binds with an `add`.
pub fn identity_requant(g: &mut Graph) {
    let requants: Vec<NodeIndex> =
        g.g.node_indices()
            .filter(|&n| matches!(g.g[n].op, Op::Compute(Instr::Requant { .. })))
            .collect();
    for r in requants {
        replace(g, r);
    }
}

fn replace(g: &mut Graph, r: NodeIndex) {
    let Op::Compute(Instr::Requant { lo, hi, .. }) = g.g[r].op else {
        return;
    };
    let ops = g.operands(r);
    let (Some(num), Some(den), Some(zp)) = (
        g.const_data(ops[1]),
        g.const_data(ops[2]),
        g.const_data(ops[3]),
    ) else {
        return;
    };
    // Equal single multipliers: per-element ones would need the broadcast to pair them.
    if num.len() != 1 || den.len() != 1 || num[0] != den[0] || num[0] <= 0 {
        return;
    }
    let (Some(&zp_lo), Some(&zp_hi)) = (zp.iter().min(), zp.iter().max()) else {
        return;
    };
    let x = g.decl(ops[0]);
    let in_range =
        x.lo.checked_add(zp_lo)
            .zip(x.hi.checked_add(zp_hi))
            .is_some_and(|(a, b)| a >= lo.0 && b <= hi.0);
    if !in_range {
        return;
    }
    let origin = g.g[r].origin.clone();
    let dtype = g.decl(r).ty.dtype;
    let add = Instr::Add {
        dst: Dst(0),
        a: Reg(0),
        b: Reg(1),
    };
    let Ok(sum) = g.add_compute(add, &[ops[0], ops[3]], None, Some(dtype), &origin) else {
        return;
    };
    if g.dims(sum) != g.dims(r) {
        g.g.remove_node(sum);
        return;
    }
    g.move_readers(r, sum);
    g.g.remove_node(r);
}
