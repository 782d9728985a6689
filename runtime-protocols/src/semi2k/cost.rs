//! The cost formulas of `semi2k` and `fss`: each primitive runs on a counting [`Dealer`], which
//! follows the parties' calls and records their message pattern.

use super::{Dealer, Gates};
use crate::cost::{Costs, Counting, Round, Rounds};
use crate::word::Word;
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant, TruncMode};

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
    fn input(&self, _: PartyId, _: usize) -> Rounds {
        Vec::new()
    }
    fn reveal(&self, len: usize, to: PartyId) -> Rounds {
        let bytes = (len * (self.ring_bits as usize / 8)) as u64;
        vec![Round::of(
            (0..self.parties)
                .filter(|&p| p != to)
                .map(|p| (p, to, bytes)),
        )]
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
