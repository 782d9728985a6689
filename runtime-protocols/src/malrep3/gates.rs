//! The gate set ([`GateSet`]) of `mal-rep3`, dealer-free: bits are authenticated values
//! that are exactly 0 or 1 in Z_2^128, so `and` is a MAC'd product (a pair of the MAC
//! check), `either` an addition and `b2a` nothing; a mask is 128 daBits
//! ([`super::convert`]), so `r` is uniform in Z_2^128 and every part of it is a sum of
//! authenticated bits. Openings are checked on receipt (a hash from the other holder).
//! The tests hold `mal-rep3`'s own selection and lookup (the group's third party deals
//! and proves) to the generic ones.

use super::{auths, mac_planes, MalRep3};
use crate::cheat;
use crate::func::gates::{flip, pow2, scale, GateSet, Masks};
use crate::planes::{BitPlane, Mac, Pair, Plane};
use crate::word::Word;
use crate::{Core, ProtocolError};

type R<T> = Result<T, ProtocolError>;

impl<W: Word> GateSet for MalRep3<W> {
    type Bits = Mac<Pair<u128>>;

    fn domain(&self) -> crate::func::Domain {
        crate::func::Domain::Ring { bits: W::BITS }
    }

    fn masks(&mut self, n: usize, m: u32, _: u32) -> R<Masks<Self::Shares, Self::Bits>> {
        let k = W::BITS as usize;
        let bits = mac_planes(self.dabits(128 * n)?.ring);
        let bit = |j: usize| bits.slice(j * n..(j + 1) * n);
        let sum = |p: &Self, from: usize, to: usize| {
            (from..to).fold(Mac::<Pair<u128>>::zeros(n), |acc, j| {
                p.add(&acc, &scale(p, &bit(j), &vec![pow2((j - from) as u32); n]))
            })
        };
        let m = m as usize;
        Ok(Masks {
            bits: bits.slice(0..m * n),
            arith: bits.slice(0..m * n),
            high: sum(self, m, k),
            top: bit(k - 1),
            above: Some(sum(self, k, 128)),
        })
    }
    fn open_all(&mut self, x: &Self::Shares) -> R<Vec<u128>> {
        let k = if W::BITS >= 128 {
            u128::MAX
        } else {
            (1u128 << W::BITS) - 1
        };
        let values: Vec<_> = auths(x).iter().map(|a| a.x).collect();
        Ok(self
            .open_all(cheat::Kind::Compare, &values)?
            .into_iter()
            .map(|c: u128| c & k)
            .collect())
    }
    fn and(&mut self, a: &Self::Bits, b: &Self::Bits) -> R<Self::Bits> {
        self.mul(a, b)
    }
    fn either(&self, a: &Self::Bits, b: &Self::Bits) -> Self::Bits {
        self.add(a, b)
    }
    fn xor_public(&self, a: &Self::Bits, c: &BitPlane) -> Self::Bits {
        flip(self, a, c)
    }
    fn b2a(&mut self, a: &Self::Bits) -> R<Self::Shares> {
        Ok(a.clone())
    }
}
