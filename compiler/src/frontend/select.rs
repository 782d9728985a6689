//! `Slice` and `Split`: ops that keep a regular part of a tensor, on every kind of tensor
//! (constants, integer nodes, reals with per-channel scales) through [`Layout::Slice`].

use super::layout::Layout;
use super::ops::{arg, check_attrs, ints_of, norm_axis, one, opt_konst};
use super::sym::Sym;
use super::{attrs, Importer, R};
use crate::onnx::proto::NodeProto;

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

#[cfg(test)]
mod tests {
    use super::axis_range;

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
