//! The PRG streams parties share, agreed once at set-up and restarted per instruction:
//!
//! - per ordered pair `(i, j)`: the shares `i` deals to the `t` parties of `keyed[i]` are
//!   drawn by both, so `i` never sends them;
//! - per subset `T` of `t` parties, known to the `n − t` others: pseudo-random secret sharing
//!   (Cramer, Damgård, Ishai, TCC 2005). With `f_T` the degree-`t` polynomial with
//!   `f_T(0) = 1` and `f_T(α_j) = 0` for `j ∈ T`, party `i` holds `Σ_{T ∌ i} ψ_T·f_T(α_i)`:
//!   a degree-`t` sharing of `Σ_T ψ_T`, where any `t` parties miss the `ψ_T` of their own
//!   set. The pair streams of the parties of an opening also mask their degree-`2t`
//!   products with shares that cancel in the opening ([`Streams::zero_among`]).
//!
//! Keys come from the operating system; streams are ChaCha12 with the instruction index as
//! the stream number, so instructions that run at the same time draw apart.

use super::geometry::{subsets, Geometry};
use crate::coins::{Coins, KeyId};
use crate::field::{point, Fp, MODULUS};
use crate::net::Transport;
use crate::stream::{Stream, Tap};
use crate::{PartyId, ProtocolError};
use chacha20::rand_core::Rng;
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;
type Key = [u8; 32];

#[track_caller]
fn stream(key: &Key, index: usize) -> Stream {
    Stream::new(*key, index as u64 + 1)
}

/// `len` uniform field elements.
fn uniform(rng: &mut Stream, len: usize) -> Vec<Fp> {
    // Drawn through a small buffer: the stream gives the same bytes however its draws are
    // cut (every cut is a whole number of 16-byte elements), without a second copy of
    // the draw as bytes.
    const PER_FILL: usize = 256;
    let mut out = Vec::with_capacity(len);
    let mut bytes = [0u8; PER_FILL * 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(PER_FILL);
        let buf = &mut bytes[..n * 16];
        rng.fill_bytes(buf);
        out.extend(
            buf.chunks_exact(16)
                .map(|c| Fp::new(u128::from_le_bytes(c.try_into().unwrap_or_default()) & MODULUS)),
        );
        left -= n;
    }
    out
}

/// A subset's key and this party's weight `f_T(α_me)`.
struct Set {
    members: Vec<PartyId>,
    key: Key,
    weight: Fp,
    rng: Option<Stream>,
}

/// One party's shared streams.
pub struct Streams {
    me: PartyId,
    n: usize,
    t: usize,
    /// `pair[i * n + j]`: the key of dealings from `i` to `j` (`me` is `i` or `j`).
    pair: Vec<Option<Key>>,
    pair_rng: Vec<Option<Stream>>,
    /// The subsets `T ∌ me`.
    sets: Vec<Set>,
    index: usize,
}

impl Streams {
    /// Agree on every key in one round: party `i` draws the key of each pair `{i, j}`,
    /// `j > i`, and the subset key of each `T` whose complement it leads (its least
    /// member), and sends each to the parties that hold it.
    pub fn agree(net: &mut dyn Transport, g: &Geometry, coins: &dyn Coins) -> R<Streams> {
        let (me, n, t) = (net.party(), g.n, g.t);
        let all = subsets(n, t);
        let holders =
            |s: &[PartyId]| -> Vec<PartyId> { (0..n).filter(|p| !s.contains(p)).collect() };
        let mut out: Vec<Vec<u8>> = vec![Vec::new(); n];
        let mut pair_base: Vec<Option<Key>> = vec![None; n];
        for (j, slot) in pair_base.iter_mut().enumerate().skip(me + 1) {
            let k = coins.seed(KeyId {
                purpose: "shamir pair",
                holders: &[me, j],
                index: 0,
            })?;
            *slot = Some(k);
            out[j].extend_from_slice(&k);
        }
        let mut set_keys: Vec<Option<Key>> = vec![None; all.len()];
        for (s, set) in all.iter().enumerate() {
            let h = holders(set);
            if h.first() == Some(&me) {
                let k = coins.seed(KeyId {
                    purpose: "shamir subset",
                    holders: &h,
                    index: s,
                })?;
                set_keys[s] = Some(k);
                for &p in &h[1..] {
                    out[p].extend_from_slice(&k);
                }
            }
        }
        let expect: Vec<(PartyId, usize)> = (0..n)
            .filter(|&p| p != me)
            .map(|p| {
                let from_sets = all
                    .iter()
                    .filter(|s| {
                        let h = holders(s);
                        h.first() == Some(&p) && h.contains(&me)
                    })
                    .count();
                (p, 32 * (usize::from(p < me) + from_sets))
            })
            .collect();
        let msgs = out
            .into_iter()
            .enumerate()
            .filter(|&(p, _)| p != me)
            .collect();
        for (p, m) in net.exchange_sized(msgs, &expect)? {
            let mut at = 0;
            let mut take = || {
                let k: Key = m[at..at + 32].try_into().unwrap_or_default();
                at += 32;
                k
            };
            if p < me {
                pair_base[p] = Some(take());
            }
            for (s, set) in all.iter().enumerate() {
                let h = holders(set);
                if h.first() == Some(&p) && h.contains(&me) {
                    set_keys[s] = Some(take());
                }
            }
        }
        // Two directions per pair, derived from the pair's key.
        let mut pair = vec![None; n * n];
        for (p, base) in pair_base.iter().enumerate() {
            if let Some(b) = base {
                let mut r = stream(b, usize::MAX - 1);
                let (mut lo_hi, mut hi_lo) = ([0u8; 32], [0u8; 32]);
                r.fill_bytes(&mut lo_hi);
                r.fill_bytes(&mut hi_lo);
                let (lo, hi) = (me.min(p), me.max(p));
                pair[lo * n + hi] = Some(lo_hi);
                pair[hi * n + lo] = Some(hi_lo);
            }
        }
        let me_x = point(me);
        let sets = all
            .iter()
            .zip(set_keys)
            .filter_map(|(s, k)| {
                let key = k?;
                let weight = s.iter().fold(Fp::ONE, |acc, &j| {
                    let xj = point(j);
                    acc * (xj - me_x) * xj.inv().unwrap_or(Fp::ZERO)
                });
                Some(Set {
                    members: s.clone(),
                    key,
                    weight,
                    rng: None,
                })
            })
            .collect();
        Ok(Streams {
            me,
            n,
            t,
            pair,
            pair_rng: (0..n * n).map(|_| None).collect(),
            sets,
            index: 0,
        })
    }

    /// Restart every stream for instruction `index`.
    pub fn begin(&mut self, index: usize) {
        self.index = index;
        self.pair_rng.iter_mut().for_each(|r| *r = None);
        self.sets.iter_mut().for_each(|s| s.rng = None);
    }

    /// A copy for instruction `index`, running beside this one.
    pub fn fork(&self, index: usize) -> Streams {
        let mut f = Streams {
            me: self.me,
            n: self.n,
            t: self.t,
            pair: self.pair.clone(),
            pair_rng: (0..self.n * self.n).map(|_| None).collect(),
            sets: self
                .sets
                .iter()
                .map(|s| Set {
                    members: s.members.clone(),
                    key: s.key,
                    weight: s.weight,
                    rng: None,
                })
                .collect(),
            index,
        };
        f.begin(index);
        f
    }

    /// `len` elements of the stream of dealings from `from` to `to`.
    pub fn pair(&mut self, from: PartyId, to: PartyId, len: usize) -> R<Vec<Fp>> {
        let at = from * self.n + to;
        let key = self.pair.get(at).copied().flatten().ok_or_else(|| {
            ProtocolError::Invalid(format!(
                "party {} has no stream from party {from} to party {to}",
                self.me
            ))
        })?;
        let index = self.index;
        let rng = self.pair_rng[at].get_or_insert_with(|| stream(&key, index));
        Ok(uniform(rng, len))
    }

    /// Sum over this party's subsets of `term(rng, weight)`, computed set by set in parallel.
    fn over_sets(
        &mut self,
        len: usize,
        term: impl Fn(&mut Stream, Fp) -> Vec<Fp> + Sync,
    ) -> Vec<Fp> {
        let index = self.index;
        // The workers do not know whose streams they make; the party's thread does.
        let tap = Tap::current();
        self.sets
            .par_iter_mut()
            .map(|s| {
                let rng = s
                    .rng
                    .get_or_insert_with(|| Stream::with_tap(&tap, s.key, index as u64 + 1));
                term(rng, s.weight)
            })
            .reduce(
                || vec![Fp::ZERO; len],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x = *x + y);
                    a
                },
            )
    }

    /// The stream of subset `members`, which this party must hold.
    fn set_rng(&mut self, members: &[PartyId]) -> R<&mut Stream> {
        let (me, index) = (self.me, self.index);
        let s = self
            .sets
            .iter_mut()
            .find(|s| s.members == members)
            .ok_or_else(|| {
                ProtocolError::Invalid(format!("party {me} has no stream of subset {members:?}"))
            })?;
        Ok(s.rng.get_or_insert_with(|| stream(&s.key, index)))
    }

    /// `f_T(α_me)` for the subset `T = {k}` (`t = 1`), or `None` where this party is `k`.
    pub fn single_weight(&self, k: PartyId) -> Option<Fp> {
        self.sets
            .iter()
            .find(|s| s.members == [k])
            .map(|s| s.weight)
    }

    /// With three parties: `words` random words of components `x_me` and `x_(me+1)` of a
    /// replicated boolean sharing ([`super::boolean`]), component `x_j` from the stream of
    /// subset `{j + 1}`, which parties `j` and `j − 1` hold.
    pub fn replicated_words(&mut self, words: usize) -> R<(Vec<u64>, Vec<u64>)> {
        let me = self.me;
        let mut draw = |k: PartyId| -> R<Vec<u64>> {
            let rng = self.set_rng(&[k])?;
            let mut bytes = vec![0u8; words * 8];
            rng.fill_bytes(&mut bytes);
            Ok(bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect())
        };
        Ok((draw((me + 1) % 3)?, draw((me + 2) % 3)?))
    }

    /// Shares of `len` uniform random secrets.
    pub fn random(&mut self, len: usize) -> Vec<Fp> {
        self.over_sets(len, |rng, w| {
            uniform(rng, len).into_iter().map(|v| v * w).collect()
        })
    }

    /// Shares of `len` random secrets in `[0, C·2^bits)`, `C` the number of subsets, each a
    /// sum of `C` terms uniform in `[0, 2^bits)` (`bits ≤ 64`): statistical masks.
    pub fn bounded(&mut self, len: usize, bits: u32) -> Vec<Fp> {
        let mask = crate::bitvec::low_mask(bits);
        self.over_sets(len, move |rng, w| {
            let mut bytes = vec![0u8; len * 8];
            rng.fill_bytes(&mut bytes);
            bytes
                .chunks_exact(8)
                .map(|c| {
                    let v = u64::from_le_bytes(c.try_into().unwrap_or_default()) & mask;
                    Fp::new(u128::from(v)) * w
                })
                .collect()
        })
    }

    /// Masks `z_i` of `len` zeros for the parties `openers` of a degree-`2t` opening, with
    /// `Σ λ_i·z_i = 0` (`lambda` their Lagrange coefficients at zero): `z_i` is
    /// `(Σ_{j > i} s_ij − Σ_{j < i} s_ji)/λ_i` over the pair streams of the openers. Each
    /// opened `y_i + z_i` is then uniform but for the one sum the opening reveals, as any
    /// `t` parties miss the streams between the `t + 1 ≥ 2` others. Parties outside
    /// `openers` get zeros.
    pub fn zero_among(
        &mut self,
        openers: std::ops::Range<PartyId>,
        lambda: &[Fp],
        len: usize,
    ) -> R<Vec<Fp>> {
        let me = self.me;
        if !openers.contains(&me) {
            return Ok(vec![Fp::ZERO; len]);
        }
        let mut z = vec![Fp::ZERO; len];
        for j in openers.filter(|&j| j != me) {
            let draws = self.pair(me.min(j), me.max(j), len)?;
            for (zi, d) in z.iter_mut().zip(draws) {
                *zi = if me < j { *zi + d } else { *zi - d };
            }
        }
        let inv = lambda
            .get(me)
            .and_then(|l| l.inv())
            .ok_or_else(|| ProtocolError::Invalid("a zero Lagrange coefficient".into()))?;
        Ok(z.into_iter().map(|v| v * inv).collect())
    }
}
