//! `rep3`'s costs: each primitive runs on the three parties' data-free twins
//! ([`Rep3::twin`] over [`Shape`] words) against [`crate::dry_run::DryRun`], so the
//! figures come from the code that sends, not from a second set of formulas.

use super::Rep3;
use crate::cost::{Call, Costs, Counting, Rounds};
use crate::dry_run;
use crate::wires::{Dealing, Narrowing, Pending, Wires};
use crate::word::{Shape, Word};
use crate::{Favor, ProtocolError};

type R<T> = Result<T, ProtocolError>;

/// `rep3` over Z_2^`ring_bits`, its comparison trees cut for `favor`.
#[derive(Clone, Copy, Debug)]
pub struct Rep3Costs {
    pub ring_bits: u32,
    pub favor: Favor,
}

impl Default for Rep3Costs {
    /// The ring `qmpc run` uses.
    fn default() -> Self {
        Rep3Costs::new(128)
    }
}

impl Rep3Costs {
    /// The default cut ([`Favor::Bytes`]) over Z_2^`ring_bits`.
    pub fn new(ring_bits: u32) -> Self {
        Rep3Costs {
            ring_bits,
            favor: Favor::Bytes,
        }
    }

    /// The rounds of `call` made by every party's twin, running with `wires`.
    fn run(&self, wires: Wires, call: impl Fn(&mut dyn Counting) -> R<()> + Sync) -> R<Rounds> {
        fn on<W: Word>(
            wires: Wires,
            favor: Favor,
            call: impl Fn(&mut dyn Counting) -> R<()> + Sync,
        ) -> R<Rounds> {
            dry_run::rounds(3, |me, net| {
                let mut twin = Rep3::<Shape<W>>::twin(me, net).favoring(favor);
                twin.wire = wires;
                call(&mut twin)
            })
        }
        match self.ring_bits {
            32 => on::<u32>(wires, self.favor, call),
            64 => on::<u64>(wires, self.favor, call),
            128 => on::<u128>(wires, self.favor, call),
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
    fn favor(&self) -> Favor {
        self.favor
    }
    fn rounds(&self, call: Call<'_>) -> R<Rounds> {
        self.rounds_wired(call, Wires::default())
    }
    fn narrowing(&self) -> Option<Narrowing> {
        super::narrowing(self.ring_bits)
    }
    fn dealing(&self) -> Option<Dealing> {
        Some(super::dealing(self.ring_bits, self.favor))
    }
    fn pending(&self) -> Option<Pending> {
        Some(super::pending(self.ring_bits))
    }
    fn rounds_wired(&self, call: Call<'_>, wires: Wires) -> R<Rounds> {
        self.run(wires, |p| p.call(call))
    }
    fn memo_key(&self) -> Option<String> {
        Some(format!("rep3/{}/{:?}", self.ring_bits, self.favor))
    }
}
