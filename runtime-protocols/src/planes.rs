//! Share storage as planes: one party's shares of `n` elements are one `Vec` per component
//! (structure of arrays), never a `Vec` of per-element structs, so kernels stream over
//! contiguous words and a tensor of a hundred million elements costs its words and no more.
//!
//! The layout moves of the VM (slices, concatenation, im2col, transposes, padding) are all
//! [`Plane::gather`] with an index vector, the same for every protocol: moving shares is
//! local in every linear secret-sharing scheme. This is the storage of the layered core
//! (docs/core.md, step 1).

use crate::bitvec;
use rayon::prelude::*;
use std::fmt::Debug;
use std::ops::Range;

/// The index [`Plane::gather`] reads as "a sharing of zero" (a padding element).
pub const PAD: usize = usize::MAX;

/// Gathers of at least this many elements run on the rayon pool.
const PARALLEL: usize = 1 << 15;

/// One party's shares of a run of elements.
pub trait Plane: Clone + Debug + Send + Sync + Sized {
    /// Number of elements.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A sharing of `len` zeros (every component zero: true of additive, replicated,
    /// Shamir and MAC'd shares alike).
    fn zeros(len: usize) -> Self;
    /// Elements `range`.
    fn slice(&self, range: Range<usize>) -> Self;
    /// The planes one after another.
    fn concat(parts: &[&Self]) -> Self;
    /// `out[i] = self[idx[i]]`, and a sharing of zero where `idx[i]` is [`PAD`].
    fn gather(&self, idx: &[usize]) -> Self;
    /// [`Plane::gather`] of `len` elements with `at(i)` in place of `idx[i]`: a move whose
    /// indices are a formula (im2col) needs no index vector as long as its output.
    fn gather_by(&self, len: usize, at: impl Fn(usize) -> usize + Sync) -> Self {
        self.gather(&(0..len).map(at).collect::<Vec<_>>())
    }
}

/// One component per element: additive and Shamir shares, plaintext values. `T::default()`
/// must be the additive zero (true of ring words, field elements and integers).
impl<T: Copy + Default + Debug + Send + Sync> Plane for Vec<T> {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn zeros(len: usize) -> Self {
        vec![T::default(); len]
    }
    fn slice(&self, range: Range<usize>) -> Self {
        self[range].to_vec()
    }
    fn concat(parts: &[&Self]) -> Self {
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    }
    fn gather(&self, idx: &[usize]) -> Self {
        self.gather_by(idx.len(), |o| idx[o])
    }
    fn gather_by(&self, len: usize, at: impl Fn(usize) -> usize + Sync) -> Self {
        let pick = |o: usize| match at(o) {
            PAD => T::default(),
            i => self[i],
        };
        if len < PARALLEL {
            (0..len).map(pick).collect()
        } else {
            (0..len).into_par_iter().map(pick).collect()
        }
    }
}

/// Two components per element, as replicated sharing among three holds them: `a` is
/// component `me`, `b` component `me + 1`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pair<T> {
    pub a: Vec<T>,
    pub b: Vec<T>,
}

impl<T: Copy + Default + Debug + Send + Sync> Plane for Pair<T> {
    fn len(&self) -> usize {
        self.a.len()
    }
    fn zeros(len: usize) -> Self {
        Pair {
            a: vec![T::default(); len],
            b: vec![T::default(); len],
        }
    }
    fn slice(&self, range: Range<usize>) -> Self {
        Pair {
            a: self.a.slice(range.clone()),
            b: self.b.slice(range),
        }
    }
    fn concat(parts: &[&Self]) -> Self {
        let a: Vec<&Vec<T>> = parts.iter().map(|p| &p.a).collect();
        let b: Vec<&Vec<T>> = parts.iter().map(|p| &p.b).collect();
        Pair {
            a: Vec::concat(&a),
            b: Vec::concat(&b),
        }
    }
    fn gather(&self, idx: &[usize]) -> Self {
        Pair {
            a: self.a.gather(idx),
            b: self.b.gather(idx),
        }
    }
    fn gather_by(&self, len: usize, at: impl Fn(usize) -> usize + Sync) -> Self {
        Pair {
            a: self.a.gather_by(len, &at),
            b: self.b.gather_by(len, &at),
        }
    }
}

/// A value plane and its MAC plane, as authenticated shares hold them: `spdz2k`'s are
/// `Mac<Vec<u128>>`, `mal-rep3`'s `Mac<Pair<u128>>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mac<P> {
    pub x: P,
    pub m: P,
}

impl<P: Plane> Plane for Mac<P> {
    fn len(&self) -> usize {
        self.x.len()
    }
    fn zeros(len: usize) -> Self {
        Mac {
            x: P::zeros(len),
            m: P::zeros(len),
        }
    }
    fn slice(&self, range: Range<usize>) -> Self {
        Mac {
            x: self.x.slice(range.clone()),
            m: self.m.slice(range),
        }
    }
    fn concat(parts: &[&Self]) -> Self {
        let x: Vec<&P> = parts.iter().map(|p| &p.x).collect();
        let m: Vec<&P> = parts.iter().map(|p| &p.m).collect();
        Mac {
            x: P::concat(&x),
            m: P::concat(&m),
        }
    }
    fn gather(&self, idx: &[usize]) -> Self {
        Mac {
            x: self.x.gather(idx),
            m: self.m.gather(idx),
        }
    }
    fn gather_by(&self, len: usize, at: impl Fn(usize) -> usize + Sync) -> Self {
        Mac {
            x: self.x.gather_by(len, &at),
            m: self.m.gather_by(len, &at),
        }
    }
}

/// Planes whose components are all `Vec<T>` of one word type: the local linear maps of
/// additive, replicated and authenticated shares act on every component alike, so each
/// is written once here instead of once per share layout.
pub trait Words<T>: Plane {
    /// `f` element by element on every component of `self` and `o` (on the pool).
    fn zip_with(&self, o: &Self, f: impl Fn(T, T) -> T + Sync) -> Self;
    /// `f` on every component.
    fn map_components(&self, f: impl Fn(&[T]) -> Vec<T> + Sync) -> Self;
}

impl<T: Copy + Default + Debug + Send + Sync> Words<T> for Vec<T> {
    fn zip_with(&self, o: &Self, f: impl Fn(T, T) -> T + Sync) -> Self {
        self.par_iter().zip(o).map(|(&p, &q)| f(p, q)).collect()
    }
    fn map_components(&self, f: impl Fn(&[T]) -> Vec<T> + Sync) -> Self {
        f(self)
    }
}

impl<T: Copy + Default + Debug + Send + Sync> Words<T> for Pair<T> {
    fn zip_with(&self, o: &Self, f: impl Fn(T, T) -> T + Sync) -> Self {
        Pair {
            a: self.a.zip_with(&o.a, &f),
            b: self.b.zip_with(&o.b, &f),
        }
    }
    fn map_components(&self, f: impl Fn(&[T]) -> Vec<T> + Sync) -> Self {
        Pair {
            a: f(&self.a),
            b: f(&self.b),
        }
    }
}

impl<T, P: Words<T>> Words<T> for Mac<P> {
    fn zip_with(&self, o: &Self, f: impl Fn(T, T) -> T + Sync) -> Self {
        Mac {
            x: self.x.zip_with(&o.x, &f),
            m: self.m.zip_with(&o.m, &f),
        }
    }
    fn map_components(&self, f: impl Fn(&[T]) -> Vec<T> + Sync) -> Self {
        Mac {
            x: self.x.map_components(&f),
            m: self.m.map_components(&f),
        }
    }
}

/// No data, only a length: the planes of data-free twins (cost formulas, dealers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Len(pub usize);

impl Plane for Len {
    fn len(&self) -> usize {
        self.0
    }
    fn zeros(len: usize) -> Self {
        Len(len)
    }
    fn slice(&self, range: Range<usize>) -> Self {
        Len(range.len())
    }
    fn concat(parts: &[&Self]) -> Self {
        Len(parts.iter().map(|p| p.0).sum())
    }
    fn gather(&self, idx: &[usize]) -> Self {
        Len(idx.len())
    }
    fn gather_by(&self, len: usize, _: impl Fn(usize) -> usize + Sync) -> Self {
        Len(len)
    }
}

/// One bit per element, 64 to a word (bit `i` is bit `i % 64` of word `i / 64`); bits past
/// the length stay zero, so XORs of planes stay canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitPlane {
    words: Vec<u64>,
    len: usize,
}

impl BitPlane {
    /// `len` zero bits.
    pub fn zeros(len: usize) -> Self {
        BitPlane {
            words: vec![0; bitvec::words(len)],
            len,
        }
    }

    /// The bits of `bits` (each 0 or 1; higher bits are ignored).
    pub fn from_bits(bits: &[u64]) -> Self {
        let mut p = BitPlane::zeros(bits.len());
        for (i, &b) in bits.iter().enumerate() {
            bitvec::set(&mut p.words, i, b);
        }
        p
    }

    /// `len` bits packed in `words` (bits past the length are cleared).
    pub fn from_words(mut words: Vec<u64>, len: usize) -> Self {
        words.resize(bitvec::words(len), 0);
        bitvec::clear_tail(&mut words, len);
        BitPlane { words, len }
    }

    /// Bit `i`.
    pub fn get(&self, i: usize) -> u64 {
        bitvec::get(&self.words, i)
    }

    /// The packed words (bits past the length are zero).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Element-wise XOR (a local operation on XOR shares).
    pub fn xor(&self, other: &BitPlane) -> BitPlane {
        debug_assert_eq!(self.len, other.len);
        BitPlane {
            words: bitvec::xor(&self.words, &other.words),
            len: self.len,
        }
    }

    /// Element-wise AND with public bits, or of two planes one party holds both of.
    pub fn and(&self, other: &BitPlane) -> BitPlane {
        debug_assert_eq!(self.len, other.len);
        BitPlane {
            words: bitvec::and(&self.words, &other.words),
            len: self.len,
        }
    }
}

impl Plane for BitPlane {
    fn len(&self) -> usize {
        self.len
    }
    fn zeros(len: usize) -> Self {
        BitPlane::zeros(len)
    }
    fn slice(&self, range: Range<usize>) -> Self {
        let idx: Vec<usize> = range.collect();
        self.gather(&idx)
    }
    fn concat(parts: &[&Self]) -> Self {
        let mut out = BitPlane::zeros(parts.iter().map(|p| p.len).sum());
        let mut at = 0;
        for p in parts {
            if at % 64 == 0 {
                // Word-aligned: copy whole words (the tail bits are zero).
                out.words[at / 64..at / 64 + p.words.len()].copy_from_slice(&p.words);
            } else {
                for i in 0..p.len {
                    bitvec::set(&mut out.words, at + i, p.get(i));
                }
            }
            at += p.len;
        }
        out
    }
    fn gather(&self, idx: &[usize]) -> Self {
        let mut out = BitPlane::zeros(idx.len());
        for (o, &i) in idx.iter().enumerate() {
            if i != PAD {
                bitvec::set(&mut out.words, o, self.get(i));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The laws every plane keeps, checked against the same moves on plain vectors: a
    /// plane is a list of elements, whatever its storage.
    fn laws<P: Plane + PartialEq>(p: &P, q: &P, as_vec: impl Fn(&P) -> Vec<u64>, idx: &[usize]) {
        let (pv, qv) = (as_vec(p), as_vec(q));
        assert_eq!(p.len(), pv.len());
        let cut = pv.len() / 3;
        assert_eq!(as_vec(&p.slice(cut..pv.len())), pv[cut..].to_vec());
        let both = P::concat(&[p, q]);
        assert_eq!(as_vec(&both), [pv.clone(), qv].concat());
        let want: Vec<u64> = idx
            .iter()
            .map(|&i| if i == PAD { 0 } else { pv[i] })
            .collect();
        assert_eq!(as_vec(&p.gather(idx)), want);
        assert!(p.gather_by(idx.len(), |o| idx[o]) == p.gather(idx));
        // Slicing is gathering a range; concatenating one plane is the plane.
        let range: Vec<usize> = (cut..pv.len()).collect();
        assert!(p.slice(cut..pv.len()) == p.gather(&range));
        assert!(P::concat(&[p]) == p.clone());
    }

    fn indices(len: usize, picks: &[usize]) -> Vec<usize> {
        picks
            .iter()
            .map(|&k| if len == 0 || k % 7 == 0 { PAD } else { k % len })
            .collect()
    }

    proptest! {
        #[test]
        fn vectors_pairs_and_bits_keep_the_plane_laws(
            a in proptest::collection::vec(any::<u64>(), 0..200),
            b in proptest::collection::vec(any::<u64>(), 0..130),
            picks in proptest::collection::vec(any::<usize>(), 0..150),
        ) {
            let idx = indices(a.len(), &picks);
            laws(&a, &b, |v: &Vec<u64>| v.clone(), &idx);

            let pair = |v: &[u64]| Pair { a: v.to_vec(), b: v.iter().map(|x| !x).collect() };
            let (pa, pb) = (pair(&a), pair(&b));
            laws(&pa, &pb, |p: &Pair<u64>| p.a.clone(), &idx);
            // The second component moves with the first (padding is zero in both).
            let g = pa.gather(&idx);
            for (k, &i) in idx.iter().enumerate() {
                prop_assert_eq!(g.b[k], if i == PAD { 0 } else { !a[i] });
            }

            let bits = |v: &[u64]| BitPlane::from_bits(&v.iter().map(|x| x & 1).collect::<Vec<_>>());
            let (ba, bb) = (bits(&a), bits(&b));
            laws(&ba, &bb, |p: &BitPlane| (0..p.len()).map(|i| p.get(i)).collect(), &idx);
            // Bits past the length stay zero after every move.
            for p in [ba.gather(&idx), BitPlane::concat(&[&bb, &ba]), ba.slice(a.len() / 2..a.len())] {
                let tail = p.len() % 64;
                if tail != 0 {
                    prop_assert_eq!(p.words().last().copied().unwrap_or(0) >> tail, 0);
                }
            }

            let mac = |v: &[u64]| Mac { x: pair(v), m: pair(&v.iter().map(|x| x ^ 5).collect::<Vec<_>>()) };
            let (ma, mb) = (mac(&a), mac(&b));
            laws(&ma, &mb, |p: &Mac<Pair<u64>>| p.x.a.clone(), &idx);
            let g = ma.gather(&idx);
            for (k, &i) in idx.iter().enumerate() {
                prop_assert_eq!(g.m.b[k], if i == PAD { 0 } else { !(a[i] ^ 5) });
            }
            // `Words` acts on every component alike.
            let n = a.len().min(b.len());
            let (ma2, mb2) = (ma.slice(0..n), mb.slice(0..n));
            let sum = ma2.zip_with(&mb2, u64::wrapping_add);
            let doubled = ma2.map_components(|u| u.iter().map(|x| x.wrapping_mul(2)).collect());
            for k in 0..n {
                prop_assert_eq!(sum.m.b[k], ma2.m.b[k].wrapping_add(mb2.m.b[k]));
                prop_assert_eq!(sum.x.a[k], a[k].wrapping_add(b[k]));
                prop_assert_eq!(doubled.m.a[k], ma2.m.a[k].wrapping_mul(2));
            }
            // Long enough to gather on the pool.
            let long: Vec<u64> = (0..(PARALLEL as u64 + 7)).collect();
            let far: Vec<usize> = (0..long.len()).rev().map(|i| if i % 9 == 0 { PAD } else { i }).collect();
            laws(&long, &b, |v: &Vec<u64>| v.clone(), &far);

            let (la, lb) = (Len(a.len()), Len(b.len()));
            laws(&la, &lb, |l: &Len| vec![0; l.0], &idx.iter().map(|_| PAD).collect::<Vec<_>>());
        }
    }

    #[test]
    fn xor_and_and_are_element_wise() {
        let x = BitPlane::from_bits(&[1, 0, 1, 1, 0]);
        let y = BitPlane::from_bits(&[1, 1, 0, 1, 0]);
        let bits = |p: &BitPlane| (0..p.len()).map(|i| p.get(i)).collect::<Vec<_>>();
        assert_eq!(bits(&x.xor(&y)), vec![0, 1, 1, 0, 0]);
        assert_eq!(bits(&x.and(&y)), vec![1, 0, 0, 1, 0]);
    }
}
