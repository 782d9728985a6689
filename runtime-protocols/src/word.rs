//! Ring elements of secret-sharing protocols: Z_2^32, Z_2^64 or Z_2^128 as wrapping unsigned
//! words.
//!
//! Public values are `i64` everywhere (the VM's integer meaning); a protocol may carry its
//! shares in a wider ring to leave statistical headroom for masked openings, or in Z_2^32
//! when every secret value of the program fits 32 bits. A value `v` maps to the ring by
//! sign extension (truncation for Z_2^32) and back by sign extension of the ring's low 64
//! bits, so every value inside the ring's signed range and the program's bounds
//! (|v| < 2^62) round-trips.

use crate::MatDims;
use rayon::prelude::*;
use std::fmt::Debug;
use std::marker::PhantomData;

/// A power-of-two ring word.
pub trait Word:
    Copy + Debug + Default + PartialEq + Eq + PartialOrd + Ord + Send + Sync + 'static
{
    /// Bits of the ring (`k` of Z_2^k).
    const BITS: u32;
    /// Bytes of one encoded element.
    const BYTES: usize;
    const ZERO: Self;
    const ONE: Self;
    /// Whether the word holds a value: false only for a data-free twin's [`Shape`], whose
    /// protocol code skips work that only computes values (never what it sends).
    const DATA: bool = true;

    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn neg(self) -> Self;
    /// Sign-extend a public value into the ring.
    fn from_i64(v: i64) -> Self;
    /// The ring element as a signed integer of the ring's width (the low 64 bits of Z_2^128).
    fn to_i64(self) -> i64;
    /// A value below 2^128 (no reduction beyond the ring).
    fn from_u128(v: u128) -> Self;
    fn to_u128(self) -> u128;
    fn write(self, out: &mut Vec<u8>);
    fn read(bytes: &[u8]) -> Self;

    /// The word of Z_2^32 (or of this ring where it is no wider): the ring of a register
    /// whose readers need only its low 32 bits ([`crate::wires`]).
    type Narrow: Word;
    /// The low 32 bits.
    fn narrow(self) -> Self::Narrow;
    /// A narrow word as a word of this ring (zero-extended): congruent mod 2^32.
    fn widen(v: Self::Narrow) -> Self;
}

macro_rules! impl_word {
    ($t:ty, $signed:ty) => {
        impl Word for $t {
            type Narrow = u32;
            const BITS: u32 = <$t>::BITS;
            const BYTES: usize = std::mem::size_of::<$t>();
            const ZERO: Self = 0;
            const ONE: Self = 1;

            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn from_i64(v: i64) -> Self {
                v as i128 as $t
            }
            fn to_i64(self) -> i64 {
                self as $signed as i64
            }
            fn from_u128(v: u128) -> Self {
                v as $t
            }
            fn to_u128(self) -> u128 {
                self as u128
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(&bytes[..std::mem::size_of::<$t>()]);
                <$t>::from_le_bytes(b)
            }
            fn narrow(self) -> u32 {
                self as u32
            }
            fn widen(v: u32) -> Self {
                v as $t
            }
        }
    };
}

impl_word!(u32, i32);
impl_word!(u64, i64);
impl_word!(u128, i128);

/// A ring word without data: the share of a protocol's data-free twin, which runs the
/// protocol's own code to learn its messages ([`crate::dry_run`]). Arithmetic does nothing,
/// every value reads as zero, and an encoded word is `W::BYTES` zero bytes, so messages
/// keep their real lengths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape<W>(PhantomData<W>);

impl<W: Word> Word for Shape<W> {
    type Narrow = Shape<W::Narrow>;
    const BITS: u32 = W::BITS;
    const BYTES: usize = W::BYTES;
    const ZERO: Self = Shape(PhantomData);
    const ONE: Self = Shape(PhantomData);
    const DATA: bool = false;

    fn add(self, _: Self) -> Self {
        self
    }
    fn sub(self, _: Self) -> Self {
        self
    }
    fn mul(self, _: Self) -> Self {
        self
    }
    fn neg(self) -> Self {
        self
    }
    fn from_i64(_: i64) -> Self {
        Self::ZERO
    }
    fn to_i64(self) -> i64 {
        0
    }
    fn from_u128(_: u128) -> Self {
        Self::ZERO
    }
    fn to_u128(self) -> u128 {
        0
    }
    fn write(self, out: &mut Vec<u8>) {
        out.resize(out.len() + W::BYTES, 0);
    }
    fn read(_: &[u8]) -> Self {
        Self::ZERO
    }
    fn narrow(self) -> Shape<W::Narrow> {
        Shape(PhantomData)
    }
    fn widen(_: Shape<W::Narrow>) -> Self {
        Self::ZERO
    }
}

/// Encode words little-endian, back to back.
pub fn encode<W: Word>(words: &[W]) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * W::BYTES);
    for w in words {
        w.write(&mut out);
    }
    out
}

/// Decode exactly `n` words; `None` when the byte count is wrong.
pub fn decode<W: Word>(bytes: &[u8], n: usize) -> Option<Vec<W>> {
    if bytes.len() != n * W::BYTES {
        return None;
    }
    Some(bytes.chunks_exact(W::BYTES).map(W::read).collect())
}

/// `u · c` element-wise, each public `c` sign-extended into the ring.
pub(crate) fn scale_by<W: Word>(u: &[W], c: &[i64]) -> Vec<W> {
    u.par_iter()
        .zip(c)
        .map(|(&x, &c)| x.mul(W::from_i64(c)))
        .collect()
}

/// The product of secret shares and a public matrix, on every component of the shares
/// (`secret · public`, or `public · secret` when `public_left`).
pub(crate) fn matmul_public_words<W: Word, P: crate::planes::Words<W>>(
    secret: &P,
    public: &[i64],
    d: MatDims,
    public_left: bool,
) -> P {
    let p: Vec<W> = public.iter().map(|&v| W::from_i64(v)).collect();
    secret.map_components(|s| {
        if public_left {
            matmul_words(&p, s, d)
        } else {
            matmul_words(s, &p, d)
        }
    })
}

/// Row-major batched matrix product over the ring ([`crate::gemm`]).
pub(crate) fn matmul_words<W: Word>(a: &[W], b: &[W], d: MatDims) -> Vec<W> {
    if !W::DATA {
        // A twin's products have no values (see `Word::DATA`).
        return vec![W::ZERO; d.batch * d.m * d.n];
    }
    crate::gemm::gemm(a, b, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_every_ring() {
        for v in [0i64, 1, -1, i64::MIN, i64::MAX, -(1 << 62), 12345] {
            assert_eq!(u64::from_i64(v).to_i64(), v);
            assert_eq!(u128::from_i64(v).to_i64(), v);
        }
        for v in [0i64, 1, -1, i32::MIN.into(), i32::MAX.into(), -12345] {
            assert_eq!(u32::from_i64(v).to_i64(), v);
        }
        assert_eq!(u32::from_i64(-1), u32::MAX);
        assert_eq!(u32::from_i64(1 << 31).to_i64(), i64::from(i32::MIN));
        assert_eq!(u128::from_i64(-1), u128::MAX);
        let w: Vec<u128> = vec![1, u128::MAX, 1 << 100];
        assert_eq!(decode::<u128>(&encode(&w), 3), Some(w));
        assert_eq!(decode::<u128>(&[0u8; 15], 1), None);
    }
}
