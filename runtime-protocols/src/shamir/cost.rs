//! The cost formulas of `shamir`: the round patterns of [`Geometry`], and for the
//! selections a data-free [`Counter`] that makes the same calls as a party (through
//! [`crate::func`]) and records each call's [`ShamirPlan::pattern`].

use super::geometry::Geometry;
use super::select;
use crate::cost::{Call, Costs, Counting, Rounds};
use crate::func::Selection;
use crate::planes::{Len, Plane};
use crate::semi2k::select::Plan;
use crate::Core;
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant};

type R<T> = Result<T, ProtocolError>;

/// `shamir` among `parties` parties.
pub struct ShamirCosts {
    geo: Geometry,
}

impl ShamirCosts {
    pub fn new(parties: usize) -> ShamirCosts {
        ShamirCosts {
            geo: Geometry::new(parties.max(3)),
        }
    }

    fn run(&self, call: impl FnOnce(&mut Counter) -> R<()>) -> R<Rounds> {
        let mut c = Counter {
            geo: &self.geo,
            rounds: Vec::new(),
        };
        call(&mut c)?;
        Ok(c.rounds)
    }
}

/// A party without data that records the rounds of its calls.
pub(super) struct Counter<'g> {
    pub(super) geo: &'g Geometry,
    pub(super) rounds: Rounds,
}

/// The rounds `f` records on a counter of `parties` parties with the generic selection.
#[cfg(test)]
pub(super) fn counted_generic(
    parties: usize,
    f: impl FnOnce(&mut crate::func::gates::Generic<Counter>) -> R<()>,
) -> R<Rounds> {
    let costs = ShamirCosts::new(parties);
    let mut c = crate::func::gates::Generic(Counter {
        geo: &costs.geo,
        rounds: Vec::new(),
    });
    f(&mut c)?;
    Ok(c.0.rounds)
}

impl Selection for Counter<'_> {
    fn max_selection(&self) -> Option<usize> {
        Some(select::MAX_SELECTION)
    }
    fn max_lookup_words(&self) -> Option<usize> {
        Some(select::MAX_LOOKUP_WORDS)
    }
    fn splits_rounding(&self) -> bool {
        true
    }
    fn select_with(&mut self, x: &Len, q: &Requant, b: Bounds, plan: &Plan) -> R<Len> {
        match select::plan(q, b, plan, self.geo)? {
            Some(sp) => self.rounds.extend(sp.pattern(self.geo)),
            None => return super::wide::requantize(self, x, q, b),
        }
        Ok(*x)
    }
}

impl Core for Counter<'_> {
    type Shares = Len;

    fn name(&self) -> &'static str {
        "shamir"
    }
    fn party(&self) -> PartyId {
        usize::MAX
    }
    fn parties(&self) -> usize {
        self.geo.n
    }
    fn input(&mut self, owner: PartyId, _: Option<&[i64]>, len: usize) -> R<Len> {
        self.rounds.push(self.geo.input_round(owner, len));
        Ok(Len(len))
    }
    fn reveal(&mut self, x: &Len, to: PartyId) -> R<Option<Vec<i64>>> {
        self.rounds.push(self.geo.reveal_round(x.len(), to));
        Ok(None)
    }
    crate::cost::shape_only_locals!();
    fn mul(&mut self, a: &Len, _: &Len) -> R<Len> {
        if !a.is_empty() {
            self.rounds.push(self.geo.reshare_round(a.len()));
        }
        Ok(*a)
    }
    fn matmul(&mut self, _: &Len, _: &Len, d: MatDims) -> R<Len> {
        let len = d.batch * d.m * d.n;
        if len > 0 {
            self.rounds.push(self.geo.reshare_round(len));
        }
        Ok(Len(len))
    }
}

impl Costs for ShamirCosts {
    fn name(&self) -> &'static str {
        "shamir"
    }
    fn parties(&self) -> usize {
        self.geo.n
    }
    /// Inputs and reveals from the geometry's patterns (the counter records only what
    /// goes through the selection and products).
    fn rounds(&self, call: Call<'_>) -> R<Rounds> {
        match call {
            Call::Input { owner, len } => Ok(vec![self.geo.input_round(owner, len)]),
            Call::Reveal { len, to } => Ok(vec![self.geo.reveal_round(len, to)]),
            _ => self.run(|c| c.call(call)),
        }
    }
}
