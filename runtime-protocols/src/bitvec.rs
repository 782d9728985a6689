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

pub(crate) fn xor(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

pub(crate) fn and(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x & y).collect()
}

/// `n` bits as `⌈n/8⌉` bytes.
pub(crate) fn pack(v: &[u64], n: usize, out: &mut Vec<u8>) {
    let bytes: Vec<u8> = v.iter().flat_map(|w| w.to_le_bytes()).collect();
    out.extend_from_slice(&bytes[..bit_bytes(n)]);
}

pub(crate) fn unpack(bytes: &[u8], n: usize) -> Vec<u64> {
    let mut v = vec![0u64; words(n)];
    for (i, b) in bytes.iter().enumerate() {
        v[i / 8] |= u64::from(*b) << (8 * (i % 8));
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
        for i in 0..n {
            set(&mut v, k * n + i, get(p, i));
        }
    }
    v
}

/// Part `k` of `n` bits of a concatenation.
pub(crate) fn part(v: &[u64], k: usize, n: usize) -> Vec<u64> {
    if n.is_multiple_of(64) {
        return v[k * n / 64..(k + 1) * n / 64].to_vec();
    }
    let mut out = vec![0u64; words(n)];
    for i in 0..n {
        set(&mut out, i, get(v, k * n + i));
    }
    out
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
