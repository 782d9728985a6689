//! Shared helpers of the end-to-end tests: the corpus manifests and the `qmpc` binary.
#![allow(dead_code)]

pub use qmpc_session::npy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/corpus` when it exists.
pub fn shared_corpus() -> Option<PathBuf> {
    let p = root().join("../shared/corpus");
    p.join("manifest.json").exists().then_some(p)
}

/// `../shared/corpus` for a test that needs it: a missing corpus fails the test unless
/// `QMPC_SKIP_SHARED=1` says to skip (then `None`, with a printed reason).
pub fn required_corpus() -> Option<PathBuf> {
    match shared_corpus() {
        Some(d) => Some(d),
        None if std::env::var_os("QMPC_SKIP_SHARED").is_some() => {
            eprintln!("skipped: ../shared/corpus is absent and QMPC_SKIP_SHARED is set");
            None
        }
        None => panic!(
            "../shared/corpus is absent; set QMPC_SKIP_SHARED=1 to skip the tests that need it"
        ),
    }
}

/// Waits for a process within `bound` of `start`; one still running then is a hang (it
/// is killed and the test fails).
pub fn finish_within(
    mut c: std::process::Child,
    start: std::time::Instant,
    bound: std::time::Duration,
) -> Output {
    while c.try_wait().expect("wait").is_none() {
        if start.elapsed() > bound {
            let _ = c.kill();
            panic!("a party hung for more than {bound:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.wait_with_output().expect("output")
}

pub fn qmpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qmpc"))
        .args(args)
        .output()
        .expect("the qmpc binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One model file of a manifest with its reference files.
pub struct Entry {
    pub id: String,
    pub model: PathBuf,
    pub input: PathBuf,
    pub output: PathBuf,
    pub dynamic: bool,
    pub float: bool,
}

pub fn entries(dir: &Path) -> Vec<Entry> {
    let text =
        std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json is readable");
    let m: serde_json::Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    let list = m["models"]
        .as_array()
        .expect("manifest has a `models` list");
    list.iter()
        .map(|e| {
            let f = &e["reference"]["files"];
            Entry {
                id: e["id"].as_str().unwrap_or_default().to_string(),
                model: dir.join(e["model"].as_str().unwrap_or_default()),
                input: dir.join(f["input"].as_str().unwrap_or_default()),
                output: dir.join(f["output_0"].as_str().unwrap_or_default()),
                dynamic: e["format"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("dynamic"),
                float: e["format"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("float")
                    || e["model"]
                        .as_str()
                        .unwrap_or_default()
                        .ends_with("float.onnx"),
            }
        })
        .collect()
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qmpc-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.join(name.replace('/', "_"))
}

pub fn s(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

/// Run `program` under `protocol` (`NAME` or `NAME:FAVOR`, with `parties` computing
/// parties where the protocol takes a number), then hold the measured figures (online, and
/// the dealer's) equal to what `qmpc cost` predicts for the same program and batch.
pub fn run(
    program: &Path,
    protocol: &str,
    parties: Option<usize>,
    input: &Path,
    out: &Path,
) -> Result<(), String> {
    let stats = out.with_extension("stats.json");
    let n = parties.map(|n| n.to_string());
    // `NAME:FAVOR` runs NAME with `--favor FAVOR`.
    let (name, favor) = protocol.split_once(':').unwrap_or((protocol, "bytes"));
    let mut args = vec![
        "run",
        program.to_str().unwrap_or_default(),
        "--protocol",
        name,
        "--favor",
        favor,
        "--input",
        input.to_str().unwrap_or_default(),
        "--output",
        out.to_str().unwrap_or_default(),
        "--stats",
        stats.to_str().unwrap_or_default(),
    ];
    if let Some(n) = &n {
        args.extend(["--parties", n]);
    }
    let o = qmpc(&args);
    if !o.status.success() {
        return Err(format!("{protocol}: {}", stderr(&o)));
    }
    let measured = figures(&std::fs::read_to_string(&stats).map_err(|e| e.to_string())?)?;
    let batch = measured.0.to_string();
    let mut args = vec![
        "cost",
        program.to_str().unwrap_or_default(),
        "--protocol",
        name,
        "--favor",
        favor,
        "--batch",
        &batch,
        "--format",
        "json",
    ];
    if let Some(n) = &n {
        args.extend(["--parties", n]);
    }
    let o = qmpc(&args);
    if !o.status.success() {
        return Err(format!("cost under {protocol}: {}", stderr(&o)));
    }
    let predicted = figures(&String::from_utf8_lossy(&o.stdout))?;
    if predicted != measured {
        return Err(format!(
            "{protocol}: `qmpc cost` says (batch, rounds, bytes, per party) {predicted:?}, \
             the run measured {measured:?}"
        ));
    }
    Ok(())
}

/// Batch, rounds, bytes sent, per-party (rounds, bytes sent) and the dealer's bytes of a
/// stats or cost JSON.
pub type Figures = (u64, u64, u64, Vec<(u64, u64)>, u64);

pub fn figures(json: &str) -> Result<Figures, String> {
    let j: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let num = |v: &serde_json::Value| v.as_u64().ok_or_else(|| format!("not a count: {v}"));
    let per = j["per_party"]
        .as_array()
        .ok_or("no per_party list")?
        .iter()
        .map(|p| Ok((num(&p["rounds"])?, num(&p["bytes_sent"])?)))
        .collect::<Result<Vec<_>, String>>()?;
    Ok((
        num(&j["batch"])?,
        num(&j["rounds"])?,
        num(&j["bytes_sent"])?,
        per,
        num(&j["preprocessing"]["bytes_sent"])?,
    ))
}

pub fn compile(model: &Path, out: &Path, extra: &[&str]) -> Result<(), String> {
    let mut args = vec!["compile".to_string(), s(model), "-o".into(), s(out)];
    args.extend(extra.iter().map(|a| a.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = qmpc(&a);
    o.status
        .success()
        .then_some(())
        .ok_or_else(|| format!("compile: {}", stderr(&o)))
}

/// Runs `check` on every quantized model (static or dynamic) of `dir`'s manifest; fails listing
/// every model whose check failed (`what` names the suite in the summary line).
pub fn check_models(dir: &Path, what: &str, mut check: impl FnMut(&Entry) -> Result<(), String>) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in entries(dir).iter().filter(|e| !e.float) {
        checked += 1;
        if let Err(f) = check(e) {
            failures.push(format!("{}: {f}", e.id));
        }
    }
    eprintln!(
        "{}: {checked} models under {what}, {} failed",
        dir.display(),
        failures.len()
    );
    assert!(checked > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The first item of an `.npy` batch, written beside `prog`.
pub fn first_item(input: &Path, prog: &Path) -> Result<std::path::PathBuf, String> {
    first_items(input, 1, prog)
}

/// The first `k` items of an `.npy` batch (all of it where it has fewer), written beside
/// `prog`.
pub fn first_items(input: &Path, k: usize, prog: &Path) -> Result<std::path::PathBuf, String> {
    let bytes = std::fs::read(input).map_err(|e| e.to_string())?;
    let a = npy::parse(&bytes).map_err(|e| e.to_string())?;
    let dims = a.dims().to_vec();
    let count: usize = dims.iter().product();
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .and_then(|d| d.split('\'').next())
        .ok_or("no descr")?
        .to_string();
    let width = elem_size(&descr);
    let data = &bytes[bytes.len() - count * width..];
    let mut one = dims.clone();
    let items = dims.first().copied().unwrap_or(1).max(1);
    let per = count / items;
    let k = k.clamp(1, items);
    if let Some(d) = one.first_mut() {
        *d = k;
    }
    let out = prog.with_extension(format!("first{k}.npy"));
    std::fs::write(&out, npy::encode(&descr, &one, &data[..k * per * width]))
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn elem_size(descr: &str) -> usize {
    descr
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// `../shared/data` for a test that needs it (like [`required_corpus`]).
pub fn required_data() -> Option<PathBuf> {
    let p = root().join("../shared/data");
    match p.join("digits.npz").exists() {
        true => Some(p),
        false if std::env::var_os("QMPC_SKIP_SHARED").is_some() => {
            eprintln!("skipped: ../shared/data is absent and QMPC_SKIP_SHARED is set");
            None
        }
        false => panic!(
            "../shared/data is absent; set QMPC_SKIP_SHARED=1 to skip the tests that need it"
        ),
    }
}

/// The arrays of an `.npz` archive (numpy's `savez` / `savez_compressed`: a zip of `.npy`
/// files, stored or deflated), by name without `.npy`, as `.npy` bytes.
pub fn npz(path: &Path) -> Vec<(String, Vec<u8>)> {
    let b = std::fs::read(path).expect("the .npz file is readable");
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    let eocd = (0..b.len() - 21)
        .rev()
        .find(|&i| u32_at(i) == 0x0605_4b50)
        .expect("a zip end record");
    let (count, mut at) = (u16_at(eocd + 10), u32_at(eocd + 16));
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(u32_at(at), 0x0201_4b50, "a zip central header");
        let method = u16_at(at + 10);
        let size = u32_at(at + 20);
        let name_len = u16_at(at + 28);
        let skip = name_len + u16_at(at + 30) + u16_at(at + 32);
        let name = String::from_utf8_lossy(&b[at + 46..at + 46 + name_len]).into_owned();
        let local = u32_at(at + 42);
        let data = local + 30 + u16_at(local + 26) + u16_at(local + 28);
        let raw = &b[data..data + size];
        let bytes = match method {
            0 => raw.to_vec(),
            8 => miniz_oxide::inflate::decompress_to_vec(raw).expect("deflated data"),
            m => panic!("zip method {m}"),
        };
        out.push((name.trim_end_matches(".npy").to_string(), bytes));
        at += 46 + skip;
    }
    out
}

/// Write the arrays of `npz` into `dir` as `NAME.npy` files.
pub fn unpack_npz(path: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("a directory for the arrays");
    for (name, bytes) in npz(path) {
        std::fs::write(dir.join(format!("{name}.npy")), bytes).expect("writes the array");
    }
}
