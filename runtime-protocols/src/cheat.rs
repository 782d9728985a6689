//! Fault injection for the malicious protocols' tests: one corrupted party deviates at one
//! chosen point, and every honest party must abort.
//!
//! The cheat is compiled only with the `fault-injection` feature, which the workspace's
//! tests enable and a release build never has; without it [`Cheater::fires`] is a
//! constant `false` and [`wrap`] returns the transport unchanged. With it, the variable
//! `QMPC_CHEAT=KIND@PARTY[+SKIP]` arms party `PARTY` to deviate at the `SKIP + 1`-th point
//! of kind `KIND` it passes (`SKIP` defaults to 0). It is an environment variable so that
//! the same binary can be told to cheat from outside (`qmpc party` as its own process).

use crate::net::Transport;
#[cfg(feature = "fault-injection")]
use crate::net::{NetError, Stats};
use crate::PartyId;

/// Where a corrupted party deviates (issue 18's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// (a) its share of a value opened inside a product or matrix product.
    Mul,
    /// (b) its share of a value opened to reveal an output.
    Open,
    /// (c) the MAC share of a value it opens.
    Mac,
    /// (d) an input it owns: another masked value to one peer than to the rest.
    Input,
    /// (e) the dealer's material it received (a share of an authenticated value).
    Material,
    /// (f) its share of a value opened inside a comparison or requantization.
    Compare,
    /// (g) a message of an earlier round, sent again in place of the due one.
    Replay,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Mul,
        Kind::Open,
        Kind::Mac,
        Kind::Input,
        Kind::Material,
        Kind::Compare,
        Kind::Replay,
    ];

    /// The name `QMPC_CHEAT` uses.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mul => "mul",
            Kind::Open => "open",
            Kind::Mac => "mac",
            Kind::Input => "input",
            Kind::Material => "material",
            Kind::Compare => "compare",
            Kind::Replay => "replay",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// A corrupted party's plan: deviate once, at the chosen point of the chosen kind.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    pub party: PartyId,
    /// Points of `kind` to let pass first.
    pub skip: usize,
}

#[cfg(feature = "fault-injection")]
impl Plan {
    /// `KIND@PARTY[+SKIP]`.
    pub fn parse(s: &str) -> Option<Plan> {
        let (kind, rest) = s.split_once('@')?;
        let (party, skip) = match rest.split_once('+') {
            Some((p, k)) => (p, k.parse().ok()?),
            None => (rest, 0),
        };
        Some(Plan {
            kind: Kind::parse(kind)?,
            party: party.parse().ok()?,
            skip,
        })
    }

    /// The plan in `QMPC_CHEAT`; a malformed one is a test's mistake, said loudly.
    fn from_env() -> Option<Plan> {
        let v = std::env::var("QMPC_CHEAT").ok()?;
        let plan = Plan::parse(&v);
        if plan.is_none() {
            eprintln!("warning: QMPC_CHEAT={v} is not KIND@PARTY[+SKIP]; no party cheats");
        }
        plan
    }
}

/// One party's cheating state: a zero-sized no-op without the feature.
#[derive(Debug, Default)]
pub struct Cheater {
    #[cfg(feature = "fault-injection")]
    armed: Option<(Kind, usize)>,
}

impl Cheater {
    /// The cheat `QMPC_CHEAT` plans for party `me`, if any.
    pub fn for_party(me: PartyId) -> Cheater {
        #[cfg(feature = "fault-injection")]
        {
            let armed = Plan::from_env()
                .filter(|p| p.party == me)
                .map(|p| (p.kind, p.skip));
            Cheater { armed }
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = me;
            Cheater {}
        }
    }

    /// A cheater armed in code, not from the environment (the protocols' unit tests).
    #[cfg(feature = "fault-injection")]
    pub fn armed(kind: Kind, skip: usize) -> Cheater {
        Cheater {
            armed: Some((kind, skip)),
        }
    }

    /// Whether to deviate at this point of kind `kind`: true once, at the planned one.
    #[inline]
    pub fn fires(&mut self, kind: Kind) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            match &mut self.armed {
                Some((k, skip)) if *k == kind => {
                    if *skip == 0 {
                        self.armed = None;
                        return true;
                    }
                    *skip -= 1;
                    false
                }
                _ => false,
            }
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = kind;
            false
        }
    }
}

/// `net`, or where `QMPC_CHEAT` plans a replay for this party, a transport that sends a
/// message of an earlier round (to the same peer, of the same length, so it passes the
/// framing) in place of the due one.
pub fn wrap(net: Box<dyn Transport>) -> Box<dyn Transport> {
    #[cfg(feature = "fault-injection")]
    {
        if let Some(p) = Plan::from_env() {
            if p.kind == Kind::Replay && p.party == net.party() {
                return Box::new(Replaying {
                    inner: net,
                    skip: Some(p.skip),
                    sent: Default::default(),
                });
            }
        }
    }
    net
}

#[cfg(feature = "fault-injection")]
struct Replaying {
    inner: Box<dyn Transport>,
    /// Replay chances to let pass; `None` once replayed.
    skip: Option<usize>,
    /// The last message sent to each peer at each length.
    sent: std::collections::HashMap<(PartyId, usize), Vec<u8>>,
}

#[cfg(feature = "fault-injection")]
impl Replaying {
    /// Swap in an earlier message for the first message of `out` that has one.
    fn replay(&mut self, out: &mut [(PartyId, Vec<u8>)]) {
        let Some(skip) = self.skip else { return };
        let chance = out.iter().enumerate().find_map(|(i, (to, m))| {
            self.sent
                .get(&(*to, m.len()))
                .filter(|old| *old != m)
                .map(|old| (i, old.clone()))
        });
        if let Some((i, old)) = chance {
            if skip == 0 {
                out[i].1 = old;
                self.skip = None;
            } else {
                self.skip = Some(skip - 1);
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
impl Transport for Replaying {
    fn party(&self) -> PartyId {
        self.inner.party()
    }
    fn parties(&self) -> usize {
        self.inner.parties()
    }
    fn exchange(
        &mut self,
        mut out: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        let due: Vec<((PartyId, usize), Vec<u8>)> = out
            .iter()
            .map(|(p, m)| ((*p, m.len()), m.clone()))
            .collect();
        self.replay(&mut out);
        self.sent.extend(due);
        self.inner.exchange(out, expect)
    }
    fn stats(&self) -> Stats {
        self.inner.stats()
    }
    fn abort(&mut self, reason: &str) {
        self.inner.abort(reason)
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    #[test]
    fn plans_parse() {
        assert_eq!(
            Plan::parse("mul@1+3"),
            Some(Plan {
                kind: Kind::Mul,
                party: 1,
                skip: 3
            })
        );
        assert_eq!(Plan::parse("replay@0").map(|p| p.skip), Some(0));
        assert_eq!(Plan::parse("mul"), None);
        assert_eq!(Plan::parse("nope@1"), None);
        assert_eq!(Plan::parse("mac@x"), None);
    }

    #[test]
    fn a_cheater_fires_once_at_its_point() {
        let mut c = Cheater {
            armed: Some((Kind::Mul, 2)),
        };
        let fired: Vec<bool> = (0..5).map(|_| c.fires(Kind::Mul)).collect();
        assert_eq!(fired, [false, false, true, false, false]);
        assert!(!c.fires(Kind::Open));
    }
}
