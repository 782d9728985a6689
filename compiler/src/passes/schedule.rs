//! Scheduling by communication depth: independent interactive instructions of the whole
//! graph share rounds (MP-SPDZ's round merging, done on the IR).
//!
//! Every node gets its depth, the number of interactive nodes on the longest path that
//! leads to it; nodes are lowered in order of depth, and the program is marked
//! `rounds=merged`, so the VM starts each instruction as soon as its operands are ready and
//! runs the interactive ones that overlap in shared rounds. Lowering by depth puts the
//! instructions that start together next to each other in the assembly.

use crate::ir::{Graph, Op};
use petgraph::algo::toposort;
use qmpc_bytecode::RoundSchedule;
use qmpc_bytecode::Visibility;

/// Whether node `n` communicates under any protocol that communicates at all.
fn interactive(g: &Graph, n: petgraph::stable_graph::NodeIndex) -> bool {
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
    let mut depth = std::collections::HashMap::new();
    for &n in &topo {
        let d = g
            .operands(n)
            .iter()
            .map(|o| depth[o] + usize::from(interactive(g, *o)))
            .max()
            .unwrap_or(0);
        depth.insert(n, d);
    }
    let mut order = topo;
    // A stable sort keeps operands first: an operand's depth never exceeds its reader's.
    order.sort_by_key(|n| depth[n]);
    g.order = order;
    g.rounds = RoundSchedule::Merged;
}
