//! The cost formulas of `semi2k` and `fss`: each primitive runs on a counting [`Dealer`], which
//! follows the parties' calls and records their message pattern.

use super::{Dealer, Gates};
use crate::cost::{Call, Costs, Counting, Round, Rounds};
use crate::word::Word;
use crate::ProtocolError;

type R<T> = Result<T, ProtocolError>;

/// `semi2k` (or `fss`, by `gates`) among `parties` computing parties in Z_2^`ring_bits`.
pub struct Semi2kCosts {
    pub parties: usize,
    pub ring_bits: u32,
    pub gates: Gates,
}

impl Semi2kCosts {
    /// The rounds `call` records on a counting dealer of this ring.
    fn run(&self, call: impl Fn(&mut dyn Counting) -> R<()>) -> R<Rounds> {
        let (n, g) = (self.parties, self.gates);
        match self.ring_bits {
            32 => counted::<u32>(n, g, call),
            64 => counted::<u64>(n, g, call),
            _ => counted::<u128>(n, g, call),
        }
    }
}

fn counted<W: Word>(
    parties: usize,
    gates: Gates,
    call: impl Fn(&mut dyn Counting) -> R<()>,
) -> R<Rounds> {
    let mut d = Dealer::<W>::counting(parties, gates);
    call(&mut d)?;
    Ok(d.take_rounds())
}

impl Costs for Semi2kCosts {
    fn name(&self) -> &'static str {
        self.gates.name()
    }
    fn parties(&self) -> usize {
        self.parties
    }
    fn products_open_operands(&self) -> bool {
        true
    }
    /// Inputs and reveals involve no dealer material, so the counting dealer does not see
    /// them: an input is local (the owner's pairwise streams), a reveal one message from
    /// every other party.
    fn rounds(&self, call: Call<'_>) -> R<Rounds> {
        match call {
            Call::Input { .. } => Ok(Vec::new()),
            Call::Reveal { len, to } => {
                let bytes = (len * (self.ring_bits as usize / 8)) as u64;
                Ok(vec![Round::of(
                    (0..self.parties)
                        .filter(|&p| p != to)
                        .map(|p| (p, to, bytes)),
                )])
            }
            _ => self.run(|d| d.call(call)),
        }
    }
}
