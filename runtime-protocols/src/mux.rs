//! Rounds shared by instructions that run at the same time.
//!
//! Each running instruction gets its own copy of the protocol whose transport is a
//! [`Port`]: a round becomes a [`Request`] to the VM, which waits until every running
//! instruction has asked for its next round (or finished), then makes one real exchange
//! with [`exchange_merged`]: per peer, the messages of all requests in request order, in one
//! frame. Every party runs the same instructions in the same order, so the receiver splits
//! a frame by the lengths it expects, and no extra framing is sent.

use crate::net::{NetError, Stats, Transport};
use crate::PartyId;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender};

/// One instruction's messages of one round and the lengths it expects back.
#[derive(Debug, Default)]
pub struct Request {
    pub out: Vec<(PartyId, Vec<u8>)>,
    pub expect: Vec<(PartyId, usize)>,
}

/// What an instruction received in one round, in the order of its `expect`.
pub type Reply = Vec<(PartyId, Vec<u8>)>;

/// What a running instruction tells the VM.
#[derive(Debug)]
pub enum Event {
    /// It waits for this round.
    Round(Request),
    /// It needs the dealer's next chunk of material, which only the VM's own copy of
    /// the protocol reads ([`crate::Core::fetch_material`]); the answer goes back on the
    /// sender.
    Material(Sender<Result<(), String>>),
    /// It has finished (its result is waiting in the VM's own channel).
    Done,
}

/// A running instruction's transport: every round goes to the VM and back.
pub struct Port {
    party: PartyId,
    parties: usize,
    events: Sender<Event>,
    replies: Receiver<Result<Reply, String>>,
}

impl Port {
    /// A port that sends its rounds on `events` and waits for them on `replies`. The VM
    /// answers an error text when the real exchange failed (it reports the failure itself).
    pub fn new(
        party: PartyId,
        parties: usize,
        events: Sender<Event>,
        replies: Receiver<Result<Reply, String>>,
    ) -> Port {
        Port {
            party,
            parties,
            events,
            replies,
        }
    }

    /// How the instruction asks for the dealer's next chunk.
    pub fn fetcher(&self) -> Fetcher {
        Fetcher {
            events: self.events.clone(),
        }
    }

    fn stopped(&self) -> NetError {
        NetError::Garbage {
            party: self.party,
            what: "the run stopped".into(),
        }
    }
}

impl Transport for Port {
    fn party(&self) -> PartyId {
        self.party
    }
    fn parties(&self) -> usize {
        self.parties
    }
    fn exchange(
        &mut self,
        _: Vec<(PartyId, Vec<u8>)>,
        _: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        Err(NetError::Garbage {
            party: self.party,
            what: "a shared round needs the lengths of the messages it expects".into(),
        })
    }
    fn exchange_sized(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[(PartyId, usize)],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        let req = Request {
            out,
            expect: expect.to_vec(),
        };
        self.events
            .send(Event::Round(req))
            .map_err(|_| self.stopped())?;
        match self.replies.recv() {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) | Err(_) => Err(self.stopped()),
        }
    }
    /// Traffic is counted once, on the real transport.
    fn stats(&self) -> Stats {
        Stats::default()
    }
    /// The VM aborts on the real transport.
    fn abort(&mut self, _: &str) {}
}

/// A running instruction's way to have the VM read the dealer's next chunk: the dealer's
/// link is the VM's transport's, which reads one chunk at a time into the inbox every
/// copy shares.
#[derive(Clone, Debug)]
pub struct Fetcher {
    events: Sender<Event>,
}

impl Fetcher {
    /// Ask, and wait until the chunk is read (or the error text why not).
    pub fn fetch(&self) -> Result<(), String> {
        let stopped = || "the run stopped".to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        self.events
            .send(Event::Material(tx))
            .map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }
}

/// One real round for all `requests`: per peer, their messages concatenated in request
/// order into one frame; what arrives is split back by the lengths each request expects.
/// A frame that carries one request's message alone is moved, not copied.
pub fn exchange_merged(
    net: &mut dyn Transport,
    requests: Vec<Request>,
) -> Result<Vec<Reply>, NetError> {
    let mut out: BTreeMap<PartyId, Vec<u8>> = BTreeMap::new();
    let mut expect: Vec<(PartyId, usize)> = Vec::new();
    // How many requests expect something from each peer.
    let mut sharers: BTreeMap<PartyId, usize> = BTreeMap::new();
    let mut wants: Vec<Vec<(PartyId, usize)>> = Vec::with_capacity(requests.len());
    for r in requests {
        for (p, m) in r.out {
            match out.get_mut(&p) {
                Some(frame) => frame.extend_from_slice(&m),
                None => {
                    out.insert(p, m);
                }
            }
        }
        for &(p, n) in &r.expect {
            *sharers.entry(p).or_default() += 1;
            match expect.iter_mut().find(|(q, _)| *q == p) {
                Some((_, total)) => *total += n,
                None => expect.push((p, n)),
            }
        }
        wants.push(r.expect);
    }
    let got = net.exchange_sized(out.into_iter().collect(), &expect)?;
    let mut frames: BTreeMap<PartyId, (Vec<u8>, usize)> =
        got.into_iter().map(|(p, m)| (p, (m, 0))).collect();
    Ok(wants
        .into_iter()
        .map(|want| {
            want.into_iter()
                .map(|(p, n)| {
                    let part = match frames.get_mut(&p) {
                        Some((frame, _)) if sharers[&p] == 1 => std::mem::take(frame),
                        Some((frame, at)) => {
                            let part = frame[*at..*at + n].to_vec();
                            *at += n;
                            part
                        }
                        // The transport returns a frame of the summed length from every peer
                        // in `expect`.
                        None => Vec::new(),
                    };
                    (p, part)
                })
                .collect()
        })
        .collect())
}
