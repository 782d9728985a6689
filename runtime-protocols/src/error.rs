use crate::net::NetError;
use crate::PartyId;

/// Why a protocol step failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("party {party}: {what}")]
    Peer { party: PartyId, what: String },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("value {value} is outside the table of a lookup (offset {offset}, {len} entries)")]
    LookupOutOfRange { value: i64, offset: i64, len: usize },
    #[error("{0}")]
    Invalid(String),
    /// A maliciously secure protocol's check failed: some party deviated. Every honest
    /// party stops here, before any output.
    #[error("the {check} failed: {what}; a party deviated from the protocol, aborting before any output")]
    Cheat { check: &'static str, what: String },
}
