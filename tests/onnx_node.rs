//! ONNX's own backend node tests (`../shared/corpus/onnx-node`) through `qmpc compile` and
//! `qmpc run --protocol clear`.
//!
//! A node test feeds every operand (scales and zero points too) as a graph input. qmpc needs
//! quantization parameters and weights at compile time, so the harness freezes every input but
//! the first into an initializer with the test's own values; the first input is the data
//! owner's tensor.
//!
//! Expectations:
//! - a test with an element type qmpc does not compute on (float8, float4, int4, int2, int16,
//!   uint16, uint32, uint64) fails to compile with one line saying `unsupported ... type`;
//! - `DynamicQuantizeLinear` matches onnxruntime except by one step where the exact quotient
//!   is a tie (x.5: qmpc rounds it to even, onnxruntime's f32 division lands on either side);
//! - every other quantized-op test passes bit-exactly, on every data set;
//! - the float-op tests on integer tensors that qmpc can compute (`Clip` on int8, `MaxPool` on
//!   uint8) pass bit-exactly; every other float-op test fails with one line naming the op.

mod common;

use common::npy::{self, Array};
use common::{qmpc, stderr, tmp};
use prost::Message;
use qmpc_compiler::onnx::proto::{data_type, ModelProto, TensorProto};
use qmpc_compiler::onnx::{tensor_data, Values};
use std::path::{Path, PathBuf};

/// Element types qmpc computes on (float16 only as a scale).
const SUPPORTED: [i32; 6] = [
    data_type::FLOAT,
    data_type::FLOAT16,
    data_type::INT8,
    data_type::UINT8,
    data_type::INT32,
    data_type::INT64,
];

/// Float-op tests on integer tensors that qmpc computes exactly.
const INTEGER_FLOAT_OPS: [&str; 4] = [
    "test_clip_default_int8_inbounds",
    "test_clip_default_int8_max",
    "test_clip_default_int8_min",
    "test_maxpool_2d_uint8",
];

#[derive(Debug, PartialEq)]
enum Expect {
    Pass,
    UnsupportedType(String),
    ClearError,
}

fn read_tensor(path: &Path) -> TensorProto {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    TensorProto::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn elem_type(vi: &qmpc_compiler::onnx::proto::ValueInfoProto) -> i32 {
    vi.r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .map_or(0, |t| t.elem_type)
}

fn expectation(name: &str, kind: &str, model: &ModelProto) -> Expect {
    let g = model.graph.as_ref().expect("a graph");
    if let Some(t) = g
        .input
        .iter()
        .chain(&g.output)
        .map(elem_type)
        .find(|t| !SUPPORTED.contains(t))
    {
        return Expect::UnsupportedType(data_type::name(t).to_string());
    }
    if kind == "quantized" || INTEGER_FLOAT_OPS.contains(&name) {
        Expect::Pass
    } else {
        Expect::ClearError
    }
}

/// The model with every input but those in `keep` frozen to the data set's values, and the
/// kept inputs' tensors with their names.
fn freeze(model: &ModelProto, data_set: &Path, keep: &[usize]) -> (ModelProto, Vec<TensorProto>) {
    let mut m = model.clone();
    let g = m.graph.as_mut().expect("a graph");
    let inputs = std::mem::take(&mut g.input);
    let mut data = Vec::new();
    for (j, vi) in inputs.into_iter().enumerate() {
        let mut t = read_tensor(&data_set.join(format!("input_{j}.pb")));
        t.name = vi.name.clone();
        if keep.contains(&j) {
            g.input.push(vi);
            data.push(t);
        } else {
            g.initializer.push(t);
        }
    }
    (m, data)
}

fn npy_of(t: &TensorProto) -> Vec<u8> {
    let d = tensor_data(t).expect("a readable test tensor");
    match (&d.values, d.dtype) {
        (Values::Float(v), _) => npy::encode_f32(&d.dims, v),
        (Values::Int(v), data_type::INT8) => npy::encode_ints("|i1", &d.dims, v),
        (Values::Int(v), data_type::UINT8) => npy::encode_ints("|u1", &d.dims, v),
        (Values::Int(v), data_type::INT32) => npy::encode_ints("<i4", &d.dims, v),
        (Values::Int(v), _) => npy::encode_ints("<i8", &d.dims, v),
    }
}

/// Compares qmpc's output file with the reference tensor; `Err` says how they differ.
fn compare(got: &Array, want: &TensorProto) -> Result<(), String> {
    let w = tensor_data(want).map_err(|e| format!("reference: {e}"))?;
    if got.dims() != w.dims.as_slice() {
        return Err(format!("shape {:?}, expected {:?}", got.dims(), w.dims));
    }
    let same = match (got, &w.values) {
        (Array::F32(_, a), Values::Float(b)) => {
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        }
        (Array::Int(_, a, _), Values::Int(b)) => a == b,
        _ => return Err("element type differs".into()),
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "values differ: got {got:?}, expected {:?}",
            w.values
        ))
    }
}

/// `DynamicQuantizeLinear`'s `y`: equal, except by one step where the exact quotient
/// `255·x/(max − min)` is a tie (x.5), which qmpc rounds to even and onnxruntime's f32
/// division (by the f32 scale) may put on either side.
fn compare_dynamic(got: &Array, want: &TensorProto, x: &TensorProto) -> Result<(), String> {
    let w = tensor_data(want).map_err(|e| format!("reference: {e}"))?;
    let x = tensor_data(x).map_err(|e| format!("input: {e}"))?;
    let (Array::Int(dims, g, _), Values::Int(w), Values::Float(x)) = (got, &w.values, &x.values)
    else {
        return Err("element types differ".into());
    };
    if dims.iter().product::<usize>() != w.len() || w.len() != x.len() {
        return Err(format!("shape {dims:?}, expected {} elements", w.len()));
    }
    let max = x.iter().fold(0f64, |m, &v| m.max(v as f64));
    let min = x.iter().fold(0f64, |m, &v| m.min(v as f64));
    for ((&g, &w), &x) in g.iter().zip(w).zip(x) {
        let q = 255.0 * x as f64 / (max - min);
        let tie = (q - q.floor() - 0.5).abs() < 1e-9;
        if g != w && !(tie && (g - w).abs() == 1) {
            return Err(format!(
                "y = {g} where onnxruntime has {w} (x = {x}, not a tie)"
            ));
        }
    }
    Ok(())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn data_sets(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a test directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test_data_set_"))
        })
        .collect();
    v.sort();
    v
}

/// Runs one test; returns a failure description, or `None` when it behaved as expected.
fn check(name: &str, kind: &str, dir: &Path, keep: &[usize]) -> Option<String> {
    let bytes = std::fs::read(dir.join("model.onnx")).expect("model.onnx is readable");
    let model = ModelProto::decode(bytes.as_slice()).expect("model.onnx decodes");
    let expect = expectation(name, kind, &model);
    for ds in data_sets(dir) {
        let (frozen, xs) = freeze(&model, &ds, keep);
        let tag = format!("{name}_{}", ds.display()).replace(['/', '.'], "_");
        let onnx = tmp(&format!("{tag}.onnx"));
        let prog = tmp(&format!("{tag}.qmpc"));
        std::fs::write(&onnx, frozen.encode_to_vec()).expect("temp file");
        let c = qmpc(&["compile", path(&onnx), "-o", path(&prog)]);
        let err = stderr(&c);
        let one_line = err.trim().lines().count() == 1;
        match &expect {
            Expect::UnsupportedType(t) => {
                let ok = c.status.code() == Some(1)
                    && one_line
                    && err.contains("unsupported")
                    && err.contains(t.as_str());
                return (!ok).then(|| {
                    format!("{name}: expected an unsupported-type error for {t}, got: {err}")
                });
            }
            Expect::ClearError => {
                let op = &model.graph.as_ref().expect("a graph").node[0].op_type;
                let ok = c.status.code() == Some(1)
                    && one_line
                    && err.contains(&format!("ai.onnx::{op}"));
                return (!ok)
                    .then(|| format!("{name}: expected one error line naming {op}, got: {err}"));
            }
            Expect::Pass => {
                if !c.status.success() {
                    return Some(format!("{name}: compile failed: {err}"));
                }
            }
        }
        let output = tmp(&format!("{tag}.out.npy"));
        let mut args = vec![
            "run".to_string(),
            path(&prog).into(),
            "--protocol".into(),
            "clear".into(),
        ];
        for x in &xs {
            let input = tmp(&format!("{tag}.{}.npy", x.name));
            std::fs::write(&input, npy_of(x)).expect("temp file");
            args.extend(["--input".into(), format!("{}={}", x.name, path(&input))]);
        }
        args.extend(["--output".into(), path(&output).into()]);
        let r = qmpc(&args.iter().map(String::as_str).collect::<Vec<_>>());
        if !r.status.success() {
            return Some(format!("{name}: run failed: {}", stderr(&r)));
        }
        let got = npy::read(&output).map_err(|e| e.to_string());
        let want = read_tensor(&ds.join("output_0.pb"));
        let dynamic = model
            .graph
            .as_ref()
            .is_some_and(|g| g.node.iter().any(|n| n.op_type == "DynamicQuantizeLinear"));
        let checked = if dynamic {
            got.and_then(|g| compare_dynamic(&g, &want, &xs[0]))
        } else {
            got.and_then(|g| compare(&g, &want))
        };
        if let Err(e) = checked {
            return Some(format!("{name} ({}): {e}", ds.display()));
        }
    }
    None
}

#[test]
fn onnx_node_tests() {
    let Some(corpus) = common::required_corpus() else {
        return;
    };
    let root = corpus.join("onnx-node");
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("index.json")).expect("index.json is readable"),
    )
    .expect("index.json is JSON");
    let tests = index["tests"].as_array().expect("a `tests` list");
    assert!(tests.len() >= 42, "index lists {} tests", tests.len());
    let mut failures = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for t in tests {
        let name = t["name"].as_str().expect("a test name");
        let kind = t["kind"].as_str().unwrap_or_default();
        let dir = root.join(name);
        let model = ModelProto::decode(
            std::fs::read(dir.join("model.onnx"))
                .expect("model.onnx is readable")
                .as_slice(),
        )
        .expect("model.onnx decodes");
        let e = expectation(name, kind, &model);
        *counts.entry(format!("{kind}: {}", label(&e))).or_default() += 1;
        if let Some(f) = check(name, kind, &dir, &[0]) {
            failures.push(f);
        }
    }
    eprintln!("onnx-node: {counts:?}");
    assert!(
        failures.is_empty(),
        "{} of {} tests failed:\n{}",
        failures.len(),
        tests.len(),
        failures.join("\n")
    );
}

fn label(e: &Expect) -> &'static str {
    match e {
        Expect::Pass => "bit-exact",
        Expect::UnsupportedType(_) => "unsupported type (clear error)",
        Expect::ClearError => "float op (clear error)",
    }
}

/// Matrix products with both operands secret inputs of the data owner (two graph inputs, each
/// passed as `--input NAME=FILE`).
#[test]
fn two_secret_operands() {
    let Some(corpus) = common::required_corpus() else {
        return;
    };
    let root = corpus.join("onnx-node");
    let cases: [(&str, &[usize]); 5] = [
        ("test_matmulinteger", &[0, 1]),
        ("test_qlinearmatmul_2D_int8_float32", &[0, 3]),
        ("test_qlinearmatmul_2D_uint8_float32", &[0, 3]),
        ("test_qlinearmatmul_3D_int8_float16", &[0, 3]),
        ("test_convinteger_with_padding", &[0, 1]),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, keep)| check(name, "quantized", &root.join(name), keep))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
