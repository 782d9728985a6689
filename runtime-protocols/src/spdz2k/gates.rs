//! The gate set ([`GateSet`]) of `spdz2k` parties: bits are authenticated values that
//! are exactly 0 or 1 in Z_2^128 (as in [`super::select`]), so `and` is a Beaver product,
//! `either` an addition and `b2a` nothing; the dealer's masks are uniform in Z_2^128, so an
//! opening of all 128 bits reveals nothing above the `k` the reading keeps. Every opening
//! goes to the check ledger. The tests hold `spdz2k`'s own selection and lookup to the
//! generic ones over it; the dealer's side is in [`super::dealer`].

use super::{auths, macs, Spdz2k};
use crate::cheat;
use crate::func::gates::{GateSet, Masks};
use crate::planes::{BitPlane, Mac, Plane};
use crate::word::Word;
use crate::{Core, ProtocolError};

type R<T> = Result<T, ProtocolError>;

/// Values per mask: its `m` bits, `h`, the top bit, `⌊r/2^k⌋`.
pub(super) fn mask_count(n: usize, m: u32) -> usize {
    (m as usize + 3) * n
}

/// The dealer's values of `n` masks of `m` low bits in a ring of `k < 128` bits, for `r`
/// uniform in Z_2^128: the bits (bit-major), `h = ⌊(r mod 2^k)/2^m⌋`, bit `k − 1` of `r`,
/// then `⌊r/2^k⌋`.
pub(super) fn mask_values(n: usize, m: u32, k: u32, r: &[u128]) -> Vec<u128> {
    let low = |v: u128| v & ((1u128 << k) - 1);
    let mut out = Vec::with_capacity(mask_count(n, m));
    for j in 0..m {
        out.extend(r.iter().map(|&v| (v >> j) & 1));
    }
    out.extend(r.iter().map(|&v| low(v).checked_shr(m).unwrap_or(0)));
    out.extend(r.iter().map(|&v| (v >> (k - 1)) & 1));
    out.extend(r.iter().map(|&v| v >> k));
    out
}

impl<W: Word> GateSet for Spdz2k<W> {
    type Bits = Mac<Vec<u128>>;

    fn domain(&self) -> crate::func::Domain {
        crate::func::Domain::Ring { bits: W::BITS }
    }

    fn masks(&mut self, n: usize, m: u32, _: u32) -> R<Masks<Self::Shares, Self::Bits>> {
        let all = macs(self.take_auth(mask_count(n, m))?);
        let m = m as usize;
        let bits = all.slice(0..m * n);
        Ok(Masks {
            arith: bits.clone(),
            bits,
            high: all.slice(m * n..(m + 1) * n),
            top: all.slice((m + 1) * n..(m + 2) * n),
            above: Some(all.slice((m + 2) * n..(m + 3) * n)),
        })
    }
    fn open_all(&mut self, x: &Self::Shares) -> R<Vec<u128>> {
        let k = u128::from(Self::k_mask());
        Ok(self
            .open_one(cheat::Kind::Compare, &auths(x))?
            .into_iter()
            .map(|c| c & k)
            .collect())
    }
    fn and(&mut self, a: &Self::Bits, b: &Self::Bits) -> R<Self::Bits> {
        self.mul(a, b)
    }
    fn either(&self, a: &Self::Bits, b: &Self::Bits) -> Self::Bits {
        self.add(a, b)
    }
    fn xor_public(&self, a: &Self::Bits, c: &BitPlane) -> Self::Bits {
        crate::func::gates::flip(self, a, c)
    }
    fn b2a(&mut self, a: &Self::Bits) -> R<Self::Shares> {
        Ok(a.clone())
    }
}
