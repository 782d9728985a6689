//! Shared helpers of the end-to-end tests: the corpus manifests and the `qmpc` binary.
#![allow(dead_code)]

#[path = "../../src/npy.rs"]
pub mod npy;

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
