//! Peak memory of secure runs on an ImageNet-size network, from `--stats`'s
//! `peak_rss_bytes` (every party and the dealer are threads of the one `qmpc run`
//! process): issue 21's memory bounds, held on a network CI can afford, where the
//! regressions they have had show.

mod common;
use common::*;

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
    const GB: f64 = 1e9;
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
        let stats = std::fs::read_to_string(out.with_extension("stats.json")).expect("stats");
        let j: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
        let Some(peak) = j["peak_rss_bytes"].as_u64() else {
            // Linux always says; elsewhere the bound cannot be checked.
            if cfg!(target_os = "linux") {
                failures.push(format!("{protocol}: no peak_rss_bytes in {stats}"));
            }
            continue;
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
