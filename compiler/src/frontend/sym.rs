//! What the frontend knows about each ONNX tensor while it walks the graph.

use super::rational::Rational;
use crate::onnx::TensorData;
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::QuantParams;

/// An ONNX tensor during import.
#[derive(Clone, Debug)]
pub enum Sym {
    /// Known at compile time (initializers, `Constant`, folded shape arithmetic).
    Const(TensorData),
    /// An integer tensor computed at run time; `onnx` is its ONNX element type.
    Int { node: NodeIndex, onnx: i32 },
    /// A float tensor of the ONNX graph, held exactly as integers times a public scale.
    Real(Real),
    /// A float graph input not yet quantized; its owner quantizes it locally.
    FloatInput {
        name: String,
        dims: Vec<usize>,
        batched: bool,
    },
    /// A softmax of a real tensor: allowed only as a graph output (computed by the receiver).
    Softmax { real: Real, axis: usize },
    /// A blocked `DequantizeLinear` of a run-time tensor: its scales vary along every axis, so
    /// it is allowed only as a graph output (dequantized by the receiver).
    BlockedReal { node: NodeIndex, quant: QuantParams },
    /// The scale output of `DynamicQuantizeLinear`, `range · unit`: `range` a secret
    /// per-sample integer `[N, 1]`, `unit` public (`frontend/dynamic.rs`).
    DynScale { range: NodeIndex, unit: Rational },
    /// A `LayerNormalization` of a real tensor, computed at its `QuantizeLinear`.
    LayerNorm(Box<super::layernorm::LayerNorm>),
}

/// Integers of a real tensor: a run-time node or compile-time values (weights).
#[derive(Clone, Debug)]
pub enum IntVal {
    Node(NodeIndex),
    /// Values with the ONNX name they came from; `lo..=hi` is the public range of the type.
    Const {
        data: TensorData,
        name: String,
        lo: i64,
        hi: i64,
    },
}

/// Per-tensor or per-axis scale, exact.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    pub r: Vec<Rational>,
    /// The axis of per-channel scales (meaningless with one scale).
    pub axis: usize,
    /// The f32 value onnxruntime's integer kernels compute for this scale, where it fuses a
    /// GEMM-like op (`x_scale · w_scale` in f32): requantization then follows onnxruntime.
    pub hint: Option<Vec<f32>>,
}

impl Scale {
    pub fn scalar(r: Rational) -> Scale {
        Scale {
            r: vec![r],
            axis: 0,
            hint: None,
        }
    }
    pub fn is_scalar(&self) -> bool {
        self.r.len() == 1
    }
    pub fn get(&self, c: usize) -> Rational {
        if self.r.len() == 1 {
            self.r[0]
        } else {
            self.r[c]
        }
    }
    /// Collapse equal per-channel scales to one.
    pub fn simplified(mut self) -> Scale {
        if self.r.len() > 1 && self.r.iter().all(|&x| x == self.r[0]) {
            self.r.truncate(1);
            if let Some(h) = &mut self.hint {
                h.truncate(1);
            }
        }
        self
    }
}

/// An element-wise float function applied before the next quantization (as a lookup table).
#[derive(Clone, Debug, PartialEq)]
pub enum ElemFn {
    LeakyRelu(f32),
    Sigmoid,
    /// `max(0, min(1, alpha · x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x · HardSigmoid(x)` with alpha 1/6, beta 1/2.
    HardSwish,
    /// Any chain of float ops of `x` (`frontend/expr.rs`).
    Expr(std::sync::Arc<super::expr::Expr>),
    /// A per-channel affine step, perhaps clamped (`frontend/batchnorm.rs`).
    ChannelAffine(std::sync::Arc<super::batchnorm::ChannelAffine>),
}

/// `real = v · scale / divisor`, then `func` if any.
#[derive(Clone, Debug)]
pub struct Real {
    pub v: IntVal,
    pub scale: Scale,
    /// Public per-element divisor (average pooling's window counts), broadcast to `v`.
    pub divisor: Option<TensorData>,
    pub func: Option<ElemFn>,
    /// The integer tensor this real was dequantized from, with its parameters: a graph output
    /// reveals these integers and the receiver dequantizes them.
    pub raw: Option<(NodeIndex, QuantParams)>,
}

impl Real {
    pub fn plain(v: IntVal, scale: Scale) -> Real {
        Real {
            v,
            scale,
            divisor: None,
            func: None,
            raw: None,
        }
    }
}
