//! Where every protocol's randomness starts: the seeds of its PRG keys.
//!
//! Each key is named by what it is for and which parties hold it ([`KeyId`]); a [`Coins`]
//! source turns the name into 32 bytes. Running parties use [`OsCoins`], the operating
//! system's generator. The view tests use a source that fixes every key a corrupted
//! coalition holds and draws the rest fresh (`testutil::CoalitionCoins`), so that what the
//! coalition receives can only vary through the honest parties' own randomness: a message
//! masked with a key the receiver holds then repeats from run to run and gives itself away.

use crate::{PartyId, ProtocolError};

/// A PRG key by purpose, holders and number.
#[derive(Clone, Copy, Debug)]
pub struct KeyId<'a> {
    /// What the key is for, e.g. `"rep3 pair"`.
    pub purpose: &'static str,
    /// Every party that knows the seed (a dealer counts as the party after the last).
    pub holders: &'a [PartyId],
    /// Distinguishes keys of the same purpose and holders.
    pub index: usize,
}

/// A source of key seeds.
pub trait Coins: Send + Sync {
    fn seed(&self, key: KeyId<'_>) -> Result<[u8; 32], ProtocolError>;
}

/// Seeds from the operating system: what every real run uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsCoins;

impl Coins for OsCoins {
    fn seed(&self, _key: KeyId<'_>) -> Result<[u8; 32], ProtocolError> {
        os_seed()
    }
}

/// 32 bytes from the operating system's generator.
pub fn os_seed() -> Result<[u8; 32], ProtocolError> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s)
        .map_err(|e| ProtocolError::Invalid(format!("the OS random source failed: {e}")))?;
    Ok(s)
}
