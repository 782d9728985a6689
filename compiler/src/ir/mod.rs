//! The integer IR: a typed tensor dataflow graph (petgraph). Every node produces one tensor
//! whose element type, shape (with the batch axis marked), visibility and value bounds are
//! explicit. Compute nodes carry a bytecode instruction whose register operands are operand
//! positions (`%0` is the node's first operand); their result type comes from the VM's own
//! inference rules, so the compiler and the verifier cannot disagree.

mod dump;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use qmpc_bytecode::verify::{infer, InferCtx};
use qmpc_bytecode::{ConstTensor, InputDecl, Instr, OutputDecl, RegDecl, StateDecl, WeightDecl};
use qmpc_bytecode::{DType, TensorType, Visibility};

pub use dump::dump;

/// What a node is.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Input `index` of the data owner.
    Input { index: usize },
    /// A tensor of the model owner: secret with `--weights secret`, public otherwise.
    Weight { name: String, data: ConstTensor },
    /// A public constant.
    Const { data: ConstTensor },
    /// A computation; the instruction's registers are operand positions.
    Compute(Instr),
    /// Output `index`, revealed to the output receiver.
    Output { index: usize },
    /// Session state `index` as the run starts (training, docs/training.md).
    Load { index: usize },
    /// The operand becomes session state `index` after the run.
    Store { index: usize },
}

/// One node: its operation, result declaration and the ONNX node it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub decl: RegDecl,
    pub origin: String,
}

/// The whole program as a graph. Edge weights are operand positions.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub g: StableDiGraph<Node, u32>,
    pub inputs: Vec<InputDecl>,
    pub outputs: Vec<OutputDecl>,
    /// Lookup tables referred to by `lookup` instructions (by index).
    pub tables: Vec<ConstTensor>,
    /// Session state the program loads or stores (training).
    pub states: Vec<StateDecl>,
    /// How secure protocols truncate; probabilistic results may exceed exact ones by one.
    pub trunc: qmpc_semantics::TruncMode,
    /// How the program's instructions use rounds (the `schedule` pass sets it).
    pub rounds: qmpc_bytecode::RoundSchedule,
    /// The order to lower nodes in, when a pass chose one (else a topological order).
    pub order: Vec<NodeIndex>,
}

struct Ctx<'a> {
    decls: Vec<&'a RegDecl>,
    graph: &'a Graph,
}

impl InferCtx for Ctx<'_> {
    fn reg(&self, r: u32) -> &RegDecl {
        self.decls[r as usize]
    }
    fn konst(&self, i: u32) -> Option<&ConstTensor> {
        self.graph.tables.get(i as usize)
    }
    fn input(&self, i: u32) -> Option<&InputDecl> {
        self.graph.inputs.get(i as usize)
    }
    fn weight(&self, _: u32) -> Option<&WeightDecl> {
        None
    }
    fn state(&self, i: u32) -> Option<&StateDecl> {
        self.graph.states.get(i as usize)
    }
    fn trunc(&self) -> qmpc_semantics::TruncMode {
        self.graph.trunc
    }
}

impl Graph {
    /// Operands of `n` in order.
    pub fn operands(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut e: Vec<(u32, NodeIndex)> = self
            .g
            .edges_directed(n, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort();
        e.into_iter().map(|(_, s)| s).collect()
    }

    /// The reader of `n` when it has exactly one.
    pub fn only_reader(&self, n: NodeIndex) -> Option<NodeIndex> {
        let mut it = self.g.edges_directed(n, Direction::Outgoing);
        let e = it.next()?;
        it.next().is_none().then(|| e.target())
    }

    /// Make every reader of `from` read `to` instead (same operand positions).
    pub fn move_readers(&mut self, from: NodeIndex, to: NodeIndex) {
        let uses: Vec<(NodeIndex, u32)> = self
            .g
            .edges_directed(from, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        for (t, w) in uses {
            self.g.add_edge(to, t, w);
        }
    }

    /// Bounds of what a requantization `n` divides: its operand's, or for `convrequant`
    /// and `matmulrequant` the product plus bias (which no register holds).
    pub fn operand_bounds(&self, n: NodeIndex) -> Option<(i64, i64)> {
        let Op::Compute(ins) = &self.g[n].op else {
            return None;
        };
        let ops = self.operands(n);
        let ctx = Ctx {
            decls: ops.iter().map(|&o| &self.g[o].decl).collect(),
            graph: self,
        };
        match qmpc_bytecode::verify::accumulator(&ctx, ins).ok()? {
            Some((_, (lo, hi))) => Some((i64::try_from(lo).ok()?, i64::try_from(hi).ok()?)),
            None => {
                let x = &self.g[*ops.first()?].decl;
                Some((x.lo, x.hi))
            }
        }
    }

    /// The values of a constant node.
    pub fn const_data(&self, n: NodeIndex) -> Option<&[i64]> {
        match &self.g[n].op {
            Op::Const { data } => Some(&data.data),
            _ => None,
        }
    }

    pub fn decl(&self, n: NodeIndex) -> &RegDecl {
        &self.g[n].decl
    }

    pub fn dims(&self, n: NodeIndex) -> &[usize] {
        &self.g[n].decl.ty.dims
    }

    fn add(&mut self, op: Op, decl: RegDecl, operands: &[NodeIndex], origin: &str) -> NodeIndex {
        let n = self.g.add_node(Node {
            op,
            decl,
            origin: origin.to_string(),
        });
        for (i, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, n, i as u32);
        }
        n
    }

    pub fn add_input(&mut self, decl: InputDecl, origin: &str) -> NodeIndex {
        let (lo, hi) = decl.ty.dtype.range();
        let reg = RegDecl {
            ty: decl.ty.clone(),
            vis: Visibility::Secret,
            lo,
            hi,
        };
        self.inputs.push(decl);
        self.add(
            Op::Input {
                index: self.inputs.len() - 1,
            },
            reg,
            &[],
            origin,
        )
    }

    /// A public constant; its bounds are its values.
    pub fn add_const(&mut self, data: ConstTensor, origin: &str) -> NodeIndex {
        let lo = data.data.iter().copied().min().unwrap_or(0);
        let hi = data.data.iter().copied().max().unwrap_or(0);
        let ty = TensorType {
            dtype: data.dtype,
            dims: data.dims.clone(),
            batched: false,
        };
        self.add(
            Op::Const { data },
            RegDecl {
                ty,
                vis: Visibility::Public,
                lo,
                hi,
            },
            &[],
            origin,
        )
    }

    /// A model-owner tensor. Its public bounds are those of its type, never of its values,
    /// so the program reveals nothing about the weights (a pass may narrow them from other
    /// public facts, as `saturate_bias` does).
    pub fn add_weight(&mut self, name: &str, data: ConstTensor, origin: &str) -> NodeIndex {
        let (lo, hi) = data.dtype.range();
        let ty = TensorType {
            dtype: data.dtype,
            dims: data.dims.clone(),
            batched: false,
        };
        let decl = RegDecl {
            ty,
            vis: Visibility::Secret,
            lo,
            hi,
        };
        self.add(
            Op::Weight {
                name: name.to_string(),
                data,
            },
            decl,
            &[],
            origin,
        )
    }

    /// A compute node. `dst_dims` is needed only by instructions whose shape comes from the
    /// destination (`reshape`, `cast`, `argmax`); `dtype` forces the element type, otherwise
    /// the narrowest type holding the inferred bounds is used.
    pub fn add_compute(
        &mut self,
        instr: Instr,
        operands: &[NodeIndex],
        dst_dims: Option<&[usize]>,
        dtype: Option<DType>,
        origin: &str,
    ) -> Result<NodeIndex, String> {
        let inf = {
            let ctx = Ctx {
                decls: operands.iter().map(|&o| &self.g[o].decl).collect(),
                graph: self,
            };
            infer(&ctx, &instr, dst_dims.unwrap_or(&[]))?
        };
        check_size(&inf.dims)?;
        let (lo, hi) = (inf.lo as i64, inf.hi as i64);
        let dtype = match dtype {
            Some(d) => {
                let (a, b) = d.range();
                if lo < a || hi > b {
                    return Err(format!("values in [{lo}, {hi}] do not fit {d}"));
                }
                d
            }
            None => DType::fitting(lo, hi),
        };
        let operand_types: Vec<DType> = operands.iter().map(|&o| self.g[o].decl.ty.dtype).collect();
        qmpc_bytecode::verify::check_scales(&instr, dtype, &operand_types)?;
        let ty = TensorType {
            dtype,
            dims: inf.dims,
            batched: inf.batched,
        };
        Ok(self.add(
            Op::Compute(instr),
            RegDecl {
                ty,
                vis: inf.vis,
                lo,
                hi,
            },
            operands,
            origin,
        ))
    }

    pub fn add_output(&mut self, decl: OutputDecl, x: NodeIndex, origin: &str) -> NodeIndex {
        let d = self.g[x].decl.clone();
        self.outputs.push(decl);
        self.add(
            Op::Output {
                index: self.outputs.len() - 1,
            },
            d,
            &[x],
            origin,
        )
    }

    /// Declare a session state; returns its index.
    pub fn add_state(&mut self, decl: StateDecl) -> usize {
        self.states.push(decl);
        self.states.len() - 1
    }

    /// The value of state `index` as the run starts: secret, within its declared bounds.
    pub fn add_load(&mut self, index: usize, origin: &str) -> Result<NodeIndex, String> {
        let st = self
            .states
            .get(index)
            .ok_or_else(|| format!("no state {index}"))?;
        let decl = RegDecl {
            ty: st.ty.clone(),
            vis: Visibility::Secret,
            lo: st.lo,
            hi: st.hi,
        };
        Ok(self.add(Op::Load { index }, decl, &[], origin))
    }

    /// `x` becomes state `index` after the run. Its type and bounds must keep the state's
    /// invariant (the verifier's rule, checked here so the compiler names the node).
    pub fn add_store(
        &mut self,
        index: usize,
        x: NodeIndex,
        origin: &str,
    ) -> Result<NodeIndex, String> {
        let st = self
            .states
            .get(index)
            .ok_or_else(|| format!("no state {index}"))?;
        let d = self.g[x].decl.clone();
        if d.ty != st.ty || d.lo < st.lo || d.hi > st.hi {
            return Err(format!(
                "stores {} in [{}, {}] into state `{}` ({} in [{}, {}])",
                d.ty, d.lo, d.hi, st.name, st.ty, st.lo, st.hi
            ));
        }
        Ok(self.add(Op::Store { index }, d, &[x], origin))
    }

    /// Add a lookup table; returns its index.
    pub fn add_table(&mut self, t: ConstTensor) -> u32 {
        self.tables.push(t);
        (self.tables.len() - 1) as u32
    }
}

/// Rejects a shape with more elements than a VM register may hold.
pub fn check_size(dims: &[usize]) -> Result<usize, String> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= qmpc_bytecode::verify::MAX_REGISTER_ELEMS)
        .ok_or_else(|| format!("shape {dims:?} has too many elements"))
}
