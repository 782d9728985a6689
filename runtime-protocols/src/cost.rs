//! Static communication costs: what each interactive primitive of a protocol sends, round by
//! round, computed from public metadata only (lengths, bounds, rescale constants).
//!
//! A [`Rounds`] list is the exact message pattern a primitive produces on the wire, so the
//! same per-party rules as [`crate::net::Mesh`] apply: a party counts a round when it sends
//! or receives anything in it, and every message costs its payload plus a 4-byte frame
//! header. [`Tally`] is a [`Protocol`] that runs nothing and records these lists, so the VM's
//! own layout code decides which primitives an instruction calls, exactly as in a real run.

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

/// A protocol's cost formulas, one per interactive primitive of [`Protocol`]. Each mirrors
/// the primitive's code and fails where the primitive would fail for these parameters.
pub trait Costs: Sync {
    fn name(&self) -> &'static str;
    fn parties(&self) -> usize;
    /// Whether the protocol's instructions may share rounds ([`Protocol::shares_rounds`]);
    /// a program compiled for merged rounds runs one instruction at a time otherwise.
    fn shares_rounds(&self) -> bool {
        true
    }
    fn input(&self, owner: PartyId, len: usize) -> Rounds;
    fn reveal(&self, len: usize, to: PartyId) -> Rounds;
    fn mul(&self, len: usize) -> Rounds;
    fn matmul(&self, dims: MatDims) -> Rounds;
    fn rescale(
        &self,
        num: &[i64],
        den: &[i64],
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Rounds, ProtocolError>;
    fn clamp(&self, len: usize, lo: i64, hi: i64, bounds: Bounds) -> Result<Rounds, ProtocolError>;
    /// Mirrors [`Protocol::requantize`]'s default unless the protocol fuses it.
    fn requantize(
        &self,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Rounds, ProtocolError> {
        requantize_unfused(self, q, bounds, mode)
    }
    fn max(&self, len: usize, bounds: Bounds) -> Result<Rounds, ProtocolError>;
    fn argmax(
        &self,
        len: usize,
        row_len: usize,
        select_last: bool,
        bounds: Bounds,
    ) -> Result<Rounds, ProtocolError>;
    fn lookup(&self, len: usize, table_len: usize) -> Result<Rounds, ProtocolError>;
}

/// The rounds of [`crate::requantize_unfused`].
pub fn requantize_unfused(
    c: &(impl Costs + ?Sized),
    q: &Requant,
    bounds: Bounds,
    mode: TruncMode,
) -> Result<Rounds, ProtocolError> {
    let mut r = c.rescale(&q.num, &q.den, bounds, mode)?;
    r.extend(c.clamp(q.num.len(), q.lo, q.hi, q.mid_bounds(bounds, mode))?);
    Ok(r)
}

/// The calls of [`Protocol`] a cost formula makes, object-safe and on lengths only. Any
/// party whose shares can be made without data answers them: a counting dealer (shares
/// `()`), or a party's data-free twin run against [`crate::dry_run::DryRun`].
pub(crate) trait Counting {
    fn input(&mut self, owner: PartyId, len: usize) -> Result<(), ProtocolError>;
    fn reveal(&mut self, len: usize, to: PartyId) -> Result<(), ProtocolError>;
    fn mul(&mut self, len: usize) -> Result<(), ProtocolError>;
    fn matmul(&mut self, d: MatDims) -> Result<(), ProtocolError>;
    fn rescale(
        &mut self,
        num: &[i64],
        den: &[i64],
        b: Bounds,
        mode: TruncMode,
    ) -> Result<(), ProtocolError>;
    fn clamp(&mut self, len: usize, lo: i64, hi: i64, b: Bounds) -> Result<(), ProtocolError>;
    fn requantize(&mut self, q: &Requant, b: Bounds, mode: TruncMode) -> Result<(), ProtocolError>;
    fn max(&mut self, len: usize, b: Bounds) -> Result<(), ProtocolError>;
    fn argmax(
        &mut self,
        len: usize,
        row_len: usize,
        last: bool,
        b: Bounds,
    ) -> Result<(), ProtocolError>;
    fn lookup(&mut self, len: usize, table_len: usize) -> Result<(), ProtocolError>;
}

impl<P: Protocol> Counting for P
where
    P::Share: Default,
{
    fn input(&mut self, owner: PartyId, len: usize) -> Result<(), ProtocolError> {
        let values = (self.party() == owner).then(|| vec![0; len]);
        Core::input(self, owner, values.as_deref(), len).map(drop)
    }
    fn reveal(&mut self, len: usize, to: PartyId) -> Result<(), ProtocolError> {
        Core::reveal(self, &blank(len), to).map(drop)
    }
    fn mul(&mut self, len: usize) -> Result<(), ProtocolError> {
        Core::mul(self, &blank(len), &blank(len)).map(drop)
    }
    fn matmul(&mut self, d: MatDims) -> Result<(), ProtocolError> {
        let copies = |batched: bool| if batched { d.batch } else { 1 };
        let a = blank(copies(d.a_batched) * d.m * d.k);
        let b = blank(copies(d.b_batched) * d.k * d.n);
        Core::matmul(self, &a, &b, d).map(drop)
    }
    fn rescale(
        &mut self,
        num: &[i64],
        den: &[i64],
        b: Bounds,
        mode: TruncMode,
    ) -> Result<(), ProtocolError> {
        Protocol::rescale(self, &blank(num.len()), num, den, b, mode).map(drop)
    }
    fn clamp(&mut self, len: usize, lo: i64, hi: i64, b: Bounds) -> Result<(), ProtocolError> {
        Protocol::clamp(self, &blank(len), lo, hi, b).map(drop)
    }
    fn requantize(&mut self, q: &Requant, b: Bounds, mode: TruncMode) -> Result<(), ProtocolError> {
        Protocol::requantize(self, &blank(q.num.len()), q, b, mode).map(drop)
    }
    fn max(&mut self, len: usize, b: Bounds) -> Result<(), ProtocolError> {
        Protocol::max(self, &blank(len), &blank(len), b).map(drop)
    }
    fn argmax(
        &mut self,
        len: usize,
        row_len: usize,
        last: bool,
        b: Bounds,
    ) -> Result<(), ProtocolError> {
        Protocol::argmax(self, &blank(len), row_len, last, b).map(drop)
    }
    fn lookup(&mut self, len: usize, table_len: usize) -> Result<(), ProtocolError> {
        Core::lookup(self, &blank(len), &vec![0; table_len], 0).map(drop)
    }
}

/// `len` shares without data.
fn blank<S: Default + Clone>(len: usize) -> Vec<S> {
    vec![S::default(); len]
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
    fn input(&self, _: PartyId, _: usize) -> Rounds {
        Vec::new()
    }
    fn reveal(&self, _: usize, _: PartyId) -> Rounds {
        Vec::new()
    }
    fn mul(&self, _: usize) -> Rounds {
        Vec::new()
    }
    fn matmul(&self, _: MatDims) -> Rounds {
        Vec::new()
    }
    fn rescale(
        &self,
        _: &[i64],
        _: &[i64],
        _: Bounds,
        _: TruncMode,
    ) -> Result<Rounds, ProtocolError> {
        Ok(Vec::new())
    }
    fn clamp(&self, _: usize, _: i64, _: i64, _: Bounds) -> Result<Rounds, ProtocolError> {
        Ok(Vec::new())
    }
    fn max(&self, _: usize, _: Bounds) -> Result<Rounds, ProtocolError> {
        Ok(Vec::new())
    }
    fn argmax(&self, _: usize, _: usize, _: bool, _: Bounds) -> Result<Rounds, ProtocolError> {
        Ok(Vec::new())
    }
    fn lookup(&self, _: usize, _: usize) -> Result<Rounds, ProtocolError> {
        Ok(Vec::new())
    }
}

/// The local [`Protocol`] methods of a protocol that holds no data (`Share = ()`): they
/// only keep shapes. Written into its `impl Protocol`.
macro_rules! shape_only_locals {
    () => {
        fn public(&self, values: &[i64]) -> Vec<()> {
            vec![(); values.len()]
        }
        fn add(&self, a: &[()], _: &[()]) -> Vec<()> {
            a.to_vec()
        }
        fn sub(&self, a: &[()], _: &[()]) -> Vec<()> {
            a.to_vec()
        }
        fn add_public(&self, a: &[()], _: &[i64]) -> Vec<()> {
            a.to_vec()
        }
        fn mul_public(&self, a: &[()], _: &[i64]) -> Vec<()> {
            a.to_vec()
        }
        fn matmul_public(&self, _: &[()], _: &[i64], d: $crate::MatDims, _: bool) -> Vec<()> {
            vec![(); d.batch * d.m * d.n]
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
}

impl<'c> Tally<'c> {
    pub fn new(costs: &'c dyn Costs) -> Self {
        Tally {
            costs,
            current: 0,
            log: BTreeMap::new(),
        }
    }

    /// The rounds of each instruction index that communicated, in program order.
    pub fn into_log(self) -> BTreeMap<usize, Rounds> {
        self.log
    }

    fn record(&mut self, r: Rounds) {
        self.log.entry(self.current).or_default().extend(r);
    }
}

/// No party: the VM treats a tally as a party that owns no data.
const NOBODY: PartyId = usize::MAX;

impl Core for Tally<'_> {
    type Share = ();

    fn name(&self) -> &'static str {
        self.costs.name()
    }
    fn party(&self) -> PartyId {
        NOBODY
    }
    fn parties(&self) -> usize {
        self.costs.parties()
    }
    fn begin_instruction(&mut self, index: usize) {
        self.current = index;
    }
    fn input(
        &mut self,
        owner: PartyId,
        _: Option<&[i64]>,
        len: usize,
    ) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.input(owner, len);
        self.record(r);
        Ok(vec![(); len])
    }
    fn reveal(&mut self, x: &[()], to: PartyId) -> Result<Option<Vec<i64>>, ProtocolError> {
        let r = self.costs.reveal(x.len(), to);
        self.record(r);
        Ok(None)
    }
    shape_only_locals!();
    fn mul(&mut self, a: &[()], _: &[()]) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.mul(a.len());
        self.record(r);
        Ok(a.to_vec())
    }
    fn matmul(&mut self, _: &[()], _: &[()], d: MatDims) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.matmul(d);
        self.record(r);
        Ok(vec![(); d.batch * d.m * d.n])
    }
    fn lookup(&mut self, x: &[()], table: &[i64], _: i64) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.lookup(x.len(), table.len())?;
        self.record(r);
        Ok(x.to_vec())
    }
}

impl Protocol for Tally<'_> {
    fn rescale(
        &mut self,
        x: &[()],
        num: &[i64],
        den: &[i64],
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.rescale(num, den, bounds, mode)?;
        self.record(r);
        Ok(x.to_vec())
    }
    fn clamp(&mut self, x: &[()], lo: i64, hi: i64, b: Bounds) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.clamp(x.len(), lo, hi, b)?;
        self.record(r);
        Ok(x.to_vec())
    }
    fn requantize(
        &mut self,
        x: &[()],
        q: &Requant,
        b: Bounds,
        mode: TruncMode,
    ) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.requantize(q, b, mode)?;
        self.record(r);
        Ok(x.to_vec())
    }
    fn max(&mut self, a: &[()], _: &[()], b: Bounds) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.max(a.len(), b)?;
        self.record(r);
        Ok(a.to_vec())
    }
    fn argmax(
        &mut self,
        x: &[()],
        row_len: usize,
        select_last: bool,
        b: Bounds,
    ) -> Result<Vec<()>, ProtocolError> {
        let r = self.costs.argmax(x.len(), row_len, select_last, b)?;
        self.record(r);
        Ok(vec![(); x.len() / row_len.max(1)])
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
