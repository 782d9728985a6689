//! One conformance suite for every protocol of the registry: each model of `models/` and of
//! `../shared/corpus`, at the party counts the registry allows, against `clear` on the
//! reference inputs.
//!
//! - `--trunc exact` with secret weights, at every representative party count: outputs
//!   byte-identical with `clear`;
//! - the same with public weights, at the smallest party count;
//! - `--trunc probabilistic` with no passes (the one-instruction-at-a-time schedule), at the
//!   smallest party count: within one step of `clear` where the model rescales once (rates
//!   printed; `--nocapture` shows them);
//! - every run's measured rounds and bytes, per party, online and the dealer's, equal to
//!   `qmpc cost`'s (`common::run` checks it).
//!
//! Both suites run the whole reference batch at the smallest party count (a malicious
//! protocol its first four items) and the first item at the others: what a larger party
//! count changes is the protocol's messages, not how it treats the batch axis, and the
//! whole batch at six `shamir` parties took minutes of CI. `QMPC_HEAVY=1` runs whole
//! batches everywhere and adds the large party counts (up to 10). A missing
//! `../shared/corpus` fails the corpus tests unless `QMPC_SKIP_SHARED=1`.

mod common;
use common::npy::{self, Array};
use common::*;
use qmpc_protocols::registry::{self, Favor, PartyCount, Spec};
use std::path::{Path, PathBuf};

/// Whether `QMPC_HEAVY` asks for the large party counts and whole batches everywhere.
fn heavy() -> bool {
    std::env::var_os("QMPC_HEAVY").is_some()
}

/// Which models a test runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Suite {
    /// `models/`: small models, every variant (secret and public weights, probabilistic
    /// truncation).
    Own,
    /// `../shared/corpus`.
    Corpus,
}

/// The party counts a suite runs `spec` at: the smallest, the next and the smallest plus
/// three (for `Own`) or two (for `Corpus`); with `QMPC_HEAVY=1` also 7 and 10 where the
/// protocol allows them.
fn counts(spec: &Spec, suite: Suite) -> Vec<usize> {
    match spec.parties {
        PartyCount::Exactly(n) => vec![n],
        PartyCount::Between { min, max, .. } => {
            let mut v = match suite {
                Suite::Own => vec![min, min + 1, min + 3],
                Suite::Corpus => vec![min, min + 2],
            };
            if heavy() {
                v.extend([7, 10]);
            }
            v.retain(|&n| n <= max);
            v.sort_unstable();
            v.dedup();
            v
        }
    }
}

fn dir(suite: Suite) -> Option<PathBuf> {
    match suite {
        Suite::Own => Some(root().join("models")),
        Suite::Corpus => required_corpus(),
    }
}

/// Elements that differ, their count and the largest difference in output steps.
fn diff(a: &Array, b: &Array, step: f32) -> (usize, usize, i64) {
    let d: Vec<i64> = match (a, b) {
        (Array::F32(_, x), Array::F32(_, y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| ((p - q).abs() / step).round() as i64)
            .collect(),
        (Array::Int(_, x, _), Array::Int(_, y, _)) => {
            x.iter().zip(y).map(|(p, q)| (p - q).abs()).collect()
        }
        _ => return (1, 1, i64::MAX),
    };
    (
        d.iter().filter(|&&v| v != 0).count(),
        d.len(),
        d.into_iter().max().unwrap_or(0),
    )
}

fn output_step(model: &Path) -> f32 {
    qmpc_compiler::compile_file(model, &Default::default())
        .ok()
        .and_then(|c| {
            c.program
                .outputs
                .first()?
                .dequant
                .as_ref()
                .map(|q| q.scale.clone())
        })
        .and_then(|s| s.into_iter().reduce(f32::max))
        .unwrap_or(f32::EPSILON)
}

fn rescales(model: &Path) -> usize {
    qmpc_compiler::compile_file(model, &Default::default())
        .map(|c| {
            c.program
                .code
                .iter()
                .filter(|i| {
                    matches!(
                        i.mnemonic(),
                        "rescale" | "requant" | "convrequant" | "matmulrequant"
                    )
                })
                .count()
        })
        .unwrap_or(0)
}

/// `--parties N` where the protocol takes a number.
fn parties_arg(spec: &Spec, n: usize) -> Option<usize> {
    matches!(spec.parties, PartyCount::Between { .. }).then_some(n)
}

/// Compile `e` with `flags`, run it under `clear` and under `spec` at each count in
/// `counts` on `input`, and require byte-identical outputs.
fn exact(
    spec: &Spec,
    e: &Entry,
    what: &str,
    flags: &[&str],
    counts: &[usize],
    input: &Path,
) -> Result<(), String> {
    let prog = tmp(&format!("{}-{}-{what}.qmpc", proto(spec), e.id));
    compile(&e.model, &prog, flags)?;
    let c = prog.with_extension("clear.npy");
    run(&prog, "clear", None, input, &c)?;
    let want = std::fs::read(&c).map_err(|e| e.to_string())?;
    for &n in counts {
        let out = prog.with_extension(format!("{}{n}.npy", spec.name));
        run(&prog, &proto(spec), parties_arg(spec, n), input, &out)?;
        if std::fs::read(&out).ok().as_ref() != Some(&want) {
            return Err(format!(
                "{what}: {} with {n} parties differs from clear",
                proto(spec)
            ));
        }
    }
    Ok(())
}

/// Probabilistic truncation, no passes: within one step of `clear` where there is one
/// rescale; returns the rate line.
fn probabilistic(spec: &Spec, e: &Entry, n: usize, input: &Path) -> Result<String, String> {
    let prog = tmp(&format!("{}-{}-prob.qmpc", proto(spec), e.id));
    compile(&e.model, &prog, &["--trunc", "probabilistic", "-O0"])?;
    let (c, r) = (
        prog.with_extension("clear.npy"),
        prog.with_extension("secure.npy"),
    );
    run(&prog, "clear", None, input, &c)?;
    run(&prog, &proto(spec), parties_arg(spec, n), input, &r)?;
    let read = |p: &Path| npy::read(p).map_err(|e| e.to_string());
    let (c, r) = (read(&c)?, read(&r)?);
    let (off, total, worst) = diff(&c, &r, output_step(&e.model));
    let k = rescales(&e.model);
    // One probabilistic rescale is within one step of the exact one; after several, an
    // activation one step off feeds the next layer and the difference grows.
    if k <= 1 && worst > 1 {
        return Err(format!("probabilistic truncation is {worst} steps off"));
    }
    Ok(format!(
        "{} {}: {k} rescale(s); probabilistic truncation changes {off}/{total} outputs ({:.1}%), \
         by at most {worst} step(s)",
        spec.name,
        e.id,
        100.0 * off as f64 / total.max(1) as f64,
    ))
}

/// Known gaps: (protocol, model id, variant, what the run must say). A listed case must
/// fail with that message, so the list shrinks as soon as a gap is closed (NOTES.md).
const KNOWN_LIMITS: &[(&str, &str, &str, &str)] = &[];

/// `result` of `variant`, held to [`KNOWN_LIMITS`].
fn expect<T>(
    spec: &Spec,
    e: &Entry,
    variant: &str,
    result: Result<T, String>,
) -> Result<Option<T>, String> {
    let limit = KNOWN_LIMITS
        .iter()
        .find(|(p, id, v, _)| *p == spec.name && *id == e.id && *v == variant);
    match (result, limit) {
        (Ok(v), None) => Ok(Some(v)),
        (Err(err), None) => Err(err),
        (Err(err), Some((.., says))) if err.contains(says) => {
            eprintln!("known limit: {} {} {variant}: {says}", spec.name, e.id);
            Ok(None)
        }
        (Err(err), Some(_)) => Err(format!("a known limit fails differently: {err}")),
        (Ok(_), Some(_)) => Err(format!(
            "{variant} now works: remove it from KNOWN_LIMITS and NOTES.md"
        )),
    }
}

/// The most bytes (the dealer's and the parties' online, as `qmpc cost` predicts them) one
/// corpus batch may move in CI: spdz2k's whole resnet_tiny batch of 32 moves 8.5 GB and
/// takes 15 GB of memory and two minutes per model.
const CI_TRAFFIC: u64 = 2_000_000_000;

/// The most items of a reference batch a malicious protocol runs in CI: its proofs and MAC
/// checks make it many times slower per byte than a semi-honest one (the `mal-rep3` and
/// `spdz2k` corpus tests took 739 s and 351 s of CI's 45 minutes with whole batches), and
/// further items of the same model run no other code.
const MALICIOUS_CI_ITEMS: usize = 4;

/// The corpus input of `e`, or where its whole batch would move more than [`CI_TRAFFIC`]
/// under `spec` or `spec` is malicious (and `QMPC_HEAVY` is unset), its first items that
/// stay within [`CI_TRAFFIC`] and [`MALICIOUS_CI_ITEMS`].
fn within_ci_traffic(spec: &Spec, e: &Entry, n: usize) -> Result<PathBuf, String> {
    if heavy() {
        return Ok(e.input.clone());
    }
    let prog = tmp(&format!("{}-{}-traffic.qmpc", proto(spec), e.id));
    compile(&e.model, &prog, &[])?;
    let items = npy::read(&e.input).map_err(|e| e.to_string())?.dims()[0];
    let mut args = vec![
        "cost".to_string(),
        s(&prog),
        "--protocol".into(),
        spec.name.into(),
        "--batch".into(),
        items.to_string(),
        "--format".into(),
        "json".into(),
    ];
    if let Some(n) = parties_arg(spec, n) {
        args.extend(["--parties".into(), n.to_string()]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = qmpc(&a);
    if !o.status.success() {
        return Err(format!("cost: {}", stderr(&o)));
    }
    let (_, _, online, _, dealer) = figures(&String::from_utf8_lossy(&o.stdout))?;
    let total = online + dealer;
    let mut k = if total <= CI_TRAFFIC {
        items
    } else {
        (items as u64 * CI_TRAFFIC / total).max(1) as usize
    };
    if matches!(spec.threat, registry::Threat::Malicious { .. }) {
        k = k.min(MALICIOUS_CI_ITEMS);
    }
    if k == items {
        return Ok(e.input.clone());
    }
    eprintln!(
        "{} {}: CI runs the first {k} of {items} items (all would move {:.1} GB; \
         QMPC_HEAVY=1 runs all)",
        spec.name,
        e.id,
        total as f64 / 1e9
    );
    first_items(&e.input, k, &prog)
}

/// The input at the party counts beyond the smallest: the first item (the whole batch
/// with `QMPC_HEAVY`).
fn beyond_the_smallest(spec: &Spec, e: &Entry) -> Result<PathBuf, String> {
    if heavy() {
        return Ok(e.input.clone());
    }
    first_item(&e.input, &tmp(&format!("{}-{}", proto(spec), e.id)))
}

/// The input of a `models/` entry: its whole reference batch, or under a malicious
/// protocol (and without `QMPC_HEAVY`) its first [`MALICIOUS_CI_ITEMS`] items.
fn malicious_ci_items(spec: &Spec, e: &Entry) -> Result<PathBuf, String> {
    let malicious = matches!(spec.threat, registry::Threat::Malicious { .. });
    if !malicious || heavy() {
        return Ok(e.input.clone());
    }
    let prog = tmp(&format!("{}-{}-items.qmpc", proto(spec), e.id));
    first_items(&e.input, MALICIOUS_CI_ITEMS, &prog)
}

fn check(spec: &Spec, e: &Entry, suite: Suite, rates: &mut Vec<String>) -> Result<(), String> {
    let counts = counts(spec, suite);
    let smallest = counts[..1].to_vec();
    match suite {
        Suite::Own => {
            let input = malicious_ci_items(spec, e)?;
            exact(
                spec,
                e,
                "secret",
                &["--weights", "secret"],
                &smallest,
                &input,
            )?;
            if counts.len() > 1 {
                exact(
                    spec,
                    e,
                    "secret-first",
                    &["--weights", "secret"],
                    &counts[1..],
                    &beyond_the_smallest(spec, e)?,
                )?;
            }
            exact(
                spec,
                e,
                "public",
                &["--weights", "public"],
                &smallest,
                &input,
            )?;
            let prob = probabilistic(spec, e, smallest[0], &input);
            rates.extend(expect(spec, e, "prob", prob)?);
        }
        Suite::Corpus => {
            let input = within_ci_traffic(spec, e, smallest[0])?;
            let batch = exact(spec, e, "batch", &[], &smallest, &input);
            expect(spec, e, "batch", batch)?;
            if counts.len() > 1 {
                exact(
                    spec,
                    e,
                    "first",
                    &[],
                    &counts[1..],
                    &beyond_the_smallest(spec, e)?,
                )?;
            }
        }
    }
    Ok(())
}

/// How `common::run` names `spec`: `NAME`, or `NAME:FAVOR` where it favours rounds.
fn proto(spec: &Spec) -> String {
    match spec.favor() {
        Favor::Bytes => spec.name.to_string(),
        f => format!("{}:{}", spec.name, f.name()),
    }
}

/// `name` is a registered protocol's, or `NAME:FAVOR` for its other cut.
fn conformance(name: &str, suite: Suite) {
    let (base, favor) = name.split_once(':').unwrap_or((name, "bytes"));
    let spec = registry::find(base)
        .expect("a registered protocol")
        .favoring(Favor::from_name(favor).expect("a favor"))
        .expect("a protocol with that choice");
    let spec = &spec;
    let Some(dir) = dir(suite) else { return };
    let mut rates = Vec::new();
    let what = format!("{name} at {:?} parties", counts(spec, suite));
    check_models(&dir, &what, |e| check(spec, e, suite, &mut rates));
    for r in &rates {
        eprintln!("{r}");
    }
}

/// One test per protocol and suite, so that they run side by side.
macro_rules! suite {
    ($($own:ident, $corpus:ident: $name:literal;)*) => {
        $(
            #[test]
            fn $own() {
                conformance($name, Suite::Own);
            }
            #[test]
            fn $corpus() {
                conformance($name, Suite::Corpus);
            }
        )*
        /// Every protocol this build runs has its conformance tests above.
        #[test]
        fn every_registered_protocol_is_covered() {
            let covered = [$($name),*];
            for name in registry::implemented() {
                let spec = registry::find(name).expect("implemented");
                assert!(
                    spec.is_clear() || covered.contains(&name),
                    "protocol `{name}` has no conformance test"
                );
            }
            for name in registry::favoring() {
                let rounds = format!("{name}:rounds");
                assert!(
                    covered.contains(&rounds.as_str()),
                    "protocol `{name}` favouring rounds has no conformance test"
                );
            }
        }
    };
}

suite! {
    rep3_models, rep3_corpus: "rep3";
    rep3_rounds_models, rep3_rounds_corpus: "rep3:rounds";
    semi2k_models, semi2k_corpus: "semi2k";
    shamir_models, shamir_corpus: "shamir";
    fss_models, fss_corpus: "fss";
    spdz2k_models, spdz2k_corpus: "spdz2k";
    mal_rep3_models, mal_rep3_corpus: "mal-rep3";
}

/// Every protocol refuses a party count outside its range, by `run` and by `cost`, with one
/// line naming the range.
#[test]
fn party_counts_outside_the_range_are_refused() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let input = root().join("models/tiny_mlp/ref/qop_s8_pt/input.npy");
    for spec in registry::PROTOCOLS.iter().filter(|s| s.implemented()) {
        let (low, high) = match spec.parties {
            PartyCount::Exactly(n) => (n.saturating_sub(1).max(1), n + 1),
            PartyCount::Between { min, max, .. } => (min - 1, max + 1),
        };
        for bad in [low, high] {
            if spec.party_count(Some(bad)).is_ok() {
                continue;
            }
            let n = bad.to_string();
            let range = format!("runs with {} parties, not {bad}", spec.parties);
            let o = qmpc(&[
                "run",
                &s(&model),
                "--protocol",
                spec.name,
                "--parties",
                &n,
                "--input",
                &s(&input),
            ]);
            assert!(!o.status.success(), "{} with {bad}", spec.name);
            assert!(stderr(&o).contains(&range), "{}", stderr(&o));
            assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
            let o = qmpc(&["cost", &s(&model), "--protocol", spec.name, "--parties", &n]);
            assert!(!o.status.success(), "cost {} with {bad}", spec.name);
            assert!(stderr(&o).contains(&range), "{}", stderr(&o));
        }
    }
}

/// `--favor rounds` is refused, in one line naming the protocols that take it, by every
/// protocol without that choice; where it is taken, `cost` and `--stats` say so and the
/// figures differ from the default's (the conformance suites above hold them equal to the
/// run and the outputs to `clear`).
#[test]
fn favouring_rounds_is_refused_where_there_is_no_choice() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let input = root().join("models/tiny_mlp/ref/qop_s8_pt/input.npy");
    for spec in registry::PROTOCOLS.iter().filter(|s| s.implemented()) {
        let cost = |favor: &str| {
            qmpc(&[
                "cost",
                &s(&model),
                "--protocol",
                spec.name,
                "--favor",
                favor,
                "--format",
                "json",
            ])
        };
        if registry::favoring().contains(&spec.name) {
            let json = |o: &std::process::Output| -> serde_json::Value {
                assert!(o.status.success(), "{}: {}", spec.name, stderr(o));
                serde_json::from_slice(&o.stdout).expect("cost JSON")
            };
            let (bytes, rounds) = (json(&cost("bytes")), json(&cost("rounds")));
            assert_eq!(bytes["favor"], "bytes");
            assert_eq!(rounds["favor"], "rounds");
            assert_ne!(
                (&bytes["rounds"], &bytes["bytes_sent"]),
                (&rounds["rounds"], &rounds["bytes_sent"]),
                "{}: favouring rounds changed nothing",
                spec.name
            );
            let stats = tmp(&format!("{}-favor.json", spec.name));
            let o = qmpc(&[
                "run",
                &s(&model),
                "--protocol",
                spec.name,
                "--favor",
                "rounds",
                "--quiet",
                "--input",
                &s(&input),
                "--stats",
                &s(&stats),
            ]);
            assert!(o.status.success(), "{}: {}", spec.name, stderr(&o));
            let j: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats"))
                    .expect("stats JSON");
            assert_eq!(j["favor"], "rounds");
            assert_eq!(j["rounds"], rounds["rounds"]);
            continue;
        }
        let says = format!(
            "protocol `{}` has no choice between rounds and bytes",
            spec.name
        );
        let o = cost("rounds");
        assert!(!o.status.success(), "cost {}", spec.name);
        assert!(stderr(&o).contains(&says), "{}", stderr(&o));
        assert!(stderr(&o).contains("is for rep3"), "{}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        let o = qmpc(&[
            "run",
            &s(&model),
            "--protocol",
            spec.name,
            "--favor",
            "rounds",
            "--input",
            &s(&input),
        ]);
        assert!(!o.status.success(), "run {}", spec.name);
        assert!(stderr(&o).contains(&says), "{}", stderr(&o));
        assert!(cost("bytes").status.success(), "{}", spec.name);
    }
}

/// `--stats` has DESIGN.md's keys for every protocol, and they add up: every byte sent is
/// received, the totals are the per-party sums, and a dealer's bytes are counted apart.
#[test]
fn stats_files_have_the_design_keys_and_add_up() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let input = root().join("models/tiny_mlp/ref/qop_s8_pt/input.npy");
    for spec in registry::PROTOCOLS.iter().filter(|s| s.implemented()) {
        let n = spec.party_count(None).expect("a default count");
        let stats = tmp(&format!("{}-stats.json", spec.name));
        let o = qmpc(&[
            "run",
            &s(&model),
            "--protocol",
            spec.name,
            "--input",
            &s(&input),
            "--stats",
            &s(&stats),
        ]);
        assert!(o.status.success(), "{}: {}", spec.name, stderr(&o));
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("JSON");
        assert_eq!(j["protocol"], spec.name);
        assert_eq!(j["parties"], n);
        assert_eq!(j["batch"], 8);
        let per = j["per_party"].as_array().expect("per_party");
        assert_eq!(per.len(), n);
        let field = |p: &serde_json::Value, k: &str| p[k].as_u64().expect(k);
        let rounds: Vec<u64> = per.iter().map(|p| field(p, "rounds")).collect();
        let sent: Vec<u64> = per.iter().map(|p| field(p, "bytes_sent")).collect();
        let recv: u64 = per.iter().map(|p| field(p, "bytes_received")).sum();
        assert_eq!(j["rounds"].as_u64(), rounds.iter().copied().max());
        assert_eq!(j["bytes_sent"].as_u64(), Some(sent.iter().sum()));
        assert_eq!(Some(recv), j["bytes_sent"].as_u64(), "{}", spec.name);
        assert!(j["wall_s"].as_f64().is_some_and(|w| w > 0.0));
        let online = j["online_s"].as_f64().expect("online_s");
        assert!(online >= 0.0 && online <= j["wall_s"].as_f64().unwrap_or(0.0));
        let pre = &j["preprocessing"];
        if spec.is_clear() {
            assert_eq!(j["rounds"], 0);
            continue;
        }
        assert!(sent.iter().all(|&b| b > 0) && rounds.iter().all(|&r| r > 0));
        if spec.dealer {
            assert!(field(pre, "bytes_sent") > 0, "{}: {pre}", spec.name);
            assert!(pre["wall_s"].as_f64().unwrap_or(0.0) > 0.0);
        } else {
            assert_eq!(pre["bytes_sent"], 0, "{}", spec.name);
        }
    }
}

/// A protocol that chooses its ring from the secret bounds alone (no dry run,
/// `Spec::ring_from_bounds`) chooses what the dry run at each width would, on every model
/// of `models/` and the corpus, so that shortcut cannot change a result.
#[test]
fn rings_from_bounds_agree_with_the_dry_run() {
    let mut dirs = vec![root().join("models")];
    dirs.extend(required_corpus());
    let specs: Vec<&Spec> = registry::PROTOCOLS
        .iter()
        .filter(|s| s.implemented() && s.ring_from_bounds())
        .collect();
    assert!(
        !specs.is_empty(),
        "no protocol chooses its ring from bounds"
    );
    for dir in dirs {
        check_models(&dir, "the ring from bounds", |e| {
            let c = qmpc_compiler::compile_file(&e.model, &Default::default())
                .map_err(|err| err.to_string())?;
            for spec in &specs {
                let by_run = qmpc_vm::cost::choose_ring(spec, &c.program, true);
                let by_bounds = qmpc_vm::cost::choose_ring(spec, &c.program, false);
                if by_run != by_bounds {
                    return Err(format!(
                        "{}: the dry run chooses Z_2^{by_run}, the bounds Z_2^{by_bounds}",
                        spec.name
                    ));
                }
            }
            Ok(())
        });
    }
}
