//! Batched row-major matrix products on wrapping integers: the one GEMM kernel behind
//! `clear`'s products and every ring protocol's local share products.
//!
//! The kernel computes `MR` output rows at a time over column tiles of `NT` entries, so
//! that each row of `B` read from memory serves `MR` rows of `A` from L1, and splits the
//! work over rayon by blocks of rows of the stacked output `[batch·m, n]` — a convolution
//! at batch 1 is one batch block with many row blocks, so both cores work on it. The
//! inner loop is a multiply-add over a contiguous tile, which the compiler vectorizes;
//! [`simd`] picks an AVX2 or AVX-512 build of it at run time.
//!
//! `clear`'s products ([`gemm_i64`]) run in 32-bit lanes when the operands' magnitudes
//! prove that no partial sum leaves the i32 range (int8 tensors, accumulators of a
//! quantized network): the result is then exactly the 64-bit one.

use crate::MatDims;
use rayon::prelude::*;

/// Output rows per block.
const MR: usize = 4;
/// Output columns per tile.
const NT: usize = 256;

/// A wrapping multiply-add lane.
pub trait Lane: Copy + Default + Send + Sync {
    /// `self + a·b`, wrapping.
    fn mac(self, a: Self, b: Self) -> Self;
}

macro_rules! lane {
    ($($t:ty),*) => {$(
        impl Lane for $t {
            #[inline(always)]
            fn mac(self, a: Self, b: Self) -> Self {
                self.wrapping_add(a.wrapping_mul(b))
            }
        }
    )*};
}
lane!(i32, i64);

/// Every ring word (Z_2^32, Z_2^64, Z_2^128, and the data-free twin).
impl<W: crate::word::Word> Lane for W {
    #[inline(always)]
    fn mac(self, a: Self, b: Self) -> Self {
        self.add(a.mul(b))
    }
}

/// `out[b] = A[b] · B[b]` for every batch block `b` (an operand that is not batched is
/// shared by every block), wrapping in `T`.
pub fn gemm<T: Lane>(a: &[T], b: &[T], d: MatDims) -> Vec<T> {
    let (m, n) = (d.m, d.n);
    let mut out = vec![T::default(); d.batch * m * n];
    if m == 0 || n == 0 {
        return out;
    }
    // Blocks of `MR` rows of the stacked output `[batch·m, n]`; where `MR ∤ m` a block
    // may straddle two batches, which `row_block` splits.
    out.par_chunks_mut(MR * n)
        .enumerate()
        .for_each(|(block, rows)| row_block(a, b, d, block * MR, rows));
    out
}

/// Rows `first..first + rows.len()/n` of the stacked output `[batch·m, n]`.
fn row_block<T: Lane>(a: &[T], b: &[T], d: MatDims, first: usize, rows: &mut [T]) {
    let (m, k, n) = (d.m, d.k, d.n);
    let count = rows.len() / n;
    let mut done = 0;
    while done < count {
        let row = first + done;
        let (bi, i) = (row / m, row % m);
        let here = (count - done).min(m - i);
        let a0 = if d.a_batched { bi * m * k } else { 0 } + i * k;
        let b0 = if d.b_batched { bi * k * n } else { 0 };
        let a_rows = &a[a0..a0 + here * k];
        let b_mat = &b[b0..b0 + k * n];
        let out = &mut rows[done * n..(done + here) * n];
        match simd::kernel::<T>() {
            // SAFETY: `simd::kernel` returns a kernel only where the CPU has its features.
            Some(fast) => unsafe { fast(a_rows, b_mat, k, n, out) },
            None => tile_rows(a_rows, b_mat, k, n, out),
        }
        done += here;
    }
}

/// `out[r] = a[r] · B` for up to `MR` rows `a[r]` of length `k`, tile by tile.
#[inline(always)]
fn tile_rows<T: Lane>(a: &[T], b: &[T], k: usize, n: usize, out: &mut [T]) {
    let rows = out.len() / n;
    let mut j0 = 0;
    while j0 < n {
        let w = (n - j0).min(NT);
        let mut acc = [[T::default(); NT]; MR];
        for p in 0..k {
            let brow = &b[p * n + j0..p * n + j0 + w];
            for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
                let av = a[r * k + p];
                for (o, &bv) in acc_r[..w].iter_mut().zip(brow) {
                    *o = o.mac(av, bv);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            out[r * n + j0..r * n + j0 + w].copy_from_slice(&acc_r[..w]);
        }
        j0 += w;
    }
}

/// [`tile_rows`] compiled for wider vector units, chosen once per process by the CPU's
/// features: the portable build targets SSE2, which has no 32-bit lane multiply and
/// emulates each 64-bit one with three; AVX2 has the former (8 lanes), AVX-512DQ both.
mod simd {
    use super::{tile_rows, Lane};
    use std::sync::OnceLock;

    pub type Kernel<T> = unsafe fn(&[T], &[T], usize, usize, &mut [T]);

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn avx2<T: Lane>(a: &[T], b: &[T], k: usize, n: usize, out: &mut [T]) {
        tile_rows(a, b, k, n, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
    fn avx512<T: Lane>(a: &[T], b: &[T], k: usize, n: usize, out: &mut [T]) {
        tile_rows(a, b, k, n, out)
    }

    /// 0: none, 1: AVX2, 2: AVX-512 (F, DQ, VL).
    fn level() -> u8 {
        static LEVEL: OnceLock<u8> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx2")
                {
                    return 2;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return 1;
                }
            }
            0
        })
    }

    /// The widest kernel this CPU runs, if any beats the portable one.
    pub fn kernel<T: Lane>() -> Option<Kernel<T>> {
        #[cfg(target_arch = "x86_64")]
        match level() {
            2 => return Some(avx512::<T> as Kernel<T>),
            1 => return Some(avx2::<T> as Kernel<T>),
            _ => {}
        }
        let _ = level;
        None
    }
}

/// [`gemm`] on wrapping 64-bit integers, in 32-bit lanes where that is exact: when
/// `k · max|a| · max|b| < 2^31`, no partial sum leaves the i32 range.
pub fn gemm_i64(a: &[i64], b: &[i64], d: MatDims) -> Vec<i64> {
    match gemm_narrow(a, b, d) {
        Some(out) => out.into_par_iter().map(i64::from).collect(),
        None => gemm(a, b, d),
    }
}

/// [`gemm_i64`]'s product in 32-bit lanes, where that is exact (`None` otherwise): by
/// 16-bit pairs ([`pairs`]) where every operand fits 16 bits and the CPU has them.
pub fn gemm_narrow(a: &[i64], b: &[i64], d: MatDims) -> Option<Vec<i32>> {
    let max_abs = |v: &[i64]| v.par_iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
    let (ma, mb) = (max_abs(a), max_abs(b));
    if u128::from(ma) * u128::from(mb) * d.k as u128 >= 1 << 31 {
        return None;
    }
    if ma < 1 << 15 && mb < 1 << 15 && pairs::available() {
        return Some(pairs::gemm(a, b, d));
    }
    let narrow = |v: &[i64]| v.par_iter().map(|&x| x as i32).collect::<Vec<i32>>();
    Some(gemm(&narrow(a), &narrow(b), d))
}

/// Products of 16-bit operands summed in 32-bit lanes, two products per lane per
/// instruction (AVX-512 VNNI's `vpdpwssd`): a quantized network's accumulators, whose
/// operands are int8 values less their zero points. [`gemm_i64`] takes it where every
/// operand fits 16 bits and no sum leaves 32, so the result is exactly the 64-bit one;
/// the 32-bit lanes of [`gemm`] multiply one product per lane with a two-micro-op
/// `vpmulld`.
///
/// Both operands are packed first: `A` as pairs `(a[i][2p], a[i][2p+1])` in one 32-bit
/// word, broadcast to every lane; `B` as the same pairs down its columns, `[k/2][n]`
/// words with `n` padded to whole tiles. A task computes `MR` rows by `NR` columns
/// (sixteen 16-lane accumulators in registers) over the whole of `k`.
mod pairs {
    use crate::MatDims;
    use rayon::prelude::*;

    /// Output rows per block.
    const MR: usize = 4;
    /// Output columns per tile: four vectors of sixteen 32-bit lanes.
    const NR: usize = 64;
    /// Output rows per rayon task: its blocks reuse one tile of `B` from the cache.
    const TASK_ROWS: usize = 16;

    /// Whether this CPU has the instructions.
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Two 16-bit values in one word, the first in the low half (lane order in memory).
    fn pair(lo: i64, hi: i64) -> u32 {
        u32::from(lo as i16 as u16) | u32::from(hi as i16 as u16) << 16
    }

    /// `out[b] = A[b]·B[b]` as [`super::gemm`], for operands that fit 16 bits and sums
    /// that fit 32 (the caller checks both). Only where [`available`].
    pub fn gemm(a: &[i64], b: &[i64], d: MatDims) -> Vec<i32> {
        let (m, k, n) = (d.m, d.k, d.n);
        let (k2, np, mp) = (
            k.div_ceil(2),
            n.next_multiple_of(NR),
            m.next_multiple_of(MR),
        );
        let mut out = vec![0i32; d.batch * m * n];
        if m == 0 || n == 0 || k == 0 {
            return out;
        }
        let at = |v: &[i64], i: usize| v.get(i).copied().unwrap_or(0);
        let a_blocks = if d.a_batched { d.batch } else { 1 };
        let b_blocks = if d.b_batched { d.batch } else { 1 };
        // `[a_blocks][mp][k2]`: rows past `m` and the odd `k`'s partner are zero.
        let mut ap = vec![0u32; a_blocks * mp * k2];
        ap.par_chunks_mut(k2.max(1))
            .enumerate()
            .for_each(|(row, words)| {
                let (blk, i) = (row / mp, row % mp);
                if i < m {
                    let src = &a[(blk * m + i) * k..(blk * m + i + 1) * k];
                    for (p, w) in words.iter_mut().enumerate() {
                        *w = pair(src[2 * p], at(src, 2 * p + 1));
                    }
                }
            });
        // `[b_blocks][k2][np]`.
        let mut bp = vec![0u32; b_blocks * k2 * np];
        bp.par_chunks_mut(np).enumerate().for_each(|(row, words)| {
            let (blk, p) = (row / k2, row % k2);
            let first = &b[(blk * k + 2 * p) * n..(blk * k + 2 * p + 1) * n];
            let second =
                (2 * p + 1 < k).then(|| &b[(blk * k + 2 * p + 1) * n..(blk * k + 2 * p + 2) * n]);
            for (j, w) in words[..n].iter_mut().enumerate() {
                *w = pair(first[j], second.map_or(0, |r| r[j]));
            }
        });
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(bi, block)| {
                let a_blk = &ap[if d.a_batched { bi } else { 0 } * mp * k2..][..mp * k2];
                let b_blk = &bp[if d.b_batched { bi } else { 0 } * k2 * np..][..k2 * np];
                block
                    .par_chunks_mut(TASK_ROWS * n)
                    .enumerate()
                    .for_each(|(task, rows)| {
                        let first_row = task * TASK_ROWS;
                        let count = rows.len() / n;
                        let mut tile = [[0i32; NR]; MR];
                        for j0 in (0..n).step_by(NR) {
                            for r0 in (0..count).step_by(MR) {
                                let a_rows =
                                    &a_blk[(first_row + r0) * k2..(first_row + r0 + MR) * k2];
                                // SAFETY: `available` (checked by the only caller) found the
                                // features `kernel` is compiled for.
                                unsafe { kernel(a_rows, &b_blk[j0..], k2, np, &mut tile) };
                                let w = (n - j0).min(NR);
                                for (r, t) in tile.iter().enumerate().take((count - r0).min(MR)) {
                                    rows[(r0 + r) * n + j0..(r0 + r) * n + j0 + w]
                                        .copy_from_slice(&t[..w]);
                                }
                            }
                        }
                    });
            });
        out
    }

    /// One `MR × NR` tile: `a` holds `MR` rows of `k2` pairs, `b` the tile's first column
    /// of `k2` rows of `np` pairs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn kernel(a: &[u32], b: &[u32], k2: usize, np: usize, out: &mut [[i32; NR]; MR]) {
        use std::arch::x86_64::*;
        let mut acc = [[_mm512_setzero_si512(); 4]; MR];
        for p in 0..k2 {
            let row = &b[p * np..p * np + NR];
            // SAFETY: `row` holds `NR` = 4 × 16 words, read 16 at a time; `out` rows hold
            // `NR` words, written 16 at a time.
            let v: [__m512i; 4] = std::array::from_fn(|q| unsafe {
                _mm512_loadu_si512(row[16 * q..].as_ptr().cast())
            });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let pair = _mm512_set1_epi32(a[r * k2 + p] as i32);
                for (c, vq) in acc_r.iter_mut().zip(&v) {
                    *c = _mm512_dpwssd_epi32(*c, pair, *vq);
                }
            }
        }
        for (o, acc_r) in out.iter_mut().zip(&acc) {
            for (q, c) in acc_r.iter().enumerate() {
                // SAFETY: as above.
                unsafe { _mm512_storeu_si512(o[16 * q..].as_mut_ptr().cast(), *c) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn kernel(_: &[u32], _: &[u32], _: usize, _: usize, _: &mut [[i32; NR]; MR]) {
        unreachable!("`available` is false off x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, one dot product per output.
    fn reference(a: &[i64], b: &[i64], d: MatDims) -> Vec<i64> {
        let mut out = Vec::new();
        for bi in 0..d.batch {
            let a0 = if d.a_batched { bi * d.m * d.k } else { 0 };
            let b0 = if d.b_batched { bi * d.k * d.n } else { 0 };
            for i in 0..d.m {
                for j in 0..d.n {
                    let mut s = 0i64;
                    for p in 0..d.k {
                        s = s.wrapping_add(a[a0 + i * d.k + p].wrapping_mul(b[b0 + p * d.n + j]));
                    }
                    out.push(s);
                }
            }
        }
        out
    }

    fn operands(d: MatDims, seed: u64, wide: bool) -> (Vec<i64>, Vec<i64>) {
        let la = if d.a_batched { d.batch } else { 1 } * d.m * d.k;
        let lb = if d.b_batched { d.batch } else { 1 } * d.k * d.n;
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if wide {
                s as i64
            } else {
                (s % 255) as i64 - 127
            }
        };
        let a = (0..la).map(|_| next()).collect();
        let b = (0..lb).map(|_| next()).collect();
        (a, b)
    }

    proptest! {
        /// Both lanes (int8 operands take the 32-bit one, full-width ones wrap in 64
        /// bits) against the definition, for shapes around the block and tile sizes and
        /// blocks that straddle batches.
        #[test]
        fn products_equal_the_definition(
            batch in 1usize..4, m in 1usize..40, k in 0usize..40, n in 1usize..600,
            a_batched: bool, b_batched: bool, wide: bool, seed: u64,
        ) {
            let d = MatDims { batch, m, k, n, a_batched, b_batched };
            let (a, b) = operands(d, seed, wide);
            prop_assert_eq!(gemm_i64(&a, &b, d), reference(&a, &b, d));
        }
    }

    /// The CPU's vector kernel (where it has one) equals the portable one in every lane
    /// type, for full and partial row blocks and tiles.
    #[test]
    fn the_vector_kernel_equals_the_portable_one() {
        fn check<T: Lane + PartialEq + std::fmt::Debug>(f: impl Fn(i64) -> T) {
            let Some(fast) = simd::kernel::<T>() else {
                eprintln!("no vector kernel on this CPU: nothing to compare");
                return;
            };
            for (rows, k, n) in [(4, 7, 600), (3, 1, 5), (1, 33, 257), (4, 0, 9)] {
                let d = MatDims {
                    batch: 1,
                    m: rows,
                    k,
                    n,
                    a_batched: false,
                    b_batched: false,
                };
                let (a, b) = operands(d, 99 + k as u64, true);
                let (a, b): (Vec<T>, Vec<T>) = (
                    a.into_iter().map(&f).collect(),
                    b.into_iter().map(&f).collect(),
                );
                let mut want = vec![T::default(); rows * n];
                tile_rows(&a, &b, k, n, &mut want);
                let mut got = vec![T::default(); rows * n];
                // SAFETY: `simd::kernel` returned it for this CPU.
                unsafe { fast(&a, &b, k, n, &mut got) };
                assert_eq!(got, want, "{rows}×{k}·{k}×{n}");
            }
        }
        check(|v| v as i32);
        check(|v| v);
        check(|v| v as u32);
        check(|v| v as u64);
        check(|v| (v as u128) << 64 | v as u64 as u128);
    }

    /// Operands just inside and just outside the 32-bit lane's bound.
    #[test]
    fn the_narrow_lane_is_taken_only_where_exact() {
        let d = MatDims {
            batch: 1,
            m: 1,
            k: 2,
            n: 1,
            a_batched: false,
            b_batched: false,
        };
        for (x, y) in [
            (32767, 32767),
            (32768, 32768),
            (1 << 30, 1),
            (-(1 << 31), 1),
        ] {
            let (a, b) = (vec![x, x], vec![y, y]);
            assert_eq!(gemm_i64(&a, &b, d), reference(&a, &b, d), "{x}·{y}·2");
        }
    }
}
