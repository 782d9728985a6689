//! Lowering: IR graph → bytecode program and the model owner's weights file.

use crate::ir::{Graph, Op};
use crate::{Options, WeightsMode};
use petgraph::algo::toposort;
use qmpc_bytecode::operand::{Dst, Index};
use qmpc_bytecode::{ConstTensor, Program, RegDecl, WeightDecl, Weights};
use qmpc_bytecode::{Instr, TensorType, Visibility};
use std::collections::HashMap;

/// Registers in topological order; each node's instruction with operands renamed. An error
/// means the IR broke an invariant of the frontend (a cycle, an operand defined nowhere).
pub fn lower(g: &Graph, opts: &Options) -> Result<(Program, Weights), String> {
    let order = if g.order.is_empty() {
        toposort(&g.g, None).map_err(|_| "the IR has a cycle".to_string())?
    } else {
        g.order.clone()
    };
    let mut reg: HashMap<_, u32> = HashMap::new();
    let mut registers: Vec<RegDecl> = Vec::new();
    let mut consts: Vec<ConstTensor> = g.tables.clone();
    let mut weights = Vec::new();
    let mut weight_values = Vec::new();
    let mut code = Vec::new();
    let mut origins = Vec::new();
    for n in order {
        let node = &g.g[n];
        let dst = registers.len() as u32;
        let ops: Vec<u32> = g
            .operands(n)
            .iter()
            .map(|o| reg.get(o).copied())
            .collect::<Option<_>>()
            .ok_or_else(|| format!("node `{}` reads a value defined nowhere", node.origin))?;
        let instr = match &node.op {
            Op::Input { index } => Instr::Input {
                dst: Dst(dst),
                index: Index(*index as u32),
            },
            Op::Const { data } => {
                consts.push(data.clone());
                Instr::Const {
                    dst: Dst(dst),
                    index: Index(consts.len() as u32 - 1),
                }
            }
            Op::Weight { name, data } => match opts.weights {
                WeightsMode::Secret => {
                    let ty = TensorType {
                        dtype: data.dtype,
                        dims: data.dims.clone(),
                        batched: false,
                    };
                    weights.push(WeightDecl {
                        name: name.clone(),
                        ty,
                    });
                    weight_values.push((name.clone(), data.clone()));
                    Instr::Weight {
                        dst: Dst(dst),
                        index: Index(weights.len() as u32 - 1),
                    }
                }
                WeightsMode::Public => {
                    consts.push(data.clone());
                    Instr::Const {
                        dst: Dst(dst),
                        index: Index(consts.len() as u32 - 1),
                    }
                }
            },
            Op::Output { index } => Instr::Output {
                x: qmpc_bytecode::operand::Reg(*ops.first().ok_or("an output without an operand")?),
                index: Index(*index as u32),
            },
            Op::Load { index } => Instr::Load {
                dst: Dst(dst),
                index: Index(*index as u32),
            },
            Op::Store { index } => Instr::Store {
                x: qmpc_bytecode::operand::Reg(*ops.first().ok_or("a store without an operand")?),
                index: Index(*index as u32),
            },
            Op::Compute(i) => rename(i, dst, &ops)
                .ok_or_else(|| format!("node `{}`: operands do not match", node.origin))?,
        };
        if !matches!(node.op, Op::Output { .. } | Op::Store { .. }) {
            let mut decl = node.decl.clone();
            if let (Op::Weight { data, .. }, WeightsMode::Public) = (&node.op, opts.weights) {
                decl.vis = Visibility::Public;
                decl.lo = data.data.iter().copied().min().unwrap_or(0);
                decl.hi = data.data.iter().copied().max().unwrap_or(0);
            }
            reg.insert(n, dst);
            registers.push(decl);
        }
        code.push(instr);
        origins.push(node.origin.clone());
    }
    let program = Program {
        name: g.name.clone(),
        trunc: opts.trunc,
        rounds: g.rounds,
        registers,
        consts,
        inputs: g.inputs.clone(),
        weights,
        outputs: g.outputs.clone(),
        states: g.states.clone(),
        code,
        origins,
    };
    Ok((
        program,
        Weights {
            tensors: weight_values,
        },
    ))
}

/// The instruction with `dst` and operand positions replaced by registers.
fn rename(i: &Instr, dst: u32, ops: &[u32]) -> Option<Instr> {
    use qmpc_bytecode::operand::AsmValue;
    let reg = |r: u32| ops.get(r as usize).copied().map(AsmValue::Reg);
    let args: Vec<(String, AsmValue)> = i
        .operands()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                AsmValue::Dst(_) => AsmValue::Dst(dst),
                AsmValue::Reg(r) => reg(r)?,
                AsmValue::List(xs) => AsmValue::List(
                    xs.into_iter()
                        .map(|x| match x {
                            AsmValue::Reg(r) => reg(r),
                            x => Some(x),
                        })
                        .collect::<Option<_>>()?,
                ),
                v => v,
            };
            Some((k.to_string(), v))
        })
        .collect::<Option<_>>()?;
    Instr::from_asm(i.mnemonic(), args).ok()
}
