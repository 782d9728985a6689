//! The batched MAC check of `spdz2k` (Cramer–Damgård–Escudero–Scholl–Xing, CRYPTO 2018,
//! with the statistical parameter `s = 64`).
//!
//! Every opening is of a whole sharing `[x]` in Z_2^128 (the dealer's masks are uniform
//! there, so the opened value reveals nothing beyond the bits the computation reads), and
//! goes to the [`Ledger`] as `m_i(x) − α_i·x̃`: this party's MAC share less its key share
//! times the opened value, the one term of the check it needs (16 bytes per opened value).
//! A check, before anything is output:
//!
//! 1. every party reveals the coin seed it committed to at the previous check (or at set-up)
//!    and commits to the next one, and sends a hash of every value it saw opened since the
//!    last check (80 bytes to each peer). The seeds' XOR seeds the 64-bit coefficients
//!    `χ_j`; the hashes must agree (a party that sent different shares to different peers is
//!    caught here, whatever the secrets are);
//! 2. each party commits to `z_i = Σ χ_j·m_i(x_j) − α_i·Σ χ_j·x̃_j` (32 bytes), then
//! 3. opens it (32 bytes); the check passes when `Σ z_i = 0 mod 2^128`.
//!
//! An adversary that shifted opened values by errors `e_j`, some `e_j ≠ 0 mod 2^k`, passes
//! only by guessing `α·Σ χ_j e_j mod 2^128` after the coefficients are fixed, `α` being 64
//! random bits it never sees: probability at most `2^(−64 + log2 64 + 1) = 2^−57` per check
//! (SPDZ2k, Theorem 1, `k ≤ 64`, `s = 64`). The outcome depends only on the errors the
//! adversary introduced and on `α`, never on an honest party's secrets: every opened value
//! is a secret masked by fresh dealer randomness, so no check can serve as an equality
//! oracle (docs/protocols.md).

use super::auth::Auth;
use super::Spdz2k;
use crate::cost::Rounds;
use crate::segmented::Segmented;
use crate::semi2k::select::all_to_all;
use crate::stream::Stream;
use crate::word::Word;
use crate::{PartyId, ProtocolError};
use chacha20::rand_core::Rng;

type R<T> = Result<T, ProtocolError>;

/// The most opened values a ledger holds before the parties check them (64 MiB of terms
/// per party): they check as they take material for a call or an input once it holds
/// this many, and the counting dealer does the same at the same points, so that `qmpc
/// cost` counts these checks too. A check before every reveal stays. With 2^24 (and the
/// terms in one vector, doubling as it grew) the ledgers alone held up to 0.8 GB per
/// party: ShuffleNetV2-0.5 under `spdz2k` peaked at 3.1–3.9 GB in one process; now
/// 3 rounds per check more (NOTES.md, issue 21 session 15).
pub(super) const CHECK_EVERY: u64 = if cfg!(test) { 64 } else { 1 << 22 };

/// Bytes each party sends each peer in the three rounds of a check.
const ROUND_BYTES: [usize; 3] = [16 + 32 + 32, 32, 32];

/// The message pattern of one check among `parties` parties.
pub(super) fn pattern(parties: usize) -> Rounds {
    ROUND_BYTES
        .iter()
        .map(|&b| all_to_all(parties, b))
        .collect()
}

/// The openings since the last check.
pub(super) struct Ledger {
    /// `m_i(x_j) − α_i·x̃_j` of every opening `j`, in order (in segments: it never copies
    /// what it holds into a vector twice as long): `z_i` is their `χ`-weighted sum.
    terms: Segmented<u128>,
    /// Every value this party saw opened or broadcast, in order.
    transcript: blake3::Hasher,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger {
            terms: Segmented::default(),
            transcript: blake3::Hasher::new(),
        }
    }

    /// Record the opening of `shares` as `opened`, under this party's key share `alpha`.
    pub fn record(&mut self, shares: &[Auth], opened: &[u128], alpha: u128) {
        for (s, &x) in shares.iter().zip(opened) {
            self.terms.push(term(s, x, alpha));
        }
        let bytes: Vec<u8> = opened.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.transcript.update(&bytes);
    }

    /// Opened values since the last check.
    pub fn len(&self) -> u64 {
        self.terms.len() as u64
    }

    /// Every term, in the order of the openings.
    fn terms(&self) -> impl Iterator<Item = &u128> {
        self.terms.iter()
    }

    /// Record values one party sent every other (an input's masked value): only their
    /// agreement is checked.
    pub fn broadcast(&mut self, values: &[u64]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.transcript.update(&bytes);
    }
}

/// One opening's term: this party's MAC share less its key share times the value.
fn term(share: &Auth, opened: u128, alpha: u128) -> u128 {
    share.m.wrapping_sub(alpha.wrapping_mul(opened))
}

/// This party's coin seeds for the checks' coefficients: the one committed to, and each
/// peer's commitment.
pub(super) struct CoinChain {
    rng: Stream,
    mine: [u8; 16],
    commitments: Vec<[u8; 32]>,
}

fn commit_seed(seed: &[u8; 16]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("qmpc spdz2k check coin seed v1");
    h.update(seed);
    *h.finalize().as_bytes()
}

fn commit_z(z: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("qmpc spdz2k check value v1");
    h.update(z);
    *h.finalize().as_bytes()
}

impl CoinChain {
    /// A chain from this party's private randomness; [`CoinChain::commitment`] goes to
    /// every peer at set-up.
    pub fn new(seed: [u8; 32], parties: usize) -> CoinChain {
        let mut rng = Stream::new(seed, 0);
        let mut mine = [0u8; 16];
        rng.fill_bytes(&mut mine);
        CoinChain {
            rng,
            mine,
            commitments: vec![[0; 32]; parties],
        }
    }

    pub fn commitment(&self) -> [u8; 32] {
        commit_seed(&self.mine)
    }

    pub fn set_commitment(&mut self, party: PartyId, c: [u8; 32]) {
        self.commitments[party] = c;
    }

    fn fresh(&mut self) -> [u8; 16] {
        let mut s = [0u8; 16];
        self.rng.fill_bytes(&mut s);
        s
    }
}

fn cheat(check: &'static str, what: String) -> ProtocolError {
    ProtocolError::Cheat { check, what }
}

impl<W: Word> Spdz2k<W> {
    /// Check every opening since the last check (3 rounds), then forget them.
    pub(super) fn check(&mut self) -> R<()> {
        let me = self.me;

        // Round 1: seeds, next commitments, transcripts.
        let next = self.coins.fresh();
        let transcript = *self.ledger.transcript.finalize().as_bytes();
        let mut msg = self.coins.mine.to_vec();
        msg.extend(commit_seed(&next));
        msg.extend(transcript);
        let got = self.all_round(msg)?;
        let mut seed = self.coins.mine;
        for (p, m) in self.peers().into_iter().zip(&got) {
            let theirs: [u8; 16] = m[..16].try_into().unwrap_or_default();
            if commit_seed(&theirs) != self.coins.commitments[p] {
                return Err(cheat(
                    "MAC check's coin toss",
                    format!("party {p} opened a seed it had not committed to"),
                ));
            }
            if m[48..80] != transcript {
                return Err(cheat(
                    "consistency check of opened values",
                    format!("party {p} and party {me} saw different values opened"),
                ));
            }
            self.coins.commitments[p] = m[16..48].try_into().unwrap_or_default();
            for (s, t) in seed.iter_mut().zip(theirs) {
                *s ^= t;
            }
        }
        self.coins.mine = next;

        // Rounds 2 and 3: commit to z_i, then open it.
        let mut rng = Stream::new(*blake3::hash(&seed).as_bytes(), 0);
        // χ_j drawn as the fold goes: no second vector as long as the ledger.
        let z = self.ledger.terms().fold(0u128, |z, t| {
            z.wrapping_add(t.wrapping_mul(u128::from(rng.next_u64())))
        });
        let mut opening = z.to_le_bytes().to_vec();
        opening.extend(self.coins.fresh());
        let commitments = self.all_round(commit_z(&opening).to_vec())?;
        let openings = self.all_round(opening)?;
        let mut sum = z;
        for ((p, c), o) in self.peers().into_iter().zip(&commitments).zip(&openings) {
            if commit_z(o) != c[..] {
                return Err(cheat(
                    "MAC check",
                    format!("party {p} opened a check value it had not committed to"),
                ));
            }
            sum = sum.wrapping_add(u128::from_le_bytes(o[..16].try_into().unwrap_or_default()));
        }
        if sum != 0 {
            return Err(cheat(
                "MAC check",
                "an opened value does not match its MAC".into(),
            ));
        }
        self.ledger = Ledger::new();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The terms come back in the order of the openings, across segments and records.
    #[test]
    fn a_ledger_keeps_every_term_in_order_across_segments() {
        let alpha = 0x1234_5678_9abc_def0_u128;
        let mut ledger = Ledger::new();
        let mut want = Vec::new();
        for (record, n) in [5usize, 13, 1, 8, 0, 21].into_iter().enumerate() {
            let shares: Vec<Auth> = (0..n)
                .map(|i| Auth {
                    x: 0,
                    m: (record * 1000 + i) as u128 * 0x9e37_79b9_7f4a_7c15,
                })
                .collect();
            let opened: Vec<u128> = (0..n).map(|i| (record * 31 + i) as u128).collect();
            want.extend(shares.iter().zip(&opened).map(|(s, &x)| term(s, x, alpha)));
            ledger.record(&shares, &opened, alpha);
        }
        assert_eq!(ledger.len(), want.len() as u64);
        assert_eq!(ledger.terms().copied().collect::<Vec<_>>(), want);
    }
}
