//! Relations as inner-product statements ([`super::ip`]): each maps a party's messages
//! and what the verifiers jointly know to `(x, y, z)` with `⟨x, y⟩ = z` exactly when every
//! relation of the batch holds (but with probability `2^−64` over the verifiers' `ρ`).
//! Each map is linear in every shared vector it reads, so a verifier applies it to its
//! shares and holds additive shares of the statement.

use super::gf64::Gf64;
use crate::bitvec::get;

/// A batch of AND triples `c_j = a_j · b_j` over GF(2) (`n` bits each, packed as in
/// [`crate::bitvec`]): the dealer's triples of `rep3`'s comparison trees, whose `c` it
/// sends one evaluator. With the verifiers' `ρ` (drawn after the triples are fixed):
/// `⟨ρ∘a, b⟩ = ⟨ρ, c⟩`. A false triple makes the two sides differ by `Σ ρ_j` over the
/// false ones, zero with probability `2^−64`.
pub fn and_triples(
    a: &[u64],
    b: &[u64],
    c: &[u64],
    n: usize,
    rho: &[Gf64],
) -> (Vec<Gf64>, Vec<Gf64>, Gf64) {
    let bit = |v: &[u64], j: usize| Gf64(get(v, j));
    let x = (0..n)
        .map(|j| if get(a, j) == 1 { rho[j] } else { Gf64::ZERO })
        .collect();
    let y = (0..n).map(|j| bit(b, j)).collect();
    let z = (0..n)
        .filter(|&j| get(c, j) == 1)
        .fold(Gf64::ZERO, |acc, j| acc + rho[j]);
    (x, y, z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitvec::{and, xor};
    use crate::dzkp::ip::{accepts, challenge, Prover, Source, Verifier};
    use crate::stream::Stream;

    fn bits(s: &mut Stream, n: usize) -> Vec<u64> {
        let mut v: Vec<u64> = Gf64::random(s, n.div_ceil(64))
            .iter()
            .map(|g| g.0)
            .collect();
        crate::bitvec::clear_tail(&mut v, n);
        v
    }

    /// The dealer `D` proves its triples to `A` (who drew `a_A, b_A, c_A` from the key it
    /// shares with `D`) and `B` (who drew `a_B, b_B` and received `c_B`).
    fn dealer_proves(n: usize, flip: Option<usize>) -> bool {
        let mut s = Stream::new([4; 32], 0);
        let (a_a, b_a, c_a) = (bits(&mut s, n), bits(&mut s, n), bits(&mut s, n));
        let (a_b, b_b) = (bits(&mut s, n), bits(&mut s, n));
        let (a, b) = (xor(&a_a, &a_b), xor(&b_a, &b_b));
        let mut c_b = xor(&and(&a, &b), &c_a);
        if let Some(j) = flip {
            c_b[j / 64] ^= 1 << (j % 64);
        }
        let c = xor(&c_a, &c_b);
        // ρ from the verifiers' key, revealed to D once the triples are sent.
        let rho = Gf64::random(&mut Stream::new([5; 32], 0), n);
        let (x, y, _) = and_triples(&a, &b, &c, n, &rho);
        let (x1, y1, z1) = and_triples(&a_a, &b_a, &c_a, n, &rho);
        let (x2, y2, z2) = and_triples(&a_b, &b_b, &c_b, n, &rho);
        let k = 8;
        let pads = || Stream::new([6; 32], 0);
        let mut p = Prover::new(x, y, k, pads(), Stream::new([7; 32], 0));
        let mut v1 = Verifier::new(Source::Pads(Box::new(pads())), x1, y1, z1, k);
        let mut v2 = Verifier::new(Source::Messages, x2, y2, z2, k);
        let mut key = Stream::new([8; 32], 1);
        while !v2.is_done() {
            let msg = p.message().expect("message");
            v1.receive(None).expect("v1");
            v2.receive(Some(&msg)).expect("v2");
            let r = challenge(&mut key, k);
            p.fold(r);
            v1.fold(r);
            v2.fold(r);
        }
        accepts(&v1.shares(), &v2.shares())
    }

    #[test]
    fn honest_triples_pass_and_one_false_bit_fails() {
        for n in [1, 63, 64, 65, 5000] {
            assert!(dealer_proves(n, None), "{n} honest triples");
            assert!(!dealer_proves(n, Some(0)), "{n} triples, the first false");
            assert!(
                !dealer_proves(n, Some(n - 1)),
                "{n} triples, the last false"
            );
        }
    }
}
