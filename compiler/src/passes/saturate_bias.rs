//! A secret bias clamped to the range past which its requantization saturates anyway.
//!
//! `requant(add(a, bias))` with a secret int32 `bias` declares the sum as wide as the bias's
//! type (≈ 2^32 values), so every comparison in it, and the ring of the whole program, must
//! hold 33 bits. But the requantization is non-decreasing and clamps to `[lo, hi]`: past the
//! least `x` that reaches `hi` (`T_hi`) and below the greatest that stays at `lo` (`T_lo`)
//! the output no longer changes. A bias above `T_hi − a_lo` puts every sum past `T_hi`, as
//! does the bias `T_hi − a_lo` itself, and the same below, so clamping the bias to
//! `[T_lo − a_hi, T_hi − a_lo]` leaves every output as it was. The bounds come from public
//! facts only (the bounds of `a`, the requantization's constants, the type), never from the
//! weights' values, so the program still reveals nothing about them; the model owner's
//! values are clamped at compile time and checked against the bounds when loaded.
//!
//! For int8 models the sums then need about 25 bits, and `rep3` computes in Z_2^32.

use crate::ir::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Reg};
use qmpc_bytecode::{Instr, Visibility};
use qmpc_semantics::{Bounds, Requant};

/// Clamp the secret bias of every `requant(add(a, bias))`.
pub fn saturate_bias(g: &mut Graph) {
    let requants: Vec<NodeIndex> =
        g.g.node_indices()
            .filter(|&n| matches!(g.g[n].op, Op::Compute(Instr::Requant { .. })))
            .collect();
    for r in requants {
        saturate(g, r);
    }
}

/// The distinct per-element parameters of a requantization whose constants are per tensor
/// or share one shape (then element `k` of each goes together); `None` otherwise, or where
/// a multiplier is not positive (the result would not be non-decreasing).
fn parameter_sets(g: &Graph, num: NodeIndex, den: NodeIndex, zp: NodeIndex) -> Option<Requant> {
    let ops = [num, den, zp];
    let data: Vec<&[i64]> = ops
        .iter()
        .map(|&n| g.const_data(n))
        .collect::<Option<_>>()?;
    let wide: Vec<&[usize]> = ops
        .iter()
        .zip(&data)
        .filter(|(_, d)| d.len() > 1)
        .map(|(&n, _)| g.dims(n))
        .collect();
    if wide.windows(2).any(|w| w[0] != w[1]) || data.iter().any(|d| d.is_empty()) {
        return None;
    }
    let n = data.iter().map(|d| d.len()).max()?;
    let at = |d: &[i64], k: usize| d[if d.len() == 1 { 0 } else { k }];
    let mut sets: Vec<(i64, i64, i64)> = (0..n)
        .map(|k| (at(data[0], k), at(data[1], k), at(data[2], k)))
        .collect();
    sets.sort_unstable();
    sets.dedup();
    if sets.iter().any(|&(nu, de, _)| nu <= 0 || de <= 0) {
        return None;
    }
    Some(Requant {
        num: sets.iter().map(|s| s.0).collect(),
        den: sets.iter().map(|s| s.1).collect(),
        zp: sets.iter().map(|s| s.2).collect(),
        lo: 0,
        hi: 0,
    })
}

fn saturate(g: &mut Graph, r: NodeIndex) {
    let Op::Compute(Instr::Requant { lo, hi, .. }) = g.g[r].op else {
        return;
    };
    let ops = g.operands(r);
    let add = ops[0];
    if !matches!(g.g[add].op, Op::Compute(Instr::Add { .. })) || g.only_reader(add) != Some(r) {
        return;
    }
    let Some(mut q) = parameter_sets(g, ops[1], ops[2], ops[3]) else {
        return;
    };
    (q.lo, q.hi) = (lo.0, hi.0);
    let terms = g.operands(add);
    let Some(&bias) = terms.iter().find(|&&t| {
        matches!(g.g[t].op, Op::Weight { .. })
            && g.decl(t).vis == Visibility::Secret
            && g.only_reader(t) == Some(add)
    }) else {
        return;
    };
    let Some(&other) = terms.iter().find(|&&t| t != bias) else {
        return;
    };
    let (a_lo, a_hi) = (g.decl(other).lo, g.decl(other).hi);
    let sum = Bounds {
        lo: g.decl(add).lo,
        hi: g.decl(add).hi,
    };
    // The sums past which every element's output is `hi`, and up to which it is `lo`.
    let Some(low_target) = q.lo.checked_add(1) else {
        return;
    };
    let t_hi = (0..q.num.len())
        .map(|i| q.threshold(i, q.hi, sum))
        .max()
        .unwrap_or(sum.hi);
    let t_lo = (0..q.num.len())
        .map(|i| q.threshold(i, low_target, sum) - 1)
        .min()
        .unwrap_or(sum.lo);
    let decl = g.decl(bias);
    let new_lo = t_lo.saturating_sub(a_hi).max(decl.lo);
    let new_hi = t_hi.saturating_sub(a_lo).min(decl.hi);
    if new_lo > new_hi || (new_lo == decl.lo && new_hi == decl.hi) {
        return;
    }
    let node = &mut g.g[bias];
    node.decl.lo = new_lo;
    node.decl.hi = new_hi;
    if let Op::Weight { data, .. } = &mut node.op {
        for v in &mut data.data {
            *v = (*v).clamp(new_lo, new_hi);
        }
    }
    // The sum again, with the narrower bounds (and type) that follow.
    let origin = g.g[add].origin.clone();
    let instr = Instr::Add {
        dst: Dst(0),
        a: Reg(0),
        b: Reg(1),
    };
    let Ok(narrow) = g.add_compute(instr, &terms, None, None, &origin) else {
        return;
    };
    g.g.add_edge(narrow, r, 0);
    g.g.remove_node(add);
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmpc_bytecode::operand::Int;
    use qmpc_bytecode::ConstTensor;
    use qmpc_bytecode::{DType, TensorType};

    fn tensor(dtype: DType, dims: &[usize], data: Vec<i64>) -> ConstTensor {
        ConstTensor {
            dtype,
            dims: dims.to_vec(),
            data,
        }
    }

    /// `requant(add(acc, bias))` with `acc ∈ [−1000, 1000]`, multiplier 3/64, zero point 5.
    fn graph(bias: Vec<i64>) -> (Graph, NodeIndex) {
        let mut g = Graph::default();
        let x = g.add_input(
            qmpc_bytecode::InputDecl {
                name: "x".into(),
                external: qmpc_bytecode::ExternalType::I64,
                quant: None,
                ty: TensorType {
                    dtype: DType::I8,
                    dims: vec![2],
                    batched: true,
                },
            },
            "x",
        );
        let k = g.add_const(tensor(DType::I8, &[1], vec![8]), "k");
        let acc = g
            .add_compute(
                Instr::Mul {
                    dst: Dst(0),
                    a: Reg(0),
                    b: Reg(1),
                },
                &[x, k],
                None,
                None,
                "acc",
            )
            .unwrap();
        let b = g.add_weight("bias", tensor(DType::I32, &[2], bias), "bias");
        let sum = g
            .add_compute(
                Instr::Add {
                    dst: Dst(0),
                    a: Reg(0),
                    b: Reg(1),
                },
                &[acc, b],
                None,
                None,
                "sum",
            )
            .unwrap();
        let num = g.add_const(tensor(DType::I32, &[1], vec![3]), "q");
        let den = g.add_const(tensor(DType::I32, &[1], vec![64]), "q");
        let zp = g.add_const(tensor(DType::I8, &[1], vec![5]), "q");
        let r = g
            .add_compute(
                Instr::Requant {
                    dst: Dst(0),
                    x: Reg(0),
                    num: Reg(1),
                    den: Reg(2),
                    zp: Reg(3),
                    lo: Int(-128),
                    hi: Int(127),
                },
                &[sum, num, den, zp],
                None,
                Some(DType::I8),
                "q",
            )
            .unwrap();
        (g, r)
    }

    fn bias_of(g: &Graph) -> (i64, i64, Vec<i64>) {
        let n =
            g.g.node_indices()
                .find(|&n| matches!(g.g[n].op, Op::Weight { .. }))
                .unwrap();
        let Op::Weight { data, .. } = &g.g[n].op else {
            unreachable!()
        };
        (g.decl(n).lo, g.decl(n).hi, data.data.clone())
    }

    #[test]
    fn a_bias_is_clamped_where_the_output_no_longer_changes() {
        let (mut g, r) = graph(vec![-2_000_000_000, 77]);
        saturate_bias(&mut g);
        let (lo, hi, data) = bias_of(&g);
        // round(x·3/64) + 5 reaches 127 from x = 2592 (a tie, rounded to 122) and stays at
        // −128 up to x = −2827.
        assert_eq!((lo, hi), (-2827 - 1016, 2592 + 1024));
        assert_eq!(data, vec![lo, 77]);
        let sum = g.operands(r)[0];
        assert_eq!((g.decl(sum).lo, g.decl(sum).hi), (lo - 1024, hi + 1016));
        assert_eq!(g.decl(sum).ty.dtype, DType::I16);
        // Same outputs for every sum with the old and the clamped bias.
        let q = Requant {
            num: vec![3],
            den: vec![64],
            zp: vec![5],
            lo: -128,
            hi: 127,
        };
        for acc in (-1024..=1016).step_by(8) {
            for b in [-2_000_000_000i64, -4000, lo, 0, hi, 5000, 2_000_000_000] {
                assert_eq!(
                    q.apply(0, acc + b),
                    q.apply(0, acc + b.clamp(lo, hi)),
                    "acc {acc}, bias {b}"
                );
            }
        }
    }

    #[test]
    fn a_bias_read_twice_is_left_alone() {
        let (mut g, r) = graph(vec![1, 2]);
        let sum = g.operands(r)[0];
        let bias = g.operands(sum)[1];
        let extra = g.add_compute(
            Instr::Add {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[bias, bias],
            None,
            None,
            "other",
        );
        assert!(extra.is_ok());
        saturate_bias(&mut g);
        let (lo, hi, _) = bias_of(&g);
        assert_eq!((lo, hi), (i64::from(i32::MIN), i64::from(i32::MAX)));
    }
}
