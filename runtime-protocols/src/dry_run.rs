//! Costs from a protocol's own code: each party's code runs against [`DryRun`], a transport
//! that records what the party sends and answers every message it expects with zeros of
//! the expected length, on shares that hold no data ([`crate::word::Shape`] words).
//!
//! What a party sends depends only on public facts (lengths, bounds, constants, its id),
//! never on the values, so a dry run sends exactly what a real run sends. [`rounds`] lines
//! the parties' records up call by call, which every party makes in lockstep, and checks
//! that every expected message is one its peer sends in that call: a pattern that does not
//! hold together fails here instead of mispredicting.

use crate::cost::{Round, Rounds};
use crate::net::{NetError, Stats, Transport, FRAME_HEADER};
use crate::{PartyId, ProtocolError};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// One `exchange` call of one party: payload bytes sent to and expected from each peer.
#[derive(Clone, Debug, Default)]
struct Call {
    sent: Vec<(PartyId, usize)>,
    expected: Vec<(PartyId, usize)>,
}

/// A party's transport in a dry run.
pub struct DryRun {
    me: PartyId,
    parties: usize,
    calls: Arc<Mutex<Vec<Call>>>,
    stats: Stats,
}

impl Transport for DryRun {
    fn party(&self) -> PartyId {
        self.me
    }
    fn parties(&self) -> usize {
        self.parties
    }
    fn exchange(
        &mut self,
        _: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        // Only sized exchanges say what a peer's answer would be.
        Err(NetError::Garbage {
            party: expect.first().copied().unwrap_or(self.me),
            what: "a message of unknown length in a dry run".into(),
        })
    }
    fn exchange_sized(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[(PartyId, usize)],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        let call = Call {
            sent: out.iter().map(|(p, m)| (*p, m.len())).collect(),
            expected: expect.to_vec(),
        };
        if !call.sent.is_empty() || !call.expected.is_empty() {
            self.stats.rounds += 1;
        }
        for &(_, n) in &call.sent {
            self.stats.bytes_sent += (n + FRAME_HEADER) as u64;
        }
        for &(_, n) in &call.expected {
            self.stats.bytes_received += (n + FRAME_HEADER) as u64;
        }
        self.calls
            .lock()
            .map_err(|_| NetError::Disconnected { party: self.me })?
            .push(call);
        Ok(expect.iter().map(|&(p, n)| (p, vec![0; n])).collect())
    }
    fn stats(&self) -> Stats {
        self.stats
    }
    fn abort(&mut self, _: &str) {}
}

/// The rounds of one step of every party of `parties`: `run(me, transport)` runs party
/// `me`'s code of the step on a data-free twin over the given transport.
pub fn rounds(
    parties: usize,
    run: impl Fn(PartyId, Box<dyn Transport>) -> Result<(), ProtocolError> + Sync,
) -> Result<Rounds, ProtocolError> {
    let party = |me: PartyId| -> Result<Vec<Call>, ProtocolError> {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let net = DryRun {
            me,
            parties,
            calls: calls.clone(),
            stats: Stats::default(),
        };
        run(me, Box::new(net))?;
        let mut calls = calls.lock().map_err(|_| broken(me, "its record"))?;
        Ok(std::mem::take(&mut *calls))
    };
    let logs = (0..parties)
        .into_par_iter()
        .map(party)
        .collect::<Result<Vec<_>, ProtocolError>>()?;
    line_up(&logs)
}

fn broken(party: PartyId, what: &str) -> ProtocolError {
    ProtocolError::Invalid(format!("dry run of party {party}: {what} is unusable"))
}

/// The parties' calls as rounds, each expected message checked against its sender's call.
fn line_up(logs: &[Vec<Call>]) -> Result<Rounds, ProtocolError> {
    let count = logs.first().map_or(0, Vec::len);
    if let Some((p, l)) = logs.iter().enumerate().find(|(_, l)| l.len() != count) {
        return Err(ProtocolError::Invalid(format!(
            "dry run: party {p} makes {} exchanges where party 0 makes {count}",
            l.len()
        )));
    }
    let sent = |from: PartyId, k: usize, to: PartyId| -> usize {
        logs[from][k]
            .sent
            .iter()
            .filter(|(p, _)| *p == to)
            .map(|(_, n)| n)
            .sum()
    };
    (0..count)
        .map(|k| {
            for (to, log) in logs.iter().enumerate() {
                for &(from, want) in &log[k].expected {
                    let got = logs.get(from).map(|_| sent(from, k, to));
                    if got != Some(want) {
                        return Err(ProtocolError::Invalid(format!(
                            "dry run, exchange {k}: party {to} expects {want} bytes from party \
                             {from}, which sends {}",
                            got.unwrap_or(0)
                        )));
                    }
                }
            }
            Ok(Round::of(logs.iter().enumerate().flat_map(|(from, l)| {
                l[k].sent.iter().map(move |&(to, n)| (from, to, n as u64))
            })))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sent: &[(PartyId, usize)], expected: &[(PartyId, usize)]) -> Call {
        Call {
            sent: sent.to_vec(),
            expected: expected.to_vec(),
        }
    }

    #[test]
    fn matching_calls_make_rounds() {
        let logs = vec![
            vec![call(&[(1, 8)], &[]), call(&[], &[(1, 4)])],
            vec![call(&[], &[(0, 8)]), call(&[(0, 4)], &[])],
        ];
        let r = line_up(&logs).unwrap();
        assert_eq!(r, vec![Round::of([(0, 1, 8)]), Round::of([(1, 0, 4)])]);
    }

    #[test]
    fn a_message_nobody_sends_is_an_error() {
        let logs = vec![vec![call(&[(1, 8)], &[])], vec![call(&[], &[(0, 16)])]];
        let e = line_up(&logs).unwrap_err().to_string();
        assert!(
            e.contains("expects 16 bytes from party 0, which sends 8"),
            "{e}"
        );
    }

    #[test]
    fn parties_out_of_step_are_an_error() {
        let logs = vec![vec![call(&[], &[])], vec![]];
        let e = line_up(&logs).unwrap_err().to_string();
        assert!(e.contains("party 1 makes 0 exchanges"), "{e}");
    }
}
