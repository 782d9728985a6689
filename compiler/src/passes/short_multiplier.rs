//! A requantization's multiplier becomes the shortest dyadic one with the same results over
//! its operand's range.
//!
//! A QDQ `Mul` of two activations (a squeeze-excitation gate) requantizes by
//! `s_a·s_b/s_out`, the exact product of three float32 scales: EfficientNet-B0's have a
//! 47-bit numerator over a 55-bit denominator. A secure requantization compares remainders
//! of the divisor's width (rep3's comparison tree, semi2k's and spdz2k's borrow tables,
//! fss's DCF keys), so 55 bits cost a tree level more than 35 and twice the tables. But
//! the operand spans only `2^17` values and the result 256: all that matters is which
//! operand values reach each result, the ≤ 255 *thresholds* where
//! `clamp(round_half_even(x·num/den) + zp, lo, hi)` steps up. A multiplier `num'/2^s` with
//! the same thresholds within the operand's bounds gives the same result for every value
//! the operand can take (both are non-decreasing in `x`), so the pass looks for the least
//! `s` for which `⌊num·2^s/den⌋` or the next integer keeps every threshold, checked exactly
//! in integers: the gate's multiplier becomes `8589/2^21`.
//!
//! Only positive multipliers and results of at most [`MAX_LEVELS`] steps are tried; an
//! element whose multiplier admits no shorter form keeps it, and the instruction changes
//! only where its widest divisor narrows and the result's bounds stay those declared.

use crate::ir::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::shapes;
use qmpc_bytecode::tensor::{broadcast_to, Tensor};
use qmpc_bytecode::{ConstTensor, DType};
use qmpc_semantics::ring::rescale;
use std::collections::HashMap;

/// The most result steps a requantization may take for its thresholds to be checked one by
/// one (int8 and uint8 results take 255).
const MAX_LEVELS: i64 = 1 << 12;

/// Shorten the multiplier of every requantization where that narrows its divisor.
pub fn short_multiplier(g: &mut Graph) {
    let requants: Vec<NodeIndex> =
        g.g.node_indices()
            .filter(|&n| matches!(&g.g[n].op, Op::Compute(i) if i.requantization().is_some()))
            .collect();
    for n in requants {
        shorten(g, n);
    }
}

/// Bits of the remainder a protocol compares for `round_half_even(x·num/den)`: `den` is
/// even, or doubled (see `rep3/requant.rs`'s `divisor`).
fn width(den: i64) -> u32 {
    let d = if den % 2 == 0 {
        den as i128
    } else {
        2 * den as i128
    };
    128 - (d - 1).leading_zeros()
}

fn shorten(g: &mut Graph, n: NodeIndex) {
    let Op::Compute(ins) = g.g[n].op.clone() else {
        return;
    };
    let Some(q) = ins.requantization() else {
        return;
    };
    // In the IR an instruction's registers are its operands' positions.
    let [inum, iden, izp] = [q.num, q.den, q.zp].map(|r| r as usize);
    let (lo, hi) = (q.lo, q.hi);
    if hi.checked_sub(lo).is_none_or(|d| d > MAX_LEVELS) {
        return;
    }
    let ops = g.operands(n);
    let Some(bounds) = g.operand_bounds(n) else {
        return;
    };
    let consts: Option<Vec<(&[usize], &[i64])>> = [inum, iden, izp]
        .iter()
        .map(|&i| {
            let o = *ops.get(i)?;
            Some((g.dims(o), g.const_data(o)?))
        })
        .collect();
    let Some(consts) = consts else {
        return;
    };
    let Ok(dims) = shapes::broadcast(consts[0].0, consts[1].0)
        .and_then(|d| shapes::broadcast(&d, consts[2].0))
    else {
        return;
    };
    let spread =
        |(d, v): (&[usize], &[i64])| broadcast_to(&Tensor::new(d.to_vec(), v.to_vec()), &dims);
    let (num, den, zp) = (spread(consts[0]), spread(consts[1]), spread(consts[2]));
    let old = den.iter().map(|&d| width(d)).max().unwrap_or(0);
    let mut found: HashMap<(i64, i64, i64), (i64, i64)> = HashMap::new();
    let (mut new_num, mut new_den) = (num.clone(), den.clone());
    for i in 0..num.len() {
        let key = (num[i], den[i], zp[i]);
        let short = *found.entry(key).or_insert_with(|| {
            let f = Steps {
                num: num[i],
                den: den[i],
                zp: zp[i],
                lo,
                hi,
            };
            f.shortest(bounds).unwrap_or((num[i], den[i]))
        });
        (new_num[i], new_den[i]) = short;
    }
    if new_den.iter().map(|&d| width(d)).max().unwrap_or(0) >= old {
        return;
    }
    let origin = g.g[n].origin.clone();
    let konst = |g: &mut Graph, data: Vec<i64>| {
        let lo = data.iter().copied().min().unwrap_or(0);
        let hi = data.iter().copied().max().unwrap_or(0);
        g.add_const(
            ConstTensor {
                dtype: DType::fitting(lo, hi),
                dims: dims.clone(),
                data,
            },
            &origin,
        )
    };
    let mut operands = ops.clone();
    operands[inum] = konst(g, new_num);
    operands[iden] = konst(g, new_den);
    let decl = g.decl(n).clone();
    let added = g.add_compute(
        ins,
        &operands,
        Some(&decl.ty.dims),
        Some(decl.ty.dtype),
        &origin,
    );
    let Ok(short) = added else {
        drop_unread(g, &operands[..]);
        return;
    };
    let s = g.decl(short);
    if s.ty != decl.ty || s.vis != decl.vis || s.lo < decl.lo || s.hi > decl.hi {
        g.g.remove_node(short);
        drop_unread(g, &operands[..]);
        return;
    }
    g.move_readers(n, short);
    g.g.remove_node(n);
    drop_unread(g, &ops);
}

/// Remove the constants among `nodes` that nothing reads any more.
fn drop_unread(g: &mut Graph, nodes: &[NodeIndex]) {
    for &o in nodes {
        let unread =
            g.g.neighbors_directed(o, petgraph::Direction::Outgoing)
                .next()
                .is_none();
        if unread && matches!(g.g[o].op, Op::Const { .. }) {
            g.g.remove_node(o);
        }
    }
}

/// One element's requantization `clamp(round_half_even(x·num/den) + zp, lo, hi)`, `num` and
/// `den` positive.
#[derive(Clone, Copy, Debug)]
struct Steps {
    num: i64,
    den: i64,
    zp: i64,
    lo: i64,
    hi: i64,
}

impl Steps {
    fn at(&self, x: i64) -> i64 {
        rescale(x, self.num, self.den)
            .saturating_add(self.zp)
            .clamp(self.lo, self.hi)
    }

    /// The least `x` whose result before the clamp is at least `k`, exactly:
    /// `round_half_even(v) ≥ j` (`j = k − zp`) holds for `v > j − 1/2`, and at `v = j − 1/2`
    /// where `j` is even; `v ≥ j − 1/2` is `2·x·num ≥ (2j − 1)·den`.
    fn threshold(&self, k: i64) -> i128 {
        let j = k as i128 - self.zp as i128;
        let (a, b) = ((2 * j - 1) * self.den as i128, 2 * self.num as i128);
        let q = a.div_euclid(b);
        if q * b == a && j % 2 == 0 {
            q
        } else {
            q + 1
        }
    }

    /// Whether `other` gives every `x` within `b` the same result: the same results at both
    /// ends and the same threshold for every step between (both are non-decreasing).
    fn same_over(&self, other: &Steps, b: (i64, i64)) -> bool {
        let (first, last) = (self.at(b.0), self.at(b.1));
        first == other.at(b.0)
            && last == other.at(b.1)
            && (first + 1..=last).all(|k| self.threshold(k) == other.threshold(k))
    }

    /// The shortest `(num', 2^s)` with the same results within `b`, where one is shorter
    /// than the divisor now; `None` for a multiplier that is not positive.
    fn shortest(&self, b: (i64, i64)) -> Option<(i64, i64)> {
        if self.num <= 0 || self.den <= 0 || b.0 > b.1 {
            return None;
        }
        let now = width(self.den);
        (0..now.min(62)).find_map(|s| {
            let base = ((self.num as i128) << s).div_euclid(self.den as i128);
            [base, base + 1].into_iter().find_map(|n| {
                let n = i64::try_from(n).ok().filter(|&n| n >= 1)?;
                let candidate = Steps {
                    num: n,
                    den: 1 << s,
                    ..*self
                };
                (width(candidate.den) < now && self.same_over(&candidate, b))
                    .then_some((n, candidate.den))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(num: i64, den: i64, zp: i64) -> Steps {
        Steps {
            num,
            den,
            zp,
            lo: -128,
            hi: 127,
        }
    }

    /// The least `x` reaching `k` by search, from the reference semantics.
    fn searched(f: &Steps, k: i64, b: (i64, i64)) -> i128 {
        let unclamped = |x: i64| rescale(x, f.num, f.den).saturating_add(f.zp);
        (b.0..=b.1 + 1)
            .find(|&x| x > b.1 || unclamped(x) >= k)
            .unwrap() as i128
    }

    #[test]
    fn thresholds_match_the_reference_rounding_ties_included() {
        // Even and odd denominators, ties at both parities, negative operands.
        for (num, den, zp) in [(1, 2, 0), (3, 4, -5), (1, 3, 7), (5, 6, 0), (7, 1, 2)] {
            let f = steps(num, den, zp);
            let b = (-60, 60);
            for k in f.at(b.0) + 1..=f.at(b.1) {
                assert_eq!(
                    f.threshold(k),
                    searched(&f, k, b),
                    "{num}/{den} zp {zp} k {k}"
                );
            }
        }
    }

    #[test]
    fn a_squeeze_excitation_multiplier_shortens_to_21_bits() {
        // EfficientNet-B0's first gate: three float32 scales multiplied exactly.
        let f = steps(56_517_135_831_737, 13_799_610_736_705_536, 0);
        let b = (-20_400, 44_625);
        let (num, den) = f.shortest(b).unwrap();
        assert_eq!((num, den), (8589, 1 << 21));
        let g = steps(num, den, 0);
        for x in b.0..=b.1 {
            assert_eq!(f.at(x), g.at(x), "x = {x}");
        }
    }

    #[test]
    fn shortened_multipliers_agree_everywhere_in_range() {
        // Pseudo-random multipliers of several widths, operands up to 2^14 wide: every
        // value in range checked against the reference.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut shortened = 0;
        for _ in 0..300 {
            let den = 1 + (next() >> (4 + next() % 40)) as i64;
            let num = 1 + (next() % (den as u64).max(2)) as i64 * (1 + (next() % 300) as i64);
            let zp = (next() % 40) as i64 - 20;
            let lo = -((next() % (1 << 14)) as i64);
            let hi = (next() % (1 << 14)) as i64;
            let f = steps(num, den, zp);
            let Some((n2, d2)) = f.shortest((lo, hi)) else {
                continue;
            };
            shortened += 1;
            assert!(width(d2) < width(den));
            let g = steps(n2, d2, zp);
            for x in lo..=hi {
                assert_eq!(
                    f.at(x),
                    g.at(x),
                    "{num}/{den} → {n2}/{d2}, zp {zp}, x = {x}"
                );
            }
        }
        assert!(shortened > 50, "only {shortened} of 300 shortened");
    }

    #[test]
    fn a_multiplier_no_shorter_one_matches_is_kept() {
        // A third over 201 values needs more than two bits of divisor.
        let f = Steps {
            num: 1,
            den: 3,
            zp: 0,
            lo: -1000,
            hi: 1000,
        };
        assert_eq!(f.shortest((-100, 100)), None);
    }
}
