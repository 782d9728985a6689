//! Ops that pick elements at public positions, on every kind of tensor (constants, integer
//! nodes, reals with per-channel scales): `Slice` and `Split` through [`Layout::Slice`];
//! `Gather` with constant indices and nearest-neighbour `Resize` as index lists along
//! axes, run as slices of consecutive runs (concatenated) or, for a repetition of every
//! element `k` times (integer upsampling), as one broadcast.

use super::layout::Layout;
use super::ops::{arg, check_attrs, ints_of, konst, norm_axis, one, opt_konst};
use super::sym::{IntVal, Real, Sym};
use super::{attrs, Importer, R};
use crate::onnx::proto::NodeProto;
use crate::onnx::{TensorData, Values};

/// Start and length along one axis of size `d` for ONNX `Slice`'s `start`, `end`, `step`
/// (negative values count from the end; out-of-range values clamp).
fn axis_range(d: usize, start: i64, end: i64, step: i64) -> R<(usize, usize)> {
    if step <= 0 {
        return Err(format!(
            "step {step}: only positive Slice steps are supported (a negative step reverses)"
        ));
    }
    let d = d as i128;
    let norm = |v: i64| {
        let v = v as i128;
        (if v < 0 { v + d } else { v }).clamp(0, d)
    };
    let (s, e) = (norm(start), norm(end));
    let len = if e > s {
        (e - s + step as i128 - 1) / step as i128
    } else {
        0
    };
    Ok((s as usize, len as usize))
}

/// ONNX `Slice` (opset 1 with attributes, 10+ with inputs).
pub(super) fn slice(
    imp: &mut Importer,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    let x = arg(inputs, 0, "data")?;
    let dims = imp.sym_dims(x)?;
    let rank = dims.len();
    let (starts, ends, axes, steps) = if opset < 10 {
        check_attrs(node, &["starts", "ends", "axes"])?;
        let a = attrs(node);
        let need = |n: &str| {
            a.ints(n)?
                .ok_or_else(|| format!("attribute `{n}` is required"))
        };
        (need("starts")?, need("ends")?, a.ints("axes")?, None)
    } else {
        check_attrs(node, &[])?;
        let get = |i: usize, what: &str| -> R<Option<Vec<i64>>> {
            opt_konst(inputs, i, what)?
                .map(|t| ints_of(t, what))
                .transpose()
        };
        let need = |i: usize, what: &str| {
            get(i, what)?.ok_or_else(|| format!("input `{what}` is required"))
        };
        (
            need(1, "starts")?,
            need(2, "ends")?,
            get(3, "axes")?,
            get(4, "steps")?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(format!(
            "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
        ));
    }
    let mut first = vec![0; rank];
    let mut step = vec![1; rank];
    let mut out = dims.clone();
    let mut seen = vec![false; rank];
    for k in 0..starts.len() {
        let a = norm_axis(axes[k], rank)?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("axis {a} is sliced twice"));
        }
        let (s, n) = axis_range(dims[a], starts[k], ends[k], steps[k])
            .map_err(|m| format!("axis {a}: {m}"))?;
        if n == 0 {
            return Err(format!(
                "axis {a} of {dims:?} sliced from {} to {} is empty",
                starts[k], ends[k]
            ));
        }
        (first[a], step[a], out[a]) = (s, steps[k] as usize, n);
    }
    one(slice_to(imp, x, first, step, out)?)
}

fn slice_to(
    imp: &mut Importer,
    x: &Sym,
    starts: Vec<usize>,
    steps: Vec<usize>,
    dims: Vec<usize>,
) -> R<Sym> {
    if imp.sym_dims(x)? == dims {
        return Ok(x.clone());
    }
    imp.layout(
        x,
        &Layout::Slice {
            starts,
            steps,
            dims,
        },
    )
}

/// ONNX `Split`: sizes from the `split` input (13+) or attribute, else `num_outputs` (18+)
/// or the number of outputs, equal parts with a shorter last one.
pub(super) fn split(
    imp: &mut Importer,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    let x = arg(inputs, 0, "input")?;
    let dims = imp.sym_dims(x)?;
    let a = attrs(node);
    let given = if opset >= 13 {
        check_attrs(node, &["axis", "num_outputs"])?;
        opt_konst(inputs, 1, "split")?
            .map(|t| ints_of(t, "split"))
            .transpose()?
    } else {
        check_attrs(node, &["axis", "split"])?;
        a.ints("split")?
    };
    let axis = norm_axis(a.int("axis", 0)?, dims.len())?;
    let d = dims[axis];
    let n = node.output.len();
    let sizes: Vec<usize> = match given {
        Some(v) => v
            .iter()
            .map(|&s| usize::try_from(s).map_err(|_| format!("split size {s} is negative")))
            .collect::<R<_>>()?,
        None => {
            let parts = match a.int("num_outputs", 0)? {
                0 => n,
                k => usize::try_from(k).map_err(|_| format!("num_outputs {k}"))?,
            };
            if parts == 0 || parts != n {
                return Err(format!("{parts} parts for {n} outputs"));
            }
            let each = d.div_ceil(parts);
            (0..parts)
                .map(|i| each.min(d.saturating_sub(i * each)))
                .collect()
        }
    };
    if sizes.len() != n || sizes.iter().sum::<usize>() != d || sizes.contains(&0) {
        return Err(format!(
            "split sizes {sizes:?} for {n} outputs do not cover axis {axis} of {dims:?}"
        ));
    }
    let mut at = 0;
    let mut outs = Vec::with_capacity(n);
    for s in sizes {
        let mut starts = vec![0; dims.len()];
        starts[axis] = at;
        let mut out = dims.clone();
        out[axis] = s;
        outs.push(slice_to(imp, x, starts, vec![1; dims.len()], out)?);
        at += s;
    }
    Ok(outs)
}

/// `t` with axis `axis` replaced by the elements at `indices` along it, shaped `idims`.
fn gather_values(t: &TensorData, axis: usize, indices: &[usize], idims: &[usize]) -> TensorData {
    let n = t.dims[axis];
    let outer: usize = t.dims[..axis].iter().product();
    let inner: usize = t.dims[axis + 1..].iter().product();
    let order: Vec<usize> = (0..outer)
        .flat_map(|o| {
            indices
                .iter()
                .flat_map(move |&i| (0..inner).map(move |k| (o * n + i) * inner + k))
        })
        .collect();
    let mut dims = t.dims[..axis].to_vec();
    dims.extend_from_slice(idims);
    dims.extend_from_slice(&t.dims[axis + 1..]);
    let values = match &t.values {
        Values::Int(v) => Values::Int(order.iter().map(|&i| v[i]).collect()),
        Values::Float(v) => Values::Float(order.iter().map(|&i| v[i]).collect()),
    };
    TensorData {
        dtype: t.dtype,
        dims,
        values,
    }
}

/// `k` where `indices` is `0, 0, .., 1, 1, ..` (each of `0..n` repeated `k` times).
fn repeat_factor(indices: &[usize], n: usize) -> Option<usize> {
    let k = indices.len() / n.max(1);
    (k > 1 && indices.len() == n * k && indices.iter().enumerate().all(|(i, &v)| v == i / k))
        .then_some(k)
}

/// Consecutive runs of `indices` as (first, length).
fn runs(indices: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &i in indices {
        match out.last_mut() {
            Some((s, l)) if *s + *l == i => *l += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

impl Importer<'_> {
    /// `x` with axis `axis` replaced by its elements at `indices` (all in range).
    pub(super) fn gather_axis(&mut self, x: &Sym, axis: usize, indices: &[usize]) -> R<Sym> {
        let dims = self.sym_dims(x)?;
        let n = dims[axis];
        if indices.len() == n && indices.iter().enumerate().all(|(i, &v)| i == v) {
            return Ok(x.clone());
        }
        let fold = |t: &TensorData| gather_values(t, axis, indices, &[indices.len()]);
        let node = match x {
            Sym::Const(t) => return Ok(Sym::Const(fold(t))),
            Sym::Real(r) if matches!(r.v, IntVal::Const { .. }) => {
                let mut out = r.clone();
                if let IntVal::Const { data, .. } = &mut out.v {
                    *data = fold(data);
                }
                out.raw = None;
                return Ok(Sym::Real(out));
            }
            Sym::Int { node, .. }
            | Sym::Real(Real {
                v: IntVal::Node(node),
                ..
            }) => *node,
            _ => return Err("picking elements of an unquantized tensor is not supported".into()),
        };
        if axis == 0 && self.g.decl(node).ty.batched {
            return Err("picking elements along the batch axis is not supported".into());
        }
        if let (Some(k), Sym::Int { .. } | Sym::Real(_)) = (repeat_factor(indices, n), x) {
            if let Sym::Real(r) = x {
                if !r.scale.is_scalar() && r.scale.axis == axis {
                    return Err("repeating along the axis of per-channel scales".into());
                }
            }
            return self.repeat_axis(x, node, axis, k);
        }
        let rank = dims.len();
        let parts = runs(indices)
            .into_iter()
            .map(|(first, len)| {
                let mut starts = vec![0; rank];
                starts[axis] = first;
                let mut out = dims.clone();
                out[axis] = len;
                slice_to(self, x, starts, vec![1; rank], out)
            })
            .collect::<R<Vec<_>>>()?;
        match parts.as_slice() {
            [one] => Ok(one.clone()),
            _ => self.concat(&parts, axis),
        }
    }

    /// Every element of `x` along `axis` repeated `k` times: `[.., n, 1, ..] + 0[.., 1, k, ..]`
    /// (a local broadcast), merged to `[.., n·k, ..]`.
    fn repeat_axis(
        &mut self,
        x: &Sym,
        node: petgraph::stable_graph::NodeIndex,
        axis: usize,
        k: usize,
    ) -> R<Sym> {
        let dims = self.g.dims(node).to_vec();
        let mut split = dims.clone();
        split.insert(axis + 1, 1);
        let mut zeros = vec![1; split.len()];
        zeros[axis + 1] = k;
        let dtype = Some(self.g.decl(node).ty.dtype);
        let v = self.reshape_to(node, &split, dtype)?;
        let z = self.konst(zeros, vec![0; k]);
        let wide = self.add_nodes(v, z)?;
        let mut out = dims;
        out[axis] *= k;
        let y = self.reshape_to(wide, &out, dtype)?;
        Ok(match x {
            Sym::Int { onnx, .. } => Sym::Int {
                node: y,
                onnx: *onnx,
            },
            Sym::Real(r) => Sym::Real(Real {
                v: IntVal::Node(y),
                raw: None,
                ..r.clone()
            }),
            _ => return Err("only computed tensors are repeated".into()),
        })
    }
}

/// ONNX `Gather` with constant indices: folded over constants, else the elements picked
/// along the axis (a scalar index drops the axis).
pub(super) fn gather(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["axis"])?;
    let x = arg(inputs, 0, "data")?;
    let it = match arg(inputs, 1, "indices")? {
        Sym::Const(t) => t,
        _ => {
            return Err(
                "indices computed at run time (an embedding lookup of secret positions) are \
                 not supported: Gather needs constant indices"
                    .into(),
            )
        }
    };
    let idx = ints_of(it, "indices")?;
    let dims = imp.sym_dims(x)?;
    let axis = norm_axis(attrs(node).int("axis", 0)?, dims.len())?;
    let n = dims[axis] as i64;
    let indices = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < dims[axis])
                .ok_or_else(|| format!("index {i} out of range for axis {axis} of {dims:?}"))
        })
        .collect::<R<Vec<_>>>()?;
    if let Sym::Const(t) = x {
        return one(Sym::Const(gather_values(t, axis, &indices, &it.dims)));
    }
    let picked = imp.gather_axis(x, axis, &indices)?;
    let mut out = dims[..axis].to_vec();
    out.extend_from_slice(&it.dims);
    out.extend_from_slice(&dims[axis + 1..]);
    if imp.sym_dims(&picked)? == out {
        return one(picked);
    }
    one(imp.layout(&picked, &Layout::Reshape(out))?)
}

/// The input position each output position of one axis reads under nearest-neighbour
/// `Resize` (ONNX's coordinate transformations and rounding modes).
fn nearest_indices(
    len_in: usize,
    len_out: usize,
    scale: f64,
    transform: &str,
    rounding: &str,
) -> R<Vec<usize>> {
    (0..len_out)
        .map(|i| {
            let x = i as f64;
            let orig = match transform {
                "half_pixel" => (x + 0.5) / scale - 0.5,
                "pytorch_half_pixel" if len_out > 1 => (x + 0.5) / scale - 0.5,
                "pytorch_half_pixel" => 0.0,
                "align_corners" if len_out > 1 => {
                    x * (len_in as f64 - 1.0) / (len_out as f64 - 1.0)
                }
                "align_corners" => 0.0,
                "asymmetric" => x / scale,
                "tf_half_pixel_for_nn" => (x + 0.5) / scale,
                t => {
                    return Err(format!(
                        "coordinate_transformation_mode `{t}` is not supported"
                    ))
                }
            };
            let tie = (orig - orig.floor() - 0.5).abs() < 1e-9;
            let r = match rounding {
                "round_prefer_floor" if tie => orig.floor(),
                "round_prefer_ceil" if tie => orig.ceil(),
                "round_prefer_floor" | "round_prefer_ceil" => orig.round(),
                "floor" => orig.floor(),
                "ceil" => orig.ceil(),
                m => return Err(format!("nearest_mode `{m}` is not supported")),
            };
            Ok(r.clamp(0.0, len_in as f64 - 1.0) as usize)
        })
        .collect()
}

/// ONNX `Resize` (and opset 9's `Upsample`) in `nearest` mode: each axis's index list
/// from the scales or sizes, picked with [`Importer::gather_axis`].
pub(super) fn resize(
    imp: &mut Importer,
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(
        node,
        &[
            "mode",
            "coordinate_transformation_mode",
            "nearest_mode",
            "cubic_coeff_a",
            "exclude_outside",
            "extrapolation_value",
            "scales",
        ],
    )?;
    let a = attrs(node);
    let mode = a.string("mode", "nearest")?;
    if mode != "nearest" {
        return Err(format!(
            "mode `{mode}`: only nearest-neighbour Resize is supported"
        ));
    }
    let x = arg(inputs, 0, "X")?;
    let dims = imp.sym_dims(x)?;
    let floats = |t: &TensorData| -> R<Vec<f64>> {
        t.floats()
            .map(|v| v.iter().map(|&f| f as f64).collect())
            .ok_or_else(|| "scales must be float".to_string())
    };
    let nonempty = |t: Option<&TensorData>| t.filter(|t| t.numel() > 0).cloned();
    let (scales, sizes) = if node.op_type == "Upsample" || opset < 11 {
        let s = match a.floats("scales")? {
            Some(v) => v.iter().map(|&f| f as f64).collect(),
            None => floats(konst(inputs, 1, "scales")?)?,
        };
        (Some(s), None)
    } else {
        let s = nonempty(opt_konst(inputs, 2, "scales")?)
            .map(|t| floats(&t))
            .transpose()?;
        let z = nonempty(opt_konst(inputs, 3, "sizes")?)
            .map(|t| ints_of(&t, "sizes"))
            .transpose()?;
        (s, z)
    };
    let transform = if opset < 11 {
        "asymmetric".to_string()
    } else {
        a.string("coordinate_transformation_mode", "half_pixel")?
    };
    let rounding = if opset < 11 {
        "floor".to_string()
    } else {
        a.string("nearest_mode", "round_prefer_floor")?
    };
    let mut y = x.clone();
    for (axis, &len_in) in dims.iter().enumerate() {
        let (out, scale) = match (&scales, &sizes) {
            (_, Some(z)) => {
                let o = *z
                    .get(axis)
                    .ok_or("sizes has fewer entries than the input's rank")?;
                let o = usize::try_from(o).map_err(|_| format!("size {o}"))?;
                (o, o as f64 / len_in as f64)
            }
            (Some(s), None) => {
                let s = *s
                    .get(axis)
                    .ok_or("scales has fewer entries than the input's rank")?;
                if s.is_nan() || s <= 0.0 {
                    return Err(format!("scale {s} must be positive"));
                }
                ((len_in as f64 * s).floor() as usize, s)
            }
            (None, None) => return Err("Resize needs scales or sizes".into()),
        };
        if out == 0 {
            return Err(format!("axis {axis} resized to nothing"));
        }
        // A size or scale out of all proportion (a corrupted file) is an error here, not
        // an index vector of billions of entries: the output must fit a register.
        let mut shape = imp.sym_dims(&y)?;
        shape[axis] = out;
        crate::ir::check_size(&shape).map_err(|e| format!("axis {axis} resized to {out}: {e}"))?;
        let idx = nearest_indices(len_in, out, scale, &transform, &rounding)?;
        y = imp.gather_axis(&y, axis, &idx)?;
    }
    one(y)
}

#[cfg(test)]
mod tests {
    use super::axis_range;
    use super::{nearest_indices, repeat_factor, runs};

    #[test]
    fn nearest_resize_indices_follow_onnx() {
        // Integer upsampling: every transformation ends at floor(i / 2).
        for t in ["half_pixel", "asymmetric", "pytorch_half_pixel"] {
            let idx = nearest_indices(3, 6, 2.0, t, "round_prefer_floor").unwrap();
            assert_eq!(idx, vec![0, 0, 1, 1, 2, 2], "{t}");
            assert_eq!(repeat_factor(&idx, 3), Some(2));
        }
        // asymmetric ×3 with round_prefer_floor rounds 2/3 up: not a repetition.
        let idx = nearest_indices(2, 6, 3.0, "asymmetric", "round_prefer_floor").unwrap();
        assert_eq!(idx, vec![0, 0, 1, 1, 1, 1]);
        assert_eq!(repeat_factor(&idx, 2), None);
        assert_eq!(runs(&idx), vec![(0, 1), (0, 2), (1, 1), (1, 1), (1, 1)]);
        // Downsampling by 2 keeps every other element.
        let idx = nearest_indices(6, 3, 0.5, "asymmetric", "floor").unwrap();
        assert_eq!(idx, vec![0, 2, 4]);
        assert_eq!(runs(&[2, 3, 4, 7, 8]), vec![(2, 3), (7, 2)]);
    }

    #[test]
    fn onnx_slice_ranges() {
        assert_eq!(axis_range(10, 0, 5, 1), Ok((0, 5)));
        assert_eq!(axis_range(10, -3, i64::MAX, 1), Ok((7, 3)));
        assert_eq!(axis_range(10, 2, -1, 3), Ok((2, 3))); // 2, 5, 8
        assert_eq!(axis_range(10, i64::MIN, 4, 2), Ok((0, 2)));
        assert_eq!(axis_range(10, 8, 3, 1), Ok((8, 0)));
        assert!(axis_range(10, 8, 3, -1).is_err());
    }
}
