//! Ops that only move elements (`Reshape`, `Transpose`, `Pad`, `Concat`, …), applied alike
//! to compile-time constants, integer nodes and the integers of real values.

use super::sym::{IntVal, Real, Sym};
use super::{Importer, R};
use crate::onnx::{TensorData, Values};
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Int, Ints, Reg, Regs};
use qmpc_bytecode::tensor::{self, Tensor};
use qmpc_bytecode::Instr;

/// A layout change, described once and applied to every kind of tensor.
#[derive(Clone, Debug)]
pub enum Layout {
    /// To these dimensions (same element count, same order).
    Reshape(Vec<usize>),
    Transpose(Vec<usize>),
    /// Begins of every axis then ends; the pad value is in the tensor's integer domain.
    Pad(Vec<usize>, i64),
    /// Element `i` along each axis is element `starts + i·steps`, into these dimensions.
    Slice {
        starts: Vec<usize>,
        steps: Vec<usize>,
        dims: Vec<usize>,
    },
}

impl Layout {
    pub fn dims(&self, d: &[usize]) -> Vec<usize> {
        match self {
            Layout::Reshape(n) => n.clone(),
            Layout::Transpose(p) => p.iter().map(|&i| d[i]).collect(),
            Layout::Pad(p, _) => (0..d.len()).map(|i| d[i] + p[i] + p[i + d.len()]).collect(),
            Layout::Slice { dims, .. } => dims.clone(),
        }
    }

    fn apply_values(&self, t: &TensorData) -> R<TensorData> {
        let values = match (&t.values, self) {
            (v, Layout::Reshape(_)) => v.clone(),
            (Values::Int(v), Layout::Transpose(p)) => {
                Values::Int(tensor::transpose(&Tensor::new(t.dims.clone(), v.clone()), p).data)
            }
            (Values::Float(v), Layout::Transpose(p)) => {
                Values::Float(tensor::transpose(&Tensor::new(t.dims.clone(), v.clone()), p).data)
            }
            (Values::Int(v), Layout::Pad(p, x)) => {
                Values::Int(tensor::pad(&Tensor::new(t.dims.clone(), v.clone()), p, *x).data)
            }
            (Values::Float(v), Layout::Pad(p, x)) => Values::Float(
                tensor::pad(&Tensor::new(t.dims.clone(), v.clone()), p, *x as f32).data,
            ),
            (
                Values::Int(v),
                Layout::Slice {
                    starts,
                    steps,
                    dims,
                },
            ) => Values::Int(
                tensor::slice(&Tensor::new(t.dims.clone(), v.clone()), starts, steps, dims).data,
            ),
            (
                Values::Float(v),
                Layout::Slice {
                    starts,
                    steps,
                    dims,
                },
            ) => Values::Float(
                tensor::slice(&Tensor::new(t.dims.clone(), v.clone()), starts, steps, dims).data,
            ),
        };
        Ok(TensorData {
            dtype: t.dtype,
            dims: self.dims(&t.dims),
            values,
        })
    }

    fn apply_node(&self, imp: &mut Importer, n: NodeIndex) -> R<NodeIndex> {
        let dims = self.dims(imp.g.dims(n));
        let dtype = Some(imp.g.decl(n).ty.dtype);
        let instr = match self {
            Layout::Reshape(_) => Instr::Reshape {
                dst: Dst(0),
                x: Reg(0),
            },
            Layout::Transpose(p) => Instr::Transpose {
                dst: Dst(0),
                x: Reg(0),
                perm: Ints(p.iter().map(|&v| v as i64).collect()),
            },
            Layout::Pad(p, v) => Instr::Pad {
                dst: Dst(0),
                x: Reg(0),
                pads: Ints(p.iter().map(|&v| v as i64).collect()),
                value: Int(*v),
            },
            Layout::Slice { starts, steps, .. } => Instr::Slice {
                dst: Dst(0),
                x: Reg(0),
                starts: Ints(starts.iter().map(|&v| v as i64).collect()),
                steps: Ints(steps.iter().map(|&v| v as i64).collect()),
            },
        };
        let d = imp.g.decl(n).clone();
        let fits = match self {
            Layout::Pad(_, v) => d.ty.dtype.range().0 <= *v && *v <= d.ty.dtype.range().1,
            _ => true,
        };
        imp.compute_to(instr, &[n], &dims, if fits { dtype } else { None })
    }

    /// Where per-channel `axis` goes, or None if the layout mixes it with other axes.
    fn axis(&self, axis: usize, from: &[usize]) -> Option<usize> {
        match self {
            Layout::Transpose(p) => p.iter().position(|&i| i == axis),
            Layout::Pad(..) | Layout::Slice { .. } => Some(axis),
            Layout::Reshape(to) => {
                // Kept only if the axis keeps its size and everything before it is unchanged.
                let before: usize = from[..axis].iter().product();
                let mut acc = 1;
                for (i, &d) in to.iter().enumerate() {
                    if acc == before && d == from[axis] {
                        return Some(i);
                    }
                    acc *= d;
                }
                None
            }
        }
    }
}

impl Importer<'_> {
    /// Apply a layout change to any tensor.
    pub fn layout(&mut self, s: &Sym, l: &Layout) -> R<Sym> {
        Ok(match s {
            Sym::Const(t) => Sym::Const(l.apply_values(t)?),
            Sym::Int { node, onnx } => Sym::Int {
                node: l.apply_node(self, *node)?,
                onnx: *onnx,
            },
            Sym::Real(r) => {
                if let Layout::Pad(_, v) = l {
                    if *v != 0 {
                        return Err(
                            "padding a real tensor with a non-zero value is not supported".into(),
                        );
                    }
                }
                let from = self.sym_dims(s)?;
                let mut out = r.clone();
                out.raw = None;
                out.v = match &r.v {
                    IntVal::Node(n) => IntVal::Node(l.apply_node(self, *n)?),
                    IntVal::Const { data, name, lo, hi } => IntVal::Const {
                        data: l.apply_values(data)?,
                        name: name.clone(),
                        lo: *lo,
                        hi: *hi,
                    },
                };
                if !r.scale.is_scalar() {
                    out.scale.axis = l
                        .axis(r.scale.axis, &from)
                        .ok_or("this reshape mixes the axis of per-channel scales")?;
                    if let Layout::Slice {
                        starts,
                        steps,
                        dims,
                    } = l
                    {
                        // The scales of the channels kept, in their new order.
                        let a = r.scale.axis;
                        let pick = |i: usize| starts[a] + i * steps[a];
                        out.scale.r = (0..dims[a]).map(|i| r.scale.r[pick(i)]).collect();
                        if let Some(h) = &r.scale.hint {
                            out.scale.hint = Some((0..dims[a]).map(|i| h[pick(i)]).collect());
                        }
                    }
                }
                if let Some(d) = &r.divisor {
                    if d.numel() > 1 {
                        return Err(
                            "an averaged tensor must be quantized before it is reshaped".into()
                        );
                    }
                }
                Sym::Real(out)
            }
            Sym::FloatInput { .. }
            | Sym::Softmax { .. }
            | Sym::BlockedReal { .. }
            | Sym::DynScale { .. }
            | Sym::LayerNorm(_) => return Err(
                "layout ops on an unquantized or block-dequantized float tensor are not supported"
                    .into(),
            ),
        })
    }

    /// Static dimensions of any tensor (the batch axis at its exported size).
    pub fn sym_dims(&self, s: &Sym) -> R<Vec<usize>> {
        Ok(match s {
            Sym::Const(t) => t.dims.clone(),
            Sym::Int { node, .. } | Sym::BlockedReal { node, .. } => self.g.dims(*node).to_vec(),
            Sym::Real(r) | Sym::Softmax { real: r, .. } => match &r.v {
                IntVal::Node(n) => self.g.dims(*n).to_vec(),
                IntVal::Const { data, .. } => data.dims.clone(),
            },
            Sym::FloatInput { dims, .. } => dims.clone(),
            Sym::DynScale { .. } => vec![],
            Sym::LayerNorm(ln) => match &ln.real.v {
                IntVal::Node(n) => self.g.dims(*n).to_vec(),
                IntVal::Const { data, .. } => data.dims.clone(),
            },
        })
    }

    /// `Concat` of integer nodes or of reals sharing one scale.
    pub fn concat(&mut self, xs: &[Sym], axis: usize) -> R<Sym> {
        let consts: Vec<&TensorData> = xs
            .iter()
            .filter_map(|s| if let Sym::Const(t) = s { Some(t) } else { None })
            .collect();
        if consts.len() == xs.len() {
            return concat_const(&consts, axis).map(Sym::Const);
        }
        let mut nodes = Vec::new();
        let mut onnx_t = None;
        let mut real: Option<Real> = None;
        let reals: Vec<&Real> = xs
            .iter()
            .filter_map(|s| if let Sym::Real(r) = s { Some(r) } else { None })
            .collect();
        // Reals with different scales meet on their exact common scale, as in Add.
        let common =
            if reals.len() == xs.len() && reals.iter().any(|r| r.scale.r != reals[0].scale.r) {
                let scales = reals
                    .iter()
                    .map(|r| {
                        if r.scale.is_scalar() {
                            Ok(r.scale.get(0))
                        } else {
                            Err("Concat of per-channel quantized tensors")
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(super::real::common_scale(&scales)?)
            } else {
                None
            };
        for (i, s) in xs.iter().enumerate() {
            match s {
                Sym::Int { node, onnx } => {
                    nodes.push(*node);
                    onnx_t = Some(*onnx);
                }
                Sym::Real(r) => {
                    super::real::plain(r)?;
                    if real.is_none() {
                        real = Some(r.clone());
                    }
                    let v = self.int_node(&r.v)?;
                    nodes.push(match &common {
                        Some((_, ks)) => self.times(v, ks[i])?,
                        None => v,
                    });
                }
                _ => {
                    return Err("Concat of constants with computed tensors is not supported".into())
                }
            }
        }
        if let (Some((g, _)), Some(r)) = (&common, &mut real) {
            r.scale = super::sym::Scale::scalar(*g);
        }
        if real.is_some() && onnx_t.is_some() {
            return Err("Concat mixes integer and real tensors".into());
        }
        let regs: Vec<u32> = (0..nodes.len() as u32).collect();
        let n = self.compute(
            Instr::Concat {
                dst: Dst(0),
                xs: Regs(regs),
                axis: Int(axis as i64),
            },
            &nodes,
        )?;
        Ok(match (real, onnx_t) {
            (Some(r), _) => Sym::Real(Real::plain(IntVal::Node(n), r.scale)),
            (None, Some(o)) => Sym::Int { node: n, onnx: o },
            _ => return Err("empty Concat".into()),
        })
    }
}

pub fn concat_const(ts: &[&TensorData], axis: usize) -> R<TensorData> {
    let first = ts.first().ok_or("empty Concat")?;
    let dims: Vec<&[usize]> = ts.iter().map(|t| t.dims.as_slice()).collect();
    let out = qmpc_bytecode::shapes::concat(&dims, axis as i64)?;
    let values = if first.is_float() {
        let parts: Vec<Tensor<f32>> = ts
            .iter()
            .map(|t| {
                t.floats()
                    .map(|v| Tensor::new(t.dims.clone(), v.to_vec()))
                    .ok_or("Concat mixes types")
            })
            .collect::<Result<_, _>>()?;
        Values::Float(tensor::concat(&parts.iter().collect::<Vec<_>>(), axis).data)
    } else {
        let parts: Vec<Tensor<i64>> = ts
            .iter()
            .map(|t| {
                t.ints()
                    .map(|v| Tensor::new(t.dims.clone(), v.to_vec()))
                    .ok_or("Concat mixes types")
            })
            .collect::<Result<_, _>>()?;
        Values::Int(tensor::concat(&parts.iter().collect::<Vec<_>>(), axis).data)
    };
    Ok(TensorData {
        dtype: first.dtype,
        dims: out,
        values,
    })
}
