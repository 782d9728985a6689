//! A product of two secrets whose only reader is its requantization (after adding a
//! bias) becomes one `convrequant` or `matmulrequant`.
//!
//! `requant(conv(x, w) + bias)` is every layer of a quantized network. Under `rep3` a
//! product of two secrets leaves each party an additive part that one round reshares into
//! replicated shares; the requantization's first round opens a masked value. Fused, the
//! opening takes the parts directly (docs/protocols.md), so a layer takes one round and
//! one ring word per element less. Other protocols run the fused instruction as the three
//! it replaces.
//!
//! A squeeze-excitation gate, `requant(x · gate)` with `gate` of shape `[N, C, 1, 1]`
//! against `x`'s `[N, C, H, W]`, is such a product too: a batch of `[H·W, 1] × [1, 1]`
//! matrix products, so it becomes a `matmulrequant` between two reshapes.

use crate::ir::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Int, Reg};
use qmpc_bytecode::{ConstTensor, Instr, Visibility};

/// Fuse every secret `conv`/`matmul` → (`add` of a bias) → `requant` chain, and every
/// gated `mul` → `requant`.
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
    } else if let Some(gate) = gated_product(g, x, requant) {
        fuse_gate(g, requant, x, gate, lo, hi);
        return;
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
        _ => matmul_requant(lo, hi),
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

/// `matmulrequant` of operands 0 to 5 (`a`, `b`, `bias`, `num`, `den`, `zp`).
fn matmul_requant(lo: Int, hi: Int) -> Instr {
    Instr::MatMulRequant {
        dst: Dst(0),
        a: Reg(0),
        b: Reg(1),
        bias: Reg(2),
        num: Reg(3),
        den: Reg(4),
        zp: Reg(5),
        lo,
        hi,
    }
}

/// A `mul` of two secrets read only by `reader` where one operand is a per-channel gate
/// (squeeze-excitation: `[N, C, 1, 1]` against `[N, C, H, W]`): the leading dimensions
/// they share (`[N, C]`) and the gated operand's trailing element count, gated operand
/// first.
struct Gate {
    x: NodeIndex,
    gate: NodeIndex,
    lead: Vec<usize>,
    inner: usize,
}

fn gated_product(g: &Graph, n: NodeIndex, reader: NodeIndex) -> Option<Gate> {
    if !matches!(g.g[n].op, Op::Compute(Instr::Mul { .. })) || g.only_reader(n) != Some(reader) {
        return None;
    }
    let ops = g.operands(n);
    let [a, b] = ops[..] else { return None };
    if a == b || !is_secret(g, a) || !is_secret(g, b) {
        return None;
    }
    // The gated operand has more elements; the gate is 1 on every trailing axis.
    let numel = |v: NodeIndex| g.dims(v).iter().product::<usize>();
    let (x, gate) = if numel(a) >= numel(b) { (a, b) } else { (b, a) };
    let (xd, gd) = (g.dims(x), g.dims(gate));
    if xd.len() != gd.len() || g.dims(n) != xd {
        return None;
    }
    let q = gd.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1);
    let inner: usize = xd[q..].iter().product();
    // The batch axis stays the first leading one; a gate of one element is a scalar factor.
    // Only the squeeze-excitation shape, `[N, C, 1, 1]` against `[N, C, H, W]`. A
    // softmax's normalization (`[.., S, L]` by `[.., S, 1]`) has the same form, but
    // `shamir` and `mal-rep3` run a product of one-column matrices at a few bytes more per
    // element than the `mul` it replaces (models/budget.toml), for no round.
    if xd.len() != 4 || q != 2 || inner < 2 || xd[..q] != gd[..q] {
        return None;
    }
    Some(Gate {
        x,
        gate,
        lead: xd[..q].to_vec(),
        inner,
    })
}

/// `requant(x · gate)` as `reshape(matmulrequant([.., inner, 1] × [.., 1, 1]))`: a batch of
/// matrix products with one column, so `rep3` requantizes the product's unreshared parts.
fn fuse_gate(g: &mut Graph, requant: NodeIndex, product: NodeIndex, gate: Gate, lo: Int, hi: Int) {
    let ops = g.operands(requant);
    let [_, num, den, zp] = ops[..] else { return };
    let origin = g.g[product].origin.clone();
    let reshape = Instr::Reshape {
        dst: Dst(0),
        x: Reg(0),
    };
    let shape =
        |tail: [usize; 2]| -> Vec<usize> { gate.lead.iter().copied().chain(tail).collect() };
    let Ok(x) = g.add_compute(
        reshape.clone(),
        &[gate.x],
        Some(&shape([gate.inner, 1])),
        None,
        &origin,
    ) else {
        return;
    };
    let Ok(f) = g.add_compute(
        reshape.clone(),
        &[gate.gate],
        Some(&shape([1, 1])),
        None,
        &origin,
    ) else {
        return;
    };
    let dtype = g.decl(product).ty.dtype;
    let bias = g.add_const(
        ConstTensor {
            dtype,
            dims: vec![1],
            data: vec![0],
        },
        &origin,
    );
    let instr = matmul_requant(lo, hi);
    let out_dtype = g.decl(requant).ty.dtype;
    let Ok(fused) = g.add_compute(
        instr,
        &[x, f, bias, num, den, zp],
        None,
        Some(out_dtype),
        &origin,
    ) else {
        return;
    };
    let dims = g.dims(requant).to_vec();
    let Ok(back) = g.add_compute(reshape, &[fused], Some(&dims), Some(out_dtype), &origin) else {
        return;
    };
    g.move_readers(requant, back);
    g.g.remove_node(requant);
    g.g.remove_node(product);
}
