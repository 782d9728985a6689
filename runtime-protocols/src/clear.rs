//! `clear`: the plaintext reference protocol. One party holds every value in the clear;
//! each primitive is the definition in [`crate::ring`]. Every secure protocol is tested
//! against it.

use crate::Core;
use crate::{ring, Bounds, MatDims, PartyId, Protocol, ProtocolError, TruncMode};
use rayon::prelude::*;

/// The plaintext protocol (one party, no communication).
#[derive(Debug, Default)]
pub struct Clear;

/// Row-major batched matrix product on wrapping 64-bit integers.
pub fn matmul_ring(a: &[i64], b: &[i64], d: MatDims) -> Vec<i64> {
    let (m, k, n) = (d.m, d.k, d.n);
    let mut out = vec![0i64; d.batch * m * n];
    out.par_chunks_mut(m * n).enumerate().for_each(|(bi, o)| {
        let a = if d.a_batched {
            &a[bi * m * k..(bi + 1) * m * k]
        } else {
            &a[..m * k]
        };
        let b = if d.b_batched {
            &b[bi * k * n..(bi + 1) * k * n]
        } else {
            &b[..k * n]
        };
        for i in 0..m {
            let row = &mut o[i * n..(i + 1) * n];
            for p in 0..k {
                let av = a[i * k + p];
                if av == 0 {
                    continue;
                }
                let brow = &b[p * n..(p + 1) * n];
                for (r, &bv) in row.iter_mut().zip(brow) {
                    *r = r.wrapping_add(av.wrapping_mul(bv));
                }
            }
        }
    });
    out
}

fn zip_with(a: &[i64], b: &[i64], f: impl Fn(i64, i64) -> i64 + Sync) -> Vec<i64> {
    a.par_iter()
        .zip(b.par_iter())
        .map(|(&x, &y)| f(x, y))
        .collect()
}

impl Core for Clear {
    type Share = i64;

    fn name(&self) -> &'static str {
        "clear"
    }
    fn party(&self) -> PartyId {
        0
    }
    fn parties(&self) -> usize {
        1
    }

    fn input(
        &mut self,
        owner: PartyId,
        values: Option<&[i64]>,
        len: usize,
    ) -> Result<Vec<i64>, ProtocolError> {
        match values {
            Some(v) if v.len() == len => Ok(v.to_vec()),
            Some(v) => Err(ProtocolError::Invalid(format!(
                "party {owner} input has {} values, the program expects {len}",
                v.len()
            ))),
            None => Err(ProtocolError::Invalid(format!(
                "party {owner} has no value for an input it owns"
            ))),
        }
    }

    fn reveal(&mut self, x: &[i64], _to: PartyId) -> Result<Option<Vec<i64>>, ProtocolError> {
        Ok(Some(x.to_vec()))
    }

    fn public(&self, values: &[i64]) -> Vec<i64> {
        values.to_vec()
    }

    fn add(&self, a: &[i64], b: &[i64]) -> Vec<i64> {
        zip_with(a, b, i64::wrapping_add)
    }
    fn sub(&self, a: &[i64], b: &[i64]) -> Vec<i64> {
        zip_with(a, b, i64::wrapping_sub)
    }
    fn add_public(&self, a: &[i64], c: &[i64]) -> Vec<i64> {
        zip_with(a, c, i64::wrapping_add)
    }
    fn mul_public(&self, a: &[i64], c: &[i64]) -> Vec<i64> {
        zip_with(a, c, i64::wrapping_mul)
    }
    fn matmul_public(
        &self,
        secret: &[i64],
        public: &[i64],
        d: MatDims,
        public_left: bool,
    ) -> Vec<i64> {
        if public_left {
            matmul_ring(public, secret, d)
        } else {
            matmul_ring(secret, public, d)
        }
    }

    fn mul(&mut self, a: &[i64], b: &[i64]) -> Result<Vec<i64>, ProtocolError> {
        Ok(zip_with(a, b, i64::wrapping_mul))
    }
    fn matmul(&mut self, a: &[i64], b: &[i64], d: MatDims) -> Result<Vec<i64>, ProtocolError> {
        Ok(matmul_ring(a, b, d))
    }
    fn lookup(&mut self, x: &[i64], table: &[i64], offset: i64) -> Result<Vec<i64>, ProtocolError> {
        x.iter()
            .map(|&v| {
                usize::try_from(v.wrapping_sub(offset))
                    .ok()
                    .and_then(|i| table.get(i).copied())
                    .ok_or(ProtocolError::LookupOutOfRange {
                        value: v,
                        offset,
                        len: table.len(),
                    })
            })
            .collect()
    }
}

impl Protocol for Clear {
    fn rescale(
        &mut self,
        x: &[i64],
        num: &[i64],
        den: &[i64],
        _bounds: Bounds,
        _mode: TruncMode,
    ) -> Result<Vec<i64>, ProtocolError> {
        Ok(x.par_iter()
            .zip(num.par_iter().zip(den.par_iter()))
            .map(|(&v, (&n, &d))| ring::rescale(v, n, d))
            .collect())
    }
    fn clamp(
        &mut self,
        x: &[i64],
        lo: i64,
        hi: i64,
        _b: Bounds,
    ) -> Result<Vec<i64>, ProtocolError> {
        Ok(x.par_iter().map(|&v| v.clamp(lo, hi)).collect())
    }
    fn max(&mut self, a: &[i64], b: &[i64], _bounds: Bounds) -> Result<Vec<i64>, ProtocolError> {
        Ok(zip_with(a, b, i64::max))
    }
    fn argmax(
        &mut self,
        x: &[i64],
        row_len: usize,
        select_last: bool,
        _b: Bounds,
    ) -> Result<Vec<i64>, ProtocolError> {
        Ok(x.chunks(row_len.max(1))
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] || (select_last && v == row[best]) {
                        best = i;
                    }
                }
                best as i64
            })
            .collect())
    }
}
