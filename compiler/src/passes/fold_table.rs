//! An element-wise chain that is a function of one small-range register and already holds a
//! lookup becomes one lookup of that register.
//!
//! A quantized SiLU, as `quantize_static` writes it, is `DQ → Sigmoid → Q → DQ → Mul(x, ·) →
//! Q`: a lookup (the sigmoid's table), a product of two secrets and a requantization — but
//! every value in it is a function of the one int8 tensor `x`. So is a `Mul` of an
//! activation by its own gate, or a table after a requantization of a table. Evaluating
//! the chain's integer instructions on every value `x` can take (the same arithmetic as
//! `clear`, so the result is bit-exact) gives one table: EfficientNet-B0's SiLUs each drop a
//! product and a requantization (7 rounds under `rep3`).
//!
//! Chains are folded from the last node up: at the latest node whose chain qualifies.
//! Only chains that hold a lookup of a table at least as long as the new one are folded,
//! and only when nothing outside the chain reads its inner values: the new lookup then
//! replaces at least one lookup and more, so no protocol pays more rounds or bytes.

use crate::ir::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use petgraph::Direction;
use qmpc_bytecode::operand::{Dst, Index, Int, Reg};
use qmpc_bytecode::{ConstTensor, Instr, Visibility};
use qmpc_semantics::{ring, Requant};
use std::collections::{HashMap, HashSet};

/// The longest table a fold may write (int8 and uint8 registers, or either minus its zero
/// point, span 256 values).
const MAX_TABLE: i64 = 256;

/// Fold every chain that qualifies (see the module doc).
pub fn fold_table(g: &mut Graph) {
    let Ok(order) = petgraph::algo::toposort(&g.g, None) else {
        return;
    };
    // The register every node is a function of, where it is one element-wise function of one.
    let rank: HashMap<NodeIndex, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut source: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    for &n in &order {
        if let Some(s) = chain_source(g, n, &source) {
            source.insert(n, s);
        }
    }
    let mut folded = false;
    // From the last node up, so a chain folds at the latest node that qualifies (its end,
    // or the node that all of its uses read where the end's chain is read elsewhere too).
    for &n in order.iter().rev() {
        if let Some(&s) = source.get(&n) {
            if g.g.contains_node(n) {
                folded |= fold(g, n, s, &rank);
            }
        }
    }
    if folded {
        drop_unused_tables(g);
    }
}

/// Remove the tables no lookup reads any more (the folded chains'), renumbering the rest.
fn drop_unused_tables(g: &mut Graph) {
    let mut used = vec![false; g.tables.len()];
    for n in g.g.node_indices() {
        if let Op::Compute(Instr::Lookup { table, .. }) = &g.g[n].op {
            if let Some(u) = used.get_mut(table.0 as usize) {
                *u = true;
            }
        }
    }
    let mut renumber = vec![0u32; used.len()];
    let mut kept = 0u32;
    for (i, &u) in used.iter().enumerate() {
        renumber[i] = kept;
        kept += u32::from(u);
    }
    let tables = std::mem::take(&mut g.tables);
    g.tables = tables
        .into_iter()
        .zip(&used)
        .filter_map(|(t, &u)| u.then_some(t))
        .collect();
    let nodes: Vec<NodeIndex> = g.g.node_indices().collect();
    for n in nodes {
        if let Op::Compute(Instr::Lookup { table, .. }) = &mut g.g[n].op {
            table.0 = renumber[table.0 as usize];
        }
    }
}

/// The scalar constant `n` holds, if it is one.
fn scalar(g: &Graph, n: NodeIndex) -> Option<i64> {
    match g.const_data(n) {
        Some([v]) => Some(*v),
        _ => None,
    }
}

/// Whether `instr` is element-wise in its register operands with every parameter operand
/// (`num`, `den`, `zp`) scalar.
fn element_wise(instr: &Instr) -> bool {
    matches!(
        instr,
        Instr::Add { .. }
            | Instr::Sub { .. }
            | Instr::Mul { .. }
            | Instr::Rescale { .. }
            | Instr::Clamp { .. }
            | Instr::Max { .. }
            | Instr::Lookup { .. }
            | Instr::Requant { .. }
            | Instr::Cast { .. }
    )
}

/// The one register `n` is an element-wise function of, if any: every operand is a scalar
/// constant, that register (with a range of at most [`MAX_TABLE`] values) or a function of it.
fn chain_source(
    g: &Graph,
    n: NodeIndex,
    source: &HashMap<NodeIndex, NodeIndex>,
) -> Option<NodeIndex> {
    let Op::Compute(instr) = &g.g[n].op else {
        return None;
    };
    if !element_wise(instr) || g.decl(n).vis != Visibility::Secret {
        return None;
    }
    let mut found: Option<NodeIndex> = None;
    for o in g.operands(n) {
        if scalar(g, o).is_some() {
            continue;
        }
        let s = match source.get(&o) {
            Some(&s) => s,
            None => {
                let d = g.decl(o);
                if matches!(g.g[o].op, Op::Const { .. })
                    || d.hi as i128 - d.lo as i128 + 1 > MAX_TABLE as i128
                {
                    return None;
                }
                o
            }
        };
        if found.is_some_and(|f| f != s) {
            return None;
        }
        found = Some(s);
    }
    let s = found?;
    // No broadcast: every value of the chain sits where its source's value does.
    (g.dims(n) == g.dims(s) && g.decl(n).ty.batched == g.decl(s).ty.batched).then_some(s)
}

/// Replace `end` by one lookup of `src` when the chain qualifies.
fn fold(g: &mut Graph, end: NodeIndex, src: NodeIndex, rank: &HashMap<NodeIndex, usize>) -> bool {
    // The chain: `end` and the nodes it reads up to `src`, in topological order.
    let mut chain: Vec<NodeIndex> = Vec::new();
    let mut seen: HashSet<NodeIndex> = HashSet::new();
    let mut stack = vec![end];
    while let Some(n) = stack.pop() {
        if n == src || scalar(g, n).is_some() || !seen.insert(n) {
            continue;
        }
        chain.push(n);
        stack.extend(g.operands(n));
    }
    // Readers before what they read (`end` first).
    chain.sort_by_key(|n| std::cmp::Reverse(rank.get(n).copied().unwrap_or(usize::MAX)));
    let inner: HashSet<NodeIndex> = chain.iter().copied().collect();
    // Nothing outside the chain may read its inner values (they would stay computed).
    let closed = chain.iter().filter(|&&n| n != end).all(|&n| {
        g.g.neighbors_directed(n, Direction::Outgoing)
            .all(|r| inner.contains(&r))
    });
    let longest_lookup = chain
        .iter()
        .filter_map(|&n| match &g.g[n].op {
            Op::Compute(Instr::Lookup { table, .. }) => {
                g.tables.get(table.0 as usize).map(|t| t.data.len() as i64)
            }
            _ => None,
        })
        .max();
    let (lo, hi) = (g.decl(src).lo, g.decl(src).hi);
    let len = hi - lo + 1;
    if !closed || chain.len() < 2 || longest_lookup.is_none_or(|l| l < len) {
        return false;
    }
    let Some(table) = evaluate(g, &chain, src, lo, hi) else {
        return false;
    };
    let decl = g.decl(end).clone();
    if table.iter().any(|&v| v < decl.lo || v > decl.hi) {
        return false;
    }
    let t = g.add_table(ConstTensor {
        dtype: decl.ty.dtype,
        dims: vec![table.len()],
        data: table,
    });
    let origin = g.g[end].origin.clone();
    let lookup = Instr::Lookup {
        dst: Dst(0),
        x: Reg(0),
        table: Index(t),
        offset: Int(lo),
    };
    let Ok(folded) = g.add_compute(lookup, &[src], None, Some(decl.ty.dtype), &origin) else {
        return false;
    };
    g.move_readers(end, folded);
    for n in chain {
        g.g.remove_node(n);
    }
    true
}

/// The chain's values for every `src` in `lo..=hi`, instruction by instruction as `clear`
/// computes them; `None` where an instruction is out of its domain.
fn evaluate(g: &Graph, chain: &[NodeIndex], src: NodeIndex, lo: i64, hi: i64) -> Option<Vec<i64>> {
    let xs: Vec<i64> = (lo..=hi).collect();
    let mut values: HashMap<NodeIndex, Vec<i64>> = HashMap::new();
    values.insert(src, xs);
    // `chain` lists readers before what they read.
    for &n in chain.iter().rev() {
        let Op::Compute(instr) = &g.g[n].op else {
            return None;
        };
        let ops = g.operands(n);
        let arg = |k: usize| -> Option<Vec<i64>> {
            let o = *ops.get(k)?;
            match scalar(g, o) {
                Some(v) => Some(vec![v; (hi - lo + 1) as usize]),
                None => values.get(&o).cloned(),
            }
        };
        let par = |k: usize| ops.get(k).and_then(|&o| scalar(g, o));
        let zip = |f: &dyn Fn(i64, i64) -> Option<i64>| -> Option<Vec<i64>> {
            let (a, b) = (arg(0)?, arg(1)?);
            a.iter().zip(&b).map(|(&a, &b)| f(a, b)).collect()
        };
        let v: Vec<i64> = match instr {
            Instr::Add { .. } => zip(&|a, b| a.checked_add(b))?,
            Instr::Sub { .. } => zip(&|a, b| a.checked_sub(b))?,
            Instr::Mul { .. } => zip(&|a, b| a.checked_mul(b))?,
            Instr::Max { .. } => zip(&|a, b| Some(a.max(b)))?,
            Instr::Cast { .. } => arg(0)?,
            Instr::Clamp { lo: l, hi: h, .. } => {
                arg(0)?.iter().map(|&x| x.clamp(l.0, h.0)).collect()
            }
            Instr::Rescale { .. } => {
                let (num, den) = (par(1)?, par(2)?);
                if den <= 0 {
                    return None;
                }
                arg(0)?
                    .iter()
                    .map(|&x| ring::rescale(x, num, den))
                    .collect()
            }
            Instr::Requant { lo: l, hi: h, .. } => {
                let q = Requant {
                    num: vec![par(1)?],
                    den: vec![par(2)?],
                    zp: vec![par(3)?],
                    lo: l.0,
                    hi: h.0,
                };
                if q.den[0] <= 0 {
                    return None;
                }
                arg(0)?.iter().map(|&x| q.apply(0, x)).collect()
            }
            Instr::Lookup { table, offset, .. } => {
                let t = g.tables.get(table.0 as usize)?;
                arg(0)?
                    .iter()
                    .map(|&x| {
                        let i = usize::try_from(x.checked_sub(offset.0)?).ok()?;
                        t.data.get(i).copied()
                    })
                    .collect::<Option<Vec<i64>>>()?
            }
            _ => return None,
        };
        // Every value within the register's declared bounds, as the verifier promises.
        let d = g.decl(n);
        if v.iter().any(|&x| x < d.lo || x > d.hi) {
            return None;
        }
        values.insert(n, v);
    }
    values.remove(chain.first()?)
}

#[cfg(test)]
mod tests {
    use super::fold_table;
    use crate::ir::{Graph, Op};
    use petgraph::stable_graph::NodeIndex;
    use qmpc_bytecode::operand::{Dst, Index, Int, Reg};
    use qmpc_bytecode::TensorType;
    use qmpc_bytecode::{ConstTensor, DType, ExternalType, InputDecl, Instr, OutputDecl, PostOp};
    use qmpc_semantics::Requant;

    fn scalar(g: &mut Graph, dtype: DType, v: i64) -> NodeIndex {
        g.add_const(
            ConstTensor {
                dtype,
                dims: vec![1],
                data: vec![v],
            },
            "c",
        )
    }

    fn compute(g: &mut Graph, instr: Instr, ops: &[NodeIndex], dtype: Option<DType>) -> NodeIndex {
        g.add_compute(instr, ops, None, dtype, "n")
            .expect("valid node")
    }

    fn sub(g: &mut Graph, a: NodeIndex, b: NodeIndex) -> NodeIndex {
        compute(
            g,
            Instr::Sub {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[a, b],
            None,
        )
    }

    /// A quantized SiLU on an int8 input `x`: `t = table[x − zx]`, `y = requant((x − zx)·(t −
    /// zt))`, and the reference value of `y` for each `x`.
    struct Silu {
        g: Graph,
        x: NodeIndex,
        y: NodeIndex,
        reference: Vec<i64>,
    }

    const ZX: i64 = 3;
    const ZT: i64 = -100;
    const Q: (i64, i64, i64) = (5, 96, -7);

    fn table(i: i64) -> i64 {
        // monotone like a sigmoid's, in int8
        (i / 3).clamp(-128, 127)
    }

    fn silu() -> Silu {
        let mut g = Graph::default();
        let x = input(&mut g, "x");
        let zx = scalar(&mut g, DType::I8, ZX);
        let d = sub(&mut g, x, zx);
        let t = g.add_table(ConstTensor {
            dtype: DType::I8,
            dims: vec![256],
            data: (-131..125).map(table).collect(),
        });
        let look = Instr::Lookup {
            dst: Dst(0),
            x: Reg(0),
            table: Index(t),
            offset: Int(-131),
        };
        let s = compute(&mut g, look, &[d], Some(DType::I8));
        let zt = scalar(&mut g, DType::I8, ZT);
        let sd = sub(&mut g, s, zt);
        let m = compute(
            &mut g,
            Instr::Mul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[d, sd],
            None,
        );
        let (num, den, zp) = (
            scalar(&mut g, DType::I32, Q.0),
            scalar(&mut g, DType::I32, Q.1),
            scalar(&mut g, DType::I8, Q.2),
        );
        let rq = Instr::Requant {
            dst: Dst(0),
            x: Reg(0),
            num: Reg(1),
            den: Reg(2),
            zp: Reg(3),
            lo: Int(-128),
            hi: Int(127),
        };
        let y = compute(&mut g, rq, &[m, num, den, zp], Some(DType::I8));
        let q = Requant {
            num: vec![Q.0],
            den: vec![Q.1],
            zp: vec![Q.2],
            lo: -128,
            hi: 127,
        };
        let reference = (-128..=127)
            .map(|x| q.apply(0, (x - ZX) * (table(x - ZX) - ZT)))
            .collect();
        Silu { g, x, y, reference }
    }

    /// A secret int8 input of shape `[N, 4]` (batch 2).
    fn input(g: &mut Graph, name: &str) -> NodeIndex {
        let decl = InputDecl {
            name: name.into(),
            external: ExternalType::I8,
            quant: None,
            ty: TensorType {
                dtype: DType::I8,
                dims: vec![2, 4],
                batched: true,
            },
        };
        g.add_input(decl, name)
    }

    fn output(g: &mut Graph, x: NodeIndex, name: &str) -> NodeIndex {
        let decl = OutputDecl {
            name: name.into(),
            external: ExternalType::I8,
            dequant: None,
            post: PostOp::None,
        };
        g.add_output(decl, x, name)
    }

    fn lookups(g: &Graph) -> Vec<NodeIndex> {
        g.g.node_indices()
            .filter(|&n| matches!(g.g[n].op, Op::Compute(Instr::Lookup { .. })))
            .collect()
    }

    fn computes(g: &Graph) -> usize {
        g.g.node_indices()
            .filter(|&n| matches!(g.g[n].op, Op::Compute(_)))
            .count()
    }

    /// The table of the one lookup reading `x`.
    fn folded_table(g: &Graph, x: NodeIndex) -> Vec<i64> {
        let l = lookups(g);
        assert_eq!(l.len(), 1, "one lookup left");
        assert_eq!(g.operands(l[0]), vec![x]);
        let Op::Compute(Instr::Lookup { table, offset, .. }) = &g.g[l[0]].op else {
            unreachable!()
        };
        assert_eq!(offset.0, -128);
        g.tables[table.0 as usize].data.clone()
    }

    #[test]
    fn a_silu_becomes_one_lookup_of_its_input() {
        let Silu {
            mut g,
            x,
            y,
            reference,
        } = silu();
        let out = output(&mut g, y, "y");
        fold_table(&mut g);
        assert_eq!(
            computes(&g),
            1,
            "sub, lookup, sub, mul and requant fold into one lookup"
        );
        assert_eq!(folded_table(&g, x), reference);
        assert_eq!(g.operands(out), lookups(&g));
        assert_eq!(g.tables.len(), 1, "the sigmoid's table is dropped");
    }

    #[test]
    fn a_result_read_twice_folds_where_both_readers_read() {
        // QOperator files subtract each reader's zero point from the requantized SiLU.
        let Silu {
            mut g,
            x,
            y,
            reference,
        } = silu();
        let (z1, z2) = (scalar(&mut g, DType::I8, 1), scalar(&mut g, DType::I8, -2));
        let (r1, r2) = (sub(&mut g, y, z1), sub(&mut g, y, z2));
        output(&mut g, r1, "r1");
        output(&mut g, r2, "r2");
        fold_table(&mut g);
        // The subs of the two readers stay; the lookup replaces the requantization.
        assert_eq!(folded_table(&g, x), reference);
        assert_eq!(computes(&g), 3);
    }

    #[test]
    fn a_product_of_two_registers_is_not_folded() {
        let Silu { mut g, y, .. } = silu();
        let other = input(&mut g, "w");
        let p = compute(
            &mut g,
            Instr::Mul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[y, other],
            None,
        );
        output(&mut g, p, "p");
        fold_table(&mut g);
        // The SiLU folds; the product with the other input stays.
        assert_eq!(computes(&g), 2);
    }

    #[test]
    fn an_inner_value_read_elsewhere_keeps_the_chain() {
        let Silu { mut g, y, .. } = silu();
        let look = lookups(&g)[0];
        output(&mut g, y, "y");
        output(&mut g, look, "t");
        let before = computes(&g);
        fold_table(&mut g);
        // Folding would keep the sigmoid's lookup and add one: not done.
        assert_eq!(computes(&g), before);
    }
}
