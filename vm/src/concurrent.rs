//! Runs a `rounds=merged` program: every instruction starts as soon as its operands are
//! ready, and the interactive ones that are running at the same time share rounds.
//!
//! Each interactive instruction runs on its own thread against a fork of the protocol whose
//! transport is a [`Port`]. The VM waits until every running instruction has asked for its
//! next round or finished; finished ones release their readers (local instructions run at
//! once, interactive ones start and ask for their first round); then one real exchange
//! carries the round of every running instruction. A running instruction that needs the
//! dealer's next chunk of material asks too ([`Event::Material`]): the VM's own copy of
//! the protocol reads it, since only its transport reads the dealer's link. Every party takes the same decisions in
//! the same order, because they depend only on the program and on each primitive's fixed
//! round pattern, never on data. `vm::cost` predicts the schedule with the same rule: an
//! instruction's first round is the one after its last operand's last round.

use crate::bytecode::{Instr, Program};
use crate::interp::VmError;
use crate::interp::{failed, state_step, step, Fail, PartyData, Roles, States, Stores, Value};
use crate::tensor::Tensor;
use crate::Visibility;
use qmpc_protocols::mux::{Event, Port, Reply, Request};
use qmpc_protocols::Protocol;
use std::collections::BTreeSet;
use std::sync::mpsc::{channel, Receiver, Sender};

/// Whether `ins` communicates, given the visibility of its operands.
fn communicates(p: &Program, ins: &Instr) -> bool {
    let secret: Vec<bool> = ins
        .srcs()
        .iter()
        .map(|&r| p.registers[r as usize].vis == Visibility::Secret)
        .collect();
    ins.comm().communicates(&secret)
}

/// What an instruction's thread hands back: its result and the outputs it revealed here.
type Outcome<S> = Result<(Option<Value<S>>, Vec<(usize, Tensor<i64>)>), Fail>;

struct Task<S> {
    index: usize,
    events: Receiver<Event>,
    replies: Sender<Result<Reply, String>>,
    outcome: Receiver<Outcome<S>>,
    /// The round it waits for, once it has asked.
    waiting: Option<Request>,
}

/// Registers, readiness and outputs of one run.
struct State<'p, S> {
    program: &'p Program,
    regs: Vec<Option<Value<S>>>,
    /// Reads still to come, per register.
    reads_left: Vec<usize>,
    /// Operands not yet computed, per instruction.
    missing: Vec<usize>,
    /// Instructions reading each register (once each).
    readers: Vec<Vec<usize>>,
    ready: BTreeSet<usize>,
    outputs: Vec<Option<Tensor<i64>>>,
}

impl<'p, S: Clone> State<'p, S> {
    fn new(program: &'p Program) -> Self {
        let nregs = program.registers.len();
        let mut reads_left = vec![0; nregs];
        let mut readers = vec![Vec::new(); nregs];
        let mut missing = vec![0; program.code.len()];
        for (i, ins) in program.code.iter().enumerate() {
            let mut srcs = ins.srcs();
            for &s in &srcs {
                reads_left[s as usize] += 1;
            }
            srcs.sort_unstable();
            srcs.dedup();
            missing[i] = srcs.len();
            for s in srcs {
                readers[s as usize].push(i);
            }
        }
        let ready = (0..program.code.len())
            .filter(|&i| missing[i] == 0)
            .collect();
        State {
            program,
            regs: vec![None; nregs],
            reads_left,
            missing,
            readers,
            ready,
            outputs: vec![None; program.outputs.len()],
        }
    }

    /// The operands of instruction `i`, in a register file of their own; registers read
    /// for the last time move there instead of being copied.
    fn take_operands(&mut self, i: usize) -> Vec<Option<Value<S>>> {
        let mut mine = vec![None; self.regs.len()];
        for s in self.program.code[i].srcs() {
            let s = s as usize;
            self.reads_left[s] -= 1;
            mine[s] = if self.reads_left[s] == 0 {
                self.regs[s].take()
            } else {
                self.regs[s].clone()
            };
        }
        mine
    }

    /// Instruction `i` has produced `value`: its readers may become ready.
    fn complete(&mut self, i: usize, value: Option<Value<S>>, outs: Vec<(usize, Tensor<i64>)>) {
        for (o, t) in outs {
            self.outputs[o] = Some(t);
        }
        let Some(d) = self.program.code[i].dst() else {
            return;
        };
        let d = d as usize;
        if self.reads_left[d] > 0 {
            self.regs[d] = value;
        }
        for &r in &self.readers[d] {
            self.missing[r] -= 1;
            if self.missing[r] == 0 {
                self.ready.insert(r);
            }
        }
    }
}

/// Revealed outputs as (index, tensor) pairs.
fn revealed(outs: Vec<Option<Tensor<i64>>>) -> Vec<(usize, Tensor<i64>)> {
    outs.into_iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i, t)))
        .collect()
}

/// [`crate::interp::run`] for a `rounds=merged` program, once the party's data is checked.
pub(crate) fn run<P: Protocol + Send>(
    program: &Program,
    proto: &mut P,
    roles: Roles,
    data: &PartyData,
    batch: usize,
    states: &States<P::Shares>,
    stores: &mut Stores<P::Shares>,
) -> Result<Vec<Option<Tensor<i64>>>, VmError> {
    let (me, parties) = (proto.party(), proto.parties());
    let mut st: State<P::Shares> = State::new(program);
    std::thread::scope(|scope| {
        let mut tasks: Vec<Task<P::Shares>> = Vec::new();
        loop {
            // Run what is ready: local instructions now, interactive ones on their thread.
            while let Some(i) = st.ready.pop_first() {
                let ins = &program.code[i];
                let operands = st.take_operands(i);
                if !communicates(program, ins) {
                    let mut outs = vec![None; program.outputs.len()];
                    let v = match state_step(program, proto, batch, &operands, ins, states, stores)
                    {
                        Some(r) => r,
                        None => step(
                            program, proto, roles, data, batch, &operands, ins, &mut outs,
                        ),
                    }
                    .map_err(|f| failed(program, i, f))?;
                    st.complete(i, v, revealed(outs));
                    continue;
                }
                let (ev_tx, ev_rx) = channel();
                let (rep_tx, rep_rx) = channel();
                let (out_tx, out_rx) = channel();
                let port = Port::new(me, parties, ev_tx.clone(), rep_rx);
                let forked = if matches!(ins, Instr::Input { .. } | Instr::Weight { .. }) {
                    proto.fork_input(states.task(i), port)
                } else {
                    proto.fork(states.task(i), port)
                };
                let mut fork = forked.ok_or_else(|| {
                    failed(
                        program,
                        i,
                        Fail::Msg(format!("{} cannot share rounds", proto.name())),
                    )
                })?;
                let n_out = program.outputs.len();
                // The task's randomness stays its party's in the tests' mask ledger.
                let tap = qmpc_protocols::stream::Tap::current();
                scope.spawn(move || {
                    let _tap = tap.enter();
                    let mut outs = vec![None; n_out];
                    let r = step(
                        program, &mut fork, roles, data, batch, &operands, ins, &mut outs,
                    )
                    .map(|v| (v, revealed(outs)));
                    let _ = out_tx.send(r);
                    let _ = ev_tx.send(Event::Done);
                });
                tasks.push(Task {
                    index: i,
                    events: ev_rx,
                    replies: rep_tx,
                    outcome: out_rx,
                    waiting: None,
                });
            }
            // Wait until every running instruction asks for a round or finishes.
            let mut k = 0;
            while k < tasks.len() {
                if tasks[k].waiting.is_some() {
                    k += 1;
                    continue;
                }
                let index = tasks[k].index;
                let lost = || failed(program, index, Fail::Msg("its thread stopped".into()));
                match tasks[k].events.recv() {
                    Ok(Event::Round(req)) => {
                        tasks[k].waiting = Some(req);
                        k += 1;
                    }
                    // It goes on running once the chunk is read.
                    Ok(Event::Material(reply)) => {
                        let read = proto.fetch_material().map_err(|e| e.to_string());
                        let _ = reply.send(read);
                    }
                    Ok(Event::Done) => {
                        let t = tasks.remove(k);
                        let (v, outs) = t
                            .outcome
                            .recv()
                            .map_err(|_| lost())?
                            .map_err(|f| failed(program, index, f))?;
                        st.complete(index, v, outs);
                    }
                    Err(_) => return Err(lost()),
                }
            }
            if !st.ready.is_empty() {
                continue;
            }
            if tasks.is_empty() {
                break;
            }
            // One real round for all of them.
            let requests: Vec<Request> = tasks
                .iter_mut()
                .map(|t| t.waiting.take().unwrap_or_default())
                .collect();
            let replies = proto
                .exchange_merged(requests)
                .map_err(|e| failed(program, tasks[0].index, Fail::Protocol(e)))?;
            for (t, r) in tasks.iter().zip(replies) {
                let _ = t.replies.send(Ok(r));
            }
        }
        if st.missing.iter().any(|&m| m > 0) {
            return Err(VmError::Setup(
                "the program reads a register no instruction writes".into(),
            ));
        }
        Ok(st.outputs)
    })
}
