//! Shape rules of every instruction, shared by the verifier (on declared types) and the
//! interpreter (on run-time dimensions).

use crate::tensor::{broadcast_dims, Window};

fn usizes(xs: &[i64], n: usize, what: &str) -> Result<Vec<usize>, String> {
    if xs.len() != n {
        return Err(format!("{what} needs {n} values, has {}", xs.len()));
    }
    xs.iter()
        .map(|&x| usize::try_from(x).map_err(|_| format!("{what} has a negative value {x}")))
        .collect()
}

/// Window geometry from instruction operands (2 spatial dims, 4 pads).
pub fn window(
    kernel: &[usize],
    strides: &[i64],
    pads: &[i64],
    dilations: &[i64],
) -> Result<Window, String> {
    let s = usizes(strides, 2, "strides")?;
    let p = usizes(pads, 4, "pads")?;
    let d = usizes(dilations, 2, "dilations")?;
    if kernel.len() != 2 || kernel.contains(&0) || s.contains(&0) || d.contains(&0) {
        return Err("kernel, strides and dilations must be 2 positive values".into());
    }
    Ok(Window {
        kernel: [kernel[0], kernel[1]],
        strides: [s[0], s[1]],
        pads: [p[0], p[1], p[2], p[3]],
        dilations: [d[0], d[1]],
    })
}

pub fn kernel_of(kernel: &[i64]) -> Result<Vec<usize>, String> {
    usizes(kernel, 2, "kernel")
}

pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    broadcast_dims(a, b).ok_or_else(|| format!("shapes {a:?} and {b:?} do not broadcast"))
}

/// `[..., m, k] x [..., k, n]`.
pub fn matmul(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    if a.len() < 2 || b.len() < 2 {
        return Err(format!(
            "matmul needs 2-D or more operands, has {a:?} and {b:?}"
        ));
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
    if k != k2 {
        return Err(format!("matmul inner dimensions differ: {a:?} x {b:?}"));
    }
    let mut out = broadcast(&a[..a.len() - 2], &b[..b.len() - 2])?;
    out.push(m);
    out.push(n);
    Ok(out)
}

pub fn conv(x: &[usize], w: &[usize], win: &Window, group: i64) -> Result<Vec<usize>, String> {
    if x.len() != 4 || w.len() != 4 {
        return Err(format!(
            "conv needs [N,C,H,W] and [M,C/group,kh,kw], has {x:?} and {w:?}"
        ));
    }
    let g = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or(format!("bad group {group}"))?;
    if !x[1].is_multiple_of(g) || !w[0].is_multiple_of(g) || x[1] / g != w[1] {
        return Err(format!(
            "conv channels do not match group {g}: input {x:?}, weight {w:?}"
        ));
    }
    if win.kernel != [w[2], w[3]] {
        return Err(format!(
            "conv kernel {:?} does not match weight {w:?}",
            win.kernel
        ));
    }
    let (oh, ow) = win
        .out_hw(x[2], x[3])
        .ok_or(format!("conv window larger than padded input {x:?}"))?;
    Ok(vec![x[0], w[0], oh, ow])
}

pub fn pool(x: &[usize], win: &Window) -> Result<Vec<usize>, String> {
    if x.len() != 4 {
        return Err(format!("pooling needs [N,C,H,W], has {x:?}"));
    }
    let (oh, ow) = win
        .out_hw(x[2], x[3])
        .ok_or(format!("pooling window larger than padded input {x:?}"))?;
    Ok(vec![x[0], x[1], oh, ow])
}

pub fn transpose(x: &[usize], perm: &[i64]) -> Result<Vec<usize>, String> {
    let p = usizes(perm, x.len(), "perm")?;
    let mut seen = vec![false; x.len()];
    for &i in &p {
        if i >= x.len() || std::mem::replace(&mut seen[i], true) {
            return Err(format!(
                "perm {perm:?} is not a permutation of {} axes",
                x.len()
            ));
        }
    }
    Ok(p.iter().map(|&i| x[i]).collect())
}

pub fn pad(x: &[usize], pads: &[i64]) -> Result<Vec<usize>, String> {
    let p = usizes(pads, 2 * x.len(), "pads")?;
    Ok((0..x.len()).map(|i| x[i] + p[i] + p[i + x.len()]).collect())
}

pub fn concat(xs: &[&[usize]], axis: i64) -> Result<Vec<usize>, String> {
    let first = xs.first().ok_or("concat of nothing")?;
    let a = usize::try_from(axis)
        .ok()
        .filter(|&a| a < first.len())
        .ok_or(format!("bad concat axis {axis}"))?;
    let mut out = first.to_vec();
    out[a] = 0;
    for x in xs {
        if x.len() != first.len() || (0..x.len()).any(|i| i != a && x[i] != first[i]) {
            return Err(format!(
                "concat shapes {first:?} and {x:?} differ off axis {a}"
            ));
        }
        out[a] += x[a];
    }
    Ok(out)
}

/// Output of argmax along `axis` (the axis is kept with size 1 or dropped, as `dst` says).
pub fn argmax(x: &[usize], axis: i64, dst: &[usize]) -> Result<Vec<usize>, String> {
    let a = usize::try_from(axis)
        .ok()
        .filter(|&a| a < x.len())
        .ok_or(format!("bad argmax axis {axis}"))?;
    let mut keep = x.to_vec();
    keep[a] = 1;
    let mut drop = x.to_vec();
    drop.remove(a);
    if dst == keep.as_slice() {
        Ok(keep)
    } else {
        Ok(drop)
    }
}

/// Checks a `slice` of `x` into `dst`: one start and one step (≥ 1) per axis, and the
/// last element read inside `x`. Returns the starts and steps.
pub fn slice(
    x: &[usize],
    starts: &[i64],
    steps: &[i64],
    dst: &[usize],
) -> Result<(Vec<usize>, Vec<usize>), String> {
    let r = x.len();
    let st = usizes(starts, r, "starts")?;
    let sp = usizes(steps, r, "steps")?;
    if dst.len() != r {
        return Err(format!("slice of {x:?} into {dst:?} changes the rank"));
    }
    for a in 0..r {
        let last = dst[a]
            .checked_sub(1)
            .map(|l| l.checked_mul(sp[a]).and_then(|v| v.checked_add(st[a])));
        if sp[a] == 0 || last.is_some_and(|l| l.is_none_or(|l| l >= x[a])) {
            return Err(format!(
                "slice of {x:?} from {st:?} by {sp:?} into {dst:?} reads outside axis {a}"
            ));
        }
    }
    Ok((st, sp))
}
