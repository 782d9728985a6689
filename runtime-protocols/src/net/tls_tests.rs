//! Meshes over TLS: they carry what plain TCP carries, a recorded link shows TLS records
//! and no plaintext, a peer with another certificate is refused by name, a flipped byte is
//! caught, and a peer that trickles a frame is cut off. The start-up agreement: other
//! roles, or a replayed start-up, stop every member before a share is sent.

use super::tls::{generate, Fingerprint, Identity, Tls};
use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;

fn hello() -> Hello {
    Hello {
        claim: Vec::new(),
        program: [3; 32],
        protocol: "rep3".into(),
        parties: 3,
        roles: "model owner 0, data owner 1, output to 1".into(),
    }
}

fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(3),
        io: Duration::from_secs(2),
    }
}

/// Three fresh identities and their pins.
fn identities() -> (Vec<String>, Vec<Fingerprint>) {
    let made: Vec<_> = (0..3)
        .map(|i| generate(&format!("party-{i}")).unwrap())
        .collect();
    let pins = made.iter().map(|m| m.fingerprint).collect();
    (made.into_iter().map(|m| m.key_pem).collect(), pins)
}

fn tls(key_pem: &str, pins: &[Fingerprint]) -> Security {
    Security::Tls(Arc::new(Tls::new(
        Identity::from_pem(key_pem.as_bytes()).unwrap(),
        pins.to_vec(),
    )))
}

/// Runs `f` as each of 3 parties on loopback.
fn three<T: Send>(
    security: [Security; 3],
    f: impl Fn(Mesh) -> Result<T, NetError> + Sync,
) -> Vec<Result<T, NetError>> {
    let (addrs, listeners) = loopback(3).unwrap();
    std::thread::scope(|s| {
        let hs: Vec<_> = listeners
            .into_iter()
            .zip(security)
            .enumerate()
            .map(|(i, (l, sec))| {
                let (addrs, f) = (&addrs, &f);
                s.spawn(move || Mesh::establish(i, l, addrs, &hello(), quick(), &sec).and_then(f))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A distinctive message: a secret share would look like this on the wire in plain TCP.
fn pattern(me: usize) -> Vec<u8> {
    (0..1 << 20)
        .map(|i| b"SECRET-SHARE-"[i % 13] ^ me as u8)
        .collect()
}

/// Each party sends the next a large message and a small one.
fn ring_exchange(mut m: Mesh) -> Result<Stats, NetError> {
    let me = m.party();
    let (next, prev) = ((me + 1) % 3, (me + 2) % 3);
    let got = m.exchange(vec![(next, pattern(me))], &[prev])?;
    assert_eq!(got[0].1, pattern(prev));
    let got = m.exchange_sized(vec![(next, vec![1, 2, 3])], &[(prev, 3)])?;
    assert_eq!(got[0].1, vec![1, 2, 3]);
    Ok(m.stats())
}

/// A relay in front of party 1's listener: records what the dialers send it and, with
/// `flip`, flips one bit of the stream at that offset.
struct Relay {
    addr: SocketAddr,
    recorded: Arc<Mutex<Vec<u8>>>,
}

fn relay(target: SocketAddr, flip: Option<usize>) -> Relay {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let rec = recorded.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(2) {
            let Ok(client) = conn else { return };
            let Ok(server) = TcpStream::connect(target) else {
                return;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let rec = rec.clone();
            std::thread::spawn(move || pump(client, server, Some(rec), flip));
            std::thread::spawn(move || pump(s2, c2, None, None));
        }
    });
    Relay { addr, recorded }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    rec: Option<Arc<Mutex<Vec<u8>>>>,
    flip: Option<usize>,
) {
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(f) = flip {
            if (at..at + n).contains(&f) {
                buf[f - at] ^= 0x10;
            }
        }
        if let Some(r) = &rec {
            r.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        at += n;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn tls_meshes_carry_what_plain_ones_carry() {
    let (keys, pins) = identities();
    let sec = [0, 1, 2].map(|i| tls(&keys[i], &pins));
    for (i, r) in three(sec, ring_exchange).into_iter().enumerate() {
        let s = r.unwrap_or_else(|e| panic!("party {i}: {e}"));
        assert_eq!(s.rounds, 2);
        // The counters count frames, not TLS records: the same figures as plain TCP.
        assert_eq!(s.bytes_sent, (4 + (1 << 20) + 4 + 3) as u64);
    }
}

/// The recorded stream of a TLS link is TLS records (a handshake, then application data)
/// and holds no plaintext; the same recording of a plain link shows the message, so the
/// check can fail.
#[test]
fn a_recorded_tls_link_is_tls_not_plaintext() {
    let (keys, pins) = identities();
    for secure in [true, false] {
        let (addrs, listeners) = loopback(3).unwrap();
        let r = relay(addrs[1], None);
        let sec = |i: usize| {
            if secure {
                tls(&keys[i], &pins)
            } else {
                Security::Plain
            }
        };
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = listeners
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    let mut dial = addrs.clone();
                    if i != 1 {
                        dial[1] = r.addr;
                    }
                    let sec = sec(i);
                    s.spawn(move || {
                        Mesh::establish(i, l, &dial, &hello(), quick(), &sec)
                            .and_then(ring_exchange)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            r.unwrap();
        }
        let rec = r.recorded.lock().unwrap().clone();
        // Party 0's message to party 1 crossed the relay.
        let secret = &pattern(0)[..64];
        if secure {
            assert!(rec.len() > 1 << 20, "{} bytes recorded", rec.len());
            assert!(!contains(&rec, secret), "plaintext on a TLS link");
            assert!(!contains(&rec, &[3u8; 32]), "the hello in the clear");
            // A TLS 1.3 ClientHello record opens each connection...
            assert_eq!(&rec[..3], &[0x16, 0x03, 0x01]);
            // ...and application data records carry the rest.
            assert!(contains(&rec, &[0x17, 0x03, 0x03]));
        } else {
            assert!(
                contains(&rec, secret),
                "the relay saw no plaintext: the check is void"
            );
        }
    }
}

/// Whoever answers at party 2's address with another certificate than the pinned one is
/// refused by both dialers, with the address and both fingerprints.
#[test]
fn a_peer_with_another_certificate_is_refused_by_name() {
    let (keys, pins) = identities();
    let (addrs, mut listeners) = loopback(3).unwrap();
    // An impostor holds party 2's address, with a key nobody pinned for party 2.
    let other = generate("impostor").unwrap();
    let mut its_pins = pins.clone();
    its_pins[2] = other.fingerprint;
    let Security::Tls(it) = tls(&other.key_pem, &its_pins) else {
        unreachable!()
    };
    let config = it.acceptor().unwrap();
    let l2 = listeners.pop().unwrap();
    let impostor = std::thread::spawn(move || {
        let mut heard = Vec::new();
        for sock in l2.incoming().take(2).flatten() {
            let addr = sock.peer_addr().unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            let pins = Some((config.clone(), its_pins.clone()));
            heard.push(
                link::accept(sock, addr, 3, pins, deadline)
                    .err()
                    .unwrap_or_default(),
            );
        }
        heard
    });
    let r: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let (addrs, sec) = (&addrs, tls(&keys[i], &pins));
                s.spawn(move || Mesh::establish(i, l, addrs, &hello(), quick(), &sec).map(|_| ()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, e) in r.iter().enumerate() {
        let msg = e
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            msg.starts_with(&format!("refused {}: ", addrs[2]))
                && msg.contains(&format!("presented certificate {}", other.fingerprint))
                && msg.contains(&format!("pins {} for party 2", pins[2])),
            "party {i}: {msg}"
        );
    }
    // The impostor learns that the dialers refused its certificate (their alert), not that
    // it refused theirs.
    for why in impostor.join().unwrap() {
        assert!(why.contains("refused this party's certificate"), "{why}");
    }
}

#[test]
fn a_key_that_is_not_its_own_pin_stops_the_party_before_connecting() {
    let (keys, pins) = identities();
    let sec = tls(&keys[1], &pins);
    let (addrs, mut listeners) = loopback(3).unwrap();
    let e = Mesh::establish(0, listeners.remove(0), &addrs, &hello(), quick(), &sec)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("this party's certificate is") && e.contains("member 0"),
        "{e}"
    );
}

/// A relay that flips one bit of party 0's stream to party 1 after the handshake: party 1
/// stops with a tampering error instead of reading a wrong share.
#[test]
fn a_flipped_byte_on_a_tls_link_is_caught() {
    let (keys, pins) = identities();
    let sec = [0, 1, 2].map(|i| tls(&keys[i], &pins));
    // Both dialers of party 1 cross the relay; the bit flipped lies deep in the first
    // large message of whichever connects first.
    let (a, l) = loopback(3).unwrap();
    let r = relay(a[1], Some(600_000));
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = l
            .into_iter()
            .zip(sec)
            .enumerate()
            .map(|(i, (l, sec))| {
                let mut dial = a.clone();
                if i != 1 {
                    dial[1] = r.addr;
                }
                s.spawn(move || {
                    Mesh::establish(i, l, &dial, &hello(), quick(), &sec).and_then(|mut m| {
                        // Everyone sends party 1 a large message.
                        let me = m.party();
                        if me == 1 {
                            m.exchange(vec![], &[0, 2]).map(|_| ())
                        } else {
                            m.exchange(vec![(1, pattern(me))], &[]).map(|_| ())
                        }
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let msg = results[1]
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        msg.contains("fails authentication") && msg.contains("tampered"),
        "{msg}"
    );
}

/// A peer that announces a frame and then sends it a byte at a time is cut off within the
/// I/O timeout plus the frame's length at the minimum rate, not after a timeout per byte.
#[test]
fn a_trickling_peer_is_cut_off_within_the_round_bound() {
    let start = Instant::now();
    let r = three(
        [Security::Plain, Security::Plain, Security::Plain],
        |mut m| match m.party() {
            2 => {
                let o = link_mut(&mut m.out, 2, 0)?;
                o.finish(&100u32.to_le_bytes(), &[], 0)
                    .map_err(|err| NetError::Io { party: 0, err })?;
                for _ in 0..40 {
                    std::thread::sleep(Duration::from_millis(100));
                    if o.finish(&[0], &[], 0).is_err() {
                        break;
                    }
                }
                Ok(())
            }
            0 => m.exchange(vec![], &[2]).map(|_| ()),
            _ => Ok(()),
        },
    );
    let msg = r[0]
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        msg.contains("party 2 took over 2.0 s to send a message of 100 bytes"),
        "{msg}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

/// A stranger that connects and says nothing holds up no party: the rightful ones connect
/// beside it, and the session starts.
#[test]
fn a_silent_connection_does_not_hold_up_the_others() {
    let (keys, pins) = identities();
    let (addrs, listeners) = loopback(3).unwrap();
    let _silent = TcpStream::connect(addrs[0]).unwrap();
    let sec = [0, 1, 2].map(|i| tls(&keys[i], &pins));
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = listeners
            .into_iter()
            .zip(sec)
            .enumerate()
            .map(|(i, (l, sec))| {
                let addrs = &addrs;
                s.spawn(move || Mesh::establish(i, l, addrs, &hello(), quick(), &sec).map(|_| ()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        r.unwrap();
    }
}

/// A host with a certificate pinned for no party is refused, and named when the rightful
/// party never comes.
#[test]
fn an_unknown_host_is_refused_and_named() {
    let (keys, pins) = identities();
    let (addrs, mut listeners) = loopback(2).unwrap();
    drop(listeners.pop()); // party 1 never starts
    let h = Hello {
        claim: Vec::new(),
        parties: 2,
        ..hello()
    };
    let t = Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(1),
    };
    let sec0 = tls(&keys[0], &pins[..2]);
    let l0 = listeners.remove(0);
    let party0 = std::thread::spawn({
        let (addrs, h) = (addrs.clone(), h.clone());
        move || Mesh::establish(0, l0, &addrs, &h, t, &sec0).map(|_| ())
    });
    // A stranger dials party 0 claiming to be party 1, with its own certificate (it pins
    // party 0's real one, so its side of the handshake would pass).
    let stranger = generate("stranger").unwrap();
    let Security::Tls(st) = tls(&stranger.key_pem, &[pins[0], stranger.fingerprint]) else {
        unreachable!()
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    let dialed = link::dial(
        1,
        0,
        addrs[0],
        deadline,
        Duration::from_secs(1),
        Some(&st),
        &AtomicBool::new(false),
    );
    let mine = dialed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        mine.contains("party 0 at") && mine.contains("did not accept this party"),
        "stranger: {mine}"
    );
    let msg = party0
        .join()
        .unwrap()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("party 1 did not connect")
            && msg.contains("refused meanwhile: 127.0.0.1:")
            && msg.contains("pinned for no party"),
        "{msg}"
    );
}

/// Every member of a session holds the same session id; the next session, on the same
/// keys and program, another (fresh nonces).
#[test]
fn members_agree_on_a_fresh_session_id() {
    let (keys, pins) = identities();
    let ids = |_: ()| {
        let sec = [0, 1, 2].map(|i| tls(&keys[i], &pins));
        three(sec, |m| Ok(m.session_id()))
            .into_iter()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>()
    };
    let (a, b) = (ids(()), ids(()));
    assert!(a.iter().all(|x| *x == a[0]) && b.iter().all(|x| *x == b[0]));
    assert_ne!(a[0], b[0]);
}

/// A member started with other roles is named by every member, with both versions.
#[test]
fn other_roles_stop_every_member_before_a_share() {
    let (keys, pins) = identities();
    let (addrs, listeners) = loopback(3).unwrap();
    let r: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let (addrs, sec) = (&addrs, tls(&keys[i], &pins));
                let mut h = hello();
                if i == 2 {
                    h.roles = "model owner 0, data owner 2, output to 2".into();
                }
                s.spawn(move || Mesh::establish(i, l, addrs, &h, quick(), &sec).map(|_| ()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, e) in r.iter().enumerate() {
        let msg = e
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            msg.contains("runs a different set of roles"),
            "party {i}: {msg}"
        );
        assert!(
            msg.contains("data owner 2") && msg.contains("data owner 1"),
            "party {i}: {msg}"
        );
    }
}

/// Party 2 replays the confirmation of an earlier session (its announcement is fresh, its
/// confirmation stale): both other members stop, naming it, before any share moves.
#[test]
fn a_stale_session_confirmation_stops_the_others() {
    let (keys, pins) = identities();
    let (addrs, listeners) = loopback(3).unwrap();
    let stale = [0x5a; 32];
    let raw: Vec<[u8; 32]> = pins.iter().map(|f| f.0).collect();
    let r: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let (addrs, sec, raw) = (&addrs, tls(&keys[i], &pins), &raw);
                s.spawn(move || {
                    let mut m = Mesh::links(i, l, addrs, quick(), &sec)?;
                    m.agree(&hello(), Some(raw), (i == 2).then_some(stale))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, e) in r.iter().enumerate().take(2) {
        let msg = e
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            msg.starts_with("party 2 confirms another start-up (session 5a5a5a5a5a5a5a5a"),
            "party {i}: {msg}"
        );
    }
}

/// A peer that announces more than its round expects is refused on the header, before
/// anything is allocated: 1 GiB where 3 bytes are due, and a 1 MiB start-up message.
#[test]
fn an_oversized_length_is_refused_before_allocating() {
    let r = three(
        [Security::Plain, Security::Plain, Security::Plain],
        |mut m| match m.party() {
            2 => {
                let o = link_mut(&mut m.out, 2, 0)?;
                o.finish(&(1u32 << 30).to_le_bytes(), &[], 0)
                    .map_err(|err| NetError::Io { party: 0, err })?;
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            }
            0 => m.exchange_sized(vec![], &[(2, 3)]).map(|_| ()),
            _ => Ok(()),
        },
    );
    let msg = r[0]
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        msg.contains("a message of 1073741824 bytes where 3 were due"),
        "{msg}"
    );

    let r = three(
        [Security::Plain, Security::Plain, Security::Plain],
        |mut m| match m.party() {
            1 => m
                .exchange_capped(vec![(0, vec![7u8; 1 << 20])], &[], MAX_HELLO)
                .map(|_| ()),
            0 => m.exchange_capped(vec![], &[1], MAX_HELLO).map(|_| ()),
            _ => Ok(()),
        },
    );
    let msg = r[0]
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        msg.contains("a frame of 1048576 bytes (at most 65536 here)"),
        "{msg}"
    );
}

/// What one member alone states (the data owner's batch) reaches every member, and is
/// part of the session id: a member that heard another claim confirms another digest.
#[test]
fn a_members_claim_reaches_everyone_and_is_bound_into_the_session_id() {
    let (addrs, listeners) = loopback(3).unwrap();
    let got: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let addrs = &addrs;
                s.spawn(move || {
                    let mut h = hello();
                    if i == 1 {
                        h.claim = 8u64.to_le_bytes().to_vec();
                    }
                    let m = Mesh::establish(i, l, addrs, &h, quick(), &Security::Plain).unwrap();
                    (m.claim(1).to_vec(), m.claim(0).to_vec(), m.session_id())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (batch, none, id) in &got {
        assert_eq!(batch.as_slice(), 8u64.to_le_bytes());
        assert!(none.is_empty());
        assert_eq!(*id, got[0].2);
    }
    let nonce = [7; hello::NONCE];
    let mut other = hello();
    other.claim = 9u64.to_le_bytes().to_vec();
    let mut ours = hello();
    ours.claim = 8u64.to_le_bytes().to_vec();
    let id = |h: &Hello| hello::session_id(&[h.encode(&nonce)], None);
    assert_ne!(id(&ours), id(&other));
    // An oversized claim is refused as a malformed announcement.
    let mut big = hello();
    big.claim = vec![0; hello::MAX_CLAIM + 1];
    assert!(hello().check(0, &big.encode(&nonce)).is_err());
    assert!(hello().check(0, &ours.encode(&nonce)).is_ok());
}
