//! Peak memory of secure runs on an ImageNet-size network and on a large lookup, from `--stats`'s
//! `peak_rss_bytes` (every party and the dealer are threads of the one `qmpc run`
//! process): issue 21's memory bounds, held on a network CI can afford, where the
//! regressions they have had show.

mod common;
use common::*;

const GB: f64 = 1e9;

/// `--stats`'s peak RSS of the run that wrote `out`, or why there is none.
fn peak_rss(protocol: &str, out: &std::path::Path) -> Result<Option<u64>, String> {
    let stats = std::fs::read_to_string(out.with_extension("stats.json")).expect("stats");
    let j: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    match j["peak_rss_bytes"].as_u64() {
        Some(p) => Ok(Some(p)),
        // Linux always says; elsewhere the bound cannot be checked.
        None if cfg!(target_os = "linux") => {
            Err(format!("{protocol}: no peak_rss_bytes in {stats}"))
        }
        None => Ok(None),
    }
}

/// `mal-rep3`'s lookups deal a one-hot vector of 128-bit words per element and prove and
/// MAC-check every word, so a large lookup runs in pieces with a check before each piece
/// whose pairs would take the ledger past its bound. SiLU (`models/op_qdq_silu`, a
/// 256-entry sigmoid table) on 100,000 elements (batch 1,000): 25.7 M dealt words. With
/// pieces of 2^22 words, checked only as the next call began (until session 16), this
/// run peaked at 4.9 GB; measured since: 1.6 GB, byte-identical with `clear`, its
/// figures equal to `qmpc cost`.
#[test]
fn malicious_lookups_run_in_checked_pieces() {
    let model = root().join("models/op_qdq_silu/silu_s8.onnx");
    let prog = tmp("memory_silu.qmpc");
    compile(&model, &prog, &[]).expect("compile");
    // Inputs over the table's whole range, 1,000 samples of [4, 5, 5].
    let x: Vec<f32> = (0..100_000)
        .map(|i| (i % 801) as f32 / 100.0 - 4.0)
        .collect();
    let input = tmp("memory_silu.input.npy");
    std::fs::write(&input, npy::encode_f32(&[1000, 4, 5, 5], &x)).expect("input");
    let clear = tmp("memory_silu.clear.npy");
    run(&prog, "clear", None, &input, &clear).expect("clear");
    let out = tmp("memory_silu.mal-rep3.npy");
    run(&prog, "mal-rep3", None, &input, &out).expect("mal-rep3");
    assert!(
        std::fs::read(&out).ok() == std::fs::read(&clear).ok(),
        "mal-rep3's output differs from clear's"
    );
    if let Some(peak) = peak_rss("mal-rep3", &out).unwrap() {
        eprintln!(
            "SiLU on 100,000 elements under mal-rep3: peak RSS {:.2} GB",
            peak as f64 / GB
        );
        assert!(
            peak as f64 <= 2.5 * GB,
            "peak RSS {:.2} GB, over its bound of 2.5 GB",
            peak as f64 / GB
        );
    }
}

/// ShuffleNetV2-0.5 (QDQ, `../shared/corpus/realnets`) on its first image: `fss` deals
/// 5.2 GB of keys and `spdz2k` 16.9 GB of authenticated material, against a few MB of
/// activations, so the material must stream. A party that read the dealer's chunks ahead
/// of the instruction it runs (issue 21 session 13: `fss` on ResNet-18 past 6 GB) would
/// hold most of the keys; `spdz2k`'s check ledger holding 2^24 openings (until session
/// 15) took this run to 3.1–3.9 GB. Measured since: 0.37 GB (`fss`) and 1.7 GB
/// (`spdz2k`); each output byte-identical with `clear`, its figures equal to `qmpc cost`.
#[test]
fn dealer_protocols_stream_their_material_on_a_deep_network() {
    let Some(dir) = required_corpus() else {
        return;
    };
    let id = "shufflenet_v2_x0_5/qdq_s8_pc";
    let model = dir.join("realnets/models").join(format!("{id}.onnx"));
    let input = dir.join("realnets/models/shufflenet_v2_x0_5/ref/qdq_s8_pc/input.npy");
    let prog = tmp("memory_shufflenet.qmpc");
    compile(&model, &prog, &[]).expect("compile");
    let one = first_item(&input, &prog).expect("the first image");
    let clear = tmp("memory_shufflenet.clear.npy");
    run(&prog, "clear", None, &one, &clear).expect("clear");
    let mut failures = Vec::new();
    for (protocol, bound) in [("fss", 1.0 * GB), ("spdz2k", 2.5 * GB)] {
        let out = tmp(&format!("memory_shufflenet.{protocol}.npy"));
        if let Err(m) = run(&prog, protocol, None, &one, &out) {
            failures.push(m);
            continue;
        }
        if std::fs::read(&out).ok() != std::fs::read(&clear).ok() {
            failures.push(format!("{protocol}: the output differs from clear's"));
        }
        let peak = match peak_rss(protocol, &out) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(m) => {
                failures.push(m);
                continue;
            }
        };
        eprintln!("{id} under {protocol}: peak RSS {:.2} GB", peak as f64 / GB);
        if peak as f64 > bound {
            failures.push(format!(
                "{protocol}: peak RSS {:.2} GB, over its bound of {:.1} GB",
                peak as f64 / GB,
                bound / GB
            ));
        }
    }
    assert!(failures.is_empty(), "{id}: {}", failures.join("\n"));
}
