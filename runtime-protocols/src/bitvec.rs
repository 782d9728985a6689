//! Packed bit vectors: bit `i` is bit `i % 64` of word `i / 64`; bits past the length are
//! kept zero so that XORs of vectors stay canonical.

/// Bytes of `n` packed bits.
pub(crate) fn bit_bytes(n: usize) -> usize {
    n.div_ceil(8)
}

pub(crate) fn words(n: usize) -> usize {
    n.div_ceil(64)
}

pub(crate) fn get(v: &[u64], i: usize) -> u64 {
    (v[i / 64] >> (i % 64)) & 1
}

pub(crate) fn set(v: &mut [u64], i: usize, b: u64) {
    v[i / 64] |= (b & 1) << (i % 64);
}

/// Set bits `start .. start + len` (a word at a time).
pub(crate) fn set_run(v: &mut [u64], start: usize, len: usize) {
    let (mut i, end) = (start, start + len);
    while i < end {
        let (w, b) = (i / 64, i % 64);
        let n = (64 - b).min(end - i);
        let ones = if n == 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << b
        };
        v[w] |= ones;
        i += n;
    }
}

/// Bits `at .. at + len` (`len ≤ 64`) as a word, bit `at` lowest.
pub(crate) fn bits_at(v: &[u64], at: usize, len: usize) -> u64 {
    let (w, s) = (at / 64, (at % 64) as u32);
    let lo = v[w] >> s;
    let hi = if s > 0 && s as usize + len > 64 {
        v[w + 1] << (64 - s)
    } else {
        0
    };
    (lo | hi) & low_mask(len as u32)
}

/// OR the low `len ≤ 64` bits of `x` into bits `at .. at + len` (one or two words).
pub(crate) fn or_bits(v: &mut [u64], at: usize, x: u64, len: usize) {
    let x = x & low_mask(len as u32);
    let (w, s) = (at / 64, (at % 64) as u32);
    v[w] |= x << s;
    if s > 0 && s as usize + len > 64 {
        v[w + 1] |= x >> (64 - s);
    }
}

pub(crate) fn xor(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

pub(crate) fn and(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x & y).collect()
}

/// `n` bits as `⌈n/8⌉` bytes.
pub(crate) fn pack(v: &[u64], n: usize, out: &mut Vec<u8>) {
    let len = bit_bytes(n);
    out.reserve(len);
    for w in &v[..len / 8] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    if !len.is_multiple_of(8) {
        out.extend_from_slice(&v[len / 8].to_le_bytes()[..len % 8]);
    }
}

pub(crate) fn unpack(bytes: &[u8], n: usize) -> Vec<u64> {
    let mut v = vec![0u64; words(n)];
    let mut chunks = bytes.chunks_exact(8);
    for (w, c) in v.iter_mut().zip(&mut chunks) {
        *w = u64::from_le_bytes(c.try_into().unwrap_or_default());
    }
    let tail = chunks.remainder();
    if let Some(w) = v.get_mut(bytes.len() / 8) {
        for (i, b) in tail.iter().enumerate() {
            *w |= u64::from(*b) << (8 * i);
        }
    }
    clear_tail(&mut v, n);
    v
}

/// Clear the bits past `n`, which are never read, so XORs stay canonical.
pub(crate) fn clear_tail(v: &mut [u64], n: usize) {
    if !n.is_multiple_of(64) {
        if let Some(last) = v.last_mut() {
            *last &= (1u64 << (n % 64)) - 1;
        }
    }
}

/// Concatenate bit vectors of `n` bits each.
pub(crate) fn concat(parts: &[&Vec<u64>], n: usize) -> Vec<u64> {
    if n.is_multiple_of(64) {
        return parts
            .iter()
            .flat_map(|p| p[..n / 64].iter().copied())
            .collect();
    }
    let mut v = vec![0u64; words(n * parts.len())];
    for (k, p) in parts.iter().enumerate() {
        insert(&mut v, k * n, p, n);
    }
    v
}

/// Part `k` of `n` bits of a concatenation.
pub(crate) fn part(v: &[u64], k: usize, n: usize) -> Vec<u64> {
    if n.is_multiple_of(64) {
        return v[k * n / 64..(k + 1) * n / 64].to_vec();
    }
    let (w, s) = ((k * n) / 64, ((k * n) % 64) as u32);
    let word = |i: usize| v.get(i).copied().unwrap_or(0);
    let mut out: Vec<u64> = (0..words(n))
        .map(|i| {
            let lo = word(w + i) >> s;
            // `checked_shl` is `None` at a shift of 64 (an aligned start).
            let hi = word(w + i + 1).checked_shl(64 - s).unwrap_or(0);
            lo | hi
        })
        .collect();
    clear_tail(&mut out, n);
    out
}

/// OR the first `n` bits of `src` into `dst` from bit `at` on, a word at a time.
fn insert(dst: &mut [u64], at: usize, src: &[u64], n: usize) {
    let (w, s) = (at / 64, (at % 64) as u32);
    for (i, &x) in src[..words(n)].iter().enumerate() {
        let x = x & low_mask((n - 64 * i) as u32);
        dst[w + i] |= x << s;
        if let Some(hi) = x.checked_shr(64 - s).filter(|&h| h != 0) {
            dst[w + i + 1] |= hi;
        }
    }
}

/// The low `bits` bits set (all 64 for `bits ≥ 64`).
pub(crate) fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Bits of the binary representation of `v` (0 for 0).
pub(crate) fn bits_of(v: u128) -> u32 {
    128 - v.leading_zeros()
}

/// `total` bits in at most `units` chunks, as even as possible, least significant first.
pub(crate) fn split(total: u32, units: usize) -> Vec<u32> {
    let u = (units as u32).min(total).max(1);
    (0..u)
        .map(|j| total / u + u32::from(j < total % u))
        .collect()
}

/// Transposes a 64 × 64 bit matrix in place: afterwards bit `c` of word `r` is what bit
/// `r` of word `c` was. Blocks of 32 × 32 swap across the diagonal, then blocks of 16 ×
/// 16 within them, down to single bits (Hacker's Delight, §7-3): 6 · 32 word steps
/// instead of 4,096 bit moves, for bit-slicing 64 values at a time.
pub(crate) fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32usize;
    let mut m: u64 = 0x0000_0000_FFFF_FFFF;
    while j != 0 {
        let mut k = 0usize;
        while k < 64 {
            // Rows `k` (bit `j` of its index clear) and `k + j` swap their blocks.
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// Bit planes of `values`: `w` planes of `words(values.len())` words, plane `j` holding
/// bit `j` of every value (planes past 64 are zero).
pub(crate) fn slice(values: &[u64], w: usize) -> Vec<Vec<u64>> {
    let mut planes = vec![vec![0u64; words(values.len())]; w];
    let mut block = [0u64; 64];
    for (b, chunk) in values.chunks(64).enumerate() {
        block[..chunk.len()].copy_from_slice(chunk);
        block[chunk.len()..].fill(0);
        transpose64(&mut block);
        for (plane, &row) in planes.iter_mut().zip(&block) {
            plane[b] = row;
        }
    }
    planes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slicing_by_transposes_agrees_with_bit_by_bit() {
        let mut rng = 7u64;
        for (n, w) in [
            (0usize, 5usize),
            (1, 64),
            (63, 17),
            (64, 64),
            (65, 1),
            (200, 70),
        ] {
            let values: Vec<u64> = (0..n).map(|_| next(&mut rng)).collect();
            let planes = slice(&values, w);
            assert_eq!(planes.len(), w);
            for (j, plane) in planes.iter().enumerate() {
                assert_eq!(plane.len(), words(n));
                for (e, &v) in values.iter().enumerate() {
                    let want = if j < 64 { v >> j & 1 } else { 0 };
                    assert_eq!(get(plane, e), want, "n {n}, plane {j}, value {e}");
                }
                let mut canonical = plane.clone();
                clear_tail(&mut canonical, n);
                assert_eq!(&canonical, plane, "bits past the length stay zero");
            }
        }
    }

    /// Bit by bit, the way the word-level functions must agree with.
    fn part_by_bits(v: &[u64], k: usize, n: usize) -> Vec<u64> {
        let mut out = vec![0u64; words(n)];
        for i in 0..n {
            set(&mut out, i, get(v, k * n + i));
        }
        out
    }

    /// SplitMix64: test words, not secrets.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn random_bits(rng: &mut u64, n: usize) -> Vec<u64> {
        let mut v: Vec<u64> = (0..words(n)).map(|_| next(rng)).collect();
        clear_tail(&mut v, n);
        v
    }

    #[test]
    fn word_runs_read_and_write_like_bit_by_bit() {
        let mut rng = 3u64;
        for at in [0, 1, 31, 32, 60, 63, 64, 65, 100] {
            for len in [1, 2, 16, 32, 33, 63, 64] {
                let x = next(&mut rng);
                let base = random_bits(&mut rng, 256);
                let mut got = base.clone();
                or_bits(&mut got, at, x, len);
                let mut want = base.clone();
                for i in 0..len {
                    set(&mut want, at + i, (x >> i) & 1);
                }
                assert_eq!(got, want, "at {at}, len {len}");
                let read = (0..len).fold(0u64, |a, i| a | get(&got, at + i) << i);
                assert_eq!(bits_at(&got, at, len), read, "at {at}, len {len}");
            }
        }
    }

    #[test]
    fn word_level_parts_and_concatenations_agree_with_bits() {
        let mut rng = 7u64;
        for n in [1, 3, 63, 64, 65, 100, 127, 128, 129, 200, 1000] {
            for count in 1..5 {
                let parts: Vec<Vec<u64>> = (0..count).map(|_| random_bits(&mut rng, n)).collect();
                let refs: Vec<&Vec<u64>> = parts.iter().collect();
                let v = concat(&refs, n);
                assert_eq!(v.len(), words(n * count), "n {n}");
                for (k, p) in parts.iter().enumerate() {
                    assert_eq!(&part(&v, k, n), p, "n {n}, part {k}");
                    assert_eq!(part(&v, k, n), part_by_bits(&v, k, n), "n {n}, part {k}");
                }
                let total = n * count;
                let mut bytes = Vec::new();
                pack(&v, total, &mut bytes);
                assert_eq!(bytes.len(), bit_bytes(total));
                assert_eq!(unpack(&bytes, total), v, "n {n}, {count} parts");
            }
        }
    }
}
