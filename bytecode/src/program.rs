//! The decoded program: what the compiler builds, the container stores and the VM runs.

use super::ops::Instr;
use crate::types::{DType, TensorType, Visibility};
use qmpc_semantics::TruncMode;

/// Version of the bytecode format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Declaration of one register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegDecl {
    pub ty: TensorType,
    pub vis: Visibility,
    /// Static bounds of every element, proved by the compiler and checked by the verifier.
    pub lo: i64,
    pub hi: i64,
}

/// A public constant tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstTensor {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub data: Vec<i64>,
}

/// Quantization parameters `real = (q - zero_point) · scale`: per tensor, per channel along
/// `axis`, or blocked (ONNX opset 21: `block` consecutive elements along `axis` share one
/// scale, and the scale tensor has the tensor's shape with `axis` shortened to the block count).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantParams {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    /// Axis of per-channel or blocked parameters; ignored when there is one scale.
    pub axis: usize,
    /// Block size along `axis`; 0 for per-tensor or per-channel parameters.
    pub block: usize,
}

impl QuantParams {
    /// Index into `scale`/`zero_point` of element `i` (row-major) of a tensor of shape `dims`.
    /// A batch of several samples repeats the parameters of one sample; the result is always
    /// in bounds, even for parameters that do not match `dims`.
    pub fn param_index(&self, i: usize, dims: &[usize]) -> usize {
        let n = self.scale.len().max(1);
        if n == 1 {
            return 0;
        }
        let inner: usize = dims
            .get(self.axis + 1..)
            .map_or(1, |d| d.iter().product::<usize>())
            .max(1);
        if self.block == 0 {
            return (i / inner) % n;
        }
        let d = dims.get(self.axis).copied().unwrap_or(1).max(1);
        let blocks = d.div_ceil(self.block);
        let outer = i / (d * inner);
        let along = (i / inner) % d;
        ((outer * blocks + along / self.block) * inner + i % inner) % n
    }
}

/// Element type of a tensor exchanged with the outside (an `.npy` file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalType {
    F32,
    I8,
    U8,
    I32,
    I64,
}

impl ExternalType {
    pub const ALL: [ExternalType; 5] = [
        ExternalType::F32,
        ExternalType::I8,
        ExternalType::U8,
        ExternalType::I32,
        ExternalType::I64,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ExternalType::F32 => "f32",
            ExternalType::I8 => "i8",
            ExternalType::U8 => "u8",
            ExternalType::I32 => "i32",
            ExternalType::I64 => "i64",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }
    pub fn code(self) -> i32 {
        Self::ALL
            .iter()
            .position(|&t| t == self)
            .map_or(0, |p| p as i32 + 1)
    }
    pub fn from_code(c: i32) -> Option<Self> {
        usize::try_from(c)
            .ok()
            .and_then(|c| c.checked_sub(1))
            .and_then(|i| Self::ALL.get(i).copied())
    }
}

/// An input the data owner provides. A float input is quantized by its owner, locally,
/// with the public `quant` parameters before it is shared.
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub name: String,
    pub external: ExternalType,
    pub quant: Option<QuantParams>,
    /// The register type the input is shared as.
    pub ty: TensorType,
}

/// A secret weight tensor of the model owner, stored in the `.qmpw` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightDecl {
    pub name: String,
    pub ty: TensorType,
}

/// A secret tensor that outlives one run: the programs of a session (a training run's
/// set-up, step, evaluation and finish) `load` and `store` it, and the runner keeps its
/// shares in between. Its bounds are an invariant: every `store` must prove its value
/// within them, so every `load` may assume them (docs/training.md, "Headroom").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDecl {
    pub name: String,
    pub ty: TensorType,
    pub lo: i64,
    pub hi: i64,
}

/// What the output receiver computes in the clear after the reveal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostOp {
    None,
    /// Softmax along an axis of the dequantized output.
    Softmax {
        axis: usize,
    },
}

/// An output of the program.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputDecl {
    pub name: String,
    pub external: ExternalType,
    /// Dequantization the receiver applies to the revealed integers.
    pub dequant: Option<QuantParams>,
    pub post: PostOp,
}

/// How a program's interactive instructions use communication rounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoundSchedule {
    /// One after the other, in program order: each instruction has rounds of its own.
    #[default]
    Sequential,
    /// Each starts as soon as its operands are ready, and instructions running at the same
    /// time share rounds (the compiler's `schedule` pass).
    Merged,
}

impl RoundSchedule {
    pub fn name(self) -> &'static str {
        match self {
            RoundSchedule::Sequential => "sequential",
            RoundSchedule::Merged => "merged",
        }
    }
}

/// A complete bytecode program.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub name: String,
    pub trunc: TruncMode,
    pub rounds: RoundSchedule,
    pub registers: Vec<RegDecl>,
    pub consts: Vec<ConstTensor>,
    pub inputs: Vec<InputDecl>,
    pub weights: Vec<WeightDecl>,
    pub outputs: Vec<OutputDecl>,
    /// Session state the program loads or stores (empty outside training).
    pub states: Vec<StateDecl>,
    pub code: Vec<Instr>,
    /// For each instruction, the ONNX node it came from (for errors and per-layer costs).
    pub origins: Vec<String>,
}
