//! `rep3`'s cost formulas: the message pattern of each primitive in `mod.rs`, `bits.rs` and
//! `masked.rs`, written the way those functions send. `tests/cost.rs` holds them equal to
//! what runs measure.

use super::assist::{select_pattern, SignTest};
use super::bits::compare_levels;
use super::masked::{check_opening, divisor_width, sign_test_bits, RescalePlan, OPENER};
use super::requant::RequantPlan;
use crate::bitvec::bits_of;
use crate::cost::{Costs, Round, Rounds};
use crate::{Bounds, MatDims, PartyId, ProtocolError, Requant, TruncMode};

type R<T> = Result<T, ProtocolError>;

/// Bytes of a boolean share word.
const XOR_BYTES: u64 = 8;

/// `rep3` over Z_2^`ring_bits`.
#[derive(Clone, Copy, Debug)]
pub struct Rep3Costs {
    pub ring_bits: u32,
}

impl Default for Rep3Costs {
    /// The ring `qmpc run` uses.
    fn default() -> Self {
        Rep3Costs { ring_bits: 128 }
    }
}

fn prev(p: PartyId) -> PartyId {
    (p + 2) % 3
}

impl Rep3Costs {
    fn word(&self) -> u64 {
        u64::from(self.ring_bits / 8)
    }

    /// Every party sends `n` elements of `bytes` each to its predecessor.
    fn reshare(&self, n: usize, bytes: u64) -> Round {
        Round::of((0..3).map(|p| (p, prev(p), n as u64 * bytes)))
    }

    /// `share_two_from(owner, n1 ring words, n2 boolean words)`.
    fn share_from(&self, owner: PartyId, n1: usize, n2: usize) -> Round {
        let bytes = n1 as u64 * self.word() + n2 as u64 * XOR_BYTES;
        Round::of([(owner, prev(owner), bytes)])
    }

    /// Party 0 sends party 1 its masked component.
    fn open_masked(&self, n: usize, bits: u32) -> R<Round> {
        check_opening(bits, self.ring_bits)?;
        Ok(Round::of([(0, OPENER, n as u64 * self.word())]))
    }

    fn compare(&self, n: usize, w: u32) -> Rounds {
        let mut r = vec![self.reshare(n, XOR_BYTES)];
        r.extend((0..compare_levels(w)).map(|_| self.reshare(2 * n, XOR_BYTES)));
        r
    }

    fn bit_to_arith(&self, n: usize) -> Rounds {
        vec![self.share_from(0, n, 0), self.reshare(n, self.word())]
    }

    fn divide(&self, n: usize, d: &[u128], bits: u32, quotient: bool, borrow: bool) -> R<Rounds> {
        let w = divisor_width(d)?;
        let mut r = vec![
            self.open_masked(n, bits)?,
            self.share_from(OPENER, if quotient { n } else { 0 }, n),
        ];
        if borrow {
            r.extend(self.compare(n, w));
        }
        Ok(r)
    }

    /// `select_non_negative` of `n` tests with `k` factors each.
    fn select(&self, n: usize, lo: i64, hi: i64, k: usize) -> R<Rounds> {
        if lo >= 0 || hi < 0 || n == 0 {
            return Ok(Vec::new());
        }
        if let Some(test) = SignTest::new(lo, hi, self.ring_bits) {
            return Ok(select_pattern(&test, n, k, self.word() as usize)
                .into_iter()
                .map(|msgs| Round::of(msgs.into_iter().map(|(f, t, b)| (f, t, b as u64))))
                .collect());
        }
        let mut r = self.non_negative(n, lo, hi)?;
        r.extend(self.mul(k * n));
        Ok(r)
    }

    fn non_negative(&self, n: usize, lo: i64, hi: i64) -> R<Rounds> {
        let p = sign_test_bits(lo, hi);
        let mut r = self.divide(n, &vec![1u128 << p; n], p + 1, false, true)?;
        r.extend(self.bit_to_arith(n));
        Ok(r)
    }
}

impl Costs for Rep3Costs {
    fn name(&self) -> &'static str {
        "rep3"
    }
    fn parties(&self) -> usize {
        3
    }
    fn input(&self, owner: PartyId, len: usize) -> Rounds {
        vec![self.share_from(owner, len, 0)]
    }
    fn reveal(&self, len: usize, to: PartyId) -> Rounds {
        vec![Round::of([((to + 1) % 3, to, len as u64 * self.word())])]
    }
    fn mul(&self, len: usize) -> Rounds {
        vec![self.reshare(len, self.word())]
    }
    fn matmul(&self, d: MatDims) -> Rounds {
        vec![self.reshare(d.batch * d.m * d.n, self.word())]
    }
    fn rescale(&self, num: &[i64], den: &[i64], bounds: Bounds, mode: TruncMode) -> R<Rounds> {
        let plan = RescalePlan::new(num, den, bounds, mode)?;
        let exact = mode == TruncMode::Exact;
        let n = num.len();
        let mut r = self.divide(n, &plan.d, plan.bits, true, exact)?;
        if exact {
            r.extend(self.bit_to_arith(n));
        }
        Ok(r)
    }
    fn requantize(&self, q: &Requant, bounds: Bounds, mode: TruncMode) -> R<Rounds> {
        if let Some(plan) = RequantPlan::new(q, bounds, self.ring_bits) {
            return Ok(plan
                .pattern(q.num.len(), self.word() as usize)
                .into_iter()
                .map(|msgs| Round::of(msgs.into_iter().map(|(f, t, b)| (f, t, b as u64))))
                .collect());
        }
        crate::cost::requantize_unfused(self, q, bounds, mode)
    }
    fn clamp(&self, len: usize, lo: i64, hi: i64, b: Bounds) -> R<Rounds> {
        let (need_lo, need_hi) = (b.lo < lo, b.hi > hi);
        if !need_lo && !need_hi {
            return Ok(Vec::new());
        }
        let (mut tlo, mut thi) = (i64::MAX, i64::MIN);
        let mut m = 0;
        if need_lo {
            m += len;
            tlo = tlo.min(b.lo - lo);
            thi = thi.max(b.hi - lo);
        }
        if need_hi {
            m += len;
            tlo = tlo.min(hi - b.hi);
            thi = thi.max(hi - b.lo);
        }
        self.select(m, tlo, thi, 1)
    }
    fn max(&self, len: usize, bounds: Bounds) -> R<Rounds> {
        let span = bounds.hi.saturating_sub(bounds.lo);
        self.select(len, -span, span, 1)
    }
    fn argmax(&self, len: usize, row_len: usize, select_last: bool, b: Bounds) -> R<Rounds> {
        let row_len = row_len.max(1);
        let rows = len / row_len;
        let span = b.hi.saturating_sub(b.lo);
        let (lo, hi) = if select_last {
            (-span - 1, span - 1)
        } else {
            (-span, span)
        };
        let mut r = Vec::new();
        let mut width = row_len;
        while rows > 0 && width > 1 {
            let pairs = rows * (width / 2);
            r.extend(self.select(pairs, lo, hi, 2)?);
            width = width.div_ceil(2);
        }
        Ok(r)
    }
    fn lookup(&self, len: usize, table_len: usize) -> R<Rounds> {
        if table_len == 0 {
            return Err(ProtocolError::Invalid("lookup in an empty table".into()));
        }
        let bits = bits_of(table_len as u128 - 1).max(1);
        Ok(vec![
            self.open_masked(len, bits)?,
            self.share_from(OPENER, len * table_len, 0),
            self.reshare(len, self.word()),
        ])
    }
}
