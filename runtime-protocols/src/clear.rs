//! `clear`: the plaintext reference protocol. One party holds every value in the clear;
//! each primitive is the definition in [`crate::ring`]. Every secure protocol is tested
//! against it.

use crate::planes::{BitPlane, Plane};
use crate::Core;
use crate::{ring, Bounds, MatDims, PartyId, ProtocolError, Requant, TruncMode};
use rayon::prelude::*;

/// The plaintext protocol (one party, no communication).
#[derive(Debug, Default)]
pub struct Clear;

/// Row-major batched matrix product on wrapping 64-bit integers ([`crate::gemm`]).
pub fn matmul_ring(a: &[i64], b: &[i64], d: MatDims) -> Vec<i64> {
    crate::gemm::gemm_i64(a, b, d)
}

/// Elements per rayon task: below it, splitting costs more than the work.
const MIN_TASK: usize = 1 << 12;

fn zip_with(a: &[i64], b: &[i64], f: impl Fn(i64, i64) -> i64 + Sync) -> Vec<i64> {
    a.par_iter()
        .zip(b.par_iter())
        .with_min_len(MIN_TASK)
        .map(|(&x, &y)| f(x, y))
        .collect()
}

impl Core for Clear {
    type Shares = Vec<i64>;

    /// No traffic either way; the operands' layout does the least local work.
    fn products_open_operands(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "clear"
    }
    fn party(&self) -> PartyId {
        0
    }
    fn values<'s>(&self, shares: &'s Vec<i64>) -> Option<&'s [i64]> {
        Some(shares)
    }
    fn shares_of_values(&self, values: Vec<i64>) -> Option<Vec<i64>> {
        Some(values)
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

    fn reveal(&mut self, x: &Vec<i64>, _to: PartyId) -> Result<Option<Vec<i64>>, ProtocolError> {
        Ok(Some(x.to_vec()))
    }

    fn public(&self, values: &[i64]) -> Vec<i64> {
        values.to_vec()
    }

    fn add(&self, a: &Vec<i64>, b: &Vec<i64>) -> Vec<i64> {
        zip_with(a, b, i64::wrapping_add)
    }
    fn sub(&self, a: &Vec<i64>, b: &Vec<i64>) -> Vec<i64> {
        zip_with(a, b, i64::wrapping_sub)
    }
    fn add_public(&self, a: &Vec<i64>, c: &[i64]) -> Vec<i64> {
        zip_with(a, c, i64::wrapping_add)
    }
    fn mul_public(&self, a: &Vec<i64>, c: &[i64]) -> Vec<i64> {
        zip_with(a, c, i64::wrapping_mul)
    }
    fn matmul_public(
        &self,
        secret: &Vec<i64>,
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

    fn mul(&mut self, a: &Vec<i64>, b: &Vec<i64>) -> Result<Vec<i64>, ProtocolError> {
        Ok(zip_with(a, b, i64::wrapping_mul))
    }
    fn matmul(
        &mut self,
        a: &Vec<i64>,
        b: &Vec<i64>,
        d: MatDims,
    ) -> Result<Vec<i64>, ProtocolError> {
        Ok(matmul_ring(a, b, d))
    }
}

/// The gate set of a party that hides nothing from anyone: its masks are zero, so the
/// generic selection and lookup run on `clear` by the same steps as on a secret-sharing
/// protocol (the tests below hold them to the definitions).
impl crate::func::gates::GateSet for Clear {
    type Bits = BitPlane;

    fn domain(&self) -> crate::func::Domain {
        crate::func::Domain::Ring { bits: 64 }
    }
    fn masks(
        &mut self,
        n: usize,
        m: u32,
        _: u32,
    ) -> Result<crate::func::gates::Masks<Vec<i64>, BitPlane>, ProtocolError> {
        let m = m as usize;
        Ok(crate::func::gates::Masks {
            bits: BitPlane::zeros(m * n),
            arith: vec![0; m * n],
            high: vec![0; n],
            top: vec![0; n],
            above: None,
        })
    }
    fn open_all(&mut self, x: &Vec<i64>) -> Result<Vec<u128>, ProtocolError> {
        Ok(x.iter().map(|&v| u128::from(v as u64)).collect())
    }
    fn and(&mut self, a: &BitPlane, b: &BitPlane) -> Result<BitPlane, ProtocolError> {
        Ok(a.and(b))
    }
    fn either(&self, a: &BitPlane, b: &BitPlane) -> BitPlane {
        a.xor(b)
    }
    fn xor_public(&self, a: &BitPlane, c: &BitPlane) -> BitPlane {
        a.xor(c)
    }
    fn b2a(&mut self, a: &BitPlane) -> Result<Vec<i64>, ProtocolError> {
        Ok((0..a.len()).map(|i| a.get(i) as i64).collect())
    }
}

/// `clear` sits on the same seam as the secure protocols: its selection is the definition
/// (`Requant::apply`), and it overrides every functionality with the plaintext definition
/// of [`crate::ring`], so [`crate::func`]'s defaults run on plaintext too — which is how
/// the tests below check them against the definitions.
impl crate::func::Selection for Clear {
    fn select_with(
        &mut self,
        x: &Vec<i64>,
        q: &Requant,
        _: Bounds,
        _: &crate::semi2k::select::Plan,
    ) -> Result<Vec<i64>, ProtocolError> {
        Ok(x.iter().enumerate().map(|(i, &v)| q.apply(i, v)).collect())
    }
    fn requantize(
        &mut self,
        x: &Vec<i64>,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Vec<i64>, ProtocolError> {
        // One pass of the definition (exact in either mode: clear has no truncation error).
        if q.num.len() != x.len() || q.den.len() != x.len() || q.zp.len() != x.len() {
            return crate::requantize_unfused(self, x, q, bounds, mode);
        }
        Ok(x.par_iter()
            .with_min_len(MIN_TASK)
            .enumerate()
            .map(|(i, &v)| q.apply(i, v))
            .collect())
    }
    fn rescale(
        &mut self,
        x: &Vec<i64>,
        num: &[i64],
        den: &[i64],
        _bounds: Bounds,
        _mode: TruncMode,
    ) -> Result<Vec<i64>, ProtocolError> {
        Ok(x.par_iter()
            .zip(num.par_iter().zip(den.par_iter()))
            .with_min_len(MIN_TASK)
            .map(|(&v, (&n, &d))| ring::rescale(v, n, d))
            .collect())
    }
    fn clamp(
        &mut self,
        x: &Vec<i64>,
        lo: i64,
        hi: i64,
        _b: Bounds,
    ) -> Result<Vec<i64>, ProtocolError> {
        Ok(x.par_iter()
            .with_min_len(MIN_TASK)
            .map(|&v| v.clamp(lo, hi))
            .collect())
    }
    fn max(
        &mut self,
        a: &Vec<i64>,
        b: &Vec<i64>,
        _bounds: Bounds,
    ) -> Result<Vec<i64>, ProtocolError> {
        Ok(zip_with(a, b, i64::max))
    }
    fn argmax(
        &mut self,
        x: &Vec<i64>,
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
    fn lookup(
        &mut self,
        x: &Vec<i64>,
        table: &[i64],
        offset: i64,
    ) -> Result<Vec<i64>, ProtocolError> {
        let index = |v: i64| usize::try_from(v.wrapping_sub(offset)).ok();
        let outside = |v: &i64| index(*v).is_none_or(|i| i >= table.len());
        // Checked first, in chunks (rayon's per-element search costs more than the
        // check), so that the lookup itself is an indexed map that fills its output in
        // place.
        let first = x
            .par_chunks(1 << 14)
            .find_map_first(|c| c.iter().copied().find(outside));
        if let Some(value) = first {
            return Err(ProtocolError::LookupOutOfRange {
                value,
                offset,
                len: table.len(),
            });
        }
        Ok(x.par_iter()
            .with_min_len(MIN_TASK)
            .map(|&v| {
                index(v)
                    .and_then(|i| table.get(i))
                    .copied()
                    .unwrap_or_default()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::func::{self, Selection};
    use proptest::prelude::*;

    /// Values in `b`, from `seed`.
    fn within(b: Bounds, n: usize, seed: u64) -> Vec<i64> {
        crate::testutil::values(n, b.lo, b.hi, seed)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The functionalities written once over the selection (`func`), run on
        /// plaintext, equal their definitions: requantization with ties and per-element
        /// parameters, rescale by any sign of multiplier, clamp, max and argmax. (A
        /// selection that is off by one where `v % 7 == 3` fails this at once.)
        #[test]
        fn the_generic_functionalities_equal_their_definitions(
            lo in -(1i64 << 24)..0,
            span in 1i64..(1 << 25),
            num in -(1i64 << 20)..(1 << 20),
            shift in 0u32..30,
            zp in -128i64..128,
            clamp in 1i64..300,
            row in 1usize..9,
            last in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let n = 24;
            let b = Bounds { lo, hi: lo + span };
            let x = within(b, n, seed);
            let y = within(b, n, seed ^ 1);
            let den = 1i64 << shift;
            let q = Requant {
                num: vec![num.abs(); n],
                den: vec![den; n],
                zp: vec![zp; n],
                lo: -clamp,
                hi: clamp,
            };
            let mut c = Clear;
            let exact = TruncMode::Exact;
            prop_assert_eq!(
                func::requantize(&mut c, &x, &q, b).unwrap(),
                Selection::requantize(&mut c, &x, &q, b, exact).unwrap()
            );
            let (nums, dens) = (vec![num; n], vec![den; n]);
            prop_assert_eq!(
                func::rescale(&mut c, &x, &nums, &dens, b).unwrap(),
                Selection::rescale(&mut c, &x, &nums, &dens, b, exact).unwrap()
            );
            prop_assert_eq!(
                func::clamp(&mut c, &x, -clamp, clamp, b).unwrap(),
                Selection::clamp(&mut c, &x, -clamp, clamp, b).unwrap()
            );
            prop_assert_eq!(
                func::max(&mut c, &x, &y, b).unwrap(),
                Selection::max(&mut c, &x, &y, b).unwrap()
            );
            let rows = &x[..n / row * row].to_vec();
            prop_assert_eq!(
                func::argmax(&mut c, rows, row, last, b).unwrap(),
                Selection::argmax(&mut c, rows, row, last, b).unwrap()
            );
            // The generic selection (zero masks) and lookup on plaintext.
            let mut g = crate::func::gates::Generic(Clear);
            prop_assert_eq!(
                Selection::requantize(&mut g, &x, &q, b, exact).unwrap(),
                Selection::requantize(&mut c, &x, &q, b, exact).unwrap()
            );
            prop_assert_eq!(
                Selection::rescale(&mut g, &x, &nums, &dens, b, exact).unwrap(),
                Selection::rescale(&mut c, &x, &nums, &dens, b, exact).unwrap()
            );
            let table: Vec<i64> = (0..=span.min(300)).map(|i| i * 7 % 23 - 11).collect();
            let idx: Vec<i64> = x.iter().map(|&v| lo + (v - lo) % table.len() as i64).collect();
            prop_assert_eq!(g.lookup(&idx, &table, lo).unwrap(), c.lookup(&idx, &table, lo).unwrap());
        }
    }

    /// A lookup reads `table[x − offset]`, and names the first value outside the table
    /// (below it, past its end, or so far off that the index wraps).
    #[test]
    fn a_lookup_reads_the_table_and_names_the_first_value_outside_it() {
        let table = [10, 20, 30];
        let mut x = vec![5, 7, 6];
        x.extend(vec![6; 1 << 15]);
        let got = Clear.lookup(&x, &table, 5).unwrap();
        assert_eq!(&got[..3], &[10, 30, 20]);
        assert!(got[3..].iter().all(|&v| v == 20));
        for bad in [4, 8, i64::MIN] {
            let mut y = x.clone();
            y[20_000] = bad;
            y[30_000] = 9;
            match Clear.lookup(&y, &table, 5) {
                Err(ProtocolError::LookupOutOfRange {
                    value,
                    offset: 5,
                    len: 3,
                }) => {
                    assert_eq!(value, bad)
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
