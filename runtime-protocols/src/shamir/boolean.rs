//! Replicated boolean sharing among three parties (`n = 3`, `t = 1`), where `shamir`
//! compares: a bit `x = x_0 ⊕ x_1 ⊕ x_2`, party `i` holding `(x_i, x_(i+1))`. Component
//! `x_j` is drawn from the stream of the subset `{j + 1}`, which parties `j` and `j − 1`
//! hold, so random sharings cost nothing; an AND costs every party one bit sent to its
//! predecessor (Araki, Furukawa, Lindell, Nof, Ohara, CCS 2016). Bits are packed 64 to a
//! word; a vector of `units` rows of `count` bits takes `units · ⌈count/64⌉` words.

use super::Shamir;
use crate::bitvec;
use crate::cost::Round;
use crate::net::NetError;
use crate::{PartyId, ProtocolError};

type R<T> = Result<T, ProtocolError>;

/// One party's shares of packed bits: components `x_me` (`a`) and `x_(me+1)` (`b`).
#[derive(Clone, Debug, Default)]
pub struct Bits {
    pub a: Vec<u64>,
    pub b: Vec<u64>,
}

/// The party after `i` around the ring of three.
pub(super) fn next(i: PartyId) -> PartyId {
    (i + 1) % 3
}

/// The party before `i`.
pub(super) fn prev(i: PartyId) -> PartyId {
    (i + 2) % 3
}

/// One round around the ring: send `msg` to `to` and take `len` bytes from `from`, an
/// empty message not sent and an empty expectation not awaited (every party still calls
/// the transport, so merged rounds stay in step).
pub(super) fn pass(
    p: &mut Shamir,
    to: PartyId,
    msg: Vec<u8>,
    from: PartyId,
    len: usize,
) -> R<Vec<u8>> {
    let out = if msg.is_empty() {
        Vec::new()
    } else {
        vec![(to, msg)]
    };
    let expect = if len == 0 {
        Vec::new()
    } else {
        vec![(from, len)]
    };
    let got = p.net.exchange_sized(out, &expect)?;
    Ok(got.into_iter().next().map(|(_, m)| m).unwrap_or_default())
}

impl Bits {
    pub fn zeros(words: usize) -> Bits {
        Bits {
            a: vec![0; words],
            b: vec![0; words],
        }
    }

    pub fn words(&self) -> usize {
        self.a.len()
    }

    /// Component values of bit `i`.
    pub fn get(&self, i: usize) -> (u64, u64) {
        (bitvec::get(&self.a, i), bitvec::get(&self.b, i))
    }

    /// Bit `i` (zero before) set to a shared bit's components, XOR a public bit: the
    /// public part goes to component `x_0`, held by party 0 as `a` and party 2 as `b`.
    pub fn put(&mut self, me: PartyId, i: usize, shared: (u64, u64), public: bool) {
        let (mut a, mut b) = shared;
        if public {
            a ^= u64::from(me == 0);
            b ^= u64::from(me == 2);
        }
        bitvec::set(&mut self.a, i, a);
        bitvec::set(&mut self.b, i, b);
    }

    pub fn xor(&self, o: &Bits) -> Bits {
        Bits {
            a: bitvec::xor(&self.a, &o.a),
            b: bitvec::xor(&self.b, &o.b),
        }
    }
}

impl super::compare::Rows for Bits {
    fn part(&self, at: usize, len: usize) -> Bits {
        Bits {
            a: self.a[at..at + len].to_vec(),
            b: self.b[at..at + len].to_vec(),
        }
    }
    fn append(&mut self, o: &Bits) {
        self.a.extend_from_slice(&o.a);
        self.b.extend_from_slice(&o.b);
    }
    fn either(&self, o: &Bits) -> Bits {
        self.xor(o)
    }
}

fn encode(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub(super) fn decode(party: PartyId, m: &[u8], words: usize) -> R<Vec<u64>> {
    if m.len() != words * 8 {
        return Err(ProtocolError::Net(NetError::Garbage {
            party,
            what: format!(
                "{} bytes of packed bits where {} were due",
                m.len(),
                words * 8
            ),
        }));
    }
    Ok(m.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

/// `x ∧ y` word by word (1 round). Party `i` sends `x_i y_i ⊕ x_i y_(i+1) ⊕ x_(i+1) y_i`,
/// masked by `ρ_i ⊕ ρ_(i+1)` (a sharing of zero from a fresh random sharing `ρ`), to
/// party `i − 1`, which then holds the two components it needs.
pub fn and(p: &mut Shamir, x: &Bits, y: &Bits) -> R<Bits> {
    let words = x.words();
    let me = p.me;
    let (ra, rb) = p.streams.replicated_words(words)?;
    let z: Vec<u64> = (0..words)
        .map(|w| (x.a[w] & y.a[w]) ^ (x.a[w] & y.b[w]) ^ (x.b[w] & y.a[w]) ^ ra[w] ^ rb[w])
        .collect();
    let m = pass(p, prev(me), encode(&z), next(me), words * 8)?;
    Ok(Bits {
        a: z,
        b: decode(next(me), &m, words)?,
    })
}

/// Open `x` to every party (1 round): party `i` sends `x_i` to party `i + 1`, the one
/// party that lacks it.
pub fn open(p: &mut Shamir, x: &Bits) -> R<Vec<u64>> {
    let words = x.words();
    let me = p.me;
    let m = pass(p, next(me), encode(&x.a), prev(me), words * 8)?;
    let missing = decode(prev(me), &m, words)?;
    Ok((0..words).map(|w| x.a[w] ^ x.b[w] ^ missing[w]).collect())
}

/// The round of an AND of `words` words.
pub fn and_round(words: usize) -> Round {
    Round::of(
        (0..3)
            .filter(|_| words > 0)
            .map(|i| (i, prev(i), words as u64 * 8)),
    )
}

/// The round of an opening of `words` words.
pub fn open_round(words: usize) -> Round {
    Round::of(
        (0..3)
            .filter(|_| words > 0)
            .map(|i| (i, next(i), words as u64 * 8)),
    )
}

/// `[A < B]` for `count` comparisons of `width` units each, units least significant first,
/// each unit `(lt, eq)` a row of `⌈count/64⌉` words: [`super::compare::tree`] with one AND
/// round per level.
pub fn less_than(p: &mut Shamir, lt: Bits, eq: Bits, count: usize, width: usize) -> R<Bits> {
    super::compare::tree(lt, eq, width, bitvec::words(count), |x, y| and(p, x, y))
}

/// The AND rounds of [`less_than`].
pub fn less_than_rounds(count: usize, width: usize) -> Vec<Round> {
    let w = bitvec::words(count);
    super::compare::tree_products(width)
        .into_iter()
        .map(|products| and_round(products * w))
        .collect()
}
