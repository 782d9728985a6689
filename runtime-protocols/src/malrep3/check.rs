//! The MAC check of every authenticated value a round produced (Abspoel, Dalskov, Escudero,
//! Nof, "An efficient passive-to-active compiler for honest-majority MPC over rings",
//! ACNS 2021, eprint 2019/1298).
//!
//! A product, a matrix product or a resharing can be wrong only by errors `(δ, δ')` the
//! cheating party adds to the value and MAC halves, without knowing `α`. Every such pair
//! `(z, m)` goes to the [`Ledger`]. The check draws a fresh shared seed (components from
//! the pairwise keys, opened only now, so no product can depend on it), derives 64-bit
//! coefficients `θ_j`, computes `u = Σ θ_j z_j`, `w = Σ θ_j m_j` locally, `v = w − α·u`
//! with one product, and opens `v`, which is zero unless a party deviated. If some
//! `δ_j ≠ 0 mod 2^k`, the check passes with probability at most `2^−s + log2(s + 1)`
//! (SPDZ2k's lemma, `s = 128 − k ≥ 64`): `2^−57` per check. Three rounds.
//!
//! Whether `v` is zero depends only on the errors the adversary chose and on `α` and `θ`,
//! never on a secret value, so an abort tells it nothing about the data. `v` itself
//! reveals only `α·Σθδ − Σθδ'`, after which every honest party stops.

use super::MalRep3;
use crate::cheat;
use crate::rep3::{Rep, Rep3};
use crate::segmented::Segmented;
use crate::stream::Stream;
use crate::word::Word;
use crate::ProtocolError;
use chacha20::rand_core::Rng;

type R<T> = Result<T, ProtocolError>;

/// How many ledger pairs and proof relations wait for a check at most. Both are kept
/// until the check (64 bytes a pair, 8–16 a relation entry, a relation word of bits 64
/// relations): unbounded, a ResNet-18 needed more than 14 GB per run before its reveal.
/// The parties check when the count reaches it, as they next produce pairs or relations
/// ([`MalRep3::check_if_full`]); the unit tests check at 64, inside their calls. At 2^22
/// the ledgers and the proofs' vectors of a check held 1.4 GB of ResNet-18's 3.4 GB live
/// peak (three parties); at 2^21 each check costs its rounds twice as often (ResNet-18
/// 3,850 → 5,290 rounds with selections in pieces of 2^16) and the run peaks at 3.6 GB
/// RSS instead of 4.9 (NOTES.md, issue 21 session 13).
pub(super) const CHECK_EVERY: usize = if cfg!(test) { 64 } else { 1 << 21 };

/// The authenticated pairs produced since the last check, in order (in segments: it never
/// copies what it holds into a vector twice as long).
pub(super) struct Ledger {
    pairs: Segmented<(Rep<u128>, Rep<u128>)>,
    len: usize,
    /// Whether the pairs are kept (a twin only counts them).
    keep: bool,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            pairs: Segmented::default(),
            len: 0,
            keep: true,
        }
    }
}

impl Ledger {
    /// A twin's ledger: `len` pairs of earlier calls, and only the count of new ones.
    pub fn counting(len: usize) -> Self {
        Ledger {
            len,
            keep: false,
            ..Ledger::default()
        }
    }

    pub fn push(&mut self, z: &[Rep<u128>], m: &[Rep<u128>]) {
        self.len += z.len();
        if self.keep {
            for (&z, &m) in z.iter().zip(m) {
                self.pairs.push((z, m));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// `(Σ θ_j z_j, Σ θ_j m_j)`, component-wise, `θ_j` drawn from `coins` as the fold goes (no
/// second vector as long as the ledger).
fn combine(
    coins: &mut Stream,
    pairs: &Segmented<(Rep<u128>, Rep<u128>)>,
) -> (Rep<u128>, Rep<u128>) {
    let add = |acc: Rep<u128>, v: Rep<u128>, t: u128| Rep {
        a: acc.a.wrapping_add(v.a.wrapping_mul(t)),
        b: acc.b.wrapping_add(v.b.wrapping_mul(t)),
    };
    pairs
        .iter()
        .fold((Rep::default(), Rep::default()), |(u, w), &(z, m)| {
            let t = u128::from(coins.next_u64());
            (add(u, z, t), add(w, m, t))
        })
}

impl<W: Word> MalRep3<W> {
    fn fresh_ledger(&self) -> Ledger {
        if self.twin {
            Ledger::counting(0)
        } else {
            Ledger::default()
        }
    }

    /// Pairs and relations since the last check; every party counts the same (its three
    /// roles' relations together), so all decide alike when to check.
    pub(super) fn unchecked(&self) -> usize {
        self.ledger.len() + self.bits.relations() + self.ints.relations()
    }

    /// [`MalRep3::check`] once [`CHECK_EVERY`] pairs and relations wait for it. Called
    /// where pairs or relations are about to be recorded, never between a relation's parts.
    pub(super) fn check_if_full(&mut self) -> R<()> {
        self.check_before(0)
    }

    /// [`MalRep3::check`] before a call that records about `coming` pairs and relations,
    /// where they would take the count to [`CHECK_EVERY`] or past it (and some wait): a
    /// large call's pairs then never wait on top of a full ledger (a lookup piece's 2^22
    /// one-hot words did, and the check inside it ran with the piece's vectors alive). The
    /// count follows the program, so every party decides alike.
    pub(super) fn check_before(&mut self, coming: usize) -> R<()> {
        let waiting = self.unchecked();
        if waiting > 0 && waiting + coming >= CHECK_EVERY {
            self.check()?;
        }
        Ok(())
    }

    /// Check every pair in the ledger (3 rounds; nothing when it is empty).
    pub(super) fn mac_check(&mut self) -> R<()> {
        let n = self.ledger.len();
        if n == 0 {
            return Ok(());
        }
        let fresh = self.fresh_ledger();
        let ledger = std::mem::replace(&mut self.ledger, fresh);
        let me = self.rep.me;
        let seed_shares = Rep {
            a: self.rep.draw::<u128>(me, 2).unwrap_or_default(),
            b: self.rep.draw::<u128>(me + 1, 2).unwrap_or_default(),
        };
        let seed_shares: Vec<Rep<u128>> = (0..2)
            .map(|i| Rep {
                a: seed_shares.a[i],
                b: seed_shares.b[i],
            })
            .collect();
        let seed = self.open_all(cheat::Kind::Mac, &seed_shares)?;
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&seed[0].to_le_bytes());
        key[16..].copy_from_slice(&seed[1].to_le_bytes());
        let (u, w) = if self.twin {
            // Zeros either way; a twin keeps no pairs.
            (Rep::default(), Rep::default())
        } else {
            let mut coins = Stream::new(*blake3::hash(&key).as_bytes(), 0);
            combine(&mut coins, &ledger.pairs)
        };
        drop(ledger);
        let mut local = Rep3::<u128>::mul_local(&[self.key.alpha], &[u]);
        if self.cheat.fires(cheat::Kind::Mac) {
            local[0] = local[0].wrapping_add(1);
        }
        let au = self.rep.reshare(local)?;
        let v = Rep {
            a: w.a.wrapping_sub(au[0].a),
            b: w.b.wrapping_sub(au[0].b),
        };
        let opened = self.open_all(cheat::Kind::Mac, &[v])?;
        if !self.twin && opened[0] != 0 {
            return Err(ProtocolError::Cheat {
                check: "MAC check",
                what: format!(
                    "the {n} authenticated values of this batch do not all match their MACs"
                ),
            });
        }
        Ok(())
    }
}
