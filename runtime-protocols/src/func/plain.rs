//! A one-party plaintext core with the gate set and nothing else: its selection and
//! lookup are the generic defaults, run against the integer semantics (`ring::rescale`,
//! `Requant::apply`, the table) in rings of 32, 64 and 128 bits and in the field of
//! `shamir`, with real random masks, so every reading of an opening (wrapped or not, ties,
//! both parities) is exercised without a network.

use super::gates::{GateSet, Masks};
use super::Domain;
use crate::field::Fp;
use crate::planes::{BitPlane, Plane};
use crate::stream::Stream;
use crate::{Bounds, Core, MatDims, PartyId, ProtocolError, Requant};

type R<T> = Result<T, ProtocolError>;

/// The party of a one-party protocol: its shares are the values, as residues.
pub struct Plain {
    domain: Domain,
    rng: Stream,
}

impl Plain {
    pub fn new(domain: Domain, seed: u8) -> Plain {
        Plain {
            domain,
            rng: Stream::new([seed; 32], 0),
        }
    }

    fn reduce(&self, v: u128) -> u128 {
        match self.domain {
            Domain::Ring { bits } if bits < 128 => v & ((1u128 << bits) - 1),
            Domain::Ring { .. } => v,
            Domain::Field { .. } => Fp::new(v).value(),
        }
    }
    fn of_i64(&self, v: i64) -> u128 {
        match self.domain {
            Domain::Ring { .. } => self.reduce(v as i128 as u128),
            Domain::Field { .. } => Fp::from_i64(v).value(),
        }
    }
    fn plus(&self, a: u128, b: u128) -> u128 {
        match self.domain {
            Domain::Ring { .. } => self.reduce(a.wrapping_add(b)),
            Domain::Field { .. } => (Fp::new(a) + Fp::new(b)).value(),
        }
    }
    fn minus(&self, a: u128, b: u128) -> u128 {
        match self.domain {
            Domain::Ring { .. } => self.reduce(a.wrapping_sub(b)),
            Domain::Field { .. } => (Fp::new(a) - Fp::new(b)).value(),
        }
    }
    fn times(&self, a: u128, b: u128) -> u128 {
        match self.domain {
            Domain::Ring { .. } => self.reduce(a.wrapping_mul(b)),
            Domain::Field { .. } => (Fp::new(a) * Fp::new(b)).value(),
        }
    }
    /// The signed value of a residue.
    fn signed(&self, v: u128) -> i64 {
        match self.domain {
            Domain::Ring { bits } => ((v << (128 - bits)) as i128 >> (128 - bits)) as i64,
            Domain::Field { .. } => Fp::new(v).to_i128() as i64,
        }
    }
    fn random(&mut self, n: usize, bits: u32) -> Vec<u128> {
        let mask = if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        crate::semi2k::prep::random_words::<u128>(&mut self.rng, n)
            .into_iter()
            .map(|v| v & mask)
            .collect()
    }
    fn zip(&self, a: &[u128], b: &[u128], f: impl Fn(&Self, u128, u128) -> u128) -> Vec<u128> {
        a.iter().zip(b).map(|(&x, &y)| f(self, x, y)).collect()
    }
}

impl Core for Plain {
    type Shares = Vec<u128>;

    fn name(&self) -> &'static str {
        "plain"
    }
    fn party(&self) -> PartyId {
        0
    }
    fn parties(&self) -> usize {
        1
    }
    fn input(&mut self, _: PartyId, values: Option<&[i64]>, len: usize) -> R<Vec<u128>> {
        let v = values.ok_or_else(|| ProtocolError::Invalid("no input".into()))?;
        assert_eq!(v.len(), len);
        Ok(self.public(v))
    }
    fn reveal(&mut self, x: &Vec<u128>, _: PartyId) -> R<Option<Vec<i64>>> {
        Ok(Some(x.iter().map(|&v| self.signed(v)).collect()))
    }
    fn public(&self, values: &[i64]) -> Vec<u128> {
        values.iter().map(|&v| self.of_i64(v)).collect()
    }
    fn add(&self, a: &Vec<u128>, b: &Vec<u128>) -> Vec<u128> {
        self.zip(a, b, Self::plus)
    }
    fn sub(&self, a: &Vec<u128>, b: &Vec<u128>) -> Vec<u128> {
        self.zip(a, b, Self::minus)
    }
    fn add_public(&self, a: &Vec<u128>, c: &[i64]) -> Vec<u128> {
        self.add(a, &self.public(c))
    }
    fn mul_public(&self, a: &Vec<u128>, c: &[i64]) -> Vec<u128> {
        self.zip(a, &self.public(c), Self::times)
    }
    fn matmul_public(&self, s: &Vec<u128>, c: &[i64], d: MatDims, public_left: bool) -> Vec<u128> {
        let c = self.public(c);
        let (a, b) = if public_left { (&c, s) } else { (s, &c) };
        let mut out = vec![0; d.batch * d.m * d.n];
        for bt in 0..d.batch {
            for i in 0..d.m {
                for j in 0..d.n {
                    let mut acc = 0;
                    for t in 0..d.k {
                        let x = a[(bt * d.m + i) * d.k + t];
                        let y = b[(bt * d.k + t) * d.n + j];
                        acc = self.plus(acc, self.times(x, y));
                    }
                    out[(bt * d.m + i) * d.n + j] = acc;
                }
            }
        }
        out
    }
    fn mul(&mut self, a: &Vec<u128>, b: &Vec<u128>) -> R<Vec<u128>> {
        Ok(self.zip(a, b, Self::times))
    }
    fn matmul(&mut self, a: &Vec<u128>, b: &Vec<u128>, d: MatDims) -> R<Vec<u128>> {
        let a: Vec<i64> = a.iter().map(|&v| self.signed(v)).collect();
        Ok(self.matmul_public(b, &a, d, true))
    }
}

impl GateSet for Plain {
    type Bits = BitPlane;

    fn domain(&self) -> Domain {
        self.domain
    }
    fn masks(&mut self, n: usize, m: u32, high: u32) -> R<Masks<Vec<u128>, BitPlane>> {
        let (low, h, k) = match self.domain {
            Domain::Ring { bits } => {
                let r = self.random(n, bits);
                let h = r.iter().map(|&v| v.checked_shr(m).unwrap_or(0)).collect();
                (r, h, bits)
            }
            Domain::Field { .. } => (self.random(n, m), self.random(n, high), 0),
        };
        let bit = |v: u128, j: u32| (v >> j) & 1;
        let bits: Vec<u64> = (0..m)
            .flat_map(|j| low.iter().map(move |&v| bit(v, j) as u64))
            .collect();
        let top = match k {
            0 => vec![0; n],
            k => low.iter().map(|&v| bit(v, k - 1)).collect(),
        };
        Ok(Masks {
            arith: bits.iter().map(|&b| u128::from(b)).collect(),
            bits: BitPlane::from_bits(&bits),
            high: h,
            top,
            above: None,
        })
    }
    fn open_all(&mut self, x: &Vec<u128>) -> R<Vec<u128>> {
        Ok(x.clone())
    }
    fn and(&mut self, a: &BitPlane, b: &BitPlane) -> R<BitPlane> {
        Ok(a.and(b))
    }
    fn either(&self, a: &BitPlane, b: &BitPlane) -> BitPlane {
        a.xor(b)
    }
    fn xor_public(&self, a: &BitPlane, c: &BitPlane) -> BitPlane {
        a.xor(c)
    }
    fn b2a(&mut self, a: &BitPlane) -> R<Vec<u128>> {
        Ok((0..a.len()).map(|i| u128::from(a.get(i))).collect())
    }
}

/// Nothing to override: a core with the gate set has every functionality by default (the
/// generic selection and lookup, and the functionalities over them).
impl super::Selection for Plain {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{requants, values, Call};
    use proptest::prelude::*;

    const DOMAINS: [Domain; 4] = [
        Domain::Ring { bits: 32 },
        Domain::Ring { bits: 64 },
        Domain::Ring { bits: 128 },
        Domain::Field {
            bits: 126,
            stat: 40,
        },
    ];

    /// `calls` on `x`, `y` through the generic selection, against the plaintext meaning.
    fn check(domain: Domain, seed: u8, x: &[i64], y: &[i64], calls: &[Call]) {
        let mut p = Plain::new(domain, seed);
        let (xs, ys) = (p.public(x), p.public(y));
        for call in calls {
            let got = call.apply(&mut p, &xs, &ys);
            match got.and_then(|g| p.reveal(&g, 0)) {
                Ok(got) => assert_eq!(got, Some(call.clear(x, y)), "{call:?} in {domain:?}"),
                // A small ring refuses values whose top-bit reading would wrap.
                Err(ProtocolError::Invalid(e))
                    if domain == Domain::Ring { bits: 32 } && e.contains("masked opening") => {}
                Err(e) => panic!("{call:?} in {domain:?}: {e}"),
            }
        }
    }

    #[test]
    fn the_fixed_cases_match_the_semantics_in_every_domain() {
        let b = Bounds {
            lo: -5000,
            hi: 5000,
        };
        let mut x = values(48, b.lo, b.hi, 1);
        let y = values(48, b.lo, b.hi, 2);
        x[3] = 1 << 9; // a tie of the `2^10` requantization, odd quotient 0 → even
        x[4] = 3 << 9; // and an odd one
        x[5] = x[7];
        let mut calls: Vec<Call> = requants(48)
            .into_iter()
            .map(|q| Call::Requant(q, b))
            .collect();
        calls.extend([
            Call::Rescale(vec![3; 48], vec![7; 48], b),
            Call::Rescale((0..48).map(|i| i - 24).collect(), vec![12; 48], b),
            Call::Clamp(-20, 100, b),
            Call::Max(b),
            Call::Argmax(8, false, b),
            Call::Argmax(6, true, b),
            Call::Lookup((0..10_001).map(|i| (i * 37) % 91 - 45).collect(), b.lo),
        ]);
        for d in DOMAINS {
            for seed in 0..4 {
                check(d, seed, &x, &y, &calls);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn requantizations_match_the_semantics(
            lo in -100_000i64..0,
            width in 1i64..200_000,
            num in 0i64..1 << 20,
            shift in 0u32..24,
            odd in 1i64..1000,
            zp in -50i64..50,
            seed in any::<u8>(),
            pick in 0usize..4,
        ) {
            let b = Bounds { lo, hi: lo + width };
            let n = 24;
            let x = values(n, b.lo, b.hi, u64::from(seed));
            let den: Vec<i64> = (0..n as i64).map(|i| match i % 3 {
                0 => 1 << shift,
                1 => odd,
                _ => 2 * odd,
            }).collect();
            let q = Requant { num: vec![num; n], den: den.clone(), zp: vec![zp; n], lo: -128, hi: 127 };
            let calls = [
                Call::Requant(q, b),
                Call::Rescale(vec![num; n], den, b),
                Call::Clamp(lo / 2, lo / 2 + width / 3, b),
            ];
            check(DOMAINS[pick], seed, &x, &x, &calls);
        }
    }
}
