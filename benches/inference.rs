//! `cargo bench --bench inference`: for every statically quantized corpus model (or the
//! models of `models/` when `../shared/corpus` is absent), at batch 1 and batch 64, the wall
//! time, rounds and bytes sent per party of `qmpc run` under `rep3` and `clear`, and the
//! plaintext time of tract-onnx on the same ONNX file. Prints a Markdown table
//! (docs/performance.md holds the last one).
//!
//! `QMPC_BENCH_FILTER=lenet` keeps the models whose id contains the text;
//! `QMPC_BENCH_REPS` (default 3) sets how many runs the median is taken over.

mod common;
use common::{batch_input, compile, models, npy, qmpc_run};
use std::path::Path;
use std::time::Instant;
use tract_onnx::prelude::*;

fn tract_model(onnx: &Path, dims: &[usize]) -> TractResult<std::sync::Arc<TypedRunnableModel>> {
    tract_onnx::onnx()
        .model_for_path(onnx)?
        .with_input_fact(0, f32::fact(dims).into())?
        .into_optimized()?
        .into_runnable()
}

fn first_line(e: impl std::fmt::Display) -> String {
    format!("{e}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Median time of tract-onnx on the whole batch; a model exported with a fixed batch of 1
/// runs once per sample instead (marked `×n`).
fn tract_time(onnx: &Path, dims: &[usize], input: &Path, reps: usize) -> Result<String, String> {
    let npy::Array::F32(_, data) = npy::read(input).map_err(|e| e.to_string())? else {
        return Err("not float input".into());
    };
    let (model, chunks) = match tract_model(onnx, dims) {
        Ok(m) => (m, 1),
        Err(e) if dims[0] > 1 => {
            let mut one = dims.to_vec();
            one[0] = 1;
            (tract_model(onnx, &one).map_err(|_| first_line(e))?, dims[0])
        }
        Err(e) => return Err(first_line(e)),
    };
    let mut shape = dims.to_vec();
    shape[0] /= chunks;
    let per = data.len() / chunks;
    let tensors: Vec<Tensor> = data
        .chunks(per)
        .map(|c| {
            tract_ndarray::ArrayD::from_shape_vec(shape.clone(), c.to_vec())
                .map(Tensor::from)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        for t in &tensors {
            model.run(tvec!(t.clone().into())).map_err(first_line)?;
        }
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let t = times[times.len() / 2];
    Ok(if chunks > 1 {
        format!("{t:.5} s (×{chunks} batch 1)")
    } else {
        format!("{t:.5} s")
    })
}

fn fmt_bytes(b: u64) -> String {
    format!("{:.2} MB", b as f64 / 1e6)
}

fn main() {
    let Some(reps) = common::bench_reps() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("qmpc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("| model | batch | rep3 wall | rep3 rounds | rep3 MB sent (max party) | clear wall | tract plaintext |");
    println!("|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for m in models() {
        let Some(program) = compile(&m, &dir) else {
            println!("| {} | - | compile failed | | | | |", m.id);
            continue;
        };
        for batch in [1usize, 64] {
            let input = dir.join(format!("{}-b{batch}.npy", m.id.replace('/', "_")));
            let Some(dims) = batch_input(&m, batch, &input) else {
                println!("| {} | {batch} | no float input | | | | |", m.id);
                continue;
            };
            let rep3 = qmpc_run(&program, "rep3", &input, reps);
            let clear = qmpc_run(&program, "clear", &input, reps);
            let tract = tract_time(&m.onnx, &dims, &input, reps);
            let (rw, rr, rb) = match &rep3 {
                Ok(f) => (
                    format!("{:.3} s", f.wall),
                    f.rounds.to_string(),
                    fmt_bytes(f.max_sent),
                ),
                Err(e) => (format!("failed: {e}"), "-".into(), "-".into()),
            };
            let cw = clear.map_or_else(|e| format!("failed: {e}"), |f| format!("{:.4} s", f.wall));
            let tw = match tract {
                Ok(t) => t,
                Err(e) => {
                    if !notes.contains(&e) {
                        notes.push(e.clone());
                    }
                    "n/a¹".into()
                }
            };
            println!("| {} | {batch} | {rw} | {rr} | {rb} | {cw} | {tw} |", m.id);
        }
    }
    for n in notes {
        println!("\n¹ tract-onnx: {n}");
    }
}
