//! Links between parties: one connection per pair and direction (plain TCP, or mutual TLS
//! with pinned certificates: [`tls`]), length-prefixed frames, one batched exchange per
//! communication round, byte and round counters, and bounded waits.
//!
//! Architecture invariant: this is the only module of qmpc that touches sockets. Protocols
//! build their messages as bytes and hand a whole round to [`Mesh::exchange`].

mod hello;
mod link;
pub mod tls;

pub use hello::Hello;

use crate::PartyId;
use link::{Incoming, Outgoing, Sent};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The largest frame a party accepts; anything longer is treated as garbage.
pub const MAX_FRAME: usize = 1 << 31;

/// Bytes of framing before every message (its length, little-endian u32).
pub const FRAME_HEADER: usize = 4;

/// The largest start-up message (the hello with its claim, the plan of a training
/// session): a peer that announces more before the session is agreed is garbage.
pub const MAX_HELLO: usize = 1 << 16;

/// The slowest a peer may send a message once its first byte came: a frame of `n` bytes
/// must arrive within the I/O timeout plus `n / MIN_RATE` seconds, so a peer that trickles
/// bytes cannot hold a round open.
pub const MIN_RATE: f64 = (1 << 20) as f64;

/// A frame header that announces an abort: a short UTF-8 reason follows (its own u32
/// length first) instead of a message.
const ABORT: u32 = u32::MAX;

/// Why the link to a peer failed. Every variant names the peer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("party {party} did not connect within {secs:.1} s{refused}")]
    ConnectTimeout {
        party: PartyId,
        secs: f64,
        /// Why connections that came instead were refused (empty, or "; refused …").
        refused: String,
    },
    #[error("party {party} sent nothing for {secs:.1} s")]
    Timeout { party: PartyId, secs: f64 },
    #[error("party {party} took nothing this party sent for {secs:.1} s")]
    Stalled { party: PartyId, secs: f64 },
    #[error("party {party} took over {secs:.1} s to send a message of {bytes} bytes")]
    TooSlow {
        party: PartyId,
        bytes: usize,
        secs: f64,
    },
    #[error(
        "party {party} confirms another start-up (session {theirs}, this party's {ours}): it \
         saw other announcements, pins other certificates, or replays an earlier session"
    )]
    Session {
        party: PartyId,
        ours: String,
        theirs: String,
    },
    #[error("refused {addr}: {why}")]
    Refused { addr: SocketAddr, why: String },
    #[error("{0}")]
    Tls(String),
    #[error("party {party} disconnected")]
    Disconnected { party: PartyId },
    #[error("party {party} stopped: {reason}")]
    Aborted { party: PartyId, reason: String },
    #[error("party {party} sent garbage: {what}")]
    Garbage { party: PartyId, what: String },
    #[error("party {party} runs a different {what}: {theirs}, this party runs {ours}")]
    Mismatch {
        party: PartyId,
        what: &'static str,
        ours: String,
        theirs: String,
    },
    #[error("cannot listen on {addr}: {err}")]
    Listen {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("link to party {party}: {err}")]
    Io { party: PartyId, err: std::io::Error },
}

/// How long to wait for peers.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For every peer to connect at start-up.
    pub connect: Duration,
    /// For one message of a peer during the computation.
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            io: Duration::from_secs(60),
        }
    }
}

/// Per-party traffic counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rounds in which this party sent or received anything.
    pub rounds: u64,
    /// Bytes written to peers, framing included.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Stats {
    /// The traffic after `before` (an earlier reading of the same counters).
    pub fn since(self, before: Stats) -> Stats {
        Stats {
            rounds: self.rounds - before.rounds,
            bytes_sent: self.bytes_sent - before.bytes_sent,
            bytes_received: self.bytes_received - before.bytes_received,
        }
    }

    /// Both traffics together.
    pub fn plus(self, other: Stats) -> Stats {
        Stats {
            rounds: self.rounds + other.rounds,
            bytes_sent: self.bytes_sent + other.bytes_sent,
            bytes_received: self.bytes_received + other.bytes_received,
        }
    }
}

/// A mesh's traffic as another thread sees it while the computation runs (a progress
/// display): updated after every round, read without stopping the party.
#[derive(Debug, Default)]
pub struct Traffic {
    rounds: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Traffic {
    /// Rounds and bytes sent so far.
    pub fn now(&self) -> (u64, u64) {
        (
            self.rounds.load(Ordering::Relaxed),
            self.bytes_sent.load(Ordering::Relaxed),
        )
    }
}

/// How a protocol reaches its peers: one call per communication round. [`Mesh`] is the TCP
/// implementation; protocols never see sockets.
pub trait Transport: Send {
    fn party(&self) -> PartyId;
    fn parties(&self) -> usize;
    /// Send every message of `out`, then return one message from each party of `expect`,
    /// in that order.
    fn exchange(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError>;
    fn stats(&self) -> Stats;
    /// Tell every peer, best effort, that this party stops and why (no secret in `reason`).
    fn abort(&mut self, reason: &str);

    /// [`Transport::exchange`] where every expected message has a known length in bytes;
    /// a message of another length is garbage. Instructions that share rounds rely on the
    /// lengths to split a peer's frame among them.
    fn exchange_sized(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[(PartyId, usize)],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        let peers: Vec<PartyId> = expect.iter().map(|&(p, _)| p).collect();
        let got = self.exchange(out, &peers)?;
        for ((p, m), (_, n)) in got.iter().zip(expect) {
            if m.len() != *n {
                return Err(NetError::Garbage {
                    party: *p,
                    what: format!("a message of {} bytes where {n} were due", m.len()),
                });
            }
        }
        Ok(got)
    }
}

/// The largest piece of a long message ([`send_long`]): well inside a frame.
pub const PIECE: usize = 1 << 30;

/// The most pieces a long message may announce (1 TiB); more is garbage.
const MAX_PIECES: u32 = 1 << 10;

/// Bytes on the wire of a long message of `len` bytes ([`send_long`]): a 4-byte piece
/// count before the message, cut in pieces of [`PIECE`] bytes, each in its own frame.
pub fn long_message_bytes(len: usize) -> u64 {
    long_bytes_in(len, PIECE)
}

fn long_bytes_in(len: usize, piece: usize) -> u64 {
    let payload = 4 + len;
    (payload + payload.div_ceil(piece) * FRAME_HEADER) as u64
}

/// Send each message of `out` (one per party) as a long message: larger than a frame
/// carries if need be (a dealer's material). Exchange `i` carries piece `i` of every
/// message that has one; the receiver calls [`receive_long`].
pub fn send_long(net: &mut dyn Transport, out: Vec<(PartyId, Vec<u8>)>) -> Result<(), NetError> {
    send_long_in(net, out, PIECE)
}

/// [`receive_long`]'s counterpart with pieces of `piece` bytes (tests use small ones).
fn send_long_in(
    net: &mut dyn Transport,
    out: Vec<(PartyId, Vec<u8>)>,
    size: usize,
) -> Result<(), NetError> {
    let mut payloads: Vec<(PartyId, Vec<u8>)> = Vec::with_capacity(out.len());
    for (to, msg) in out {
        let pieces = (4 + msg.len()).div_ceil(size);
        let count = u32::try_from(pieces)
            .ok()
            .filter(|&c| c <= MAX_PIECES)
            .ok_or_else(|| NetError::Garbage {
                party: net.party(),
                what: format!("a message of {} bytes is too long to send", msg.len()),
            })?;
        // In place: the count goes before the message without copying it to a new buffer
        // (a dealer's message is hundreds of megabytes).
        let mut payload = msg;
        payload.splice(0..0, count.to_le_bytes());
        payloads.push((to, payload));
    }
    let rounds = payloads.iter().map(|(_, m)| m.len().div_ceil(size)).max();
    for i in 0..rounds.unwrap_or(0) {
        let round: Vec<(PartyId, Vec<u8>)> = payloads
            .iter_mut()
            .filter_map(|(to, m)| {
                if i == 0 && m.len() <= size {
                    // The whole message is one piece: send it, do not copy it.
                    return (!m.is_empty()).then(|| (*to, std::mem::take(m)));
                }
                let piece = m.get(i * size..m.len().min((i + 1) * size))?;
                (!piece.is_empty()).then(|| (*to, piece.to_vec()))
            })
            .collect();
        net.exchange(round, &[])?;
    }
    Ok(())
}

/// Receive a long message from `from` ([`send_long`]).
pub fn receive_long(net: &mut dyn Transport, from: PartyId) -> Result<Vec<u8>, NetError> {
    receive_long_in(net, from, PIECE)
}

fn receive_long_in(
    net: &mut dyn Transport,
    from: PartyId,
    size: usize,
) -> Result<Vec<u8>, NetError> {
    let next = |net: &mut dyn Transport| -> Result<Vec<u8>, NetError> {
        Ok(net
            .exchange(Vec::new(), &[from])?
            .into_iter()
            .next()
            .map(|(_, m)| m)
            .unwrap_or_default())
    };
    let garbage = |what: String| NetError::Garbage { party: from, what };
    let mut msg = next(net)?;
    let count = msg
        .get(..4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .ok_or_else(|| garbage(format!("a long message began with {} bytes", msg.len())))?;
    if count == 0 || count > MAX_PIECES {
        return Err(garbage(format!("a long message announced {count} pieces")));
    }
    let first = msg.len();
    msg.drain(..4);
    for i in 1..count {
        if first != size {
            return Err(garbage(format!(
                "a long message's first piece had {first} of {size} bytes and {count} pieces"
            )));
        }
        let piece = next(net)?;
        if piece.is_empty() || piece.len() > size || (i + 1 < count && piece.len() != size) {
            return Err(garbage(format!(
                "piece {} of a long message had {} bytes",
                i + 1,
                piece.len()
            )));
        }
        msg.extend(piece);
    }
    Ok(msg)
}

impl Transport for Mesh {
    fn party(&self) -> PartyId {
        self.me
    }
    fn parties(&self) -> usize {
        self.out.len()
    }
    fn exchange(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        Mesh::exchange(self, out, expect)
    }
    fn exchange_sized(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[(PartyId, usize)],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        let expect: Vec<(PartyId, Option<usize>)> =
            expect.iter().map(|&(p, n)| (p, Some(n))).collect();
        self.round(out, &expect, MAX_FRAME)
    }
    fn stats(&self) -> Stats {
        self.stats
    }
    fn abort(&mut self, reason: &str) {
        let r = &reason.as_bytes()[..reason.len().min(4096)];
        let mut frame = ABORT.to_le_bytes().to_vec();
        frame.extend((r.len() as u32).to_le_bytes());
        frame.extend_from_slice(r);
        for o in self.out.iter_mut().flatten() {
            o.write_briefly(&frame);
        }
    }
}

/// How a mesh's links are secured.
#[derive(Clone)]
pub enum Security {
    /// Plain TCP: `qmpc run`'s parties on loopback, or `qmpc party --insecure`.
    Plain,
    /// Mutual TLS 1.3, every member's certificate pinned.
    Tls(Arc<tls::Tls>),
}

/// One party's links to all others.
pub struct Mesh {
    me: PartyId,
    /// `out[p]` carries this party's messages to party `p` (`None` for `me`).
    out: Vec<Option<Outgoing>>,
    /// `inc[p]` carries party `p`'s messages to this party.
    inc: Vec<Option<Incoming>>,
    timeouts: Timeouts,
    stats: Stats,
    /// [`Mesh::session_id`].
    session: [u8; 32],
    /// Every member's claim in its start-up announcement.
    claims: Vec<Vec<u8>>,
    /// Where [`Mesh::watch`] publishes the counters.
    traffic: Option<Arc<Traffic>>,
}

impl Mesh {
    /// Connects party `me` to every other party of `addrs` (party `p` listens on `addrs[p]`)
    /// over plain TCP, then checks that all agree on `hello`.
    pub fn connect(
        me: PartyId,
        addrs: &[SocketAddr],
        hello: &Hello,
        timeouts: Timeouts,
    ) -> Result<Mesh, NetError> {
        let listener = TcpListener::bind(addrs[me]).map_err(|err| NetError::Listen {
            addr: addrs[me],
            err,
        })?;
        Mesh::with_listener(me, listener, addrs, hello, timeouts)
    }

    /// As [`Mesh::connect`], on a listener already bound to `addrs[me]`.
    pub fn with_listener(
        me: PartyId,
        listener: TcpListener,
        addrs: &[SocketAddr],
        hello: &Hello,
        timeouts: Timeouts,
    ) -> Result<Mesh, NetError> {
        Mesh::establish(me, listener, addrs, hello, timeouts, &Security::Plain)
    }

    /// Every party dials every other for the direction it writes, and accepts the
    /// directions it reads (concurrently, each connection within the connect deadline);
    /// then all check that they agree on `hello`.
    pub fn establish(
        me: PartyId,
        listener: TcpListener,
        addrs: &[SocketAddr],
        hello: &Hello,
        timeouts: Timeouts,
        security: &Security,
    ) -> Result<Mesh, NetError> {
        let mut mesh = Mesh::links(me, listener, addrs, timeouts, security)?;
        let pins = match security {
            Security::Plain => None,
            Security::Tls(t) => Some(t.pins().iter().map(|f| f.0).collect::<Vec<_>>()),
        };
        mesh.agree(hello, pins.as_deref(), None)?;
        Ok(mesh)
    }

    /// The links alone, before the start-up agreement.
    fn links(
        me: PartyId,
        listener: TcpListener,
        addrs: &[SocketAddr],
        timeouts: Timeouts,
        security: &Security,
    ) -> Result<Mesh, NetError> {
        let n = addrs.len();
        let tls = match security {
            Security::Plain => None,
            Security::Tls(t) => Some(t.as_ref()),
        };
        if let Some(t) = tls {
            check_pins(t, me, n)?;
        }
        let accepting = match tls {
            Some(t) => Some((t.acceptor()?, t.pins().to_vec())),
            None => None,
        };
        listener
            .set_nonblocking(true)
            .map_err(|err| NetError::Listen {
                addr: addrs[me],
                err,
            })?;
        let deadline = Instant::now() + timeouts.connect;
        let stop = AtomicBool::new(false);
        let (out, inc) = std::thread::scope(|scope| {
            let acceptor =
                scope.spawn(|| accept_all(me, &listener, addrs, accepting, deadline, &stop));
            // Every peer is dialed at once: a party that finds an impostor and leaves
            // must not keep the others from reaching the impostor too.
            let dials: Vec<_> = (0..n)
                .filter(|&p| p != me)
                .map(|p| {
                    let stop = &stop;
                    scope.spawn(move || {
                        let r = link::dial(me, p, addrs[p], deadline, timeouts.connect, tls, stop);
                        // An impostor explains whatever else fails: the other dials stop
                        // at once. Any other failure lets them run on, since one of them
                        // may still reach an impostor (the better error).
                        if matches!(r, Err(NetError::Refused { .. })) {
                            stop.store(true, Ordering::Relaxed);
                        }
                        (p, r)
                    })
                })
                .collect();
            let mut out: Vec<Option<Outgoing>> = (0..n).map(|_| None).collect();
            let mut failed: Option<NetError> = None;
            for d in dials {
                let (p, r) = d
                    .join()
                    .unwrap_or_else(|_| (me, Err(NetError::Tls("a dialing thread failed".into()))));
                match r {
                    Ok(o) => out[p] = Some(o),
                    // A refusal names an impostor: it wins over whatever failed beside it.
                    Err(e @ NetError::Refused { .. }) => failed = Some(e),
                    Err(e) if failed.is_none() => failed = Some(e),
                    Err(_) => {}
                }
            }
            if failed.is_some() {
                stop.store(true, Ordering::Relaxed);
            }
            let inc = acceptor.join().unwrap_or_else(|_| {
                Err(NetError::Garbage {
                    party: me,
                    what: "the acceptor thread failed".into(),
                })
            });
            let (inc, refused) = inc?;
            let refused = refused.map_or(String::new(), |r| format!("; refused meanwhile: {r}"));
            let missing = (0..n).find(|&p| p != me && inc[p].is_none());
            match (failed, missing) {
                // A dialer that gave up says which strangers came meanwhile.
                (Some(NetError::ConnectTimeout { party, secs, .. }), _) => {
                    Err(NetError::ConnectTimeout {
                        party,
                        secs,
                        refused,
                    })
                }
                (Some(e), _) => Err(e),
                (None, Some(party)) => Err(NetError::ConnectTimeout {
                    party,
                    secs: timeouts.connect.as_secs_f64(),
                    refused,
                }),
                (None, None) => Ok((out, inc)),
            }
        })?;
        for (p, o) in out.iter().enumerate() {
            if let Some(o) = o {
                o.socket()
                    .set_write_timeout(Some(timeouts.io))
                    .map_err(|err| NetError::Io { party: p, err })?;
            }
        }
        Ok(Mesh {
            me,
            out,
            inc,
            timeouts,
            stats: Stats::default(),
            session: [0; 32],
            claims: Vec::new(),
            traffic: None,
        })
    }

    /// Two rounds ([`hello`]): every member's announcement with a fresh nonce, checked
    /// against this member's; then every member's digest of the whole start-up (the
    /// session id), which must equal this member's. `confirm` replaces this member's
    /// digest (tests: a replayed start-up).
    fn agree(
        &mut self,
        hello: &Hello,
        pins: Option<&[[u8; 32]]>,
        confirm: Option<[u8; 32]>,
    ) -> Result<(), NetError> {
        let (me, n) = (self.me, self.parties());
        let peers: Vec<(PartyId, Option<usize>)> =
            (0..n).filter(|&p| p != me).map(|p| (p, None)).collect();
        let mine = hello.encode(&hello::nonce()?);
        let out = peers.iter().map(|&(p, _)| (p, mine.clone())).collect();
        let got = self.round(out, &peers, MAX_HELLO)?;
        let mut all = vec![Vec::new(); n];
        all[me] = mine;
        for (p, bytes) in got {
            hello.check(p, &bytes)?;
            all[p] = bytes;
        }
        self.claims = all.iter().map(|a| Hello::claim_of(a)).collect();
        self.session = hello::session_id(&all, pins);
        let said = confirm.unwrap_or(self.session);
        let sized: Vec<(PartyId, Option<usize>)> =
            peers.iter().map(|&(p, _)| (p, Some(32))).collect();
        let out = peers.iter().map(|&(p, _)| (p, said.to_vec())).collect();
        for (p, theirs) in self.round(out, &sized, 32)? {
            if theirs != self.session {
                let mut t = [0u8; 32];
                t.copy_from_slice(&theirs);
                return Err(NetError::Session {
                    party: p,
                    ours: hello::hex8(&self.session),
                    theirs: hello::hex8(&t),
                });
            }
        }
        // The start-up is set-up, not computation.
        self.stats = Stats::default();
        Ok(())
    }

    /// Publish this mesh's rounds and bytes to `traffic` after every round.
    pub fn watch(&mut self, traffic: Arc<Traffic>) {
        self.traffic = Some(traffic);
    }

    /// The digest of this session's start-up, the same in every member: every
    /// announcement (each with a fresh nonce) and every pinned certificate.
    pub fn session_id(&self) -> [u8; 32] {
        self.session
    }

    /// Member `party`'s claim in its start-up announcement ([`Hello::claim`]): the same
    /// bytes at every member, or the start-up would have stopped.
    pub fn claim(&self, party: PartyId) -> &[u8] {
        self.claims.get(party).map_or(&[], Vec::as_slice)
    }

    pub fn party(&self) -> PartyId {
        self.me
    }

    pub fn parties(&self) -> usize {
        self.out.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// One communication round: sends every message of `out` (one per peer at most), then
    /// returns the message of every peer in `expect`, in the order of `expect`. Sending runs
    /// beside receiving, so large messages in both directions cannot deadlock.
    pub fn exchange(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        let expect: Vec<(PartyId, Option<usize>)> = expect.iter().map(|&p| (p, None)).collect();
        self.round(out, &expect, MAX_FRAME)
    }

    /// [`Mesh::exchange`] of start-up messages: a peer's frame over `max` bytes is
    /// garbage, refused before anything is allocated.
    pub fn exchange_capped(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
        max: usize,
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        let expect: Vec<(PartyId, Option<usize>)> = expect.iter().map(|&p| (p, None)).collect();
        self.round(out, &expect, max)
    }

    /// [`Mesh::exchange`] where a peer's frame must have the expected length where one is
    /// given, and at most `max` bytes otherwise; checked before anything is allocated.
    fn round(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[(PartyId, Option<usize>)],
        max: usize,
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        if out.is_empty() && expect.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.me;
        let sent: u64 = out
            .iter()
            .map(|(_, m)| (FRAME_HEADER + m.len()) as u64)
            .sum();
        // Each frame goes out without blocking as far as the socket's buffer takes it (all
        // of a small one): a thread per message and round cost more than LeNet's whole
        // batch-1 computation. What does not fit is written by a thread beside the reads
        // below, so large messages in both directions cannot deadlock.
        let mut rest: Vec<Unsent> = Vec::new();
        for (p, msg) in &out {
            let len = u32::try_from(msg.len()).map_err(|_| NetError::Garbage {
                party: me,
                what: "a message over 4 GiB".into(),
            })?;
            let header = len.to_le_bytes();
            let link = link_mut(&mut self.out, me, *p)?;
            match link.send_now(&header, msg) {
                Ok(Sent::Done) => {}
                Ok(Sent::Partly(at)) => rest.push(Unsent {
                    to: *p,
                    header,
                    msg,
                    at,
                }),
                // A peer that hung up may have said why first.
                Err(e) => {
                    return Err(match write_error(*p, e, self.timeouts.io) {
                        NetError::Disconnected { party } => self.why_gone(party),
                        e => e,
                    })
                }
            }
        }
        let io = self.timeouts.io;
        let Mesh { out: outs, inc, .. } = self;
        let mut writers: Vec<(&mut Outgoing, &Unsent)> = Vec::new();
        for (p, o) in outs.iter_mut().enumerate() {
            if let (Some(o), Some(u)) = (o.as_mut(), rest.iter().find(|u| u.to == p)) {
                writers.push((o, u));
            }
        }
        let received = std::thread::scope(|scope| {
            let handles: Vec<_> = writers
                .into_iter()
                .map(|(o, u)| {
                    scope.spawn(move || {
                        o.finish(&u.header, u.msg, u.at)
                            .map_err(|e| write_error(u.to, e, io))
                    })
                })
                .collect();
            let mut got = Vec::with_capacity(expect.len());
            let mut first_err = None;
            for &(p, size) in expect {
                match link_mut(inc, me, p).and_then(|s| read_frame(p, s, io, size, max)) {
                    Ok(m) => got.push((p, m)),
                    Err(e) => {
                        first_err = Some(e);
                        break;
                    }
                }
            }
            for h in handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(_) => {
                        first_err.get_or_insert(NetError::Garbage {
                            party: me,
                            what: "a sender thread failed".into(),
                        });
                    }
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(got),
            }
        });
        let received = match received {
            // A peer that hung up may have said why first.
            Err(NetError::Disconnected { party }) => return Err(self.why_gone(party)),
            r => r?,
        };
        self.stats.rounds += 1;
        self.stats.bytes_sent += sent;
        self.stats.bytes_received += received
            .iter()
            .map(|(_, m)| (FRAME_HEADER + m.len()) as u64)
            .sum::<u64>();
        if let Some(t) = &self.traffic {
            t.rounds.store(self.stats.rounds, Ordering::Relaxed);
            t.bytes_sent.store(self.stats.bytes_sent, Ordering::Relaxed);
        }
        Ok(received)
    }

    /// The abort reason a departed peer left in the link, if any; else `Disconnected`.
    fn why_gone(&mut self, p: PartyId) -> NetError {
        let gone = NetError::Disconnected { party: p };
        let Ok(s) = link_mut(&mut self.inc, self.me, p) else {
            return gone;
        };
        // Skip whatever data frames precede the abort, for a bounded time.
        let wait = Duration::from_millis(300);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match read_frame(p, s, wait, None, MAX_FRAME) {
                Ok(_) => continue,
                Err(e @ NetError::Aborted { .. }) => return e,
                Err(_) => break,
            }
        }
        gone
    }
}

/// A message the socket did not take whole at once: `at` bytes of its header and body
/// went out.
struct Unsent<'m> {
    to: PartyId,
    header: [u8; FRAME_HEADER],
    msg: &'m [u8],
    at: usize,
}

/// The link of `links` to or from party `p`.
fn link_mut<T>(links: &mut [Option<T>], me: PartyId, p: PartyId) -> Result<&mut T, NetError> {
    links
        .get_mut(p)
        .and_then(Option::as_mut)
        .ok_or_else(|| NetError::Garbage {
            party: p,
            what: format!("no link between party {me} and party {p}"),
        })
}

/// The configuration pins one certificate per member, this party's own among them.
fn check_pins(t: &tls::Tls, me: PartyId, n: usize) -> Result<(), NetError> {
    if t.pins().len() != n {
        return Err(NetError::Tls(format!(
            "{} certificates are pinned for {n} members",
            t.pins().len()
        )));
    }
    let own = t.own_fingerprint();
    if t.pins()[me] != own {
        return Err(NetError::Tls(format!(
            "this party's certificate is {own}, but the configuration pins {} for it \
             (member {me}): wrong --key, or a stale pin",
            t.pins()[me]
        )));
    }
    Ok(())
}

/// Accept a connection from every other member before `deadline`: each is secured and
/// identified on its own thread, so a peer that connects and says nothing holds up no
/// other. It returns at `deadline`, or at `stop` (this party's dialing failed), with what
/// it has and why the last refused connection was refused.
fn accept_all(
    me: PartyId,
    listener: &TcpListener,
    addrs: &[SocketAddr],
    tls: Option<(Arc<tls::ServerConfig>, Vec<tls::Fingerprint>)>,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Accepted, NetError> {
    let n = addrs.len();
    let mut inc: Vec<Option<Incoming>> = (0..n).map(|_| None).collect();
    let (tx, rx) = mpsc::channel();
    let mut refused: Option<String> = None;
    let missing = |inc: &[Option<Incoming>]| (0..n).find(|&p| p != me && inc[p].is_none());
    while missing(&inc).is_some() {
        if stop.load(Ordering::Relaxed) {
            return Ok((inc, refused));
        }
        let mut idle = true;
        match listener.accept() {
            Ok((sock, addr)) => {
                idle = false;
                let (tx, tls) = (tx.clone(), tls.clone());
                let ready = sock.set_nonblocking(false);
                std::thread::spawn(move || {
                    let r = match ready {
                        Ok(()) => link::accept(sock, addr, n, tls, deadline),
                        Err(e) => Err(format!("{addr}: {e}")),
                    };
                    let _ = tx.send(r);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(err) => {
                return Err(NetError::Listen {
                    addr: addrs[me],
                    err,
                })
            }
        }
        while let Ok(r) = rx.try_recv() {
            idle = false;
            match r {
                Ok((p, link)) if p != me && inc[p].is_none() => inc[p] = Some(link),
                Ok((p, _)) => refused = Some(format!("a second connection claiming party {p}")),
                Err(why) => refused = Some(why),
            }
        }
        if Instant::now() >= deadline {
            return Ok((inc, refused));
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok((inc, refused))
}

/// The accepted links, and why the last refused connection was refused.
type Accepted = (Vec<Option<Incoming>>, Option<String>);

fn write_error(p: PartyId, err: std::io::Error, io: Duration) -> NetError {
    match err.kind() {
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            NetError::Disconnected { party: p }
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => NetError::Stalled {
            party: p,
            secs: io.as_secs_f64(),
        },
        _ => NetError::Io { party: p, err },
    }
}

/// One frame of party `p`: its header within `io`, its body within `io` plus its length
/// at [`MIN_RATE`]; its length checked against `expected` (or `max`) before allocating.
fn read_frame(
    p: PartyId,
    s: &mut Incoming,
    io: Duration,
    expected: Option<usize>,
    max: usize,
) -> Result<Vec<u8>, NetError> {
    let mut len = [0u8; FRAME_HEADER];
    read_all(p, s, &mut len, Instant::now() + io, None, io)?;
    if u32::from_le_bytes(len) == ABORT {
        let deadline = Instant::now() + io;
        let mut n = [0u8; 4];
        read_all(p, s, &mut n, deadline, None, io)?;
        let n = (u32::from_le_bytes(n) as usize).min(4096);
        let mut reason = vec![0u8; n];
        read_all(p, s, &mut reason, deadline, None, io)?;
        return Err(NetError::Aborted {
            party: p,
            reason: printable(&reason),
        });
    }
    let len = u32::from_le_bytes(len) as usize;
    match expected {
        Some(e) if len != e => {
            return Err(NetError::Garbage {
                party: p,
                what: format!("a message of {len} bytes where {e} were due"),
            })
        }
        None if len > max => {
            return Err(NetError::Garbage {
                party: p,
                what: format!("a frame of {len} bytes (at most {max} here)"),
            })
        }
        _ => {}
    }
    let allowed = io + Duration::from_secs_f64(len as f64 / MIN_RATE);
    let mut buf = vec![0u8; len];
    read_all(p, s, &mut buf, Instant::now() + allowed, Some(len), io)?;
    Ok(buf)
}

/// A peer's text as one printable line: control characters (a forged newline, terminal
/// escapes) become `?`.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Fill `buf` from party `p` before `deadline`; `body` is the frame's length when `buf` is
/// a body (a deadline missed there is a slow sender, not a silent one).
fn read_all(
    p: PartyId,
    s: &mut Incoming,
    buf: &mut [u8],
    deadline: Instant,
    body: Option<usize>,
    io: Duration,
) -> Result<(), NetError> {
    let mut got = 0;
    while got < buf.len() {
        // A silent peer is cut off after `io`; a slow one at the frame's deadline.
        let until = deadline.min(Instant::now() + io);
        match s.read_some(&mut buf[got..], until) {
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(err) => {
                let late = Instant::now() >= deadline;
                return Err(match err.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => match body {
                        Some(bytes) if late => NetError::TooSlow {
                            party: p,
                            bytes,
                            secs: (io + Duration::from_secs_f64(bytes as f64 / MIN_RATE))
                                .as_secs_f64(),
                        },
                        _ => NetError::Timeout {
                            party: p,
                            secs: io.as_secs_f64(),
                        },
                    },
                    ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted => NetError::Disconnected { party: p },
                    ErrorKind::InvalidData => NetError::Garbage {
                        party: p,
                        what: format!(
                            "a TLS record that fails authentication ({err}): the link was \
                             tampered with"
                        ),
                    },
                    _ => NetError::Io { party: p, err },
                });
            }
        }
    }
    Ok(())
}

/// `n` free loopback addresses, with their listeners already bound (so no other process can
/// take a port between choosing and binding it).
pub fn loopback(n: usize) -> Result<(Vec<SocketAddr>, Vec<TcpListener>), NetError> {
    let mut addrs = Vec::new();
    let mut listeners = Vec::new();
    for _ in 0..n {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let l = TcpListener::bind(any).map_err(|err| NetError::Listen { addr: any, err })?;
        addrs.push(
            l.local_addr()
                .map_err(|err| NetError::Listen { addr: any, err })?,
        );
        listeners.push(l);
    }
    Ok((addrs, listeners))
}

#[cfg(test)]
mod tls_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// Party 2 sends parties 0 and 1 long messages of every length around the piece size
    /// (16 bytes here); each arrives whole, and the counted bytes equal the formula.
    #[test]
    fn long_messages_arrive_whole_in_pieces() {
        const SIZE: usize = 16;
        for (a, b) in [(0, 0), (1, 11), (12, 13), (28, 29), (44, 100)] {
            let msgs = |len: usize, tag: u8| (0..len).map(|i| i as u8 ^ tag).collect::<Vec<u8>>();
            let got = three([hello("x"), hello("x"), hello("x")], |mut m| {
                if m.party() == 2 {
                    send_long_in(&mut m, vec![(0, msgs(a, 1)), (1, msgs(b, 2))], SIZE)?;
                    return Ok((Vec::new(), m.stats().bytes_sent));
                }
                Ok((receive_long_in(&mut m, 2, SIZE)?, 0))
            });
            let got: Vec<(Vec<u8>, u64)> = got.into_iter().map(|r| r.unwrap()).collect();
            assert_eq!(got[0].0, msgs(a, 1), "{a}");
            assert_eq!(got[1].0, msgs(b, 2), "{b}");
            assert_eq!(got[2].1, long_bytes_in(a, SIZE) + long_bytes_in(b, SIZE));
        }
        assert_eq!(long_bytes_in(12, SIZE), 16 + 4);
        assert_eq!(long_bytes_in(13, SIZE), 17 + 8);
    }

    fn hello(protocol: &str) -> Hello {
        Hello {
            claim: Vec::new(),
            program: [7; 32],
            protocol: protocol.into(),
            parties: 3,
            roles: "model owner 0".into(),
        }
    }

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            io: Duration::from_secs(2),
        }
    }

    /// Runs `f` as each of 3 parties on loopback; returns each party's result.
    fn three<T: Send>(
        hellos: [Hello; 3],
        f: impl Fn(Mesh) -> Result<T, NetError> + Sync,
    ) -> Vec<Result<T, NetError>> {
        let (addrs, listeners) = loopback(3).unwrap();
        std::thread::scope(|s| {
            let hs: Vec<_> = listeners
                .into_iter()
                .zip(hellos)
                .enumerate()
                .map(|(i, (l, h))| {
                    let (addrs, f) = (&addrs, &f);
                    s.spawn(move || Mesh::with_listener(i, l, addrs, &h, quick()).and_then(f))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn exchange_counts_rounds_and_bytes() {
        let r = three([hello("rep3"), hello("rep3"), hello("rep3")], |mut m| {
            let me = m.party();
            let next = (me + 1) % 3;
            let prev = (me + 2) % 3;
            // A large message each way checks that sending beside receiving cannot deadlock.
            let big = vec![me as u8; 8 << 20];
            let got = m.exchange(vec![(next, big)], &[prev])?;
            assert_eq!(got[0].0, prev);
            assert!(got[0].1.iter().all(|&b| b == prev as u8));
            let got = m.exchange(vec![(next, vec![1, 2, 3])], &[prev])?;
            assert_eq!(got[0].1, vec![1, 2, 3]);
            Ok(m.stats())
        });
        for s in r {
            let s = s.unwrap();
            assert_eq!(s.rounds, 2);
            assert_eq!(s.bytes_sent, (4 + (8 << 20) + 4 + 3) as u64);
            assert_eq!(s.bytes_received, s.bytes_sent);
        }
    }

    #[test]
    fn mismatched_protocol_is_named_on_every_party() {
        let r = three([hello("rep3"), hello("rep3"), hello("semi2k")], |m| {
            Ok(m.stats())
        });
        for (i, e) in r.into_iter().enumerate() {
            let msg = e.unwrap_err().to_string();
            assert!(msg.contains("different protocol"), "party {i}: {msg}");
        }
    }

    #[test]
    fn missing_party_times_out_with_its_id() {
        let (addrs, mut listeners) = loopback(3).unwrap();
        drop(listeners.pop()); // party 2 never starts
        let start = Instant::now();
        let r: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = listeners
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    let addrs = &addrs;
                    s.spawn(move || {
                        Mesh::with_listener(i, l, addrs, &hello("rep3"), quick()).map(|_| ())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(start.elapsed() < Duration::from_secs(6));
        let e0 = r[0].as_ref().unwrap_err().to_string();
        assert!(e0.contains("party 2 did not connect"), "{e0}");
    }

    #[test]
    fn garbage_and_disconnects_are_named() {
        let r = three([hello("rep3"), hello("rep3"), hello("rep3")], |mut m| {
            match m.party() {
                // Party 2 announces an absurd frame to party 0, then leaves.
                2 => {
                    link_mut(&mut m.out, 2, 0)?
                        .finish(&(u32::MAX - 1).to_le_bytes(), &[], 0)
                        .map_err(|err| NetError::Io { party: 0, err })?;
                    Ok(())
                }
                _ => m.exchange(vec![], &[2]).map(|_| ()),
            }
        });
        let e0 = r[0].as_ref().unwrap_err().to_string();
        assert!(e0.contains("party 2 sent garbage"), "{e0}");
        let e1 = r[1].as_ref().unwrap_err().to_string();
        assert!(e1.contains("party 2 disconnected"), "{e1}");
    }
}
