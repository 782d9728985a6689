//! The gate set ([`GateSet`]) of `semi2k` and `fss` parties and of their dealer: the
//! generic selection ([`crate::func::compare`]) runs on it, and the tests hold the
//! protocols' own selections ([`super::select`], [`super::fss`]) to it.
//!
//! - masks: the dealer's edaBits, each bit also a ring word (a daBit); no round;
//! - `and`: a Beaver triple of bits; the parties open `a ⊕ x`, `b ⊕ y` (1 round);
//! - `b2a`: a daBit `(d, [d])`; the parties open `β ⊕ d` (1 round) and take
//!   `[β] = f + [d] − 2f·[d]`.

use super::prep::{random_bits, random_words, Block, Layout};
use super::select::all_to_all;
use super::{Dealer, Semi2k};
use crate::bitvec::{self, bit_bytes, pack, unpack};
use crate::func::gates::{GateSet, Masks};
use crate::planes::{BitPlane, Len, Plane};
use crate::stream::Stream;
use crate::word::Word;
use crate::{Core, ProtocolError};

type R<T> = Result<T, ProtocolError>;

/// Masks: the bits as words, `h`, the top bit; then the bits as a segment.
fn mask_layout(n: usize, m: u32) -> Layout {
    Layout::words((m as usize + 2) * n).seg(m as usize * n)
}

fn mask_deal<W: Word>(n: usize, m: u32, rng: &mut Stream) -> Block<W> {
    let r: Vec<u128> = random_words::<W>(rng, n)
        .into_iter()
        .map(W::to_u128)
        .collect();
    let bit = |v: u128, j: u32| (v >> j) & 1;
    let mut words = Vec::with_capacity((m as usize + 2) * n);
    let mut seg = vec![0u64; bitvec::words(m as usize * n)];
    for j in 0..m {
        for (e, &v) in r.iter().enumerate() {
            words.push(W::from_u128(bit(v, j)));
            bitvec::set(&mut seg, j as usize * n + e, bit(v, j) as u64);
        }
    }
    words.extend(
        r.iter()
            .map(|&v| W::from_u128(v.checked_shr(m).unwrap_or(0))),
    );
    words.extend(r.iter().map(|&v| W::from_u128(bit(v, W::BITS - 1))));
    Block {
        words,
        segs: vec![seg],
        public: Default::default(),
    }
}

/// A bit triple per pair: `a`, `b`, `a ∧ b`.
fn and_layout(n: usize) -> Layout {
    Layout::words(0).seg(n).seg(n).seg(n)
}

fn and_deal<W: Word>(n: usize, rng: &mut Stream) -> Block<W> {
    let (a, b) = (random_bits(rng, n), random_bits(rng, n));
    let c = bitvec::and(&a, &b);
    Block {
        words: Vec::new(),
        segs: vec![a, b, c],
        public: Default::default(),
    }
}

/// A daBit per bit: the word, then the bit.
fn b2a_layout(n: usize) -> Layout {
    Layout::words(n).seg(n)
}

fn b2a_deal<W: Word>(n: usize, rng: &mut Stream) -> Block<W> {
    let d = random_bits(rng, n);
    Block {
        words: (0..n)
            .map(|i| W::from_u128(u128::from(bitvec::get(&d, i))))
            .collect(),
        segs: vec![d],
        public: Default::default(),
    }
}

impl<W: Word> Semi2k<W> {
    /// Open XOR-shared bits to every party (1 round).
    fn open_bits(&mut self, parts: &[&BitPlane]) -> R<Vec<BitPlane>> {
        let mut msg = Vec::new();
        for p in parts {
            pack(p.words(), p.len(), &mut msg);
        }
        let got = self.all_round(msg)?;
        let mut out: Vec<BitPlane> = parts.iter().map(|p| (*p).clone()).collect();
        for g in &got {
            let mut at = 0;
            for o in out.iter_mut() {
                let bytes = bit_bytes(o.len());
                *o = o.xor(&BitPlane::from_words(
                    unpack(&g[at..at + bytes], o.len()),
                    o.len(),
                ));
                at += bytes;
            }
        }
        Ok(out)
    }
}

impl<W: Word> GateSet for Semi2k<W> {
    type Bits = BitPlane;

    fn domain(&self) -> crate::func::Domain {
        crate::func::Domain::Ring { bits: W::BITS }
    }

    fn masks(&mut self, n: usize, m: u32, _: u32) -> R<Masks<Vec<W>, BitPlane>> {
        let mut t: Block<W> = self.prep.take(&mask_layout(n, m), self.net.as_mut())?;
        let bits = BitPlane::from_words(std::mem::take(&mut t.segs[0]), m as usize * n);
        let top = t.words.split_off((m as usize + 1) * n);
        let high = t.words.split_off(m as usize * n);
        Ok(Masks {
            bits,
            arith: t.words,
            high,
            top,
            above: None,
        })
    }
    fn open_all(&mut self, x: &Vec<W>) -> R<Vec<u128>> {
        Ok(self
            .open_words(x.clone())?
            .into_iter()
            .map(W::to_u128)
            .collect())
    }
    fn and(&mut self, x: &BitPlane, y: &BitPlane) -> R<BitPlane> {
        let n = x.len();
        let mut t: Block<W> = self.prep.take(&and_layout(n), self.net.as_mut())?;
        let plane = |s: &mut Vec<u64>| BitPlane::from_words(std::mem::take(s), n);
        let (a, b, c) = (
            plane(&mut t.segs[0]),
            plane(&mut t.segs[1]),
            plane(&mut t.segs[2]),
        );
        let opened = self.open_bits(&[&x.xor(&a), &y.xor(&b)])?;
        let (d, e) = (&opened[0], &opened[1]);
        let z = c.xor(&d.and(&b)).xor(&e.and(&a));
        Ok(if self.me == 0 { z.xor(&d.and(e)) } else { z })
    }
    fn either(&self, a: &BitPlane, b: &BitPlane) -> BitPlane {
        a.xor(b)
    }
    fn xor_public(&self, a: &BitPlane, c: &BitPlane) -> BitPlane {
        if self.me == 0 {
            a.xor(c)
        } else {
            a.clone()
        }
    }
    fn b2a(&mut self, x: &BitPlane) -> R<Vec<W>> {
        let n = x.len();
        let mut t: Block<W> = self.prep.take(&b2a_layout(n), self.net.as_mut())?;
        let d = BitPlane::from_words(std::mem::take(&mut t.segs[0]), n);
        let f = self.open_bits(&[&x.xor(&d)])?.remove(0);
        let first = self.me == 0;
        Ok((0..n)
            .map(|i| {
                let dw = t.words[i];
                if f.get(i) == 1 {
                    let one = if first { W::ONE } else { W::ZERO };
                    one.sub(dw)
                } else {
                    dw
                }
            })
            .collect())
    }
}

impl<W: Word> GateSet for Dealer<W> {
    type Bits = Len;

    fn domain(&self) -> crate::func::Domain {
        crate::func::Domain::Ring { bits: W::BITS }
    }

    fn masks(&mut self, n: usize, m: u32, _: u32) -> R<Masks<Len, Len>> {
        self.supply(mask_layout(n, m), Vec::new(), |rng, _| mask_deal(n, m, rng));
        Ok(Masks {
            bits: Len(m as usize * n),
            arith: Len(m as usize * n),
            high: Len(n),
            top: Len(n),
            above: None,
        })
    }
    fn open_all(&mut self, x: &Len) -> R<Vec<u128>> {
        self.record(all_to_all(self.parties(), x.len() * W::BYTES));
        Ok(vec![0; x.len()])
    }
    fn and(&mut self, x: &Len, _: &Len) -> R<Len> {
        let n = x.len();
        let round = all_to_all(self.parties(), 2 * bit_bytes(n));
        self.supply(and_layout(n), vec![round], |rng, _| and_deal(n, rng));
        Ok(*x)
    }
    fn either(&self, a: &Len, _: &Len) -> Len {
        *a
    }
    fn xor_public(&self, a: &Len, _: &BitPlane) -> Len {
        *a
    }
    fn b2a(&mut self, x: &Len) -> R<Len> {
        let n = x.len();
        let round = all_to_all(self.parties(), bit_bytes(n));
        self.supply(b2a_layout(n), vec![round], |rng, _| b2a_deal(n, rng));
        Ok(*x)
    }
}
