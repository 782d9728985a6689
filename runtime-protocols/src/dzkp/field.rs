//! What the inner-product proof needs of its field: GF(2^64) for boolean relations (XOR
//! shares are additive there) and F_p, p = 2^127 − 1, for relations over the integers
//! whose terms are bounded well below p (a dealt bit's ring shares against its XOR shares).

use super::gf64::Gf64;
use crate::field::Fp;
use crate::stream::Stream;
use chacha20::rand_core::Rng;
use std::fmt::Debug;
use std::ops::{Add, Mul, Sub};

pub trait ProofField:
    Copy
    + Default
    + Debug
    + PartialEq
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    /// Bytes of an element on the wire.
    const BYTES: usize;
    /// The `t`-th interpolation point; distinct for every `t` a proof uses.
    fn point(t: usize) -> Self;
    /// `self · point(2)`, the cheap step of a compression by two.
    fn mul_point2(self) -> Self;
    /// The inverse of a nonzero element.
    fn inv(self) -> Self;
    /// A uniform element.
    fn random(s: &mut Stream) -> Self;
    /// Whether this is one of the first `n` interpolation points.
    fn is_point_below(self, n: usize) -> bool;
    fn write(self, out: &mut Vec<u8>);
    fn read(b: &[u8]) -> Self;

    /// `Σ a_i·b_i` (the bulk kernels of the proofs: a field may reduce its products once).
    fn dot(a: &[Self], b: &[Self]) -> Self {
        a.iter().zip(b).fold(Self::ZERO, |s, (&x, &y)| s + x * y)
    }
    /// `out[j] = Σ_l c_l·v[l·m + start + j]`: row `l` of `v` (rows of `m`) weighted by `c_l`.
    fn combine_into(v: &[Self], c: &[Self], m: usize, start: usize, out: &mut [Self]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = c
                .iter()
                .enumerate()
                .fold(Self::ZERO, |s, (l, &cl)| s + cl * v[l * m + start + j]);
        }
    }
}

impl ProofField for Gf64 {
    const ZERO: Gf64 = Gf64(0);
    const ONE: Gf64 = Gf64(1);
    const BYTES: usize = 8;
    fn point(t: usize) -> Gf64 {
        Gf64(t as u64)
    }
    fn mul_point2(self) -> Gf64 {
        // point(2) is the polynomial X.
        self.mul_x()
    }
    fn inv(self) -> Gf64 {
        Gf64::inv(self)
    }
    fn random(s: &mut Stream) -> Gf64 {
        Gf64(s.next_u64())
    }
    fn is_point_below(self, n: usize) -> bool {
        self.0 < n as u64
    }
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    fn read(b: &[u8]) -> Gf64 {
        Gf64(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn dot(a: &[Gf64], b: &[Gf64]) -> Gf64 {
        super::gf64::dot(a, b)
    }
    fn combine_into(v: &[Gf64], c: &[Gf64], m: usize, start: usize, out: &mut [Gf64]) {
        super::gf64::combine_into(v, c, m, start, out)
    }
}

impl ProofField for Fp {
    const ZERO: Fp = Fp::ZERO;
    const ONE: Fp = Fp::ONE;
    const BYTES: usize = 16;
    fn point(t: usize) -> Fp {
        Fp::new(t as u128)
    }
    fn mul_point2(self) -> Fp {
        self + self
    }
    fn inv(self) -> Fp {
        Fp::inv(self).unwrap_or(Fp::ZERO)
    }
    fn random(s: &mut Stream) -> Fp {
        let mut b = [0u8; 16];
        s.fill_bytes(&mut b);
        // 128 uniform bits reduced: within 2^−126 of uniform.
        Fp::new(u128::from_le_bytes(b))
    }
    fn is_point_below(self, n: usize) -> bool {
        self.value() < n as u128
    }
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.value().to_le_bytes());
    }
    fn read(b: &[u8]) -> Fp {
        Fp::new(u128::from_le_bytes(b.try_into().unwrap_or_default()))
    }
}

/// `n` uniform elements.
pub fn random<F: ProofField>(s: &mut Stream, n: usize) -> Vec<F> {
    (0..n).map(|_| F::random(s)).collect()
}
