//! The data owner's quantization of its float inputs and the output receiver's
//! dequantization of the revealed integers: public parameters of the program, applied in
//! the clear at their owners.

use crate::error::{Error, Kind, Result};
use crate::npy::Array;
use anyhow::bail;
use qmpc_vm::bytecode::{ExternalType, InputDecl, OutputDecl, PostOp, Program, QuantParams};
use qmpc_vm::tensor::Tensor;

/// One graph input's array and, for errors, where it came from (a file name).
pub struct Input<'a> {
    pub array: &'a Array,
    pub origin: Option<String>,
}

/// The names of the graph inputs in graph order (a graph input quantized twice appears
/// as two program inputs of one name, and once here).
pub fn input_names(program: &Program) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for i in &program.inputs {
        if !names.contains(&i.name.as_str()) {
            names.push(&i.name);
        }
    }
    names
}

/// Quantize one array for one program input with the program's public parameters;
/// returns the tensor and its batch.
pub fn quantize_input(decl: &InputDecl, a: &Array) -> anyhow::Result<(Tensor<i64>, usize)> {
    let want = &decl.ty.dims;
    let got = a.dims();
    let batch = if decl.ty.batched {
        if got.len() != want.len() || got[1..] != want[1..] || got[0] == 0 {
            bail!(
                "input `{}` has shape {:?}, the model takes {}",
                decl.name,
                got,
                onnx_type(decl)
            );
        }
        got[0]
    } else {
        if got != want.as_slice() {
            bail!(
                "input `{}` has shape {:?}, the model takes {}",
                decl.name,
                got,
                onnx_type(decl)
            );
        }
        1
    };
    let (lo, hi) = decl.ty.dtype.range();
    let data = match (a, &decl.quant) {
        (Array::F32(_, v), Some(q)) => quantize(v, got, q, lo, hi),
        (Array::F32(..), None) => bail!(
            "input `{}` takes {} integers, the file holds float32",
            decl.name,
            decl.ty.dtype
        ),
        (Array::Int(_, v, t), _) => {
            if let Some(bad) = v.iter().find(|&&x| x < lo || x > hi) {
                bail!(
                    "input `{}` takes {}, the file's {t} holds {bad}",
                    decl.name,
                    decl.ty.dtype
                );
            }
            v.clone()
        }
    };
    Ok((Tensor::new(got.to_vec(), data), batch))
}

/// The input's type as the ONNX graph declares it (what the data owner gives, not the
/// register it is shared as): `float32 [N, 3, 32, 32]`, `N` the batch.
pub fn onnx_type(decl: &InputDecl) -> String {
    let ty = match decl.external {
        ExternalType::F32 => "float32",
        ExternalType::I8 => "int8",
        ExternalType::U8 => "uint8",
        ExternalType::I32 => "int32",
        ExternalType::I64 => "int64",
    };
    let dims: Vec<String> = decl
        .ty
        .dims
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if i == 0 && decl.ty.batched {
                "N".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("{ty} [{}]", dims.join(", "))
}

/// Quantize the data owner's arrays, one per graph input in [`input_names`] order, for
/// every input of the program; returns the tensors and the batch.
pub fn quantize_inputs(program: &Program, inputs: &[Input]) -> Result<(Vec<Tensor<i64>>, usize)> {
    let names = input_names(program);
    if inputs.len() != names.len() {
        return Err(Error::Input(format!(
            "{} input(s) for a model with {} input(s) {names:?}",
            inputs.len(),
            names.len()
        )));
    }
    let mut batch = None;
    let mut out = Vec::new();
    for decl in &program.inputs {
        let k = names.iter().position(|n| *n == decl.name).unwrap_or(0);
        let input = &inputs[k];
        let prefix = |e: anyhow::Error| match &input.origin {
            Some(o) => e.context(o.clone()),
            None => e,
        };
        let (x, b) = quantize_input(decl, input.array)
            .map_err(prefix)
            .or_input()?;
        if *batch.get_or_insert(b) != b {
            let theirs = batch.unwrap_or(b);
            let msg = format!("batch {b} differs from the other inputs' batch {theirs}");
            return Err(Error::Input(match &input.origin {
                Some(o) => format!("{o}: {msg}"),
                None => format!("input `{}`: {msg}", decl.name),
            }));
        }
        out.push(x);
    }
    Ok((out, batch.unwrap_or(1)))
}

/// `QuantizeLinear` as onnxruntime computes it: `x / scale` in f32, round half to even, add the
/// zero point, saturate.
fn quantize(v: &[f32], dims: &[usize], q: &QuantParams, lo: i64, hi: i64) -> Vec<i64> {
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            let c = q.param_index(i, dims);
            let r = (x / q.scale[c]).round_ties_even();
            let r = if r.is_nan() { 0 } else { r as i64 };
            r.saturating_add(q.zero_point[c]).clamp(lo, hi)
        })
        .collect()
}

/// What the output receiver computes in the clear from the revealed integers: the
/// model's output as its ONNX type.
pub fn finish_output(decl: &OutputDecl, t: &Tensor<i64>) -> Array {
    let dims = t.dims.clone();
    match (&decl.dequant, decl.external) {
        (Some(q), _) => {
            let mut v: Vec<f32> = t
                .data
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let c = q.param_index(i, &t.dims);
                    ((x - q.zero_point[c]) as f32) * q.scale[c]
                })
                .collect();
            if let PostOp::Softmax { axis } = decl.post {
                softmax(&mut v, &t.dims, axis);
            }
            Array::F32(dims, v)
        }
        (None, ExternalType::I8) => Array::Int(dims, t.data.clone(), "int8"),
        (None, ExternalType::U8) => Array::Int(dims, t.data.clone(), "uint8"),
        (None, ExternalType::I32) => Array::Int(dims, t.data.clone(), "int32"),
        (None, ExternalType::I64) => Array::Int(dims, t.data.clone(), "int64"),
        (None, ExternalType::F32) => Array::F32(dims, t.data.iter().map(|&x| x as f32).collect()),
    }
}

/// The outputs revealed to this party, finished; `None` where one was not revealed here.
pub fn finish_outputs(program: &Program, outs: &[Option<Tensor<i64>>]) -> Vec<Option<Array>> {
    program
        .outputs
        .iter()
        .zip(outs)
        .map(|(decl, t)| t.as_ref().map(|t| finish_output(decl, t)))
        .collect()
}

fn softmax(v: &mut [f32], dims: &[usize], axis: usize) {
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let idx = |k: usize| (o * n + k) * inner + i;
            let m = (0..n).map(|k| v[idx(k)]).fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = (0..n).map(|k| (v[idx(k)] - m).exp()).sum();
            for k in 0..n {
                v[idx(k)] = (v[idx(k)] - m).exp() / s;
            }
        }
    }
}
