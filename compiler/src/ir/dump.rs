//! The readable text form of the IR (`qmpc compile --emit-ir`).

use super::{Graph, Op};
use petgraph::algo::toposort;
use qmpc_bytecode::operand::AsmValue;
use std::collections::HashMap;
use std::fmt::Write;

fn short(data: &[i64]) -> String {
    if data.len() <= 8 {
        format!("{data:?}")
    } else {
        format!("[{}, {}, ... {} values]", data[0], data[1], data.len())
    }
}

/// One line per node in topological order:
/// `v7 = conv v3, v5, strides=[1, 1], ... : i32[N,6,24,24] secret [lo, hi]  ; onnx node`.
pub fn dump(g: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "; qmpc IR of `{}`", g.name);
    let order = toposort(&g.g, None).unwrap_or_default();
    let name: HashMap<_, _> = order
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, format!("v{i}")))
        .collect();
    for &n in &order {
        let node = &g.g[n];
        let ops = g.operands(n);
        let opname = |r: u32| {
            ops.get(r as usize)
                .and_then(|o| name.get(o))
                .cloned()
                .unwrap_or("?".into())
        };
        let body = match &node.op {
            Op::Input { index } => format!("input `{}`", g.inputs[*index].name),
            Op::Weight { name, data } => format!("weight `{name}` {}", short(&data.data)),
            Op::Const { data } => format!("const {}", short(&data.data)),
            Op::Output { index } => format!("output `{}` {}", g.outputs[*index].name, opname(0)),
            Op::Load { index } => format!("load `{}`", g.states[*index].name),
            Op::Store { index } => format!("store `{}` {}", g.states[*index].name, opname(0)),
            Op::Compute(i) => {
                let args: Vec<String> = i
                    .operands()
                    .into_iter()
                    .filter_map(|(k, v)| match v {
                        AsmValue::Dst(_) => None,
                        AsmValue::Reg(r) => Some(format!("{k}={}", opname(r))),
                        AsmValue::List(xs) if xs.iter().all(|x| matches!(x, AsmValue::Reg(_))) => {
                            let names: Vec<String> = xs
                                .iter()
                                .map(|x| {
                                    if let AsmValue::Reg(r) = x {
                                        opname(*r)
                                    } else {
                                        String::new()
                                    }
                                })
                                .collect();
                            Some(format!("{k}=[{}]", names.join(", ")))
                        }
                        v => Some(format!("{k}={v}")),
                    })
                    .collect();
                format!("{} {}", i.mnemonic(), args.join(", "))
            }
        };
        let d = &node.decl;
        let _ = writeln!(
            out,
            "{} = {body} : {} {} [{}, {}]  ; {}",
            name[&n],
            d.ty,
            d.vis.name(),
            d.lo,
            d.hi,
            node.origin
        );
    }
    out
}
