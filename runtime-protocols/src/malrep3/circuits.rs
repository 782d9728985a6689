//! Boolean circuits on bit-sliced sharings: a `w`-bit number of `n` elements is `w` planes,
//! plane `j` holding bit `j` of 64 elements per word, so every AND of a circuit level is
//! one [`MalRep3::and`] call over whole planes (one round, one bit per element per party)
//! and every lane of every word is a relation of the proof.
//!
//! What the comparisons need: numbers that two parties know (a component drawn from their
//! key) or everyone knows (opened values) entered for free, carry-save additions (one AND
//! per bit), and the carry into one bit position of a sum of two shared numbers (a
//! log-depth tree, two ANDs per combined pair).

use super::MalRep3;
use crate::bitvec::words;
use crate::rep3::{Rep, Xor};
use crate::word::Word;
use crate::ProtocolError;

type R<T> = Result<T, ProtocolError>;

/// One bit of `n` elements, 64 per word.
pub(super) type Plane = Vec<Rep<Xor>>;

/// Bit-sliced shares of `w`-bit numbers (`planes[j]` = bit `j`).
#[derive(Clone, Debug, Default)]
pub(super) struct Sliced {
    pub n: usize,
    pub planes: Vec<Plane>,
}

/// Plaintext bit planes of `values` (`w` planes of `words(n)` words).
pub(super) use crate::bitvec::slice;

/// Element `e`'s bit of a plaintext plane.
pub(super) fn bit(plane: &[u64], e: usize) -> u64 {
    plane[e / 64] >> (e % 64) & 1
}

fn xor_plane(a: &[Rep<Xor>], b: &[Rep<Xor>]) -> Plane {
    a.iter()
        .zip(b)
        .map(|(x, y)| Rep {
            a: Xor(x.a.0 ^ y.a.0),
            b: Xor(x.b.0 ^ y.b.0),
        })
        .collect()
}

#[cfg(test)] // building blocks of a dealer-free comparison, tested
/// `a` where the public plane `p` is 1, else 0 (local).
fn and_public(a: &[Rep<Xor>], p: &[u64]) -> Plane {
    a.iter()
        .zip(p)
        .map(|(x, &m)| Rep {
            a: Xor(x.a.0 & m),
            b: Xor(x.b.0 & m),
        })
        .collect()
}

impl Sliced {
    pub fn width(&self) -> usize {
        self.planes.len()
    }

    /// Bits `lo..hi`, zero planes beyond the width.
    pub fn bits(&self, lo: usize, hi: usize) -> Sliced {
        let nw = words(self.n);
        Sliced {
            n: self.n,
            planes: (lo..hi)
                .map(|j| {
                    self.planes
                        .get(j)
                        .cloned()
                        .unwrap_or_else(|| vec![Rep::default(); nw])
                })
                .collect(),
        }
    }

    #[cfg(test)] // building blocks of a dealer-free comparison, tested
    /// The number times 2 (a zero plane below).
    pub fn shifted(&self) -> Sliced {
        let mut planes = vec![vec![Rep::default(); words(self.n)]];
        planes.extend(self.planes.iter().cloned());
        Sliced { n: self.n, planes }
    }

    pub fn xor(&self, o: &Sliced) -> Sliced {
        let w = self.width().max(o.width());
        let (a, b) = (self.bits(0, w), o.bits(0, w));
        Sliced {
            n: self.n,
            planes: a
                .planes
                .iter()
                .zip(&b.planes)
                .map(|(x, y)| xor_plane(x, y))
                .collect(),
        }
    }
}

impl<W: Word> MalRep3<W> {
    #[cfg(test)] // building blocks of a dealer-free comparison, tested
    /// Numbers known to both holders of component `j` (`Some` exactly there): the value
    /// is component `j`, the others zero. No communication.
    pub(super) fn known_bits(
        &self,
        j: usize,
        values: Option<&[u64]>,
        n: usize,
        w: usize,
    ) -> Sliced {
        let nw = words(n);
        let planes = match values {
            Some(v) => slice(v, w),
            None => vec![vec![0u64; nw]; w],
        };
        Sliced {
            n,
            planes: planes
                .into_iter()
                .map(|p| {
                    let p: Vec<Xor> = p.into_iter().map(Xor).collect();
                    self.rep.known_to_comp(j, values.map(|_| &p[..]), nw)
                })
                .collect(),
        }
    }

    #[cfg(test)] // building blocks of a dealer-free comparison, tested
    /// Numbers every party knows.
    pub(super) fn public_bits(&self, values: &[u64], w: usize) -> Sliced {
        self.known_bits(0, Some(values), values.len(), w)
    }

    /// Several plane ANDs in one round.
    pub(super) fn and_planes(&mut self, pairs: &[(&Plane, &Plane)]) -> R<Vec<Plane>> {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (a, b) in pairs {
            x.extend_from_slice(a);
            y.extend_from_slice(b);
        }
        let mut z = self.and(&x, &y)?;
        let mut out = Vec::with_capacity(pairs.len());
        for (a, _) in pairs {
            let rest = z.split_off(a.len());
            out.push(std::mem::replace(&mut z, rest));
        }
        Ok(out)
    }

    #[cfg(test)] // building blocks of a dealer-free comparison, tested
    /// Carry-save addition of three shared numbers (1 round): `a + b + c = s + 2·t`.
    pub(super) fn csa(&mut self, a: &Sliced, b: &Sliced, c: &Sliced) -> R<(Sliced, Sliced)> {
        let w = a.width().max(b.width()).max(c.width());
        let (a, b, c) = (a.bits(0, w), b.bits(0, w), c.bits(0, w));
        let s = a.xor(&b).xor(&c);
        // maj(a, b, c) = ((a ⊕ c) ∧ (b ⊕ c)) ⊕ c.
        let ac = a.xor(&c);
        let bc = b.xor(&c);
        let pairs: Vec<(&Plane, &Plane)> = ac.planes.iter().zip(&bc.planes).collect();
        let prods = self.and_planes(&pairs)?;
        let t = Sliced {
            n: a.n,
            planes: prods,
        }
        .xor(&c);
        Ok((s, t))
    }

    #[cfg(test)] // building blocks of a dealer-free comparison, tested
    /// Carry-save addition of two shared numbers and a public one (1 round).
    pub(super) fn csa_public(&mut self, a: &Sliced, b: &Sliced, p: &[u64]) -> R<(Sliced, Sliced)> {
        let w = a.width().max(b.width());
        let (a, b) = (a.bits(0, w), b.bits(0, w));
        let pp = slice(p, w);
        let s = a.xor(&b).xor(&self.public_bits(p, w));
        // maj(a, b, p) = (a ∧ b) ⊕ (p ∧ (a ⊕ b)), the second term local.
        let ab = a.xor(&b);
        let pairs: Vec<(&Plane, &Plane)> = a.planes.iter().zip(&b.planes).collect();
        let prods = self.and_planes(&pairs)?;
        let t = Sliced {
            n: a.n,
            planes: prods
                .iter()
                .zip(&ab.planes)
                .zip(&pp)
                .map(|((g, x), m)| xor_plane(g, &and_public(x, m)))
                .collect(),
        };
        Ok((s, t))
    }

    #[cfg(test)] // building blocks of a dealer-free comparison, tested
    /// The carry into bit `top` of `a + b` (`⌈log2 top⌉ + 1` rounds): generate and
    /// propagate of each position, combined pairwise, low block with the block above it.
    pub(super) fn carry_into(&mut self, a: &Sliced, b: &Sliced, top: usize) -> R<Plane> {
        Ok(self.carry_and_propagate(a, b, top, false)?.0)
    }

    /// The carry into bit `top` of `a + b` and, with `all`, whether every position below
    /// propagates (`a + b = 2^top − 1`): the AND of all propagates, in the same rounds.
    pub(super) fn carry_and_propagate(
        &mut self,
        a: &Sliced,
        b: &Sliced,
        top: usize,
        all: bool,
    ) -> R<(Plane, Plane)> {
        let nw = words(a.n);
        let zero = || vec![Rep::default(); nw];
        if top == 0 {
            // An empty sum: no carry, and it equals 2^0 − 1 = 0.
            let one: Plane = vec![
                Rep {
                    a: Xor(if self.rep.me == 0 { u64::MAX } else { 0 }),
                    b: Xor(if self.rep.me == 2 { u64::MAX } else { 0 }),
                };
                nw
            ];
            return Ok((zero(), one));
        }
        let (a, b) = (a.bits(0, top), b.bits(0, top));
        let pairs: Vec<(&Plane, &Plane)> = a.planes.iter().zip(&b.planes).collect();
        let mut g = self.and_planes(&pairs)?;
        let mut p: Vec<Plane> = a
            .planes
            .iter()
            .zip(&b.planes)
            .map(|(x, y)| xor_plane(x, y))
            .collect();
        // Blocks, least significant first; (G, P) of a block over (G', P') of the block
        // below is (G ⊕ P∧G', P∧P') — G and P∧G' are never both 1.
        while g.len() > 1 {
            let pairs_n = g.len() / 2;
            // The lowest block's propagate matters only for `all`.
            let from = usize::from(!all);
            let mut ops: Vec<(&Plane, &Plane)> = Vec::with_capacity(2 * pairs_n);
            for i in 0..pairs_n {
                ops.push((&p[2 * i + 1], &g[2 * i]));
            }
            for i in from..pairs_n {
                ops.push((&p[2 * i + 1], &p[2 * i]));
            }
            let prods = self.and_planes(&ops)?;
            let (pg, pp) = prods.split_at(pairs_n);
            let mut ng = Vec::with_capacity(g.len().div_ceil(2));
            let mut np = Vec::with_capacity(g.len().div_ceil(2));
            for i in 0..pairs_n {
                ng.push(xor_plane(&g[2 * i + 1], &pg[i]));
                np.push(if i < from {
                    zero()
                } else {
                    pp[i - from].clone()
                });
            }
            if g.len() % 2 == 1 {
                ng.push(g[g.len() - 1].clone());
                np.push(p[p.len() - 1].clone());
            }
            g = ng;
            p = np;
        }
        Ok((g.pop().unwrap_or_else(zero), p.pop().unwrap_or_else(zero)))
    }
}
