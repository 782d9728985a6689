//! `qmpc party`: three processes on 127.0.0.1, and the ways a run can go wrong (a party
//! that never connects, one that dies, one that sends garbage, one with other bytecode);
//! then `qmpc party --train`, the training session as processes.
//! Every failure must end every live party with a clear error within the configured bound.

mod common;
use common::*;
use qmpc_protocols::net::{tls, Hello, Mesh, Security, Timeouts};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODEL: &str = "models/tiny_mlp/qop_s8_pt.onnx";
const INPUT: &str = "models/tiny_mlp/ref/qop_s8_pt/input.npy";
/// Every failure must be reported well within this (the configured timeouts are 3 s).
const BOUND: Duration = Duration::from_secs(25);

fn s(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = tmp(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Free loopback ports (bound, then released for the parties to take).
fn ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

fn write_config(dir: &Path, ports: &[u16]) -> PathBuf {
    write_config_for(dir, ports, "rep3")
}

fn write_config_for(dir: &Path, ports: &[u16], protocol: &str) -> PathBuf {
    let mut t = format!("protocol = \"{protocol}\"\nconnect_timeout_s = 3\nio_timeout_s = 3\n");
    t.push_str("[roles]\nmodel_owner = 0\ndata_owner = 1\noutput_to = 1\n");
    t.push_str(&members(dir, ports, None));
    let path = dir.join("parties.toml");
    std::fs::write(&path, t).expect("write config");
    path
}

/// The `[[party]]` entries (and `[dealer]`) of a config in `dir`, each with the certificate
/// `qmpc keygen` made for it in `dir/keys`, as operators set them up (docs/deploy.md).
fn members(dir: &Path, parties: &[u16], dealer: Option<u16>) -> String {
    let keys = dir.join("keys");
    let mut t = String::new();
    let pin = |who: String, id: &str| {
        if !keys.join(format!("{who}.key")).exists() {
            let o = qmpc(&["keygen", "--id", id, "--out", &s(&keys)]);
            assert!(o.status.success(), "{}", stderr(&o));
        }
        format!("certificate = \"keys/{who}.crt\"\n")
    };
    for (i, p) in parties.iter().enumerate() {
        t.push_str(&format!(
            "[[party]]\nid = {i}\naddress = \"127.0.0.1:{p}\"\n"
        ));
        t.push_str(&pin(format!("party-{i}"), &i.to_string()));
    }
    if let Some(p) = dealer {
        t.push_str(&format!("[dealer]\naddress = \"127.0.0.1:{p}\"\n"));
        t.push_str(&pin("dealer".into(), "dealer"));
    }
    t
}

/// `--key` for party `id` (or the dealer) of the config at `config`.
fn key_args(config: &Path, id: Option<usize>) -> [String; 2] {
    let who = id.map_or("dealer".to_string(), |i| format!("party-{i}"));
    let dir = config.parent().expect("the config's directory");
    [
        "--key".into(),
        s(&dir.join("keys").join(format!("{who}.key"))),
    ]
}

/// Compile `model` into `dir/model.qmpc` (+ `.qmpw`).
fn compile_into(dir: &Path, model: &str) -> PathBuf {
    let out = dir.join("model.qmpc");
    let o = qmpc(&["compile", &s(&root().join(model)), "-o", &s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

fn spawn(dir: &Path, args: &[String], trace: Option<&Path>) -> Child {
    spawn_with(dir, args, trace, &[])
}

/// [`spawn`] with environment variables (`QMPC_CHEAT` for a corrupted party).
fn spawn_with(dir: &Path, args: &[String], trace: Option<&Path>, env: &[(&str, &str)]) -> Child {
    let mut c = match trace {
        Some(t) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-e", "trace=open,openat,creat", "-o", &s(t)]);
            c.arg(env!("CARGO_BIN_EXE_qmpc"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_qmpc")),
    };
    c.args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qmpc party")
}

/// Waits for a party within `BOUND`; a party still running then is a hang.
fn finish(c: Child, start: Instant) -> Output {
    finish_within(c, start, BOUND)
}

fn party_args(id: usize, config: &Path, program: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "party".into(),
        "--id".into(),
        id.to_string(),
        "--config".into(),
        s(config),
        s(program),
    ];
    a.extend(key_args(config, Some(id)));
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

/// Starts the model owner (0) and the data owner (1) from `dir`.
fn spawn_owners(dir: &Path, config: &Path, program: &Path) -> [Child; 2] {
    let input = s(&root().join(INPUT));
    [
        spawn(
            dir,
            &party_args(0, config, program, &["--weights-file", "model.qmpw"]),
            None,
        ),
        spawn(
            dir,
            &party_args(1, config, program, &["--input", &input]),
            None,
        ),
    ]
}

/// The output a party wrote equals the one-process `clear` run's.
fn assert_matches_clear(base: &Path, program: &Path, input: &Path, written: &Path) {
    let clear = base.join("clear.npy");
    let o = qmpc(&[
        "run",
        &s(program),
        "--protocol",
        "clear",
        "--input",
        &s(input),
        "--output",
        &s(&clear),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(written).expect("the data owner's output"),
        std::fs::read(&clear).expect("clear output")
    );
}

fn strace_works() -> bool {
    Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn three_processes_match_clear_and_keep_secrets_where_they_belong() {
    let base = fresh_dir("three-processes");
    let dirs: Vec<PathBuf> = (0..3).map(|i| base.join(format!("p{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).expect("party dir");
    }
    // Only the model owner's directory holds the weights.
    let program = compile_into(&dirs[0], MODEL);
    for d in &dirs[1..] {
        std::fs::copy(&program, d.join("model.qmpc")).expect("copy program");
    }
    let input = root().join(INPUT);
    let config = write_config(&base, &ports(3));
    let trace = strace_works();
    let traces: Vec<PathBuf> = (0..3).map(|i| base.join(format!("trace{i}"))).collect();
    let start = Instant::now();
    let extra: [Vec<String>; 3] = [
        vec!["--weights-file".into(), "model.qmpw".into()],
        vec![
            "--input".into(),
            s(&input),
            "--output".into(),
            "out.npy".into(),
        ],
        vec![],
    ];
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let e: Vec<&str> = extra[i].iter().map(String::as_str).collect();
            let prog = dirs[i].join("model.qmpc");
            spawn(
                &dirs[i],
                &party_args(i, &config, &prog, &e),
                trace.then_some(traces[i].as_path()),
            )
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| finish(c, start)).collect();
    for (i, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "party {i}: {}", stderr(o));
        // Nothing a party prints may carry data: the parties print nothing at all.
        assert!(
            o.stdout.is_empty() && o.stderr.is_empty(),
            "party {i} printed"
        );
    }
    // The output equals the one-process clear run, and only the data owner wrote one.
    assert_matches_clear(&base, &program, &input, &dirs[1].join("out.npy"));
    for (i, d) in dirs.iter().enumerate() {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let want: &[&str] = match i {
            0 => &["model.qmpc", "model.qmpw"],
            1 => &["model.qmpc", "out.npy"],
            _ => &["model.qmpc"],
        };
        assert_eq!(names, want, "party {i}'s directory");
    }
    if trace {
        // The system calls say who opened what.
        let opened = |i: usize, what: &str| {
            std::fs::read_to_string(&traces[i])
                .expect("trace")
                .lines()
                .any(|l| l.contains(what) && !l.contains("ENOENT"))
        };
        assert!(opened(0, "model.qmpw"));
        assert!(!opened(1, "qmpw") && !opened(2, "qmpw"));
        assert!(opened(1, "out.npy"));
        assert!(!opened(0, "out.npy") && !opened(2, "out.npy"));
        assert!(!opened(0, "input.npy") && !opened(2, "input.npy"));
    } else {
        eprintln!("strace is unavailable: checked the party directories only");
    }
}

#[test]
fn a_party_that_never_connects_is_named() {
    let base = fresh_dir("missing-party");
    let program = compile_into(&base, MODEL);
    let config = write_config(&base, &ports(3));
    let start = Instant::now();
    for (i, c) in spawn_owners(&base, &config, &program)
        .into_iter()
        .enumerate()
    {
        let o = finish(c, start);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("party 2 did not connect within 3.0 s") && e.lines().count() == 1,
            "party {i}: {e}"
        );
    }
}

/// `qmpc` restarts itself with mimalloc's settings (`src/alloc.rs`): a party waiting for
/// its peers has them in its environment, and a value the user set is kept.
#[test]
fn a_party_runs_with_the_allocators_settings() {
    let base = fresh_dir("allocator-settings");
    let program = compile_into(&base, MODEL);
    let rep3 = write_config(&base, &ports(3));
    std::fs::create_dir_all(base.join("shamir")).expect("temp dir");
    let shamir = write_config_for(&base.join("shamir"), &ports(3), "shamir");
    // `shamir` asks to hand freed memory back after a second (`Spec::purge_after_ms`).
    for (config, name, default, given) in [
        (&rep3, "MIMALLOC_PURGE_DELAY", "-1", "250"),
        (&rep3, "MIMALLOC_ALLOW_THP", "0", "1"),
        (&shamir, "MIMALLOC_PURGE_DELAY", "1000", "250"),
    ] {
        for (set, want) in [(None, default), (Some(given), given)] {
            let env: Vec<(&str, &str)> = set.map(|v| (name, v)).into_iter().collect();
            let mut c = spawn_with(&base, &party_args(2, config, &program, &[]), None, &env);
            // The party waits up to 3 s for peers that never come: read its environment then.
            let seen = environment_variable(&c, name);
            let _ = c.kill();
            let _ = c.wait();
            assert_eq!(
                seen.as_deref(),
                Some(want),
                "{name} set to {set:?} in {config:?}"
            );
        }
    }
}

/// `name` in `c`'s environment, once it has restarted with it (within 2 s).
fn environment_variable(c: &std::process::Child, name: &str) -> Option<String> {
    let environ = format!("/proc/{}/environ", c.id());
    let prefix = format!("{name}=");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if let Ok(b) = std::fs::read(&environ) {
            let vars = String::from_utf8_lossy(&b).into_owned();
            if let Some(v) = vars.split('\0').find_map(|v| v.strip_prefix(&prefix)) {
                return Some(v.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Plays party 2 by hand: connects and says hello (the batch is the data owner's claim in
/// its announcement), exchanges keys, then either hangs up or sends `garbage`.
fn fake_party_2(dir: &Path, program: &Path, config_ports: &[u16], garbage: Option<Vec<u8>>) {
    let bytes = std::fs::read(program).expect("program");
    let p = qmpc_vm::bytecode::Program::from_bytes(&bytes).expect("program");
    let hello = Hello {
        claim: Vec::new(),
        program: p.digest(),
        protocol: "rep3".into(),
        parties: 3,
        roles: "model owner 0, data owner 1, output to 1".into(),
    };
    let addrs: Vec<_> = config_ports
        .iter()
        .map(|p| ([127, 0, 0, 1], *p).into())
        .collect();
    // It holds party 2's key: a real party that misbehaves, not an impostor.
    let keys = dir.join("keys");
    let read = |n: &str| std::fs::read(keys.join(n)).expect("key material");
    let pins = (0..3)
        .map(|i| tls::certificate_fingerprint(&read(&format!("party-{i}.crt"))).expect("pin"))
        .collect();
    let identity = tls::Identity::from_pem(&read("party-2.key")).expect("key");
    let security = Security::Tls(Arc::new(tls::Tls::new(identity, pins)));
    let listener = TcpListener::bind(addrs[2]).expect("listen");
    let mut mesh = Mesh::establish(2, listener, &addrs, &hello, Timeouts::default(), &security)
        .expect("connect");
    mesh.exchange(vec![(0, vec![0u8; 32])], &[1]).expect("keys");
    if let Some(g) = garbage {
        let _ = mesh.exchange(vec![(0, g.clone()), (1, g)], &[]);
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn run_against_fake(name: &str, garbage: Option<Vec<u8>>) -> Vec<String> {
    let base = fresh_dir(name);
    let program = compile_into(&base, MODEL);
    let ports = ports(3);
    let config = write_config(&base, &ports);
    let start = Instant::now();
    let owners = spawn_owners(&base, &config, &program);
    fake_party_2(&base, &program, &ports, garbage);
    owners
        .into_iter()
        .map(|c| {
            let o = finish(c, start);
            assert!(!o.status.success());
            stderr(&o)
        })
        .collect()
}

#[test]
fn a_party_that_dies_mid_run_is_named() {
    let errs = run_against_fake("dead-party", None);
    // Both live parties talk to party 2 in the first rounds.
    for (i, e) in errs.iter().enumerate() {
        assert!(
            e.contains("party 2 disconnected") && e.lines().count() == 1,
            "party {i}: {e}"
        );
    }
}

#[test]
fn a_party_that_sends_garbage_is_named() {
    let errs = run_against_fake("garbage-party", Some(vec![0xAB; 3]));
    // Party 1 reads party 2's message first; party 0 may stop on party 1 leaving instead.
    assert!(
        errs[1].contains("party 2 sent garbage") && errs[1].lines().count() == 1,
        "party 1: {}",
        errs[1]
    );
    assert!(
        errs[0].starts_with("error: party 0: ") && errs[0].lines().count() == 1,
        "party 0: {}",
        errs[0]
    );
}

#[test]
fn different_bytecode_is_an_error_on_every_party() {
    let base = fresh_dir("mismatch");
    let program = compile_into(&base, MODEL);
    let other_dir = base.join("other");
    std::fs::create_dir_all(&other_dir).expect("dir");
    let other = compile_into(&other_dir, "models/tiny_mlp/qop_u8_pt.onnx");
    let config = write_config(&base, &ports(3));
    let start = Instant::now();
    let [c0, c1] = spawn_owners(&base, &config, &program);
    let c2 = spawn(&base, &party_args(2, &config, &other, &[]), None);
    for (i, c) in [c0, c1, c2].into_iter().enumerate() {
        let o = finish(c, start);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("runs a different program") && e.lines().count() == 1,
            "party {i}: {e}"
        );
    }
}

/// A party whose config favours rounds (`favor = "rounds"`) among parties that favour
/// bytes: every party stops at start-up, in one line naming both.
#[test]
fn parties_that_favour_differently_do_not_start() {
    let base = fresh_dir("favor");
    let program = compile_into(&base, MODEL);
    let config = write_config(&base, &ports(3));
    let text = std::fs::read_to_string(&config).expect("config");
    let rounds = base.join("parties-rounds.toml");
    let text = text.replacen(
        "protocol = \"rep3\"\n",
        "protocol = \"rep3\"\nfavor = \"rounds\"\n",
        1,
    );
    assert!(text.contains("favor = \"rounds\""), "{text}");
    std::fs::write(&rounds, text).expect("write config");
    let start = Instant::now();
    let [c0, c1] = spawn_owners(&base, &config, &program);
    let c2 = spawn(&base, &party_args(2, &rounds, &program, &[]), None);
    for (i, c) in [c0, c1, c2].into_iter().enumerate() {
        let o = finish(c, start);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("runs a different protocol")
                && e.contains("rep3 favouring rounds")
                && e.lines().count() == 1,
            "party {i}: {e}"
        );
    }
}

#[test]
fn roles_are_enforced_on_the_command_line() {
    let base = fresh_dir("roles");
    let program = compile_into(&base, MODEL);
    let config = write_config(&base, &ports(3));
    let o = qmpc(
        &party_args(1, &config, &program, &["--weights-file", "model.qmpw"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("party 1 is not the model owner (party 0)"));
    let o = qmpc(
        &party_args(2, &config, &program, &["--output", "x.npy"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(stderr(&o).contains("party 2 does not receive the output"));
    let o = qmpc(&[
        "run",
        &s(&program),
        "--protocol",
        "rep3",
        "--parties",
        "4",
        "--input",
        INPUT,
    ]);
    assert!(stderr(&o).contains("protocol `rep3` runs with 3 parties, not 4"));
}

#[test]
fn semi2k_parties_and_the_dealer_as_processes_match_clear() {
    dealer_and_parties_as_processes("semi2k", None);
}

#[test]
fn fss_parties_and_the_dealer_as_processes_match_clear() {
    dealer_and_parties_as_processes("fss", None);
}

#[test]
fn spdz2k_parties_and_the_dealer_as_processes_match_clear() {
    dealer_and_parties_as_processes("spdz2k", None);
}

/// A corrupted model owner (its own process, told to cheat by `QMPC_CHEAT`) that lies in
/// a product's opening, or replays an earlier message: the honest data owner aborts
/// naming the failed check and writes no output (tests/faults.rs runs every cheat kind).
#[test]
fn a_cheating_spdz2k_process_makes_the_honest_one_abort() {
    dealer_and_parties_as_processes("spdz2k", Some("mul@0"));
    dealer_and_parties_as_processes("spdz2k", Some("replay@0+2"));
}

/// A corrupted `mal-rep3` party (its own process, told to cheat by `QMPC_CHEAT`) makes
/// both honest processes abort with one line naming the failed check, and no output is
/// written: a product share altered by the model owner, a comparison message altered by the
/// party that owns no data, a replayed message.
#[test]
fn a_cheating_mal_rep3_process_makes_the_honest_ones_abort() {
    for (cheat, liar) in [("mul@0", 0), ("compare@2+3", 2), ("replay@2+5", 2)] {
        let base = fresh_dir(&format!("mal-rep3-{}", cheat.replace(['@', '+'], "_")));
        let program = compile_into(&base, MODEL);
        let config = write_config_for(&base, &ports(3), "mal-rep3");
        let input = s(&root().join(INPUT));
        let start = Instant::now();
        let extra: [&[&str]; 3] = [
            &["--weights-file", "model.qmpw"],
            &["--input", &input, "--output", "out.npy"],
            &[],
        ];
        let children: Vec<Child> = (0..3)
            .map(|i| {
                let env: &[(&str, &str)] = if i == liar {
                    &[("QMPC_CHEAT", cheat)]
                } else {
                    &[]
                };
                spawn_with(
                    &base,
                    &party_args(i, &config, &program, extra[i]),
                    None,
                    env,
                )
            })
            .collect();
        let outs: Vec<Output> = children.into_iter().map(|c| finish(c, start)).collect();
        for (i, o) in outs.iter().enumerate().filter(|(i, _)| *i != liar) {
            let err = stderr(o);
            assert!(!o.status.success(), "{cheat}: honest party {i} finished");
            assert!(
                err.contains("check") && err.trim().lines().count() == 1,
                "{cheat}: honest party {i} did not name a check in one line: {err}"
            );
            eprintln!("{cheat}: party {i} said: {}", err.trim());
        }
        assert!(
            !base.join("out.npy").exists(),
            "{cheat}: an output was written"
        );
    }
}

/// Two parties and the dealer of `protocol`, each a `qmpc party` process; with `cheat`,
/// party 0 deviates as `QMPC_CHEAT` says and party 1 must abort.
fn dealer_and_parties_as_processes(protocol: &str, cheat: Option<&str>) {
    let tag = cheat.map_or(String::new(), |c| {
        format!("-{}", c.replace(['@', '+'], "_"))
    });
    let base = fresh_dir(&format!("{protocol}-processes{tag}"));
    let dirs: Vec<PathBuf> = ["p0", "p1", "dealer"]
        .iter()
        .map(|d| base.join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).expect("dir");
    }
    let program = compile_into(&dirs[0], MODEL);
    for d in &dirs[1..] {
        std::fs::copy(&program, d.join("model.qmpc")).expect("copy program");
    }
    let p = ports(3);
    let mut t = format!("protocol = \"{protocol}\"\nconnect_timeout_s = 5\nio_timeout_s = 5\n");
    t.push_str("[roles]\nmodel_owner = 0\ndata_owner = 1\noutput_to = 1\n");
    let without_dealer = base.join("no-dealer.toml");
    std::fs::write(
        &without_dealer,
        format!("{t}{}", members(&base, &p[..2], None)),
    )
    .expect("write config");
    t.push_str(&members(&base, &p[..2], Some(p[2])));
    let config = base.join("parties.toml");
    std::fs::write(&config, &t).expect("write config");
    let input = root().join(INPUT);
    let start = Instant::now();
    let dealer_args: Vec<String> = vec![
        "party".into(),
        "--role".into(),
        "dealer".into(),
        "--config".into(),
        s(&config),
        s(&dirs[2].join("model.qmpc")),
        "--stats".into(),
        "dealer.json".into(),
        key_args(&config, None)[0].clone(),
        key_args(&config, None)[1].clone(),
    ];
    let env: Vec<(&str, &str)> = cheat.map(|c| ("QMPC_CHEAT", c)).into_iter().collect();
    let children = vec![
        spawn_with(
            &dirs[0],
            &party_args(
                0,
                &config,
                &dirs[0].join("model.qmpc"),
                &["--weights-file", "model.qmpw"],
            ),
            None,
            &env,
        ),
        spawn(
            &dirs[1],
            &party_args(
                1,
                &config,
                &dirs[1].join("model.qmpc"),
                &["--input", &s(&input), "--output", "out.npy"],
            ),
            None,
        ),
        spawn(&dirs[2], &dealer_args, None),
    ];
    let outs: Vec<Output> = children.into_iter().map(|c| finish(c, start)).collect();
    if let Some(cheat) = cheat {
        let honest = &outs[1];
        let err = stderr(honest);
        assert!(
            !honest.status.success(),
            "{cheat}: the honest party finished"
        );
        assert!(
            err.contains("check") && err.trim().lines().count() == 1,
            "{cheat}: the honest party did not name a check in one line: {err}"
        );
        assert!(
            !dirs[1].join("out.npy").exists(),
            "{cheat}: an output was written"
        );
        eprintln!("{cheat}: the honest party said: {}", err.trim());
        return;
    }
    for (i, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "process {i}: {}", stderr(o));
        assert!(
            o.stdout.is_empty() && o.stderr.is_empty(),
            "process {i} printed"
        );
    }
    assert_matches_clear(&base, &program, &input, &dirs[1].join("out.npy"));
    let j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dirs[2].join("dealer.json")).expect("dealer stats"),
    )
    .expect("JSON");
    assert!(j["preprocessing"]["bytes_sent"].as_u64().unwrap_or(0) > 0);
    // The dealer holds nothing but the program.
    let key = key_args(&config, None);
    let o = qmpc(&[
        "party",
        "--role",
        "dealer",
        "--config",
        &s(&without_dealer),
        &s(&program),
        &key[0],
        &key[1],
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("needs a dealer"), "{}", stderr(&o));
}

#[test]
fn shamir_parties_as_four_processes_match_clear() {
    let base = fresh_dir("shamir-processes");
    let dirs: Vec<PathBuf> = (0..4).map(|i| base.join(format!("p{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).expect("dir");
    }
    let program = compile_into(&dirs[0], MODEL);
    for d in &dirs[1..] {
        std::fs::copy(&program, d.join("model.qmpc")).expect("copy program");
    }
    let p = ports(4);
    let mut t = String::from("protocol = \"shamir\"\nconnect_timeout_s = 5\nio_timeout_s = 5\n");
    t.push_str("[roles]\nmodel_owner = 0\ndata_owner = 1\noutput_to = 1\n");
    t.push_str(&members(&base, &p, None));
    let config = base.join("parties.toml");
    std::fs::write(&config, &t).expect("write config");
    let input = root().join(INPUT);
    let start = Instant::now();
    let children: Vec<Child> = (0..4)
        .map(|i| {
            let program = dirs[i].join("model.qmpc");
            let extra: Vec<String> = match i {
                0 => vec!["--weights-file".into(), "model.qmpw".into()],
                1 => vec![
                    "--input".into(),
                    s(&input),
                    "--output".into(),
                    "out.npy".into(),
                ],
                _ => Vec::new(),
            };
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            spawn(&dirs[i], &party_args(i, &config, &program, &extra), None)
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| finish(c, start)).collect();
    for (i, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "process {i}: {}", stderr(o));
    }
    assert_matches_clear(&base, &program, &input, &dirs[1].join("out.npy"));
    // No dealer in an honest-majority protocol.
    t.push_str(&format!("[dealer]\naddress = \"127.0.0.1:{}\"\n", p[0]));
    std::fs::write(&config, &t).expect("write config");
    let o = qmpc(&[
        "party",
        "--role",
        "dealer",
        "--config",
        &s(&config),
        &s(&program),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("has no dealer"), "{}", stderr(&o));
}

// `qmpc party --train`: the training session of `qmpc train`, one process per party.

/// Digits cut for a short session in `dir`: owner 1's rows 0..80, owner 2's 80..192, and
/// 100 test rows (held by party 2); `None` where `../shared/data` is absent and skipped.
fn digits_split(dir: &Path) -> Option<()> {
    use common::npy::{self, Array};
    let data = required_data()?;
    let all = dir.join("digits");
    common::unpack_npz(&data.join("digits.npz"), &all);
    let read = |n: &str| npy::read(&all.join(format!("{n}.npy"))).expect("digits array");
    let cut = |x: &Array, y: &Array, a: usize, b: usize, name: &str| {
        let (Array::F32(xd, xv), Array::Int(_, yv, _)) = (x, y) else {
            panic!("digits has float rows and integer labels");
        };
        let row = xd[1];
        std::fs::write(
            dir.join(format!("x_{name}.npy")),
            npy::encode_f32(&[b - a, row], &xv[a * row..b * row]),
        )
        .expect("write rows");
        std::fs::write(
            dir.join(format!("y_{name}.npy")),
            npy::encode_ints("<i8", &[b - a], &yv[a..b]),
        )
        .expect("write labels");
    };
    let (x, y) = (read("x_train"), read("y_train"));
    cut(&x, &y, 0, 80, "owner1");
    cut(&x, &y, 80, 192, "owner2");
    let (xt, yt) = (read("x_test"), read("y_test"));
    cut(&xt, &yt, 0, 100, "test");
    Some(())
}

const MLP_FLOAT: &str = "../shared/corpus/models/mlp_digits/float.onnx";

/// The flags of the session every test below trains with.
const SESSION: [&str; 7] = [
    "--train",
    "--batch",
    "64",
    "--lr",
    "0.1",
    "--momentum",
    "0.9",
];

fn train_args(id: Option<usize>, config: &Path, model: &Path, extra: &[String]) -> Vec<String> {
    let mut a: Vec<String> = vec!["party".into()];
    match id {
        Some(i) => a.extend(["--id".into(), i.to_string()]),
        None => a.extend(["--role".into(), "dealer".into()]),
    }
    a.extend(["--config".into(), s(config), s(model)]);
    a.extend(key_args(config, id));
    a.extend(SESSION.iter().map(|x| x.to_string()));
    a.extend(extra.iter().cloned());
    a
}

/// The one-process `clear` session on the same split: what every protocol must give.
fn clear_training(base: &Path) -> (Vec<u8>, String) {
    let out = base.join("clear.onnx");
    let f = |n: &str| s(&base.join(n));
    let out_s = s(&out);
    // `SESSION` without its `--train`.
    let o = qmpc(
        &[
            &[
                "train",
                &s(&root().join(MLP_FLOAT)),
                "--data",
                &format!("1={}", f("x_owner1.npy")),
                "--labels",
                &format!("1={}", f("y_owner1.npy")),
                "--data",
                &format!("2={}", f("x_owner2.npy")),
                "--labels",
                &format!("2={}", f("y_owner2.npy")),
                "--test-data",
                &f("x_test.npy"),
                "--test-labels",
                &f("y_test.npy"),
                "--protocol",
                "clear",
                "-o",
                &out_s,
            ][..],
            &SESSION[1..],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (
        std::fs::read(&out).expect("clear's model"),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Runs one training session as processes: party 0 owns the model (and alone has its
/// weights), parties 1 and 2 (where there are three) own rows, the last party the test
/// rows; the others compile from `qmpc strip`'s architecture.
fn train_as_processes(base: &Path, protocol: &str, parties: usize, dealer: bool) -> Vec<Output> {
    let p = ports(parties + usize::from(dealer));
    let mut t = format!("protocol = \"{protocol}\"\nconnect_timeout_s = 5\nio_timeout_s = 5\n");
    t.push_str(&members(base, &p[..parties], dealer.then(|| p[parties])));
    let config = base.join(format!("{protocol}.toml"));
    std::fs::write(&config, t).expect("write config");
    let arch = base.join("arch.onnx");
    let model = root().join(MLP_FLOAT);
    let o = qmpc(&["strip", &s(&model), "-o", &s(&arch)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f = |n: &str| s(&base.join(n));
    let owns = |k: usize| -> Vec<String> {
        let mut e = vec![];
        if k >= 1 {
            e.extend([
                "--data".into(),
                f(&format!("x_owner{k}.npy")),
                "--labels".into(),
                f(&format!("y_owner{k}.npy")),
            ]);
        }
        e
    };
    let start = Instant::now();
    let mut children = vec![];
    for i in 0..parties {
        let mut extra = owns(i);
        if i == 0 {
            extra.extend(["-o".into(), f(&format!("{protocol}.onnx"))]);
        }
        if i == parties - 1 {
            extra.extend(["--test-data".into(), f("x_test.npy")]);
            extra.extend(["--test-labels".into(), f("y_test.npy")]);
        }
        let m = if i == 0 { &model } else { &arch };
        children.push(spawn(base, &train_args(Some(i), &config, m, &extra), None));
    }
    if dealer {
        let extra = ["--stats".to_string(), f("dealer.json")];
        children.push(spawn(base, &train_args(None, &config, &arch, &extra), None));
    }
    children.into_iter().map(|c| finish(c, start)).collect()
}

/// Three `rep3` processes, two data owners with their own rows, the model owner alone with
/// the weights: the trained file and the test counts are `qmpc train --protocol clear`'s,
/// and only the model owner prints (the counts it is owed, and its progress).
#[test]
fn training_as_processes_writes_what_train_writes() {
    let base = fresh_dir("train-processes");
    let Some(()) = digits_split(&base) else {
        return;
    };
    let (want, printed) = clear_training(&base);
    let outs = train_as_processes(&base, "rep3", 3, false);
    for (i, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "party {i}: {}", stderr(o));
        if i > 0 {
            assert!(
                o.stdout.is_empty() && o.stderr.is_empty(),
                "party {i} printed"
            );
        }
    }
    let got = std::fs::read(base.join("rep3.onnx")).expect("the model owner's file");
    assert!(got == want, "rep3 as processes trained another model");
    assert_eq!(String::from_utf8_lossy(&outs[0].stdout), printed);
    assert!(printed.contains("test accuracy"), "{printed}");
    // Not a terminal: the progress is one line per epoch, not a redrawn one per step.
    let progress = stderr(&outs[0]);
    assert!(
        progress.lines().count() == 1
            && progress.starts_with("epoch 1/1 batch 3/3: ")
            && progress.contains(", test: ")
            && !progress.contains('\r'),
        "{progress:?}"
    );
}

/// `semi2k`'s two parties and its dealer as processes give `clear`'s model (party 1 holds
/// all the rows here: the session is the same as owners 1 and 2 in a row).
#[test]
fn training_with_a_dealer_process_writes_what_train_writes() {
    let base = fresh_dir("train-dealer-processes");
    let Some(()) = digits_split(&base) else {
        return;
    };
    // One owner with both halves, in order.
    use common::npy::{self, Array};
    let rows = |n: &str| npy::read(&base.join(n)).expect("rows");
    let (Array::F32(d1, x1), Array::F32(d2, x2)) = (rows("x_owner1.npy"), rows("x_owner2.npy"))
    else {
        panic!("float rows");
    };
    let (Array::Int(_, y1, _), Array::Int(_, y2, _)) = (rows("y_owner1.npy"), rows("y_owner2.npy"))
    else {
        panic!("integer labels");
    };
    let both = base.join("both");
    std::fs::create_dir_all(&both).expect("dir");
    let n = d1[0] + d2[0];
    let xs: Vec<f32> = x1.iter().chain(&x2).copied().collect();
    let ys: Vec<i64> = y1.iter().chain(&y2).copied().collect();
    std::fs::write(both.join("x_owner1.npy"), npy::encode_f32(&[n, d1[1]], &xs)).expect("w");
    std::fs::write(
        both.join("y_owner1.npy"),
        npy::encode_ints("<i8", &[n], &ys),
    )
    .expect("w");
    for f in ["x_test.npy", "y_test.npy"] {
        std::fs::copy(base.join(f), both.join(f)).expect("copy");
    }
    let (want, _) = clear_training(&base);
    let outs = train_as_processes(&both, "semi2k", 2, true);
    for (i, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "process {i}: {}", stderr(o));
    }
    let got = std::fs::read(both.join("semi2k.onnx")).expect("the model owner's file");
    assert!(got == want, "semi2k as processes trained another model");
    let j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(both.join("dealer.json")).expect("dealer stats"),
    )
    .expect("JSON");
    assert!(j["dealer_bytes_sent"].as_u64().unwrap_or(0) > 0, "{j}");
}

/// A party given another flag or another architecture stops every party before a share
/// is sent, each with one line naming the difference; misplaced roles are refused first.
#[test]
fn a_training_party_with_other_flags_or_model_stops_every_party() {
    let base = fresh_dir("train-mismatch");
    let Some(()) = digits_split(&base) else {
        return;
    };
    let config = write_config(&base, &ports(3));
    let model = root().join(MLP_FLOAT);
    let other = root().join("../shared/corpus/models/lenet/float.onnx");
    let rows = |k: usize| -> Vec<String> {
        vec![
            "--data".into(),
            s(&base.join(format!("x_owner{k}.npy"))),
            "--labels".into(),
            s(&base.join(format!("y_owner{k}.npy"))),
        ]
    };
    let session = |models: [&Path; 3], extra2: &[&str], want: &str| {
        let start = Instant::now();
        let mut e2 = rows(2);
        e2.extend(extra2.iter().map(|x| x.to_string()));
        let extras = [
            vec!["-o".to_string(), s(&base.join("never.onnx"))],
            rows(1),
            e2,
        ];
        let children: Vec<Child> = (0..3)
            .map(|i| {
                spawn(
                    &base,
                    &train_args(Some(i), &config, models[i], &extras[i]),
                    None,
                )
            })
            .collect();
        for (i, o) in children.into_iter().map(|c| finish(c, start)).enumerate() {
            let e = stderr(&o);
            assert!(!o.status.success(), "party {i} trained");
            assert!(e.contains(want), "party {i}: {e}");
            assert_eq!(e.trim_end().lines().count(), 1, "party {i}: {e}");
        }
        assert!(!base.join("never.onnx").exists());
    };
    // Party 2 alone shuffles with seed 7.
    session(
        [&model, &model, &model],
        &["--seed", "7"],
        "trains with --seed",
    );
    session(
        [&model, &model, &other],
        &[],
        "compiled other training programs",
    );
    let refused = |id: &str, extra: &[&str], want: &str| {
        let mut a = vec!["party", "--id", id, "--config"];
        let c = s(&config);
        let m = s(&model);
        let key = key_args(&config, Some(id.parse().expect("an id")));
        a.extend([c.as_str(), m.as_str(), &key[0], &key[1]]);
        a.extend(SESSION);
        a.extend(extra);
        let o = qmpc(&a);
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains(want), "{extra:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    };
    refused("1", &["-o", "x.onnx"], "is not the model owner");
    refused("0", &[], "needs --output");
    refused("1", &["--data", "x.npy"], "--data and --labels go together");
    let (x, y) = (s(&base.join("x_owner1.npy")), s(&base.join("y_owner2.npy")));
    refused(
        "1",
        &["--data", &x, "--labels", &y],
        "--data has 80 rows but its labels 112",
    );
}

// Links: mutual TLS by default, plain TCP only with `--insecure`.

#[test]
fn keygen_writes_a_private_key_and_a_pinnable_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let base = fresh_dir("keygen");
    let keys = base.join("keys");
    let o = qmpc(&["keygen", "--id", "2", "--out", &s(&keys)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let key = keys.join("party-2.key");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
    // The printed fingerprint is the certificate's.
    let crt = std::fs::read(keys.join("party-2.crt")).expect("certificate");
    let f = tls::certificate_fingerprint(&crt).expect("a certificate");
    assert!(out.contains(&format!("fingerprint {f}")), "{out}");
    // A second keygen would change the pin the others hold: refused, nothing replaced.
    let before = std::fs::read(&key).expect("key");
    let o = qmpc(&["keygen", "--id", "2", "--out", &s(&keys)]);
    assert!(
        !o.status.success() && stderr(&o).contains("exists"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&key).expect("key"), before);
    let o = qmpc(&["keygen", "--id", "two", "--out", &s(&keys)]);
    assert!(
        stderr(&o).contains("party number or `dealer`"),
        "{}",
        stderr(&o)
    );
}

/// Without `--key` a party refuses to start (one line saying what to give); with
/// `--insecure` three parties run over plain TCP, each warning once, and match clear.
#[test]
fn plain_tcp_takes_insecure_and_says_so() {
    let base = fresh_dir("insecure");
    let program = compile_into(&base, MODEL);
    let p = ports(3);
    let mut t = String::from("connect_timeout_s = 3\nio_timeout_s = 3\n");
    for (i, port) in p.iter().enumerate() {
        t.push_str(&format!(
            "[[party]]\nid = {i}\naddress = \"127.0.0.1:{port}\"\n"
        ));
    }
    let config = base.join("plain.toml");
    std::fs::write(&config, t).expect("config");
    let bare = |id: usize, extra: &[&str]| {
        let mut a = vec![
            "party".to_string(),
            "--id".into(),
            id.to_string(),
            "--config".into(),
            s(&config),
            s(&program),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let o = qmpc(&bare(2, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("needs --key") && e.contains("--insecure"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    // TLS with a config that pins nothing names the entry.
    let other = base.join("keys");
    let o = qmpc(&["keygen", "--id", "2", "--out", &s(&other)]);
    assert!(o.status.success());
    let key = s(&other.join("party-2.key"));
    let o = qmpc(
        &bare(2, &["--key", &key])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        stderr(&o).contains("party 0 has no `certificate` or `fingerprint`"),
        "{}",
        stderr(&o)
    );
    let input = root().join(INPUT);
    let start = Instant::now();
    let input_s = s(&input);
    let extras: [Vec<&str>; 3] = [
        vec!["--weights-file", "model.qmpw", "--insecure"],
        vec!["--input", &input_s, "--output", "out.npy", "--insecure"],
        vec!["--insecure"],
    ];
    let children: Vec<Child> = (0..3)
        .map(|i| spawn(&base, &bare(i, &extras[i]), None))
        .collect();
    for (i, o) in children.into_iter().map(|c| finish(c, start)).enumerate() {
        let e = stderr(&o);
        assert!(o.status.success(), "party {i}: {e}");
        assert!(
            e.starts_with("warning: --insecure") && e.lines().count() == 1,
            "{e}"
        );
    }
    assert_matches_clear(&base, &program, &input, &base.join("out.npy"));
}

/// Party 2 starts with a key the others did not pin for it (its own copy of the config
/// pins that key): the others refuse it with its address and both fingerprints, it learns
/// that they did not accept it, and nobody computes.
#[test]
fn a_party_with_an_unpinned_certificate_is_refused_by_name() {
    let base = fresh_dir("unpinned");
    let program = compile_into(&base, MODEL);
    let p = ports(3);
    let config = write_config(&base, &p);
    let elsewhere = base.join("impostor");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let o = qmpc(&["keygen", "--id", "2", "--out", &s(&elsewhere.join("keys"))]);
    assert!(o.status.success());
    let theirs = tls::certificate_fingerprint(
        &std::fs::read(elsewhere.join("keys/party-2.crt")).expect("crt"),
    )
    .expect("pin");
    let pinned =
        tls::certificate_fingerprint(&std::fs::read(base.join("keys/party-2.crt")).expect("crt"))
            .expect("pin");
    // Its config: the same, but its own entry pins its own new certificate.
    let text = std::fs::read_to_string(&config).expect("config");
    let own = text.replace(
        "certificate = \"keys/party-2.crt\"",
        &format!(
            "certificate = \"{}\"",
            s(&elsewhere.join("keys/party-2.crt"))
        ),
    );
    for i in 0..2 {
        std::fs::copy(
            base.join(format!("keys/party-{i}.crt")),
            elsewhere.join(format!("keys/party-{i}.crt")),
        )
        .expect("copy");
    }
    let own_config = elsewhere.join("parties.toml");
    std::fs::write(&own_config, own).expect("config");
    let start = Instant::now();
    let [c0, c1] = spawn_owners(&base, &config, &program);
    let c2 = spawn(&elsewhere, &party_args(2, &own_config, &program, &[]), None);
    // Whoever reaches party 2 first names it; the other may find that one gone first, or
    // party 2 gone (then its refused connection is named).
    let mut named = 0;
    for (i, c) in [c0, c1].into_iter().enumerate() {
        let o = finish(c, start);
        let e = stderr(&o);
        assert!(!o.status.success(), "party {i} ran");
        assert_eq!(e.trim_end().lines().count(), 1, "party {i}: {e}");
        let at_its_address = e.contains(&format!("refused 127.0.0.1:{}", p[2]))
            && e.contains(&format!("presented certificate {theirs}"))
            && e.contains(&format!("pins {pinned} for party 2"));
        let as_a_stranger = e.contains("refused meanwhile") && e.contains("pinned for no party");
        assert!(
            at_its_address || as_a_stranger || e.contains("party"),
            "party {i}: {e}"
        );
        named += usize::from(at_its_address || as_a_stranger);
    }
    assert!(named >= 1, "no party named party 2's certificate");
    let o = finish(c2, start);
    // Party 2 fails too, with one line (who refused it, or who left first).
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}
