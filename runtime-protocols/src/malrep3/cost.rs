//! `mal-rep3`'s costs: each primitive runs on the three parties' twins
//! ([`MalRep3::twin`], the real code on zeros with every comparison of received data
//! skipped) against [`crate::dry_run::DryRun`], so the figures — checks, proofs and dealt
//! material included — come from the code that sends.

use super::{MalRep3, Pending};
use crate::cost::{Call, Costs, Counting, Rounds};
use crate::dry_run;
use crate::word::Word;
use crate::ProtocolError;
use std::sync::Mutex;

type R<T> = Result<T, ProtocolError>;

/// `mal-rep3` over Z_2^`ring_bits` (32 or 64; shares in Z_2^128). It remembers what
/// each party's calls left unchecked, so a reveal costs the proofs of everything before it
/// (the calls must come in program order, as the cost walker makes them).
#[derive(Debug, Default)]
pub struct MalRep3Costs {
    pub ring_bits: u32,
    pending: Mutex<[Pending; 3]>,
}

impl MalRep3Costs {
    pub fn new(ring_bits: u32) -> Self {
        MalRep3Costs {
            ring_bits,
            pending: Mutex::default(),
        }
    }

    /// The rounds of `call` made by every party's twin, each starting from what it left
    /// unchecked before.
    fn run(&self, call: impl Fn(&mut dyn Counting) -> R<()> + Sync) -> R<Rounds> {
        fn on<W: Word>(
            state: &Mutex<[Pending; 3]>,
            call: impl Fn(&mut dyn Counting) -> R<()> + Sync,
        ) -> R<Rounds> {
            let before = *state.lock().unwrap_or_else(|e| e.into_inner());
            let after = Mutex::new(before);
            let rounds = dry_run::rounds(3, |me, net| {
                let mut twin = MalRep3::<W>::twin_with(me, net, &before[me]);
                let r = call(&mut twin);
                after.lock().unwrap_or_else(|e| e.into_inner())[me] = twin.pending();
                r
            })?;
            *state.lock().unwrap_or_else(|e| e.into_inner()) =
                after.into_inner().unwrap_or_else(|e| e.into_inner());
            Ok(rounds)
        }
        match self.ring_bits {
            32 => on::<u32>(&self.pending, call),
            64 => on::<u64>(&self.pending, call),
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
    /// One instruction at a time, as the parties run (they do not fork).
    fn shares_rounds(&self) -> bool {
        false
    }
    fn rounds(&self, call: Call<'_>) -> R<Rounds> {
        self.run(|p| p.call(call))
    }
}
