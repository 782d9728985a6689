//! Every protocol qmpc knows, by command-line name: how many parties it takes, what it
//! computes in, whether a dealer serves it, how to set up one of its parties or its dealer,
//! and its cost formulas. The command line and the tests ask this table; nothing outside
//! it matches on protocol names.
//!
//! Set-up returns concrete protocol types (the VM is generic over [`Protocol`]), so the
//! caller passes a visitor ([`PartyVisitor`], [`DealerVisitor`]) that receives the
//! protocol at its own type.

use crate::coins::{Coins, OsCoins};
use crate::cost::{ClearCosts, Costs};
use crate::malrep3::{MalRep3, MalRep3Costs};
use crate::net::{Stats, Transport};
use crate::semi2k::{Dealer, Gates, Semi2kCosts};
use crate::shamir::{Shamir, ShamirCosts};
use crate::spdz2k::{Spdz2k, Spdz2kCosts, Spdz2kDealer};
use crate::word::Word;
use crate::{Protocol, ProtocolError, Rep3, Rep3Costs, Semi2k};
use std::fmt;

/// The most computing parties a run may have, where a protocol sets no lower limit.
pub const MAX_PARTIES: usize = 64;

/// How many computing parties a protocol takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartyCount {
    Exactly(usize),
    /// `min` to `max`; `default` without `--parties`.
    Between {
        min: usize,
        max: usize,
        default: usize,
    },
}

impl PartyCount {
    /// Whether `n` computing parties may run the protocol.
    pub fn allows(&self, n: usize) -> bool {
        match *self {
            PartyCount::Exactly(m) => n == m,
            PartyCount::Between { min, max, .. } => (min..=max).contains(&n),
        }
    }
}

impl fmt::Display for PartyCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartyCount::Exactly(n) => write!(f, "{n}"),
            PartyCount::Between { min, max, .. } => write!(f, "{min} to {max}"),
        }
    }
}

/// What a protocol's shares live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Plain 64-bit integers (the reference).
    Plain,
    /// The narrowest of Z_2^32, Z_2^64 and Z_2^128 that the program fits (chosen by the
    /// caller from the public program with [`Spec::costs`]).
    Ring,
    /// Z_2^32 or Z_2^64 (the narrowest the program fits), each value authenticated by a MAC
    /// in Z_2^128: 64 bits or more of statistical headroom above the ring.
    MacRing,
    /// A prime field of this many bits.
    Field(u32),
}

/// Who may be corrupted, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threat {
    /// No secrets: one party computes in the clear.
    None,
    /// Corrupted parties follow the protocol; `colluding` of them may pool their views
    /// (`usize::MAX`: all but one).
    SemiHonest { colluding: Colluding },
    /// Corrupted parties may deviate arbitrarily; honest parties abort.
    Malicious { colluding: Colluding },
}

/// How many computing parties a coalition may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colluding {
    /// A minority: `⌊(n − 1)/2⌋`.
    Minority,
    /// All but one: `n − 1`.
    AllButOne,
}

/// What a protocol's constructions spend to save the other, where it has a choice (`qmpc
/// run --favor`; `rep3` only today): its comparison trees cut into more, narrower units
/// (fewer dealt bytes) or into fewer, wider ones that a single round combines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Favor {
    /// Fewest bytes: the default, and the faster choice on most links (docs/performance.md).
    #[default]
    Bytes,
    /// Fewest rounds: one round less per requantization for about 1.5× the bytes, for links
    /// whose round trip costs more than the extra bytes take to send.
    Rounds,
}

impl Favor {
    pub const ALL: [Favor; 2] = [Favor::Bytes, Favor::Rounds];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Favor::Bytes => "bytes",
            Favor::Rounds => "rounds",
        }
    }

    /// The one called `name`.
    pub fn from_name(name: &str) -> Option<Favor> {
        Favor::ALL.into_iter().find(|f| f.name() == name)
    }

    /// `protocol` favouring this, as the parties announce it and the figures name it:
    /// the bare name for the default.
    pub fn label(self, protocol: &str) -> String {
        match self {
            Favor::Bytes => protocol.to_string(),
            f => format!("{protocol} favouring {}", f.name()),
        }
    }
}

/// Which implementation a name stands for (private: callers only see the [`Spec`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Clear,
    Rep3,
    Semi2k(Gates),
    Shamir,
    Spdz2k,
    MalRep3,
    /// Named by DESIGN.md, not built yet (none today).
    #[allow(dead_code)]
    Planned,
}

/// One protocol of the registry.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The command-line name.
    pub name: &'static str,
    pub parties: PartyCount,
    pub domain: Domain,
    pub threat: Threat,
    /// A trusted dealer beside the computing parties (the mesh's last member), which sends
    /// its material before the computation and leaves.
    pub dealer: bool,
    kind: Kind,
    /// Set by [`Spec::favoring`]; every entry of [`PROTOCOLS`] favours bytes.
    favor: Favor,
}

/// Every protocol name of DESIGN.md, implemented or not.
pub const PROTOCOLS: &[Spec] = &[
    Spec {
        name: "clear",
        parties: PartyCount::Exactly(1),
        domain: Domain::Plain,
        threat: Threat::None,
        dealer: false,
        kind: Kind::Clear,
        favor: Favor::Bytes,
    },
    Spec {
        name: "rep3",
        parties: PartyCount::Exactly(3),
        domain: Domain::Ring,
        threat: Threat::SemiHonest {
            colluding: Colluding::Minority,
        },
        dealer: false,
        kind: Kind::Rep3,
        favor: Favor::Bytes,
    },
    Spec {
        name: "semi2k",
        parties: PartyCount::Between {
            min: 2,
            max: MAX_PARTIES,
            default: 2,
        },
        domain: Domain::Ring,
        threat: Threat::SemiHonest {
            colluding: Colluding::AllButOne,
        },
        dealer: true,
        kind: Kind::Semi2k(Gates::Beaver),
        favor: Favor::Bytes,
    },
    Spec {
        name: "shamir",
        // Every party holds a key per subset of `t` others: C(n − 1, t) grows fast.
        parties: PartyCount::Between {
            min: 3,
            max: crate::shamir::MAX_PARTIES,
            default: 3,
        },
        domain: Domain::Field(127),
        threat: Threat::SemiHonest {
            colluding: Colluding::Minority,
        },
        dealer: false,
        kind: Kind::Shamir,
        favor: Favor::Bytes,
    },
    Spec {
        name: "fss",
        parties: PartyCount::Exactly(2),
        domain: Domain::Ring,
        threat: Threat::SemiHonest {
            colluding: Colluding::AllButOne,
        },
        dealer: true,
        kind: Kind::Semi2k(Gates::Fss),
        favor: Favor::Bytes,
    },
    Spec {
        name: "mal-rep3",
        parties: PartyCount::Exactly(3),
        domain: Domain::MacRing,
        threat: Threat::Malicious {
            colluding: Colluding::Minority,
        },
        dealer: false,
        kind: Kind::MalRep3,
        favor: Favor::Bytes,
    },
    Spec {
        name: "spdz2k",
        parties: PartyCount::Between {
            min: 2,
            max: MAX_PARTIES,
            default: 2,
        },
        domain: Domain::MacRing,
        threat: Threat::Malicious {
            colluding: Colluding::AllButOne,
        },
        dealer: true,
        kind: Kind::Spdz2k,
        favor: Favor::Bytes,
    },
];

/// Why a protocol name or party count is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("unknown protocol `{name}`; protocols: {}", names().join(", "))]
    Unknown { name: String },
    #[error("protocol `{name}` is not implemented yet; this build runs {}", implemented().join(", "))]
    NotImplemented { name: &'static str },
    #[error("protocol `{name}` runs with {count} parties, not {asked}")]
    PartyCount {
        name: &'static str,
        count: PartyCount,
        asked: usize,
    },
    #[error("protocol `{name}` has no choice between rounds and bytes (`--favor rounds` is for {})", favoring().join(", "))]
    NoChoice { name: &'static str },
    #[error("protocol `{name}` has no dealer")]
    NoDealer { name: &'static str },
    #[error("protocol `{name}` cannot compute in a ring of {bits} bits")]
    Ring { name: &'static str, bits: u32 },
}

/// Every name, in registry order.
pub fn names() -> Vec<&'static str> {
    PROTOCOLS.iter().map(|s| s.name).collect()
}

/// The names this build runs.
pub fn implemented() -> Vec<&'static str> {
    PROTOCOLS
        .iter()
        .filter(|s| s.implemented())
        .map(|s| s.name)
        .collect()
}

/// The protocols that can favour rounds ([`Spec::favoring`]).
pub fn favoring() -> Vec<&'static str> {
    PROTOCOLS
        .iter()
        .filter(|s| s.chooses())
        .map(|s| s.name)
        .collect()
}

/// The protocol called `name`, implemented or not.
pub fn lookup(name: &str) -> Result<&'static Spec, RegistryError> {
    PROTOCOLS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| RegistryError::Unknown { name: name.into() })
}

/// The protocol called `name`, which this build must run.
pub fn find(name: &str) -> Result<&'static Spec, RegistryError> {
    let spec = lookup(name)?;
    if spec.implemented() {
        Ok(spec)
    } else {
        Err(RegistryError::NotImplemented { name: spec.name })
    }
}

/// A party of a set-up protocol, as the command line drives it: the VM's [`Protocol`] and
/// what a run needs around it.
pub trait Party: Protocol + Send {
    /// Online traffic so far (the set-up excluded).
    fn online(&self) -> Stats;
    /// Tell the peers this party stops, and why.
    fn abort(&mut self, reason: &str);
}

impl<W: Word> Party for Rep3<W> {
    fn online(&self) -> Stats {
        self.stats()
    }
    fn abort(&mut self, reason: &str) {
        Rep3::abort(self, reason)
    }
}

impl Party for Shamir {
    fn online(&self) -> Stats {
        self.stats()
    }
    fn abort(&mut self, reason: &str) {
        Shamir::abort(self, reason)
    }
}

impl<W: Word> Party for Semi2k<W> {
    fn online(&self) -> Stats {
        self.stats()
    }
    fn abort(&mut self, reason: &str) {
        Semi2k::abort(self, reason)
    }
}

impl<W: Word> Party for MalRep3<W> {
    fn online(&self) -> Stats {
        self.stats()
    }
    fn abort(&mut self, reason: &str) {
        MalRep3::abort(self, reason)
    }
}

impl<W: Word> Party for Spdz2k<W> {
    fn online(&self) -> Stats {
        self.stats()
    }
    fn abort(&mut self, reason: &str) {
        Spdz2k::abort(self, reason)
    }
}

/// What receives a freshly set-up party at its concrete type.
pub trait PartyVisitor {
    type Output;
    fn visit<P: Party>(self, party: P) -> Self::Output;
}

/// A protocol's dealer, as the command line drives it: a [`Protocol`] with no data that the
/// VM walks to make the material.
pub trait DealerRole: Protocol<Shares = crate::planes::Len> + Send {
    /// Bytes sent to each computing party so far (frame headers included).
    fn bytes_per_party(&self) -> Vec<u64>;
    /// Function-secret-sharing keys made so far, and their bytes per party.
    fn keys(&self) -> (u64, u64);
    /// Deal over `net` (the dealer is its last party), before the VM walks the program:
    /// the material goes out in chunks as the walk makes it, each run's last when the
    /// VM ends the run ([`crate::Core::end_run`]).
    fn attach(&mut self, net: Box<dyn Transport>);
    /// The traffic sent so far.
    fn session_stats(&self) -> Stats;
    /// Tell the parties that the dealer stops, and why.
    fn abort_session(&mut self, reason: &str);
}

impl<W: Word> DealerRole for Dealer<W> {
    fn bytes_per_party(&self) -> Vec<u64> {
        Dealer::bytes_per_party(self)
    }
    fn keys(&self) -> (u64, u64) {
        Dealer::keys(self)
    }
    fn attach(&mut self, net: Box<dyn Transport>) {
        Dealer::attach(self, net)
    }
    fn session_stats(&self) -> Stats {
        Dealer::session_stats(self)
    }
    fn abort_session(&mut self, reason: &str) {
        Dealer::abort_session(self, reason)
    }
}

impl<W: Word> DealerRole for Spdz2kDealer<W> {
    fn bytes_per_party(&self) -> Vec<u64> {
        Spdz2kDealer::bytes_per_party(self)
    }
    fn keys(&self) -> (u64, u64) {
        (0, 0)
    }
    fn attach(&mut self, net: Box<dyn Transport>) {
        Spdz2kDealer::attach(self, net)
    }
    fn session_stats(&self) -> Stats {
        Spdz2kDealer::session_stats(self)
    }
    fn abort_session(&mut self, reason: &str) {
        Spdz2kDealer::abort_session(self, reason)
    }
}

/// What receives a dealer at its concrete type.
pub trait DealerVisitor {
    type Output;
    fn visit<D: DealerRole>(self, dealer: D) -> Self::Output;
}

/// Whether a dealer makes material or only counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DealerMode {
    Generate,
    Count,
}

impl Spec {
    /// Whether this build runs the protocol.
    pub fn implemented(&self) -> bool {
        self.kind != Kind::Planned
    }

    /// Whether the protocol can trade bytes for rounds ([`Favor`]).
    fn chooses(&self) -> bool {
        self.kind == Kind::Rep3
    }

    /// This protocol favouring `favor`; refused where it has no choice (any protocol may
    /// favour bytes, its default).
    pub fn favoring(&self, favor: Favor) -> Result<Spec, RegistryError> {
        if favor != Favor::Bytes && !self.chooses() {
            return Err(RegistryError::NoChoice { name: self.name });
        }
        Ok(Spec { favor, ..*self })
    }

    /// What the protocol favours.
    pub fn favor(&self) -> Favor {
        self.favor
    }

    /// The name with what it favours where that is not the default: what the parties of a
    /// session must agree on.
    pub fn label(&self) -> String {
        self.favor.label(self.name)
    }

    /// The reference protocol: one party, plaintext, in-process.
    pub fn is_clear(&self) -> bool {
        self.kind == Kind::Clear
    }

    /// The number of computing parties for `asked` (`--parties`), checked.
    pub fn party_count(&self, asked: Option<usize>) -> Result<usize, RegistryError> {
        let bad = |asked| RegistryError::PartyCount {
            name: self.name,
            count: self.parties,
            asked,
        };
        match (self.parties, asked) {
            (count, Some(k)) if !count.allows(k) => Err(bad(k)),
            (PartyCount::Exactly(n), _) => Ok(n),
            (PartyCount::Between { default, .. }, k) => Ok(k.unwrap_or(default)),
        }
    }

    /// The ring or field widths to try for a program, narrowest first; the caller takes the
    /// first one the program's costs accept (see [`Domain::Ring`]).
    pub fn widths(&self) -> &'static [u32] {
        match self.domain {
            Domain::Plain => &[64],
            Domain::Ring => &[32, 64, 128],
            Domain::MacRing => &[32, 64],
            Domain::Field(_) => &[127],
        }
    }

    /// Whether the ring follows from the program's secret bounds alone — the narrowest
    /// width that holds every secret register and a masked opening of its span — so that
    /// choosing it needs no dry run. True of `mal-rep3`: its shares are 128 bits whatever
    /// the ring, and the only limit that depends on the ring is the selection plan's
    /// opening (tests/conformance.rs compares both ways of choosing on every model).
    pub fn ring_from_bounds(&self) -> bool {
        matches!(self.kind, Kind::MalRep3)
    }

    /// How long memory that a run frees waits before the allocator hands it back to the
    /// OS, in milliseconds; `None`: never (`qmpc` sets it for its process, `src/alloc.rs`).
    /// `shamir` hands it back after a second: its selections and lookups take and free
    /// hundreds of MB at a time on many threads, and memory kept but fragmented took
    /// EfficientNet-B0 to 4.66 GB peak RSS against a live peak near 2 GB (3.18 GB after a
    /// second, 523 s against 588). `mal-rep3` on ResNet-18 took 28% longer for it (83 →
    /// 107 s; 3.76 → 3.19 GB) and `rep3` kept its time, so the others keep their memory
    /// (NOTES.md, issue 21 session 15).
    pub fn purge_after_ms(&self) -> Option<u32> {
        match self.kind {
            Kind::Shamir => Some(1000),
            _ => None,
        }
    }

    /// The cost formulas of `parties` parties computing in `bits` (one of [`Spec::widths`]).
    pub fn costs(&self, parties: usize, bits: u32) -> Result<Box<dyn Costs>, ProtocolError> {
        self.party_count(Some(parties))
            .map_err(|e| ProtocolError::Invalid(e.to_string()))?;
        self.check_width(bits)
            .map_err(|e| ProtocolError::Invalid(e.to_string()))?;
        Ok(match self.kind {
            Kind::Clear => Box::new(ClearCosts),
            Kind::Rep3 => Box::new(Rep3Costs {
                ring_bits: bits,
                favor: self.favor,
            }),
            Kind::Semi2k(gates) => Box::new(Semi2kCosts {
                parties,
                ring_bits: bits,
                gates,
            }),
            Kind::Shamir => Box::new(ShamirCosts::new(parties)),
            Kind::Spdz2k => Box::new(Spdz2kCosts::new(parties, bits)),
            Kind::MalRep3 => Box::new(MalRep3Costs::new(bits)),
            Kind::Planned => {
                return Err(ProtocolError::Invalid(
                    RegistryError::NotImplemented { name: self.name }.to_string(),
                ))
            }
        })
    }

    fn check_width(&self, bits: u32) -> Result<(), RegistryError> {
        if self.widths().contains(&bits) {
            Ok(())
        } else {
            Err(RegistryError::Ring {
                name: self.name,
                bits,
            })
        }
    }

    /// Set up this party over `net` (every computing party, and the dealer last where the
    /// protocol has one) in a ring of `bits`, and hand it to `visitor`.
    pub fn setup_party<V: PartyVisitor>(
        &self,
        net: Box<dyn Transport>,
        bits: u32,
        visitor: V,
    ) -> Result<V::Output, ProtocolError> {
        self.setup_party_with_coins(net, bits, &OsCoins, visitor)
    }

    /// [`Spec::setup_party`] with every key seed from `coins` (the view tests fix a
    /// coalition's).
    pub fn setup_party_with_coins<V: PartyVisitor>(
        &self,
        net: Box<dyn Transport>,
        bits: u32,
        coins: &dyn Coins,
        visitor: V,
    ) -> Result<V::Output, ProtocolError> {
        self.check_width(bits)
            .map_err(|e| ProtocolError::Invalid(e.to_string()))?;
        Ok(match (self.kind, bits) {
            (Kind::Rep3, 32) => {
                visitor.visit(Rep3::<u32>::setup_with_coins(net, coins)?.favoring(self.favor))
            }
            (Kind::Rep3, 64) => {
                visitor.visit(Rep3::<u64>::setup_with_coins(net, coins)?.favoring(self.favor))
            }
            (Kind::Rep3, _) => {
                visitor.visit(Rep3::<u128>::setup_with_coins(net, coins)?.favoring(self.favor))
            }
            (Kind::Semi2k(g), 32) => visitor.visit(Semi2k::<u32>::setup_with_coins(net, g, coins)?),
            (Kind::Semi2k(g), 64) => visitor.visit(Semi2k::<u64>::setup_with_coins(net, g, coins)?),
            (Kind::Semi2k(g), _) => visitor.visit(Semi2k::<u128>::setup_with_coins(net, g, coins)?),
            (Kind::Shamir, _) => visitor.visit(Shamir::setup_with_coins(net, coins)?),
            (Kind::Spdz2k, 32) => visitor.visit(Spdz2k::<u32>::setup_with_coins(net, coins)?),
            (Kind::Spdz2k, _) => visitor.visit(Spdz2k::<u64>::setup_with_coins(net, coins)?),
            (Kind::MalRep3, 32) => visitor.visit(MalRep3::<u32>::setup_with_coins(net, coins)?),
            (Kind::MalRep3, _) => visitor.visit(MalRep3::<u64>::setup_with_coins(net, coins)?),
            (Kind::Clear | Kind::Planned, _) => {
                return Err(ProtocolError::Invalid(format!(
                    "protocol `{}` cannot run as a networked party",
                    self.name
                )))
            }
        })
    }

    /// This protocol's dealer for `parties` computing parties in a ring of `bits`, making
    /// material or only counting it, handed to `visitor`.
    pub fn dealer<V: DealerVisitor>(
        &self,
        parties: usize,
        bits: u32,
        mode: DealerMode,
        visitor: V,
    ) -> Result<V::Output, ProtocolError> {
        self.dealer_with_coins(parties, bits, mode, &OsCoins, visitor)
    }

    /// [`Spec::dealer`] with every seed from `coins`.
    pub fn dealer_with_coins<V: DealerVisitor>(
        &self,
        parties: usize,
        bits: u32,
        mode: DealerMode,
        coins: &dyn Coins,
        visitor: V,
    ) -> Result<V::Output, ProtocolError> {
        self.check_width(bits)
            .map_err(|e| ProtocolError::Invalid(e.to_string()))?;
        if self.kind == Kind::Spdz2k {
            let n = parties;
            return Ok(match (mode, bits) {
                (DealerMode::Generate, 32) => {
                    visitor.visit(Spdz2kDealer::<u32>::with_coins(n, coins)?)
                }
                (DealerMode::Generate, _) => {
                    visitor.visit(Spdz2kDealer::<u64>::with_coins(n, coins)?)
                }
                (DealerMode::Count, 32) => visitor.visit(Spdz2kDealer::<u32>::counting(n)),
                (DealerMode::Count, _) => visitor.visit(Spdz2kDealer::<u64>::counting(n)),
            });
        }
        let Kind::Semi2k(gates) = self.kind else {
            return Err(ProtocolError::Invalid(
                RegistryError::NoDealer { name: self.name }.to_string(),
            ));
        };
        fn make<W: Word, V: DealerVisitor>(
            n: usize,
            gates: Gates,
            (mode, coins): (DealerMode, &dyn Coins),
            v: V,
        ) -> Result<V::Output, ProtocolError> {
            Ok(match mode {
                DealerMode::Generate => v.visit(Dealer::<W>::with_coins(n, gates, coins)?),
                DealerMode::Count => v.visit(Dealer::<W>::counting(n, gates)),
            })
        }
        match bits {
            32 => make::<u32, V>(parties, gates, (mode, coins), visitor),
            64 => make::<u64, V>(parties, gates, (mode, coins), visitor),
            _ => make::<u128, V>(parties, gates, (mode, coins), visitor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lookups_name_the_alternatives() {
        let mut n = names();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), PROTOCOLS.len());
        let e = find("rep4").unwrap_err().to_string();
        assert!(
            e.contains("unknown protocol `rep4`") && e.contains("semi2k"),
            "{e}"
        );
        assert_eq!(find("rep3").map(|s| s.name), Ok("rep3"));
    }

    #[test]
    fn party_counts_are_checked() {
        let semi2k = find("semi2k").unwrap();
        assert_eq!(semi2k.party_count(None), Ok(2));
        assert_eq!(semi2k.party_count(Some(5)), Ok(5));
        let e = semi2k.party_count(Some(1)).unwrap_err().to_string();
        assert!(e.contains("2 to 64 parties, not 1"), "{e}");
        let e = find("fss").unwrap().party_count(Some(3)).unwrap_err();
        assert!(e.to_string().contains("with 2 parties, not 3"), "{e}");
    }

    #[test]
    fn every_implemented_protocol_has_costs_in_each_width() {
        for spec in PROTOCOLS.iter().filter(|s| s.implemented()) {
            let n = spec.party_count(None).unwrap();
            for &bits in spec.widths() {
                let c = spec.costs(n, bits).unwrap();
                assert_eq!(c.name(), spec.name);
                assert_eq!(c.parties(), n);
            }
            assert!(spec.costs(n, 7).is_err());
        }
    }

    #[test]
    fn dealers_exactly_where_the_registry_says() {
        struct Bytes;
        impl DealerVisitor for Bytes {
            type Output = usize;
            fn visit<D: DealerRole>(self, d: D) -> usize {
                d.bytes_per_party().len()
            }
        }
        for spec in PROTOCOLS.iter().filter(|s| s.implemented()) {
            let n = spec.party_count(None).unwrap();
            let bits = spec.widths()[0];
            let got = spec.dealer(n, bits, DealerMode::Count, Bytes);
            assert_eq!(got.is_ok(), spec.dealer, "{}", spec.name);
            if let Ok(parties) = got {
                assert_eq!(parties, n);
            }
        }
    }

    #[test]
    fn only_rep3_favours_rounds() {
        assert_eq!(favoring(), ["rep3"]);
        let rep3 = find("rep3").unwrap().favoring(Favor::Rounds).unwrap();
        assert_eq!(rep3.favor(), Favor::Rounds);
        assert_eq!(rep3.label(), "rep3 favouring rounds");
        assert_eq!(find("rep3").unwrap().label(), "rep3");
        let e = find("semi2k").unwrap().favoring(Favor::Rounds).unwrap_err();
        assert!(e.to_string().contains("`semi2k` has no choice"), "{e}");
        assert!(e.to_string().contains("is for rep3"), "{e}");
        for spec in PROTOCOLS {
            assert_eq!(spec.favoring(Favor::Bytes).unwrap().favor(), Favor::Bytes);
        }
    }

    #[test]
    fn every_protocol_of_the_design_runs() {
        assert_eq!(implemented(), names());
    }
}
