//! IR passes, one per file. Each can be switched off (`--no-pass NAME`, or all with `-O0`).

mod dce;
mod fold_table;
mod fuse_product;
mod fuse_requant;
mod identity_requant;
mod pool_first;
mod saturate_bias;
mod schedule;
mod short_multiplier;

pub use dce::dead_code_elimination;
pub use fold_table::fold_table;
pub use fuse_product::fuse_product;
pub use fuse_requant::fuse_requant;
pub use identity_requant::identity_requant;
pub use pool_first::pool_first;
pub use saturate_bias::saturate_bias;
pub use schedule::schedule;
pub use short_multiplier::short_multiplier;

use crate::ir::Graph;

/// A named pass.
pub struct Pass {
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub doc: &'static str,
    pub run: fn(&mut Graph),
}

/// Every pass, in the order they run.
pub const PASSES: &[Pass] = &[
    Pass {
        name: "pool_first",
        doc: "max-pool before a monotone requantization, which then runs on the pooled tensor",
        run: pool_first,
    },
    Pass {
        name: "fuse_requant",
        doc: "rescale, zero point and clamp as one requant, so truncation and comparisons share rounds",
        run: fuse_requant,
    },
    Pass {
        name: "identity_requant",
        doc: "a requantization by 1 whose clamp never binds (QDQ pairs around MaxPool) becomes a local add",
        run: identity_requant,
    },
    Pass {
        name: "saturate_bias",
        doc: "clamp a secret bias where its requantization saturates anyway, so sums have public bounds under 2^31",
        run: saturate_bias,
    },
    Pass {
        name: "fuse_product",
        doc: "a product of two secrets read only by its requantization (after a bias; or a squeeze-excitation gate's product, as a batch of one-column matrix products) becomes one instruction, requantized from the product's unreshared parts",
        run: fuse_product,
    },
    Pass {
        name: "fold_table",
        doc: "an element-wise chain of one small-range register that holds a lookup (a quantized SiLU: table, product, requantization) becomes one lookup",
        run: fold_table,
    },
    Pass {
        name: "short_multiplier",
        doc: "a requantization's multiplier becomes the shortest dyadic one with the same results over its operand's range (every threshold checked), so comparisons span fewer bits",
        run: short_multiplier,
    },
    Pass {
        name: "dce",
        doc: "remove nodes no output depends on",
        run: dead_code_elimination,
    },
    Pass {
        name: "schedule",
        doc: "order by communication depth; independent interactive instructions share rounds",
        run: schedule,
    },
];

/// Which passes run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassSet {
    /// `-O0`: none at all.
    pub none: bool,
    /// Names switched off one by one.
    pub disabled: Vec<String>,
}

impl PassSet {
    pub fn enabled(&self, name: &str) -> bool {
        !self.none && !self.disabled.iter().any(|d| d == name)
    }

    /// An error naming the known passes if `disabled` names one that does not exist.
    pub fn check(&self) -> Result<(), String> {
        for d in &self.disabled {
            if !PASSES.iter().any(|p| p.name == d) {
                let names: Vec<&str> = PASSES.iter().map(|p| p.name).collect();
                return Err(format!("unknown pass `{d}`; passes: {}", names.join(", ")));
            }
        }
        Ok(())
    }
}

/// Run every enabled pass in order.
pub fn run(g: &mut Graph, set: &PassSet) {
    for p in PASSES.iter().filter(|p| set.enabled(p.name)) {
        (p.run)(g);
    }
}
