//! The cost formulas of `spdz2k`: each primitive runs on a counting [`Spdz2kDealer`],
//! which follows the parties' calls (the checks included) and records their messages.

use super::Spdz2kDealer;
use crate::cost::{Call, Costs, Counting, Rounds};
use crate::ProtocolError;

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
    fn products_open_operands(&self) -> bool {
        true
    }
    fn rounds(&self, call: Call<'_>) -> R<Rounds> {
        self.run(|d| d.call(call))
    }
}
