//! Fault injection (issue 18, item 7): every cheat kind of `qmpc_protocols::cheat` × every
//! malicious protocol of the registry × a corpus model. One party deviates once (told by
//! `QMPC_CHEAT`, which only this test build reads); the run must end non-zero with one
//! line naming the failed check, and write no output. The same program without a cheat
//! must succeed, so the aborts are the cheats' doing.
//!
//! A cheating party as its own process is in tests/parties.rs. A party that stalls (here
//! the dealer, building more material than the timeout allows) is named as a timeout.

mod common;
use common::*;
use qmpc_protocols::cheat::Kind;
use qmpc_protocols::registry::{Spec, Threat, PROTOCOLS};
use std::path::Path;
use std::process::Command;

/// Malicious protocols not implemented yet: named here so that the test fails once one is,
/// until it joins the matrix.
const NOT_YET: &[&str] = &[];

/// LeNet (conv, matrix products, requantizations, max pools) with secret weights.
const MODEL: &str = "lenet/qop_s8_pt";

/// Runs `program` under `protocol` with `cheat` in the environment; `Ok` when the run
/// aborted as it must, `Err` with what went wrong otherwise.
fn cheated(
    program: &Path,
    protocol: &str,
    parties: usize,
    input: &Path,
    cheat: &str,
) -> Result<(), String> {
    let out = program.with_extension(format!("{protocol}{parties}-{cheat}.npy"));
    let _ = std::fs::remove_file(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_qmpc"))
        .args([
            "run",
            &s(program),
            "--quiet",
            "--protocol",
            protocol,
            "--parties",
        ])
        .arg(parties.to_string())
        .args(["--input", &s(input), "--output", &s(&out)])
        .env("QMPC_CHEAT", cheat)
        .output()
        .map_err(|e| e.to_string())?;
    let err = stderr(&o);
    let lines: Vec<&str> = err.trim().lines().collect();
    if o.status.success() {
        return Err(format!("{cheat}: the run finished (no abort)"));
    }
    if out.exists() {
        return Err(format!("{cheat}: an output was written"));
    }
    match lines.as_slice() {
        [line] if line.contains("check") => Ok(()),
        _ => Err(format!("{cheat}: not one line naming a check: {err}")),
    }
}

fn malicious() -> Vec<&'static Spec> {
    PROTOCOLS
        .iter()
        .filter(|s| matches!(s.threat, Threat::Malicious { .. }))
        .collect()
}

#[test]
fn the_unimplemented_malicious_protocols_are_the_listed_ones() {
    let missing: Vec<&str> = malicious()
        .into_iter()
        .filter(|s| !s.implemented())
        .map(|s| s.name)
        .collect();
    assert_eq!(
        missing, NOT_YET,
        "update NOT_YET: the fault matrix must cover them"
    );
}

#[test]
fn every_cheat_aborts_every_malicious_protocol() {
    let Some(dir) = required_corpus() else { return };
    let e = entries(&dir)
        .into_iter()
        .find(|e| e.id == MODEL)
        .expect("the corpus has LeNet");
    let program = tmp("faults-lenet.qmpc");
    compile(&e.model, &program, &[]).expect("compile");
    let input = first_item(&e.input, &program).expect("first item");
    let mut failures = Vec::new();
    let mut cases = 0;
    for spec in malicious().into_iter().filter(|s| s.implemented()) {
        let counts: Vec<usize> = [2, 3]
            .into_iter()
            .filter(|&n| spec.parties.allows(n))
            .collect();
        assert!(
            !counts.is_empty(),
            "{}: no party count of 2 or 3",
            spec.name
        );
        for &n in &counts {
            // Without a cheat the same run succeeds.
            let clean = program.with_extension(format!("{}{n}-clean.npy", spec.name));
            if let Err(f) = run(&program, spec.name, Some(n), &input, &clean) {
                failures.push(format!("{} n={n} without a cheat: {f}", spec.name));
                continue;
            }
            // The last computing party cheats (at n = 3 neither owner of an input but
            // still a sender of every opening), then the model owner.
            for kind in Kind::ALL {
                for (party, skip) in [(0, 0), (n - 1, 0), (0, 3)] {
                    let cheat = format!("{}@{party}+{skip}", kind.name());
                    if kind == Kind::Open && skip > 0 {
                        continue; // one reveal only
                    }
                    if kind == Kind::Input && party != 0 {
                        continue; // the model owner owns the inputs it can lie about
                    }
                    cases += 1;
                    if let Err(f) = cheated(&program, spec.name, n, &input, &cheat) {
                        failures.push(format!("{} n={n}: {f}", spec.name));
                    }
                }
            }
        }
    }
    eprintln!("{cases} cheats, {} not caught", failures.len());
    assert!(cases > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The dealer builds a batch's material for longer than the parties wait: the run stops
/// with one line that says a wait ran out and how to allow more, and writes nothing.
#[test]
fn a_dealer_slower_than_the_timeout_is_named_as_a_timeout() {
    let Some(dir) = required_corpus() else { return };
    let e = entries(&dir)
        .into_iter()
        .find(|e| e.id == MODEL)
        .expect("the corpus has LeNet");
    let program = tmp("slow-dealer-lenet.qmpc");
    compile(&e.model, &program, &[]).expect("compile");
    let spec = malicious()
        .into_iter()
        .find(|s| s.implemented() && s.dealer)
        .expect("a malicious protocol with a dealer");
    let out = program.with_extension("out.npy");
    let o = qmpc(&[
        "run",
        &s(&program),
        "--protocol",
        spec.name,
        "--input",
        &s(&e.input),
        "--output",
        &s(&out),
        "--timeout",
        "0.2",
        "--quiet",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "the run finished");
    assert!(!out.exists(), "an output was written");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("waited longer than --timeout 0.2 s") && err.contains("sent nothing"),
        "{err}"
    );
}
