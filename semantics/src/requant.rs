//! The parameters of one fused requantization `clamp(round_half_even(x·num/den) + zp, lo,
//! hi)`, its plaintext meaning, and the public facts protocols derive from them.

use crate::ring::rescale;
use crate::{Bounds, TruncMode};
use std::collections::HashMap;

/// Per-element public parameters of a requantization (`num`, `den`, `zp` have one entry per
/// element; `den > 0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requant {
    pub num: Vec<i64>,
    pub den: Vec<i64>,
    pub zp: Vec<i64>,
    pub lo: i64,
    pub hi: i64,
}

impl Requant {
    /// The reference result for element `i`.
    pub fn apply(&self, i: usize, x: i64) -> i64 {
        rescale(x, self.num[i], self.den[i])
            .saturating_add(self.zp[i])
            .clamp(self.lo, self.hi)
    }

    /// Bounds of `rescale(x) + zp` before the clamp, for `x` within `b` (one more at the
    /// top for probabilistic truncation, which may round up by one).
    pub fn mid_bounds(&self, b: Bounds, mode: TruncMode) -> Bounds {
        let slack = i64::from(mode == TruncMode::Probabilistic);
        let mut out = Bounds {
            lo: i64::MAX,
            hi: i64::MIN,
        };
        for i in 0..self.num.len() {
            // Parameters broadcast per channel come in runs: one evaluation per run.
            let same = |v: &[i64]| i > 0 && v[i] == v[i - 1];
            if same(&self.num) && same(&self.den) && same(&self.zp) {
                continue;
            }
            let at = |x: i64| rescale(x, self.num[i], self.den[i]).saturating_add(self.zp[i]);
            let (a, c) = (at(b.lo), at(b.hi));
            out.lo = out.lo.min(a.min(c));
            out.hi = out.hi.max(a.max(c).saturating_add(slack));
        }
        if out.lo > out.hi {
            out = Bounds { lo: 0, hi: 0 };
        }
        out
    }

    /// The exponents `s` when every denominator is a power of two `2^s` with `s ≥ 1`.
    pub fn shifts(&self) -> Option<Vec<u32>> {
        self.den
            .iter()
            .map(|&d| (d > 1 && d.count_ones() == 1).then(|| d.trailing_zeros()))
            .collect()
    }

    /// The least `x` in `[b.lo, b.hi + 1]` whose result before the clamp reaches `target`
    /// (`b.hi + 1` when none does), for a positive `num`: the result is non-decreasing in
    /// `x`, so `clamp` tests become comparisons of `x` with public thresholds.
    pub fn threshold(&self, i: usize, target: i64, b: Bounds) -> i64 {
        let reaches =
            |x: i64| rescale(x, self.num[i], self.den[i]).saturating_add(self.zp[i]) >= target;
        let (mut lo, mut hi) = (b.lo, b.hi.saturating_add(1));
        if reaches(lo) {
            return lo;
        }
        // reaches(lo) is false; find the least x in (lo, hi] that reaches (hi if none).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if reaches(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// The clamp thresholds of every element in `y = x − b.lo` space: `[y ≥ T_lo]` is `[result ≥ lo]` and
    /// `[y ≥ T_hi]` is `[result > hi]` (before the clamp), each in `[0, 2^bits]`.
    pub fn y_thresholds(&self, b: Bounds, bits: u32) -> Vec<(u64, u64)> {
        let q = self;
        let top = 1u64 << bits;
        let to_y = |theta: i64| ((theta as i128 - b.lo as i128).clamp(0, top as i128)) as u64;
        type Key = (i64, i64, i64);
        let mut cache: HashMap<Key, (u64, u64)> = HashMap::new();
        // Parameters broadcast per channel come in runs: the map is asked once per run.
        let mut last: Option<(Key, (u64, u64))> = None;
        (0..q.num.len())
            .map(|i| {
                let key = (q.num[i], q.den[i], q.zp[i]);
                if let Some((k, t)) = last {
                    if k == key {
                        return t;
                    }
                }
                let t = *cache.entry(key).or_insert_with(|| {
                    let t_lo = to_y(q.threshold(i, q.lo, b));
                    let t_hi = match q.hi.checked_add(1) {
                        Some(h) => to_y(q.threshold(i, h, b)),
                        None => top,
                    };
                    (t_lo, t_hi)
                });
                last = Some((key, t));
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_split_the_range_where_the_result_reaches_the_target() {
        let q = Requant {
            num: vec![3],
            den: vec![8],
            zp: vec![-2],
            lo: -5,
            hi: 5,
        };
        let b = Bounds { lo: -40, hi: 40 };
        for target in [-6, -5, 0, 5, 6, 40] {
            let t = q.threshold(0, target, b);
            for x in b.lo..=b.hi {
                let r = rescale(x, 3, 8) - 2;
                assert_eq!(r >= target, x >= t, "target {target}, x {x}");
            }
        }
        let m = q.mid_bounds(b, TruncMode::Exact);
        assert_eq!((m.lo, m.hi), (-17, 13));
        assert_eq!(q.shifts(), Some(vec![3]));
    }
}
