//! IR passes, one per file.

mod dce;

pub use dce::dead_code_elimination;

/// Every pass in order.
pub fn run_all(g: &mut crate::ir::Graph) {
    dead_code_elimination(g);
}
