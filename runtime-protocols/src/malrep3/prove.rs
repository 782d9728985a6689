//! The proofs of every message a party computed alone since the last check: its AND words
//! ([`super::boolean`]) and, as the third party of a group, the material it dealt. Each
//! party proves its own to the other two and checks theirs, the three proofs in lockstep,
//! before any output.
//!
//! A relation of prover `p` is `Σ_t u_t·w_t = z` where `V1 = p − 1` knows every `u_t` and a
//! share of `z`, and `V2 = p + 1` every `w_t` and the other share. With coefficients `θ`
//! (one per relation, from the key the verifiers share, sent to the prover only once its
//! messages are fixed), all of them hold iff `⟨θ∘u, w⟩ = Σ θ·z` (except with probability
//! one over the field's size), an inner product [`crate::dzkp::ip`] proves: its pads are
//! from `k_p` (prover and `V1`), its challenges from `k_{p+2}` (the verifiers), the final
//! masks from the prover's own seed.
//!
//! Two fields: GF(2^64) for bit relations (64 per word, XOR shares are additive there) and
//! F_p for integer relations of dealt values ([`Entry`]).
//!
//! For an AND word of `p`: `V1` knows `x_p, y_p`, the word it received and `F(k_p)`; `V2`
//! knows `x_{p+1}, y_{p+1}` and `F(k_{p+1})`; the word is right iff
//! `x_p·y_{p+1} + y_p·x_{p+1} = (received + F(k_p) + x_p y_p) + F(k_{p+1})`.

use super::MalRep3;
use crate::dzkp::field::ProofField;
use crate::dzkp::gf64::Gf64;
use crate::dzkp::ip::{self, Prover, Source, Verifier};
use crate::dzkp::packed;
use crate::field::Fp;
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
        check: "proof check",
        what: format!("party {party} {what}"),
    }
}

/// What a relation's entries are: words of 64 bit relations, or F_p elements.
pub(super) trait Entry: Copy + Default + Send + Sync + 'static {
    type F: ProofField;
    /// Relations per entry.
    const LANES: usize;
    /// `θ_rel · e` for each relation of the entry `e` (relations `first..`).
    fn weighted(theta: &[Self::F], first: usize, e: &[Self]) -> Vec<Self::F>;
    /// Each relation's value of `e` in the field.
    fn lift(e: &[Self]) -> Vec<Self::F>;
}

impl Entry for u64 {
    type F = Gf64;
    const LANES: usize = 64;
    fn weighted(theta: &[Gf64], first: usize, e: &[u64]) -> Vec<Gf64> {
        e.par_iter()
            .enumerate()
            .flat_map_iter(|(j, &w)| {
                let base = 64 * (first + j);
                (0..64).map(move |l| {
                    if w >> l & 1 == 1 {
                        theta[base + l]
                    } else {
                        Gf64::ZERO
                    }
                })
            })
            .collect()
    }
    fn lift(e: &[u64]) -> Vec<Gf64> {
        e.par_iter()
            .flat_map_iter(|&w| (0..64).map(move |l| Gf64(w >> l & 1)))
            .collect()
    }
}

impl Entry for Fp {
    type F = Fp;
    const LANES: usize = 1;
    fn weighted(theta: &[Fp], first: usize, e: &[Fp]) -> Vec<Fp> {
        e.par_iter()
            .enumerate()
            .map(|(j, &v)| theta[first + j] * v)
            .collect()
    }
    fn lift(e: &[Fp]) -> Vec<Fp> {
        e.to_vec()
    }
}

/// One role's part of the relations of one proof: terms of `u` (prover, `V1`), of `w`
/// (prover, `V2`), each a run of entries from relation `first` on, and `z` shares.
#[derive(Default)]
pub(super) struct Side<T> {
    /// Entries so far (relations = `LANES` times as many).
    pub n: usize,
    u: Vec<(usize, Vec<T>)>,
    w: Vec<(usize, Vec<T>)>,
    z: Vec<T>,
    /// A twin's relations, by size only: `u` and `w` entries.
    phantom: (usize, usize),
    /// A twin's side: entries are counted, not kept.
    count_only: bool,
}

/// A side's size: relations, `u` entries, `w` entries.
pub(super) type Size = (usize, usize, usize);

impl<T: Entry> Side<T> {
    /// Reserve `n` entries; returns the first.
    pub fn begin(&mut self, n: usize) -> usize {
        self.n += n;
        self.n - n
    }
    pub fn u(&mut self, first: usize, v: Vec<T>) {
        if self.count_only {
            self.phantom.0 += v.len();
        } else {
            self.u.push((first, v));
        }
    }
    pub fn w(&mut self, first: usize, v: Vec<T>) {
        if self.count_only {
            self.phantom.1 += v.len();
        } else {
            self.w.push((first, v));
        }
    }
    /// This verifier's share of the right sides, entry by entry, in relation order.
    pub fn z(&mut self, v: Vec<T>) {
        if !self.count_only {
            self.z.extend(v);
        }
    }

    fn x(&self, theta: &[T::F]) -> Vec<T::F> {
        self.u
            .iter()
            .flat_map(|(first, v)| T::weighted(theta, *first, v))
            .collect()
    }
    fn y(&self) -> Vec<T::F> {
        self.w.iter().flat_map(|(_, v)| T::lift(v)).collect()
    }
    /// Lengths of this side's `u` and `w` vectors in the field.
    fn lens(&self) -> (usize, usize) {
        let len = |v: &[(usize, Vec<T>)]| -> usize { v.iter().map(|(_, e)| e.len()).sum() };
        (
            (len(&self.u) + self.phantom.0) * T::LANES,
            (len(&self.w) + self.phantom.1) * T::LANES,
        )
    }

    /// Relations and entries, by size.
    pub fn size(&self) -> Size {
        let len = |v: &[(usize, Vec<T>)]| -> usize { v.iter().map(|(_, e)| e.len()).sum() };
        (
            self.n,
            len(&self.u) + self.phantom.0,
            len(&self.w) + self.phantom.1,
        )
    }

    /// A twin's side: `size`'s relations of earlier calls, and only the sizes of new ones.
    pub fn phantom(size: Size) -> Side<T> {
        Side {
            n: size.0,
            u: Vec::new(),
            w: Vec::new(),
            z: Vec::new(),
            phantom: (size.1, size.2),
            count_only: true,
        }
    }

    fn z_share(&self, theta: &[T::F]) -> T::F {
        T::weighted(theta, 0, &self.z)
            .into_iter()
            .fold(T::F::ZERO, |a, b| a + b)
    }
}

/// A party's relations over one field in its three roles: its own (prover), `next`'s
/// (as `V1`) and `prev`'s (as `V2`).
#[derive(Default)]
pub(super) struct Relations<T> {
    pub own: Side<T>,
    pub next: Side<T>,
    pub prev: Side<T>,
}

impl<T: Entry> Relations<T> {
    pub fn size(&self) -> [Size; 3] {
        [self.own.size(), self.next.size(), self.prev.size()]
    }
    /// Relations in all three roles: the same count at every party.
    pub fn relations(&self) -> usize {
        self.own.n + self.next.n + self.prev.n
    }
    pub fn phantom(s: [Size; 3]) -> Relations<T> {
        Relations {
            own: Side::phantom(s[0]),
            next: Side::phantom(s[1]),
            prev: Side::phantom(s[2]),
        }
    }
}

fn encode<F: ProofField>(v: &[F]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * F::BYTES);
    for e in v {
        e.write(&mut out);
    }
    out
}

fn decode<F: ProofField>(party: PartyId, b: &[u8]) -> R<Vec<F>> {
    if !b.len().is_multiple_of(F::BYTES) {
        return Err(ProtocolError::Net(NetError::Garbage {
            party,
            what: format!("a proof message of {} bytes", b.len()),
        }));
    }
    Ok(b.chunks_exact(F::BYTES).map(F::read).collect())
}

/// One coefficient per relation.
fn thetas<F: ProofField>(seed: [u8; 32], n: usize) -> Vec<F> {
    let mut s = Stream::new(seed, 0);
    (0..n).map(|_| F::random(&mut s)).collect()
}

impl<W: Word> MalRep3<W> {
    fn proof_stream(&self, j: usize, count: u64, purpose: u64) -> Stream {
        let seed = self.rep.key_seed(j).unwrap_or_default();
        Stream::new(seed, stream_id(count, purpose))
    }

    /// One round with both neighbours: `to_prev`, `to_next` out, one message from each in.
    pub(super) fn swap(
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

    /// A twin's proof: the same messages, of zeros, without the arithmetic. `packed`:
    /// the lane level of bit words first (one message of [`packed::MESSAGE`] and a
    /// challenge), after which each word is 8 elements.
    fn prove_twin<T: Entry>(&mut self, rel: &Relations<T>) -> R<()> {
        let b = T::F::BYTES;
        self.swap(vec![0; 32], vec![0; 32], 32, 32)?;
        let packed = T::LANES == 64;
        let scale = |words: usize| if packed { 8 * words / 64 } else { words };
        if packed {
            let m = packed::MESSAGE;
            self.swap(Vec::new(), vec![0; b * m], b * m, 0)?;
            self.swap(vec![0; b], vec![0; b], b, b)?;
        }
        let own = {
            let (x, y) = rel.own.lens();
            ip::message_lengths(scale(x.max(y)), K)
        };
        let of_prev = ip::message_lengths(scale(rel.prev.lens().1), K);
        let of_next = ip::message_lengths(scale(rel.next.lens().0), K);
        let rounds = own.len().max(of_prev.len()).max(of_next.len());
        for i in 0..rounds {
            let out = own.get(i).copied().unwrap_or(0);
            let due = of_prev.get(i).copied().unwrap_or(0);
            self.swap(Vec::new(), vec![0; b * out], b * due, 0)?;
            self.swap(vec![0; b], vec![0; b], b, b)?;
        }
        let extra = usize::from(packed);
        let (s1, s2) = (of_next.len() + 3 + extra, of_prev.len() + 3 + extra);
        self.swap(vec![0; b * s1], vec![0; b * s2], b * s1, b * s2)?;
        Ok(())
    }

    /// The coefficient seeds: this party draws those of `next`'s proof from `k_me` and of
    /// `prev`'s from `k_{me+1}` (the keys each pair of verifiers shares) and sends each
    /// prover its seed; its own comes from both neighbours, who must agree.
    fn coefficient_seeds(&mut self, count: u64) -> R<([u8; 32], [u8; 32], [u8; 32])> {
        let (me, prev) = (self.rep.me, self.rep.prev());
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
        Ok((a.try_into().unwrap_or_default(), for_next, for_prev))
    }

    /// Prove this party's relations and verify its neighbours' (nothing when there are
    /// none in any role; the parties agree on that, as every count follows the program).
    pub(super) fn prove<T: Entry>(&mut self, rel: Relations<T>) -> R<()> {
        if rel.own.n == 0 && rel.next.n == 0 && rel.prev.n == 0 {
            return Ok(());
        }
        let count = self.proofs;
        self.proofs += 1;
        if self.twin {
            return self.prove_twin(&rel);
        }
        let me = self.rep.me;
        let (mine, for_next, for_prev) = self.coefficient_seeds(count)?;
        let lanes = T::LANES;
        let t_own: Vec<T::F> = thetas(mine, lanes * rel.own.n);
        let prover = Prover::new(
            rel.own.x(&t_own),
            rel.own.y(),
            K,
            self.proof_stream(me, count, PADS),
            Stream::new(self.own_seed, count),
        );
        let t_next: Vec<T::F> = thetas(for_next, lanes * rel.next.n);
        let v1 = Verifier::new(
            Source::Pads(Box::new(self.proof_stream(me + 1, count, PADS))),
            rel.next.x(&t_next),
            Vec::new(),
            rel.next.z_share(&t_next),
            K,
        );
        let t_prev: Vec<T::F> = thetas(for_prev, lanes * rel.prev.n);
        let v2 = Verifier::new(
            Source::Messages,
            Vec::new(),
            rel.prev.y(),
            rel.prev.z_share(&t_prev),
            K,
        );
        drop(rel);
        let ch = (
            self.proof_stream(me, count, CHALLENGES),
            self.proof_stream(me + 1, count, CHALLENGES),
        );
        self.run_proofs(ch, prover, v1, v2, Vec::new(), Vec::new())
    }

    /// [`MalRep3::prove`] for bit words, through the lane level of [`packed`]: one
    /// coefficient per word, `h` over each byte's lanes, then the inner-product proof on
    /// 8 elements per word.
    pub(super) fn prove_bits(&mut self, rel: Relations<u64>) -> R<()> {
        if rel.own.n == 0 && rel.next.n == 0 && rel.prev.n == 0 {
            return Ok(());
        }
        let count = self.proofs;
        self.proofs += 1;
        if self.twin {
            return self.prove_twin(&rel);
        }
        let (me, prev) = (self.rep.me, self.rep.prev());
        let (mine, for_next, for_prev) = self.coefficient_seeds(count)?;
        let m = packed::MESSAGE;
        // Each side's entries (terms one after another) with their relation's coefficient.
        // One coefficient per relation word, drawn once per proof and role.
        let (th_own, th_next, th_prev): (Vec<Gf64>, Vec<Gf64>, Vec<Gf64>) = (
            thetas(mine, rel.own.n),
            thetas(for_next, rel.next.n),
            thetas(for_prev, rel.prev.n),
        );
        let entries = |side: &Side<u64>, u: bool, theta: &[Gf64]| -> (Vec<u64>, Vec<Gf64>) {
            let segs = if u { &side.u } else { &side.w };
            let words = segs.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            let coef = segs
                .iter()
                .flat_map(|(f, v)| (0..v.len()).map(move |i| f + i))
                .map(|r| theta[r])
                .collect();
            (words, coef)
        };
        let word_z = |side: &Side<u64>, theta: &[Gf64]| -> Gf64 {
            side.z
                .iter()
                .zip(theta)
                .fold(Gf64::ZERO, |a, (&z, &t)| a + t * Gf64(z))
        };
        let (own_u, own_t) = entries(&rel.own, true, &th_own);
        let (own_w, _) = entries(&rel.own, false, &th_own);
        let (next_u, next_t) = entries(&rel.next, true, &th_next);
        let (prev_w, _) = entries(&rel.prev, false, &th_prev);
        let (z1, z2) = (word_z(&rel.next, &th_next), word_z(&rel.prev, &th_prev));
        drop(rel);

        // The lane level: `h` to `next` (`V1`'s shares are pads), `prev`'s `h` in.
        let h = packed::prover_h(&own_u, &own_w, &own_t);
        let mut pad = self.proof_stream(me, count, PADS);
        let mut pad1 = self.proof_stream(me + 1, count, PADS);
        let pads: Vec<Gf64> = crate::dzkp::field::random(&mut pad, m);
        let h1: Vec<Gf64> = crate::dzkp::field::random(&mut pad1, m);
        let msg: Vec<Gf64> = h.iter().zip(&pads).map(|(&v, &p)| v - p).collect();
        let (from_prev, _) = self.swap(Vec::new(), encode(&msg), 8 * m, 0)?;
        let h2: Vec<Gf64> = decode(prev, &from_prev)?;
        if h2.len() != m {
            return Err(cheat(prev, "sent a malformed proof"));
        }
        let (c1, c2) = (packed::lane_sum(&h1) - z1, packed::lane_sum(&h2) - z2);
        let mut ch_next = self.proof_stream(me, count, CHALLENGES);
        let mut ch_prev = self.proof_stream(me + 1, count, CHALLENGES);
        let (r_next, r_prev): (Gf64, Gf64) = (
            ip::challenge(&mut ch_next, packed::MESSAGE),
            ip::challenge(&mut ch_prev, packed::MESSAGE),
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
        let rho = Gf64::read(&a);
        let prover = Prover::new(
            packed::fold_u(&own_u, &own_t, rho),
            packed::fold_w(&own_w, rho),
            K,
            pad,
            Stream::new(self.own_seed, count),
        );
        let v1 = Verifier::new(
            Source::Pads(Box::new(pad1)),
            packed::fold_u(&next_u, &next_t, r_next),
            Vec::new(),
            packed::h_at(&h1, r_next),
            K,
        );
        let v2 = Verifier::new(
            Source::Messages,
            Vec::new(),
            packed::fold_w(&prev_w, r_prev),
            packed::h_at(&h2, r_prev),
            K,
        );
        self.run_proofs((ch_next, ch_prev), prover, v1, v2, vec![c1], vec![c2])
    }

    /// The inner-product proofs' rounds, three in lockstep, and their verdicts; `pre1` and
    /// `pre2` are this party's shares of further checks (of `next`'s and `prev`'s proofs)
    /// that must open to zero with them.
    fn run_proofs<F: ProofField>(
        &mut self,
        (mut ch_next, mut ch_prev): (Stream, Stream),
        mut prover: Prover<F>,
        mut v1: Verifier<F>,
        mut v2: Verifier<F>,
        pre1: Vec<F>,
        pre2: Vec<F>,
    ) -> R<()> {
        let (prev, next) = (self.rep.prev(), self.rep.next());
        // Every party knows all three lengths, so all take part in the same rounds.
        let rounds = ip::levels(prover.vector_len(), K)
            .max(ip::levels(v1.vector_len(), K))
            .max(ip::levels(v2.vector_len(), K));
        for _ in 0..rounds {
            // The prover's message goes to its V2 (`next`); this party's V2 role gets `prev`'s.
            let msg = if prover.is_done() {
                Vec::new()
            } else {
                prover
                    .message()
                    .map_err(|e| ProtocolError::Invalid(e.to_string()))?
            };
            let due = if v2.is_done() { 0 } else { v2.due() };
            let (from_prev, _) = self.swap(Vec::new(), encode(&msg), F::BYTES * due, 0)?;
            if !v2.is_done() {
                let from_prev: Vec<F> = decode(prev, &from_prev)?;
                v2.receive(Some(&from_prev))
                    .map_err(|e| cheat(prev, &format!("sent a malformed proof: {e}")))?;
            }
            if !v1.is_done() {
                v1.receive(None)
                    .map_err(|e| ProtocolError::Invalid(e.to_string()))?;
            }
            // Challenges: to `next` for its proof, to `prev` for its; both of this
            // party's verifiers send it theirs.
            let r_next: F = ip::challenge(&mut ch_next, K);
            let r_prev: F = ip::challenge(&mut ch_prev, K);
            let (mut to_prev, mut to_next) = (Vec::new(), Vec::new());
            r_prev.write(&mut to_prev);
            r_next.write(&mut to_next);
            let (a, b) = self.swap(to_prev, to_next, F::BYTES, F::BYTES)?;
            if a != b {
                return Err(cheat(
                    prev,
                    "and its neighbour sent different proof challenges",
                ));
            }
            prover.fold(F::read(&a));
            if !v1.is_done() {
                v1.fold(r_next);
            }
            if !v2.is_done() {
                v2.fold(r_prev);
            }
        }
        // The verifiers of each proof open their shares to each other: this party's V1
        // shares (of `next`'s proof) to `prev`, its V2 shares (of `prev`'s) to `next`;
        // further checks first, which [`ip::accepts`] requires to be zero like the rest.
        let s1: Vec<F> = pre1.into_iter().chain(v1.shares()).collect();
        let s2: Vec<F> = pre2.into_iter().chain(v2.shares()).collect();
        let (from_prev, from_next) = self.swap(
            encode(&s1),
            encode(&s2),
            F::BYTES * s1.len(),
            F::BYTES * s2.len(),
        )?;
        // `prev` is V2 of `next`'s proof; `next` is V1 of `prev`'s.
        if !ip::accepts(&s1, &decode(prev, &from_prev)?) {
            return Err(cheat(next, "sent messages that do not verify"));
        }
        if !ip::accepts(&decode(next, &from_next)?, &s2) {
            return Err(cheat(prev, "sent messages that do not verify"));
        }
        Ok(())
    }
}
