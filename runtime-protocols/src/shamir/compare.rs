//! Shared random bits, comparisons of public values with shared bits, and one-hot vectors
//! of shared bits: the nonlinear building blocks of [`super::select`].

use super::geometry::Geometry;
use super::Shamir;
use crate::cost::Rounds;
use crate::field::Fp;
use crate::{Core, ProtocolError};
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;

/// `count` shared uniform bits: with three parties the field half of
/// [`super::dabits`] (2 rounds, one element sent per party per bit); with more, 1 round:
/// for a random sharing `[a]` the parties open `a²` from their degree-`2t` products,
/// masked by shares of zero that cancel in the opening, so it shows `a²` and nothing
/// else; then `b = (a/√(a²) + 1)/2` is 0 or 1 as `a`'s square root is `±a` (Damgård,
/// Fitzi, Kiltz, Nielsen, Toft, TCC 2006).
pub fn random_bits(p: &mut Shamir, count: usize) -> R<Vec<Fp>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if p.geo.n == 3 {
        return Ok(super::dabits::dabits(p, count)?.fp);
    }
    let a = p.streams.random(count);
    let z = p
        .streams
        .zero_among(p.geo.openers(2 * p.geo.t), &p.geo.lambda_2t, count)?;
    let squares: Vec<Fp> = a.par_iter().zip(z).map(|(&a, z)| a * a + z).collect();
    let opened = p.open(&squares, 2 * p.geo.t)?;
    let half = Fp::new(2).inv().unwrap_or(Fp::ZERO);
    let zero =
        || ProtocolError::Invalid("a random bit drew zero (probability 2^-126); run again".into());
    // Roots one by one (p ≡ 3 mod 4: 125 squarings), inverses in chunks by one inversion.
    let roots: Vec<Fp> = opened
        .par_iter()
        .map(|&sq| sq.sqrt().ok_or_else(zero))
        .collect::<R<_>>()?;
    let inverses: Vec<Fp> = roots
        .par_chunks(4096)
        .map(|c| crate::field::batch_inverse(c).ok_or_else(zero))
        .collect::<R<Vec<_>>>()?
        .concat();
    Ok(a.par_iter()
        .zip(inverses)
        .map(|(&a, inv)| (a * inv + Fp::ONE) * half)
        .collect())
}

/// The rounds of [`random_bits`].
pub fn random_bits_pattern(g: &Geometry, count: usize) -> Rounds {
    if count == 0 {
        Vec::new()
    } else if g.n == 3 {
        super::dabits::pattern(count)
    } else {
        vec![g.open_round(count, 2 * g.t)]
    }
}

/// The leaf of one bit position of a comparison `[a < b]`: `(lt, eq)` for a public bit
/// `a` and a shared bit `b`.
pub fn leaf(a: bool, b: Fp) -> (Fp, Fp) {
    if a {
        (Fp::ZERO, b)
    } else {
        (b, Fp::ONE - b)
    }
}

/// The tree levels over `width` leaves: pairs combined per level, and whether it is the
/// last (where only `lt` is needed).
pub fn levels(width: usize) -> Vec<(usize, bool)> {
    let mut out = Vec::new();
    let mut units = width;
    while units > 1 {
        out.push((units / 2, units / 2 + units % 2 == 1));
        units = units / 2 + units % 2;
    }
    out
}

/// Products of one comparison's tree over `width` leaves.
pub fn tree_products(width: usize) -> Vec<usize> {
    levels(width)
        .into_iter()
        .map(|(pairs, last)| if last { pairs } else { 2 * pairs })
        .collect()
}

/// The rows of a comparison tree: one unit's `lt` or `eq` over every comparison, as field
/// shares or packed boolean shares.
pub trait Rows: Default {
    /// `len` row positions from `at`.
    fn part(&self, at: usize, len: usize) -> Self;
    fn append(&mut self, o: &Self);
    /// The sum of two cases that exclude each other (`+` in F_p, `⊕` over bits).
    fn either(&self, o: &Self) -> Self;
}

impl Rows for Vec<Fp> {
    fn part(&self, at: usize, len: usize) -> Self {
        self[at..at + len].to_vec()
    }
    fn append(&mut self, o: &Self) {
        self.extend_from_slice(o);
    }
    fn either(&self, o: &Self) -> Self {
        self.iter().zip(o).map(|(&a, &b)| a + b).collect()
    }
}

/// `[A < B]` over `width` units, each `(lt, eq)` a row of `row` positions, least
/// significant first. One round of `mul` per level: with the high unit `(lt_h, eq_h)` and
/// the low one `(lt_l, eq_l)`, `lt = lt_h + eq_h·lt_l` (the two cases exclude each other)
/// and `eq = eq_h·eq_l`, which the last level skips.
pub fn tree<T: Rows>(
    lt: T,
    eq: T,
    width: usize,
    row: usize,
    mut mul: impl FnMut(&T, &T) -> R<T>,
) -> R<T> {
    let mut units: Vec<(T, T)> = (0..width)
        .map(|j| (lt.part(j * row, row), eq.part(j * row, row)))
        .collect();
    for (pairs, last) in levels(width) {
        let (mut a, mut b) = (T::default(), T::default());
        for k in 0..pairs {
            let (lo, hi) = (&units[2 * k], &units[2 * k + 1]);
            a.append(&hi.1);
            b.append(&lo.0);
            if !last {
                a.append(&hi.1);
                b.append(&lo.1);
            }
        }
        let prod = mul(&a, &b)?;
        let step = if last { 1 } else { 2 };
        let mut next = Vec::with_capacity(pairs + 1);
        for k in 0..pairs {
            let at = k * step * row;
            let new_lt = units[2 * k + 1].0.either(&prod.part(at, row));
            let new_eq = if last {
                T::default()
            } else {
                prod.part(at + row, row)
            };
            next.push((new_lt, new_eq));
        }
        if units.len() % 2 == 1 {
            next.push(units.pop().unwrap_or_default());
        }
        units = next;
    }
    Ok(units.into_iter().next().map(|u| u.0).unwrap_or_default())
}

/// `[A < B]` for `count` comparisons of `width` leaves each, leaves least significant
/// first, laid out leaf-major (`lt[j * count + c]`), over the field.
pub fn less_than(
    p: &mut Shamir,
    lt: Vec<Fp>,
    eq: Vec<Fp>,
    count: usize,
    width: usize,
) -> R<Vec<Fp>> {
    tree(lt, eq, width, count, |a, b| p.mul(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_shapes_count_every_pair_once() {
        assert_eq!(levels(1), vec![]);
        assert_eq!(levels(2), vec![(1, true)]);
        assert_eq!(levels(3), vec![(1, false), (1, true)]);
        assert_eq!(levels(5), vec![(2, false), (1, false), (1, true)]);
        assert_eq!(tree_products(8), vec![8, 4, 1]);
    }
}
