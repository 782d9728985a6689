//! The prime field F_p with p = 2^127 − 1, a Mersenne prime, for Shamir sharing: reduction
//! is a shift and an add, and 127 bits hold a program value (|v| < 2^62) plus a 40-bit
//! statistical mask with room to spare. Also polynomial sharing and Lagrange coefficients.
//!
//! Architecture invariant: arithmetic only; no randomness source, no I/O.

/// The modulus, 2^127 − 1.
pub const MODULUS: u128 = (1u128 << 127) - 1;

/// An element of F_p, always in `[0, p)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fp(u128);

/// `x mod p` for any `x < 2^128`.
fn reduce(x: u128) -> u128 {
    let r = (x & MODULUS) + (x >> 127);
    if r >= MODULUS {
        r - MODULUS
    } else {
        r
    }
}

impl Fp {
    pub const ZERO: Fp = Fp(0);
    pub const ONE: Fp = Fp(1);

    /// `v mod p`.
    pub fn new(v: u128) -> Fp {
        Fp(reduce(v))
    }

    /// A signed integer, negatives as `p − |v|`.
    pub fn from_i64(v: i64) -> Fp {
        if v >= 0 {
            Fp(v as u128)
        } else {
            Fp(MODULUS - u128::from(v.unsigned_abs()))
        }
    }

    /// A signed integer of fewer than 127 bits, negatives as `p − |v|`.
    pub fn from_i128(v: i128) -> Fp {
        if v >= 0 {
            Fp::new(v as u128)
        } else {
            -Fp::new(v.unsigned_abs())
        }
    }

    /// The element as a signed integer in `(−p/2, p/2)`.
    pub fn to_i128(self) -> i128 {
        if self.0 > MODULUS / 2 {
            -((MODULUS - self.0) as i128)
        } else {
            self.0 as i128
        }
    }

    /// The representative in `[0, p)`.
    pub fn value(self) -> u128 {
        self.0
    }

    pub fn pow(self, mut e: u128) -> Fp {
        let (mut base, mut acc) = (self, Fp::ONE);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc * base;
            }
            base = base.square();
            e >>= 1;
        }
        acc
    }

    /// `hi·2^128 + lo mod p` for `hi < 2^126`: as 2^128 ≡ 2, the sum
    /// `(lo mod 2^127) + ⌊lo/2^127⌋ + 2·hi` is below 2^128, and one reduction ends it.
    fn from_halves(lo: u128, hi: u128) -> Fp {
        Fp(reduce((lo & MODULUS) + (lo >> 127) + (hi << 1)))
    }

    /// `self²`, with three limb products instead of four.
    pub fn square(self) -> Fp {
        let (a1, a0) = ((self.0 >> 64) as u64, self.0 as u64);
        let wide = |x: u64, y: u64| u128::from(x) * u128::from(y);
        // a² = a1²·2^128 + 2·a1a0·2^64 + a0², with a1 < 2^63 so 2·a1a0 < 2^128.
        let mid = wide(a1, a0) << 1;
        let (lo, carry) = wide(a0, a0).overflowing_add(mid << 64);
        let hi = wide(a1, a1) + (mid >> 64) + u128::from(carry);
        Fp::from_halves(lo, hi)
    }

    /// The inverse (Fermat); `None` for zero.
    pub fn inv(self) -> Option<Fp> {
        (self.0 != 0).then(|| self.pow(MODULUS - 2))
    }

    /// A square root of a square (p ≡ 3 mod 4, so `v^((p+1)/4) = v^(2^125)`: 125
    /// squarings); `None` for a non-square.
    pub fn sqrt(self) -> Option<Fp> {
        let r = (0..125).fold(self, |v, _| v.square());
        (r * r == self).then_some(r)
    }
}

/// The inverses of `v` (Montgomery's trick: one inversion and three products per element);
/// `None` if some element is zero.
pub fn batch_inverse(v: &[Fp]) -> Option<Vec<Fp>> {
    let mut prefix = Vec::with_capacity(v.len());
    let mut acc = Fp::ONE;
    for &x in v {
        prefix.push(acc);
        acc = acc * x;
    }
    let mut inv = acc.inv()?;
    let mut out = vec![Fp::ZERO; v.len()];
    for i in (0..v.len()).rev() {
        out[i] = inv * prefix[i];
        inv = inv * v[i];
    }
    Some(out)
}

impl std::ops::Add for Fp {
    type Output = Fp;
    fn add(self, o: Fp) -> Fp {
        // Both < 2^127, so the sum fits.
        Fp(reduce(self.0 + o.0))
    }
}

impl std::ops::Neg for Fp {
    type Output = Fp;
    fn neg(self) -> Fp {
        if self.0 == 0 {
            self
        } else {
            Fp(MODULUS - self.0)
        }
    }
}

impl std::ops::Sub for Fp {
    type Output = Fp;
    fn sub(self, o: Fp) -> Fp {
        self + -o
    }
}

impl std::ops::Mul for Fp {
    type Output = Fp;
    fn mul(self, o: Fp) -> Fp {
        let (a1, a0) = (self.0 >> 64, self.0 & u128::from(u64::MAX));
        let (b1, b0) = (o.0 >> 64, o.0 & u128::from(u64::MAX));
        // a·b = a1b1·2^128 + (a1b0 + a0b1)·2^64 + a0b0, each partial product < 2^127.
        let mid = a1 * b0 + a0 * b1;
        let (lo, carry) = (a0 * b0).overflowing_add(mid << 64);
        let hi = a1 * b1 + (mid >> 64) + u128::from(carry);
        Fp::from_halves(lo, hi)
    }
}

/// The evaluation point of party `i`: `i + 1` (0 is the secret's).
pub fn point(i: usize) -> Fp {
    Fp::new(i as u128 + 1)
}

/// The values at the points of parties `0..n` of the polynomial with `coeffs` (constant
/// term first).
pub fn evaluate(coeffs: &[Fp], n: usize) -> Vec<Fp> {
    (0..n)
        .map(|i| {
            let x = point(i);
            coeffs.iter().rev().fold(Fp::ZERO, |acc, &c| acc * x + c)
        })
        .collect()
}

/// Coefficients `λ_i` with `f(0) = Σ λ_i·f(point(i))` over the parties `who`, for any
/// polynomial of degree below `who.len()`.
pub fn lagrange_at_zero(who: &[usize]) -> Vec<Fp> {
    who.iter()
        .map(|&i| {
            let xi = point(i);
            let (mut num, mut den) = (Fp::ONE, Fp::ONE);
            for &j in who.iter().filter(|&&j| j != i) {
                let xj = point(j);
                num = num * xj;
                den = den * (xj - xi);
            }
            // Distinct points, so `den` is never zero.
            num * den.inv().unwrap_or(Fp::ZERO)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slow product by doubling and adding, independent of `mul`.
    fn slow_mul(a: Fp, b: Fp) -> Fp {
        let mut acc = Fp::ZERO;
        for bit in (0..127).rev() {
            acc = acc + acc;
            if (b.0 >> bit) & 1 == 1 {
                acc = acc + a;
            }
        }
        acc
    }

    #[test]
    fn squares_are_products() {
        for a in samples() {
            assert_eq!(a.square(), a * a);
        }
    }

    #[test]
    fn batch_inverses_are_inverses() {
        let v = samples()
            .into_iter()
            .filter(|x| *x != Fp::ZERO)
            .collect::<Vec<_>>();
        let inv = batch_inverse(&v).unwrap();
        for (x, y) in v.iter().zip(&inv) {
            assert_eq!(*x * *y, Fp::ONE);
        }
        assert!(batch_inverse(&[Fp::ONE, Fp::ZERO]).is_none());
        assert_eq!(batch_inverse(&[]), Some(vec![]));
    }

    fn samples() -> Vec<Fp> {
        let mut s = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834u128;
        let mut v = vec![
            Fp::ZERO,
            Fp::ONE,
            Fp(MODULUS - 1),
            Fp(MODULUS / 2),
            Fp(1 << 126),
            Fp::from_i64(-1),
            Fp::from_i64(i64::MIN),
        ];
        for _ in 0..200 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            v.push(Fp::new(s));
        }
        v
    }

    #[test]
    fn arithmetic_agrees_with_the_slow_reference_and_the_field_laws() {
        let xs = samples();
        for &a in &xs {
            assert!(a.0 < MODULUS);
            for &b in xs.iter().step_by(7) {
                assert_eq!(a * b, slow_mul(a, b), "{a:?} · {b:?}");
                assert_eq!(a + b - b, a);
            }
            if a != Fp::ZERO {
                assert_eq!(a * a.inv().unwrap(), Fp::ONE);
            }
            let sq = a * a;
            let r = sq.sqrt().unwrap();
            assert!(r == a || r == -a);
        }
        assert_eq!(Fp::ZERO.inv(), None);
        for v in [0i64, 1, -1, 1 << 62, -(1 << 62), i64::MAX, i64::MIN] {
            assert_eq!(Fp::from_i64(v).to_i128(), i128::from(v));
        }
        assert_eq!(Fp::new(MODULUS), Fp::ZERO);
        assert_eq!(Fp::new(u128::MAX), Fp::ONE);
    }

    #[test]
    fn shares_recombine_from_any_large_enough_set() {
        let secret = Fp::from_i64(-123_456_789);
        let coeffs = [secret, Fp::new(77), Fp::new(1 << 100), Fp::from_i64(-5)];
        let shares = evaluate(&coeffs, 10);
        for who in [
            vec![0, 1, 2, 3],
            vec![9, 4, 7, 1],
            (0..10).collect::<Vec<_>>(),
        ] {
            let l = lagrange_at_zero(&who);
            let got = who
                .iter()
                .zip(&l)
                .fold(Fp::ZERO, |acc, (&i, &c)| acc + c * shares[i]);
            assert_eq!(got, secret, "{who:?}");
        }
        // Too few points give something else (degree 3 needs 4).
        let l = lagrange_at_zero(&[0, 1, 2]);
        let got = (0..3).fold(Fp::ZERO, |acc, i| acc + l[i] * shares[i]);
        assert_ne!(got, secret);
    }
}
