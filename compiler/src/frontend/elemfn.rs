//! Element-wise float functions of an integer-valued real `i · s`, evaluated for every
//! integer `i` of the input's range into a lookup table of quantized results.
//!
//! Piecewise-linear functions (LeakyRelu, HardSigmoid, HardSwish) are computed exactly on
//! rationals and rounded half to even, so a table entry is the correctly rounded value of
//! the ONNX definition (onnxruntime's f32 arithmetic may land on the other side of a tie).
//! Transcendental ones (Sigmoid) use f64, far finer than one output step.

use super::rational::Rational;
use super::sym::ElemFn;
use super::{Importer, R};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::DType;
use qmpc_semantics::ring;

impl ElemFn {
    /// `round_half_even(f(i · s) / ys)`: the quantized result before the zero point.
    pub fn quantized(&self, i: i64, s: Rational, ys: Rational) -> R<i64> {
        if let Some(q) = self.exact(i, s, ys) {
            return Ok(q);
        }
        let y = self.f64(i as f64 * s.to_f64());
        if !y.is_finite() {
            return Err(format!(
                "{self:?} of {} is not finite",
                i as f64 * s.to_f64()
            ));
        }
        Ok((y / ys.to_f64()).round_ties_even() as i64)
    }

    /// The exact rounded value where the function is rational and nothing overflows.
    fn exact(&self, i: i64, s: Rational, ys: Rational) -> Option<i64> {
        let x = Rational::int(i).checked_mul(s)?;
        let y = match self {
            ElemFn::LeakyRelu(alpha) => {
                if i < 0 {
                    x.checked_mul(Rational::from_f32(*alpha)?)?
                } else {
                    x
                }
            }
            ElemFn::HardSigmoid { alpha, beta } => hard_sigmoid(x, *alpha, *beta)?,
            ElemFn::HardSwish => x.checked_mul(hard_sigmoid(x, 1.0 / 6.0, 0.5)?)?,
            ElemFn::Sigmoid | ElemFn::Expr(_) | ElemFn::ChannelAffine(_) => return None,
        };
        let q = y.checked_div(ys)?;
        Some(ring::div_round_half_even(q.num, q.den) as i64)
    }

    /// The function in f64 (where no exact value exists).
    fn f64(&self, x: f64) -> f64 {
        self.expr().map_or(f64::NAN, |e| e.eval(x))
    }
}

/// A piecewise-linear function as integer arithmetic that reproduces its table exactly:
/// `HardSigmoid` as `clamp(round((i·a + b) / den))` (a local affine map, one truncation and
/// a clamp), `HardSwish` as `round(i · clamp(i·a + b, 0, den) · m)` (one product more).
/// Far cheaper under MPC than a lookup, which costs a one-hot vector per element.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Affine {
    /// `clamp(round((i·a + b) / den), lo, hi)`, zero point included.
    Clamped {
        a: i64,
        b: i64,
        den: i64,
        lo: i64,
        hi: i64,
    },
    /// `clamp(round(i · clamp(i·a + b, 0, den) · num / mden) + zp, lo, hi)`.
    Gated {
        a: i64,
        b: i64,
        den: i64,
        num: i64,
        mden: i64,
        zp: i64,
        lo: i64,
        hi: i64,
    },
}

/// Magnitudes every register of an [`Affine`] must stay under: far inside the ring, so that
/// the ring chosen from the bounds stays the one the rest of the program needs.
const AFFINE_BOUND: i128 = 1 << 40;
/// The bound on a rescale's product `x · num` and its divisor: what a convolution's
/// requantization (a 24-bit multiplier on a wide accumulator) needs already.
const PRODUCT_BOUND: i128 = 1 << 56;

impl Affine {
    fn eval(self, i: i64) -> i64 {
        let i = i as i128;
        match self {
            Affine::Clamped { a, b, den, lo, hi } => {
                ring::div_round_half_even(i * a as i128 + b as i128, den as i128)
                    .clamp(lo as i128, hi as i128) as i64
            }
            Affine::Gated {
                a,
                b,
                den,
                num,
                mden,
                zp,
                lo,
                hi,
            } => {
                let h = (i * a as i128 + b as i128).clamp(0, den as i128);
                let t = ring::div_round_half_even(i * h * num as i128, mden as i128);
                (t + zp as i128).clamp(lo as i128, hi as i128) as i64
            }
        }
    }

    /// The smallest-denominator form of `f` that equals `table` (indexed from `lo_in`) on
    /// every input, if any fits [`AFFINE_BOUND`].
    fn find(
        f: &ElemFn,
        s: Rational,
        ys: Rational,
        zp: i64,
        (qlo, qhi): (i64, i64),
        lo_in: i64,
        table: &[i64],
    ) -> Option<Affine> {
        let (alpha, beta) = match *f {
            ElemFn::HardSigmoid { alpha, beta } => (alpha, beta),
            ElemFn::HardSwish => (1.0 / 6.0, 0.5),
            _ => return None,
        };
        let alpha = Rational::from_f32(alpha)?;
        let beta = Rational::from_f32(beta)?;
        let hi_in = lo_in + table.len() as i64 - 1;
        let imax = (lo_in.unsigned_abs().max(hi_in.unsigned_abs()) as i128).max(1);
        let round = |r: Rational| ring::div_round_half_even(r.num, r.den);
        for k in 4..40 {
            let den = 1i128 << k;
            let d = Rational::int(den as i64);
            let cand = match f {
                ElemFn::HardSigmoid { .. } => {
                    // In output steps: i·(alpha·s/ys) + beta/ys, plus the zero point.
                    let a = round(alpha.checked_mul(s)?.checked_div(ys)?.checked_mul(d)?);
                    let b = round(beta.checked_div(ys)?.checked_mul(d)?) + zp as i128 * den;
                    let one = round(Rational::int(1).checked_div(ys)?);
                    let (lo, hi) = (qlo.max(zp), qhi.min((one + zp as i128) as i64));
                    if lo > hi || (imax * a.abs() + b.abs()) >= AFFINE_BOUND {
                        return None;
                    }
                    Affine::Clamped {
                        a: a as i64,
                        b: b as i64,
                        den: den as i64,
                        lo,
                        hi,
                    }
                }
                _ => {
                    // The gate clamp(alpha·x + beta, 0, 1) in units of 1/den, then
                    // i · gate · s / (ys · den).
                    let a = round(alpha.checked_mul(s)?.checked_mul(d)?);
                    let b = round(beta.checked_mul(d)?);
                    let m = s.checked_div(ys)?.checked_div(d)?;
                    if imax * a.abs() + b.abs() >= AFFINE_BOUND
                        || imax * den >= AFFINE_BOUND
                        || imax * den * m.num.abs() >= PRODUCT_BOUND
                        || m.den >= PRODUCT_BOUND
                    {
                        return None;
                    }
                    Affine::Gated {
                        a: a as i64,
                        b: b as i64,
                        den: den as i64,
                        num: m.num as i64,
                        mden: m.den as i64,
                        zp,
                        lo: qlo,
                        hi: qhi,
                    }
                }
            };
            if (lo_in..=hi_in).zip(table).all(|(i, &t)| cand.eval(i) == t) {
                return Some(cand);
            }
        }
        None
    }
}

impl Importer<'_> {
    /// The quantized `f(v · s)` without a lookup, where `f` is piecewise linear and an
    /// integer form reproduces `table` (what the lookup would hold) on every input.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn piecewise(
        &mut self,
        f: &ElemFn,
        v: NodeIndex,
        s: Rational,
        ys: Rational,
        zp: i64,
        range: (i64, i64),
        table: &[i64],
        dtype: DType,
    ) -> R<Option<NodeIndex>> {
        let lo_in = self.g.decl(v).lo;
        let Some(form) = Affine::find(f, s, ys, zp, range, lo_in, table) else {
            return Ok(None);
        };
        let affine = |imp: &mut Self, a: i64, b: i64| -> R<NodeIndex> {
            let u = imp.times(v, a)?;
            imp.add_scalar(u, b)
        };
        let out = match form {
            Affine::Clamped { a, b, den, lo, hi } => {
                let u = affine(self, a, b)?;
                let r = self.rescale_by(u, 1, den)?;
                self.clamp_to(r, lo, hi, Some(dtype))?
            }
            Affine::Gated {
                a,
                b,
                den,
                num,
                mden,
                zp,
                lo,
                hi,
            } => {
                let u = affine(self, a, b)?;
                let gate = self.clamp_to(u, 0, den, None)?;
                let p = self.mul_nodes(v, gate)?;
                let r = self.rescale_by(p, num, mden)?;
                let r = self.add_scalar(r, zp)?;
                self.clamp_to(r, lo, hi, Some(dtype))?
            }
        };
        Ok(Some(out))
    }
}

/// `max(0, min(1, alpha · x + beta))` on rationals.
fn hard_sigmoid(x: Rational, alpha: f32, beta: f32) -> Option<Rational> {
    let y = x
        .checked_mul(Rational::from_f32(alpha)?)?
        .checked_add(Rational::from_f32(beta)?)?;
    Some(if y.num < 0 {
        Rational::int(0)
    } else if y.num > y.den {
        Rational::int(1)
    } else {
        y
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: f32) -> Rational {
        Rational::from_f32(x).unwrap()
    }

    #[test]
    fn hard_sigmoid_saturates_and_rounds_exactly() {
        let f = ElemFn::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        };
        // x = i · 0.5; y = clamp(0.2x + 0.5, 0, 1); quantized with step 1/256.
        let q = |i| f.quantized(i, r(0.5), r(1.0 / 256.0)).unwrap();
        assert_eq!(q(-10), 0); // 0.2 · -5 + 0.5 < 0
        assert_eq!(q(10), 256); // saturates at 1
        assert_eq!(q(0), 128);
        // 0.2 as f32 is slightly above 0.2: 0.2f · 0.5 + 0.5 = 0.6000000007…, · 256 = 153.6…
        assert_eq!(q(1), 154);
    }

    #[test]
    fn hard_swish_matches_its_definition() {
        let s = r(0.1);
        let ys = r(0.05);
        for i in -60..=60 {
            let x = i as f64 * s.to_f64();
            let want = (x * ((x / 6.0 + 0.5).clamp(0.0, 1.0)) / ys.to_f64()).round_ties_even();
            let got = ElemFn::HardSwish.quantized(i, s, ys).unwrap();
            assert!((got as f64 - want).abs() <= 1.0, "i={i}: {got} vs {want}");
        }
        // Below -3 HardSwish is 0, above 3 it is x.
        assert_eq!(ElemFn::HardSwish.quantized(-40, s, ys).unwrap(), 0);
        assert_eq!(ElemFn::HardSwish.quantized(40, s, ys).unwrap(), 80);
    }

    /// The integer forms equal the exact tables on every int8 input, for scales like the
    /// exporters' (MobileNetV3's HardSwish and HardSigmoid among them).
    #[test]
    fn piecewise_forms_reproduce_the_tables() {
        let fns = [
            ElemFn::HardSwish,
            ElemFn::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
            ElemFn::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
        ];
        let mut found = 0;
        for f in fns {
            for (s, ys, zp) in [
                (0.0473f32, 0.0219f32, -128i64),
                (0.1, 1.0 / 255.0, 0),
                (0.0312, 0.0156, 3),
                (0.0071, 0.0035, -20),
            ] {
                let (s, ys) = (r(s), r(ys));
                let table: Vec<i64> = (-128..=127)
                    .map(|i| (f.quantized(i, s, ys).unwrap() + zp).clamp(-128, 127))
                    .collect();
                if let Some(form) = Affine::find(&f, s, ys, zp, (-128, 127), -128, &table) {
                    found += 1;
                    for (i, t) in (-128..=127).zip(&table) {
                        assert_eq!(form.eval(i), *t, "{f:?} at {i}");
                    }
                }
            }
        }
        assert_eq!(found, 12, "only {found} of 12 cases have an integer form");
    }

    #[test]
    fn leaky_relu_is_exact_and_sigmoid_uses_f64() {
        let q = ElemFn::LeakyRelu(0.5)
            .quantized(-3, r(1.0), r(1.0))
            .unwrap();
        assert_eq!(q, -2); // -1.5 rounds half to even
        let q = ElemFn::Sigmoid
            .quantized(0, r(0.1), r(1.0 / 256.0))
            .unwrap();
        assert_eq!(q, 128);
    }
}
