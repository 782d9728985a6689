//! Distributed comparison functions (DCF): two-party function secret sharing of
//! `f(x) = β·[x < α]` on `bits`-bit inputs, `β` a vector of `P` ring words (Boyle, Chandran,
//! Gilboa, Gupta, Ishai, Kumar, Rathee, "Function Secret Sharing for Mixed-Mode and
//! Fixed-Point Secure Computation", Eurocrypt 2021, Fig. 1).
//!
//! A key is a party's root seed plus correction words common to both keys: per input bit
//! a seed correction (16 bytes), two control-bit corrections (one byte) and a value
//! correction (`P` words), then one final value correction. Evaluating at `x` walks `x`'s
//! path from the most significant bit, one PRG call per bit; the two parties' outputs add
//! up to `f(x)` in the ring, and either key alone is pseudo-random, so it says nothing of
//! `α` or `β`.
//!
//! The PRG is fixed-key AES-128 in Matyas–Meyer–Oseas mode (`AES(s ⊕ j) ⊕ s ⊕ j` for
//! block `j`), the usual choice of FSS implementations.

use crate::word::Word;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Block};
use std::sync::LazyLock;

/// Bytes of a seed (λ = 128 bits).
pub(crate) const SEED_BYTES: usize = 16;

pub(crate) type Seed = [u8; SEED_BYTES];

/// Bytes of the correction words of a key on `bits`-bit inputs with `P` payload words of
/// `word_bytes` bytes each.
pub(crate) fn key_bytes(bits: u32, payload: usize, word_bytes: usize) -> usize {
    bits as usize * (SEED_BYTES + 1 + payload * word_bytes) + payload * word_bytes
}

/// The fixed AES key of the PRG: public, any constant does.
static PRG: LazyLock<Aes128> = LazyLock::new(|| Aes128::new(&(*b"qmpc dcf prg key").into()));

/// AES blocks of `P` words.
fn value_blocks<W: Word, const P: usize>() -> usize {
    (P * W::BYTES).div_ceil(16)
}

/// The most blocks of one batched PRG call: four expansions (both sides of both parties'
/// seeds, in key generation) of a seed block and two value blocks (2 words of Z_2^128).
const MAX_BLOCKS: usize = 12;

/// For each `(seed, first)` of `reqs`, blocks `first..first + per` of the PRG on that seed,
/// as bytes, back to back; one AES call for all, so AES-NI pipelines them.
fn prg(reqs: &[(&Seed, usize)], per: usize) -> [u8; 16 * MAX_BLOCKS] {
    let mut inputs = [Block::default(); MAX_BLOCKS];
    let count = reqs.len() * per;
    for (r, (s, first)) in reqs.iter().enumerate() {
        for j in 0..per {
            let mut v = **s;
            v[15] ^= (first + j) as u8;
            inputs[r * per + j] = Block::from(v);
        }
    }
    let mut blocks = inputs;
    PRG.encrypt_blocks(&mut blocks[..count]);
    let mut out = [0u8; 16 * MAX_BLOCKS];
    for j in 0..count {
        for k in 0..16 {
            out[16 * j + k] = blocks[j][k] ^ inputs[j][k];
        }
    }
    out
}

fn words_of<W: Word, const P: usize>(bytes: &[u8]) -> [W; P] {
    std::array::from_fn(|k| W::read(&bytes[k * W::BYTES..]))
}

/// One expansion: the child seed, its control bit and the value words.
type Expansion<W, const P: usize> = (Seed, u8, [W; P]);

/// For each `(seed, side)` (`0` left, `1` right), that side of the PRG's expansion of the
/// seed, in one AES call.
fn expand<W: Word, const P: usize, const K: usize>(
    reqs: [(&Seed, usize); K],
) -> [Expansion<W, P>; K] {
    let per = 1 + value_blocks::<W, P>();
    let starts: [(&Seed, usize); K] = std::array::from_fn(|r| (reqs[r].0, reqs[r].1 * per));
    let bytes = prg(&starts, per);
    std::array::from_fn(|r| {
        let b = &bytes[16 * per * r..];
        let mut seed: Seed = std::array::from_fn(|k| b[k]);
        let t = seed[0] & 1;
        seed[0] &= !1;
        (seed, t, words_of::<W, P>(&b[16..]))
    })
}

/// The final conversion of a leaf seed to `P` words.
fn convert<W: Word, const P: usize>(s: &Seed) -> [W; P] {
    let vb = value_blocks::<W, P>();
    words_of::<W, P>(&prg(&[(s, 2 * (1 + vb))], vb))
}

fn add<W: Word, const P: usize>(a: [W; P], b: [W; P]) -> [W; P] {
    std::array::from_fn(|k| a[k].add(b[k]))
}

fn sub<W: Word, const P: usize>(a: [W; P], b: [W; P]) -> [W; P] {
    std::array::from_fn(|k| a[k].sub(b[k]))
}

fn neg_if<W: Word, const P: usize>(a: [W; P], neg: bool) -> [W; P] {
    if neg {
        std::array::from_fn(|k| a[k].neg())
    } else {
        a
    }
}

fn write<W: Word, const P: usize>(v: &[W; P], out: &mut Vec<u8>) {
    for w in v {
        w.write(out);
    }
}

fn xor_seed(a: &Seed, b: &Seed) -> Seed {
    std::array::from_fn(|k| a[k] ^ b[k])
}

/// Append the correction words of the keys of `β·[x < α]` on `bits`-bit inputs whose
/// root seeds are `roots` (party 0's, party 1's) to `out`.
pub(crate) fn gen<W: Word, const P: usize>(
    bits: u32,
    alpha: u64,
    beta: [W; P],
    roots: [Seed; 2],
    out: &mut Vec<u8>,
) {
    let mut s = roots;
    let mut t = [0u8, 1u8];
    let mut v_alpha = [W::ZERO; P];
    for i in (0..bits).rev() {
        let a = ((alpha >> i) & 1) as usize;
        let [l0, r0, l1, r1] = expand::<W, P, 4>([(&s[0], 0), (&s[0], 1), (&s[1], 0), (&s[1], 1)]);
        let e = [[l0, r0], [l1, r1]];
        let (keep, lose) = (a, 1 - a);
        let s_cw = xor_seed(&e[0][lose].0, &e[1][lose].0);
        let neg = t[1] == 1;
        let mut v_cw = neg_if(sub(sub(e[1][lose].2, e[0][lose].2), v_alpha), neg);
        if lose == 0 {
            // The path of α turns right here: every input that turns left is below α.
            v_cw = add(v_cw, neg_if(beta, neg));
        }
        v_alpha = add(
            sub(v_alpha, e[1][keep].2),
            add(e[0][keep].2, neg_if(v_cw, neg)),
        );
        let t_cw = [
            e[0][0].1 ^ e[1][0].1 ^ a as u8 ^ 1,
            e[0][1].1 ^ e[1][1].1 ^ a as u8,
        ];
        out.extend_from_slice(&s_cw);
        out.push(t_cw[0] | (t_cw[1] << 1));
        write(&v_cw, out);
        for b in 0..2 {
            let (seed, tk, _) = e[b][keep];
            s[b] = if t[b] == 1 {
                xor_seed(&seed, &s_cw)
            } else {
                seed
            };
            t[b] = tk ^ (t[b] & t_cw[keep]);
        }
    }
    let last = neg_if(
        sub(sub(convert::<W, P>(&s[1]), convert::<W, P>(&s[0])), v_alpha),
        t[1] == 1,
    );
    write(&last, out);
}

/// Party `party`'s shares of `β·[x < α]` at each of the `K` points `xs`, from its root
/// seed and the correction words `key` (exactly [`key_bytes`] long) of a key on `bits`-bit
/// inputs. The points' paths are walked in lockstep, one AES call per level.
pub(crate) fn eval<W: Word, const P: usize, const K: usize>(
    party: usize,
    root: &Seed,
    key: &[u8],
    bits: u32,
    xs: [u64; K],
) -> [[W; P]; K] {
    let level = SEED_BYTES + 1 + P * W::BYTES;
    let mut s = [*root; K];
    let mut t = [party as u8 & 1; K];
    let mut v = [[W::ZERO; P]; K];
    for (k, i) in (0..bits).rev().enumerate() {
        let cw = &key[k * level..(k + 1) * level];
        let s_cw: Seed = cw[..SEED_BYTES].try_into().unwrap_or_default();
        let v_cw: [W; P] = std::array::from_fn(|j| W::read(&cw[SEED_BYTES + 1 + j * W::BYTES..]));
        let sides: [usize; K] = std::array::from_fn(|p| ((xs[p] >> i) & 1) as usize);
        let e = expand::<W, P, K>(std::array::from_fn(|p| (&s[p], sides[p])));
        for p in 0..K {
            let (mut seed, mut tk, mut step) = e[p];
            if t[p] == 1 {
                seed = xor_seed(&seed, &s_cw);
                tk ^= (cw[SEED_BYTES] >> sides[p]) & 1;
                step = add(step, v_cw);
            }
            v[p] = add(v[p], neg_if(step, party == 1));
            s[p] = seed;
            t[p] = tk;
        }
    }
    let at = bits as usize * level;
    let last: [W; P] = std::array::from_fn(|j| W::read(&key[at + j * W::BYTES..]));
    std::array::from_fn(|p| {
        let mut leaf = convert::<W, P>(&s[p]);
        if t[p] == 1 {
            leaf = add(leaf, last);
        }
        add(v[p], neg_if(leaf, party == 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::rand_core::{Rng, SeedableRng};
    use chacha20::ChaCha12Rng;

    fn seeds(rng: &mut ChaCha12Rng) -> [Seed; 2] {
        let mut s = [[0u8; 16]; 2];
        rng.fill_bytes(&mut s[0]);
        rng.fill_bytes(&mut s[1]);
        s
    }

    fn check<W: Word, const P: usize>(bits: u32, alpha: u64, beta: [W; P], rng: &mut ChaCha12Rng) {
        let roots = seeds(rng);
        let mut key = Vec::new();
        gen::<W, P>(bits, alpha, beta, roots, &mut key);
        assert_eq!(key.len(), key_bytes(bits, P, W::BYTES));
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let mut points: Vec<u64> = vec![0, mask, alpha & mask, (alpha.wrapping_sub(1)) & mask];
        points.push(alpha.wrapping_add(1) & mask);
        if bits <= 6 {
            points.extend(0..=mask);
        } else {
            points.extend((0..64).map(|_| rng.next_u64() & mask));
        }
        for x in points {
            let [a] = eval::<W, P, 1>(0, &roots[0], &key, bits, [x]);
            let [b, b2] = eval::<W, P, 2>(1, &roots[1], &key, bits, [x, x ^ 1]);
            let [a2] = eval::<W, P, 1>(0, &roots[0], &key, bits, [x ^ 1]);
            let want2 = if (x ^ 1) & mask < alpha {
                beta
            } else {
                [W::ZERO; P]
            };
            assert_eq!(add(a2, b2), want2, "lockstep, bits {bits}, x {}", x ^ 1);
            let want = if x < alpha { beta } else { [W::ZERO; P] };
            assert_eq!(add(a, b), want, "bits {bits}, alpha {alpha}, x {x}");
        }
    }

    #[test]
    fn shares_add_up_to_the_comparison_everywhere() {
        let mut rng = ChaCha12Rng::from_seed([7; 32]);
        for bits in [0u32, 1, 2, 3, 6] {
            for alpha in 0..(1u64 << bits) {
                check::<u32, 1>(bits, alpha, [1], &mut rng);
                check::<u64, 2>(bits, alpha, [1, 0xdead_beef_0000_1234], &mut rng);
            }
        }
        for bits in [17u32, 33, 63, 64] {
            for _ in 0..8 {
                let mask = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                let alpha = rng.next_u64() & mask;
                check::<u32, 2>(bits, alpha, [1, 77], &mut rng);
                check::<u128, 1>(bits, alpha, [u128::MAX - 5], &mut rng);
            }
        }
    }
}
