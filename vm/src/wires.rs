//! Which registers travel in narrow words ([`qmpc_protocols::wires`]): a backward walk
//! from every reader to what it needs of its operands.
//!
//! A register's *need* is the number of its low bits some reader relies on: all of them
//! for an output or a state; its result's need for a local instruction or a product (the
//! low `k` bits of a sum or product depend only on the low `k` bits of its operands); and
//! for an opening (a requantization, a comparison, a lookup) what the protocol says its
//! calls read ([`Reads`]), joined with the result's need where the result is a selection
//! of the operands. A register needing at most the protocol's narrow width is narrow: its
//! producer may leave its shares right only in that width.
//!
//! The same walk asks the protocol's calls whether they leave or open pending results
//! ([`qmpc_protocols::wires::Pending`]); `crate::pending` then marks the instructions whose
//! readers all open theirs.

use crate::interp::{self, PartyData, Roles, VmError};
use crate::{Instr, Program, Visibility};
use qmpc_bytecode::Comm;
use qmpc_protocols::cost::{Call, Costs, Rounds, Tally};
use qmpc_protocols::wires::{Answer, Deal, Dealing, Probe, Reads, Wires};
use qmpc_protocols::ProtocolError;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// What the layout code needs of a protocol to walk a program (see [`wires`]).
pub struct Layout {
    pub name: &'static str,
    pub parties: usize,
    pub products_open_operands: bool,
}

impl Costs for Layout {
    fn name(&self) -> &'static str {
        self.name
    }
    fn parties(&self) -> usize {
        self.parties
    }
    fn products_open_operands(&self) -> bool {
        self.products_open_operands
    }
    fn rounds(&self, _: Call<'_>) -> Result<Rounds, ProtocolError> {
        Ok(Vec::new())
    }
}

/// The wires of every instruction of `program` under `probe`'s narrowing and pending
/// results (the same for every party, every batch and the cost twins: the answers depend
/// on bounds and constants only). Kept per protocol, ring and program: every party thread
/// of a process, and every step of a training session, asks for the same.
pub fn wires(program: &Program, probe: Probe, layout: &Layout) -> Result<Arc<[Wires]>, VmError> {
    type Key = (&'static str, Option<u32>, Option<u32>, [u8; 32]);
    type Cache = Mutex<HashMap<Key, Arc<[Wires]>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (
        layout.name,
        probe.narrowing.map(|n| n.bits),
        probe.pending.map(|p| p.ring_bits),
        program.digest(),
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some(w) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(w.clone());
    }
    let w = walk(program, probe, layout)?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, w.clone());
    Ok(w)
}

/// [`wires`], computed: the program walked against a tally of its calls' answers.
fn walk(program: &Program, probe: Probe, layout: &Layout) -> Result<Arc<[Wires]>, VmError> {
    let mut tally = Tally::probe(layout, probe);
    let mut states = crate::cost::blank_states(program, 1);
    let roles = Roles {
        model_owner: 0,
        data_owner: 0,
        output_to: 0,
    };
    interp::run_session(
        program,
        &mut tally,
        roles,
        &PartyData::default(),
        1,
        &mut states,
    )?;
    let answers = tally.into_answers();
    let narrow_bits = probe.narrowing.map_or(0, |n| n.bits);
    let mut wires = from_reads(program, narrow_bits, &answers);
    if probe.pending.is_some() {
        let pending = crate::pending::leaving(program, &answers, &wires);
        wires = wires
            .iter()
            .zip(pending)
            .map(|(w, pending_out)| Wires { pending_out, ..*w })
            .collect();
    }
    Ok(wires)
}

/// How a run's dealer-assisted calls split their elements among the parties as dealers
/// ([`Deal`]): so that each party sends about the same in all. The parties that share
/// inputs send them besides (the model owner its weights, one word per element, 32-bit
/// where narrow); every party deals a third of the assisted elements (those of
/// instructions that open a single secret operand) unless the split moves dealing, each
/// element worth [`Dealing::surplus`] bytes, from the parties that send more inputs to
/// the others. Public shapes only, so every party and the cost walk split alike.
pub fn deal(
    program: &Program,
    wires: &[Wires],
    dealing: Dealing,
    roles: Roles,
    batch: usize,
) -> Deal {
    let elements = |r: u32| -> u64 {
        let ty = &program.registers[r as usize].ty;
        ty.dims_at(batch).iter().product::<usize>() as u64
    };
    let secret = |r: u32| program.registers[r as usize].vis == Visibility::Secret;
    let mut inputs = [0u64; 3];
    let mut assisted = 0u64;
    for (ins, w) in program.code.iter().zip(wires) {
        // A narrow register's shares travel in 32-bit words.
        let word = if w.narrow_out {
            4
        } else {
            u64::from(dealing.word_bytes)
        };
        match (ins, ins.dst()) {
            (Instr::Input { .. }, Some(d)) if secret(d) && roles.data_owner < 3 => {
                inputs[roles.data_owner] += elements(d) * word;
            }
            (Instr::Weight { .. }, Some(d)) if secret(d) && roles.model_owner < 3 => {
                inputs[roles.model_owner] += elements(d) * word;
            }
            (_, Some(d)) if ins.comm() == Comm::IfSecret && ins.srcs().into_iter().any(secret) => {
                assisted += elements(d);
            }
            _ => {}
        }
    }
    split(inputs, assisted * u64::from(dealing.surplus))
}

/// The weights (out of about 3 · 1024) that equalize `inputs` plus each party's share of
/// `dealt` bytes of dealing: party `p` deals `1/3 + (mean − inputs_p)/dealt`, at least 0.
fn split(inputs: [u64; 3], dealt: u64) -> Deal {
    // Every party computes this alone: IEEE-754 `+ − × ÷` and `round` give the same bits
    // on every machine (Rust contracts nothing into fused multiply-adds).
    const UNIT: f64 = 1024.0;
    if dealt == 0 {
        return Deal::default();
    }
    let mean = inputs.iter().sum::<u64>() as f64 / 3.0;
    let mut share = inputs.map(|i| (1.0 / 3.0 + (mean - i as f64) / dealt as f64).max(0.0));
    let total: f64 = share.iter().sum();
    share = share.map(|s| s / total);
    Deal::new(share.map(|s| (s * 3.0 * UNIT).round() as u16))
}

/// [`wires`] from each instruction's reads (instruction index → its calls' answers
/// joined); nothing is narrow where `bits` is 0.
pub(crate) fn from_reads(
    program: &Program,
    bits: u32,
    reads: &BTreeMap<usize, Answer>,
) -> Arc<[Wires]> {
    let need = needs(program, reads);
    let secret = |r: u32| program.registers[r as usize].vis == Visibility::Secret;
    let narrow = |r: u32| bits > 0 && secret(r) && need[r as usize] <= bits;
    program
        .code
        .iter()
        .map(|ins| Wires {
            narrow_in: ins.srcs().into_iter().any(narrow),
            narrow_out: ins.dst().is_some_and(narrow),
            ..Wires::default()
        })
        .collect()
}

/// Every register's need in bits (`u32::MAX`: the whole ring; 0: never read).
fn needs(program: &Program, reads: &BTreeMap<usize, Answer>) -> Vec<u32> {
    const ALL: u32 = u32::MAX;
    let mut need = vec![0u32; program.registers.len()];
    for (i, ins) in program.code.iter().enumerate().rev() {
        let out = ins.dst().map_or(0, |d| need[d as usize]);
        let of_operands = match (ins, ins.comm()) {
            (Instr::Output { .. } | Instr::Store { .. }, _) => ALL,
            (_, Comm::Local | Comm::IfBothSecret) => out,
            // An opening without a call (its operands public, or the bounds decided it)
            // computed its result locally: only as wide as its operands.
            _ => match reads.get(&i).map(|a| &a.reads) {
                Some(Reads::Fresh(k)) => *k,
                Some(Reads::Selects(k)) => (*k).max(out),
                Some(Reads::All) => ALL,
                None => out,
            },
        };
        for s in ins.srcs() {
            let n = &mut need[s as usize];
            *n = (*n).max(of_operands);
        }
    }
    need
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytecode::asm::assemble;

    /// Two requantizations whose sum a third one divides (a residual `Add`), then a
    /// `max` and a last requantization to the output.
    const PROGRAM: &str = r#"
.program name="wires", trunc=exact
.input 0, name="x", external=f32, type=i8, dims=[1, 4], batched=1, scale=[1.0], zero_point=[0], axis=1
.output 0, name="y", external=f32, scale=[1.0], zero_point=[0], axis=1
.const 0, type=i32, dims=[1], data=[3]
.const 1, type=i64, dims=[1], data=[8]
.const 2, type=i8, dims=[1], data=[0]
.reg %0, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %1, type=i32, dims=[1], batched=0, vis=public, lo=3, hi=3
.reg %2, type=i64, dims=[1], batched=0, vis=public, lo=8, hi=8
.reg %3, type=i8, dims=[1], batched=0, vis=public, lo=0, hi=0
.reg %4, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %5, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %6, type=i16, dims=[1, 4], batched=1, vis=secret, lo=-256, hi=254
.reg %7, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %8, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %9, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
%0 = input index=0
%1 = const index=0
%2 = const index=1
%3 = const index=2
%4 = requant x=%0, num=%1, den=%2, zp=%3, lo=-128, hi=127
%5 = requant x=%4, num=%1, den=%2, zp=%3, lo=-128, hi=127
%6 = add a=%4, b=%5
%7 = requant x=%6, num=%1, den=%2, zp=%3, lo=-128, hi=127
%8 = max a=%7, b=%7
%9 = requant x=%8, num=%1, den=%2, zp=%3, lo=-128, hi=127
output x=%9, index=0
"#;

    /// The split gives the party with more inputs less dealing, so that inputs plus
    /// dealing come out equal, and none where its inputs alone exceed the others' total.
    #[test]
    fn the_split_equalizes_inputs_and_dealing() {
        let sent = |inputs: [u64; 3], dealt: u64| {
            let w = split(inputs, dealt).weights().map(f64::from);
            let total: f64 = w.iter().sum();
            [0, 1, 2].map(|p| inputs[p] as f64 + dealt as f64 * w[p] / total)
        };
        let even = sent([0; 3], 300);
        assert!(even.iter().all(|&s| (s - 100.0).abs() < 0.5), "{even:?}");
        assert_eq!(split([0; 3], 300), Deal::default());
        let owner = sent([100, 0, 0], 300);
        assert!(
            owner.iter().all(|&s| (s - 400.0 / 3.0).abs() < 0.5),
            "{owner:?}"
        );
        // Its weights alone outweigh all dealing: it deals nothing.
        assert_eq!(split([1000, 0, 0], 300).weights()[0], 0);
        assert_eq!(split([5, 5, 5], 0), Deal::default());
    }

    /// `deal` counts the model owner's secret weights (32-bit where narrow) and the
    /// elements of instructions that open a secret operand.
    #[test]
    fn the_deal_moves_dealing_off_the_model_owner() {
        let p = assemble(PROGRAM).unwrap();
        let dealing = Dealing {
            word_bytes: 8,
            surplus: 10,
        };
        let roles = |model_owner, data_owner| Roles {
            model_owner,
            data_owner,
            output_to: 0,
        };
        let plain: Vec<Wires> = vec![Wires::default(); p.code.len()];
        // The input (4 elements of 8 bytes per sample) is party 1's; five openings of 4
        // elements each are dealt.
        let wide = deal(&p, &plain, dealing, roles(0, 1), 1).weights();
        assert!(wide[1] < wide[0] && wide[0] == wide[2], "{wide:?}");
        let w = deal(&p, &plain, dealing, roles(0, 2), 1).weights();
        assert!(w[2] < w[0] && w[0] == w[1], "{w:?}");
        // Narrow, the input sends half the bytes: less moves.
        let mut narrow = plain.clone();
        narrow[0].narrow_out = true;
        let w = deal(&p, &narrow, dealing, roles(0, 1), 1).weights();
        assert!(wide[1] < w[1] && w[1] < w[0], "{w:?} against {wide:?}");
        // A batch of 8 scales inputs and openings alike.
        assert_eq!(deal(&p, &plain, dealing, roles(0, 1), 8).weights(), wide);
    }

    #[test]
    fn needs_flow_back_from_readers_through_local_instructions() {
        let p = assemble(PROGRAM).unwrap();
        // Instruction index → what its calls read: the requantization of the sum needs
        // the whole ring, the max selects, the others open 9 bits.
        let reads: BTreeMap<usize, Answer> = [
            (4, Reads::Fresh(9)),
            (5, Reads::Fresh(9)),
            (7, Reads::All),
            (8, Reads::Selects(32)),
            (9, Reads::Fresh(9)),
        ]
        .map(|(i, reads)| {
            let answer = Answer {
                reads,
                calls: 1,
                leaves: [false; 2],
                opens: [false; 2],
            };
            (i, answer)
        })
        .into();
        let w = |narrow_in, narrow_out| Wires {
            narrow_in,
            narrow_out,
            ..Wires::default()
        };
        let none = w(false, false);
        assert_eq!(
            &*from_reads(&p, 32, &reads),
            [
                w(false, true), // the input: only the first requantization reads it
                none,
                none,
                none,
                w(true, false), // its result feeds the sum
                none,           // reads a wide operand, its result feeds the sum
                none,           // the sum
                w(false, true), // the max reads its result in 32 bits
                w(true, true),  // a selection: as wide as the last one needs, and 32
                w(true, false), // the output's
                none,
            ]
        );
        // A narrower width than the selection's reads leaves it and its operand wide.
        let narrow_8 = from_reads(&p, 8, &reads);
        assert_eq!(narrow_8[7], none);
        assert_eq!(narrow_8[8], w(false, false));
    }
}
