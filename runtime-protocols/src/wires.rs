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
use std::ops::Range;

/// What one instruction may assume of its secret operands and must give its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wires {
    /// Some secret operand is right only modulo 2^[`Narrowing::bits`] (its other bits are
    /// garbage): openings read no more than those bits.
    pub narrow_in: bool,
    /// Every reader of the result needs only its low [`Narrowing::bits`]: its shares may
    /// travel (and be left) in that width.
    pub narrow_out: bool,
    /// How the instruction's dealer-assisted calls split their elements among the
    /// parties as dealers.
    pub deal: Deal,
}

impl Wires {
    /// Full width, split as these wires are: what the steps of a fallback chain (and a
    /// narrow party's inner calls) run with.
    pub fn full_width(self) -> Wires {
        Wires {
            deal: self.deal,
            ..Wires::default()
        }
    }
}

/// How a dealer-assisted call splits its elements into three groups, group `g` dealt by
/// party `g` ([`Dealing`]): in proportion to the weights. A party that sends more than
/// the others elsewhere (the model owner sends its weights) deals fewer, so that the
/// busiest party sends less; the split is public, made from the program's shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deal([u16; 3]);

impl Default for Deal {
    /// Thirds.
    fn default() -> Self {
        Deal([1, 1, 1])
    }
}

impl Deal {
    /// In proportion to `weights`; thirds where they are all equal (or zero).
    pub fn new(weights: [u16; 3]) -> Deal {
        if weights[0] == weights[1] && weights[1] == weights[2] {
            Deal::default()
        } else {
            Deal(weights)
        }
    }

    pub fn weights(&self) -> [u16; 3] {
        self.0
    }

    /// The elements of group `g` out of `n`.
    pub fn range(&self, n: usize, g: usize) -> Range<usize> {
        let total: usize = self.0.iter().map(|&w| usize::from(w)).sum();
        let upto = |k: usize| -> usize {
            let w: usize = self.0[..k].iter().map(|&w| usize::from(w)).sum();
            // `n · w` fits: n < 2^40 elements, w < 2^18.
            (n as u128 * w as u128 / total as u128) as usize
        };
        upto(g)..upto(g + 1)
    }
}

/// A protocol whose calls have one party deal for the other two, by element groups that
/// rotate the dealer ([`Deal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dealing {
    /// Bytes of a ring word, as an input sends it at full width.
    pub word_bytes: u32,
    /// Bytes per element the dealer of a typical call (a requantization on narrow words)
    /// sends beyond what an evaluator sends: what the split trades against other
    /// imbalance. A nominal figure for the split only; the costs come from the code.
    pub surplus: u32,
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
