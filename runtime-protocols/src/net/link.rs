//! One direction of a link between two parties: the connection a party writes a peer's
//! messages to (it dialed it), or the one it reads that peer's messages from (it accepted
//! it), in plain TCP or TLS over it.
//!
//! Each direction has its own connection, so a round's sending and receiving never share
//! a TLS session: a large message can be written by a thread beside the reads of the same
//! peer's message without a lock, as in plain TCP.

use super::tls::{self, ClientConnection, Fingerprint, ServerConfig, ServerConnection, Tls};
use super::NetError;
use crate::PartyId;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The acceptor's answer once it knows and accepts the dialer.
const ACK: u8 = 0xA5;

/// Plaintext bytes handed to TLS at a time: keeps its buffer of records small.
const TLS_CHUNK: usize = 1 << 16;

/// Where a message's bytes go.
pub(super) enum Outgoing {
    Plain(TcpStream),
    Tls(Box<(ClientConnection, TcpStream)>),
}

/// Where a peer's bytes come from.
pub(super) enum Incoming {
    Plain(TcpStream),
    Tls(Box<(ServerConnection, TcpStream)>),
}

/// How far a message got: written whole, or `n` bytes of header and body taken.
pub(super) enum Sent {
    Done,
    Partly(usize),
}

/// The bytes of `header` then `body` from `at` on, at most `max` of them, contiguous.
fn piece<'a>(header: &'a [u8], body: &'a [u8], at: usize, max: usize) -> &'a [u8] {
    let s = if at < header.len() {
        &header[at..]
    } else {
        &body[at - header.len()..]
    };
    &s[..s.len().min(max)]
}

impl Outgoing {
    pub(super) fn socket(&self) -> &TcpStream {
        match self {
            Outgoing::Plain(s) => s,
            Outgoing::Tls(t) => &t.1,
        }
    }

    /// Writes as much of `header` then `body` as the socket takes now, without blocking.
    pub(super) fn send_now(&mut self, header: &[u8], body: &[u8]) -> std::io::Result<Sent> {
        self.socket().set_nonblocking(true)?;
        let result = self.push(header, body, 0);
        self.socket().set_nonblocking(false)?;
        match result? {
            at if at == header.len() + body.len() && !self.tls_pending() => Ok(Sent::Done),
            at => Ok(Sent::Partly(at)),
        }
    }

    /// Writes the rest of a message [`Outgoing::send_now`] took `at` bytes of (blocking).
    pub(super) fn finish(&mut self, header: &[u8], body: &[u8], at: usize) -> std::io::Result<()> {
        let at = self.push(header, body, at)?;
        debug_assert_eq!(at, header.len() + body.len());
        Ok(())
    }

    fn tls_pending(&self) -> bool {
        matches!(self, Outgoing::Tls(t) if t.0.wants_write())
    }

    /// Writes from `at` on until done or the socket would block; how far it got.
    fn push(&mut self, header: &[u8], body: &[u8], mut at: usize) -> std::io::Result<usize> {
        let total = header.len() + body.len();
        match self {
            Outgoing::Plain(s) => {
                use std::io::IoSlice;
                while at < total {
                    let (h, b) = if at < header.len() {
                        (&header[at..], body)
                    } else {
                        (&header[..0], &body[at - header.len()..])
                    };
                    match s.write_vectored(&[IoSlice::new(h), IoSlice::new(b)]) {
                        Ok(0) => return Err(ErrorKind::WriteZero.into()),
                        Ok(n) => at += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(at)
            }
            Outgoing::Tls(t) => {
                let (conn, sock) = &mut **t;
                loop {
                    // Flush the records made so far, then encrypt the next piece.
                    while conn.wants_write() {
                        match conn.write_tls(sock) {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(at),
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    if at == total {
                        return Ok(at);
                    }
                    let p = piece(header, body, at, TLS_CHUNK);
                    at += conn.writer().write(p)?;
                }
            }
        }
    }

    /// The acceptor's one byte that it took this link.
    fn read_ack(&mut self, deadline: Instant) -> std::io::Result<()> {
        let mut b = [0u8; 1];
        match self {
            Outgoing::Plain(s) => {
                wait_until(s, deadline)?;
                s.read_exact(&mut b)?;
            }
            Outgoing::Tls(t) => {
                let (conn, sock) = &mut **t;
                tls::read_some(conn, sock, &mut b, deadline)?;
            }
        }
        if b[0] != ACK {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "not an acceptance",
            ));
        }
        self.socket().set_read_timeout(None)
    }

    /// Best effort within 200 ms: used for abort frames only.
    pub(super) fn write_briefly(&mut self, frame: &[u8]) {
        let _ = self
            .socket()
            .set_write_timeout(Some(Duration::from_millis(200)));
        let _ = self.finish(frame, &[], 0);
    }
}

impl Incoming {
    /// Reads some bytes (at least one) before `deadline`.
    pub(super) fn read_some(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> std::io::Result<usize> {
        match self {
            Incoming::Plain(s) => {
                wait_until(s, deadline)?;
                match s.read(buf)? {
                    0 => Err(ErrorKind::UnexpectedEof.into()),
                    n => Ok(n),
                }
            }
            Incoming::Tls(t) => {
                let (conn, sock) = &mut **t;
                tls::read_some(conn, sock, buf, deadline)
            }
        }
    }
}

/// Bounds the next read of `s` by `deadline` (`TimedOut` once it has passed).
pub(super) fn wait_until(s: &TcpStream, deadline: Instant) -> std::io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ErrorKind::TimedOut.into());
    }
    s.set_read_timeout(Some(left))
}

/// Connect to party `p` at `addr` before `deadline` (retrying while it does not listen
/// yet), secure the link, and say who this party is.
pub(super) fn dial(
    me: PartyId,
    p: PartyId,
    addr: SocketAddr,
    deadline: Instant,
    wait: Duration,
    tls: Option<&Tls>,
    stop: &AtomicBool,
) -> Result<Outgoing, NetError> {
    loop {
        let sock = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Another link of this party failed: no use waiting for this one.
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                return Err(NetError::ConnectTimeout {
                    party: p,
                    secs: wait.as_secs_f64(),
                    refused: String::new(),
                });
            }
            match TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(1))) {
                Ok(s) => break s,
                // The peer may not listen yet: retry until the deadline.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        match secure(me, p, addr, sock, deadline, tls) {
            Ok(out) => return Ok(out),
            // Closed before a word was said: a relay or proxy whose party is not up yet.
            Err(Attempt::Again) => std::thread::sleep(Duration::from_millis(50)),
            Err(Attempt::Fail(e)) => return Err(e),
        }
    }
}

/// Why one connection attempt did not become a link.
enum Attempt {
    /// The connection closed before the peer said anything: try again.
    Again,
    Fail(NetError),
}

fn closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
            | ErrorKind::BrokenPipe
    )
}

/// Secures a fresh connection to party `p` (TLS, or plain TCP), says which party this is
/// and waits for the acceptor's answer.
fn secure(
    me: PartyId,
    p: PartyId,
    addr: SocketAddr,
    sock: TcpStream,
    deadline: Instant,
    tls: Option<&Tls>,
) -> Result<Outgoing, Attempt> {
    let io = |err: std::io::Error| match closed(&err) {
        true => Attempt::Again,
        false => Attempt::Fail(NetError::Io { party: p, err }),
    };
    sock.set_nodelay(true).map_err(io)?;
    let id = (me as u32).to_le_bytes();
    let Some(tls) = tls else {
        let mut out = Outgoing::Plain(sock);
        out.finish(&id, &[], 0).map_err(io)?;
        out.read_ack(deadline).map_err(io)?;
        return Ok(out);
    };
    let (config, seen) = tls.dialer(p).map_err(Attempt::Fail)?;
    let mut conn = tls::client(config).map_err(Attempt::Fail)?;
    let mut sock = sock;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    sock.set_read_timeout(Some(left)).map_err(io)?;
    sock.set_write_timeout(Some(left)).map_err(io)?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(match seen.get() {
                Some(theirs) => Attempt::Fail(NetError::Refused {
                    addr,
                    why: format!(
                        "it presented certificate {theirs}, but this party pins {} for party {p}",
                        tls.pins()[p]
                    ),
                }),
                None if closed(&e) => Attempt::Again,
                None => Attempt::Fail(NetError::Tls(format!(
                    "the TLS handshake with party {p} at {addr} failed: {e} (does its \
                     configuration pin this party's certificate, {}?)",
                    tls.own_fingerprint()
                ))),
            });
        }
    }
    let mut out = Outgoing::Tls(Box::new((conn, sock)));
    out.finish(&id, &[], 0).map_err(io)?;
    // In TLS 1.3 a client's handshake ends before the server has judged its certificate:
    // the acceptor's one-byte answer says it did.
    out.read_ack(deadline).map_err(|e| {
        Attempt::Fail(NetError::Tls(format!(
            "party {p} at {addr} did not accept this party ({e}): does its configuration pin \
             this party's certificate, {}?",
            tls.own_fingerprint()
        )))
    })?;
    Ok(out)
}

/// A connection accepted from `addr`: secure it and learn which party it is, before
/// `deadline`. `Err` is why it was refused (for the error line if no rightful party comes).
pub(super) fn accept(
    sock: TcpStream,
    addr: SocketAddr,
    members: usize,
    tls: Option<(Arc<ServerConfig>, Vec<Fingerprint>)>,
    deadline: Instant,
) -> Result<(PartyId, Incoming), String> {
    let fail = |e: std::io::Error| format!("{addr}: {e}");
    sock.set_nodelay(true).map_err(fail)?;
    let mut inc = match &tls {
        None => Incoming::Plain(sock),
        Some((config, _)) => {
            let mut conn = tls::server(config.clone()).map_err(|e| e.to_string())?;
            let mut sock = sock;
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            sock.set_read_timeout(Some(left)).map_err(fail)?;
            sock.set_write_timeout(Some(left)).map_err(fail)?;
            while conn.is_handshaking() {
                conn.complete_io(&mut sock)
                    .map_err(|e| match tls::alert_received(&e) {
                        // The dialer judged this party's certificate and refused it.
                        true => format!(
                            "{addr} refused this party's certificate ({e}): does it pin this \
                         party's certificate?"
                        ),
                        false => format!(
                        "{addr}: TLS handshake failed ({e}); its certificate is pinned for no party"
                    ),
                    })?;
            }
            Incoming::Tls(Box::new((conn, sock)))
        }
    };
    let mut id = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        got += inc
            .read_some(&mut id[got..], deadline)
            .map_err(|e| format!("{addr} did not say which party it is ({e})"))?;
    }
    let p = u32::from_le_bytes(id) as usize;
    if p >= members {
        return Err(format!("{addr} claimed to be party {p} of {members}"));
    }
    if let (Some((_, pins)), Incoming::Tls(t)) = (&tls, &inc) {
        let theirs = tls::peer_fingerprint(&t.0);
        if theirs != Some(pins[p]) {
            let shown = theirs.map_or("none".to_string(), |f| f.to_string());
            return Err(format!(
                "{addr} claimed to be party {p} but presented certificate {shown}; party {p} is pinned as {}",
                pins[p]
            ));
        }
    }
    let ack = |e: std::io::Error| format!("{addr}: cannot answer ({e})");
    match &mut inc {
        Incoming::Plain(s) => s.write_all(&[ACK]).map_err(ack)?,
        Incoming::Tls(t) => {
            let (conn, sock) = &mut **t;
            conn.writer().write_all(&[ACK]).map_err(ack)?;
            while conn.wants_write() {
                conn.write_tls(sock).map_err(ack)?;
            }
        }
    }
    Ok((p, inc))
}
