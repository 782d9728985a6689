//! Products and lookups with the dealer's material, one round each.
//!
//! - element-wise product: a Beaver triple `(a, b, a·b)` per element; the parties open
//!   `x − a` and `y − b` and `x·y = ab + (x − a)·b + (y − b)·a + (x − a)(y − b)`;
//! - matrix product: a matrix triple `(A, B, A·B)`, the same identity with matrix products,
//!   so the parties open one word per operand element, whatever the output's size;
//! - lookup of a public table: the dealer shares `r < L` (`L` the table length rounded up
//!   to a power of two) and the one-hot vector of `r`; the parties open
//!   `c = x − offset + r mod L` and `T[x − offset] = Σ_j [j = r]·T[c − j mod L]`.

use super::prep::{self, random_words, Block, Layout};
use super::select::all_to_all;
use super::Semi2k;
use crate::cost::Rounds;
use crate::stream::Stream;
use crate::word::{matmul_words, Word};
use crate::{MatDims, ProtocolError};
use rayon::prelude::*;
use std::ops::Range;

type R<T> = Result<T, ProtocolError>;

// ---- element-wise product ----------------------------------------------------------------

pub(crate) fn mul_layout(n: usize) -> Layout {
    Layout::words(3 * n)
}

pub(crate) fn mul_pattern(n: usize, parties: usize, word: usize) -> Rounds {
    vec![all_to_all(parties, 2 * n * word)]
}

pub(crate) fn mul_deal<W: Word>(n: usize, rng: &mut Stream) -> Block<W> {
    let mut words = random_words::<W>(rng, 2 * n);
    let c: Vec<W> = (0..n).map(|i| words[i].mul(words[n + i])).collect();
    words.extend(c);
    Block::of_words(words)
}

pub(crate) fn mul<W: Word>(p: &mut Semi2k<W>, x: &[W], y: &[W]) -> R<Vec<W>> {
    let n = x.len();
    let t: Block<W> = p.prep.take(&mul_layout(n), p.net.as_mut())?;
    let (a, b, c) = (&t.words[..n], &t.words[n..2 * n], &t.words[2 * n..]);
    let mut masked: Vec<W> = x.iter().zip(a).map(|(x, a)| x.sub(*a)).collect();
    masked.extend(y.iter().zip(b).map(|(y, b)| y.sub(*b)));
    let opened = p.open_words(masked)?;
    let (d, e) = opened.split_at(n);
    let first = p.me == 0;
    Ok((0..n)
        .into_par_iter()
        .map(|i| {
            let z = c[i].add(d[i].mul(b[i])).add(e[i].mul(a[i]));
            if first {
                z.add(d[i].mul(e[i]))
            } else {
                z
            }
        })
        .collect())
}

// ---- matrix product ------------------------------------------------------------------------

/// Elements of the left operand, the right operand and the product.
pub(crate) fn mat_sizes(d: MatDims) -> (usize, usize, usize) {
    let left = if d.a_batched { d.batch } else { 1 } * d.m * d.k;
    let right = if d.b_batched { d.batch } else { 1 } * d.k * d.n;
    (left, right, d.batch * d.m * d.n)
}

/// A product with no operand element or no output element: zeros, no round.
pub(crate) fn matmul_is_trivial(d: MatDims) -> bool {
    let (l, r, o) = mat_sizes(d);
    l + r == 0 || o == 0
}

pub(crate) fn matmul_layout(d: MatDims) -> Layout {
    let (l, r, o) = mat_sizes(d);
    Layout::words(l + r + o)
}

pub(crate) fn matmul_pattern(d: MatDims, parties: usize, word: usize) -> Rounds {
    let (l, r, _) = mat_sizes(d);
    vec![all_to_all(parties, (l + r) * word)]
}

pub(crate) fn matmul_deal<W: Word>(d: MatDims, rng: &mut Stream) -> Block<W> {
    let (l, r, _) = mat_sizes(d);
    let mut words = random_words::<W>(rng, l + r);
    let c = matmul_words(&words[..l], &words[l..], d);
    words.extend(c);
    Block::of_words(words)
}

pub(crate) fn matmul<W: Word>(p: &mut Semi2k<W>, x: &[W], y: &[W], d: MatDims) -> R<Vec<W>> {
    let (l, r, o) = mat_sizes(d);
    if matmul_is_trivial(d) {
        return Ok(vec![W::ZERO; o]);
    }
    let t: Block<W> = p.prep.take(&matmul_layout(d), p.net.as_mut())?;
    let (a, b, c) = (&t.words[..l], &t.words[l..l + r], &t.words[l + r..]);
    let mut masked: Vec<W> = x.iter().zip(a).map(|(x, a)| x.sub(*a)).collect();
    masked.extend(y.iter().zip(b).map(|(y, b)| y.sub(*b)));
    let opened = p.open_words(masked)?;
    let (dx, ey) = opened.split_at(l);
    let mut z = matmul_words(dx, b, d);
    let ae = matmul_words(a, ey, d);
    let de = (p.me == 0).then(|| matmul_words(dx, ey, d));
    z.par_iter_mut().enumerate().for_each(|(i, v)| {
        *v = v.add(ae[i]).add(c[i]);
        if let Some(de) = &de {
            *v = v.add(de[i]);
        }
    });
    Ok(z)
}

// ---- lookup ---------------------------------------------------------------------------------

/// Bits of the padded table length.
pub(crate) fn lookup_bits(table_len: usize) -> u32 {
    table_len.max(1).next_power_of_two().trailing_zeros()
}

/// The head block of a lookup of `n` elements: a share of each element's mask `r`. The
/// one-hot vectors of the masks follow in blocks of [`lookup_pieces`].
pub(crate) fn lookup_head(n: usize, table_len: usize) -> Layout {
    if lookup_bits(table_len) == 0 {
        return Layout::default();
    }
    Layout::words(n)
}

/// The elements whose one-hot vectors travel as one block each, and their bytes.
pub(crate) fn lookup_pieces(
    n: usize,
    table_len: usize,
    word_bytes: usize,
) -> Vec<(Range<usize>, usize)> {
    if lookup_bits(table_len) == 0 {
        return Vec::new();
    }
    let len = 1usize << lookup_bits(table_len);
    prep::pieces(n, |_| len * word_bytes)
}

pub(crate) fn lookup_pattern(n: usize, table_len: usize, parties: usize) -> Rounds {
    let bits = lookup_bits(table_len);
    if bits == 0 || n == 0 {
        return Vec::new();
    }
    vec![all_to_all(parties, n * (bits as usize).div_ceil(8))]
}

/// The dealer's masks of a lookup of `n` elements: one `r` per element, below the
/// padded table length.
pub(crate) fn lookup_masks(n: usize, table_len: usize, rng: &mut Stream) -> Vec<u64> {
    let len = 1u64 << lookup_bits(table_len);
    random_words::<u64>(rng, n)
        .into_iter()
        .map(|r| r & (len - 1))
        .collect()
}

/// The one-hot vectors of `masks` in a table of `table_len`, back to back.
pub(crate) fn one_hot<W: Word>(masks: &[u64], table_len: usize) -> Vec<W> {
    let len = 1usize << lookup_bits(table_len);
    let mut words = vec![W::ZERO; masks.len() * len];
    for (i, &r) in masks.iter().enumerate() {
        words[i * len + r as usize] = W::ONE;
    }
    words
}

/// The whole material of a lookup as one block: the masks, then their one-hot vectors.
pub(crate) fn lookup_deal<W: Word>(n: usize, table_len: usize, rng: &mut Stream) -> Block<W> {
    let masks = lookup_masks(n, table_len, rng);
    let mut words: Vec<W> = masks.iter().map(|&r| W::from_u128(u128::from(r))).collect();
    words.extend(one_hot::<W>(&masks, table_len));
    Block::of_words(words)
}

pub(crate) fn lookup<W: Word>(p: &mut Semi2k<W>, x: &[W], table: &[i64], offset: i64) -> R<Vec<W>> {
    let n = x.len();
    let bits = lookup_bits(table.len());
    if bits == 0 || n == 0 {
        // One entry: x must be `offset`.
        let v = table.first().copied().unwrap_or(0);
        return Ok(p.public_words(&vec![W::from_i64(v); n]));
    }
    let len = 1usize << bits;
    let head: Block<W> = p.prep.take(&lookup_head(n, table.len()), p.net.as_mut())?;
    let lmask = len as u64 - 1;
    let ob = (bits as usize).div_ceil(8);
    let shift = W::from_i64(offset).neg();
    let first = p.me == 0;
    let mine: Vec<u64> = (0..n)
        .map(|i| {
            let v = if first { x[i].add(shift) } else { x[i] };
            (v.add(head.words[i]).to_u128() as u64) & lmask
        })
        .collect();
    let mut msg = Vec::with_capacity(n * ob);
    for v in &mine {
        msg.extend_from_slice(&v.to_le_bytes()[..ob]);
    }
    let got = p.all_round(msg)?;
    let table: Vec<W> = (0..len)
        .map(|j| W::from_i64(table.get(j).copied().unwrap_or(0)))
        .collect();
    // The one-hot vectors, a block at a time as they come from the dealer.
    let mut out = Vec::with_capacity(n);
    for (range, _) in lookup_pieces(n, table.len(), W::BYTES) {
        let t: Block<W> = p
            .prep
            .take(&Layout::words(range.len() * len), p.net.as_mut())?;
        let first = range.start;
        let part: Vec<W> = range
            .into_par_iter()
            .map(|i| {
                let c = got.iter().fold(mine[i], |acc, m| {
                    let mut b = [0u8; 8];
                    b[..ob].copy_from_slice(&m[i * ob..(i + 1) * ob]);
                    acc.wrapping_add(u64::from_le_bytes(b))
                }) & lmask;
                let onehot = &t.words[(i - first) * len..(i - first + 1) * len];
                onehot.iter().enumerate().fold(W::ZERO, |acc, (j, &h)| {
                    acc.add(h.mul(table[(c.wrapping_sub(j as u64) & lmask) as usize]))
                })
            })
            .collect();
        out.extend(part);
    }
    Ok(out)
}
