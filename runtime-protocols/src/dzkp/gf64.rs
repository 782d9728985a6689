//! GF(2^64) = GF(2)[X] / (X^64 + X^4 + X^3 + X + 1), the field of the distributed proofs
//! about boolean relations: XOR shares of bits are additive shares of field elements, so
//! the verifiers' shares of a statement need no conversion.

use crate::stream::Stream;
use chacha20::rand_core::Rng;
use std::ops::{Add, AddAssign, Mul, Sub};

/// An element of GF(2^64): bit `i` is the coefficient of `X^i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Gf64(pub u64);

impl Gf64 {
    pub const ZERO: Gf64 = Gf64(0);
    pub const ONE: Gf64 = Gf64(1);

    /// `n` uniform elements from `s`.
    pub fn random(s: &mut Stream, n: usize) -> Vec<Gf64> {
        (0..n).map(|_| Gf64(s.next_u64())).collect()
    }

    /// `self · X`: a shift and one conditional reduction.
    #[inline]
    pub fn mul_x(self) -> Gf64 {
        Gf64((self.0 << 1) ^ ((self.0 >> 63) * 0b11011))
    }

    /// `self^e` by squaring.
    pub fn pow(self, mut e: u128) -> Gf64 {
        let (mut base, mut acc) = (self, Gf64::ONE);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc * base;
            }
            base = base * base;
            e >>= 1;
        }
        acc
    }

    /// The inverse (`a^(2^64 − 2)`); zero has none and maps to zero.
    pub fn inv(self) -> Gf64 {
        self.pow((1u128 << 64) - 2)
    }
}

// Addition in characteristic 2 is XOR.
#[allow(clippy::suspicious_arithmetic_impl)]
impl Add for Gf64 {
    type Output = Gf64;
    #[inline]
    fn add(self, o: Gf64) -> Gf64 {
        Gf64(self.0 ^ o.0)
    }
}

#[allow(clippy::suspicious_op_assign_impl)]
impl AddAssign for Gf64 {
    #[inline]
    fn add_assign(&mut self, o: Gf64) {
        self.0 ^= o.0;
    }
}

// Subtraction in characteristic 2 is addition.
#[allow(clippy::suspicious_arithmetic_impl)]
impl Sub for Gf64 {
    type Output = Gf64;
    #[inline]
    fn sub(self, o: Gf64) -> Gf64 {
        Gf64(self.0 ^ o.0)
    }
}

impl Mul for Gf64 {
    type Output = Gf64;
    #[inline]
    fn mul(self, o: Gf64) -> Gf64 {
        reduce(clmul(self.0, o.0))
    }
}

/// Carry-less product of two 64-bit polynomials: the CPU's `PCLMULQDQ` where it has one.
#[inline]
fn clmul(a: u64, b: u64) -> u128 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("pclmulqdq") {
        // SAFETY: the CPU supports `pclmulqdq`, checked just above (the check is cached).
        return unsafe { hw::clmul(a, b) };
    }
    clmul_soft(a, b)
}

/// `Σ a_i·b_i`: the carry-less products XORed unreduced, reduced once (a product alone
/// is one carry-less multiply and a reduction, and a call where the CPU's multiply cannot
/// be inlined: the proofs' inner loops spent a quarter of `mal-rep3`'s time there).
pub fn dot(a: &[Gf64], b: &[Gf64]) -> Gf64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("pclmulqdq") {
        // SAFETY: the CPU supports `pclmulqdq`, checked just above.
        return reduce(unsafe { hw::dot(a, b) });
    }
    reduce(
        a.iter()
            .zip(b)
            .fold(0u128, |s, (x, y)| s ^ clmul_soft(x.0, y.0)),
    )
}

/// `out[j] = Σ_l c_l·v[l·m + start + j]`, each output reduced once.
pub fn combine_into(v: &[Gf64], c: &[Gf64], m: usize, start: usize, out: &mut [Gf64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("pclmulqdq") {
        // SAFETY: the CPU supports `pclmulqdq`, checked just above.
        return unsafe { hw::combine_into(v, c, m, start, out) };
    }
    for (j, o) in out.iter_mut().enumerate() {
        let wide = c.iter().enumerate().fold(0u128, |s, (l, cl)| {
            s ^ clmul_soft(cl.0, v[l * m + start + j].0)
        });
        *o = reduce(wide);
    }
}

/// `Σ_e θ_e·Σ_j a_{e,j}·b_{e,j}` with the pairs of entry `e` from `pairs(e)`: each inner
/// sum reduced once, and the outer sum once (the first level of a proof about bit words
/// takes 63 products per word this way).
pub fn weighted_sums<F, I>(theta: &[Gf64], pairs: F) -> Gf64
where
    F: Fn(usize) -> I,
    I: Iterator<Item = (Gf64, Gf64)>,
{
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("pclmulqdq") {
        // SAFETY: the CPU supports `pclmulqdq`, checked just above.
        return reduce(unsafe { hw::weighted_sums(theta, &pairs) });
    }
    let wide = theta.iter().enumerate().fold(0u128, |outer, (e, th)| {
        let s = pairs(e).fold(0u128, |s, (a, b)| s ^ clmul_soft(a.0, b.0));
        outer ^ clmul_soft(th.0, reduce(s).0)
    });
    reduce(wide)
}

#[cfg(target_arch = "x86_64")]
mod hw {
    use super::Gf64;
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set_epi64x, _mm_unpackhi_epi64,
    };

    #[target_feature(enable = "pclmulqdq")]
    pub(super) fn clmul(a: u64, b: u64) -> u128 {
        let p = _mm_clmulepi64_si128(_mm_set_epi64x(0, a as i64), _mm_set_epi64x(0, b as i64), 0);
        let lo = _mm_cvtsi128_si64(p) as u64;
        let hi = _mm_cvtsi128_si64(_mm_unpackhi_epi64(p, p)) as u64;
        (u128::from(hi) << 64) | u128::from(lo)
    }

    #[target_feature(enable = "pclmulqdq")]
    pub(super) fn dot(a: &[Gf64], b: &[Gf64]) -> u128 {
        a.iter().zip(b).fold(0u128, |s, (x, y)| s ^ clmul(x.0, y.0))
    }

    #[target_feature(enable = "pclmulqdq")]
    pub(super) fn weighted_sums<F, I>(theta: &[Gf64], pairs: &F) -> u128
    where
        F: Fn(usize) -> I,
        I: Iterator<Item = (Gf64, Gf64)>,
    {
        let mut outer = 0u128;
        for (e, th) in theta.iter().enumerate() {
            let mut s = 0u128;
            for (a, b) in pairs(e) {
                s ^= clmul(a.0, b.0);
            }
            outer ^= clmul(th.0, super::reduce(s).0);
        }
        outer
    }

    #[target_feature(enable = "pclmulqdq")]
    pub(super) fn combine_into(v: &[Gf64], c: &[Gf64], m: usize, start: usize, out: &mut [Gf64]) {
        for (j, o) in out.iter_mut().enumerate() {
            let mut wide = 0u128;
            for (l, cl) in c.iter().enumerate() {
                wide ^= clmul(cl.0, v[l * m + start + j].0);
            }
            *o = super::reduce(wide);
        }
    }
}

/// Carry-less product four bits of `b` at a time (CPUs without a carry-less multiply).
#[inline]
fn clmul_soft(a: u64, b: u64) -> u128 {
    let a = u128::from(a);
    let mut table = [0u128; 16];
    for i in 1..16 {
        table[i] = if i % 2 == 0 {
            table[i / 2] << 1
        } else {
            table[i - 1] ^ a
        };
    }
    let mut r = 0u128;
    for k in (0..16).rev() {
        r = (r << 4) ^ table[((b >> (4 * k)) & 15) as usize];
    }
    r
}

/// `x mod (X^64 + X^4 + X^3 + X + 1)`: `X^64 ≡ X^4 + X^3 + X + 1`, folded twice.
#[inline]
fn reduce(x: u128) -> Gf64 {
    let fold = |h: u128| h ^ (h << 1) ^ (h << 3) ^ (h << 4);
    let t = fold(x >> 64);
    let t2 = fold(t >> 64);
    Gf64((x as u64) ^ (t as u64) ^ (t2 as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<Gf64> {
        let mut s = 0x243f_6a88_85a3_08d3u64;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                Gf64(s ^ (s >> 29))
            })
            .collect()
    }

    /// Carry-less product bit by bit, and reduction by long division.
    fn mul_by_bits(a: u64, b: u64) -> u64 {
        let mut r = 0u128;
        for i in 0..64 {
            if (b >> i) & 1 == 1 {
                r ^= u128::from(a) << i;
            }
        }
        let poly = (1u128 << 64) | 0b11011;
        for bit in (64..128).rev() {
            if (r >> bit) & 1 == 1 {
                r ^= poly << (bit - 64);
            }
        }
        r as u64
    }

    #[test]
    fn products_agree_with_long_division() {
        let v = sample(200);
        for w in v.windows(2) {
            assert_eq!((w[0] * w[1]).0, mul_by_bits(w[0].0, w[1].0));
            assert_eq!(clmul_soft(w[0].0, w[1].0), clmul(w[0].0, w[1].0));
        }
        assert_eq!(
            (Gf64(u64::MAX) * Gf64(u64::MAX)).0,
            mul_by_bits(u64::MAX, u64::MAX)
        );
    }

    /// The bulk kernels reduce once; they agree with a product at a time.
    #[test]
    fn the_bulk_kernels_agree_with_single_products() {
        let v = sample(3 * 37);
        let c = sample(3);
        let want = v[..37]
            .iter()
            .zip(&v[37..74])
            .fold(Gf64::ZERO, |s, (&a, &b)| s + a * b);
        assert_eq!(dot(&v[..37], &v[37..74]), want);
        let v = &v;
        let pairs = |e: usize| (0..e % 4).map(move |j| (v[e + j], v[e + 2 * j + 1]));
        let want = (0..37).fold(Gf64::ZERO, |s, e| {
            s + v[74 + e] * pairs(e).fold(Gf64::ZERO, |s, (a, b)| s + a * b)
        });
        assert_eq!(weighted_sums(&v[74..], pairs), want);
        let mut out = vec![Gf64::ZERO; 30];
        combine_into(v, &c, 37, 5, &mut out);
        for (j, &o) in out.iter().enumerate() {
            let want = (0..3).fold(Gf64::ZERO, |s, l| s + c[l] * v[l * 37 + 5 + j]);
            assert_eq!(o, want, "output {j}");
        }
    }

    #[test]
    fn it_is_a_field() {
        let v = sample(64);
        for w in v.windows(3) {
            let (a, b, c) = (w[0], w[1], w[2]);
            assert_eq!(a * (b + c), a * b + a * c);
            assert_eq!((a * b) * c, a * (b * c));
            assert_eq!(a * a.inv(), Gf64::ONE, "{a:?}");
            assert_eq!(a.mul_x(), a * Gf64(2));
        }
        // X^(2^64) = X: the modulus divides X^(2^64) − X.
        assert_eq!(Gf64(2).pow(1u128 << 64), Gf64(2));
    }
}
