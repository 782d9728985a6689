//! Products and lookups with the dealer's material, one round each.
//!
//! - element-wise product: a Beaver triple `(a, b, a·b)` per element; the parties open
//!   `x − a` and `y − b` and `x·y = ab + (x − a)·b + (y − b)·a + (x − a)(y − b)`;
//! - matrix product: a matrix triple `(A, B, A·B)`, the same identity with matrix products,
//!   so the parties open one word per operand element, whatever the output's size;
//! - lookup of a public table: the dealer shares `r < L` (`L` the table length rounded up
//!   to a power of two) and the one-hot vector of `r`; the parties open
//!   `c = x − offset + r mod L` and `T[x − offset] = Σ_j [j = r]·T[c − j mod L]`.

use super::prep::{random_words, Block, Layout};
use super::select::all_to_all;
use super::Semi2k;
use crate::cost::Rounds;
use crate::stream::Stream;
use crate::word::{matmul_words, Word};
use crate::{MatDims, ProtocolError};
use rayon::prelude::*;

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

pub(crate) fn lookup_layout(n: usize, table_len: usize) -> Layout {
    if lookup_bits(table_len) == 0 {
        return Layout::default();
    }
    Layout::words(n * (1 + (1usize << lookup_bits(table_len))))
}

pub(crate) fn lookup_pattern(n: usize, table_len: usize, parties: usize) -> Rounds {
    let bits = lookup_bits(table_len);
    if bits == 0 || n == 0 {
        return Vec::new();
    }
    vec![all_to_all(parties, n * (bits as usize).div_ceil(8))]
}

pub(crate) fn lookup_deal<W: Word>(n: usize, table_len: usize, rng: &mut Stream) -> Block<W> {
    let len = 1usize << lookup_bits(table_len);
    let raw = random_words::<u64>(rng, n);
    let mut words = vec![W::ZERO; n * (1 + len)];
    for i in 0..n {
        let r = raw[i] & (len as u64 - 1);
        words[i] = W::from_u128(u128::from(r));
        words[n + i * len + r as usize] = W::ONE;
    }
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
    let t: Block<W> = p
        .prep
        .take(&lookup_layout(n, table.len()), p.net.as_mut())?;
    let lmask = len as u64 - 1;
    let ob = (bits as usize).div_ceil(8);
    let shift = W::from_i64(offset).neg();
    let first = p.me == 0;
    let mine: Vec<u64> = (0..n)
        .map(|i| {
            let v = if first { x[i].add(shift) } else { x[i] };
            (v.add(t.words[i]).to_u128() as u64) & lmask
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
    Ok((0..n)
        .into_par_iter()
        .map(|i| {
            let c = got.iter().fold(mine[i], |acc, m| {
                let mut b = [0u8; 8];
                b[..ob].copy_from_slice(&m[i * ob..(i + 1) * ob]);
                acc.wrapping_add(u64::from_le_bytes(b))
            }) & lmask;
            let onehot = &t.words[n + i * len..n + (i + 1) * len];
            onehot.iter().enumerate().fold(W::ZERO, |acc, (j, &h)| {
                acc.add(h.mul(table[(c.wrapping_sub(j as u64) & lmask) as usize]))
            })
        })
        .collect())
}
