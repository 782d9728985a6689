//! The cost formulas of `spdz2k`: each primitive runs on a counting [`Spdz2kDealer`],
//! which follows the parties' calls (the checks included) and records their messages.
//! What a call leaves to the next is the count of values opened since the last check
//! (the parties check when it reaches [`super::check::CHECK_EVERY`]).

use super::Spdz2kDealer;
use crate::cost::{Call, Costs, Counting, Rounds};
use crate::ProtocolError;
use std::sync::Mutex;

type R<T> = Result<T, ProtocolError>;

/// `spdz2k` among `parties` computing parties in Z_2^`ring_bits` (32 or 64). It remembers
/// how many opened values the calls so far left unchecked, so a call costs the check the
/// parties make when their ledgers are full (the calls must come in program order, as
/// the cost walker makes them).
#[derive(Debug)]
pub struct Spdz2kCosts {
    pub parties: usize,
    pub ring_bits: u32,
    unchecked: Mutex<u64>,
}

impl Spdz2kCosts {
    pub fn new(parties: usize, ring_bits: u32) -> Self {
        Spdz2kCosts {
            parties,
            ring_bits,
            unchecked: Mutex::new(0),
        }
    }

    fn run(&self, call: impl Fn(&mut dyn Counting) -> R<()>) -> R<Rounds> {
        fn counted<W: crate::word::Word>(
            n: usize,
            unchecked: &Mutex<u64>,
            call: impl Fn(&mut dyn Counting) -> R<()>,
        ) -> R<Rounds> {
            let mut carried = unchecked.lock().unwrap_or_else(|e| e.into_inner());
            let mut d = Spdz2kDealer::<W>::counting_after(n, *carried);
            call(&mut d)?;
            *carried = d.unchecked();
            Ok(d.take_rounds())
        }
        match self.ring_bits {
            32 => counted::<u32>(self.parties, &self.unchecked, call),
            64 => counted::<u64>(self.parties, &self.unchecked, call),
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
