//! `qmpc train` end to end: every protocol that trains gives the model owner the same
//! trained file as `clear`; the shuffle is the documented one; errors are one line.

mod common;
use common::npy::{self, Array};
use common::{qmpc, required_data, s, stderr, tmp};
use std::path::{Path, PathBuf};

/// The digits arrays (`x_train`, `y_train`, `x_test`, `y_test`) as `.npy` files, and a
/// training set cut to its first `rows` rows (`x_cut`, `y_cut`).
fn digits(rows: usize) -> Option<PathBuf> {
    let data = required_data()?;
    let dir = tmp(&format!("digits-{rows}"));
    common::unpack_npz(&data.join("digits.npz"), &dir);
    let x = npy::read(&dir.join("x_train.npy")).unwrap();
    let y = npy::read(&dir.join("y_train.npy")).unwrap();
    let (Array::F32(xd, xv), Array::Int(_, yv, _)) = (x, y) else {
        panic!("digits has float rows and integer labels");
    };
    let row = xd[1];
    std::fs::write(
        dir.join("x_cut.npy"),
        npy::encode_f32(&[rows, row], &xv[..rows * row]),
    )
    .unwrap();
    std::fs::write(
        dir.join("y_cut.npy"),
        npy::encode_ints("<i8", &[rows], &yv[..rows]),
    )
    .unwrap();
    Some(dir)
}

fn corpus_mlp() -> PathBuf {
    common::root().join("../shared/corpus/models/mlp_digits/float.onnx")
}

fn train(model: &Path, dir: &Path, protocol: &str, extra: &[&str]) -> (Vec<u8>, String) {
    let out = tmp(&format!("trained-{protocol}-{}.onnx", extra.join("")));
    let stats = tmp(&format!("train-{protocol}.json"));
    let mut args = vec![
        "train".to_string(),
        s(model),
        "--data".into(),
        s(&dir.join("x_cut.npy")),
        "--labels".into(),
        s(&dir.join("y_cut.npy")),
        "--batch".into(),
        "64".into(),
        "--lr".into(),
        "0.1".into(),
        "--momentum".into(),
        "0.9".into(),
        "--protocol".into(),
        protocol.into(),
        "-o".into(),
        s(&out),
        "--stats".into(),
        s(&stats),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = qmpc(&refs);
    assert!(o.status.success(), "{protocol}: {}", stderr(&o));
    (
        std::fs::read(&out).unwrap(),
        std::fs::read_to_string(&stats).unwrap(),
    )
}

/// Three steps of 64 rows (and one more epoch) under each protocol that trains: the
/// trained file is byte-identical with `clear`'s, and it is not the initial model.
#[test]
fn every_protocol_trains_bit_identically_with_clear() {
    let Some(dir) = digits(192) else { return };
    let model = corpus_mlp();
    let (want, _) = train(&model, &dir, "clear", &["--epochs", "2"]);
    assert_ne!(
        want,
        std::fs::read(&model).unwrap(),
        "training changed nothing"
    );
    for p in ["rep3", "shamir", "mal-rep3"] {
        let (got, stats) = train(&model, &dir, p, &["--epochs", "2"]);
        assert!(got == want, "{p}: the trained model differs from clear's");
        assert!(stats.contains("\"steps\": 6"), "{p}: {stats}");
    }
}

/// The shuffle is the documented splitmix64 Fisher–Yates: training on the same rows in
/// another order (another seed) gives another model, the same seed the same one.
#[test]
fn the_seed_of_the_public_shuffle_matters_and_repeats() {
    let Some(dir) = digits(192) else { return };
    let model = corpus_mlp();
    let (a, _) = train(&model, &dir, "clear", &["--seed", "1"]);
    let (b, _) = train(&model, &dir, "clear", &["--seed", "1"]);
    let (c, _) = train(&model, &dir, "clear", &["--seed", "2"]);
    assert!(a == b);
    assert!(a != c);
}

/// What training cannot do yet, or cannot do with these files, is one line naming it.
#[test]
fn refusals_are_one_line_naming_the_cause() {
    let Some(dir) = digits(192) else { return };
    let model = corpus_mlp();
    let x = s(&dir.join("x_cut.npy"));
    let y = s(&dir.join("y_cut.npy"));
    let out = s(&tmp("refused.onnx"));
    let base = |extra: &[&str]| {
        let mut a = vec![
            "train", "--data", &x, "--labels", &y, "--lr", "0.1", "-o", &out,
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            base(&[&s(&model), "--protocol", "semi2k"]),
            "training under `semi2k` is not supported yet",
        ),
        (
            base(&[&s(&model), "--protocol", "clear", "--optimizer", "adam"]),
            "--optimizer adam is not supported yet",
        ),
        (
            base(&[
                &s(&common::root().join("../shared/corpus/models/lenet/float.onnx")),
                "--protocol",
                "clear",
            ]),
            "(Conv): `Conv` is not supported in a training graph",
        ),
        (
            base(&[&s(&model), "--protocol", "clear", "--batch", "1000"]),
            "a batch of 1000 rows from a data set of 192",
        ),
    ];
    for (args, want) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = qmpc(&refs);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
}
