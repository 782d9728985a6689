//! A distributed zero-knowledge proof of an inner product: a prover `P` knows `x, y ∈ F^L`,
//! two verifiers `V1`, `V2` hold additive shares of `x`, `y` and `z`, and `P` proves
//! `⟨x, y⟩ = z` with `O(k log_k L)` field elements and `2 log_k L + 1` rounds, without
//! either verifier learning anything about `x` or `y` (Boneh–Boyle–Corrigan-Gibbs–Gilboa–
//! Ishai, CRYPTO'19; the recursion of Boyle–Gilboa–Ishai–Nof, CCS'19). A batch of degree-2
//! relations `Σ_j ρ_j (a_j b_j − c_j) = 0` with verifier-chosen `ρ` is one such statement,
//! which is how `mal-rep3` is to check every message a party computes.
//!
//! **Compression level** (length `L > k`, padded to `k·m`): write `x` as `k` blocks of `m`,
//! let `f_i` be the polynomial of degree `< k` with `f_i(e_ℓ) = x_{ℓm+i}` (points
//! `e_ℓ = ℓ` as field elements), `g_i` likewise for `y`, and `h = Σ_i f_i g_i` (degree
//! `≤ 2k − 2`), so `Σ_{ℓ<k} h(e_ℓ) = ⟨x, y⟩`. `P` sends `h`'s values at `e_0..e_{2k−2}` as
//! shares: `V1`'s are pads from a stream it shares with `P` (nothing is sent), `V2` gets
//! `h + pad`. Each verifier keeps its share of `Σ_{ℓ<k} h(e_ℓ) − z`, which must open to
//! zero. Then both verifiers send `P` the challenge `r` (from a stream only they share;
//! `P` checks both agree), and all fold: `x'_i = f_i(r)`, `y'_i = g_i(r)`, `z' = h(r)`.
//!
//! Vectors longer than [`LONG`] compress by 2 (where `f(e_2)` is a shift and a fold one
//! product per element), shorter ones by `k`.
//!
//! **Final level** (length `≤ k`, padded to `k`): `P` appends random `a_0`, `b_0` at point
//! `e_k`, so `f` and `g` have degree `k` and `h = f·g` degree `2k`; it sends the shares of
//! `a_0`, `b_0` and `h(e_0..e_{2k})`. After the challenge the verifiers open their shares
//! of every level's check, `f(r)`, `g(r)` and `h(r)`, and accept iff every check is zero
//! and `f(r)·g(r) = h(r)`.
//!
//! Soundness: a false claim survives a level only if `r` is a root of the difference of the
//! true and the sent `h` (degree `≤ 2k`), so the error is at most
//! `levels · 2k / 2^64` (`2^−56` for `k = 8` and `2^30` relations). Zero knowledge: each
//! verifier's shares of `h` are uniform on their own (pads it does not know, or pads
//! alone), the checks open to zero, and `f(r)`, `g(r)` are uniform by `a_0`, `b_0`
//! (`r` is never an interpolation point).

use super::field::{self as pf, ProofField};
use crate::stream::Stream;
use rayon::prelude::*;

/// Why a proof step could not be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("a proof message of {got} field elements where {expected} were due")]
    Length { expected: usize, got: usize },
    #[error("the proof is over: no message is due")]
    Over,
}

/// The Lagrange basis over `e_0..e_{n−1}`, evaluated at `r`.
pub(crate) fn lagrange_at<F: ProofField>(n: usize, r: F) -> Vec<F> {
    (0..n)
        .map(|l| {
            let (mut num, mut den) = (F::ONE, F::ONE);
            for j in (0..n).filter(|&j| j != l) {
                num = num * (r - F::point(j));
                den = den * (F::point(l) - F::point(j));
            }
            num * den.inv()
        })
        .collect()
}

/// `Σ_ℓ v_ℓ · w_ℓ`.
fn dot<F: ProofField>(v: &[F], w: &[F]) -> F {
    F::dot(v, w)
}

/// Elements per task of the bulk kernels.
pub(super) const CHUNK: usize = 1 << 12;

/// `Σ v_i·w_i` over rayon.
fn par_dot<F: ProofField>(v: &[F], w: &[F]) -> F {
    v.par_chunks(CHUNK)
        .zip(w.par_chunks(CHUNK))
        .map(|(a, b)| F::dot(a, b))
        .reduce(|| F::ZERO, |a, b| a + b)
}

/// `out_i = Σ_l c_l·v_{l·m+i}` for `i < m`, over rayon.
fn par_combine<F: ProofField>(v: &[F], c: &[F], m: usize) -> Vec<F> {
    let mut out = vec![F::ZERO; m];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(b, o)| F::combine_into(v, c, m, b * CHUNK, o));
    out
}

fn draw<F: ProofField>(s: &mut Stream, n: usize) -> Vec<F> {
    pf::random(s, n)
}

/// The challenge of a level: uniform, and never an interpolation point.
pub fn challenge<F: ProofField>(verifiers: &mut Stream, k: usize) -> F {
    loop {
        let r = F::random(verifiers);
        if !r.is_point_below(2 * k + 1) {
            return r;
        }
    }
}

/// Vectors longer than this compress by 2, the cheapest factor per element (`f(e_2)` is a
/// shift, a fold one product per element); shorter ones by `k`, which saves rounds.
pub const LONG: usize = 1 << 12;

/// The compression factor of a level of length `len > k`.
pub fn factor(len: usize, k: usize) -> usize {
    if len > LONG {
        2
    } else {
        k
    }
}

/// Elements of the message of a level of length `len`.
pub fn message_len(len: usize, k: usize) -> usize {
    if len > k {
        2 * factor(len, k) - 1
    } else {
        2 * k + 3
    }
}

/// Messages of a proof of vectors of length `len`: its compression levels and the final.
pub fn levels(mut len: usize, k: usize) -> usize {
    let k = k.max(2);
    let mut n = 1;
    while len > k {
        len = len.div_ceil(factor(len, k));
        n += 1;
    }
    n
}

/// The prover's message lengths, level by level, for vectors of length `len`.
pub fn message_lengths(mut len: usize, k: usize) -> Vec<usize> {
    let k = k.max(2);
    let mut out = Vec::new();
    while len > k {
        out.push(message_len(len, k));
        len = len.div_ceil(factor(len, k));
    }
    out.push(message_len(len, k));
    out
}

/// `v` zero-padded to `n`.
fn padded<F: ProofField>(mut v: Vec<F>, n: usize) -> Vec<F> {
    v.resize(n, F::ZERO);
    v
}

/// `v'_i = Σ_ℓ v_{ℓm+i} · basis_ℓ`: the fold of one vector (prover and verifiers alike).
fn fold<F: ProofField>(v: &[F], basis: &[F]) -> Vec<F> {
    let m = v.len() / basis.len();
    if basis.len() == 2 {
        // L_0(r) = 1 − r, L_1(r) = r: one product per element.
        let r = basis[1];
        return (0..m)
            .into_par_iter()
            .map(|i| v[i] + r * (v[m + i] - v[i]))
            .collect();
    }
    par_combine(v, basis, m)
}

/// The prover.
pub struct Prover<F> {
    x: Vec<F>,
    y: Vec<F>,
    k: usize,
    /// Shared with `V1`: its shares.
    pad: Stream,
    /// The prover's own coins (the final masks).
    own: Stream,
    /// Whether the final message has been made.
    done: bool,
}

impl<F: ProofField> Prover<F> {
    /// A proof of `⟨x, y⟩` with compression factor `k ≥ 2`.
    pub fn new(x: Vec<F>, y: Vec<F>, k: usize, pad: Stream, own: Stream) -> Prover<F> {
        let n = x.len().max(y.len());
        Prover {
            x: padded(x, n),
            y: padded(y, n),
            k: k.max(2),
            pad,
            own,
            done: false,
        }
    }

    /// The message to `V2` of the current level.
    pub fn message(&mut self) -> Result<Vec<F>, ProofError> {
        if self.done {
            return Err(ProofError::Over);
        }
        let k = self.k;
        let h = if self.x.len() > k {
            let f = factor(self.x.len(), k);
            let m = self.x.len().div_ceil(f);
            self.x = padded(std::mem::take(&mut self.x), f * m);
            self.y = padded(std::mem::take(&mut self.y), f * m);
            compressed_h(&self.x, &self.y, f)
        } else {
            self.done = true;
            let x = padded(std::mem::take(&mut self.x), k);
            let y = padded(std::mem::take(&mut self.y), k);
            let masks: Vec<F> = draw(&mut self.own, 2);
            let h = final_h(&x, &y, masks[0], masks[1], k);
            masks.into_iter().chain(h).collect()
        };
        // `V1`'s shares are the pads, `V2`'s the rest.
        let pads: Vec<F> = draw(&mut self.pad, h.len());
        Ok(h.into_iter().zip(pads).map(|(v, p)| v - p).collect())
    }

    /// Fold with the verifiers' challenge (after a compression level's message).
    pub fn fold(&mut self, r: F) {
        if self.done {
            return;
        }
        // `message` padded the vectors to a multiple of this level's factor.
        let f = factor(self.x.len(), self.k);
        let basis = lagrange_at(f, r);
        self.x = fold(&self.x, &basis);
        self.y = fold(&self.y, &basis);
    }

    /// Whether the final message has been made.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Length of the current vectors.
    pub fn vector_len(&self) -> usize {
        self.x.len()
    }
}

/// `h(e_0..e_{2k−2})` of a compression level.
fn compressed_h<F: ProofField>(x: &[F], y: &[F], k: usize) -> Vec<F> {
    let m = x.len() / k;
    if k == 2 {
        // f(e_2) = x_0 + (x_1 − x_0)·e_2.
        return (0..m)
            .into_par_iter()
            .fold(
                || [F::ZERO; 3],
                |mut h, i| {
                    let (x0, x1, y0, y1) = (x[i], x[m + i], y[i], y[m + i]);
                    h[0] = h[0] + x0 * y0;
                    h[1] = h[1] + x1 * y1;
                    h[2] = h[2] + (x0 + (x1 - x0).mul_point2()) * (y0 + (y1 - y0).mul_point2());
                    h
                },
            )
            .reduce(
                || [F::ZERO; 3],
                |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]],
            )
            .to_vec();
    }
    // At the points `0..k`, `h` is row `t` of `x` against row `t` of `y`; beyond, the rows
    // interpolated there (`Σ_l λ_l·row_l`, one vector of `m` at a time) against each other.
    let at_nodes = (0..k).map(|t| {
        let rows = t * m..(t + 1) * m;
        par_dot(&x[rows.clone()], &y[rows])
    });
    let beyond = (k..2 * k - 1).map(|t| {
        let lam = lagrange_at(k, F::point(t));
        par_dot(&par_combine(x, &lam, m), &par_combine(y, &lam, m))
    });
    at_nodes.chain(beyond).collect()
}

/// `h(e_0..e_{2k})` of the final level, with the masks at `e_k`.
fn final_h<F: ProofField>(x: &[F], y: &[F], a0: F, b0: F, k: usize) -> Vec<F> {
    let fv: Vec<F> = x.iter().copied().chain([a0]).collect();
    let gv: Vec<F> = y.iter().copied().chain([b0]).collect();
    (0..=2 * k)
        .map(|t| {
            if t <= k {
                fv[t] * gv[t]
            } else {
                let lam = lagrange_at(k + 1, F::point(t));
                dot(&fv, &lam) * dot(&gv, &lam)
            }
        })
        .collect()
}

/// Where a verifier's shares of the prover's values come from.
pub enum Source {
    /// `V1`: the pad stream it shares with the prover.
    Pads(Box<Stream>),
    /// `V2`: the prover's messages.
    Messages,
}

/// A verifier's state: its shares of the current statement and of every level's check.
pub struct Verifier<F> {
    source: Source,
    k: usize,
    x: Vec<F>,
    y: Vec<F>,
    z: F,
    /// Shares of `h` of the current level (and of `a_0`, `b_0` first at the final one).
    h: Vec<F>,
    checks: Vec<F>,
    last: Option<[F; 3]>,
}

impl<F: ProofField> Verifier<F> {
    /// A verifier holding shares `x`, `y`, `z` (padded to a common length).
    pub fn new(source: Source, x: Vec<F>, y: Vec<F>, z: F, k: usize) -> Verifier<F> {
        let n = x.len().max(y.len());
        Verifier {
            source,
            k: k.max(2),
            x: padded(x, n),
            y: padded(y, n),
            z,
            h: Vec::new(),
            checks: Vec::new(),
            last: None,
        }
    }

    /// Take this level's shares: the prover's message for `V2` (`None` for `V1`).
    pub fn receive(&mut self, msg: Option<&[F]>) -> Result<(), ProofError> {
        if self.last.is_some() {
            return Err(ProofError::Over);
        }
        let k = self.k;
        let expected = message_len(self.x.len(), k);
        let shares = match (&mut self.source, msg) {
            (Source::Pads(s), _) => draw(s.as_mut(), expected),
            (Source::Messages, Some(m)) if m.len() == expected => m.to_vec(),
            (Source::Messages, m) => {
                return Err(ProofError::Length {
                    expected,
                    got: m.map_or(0, <[F]>::len),
                })
            }
        };
        let (at, width) = if self.x.len() > k {
            (0, factor(self.x.len(), k))
        } else {
            (2, k)
        };
        // A share of `Σ h(e_ℓ) − z`.
        let sum = shares[at..at + width]
            .iter()
            .fold(F::ZERO - self.z, |acc, &v| acc + v);
        self.checks.push(sum);
        self.h = shares;
        Ok(())
    }

    /// Fold with the challenge `r`.
    pub fn fold(&mut self, r: F) {
        let k = self.k;
        if self.x.len() > k {
            let f = factor(self.x.len(), k);
            let m = self.x.len().div_ceil(f);
            let basis = lagrange_at(f, r);
            self.x = fold(&padded(std::mem::take(&mut self.x), f * m), &basis);
            self.y = fold(&padded(std::mem::take(&mut self.y), f * m), &basis);
            self.z = dot(&self.h, &lagrange_at(2 * f - 1, r));
        } else {
            let basis = lagrange_at(k + 1, r);
            let with = |v: &[F], mask: F| -> F {
                let v: Vec<F> = padded(v.to_vec(), k).into_iter().chain([mask]).collect();
                dot(&v, &basis)
            };
            let f = with(&self.x, self.h[0]);
            let g = with(&self.y, self.h[1]);
            let h = dot(&self.h[2..], &lagrange_at(2 * k + 1, r));
            self.last = Some([f, g, h]);
            self.x.clear();
        }
    }

    /// Whether the final level has been folded (its shares are ready to open).
    pub fn is_done(&self) -> bool {
        self.last.is_some()
    }

    /// Length of the current vectors.
    pub fn vector_len(&self) -> usize {
        self.x.len()
    }

    /// Elements of the prover's next message.
    pub fn due(&self) -> usize {
        message_len(self.x.len(), self.k)
    }

    /// The shares to open: every level's check, then `f(r)`, `g(r)`, `h(r)`.
    pub fn shares(&self) -> Vec<F> {
        let mut out = self.checks.clone();
        out.extend(self.last.unwrap_or_default());
        out
    }
}

/// Whether two verifiers' opened shares accept the proof.
pub fn accepts<F: ProofField>(a: &[F], b: &[F]) -> bool {
    if a.len() != b.len() || a.len() < 3 {
        return false;
    }
    let v: Vec<F> = a.iter().zip(b).map(|(&u, &w)| u + w).collect();
    let (checks, last) = v.split_at(v.len() - 3);
    checks.iter().all(|&c| c == F::ZERO) && last[0] * last[1] == last[2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dzkp::gf64::Gf64;

    fn stream(seed: u8, n: u64) -> Stream {
        Stream::new([seed; 32], n)
    }

    /// Random additive shares of `v` (the first from `s`).
    fn split<F: ProofField>(v: &[F], s: &mut Stream) -> (Vec<F>, Vec<F>) {
        let a = draw(s, v.len());
        let b = v.iter().zip(&a).map(|(&x, &y)| x - y).collect();
        (a, b)
    }

    /// What a prover may do to its messages: level index → message → altered message.
    type Tamper<'a, F> = &'a dyn Fn(usize, &mut Vec<F>);

    /// Run a whole proof of `⟨x, y⟩ = z` among three parties in memory.
    fn prove<F: ProofField>(x: &[F], y: &[F], z: F, k: usize, seed: u8, tamper: Tamper<F>) -> bool {
        let mut coins = stream(seed, 99);
        let (x1, x2) = split(x, &mut coins);
        let (y1, y2) = split(y, &mut coins);
        let z1 = draw(&mut coins, 1)[0];
        let z2 = z - z1;
        let mut p = Prover::new(x.to_vec(), y.to_vec(), k, stream(seed, 1), stream(seed, 2));
        let mut v1 = Verifier::new(Source::Pads(Box::new(stream(seed, 1))), x1, y1, z1, k);
        let mut v2 = Verifier::new(Source::Messages, x2, y2, z2, k);
        let mut verifiers_key = stream(seed, 3);
        let mut level = 0;
        while !v2.is_done() {
            let mut msg = p.message().unwrap();
            tamper(level, &mut msg);
            v1.receive(None).unwrap();
            v2.receive(Some(&msg)).unwrap();
            let r = challenge(&mut verifiers_key, k);
            p.fold(r);
            v1.fold(r);
            v2.fold(r);
            level += 1;
        }
        assert!(v1.is_done() && p.is_done());
        accepts(&v1.shares(), &v2.shares())
    }

    fn vectors(n: usize, seed: u8) -> (Vec<Gf64>, Vec<Gf64>, Gf64) {
        let mut s = stream(seed, 7);
        let (x, y) = (draw(&mut s, n), draw(&mut s, n));
        let z = dot(&x, &y);
        (x, y, z)
    }

    const HONEST: Tamper<Gf64> = &|_, _| {};

    /// The same proof over F_p (p = 2^127 − 1): additive shares, odd characteristic.
    #[test]
    fn the_proof_over_the_prime_field_accepts_truth_and_rejects_a_lie() {
        use crate::field::Fp;
        for k in [2, 3, 8] {
            for n in [1, 2, 9, 100, 2 * LONG + 3] {
                let mut s = stream(n as u8, 5);
                let (x, y): (Vec<Fp>, Vec<Fp>) = (draw(&mut s, n), draw(&mut s, n));
                let z = dot(&x, &y);
                let honest: Tamper<Fp> = &|_, _| {};
                assert!(prove(&x, &y, z, k, 2, honest), "k {k}, length {n}");
                assert!(
                    !prove(&x, &y, z + Fp::ONE, k, 2, honest),
                    "k {k}, length {n}"
                );
                let tamper: Tamper<Fp> = &|l, m| {
                    if l == 0 {
                        m[0] = m[0] + Fp::ONE;
                    }
                };
                assert!(!prove(&x, &y, z, k, 2, tamper), "k {k}, length {n}");
            }
        }
    }

    #[test]
    fn a_true_claim_is_accepted() {
        for k in [2, 3, 4, 8] {
            for n in [0, 1, 2, 3, 7, 8, 9, 100, 1000, 4097, 3 * LONG + 5] {
                let (x, y, z) = vectors(n, n as u8);
                assert!(prove(&x, &y, z, k, 1, HONEST), "k {k}, length {n}");
            }
        }
    }

    #[test]
    fn a_false_claim_is_rejected() {
        for k in [2, 4, 8] {
            for n in [1, 5, 64, 1000, 2 * LONG + 1] {
                let (x, y, z) = vectors(n, 3);
                assert!(
                    !prove(&x, &y, z + Gf64(1), k, 1, HONEST),
                    "k {k}, length {n}"
                );
            }
        }
    }

    #[test]
    fn every_altered_message_element_is_caught() {
        let k = 4;
        let (x, y, z) = vectors(300, 5);
        // 300 → 75 → 19 → 5 → final: four compression levels, then the final message.
        for level in 0..5 {
            let len = if level < 4 { 2 * k - 1 } else { 2 * k + 3 };
            for at in 0..len {
                let tamper = move |l: usize, m: &mut Vec<Gf64>| {
                    if l == level {
                        m[at] += Gf64(1 << 40);
                    }
                };
                assert!(
                    !prove(&x, &y, z, k, 9, &tamper),
                    "level {level}, element {at}"
                );
            }
        }
    }

    /// A cheating prover of a false claim that keeps every level's sum check true (it moves
    /// the error into `h`'s first value) still fails at the challenge.
    #[test]
    fn a_prover_that_satisfies_the_sum_checks_is_caught() {
        let (x, y, z) = vectors(50, 11);
        let err = Gf64(0xdead_beef);
        let tamper = move |l: usize, m: &mut Vec<Gf64>| {
            if l == 0 {
                m[0] += err;
            }
        };
        for seed in 0..20 {
            assert!(!prove(&x, &y, z + err, 4, seed, &tamper), "seed {seed}");
        }
    }

    #[test]
    fn wrong_lengths_and_extra_messages_are_errors() {
        let mut v = Verifier::new(
            Source::Messages,
            vec![Gf64(1); 10],
            vec![Gf64(1); 10],
            Gf64(0),
            4,
        );
        assert_eq!(
            v.receive(Some(&[Gf64(0); 3])),
            Err(ProofError::Length {
                expected: 7,
                got: 3
            })
        );
        let mut p = Prover::new(vec![Gf64(1)], vec![Gf64(1)], 4, stream(1, 1), stream(1, 2));
        p.message().unwrap();
        assert_eq!(p.message(), Err(ProofError::Over));
    }
}
