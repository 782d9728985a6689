//! Authenticated shares: a party's additive share of a value and of the value times the
//! global MAC key `α`, both in Z_2^128 (SPDZ2k with `k + s = 128`).
//!
//! A value's meaning is its low `k` bits (`k` the program's ring, 32 or 64), or its low bit
//! for the comparison bits of [`super::select`]; the bits above are noise that no opening
//! reveals. Everything here is local.

use rayon::prelude::*;

/// Party `i`'s share of `x`: `x_i` and `m_i` with `Σ x_i = x`, `Σ m_i = α·x` (mod 2^128).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    pub(super) x: u128,
    pub(super) m: u128,
}

impl Auth {
    pub(super) const ZERO: Auth = Auth { x: 0, m: 0 };

    pub(super) fn add(self, o: Auth) -> Auth {
        Auth {
            x: self.x.wrapping_add(o.x),
            m: self.m.wrapping_add(o.m),
        }
    }

    pub(super) fn sub(self, o: Auth) -> Auth {
        Auth {
            x: self.x.wrapping_sub(o.x),
            m: self.m.wrapping_sub(o.m),
        }
    }

    /// The share of `c·x` for a public `c`.
    pub(super) fn scale(self, c: u128) -> Auth {
        Auth {
            x: self.x.wrapping_mul(c),
            m: self.m.wrapping_mul(c),
        }
    }
}

/// What a party needs to add public constants: whether it is party 0 (which holds the
/// constant in its value share) and its share of `α` (every party adds `α_i·c` to its MAC
/// share).
#[derive(Clone, Copy, Debug)]
pub(super) struct Ctx {
    pub first: bool,
    pub alpha: u128,
}

impl Ctx {
    /// A sharing of the public `c`.
    pub fn constant(self, c: u128) -> Auth {
        Auth {
            x: if self.first { c } else { 0 },
            m: self.alpha.wrapping_mul(c),
        }
    }

    /// `a + c` for a public `c`.
    pub fn add_const(self, a: Auth, c: u128) -> Auth {
        a.add(self.constant(c))
    }
}

/// A public `i64` in Z_2^128 (sign extension).
pub(super) fn lift(v: i64) -> u128 {
    v as i128 as u128
}

/// The dealer's words for `values`: each value, then its MAC `α·v`.
pub(super) fn to_words(values: &[u128], alpha: u128) -> Vec<u128> {
    let mut out = Vec::with_capacity(2 * values.len());
    for &v in values {
        out.push(v);
        out.push(alpha.wrapping_mul(v));
    }
    out
}

/// Element-wise `a + b`.
pub(super) fn add(a: &[Auth], b: &[Auth]) -> Vec<Auth> {
    a.par_iter().zip(b).map(|(x, y)| x.add(*y)).collect()
}

/// Element-wise `a − b`.
pub(super) fn sub(a: &[Auth], b: &[Auth]) -> Vec<Auth> {
    a.par_iter().zip(b).map(|(x, y)| x.sub(*y)).collect()
}

/// The value shares and the MAC shares as two planes.
pub(super) fn planes(a: &[Auth]) -> (Vec<u128>, Vec<u128>) {
    a.iter().map(|s| (s.x, s.m)).unzip()
}

/// Shares from two planes.
pub(super) fn zip(x: Vec<u128>, m: Vec<u128>) -> Vec<Auth> {
    x.into_iter().zip(m).map(|(x, m)| Auth { x, m }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_and_linear_maps_keep_the_mac_relation() {
        // Two parties, α = α0 + α1; x = 5 shared, then (x + 7)·3 − x.
        let (a0, a1) = (0x1234_5678_9abc_def0u128, 0x0fed_cba9u128 << 70);
        let alpha = a0.wrapping_add(a1);
        let x = 5u128;
        let s0 = Auth { x: 11, m: 99 };
        let s1 = Auth {
            x: x.wrapping_sub(11),
            m: alpha.wrapping_mul(x).wrapping_sub(99),
        };
        let c0 = Ctx {
            first: true,
            alpha: a0,
        };
        let c1 = Ctx {
            first: false,
            alpha: a1,
        };
        let f = |c: Ctx, s: Auth| c.add_const(s, 7).scale(3).sub(s);
        let (r0, r1) = (f(c0, s0), f(c1, s1));
        let v = r0.x.wrapping_add(r1.x);
        assert_eq!(v, (x + 7) * 3 - x);
        assert_eq!(r0.m.wrapping_add(r1.m), alpha.wrapping_mul(v));
        assert_eq!(to_words(&[v], alpha), vec![v, alpha.wrapping_mul(v)]);
    }
}
