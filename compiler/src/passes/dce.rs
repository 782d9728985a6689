//! Dead-code elimination: drop nodes no output or stored state depends on.

use crate::ir::{Graph, Op};
use petgraph::visit::Dfs;
use petgraph::visit::{Reversed, Walker};

/// Remove every node from which no output or `store` is reachable.
pub fn dead_code_elimination(g: &mut Graph) {
    let outputs: Vec<_> =
        g.g.node_indices()
            .filter(|&n| matches!(g.g[n].op, Op::Output { .. } | Op::Store { .. }))
            .collect();
    let mut live = std::collections::HashSet::new();
    for o in outputs {
        for n in Dfs::new(Reversed(&g.g), o).iter(Reversed(&g.g)) {
            live.insert(n);
        }
    }
    let dead: Vec<_> = g.g.node_indices().filter(|n| !live.contains(n)).collect();
    for n in dead {
        g.g.remove_node(n);
    }
}
