//! The qmpc compiler: ONNX frontend → integer IR → passes → bytecode.
//!
//! Architecture invariant: the compiler does no network I/O and no cryptography; it reads
//! an ONNX file's bytes and produces a public program and the model owner's weights.

pub mod frontend;
pub mod ir;
pub mod lower;
pub mod onnx;
pub mod passes;
pub mod train;

use qmpc_bytecode::{Program, Weights};
use qmpc_semantics::TruncMode;

/// Who may see the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WeightsMode {
    /// The model owner's private input (the default).
    #[default]
    Secret,
    /// Constants of the program: only the input is secret.
    Public,
}

/// Compiler options.
#[derive(Clone, Debug)]
pub struct Options {
    pub weights: WeightsMode,
    pub trunc: TruncMode,
    pub passes: passes::PassSet,
    /// Told where a compilation is (the compiler itself prints nothing).
    pub progress: Option<ProgressHook>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            weights: WeightsMode::Secret,
            trunc: TruncMode::Exact,
            passes: passes::PassSet::default(),
            progress: None,
        }
    }
}

/// A stage of a compilation, for a progress line on big models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The ONNX file is decoded; its nodes are next.
    Decoded { nodes: usize },
    /// ONNX node `done` of `nodes` is imported.
    Import { done: usize, nodes: usize },
    /// The IR passes run.
    Passes,
    /// The IR is lowered to bytecode and verified.
    Lower,
    /// The program is ready.
    Done,
}

/// A callback told each [`Stage`]; it runs once per ONNX node, so it must be cheap.
#[derive(Clone)]
pub struct ProgressHook(pub std::sync::Arc<dyn Fn(Stage) + Send + Sync>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

impl Options {
    pub(crate) fn tell(&self, s: Stage) {
        if let Some(h) = &self.progress {
            (h.0)(s);
        }
    }
}

/// Any compilation failure.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Load(#[from] onnx::LoadError),
    #[error(transparent)]
    Frontend(#[from] frontend::FrontendError),
    #[error("{0}")]
    Options(String),
    #[error("{file}: internal error while lowering the IR: {err}")]
    Lower { file: String, err: String },
    #[error("{file}: internal error, the generated program does not verify: {err}")]
    Verify {
        file: String,
        err: qmpc_bytecode::verify::VerifyError,
    },
}

/// The result of compiling one model.
pub struct Compiled {
    pub ir: ir::Graph,
    pub program: Program,
    pub weights: Weights,
}

/// Compile ONNX bytes (`file` names them in errors).
pub fn compile_bytes(bytes: &[u8], file: &str, opts: &Options) -> Result<Compiled, CompileError> {
    opts.passes.check().map_err(CompileError::Options)?;
    let model = onnx::decode_model(bytes, file)?;
    opts.tell(Stage::Decoded {
        nodes: model.graph.as_ref().map_or(0, |g| g.node.len()),
    });
    let mut ir = frontend::import(&model, file, opts)?;
    opts.tell(Stage::Passes);
    passes::run(&mut ir, &opts.passes);
    opts.tell(Stage::Lower);
    let (program, weights) = lower::lower(&ir, opts).map_err(|err| CompileError::Lower {
        file: file.to_string(),
        err,
    })?;
    qmpc_bytecode::verify::verify(&program).map_err(|err| CompileError::Verify {
        file: file.to_string(),
        err,
    })?;
    opts.tell(Stage::Done);
    Ok(Compiled {
        ir,
        program,
        weights,
    })
}

/// Compile an ONNX file.
pub fn compile_file(path: &std::path::Path, opts: &Options) -> Result<Compiled, CompileError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|err| onnx::LoadError::Io {
        path: file.clone(),
        err,
    })?;
    compile_bytes(&bytes, &file, opts)
}
