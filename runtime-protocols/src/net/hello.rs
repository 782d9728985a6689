//! The start-up agreement, before any share is sent: every member announces what it is
//! about to run (program digest, protocol, party count, roles) and what it alone states
//! (its claim: the data owner's batch size) with a fresh random nonce;
//! then every member confirms the digest of the whole start-up — all announcements in
//! member order and every member's pinned certificate — which is the session id. A member
//! that saw another announcement, pins another certificate for someone, or replays a
//! start-up of an earlier session confirms another digest and stops every member.

use super::NetError;
use crate::PartyId;

/// What every party must agree on before computing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Digest of the public program.
    pub program: [u8; 32],
    pub protocol: String,
    pub parties: usize,
    /// Who plays which role, in words (`model owner 0, data owner 1, output to 1`).
    pub roles: String,
    /// What this member alone states (the data owner's batch size), at most
    /// [`MAX_CLAIM`] bytes: not compared with the others' announcements, but bound into the
    /// session id with them, so every member has seen the same claim of every member.
    pub claim: Vec<u8>,
}

/// The most bytes of a member's claim.
pub const MAX_CLAIM: usize = 256;

/// Bytes of a member's fresh nonce.
pub(super) const NONCE: usize = 16;

impl Hello {
    /// This member's announcement with its nonce.
    pub(super) fn encode(&self, nonce: &[u8; NONCE]) -> Vec<u8> {
        let mut b = self.program.to_vec();
        b.extend((self.parties as u32).to_le_bytes());
        b.extend(nonce);
        for text in [self.protocol.as_bytes(), self.roles.as_bytes(), &self.claim] {
            b.extend((text.len().min(u16::MAX as usize) as u16).to_le_bytes());
            b.extend(&text[..text.len().min(u16::MAX as usize)]);
        }
        b
    }

    /// The claim in member `party`'s announcement (checked by [`Hello::check`]).
    pub(super) fn claim_of(bytes: &[u8]) -> Vec<u8> {
        let mut r = Reader(bytes);
        let skip = r.take(32 + 4 + NONCE).is_some() && r.bytes().is_some() && r.bytes().is_some();
        if !skip {
            return Vec::new();
        }
        r.bytes().map(<[u8]>::to_vec).unwrap_or_default()
    }

    /// Checks member `party`'s announcement against this member's own.
    pub(super) fn check(&self, party: PartyId, bytes: &[u8]) -> Result<(), NetError> {
        let garbage = || NetError::Garbage {
            party,
            what: "a malformed hello".into(),
        };
        let mut r = Reader(bytes);
        let program: [u8; 32] = r
            .take(32)
            .ok_or_else(garbage)?
            .try_into()
            .map_err(|_| garbage())?;
        let parties = u32::from_le_bytes(
            r.take(4)
                .ok_or_else(garbage)?
                .try_into()
                .map_err(|_| garbage())?,
        );
        r.take(NONCE).ok_or_else(garbage)?;
        let protocol = r.text().ok_or_else(garbage)?;
        let roles = r.text().ok_or_else(garbage)?;
        let claim = r.bytes().ok_or_else(garbage)?;
        if !r.0.is_empty() || claim.len() > MAX_CLAIM {
            return Err(garbage());
        }
        let mismatch = |what, ours: String, theirs: String| NetError::Mismatch {
            party,
            what,
            ours,
            theirs,
        };
        if protocol != self.protocol {
            return Err(mismatch("protocol", self.protocol.clone(), protocol.into()));
        }
        if parties as usize != self.parties {
            return Err(mismatch(
                "party count",
                self.parties.to_string(),
                parties.to_string(),
            ));
        }
        if program != self.program {
            return Err(mismatch("program", hex8(&self.program), hex8(&program)));
        }
        if roles != self.roles {
            return Err(mismatch("set of roles", self.roles.clone(), roles.into()));
        }
        Ok(())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        self.take(n)
    }
    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

pub(super) fn hex8(d: &[u8; 32]) -> String {
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The session id: the digest of every member's announcement, in member order, and of
/// the certificates this member pins for them (`None`: plain TCP).
pub(super) fn session_id(announcements: &[Vec<u8>], pins: Option<&[[u8; 32]]>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"qmpc session v2");
    for a in announcements {
        h.update(&(a.len() as u64).to_le_bytes());
        h.update(a);
    }
    match pins {
        None => {
            h.update(b"plain");
        }
        Some(ps) => {
            h.update(b"tls");
            for p in ps {
                h.update(p);
            }
        }
    }
    *h.finalize().as_bytes()
}

/// A fresh nonce from the operating system.
pub(super) fn nonce() -> Result<[u8; NONCE], NetError> {
    let seed = crate::coins::os_seed().map_err(|e| NetError::Tls(e.to_string()))?;
    let mut n = [0u8; NONCE];
    n.copy_from_slice(&seed[..NONCE]);
    Ok(n)
}
