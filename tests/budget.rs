//! `qmpc cost`: its JSON keys, and the budget gate passing on the committed budget and
//! failing, with every figure named, on a lowered one.

mod common;
use common::*;

fn s(p: &std::path::Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

const MODEL: &str = "models/tiny_mlp/qop_s8_pt.onnx";

fn cost_json(extra: &[&str]) -> serde_json::Value {
    let model = s(&root().join(MODEL));
    let mut args = vec!["cost", &model, "--protocol", "rep3", "--format", "json"];
    args.extend_from_slice(extra);
    let o = qmpc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("cost prints JSON")
}

#[test]
fn cost_json_has_the_stats_keys_and_a_layer_list() {
    let j = cost_json(&[]);
    assert_eq!(j["protocol"], "rep3");
    assert_eq!(j["parties"], 3);
    assert_eq!(j["batch"], 1);
    let per = j["per_party"].as_array().expect("per_party");
    assert_eq!(per.len(), 3);
    let max = per.iter().map(|p| p["rounds"].as_u64().unwrap()).max();
    let sum: u64 = per.iter().map(|p| p["bytes_sent"].as_u64().unwrap()).sum();
    assert_eq!(j["rounds"].as_u64(), max);
    assert_eq!(j["bytes_sent"].as_u64(), Some(sum));
    let layers = j["layers"].as_array().expect("layers");
    assert!(layers
        .iter()
        .any(|l| l["node"].as_str().is_some_and(|n| !n.is_empty())));
    // Bytes grow with the batch, rounds do not.
    let b8 = cost_json(&["--batch", "8"]);
    assert_eq!(b8["rounds"], j["rounds"]);
    assert!(b8["bytes_sent"].as_u64() > j["bytes_sent"].as_u64());
    // Merging rounds never costs more than running one instruction at a time.
    let o0 = cost_json(&["-O0"]);
    assert!(o0["rounds"].as_u64() >= j["rounds"].as_u64());
}

#[test]
fn budget_passes_as_committed_and_fails_when_lowered() {
    let model = s(&root().join(MODEL));
    let committed = s(&root().join("models/budget.toml"));
    let o = qmpc(&["cost", &model, "--protocol", "rep3", "--budget", &committed]);
    assert!(o.status.success(), "{}", stderr(&o));

    let j = cost_json(&[]);
    let (rounds, bytes) = (
        j["rounds"].as_u64().unwrap(),
        j["bytes_sent"].as_u64().unwrap(),
    );
    let lowered = tmp("lowered-budget.toml");
    std::fs::write(
        &lowered,
        format!(
            "[[budget]]\nmodel = \"tiny_mlp/qop_s8_pt\"\nprotocol = \"rep3\"\nrounds = {}\nbytes_sent = {}\n",
            rounds - 1,
            bytes - 1
        ),
    )
    .expect("write budget");
    let o = qmpc(&[
        "cost",
        &model,
        "--protocol",
        "rep3",
        "--budget",
        &s(&lowered),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("rounds {rounds} > {}", rounds - 1)),
        "{err}"
    );
    assert!(
        err.contains(&format!("bytes_sent {bytes} > {}", bytes - 1)),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A model the budget does not cover is an error, not a silent pass.
    let o = qmpc(&[
        "cost",
        &model,
        "--protocol",
        "rep3",
        "--batch",
        "2",
        "--budget",
        &s(&lowered),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no entry"), "{}", stderr(&o));

    // Nor one for the other favor: `--favor rounds` reads only `favor = "rounds"` entries,
    // and the committed budget has them.
    let favoring = |budget: &str| {
        qmpc(&[
            "cost",
            &model,
            "--protocol",
            "rep3",
            "--favor",
            "rounds",
            "--budget",
            budget,
        ])
    };
    let o = favoring(&s(&lowered));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("favouring rounds"), "{}", stderr(&o));
    let o = favoring(&committed);
    assert!(o.status.success(), "{}", stderr(&o));
    let rounds_only = tmp("rounds-budget.toml");
    std::fs::write(
        &rounds_only,
        format!(
            "[[budget]]\nmodel = \"tiny_mlp/qop_s8_pt\"\nprotocol = \"rep3\"\nfavor = \"rounds\"\nrounds = {}\n",
            rounds - 1,
        ),
    )
    .expect("write budget");
    let o = favoring(&s(&rounds_only));
    assert!(
        o.status.success(),
        "favouring rounds is under the default's rounds: {}",
        stderr(&o)
    );
}

#[test]
fn cost_errors_are_one_line() {
    let model = s(&root().join(MODEL));
    for (args, needle) in [
        (
            vec!["--protocol", "rep3", "--no-pass", "nosuch"],
            "unknown pass `nosuch`",
        ),
        (vec!["--protocol", "rep3", "--parties", "4"], "3 parties"),
        (vec!["--protocol", "nosuch"], "unknown protocol"),
        (
            vec!["--protocol", "rep3", "--budget", "/nonexistent.toml"],
            "nonexistent.toml",
        ),
    ] {
        let mut a = vec!["cost", model.as_str()];
        a.extend(args);
        let o = qmpc(&a);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains(needle), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn pool_first_runs_the_requantization_on_the_pooled_tensor() {
    let model = s(&root().join("models/tiny_cnn/qop_s8_pt.onnx"));
    let asm = |extra: &[&str]| assembly(&model, "pool_first.qmpc", extra);
    // The instruction right after the pool, in program order of the data flow.
    let reads_pool = |text: &str| {
        let pool = text
            .lines()
            .find(|l| l.contains("= maxpool"))
            .and_then(|l| l.split_whitespace().next())
            .expect("a maxpool")
            .to_string();
        text.lines()
            .find(|l| l.contains(&format!("={pool},")) || l.contains(&format!("={pool} ")))
            .map(|l| l.split_whitespace().nth(2).unwrap_or("").to_string())
            .expect("a reader of the pool")
    };
    assert_eq!(reads_pool(&asm(&["--no-pass", "pool_first"])), "sub");
    assert_eq!(reads_pool(&asm(&[])), "add");
    let bytes = |extra: &[&str]| rep3_cost(&model, extra, "bytes_sent");
    assert!(bytes(&[]) < bytes(&["--no-pass", "pool_first"]));
}

/// A squeeze-excitation gate's product (`[N, C, 1, 1]` times `[N, C, H, W]`, then its
/// requantization) becomes a `matmulrequant` between reshapes, one round fewer under rep3.
#[test]
fn fuse_product_takes_a_squeeze_excitation_gate() {
    let model = s(&root().join("models/op_qdq_silu/se_u8.onnx"));
    let asm = |extra: &[&str]| assembly(&model, "se_gate.qmpc", extra);
    let fused = asm(&[]);
    assert!(fused.contains("= matmulrequant"), "{fused}");
    assert!(!fused.contains("= mul "), "{fused}");
    let unfused = asm(&["--no-pass", "fuse_product"]);
    assert!(unfused.contains("= mul "), "{unfused}");
    let rounds = |extra: &[&str]| rep3_cost(&model, extra, "rounds");
    assert_eq!(rounds(&[]) + 1, rounds(&["--no-pass", "fuse_product"]));
}

/// The assembly of `model` compiled (to `out` in the test directory) with `extra` flags.
fn assembly(model: &str, out: &str, extra: &[&str]) -> String {
    let out = tmp(out);
    let mut args = vec!["compile", model, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = qmpc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = qmpc(&["disasm", out.to_str().unwrap()]);
    String::from_utf8(d.stdout).expect("UTF-8 assembly")
}

/// Figure `key` of `qmpc cost --protocol rep3 --format json` on `model` with `extra` flags.
fn rep3_cost(model: &str, extra: &[&str], key: &str) -> u64 {
    let mut args = vec!["cost", model, "--protocol", "rep3", "--format", "json"];
    args.extend_from_slice(extra);
    let o = qmpc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    j[key].as_u64().unwrap_or_else(|| panic!("{key} in {j}"))
}
