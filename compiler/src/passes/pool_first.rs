//! MaxPool before monotone requantization.
//!
//! A requantization (`add bias`, `rescale`, `add zero point`, `clamp`, `sub zero point`) is a
//! non-decreasing function `f` applied element by element, with parameters that are the
//! same for every element of a pooling window (per tensor or per channel). Then
//! `maxpool(f(x)) = f(maxpool(x))` exactly, and the expensive `rescale` and `clamp` run on
//! the pooled tensor: a quarter of the elements for a 2×2 pool. The comparisons of the pool
//! move to the wider accumulators, which costs a little more per comparison.
//!
//! The chain is followed back from each secret `maxpool` through nodes that have no other
//! reader; the pool is moved before all of them.

use crate::ir::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use petgraph::Direction;
use qmpc_bytecode::{Instr, Visibility};

/// Move every secret `maxpool` before the monotone chain that feeds it.
pub fn pool_first(g: &mut Graph) {
    let pools: Vec<NodeIndex> =
        g.g.node_indices()
            .filter(|&n| {
                matches!(g.g[n].op, Op::Compute(Instr::MaxPool { .. }))
                    && g.decl(n).vis == Visibility::Secret
            })
            .collect();
    for p in pools {
        move_pool(g, p);
    }
}

/// Readers of `n`.
fn readers(g: &Graph, n: NodeIndex) -> usize {
    g.g.edges_directed(n, Direction::Outgoing).count()
}

/// Whether a parameter of `dims` is the same across the last `pooled` axes of a tensor of
/// rank `rank` (numpy broadcasting aligns shapes on the right).
fn window_constant(dims: &[usize], rank: usize, pooled: usize) -> bool {
    let first_pooled = rank.saturating_sub(pooled);
    let offset = rank.saturating_sub(dims.len());
    dims.iter()
        .enumerate()
        .all(|(i, &d)| i + offset < first_pooled || d == 1)
}

/// A parameter operand: a constant or a weight, the same across every pooling window.
fn is_param(g: &Graph, n: NodeIndex, rank: usize, pooled: usize) -> bool {
    matches!(g.g[n].op, Op::Const { .. } | Op::Weight { .. })
        && window_constant(g.dims(n), rank, pooled)
}

/// If `n` is a non-decreasing element-wise function of one operand with window-constant
/// parameters, the operand position of that one operand.
fn monotone_operand(g: &Graph, n: NodeIndex, pooled: usize) -> Option<usize> {
    let Op::Compute(ins) = &g.g[n].op else {
        return None;
    };
    let ops = g.operands(n);
    let rank = g.dims(n).len();
    let param = |i: usize| ops.get(i).is_some_and(|&o| is_param(g, o, rank, pooled));
    match ins {
        Instr::Add { .. } if param(1) => Some(0),
        Instr::Add { .. } if param(0) => Some(1),
        Instr::Sub { .. } if param(1) => Some(0),
        Instr::Clamp { .. } => Some(0),
        Instr::Rescale { .. } if param(1) && param(2) => {
            let num = g.const_data(ops[1])?;
            let den = g.const_data(ops[2])?;
            (num.iter().all(|&v| v >= 0) && den.iter().all(|&v| v > 0)).then_some(0)
        }
        _ => None,
    }
}

fn move_pool(g: &mut Graph, pool: NodeIndex) {
    let Op::Compute(pool_instr) = g.g[pool].op.clone() else {
        return;
    };
    let Instr::MaxPool { kernel, .. } = &pool_instr else {
        return;
    };
    let pooled = kernel.0.len();
    // The chain, nearest the pool first, with the operand position each one continues on.
    let mut chain: Vec<(NodeIndex, usize)> = Vec::new();
    let mut source = g.operands(pool)[0];
    while readers(g, source) == 1 && g.dims(source).len() == g.dims(pool).len() {
        let Some(pos) = monotone_operand(g, source, pooled) else {
            break;
        };
        chain.push((source, pos));
        source = g.operands(source)[pos];
    }
    if chain.is_empty() || g.decl(source).vis != Visibility::Secret {
        return;
    }
    // Rebuild: the pool on the source, then the chain in its order. The bounds of a pool's
    // result are those of its operand, so every rebuilt node keeps its element type.
    let Ok(mut value) = g.add_compute(
        pool_instr.clone(),
        &[source],
        None,
        None,
        &g.g[pool].origin.clone(),
    ) else {
        return;
    };
    let mut built = vec![value];
    for &(n, pos) in chain.iter().rev() {
        let Op::Compute(ins) = g.g[n].op.clone() else {
            return;
        };
        let mut ops = g.operands(n);
        ops[pos] = value;
        let dtype = g.decl(n).ty.dtype;
        let origin = g.g[n].origin.clone();
        match g.add_compute(ins, &ops, None, Some(dtype), &origin) {
            Ok(v) => {
                value = v;
                built.push(v);
            }
            Err(_) => {
                // Leave the graph as it was.
                for b in built {
                    g.g.remove_node(b);
                }
                return;
            }
        }
    }
    g.move_readers(pool, value);
    g.g.remove_node(pool);
    for (n, _) in chain {
        g.g.remove_node(n);
    }
}

#[cfg(test)]
mod tests {
    use super::window_constant;

    #[test]
    fn parameters_broadcast_over_the_pooled_axes() {
        assert!(window_constant(&[1, 6, 1, 1], 4, 2));
        assert!(window_constant(&[1], 4, 2));
        assert!(window_constant(&[6, 1, 1], 4, 2));
        assert!(window_constant(&[], 4, 2));
        assert!(!window_constant(&[1, 6, 24, 24], 4, 2));
        assert!(!window_constant(&[6], 4, 2));
        assert!(!window_constant(&[1, 1, 1, 24], 4, 2));
    }
}
