//! Static communication costs: what each interactive primitive of a protocol sends, round by
//! round, computed from public metadata only (lengths, bounds, rescale constants).
//!
//! A [`Rounds`] list is the exact message pattern a primitive produces on the wire, so the
//! same per-party rules as [`crate::net::Mesh`] apply: a party counts a round when it sends
//! or receives anything in it, and every message costs its payload plus a 4-byte frame
//! header. [`Tally`] is a [`Protocol`] that runs nothing and records these lists, so the VM's
//! own layout code decides which primitives an instruction calls, exactly as in a real run.

use crate::planes::{Len, Plane};
use crate::wires::{Answer, Dealing, Narrowing, Pending, Probe, Wires};
use crate::Core;
use crate::{Bounds, MatDims, PartyId, Protocol, ProtocolError, Requant, TruncMode};
use std::collections::BTreeMap;

/// Bytes of the frame header in front of every message.
const FRAME_HEADER: u64 = crate::net::FRAME_HEADER as u64;

/// The messages of one communication round: payload bytes per (sender, receiver).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    msgs: BTreeMap<(PartyId, PartyId), u64>,
}

impl Round {
    /// A round of the given messages `(from, to, payload bytes)`.
    pub fn of(msgs: impl IntoIterator<Item = (PartyId, PartyId, u64)>) -> Round {
        let mut r = Round::default();
        for (from, to, bytes) in msgs {
            r.send(from, to, bytes);
        }
        r
    }

    /// Add a message; two messages between the same pair in one round share one frame.
    pub fn send(&mut self, from: PartyId, to: PartyId, bytes: u64) {
        *self.msgs.entry((from, to)).or_default() += bytes;
    }

    /// Everything of `other` sent in this same round (round merging).
    pub fn merge(&mut self, other: &Round) {
        for (&(f, t), &b) in &other.msgs {
            self.send(f, t, b);
        }
    }

    /// Payload bytes `from` sends `to` in this round.
    pub fn payload(&self, from: PartyId, to: PartyId) -> u64 {
        self.msgs.get(&(from, to)).copied().unwrap_or(0)
    }

    /// Whether `p` sends or receives in this round.
    pub fn involves(&self, p: PartyId) -> bool {
        self.msgs.keys().any(|&(f, t)| f == p || t == p)
    }

    /// Bytes `p` writes in this round, frame headers included.
    pub fn sent_by(&self, p: PartyId) -> u64 {
        self.msgs
            .iter()
            .filter(|((f, _), _)| *f == p)
            .map(|(_, b)| b + FRAME_HEADER)
            .sum()
    }
}

/// The rounds of a primitive or an instruction, in order.
pub type Rounds = Vec<Round>;

/// One party's online figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartyCost {
    pub rounds: u64,
    pub bytes_sent: u64,
}

/// Per-party figures of a list of rounds.
pub fn per_party(rounds: &[Round], parties: usize) -> Vec<PartyCost> {
    (0..parties)
        .map(|p| PartyCost {
            rounds: rounds.iter().filter(|r| r.involves(p)).count() as u64,
            bytes_sent: rounds.iter().map(|r| r.sent_by(p)).sum(),
        })
        .collect()
}

/// One interactive call of [`Core`] or [`Protocol`], on lengths and public parameters only:
/// what a cost question asks and what a data-free party answers. A new interactive
/// primitive is one variant here and one arm of [`Counting`]'s dispatch; no protocol's
/// costs change.
#[derive(Clone, Copy, Debug)]
pub enum Call<'a> {
    Input {
        owner: PartyId,
        len: usize,
    },
    Reveal {
        len: usize,
        to: PartyId,
    },
    Mul {
        len: usize,
    },
    MatMul(MatDims),
    Rescale {
        num: &'a [i64],
        den: &'a [i64],
        bounds: Bounds,
        mode: TruncMode,
    },
    Clamp {
        len: usize,
        lo: i64,
        hi: i64,
        bounds: Bounds,
    },
    Requantize {
        q: &'a Requant,
        bounds: Bounds,
        mode: TruncMode,
    },
    /// [`Protocol::product_requantize`]: `bounds` are the sum's.
    ProductRequantize {
        dims: MatDims,
        q: &'a Requant,
        bounds: Bounds,
        mode: TruncMode,
    },
    Max {
        len: usize,
        bounds: Bounds,
    },
    Argmax {
        len: usize,
        row_len: usize,
        select_last: bool,
        bounds: Bounds,
    },
    /// A lookup in a table of `table_len` entries with values in `[lo, hi]` (what a
    /// protocol's messages may depend on).
    Lookup {
        len: usize,
        table_len: usize,
        lo: i64,
        hi: i64,
    },
}

/// The [`Call`] of a lookup of `len` elements in `table`.
pub fn lookup_call(len: usize, table: &[i64]) -> Call<'static> {
    Call::Lookup {
        len,
        table_len: table.len(),
        lo: table.iter().copied().min().unwrap_or(0),
        hi: table.iter().copied().max().unwrap_or(0),
    }
}

/// A protocol's costs: the rounds of each [`Call`], from the protocol's own code run on
/// data-free parties (a twin against [`crate::dry_run::DryRun`], a counting dealer), and
/// failing where the call would fail for these parameters.
pub trait Costs: Sync {
    fn name(&self) -> &'static str;
    fn parties(&self) -> usize;
    /// What its constructions save where the protocol has a choice ([`crate::Favor`]).
    fn favor(&self) -> crate::Favor {
        crate::Favor::Bytes
    }
    /// Whether the protocol's instructions may share rounds ([`Core::shares_rounds`]);
    /// a program compiled for merged rounds runs one instruction at a time otherwise.
    fn shares_rounds(&self) -> bool {
        true
    }
    /// [`Core::products_open_operands`] of the protocol.
    fn products_open_operands(&self) -> bool {
        false
    }
    /// The rounds of `call`.
    fn rounds(&self, call: Call<'_>) -> Result<Rounds, ProtocolError>;
    /// [`Core::narrowing`] of the protocol.
    fn narrowing(&self) -> Option<Narrowing> {
        None
    }
    /// [`Core::dealing`] of the protocol.
    fn dealing(&self) -> Option<Dealing> {
        None
    }
    /// [`Core::pending`] of the protocol.
    fn pending(&self) -> Option<Pending> {
        None
    }
    /// The rounds of `call` made by an instruction with these [`Wires`].
    fn rounds_wired(&self, call: Call<'_>, _wires: Wires) -> Result<Rounds, ProtocolError> {
        self.rounds(call)
    }
    /// A name for these costs (protocol, ring, favor, parties) under which the process
    /// may keep each call's answer (`cost_memo.rs`): `Some` only where the rounds of a call
    /// depend on the call and its wires alone.
    fn memo_key(&self) -> Option<String> {
        None
    }
}

/// A party that answers a [`Call`] on shares without data. Any party whose shares can be
/// made without data does: a counting dealer (shares `()`), or a party's data-free twin
/// run against [`crate::dry_run::DryRun`].
pub(crate) trait Counting {
    fn call(&mut self, call: Call<'_>) -> Result<(), ProtocolError>;
}

impl<P: Protocol> Counting for P {
    fn call(&mut self, call: Call<'_>) -> Result<(), ProtocolError> {
        match call {
            Call::Input { owner, len } => {
                let values = (self.party() == owner).then(|| vec![0; len]);
                self.input(owner, values.as_deref(), len).map(drop)
            }
            Call::Reveal { len, to } => self.reveal(&blank(len), to).map(drop),
            Call::Mul { len } => Core::mul(self, &blank(len), &blank(len)).map(drop),
            Call::MatMul(d) => {
                let (a, b) = blank_operands(d);
                Core::matmul(self, &a, &b, d).map(drop)
            }
            Call::ProductRequantize {
                dims: d,
                q,
                bounds,
                mode,
            } => {
                let (a, b) = blank_operands(d);
                let bias = blank(d.batch * d.m * d.n);
                self.product_requantize(&a, &b, d, &bias, q, bounds, mode)
                    .map(drop)
            }
            Call::Rescale {
                num,
                den,
                bounds,
                mode,
            } => self
                .rescale(&blank(num.len()), num, den, bounds, mode)
                .map(drop),
            Call::Clamp {
                len,
                lo,
                hi,
                bounds,
            } => self.clamp(&blank(len), lo, hi, bounds).map(drop),
            Call::Requantize { q, bounds, mode } => self
                .requantize(&blank(q.num.len()), q, bounds, mode)
                .map(drop),
            Call::Max { len, bounds } => self.max(&blank(len), &blank(len), bounds).map(drop),
            Call::Argmax {
                len,
                row_len,
                select_last,
                bounds,
            } => self
                .argmax(&blank(len), row_len, select_last, bounds)
                .map(drop),
            Call::Lookup {
                len,
                table_len,
                lo,
                hi,
            } => {
                // A table with the same length and range of values.
                let mut table = vec![lo; table_len];
                if let Some(last) = table.last_mut() {
                    *last = hi;
                }
                self.lookup(&blank(len), &table, 0).map(drop)
            }
        }
    }
}

/// The cost questions as methods, for tests that ask many of them.
#[cfg(test)]
pub(crate) trait Ask: Costs {
    fn input(&self, owner: PartyId, len: usize) -> Rounds {
        self.rounds(Call::Input { owner, len })
            .expect("input costs")
    }
    fn reveal(&self, len: usize, to: PartyId) -> Rounds {
        self.rounds(Call::Reveal { len, to }).expect("reveal costs")
    }
    fn mul(&self, len: usize) -> Rounds {
        self.rounds(Call::Mul { len }).expect("mul costs")
    }
    fn matmul(&self, d: MatDims) -> Rounds {
        self.rounds(Call::MatMul(d)).expect("matmul costs")
    }
    fn rescale(&self, num: &[i64], den: &[i64], bounds: Bounds, mode: TruncMode) -> R<Rounds> {
        self.rounds(Call::Rescale {
            num,
            den,
            bounds,
            mode,
        })
    }
    fn clamp(&self, len: usize, lo: i64, hi: i64, bounds: Bounds) -> R<Rounds> {
        self.rounds(Call::Clamp {
            len,
            lo,
            hi,
            bounds,
        })
    }
    fn requantize(&self, q: &Requant, bounds: Bounds, mode: TruncMode) -> R<Rounds> {
        self.rounds(Call::Requantize { q, bounds, mode })
    }
    fn max(&self, len: usize, bounds: Bounds) -> R<Rounds> {
        self.rounds(Call::Max { len, bounds })
    }
    fn argmax(&self, len: usize, row_len: usize, select_last: bool, bounds: Bounds) -> R<Rounds> {
        self.rounds(Call::Argmax {
            len,
            row_len,
            select_last,
            bounds,
        })
    }
    fn lookup(&self, len: usize, table: &[i64]) -> R<Rounds> {
        self.rounds(lookup_call(len, table))
    }
}

#[cfg(test)]
impl<C: Costs + ?Sized> Ask for C {}

#[cfg(test)]
type R<T> = Result<T, ProtocolError>;

/// `len` shares without data.
fn blank<S: crate::planes::Plane>(len: usize) -> S {
    S::zeros(len)
}

/// Blank operands of a product of dimensions `d`.
fn blank_operands<S: crate::planes::Plane>(d: MatDims) -> (S, S) {
    let copies = |batched: bool| if batched { d.batch } else { 1 };
    (
        blank(copies(d.a_batched) * d.m * d.k),
        blank(copies(d.b_batched) * d.k * d.n),
    )
}

/// The `clear` protocol communicates nothing.
pub struct ClearCosts;

impl Costs for ClearCosts {
    fn name(&self) -> &'static str {
        "clear"
    }
    fn parties(&self) -> usize {
        1
    }
    /// As [`crate::clear::Clear`].
    fn products_open_operands(&self) -> bool {
        true
    }
    fn rounds(&self, _: Call<'_>) -> Result<Rounds, ProtocolError> {
        Ok(Vec::new())
    }
}

/// The local [`Protocol`] methods of a protocol that holds no data (`Share = ()`): they
/// only keep shapes. Written into its `impl Protocol`.
macro_rules! shape_only_locals {
    () => {
        fn public(&self, values: &[i64]) -> Len {
            Len(values.len())
        }
        fn add(&self, a: &Len, _: &Len) -> Len {
            *a
        }
        fn sub(&self, a: &Len, _: &Len) -> Len {
            *a
        }
        fn add_public(&self, a: &Len, _: &[i64]) -> Len {
            *a
        }
        fn mul_public(&self, a: &Len, _: &[i64]) -> Len {
            *a
        }
        fn matmul_public(&self, _: &Len, _: &[i64], d: $crate::MatDims, _: bool) -> Len {
            Len(d.batch * d.m * d.n)
        }
    };
}
pub(crate) use shape_only_locals;

/// A [`Protocol`] that holds no data and records the rounds of every interactive call,
/// grouped by the instruction the VM announced with [`Protocol::begin_instruction`].
pub struct Tally<'c> {
    costs: &'c dyn Costs,
    current: usize,
    log: BTreeMap<usize, Rounds>,
    /// The program's wires ([`Core::set_wires`]) and the current instruction's.
    wires: Option<std::sync::Arc<[Wires]>>,
    wire: Wires,
    /// Recording what each instruction's calls answer a probe instead of their rounds
    /// ([`Tally::probe`]).
    probe: Option<(Probe, BTreeMap<usize, Answer>)>,
}

impl<'c> Tally<'c> {
    pub fn new(costs: &'c dyn Costs) -> Self {
        Tally {
            costs,
            current: 0,
            log: BTreeMap::new(),
            wires: None,
            wire: Wires::default(),
            probe: None,
        }
    }

    /// A tally that records, per instruction, what its calls answer `probe` ([`Answer`],
    /// joined over the calls), and no rounds; it narrows and leaves pending nothing itself.
    pub fn probe(costs: &'c dyn Costs, probe: Probe) -> Self {
        Tally {
            probe: Some((probe, BTreeMap::new())),
            ..Tally::new(costs)
        }
    }

    /// The rounds of each instruction index that communicated, in program order.
    pub fn into_log(self) -> BTreeMap<usize, Rounds> {
        self.log
    }

    /// What each instruction index that communicated answered ([`Tally::probe`]).
    pub fn into_answers(self) -> BTreeMap<usize, Answer> {
        self.probe.map(|(_, r)| r).unwrap_or_default()
    }

    /// Records the rounds of `call` (for [`Tally::probe`], its answer) under the current
    /// instruction.
    fn record(&mut self, call: Call<'_>) -> Result<(), ProtocolError> {
        if let Some((probe, answers)) = &mut self.probe {
            let a = probe.ask(call);
            answers
                .entry(self.current)
                .and_modify(|slot| *slot = slot.join(a))
                .or_insert(a);
            return Ok(());
        }
        let r = crate::cost_memo::rounds_wired(self.costs, call, self.wire)?;
        self.log.entry(self.current).or_default().extend(r);
        Ok(())
    }
}

/// No party: the VM treats a tally as a party that owns no data.
const NOBODY: PartyId = usize::MAX;

impl Core for Tally<'_> {
    type Shares = Len;

    fn name(&self) -> &'static str {
        self.costs.name()
    }
    fn products_open_operands(&self) -> bool {
        self.costs.products_open_operands()
    }
    fn party(&self) -> PartyId {
        NOBODY
    }
    fn parties(&self) -> usize {
        self.costs.parties()
    }
    fn begin_instruction(&mut self, task: u64) {
        self.current = crate::task_index(task);
        self.wire = crate::wires::of_task(self.wires.as_deref(), task);
    }
    fn narrowing(&self) -> Option<Narrowing> {
        match self.probe {
            Some(_) => None,
            None => self.costs.narrowing(),
        }
    }
    fn dealing(&self) -> Option<Dealing> {
        match self.probe {
            Some(_) => None,
            None => self.costs.dealing(),
        }
    }
    fn pending(&self) -> Option<Pending> {
        match self.probe {
            Some(_) => None,
            None => self.costs.pending(),
        }
    }
    fn set_wires(&mut self, wires: std::sync::Arc<[Wires]>) {
        self.wires = Some(wires);
    }
    fn input(
        &mut self,
        owner: PartyId,
        _: Option<&[i64]>,
        len: usize,
    ) -> Result<Len, ProtocolError> {
        self.record(Call::Input { owner, len })?;
        Ok(Len(len))
    }
    fn reveal(&mut self, x: &Len, to: PartyId) -> Result<Option<Vec<i64>>, ProtocolError> {
        self.record(Call::Reveal { len: x.len(), to })?;
        Ok(None)
    }
    shape_only_locals!();
    fn mul(&mut self, a: &Len, _: &Len) -> Result<Len, ProtocolError> {
        self.record(Call::Mul { len: a.len() })?;
        Ok(*a)
    }
    fn matmul(&mut self, _: &Len, _: &Len, d: MatDims) -> Result<Len, ProtocolError> {
        self.record(Call::MatMul(d))?;
        Ok(Len(d.batch * d.m * d.n))
    }
}

impl Protocol for Tally<'_> {
    fn rescale(
        &mut self,
        x: &Len,
        num: &[i64],
        den: &[i64],
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Len, ProtocolError> {
        self.record(Call::Rescale {
            num,
            den,
            bounds,
            mode,
        })?;
        Ok(*x)
    }
    fn clamp(&mut self, x: &Len, lo: i64, hi: i64, b: Bounds) -> Result<Len, ProtocolError> {
        self.record(Call::Clamp {
            len: x.len(),
            lo,
            hi,
            bounds: b,
        })?;
        Ok(*x)
    }
    fn requantize(
        &mut self,
        x: &Len,
        q: &Requant,
        b: Bounds,
        mode: TruncMode,
    ) -> Result<Len, ProtocolError> {
        self.record(Call::Requantize { q, bounds: b, mode })?;
        Ok(*x)
    }
    fn product_requantize(
        &mut self,
        _: &Len,
        _: &Len,
        dims: MatDims,
        _: &Len,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Len, ProtocolError> {
        self.record(Call::ProductRequantize {
            dims,
            q,
            bounds,
            mode,
        })?;
        Ok(Len(dims.batch * dims.m * dims.n))
    }
    fn max(&mut self, a: &Len, _: &Len, b: Bounds) -> Result<Len, ProtocolError> {
        self.record(Call::Max {
            len: a.len(),
            bounds: b,
        })?;
        Ok(*a)
    }
    fn argmax(
        &mut self,
        x: &Len,
        row_len: usize,
        select_last: bool,
        b: Bounds,
    ) -> Result<Len, ProtocolError> {
        self.record(Call::Argmax {
            len: x.len(),
            row_len,
            select_last,
            bounds: b,
        })?;
        Ok(Len(x.len() / row_len.max(1)))
    }
    fn lookup(&mut self, x: &Len, table: &[i64], _: i64) -> Result<Len, ProtocolError> {
        self.record(lookup_call(x.len(), table))?;
        Ok(*x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_messages_share_a_frame_and_rounds_count_per_party() {
        let mut a = Round::of([(0, 1, 10)]);
        a.merge(&Round::of([(0, 1, 6), (2, 0, 1)]));
        let f = per_party(&[a, Round::of([(1, 2, 0)])], 3);
        assert_eq!(
            f[0],
            PartyCost {
                rounds: 1,
                bytes_sent: 16 + FRAME_HEADER
            }
        );
        assert_eq!(
            f[1],
            PartyCost {
                rounds: 2,
                bytes_sent: FRAME_HEADER
            }
        );
        assert_eq!(
            f[2],
            PartyCost {
                rounds: 2,
                bytes_sent: 1 + FRAME_HEADER
            }
        );
    }
}
