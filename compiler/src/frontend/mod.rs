//! The ONNX frontend: walks a raw ONNX graph and builds the integer IR.
//!
//! Both quantization formats become the same integer ops: QOperator ops (`QLinearConv`, …)
//! are expanded into dequantize → float op → quantize on symbolic values, exactly as a QDQ
//! graph spells them, and each float op on [`Real`] values is computed on integers with an
//! exact public scale. A quantize then turns `v · scale` back into int8 with one `rescale`.

mod batchnorm;
mod dynamic;
mod elemfn;
mod expr;
mod layernorm;
mod layout;
mod ops;
pub mod rational;
mod real;
mod recip;
mod reduce;
mod select;
mod softmax;
pub mod sym;

use crate::ir::Graph;
use crate::onnx::proto::{data_type, ModelProto, NodeProto};
use crate::onnx::{self, tensor_data, Attrs, TensorData};
use crate::Options;
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Int, Reg};
use qmpc_bytecode::Instr;
use qmpc_bytecode::{DType, TensorType};
use qmpc_bytecode::{ExternalType, InputDecl, OutputDecl, PostOp, QuantParams};
use std::collections::HashMap;
use sym::{IntVal, Real, Sym};

/// A model qmpc cannot compile, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontendError {
    #[error("{0}")]
    Node(Box<NodeError>),
    #[error("{file}: {msg}")]
    Graph { file: String, msg: String },
}

/// A node the frontend cannot compile, with everything needed to find it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: node {node} ({domain}::{op}, opset {opset}): {msg}")]
pub struct NodeError {
    pub file: String,
    /// The node's name in backticks, or its index and inputs where it has none.
    pub node: String,
    pub op: String,
    pub domain: String,
    pub opset: i64,
    pub msg: String,
}

pub(crate) struct Importer<'a> {
    pub opts: &'a Options,
    pub g: Graph,
    pub syms: HashMap<String, Sym>,
    pub opsets: HashMap<String, i64>,
    /// The ONNX node being imported, for names of new IR nodes.
    pub origin: String,
    /// Every graph input at its exported shape (no free batch axis).
    pub fixed_batch: bool,
}

pub(crate) type R<T> = Result<T, String>;

/// Import an ONNX model into the IR. A graph input whose first axis is symbolic or 1 gets
/// a free batch; a graph that moves or merges that axis (a reshape of `[1, S, D]` into
/// `[S, D]`, a transpose that takes it inward) is compiled again for the exported batch,
/// which the data owner's input must then have.
pub fn import(model: &ModelProto, file: &str, opts: &Options) -> Result<Graph, FrontendError> {
    match import_as(model, file, opts, false) {
        Err(FrontendError::Node(e)) if moves_batch(&e.msg) => import_as(model, file, opts, true),
        r => r,
    }
}

/// Whether an error says that the graph moves the batch axis.
fn moves_batch(msg: &str) -> bool {
    [
        "moves the batch",
        "move the batch",
        "along the batch",
        "over the batch",
    ]
    .iter()
    .any(|p| msg.contains(p))
}

fn import_as(
    model: &ModelProto,
    file: &str,
    opts: &Options,
    fixed_batch: bool,
) -> Result<Graph, FrontendError> {
    let gerr = |msg: String| FrontendError::Graph {
        file: file.to_string(),
        msg,
    };
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| gerr("the model has no graph".into()))?;
    let mut imp = Importer {
        opts,
        g: Graph {
            name: if graph.name.is_empty() {
                "model".into()
            } else {
                graph.name.clone()
            },
            trunc: opts.trunc,
            ..Default::default()
        },
        syms: HashMap::new(),
        opsets: onnx::opsets(model),
        origin: String::new(),
        fixed_batch,
    };
    if !imp.opsets.contains_key("ai.onnx") {
        imp.opsets.insert("ai.onnx".into(), 1);
    }
    for t in &graph.initializer {
        let d = tensor_data(t).map_err(|m| gerr(format!("initializer: {m}")))?;
        imp.syms.insert(t.name.clone(), Sym::Const(d));
    }
    for vi in &graph.input {
        if imp.syms.contains_key(&vi.name) {
            continue; // an initializer with a default value
        }
        imp.origin = vi.name.clone();
        let s = imp
            .graph_input(vi)
            .map_err(|m| gerr(format!("input `{}`: {m}", vi.name)))?;
        imp.syms.insert(vi.name.clone(), s);
    }
    unsupported_nodes(&graph.node, &imp.opsets, file)?;
    let nodes = graph.node.len();
    for (done, (index, node)) in topo_order(&graph.node)
        .map_err(gerr)?
        .into_iter()
        .enumerate()
    {
        opts.tell(crate::Stage::Import { done, nodes });
        let domain = onnx::canonical_domain(&node.domain).to_string();
        let opset = imp.opsets.get(&domain).copied().unwrap_or(0);
        let nerr = |msg: String| {
            FrontendError::Node(Box::new(NodeError {
                file: file.to_string(),
                node: node_label(index, node),
                op: node.op_type.clone(),
                domain: domain.clone(),
                opset,
                msg,
            }))
        };
        imp.origin = if node.name.is_empty() {
            node.output.first().cloned().unwrap_or_default()
        } else {
            node.name.clone()
        };
        let inputs: Vec<Option<Sym>> = node
            .input
            .iter()
            .map(|n| {
                if n.is_empty() {
                    Ok(None)
                } else {
                    imp.syms.get(n).cloned().map(Some).ok_or_else(|| {
                        nerr(format!(
                            "input `{n}` is not produced by any node, initializer or graph input"
                        ))
                    })
                }
            })
            .collect::<Result<_, _>>()?;
        let outs = ops::dispatch(&mut imp, node, &domain, opset, &inputs).map_err(nerr)?;
        for (name, s) in node.output.iter().zip(outs) {
            if !name.is_empty() {
                imp.syms.insert(name.clone(), s);
            }
        }
    }
    for vi in &graph.output {
        imp.origin = vi.name.clone();
        let s = imp
            .syms
            .get(&vi.name)
            .cloned()
            .ok_or_else(|| gerr(format!("output `{}` is never produced", vi.name)))?;
        let elem = vi
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .map(|t| t.elem_type)
            .unwrap_or(0);
        imp.graph_output(&vi.name, elem, s)
            .map_err(|m| gerr(format!("output `{}`: {m}", vi.name)))?;
    }
    Ok(imp.g)
}

/// How an error names a node: its name, or (for a nameless one) its index and inputs.
fn node_label(index: usize, node: &NodeProto) -> String {
    if !node.name.is_empty() {
        return format!("`{}`", node.name);
    }
    let ins: Vec<String> = node.input.iter().map(|i| format!("`{i}`")).collect();
    format!("#{index} (no name; inputs {})", ins.join(", "))
}

/// Every node whose op qmpc does not compile, reported at once: one node as a node error,
/// several grouped by op (a user fixing an export wants the whole list, not one per try).
fn unsupported_nodes(
    nodes: &[NodeProto],
    opsets: &HashMap<String, i64>,
    file: &str,
) -> Result<(), FrontendError> {
    let mut by_op: Vec<(String, Vec<String>)> = Vec::new();
    let mut first = None;
    for (i, n) in nodes.iter().enumerate() {
        let domain = onnx::canonical_domain(&n.domain);
        if ops::is_supported(domain, &n.op_type) {
            continue;
        }
        let op = format!("{domain}::{}", n.op_type);
        first.get_or_insert((i, n, domain.to_string()));
        match by_op.iter_mut().find(|(o, _)| *o == op) {
            Some((_, v)) => v.push(node_label(i, n)),
            None => by_op.push((op, vec![node_label(i, n)])),
        }
    }
    let count: usize = by_op.iter().map(|(_, v)| v.len()).sum();
    let supported = ops::supported_list();
    match first {
        None => Ok(()),
        Some((i, n, domain)) if count == 1 => Err(FrontendError::Node(Box::new(NodeError {
            file: file.to_string(),
            node: node_label(i, n),
            op: n.op_type.clone(),
            opset: opsets.get(&domain).copied().unwrap_or(0),
            domain,
            msg: format!("unsupported op; qmpc compiles: {supported}"),
        }))),
        Some(_) => {
            const SHOWN: usize = 6;
            let groups: Vec<String> = by_op
                .iter()
                .map(|(op, v)| {
                    let mut names = v[..v.len().min(SHOWN)].join(", ");
                    if v.len() > SHOWN {
                        names += &format!(" and {} more", v.len() - SHOWN);
                    }
                    format!("{op} × {} ({names})", v.len())
                })
                .collect();
            Err(FrontendError::Graph {
                file: file.to_string(),
                msg: format!(
                    "{count} nodes use ops qmpc does not compile: {}; qmpc compiles: {supported}",
                    groups.join("; ")
                ),
            })
        }
    }
}

/// Nodes in dependency order (ONNX requires it, but not every exporter obeys), with their
/// index in the file.
fn topo_order(nodes: &[NodeProto]) -> Result<Vec<(usize, &NodeProto)>, String> {
    let produced: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut state = vec![0u8; nodes.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::with_capacity(nodes.len());
    for start in 0..nodes.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some(&mut (n, ref mut k)) = stack.last_mut() {
            let deps = &nodes[n].input;
            if *k < deps.len() {
                let d = &deps[*k];
                *k += 1;
                if let Some(&p) = produced.get(d.as_str()) {
                    match state[p] {
                        0 => {
                            state[p] = 1;
                            stack.push((p, 0));
                        }
                        1 => return Err(format!("the graph has a cycle through `{d}`")),
                        _ => {}
                    }
                }
            } else {
                state[n] = 2;
                order.push((n, &nodes[n]));
                stack.pop();
            }
        }
    }
    Ok(order)
}

pub(crate) fn external_of(onnx_type: i32) -> Option<ExternalType> {
    match onnx_type {
        data_type::FLOAT => Some(ExternalType::F32),
        data_type::INT8 => Some(ExternalType::I8),
        data_type::UINT8 => Some(ExternalType::U8),
        data_type::INT32 => Some(ExternalType::I32),
        data_type::INT64 => Some(ExternalType::I64),
        _ => None,
    }
}

pub(crate) fn dtype_of(onnx_type: i32) -> R<DType> {
    match onnx_type {
        data_type::INT8 => Ok(DType::I8),
        data_type::UINT8 => Ok(DType::U8),
        data_type::INT16 => Ok(DType::I16),
        data_type::UINT16 => Ok(DType::U16),
        data_type::INT32 => Ok(DType::I32),
        data_type::INT64 => Ok(DType::I64),
        t => Err(format!(
            "unsupported type {} (qmpc computes on int8, uint8, int32 and float32 tensors)",
            data_type::name(t)
        )),
    }
}

impl Importer<'_> {
    fn graph_input(&mut self, vi: &onnx::proto::ValueInfoProto) -> R<Sym> {
        let tt = vi
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .ok_or("not a tensor")?;
        let shape = tt.shape.as_ref().ok_or("has no shape")?;
        let mut dims = Vec::new();
        let mut symbolic_first = false;
        for (i, d) in shape.dim.iter().enumerate() {
            match d.dim_value {
                Some(v) if v > 0 => dims.push(v as usize),
                _ if i == 0 => {
                    symbolic_first = true;
                    dims.push(1);
                }
                _ => {
                    return Err(format!(
                        "dimension {i} is symbolic; only the batch dimension may be"
                    ))
                }
            }
        }
        crate::ir::check_size(&dims)?;
        // The first axis is a batch axis when it is symbolic or 1 on a tensor of rank >= 2.
        let batched = !self.fixed_batch && dims.len() >= 2 && (symbolic_first || dims[0] == 1);
        match tt.elem_type {
            data_type::FLOAT => Ok(Sym::FloatInput {
                name: vi.name.clone(),
                dims,
                batched,
            }),
            t => {
                let ext = external_of(t)
                    .filter(|e| {
                        matches!(e, ExternalType::I8 | ExternalType::U8 | ExternalType::I32)
                    })
                    .ok_or_else(|| format!("unsupported input type {}", data_type::name(t)))?;
                let ty = TensorType {
                    dtype: dtype_of(t)?,
                    dims,
                    batched,
                };
                let node = self.g.add_input(
                    InputDecl {
                        name: vi.name.clone(),
                        external: ext,
                        quant: None,
                        ty,
                    },
                    &vi.name,
                );
                Ok(Sym::Int { node, onnx: t })
            }
        }
    }

    fn graph_output(&mut self, name: &str, elem: i32, s: Sym) -> R<()> {
        let (node, dequant, post, external) = match s {
            Sym::Int { node, onnx } => (
                node,
                None,
                PostOp::None,
                external_of(onnx).ok_or("unsupported output type")?,
            ),
            Sym::Real(r) => {
                let (node, q) = self.reveal_real(r)?;
                (node, Some(q), PostOp::None, ExternalType::F32)
            }
            Sym::BlockedReal { node, quant } => {
                (node, Some(quant), PostOp::None, ExternalType::F32)
            }
            Sym::Softmax { real, axis } => {
                let (node, q) = self.reveal_real(real)?;
                (node, Some(q), PostOp::Softmax { axis }, ExternalType::F32)
            }
            Sym::Const(_) => {
                return Err("the output is a constant; there is nothing to compute".into())
            }
            Sym::FloatInput { .. } => return Err("the output is an unquantized input".into()),
            // A float LayerNormalization output (a QOperator file has no quantized form of
            // it): computed at 2^-16 as an int32, dequantized by the receiver.
            Sym::LayerNorm(ln) => {
                let unit = real::QParams {
                    scale: vec![1.0 / 65536.0],
                    zp: vec![0],
                    axis: 0,
                    block: 0,
                    onnx: data_type::INT32,
                };
                let Sym::Int { node, .. } = self.quantize_layer_norm(&ln, &unit)? else {
                    return Err("a LayerNormalization output did not quantize".into());
                };
                (node, Some(unit.to_quant()), PostOp::None, ExternalType::F32)
            }
            // A graph output of DynamicQuantizeLinear's scale: the range, dequantized by the
            // receiver (an f32 of the exact `range · unit`).
            Sym::DynScale { range, unit } => {
                let q = QuantParams {
                    scale: vec![unit.to_f64() as f32],
                    zero_point: vec![0],
                    axis: 0,
                    block: 0,
                };
                (range, Some(q), PostOp::None, ExternalType::F32)
            }
        };
        if elem != 0 && external_of(elem) != Some(external) {
            return Err(format!(
                "declared {} but computes {}",
                data_type::name(elem),
                external.name()
            ));
        }
        self.g.add_output(
            OutputDecl {
                name: name.to_string(),
                external,
                dequant,
                post,
            },
            node,
            name,
        );
        Ok(())
    }

    /// The integers to reveal for a real output and how the receiver dequantizes them.
    fn reveal_real(&mut self, r: Real) -> R<(petgraph::stable_graph::NodeIndex, QuantParams)> {
        if let Some(raw) = r.raw {
            return Ok(raw);
        }
        if r.divisor.is_some() || r.func.is_some() {
            return Err("a float output must come from a DequantizeLinear or an integer op".into());
        }
        let node = self.int_node(&r.v)?;
        let scale: Vec<f32> = r.scale.r.iter().map(|x| x.to_f64() as f32).collect();
        let zero_point = vec![0; scale.len()];
        Ok((
            node,
            QuantParams {
                scale,
                zero_point,
                axis: r.scale.axis,
                block: 0,
            },
        ))
    }

    /// The IR node holding `v`, materializing compile-time integers as model-owner tensors.
    pub fn int_node(&mut self, v: &IntVal) -> R<petgraph::stable_graph::NodeIndex> {
        match v {
            IntVal::Node(n) => Ok(*n),
            IntVal::Const { data, name, lo, hi } => {
                let ints = data.ints().ok_or("expected an integer tensor")?.to_vec();
                let c = qmpc_bytecode::ConstTensor {
                    dtype: DType::fitting(*lo, *hi),
                    dims: data.dims.clone(),
                    data: ints,
                };
                Ok(match self.opts.weights {
                    crate::WeightsMode::Secret => self.g.add_weight(name, c, &self.origin.clone()),
                    crate::WeightsMode::Public => self.g.add_const(c, &self.origin.clone()),
                })
            }
        }
    }

    pub fn konst(&mut self, dims: Vec<usize>, data: Vec<i64>) -> petgraph::stable_graph::NodeIndex {
        let lo = data.iter().copied().min().unwrap_or(0);
        let hi = data.iter().copied().max().unwrap_or(0);
        let c = qmpc_bytecode::ConstTensor {
            dtype: DType::fitting(lo.min(0), hi.max(0)),
            dims,
            data,
        };
        self.g.add_const(c, &self.origin.clone())
    }

    pub fn compute(
        &mut self,
        instr: qmpc_bytecode::Instr,
        operands: &[petgraph::stable_graph::NodeIndex],
    ) -> R<petgraph::stable_graph::NodeIndex> {
        let o = self.origin.clone();
        self.g.add_compute(instr, operands, None, None, &o)
    }

    pub fn compute_to(
        &mut self,
        instr: qmpc_bytecode::Instr,
        operands: &[petgraph::stable_graph::NodeIndex],
        dims: &[usize],
        dtype: Option<DType>,
    ) -> R<petgraph::stable_graph::NodeIndex> {
        let o = self.origin.clone();
        self.g.add_compute(instr, operands, Some(dims), dtype, &o)
    }

    /// `a + b` with numpy broadcasting.
    pub fn add_nodes(&mut self, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        let (dst, a_, b_) = (Dst(0), Reg(0), Reg(1));
        self.compute(Instr::Add { dst, a: a_, b: b_ }, &[a, b])
    }

    /// `a − b` with numpy broadcasting.
    pub fn sub_nodes(&mut self, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        let (dst, a_, b_) = (Dst(0), Reg(0), Reg(1));
        self.compute(Instr::Sub { dst, a: a_, b: b_ }, &[a, b])
    }

    /// `x + c` for a public scalar `c` (nothing for 0).
    pub fn add_scalar(&mut self, x: NodeIndex, c: i64) -> R<NodeIndex> {
        if c == 0 {
            return Ok(x);
        }
        let k = self.konst(vec![1], vec![c]);
        self.add_nodes(x, k)
    }

    /// `a · b` with numpy broadcasting.
    pub fn mul_nodes(&mut self, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        let (dst, a_, b_) = (Dst(0), Reg(0), Reg(1));
        self.compute(Instr::Mul { dst, a: a_, b: b_ }, &[a, b])
    }

    /// `round_half_even(x · num / den)` by public scalars.
    pub fn rescale_by(&mut self, x: NodeIndex, num: i64, den: i64) -> R<NodeIndex> {
        let (n, d) = (
            self.konst(vec![1], vec![num]),
            self.konst(vec![1], vec![den]),
        );
        let instr = Instr::Rescale {
            dst: Dst(0),
            x: Reg(0),
            num: Reg(1),
            den: Reg(2),
        };
        self.compute(instr, &[x, n, d])
    }

    /// `min(max(x, lo), hi)`, typed `dtype` where given.
    pub fn clamp_to(
        &mut self,
        x: NodeIndex,
        lo: i64,
        hi: i64,
        dtype: Option<DType>,
    ) -> R<NodeIndex> {
        let instr = Instr::Clamp {
            dst: Dst(0),
            x: Reg(0),
            lo: Int(lo),
            hi: Int(hi),
        };
        self.compute_to(instr, &[x], &[], dtype)
    }

    /// The same elements in `dims`, typed `dtype` where given.
    pub fn reshape_to(
        &mut self,
        x: NodeIndex,
        dims: &[usize],
        dtype: Option<DType>,
    ) -> R<NodeIndex> {
        let instr = Instr::Reshape {
            dst: Dst(0),
            x: Reg(0),
        };
        self.compute_to(instr, &[x], dims, dtype)
    }
}

pub(crate) fn attrs(node: &NodeProto) -> Attrs<'_> {
    Attrs::new(node)
}

pub(crate) fn float_scalar(t: &TensorData, what: &str) -> R<Vec<f32>> {
    t.floats()
        .map(|v| v.to_vec())
        .ok_or_else(|| format!("{what} must be a float tensor"))
}
