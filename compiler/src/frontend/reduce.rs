//! Reductions over non-batch axes (`ReduceMean`, `ReduceSum`, `ReduceMax`, `ReduceMin`):
//! the reduced axes are moved last and merged, the kept ones merged into channels, and one
//! window op over `[N, A, 1, K]` reduces them (`sumpool` for sums and means, with the count
//! as the real's divisor, `maxpool` for maxima). Local for sums; a comparison tree for maxima.

use super::layout::Layout;
use super::ops::{arg, check_attrs, ints_of, norm_axis, one, opt_konst, real_of};
use super::real::plain;
use super::sym::{IntVal, Real, Sym};
use super::{attrs, Importer, R};
use crate::onnx::proto::{data_type, NodeProto};
use crate::onnx::{TensorData, Values};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Ints, Reg};
use qmpc_bytecode::Instr;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
}

macro_rules! reductions {
    ($($name:ident => $kind:expr;)*) => {
        $(pub(super) fn $name(
            imp: &mut Importer,
            node: &NodeProto,
            opset: i64,
            inputs: &[Option<Sym>],
        ) -> R<Vec<Sym>> {
            reduce(imp, node, opset, inputs, $kind)
        })*
    };
}

reductions! {
    reduce_mean => Kind::Mean;
    reduce_sum => Kind::Sum;
    reduce_max => Kind::Max;
    reduce_min => Kind::Min;
}

fn reduce(
    imp: &mut Importer,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Sym>],
    kind: Kind,
) -> R<Vec<Sym>> {
    // `axes` became an input in opset 13 for ReduceSum and 18 for the others.
    let axes_input = opset >= if kind == Kind::Sum { 13 } else { 18 };
    let a = attrs(node);
    let given = if axes_input {
        check_attrs(node, &["keepdims", "noop_with_empty_axes"])?;
        opt_konst(inputs, 1, "axes")?
            .map(|t| ints_of(t, "axes"))
            .transpose()?
    } else {
        check_attrs(node, &["keepdims", "axes"])?;
        a.ints("axes")?
    };
    let x = arg(inputs, 0, "data")?;
    let dims = imp.sym_dims(x)?;
    let rank = dims.len();
    let keepdims = a.int("keepdims", 1)? == 1;
    let axes: Vec<usize> = match given.filter(|v| !v.is_empty()) {
        Some(v) => {
            let mut v = v
                .iter()
                .map(|&x| norm_axis(x, rank))
                .collect::<R<Vec<_>>>()?;
            v.sort_unstable();
            v.dedup();
            v
        }
        None if axes_input && a.int("noop_with_empty_axes", 0)? == 1 => {
            return one(x.clone());
        }
        None => (0..rank).collect(),
    };
    let mut out: Vec<usize> = dims.clone();
    for &ax in &axes {
        out[ax] = 1;
    }
    let squeezed: Vec<usize> = (0..rank)
        .filter(|i| !axes.contains(i))
        .map(|i| dims[i])
        .collect();
    let y = match x {
        Sym::Int { node: v, onnx } if matches!(kind, Kind::Max | Kind::Min) => {
            let n = imp.reduce_node(*v, &axes, kind)?;
            Sym::Int {
                node: n,
                onnx: *onnx,
            }
        }
        s => {
            let r = real_of(imp, s)?;
            plain(&r)?;
            if !r.scale.is_scalar() {
                return Err(
                    "a reduction of a per-channel quantized tensor is not supported".into(),
                );
            }
            let v = imp.int_node(&r.v)?;
            let n = imp.reduce_node(v, &axes, kind)?;
            let count: usize = axes.iter().map(|&i| dims[i]).product();
            let divisor = (kind == Kind::Mean && count > 1).then(|| TensorData {
                dtype: data_type::INT64,
                dims: vec![1],
                values: Values::Int(vec![count as i64]),
            });
            Sym::Real(Real {
                divisor,
                ..Real::plain(IntVal::Node(n), r.scale)
            })
        }
    };
    if keepdims || squeezed == out {
        return one(y);
    }
    let target = if squeezed.is_empty() {
        vec![1]
    } else {
        squeezed
    };
    one(imp.layout(&y, &Layout::Reshape(target))?)
}

impl Importer<'_> {
    /// The maximum (or the sum) of `v` along `axis`, kept as an axis of one.
    pub(super) fn reduce_axis(&mut self, v: NodeIndex, axis: usize, max: bool) -> R<NodeIndex> {
        let kind = if max { Kind::Max } else { Kind::Sum };
        self.reduce_node(v, &[axis], kind)
    }

    /// Reduce `v` over `axes` (sorted, distinct), keeping them as axes of one.
    fn reduce_node(&mut self, v: NodeIndex, axes: &[usize], kind: Kind) -> R<NodeIndex> {
        let decl = self.g.decl(v).clone();
        let dims = decl.ty.dims.clone();
        let rank = dims.len();
        if decl.ty.batched && axes.contains(&0) {
            return Err("a reduction over the batch axis is not supported".into());
        }
        let mut out = dims.clone();
        for &a in axes {
            out[a] = 1;
        }
        if out == dims {
            return Ok(v);
        }
        // Kept axes first (the batch axis stays in front), then the reduced ones.
        let kept: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).collect();
        let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
        let mut x = v;
        if perm.iter().enumerate().any(|(i, &p)| i != p) {
            x = self.compute(
                Instr::Transpose {
                    dst: Dst(0),
                    x: Reg(0),
                    perm: Ints(perm.iter().map(|&p| p as i64).collect()),
                },
                &[x],
            )?;
        }
        let k: usize = axes.iter().map(|&a| dims[a]).product();
        let (lead, chans) = match kept.first() {
            Some(0) => (dims[0], kept[1..].iter().map(|&a| dims[a]).product()),
            _ => (1, kept.iter().map(|&a| dims[a]).product()),
        };
        x = self.reshape_to(x, &[lead, chans, 1, k], Some(decl.ty.dtype))?;
        let window = |kernel: Vec<i64>| (Ints(kernel), Ints(vec![1, 1]), Ints(vec![0; 4]));
        let (kernel, strides, pads) = window(vec![1, k as i64]);
        let dilations = Ints(vec![1, 1]);
        x = match kind {
            Kind::Sum | Kind::Mean => self.compute(
                Instr::SumPool {
                    dst: Dst(0),
                    x: Reg(0),
                    kernel,
                    strides,
                    pads,
                    dilations,
                },
                &[x],
            )?,
            Kind::Max | Kind::Min => {
                let neg = |imp: &mut Importer, n: NodeIndex| imp.times(n, -1);
                if kind == Kind::Min {
                    x = neg(self, x)?;
                }
                let instr = Instr::MaxPool {
                    dst: Dst(0),
                    x: Reg(0),
                    kernel,
                    strides,
                    pads,
                    dilations,
                };
                x = self.compute(instr, &[x])?;
                if kind == Kind::Min {
                    x = neg(self, x)?;
                }
                x
            }
        };
        let dt = matches!(kind, Kind::Max | Kind::Min).then_some(decl.ty.dtype);
        self.reshape_to(x, &out, dt)
    }
}
