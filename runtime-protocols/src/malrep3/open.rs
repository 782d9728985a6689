//! Openings checked on receipt. A party lacks one component of every sharing; two parties
//! hold it. One of them sends it, the other sends a hash of its own copy in the same round,
//! and the receiver compares before it uses the value. With one corrupted party, at least
//! one of the two is honest, so no honest party ever acts on a value another honest party
//! saw differently (the delayed-check attacks of eprint 2026/234 need exactly that).
//!
//! The hash covers a per-party counter of openings, so a message replayed from an earlier
//! round does not match.

use super::MalRep3;
use crate::cheat;
use crate::net::NetError;
use crate::rep3::elem::{self, Elem};
use crate::rep3::Rep;
use crate::word::Word;
use crate::{PartyId, ProtocolError};

type R<T> = Result<T, ProtocolError>;

const HASH: usize = 32;

/// The hash a witness sends for the components `comps` of opening number `count`.
pub(super) fn digest(count: u64, comps: &[u8]) -> [u8; HASH] {
    let mut h = blake3::Hasher::new_derive_key("qmpc mal-rep3 opening v1");
    h.update(&count.to_le_bytes());
    h.update(comps);
    *h.finalize().as_bytes()
}

fn garbage(party: PartyId, got: usize, due: usize) -> ProtocolError {
    ProtocolError::Net(NetError::Garbage {
        party,
        what: format!("an opening of {got} bytes where {due} were due"),
    })
}

fn mismatch(sender: PartyId, witness: PartyId) -> ProtocolError {
    ProtocolError::Cheat {
        check: "opening check",
        what: format!(
            "party {sender} sent a component that party {witness}, which holds it too, does not confirm"
        ),
    }
}

/// The components as bytes, with the cheat of `site` applied if it fires: the first
/// element sent plus one (a lie about a held component).
fn sent<E: Elem>(p: &mut MalRep3<impl Word>, site: cheat::Kind, comps: Vec<E>) -> Vec<u8> {
    let mut bytes = elem::encode(&comps);
    if !bytes.is_empty() && p.cheat.fires(site) {
        bytes[0] ^= 1;
    }
    bytes
}

impl<W: Word> MalRep3<W> {
    fn next_count(&mut self) -> u64 {
        self.openings += 1;
        self.openings
    }

    /// Open `x` to every party (1 round): each party sends its second component to the
    /// previous party and a hash of its first to the next.
    pub(super) fn open_all<E: Elem>(&mut self, site: cheat::Kind, x: &[Rep<E>]) -> R<Vec<E>> {
        let count = self.next_count();
        let (prev, next) = (self.rep.prev(), self.rep.next());
        let n = x.len();
        let to_prev = sent(self, site, x.iter().map(|s| s.b).collect());
        let to_next = digest(
            count,
            &elem::encode(&x.iter().map(|s| s.a).collect::<Vec<E>>()),
        );
        let got = self.rep.net.exchange_sized(
            vec![(prev, to_prev), (next, to_next.to_vec())],
            &[(next, n * E::BYTES), (prev, HASH)],
        )?;
        let (mut comps, mut hash) = (Vec::new(), Vec::new());
        for (from, bytes) in got {
            if from == next {
                comps = bytes;
            } else {
                hash = bytes;
            }
        }
        if comps.len() != n * E::BYTES {
            return Err(garbage(next, comps.len(), n * E::BYTES));
        }
        if !self.twin && hash != digest(count, &comps) {
            return Err(mismatch(next, prev));
        }
        let missing: Vec<E> = elem::decode(&comps, n).ok_or_else(|| garbage(next, 0, 0))?;
        Ok(x.iter()
            .zip(missing)
            .map(|(s, c)| s.a.plus(s.b).plus(c))
            .collect())
    }

    /// Open `x` to party `to` (1 round): `to + 1` sends the component `to` lacks, `to + 2`
    /// a hash of its copy.
    pub(super) fn open_to<E: Elem>(
        &mut self,
        site: cheat::Kind,
        x: &[Rep<E>],
        to: PartyId,
    ) -> R<Option<Vec<E>>> {
        let count = self.next_count();
        let me = self.rep.me;
        let (helper, witness) = ((to + 1) % 3, (to + 2) % 3);
        let n = x.len();
        if me == helper {
            let bytes = sent(self, site, x.iter().map(|s| s.b).collect());
            self.rep.net.exchange_sized(vec![(to, bytes)], &[])?;
            return Ok(None);
        }
        if me == witness {
            let comps = elem::encode(&x.iter().map(|s| s.a).collect::<Vec<E>>());
            let mut hash = digest(count, &comps);
            if self.cheat.fires(site) {
                // A lie about the component it vouches for.
                hash[0] ^= 1;
            }
            self.rep
                .net
                .exchange_sized(vec![(to, hash.to_vec())], &[])?;
            return Ok(None);
        }
        let got = self
            .rep
            .net
            .exchange_sized(Vec::new(), &[(helper, n * E::BYTES), (witness, HASH)])?;
        let (mut comps, mut hash) = (Vec::new(), Vec::new());
        for (from, bytes) in got {
            if from == helper {
                comps = bytes;
            } else {
                hash = bytes;
            }
        }
        if comps.len() != n * E::BYTES {
            return Err(garbage(helper, comps.len(), n * E::BYTES));
        }
        if !self.twin && hash != digest(count, &comps) {
            return Err(mismatch(helper, witness));
        }
        let missing: Vec<E> = elem::decode(&comps, n).ok_or_else(|| garbage(helper, 0, 0))?;
        Ok(Some(
            x.iter()
                .zip(missing)
                .map(|(s, c)| s.a.plus(s.b).plus(c))
                .collect(),
        ))
    }
}
