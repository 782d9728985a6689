//! The gate set a masked comparison needs (docs/core.md, step 3): the small set of
//! operations beyond the arithmetic black box over which [`super::compare`] writes the
//! selection once. A protocol that implements it gets a generic selection to hold its own
//! construction to; the preprocessing calls (`masks`, and the material behind `and` and
//! `b2a`) are the interface a dealer, PRSS or a future OT/HE generator implements.

use super::Domain;
#[cfg(test)]
use super::Selection;
use crate::planes::{BitPlane, Plane};
use crate::{Core, ProtocolError};

type R<T> = Result<T, ProtocolError>;

/// `n` random masks `r = Σ_{j<m} 2^j·b_j + 2^m·h` with their low bits in both forms
/// (edaBits whose bits are daBits).
pub struct Masks<S, B> {
    /// Bit `j` of mask `e` at `j·n + e`, as boolean shares.
    pub bits: B,
    /// The same bits in the domain, in the same order.
    pub arith: S,
    /// `h`: in a ring of `k` bits, `⌊(r mod 2^k) / 2^m⌋`, uniform below `2^(k − m)` (so
    /// `r mod 2^k` is uniform); in a field, uniform below `2^high` (the statistical part).
    pub high: S,
    /// In a ring, bit `k − 1` of `r` in the ring (the top-bit reading of an opening needs
    /// it); zero in a field.
    pub top: S,
    /// `⌊r / 2^k⌋` where shares are wider than the ring (`spdz2k` computes in Z_2^128 for
    /// a ring of `k` bits): it hides the bits above `k` of an opening of all of them.
    pub above: Option<S>,
}

/// `2^e` as a constant of [`lift`] (`0` for `e ≥ 128`: the residue mod 2^128).
pub(crate) fn pow2(e: u32) -> i128 {
    if e >= 128 {
        0
    } else {
        (1u128 << e) as i128
    }
}

/// Base-2^62 digits of `v`: `v = d0 + 2^62·d1 + 2^124·d2`, each an `i64`.
pub(crate) fn digits(v: i128) -> [i64; 3] {
    let mask = (1i128 << 62) - 1;
    [
        (v & mask) as i64,
        ((v >> 62) & mask) as i64,
        (v >> 124) as i64,
    ]
}

pub(crate) fn fits_i64(c: &[i128]) -> bool {
    c.iter().all(|&v| i64::try_from(v).is_ok())
}

/// `x · c` element-wise for public constants `c` (as in [`lift`]).
pub(crate) fn scale<P: Core>(p: &P, x: &P::Shares, c: &[i128]) -> P::Shares {
    if fits_i64(c) {
        return p.mul_public(x, &c.iter().map(|&v| v as i64).collect::<Vec<_>>());
    }
    let d = |k: usize| -> Vec<i64> { c.iter().map(|&v| digits(v)[k]).collect() };
    let shift = vec![1i64 << 62; c.len()];
    let top = p.add(
        &p.mul_public(&p.mul_public(x, &d(2)), &shift),
        &p.mul_public(x, &d(1)),
    );
    p.add(&p.mul_public(&top, &shift), &p.mul_public(x, &d(0)))
}

impl<S: Plane, B> Masks<S, B> {
    /// The masks `r = Σ_{j<m} 2^j·b_j + 2^m·h (+ 2^k·above)` themselves (`m` their low
    /// bits).
    pub fn value<P: GateSet<Shares = S>>(&self, p: &P, m: u32) -> S {
        let n = self.high.len();
        let mut r = scale(p, &self.high, &vec![pow2(m); n]);
        if let (Some(above), Domain::Ring { bits }) = (&self.above, p.domain()) {
            r = p.add(&r, &scale(p, above, &vec![pow2(bits); n]));
        }
        for j in 0..m as usize {
            let bit = self.arith.slice(j * n..(j + 1) * n);
            r = p.add(&r, &scale(p, &bit, &vec![pow2(j as u32); n]));
        }
        r
    }
}

/// `a ⊕ c` for bits held as 0/1 values: `a` where `c` is clear, `1 − a` where it is set.
pub(crate) fn flip<C: Core>(p: &C, a: &C::Shares, c: &BitPlane) -> C::Shares {
    let n = a.len();
    let signs: Vec<i64> = (0..n).map(|i| 1 - 2 * c.get(i) as i64).collect();
    let ones: Vec<i64> = (0..n).map(|i| c.get(i) as i64).collect();
    p.add_public(&p.mul_public(a, &signs), &ones)
}

/// A [`Core`] with boolean shares and the conversions a masked comparison needs.
///
/// Boolean shares are one bit per element of [`GateSet::Bits`]; `either` and `xor_public` are
/// local, `and` is one round for every pair of one call, `b2a` one round.
pub trait GateSet: Core {
    /// Boolean shares, one bit per element.
    type Bits: Plane;

    /// The ring or field the core computes in.
    fn domain(&self) -> Domain;

    /// `n` masks of `m` low bits (`m ≤ k` in a ring); `high` bits of `h` in a field
    /// (a ring ignores it).
    fn masks(&mut self, n: usize, m: u32, high: u32) -> R<Masks<Self::Shares, Self::Bits>>;
    /// Open `x` to every party, as residues: `[0, 2^k)` in a ring, `[0, p)` in a field
    /// (a data-free twin returns zeros).
    fn open_all(&mut self, x: &Self::Shares) -> R<Vec<u128>>;
    /// `a ∧ b` element-wise.
    fn and(&mut self, a: &Self::Bits, b: &Self::Bits) -> R<Self::Bits>;
    /// `a ∨ b` for bits never both set: `a ⊕ b` of boolean shares, `a + b` of bits
    /// shared in the domain (local either way).
    fn either(&self, a: &Self::Bits, b: &Self::Bits) -> Self::Bits;
    /// `a ⊕ c` for public bits `c`.
    fn xor_public(&self, a: &Self::Bits, c: &BitPlane) -> Self::Bits;
    /// The bits as 0 or 1 in the domain.
    fn b2a(&mut self, a: &Self::Bits) -> R<Self::Shares>;
}

/// A protocol with its own selection and lookup replaced by the generic ones
/// ([`super::compare`], [`super::lookup`]): what the tests run to hold the overrides to
/// the defaults.
#[cfg(test)]
pub struct Generic<P>(pub P);

#[cfg(test)]
impl<P: GateSet> Core for Generic<P> {
    type Shares = P::Shares;

    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn products_open_operands(&self) -> bool {
        self.0.products_open_operands()
    }
    fn party(&self) -> crate::PartyId {
        self.0.party()
    }
    fn parties(&self) -> usize {
        self.0.parties()
    }
    fn begin_instruction(&mut self, task: u64) {
        self.0.begin_instruction(task)
    }
    fn begin_run(&mut self, run: u64) -> R<()> {
        self.0.begin_run(run)
    }
    fn end_run(&mut self) -> R<()> {
        self.0.end_run()
    }
    fn check(&mut self) -> R<()> {
        self.0.check()
    }
    fn input(&mut self, owner: crate::PartyId, values: Option<&[i64]>, len: usize) -> R<P::Shares> {
        self.0.input(owner, values, len)
    }
    fn reveal(&mut self, x: &P::Shares, to: crate::PartyId) -> R<Option<Vec<i64>>> {
        self.0.reveal(x, to)
    }
    fn public(&self, values: &[i64]) -> P::Shares {
        self.0.public(values)
    }
    fn add(&self, a: &P::Shares, b: &P::Shares) -> P::Shares {
        self.0.add(a, b)
    }
    fn sub(&self, a: &P::Shares, b: &P::Shares) -> P::Shares {
        self.0.sub(a, b)
    }
    fn add_public(&self, a: &P::Shares, c: &[i64]) -> P::Shares {
        self.0.add_public(a, c)
    }
    fn mul_public(&self, a: &P::Shares, c: &[i64]) -> P::Shares {
        self.0.mul_public(a, c)
    }
    fn matmul_public(
        &self,
        s: &P::Shares,
        c: &[i64],
        d: crate::MatDims,
        public_left: bool,
    ) -> P::Shares {
        self.0.matmul_public(s, c, d, public_left)
    }
    fn mul(&mut self, a: &P::Shares, b: &P::Shares) -> R<P::Shares> {
        self.0.mul(a, b)
    }
    fn matmul(&mut self, a: &P::Shares, b: &P::Shares, d: crate::MatDims) -> R<P::Shares> {
        self.0.matmul(a, b, d)
    }
}

#[cfg(test)]
impl<P: GateSet> GateSet for Generic<P> {
    type Bits = P::Bits;

    fn domain(&self) -> Domain {
        self.0.domain()
    }
    fn masks(&mut self, n: usize, m: u32, high: u32) -> R<Masks<P::Shares, P::Bits>> {
        self.0.masks(n, m, high)
    }
    fn open_all(&mut self, x: &P::Shares) -> R<Vec<u128>> {
        self.0.open_all(x)
    }
    fn and(&mut self, a: &P::Bits, b: &P::Bits) -> R<P::Bits> {
        self.0.and(a, b)
    }
    fn either(&self, a: &P::Bits, b: &P::Bits) -> P::Bits {
        self.0.either(a, b)
    }
    fn xor_public(&self, a: &P::Bits, c: &BitPlane) -> P::Bits {
        self.0.xor_public(a, c)
    }
    fn b2a(&mut self, a: &P::Bits) -> R<P::Shares> {
        self.0.b2a(a)
    }
}

/// The defaults: the generic selection, the functionalities over it.
#[cfg(test)]
impl<P: Selection> Selection for Generic<P> {
    fn splits_rounding(&self) -> bool {
        self.0.splits_rounding()
    }
    fn max_selection(&self) -> Option<usize> {
        self.0.max_selection()
    }
    fn max_lookup_words(&self) -> Option<usize> {
        self.0.max_lookup_words()
    }
}
