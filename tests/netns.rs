//! Parties on separate hosts: every party (and the dealer) runs in its own network
//! namespace with its own address, joined by veth pairs to a bridge in a hub namespace,
//! all made by the test itself on this machine. Over mutual TLS: a run equals `clear`; a
//! party with the wrong certificate is refused; an unknown host is refused; a relay that
//! flips a byte is caught before any output; a killed party and a cut link stop every
//! other party with a clear error within the configured bound.
//!
//! Where namespaces cannot be made (no root, no `ip`), each test prints why and passes.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PORT: u16 = 7000;
/// The configs' timeouts; every failure must be reported well within [`BOUND`].
const TIMEOUT_S: u64 = 3;
const BOUND: Duration = Duration::from_secs(20);

/// Hosts in namespaces `{prefix}h{i}` at `10.88.0.{i+1}`, joined by a bridge in
/// `{prefix}hub`; removed on drop.
struct Net {
    prefix: String,
    hosts: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("`ip` cannot run: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), stderr(&o).trim()))
    }
}

impl Net {
    /// `None` (with the reason printed) where namespaces cannot be made here.
    fn new(hosts: usize) -> Option<Net> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let net = Net {
            prefix: format!("qmpc{}x{k}", std::process::id()),
            hosts,
        };
        // The first namespace tells whether this machine lets the test make any.
        if let Err(e) = ip(&["netns", "add", &net.hub()]) {
            eprintln!("skipped: cannot create network namespaces here ({e})");
            return None;
        }
        net.build().unwrap_or_else(|e| panic!("{e}"));
        Some(net)
    }

    fn ns(&self, host: usize) -> String {
        format!("{}h{host}", self.prefix)
    }

    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    fn build(&self) -> Result<(), String> {
        let hub = self.hub();
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..self.hosts {
            let ns = self.ns(i);
            ip(&["netns", "add", &ns])?;
            let port = format!("p{i}");
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// `program args…` on host `host`.
    fn command(&self, host: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).arg(program);
        c
    }

    /// Takes host `host`'s cable out of the bridge.
    fn cut(&self, host: usize) {
        ip(&[
            "-n",
            &self.hub(),
            "link",
            "set",
            &format!("p{host}"),
            "down",
        ])
        .expect("cut");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.hub()]);
    }
}

fn addr(host: usize) -> String {
    format!("10.88.0.{}", host + 1)
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = tmp(&format!("netns-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A deployment in `dir`: keys for parties `0..parties` (and the dealer, on host
/// `parties`), and the config every party reads, with party `i` at host `i`'s address.
struct Deployment {
    dir: PathBuf,
    config: PathBuf,
    parties: usize,
}

impl Deployment {
    fn new(dir: &Path, protocol: &str, parties: usize, dealer: bool) -> Deployment {
        let keys = dir.join("keys");
        // Connecting may take a while on a loaded 2-core machine (TLS, a Python relay).
        let mut t = format!(
            "protocol = \"{protocol}\"\nconnect_timeout_s = 10\nio_timeout_s = {TIMEOUT_S}\n"
        );
        for i in 0..parties + usize::from(dealer) {
            let id = if i < parties {
                i.to_string()
            } else {
                "dealer".into()
            };
            let o = qmpc(&["keygen", "--id", &id, "--out", &s(&keys)]);
            assert!(o.status.success(), "{}", stderr(&o));
            let who = if i < parties {
                format!("party-{i}")
            } else {
                "dealer".into()
            };
            let head = if i < parties {
                format!("[[party]]\nid = {i}\n")
            } else {
                "[dealer]\n".into()
            };
            t.push_str(&format!(
                "{head}address = \"{}:{PORT}\"\ncertificate = \"keys/{who}.crt\"\n",
                addr(i)
            ));
        }
        let config = dir.join("parties.toml");
        std::fs::write(&config, t).expect("config");
        Deployment {
            dir: dir.to_path_buf(),
            config,
            parties,
        }
    }

    fn key(&self, who: usize) -> PathBuf {
        match who < self.parties {
            true => self.dir.join(format!("keys/party-{who}.key")),
            false => self.dir.join("keys/dealer.key"),
        }
    }
}

fn qmpc_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qmpc"))
}

/// `qmpc party` as member `who` (the dealer where `who` = parties) on host `host`.
fn start(
    net: &Net,
    d: &Deployment,
    who: usize,
    host: usize,
    config: &Path,
    extra: &[String],
) -> Child {
    let mut c = net.command(host, &qmpc_bin());
    c.arg("party");
    if who < d.parties {
        c.args(["--id", &who.to_string()]);
    } else {
        c.args(["--role", "dealer"]);
    }
    c.args(["--config", &s(config), "--key", &s(&d.key(who))])
        .args(extra)
        .current_dir(&d.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a party")
}

/// Waits for a member within [`BOUND`] of `start`; one still running then is a hang.
fn finish(c: Child, start: Instant) -> Output {
    finish_within(c, start, BOUND)
}

/// LeNet (int8, the corpus) compiled in `dir`, and an input of `rows` rows.
fn lenet(dir: &Path, rows: usize) -> Option<(PathBuf, PathBuf)> {
    let corpus = required_corpus()?;
    let m = corpus.join("models/lenet");
    let prog = dir.join("lenet.qmpc");
    let o = qmpc(&["compile", &s(&m.join("qdq_s8_pc.onnx")), "-o", &s(&prog)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(m.join("ref/qdq_s8_pc/input.npy")).expect("input");
    let a = npy::parse(&bytes).expect("npy");
    let dims = a.dims().to_vec();
    let per: usize = dims[1..].iter().product::<usize>() * 4;
    let data = &bytes[bytes.len() - dims[0] * per..];
    let mut rowsv = Vec::with_capacity(rows * per);
    for i in 0..rows {
        let r = i % dims[0];
        rowsv.extend_from_slice(&data[r * per..(r + 1) * per]);
    }
    let mut shape = dims.clone();
    shape[0] = rows;
    let input = dir.join(format!("x{rows}.npy"));
    std::fs::write(&input, npy::encode("<f4", &shape, &rowsv)).expect("input");
    Some((prog, input))
}

/// The owners' flags: weights for party 0; input and output for party 1.
fn owner_flags(d: &Deployment, who: usize, input: &Path) -> Vec<String> {
    match who {
        0 => vec!["--weights-file".into(), s(&d.dir.join("lenet.qmpw"))],
        1 => vec![
            "--input".into(),
            s(input),
            "--output".into(),
            s(&d.dir.join("out.npy")),
        ],
        _ => vec![],
    }
}

fn clear_output(d: &Deployment, prog: &Path, input: &Path) -> Vec<u8> {
    let out = d.dir.join("clear.npy");
    let o = qmpc(&[
        "run",
        &s(prog),
        "--protocol",
        "clear",
        "--input",
        &s(input),
        "--output",
        &s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read(out).expect("clear output")
}

/// rep3 on three hosts and semi2k with its dealer on a fourth: each run's output equals
/// `clear`'s, nobody prints anything.
#[test]
fn parties_on_separate_hosts_match_clear() {
    let Some(net) = Net::new(4) else { return };
    for (protocol, parties, dealer) in [("rep3", 3, false), ("semi2k", 3, true)] {
        let dir = fresh_dir(&format!("match-{protocol}"));
        let d = Deployment::new(&dir, protocol, parties, dealer);
        let Some((prog, input)) = lenet(&dir, 8) else {
            return;
        };
        let t = Instant::now();
        let members = parties + usize::from(dealer);
        let children: Vec<Child> = (0..members)
            .map(|i| {
                let mut e = vec![s(&prog)];
                e.extend(owner_flags(&d, i, &input));
                start(&net, &d, i, i, &d.config, &e)
            })
            .collect();
        for (i, o) in children.into_iter().map(|c| finish(c, t)).enumerate() {
            assert!(o.status.success(), "{protocol} member {i}: {}", stderr(&o));
            assert!(
                o.stderr.is_empty() && o.stdout.is_empty(),
                "{protocol} member {i} printed"
            );
        }
        assert_eq!(
            std::fs::read(dir.join("out.npy")).expect("output"),
            clear_output(&d, &prog, &input),
            "{protocol}"
        );
    }
}

/// Party 2's host runs with a key nobody pinned for it: both others refuse it, naming
/// its address; an unknown host (a fourth one) that dials party 0 in party 1's name is
/// refused and named when party 1 never comes.
#[test]
fn a_wrong_certificate_and_an_unknown_host_are_refused() {
    let Some(net) = Net::new(4) else { return };
    let dir = fresh_dir("wrong-cert");
    let d = Deployment::new(&dir, "rep3", 3, false);
    let Some((prog, input)) = lenet(&dir, 8) else {
        return;
    };
    // Party 2's key is replaced by one nobody pinned; its own config pins it.
    let other = dir.join("other");
    assert!(qmpc(&["keygen", "--id", "2", "--out", &s(&other)])
        .status
        .success());
    let own = std::fs::read_to_string(&d.config)
        .expect("config")
        .replace("keys/party-2.crt", "other/party-2.crt");
    let own_config = dir.join("party2.toml");
    std::fs::write(&own_config, own).expect("config");
    let t = Instant::now();
    let mut children: Vec<Child> = (0..2)
        .map(|i| {
            let mut e = vec![s(&prog)];
            e.extend(owner_flags(&d, i, &input));
            start(&net, &d, i, i, &d.config, &e)
        })
        .collect();
    let mut c2 = net.command(2, &qmpc_bin());
    c2.args(["party", "--id", "2", "--config", &s(&own_config), "--key"])
        .arg(other.join("party-2.key"))
        .arg(&prog)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    children.push(c2.spawn().expect("spawn"));
    let outs: Vec<Output> = children.into_iter().map(|c| finish(c, t)).collect();
    // Whoever reaches the impostor first names it and leaves; the other honest party may
    // then find that one gone before it reaches the impostor itself (its line says so).
    let mut named = 0;
    for (i, o) in outs.iter().enumerate().take(2) {
        let e = stderr(o);
        assert!(!o.status.success(), "party {i} ran");
        assert_eq!(e.trim_end().lines().count(), 1, "party {i}: {e}");
        // Named as the host at party 2's address (it answered a dial), or as the host
        // whose connection this party refused (it dialed first and left).
        named += usize::from(
            e.contains(&format!("refused {}:{PORT}: it presented", addr(2)))
                || e.contains(&format!("refused meanwhile: {}:", addr(2))),
        );
    }
    assert!(named >= 1, "no party named the impostor's host: {outs:?}");
    assert!(!outs[2].status.success());
    assert!(!dir.join("out.npy").exists());

    // The unknown host: host 3 claims to be party 1 with its own key.
    let stranger = dir.join("stranger");
    assert!(qmpc(&["keygen", "--id", "1", "--out", &s(&stranger)])
        .status
        .success());
    let text = std::fs::read_to_string(&d.config)
        .expect("config")
        .replace("keys/party-1.crt", "stranger/party-1.crt")
        .replace(
            &format!("{}:{PORT}", addr(1)),
            &format!("{}:{PORT}", addr(3)),
        );
    let stranger_config = dir.join("stranger.toml");
    std::fs::write(&stranger_config, text).expect("config");
    let t = Instant::now();
    let mut e0 = vec![s(&prog)];
    e0.extend(owner_flags(&d, 0, &input));
    let c0 = start(&net, &d, 0, 0, &d.config, &e0);
    let mut cs = net.command(3, &qmpc_bin());
    cs.args([
        "party",
        "--id",
        "1",
        "--config",
        &s(&stranger_config),
        "--key",
    ])
    .arg(stranger.join("party-1.key"))
    .args([s(&prog), "--input".into(), s(&input)])
    .current_dir(&dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let cs = cs.spawn().expect("spawn");
    let o0 = finish(c0, t);
    let e = stderr(&o0);
    assert!(!o0.status.success());
    assert!(
        e.contains(&format!("refused meanwhile: {}:", addr(3))) || e.contains("did not connect"),
        "{e}"
    );
    let os = finish(cs, t);
    assert!(!os.status.success());
    assert!(
        stderr(&os).contains("did not accept this party"),
        "{}",
        stderr(&os)
    );
}

/// A man in the middle on host 3 relays party 0's and party 2's links to party 1 and flips
/// one byte deep in the stream: party 1 stops with a tampering error, every party exits
/// non-zero, and no output is written.
#[test]
fn a_relay_that_flips_a_byte_is_caught_before_any_output() {
    let Some(net) = Net::new(4) else { return };
    let dir = fresh_dir("mitm");
    let d = Deployment::new(&dir, "rep3", 3, false);
    let Some((prog, input)) = lenet(&dir, 64) else {
        return;
    };
    let relay_at = format!("{}:{}", addr(3), PORT + 1);
    let mut relay = net.command(3, Path::new("python3"));
    relay
        .arg(root().join("tests/netns/relay.py"))
        .args([
            relay_at.clone(),
            format!("{}:{PORT}", addr(1)),
            "--flip".into(),
            "20000".into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut relay = relay.spawn().expect("python3 runs the relay");
    wait_ready(&mut relay);
    // Parties 0 and 2 reach party 1 through the relay.
    let via = std::fs::read_to_string(&d.config)
        .expect("config")
        .replace(&format!("{}:{PORT}", addr(1)), &relay_at);
    let via_config = dir.join("via-relay.toml");
    std::fs::write(&via_config, via).expect("config");
    let t = Instant::now();
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let mut e = vec![s(&prog)];
            e.extend(owner_flags(&d, i, &input));
            let config = if i == 1 { &d.config } else { &via_config };
            start(&net, &d, i, i, config, &e)
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| finish(c, t)).collect();
    let _ = relay.kill();
    for (i, o) in outs.iter().enumerate() {
        assert!(!o.status.success(), "party {i} finished");
    }
    let e1 = stderr(&outs[1]);
    let all: Vec<String> = outs.iter().map(stderr).collect();
    assert!(
        e1.contains("fails authentication") && e1.contains("tampered"),
        "{all:?}"
    );
    assert!(!dir.join("out.npy").exists(), "an output was written");
}

fn wait_ready(c: &mut Child) {
    use std::io::BufRead;
    let out = c.stdout.take().expect("relay stdout");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("relay output");
    assert_eq!(line.trim(), "ready", "the relay did not start");
}

/// A party killed mid-run, then (in a second run) a link cut mid-run: every other party
/// exits with one clear line within the bound, and no output is written.
#[test]
fn a_killed_party_and_a_cut_link_stop_the_others_in_time() {
    let Some(net) = Net::new(3) else { return };
    let dir = fresh_dir("kill-cut");
    let d = Deployment::new(&dir, "rep3", 3, false);
    let Some((prog, input)) = lenet(&dir, 2048) else {
        return;
    };
    for cut in [false, true] {
        let _ = std::fs::remove_file(dir.join("out.npy"));
        let t = Instant::now();
        let mut children: Vec<Option<Child>> = (0..3)
            .map(|i| {
                let mut e = vec![s(&prog)];
                e.extend(owner_flags(&d, i, &input));
                Some(start(&net, &d, i, i, &d.config, &e))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let hit = Instant::now();
        if cut {
            net.cut(2);
        } else if let Some(mut c) = children[2].take() {
            c.kill().expect("kill party 2");
            let _ = c.wait();
        }
        let mut named = 0;
        for (i, c) in children.into_iter().enumerate() {
            let Some(c) = c else { continue };
            let o = finish(c, t);
            let e = stderr(&o);
            assert!(
                !o.status.success(),
                "cut {cut}: party {i} finished (the run was too short?)"
            );
            assert_eq!(e.trim_end().lines().count(), 1, "cut {cut}: party {i}: {e}");
            // Party 2 is named by a live party; the other may first see that one leave or
            // fall silent (its own line names party 2).
            if i < 2 {
                named += usize::from(e.contains("party 2"));
                assert!(
                    e.contains("party 2")
                        || e.contains("disconnected")
                        || e.contains("sent nothing for 3.0 s"),
                    "cut {cut}: party {i}: {e}"
                );
            }
            let took = hit.elapsed();
            assert!(
                took < Duration::from_secs(3 * TIMEOUT_S + 2),
                "cut {cut}: party {i} took {took:?}"
            );
        }
        assert!(named >= 1, "cut {cut}: no live party named party 2");
        assert!(!dir.join("out.npy").exists());
        if cut {
            ip(&["-n", &net.hub(), "link", "set", "p2", "up"]).expect("reconnect");
        }
    }
}
