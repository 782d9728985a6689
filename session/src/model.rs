//! A compiled model: the public program every party runs and the model owner's weights.

use crate::error::{Error, Kind, Result};
use anyhow::Context;
use qmpc_vm::bytecode::{Program, Weights};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The public program and, with secret weights, the model owner's weights (empty for a
/// party that does not hold them, and for a program with public weights).
pub struct Model {
    pub program: Program,
    /// Shared with each run's model owner, not copied.
    pub weights: Arc<Weights>,
}

/// `MODEL.qmpw` beside `MODEL.qmpc`.
pub fn weights_path(program: &Path) -> PathBuf {
    program.with_extension("qmpw")
}

/// Read and verify a `.qmpc` file.
pub fn load_program(path: &Path) -> Result<Program> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read", path.display()))
        .or_model()?;
    program_from_bytes(&bytes, &path.display().to_string())
}

/// Decode and verify a program; `name` names it in errors.
pub fn program_from_bytes(bytes: &[u8], name: &str) -> Result<Program> {
    let p = Program::from_bytes(bytes)
        .with_context(|| format!("{name}: not a valid qmpc program"))
        .or_model()?;
    qmpc_vm::verify::verify(&p)
        .with_context(|| format!("{name}: rejected by the verifier"))
        .or_model()?;
    Ok(p)
}

/// Decode the model owner's weights; `name` names them in errors.
pub fn weights_from_bytes(bytes: &[u8], name: &str) -> Result<Weights> {
    Weights::from_bytes(bytes)
        .with_context(|| format!("{name}: not a valid weights file"))
        .or_model()
}

/// Read a weights file (`MODEL.qmpw`); `what` says whose it is, for the error.
pub fn load_weights(path: &Path, what: &str) -> Result<Weights> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read {what}", path.display()))
        .or_model()?;
    weights_from_bytes(&bytes, &path.display().to_string())
}

impl Model {
    /// Compile ONNX bytes; `name` names the model in errors.
    pub fn compile(onnx: &[u8], name: &str, opts: &qmpc_compiler::Options) -> Result<Model> {
        let c = qmpc_compiler::compile_bytes(onnx, name, opts).or_model()?;
        Ok(Model {
            program: c.program,
            weights: Arc::new(c.weights),
        })
    }

    /// An `.onnx` file (compiled with `opts`), or a `.qmpc` program with its weights
    /// beside it (`MODEL.qmpw`) when they are secret.
    pub fn open(path: &Path, opts: &qmpc_compiler::Options) -> Result<Model> {
        if path.extension().is_some_and(|e| e == "onnx") {
            let c = qmpc_compiler::compile_file(path, opts).or_model()?;
            return Ok(Model {
                program: c.program,
                weights: Arc::new(c.weights),
            });
        }
        let program = load_program(path)?;
        let weights = if program.weights.is_empty() {
            Weights { tensors: vec![] }
        } else {
            load_weights(&weights_path(path), "the model owner's weights")?
        };
        Ok(Model {
            program,
            weights: Arc::new(weights),
        })
    }

    /// A program and its weights as bytes (`weights` may be omitted where they are
    /// public, or by a party that does not hold them).
    pub fn from_bytes(program: &[u8], weights: Option<&[u8]>) -> Result<Model> {
        let program = program_from_bytes(program, "the program")?;
        let weights = match weights {
            Some(w) => weights_from_bytes(w, "the weights")?,
            None => Weights { tensors: vec![] },
        };
        Ok(Model {
            program,
            weights: Arc::new(weights),
        })
    }

    /// Whether the weights are the model owner's secret (not constants of the program).
    pub fn secret_weights(&self) -> bool {
        !self.program.weights.is_empty()
    }

    /// Whether this model holds the weights its program needs (the model owner's part).
    pub fn has_weights(&self) -> bool {
        !self.secret_weights() || !self.weights.tensors.is_empty()
    }

    /// Write `path` (the program) and, with secret weights, `MODEL.qmpw` beside it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let write = |p: &Path, bytes: Vec<u8>| {
            std::fs::write(p, bytes)
                .with_context(|| format!("{}: cannot write", p.display()))
                .or_setup()
        };
        if !self.has_weights() {
            return Err(Error::Setup(
                "this model holds no weights to write (only the model owner has them)".into(),
            ));
        }
        write(path, self.program.to_bytes())?;
        if self.secret_weights() {
            write(&weights_path(path), self.weights.to_bytes())?;
        }
        Ok(())
    }
}
