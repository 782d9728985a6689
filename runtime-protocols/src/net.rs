//! Links between parties: one TCP connection per pair, length-prefixed frames, one batched
//! exchange per communication round, byte and round counters, and bounded waits.
//!
//! Architecture invariant: this is the only module of qmpc that touches sockets. Protocols
//! build their messages as bytes and hand a whole round to [`Mesh::exchange`].

use crate::PartyId;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The largest frame a party accepts; anything longer is treated as garbage.
pub const MAX_FRAME: usize = 1 << 31;

/// Bytes of framing before every message (its length, little-endian u32).
pub const FRAME_HEADER: usize = 4;

/// A frame header that announces an abort: a short UTF-8 reason follows (its own u32
/// length first) instead of a message.
const ABORT: u32 = u32::MAX;

/// Why the link to a peer failed. Every variant names the peer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("party {party} did not connect within {secs:.1} s")]
    ConnectTimeout { party: PartyId, secs: f64 },
    #[error("party {party} sent nothing for {secs:.1} s")]
    Timeout { party: PartyId, secs: f64 },
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

/// What every party must agree on before computing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Digest of the public program.
    pub program: [u8; 32],
    pub protocol: String,
    pub parties: usize,
}

impl Hello {
    fn encode(&self) -> Vec<u8> {
        let mut b = self.program.to_vec();
        b.extend((self.parties as u32).to_le_bytes());
        b.extend(self.protocol.as_bytes());
        b
    }

    fn check(&self, party: PartyId, bytes: &[u8]) -> Result<(), NetError> {
        let garbage = || NetError::Garbage {
            party,
            what: "a malformed hello".into(),
        };
        let program: [u8; 32] = bytes
            .get(..32)
            .ok_or_else(garbage)?
            .try_into()
            .map_err(|_| garbage())?;
        let parties = u32::from_le_bytes(
            bytes
                .get(32..36)
                .ok_or_else(garbage)?
                .try_into()
                .map_err(|_| garbage())?,
        );
        let protocol = std::str::from_utf8(&bytes[36..]).map_err(|_| garbage())?;
        if protocol != self.protocol {
            return Err(NetError::Mismatch {
                party,
                what: "protocol",
                ours: self.protocol.clone(),
                theirs: protocol.to_string(),
            });
        }
        if parties as usize != self.parties {
            return Err(NetError::Mismatch {
                party,
                what: "party count",
                ours: self.parties.to_string(),
                theirs: parties.to_string(),
            });
        }
        if program != self.program {
            return Err(NetError::Mismatch {
                party,
                what: "program",
                ours: hex8(&self.program),
                theirs: hex8(&program),
            });
        }
        Ok(())
    }
}

fn hex8(d: &[u8; 32]) -> String {
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
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
        self.links.len()
    }
    fn exchange(
        &mut self,
        out: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        Mesh::exchange(self, out, expect)
    }
    fn stats(&self) -> Stats {
        self.stats
    }
    fn abort(&mut self, reason: &str) {
        let r = &reason.as_bytes()[..reason.len().min(4096)];
        let mut frame = ABORT.to_le_bytes().to_vec();
        frame.extend((r.len() as u32).to_le_bytes());
        frame.extend_from_slice(r);
        for s in self.links.iter_mut().flatten() {
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = s.write_all(&frame);
        }
    }
}

/// One party's links to all others.
pub struct Mesh {
    me: PartyId,
    /// `links[p]` is the connection to party `p` (`None` for `me`).
    links: Vec<Option<TcpStream>>,
    timeouts: Timeouts,
    stats: Stats,
}

impl Mesh {
    /// Connects party `me` to every other party of `addrs` (party `p` listens on `addrs[p]`;
    /// each party dials those with a smaller id), then checks that all agree on `hello`.
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
        let n = addrs.len();
        let deadline = Instant::now() + timeouts.connect;
        let mut links: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        for (p, addr) in addrs.iter().enumerate().take(me) {
            let mut s = dial(p, *addr, deadline, timeouts.connect)?;
            s.write_all(&(me as u32).to_le_bytes())
                .map_err(|err| NetError::Io { party: p, err })?;
            links[p] = Some(s);
        }
        listener
            .set_nonblocking(true)
            .map_err(|err| NetError::Listen {
                addr: addrs[me],
                err,
            })?;
        while links.iter().enumerate().any(|(p, l)| p > me && l.is_none()) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false)
                        .map_err(|err| NetError::Io { party: me, err })?;
                    s.set_read_timeout(Some(timeouts.connect))
                        .map_err(|err| NetError::Io { party: me, err })?;
                    let mut id = [0u8; 4];
                    // An unknown dialer that says nothing useful is dropped, not trusted.
                    if s.read_exact(&mut id).is_err() {
                        continue;
                    }
                    let p = u32::from_le_bytes(id) as usize;
                    if p > me && p < n && links[p].is_none() {
                        links[p] = Some(s);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let party = (me + 1..n).find(|&p| links[p].is_none()).unwrap_or(me);
                        return Err(NetError::ConnectTimeout {
                            party,
                            secs: timeouts.connect.as_secs_f64(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(err) => {
                    return Err(NetError::Listen {
                        addr: addrs[me],
                        err,
                    })
                }
            }
        }
        for (p, l) in links.iter().enumerate() {
            if let Some(s) = l {
                s.set_nodelay(true)
                    .map_err(|err| NetError::Io { party: p, err })?;
                s.set_read_timeout(Some(timeouts.io))
                    .map_err(|err| NetError::Io { party: p, err })?;
            }
        }
        let mut mesh = Mesh {
            me,
            links,
            timeouts,
            stats: Stats::default(),
        };
        let peers: Vec<PartyId> = (0..n).filter(|&p| p != me).collect();
        let msg = hello.encode();
        let got = mesh.exchange(peers.iter().map(|&p| (p, msg.clone())).collect(), &peers)?;
        for (p, bytes) in got {
            hello.check(p, &bytes)?;
        }
        // The handshake is set-up, not computation.
        mesh.stats = Stats::default();
        Ok(mesh)
    }

    pub fn party(&self) -> PartyId {
        self.me
    }

    pub fn parties(&self) -> usize {
        self.links.len()
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
        let mut rest = Vec::new();
        for (p, msg) in &out {
            let s = self.link(*p)?;
            let len = u32::try_from(msg.len()).map_err(|_| NetError::Garbage {
                party: me,
                what: "a message over 4 GiB".into(),
            })?;
            let header = len.to_le_bytes();
            let done = match write_without_blocking(s, &header, msg) {
                Ok(done) => done,
                // A peer that hung up may have said why first.
                Err(e) => {
                    return Err(match write_error(*p, e) {
                        NetError::Disconnected { party } => self.why_gone(party),
                        e => e,
                    })
                }
            };
            if done < FRAME_HEADER + msg.len() {
                let s = s
                    .try_clone()
                    .map_err(|err| NetError::Io { party: *p, err })?;
                rest.push((*p, s, header, msg, done));
            }
        }
        let io = self.timeouts.io;
        let received = std::thread::scope(|scope| {
            let handles: Vec<_> = rest
                .into_iter()
                .map(|(p, mut s, header, msg, done)| {
                    scope.spawn(move || {
                        let body = &msg[done.saturating_sub(FRAME_HEADER)..];
                        s.write_all(&header[done.min(FRAME_HEADER)..])
                            .and_then(|_| s.write_all(body))
                            .map_err(|err| write_error(p, err))
                    })
                })
                .collect();
            let mut got = Vec::with_capacity(expect.len());
            let mut first_err = None;
            for &p in expect {
                match self.link(p).and_then(|s| read_frame(p, s, io)) {
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
                // A peer that hung up may have said why first.
                Some(NetError::Disconnected { party }) => Err(self.why_gone(party)),
                Some(e) => Err(e),
                None => Ok(got),
            }
        })?;
        self.stats.rounds += 1;
        self.stats.bytes_sent += sent;
        self.stats.bytes_received += received
            .iter()
            .map(|(_, m)| (FRAME_HEADER + m.len()) as u64)
            .sum::<u64>();
        Ok(received)
    }

    /// The abort reason a departed peer left in the link, if any; else `Disconnected`.
    fn why_gone(&self, p: PartyId) -> NetError {
        let gone = NetError::Disconnected { party: p };
        let Ok(s) = self.link(p) else { return gone };
        // Skip whatever data frames precede the abort, for a bounded time.
        let wait = Duration::from_millis(300);
        let _ = s.set_read_timeout(Some(wait));
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match read_frame(p, s, wait) {
                Ok(_) => continue,
                Err(e @ NetError::Aborted { .. }) => return e,
                Err(_) => break,
            }
        }
        gone
    }

    fn link(&self, p: PartyId) -> Result<&TcpStream, NetError> {
        self.links
            .get(p)
            .and_then(Option::as_ref)
            .ok_or_else(|| NetError::Garbage {
                party: p,
                what: format!("no link from party {} to party {p}", self.me),
            })
    }
}

fn dial(
    p: PartyId,
    addr: SocketAddr,
    deadline: Instant,
    wait: Duration,
) -> Result<TcpStream, NetError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NetError::ConnectTimeout {
                party: p,
                secs: wait.as_secs_f64(),
            });
        }
        match TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(1))) {
            Ok(s) => return Ok(s),
            // The peer may not listen yet: retry until the deadline.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Writes as much of `header` then `body` as the socket takes now, and how many bytes that
/// was. The socket is blocking again on return (reads of this link rely on it).
fn write_without_blocking(s: &TcpStream, header: &[u8], body: &[u8]) -> std::io::Result<usize> {
    use std::io::IoSlice;
    let mut w = s;
    s.set_nonblocking(true)?;
    let total = header.len() + body.len();
    let mut done = 0;
    let result = loop {
        if done == total {
            break Ok(done);
        }
        let (h, b) = if done < header.len() {
            (&header[done..], body)
        } else {
            (&header[..0], &body[done - header.len()..])
        };
        match w.write_vectored(&[IoSlice::new(h), IoSlice::new(b)]) {
            Ok(0) => break Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(done),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    s.set_nonblocking(false)?;
    result
}

fn write_error(p: PartyId, err: std::io::Error) -> NetError {
    match err.kind() {
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            NetError::Disconnected { party: p }
        }
        _ => NetError::Io { party: p, err },
    }
}

fn read_frame(p: PartyId, mut s: &TcpStream, io: Duration) -> Result<Vec<u8>, NetError> {
    let mut len = [0u8; FRAME_HEADER];
    read_all(p, &mut s, &mut len, io)?;
    if u32::from_le_bytes(len) == ABORT {
        let mut n = [0u8; 4];
        read_all(p, &mut s, &mut n, io)?;
        let n = (u32::from_le_bytes(n) as usize).min(4096);
        let mut reason = vec![0u8; n];
        read_all(p, &mut s, &mut reason, io)?;
        return Err(NetError::Aborted {
            party: p,
            reason: String::from_utf8_lossy(&reason).into_owned(),
        });
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(NetError::Garbage {
            party: p,
            what: format!("a frame of {len} bytes"),
        });
    }
    let mut buf = vec![0u8; len];
    read_all(p, &mut s, &mut buf, io)?;
    Ok(buf)
}

fn read_all(p: PartyId, s: &mut &TcpStream, buf: &mut [u8], io: Duration) -> Result<(), NetError> {
    s.read_exact(buf).map_err(|err| match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => NetError::Timeout {
            party: p,
            secs: io.as_secs_f64(),
        },
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            NetError::Disconnected { party: p }
        }
        _ => NetError::Io { party: p, err },
    })
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
            program: [7; 32],
            protocol: protocol.into(),
            parties: 3,
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
                    let s = m.link(0)?;
                    let mut w = s
                        .try_clone()
                        .map_err(|err| NetError::Io { party: 0, err })?;
                    w.write_all(&(u32::MAX - 1).to_le_bytes())
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
