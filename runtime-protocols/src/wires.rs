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
    /// Every reader of the result, through local element-wise steps, opens it from the
    /// evaluators' components alone ([`Pending`]): the instruction's last call may leave
    /// it pending instead of resharing it.
    pub pending_out: bool,
}

impl Wires {
    /// Full width, split as these wires are, nothing pending: what the steps of a
    /// fallback chain run with (each step reads the previous one's result whole).
    pub fn full_width(self) -> Wires {
        Wires {
            deal: self.deal,
            ..Wires::default()
        }
    }

    /// What a narrow party's inner call runs with: full width in its own ring, split and
    /// pending as these wires are (the inner call is the instruction's last).
    pub fn inner(self) -> Wires {
        Wires {
            pending_out: self.pending_out,
            ..self.full_width()
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

/// A protocol's pending results: a dealer-assisted call ends with its two evaluators
/// holding additive parts of each element's result, and a resharing through the dealer
/// makes them replicated shares (one round, a word per element from each evaluator).
/// Where every reader opens the result by the same groups from the evaluators'
/// components alone (its `A` and `B` hold, between them, every component), the resharing
/// can be skipped: `A` keeps its part as component `g + 1` and zero as `g + 2`, `B` its
/// part as component `g` and zero as `g + 2`, and the dealer's two components are stale.
/// Local element-wise steps (sums, public factors, reshapes) act on components one by one,
/// so they keep the value right in what `A` and `B` hold.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    /// The ring the protocol computes in.
    pub ring_bits: u32,
    /// Whether `call` (the only call of its instruction), opening at most `cap` bits,
    /// may leave its result pending.
    pub leaves: for<'a> fn(Call<'a>, u32) -> bool,
    /// Whether `call`, opening at most `cap` bits, reads its secret operand only as its
    /// evaluators' components, in the groups of [`Deal::range`] over the operand's length.
    pub opens: for<'a> fn(Call<'a>, u32) -> bool,
}

/// What the VM asks of a protocol's calls before a run (`qmpc_vm::wires`): how each call
/// reads narrow operands, and whether it leaves or opens pending results.
#[derive(Clone, Copy, Debug, Default)]
pub struct Probe {
    pub narrowing: Option<Narrowing>,
    pub pending: Option<Pending>,
}

/// What one instruction's calls answered a [`Probe`], joined over its calls. The pending
/// answers are per width of the operands: `[full, narrow]` (an instruction with a narrow
/// operand opens at most [`Narrowing::bits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// [`Narrowing::reads`] ([`Reads::All`] without a narrowing).
    pub reads: Reads,
    /// How many calls the instruction made.
    pub calls: u32,
    /// Every call may leave its result pending ([`Pending::leaves`]).
    pub leaves: [bool; 2],
    /// Every call opens its operand from the evaluators' components ([`Pending::opens`]).
    pub opens: [bool; 2],
}

impl Probe {
    /// The answer of one `call`.
    pub fn ask(&self, call: Call<'_>) -> Answer {
        let (mut leaves, mut opens) = ([false; 2], [false; 2]);
        if let Some(p) = self.pending {
            let narrow = self
                .narrowing
                .map_or(p.ring_bits, |n| n.bits.min(p.ring_bits));
            for (k, cap) in [p.ring_bits, narrow].into_iter().enumerate() {
                leaves[k] = (p.leaves)(call, cap);
                opens[k] = (p.opens)(call, cap);
            }
        }
        Answer {
            reads: self.narrowing.map_or(Reads::All, |n| (n.reads)(call)),
            calls: 1,
            leaves,
            opens,
        }
    }
}

impl Answer {
    /// The answer of an instruction that made both calls.
    pub fn join(self, o: Answer) -> Answer {
        let and = |a: [bool; 2], b: [bool; 2]| [a[0] && b[0], a[1] && b[1]];
        Answer {
            reads: self.reads.join(o.reads),
            calls: self.calls + o.calls,
            leaves: and(self.leaves, o.leaves),
            opens: and(self.opens, o.opens),
        }
    }
}

/// The wires of the instruction of `task` ([`crate::task_id`]) in a program's `wires`;
/// full-width where there are none.
pub fn of_task(wires: Option<&[Wires]>, task: u64) -> Wires {
    wires
        .and_then(|w| w.get(crate::task_index(task)).copied())
        .unwrap_or_default()
}
