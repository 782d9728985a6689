//! The proof of every AND word a party sent since the last check ([`super::boolean`]):
//! each party proves its words to the other two and checks theirs, all three proofs in
//! lockstep, before any output.
//!
//! For prover `p`, `V1 = p − 1` knows `x_p, y_p`, the word it received and `F(k_p)`;
//! `V2 = p + 1` knows `x_{p+1}, y_{p+1}` and `F(k_{p+1})`. With coefficients `θ` (one per
//! lane, GF(2^64), from the key the verifiers share and sent to the prover only once the
//! words are fixed) the words are right iff
//! `⟨θ∘x_p, y_{p+1}⟩ + ⟨θ∘y_p, x_{p+1}⟩ = Σ θ·(received + F(k_p) + x_p y_p) + Σ θ·F(k_{p+1})`
//! (except with probability `2^−64` over `θ`): an inner product between a vector `V1`
//! knows and one `V2` knows, with the right side in shares, which [`crate::dzkp::ip`]
//! proves. Its pads are from `k_p` (prover and `V1`), its challenges from `k_{p+2}` (the
//! verifiers), the final masks from the prover's own seed.

use super::boolean::AndLedger;
use super::MalRep3;
use crate::dzkp::gf64::Gf64;
use crate::dzkp::ip::{self, Prover, Source, Verifier};
use crate::net::NetError;
use crate::stream::Stream;
use crate::word::Word;
use crate::{PartyId, ProtocolError};
use chacha20::rand_core::Rng;
use rayon::prelude::*;

type R<T> = Result<T, ProtocolError>;

/// The proof's compression factor at short lengths.
const K: usize = 8;

/// Stream numbers of a proof's randomness, apart from every draw of the protocol itself.
const STREAMS: u64 = 0xD2_0000_0000;
fn stream_id(count: u64, purpose: u64) -> u64 {
    STREAMS + 4 * count + purpose
}
const PADS: u64 = 0;
const CHALLENGES: u64 = 1;
const THETA: u64 = 2;

fn cheat(party: PartyId, what: &str) -> ProtocolError {
    ProtocolError::Cheat {
        check: "AND proof",
        what: format!("party {party} {what}"),
    }
}

fn encode(v: &[Gf64]) -> Vec<u8> {
    v.iter().flat_map(|g| g.0.to_le_bytes()).collect()
}

fn decode(party: PartyId, b: &[u8]) -> R<Vec<Gf64>> {
    if !b.len().is_multiple_of(8) {
        return Err(ProtocolError::Net(NetError::Garbage {
            party,
            what: format!("a proof message of {} bytes", b.len()),
        }));
    }
    Ok(b.chunks_exact(8)
        .map(|c| Gf64(u64::from_le_bytes(c.try_into().unwrap_or_default())))
        .collect())
}

/// One coefficient per lane of `n` words.
fn thetas(seed: [u8; 32], n: usize) -> Vec<Gf64> {
    let mut s = Stream::new(seed, 0);
    (0..64 * n).map(|_| Gf64(s.next_u64())).collect()
}

/// `θ∘bits` lane by lane: `θ` where the lane's bit is set.
fn weighted(theta: &[Gf64], words: &[u64]) -> Vec<Gf64> {
    words
        .par_iter()
        .enumerate()
        .flat_map_iter(|(j, &w)| {
            (0..64).map(move |l| {
                if w >> l & 1 == 1 {
                    theta[64 * j + l]
                } else {
                    Gf64::ZERO
                }
            })
        })
        .collect()
}

/// Every lane of `words` as 0 or 1.
fn lanes(words: &[u64]) -> Vec<Gf64> {
    words
        .par_iter()
        .flat_map_iter(|&w| (0..64).map(move |l| Gf64(w >> l & 1)))
        .collect()
}

/// `Σ θ·word`, lane by lane.
fn weighted_sum(theta: &[Gf64], words: &[u64]) -> Gf64 {
    weighted(theta, words)
        .into_par_iter()
        .reduce(|| Gf64::ZERO, |a, b| a + b)
}

fn cat(mut a: Vec<Gf64>, b: Vec<Gf64>) -> Vec<Gf64> {
    a.extend(b);
    a
}

impl<W: Word> MalRep3<W> {
    fn proof_stream(&self, j: usize, count: u64, purpose: u64) -> Stream {
        let seed = self.rep.key_seed(j).unwrap_or_default();
        Stream::new(seed, stream_id(count, purpose))
    }

    /// One round with both neighbours: `to_prev`, `to_next` out, one message from each in.
    fn swap(
        &mut self,
        to_prev: Vec<u8>,
        to_next: Vec<u8>,
        from_prev: usize,
        from_next: usize,
    ) -> R<(Vec<u8>, Vec<u8>)> {
        let (prev, next) = (self.rep.prev(), self.rep.next());
        let got = self.rep.net.exchange_sized(
            vec![(prev, to_prev), (next, to_next)],
            &[(prev, from_prev), (next, from_next)],
        )?;
        let (mut p, mut n) = (Vec::new(), Vec::new());
        for (from, bytes) in got {
            if from == prev {
                p = bytes;
            } else {
                n = bytes;
            }
        }
        Ok((p, n))
    }

    /// Prove this party's AND words and verify its neighbours' (nothing when none).
    pub(super) fn prove_ands(&mut self) -> R<()> {
        let n = self.ands.len();
        if n == 0 {
            return Ok(());
        }
        let l: AndLedger = std::mem::take(&mut self.ands);
        let count = self.proofs;
        self.proofs += 1;
        let (me, prev, next) = (self.rep.me, self.rep.prev(), self.rep.next());

        // Coefficients: this party draws those of `next`'s proof from `k_me` and of
        // `prev`'s from `k_{me+1}` (the keys each pair of verifiers shares), and sends each
        // prover its seed; its own comes from both neighbours, who must agree.
        let seed_of = |j: usize| {
            let mut s = self.proof_stream(j, count, THETA);
            let mut b = [0u8; 32];
            s.fill_bytes(&mut b);
            b
        };
        let (for_next, for_prev) = (seed_of(me), seed_of(me + 1));
        let (a, b) = self.swap(for_prev.to_vec(), for_next.to_vec(), 32, 32)?;
        if a != b {
            return Err(cheat(
                prev,
                "and its neighbour sent different proof coefficients",
            ));
        }
        let mine: [u8; 32] = a.try_into().unwrap_or_default();

        let t_own = thetas(mine, n);
        let x = cat(weighted(&t_own, &l.xa), weighted(&t_own, &l.ya));
        let y = cat(lanes(&l.yb), lanes(&l.xb));
        let own_seed = self.own_seed;
        let mut prover = Prover::new(
            x,
            y,
            K,
            self.proof_stream(me, count, PADS),
            Stream::new(own_seed, count),
        );

        // V1 of `next`'s proof: knows `x_next = xb`, `y_next = yb`, the word from `next`.
        let t_next = thetas(for_next, n);
        let a_words: Vec<u64> = (0..n)
            .map(|j| l.received[j] ^ l.f_hi[j] ^ (l.xb[j] & l.yb[j]))
            .collect();
        let mut v1 = Verifier::new(
            Source::Pads(Box::new(self.proof_stream(me + 1, count, PADS))),
            cat(weighted(&t_next, &l.xb), weighted(&t_next, &l.yb)),
            Vec::new(),
            weighted_sum(&t_next, &a_words),
            K,
        );
        // V2 of `prev`'s proof: knows `x_{prev+1} = xa`, `y_{prev+1} = ya`, `F(k_me)`.
        let t_prev = thetas(for_prev, n);
        let mut v2 = Verifier::new(
            Source::Messages,
            Vec::new(),
            cat(lanes(&l.ya), lanes(&l.xa)),
            weighted_sum(&t_prev, &l.f_lo),
            K,
        );
        let mut ch_next = self.proof_stream(me, count, CHALLENGES);
        let mut ch_prev = self.proof_stream(me + 1, count, CHALLENGES);

        while !v2.is_done() {
            // The prover's message goes to its V2 (`next`); this party's V2 role gets `prev`'s.
            let msg = prover
                .message()
                .map_err(|e| ProtocolError::Invalid(e.to_string()))?;
            let len = msg.len();
            let (from_prev, _) = self.swap(Vec::new(), encode(&msg), 8 * len, 0)?;
            let from_prev = decode(prev, &from_prev)?;
            v2.receive(Some(&from_prev))
                .map_err(|e| cheat(prev, &format!("sent a malformed proof: {e}")))?;
            v1.receive(None)
                .map_err(|e| ProtocolError::Invalid(e.to_string()))?;
            // Challenges: to `next` for its proof, to `prev` for its; both of this
            // party's verifiers send it theirs.
            let (r_next, r_prev): (Gf64, Gf64) = (
                ip::challenge(&mut ch_next, K),
                ip::challenge(&mut ch_prev, K),
            );
            let (a, b) = self.swap(
                r_prev.0.to_le_bytes().to_vec(),
                r_next.0.to_le_bytes().to_vec(),
                8,
                8,
            )?;
            if a != b {
                return Err(cheat(
                    prev,
                    "and its neighbour sent different proof challenges",
                ));
            }
            let r = Gf64(u64::from_le_bytes(a.try_into().unwrap_or_default()));
            prover.fold(r);
            v1.fold(r_next);
            v2.fold(r_prev);
        }
        // The verifiers of each proof open their shares to each other: this party's V1
        // shares (of `next`'s proof) to `prev`, its V2 shares (of `prev`'s) to `next`.
        let (s1, s2) = (v1.shares(), v2.shares());
        let (from_prev, from_next) =
            self.swap(encode(&s1), encode(&s2), 8 * s2.len(), 8 * s1.len())?;
        // `prev` is V2 of `next`'s proof; `next` is V1 of `prev`'s.
        if !ip::accepts(&s1, &decode(prev, &from_prev)?) {
            return Err(cheat(next, "sent AND words that do not verify"));
        }
        if !ip::accepts(&decode(next, &from_next)?, &s2) {
            return Err(cheat(prev, "sent AND words that do not verify"));
        }
        Ok(())
    }
}
