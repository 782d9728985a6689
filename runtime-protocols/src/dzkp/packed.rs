//! The first level of a proof about 64-lane words of bit relations, without turning every
//! bit into a field element.
//!
//! The statement is `Σ_e θ_e·W(u_e ∧ w_e) = Σ_r θ_r·W(z_r)`: one coefficient per word, the
//! lanes weighted by `X^ℓ` (`W` reads a word as the element of GF(2^64) whose coefficients
//! are its bits, so a wrong word is a nonzero element and survives `θ` with probability
//! 2^−64). Split each word into 8 bytes `g`; lane `λ` of byte `g` is the point `e_λ` of
//! `f_{e,g}(e_λ) = θ_e X^{8g+λ} u_{e,8g+λ}` and `g_{e,g}(e_λ) = w_{e,8g+λ}` (degree 7), and
//! `h = Σ f·g` (degree 14) has `Σ_{λ<8} h(e_λ)` equal to the left side. The prover sends
//! `h` at 15 points; after the challenge `ρ`, `f_{e,g}(ρ)` and `g_{e,g}(ρ)` are GF(2)-linear
//! in the byte, so a verifier computes its vector with one table lookup (and one product
//! for `θ`) per byte, and the rest of the proof ([`super::ip`]) runs on 8 elements per word
//! instead of 64. A wrong `h` survives `ρ` with probability 14/2^64.

use super::gf64::{self, Gf64};
use super::ip::CHUNK;
use rayon::prelude::*;

/// Points of `h` the prover sends.
pub const MESSAGE: usize = 15;
/// Lanes per group (the interpolation nodes).
const NODES: usize = 8;

fn point(t: usize) -> Gf64 {
    Gf64(t as u64)
}

fn lagrange(n: usize, r: Gf64) -> Vec<Gf64> {
    super::ip::lagrange_at(n, r)
}

/// `X^k`.
fn x_pow(k: usize) -> Gf64 {
    (0..k).fold(Gf64::ONE, |a, _| a.mul_x())
}

/// `table[v] = Σ_{λ ∈ v} basis[λ]` for every byte `v`.
fn subset_sums(basis: &[Gf64]) -> [Gf64; 256] {
    let mut t = [Gf64::ZERO; 256];
    for v in 1..256usize {
        t[v] = t[v & (v - 1)] + basis[v.trailing_zeros() as usize];
    }
    t
}

/// The tables of one point `r`: the `u` side per byte position (`X^{8g+λ}·L_λ(r)`), the
/// `w` side (`L_λ(r)`).
struct Tables {
    u: Vec<[Gf64; 256]>,
    w: [Gf64; 256],
}

impl Tables {
    fn at(r: Gf64) -> Tables {
        let l = lagrange(NODES, r);
        let u = (0..8)
            .map(|g| {
                let basis: Vec<Gf64> = (0..NODES).map(|k| x_pow(8 * g + k) * l[k]).collect();
                subset_sums(&basis)
            })
            .collect();
        Tables {
            u,
            w: subset_sums(&l),
        }
    }
}

fn byte(v: u64, g: usize) -> usize {
    (v >> (8 * g) & 0xff) as usize
}

/// The prover's `h` at `e_0..e_14` for entries `(u_e, w_e)` with coefficients `θ_e`.
pub fn prover_h(u: &[u64], w: &[u64], theta: &[Gf64]) -> [Gf64; MESSAGE] {
    let extra: Vec<Tables> = (NODES..MESSAGE).map(|t| Tables::at(point(t))).collect();
    let zero = || [[Gf64::ZERO; NODES]; 8];
    let acc = (0..u.len())
        .into_par_iter()
        .fold(zero, |mut acc, e| {
            let (both, th) = (u[e] & w[e], theta[e]);
            if both != 0 {
                for (g, row) in acc.iter_mut().enumerate() {
                    let mut b = byte(both, g);
                    while b != 0 {
                        row[b.trailing_zeros() as usize] += th;
                        b &= b - 1;
                    }
                }
            }
            acc
        })
        .reduce(zero, |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                for (p, q) in x.iter_mut().zip(y) {
                    *p += q;
                }
            }
            a
        });
    // Beyond the nodes, `Σ_e θ_e Σ_g U_g[u_eg]·W[w_eg]` at each point: bulk kernels that
    // reduce each sum once.
    let far = extra.iter().map(|tab| {
        theta[..u.len()]
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(c, th)| {
                gf64::weighted_sums(th, |i| {
                    let (ue, we) = (u[c * CHUNK + i], w[c * CHUNK + i]);
                    (0..8).filter_map(move |g| {
                        let (a, b) = (byte(ue, g), byte(we, g));
                        (a != 0 && b != 0).then(|| (tab.u[g][a], tab.w[b]))
                    })
                })
            })
            .reduce(|| Gf64::ZERO, |a, b| a + b)
    });
    let mut h = [Gf64::ZERO; MESSAGE];
    for (lam, v) in h.iter_mut().take(NODES).enumerate() {
        for (g, row) in acc.iter().enumerate() {
            *v += x_pow(8 * g + lam) * row[lam];
        }
    }
    for (v, f) in h[NODES..].iter_mut().zip(far) {
        *v = f;
    }
    h
}

/// `Σ_{λ<8} h(e_λ)`: the left side the first level claims (share by share).
pub fn lane_sum(h: &[Gf64]) -> Gf64 {
    h.iter().take(NODES).fold(Gf64::ZERO, |a, &b| a + b)
}

/// `h(ρ)` from its values at `e_0..e_14` (share by share).
pub fn h_at(h: &[Gf64], rho: Gf64) -> Gf64 {
    lagrange(MESSAGE, rho)
        .into_iter()
        .zip(h)
        .fold(Gf64::ZERO, |a, (l, &v)| a + l * v)
}

/// `f_{e,g}(ρ)` for every entry and byte (8 per entry).
pub fn fold_u(u: &[u64], theta: &[Gf64], rho: Gf64) -> Vec<Gf64> {
    let t = Tables::at(rho);
    u.par_iter()
        .zip(theta.par_iter())
        .flat_map_iter(|(&v, &th)| {
            let t = &t;
            (0..8).map(move |g| th * t.u[g][byte(v, g)])
        })
        .collect()
}

/// `g_{e,g}(ρ)` for every entry and byte.
pub fn fold_w(w: &[u64], rho: Gf64) -> Vec<Gf64> {
    let t = Tables::at(rho);
    w.par_iter()
        .flat_map_iter(|&v| {
            let t = &t;
            (0..8).map(move |g| t.w[byte(v, g)])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize, seed: u64) -> Vec<u64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            })
            .collect()
    }

    #[test]
    fn the_first_level_keeps_the_claim() {
        for n in [1, 5, 100, 1000] {
            let (u, w) = (words(n, 1), words(n, 2));
            let theta: Vec<Gf64> = words(n, 3).into_iter().map(Gf64).collect();
            let h = prover_h(&u, &w, &theta);
            let claim = (0..n).fold(Gf64::ZERO, |a, e| a + theta[e] * Gf64(u[e] & w[e]));
            assert_eq!(lane_sum(&h), claim, "{n} words");
            for rho in [Gf64(12345), Gf64(u64::MAX - 7)] {
                let (f, g) = (fold_u(&u, &theta, rho), fold_w(&w, rho));
                let ip = f.iter().zip(&g).fold(Gf64::ZERO, |a, (&x, &y)| a + x * y);
                assert_eq!(ip, h_at(&h, rho), "{n} words");
            }
        }
    }

    #[test]
    fn a_wrong_word_changes_the_claim() {
        let (u, w) = (words(50, 4), words(50, 5));
        let theta: Vec<Gf64> = words(50, 6).into_iter().map(Gf64).collect();
        let h = prover_h(&u, &w, &theta);
        let mut w2 = w.clone();
        // A lane where `u` is set: the product changes.
        w2[17] ^= 1 << u[17].trailing_zeros();
        assert_ne!(lane_sum(&prover_h(&u, &w2, &theta)), lane_sum(&h));
    }
}
