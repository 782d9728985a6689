//! `disasm` then `asm` gives back the identical binary for every model; corrupted inputs
//! get one clear error line and a non-zero exit.

mod common;
use common::*;
use qmpc_vm::bytecode::asm::{assemble, disassemble};

fn all_models() -> Vec<Entry> {
    let mut v = entries(&root().join("models"));
    if let Some(c) = shared_corpus() {
        v.extend(entries(&c));
    }
    v.into_iter().filter(|e| !e.float).collect()
}

#[test]
fn disasm_then_asm_is_identity() {
    let mut n = 0;
    for e in all_models() {
        let Ok(c) = qmpc_compiler::compile_file(&e.model, &Default::default()) else {
            continue;
        };
        let bin = c.program.to_bytes();
        let text = disassemble(&c.program);
        let back = assemble(&text).unwrap_or_else(|err| panic!("{}: {err}", e.id));
        assert_eq!(back.to_bytes(), bin, "{}: asm(disasm(p)) differs", e.id);
        n += 1;
    }
    assert!(n > 50, "only {n} models round-tripped");
}

#[test]
fn cli_roundtrip_and_errors() {
    let model = root().join("models/tiny_mlp/qop_s8_pt.onnx");
    let (bin, asm, bin2) = (tmp("rt.qmpc"), tmp("rt.s"), tmp("rt2.qmpc"));
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    assert!(qmpc(&[
        "compile",
        &s(&model),
        "-o",
        &s(&bin),
        "--emit-asm",
        &s(&asm)
    ])
    .status
    .success());
    assert!(qmpc(&["asm", &s(&asm), "-o", &s(&bin2)]).status.success());
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(&bin2).unwrap());

    // Corrupted bytecode: one error line naming the file, exit 1.
    let mut bytes = std::fs::read(&bin).unwrap();
    let mid = bytes.len() / 2;
    bytes.truncate(mid);
    let bad = tmp("bad.qmpc");
    std::fs::write(&bad, &bytes).unwrap();
    let o = qmpc(&["disasm", &s(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.qmpc") && err.contains("not a valid qmpc program"),
        "{err}"
    );

    // Wrong input shape: names the input and both shapes.
    let x = tmp("x.npy");
    std::fs::write(&x, npy::encode_f32(&[1, 63], &[0.0; 63])).unwrap();
    let o = qmpc(&["run", &s(&bin), "--protocol", "clear", "--input", &s(&x)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("input `input` has shape [1, 63]")
            && err.contains("the model takes float32 [N, 64]"),
        "{err}"
    );

    // Unknown protocol.
    let o = qmpc(&["run", &s(&bin), "--protocol", "nope", "--input", &s(&x)]);
    assert!(stderr(&o).contains("unknown protocol `nope`"));
}

#[test]
fn malformed_onnx_errors() {
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let good = std::fs::read(root().join("models/tiny_mlp/qop_s8_pt.onnx")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.onnx",
            good[..good.len() / 3].to_vec(),
            "not a valid ONNX protobuf",
        ),
        (
            "random.onnx",
            (0..4000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "not a valid ONNX protobuf",
        ),
        ("empty.onnx", vec![], "has no graph"),
    ];
    for (name, bytes, want) in cases {
        let p = tmp(name);
        std::fs::write(&p, bytes).unwrap();
        let o = qmpc(&["compile", &s(&p), "-o", &s(&tmp("x.qmpc"))]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.contains(name) && (err.contains(want) || err.contains("not produced")),
            "{name}: {err}"
        );
    }
}

#[test]
fn unsupported_op_names_node_and_lists_supported() {
    let mut m = qmpc_compiler::onnx::decode_model(
        &std::fs::read(root().join("models/tiny_mlp/qop_s8_pt.onnx")).unwrap(),
        "x",
    )
    .unwrap();
    let g = m.graph.as_mut().unwrap();
    let n = g
        .node
        .iter_mut()
        .find(|n| n.op_type == "QuantizeLinear")
        .unwrap();
    n.op_type = "Einsum".into();
    n.name = "the_node".into();
    let bytes = prost::Message::encode_to_vec(&m);
    let err = qmpc_compiler::compile_bytes(&bytes, "m.onnx", &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("m.onnx: node `the_node` (ai.onnx::Einsum, opset 13): unsupported op"),
        "{err}"
    );
    assert!(
        err.contains("QLinearConv") && err.contains("com.microsoft::QGemm"),
        "{err}"
    );
    // A missing initializer is named.
    let mut m2 = qmpc_compiler::onnx::decode_model(
        &std::fs::read(root().join("models/tiny_mlp/qop_s8_pt.onnx")).unwrap(),
        "x",
    )
    .unwrap();
    let name = m2.graph.as_ref().unwrap().initializer[0].name.clone();
    m2.graph.as_mut().unwrap().initializer.remove(0);
    let err = qmpc_compiler::compile_bytes(
        &prost::Message::encode_to_vec(&m2),
        "m.onnx",
        &Default::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains(&format!("input `{name}` is not produced")),
        "{err}"
    );
}

/// Every unsupported node is reported at once, grouped by op; a node without a name is
/// named by its index and inputs.
#[test]
fn every_unsupported_node_is_reported_at_once() {
    let mut m = qmpc_compiler::onnx::decode_model(
        &std::fs::read(root().join("models/tiny_mlp/qop_s8_pt.onnx")).unwrap(),
        "x",
    )
    .unwrap();
    let g = m.graph.as_mut().unwrap();
    let mut renamed = Vec::new();
    for (i, n) in g.node.iter_mut().enumerate() {
        if n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear" {
            n.op_type = if renamed.len() % 2 == 0 {
                "Einsum"
            } else {
                "TopK"
            }
            .into();
            if renamed.is_empty() {
                n.name.clear();
            }
            renamed.push((i, n.name.clone(), n.input[0].clone()));
        }
    }
    assert!(renamed.len() >= 2, "the model has a Q and a DQ");
    let err = qmpc_compiler::compile_bytes(
        &prost::Message::encode_to_vec(&m),
        "m.onnx",
        &Default::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    let erfs = renamed.len().div_ceil(2);
    assert!(
        err.contains(&format!(
            "{} nodes use ops qmpc does not compile",
            renamed.len()
        )) && err.contains(&format!("ai.onnx::Einsum × {erfs}"))
            && err.contains("ai.onnx::TopK ×"),
        "{err}"
    );
    let (i, _, input) = &renamed[0];
    assert!(
        err.contains(&format!("#{i} (no name; inputs `{input}`")),
        "{err}"
    );
    for (_, name, _) in &renamed[1..] {
        assert!(err.contains(&format!("`{name}`")), "{name}: {err}");
    }
}

/// A graph that merges the batch axis into another (here ShuffleNet's channel shuffle
/// spelled as `[1, 4, 5, 5] → [2, 2, 5, 5]`, a transpose and back) compiles for the
/// exported batch: it computes what the free-batch spelling computes on one image, and
/// refuses a batch of eight with the shape it takes.
#[test]
fn a_graph_that_moves_the_batch_axis_compiles_for_its_exported_batch() {
    let path = root().join("models/op_qdq_slice/shuffle_u8.onnx");
    let mut m = qmpc_compiler::onnx::decode_model(&std::fs::read(&path).unwrap(), "x").unwrap();
    let g = m.graph.as_mut().unwrap();
    let shape5 = g
        .initializer
        .iter_mut()
        .find(|t| t.name == "shape5")
        .unwrap();
    shape5.dims = vec![4];
    shape5.int64_data = vec![2, 2, 5, 5];
    shape5.raw_data.clear();
    let t = g
        .node
        .iter_mut()
        .find(|n| n.op_type == "Transpose")
        .unwrap();
    t.attribute[0].ints = vec![1, 0, 2, 3];
    let dir = std::env::temp_dir().join(format!("qmpc-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let merged = dir.join("merged.onnx");
    std::fs::write(&merged, prost::Message::encode_to_vec(&m)).unwrap();
    let input = root().join("models/op_qdq_slice/ref/shuffle_u8/input.npy");
    let one = common::first_item(&input, &dir.join("x.qmpc")).unwrap();
    let out = |model: &std::path::Path, x: &std::path::Path, name: &str| {
        let o = common::qmpc(&[
            "run",
            model.to_str().unwrap(),
            "--protocol",
            "rep3",
            "--quiet",
            "--input",
            x.to_str().unwrap(),
            "--output",
            dir.join(name).to_str().unwrap(),
        ]);
        (
            o.status.success(),
            common::stderr(&o),
            std::fs::read(dir.join(name)).ok(),
        )
    };
    let (ok, err, want) = out(&path, &one, "free.npy");
    assert!(ok, "{err}");
    let (ok, err, got) = out(&merged, &one, "fixed.npy");
    assert!(ok, "{err}");
    assert_eq!(got, want, "the fixed-batch program computes something else");
    let (ok, err, _) = out(&merged, &input, "eight.npy");
    assert!(
        !ok && err.contains("[1, 4, 5, 5]") && err.lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a new user sees: `compile` says what it wrote, `run` without `--output` prints the
/// output's type, shape and each row's top class (here equal to onnxruntime's), and
/// numpy's default float64 input is taken as float32.
#[test]
fn compile_and_run_say_what_they_did() {
    let dir = std::env::temp_dir().join(format!("qmpc-say-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("m.qmpc");
    let o = common::qmpc(&[
        "compile",
        "models/tiny_mlp/qop_s8_pt.onnx",
        "-o",
        prog.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        said.contains("m.qmpw") && said.contains("secret weights"),
        "{said}"
    );
    let input = "models/tiny_mlp/ref/qop_s8_pt/input.npy";
    let want = match common::npy::read(std::path::Path::new(
        "models/tiny_mlp/ref/qop_s8_pt/output_0.npy",
    ))
    .unwrap()
    {
        common::npy::Array::F32(d, v) => v
            .chunks(d[1])
            .map(|r| {
                (0..r.len())
                    .fold(0, |b, i| if r[i] > r[b] { i } else { b })
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => panic!("float reference"),
    };
    // The same input as float64.
    let x64 = dir.join("x64.npy");
    let common::npy::Array::F32(d, v) = common::npy::read(std::path::Path::new(input)).unwrap()
    else {
        panic!("float input")
    };
    let bytes: Vec<u8> = v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect();
    std::fs::write(&x64, common::npy::encode("<f8", &d, &bytes)).unwrap();
    for x in [input, x64.to_str().unwrap()] {
        let o = common::qmpc(&[
            "run",
            prog.to_str().unwrap(),
            "--protocol",
            "rep3",
            "--input",
            x,
        ]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(
            out.trim(),
            format!("output `logits`: float32 [8, 10]; top-1 per row: {want}"),
        );
        // Before a secure run, `qmpc cost`'s prediction; after it, what it took.
        let err = common::stderr(&o);
        let cost = common::qmpc(&[
            "cost",
            prog.to_str().unwrap(),
            "--protocol",
            "rep3",
            "--batch",
            "8",
        ]);
        let table = String::from_utf8_lossy(&cost.stdout).into_owned();
        let rounds = table
            .split("batch 8: ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .expect("cost's first line names the rounds");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines[0].starts_with(&format!("rep3 (3 parties), batch 8: {rounds} rounds, "))
                && lines[0].ends_with("(predicted)"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("done in ") && lines[1].contains(&format!(": {rounds} rounds")),
            "{err}"
        );
    }
    // --quiet silences both.
    let o = common::qmpc(&[
        "run",
        prog.to_str().unwrap(),
        "--protocol",
        "rep3",
        "--quiet",
        "--input",
        input,
    ]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        common::stderr(&o)
    );
    // The README's demo: clear and rep3 side by side, both agreeing with onnxruntime.
    let o = common::qmpc(&[
        "demo",
        prog.to_str().unwrap(),
        "models/tiny_mlp/ref/qop_s8_pt",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("8/8 predictions agree with onnxruntime")
            && out.contains("bit-identical with clear")
            && out.contains("rounds"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `qmpc disasm big.qmpc | head` ends quietly: a reader closing the pipe is not a panic.
#[test]
fn disasm_into_a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let Some(corpus) = required_corpus() else {
        return;
    };
    // ShuffleNetV2's assembly is ≈ 300 KB, far more than a pipe buffers.
    let model = corpus.join("realnets/models/shufflenet_v2_x0_5/qdq_s8_pc.onnx");
    let bin = tmp("pipe.qmpc");
    let o = qmpc(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        bin.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmpc"))
        .args(["disasm", bin.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the qmpc binary runs");
    let mut first = String::new();
    BufReader::new(c.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a first line");
    // The reader is dropped here: the pipe closes with most of the text unread.
    assert!(first.starts_with("; qmpc bytecode"), "{first}");
    let o = c.wait_with_output().expect("exit");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}
