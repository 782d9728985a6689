//! `qmpc train` end to end: every protocol that trains gives the model owner the same
//! trained file as `clear`; the shuffle is the documented one; errors are one line.

mod common;
use common::npy::{self, Array};
use common::{qmpc, required_data, s, stderr, tmp};
use std::path::{Path, PathBuf};

/// The digits arrays (`x_train`, `y_train`, `x_test`, `y_test`) as `.npy` files, and a
/// training set cut to its first `rows` rows (`x_cut`, `y_cut`).
fn digits(rows: usize) -> Option<PathBuf> {
    // Tests run at the same time; one writes the files while the others wait.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let data = required_data()?;
    let dir = tmp(&format!("digits-{rows}"));
    if dir.join("y_cut.npy").exists() {
        return Some(dir);
    }
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

/// `qmpc cost MODEL --train ARGS --protocol P --format json`, parsed.
fn step_cost(model: &str, protocol: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["cost", model, "--train"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--protocol", protocol, "--format", "json"]);
    let o = qmpc(&all);
    assert!(o.status.success(), "{protocol}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn corpus_mlp() -> PathBuf {
    common::root().join("../shared/corpus/models/mlp_digits/float.onnx")
}

fn train(model: &Path, dir: &Path, protocol: &str, extra: &[&str]) -> (Vec<u8>, String) {
    let out = tmp(&format!("trained-{protocol}-{}.onnx", extra.join("")));
    let stats = tmp(&format!("train-{protocol}-{}.json", extra.join("")));
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
    for p in ["rep3", "shamir", "mal-rep3", "semi2k", "fss", "spdz2k"] {
        let (got, stats) = train(&model, &dir, p, &["--epochs", "2"]);
        assert!(got == want, "{p}: the trained model differs from clear's");
        assert!(stats.contains("\"steps\": 6"), "{p}: {stats}");
        // `qmpc cost --train` predicts the measured step, party by party.
        let cost = step_cost(
            &s(&model),
            p,
            &[
                "--batch",
                "64",
                "--rows",
                "192",
                "--lr",
                "0.1",
                "--momentum",
                "0.9",
            ],
        );
        let measured: serde_json::Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(
            cost["step"]["per_party"], measured["step"]["per_party"],
            "{p}: qmpc cost --train against the measured first step"
        );
        assert_eq!(cost["steps_per_epoch"], 3);
        // A dealer's material arrives run by run; the step's share of it is priced. The
        // six steps take nearly all of it (the seeds go once, the rows' sharing is small).
        let dealt = measured["dealer_bytes_sent"].as_u64().unwrap() as f64;
        let per_step = cost["step"]["preprocessing"]["bytes_sent"]
            .as_u64()
            .unwrap() as f64;
        if ["semi2k", "fss", "spdz2k"].contains(&p) {
            assert!(
                per_step > 0.0 && (dealt - 6.0 * per_step).abs() <= 0.02 * dealt,
                "{p}: {dealt} dealt, {per_step} per step"
            );
        } else {
            assert_eq!((dealt, per_step), (0.0, 0.0), "{p}");
        }
    }
}

/// Two hospitals: the rows split between parties 1 and 2 (`--data 1=… --data 2=…`) train
/// the same model as all of them at party 1, under `clear` and `rep3`; a party that does
/// not exist, or data without labels, is one line.
#[test]
fn several_data_owners_train_on_their_rows_together() {
    let Some(dir) = digits(192) else { return };
    let model = corpus_mlp();
    let x = npy::read(&dir.join("x_cut.npy")).unwrap();
    let y = npy::read(&dir.join("y_cut.npy")).unwrap();
    let (Array::F32(xd, xv), Array::Int(_, yv, _)) = (x, y) else {
        panic!("float rows, integer labels");
    };
    let (row, cut) = (xd[1], 80);
    let part = |name: &str, a: usize, b: usize| {
        let xp = tmp(&format!("{name}-x.npy"));
        let yp = tmp(&format!("{name}-y.npy"));
        std::fs::write(&xp, npy::encode_f32(&[b - a, row], &xv[a * row..b * row])).unwrap();
        std::fs::write(&yp, npy::encode_ints("<i8", &[b - a], &yv[a..b])).unwrap();
        (s(&xp), s(&yp))
    };
    let (x1, y1) = part("owner1", 0, cut);
    let (x2, y2) = part("owner2", cut, 192);
    let (whole, _) = train(&model, &dir, "clear", &[]);
    for p in ["clear", "rep3"] {
        let out = tmp(&format!("split-{p}.onnx"));
        let o = qmpc(&[
            "train",
            &s(&model),
            "--data",
            &format!("1={x1}"),
            "--labels",
            &format!("1={y1}"),
            "--data",
            &format!("2={x2}"),
            "--labels",
            &format!("2={y2}"),
            "--batch",
            "64",
            "--lr",
            "0.1",
            "--momentum",
            "0.9",
            "--protocol",
            p,
            "-o",
            &s(&out),
        ]);
        assert!(o.status.success(), "{p}: {}", stderr(&o));
        assert!(
            std::fs::read(&out).unwrap() == whole,
            "{p}: the split rows trained another model"
        );
    }
    let refused = |extra: &[&str], want: &str| {
        let mut args = vec![
            "train".to_string(),
            s(&model),
            "--lr".into(),
            "0.1".into(),
            "--protocol".into(),
            "rep3".into(),
            "-o".into(),
            s(&tmp("refused-split.onnx")),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = qmpc(&refs);
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains(want), "{extra:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    };
    let (d5, l5) = (format!("5={x1}"), format!("5={y1}"));
    refused(
        &["--data", &d5, "--labels", &l5],
        "there are parties 0 to 2 only",
    );
    let (d2, l1) = (format!("2={x2}"), format!("1={y1}"));
    refused(
        &["--data", &d2, "--labels", &l1],
        "--data names party 2 but no --labels does",
    );
}

/// LeNet's step of 128 under `rep3` stays within the 250 rounds and within the
/// bytes docs/training.md reports (54.8 MB from party 0; 119 MB before its pools came
/// before their ReLUs): a layout that compares or truncates the pre-pool elements again
/// fails this.
#[test]
fn lenet_step_keeps_its_rounds_and_bytes() {
    let model = common::root().join("models/train/lenet_init.onnx");
    let step = [
        "--batch",
        "128",
        "--rows",
        "10000",
        "--lr",
        "0.05",
        "--momentum",
        "0.9",
    ];
    let cost = step_cost(&s(&model), "rep3", &step);
    for party in cost["step"]["per_party"].as_array().unwrap() {
        let rounds = party["rounds"].as_u64().unwrap();
        let bytes = party["bytes_sent"].as_u64().unwrap();
        assert!(rounds <= 250, "{rounds} rounds per LeNet step");
        assert!(bytes <= 56_000_000, "{bytes} bytes per LeNet step");
    }
    // Probabilistic truncation compiles too (its exp table covers the wider bounds of a
    // probabilistic rescale), but needs Z_2^128 for its headroom: more bytes, not fewer.
    let pr = step_cost(
        &s(&model),
        "rep3",
        &[&step[..], &["--trunc", "probabilistic"]].concat(),
    );
    assert_eq!(pr["step"]["ring_bits"].as_u64(), Some(128), "{pr}");
}

/// MSE (`--loss mse`) on the `mse` gradient case: `rep3` and `semi2k` write `clear`'s
/// file, and `qmpc cost --train --loss mse` predicts the measured step.
#[test]
fn mse_trains_bit_identically_and_is_priced() {
    let d = common::root().join("models/train/grads/mse");
    let model = s(&d.join("model.onnx"));
    let run = |p: &str| -> (Vec<u8>, serde_json::Value) {
        let out = tmp(&format!("mse-{p}.onnx"));
        let stats = tmp(&format!("mse-{p}.json"));
        let o = qmpc(&[
            "train",
            &model,
            "--data",
            &s(&d.join("x.npy")),
            "--labels",
            &s(&d.join("target.npy")),
            "--loss",
            "mse",
            "--batch",
            "4",
            "--epochs",
            "3",
            "--lr",
            "0.1",
            "--protocol",
            p,
            "-o",
            &s(&out),
            "--stats",
            &s(&stats),
        ]);
        assert!(o.status.success(), "{p}: {}", stderr(&o));
        (
            std::fs::read(&out).unwrap(),
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap(),
        )
    };
    let (want, _) = run("clear");
    for p in ["rep3", "semi2k"] {
        let (got, measured) = run(p);
        assert!(got == want, "{p}: MSE training differs from clear's");
        let cost = step_cost(
            &model,
            p,
            &[
                "--loss", "mse", "--batch", "4", "--rows", "4", "--lr", "0.1",
            ],
        );
        assert_eq!(
            cost["step"]["per_party"], measured["step"]["per_party"],
            "{p}: qmpc cost --train --loss mse against the measured first step"
        );
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
            base(&[
                &s(&model),
                "--protocol",
                "clear",
                "--optimizer",
                "adam",
                "--beta1",
                "0.99",
                "--beta2",
                "0.9",
            ]),
            "Adam's betas must be in [0, 1) with β1² < β2",
        ),
        (
            base(&[
                &s(&common::root().join("../shared/corpus/models/mlp_digits/qdq_s8_pt.onnx")),
                "--protocol",
                "clear",
            ]),
            "(DequantizeLinear): `DequantizeLinear` is not supported in a training graph",
        ),
        (
            base(&[&s(&model), "--protocol", "clear", "--batch", "1000"]),
            "a batch of 1000 rows from a data set of 192",
        ),
        (
            base(&[
                &s(&common::root().join("models/train/lenet_init.onnx")),
                "--protocol",
                "spdz2k",
            ]),
            "GB for every step of 128 rows (more than the 4 GB one run's material may take)",
        ),
        (
            base(&[&s(&model), "--protocol", "clear", "--loss", "mse"]),
            "--loss mse takes float32 targets of shape [192, 10]",
        ),
        (
            base(&[
                &s(&model),
                "--protocol",
                "clear",
                "--loss",
                "mse",
                "--test-data",
                &x,
                "--test-labels",
                &y,
            ]),
            "a model trained with MSE has no classes to count",
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

fn params_of(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let m = qmpc_compiler::train::model::Model::read(&bytes, &s(path)).unwrap();
    m.params.into_iter().map(|p| (p.name, p.values)).collect()
}

fn floats(a: &Array) -> Vec<f64> {
    match a {
        Array::F32(_, v) => v.iter().map(|&x| x as f64).collect(),
        Array::Int(..) => panic!("float data expected"),
    }
}

/// Float64 `.npy` (numpy `<f8`) at full precision (the CLI's reader narrows it to float32).
fn f64s(path: &Path) -> Vec<f64> {
    let b = std::fs::read(path).unwrap();
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + hl]);
    assert!(header.contains("<f8"), "{}: {header}", path.display());
    b[10 + hl..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Per-op gradients against PyTorch's autograd (float64): one step of plain SGD with
/// `lr = 1` on the case's batch of 4 moves each parameter by `−g` (`g` the gradient of
/// the batch's mean loss), so the step's gradient is `w − w'`. Every element is within
/// 2e-4 of PyTorch's (the fixed-point error: 16 fractional bits, one rounding per
/// product; docs/training.md), for the cross-entropy cases and the MSE one, and the
/// revealed loss (`--reveal-loss`) is PyTorch's within 1e-3.
#[test]
fn gradients_of_every_op_match_pytorch() {
    let dir = common::root().join("models/train/grads");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let mut checked = 0;
    for case in index["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (loss, labels) = match case["loss"].as_str() {
            Some("softmax_cross_entropy_mean") => ("cross-entropy", "labels.npy"),
            Some("mse_mean") => ("mse", "target.npy"),
            other => panic!("{name}: loss {other:?}"),
        };
        let d = dir.join(name);
        let out = tmp(&format!("grad-{name}.onnx"));
        let o = qmpc(&[
            "train",
            &s(&d.join("model.onnx")),
            "--data",
            &s(&d.join("x.npy")),
            "--labels",
            &s(&d.join(labels)),
            "--loss",
            loss,
            "--batch",
            "4",
            "--lr",
            "1",
            "--protocol",
            "clear",
            "-o",
            &s(&out),
            "--reveal-loss",
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        // The revealed loss is PyTorch's on the same batch.
        let printed = String::from_utf8_lossy(&o.stdout);
        let got: f64 = printed
            .lines()
            .find_map(|l| l.strip_prefix("epoch 1: mean training loss "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: no loss in {printed}"));
        let want = f64s(&d.join("loss.npy"))[0];
        assert!(
            (got - want).abs() <= 1e-3,
            "{name}: loss {got}, PyTorch {want}"
        );
        let before = params_of(&d.join("model.onnx"));
        let after = params_of(&out);
        let mut worst = 0f64;
        for ((pname, w0), (_, w1)) in before.iter().zip(&after) {
            let want = f64s(&d.join(format!("grad_{pname}.npy")));
            assert_eq!(want.len(), w0.len(), "{name}/{pname}");
            for (i, ((a, b), r)) in w0.iter().zip(w1).zip(&want).enumerate() {
                let g = *a as f64 - *b as f64;
                let tol = 2e-4;
                worst = worst.max((g - r).abs());
                assert!(
                    (g - r).abs() <= tol,
                    "{name}: gradient of `{pname}`[{i}] is {g}, PyTorch's {r}"
                );
            }
        }
        eprintln!("{name}: largest gradient error {worst:.2e}");
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} gradient cases ran");
}

/// The digits MLP from PyTorch's initial weights (`models/train/mlp_digits_init.onnx`),
/// 10 epochs, batch 128, SGD lr 0.1 momentum 0.9, the documented shuffle: the test
/// accuracy after every epoch is PyTorch's to within 0.5 points (measured: equal in every
/// epoch), the revealed mean loss PyTorch's within 1e-3, and `rep3`, `semi2k` and `shamir`
/// give the same file as `clear`.
#[test]
fn digits_training_reaches_pytorch_accuracy() {
    let Some(data) = required_data() else { return };
    let dir = tmp("digits-full");
    common::unpack_npz(&data.join("digits.npz"), &dir);
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("models/train/mlp_digits_sgd.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<f64> = refs["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["test_accuracy"].as_f64().unwrap())
        .collect();
    let want_loss: Vec<f64> = refs["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mean_train_loss"].as_f64().unwrap())
        .collect();
    let model = common::root().join("models/train/mlp_digits_init.onnx");
    let mut files = Vec::new();
    for p in ["clear", "rep3", "semi2k", "shamir"] {
        let out = tmp(&format!("digits-{p}.onnx"));
        let stats = tmp(&format!("digits-{p}.json"));
        let o = qmpc(&[
            "train",
            &s(&model),
            "--data",
            &s(&dir.join("x_train.npy")),
            "--labels",
            &s(&dir.join("y_train.npy")),
            "--test-data",
            &s(&dir.join("x_test.npy")),
            "--test-labels",
            &s(&dir.join("y_test.npy")),
            "--epochs",
            "10",
            "--batch",
            "128",
            "--lr",
            "0.1",
            "--momentum",
            "0.9",
            "--protocol",
            p,
            "-o",
            &s(&out),
            "--stats",
            &s(&stats),
            "--reveal-loss",
        ]);
        assert!(o.status.success(), "{p}: {}", stderr(&o));
        let st: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        let got: Vec<f64> = st["test_correct"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_f64().unwrap() / 449.0)
            .collect();
        assert_eq!(got.len(), 10);
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 0.005,
                "{p}, epoch {}: test accuracy {g}, PyTorch {w}",
                e + 1
            );
        }
        // `--reveal-loss`: the model owner's mean training loss per epoch is PyTorch's
        // (measured within 1.3e-4).
        let loss: Vec<f64> = st["mean_loss"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_f64().unwrap())
            .collect();
        assert_eq!(loss.len(), 10, "{p}");
        for (e, (g, w)) in loss.iter().zip(&want_loss).enumerate() {
            assert!(
                (g - w).abs() <= 1e-3,
                "{p}, epoch {}: loss {g}, PyTorch {w}",
                e + 1
            );
        }
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("epoch 10: mean training loss"),
            "{p}: the loss is printed"
        );
        files.push(std::fs::read(&out).unwrap());
    }
    for (p, f) in ["rep3", "semi2k", "shamir"].iter().zip(&files[1..]) {
        assert!(files[0] == *f, "{p}'s trained model differs from clear's");
    }
}

/// Adam (`--optimizer adam`): from PyTorch's initial weights, 10 epochs at lr 0.01, the
/// test accuracy after every epoch is PyTorch's within one point and the last within half
/// a point (measured: at most 0.67 points apart, the last equal); on a short run every
/// protocol gives `clear`'s bits and `qmpc cost --train` predicts the step.
#[test]
fn adam_trains_as_pytorch_does_under_every_protocol() {
    let Some(data) = required_data() else { return };
    let dir = tmp("digits-adam");
    common::unpack_npz(&data.join("digits.npz"), &dir);
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("models/train/mlp_digits_adam.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<f64> = refs["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["test_accuracy"].as_f64().unwrap())
        .collect();
    let model = common::root().join("models/train/mlp_digits_init.onnx");
    let out = tmp("digits-adam.onnx");
    let stats = tmp("digits-adam.json");
    let o = qmpc(&[
        "train",
        &s(&model),
        "--data",
        &s(&dir.join("x_train.npy")),
        "--labels",
        &s(&dir.join("y_train.npy")),
        "--test-data",
        &s(&dir.join("x_test.npy")),
        "--test-labels",
        &s(&dir.join("y_test.npy")),
        "--epochs",
        "10",
        "--batch",
        "128",
        "--lr",
        "0.01",
        "--optimizer",
        "adam",
        "--protocol",
        "clear",
        "-o",
        &s(&out),
        "--stats",
        &s(&stats),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let got: Vec<f64> = st["test_correct"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap() / 449.0)
        .collect();
    assert_eq!(got.len(), 10);
    for (e, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 0.01, "epoch {}: {g}, PyTorch {w}", e + 1);
    }
    assert!(
        (got[9] - want[9]).abs() <= 0.005,
        "{} against {}",
        got[9],
        want[9]
    );

    let Some(cut) = digits(192) else { return };
    let adam = ["--optimizer", "adam"];
    let (clear, _) = train(&model, &cut, "clear", &adam);
    for p in ["rep3", "semi2k", "shamir"] {
        let (got, stats) = train(&model, &cut, p, &adam);
        assert!(
            got == clear,
            "{p}: Adam's trained model differs from clear's"
        );
        let cost = step_cost(
            &s(&model),
            p,
            &[
                "--batch",
                "64",
                "--rows",
                "192",
                "--lr",
                "0.1",
                "--optimizer",
                "adam",
            ],
        );
        let measured: serde_json::Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(
            cost["step"]["per_party"], measured["step"]["per_party"],
            "{p}: qmpc cost --train --optimizer adam against the measured first step"
        );
    }
}

/// `exp`, `1/x`, softmax and `1/√x` over their documented ranges (docs/training.md): the
/// largest error (relative for `1/√x`) of the fixed-point versions against f64 on inputs
/// on the 2^-16 grid, under `clear`; `rep3` gives the same bits.
#[test]
fn nonlinear_functions_meet_their_error_bounds() {
    use qmpc_compiler::train::{function_program, Function};
    let grid = |v: f64| (v * 65536.0).round() / 65536.0;
    let cases: Vec<(Function, Vec<f64>, f64)> = vec![
        (
            Function::Exp,
            (0..2000).map(|i| grid(-17.0 * i as f64 / 1999.0)).collect(),
            2e-5,
        ),
        (
            Function::Reciprocal { max: 10.0 },
            (0..2000)
                .map(|i| grid(1.0 + 9.0 * i as f64 / 1999.0))
                .collect(),
            3e-5,
        ),
        (
            Function::Softmax { classes: 10 },
            (0..2000)
                .map(|i| grid(((i * 7919) % 2000) as f64 / 125.0 - 8.0))
                .collect(),
            2e-5,
        ),
        // Relative error: from 2^-16 (the grid's least) to 16, log-spaced.
        (
            Function::Rsqrt,
            (0..2000)
                .map(|i| grid(2f64.powf(-16.0 + 20.0 * i as f64 / 1999.0)).max(1.0 / 65536.0))
                .collect(),
            1e-4,
        ),
    ];
    for (f, xs, bound) in cases {
        let p = function_program(f, xs.len(), 16).unwrap();
        let prog = tmp(&format!("{f:?}.qmpc"));
        std::fs::write(&prog, p.to_bytes()).unwrap();
        let input = tmp(&format!("{f:?}-x.npy"));
        let dims: Vec<usize> = p.inputs[0].ty.dims.clone();
        let x32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
        std::fs::write(&input, npy::encode_f32(&dims, &x32)).unwrap();
        let mut outs = Vec::new();
        for proto in ["clear", "rep3"] {
            let out = tmp(&format!("{f:?}-{proto}.npy"));
            let o = qmpc(&[
                "run",
                &s(&prog),
                "--protocol",
                proto,
                "--input",
                &s(&input),
                "--output",
                &s(&out),
            ]);
            assert!(o.status.success(), "{f:?} {proto}: {}", stderr(&o));
            outs.push(floats(&npy::read(&out).unwrap()));
        }
        assert_eq!(outs[0], outs[1], "{f:?}: rep3 differs from clear");
        let want: Vec<f64> = match f {
            Function::Exp => xs.iter().map(|x| x.exp()).collect(),
            Function::Reciprocal { .. } => xs.iter().map(|x| 1.0 / x).collect(),
            Function::Softmax { classes } => xs
                .chunks(classes)
                .flat_map(|r| {
                    let m = r.iter().cloned().fold(f64::MIN, f64::max);
                    let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
                    r.iter().map(move |v| (v - m).exp() / s).collect::<Vec<_>>()
                })
                .collect(),
            Function::Rsqrt => xs.iter().map(|x| 1.0 / x.sqrt()).collect(),
        };
        let relative = matches!(f, Function::Rsqrt);
        let worst = outs[0]
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / if relative { w.abs() } else { 1.0 })
            .fold(0.0, f64::max);
        eprintln!("{f:?}: largest error {worst:.2e}");
        assert!(worst <= bound, "{f:?}: error {worst} above {bound}");
    }
}
