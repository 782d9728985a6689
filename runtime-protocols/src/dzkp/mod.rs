//! Distributed zero-knowledge proofs: the building block of `mal-rep3`'s checks (docs/core.md,
//! "Malicious protocols"). A party proves to the two others, who jointly know everything
//! its messages depend on, that it computed them correctly, at a cost logarithmic in the
//! number of relations.
//!
//! Status: the inner-product proof over GF(2^64) ([`ip`]) with its tests and a bench
//! (`cargo bench --bench dzkp`), and the first relation, the dealer's AND triples
//! ([`relations::and_triples`]); the other relations of `rep3`'s messages (docs/core.md)
//! and the Galois-ring version for its arithmetic are not written yet.

pub mod field;
pub mod gf64;
pub mod ip;
pub mod packed;
pub mod relations;
