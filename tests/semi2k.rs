//! Every model of `models/` and (when present) `../shared/corpus` under `semi2k` with 2, 3
//! and 5 parties and the dealer, against `clear` on the reference inputs: byte-identical
//! outputs, and every run's measured figures (online per party, and the dealer's bytes)
//! equal to `qmpc cost`'s.

mod common;
use common::*;
use std::path::Path;

fn check(e: &Entry) -> Result<(), String> {
    let prog = tmp(&format!("semi2k-{}.qmpc", e.id));
    compile(&e.model, &prog, &[])?;
    let c = prog.with_extension("clear.npy");
    run(&prog, "clear", None, &e.input, &c)?;
    let want = std::fs::read(&c).map_err(|e| e.to_string())?;
    for n in [2, 3, 5] {
        let out = prog.with_extension(format!("semi2k{n}.npy"));
        run(&prog, "semi2k", Some(n), &e.input, &out)?;
        if std::fs::read(&out).ok() != Some(want.clone()) {
            return Err(format!("semi2k with {n} parties differs from clear"));
        }
    }
    Ok(())
}

fn run_all(dir: &Path) {
    check_models(dir, "semi2k", check);
}

#[test]
fn own_models_semi2k_equals_clear() {
    run_all(&root().join("models"));
}

#[test]
fn shared_corpus_semi2k_equals_clear() {
    let Some(dir) = shared_corpus() else {
        eprintln!("skipped: ../shared/corpus is absent");
        return;
    };
    run_all(&dir);
}

#[test]
fn the_dealer_is_counted_apart_and_party_counts_are_checked() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let input = root().join("models/tiny_mlp/ref/qop_s8_pt/input.npy");
    let stats = tmp("semi2k-stats.json");
    let o = qmpc(&[
        "run",
        &s(&model),
        "--protocol",
        "semi2k",
        "--parties",
        "3",
        "--input",
        &s(&input),
        "--stats",
        &s(&stats),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("JSON");
    assert_eq!(j["protocol"], "semi2k");
    assert_eq!(j["parties"], 3);
    assert_eq!(j["per_party"].as_array().map(Vec::len), Some(3));
    assert!(j["preprocessing"]["bytes_sent"].as_u64().unwrap_or(0) > 0);
    assert!(j["preprocessing"]["wall_s"].as_f64().unwrap_or(0.0) > 0.0);
    // Every online byte sent is received by a computing party.
    let per = j["per_party"].as_array().expect("per_party");
    let recv: u64 = per
        .iter()
        .map(|p| p["bytes_received"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(recv), j["bytes_sent"].as_u64());
    let o = qmpc(&[
        "run",
        &s(&model),
        "--protocol",
        "semi2k",
        "--parties",
        "1",
        "--input",
        &s(&input),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("2 to 64 parties"), "{}", stderr(&o));
}
