//! The lanes of a selection `clamp(round_half_even(x·num/d) + zp, lo, hi)`, whatever the
//! protocol: every element becomes `v = (x − x_lo)·scale ≥ 0` and a few comparisons
//! `floor((v + δ)/2^s)` (its *lanes*), whose sum plus a public `add` is the rounded value,
//! and the clamp tests `[y ≥ T]` as lanes `floor((v + 2^K − T·scale)/2^K)`. `shamir` masks
//! `v` in F_p, `mal-rep3` in Z_2^128; both evaluate these lanes (see their `select.rs`).
//!
//! For `d = 2^s`, `q = ⌊(v + δ)/2^s⌋` with `δ = x_lo·num + 2^(s−1)`, less one at a tie with
//! an odd quotient (the lane's `parity`). For an odd `d`, `⌊(y·num + o)/d⌋ =
//! ⌊(y·M + O)/2^S⌋` exactly for `y ≤ span` when `2^S ≥ (span + 1)·d`, `M = ⌈num·2^S/d⌉`,
//! `O = ⌈o·2^S/d⌉`. For an even `d` that is not a power of two, with `D = 2d` and
//! `a = w + d/2`, round half to even is `⌊a/D⌋ + ⌊(a − d − 1)/D⌋ + 1`: two lanes.

use crate::semi2k::select::Plan;
use crate::{Bounds, Requant};

/// A lane's shift or product does not fit.
#[derive(Clone, Copy, Debug)]
pub struct TooWide;

/// One comparison: `floor((v + δ)/2^s)`, with the round-half-even parity correction if
/// `parity`.
#[derive(Clone, Copy, Debug)]
pub struct Lane {
    pub delta: i128,
    pub s: u32,
    pub parity: bool,
}

impl Lane {
    /// Units of its comparison: the parity leaf, then one per 2-bit chunk of the mask.
    pub fn units(&self) -> usize {
        usize::from(self.parity) + (self.s as usize).div_ceil(2)
    }
}

/// How an element's rounded value `q` comes from its lanes: `Σ lanes + add`, or
/// `v + add` with no lane (`d = 1`).
#[derive(Clone, Debug)]
pub struct Element {
    /// `num·M`: `v = y·scale`.
    pub scale: u128,
    pub rounding: Vec<Lane>,
    pub add: i128,
    /// Clamp lanes, or the test's outcome where the secret cannot change it.
    pub g_lo: Result<Lane, bool>,
    pub g_hi: Result<Lane, bool>,
}

/// Every lane of an element: rounding first, then the clamp tests.
pub fn lanes_of(e: &Element) -> impl Iterator<Item = Lane> + Clone + '_ {
    e.rounding
        .iter()
        .copied()
        .chain(e.g_lo.ok())
        .chain(e.g_hi.ok())
}

pub fn bits(v: u128) -> u32 {
    128 - v.leading_zeros()
}

/// The elements with their rounding lanes (clamps still to come, [`clamp_lanes`]), the
/// bits of every `v`, and the widest rounding lane (`s`, plus one with a parity); shifts
/// of `max_shift` or more are [`TooWide`].
pub fn rounding(
    q: &Requant,
    b: Bounds,
    max_shift: u32,
) -> Result<(Vec<Element>, u32, u32), TooWide> {
    let span = (b.hi as i128 - b.lo as i128) as u128;
    let mut elements = Vec::with_capacity(q.num.len());
    // `vbits`: bits of every `v`; `k`: bits of the mask the lanes compare.
    let (mut vbits, mut k) = (1u32, 1u32);
    for i in 0..q.num.len() {
        let (num, d) = (q.num[i] as i128, q.den[i] as i128);
        let base = b.lo as i128 * num;
        let mut rounding = Vec::new();
        let (scale, add, need);
        if d == 1 || num == 0 {
            // A product by `num`, or zero (round(0) = 0).
            scale = num as u128;
            add = if num == 0 { 0 } else { base };
            need = bits(span * num as u128);
        } else if d & (d - 1) == 0 {
            let s = d.trailing_zeros();
            scale = num as u128;
            rounding.push(Lane {
                delta: base + (d >> 1),
                s,
                parity: true,
            });
            add = 0;
            need = bits(span * num as u128);
        } else {
            let (big_d, args) = if d % 2 == 1 {
                (d, vec![base + (d - 1) / 2])
            } else {
                (2 * d, vec![base + d / 2, base + d / 2 - d - 1])
            };
            let offsets: Vec<(i128, i128)> = args
                .iter()
                .map(|&a| (a.div_euclid(big_d), a.rem_euclid(big_d)))
                .collect();
            // ⌊(y·num + o)/D⌋ = ⌊(y·M + O)/2^S⌋ for y ≤ span when 2^S ≥ (span + 1)·D,
            // with M = ⌈num·2^S/D⌉ and O = ⌈o·2^S/D⌉: the two round-ups add less than
            // (span + 1)/2^S ≤ 1/D, which never reaches the next multiple of 1/D.
            let s = bits(span + 1) + bits(big_d as u128);
            let up = |v: u128| -> Result<u128, TooWide> {
                v.checked_mul(1u128 << s)
                    .filter(|_| s < max_shift)
                    .map(|p| p.div_ceil(big_d as u128))
                    .ok_or(TooWide)
            };
            scale = up(num as u128)?;
            let mut top = 0u128;
            for &(_, o) in &offsets {
                let lift = up(o as u128)?;
                top = top.max(lift);
                rounding.push(Lane {
                    delta: lift as i128,
                    s,
                    parity: false,
                });
            }
            add = offsets.iter().map(|o| o.0).sum::<i128>() + offsets.len() as i128 - 1;
            need = bits(
                span.checked_mul(scale)
                    .and_then(|v| v.checked_add(top))
                    .ok_or(TooWide)?,
            );
        }
        vbits = vbits.max(need);
        k = k.max(
            rounding
                .iter()
                .map(|l: &Lane| l.s + u32::from(l.parity))
                .max()
                .unwrap_or(1),
        );
        elements.push(Element {
            scale,
            rounding,
            add,
            g_lo: Err(false),
            g_hi: Err(false),
        });
    }
    Ok((elements, vbits, k))
}

/// Whether some clamp test depends on the secret.
pub fn clamps(elements: &[Element], b: Bounds, plan: &Plan) -> bool {
    let span = (b.hi as i128 - b.lo as i128) as u128;
    let varies = |t: u64| t > 0 && u128::from(t) <= span;
    (0..elements.len()).any(|i| {
        let (t_lo, t_hi) = plan.thresholds()[i];
        varies(t_lo) || varies(t_hi)
    })
}

/// Give each element its clamp lanes over `k ≥ bits(v)` bits (or their public outcome);
/// whether any is secret.
pub fn clamp_lanes(elements: &mut [Element], b: Bounds, plan: &Plan, k: u32) -> bool {
    let span = (b.hi as i128 - b.lo as i128) as u128;
    let mut product = false;
    for (i, e) in elements.iter_mut().enumerate() {
        let (t_lo, t_hi) = plan.thresholds()[i];
        let lane = |t: u64| -> Result<Lane, bool> {
            if t > 0 && u128::from(t) <= span {
                let theta = t as i128 * e.scale as i128;
                Ok(Lane {
                    delta: (1i128 << k) - theta,
                    s: k,
                    parity: false,
                })
            } else {
                Err(Plan::fixed(t) == 1)
            }
        };
        e.g_lo = lane(t_lo);
        e.g_hi = lane(t_hi);
        product |= e.g_lo.is_ok() || e.g_hi.is_ok();
    }
    product
}
