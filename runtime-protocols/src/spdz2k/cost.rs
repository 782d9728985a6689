//! The cost formulas of `spdz2k`: each primitive runs on a counting [`Spdz2kDealer`],
//! which follows the parties' calls (the checks included) and records their messages.

use super::Spdz2kDealer;
use crate::cost::{Costs, Counting, Rounds};
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant, TruncMode};

type R<T> = Result<T, ProtocolError>;

/// `spdz2k` among `parties` computing parties in Z_2^`ring_bits` (32 or 64).
pub struct Spdz2kCosts {
    pub parties: usize,
    pub ring_bits: u32,
}

impl Spdz2kCosts {
    fn run(&self, call: impl Fn(&mut dyn Counting) -> R<()>) -> R<Rounds> {
        fn counted<W: crate::word::Word>(
            n: usize,
            call: impl Fn(&mut dyn Counting) -> R<()>,
        ) -> R<Rounds> {
            let mut d = Spdz2kDealer::<W>::counting(n);
            call(&mut d)?;
            Ok(d.take_rounds())
        }
        match self.ring_bits {
            32 => counted::<u32>(self.parties, call),
            64 => counted::<u64>(self.parties, call),
            bits => Err(ProtocolError::Invalid(format!(
                "spdz2k computes in Z_2^32 or Z_2^64, not Z_2^{bits}"
            ))),
        }
    }
}

impl Costs for Spdz2kCosts {
    fn name(&self) -> &'static str {
        "spdz2k"
    }
    fn parties(&self) -> usize {
        self.parties
    }
    fn shares_rounds(&self) -> bool {
        false
    }
    fn input(&self, owner: PartyId, len: usize) -> Rounds {
        self.run(|d| d.input(owner, len)).unwrap_or_default()
    }
    fn reveal(&self, len: usize, to: PartyId) -> Rounds {
        self.run(|d| d.reveal(len, to)).unwrap_or_default()
    }
    fn mul(&self, len: usize) -> Rounds {
        self.run(|d| d.mul(len)).unwrap_or_default()
    }
    fn matmul(&self, dims: MatDims) -> Rounds {
        self.run(|d| d.matmul(dims)).unwrap_or_default()
    }
    fn rescale(&self, num: &[i64], den: &[i64], b: Bounds, mode: TruncMode) -> R<Rounds> {
        self.run(|d| d.rescale(num, den, b, mode))
    }
    fn clamp(&self, len: usize, lo: i64, hi: i64, b: Bounds) -> R<Rounds> {
        self.run(|d| d.clamp(len, lo, hi, b))
    }
    fn requantize(&self, q: &Requant, b: Bounds, mode: TruncMode) -> R<Rounds> {
        self.run(|d| d.requantize(q, b, mode))
    }
    fn max(&self, len: usize, b: Bounds) -> R<Rounds> {
        self.run(|d| d.max(len, b))
    }
    fn argmax(&self, len: usize, row_len: usize, last: bool, b: Bounds) -> R<Rounds> {
        self.run(|d| d.argmax(len, row_len, last, b))
    }
    fn lookup(&self, len: usize, table_len: usize) -> R<Rounds> {
        self.run(|d| d.lookup(len, table_len))
    }
}
