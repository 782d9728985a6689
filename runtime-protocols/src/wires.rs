//! Narrow wires: registers whose readers need only the low 32 bits of their value travel
//! as 32-bit words in a wider ring.
//!
//! A program runs in one ring, chosen so that every secret value fits it (Z_2^64 for most
//! int8 networks, because a few sums, such as a residual `Add` of two rescaled int8
//! tensors, need 34 bits). Most registers need far less: a convolution's requantization
//! opens its sum modulo `2^m` with `m ≤ 32`, so the convolution's input and weights, and
//! whatever produced them, are read modulo 2^32 only. A protocol that can narrow
//! ([`crate::Core::narrowing`]) is told per instruction ([`Wires`]) which of its operands
//! hold shares that are right only modulo 2^32 and whether its result needs more; it then
//! sends the result's words in 32 bits and runs its openings on 32-bit words. The VM
//! derives the wires from the program (`qmpc_vm::wires`), the same for every party and for
//! the cost twins, so figures stay exact.

use crate::cost::Call;

/// What one instruction may assume of its secret operands and must give its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wires {
    /// Some secret operand is right only modulo 2^[`Narrowing::bits`] (its other bits are
    /// garbage): openings read no more than those bits.
    pub narrow_in: bool,
    /// Every reader of the result needs only its low [`Narrowing::bits`]: its shares may
    /// travel (and be left) in that width.
    pub narrow_out: bool,
}

/// How many low bits of its secret operands an opening call reads, and what that leaves
/// of its result, when it runs on narrow operands ([`Wires::narrow_in`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Reads the low `k` bits; its result is fresh (made from opened values and
    /// correlated randomness), right in the whole ring whatever the operands' other bits.
    Fresh(u32),
    /// Reads the low `k` bits for its tests, but its result is (a selection of) its
    /// operands: only as wide as they are right.
    Selects(u32),
    /// Needs its operands right in the whole ring.
    All,
}

impl Reads {
    /// The reads of an instruction that makes several calls.
    pub fn join(self, o: Reads) -> Reads {
        match (self, o) {
            (Reads::All, _) | (_, Reads::All) => Reads::All,
            (Reads::Selects(a), Reads::Selects(b))
            | (Reads::Selects(a), Reads::Fresh(b))
            | (Reads::Fresh(a), Reads::Selects(b)) => Reads::Selects(a.max(b)),
            (Reads::Fresh(a), Reads::Fresh(b)) => Reads::Fresh(a.max(b)),
        }
    }
}

/// A protocol's narrowing: the width of its narrow words and what each opening call reads.
#[derive(Clone, Copy, Debug)]
pub struct Narrowing {
    pub bits: u32,
    pub reads: for<'a> fn(Call<'a>) -> Reads,
}

/// The wires of the instruction of `task` ([`crate::task_id`]) in a program's `wires`;
/// full-width where there are none.
pub fn of_task(wires: Option<&[Wires]>, task: u64) -> Wires {
    wires
        .and_then(|w| w.get(crate::task_index(task)).copied())
        .unwrap_or_default()
}
