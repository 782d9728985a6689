//! `mal-rep3`'s costs: each primitive runs on the three parties' twins
//! ([`MalRep3::twin`], the real code on zeros with every comparison of received data
//! skipped) against [`crate::dry_run::DryRun`], so the figures — checks, proofs and dealt
//! material included — come from the code that sends.

use super::MalRep3;
use crate::cost::{Costs, Counting, Rounds};
use crate::dry_run;
use crate::word::Word;
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant, TruncMode};

type R<T> = Result<T, ProtocolError>;

/// `mal-rep3` over Z_2^`ring_bits` (32 or 64; shares in Z_2^128).
#[derive(Clone, Copy, Debug)]
pub struct MalRep3Costs {
    pub ring_bits: u32,
}

impl MalRep3Costs {
    /// The rounds of `call`, then of the check that must pass before anything leaves.
    fn run(&self, call: impl Fn(&mut dyn Counting) -> R<()> + Sync) -> R<Rounds> {
        fn on<W: Word>(call: impl Fn(&mut dyn Counting) -> R<()> + Sync) -> R<Rounds> {
            dry_run::rounds(3, |me, net| call(&mut MalRep3::<W>::twin(me, net)))
        }
        match self.ring_bits {
            32 => on::<u32>(call),
            64 => on::<u64>(call),
            bits => Err(ProtocolError::Invalid(format!(
                "mal-rep3 computes in Z_2^32 or Z_2^64, not Z_2^{bits}"
            ))),
        }
    }
}

impl Costs for MalRep3Costs {
    fn name(&self) -> &'static str {
        "mal-rep3"
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
