//! The gate set ([`GateSet`]) of `shamir` and of its cost counter. `shamir`'s lookup is
//! the generic one over it ([`crate::func::lookup`]); the tests hold its own selection
//! ([`super::select`]) to the generic one. Bits are shared in the field (so `and` is a
//! product and `b2a` is nothing); masks are [`compare::random_bits`] (daBits with three
//! parties) and a statistical part from the subset streams.

use super::compare;
use super::cost::Counter;
use super::Shamir;
use crate::field::Fp;
use crate::func::gates::{flip, GateSet, Masks};
use crate::planes::{BitPlane, Len, Plane};
use crate::{Core, ProtocolError};

type R<T> = Result<T, ProtocolError>;

fn too_wide(high: u32) -> ProtocolError {
    ProtocolError::Invalid(format!(
        "shamir: a statistical mask of {high} bits is wider than the 64-bit stream draws"
    ))
}

impl GateSet for Shamir {
    type Bits = Vec<Fp>;

    fn domain(&self) -> crate::func::Domain {
        super::geometry::field_domain(self.geo.subsets)
    }
    fn masks(&mut self, n: usize, m: u32, high: u32) -> R<Masks<Vec<Fp>, Vec<Fp>>> {
        if high > 64 {
            return Err(too_wide(high));
        }
        let bits = compare::random_bits(self, m as usize * n)?;
        Ok(Masks {
            arith: bits.clone(),
            bits,
            high: self.streams.bounded(n, high),
            top: vec![Fp::ZERO; n],
            above: None,
        })
    }
    fn open_all(&mut self, x: &Vec<Fp>) -> R<Vec<u128>> {
        Ok(self
            .open(x, self.geo.t)?
            .into_iter()
            .map(Fp::value)
            .collect())
    }
    fn and(&mut self, a: &Vec<Fp>, b: &Vec<Fp>) -> R<Vec<Fp>> {
        self.mul(a, b)
    }
    fn either(&self, a: &Vec<Fp>, b: &Vec<Fp>) -> Vec<Fp> {
        self.add(a, b)
    }
    fn xor_public(&self, a: &Vec<Fp>, c: &BitPlane) -> Vec<Fp> {
        flip(self, a, c)
    }
    fn b2a(&mut self, a: &Vec<Fp>) -> R<Vec<Fp>> {
        Ok(a.clone())
    }
}

impl GateSet for Counter<'_> {
    type Bits = Len;

    fn domain(&self) -> crate::func::Domain {
        super::geometry::field_domain(self.geo.subsets)
    }
    fn masks(&mut self, n: usize, m: u32, high: u32) -> R<Masks<Len, Len>> {
        if high > 64 {
            return Err(too_wide(high));
        }
        let count = m as usize * n;
        self.rounds
            .extend(compare::random_bits_pattern(self.geo, count));
        Ok(Masks {
            bits: Len(count),
            arith: Len(count),
            high: Len(n),
            top: Len(n),
            above: None,
        })
    }
    fn open_all(&mut self, x: &Len) -> R<Vec<u128>> {
        self.rounds.push(self.geo.open_round(x.len(), self.geo.t));
        Ok(vec![0; x.len()])
    }
    fn and(&mut self, a: &Len, b: &Len) -> R<Len> {
        self.mul(a, b)
    }
    fn either(&self, a: &Len, _: &Len) -> Len {
        *a
    }
    fn xor_public(&self, a: &Len, _: &BitPlane) -> Len {
        *a
    }
    fn b2a(&mut self, a: &Len) -> R<Len> {
        Ok(*a)
    }
}
