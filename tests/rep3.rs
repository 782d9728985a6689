//! Every model of `models/` and (when present) `../shared/corpus` under `rep3`, against
//! `clear` on the reference inputs:
//! - `--trunc exact`, secret and public weights: byte-identical outputs;
//! - `--trunc probabilistic`: within one int8 step; the rate of differing elements is
//!   printed (run with `--nocapture` to see it);
//! - every run's measured rounds and bytes, per party, equal `qmpc cost`'s static figures.

mod common;
use common::npy::{self, Array};
use common::*;
use std::path::Path;

/// Elements that differ, and the largest difference in output steps.
fn diff(a: &Array, b: &Array, step: f32) -> (usize, usize, i64) {
    match (a, b) {
        (Array::F32(_, x), Array::F32(_, y)) => {
            let d: Vec<i64> = x
                .iter()
                .zip(y)
                .map(|(p, q)| ((p - q).abs() / step).round() as i64)
                .collect();
            (
                d.iter().filter(|&&v| v != 0).count(),
                d.len(),
                d.into_iter().max().unwrap_or(0),
            )
        }
        (Array::Int(_, x, _), Array::Int(_, y, _)) => {
            let d: Vec<i64> = x.iter().zip(y).map(|(p, q)| (p - q).abs()).collect();
            (
                d.iter().filter(|&&v| v != 0).count(),
                d.len(),
                d.into_iter().max().unwrap_or(0),
            )
        }
        _ => (1, 1, i64::MAX),
    }
}

/// Rows of a `[batch, classes]` float output whose arg-max agrees.
fn top1_agreement(a: &Array, b: &Array) -> Option<(usize, usize)> {
    let (Array::F32(d, x), Array::F32(_, y)) = (a, b) else {
        return None;
    };
    if d.len() != 2 || d[1] < 2 {
        return None;
    }
    let am = |r: &[f32]| {
        r.iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > r[b] { i } else { b })
    };
    let agree = x
        .chunks(d[1])
        .zip(y.chunks(d[1]))
        .filter(|(p, q)| am(p) == am(q))
        .count();
    Some((agree, d[0]))
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

fn check(e: &Entry, rates: &mut Vec<String>) -> Result<(), String> {
    let base = tmp(&format!("rep3-{}", e.id));
    for weights in ["secret", "public"] {
        let prog = base.with_extension(format!("{weights}.qmpc"));
        compile(&e.model, &prog, &["--weights", weights])?;
        let (c, r) = (
            prog.with_extension("clear.npy"),
            prog.with_extension("rep3.npy"),
        );
        run(&prog, "clear", None, &e.input, &c)?;
        run(&prog, "rep3", None, &e.input, &r)?;
        let (c, r) = (std::fs::read(&c), std::fs::read(&r));
        if c.is_err() || c.ok() != r.ok() {
            return Err(format!("{weights} weights: rep3 differs from clear"));
        }
    }
    let prog = base.with_extension("prob.qmpc");
    // Without passes, so the one-instruction-at-a-time schedule is held to its cost too.
    compile(&e.model, &prog, &["--trunc", "probabilistic", "-O0"])?;
    let (c, r) = (
        prog.with_extension("clear.npy"),
        prog.with_extension("rep3.npy"),
    );
    run(&prog, "clear", None, &e.input, &c)?;
    run(&prog, "rep3", None, &e.input, &r)?;
    let (c, r) = (
        npy::read(&c).map_err(|e| e.to_string())?,
        npy::read(&r).map_err(|e| e.to_string())?,
    );
    let (off, total, worst) = diff(&c, &r, output_step(&e.model));
    let rescales = qmpc_compiler::compile_file(&e.model, &Default::default())
        .map(|c| {
            c.program
                .code
                .iter()
                .filter(|i| matches!(i.mnemonic(), "rescale" | "requant"))
                .count()
        })
        .unwrap_or(0);
    let top1 = top1_agreement(&c, &r);
    rates.push(format!(
        "{}: {rescales} rescale(s); probabilistic truncation changes {off}/{total} outputs ({:.1}%), \
         by at most {worst} step(s); top-1 agreement {}",
        e.id,
        100.0 * off as f64 / total.max(1) as f64,
        top1.map_or("n/a".into(), |(a, n)| format!("{a}/{n}")),
    ));
    // One probabilistic rescale is within one step of the exact one; after several, an
    // activation one step off feeds the next layer and the difference grows.
    if rescales <= 1 && worst > 1 {
        return Err(format!("probabilistic truncation is {worst} steps off"));
    }
    Ok(())
}

fn run_all(dir: &Path) {
    let mut rates = Vec::new();
    check_models(dir, "rep3", |e| check(e, &mut rates));
    for r in &rates {
        eprintln!("{r}");
    }
}

#[test]
fn own_models_rep3_equals_clear() {
    run_all(&root().join("models"));
}

#[test]
fn shared_corpus_rep3_equals_clear() {
    let Some(dir) = shared_corpus() else {
        eprintln!("skipped: ../shared/corpus is absent");
        return;
    };
    run_all(&dir);
}

#[test]
fn stats_file_has_the_design_keys_and_adds_up() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let input = root().join("models/tiny_mlp/ref/qop_s8_pt/input.npy");
    let stats = tmp("rep3-stats.json");
    let o = qmpc(&[
        "run",
        &s(&model),
        "--protocol",
        "rep3",
        "--input",
        &s(&input),
        "--stats",
        &s(&stats),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("JSON");
    assert_eq!(j["protocol"], "rep3");
    assert_eq!(j["parties"], 3);
    assert_eq!(j["batch"], 8);
    let per = j["per_party"].as_array().expect("per_party");
    assert_eq!(per.len(), 3);
    let rounds: Vec<u64> = per.iter().map(|p| p["rounds"].as_u64().unwrap()).collect();
    let sent: Vec<u64> = per
        .iter()
        .map(|p| p["bytes_sent"].as_u64().unwrap())
        .collect();
    assert_eq!(j["rounds"].as_u64(), rounds.iter().copied().max());
    assert_eq!(j["bytes_sent"].as_u64(), Some(sent.iter().sum()));
    assert!(sent.iter().all(|&b| b > 0) && rounds.iter().all(|&r| r > 0));
    assert_eq!(j["preprocessing"]["bytes_sent"], 0);
    assert!(j["wall_s"].as_f64().is_some_and(|w| w > 0.0));
    // The online time leaves the connection set-up out.
    let online = j["online_s"].as_f64().expect("online_s");
    assert!(online > 0.0 && online <= j["wall_s"].as_f64().unwrap_or(0.0));
    // Party 1 receives the output; its received bytes include party 2's share of it.
    let recv: u64 = per
        .iter()
        .map(|p| p["bytes_received"].as_u64().unwrap())
        .sum();
    assert_eq!(
        recv,
        j["bytes_sent"].as_u64().unwrap(),
        "every byte sent is received"
    );
}

/// The online figures of a program that only shares an input and reveals it, exactly: the
/// data owner (1) sends one ring element (16 bytes) per value to party 0, party 2 sends
/// party 1 the component it lacks, each message with a 4-byte frame header. Start-up (the
/// handshake, the batch size, the keys) is not counted.
#[test]
fn stats_count_exactly_the_online_traffic() {
    let asm = ".program name=\"io\", trunc=exact\n\
               .input 0, name=\"x\", external=i8, type=i8, dims=[1, 4], batched=1\n\
               .output 0, name=\"y\", external=i8\n\
               .reg %0, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127\n\
               %0 = input index=0\n\
               output x=%0, index=0\n";
    let (text, prog, input, out, stats) = (
        tmp("io.s"),
        tmp("io.qmpc"),
        tmp("io.npy"),
        tmp("io-out.npy"),
        tmp("io.json"),
    );
    std::fs::write(&text, asm).expect("write asm");
    let values: Vec<i64> = (-6..6).collect();
    std::fs::write(&input, npy::encode_ints("|i1", &[3, 4], &values)).expect("write npy");
    let o = qmpc(&["asm", &s(&text), "-o", &s(&prog)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = qmpc(&[
        "run",
        &s(&prog),
        "--protocol",
        "rep3",
        "--input",
        &s(&input),
        "--output",
        &s(&out),
        "--stats",
        &s(&stats),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).expect("output"),
        std::fs::read(&input).expect("input")
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("JSON");
    let per: Vec<(u64, u64)> = j["per_party"]
        .as_array()
        .expect("per_party")
        .iter()
        .map(|p| {
            (
                p["rounds"].as_u64().unwrap(),
                p["bytes_sent"].as_u64().unwrap(),
            )
        })
        .collect();
    // A program of int8 values with no masked opening runs in Z_2^32: 12 words of 4 bytes
    // and a header.
    assert_eq!(j["ring_bits"], 32);
    let msg = 12 * 4 + 4;
    assert_eq!(per, vec![(1, 0), (2, msg), (1, msg)]);
    assert_eq!(j["rounds"], 2);
}
