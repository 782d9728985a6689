//! What one protocol does that the conformance suite (`tests/conformance.rs`) cannot state
//! for all of them: rep3's exact online traffic for a program that only shares and reveals,
//! and fss's key figures in `qmpc cost`.

mod common;
use common::npy;
use common::*;

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

#[test]
fn keys_are_reported_and_the_party_count_is_two() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
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
}

/// `--trunc probabilistic` with secret weights warns at compile time and in a secure run
/// (docs/protocols.md, "What probabilistic truncation leaks"); public weights and `clear`
/// do not.
#[test]
fn probabilistic_truncation_with_secret_weights_warns() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let input = root().join("models/tiny_mlp/ref/qop_s8_pt/input.npy");
    let warns =
        |o: &std::process::Output| stderr(o).contains("--trunc probabilistic with secret weights");
    for (weights, warned) in [("secret", true), ("public", false)] {
        let prog = tmp(&format!("prob-warning-{weights}.qmpc"));
        let o = qmpc(&[
            "compile",
            &s(&model),
            "-o",
            &s(&prog),
            "--trunc",
            "probabilistic",
            "--weights",
            weights,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            warns(&o),
            warned,
            "compile, {weights} weights: {}",
            stderr(&o)
        );
        for (protocol, secure) in [("rep3", true), ("clear", false)] {
            let o = qmpc(&[
                "run",
                &s(&prog),
                "--protocol",
                protocol,
                "--input",
                &s(&input),
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(
                warns(&o),
                warned && secure,
                "{protocol}, {weights} weights: {}",
                stderr(&o)
            );
        }
    }
}
