//! `table[x − offset]` element-wise, written once over the gate set ([`GateSet`]):
//!
//! 1. *mask*: `r = Σ_{j<ℓ} 2^j b_j + 2^ℓ h` for `y = x − offset < 2^ℓ`;
//! 2. *open* (1 round): `c = y + r` — in a ring mod 2^k, in a field the integer (with
//!    `h` of `stat` bits). Either way `u = c mod 2^ℓ = (y + r mod 2^ℓ) mod 2^ℓ`, so
//!    `[y = v] = [r mod 2^ℓ = (u − v) mod 2^ℓ]`;
//! 3. *one-hot* (`⌈log2 ℓ⌉` rounds of `and`): the one-hot vector of the mask's low bits,
//!    a tree of outer products of the groups `(¬b_j, b_j)`, every pair of a level in one
//!    `and`;
//! 4. *convert* (`b2a`, one round or none) and sum locally:
//!    `table[y] = Σ_j [r mod 2^ℓ = j]·table[(u − j) mod 2^ℓ]`.
//!
//! `shamir` runs it as its lookup (its bits are in the field: `and` is a product, `b2a`
//! is free); the other protocols' own lookups are held to it by their tests.

use super::gates::GateSet;
use super::{Domain, Selection};
use crate::planes::{BitPlane, Plane};
use crate::ProtocolError;

type R<T> = Result<T, ProtocolError>;

/// Bits of a lookup's index into a table of `len` entries (at least one).
pub(crate) fn index_bits(len: usize) -> u32 {
    (usize::BITS - len.saturating_sub(1).leading_zeros()).max(1)
}

/// [`lookup`] in pieces of at most [`Selection::max_lookup_words`] one-hot entries (at
/// least one element each; [`super::in_pieces`]).
pub(crate) fn in_pieces<P: Selection>(
    p: &mut P,
    x: &P::Shares,
    table: &[i64],
    offset: i64,
) -> R<P::Shares> {
    let entries = 1usize << index_bits(table.len()).min(usize::BITS - 1);
    match p.max_lookup_words() {
        Some(max) if x.len().saturating_mul(entries) > max => {
            super::in_pieces(x, (max / entries).max(1), |_, x| {
                lookup(p, x, table, offset)
            })
        }
        _ => lookup(p, x, table, offset),
    }
}

pub(crate) fn lookup<P: GateSet>(
    p: &mut P,
    x: &P::Shares,
    table: &[i64],
    offset: i64,
) -> R<P::Shares> {
    let n = x.len();
    if n == 0 || table.is_empty() {
        return Ok(p.public(&vec![0; n]));
    }
    let ell = index_bits(table.len());
    let high = match p.domain() {
        Domain::Ring { bits } if ell < bits => 0,
        Domain::Field { bits, stat } if ell + stat + 2 <= bits => stat,
        d => {
            return Err(ProtocolError::Invalid(format!(
                "a lookup in a table of {} entries does not fit {d:?}",
                table.len()
            )))
        }
    };
    let masks = p.masks(n, ell, high)?;
    let y = p.sub(x, &p.public(&vec![offset; n]));
    let c = p.open_all(&p.add(&y, &masks.value(p, ell)))?;
    let hot = one_hot(p, &masks.bits, n, ell as usize)?;
    let hot = p.b2a(&hot)?;
    let size = 1usize << ell;
    let low: Vec<usize> = c.iter().map(|&c| (c % size as u128) as usize).collect();
    let mut out = p.public(&vec![0; n]);
    for j in 0..size {
        let entry: Vec<i64> = low
            .iter()
            .map(|&u| table.get((u + size - j) % size).copied().unwrap_or(0))
            .collect();
        out = p.add(&out, &p.mul_public(&hot.slice(j * n..(j + 1) * n), &entry));
    }
    Ok(out)
}

/// The one-hot vectors `[v = Σ 2^j b_j]`, `v < 2^bits`, of `count` values whose bits are
/// laid out bit-major (`b[j·count + e]`), returned value-major: a tree of outer products
/// of the groups `(¬b_j, b_j)`, one `and` per level.
fn one_hot<P: GateSet>(p: &mut P, b: &P::Bits, count: usize, bits: usize) -> R<P::Bits> {
    let ones = BitPlane::from_bits(&vec![1; count]);
    // A group: `size` entries of `count` bits each, entry-major.
    let mut groups: Vec<P::Bits> = (0..bits)
        .map(|j| {
            let bit = b.slice(j * count..(j + 1) * count);
            P::Bits::concat(&[&p.xor_public(&bit, &ones), &bit])
        })
        .collect();
    let entry = |g: &P::Bits, v: usize| g.slice(v * count..(v + 1) * count);
    while groups.len() > 1 {
        let (mut lows, mut highs) = (Vec::new(), Vec::new());
        let mut shapes = Vec::new();
        for pair in groups.chunks(2) {
            if let [lo, hi] = pair {
                let (sl, sh) = (lo.len() / count, hi.len() / count);
                for vh in 0..sh {
                    for vl in 0..sl {
                        lows.push(entry(lo, vl));
                        highs.push(entry(hi, vh));
                    }
                }
                shapes.push(Some(sl * sh * count));
            } else {
                shapes.push(None);
            }
        }
        let lows: Vec<&P::Bits> = lows.iter().collect();
        let highs: Vec<&P::Bits> = highs.iter().collect();
        let prod = p.and(&P::Bits::concat(&lows), &P::Bits::concat(&highs))?;
        let mut at = 0;
        let mut next = Vec::with_capacity(shapes.len());
        for (k, shape) in shapes.into_iter().enumerate() {
            match shape {
                Some(len) => {
                    next.push(prod.slice(at..at + len));
                    at += len;
                }
                None => next.push(groups[2 * k].clone()),
            }
        }
        groups = next;
    }
    Ok(groups.pop().unwrap_or_else(|| P::Bits::zeros(0)))
}
