//! Scheduling by communication depth: independent interactive instructions of the whole
//! graph share rounds (MP-SPDZ's round merging, done on the IR).
//!
//! Every node gets its depth, the number of interactive nodes on the longest path that
//! leads to it; nodes are lowered in order of depth, and the program is marked
//! `rounds=merged`, so the VM starts each instruction as soon as its operands are ready and
//! runs the interactive ones that overlap in shared rounds. Lowering by depth puts the
//! instructions that start together next to each other in the assembly. A node without
//! operands goes with its first reader, so a protocol that runs the program in order
//! shares each weight where it is first used.

use crate::ir::{Graph, Op};
use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;
use petgraph::Direction;
use qmpc_bytecode::RoundSchedule;
use qmpc_bytecode::Visibility;
use std::collections::HashMap;

/// Whether node `n` communicates under any protocol that communicates at all.
fn interactive(g: &Graph, n: NodeIndex) -> bool {
    match &g.g[n].op {
        Op::Input { .. } | Op::Output { .. } => true,
        Op::Weight { .. } => g.decl(n).vis == Visibility::Secret,
        Op::Const { .. } | Op::Load { .. } | Op::Store { .. } => false,
        Op::Compute(ins) => {
            let secret: Vec<bool> = g
                .operands(n)
                .iter()
                .map(|&o| g.decl(o).vis == Visibility::Secret)
                .collect();
            ins.comm().communicates(&secret)
        }
    }
}

/// Order nodes by communication depth and mark the program `rounds=merged`.
pub fn schedule(g: &mut Graph) {
    let Ok(topo) = toposort(&g.g, None) else {
        // Lowering reports the cycle.
        return;
    };
    let mut depth = HashMap::new();
    for &n in &topo {
        let d = g
            .operands(n)
            .iter()
            .map(|o| depth[o] + usize::from(interactive(g, *o)))
            .max()
            .unwrap_or(0);
        depth.insert(n, d);
    }
    // A node without operands (a weight, a constant, the input) is lowered with its first
    // reader: a protocol that runs the program in order (`spdz2k`, `mal-rep3`) then shares
    // each weight where it is used instead of holding every weight's shares (64 bytes per
    // party each under `mal-rep3`) from the program's start.
    let key = |n: NodeIndex| {
        if g.operands(n).is_empty() {
            g.g.neighbors_directed(n, Direction::Outgoing)
                .map(|r| depth[&r])
                .min()
                .unwrap_or(0)
        } else {
            depth[&n]
        }
    };
    let keys: HashMap<NodeIndex, usize> = topo.iter().map(|&n| (n, key(n))).collect();
    let mut order = topo;
    // A stable sort keeps operands first: an operand's key never exceeds its reader's
    // (a source's is its earliest reader's depth, and topological order puts it first).
    order.sort_by_key(|n| keys[n]);
    g.order = order;
    g.rounds = RoundSchedule::Merged;
}
