//! `rep3`'s costs: each primitive runs on the three parties' data-free twins
//! ([`Rep3::twin`] over [`Shape`] words) against [`crate::dry_run::DryRun`], so the
//! figures come from the code that sends, not from a second set of formulas.

use super::Rep3;
use crate::cost::{Costs, Counting, Rounds};
use crate::dry_run;
use crate::word::{Shape, Word};
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant, TruncMode};

type R<T> = Result<T, ProtocolError>;

/// `rep3` over Z_2^`ring_bits`.
#[derive(Clone, Copy, Debug)]
pub struct Rep3Costs {
    pub ring_bits: u32,
}

impl Default for Rep3Costs {
    /// The ring `qmpc run` uses.
    fn default() -> Self {
        Rep3Costs { ring_bits: 128 }
    }
}

impl Rep3Costs {
    /// The rounds of `call` made by every party's twin.
    fn run(&self, call: impl Fn(&mut dyn Counting) -> R<()> + Sync) -> R<Rounds> {
        fn on<W: Word>(call: impl Fn(&mut dyn Counting) -> R<()> + Sync) -> R<Rounds> {
            dry_run::rounds(3, |me, net| call(&mut Rep3::<Shape<W>>::twin(me, net)))
        }
        match self.ring_bits {
            32 => on::<u32>(call),
            64 => on::<u64>(call),
            128 => on::<u128>(call),
            bits => Err(ProtocolError::Invalid(format!(
                "rep3 computes in Z_2^32, Z_2^64 or Z_2^128, not Z_2^{bits}"
            ))),
        }
    }
}

impl Costs for Rep3Costs {
    fn name(&self) -> &'static str {
        "rep3"
    }
    fn parties(&self) -> usize {
        3
    }
    fn input(&self, owner: PartyId, len: usize) -> Rounds {
        self.run(|p| p.input(owner, len)).unwrap_or_default()
    }
    fn reveal(&self, len: usize, to: PartyId) -> Rounds {
        self.run(|p| p.reveal(len, to)).unwrap_or_default()
    }
    fn mul(&self, len: usize) -> Rounds {
        self.run(|p| p.mul(len)).unwrap_or_default()
    }
    fn matmul(&self, d: MatDims) -> Rounds {
        self.run(|p| p.matmul(d)).unwrap_or_default()
    }
    fn rescale(&self, num: &[i64], den: &[i64], b: Bounds, mode: TruncMode) -> R<Rounds> {
        self.run(|p| p.rescale(num, den, b, mode))
    }
    fn requantize(&self, q: &Requant, b: Bounds, mode: TruncMode) -> R<Rounds> {
        self.run(|p| p.requantize(q, b, mode))
    }
    fn clamp(&self, len: usize, lo: i64, hi: i64, b: Bounds) -> R<Rounds> {
        self.run(|p| p.clamp(len, lo, hi, b))
    }
    fn max(&self, len: usize, b: Bounds) -> R<Rounds> {
        self.run(|p| p.max(len, b))
    }
    fn argmax(&self, len: usize, row_len: usize, last: bool, b: Bounds) -> R<Rounds> {
        self.run(|p| p.argmax(len, row_len, last, b))
    }
    fn lookup(&self, len: usize, table_len: usize) -> R<Rounds> {
        self.run(|p| p.lookup(len, table_len))
    }
}
