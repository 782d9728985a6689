//! Reciprocals of secret integers of unknown magnitude, from instructions every protocol has:
//! a secret power of two `P` that brings `x` to `[2^(bits−1), 2^bits)` (from the count of
//! `[x ≥ 2^j]`, one clamp), then `1/(x·P)` on `[1, 2]` from a public table and one Newton
//! step. Used by dynamic quantization's `255/R` and a softmax's `1/Σ`.

use super::rational::Rational;
use super::{Importer, R};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Index, Int, Reg};
use qmpc_bytecode::{ConstTensor, DType, Instr};

/// Fractional bits of a normalized value `s ∈ [1, 2]` and of its reciprocal.
pub const F: u32 = 20;
/// The widest value [`Importer::normalized`] takes: `x·P < 2^(2·MAX_BITS)` stays in the ring.
pub const MAX_BITS: u32 = 31;
/// Index bits of the reciprocal's first table.
const TABLE_BITS: u32 = 10;

/// `round_half_even(x)` of an exact rational.
pub fn round_half_even(x: Rational) -> i128 {
    let fl = x.floor();
    let twice_rest = 2 * (x.num - fl * x.den);
    match twice_rest.cmp(&x.den) {
        std::cmp::Ordering::Less => fl,
        std::cmp::Ordering::Greater => fl + 1,
        std::cmp::Ordering::Equal => fl + (fl & 1),
    }
}

/// Bits needed for the magnitude `x` (0 for 0).
pub fn bit_len(x: i128) -> u32 {
    128 - x.unsigned_abs().leading_zeros()
}

impl Importer<'_> {
    /// `round_half_even(x · 2^k)`.
    pub fn shift(&mut self, x: NodeIndex, k: i32) -> R<NodeIndex> {
        match k {
            0 => Ok(x),
            k if k > 0 => self.times(x, 1i64 << k),
            k => self.rescale_by(x, 1, 1i64 << -k),
        }
    }

    /// `P = 2^(bits − bitlen(x))` element-wise for `1 ≤ x < 2^bits` (`2^(bits−1)` for
    /// `x ≤ 0`), in `x`'s shape, so that `x·P ∈ [2^(bits−1), 2^bits)`.
    pub fn normalizer(&mut self, x: NodeIndex, bits: u32) -> R<NodeIndex> {
        let count = self.bit_count(x, bits)?;
        let table: Vec<i64> = (0..bits.max(1))
            .map(|e| 1i64 << (bits.max(1) - 1 - e))
            .collect();
        self.table_lookup(count, table, 0)
    }

    /// `bitlen(x) − 1` element-wise (0 for `x ≤ 1`) for `x < 2^bits`, in `x`'s shape: the
    /// indicators `[x ≥ 2^j]` from one clamp along a new last axis, counted by a product
    /// with public ones (a weighted sum's bounds would not be exact; a count's are).
    pub fn bit_count(&mut self, x: NodeIndex, bits: u32) -> R<NodeIndex> {
        let dims = self.g.dims(x).to_vec();
        if bits <= 1 {
            return self.times(x, 0);
        }
        let n = (bits - 1) as usize;
        let mut wide = dims.clone();
        wide.push(1);
        let col = self.reshape_to(x, &wide, None)?;
        let mut tdims = vec![1; wide.len()];
        tdims[wide.len() - 1] = n;
        let thresholds = (1..bits).map(|j| (1i64 << j) - 1).collect();
        let t = self.konst(tdims, thresholds);
        let d = self.sub_nodes(col, t)?;
        let ind = self.clamp_to(d, 0, 1, None)?;
        let ones = self.konst(vec![n, 1], vec![1; n]);
        let count = self.compute_to(
            Instr::MatMul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[ind, ones],
            &wide,
            None,
        )?;
        self.reshape_to(count, &dims, None)
    }

    /// `table[x − offset]`, a public table.
    pub fn table_lookup(&mut self, x: NodeIndex, table: Vec<i64>, offset: i64) -> R<NodeIndex> {
        let lo = table.iter().copied().min().unwrap_or(0);
        let hi = table.iter().copied().max().unwrap_or(0);
        let t = self.g.add_table(ConstTensor {
            dtype: DType::fitting(lo.min(0), hi.max(0)),
            dims: vec![table.len()],
            data: table,
        });
        self.compute(
            Instr::Lookup {
                dst: Dst(0),
                x: Reg(0),
                table: Index(t),
                offset: Int(offset),
            },
            &[x],
        )
    }

    /// `x` with at most `MAX_BITS` bits for [`Importer::normalized`]: `(round(x/2^d), its
    /// bits, d)`, `d = 0` where it already fits (the rounding is relative `2^-MAX_BITS`).
    pub fn narrowed(&mut self, x: NodeIndex) -> R<(NodeIndex, u32, u32)> {
        let bits = bit_len(self.g.decl(x).hi as i128).max(2);
        if bits <= MAX_BITS {
            return Ok((x, bits, 0));
        }
        let d = bits - MAX_BITS;
        Ok((self.shift(x, -(d as i32))?, MAX_BITS, d))
    }

    /// `x·P` as `s ∈ [2^F, 2^(F+1)]` (`2^F` where `x ≤ 0`), for `x < 2^bits` and `P` from
    /// [`Importer::normalizer`].
    pub fn normalized(&mut self, x: NodeIndex, p: NodeIndex, bits: u32) -> R<NodeIndex> {
        if bits > MAX_BITS {
            return Err(format!(
                "a {bits}-bit value to normalize (at most {MAX_BITS})"
            ));
        }
        let xp = self.mul_nodes(x, p)?;
        let s = self.shift(xp, F as i32 - (bits as i32 - 1))?;
        self.clamp_to(s, 1 << F, 2 << F, None)
    }

    /// `2^(2F) / s` for `s ∈ [2^F, 2^(F+1)]`: a public table at `TABLE_BITS` bits, one
    /// Newton step `r ← r·(2 − s·r)`.
    pub fn reciprocal(&mut self, s: NodeIndex) -> R<NodeIndex> {
        let one = 1i64 << F;
        // In [2^TABLE_BITS, 2^(TABLE_BITS+1)] since s is; the table spans the verifier's
        // wider bounds (entries outside are never read).
        let k = self.rescale_by(s, 1, 1i64 << (F - TABLE_BITS))?;
        let (first, last) = (self.g.decl(k).lo, self.g.decl(k).hi);
        let table: Vec<i64> = (first..=last)
            .map(|k| {
                let k = k.clamp(1 << TABLE_BITS, 2 << TABLE_BITS);
                // k ≥ 2^TABLE_BITS after the clamp: a positive denominator.
                round_half_even(Rational {
                    num: 1i128 << (F + TABLE_BITS),
                    den: k as i128,
                }) as i64
            })
            .collect();
        let r0 = self.table_lookup(k, table, first)?;
        // s·r0 is within 2^-TABLE_BITS of one; every bound here is small, so no clamp.
        let sr = self.mul_nodes(s, r0)?;
        let sr = self.rescale_by(sr, 1, one)?;
        let two = self.konst(vec![1], vec![2 * one]);
        let e = self.sub_nodes(two, sr)?;
        let r = self.mul_nodes(r0, e)?;
        self.rescale_by(r, 1, one)
    }
}

impl Importer<'_> {
    /// `2^F/√σ` for `s = σ·2^F ∈ [2^F, 2^(F+1)]` (in `[2^F/√2, 2^F]`): a
    /// public table at `TABLE_BITS` bits, one Newton step `r ← r·(3 − σ·r²)/2`.
    pub fn rsqrt(&mut self, s: NodeIndex) -> R<NodeIndex> {
        let one = 1i64 << F;
        let k = self.rescale_by(s, 1, 1i64 << (F - TABLE_BITS))?;
        let (first, last) = (self.g.decl(k).lo, self.g.decl(k).hi);
        let table: Vec<i64> = (first..=last)
            .map(|k| {
                let k = k.clamp(1 << TABLE_BITS, 2 << TABLE_BITS) as f64;
                (one as f64 / (k / (1u64 << TABLE_BITS) as f64).sqrt()).round() as i64
            })
            .collect();
        let r0 = self.table_lookup(k, table, first)?;
        // σ·r0² is within 2^-(TABLE_BITS−1) of one; every bound here is small.
        let sr = self.mul_nodes(s, r0)?;
        let sr = self.rescale_by(sr, 1, one)?;
        let srr = self.mul_nodes(sr, r0)?;
        let srr = self.rescale_by(srr, 1, one)?;
        let three = self.konst(vec![1], vec![3 * one]);
        let e = self.sub_nodes(three, srr)?;
        let r = self.mul_nodes(r0, e)?;
        self.rescale_by(r, 1, 2 * one)
    }
}
