//! `table[x − offset]` with the third party as a dealer, in the groups of [`super::assist`].
//!
//! The table is padded to `L = 2^m` entries and its values shifted to `T'[j] = table[j] −
//! min ∈ [0, 2^w)`. For `y = x − offset ∈ [0, L)`:
//!
//! 1. *open* (1 round): `A` and `B` learn `c = y + r mod 2^m` (`r = r_A + r_B` from the keys
//!    `D`–`A` and `D`–`B`, as in [`super::assist`]). In the same round `D` sends `B` XOR
//!    shares of the one-hot vector of `r` (`L` bits, `A`'s half are pads it draws) and,
//!    for a random `ρ ∈ [0, 2^w)` of which `A` and `B` each draw an XOR half, ring shares of
//!    each bit of `ρ` (`w` words, `A`'s half drawn).
//! 2. *select and open* (1 round): entry `k` of the one-hot vector stands for `y = c − k`,
//!    so `⊕_k f[k]·T'[c − k] = T'[y]` — linear over GF(2), so each evaluator applies it to
//!    its own XOR share `f_A` or `f_B` locally. They open `T'[y] ⊕ ρ = u`.
//! 3. *convert and reshare* (1 round): `T'[y] = Σ_k 2^k (u_k + ρ_k − 2 u_k ρ_k)`, additive
//!    in the ring shares of `ρ_k`; `A` adds `min`; the parts are reshared through `D`.
//!
//! `D` sends `L/8 + w·word` bytes per element, `A` and `B` `⌈m/8⌉ + ⌈w/8⌉` and a word:
//! for an int8 table in Z_2^64, 96 + 10 bytes instead of the one-hot vector of ring words
//! (2 KB) of a lookup that opens `y` to one party. `A` sees `c` (masked by `r_B`) and
//! `u` (by `ρ_B`); `B` sees `c`, `u` and `D`'s shares (masked by `A`'s pads); `D` sees
//! only parts masked with randomness of `A` and `B`.
//!
//! Favouring rounds, for few elements ([`rotates`]) [`lookup_rotated`] takes two rounds
//! instead: the dealer deals each element's whole table rotated by its mask, `2^m` ring
//! words, and the opened entry is already a replicated sharing.

use super::assist::{put_words, reshare_parts, Inbox, Post, Role, Seat};
use super::{Rep, Rep3};
use crate::bitvec::{bit_bytes, bits_at, bits_of, get, low_mask, or_bits, pack, set, words, xor};
use crate::word::Word;
use crate::{Favor, ProtocolError};
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;

/// The widest index this lookup takes: its one-hot vector is `2^m` bits per element.
pub(super) const MAX_INDEX_BITS: u32 = 24;
/// The widest range of table values: each bit is one ring word from the dealer.
pub(super) const MAX_VALUE_BITS: u32 = 63;

/// The public shape of a lookup: index bits `m`, value bits `w`, the smallest value.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub m: u32,
    pub w: u32,
    pub min: i64,
}

impl Shape {
    /// `None` where the table is empty or too wide for this method.
    pub fn new(table: &[i64]) -> Option<Shape> {
        let min = *table.iter().min()?;
        let max = *table.iter().max()?;
        Shape::of(table.len(), min, max)
    }

    /// The shape of a table of `len` entries with values in `[min, max]`.
    pub fn of(len: usize, min: i64, max: i64) -> Option<Shape> {
        if len == 0 || min > max {
            return None;
        }
        let m = bits_of(len as u128 - 1).max(1);
        let w = bits_of((max as i128 - min as i128) as u128).max(1);
        (m <= MAX_INDEX_BITS && w <= MAX_VALUE_BITS).then_some(Shape { m, w, min })
    }

    fn len(&self) -> usize {
        1 << self.m
    }
}

/// `table[x − offset]` for every `x` (see the module doc). 3 rounds.
pub(super) fn lookup<W: Word>(
    p: &mut Rep3<W>,
    shape: Shape,
    x: &[Rep<W>],
    table: &[i64],
    offset: i64,
) -> R<Vec<Rep<W>>> {
    let n = x.len();
    let (m, w, len) = (shape.m, shape.w, shape.len());
    let mmask = low_mask(m);
    let low = |v: W| (v.to_u128() as u64) & mmask;
    let neg_offset = W::from_i64(offset).neg();
    // T'[j] = table[j] − min; entries past the table are never selected.
    let shifted: Vec<u64> = (0..len)
        .map(|j| {
            table
                .get(j)
                .map_or(0, |&v| (v as i128 - shape.min as i128) as u64)
        })
        .collect();
    let seats: Vec<Seat> = (0..3).map(|g| Seat::new(p.me, g, p.group(n, g))).collect();

    // Round 1: the openings of c, and the dealer's shares.
    let mut post = Post::new();
    // Per group: c (evaluators), the one-hot share, ρ's XOR half, ρ's bits' ring shares.
    let mut mask: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut onehot: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut rho: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut rho_ring: Vec<Vec<W>> = vec![Vec::new(); 3];
    for (gi, s) in seats.iter().enumerate() {
        let nn = s.n();
        if nn == 0 {
            continue;
        }
        let masks = |p: &mut Rep3<W>, key| -> Vec<u64> {
            p.draw_words(key, nn).iter().map(|&v| low(v)).collect()
        };
        match s.role {
            Role::A | Role::B => {
                let is_a = s.role == Role::A;
                mask[gi] = send_opening(p, s, x, neg_offset, m, &mut post);
                if is_a {
                    onehot[gi] = p.draw_bits(s.da, nn * len);
                    rho[gi] = p.draw_bits(s.da, nn * w as usize);
                    rho_ring[gi] = p.draw_words(s.da, nn * w as usize);
                } else {
                    rho[gi] = p.draw_bits(s.db, nn * w as usize);
                    post.expect[s.d] += dealer_bytes(shape, nn, W::BYTES);
                }
            }
            Role::Dealer => {
                let (ra, rb) = (masks(p, s.da), masks(p, s.db));
                let msg = dealer_material(p, s, shape, &ra, &rb);
                post.send(s.pb, msg);
            }
        }
    }
    let mut inbox = p.post(post)?;

    // Round 2: each evaluator's share of T'[y], opened under ρ.
    let mut post = Post::new();
    let mut opened_mine: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut cs: Vec<Vec<u64>> = vec![Vec::new(); 3];
    for (gi, s) in seats.iter().enumerate() {
        let nn = s.n();
        if nn == 0 || s.role == Role::Dealer {
            continue;
        }
        let is_a = s.role == Role::A;
        let c = receive_opening(s, x, neg_offset, m, &mask[gi], &mut inbox);
        if !is_a {
            onehot[gi] = inbox.bits(s.d, nn * len);
            rho_ring[gi] = inbox.words(s.d, nn * w as usize);
        }
        // A twin computes no values (see `Word::DATA`).
        let share = if W::DATA {
            select(&onehot[gi], &c, &shifted, w)
        } else {
            vec![0u64; words(nn * w as usize)]
        };
        let masked = xor(&share, &rho[gi]);
        let mut msg = Vec::new();
        pack(&masked, nn * w as usize, &mut msg);
        post.expect[s.other()] += msg.len();
        post.send(s.other(), msg);
        opened_mine[gi] = masked;
        cs[gi] = c;
    }
    let mut inbox = p.post(post)?;

    // Round 3: additive parts of T'[y] + min, reshared.
    let mut z: Vec<Vec<W>> = vec![Vec::new(); 3];
    for (gi, s) in seats.iter().enumerate() {
        let nn = s.n();
        if nn == 0 || s.role == Role::Dealer {
            continue;
        }
        let is_a = s.role == Role::A;
        let u = xor(&opened_mine[gi], &inbox.bits(s.other(), nn * w as usize));
        z[gi] = (0..nn)
            .map(|i| {
                let mut acc = if is_a {
                    W::from_i64(shape.min)
                } else {
                    W::ZERO
                };
                for k in 0..w as usize {
                    let uk = get(&u, i * w as usize + k);
                    let pow = W::from_u128(1u128 << k);
                    if uk == 1 && is_a {
                        acc = acc.add(pow);
                    }
                    let share = rho_ring[gi][i * w as usize + k];
                    // 2^k (1 − 2u_k) ρ_k
                    let term = pow.mul(share);
                    acc = if uk == 1 {
                        acc.sub(term)
                    } else {
                        acc.add(term)
                    };
                }
                acc
            })
            .collect();
    }
    let parts = reshare_parts(p, &seats, &z, 1)?;
    let mut out = vec![Rep::<W>::default(); n];
    for (s, (a, b)) in seats.iter().zip(parts) {
        for (i, e) in s.range.clone().enumerate() {
            out[e] = Rep { a: a[i], b: b[i] };
        }
    }
    Ok(out)
}

/// Round 1 of an evaluator: its opening of `c = y + r mod 2^m` to the other evaluator (`A`
/// its component `g + 1` with `−offset` folded in, `B` its component `g`, each under its
/// draw from the key it shares with the dealer). Returns the draws.
fn send_opening<W: Word>(
    p: &mut Rep3<W>,
    s: &Seat,
    x: &[Rep<W>],
    neg_offset: W,
    m: u32,
    post: &mut Post,
) -> Vec<u64> {
    let (nn, ob, mmask) = (s.n(), (m as usize).div_ceil(8), low_mask(m));
    let low = |v: W| (v.to_u128() as u64) & mmask;
    let is_a = s.role == Role::A;
    let rx: Vec<u64> = p
        .draw_words(if is_a { s.da } else { s.db }, nn)
        .iter()
        .map(|&v: &W| low(v))
        .collect();
    let mut msg = Vec::with_capacity(nn * ob);
    for (i, e) in s.range.clone().enumerate() {
        let comp = if is_a { x[e].a.add(neg_offset) } else { x[e].b };
        let v = low(comp).wrapping_add(rx[i]) & mmask;
        msg.extend_from_slice(&v.to_le_bytes()[..ob]);
    }
    post.send(s.other(), msg);
    post.expect[s.other()] += nn * ob;
    rx
}

/// `c` for every element of an evaluator's group, from its own components, its draws and
/// the other evaluator's opening.
fn receive_opening<W: Word>(
    s: &Seat,
    x: &[Rep<W>],
    neg_offset: W,
    m: u32,
    mask: &[u64],
    inbox: &mut Inbox,
) -> Vec<u64> {
    let (nn, ob, mmask) = (s.n(), (m as usize).div_ceil(8), low_mask(m));
    let low = |v: W| (v.to_u128() as u64) & mmask;
    let is_a = s.role == Role::A;
    let got = inbox.take(s.other(), nn * ob).to_vec();
    s.range
        .clone()
        .enumerate()
        .map(|(i, e)| {
            let own = if is_a { x[e].a.add(neg_offset) } else { x[e].a };
            let mut b = [0u8; 8];
            b[..ob].copy_from_slice(&got[i * ob..(i + 1) * ob]);
            low(own)
                .wrapping_add(low(x[e].b))
                .wrapping_add(mask[i])
                .wrapping_add(u64::from_le_bytes(b))
                & mmask
        })
        .collect()
}

/// The most table entries a call may deal as whole rotated tables ([`lookup_rotated`]):
/// 2^19 ring words (2 MB of 32-bit words), a squeeze-excitation gate's 1,152 elements of
/// a 256-entry table.
pub(super) const ROTATED_ENTRIES: usize = 1 << 19;

/// Whether a lookup of `n` elements takes [`lookup_rotated`]: two rounds for `2^m` ring
/// words per element from the dealer (about ten times the one-hot construction's bytes),
/// where rounds are favoured and there are few elements.
pub(super) fn rotates(shape: Shape, n: usize, favor: Favor) -> bool {
    favor == Favor::Rounds && n.saturating_mul(shape.len()) <= ROTATED_ENTRIES
}

/// `table[x − offset]` in two rounds, for few elements where rounds are favoured (see
/// [`rotates`]): the dealer
/// deals the whole table rotated by its mask and shifted by a ring mask `ρ`,
/// `S[j] = table[j − r mod L] + ρ`, additively shared between `A` (pads from their key)
/// and `B` (sent). After the opening of `c = y + r` (round 1, as in [`lookup`]) both
/// evaluators open `u = S[c] = table[y] + ρ` (round 2). With `ρ = ρ_A + ρ_B` drawn from
/// the keys `D`–`A` and `D`–`B`, the components `(−ρ_B, −ρ_A, u)` at positions
/// `(g, g + 1, g + 2)` are a replicated sharing of `table[y]` that each party holds its two
/// of without a resharing: `D` has `−ρ_B` and `−ρ_A`, `A` `−ρ_A` and `u`, `B` `u` and `−ρ_B`.
/// `A` sees `c` (masked by `r_B`) and `u` (by `ρ_B`), `B` `c`, `u` (by `ρ_A`) and the
/// dealer's table (by `A`'s pads), `D` nothing.
pub(super) fn lookup_rotated<W: Word>(
    p: &mut Rep3<W>,
    shape: Shape,
    x: &[Rep<W>],
    table: &[i64],
    offset: i64,
) -> R<Vec<Rep<W>>> {
    let n = x.len();
    let (m, len) = (shape.m, shape.len());
    let mmask = low_mask(m);
    let neg_offset = W::from_i64(offset).neg();
    let seats: Vec<Seat> = (0..3).map(|g| Seat::new(p.me, g, p.group(n, g))).collect();

    // Round 1: the openings of c; the dealer's rotated tables to B.
    let mut post = Post::new();
    let mut mask: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let mut shares: Vec<Vec<W>> = vec![Vec::new(); 3];
    let mut rho: Vec<Vec<W>> = vec![Vec::new(); 3];
    for (gi, s) in seats.iter().enumerate() {
        let nn = s.n();
        if nn == 0 {
            continue;
        }
        match s.role {
            Role::A | Role::B => {
                mask[gi] = send_opening(p, s, x, neg_offset, m, &mut post);
                if s.role == Role::A {
                    shares[gi] = p.draw_words(s.da, nn * len);
                    rho[gi] = p.draw_words(s.da, nn);
                } else {
                    rho[gi] = p.draw_words(s.db, nn);
                    post.expect[s.d] += nn * len * W::BYTES;
                }
            }
            Role::Dealer => {
                let low = |v: &W| (v.to_u128() as u64) & mmask;
                let ra: Vec<W> = p.draw_words(s.da, nn);
                let pads: Vec<W> = p.draw_words(s.da, nn * len);
                let rho_a: Vec<W> = p.draw_words(s.da, nn);
                let rb: Vec<W> = p.draw_words(s.db, nn);
                let rho_b: Vec<W> = p.draw_words(s.db, nn);
                let mut msg = Vec::with_capacity(nn * len * W::BYTES);
                for i in 0..nn {
                    let r = (low(&ra[i]).wrapping_add(low(&rb[i])) & mmask) as usize;
                    let rho = rho_a[i].add(rho_b[i]);
                    let row = (0..len).map(|j| {
                        let v = table.get(j.wrapping_sub(r) & (len - 1)).copied();
                        W::from_i64(v.unwrap_or(0)).add(rho).sub(pads[i * len + j])
                    });
                    for w in row {
                        w.write(&mut msg);
                    }
                    // Its components: −ρ_B (position g), −ρ_A (position g + 1).
                    shares[gi].push(rho_b[i].neg());
                    shares[gi].push(rho_a[i].neg());
                }
                post.send(s.pb, msg);
            }
        }
    }
    let mut inbox = p.post(post)?;

    // Round 2: each evaluator's share of S[c], to the other.
    let mut post = Post::new();
    let mut mine: Vec<Vec<W>> = vec![Vec::new(); 3];
    for (gi, s) in seats.iter().enumerate() {
        let nn = s.n();
        if nn == 0 || s.role == Role::Dealer {
            continue;
        }
        let c = receive_opening(s, x, neg_offset, m, &mask[gi], &mut inbox);
        if s.role == Role::B {
            shares[gi] = inbox.words(s.d, nn * len);
        }
        // A twin computes no values (see `Word::DATA`).
        mine[gi] = (0..nn)
            .map(|i| {
                let at = if W::DATA { c[i] as usize } else { 0 };
                shares[gi][i * len + at]
            })
            .collect();
        let mut msg = Vec::with_capacity(nn * W::BYTES);
        put_words(&mine[gi], &mut msg);
        post.expect[s.other()] += msg.len();
        post.send(s.other(), msg);
    }
    let mut inbox = p.post(post)?;

    let mut out = vec![Rep::<W>::default(); n];
    for (gi, s) in seats.iter().enumerate() {
        let nn = s.n();
        if nn == 0 {
            continue;
        }
        let theirs: Vec<W> = if s.role == Role::Dealer {
            Vec::new()
        } else {
            inbox.words(s.other(), nn)
        };
        for (i, e) in s.range.clone().enumerate() {
            out[e] = match s.role {
                Role::Dealer => Rep {
                    a: shares[gi][2 * i],
                    b: shares[gi][2 * i + 1],
                },
                Role::A => Rep {
                    a: rho[gi][i].neg(),
                    b: mine[gi][i].add(theirs[i]),
                },
                Role::B => Rep {
                    a: mine[gi][i].add(theirs[i]),
                    b: rho[gi][i].neg(),
                },
            };
        }
    }
    Ok(out)
}

/// `⊕_k f[k]·T'[(c − k) mod L]` per element: one evaluator's XOR share of `T'[y]`, `w` bits
/// per element. Bit-sliced where the rotated columns fit [`SLICED_WORDS`]: bit `b` of the
/// result is the parity of `f & R_{b,c}`, with `R_{b,c}[k]` bit `b` of `T'[(c − k) mod L]`
/// (a few ANDs and popcounts per output bit instead of a table read per set bit of `f`,
/// about half of `L`).
fn select(f: &[u64], c: &[u64], shifted: &[u64], w: u32) -> Vec<u64> {
    let len = shifted.len();
    let lw = len.div_ceil(64);
    let values: Vec<u64> = if len * w as usize * lw <= SLICED_WORDS {
        let columns = rotated_columns(shifted, w);
        let lmask = len - 1;
        c.par_iter()
            .enumerate()
            .map(|(i, &ci)| {
                // `len · lw ≤ 2^16` keeps `lw ≤ 32`.
                let mut fw = [0u64; 32];
                for (q, word) in fw.iter_mut().enumerate().take(lw) {
                    *word = bits_at(f, i * len + 64 * q, 64.min(len - 64 * q));
                }
                let at = (ci as usize & lmask) * w as usize * lw;
                let mut acc = 0u64;
                for b in 0..w as usize {
                    let col = &columns[at + b * lw..at + (b + 1) * lw];
                    let ones: u32 = fw.iter().zip(col).map(|(x, y)| (x & y).count_ones()).sum();
                    acc |= u64::from(ones & 1) << b;
                }
                acc
            })
            .collect()
    } else {
        c.par_iter()
            .enumerate()
            .map(|(i, &ci)| select_one(f, i, ci, shifted))
            .collect()
    };
    let mut out = vec![0u64; words(c.len() * w as usize)];
    for (i, &v) in values.iter().enumerate() {
        or_bits(&mut out, i * w as usize, v, w as usize);
    }
    out
}

/// Words of the bit-sliced selection's rotated columns at most: 2^16 (512 KiB; a 256-entry
/// table of 9-bit values takes 9,216).
const SLICED_WORDS: usize = 1 << 16;

/// `R_{b,c}` of [`select`] for every `c` and `b`, `c`-major, `⌈L/64⌉` words each.
fn rotated_columns(shifted: &[u64], w: u32) -> Vec<u64> {
    let len = shifted.len();
    let (lw, lmask) = (len.div_ceil(64), len - 1);
    let mut columns = vec![0u64; len * w as usize * lw];
    for c in 0..len {
        for k in 0..len {
            let entry = shifted[c.wrapping_sub(k) & lmask];
            for b in 0..w as usize {
                let word = (c * w as usize + b) * lw + k / 64;
                columns[word] |= ((entry >> b) & 1) << (k % 64);
            }
        }
    }
    columns
}

/// [`select`] of element `i` by its set bits.
fn select_one(f: &[u64], i: usize, ci: u64, shifted: &[u64]) -> u64 {
    let len = shifted.len();
    let lmask = len - 1;
    let mut acc = 0u64;
    // The set bits of the element's share, 64 at a time.
    for k0 in (0..len).step_by(64) {
        let mut bits = bits_at(f, i * len + k0, 64.min(len - k0));
        while bits != 0 {
            let k = k0 + bits.trailing_zeros() as usize;
            acc ^= shifted[(ci as usize).wrapping_sub(k) & lmask];
            bits &= bits - 1;
        }
    }
    acc
}

/// Bytes `D` sends `B` in round 1 for a group of `n` elements and ring words of `word`
/// bytes.
pub(super) fn dealer_bytes(shape: Shape, n: usize, word: usize) -> usize {
    bit_bytes(n * shape.len()) + n * shape.w as usize * word
}

/// The dealer's draws (in `A`'s and `B`'s order) and its message to `B`: `B`'s XOR share of
/// the one-hot vectors of `r = r_A + r_B`, then `B`'s ring shares of the bits of `ρ`.
fn dealer_material<W: Word>(
    p: &mut Rep3<W>,
    s: &Seat,
    shape: Shape,
    ra: &[u64],
    rb: &[u64],
) -> Vec<u8> {
    let nn = s.n();
    let (len, w) = (shape.len(), shape.w as usize);
    let mmask = low_mask(shape.m);
    let pads = p.draw_bits(s.da, nn * len);
    let rho_a = p.draw_bits(s.da, nn * w);
    let ring_a: Vec<W> = p.draw_words(s.da, nn * w);
    let rho_b = p.draw_bits(s.db, nn * w);
    let mut e = vec![0u64; words(nn * len)];
    for (i, (a, b)) in ra.iter().zip(rb).enumerate() {
        let r = (a.wrapping_add(*b) & mmask) as usize;
        set(&mut e, i * len + r, 1);
    }
    let mut msg = Vec::with_capacity(dealer_bytes(shape, nn, W::BYTES));
    pack(&xor(&e, &pads), nn * len, &mut msg);
    let rho = xor(&rho_a, &rho_b);
    let ring_b: Vec<W> = (0..nn * w)
        .map(|j| W::from_u128(u128::from(get(&rho, j))).sub(ring_a[j]))
        .collect();
    put_words(&ring_b, &mut msg);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bit-sliced selection is the selection by set bits, for every table size it
    /// takes, at every index, with shares of any density.
    #[test]
    fn sliced_selection_matches_the_selection_by_set_bits() {
        // Full 64-bit words from the tests' deterministic spread.
        let words_of = |n: usize, seed: u64| -> Vec<u64> {
            crate::testutil::values(n, i64::MIN, i64::MAX, seed)
                .into_iter()
                .map(|v| v as u64)
                .collect()
        };
        for (m, w) in [(1, 1), (3, 5), (6, 9), (8, 9), (8, 17), (9, 12), (11, 1)] {
            let len = 1usize << m;
            assert!(len * w as usize * len.div_ceil(64) <= SLICED_WORDS);
            let shifted: Vec<u64> = words_of(len, 1).iter().map(|v| v & low_mask(w)).collect();
            let n = 3 * len + 5;
            // Shares of a quarter density: the AND of two spreads.
            let nw = words(n * len);
            let f: Vec<u64> = words_of(nw, 2)
                .iter()
                .zip(words_of(nw, 3))
                .map(|(a, b)| a & b)
                .collect();
            let random = words_of(n, 4);
            let c: Vec<u64> = (0..n)
                .map(|i| if i < len { i as u64 } else { random[i] })
                .collect();
            let got = select(&f, &c, &shifted, w);
            for (i, &ci) in c.iter().enumerate() {
                let want = select_one(&f, i, ci, &shifted);
                assert_eq!(
                    bits_at(&got, i * w as usize, w as usize),
                    want,
                    "m {m} w {w} i {i}"
                );
            }
        }
    }
}
