//! A program's communication cost, computed without running it: the interpreter walks the
//! program against a [`Tally`], so every instruction calls exactly the primitives it calls
//! in a run, and the protocol's [`Costs`] say what each primitive sends.

use crate::interp::{self, PartyData, Roles, VmError};
use crate::Program;
use qmpc_protocols::cost::{per_party, Costs, PartyCost, Round, Tally};

/// The cost of one ONNX node (all the instructions it lowered to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerCost {
    pub node: String,
    /// Rounds of its own instructions, one after the other.
    pub rounds: u64,
    /// Bytes each party sends for it, one frame header per message.
    pub bytes_sent: Vec<u64>,
}

/// The online cost of a whole program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramCost {
    pub protocol: &'static str,
    pub parties: usize,
    pub batch: usize,
    pub per_party: Vec<PartyCost>,
    /// Layers in program order, those that communicate.
    pub layers: Vec<LayerCost>,
}

impl ProgramCost {
    /// Rounds of the slowest party.
    pub fn rounds(&self) -> u64 {
        self.per_party.iter().map(|p| p.rounds).max().unwrap_or(0)
    }
    /// Bytes sent by all parties together.
    pub fn bytes_sent(&self) -> u64 {
        self.per_party.iter().map(|p| p.bytes_sent).sum()
    }
}

/// Cost of running `program` on `batch` samples under `costs`, with these roles.
pub fn cost(
    program: &Program,
    costs: &dyn Costs,
    roles: Roles,
    batch: usize,
) -> Result<ProgramCost, VmError> {
    let mut tally = Tally::new(costs);
    interp::run(program, &mut tally, roles, &PartyData::default(), batch)?;
    let log = tally.into_log();
    let parties = costs.parties();
    // Instructions run one after the other, each its own rounds.
    let all: Vec<Round> = log.values().flatten().cloned().collect();
    let mut layers: Vec<LayerCost> = Vec::new();
    for (&index, rounds) in &log {
        if rounds.is_empty() {
            continue;
        }
        let node = program.origins.get(index).cloned().unwrap_or_default();
        let figures = per_party(rounds, parties);
        let layer = match layers.iter_mut().find(|l| l.node == node) {
            Some(l) => l,
            None => {
                layers.push(LayerCost {
                    node,
                    rounds: 0,
                    bytes_sent: vec![0; parties],
                });
                layers.last_mut().expect("just pushed")
            }
        };
        layer.rounds += rounds.len() as u64;
        for (b, f) in layer.bytes_sent.iter_mut().zip(&figures) {
            *b += f.bytes_sent;
        }
    }
    Ok(ProgramCost {
        protocol: costs.name(),
        parties,
        batch,
        per_party: per_party(&all, parties),
        layers,
    })
}
