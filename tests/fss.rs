//! Every model of `models/` and (when present) `../shared/corpus` under `fss` (two parties
//! and the dealer's DCF keys), against `clear` on the reference inputs: byte-identical
//! outputs, and every run's measured figures (online per party, and the dealer's bytes)
//! equal to `qmpc cost`'s.

mod common;
use common::*;
use std::path::Path;

fn check(e: &Entry) -> Result<(), String> {
    let prog = tmp(&format!("fss-{}.qmpc", e.id));
    compile(&e.model, &prog, &[])?;
    let c = prog.with_extension("clear.npy");
    run(&prog, "clear", None, &e.input, &c)?;
    let out = prog.with_extension("fss.npy");
    run(&prog, "fss", None, &e.input, &out)?;
    if std::fs::read(&out).ok() != std::fs::read(&c).ok() {
        return Err("fss differs from clear".into());
    }
    Ok(())
}

fn run_all(dir: &Path) {
    check_models(dir, "fss", check);
}

#[test]
fn own_models_fss_equals_clear() {
    run_all(&root().join("models"));
}

#[test]
fn shared_corpus_fss_equals_clear() {
    let Some(dir) = shared_corpus() else {
        eprintln!("skipped: ../shared/corpus is absent");
        return;
    };
    run_all(&dir);
}

#[test]
fn keys_are_reported_and_the_party_count_is_two() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let input = root().join("models/tiny_mlp/ref/qop_s8_pt/input.npy");
    let o = qmpc(&["cost", &s(&model), "--protocol", "fss", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let pre = &j["preprocessing"];
    let keys = pre["dcf_keys"].as_u64().unwrap_or(0);
    let key_bytes = pre["key_bytes_per_party"].as_u64().unwrap_or(0);
    assert!(keys > 0 && key_bytes > 16 * keys, "{pre}");
    // Both parties get every key's correction words, so the dealer sends at least twice
    // the key material.
    assert!(
        pre["bytes_sent"].as_u64().unwrap_or(0) >= 2 * key_bytes,
        "{pre}"
    );
    let o = qmpc(&["cost", &s(&model), "--protocol", "fss"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("DCF keys"), "{text}");

    let o = qmpc(&[
        "run",
        &s(&model),
        "--protocol",
        "fss",
        "--parties",
        "3",
        "--input",
        &s(&input),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("runs with 2 parties"), "{}", stderr(&o));
}
