//! The chunks of a requantization's *borrow* comparison, shared by the dealer-assisted
//! requantizations of `rep3` ([`crate::rep3`]) and `semi2k` / `spdz2k`
//! ([`crate::semi2k`]).
//!
//! A requantization opens `c = y + r mod 2^m` and reads the mask two ways: `r` when `c`'s
//! top bit is set, `r − 2^m` otherwise (only the dealer knows which value that is). The
//! borrow compares `2·P_l + H_0` (the public remainder, then the floor's parity) with the
//! dealer's `2·Q_l` and `Q_h`'s parity, where `Q = r'·num` for the reading `r'`: one set
//! of chunk tables per reading. When every divisor is a power of two the two readings'
//! `Q_l` differ by a multiple of `2^m`, so they agree on the index's bits `1 … m`: cut at
//! index bit `m + 1`, only the lowest chunk (it holds the parity) and the chunks above
//! the cut need a second table.

use crate::bitvec::split;

/// The widest chunk of a comparison table where bytes count most (`2^5` entries): the
/// plans of [`crate::Favor::Bytes`].
pub(crate) const MAX_CHUNK: u32 = 5;

/// The widest chunk a table word holds (`2^6` entries, one `u64`): the plans of
/// [`crate::Favor::Rounds`], which take fewer, wider units to end the tree in one round.
pub(crate) const WIDEST_CHUNK: u32 = 6;

/// How the two readings of the mask relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readings {
    /// They leave the same remainder and parity: one set of tables.
    Same,
    /// Every divisor a power of two: a second table where a chunk reads bits `≥ m` of
    /// `Q_l`, or the parity.
    PowerOfTwo,
    /// Any divisors: a second table for every chunk.
    Apart,
}

/// Chunk widths of the borrow comparison, least significant first, and which chunks have
/// a second table (for the reading `r − 2^m`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BorrowChunks {
    pub widths: Vec<u32>,
    pub differs: Vec<bool>,
}

impl BorrowChunks {
    /// `s + 1` bits (remainders under `2^s`, then the parity) in at most `units` units
    /// of at most `widest` bits for an opening of `m` bits.
    pub fn new(s: u32, m: u32, units: usize, readings: Readings, widest: u32) -> BorrowChunks {
        let even = |differ: bool| {
            let widths = split(s + 1, units);
            let differs = vec![differ; widths.len()];
            BorrowChunks { widths, differs }
        };
        match readings {
            Readings::Same => even(false),
            Readings::Apart => even(true),
            Readings::PowerOfTwo => {
                let low = (m + 1).min(s + 1);
                let high = s + 1 - low;
                let hi_units = high.div_ceil(widest) as usize;
                let lo_units = units.saturating_sub(hi_units);
                if lo_units == 0 || low > lo_units as u32 * widest {
                    return even(true);
                }
                // `split` puts the wider chunks first: reversed, the lowest is the
                // narrowest, and so is its second table.
                let mut widths: Vec<u32> = split(low, lo_units).into_iter().rev().collect();
                let cut = widths.len();
                if high > 0 {
                    widths.extend(split(high, hi_units));
                }
                let differs = (0..widths.len()).map(|j| j == 0 || j >= cut).collect();
                BorrowChunks { widths, differs }
            }
        }
    }

    /// Table bits of the reading `r`.
    pub fn first_bits(&self) -> usize {
        self.widths.iter().map(|&w| 1usize << w).sum()
    }

    /// Table bits of the reading `r − 2^m`: its chunks that differ.
    pub fn second_bits(&self) -> usize {
        self.widths
            .iter()
            .zip(&self.differs)
            .filter(|(_, &d)| d)
            .map(|(&w, _)| 1usize << w)
            .sum()
    }

    /// Both readings' table bits.
    pub fn table_bits(&self) -> usize {
        self.first_bits() + self.second_bits()
    }

    /// Where chunk `j`'s table starts, from the start of the borrow tables, for the
    /// reading `r` or, with `second`, `r − 2^m` (the first reading's table where the
    /// chunk does not differ).
    pub fn offset(&self, j: usize, second: bool) -> usize {
        let before = self.widths[..j].iter().zip(&self.differs);
        if second && self.differs[j] {
            let own: usize = before.filter(|(_, &d)| d).map(|(&w, _)| 1usize << w).sum();
            self.first_bits() + own
        } else {
            before.map(|(&w, _)| 1usize << w).sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitvec::low_mask as mask;
    use crate::testutil::values;

    /// Cut at `Q_l`'s bit `m`, the chunks marked alike read the same bits of `2·Q_l`
    /// under both readings of the mask, for every power-of-two divisor up to `2^s`; the
    /// chunks cover `s + 1` bits in at most `units` units.
    #[test]
    fn chunks_alike_for_both_readings_are_alike() {
        let cases = [
            (35, 32),
            (35, 20),
            (33, 32),
            (40, 30),
            (62, 32),
            (31, 31),
            (12, 9),
            (9, 20),
        ];
        // The byte-lean plans' units (a power of two, at least 8) and the round-lean ones'
        // (as few as the widest chunk allows).
        let bytes_units = |s: u32| 8usize.max(((s + 1) as usize).div_ceil(5).next_power_of_two());
        let rounds_units = |s: u32| ((s + 1) as usize).div_ceil(6);
        let shapes: [(u32, &dyn Fn(u32) -> usize); 2] =
            [(MAX_CHUNK, &bytes_units), (WIDEST_CHUNK, &rounds_units)];
        for (k, ((s, m), (widest, units))) in cases
            .into_iter()
            .flat_map(|c| shapes.map(|shape| (c, shape)))
            .enumerate()
        {
            let units = units(s);
            let b = BorrowChunks::new(s, m, units, Readings::PowerOfTwo, widest);
            assert_eq!(b.widths.iter().sum::<u32>(), s + 1, "s {s}, m {m}");
            assert!(b.widths.len() <= units);
            assert!(b.widths.iter().all(|&w| (1..=widest).contains(&w)));
            assert!(b.differs[0], "the lowest chunk holds the parity");
            let alike: u32 = b
                .widths
                .iter()
                .zip(&b.differs)
                .filter(|(_, &d)| !d)
                .map(|(&w, _)| w)
                .sum();
            // The round-lean units may leave no room for the cut (then every chunk
            // differs, which the rest checks too).
            if s >= m + 4 && widest == MAX_CHUNK {
                assert!(alike >= m - widest, "s {s}, m {m}: {b:?}");
            }
            let n = 2000;
            let seed = k as u64;
            let sds = values(n, 0, i64::from(s), seed);
            let nums = values(n, 1, 1 << 24, seed + 100);
            let rs = values(n, 1 << (m - 1), (1 << m) - 1, seed + 200);
            for ((&sd, &num), &r) in sds.iter().zip(&nums).zip(&rs) {
                let (num, r) = (i128::from(num), i128::from(r));
                let ql = |rv: i128| ((rv * num).rem_euclid(1 << sd) as u64) << 1;
                let (q1, q0) = (ql(r), ql(r - (1 << m)));
                let mut shift = 0;
                for (&w, &d) in b.widths.iter().zip(&b.differs) {
                    if !d {
                        assert_eq!((q1 >> shift) & mask(w), (q0 >> shift) & mask(w));
                    }
                    shift += w;
                }
            }
        }
    }

    /// The second reading's tables hold exactly the chunks that differ, after the first
    /// reading's, in chunk order; the others read the first reading's.
    #[test]
    fn offsets_lay_the_second_tables_after_the_first() {
        let b = BorrowChunks::new(35, 32, 8, Readings::PowerOfTwo, MAX_CHUNK);
        assert_eq!(b.widths, vec![4, 4, 5, 5, 5, 5, 5, 3]);
        assert_eq!(b.first_bits(), 200);
        assert_eq!(b.second_bits(), 16 + 8);
        assert_eq!(b.offset(0, true), 200);
        assert_eq!(b.offset(7, true), 216);
        assert_eq!(b.offset(3, true), b.offset(3, false));
        assert_eq!(b.offset(3, false), 16 + 16 + 32);
        let apart = BorrowChunks::new(35, 32, 8, Readings::Apart, MAX_CHUNK);
        assert_eq!(apart.table_bits(), 2 * apart.first_bits());
        let same = BorrowChunks::new(35, 32, 8, Readings::Same, MAX_CHUNK);
        assert_eq!(same.table_bits(), same.first_bits());
    }
}
