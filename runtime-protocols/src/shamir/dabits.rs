//! Random bits shared twice among three parties: as Shamir shares over F_p and as
//! replicated boolean shares ([`super::boolean`]), 2 rounds and one field element sent
//! per party per bit (Rotaru, Wood, INDOCRYPT 2019 build such "daBits" in general; this
//! is the three-party case with free random sharings).
//!
//! The bit is `x_0 ⊕ x_1 ⊕ x_2` of a free random boolean sharing. Bit `j` has a *helper*
//! `h = j mod 3`, which knows `w = x_h ⊕ x_(h+1)`; parties `a = h + 1` and `b = h + 2`
//! know `z = x_(h+2)`, so the bit is `z ⊕ w = z + u·w` with `u = 1 − 2z`:
//!
//! - `z` has a free Shamir sharing: `z·f_{h}(α_i)` for the subset `{h}` (`h` holds 0);
//! - `h` splits `w = w_a + w_b` over F_p, `w_a` drawn with `a` from their stream, and
//!   sends `w_b` to `b` (round 1);
//! - `a` deals `u·w_a` (round 1), `b` deals `u·w_b` (round 2), each sending one share
//!   (the other comes from the stream with the next party).
//!
//! `h` sees only shares dealt with a coefficient from a stream it lacks; `a` and `b` see
//! `w` only through `w_a` or `w_b`, uniform on their own, and each misses one `x_j`.

use super::boolean::{self, next, prev, Bits};
use super::geometry::ELEM;
use super::Shamir;
use crate::bitvec;
use crate::cost::{Round, Rounds};
use crate::field::Fp;
use crate::{PartyId, ProtocolError};

type R<T> = Result<T, ProtocolError>;

/// `count` random bits, bit `j` at index `j` of both.
pub struct DaBits {
    pub fp: Vec<Fp>,
    pub bits: Bits,
}

/// How many of bits `0..count` have helper `h`.
fn helped_by(count: usize, h: PartyId) -> usize {
    (count + 2 - h) / 3
}

/// Elements of one pair stream, drawn a block at a time in the stream's order: drawing
/// `count` elements at once held two copies of them (bytes, then elements) per stream
/// beside the messages, ≈ 700 MB per party for ResNet-18's first requantizations.
struct Drawn {
    from: PartyId,
    to: PartyId,
    left: usize,
    block: std::vec::IntoIter<Fp>,
}

/// Elements per block of [`Drawn`].
const BLOCK: usize = 1 << 12;

impl Drawn {
    fn new(from: PartyId, to: PartyId, len: usize) -> Drawn {
        Drawn {
            from,
            to,
            left: len,
            block: Vec::new().into_iter(),
        }
    }

    fn next(&mut self, p: &mut Shamir) -> R<Fp> {
        if let Some(v) = self.block.next() {
            return Ok(v);
        }
        let n = self.left.min(BLOCK);
        self.left -= n;
        self.block = p.streams.pair(self.from, self.to, n)?.into_iter();
        self.block.next().ok_or_else(|| {
            ProtocolError::Invalid(format!(
                "shamir: a daBit drew past its stream from party {} to party {}",
                self.from, self.to
            ))
        })
    }
}

/// `count` daBits (2 rounds).
pub fn dabits(p: &mut Shamir, count: usize) -> R<DaBits> {
    if count == 0 {
        return Ok(DaBits {
            fp: Vec::new(),
            bits: Bits::default(),
        });
    }
    let me = p.me;
    let (nx, pv) = (next(me), prev(me));
    let (xa, xb) = p.streams.replicated_words(bitvec::words(count))?;
    // The bits this party helps (`h = me`), is `a` for (`h = pv`) and `b` for (`h = nx`).
    let (c0, c1, c2) = (
        helped_by(count, me),
        helped_by(count, pv),
        helped_by(count, nx),
    );
    // To `nx`: `w_a` of the bits it is `a` for, then the shares it draws of this party's
    // dealings as `a` and as `b`. From `pv`, the same from its side.
    let mut out = Drawn::new(me, nx, c0 + c1 + c2);
    let mut inn = Drawn::new(pv, me, c1 + c2 + c0);
    let geo = p.geo.clone();
    let (to_me, to_pv) = (&geo.deal[me][me], &geo.deal[me][pv]);
    let dealt = |s: Fp, rho: Fp, c: &[Fp]| c[0] * s + c[1] * rho;
    let bit = |j: usize| -> (u64, u64) { (bitvec::get(&xa, j), bitvec::get(&xb, j)) };
    let weight = |k: PartyId| {
        p.streams.single_weight(k).ok_or_else(|| {
            ProtocolError::Invalid(format!("party {me} holds no stream of subset {{{k}}}"))
        })
    };
    let (w_pv, w_nx) = (weight(pv)?, weight(nx)?);
    let fp_bit = |v: u64| Fp::new(u128::from(v));
    let u = |z: u64| Fp::ONE - fp_bit(z) - fp_bit(z);
    let push = |msg: &mut Vec<u8>, v: Fp| msg.extend_from_slice(&v.value().to_le_bytes());
    // Each bit's share is summed in place as its parts come.
    let mut fp = vec![Fp::ZERO; count];

    // Round 1: `w_b` of the bits this party helps, and its dealing as `a`, to `pv`.
    let mut msg = Vec::with_capacity((c0 + c1) * ELEM);
    for k in 0..c0 {
        let (a, b) = bit(3 * k + me);
        let w_a = out.next(p)?;
        push(&mut msg, fp_bit(a ^ b) - w_a);
    }
    for k in 0..c1 {
        let z = bit(3 * k + pv).1;
        let s = u(z) * inn.next(p)?;
        let rho = out.next(p)?;
        fp[3 * k + pv] = dealt(s, rho, to_me);
        push(&mut msg, dealt(s, rho, to_pv));
    }
    // From `nx`: `w_b` of the bits this party is `b` for, then its dealing as `a`.
    let got = exchange(p, msg, c2 + c0)?;
    for k in 0..c0 {
        fp[3 * k + me] = Shamir::element(nx, &got, c2 + k)?;
    }

    // Round 2: this party's dealing as `b`, to `pv`.
    let mut msg = Vec::with_capacity(c2 * ELEM);
    for k in 0..c2 {
        let z = bit(3 * k + nx).0;
        let s = u(z) * Shamir::element(nx, &got, k)?;
        let rho = out.next(p)?;
        fp[3 * k + nx] = dealt(s, rho, to_me);
        push(&mut msg, dealt(s, rho, to_pv));
    }
    drop(got);
    let from_b = exchange(p, msg, c1)?;

    for k in 0..c1 {
        let z = fp_bit(bit(3 * k + pv).1);
        fp[3 * k + pv] = z * w_pv + fp[3 * k + pv] + Shamir::element(nx, &from_b, k)?;
    }
    for k in 0..c2 {
        let z = fp_bit(bit(3 * k + nx).0);
        fp[3 * k + nx] = z * w_nx + inn.next(p)? + fp[3 * k + nx];
    }
    for k in 0..c0 {
        fp[3 * k + me] = fp[3 * k + me] + inn.next(p)?;
    }
    Ok(DaBits {
        fp,
        bits: Bits { a: xa, b: xb },
    })
}

/// Send `msg` (encoded elements) to the previous party, receive `len` encoded elements
/// from the next.
fn exchange(p: &mut Shamir, msg: Vec<u8>, len: usize) -> R<Vec<u8>> {
    let me = p.me;
    let m = boolean::pass(p, prev(me), msg, next(me), len * ELEM)?;
    if m.len() != len * ELEM {
        return Err(Shamir::garbage(next(me)));
    }
    Ok(m)
}

/// The rounds of [`dabits`].
pub fn pattern(count: usize) -> Rounds {
    if count == 0 {
        return Vec::new();
    }
    let sends = |i: PartyId, len: usize| (i, prev(i), (len * ELEM) as u64);
    vec![
        Round::of(
            (0..3)
                .map(|i| sends(i, helped_by(count, i) + helped_by(count, prev(i))))
                .filter(|m| m.2 > 0),
        ),
        Round::of(
            (0..3)
                .map(|i| sends(i, helped_by(count, next(i))))
                .filter(|m| m.2 > 0),
        ),
    ]
}
