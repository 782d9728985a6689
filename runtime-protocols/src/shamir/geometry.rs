//! The public constants of `n` parties at threshold `t`: who sends in each kind of round,
//! the Lagrange coefficients every party uses, and the message pattern of each round kind
//! (which the cost formulas read).

use crate::cost::Round;
use crate::field::{point, Fp};
use crate::PartyId;

/// Bytes of one field element on the wire.
pub const ELEM: usize = 16;

/// Coefficients that evaluate the polynomial through `xs` at `at`.
pub fn lagrange_at(xs: &[Fp], at: Fp) -> Vec<Fp> {
    xs.iter()
        .enumerate()
        .map(|(i, &xi)| {
            let (mut num, mut den) = (Fp::ONE, Fp::ONE);
            for (j, &xj) in xs.iter().enumerate() {
                if j != i {
                    num = num * (at - xj);
                    den = den * (xi - xj);
                }
            }
            num * den.inv().unwrap_or(Fp::ZERO)
        })
        .collect()
}

/// Every `k`-subset of `0..n`, in lexicographic order.
pub fn subsets(n: usize, k: usize) -> Vec<Vec<PartyId>> {
    fn go(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, k, &mut Vec::new(), &mut out);
    out
}

/// The public constants of `n` parties at threshold `t = ⌊(n − 1)/2⌋`.
#[derive(Debug)]
pub struct Geometry {
    pub n: usize,
    pub t: usize,
    /// Lagrange coefficients at zero of parties `0..=t` (degree-`t` openings).
    pub lambda_t: Vec<Fp>,
    /// Lagrange coefficients at zero of parties `0..=2t` (degree-`2t` openings, resharing).
    pub lambda_2t: Vec<Fp>,
    /// `keyed[i]`: the `t` parties whose share of a polynomial `i` deals comes from the
    /// stream `i` shares with them, so `i` sends nothing to them.
    pub keyed: Vec<Vec<PartyId>>,
    /// `deal[i][j]`: coefficients over `(f(0), f(α_k) for k in keyed[i])` giving `f(α_j)`,
    /// for `j ∉ keyed[i]` (empty otherwise).
    pub deal: Vec<Vec<Vec<Fp>>>,
    /// `C(n, t)`: the subsets of pseudo-random secret sharing, so the terms a PRSS
    /// bounded random sums.
    pub subsets: usize,
}

impl Geometry {
    pub fn new(n: usize) -> Geometry {
        let t = (n - 1) / 2;
        let keyed: Vec<Vec<PartyId>> = (0..n)
            .map(|i| (1..=t).map(|k| (i + k) % n).collect())
            .collect();
        let deal = (0..n)
            .map(|i| {
                let mut xs = vec![Fp::ZERO];
                xs.extend(keyed[i].iter().map(|&k| point(k)));
                (0..n)
                    .map(|j| {
                        if keyed[i].contains(&j) {
                            Vec::new()
                        } else {
                            lagrange_at(&xs, point(j))
                        }
                    })
                    .collect()
            })
            .collect();
        let at_zero = |k: usize| lagrange_at(&(0..k).map(point).collect::<Vec<_>>(), Fp::ZERO);
        Geometry {
            n,
            t,
            lambda_t: at_zero(t + 1),
            lambda_2t: at_zero(2 * t + 1),
            keyed,
            deal,
            subsets: subsets(n, t).len(),
        }
    }

    /// The parties that send a share to everyone in an opening of a degree-`deg` sharing.
    pub fn openers(&self, deg: usize) -> std::ops::Range<PartyId> {
        0..deg + 1
    }

    /// The parties whose degree-`2t` products are reshared.
    pub fn resharers(&self) -> std::ops::Range<PartyId> {
        0..2 * self.t + 1
    }

    /// Whether dealer `i` sends party `j` its share (rather than `j` drawing it).
    pub fn sends(&self, i: PartyId, j: PartyId) -> bool {
        i != j && !self.keyed[i].contains(&j)
    }

    /// The `t` parties besides `to` whose shares `to` needs to open a value alone.
    pub fn revealers(&self, to: PartyId) -> Vec<PartyId> {
        (0..self.n).filter(|&p| p != to).take(self.t).collect()
    }

    /// An opening of `len` elements of a degree-`deg` sharing to every party.
    pub fn open_round(&self, len: usize, deg: usize) -> Round {
        let bytes = (len * ELEM) as u64;
        Round::of(self.openers(deg).flat_map(|f| {
            (0..self.n)
                .filter(move |&t| t != f)
                .map(move |t| (f, t, bytes))
        }))
    }

    /// A resharing of `len` degree-`2t` products.
    pub fn reshare_round(&self, len: usize) -> Round {
        let bytes = (len * ELEM) as u64;
        Round::of(self.resharers().flat_map(|f| {
            (0..self.n)
                .filter(move |&t| self.sends(f, t))
                .map(move |t| (f, t, bytes))
        }))
    }

    /// `owner` deals `len` values.
    pub fn input_round(&self, owner: PartyId, len: usize) -> Round {
        let bytes = (len * ELEM) as u64;
        Round::of(
            (0..self.n)
                .filter(|&t| self.sends(owner, t))
                .map(|t| (owner, t, bytes)),
        )
    }

    /// `len` values opened to `to` alone.
    pub fn reveal_round(&self, len: usize, to: PartyId) -> Round {
        let bytes = (len * ELEM) as u64;
        Round::of(self.revealers(to).into_iter().map(|f| (f, to, bytes)))
    }
}

/// The field as the domain of the gate set (`crate::func::gates`): the statistical part
/// of a mask is a sum of one term per subset, so an opened `c` stays below `p/2` with the
/// subsets' bits to spare.
pub(crate) fn field_domain(subsets: usize) -> crate::func::Domain {
    crate::func::Domain::Field {
        bits: 126 - crate::lanes::bits(subsets as u128),
        stat: super::select::STAT_BITS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dealt_shares_lie_on_one_polynomial_through_the_secret() {
        for n in [3, 4, 5, 7, 10] {
            let g = Geometry::new(n);
            assert_eq!(subsets(n, g.t).len(), {
                let mut c = 1u64;
                for k in 0..g.t as u64 {
                    c = c * (n as u64 - k) / (k + 1);
                }
                c as usize
            });
            for i in 0..n {
                // f(x) = 5 + 3x + ... of degree t, from f(0) and the keyed points.
                let coeffs: Vec<Fp> = (0..=g.t).map(|k| Fp::new(5 + 3 * k as u128)).collect();
                let f = crate::field::evaluate(&coeffs, n);
                let mut known = vec![coeffs[0]];
                known.extend(g.keyed[i].iter().map(|&k| f[k]));
                for j in (0..n).filter(|j| !g.keyed[i].contains(j)) {
                    let v = g.deal[i][j]
                        .iter()
                        .zip(&known)
                        .fold(Fp::ZERO, |a, (&c, &k)| a + c * k);
                    assert_eq!(v, f[j], "n {n} dealer {i} party {j}");
                }
                let at0 = g
                    .lambda_t
                    .iter()
                    .zip(&f)
                    .fold(Fp::ZERO, |a, (&l, &v)| a + l * v);
                assert_eq!(at0, coeffs[0]);
            }
        }
    }
}
