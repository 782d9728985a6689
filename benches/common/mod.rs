//! What the benchmarks share: the models to run, inputs cut to a batch, and `qmpc run`'s
//! figures.
#![allow(dead_code)]

pub use qmpc_session::npy;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `qmpc` binary to measure: `QMPC_BIN` where set, else the one `cargo bench` built.
/// That one carries the test features the workspace's dev-dependencies switch on (fault
/// injection, the mask ledger that records every PRG draw), which slow small runs: LeNet
/// under `mal-rep3` at batch 1 takes 0.16 s with them and 0.127 s as `cargo build
/// --release` builds it. Measure with `cargo build --release && QMPC_BIN=target/release/qmpc
/// cargo bench --bench protocols`.
pub fn qmpc_bin() -> PathBuf {
    std::env::var_os("QMPC_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_qmpc")), PathBuf::from)
}

pub struct Model {
    pub id: String,
    pub onnx: PathBuf,
    pub input: PathBuf,
}

pub fn models() -> Vec<Model> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("../shared/corpus");
    let dir = if corpus.join("manifest.json").exists() {
        corpus
    } else {
        root.join("models")
    };
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    let m: serde_json::Value = serde_json::from_str(&text).expect("manifest JSON");
    let filter = std::env::var("QMPC_BENCH_FILTER").unwrap_or_default();
    m["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter(|e| {
            let f = e["format"].as_str().unwrap_or_default();
            !f.starts_with("dynamic") && !f.starts_with("float")
        })
        .map(|e| Model {
            id: e["id"].as_str().unwrap_or_default().to_string(),
            onnx: dir.join(e["model"].as_str().unwrap_or_default()),
            input: dir.join(
                e["reference"]["files"]["input"]
                    .as_str()
                    .unwrap_or_default(),
            ),
        })
        .filter(|m| m.id.contains(&filter))
        .collect()
}

/// The reference input cut or tiled to `batch` samples.
pub fn batch_input(m: &Model, batch: usize, out: &Path) -> Option<Vec<usize>> {
    let npy::Array::F32(dims, data) = npy::read(&m.input).ok()? else {
        return None;
    };
    let per: usize = dims[1..].iter().product();
    let have = dims[0];
    let mut v = Vec::with_capacity(batch * per);
    for i in 0..batch {
        let s = i % have;
        v.extend_from_slice(&data[s * per..(s + 1) * per]);
    }
    let mut d = dims.clone();
    d[0] = batch;
    std::fs::write(out, npy::encode_f32(&d, &v)).ok()?;
    Some(d)
}

pub struct Figures {
    /// Medians over the repetitions.
    pub wall: f64,
    pub online: f64,
    pub rounds: u64,
    pub max_sent: u64,
    pub dealer: u64,
}

pub fn qmpc_run(
    program: &Path,
    protocol: &str,
    input: &Path,
    reps: usize,
) -> Result<Figures, String> {
    let mut f = qmpc_runs(&[qmpc_bin()], program, protocol, input, reps)?;
    f.pop().ok_or_else(|| "no run".to_string())
}

/// The binary a change is compared against (`QMPC_BASE_BIN`, e.g. a release build of the
/// last commit), if any.
pub fn base_bin() -> Option<PathBuf> {
    std::env::var_os("QMPC_BASE_BIN").map(PathBuf::from)
}

/// [`qmpc_run`] of each of `bins`, interleaved (`reps` rounds of one run of each, in
/// order), so that the machine's slow phases hit every binary alike: two runs of the
/// same binary differ by up to 15 % here, one after the other, which back-to-back blocks
/// of runs turn into fake regressions.
pub fn qmpc_runs(
    bins: &[PathBuf],
    program: &Path,
    protocol: &str,
    input: &Path,
    reps: usize,
) -> Result<Vec<Figures>, String> {
    let stats = program.with_extension(format!("{protocol}.json"));
    let mut walls = vec![Vec::new(); bins.len()];
    let mut onlines = vec![Vec::new(); bins.len()];
    let mut last = vec![None; bins.len()];
    for _ in 0..reps {
        for (b, bin) in bins.iter().enumerate() {
            let o = Command::new(bin)
                .args([
                    "run",
                    program.to_str().unwrap_or_default(),
                    "--protocol",
                    protocol,
                ])
                .args(["--input", input.to_str().unwrap_or_default()])
                .args(["--stats", stats.to_str().unwrap_or_default()])
                .output()
                .map_err(|e| e.to_string())?;
            if !o.status.success() {
                return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
            }
            let j: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&stats).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            walls[b].push(j["wall_s"].as_f64().unwrap_or(f64::NAN));
            onlines[b].push(j["online_s"].as_f64().unwrap_or(f64::NAN));
            last[b] = Some(j);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    walls
        .into_iter()
        .zip(onlines)
        .zip(last)
        .map(|((w, o), j)| {
            let j = j.ok_or("no run")?;
            let max_sent = j["per_party"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| p["bytes_sent"].as_u64())
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            Ok(Figures {
                wall: median(w),
                online: median(o),
                rounds: j["rounds"].as_u64().unwrap_or(0),
                max_sent,
                dealer: j["preprocessing"]["bytes_sent"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

/// `qmpc compile` of `m` into `dir`; `None` where it fails.
pub fn compile(m: &Model, dir: &Path) -> Option<PathBuf> {
    let program = dir.join(format!("{}.qmpc", m.id.replace('/', "_")));
    let o = Command::new(qmpc_bin())
        .args(["compile", m.onnx.to_str().unwrap_or_default(), "-o"])
        .arg(&program)
        .output()
        .expect("qmpc compile");
    o.status.success().then_some(program)
}

/// The repetitions to take the median over (`QMPC_BENCH_REPS`, default 3), or `None` when
/// `cargo test` runs the bench binary without `--bench` (then it does nothing).
pub fn bench_reps() -> Option<usize> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    Some(
        std::env::var("QMPC_BENCH_REPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
    )
}
