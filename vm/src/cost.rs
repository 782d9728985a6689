//! A program's communication cost, computed without running it: the interpreter walks the
//! program against a [`Tally`], so every instruction calls exactly the primitives it calls
//! in a run, and the protocol's [`Costs`] say what each primitive sends.

use crate::bytecode::RoundSchedule;
use crate::interp::{self, PartyData, Roles, VmError};
use crate::{Program, Visibility};
use qmpc_protocols::cost::{per_party, Costs, PartyCost, Round, Rounds, Tally};
use qmpc_protocols::planes::Plane;
use qmpc_protocols::Spec;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

/// The cost of one ONNX node (all the instructions it lowered to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerCost {
    pub node: String,
    /// Rounds in which its instructions communicate.
    pub rounds: u64,
    /// Bytes each party sends for it, one frame header per message.
    pub bytes_sent: Vec<u64>,
}

/// The online cost of a whole program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramCost {
    pub protocol: &'static str,
    /// What the protocol's constructions saved ([`qmpc_protocols::Favor`]).
    pub favor: qmpc_protocols::Favor,
    pub parties: usize,
    pub batch: usize,
    pub per_party: Vec<PartyCost>,
    /// Layers in program order, those that communicate.
    pub layers: Vec<LayerCost>,
}

impl ProgramCost {
    /// The protocol's name, with what it favours where that is not the default.
    pub fn protocol_label(&self) -> String {
        self.favor.label(self.protocol)
    }

    /// Rounds of the slowest party.
    pub fn rounds(&self) -> u64 {
        self.per_party.iter().map(|p| p.rounds).max().unwrap_or(0)
    }
    /// Bytes sent by all parties together.
    pub fn bytes_sent(&self) -> u64 {
        self.per_party.iter().map(|p| p.bytes_sent).sum()
    }
}

/// Session state costs nothing to load: blank planes of the right length stand in for
/// every state `program` loads, so a data-free walk of it runs.
pub fn blank_states<S: Plane>(program: &Program, batch: usize) -> interp::States<S> {
    let mut states = interp::States::new();
    for s in &program.states {
        states.insert(s.name.clone(), interp::Shared::zeros(s.ty.dims_at(batch)));
    }
    states
}

/// Cost of running `program` on `batch` samples under `costs`, with these roles.
pub fn cost(
    program: &Program,
    costs: &dyn Costs,
    roles: Roles,
    batch: usize,
) -> Result<ProgramCost, VmError> {
    let mut tally = Tally::new(costs);
    let mut states = blank_states(program, batch);
    interp::run_session(
        program,
        &mut tally,
        roles,
        &PartyData::default(),
        batch,
        &mut states,
    )?;
    let log = tally.into_log();
    let parties = costs.parties();
    let start = start_rounds(program, &log, costs.shares_rounds());
    let mut slots: Vec<Round> = Vec::new();
    let mut layers: Vec<(LayerCost, BTreeSet<usize>)> = Vec::new();
    for (&index, rounds) in &log {
        if rounds.is_empty() {
            continue;
        }
        let first = start[index];
        if slots.len() < first + rounds.len() {
            slots.resize(first + rounds.len(), Round::default());
        }
        for (k, r) in rounds.iter().enumerate() {
            slots[first + k].merge(r);
        }
        let node = program.origins.get(index).cloned().unwrap_or_default();
        let pos = match layers.iter().position(|(l, _)| l.node == node) {
            Some(p) => p,
            None => {
                layers.push((
                    LayerCost {
                        node,
                        rounds: 0,
                        bytes_sent: vec![0; parties],
                    },
                    BTreeSet::new(),
                ));
                layers.len() - 1
            }
        };
        let (layer, used) = &mut layers[pos];
        used.extend(first..first + rounds.len());
        layer.rounds = used.len() as u64;
        for (b, f) in layer.bytes_sent.iter_mut().zip(per_party(rounds, parties)) {
            *b += f.bytes_sent;
        }
    }
    let layers = layers.into_iter().map(|(l, _)| l).collect();
    Ok(ProgramCost {
        protocol: costs.name(),
        favor: costs.favor(),
        parties,
        batch,
        per_party: per_party(&slots, parties),
        layers,
    })
}

/// The round in which each instruction sends first. Sequential programs (or a protocol
/// that does not merge rounds): right after the
/// previous instruction's rounds. Merged programs: right after its operands' last rounds,
/// the rule the VM's concurrent runner follows.
fn start_rounds(program: &Program, log: &BTreeMap<usize, Rounds>, merging: bool) -> Vec<usize> {
    let len = |i: usize| log.get(&i).map_or(0, Vec::len);
    let mut start = vec![0; program.code.len()];
    let schedule = if merging {
        program.rounds
    } else {
        RoundSchedule::Sequential
    };
    match schedule {
        RoundSchedule::Sequential => {
            let mut next = 0;
            for (i, s) in start.iter_mut().enumerate() {
                *s = next;
                next += len(i);
            }
        }
        RoundSchedule::Merged => {
            // When each register's value is ready.
            let mut ready = vec![0; program.registers.len()];
            for (i, ins) in program.code.iter().enumerate() {
                let s = ins
                    .srcs()
                    .iter()
                    .map(|&r| ready[r as usize])
                    .max()
                    .unwrap_or(0);
                start[i] = s;
                if let Some(d) = ins.dst() {
                    ready[d as usize] = s + len(i);
                }
            }
        }
    }
    start
}

/// Bits of the ring a protocol computes `program` in: the narrowest of Z_2^32, Z_2^64 and
/// Z_2^128 that every primitive of the program fits (the cost formulas fail exactly where a
/// primitive would, e.g. a masked opening without its statistical headroom) and, for
/// Z_2^32, that holds every secret register's bounds. A function of the public program, so
/// every party and `qmpc cost` pick the same.
pub fn ring_bits(protocol: &Spec, program: &Program) -> u32 {
    // Every party thread of one process asks for the same program, and the answer costs a
    // whole dry run at batch 1: keep it per protocol and program digest (the lock is held
    // while computing, so concurrent parties wait for the one answer).
    type Rings = Mutex<HashMap<(&'static str, [u8; 32]), u32>>;
    static RINGS: OnceLock<Rings> = OnceLock::new();
    let key = (protocol.name, program.digest());
    let mut rings = RINGS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *rings
        .entry(key)
        .or_insert_with(|| choose_ring_bits(protocol, program))
}

fn choose_ring_bits(protocol: &Spec, program: &Program) -> u32 {
    choose_ring(protocol, program, !protocol.ring_from_bounds())
}

/// The ring [`ring_bits`] chooses, by a dry run at each width or (`dry_run` false) from
/// the secret registers' bounds alone: the two must agree for every protocol whose
/// [`Spec::ring_from_bounds`] holds (the dry run at batch 1 took a fifth of `mal-rep3`'s
/// LeNet run).
pub fn choose_ring(protocol: &Spec, program: &Program, dry_run: bool) -> u32 {
    let widths = protocol.widths();
    if let [only] = widths {
        return *only;
    }
    // The ring does not depend on the number of parties.
    let n = protocol.party_count(None).unwrap_or(3);
    // Whether a call fits a ring does not depend on who holds what; the default roles make
    // the dry run's calls those of a default run's prediction, which then finds their
    // answers kept (`qmpc_protocols`' `cost_memo.rs`).
    let fits = |bits: u32| {
        protocol
            .costs(n, bits)
            .is_ok_and(|c| cost(program, c.as_ref(), Roles::default(), 1).is_ok())
    };
    // Every secret value: the registers, and the sums a fused product requantizes (no
    // register holds them; a protocol without the fusion computes them as values).
    let mut secret: Vec<(i128, i128)> = program
        .registers
        .iter()
        .filter(|r| r.vis == Visibility::Secret)
        .map(|r| (r.lo as i128, r.hi as i128))
        .collect();
    secret.extend(
        program
            .code
            .iter()
            .filter_map(|ins| crate::verify::accumulator(program, ins).ok().flatten())
            .map(|(_, b)| b),
    );
    let i32_range = i128::from(i32::MIN)..=i128::from(i32::MAX);
    let secret_in_32 = secret
        .iter()
        .all(|(lo, hi)| i32_range.contains(lo) && i32_range.contains(hi));
    // Without a dry run, Z_2^32 also needs room for a masked opening of every secret
    // value's span (the selection plan opens `bits(hi − lo) + 1` bits).
    let spans_in_31 = secret.iter().all(|(lo, hi)| hi - lo < 1 << 31);
    let last = widths.last().copied().unwrap_or(64);
    widths
        .iter()
        .copied()
        .find(|&bits| {
            (bits != 32 || secret_in_32)
                && if dry_run {
                    fits(bits)
                } else {
                    bits != 32 || spans_in_31
                }
        })
        .unwrap_or(last)
}
