//! The instructions training's backward pass adds: the two gradients of a convolution and
//! the window moves of pooling (`window`, `unwindow`). Every layout step is a gather by an
//! index formula (public values and shares alike); the products are the protocol's
//! matrix product, so each instruction is one round where both operands are secret.

use crate::interp::{matmul, Fail, Shared, Value};
use crate::tensor::{Tensor, Window};
use qmpc_protocols::planes::{Plane, PAD};
use qmpc_protocols::Protocol;
use rayon::prelude::*;

/// `out[o] = v[at(o)]`, zero where `at` gives [`PAD`].
fn gather<S: Plane>(
    v: &Value<S>,
    dims: Vec<usize>,
    at: impl Fn(usize) -> usize + Sync,
) -> Value<S> {
    let len = dims.iter().product();
    match v {
        Value::Public(t) => {
            let data = (0..len)
                .map(|o| match at(o) {
                    PAD => 0,
                    i => t.data[i],
                })
                .collect();
            Value::Public(Tensor::new(dims, data))
        }
        Value::Secret(t) => Value::Secret(Shared::new(dims, t.data.gather_by(len, at))),
    }
}

/// `out[o] = v[idx[o]]`, zero where `idx` gives [`PAD`]: [`gather`] by an index vector
/// built once for every plane of the shares.
fn gather_at<S: Plane>(v: &Value<S>, dims: Vec<usize>, idx: &[usize]) -> Value<S> {
    match v {
        Value::Public(_) => gather(v, dims, |o| idx[o]),
        Value::Secret(t) => Value::Secret(Shared::new(dims, t.data.gather(idx))),
    }
}

fn add<P: Protocol>(proto: &mut P, a: Value<P::Shares>, b: &Value<P::Shares>) -> Value<P::Shares> {
    match (a, b) {
        (Value::Public(x), Value::Public(y)) => {
            let data = x
                .data
                .iter()
                .zip(&y.data)
                .map(|(a, b)| a.wrapping_add(*b))
                .collect();
            Value::Public(Tensor::new(x.dims, data))
        }
        (Value::Secret(x), Value::Secret(y)) => {
            Value::Secret(Shared::new(x.dims, proto.add(&x.data, &y.data)))
        }
        (Value::Secret(x), Value::Public(y)) => {
            Value::Secret(Shared::new(x.dims, proto.add_public(&x.data, &y.data)))
        }
        (Value::Public(y), Value::Secret(x)) => Value::Secret(Shared::new(
            x.dims.clone(),
            proto.add_public(&x.data, &y.data),
        )),
    }
}

/// For every kernel offset `k` and input position `p` of an `h × w` plane, the output
/// position whose window reads `p` at offset `k` (at most one: the window moves by at
/// least one step), as `inv[k · h·w + p]`.
fn inverse_plan(win: &Window, h: usize, w: usize) -> Result<(usize, Vec<Option<usize>>), String> {
    let (oh, ow, plan) = win
        .gather_plan(h, w)
        .ok_or("window larger than the input")?;
    let kk = win.kernel[0] * win.kernel[1];
    let mut inv = vec![None; kk * h * w];
    for o in 0..oh * ow {
        for k in 0..kk {
            if let Some(p) = plan[o * kk + k] {
                inv[k * h * w + p] = Some(o);
            }
        }
    }
    Ok((oh * ow, inv))
}

/// `window`: `[N, C, H, W]` → `[kk, N, C, OH, OW]`.
pub(crate) fn window<S: Plane>(
    x: &Value<S>,
    win: &Window,
    out: &[usize],
) -> Result<Value<S>, Fail> {
    let d = x_dims(x);
    let (h, w) = (d[2], d[3]);
    let (_, _, plan) = win
        .gather_plan(h, w)
        .ok_or("window larger than the input")?;
    let kk = win.kernel[0] * win.kernel[1];
    let ohw = out[3] * out[4];
    let planes = d[0] * d[1];
    Ok(gather(x, out.to_vec(), |o| {
        let (k, r) = (o / (planes * ohw), o % (planes * ohw));
        let (plane, pos) = (r / ohw, r % ohw);
        plan[pos * kk + k].map_or(PAD, |i| plane * h * w + i)
    }))
}

/// `unwindow`: `[kk, N, C, OH, OW]` → `[N, C, H, W]`, every window element added back to
/// the position it was read from.
pub(crate) fn unwindow<P: Protocol>(
    proto: &mut P,
    x: &Value<P::Shares>,
    win: &Window,
    out: &[usize],
) -> Result<Value<P::Shares>, Fail> {
    let (h, w) = (out[2], out[3]);
    let (ohw, inv) = inverse_plan(win, h, w)?;
    let planes = out[0] * out[1];
    col2im(proto, x, out, &inv, |k, plane, o| {
        (k * planes + plane) * ohw + o
    })
}

/// `Σ_k src[at(k, plane, o_k(p))]` for every position `p` of every plane of `out`, where
/// `o_k(p)` is the window that reads `p` at offset `k`.
fn col2im<P: Protocol>(
    proto: &mut P,
    src: &Value<P::Shares>,
    out: &[usize],
    inv: &[Option<usize>],
    at: impl Fn(usize, usize, usize) -> usize + Sync,
) -> Result<Value<P::Shares>, Fail> {
    let (h, w) = (out[2], out[3]);
    let hw = h * w;
    let kk = inv.len() / hw.max(1);
    let mut acc: Option<Value<P::Shares>> = None;
    for k in 0..kk {
        let part = gather(src, out.to_vec(), |o| {
            let (plane, p) = (o / hw, o % hw);
            inv[k * hw + p].map_or(PAD, |oo| at(k, plane, oo))
        });
        acc = Some(match acc {
            None => part,
            Some(a) => add(proto, a, &part),
        });
    }
    acc.ok_or_else(|| "an empty window".into())
}

/// The same elements in the shape `dims`.
fn with_dims<S: Plane>(v: Value<S>, dims: &[usize]) -> Value<S> {
    match v {
        Value::Public(t) => Value::Public(Tensor::new(dims.to_vec(), t.data)),
        Value::Secret(t) => Value::Secret(Shared::new(dims.to_vec(), t.data)),
    }
}

fn x_dims<S>(v: &Value<S>) -> Vec<usize> {
    match v {
        Value::Public(t) => t.dims.clone(),
        Value::Secret(t) => t.dims.clone(),
    }
}

/// `convgradw`: `dW[g·M/G + m, ci, k] = Σ_{n, o} gy[n, g·M/G + m, o] · x[n, g·C/G + ci,
/// window(o, k)]`, one batched product over the groups with the batch and the output
/// positions as its inner dimension.
pub(crate) fn conv_grad_w<P: Protocol>(
    proto: &mut P,
    x: &Value<P::Shares>,
    gy: &Value<P::Shares>,
    win: &Window,
    group: usize,
    out: &[usize],
) -> Result<Value<P::Shares>, Fail> {
    let (xd, gd) = (x_dims(x), x_dims(gy));
    let (n, c, h, w) = (xd[0], xd[1], xd[2], xd[3]);
    let (m, ohw) = (gd[1], gd[2] * gd[3]);
    let (mg, cg, kk) = (m / group, c / group, out[2] * out[3]);
    let (_, _, plan) = win
        .gather_plan(h, w)
        .ok_or("window larger than the input")?;
    let inner = n * ohw;
    // a: [G, M/G, N·OH·OW] from gy [N, G, M/G, OH·OW].
    let a = gather(gy, vec![group, mg, inner], |i| {
        let (g, r) = (i / (mg * inner), i % (mg * inner));
        let (mi, r) = (r / inner, r % inner);
        let (b, o) = (r / ohw, r % ohw);
        ((b * m) + g * mg + mi) * ohw + o
    });
    // b: [G, N·OH·OW, C/G·kk] from x.
    let cols = cg * kk;
    let b = gather(x, vec![group, inner, cols], |i| {
        let (g, r) = (i / (inner * cols), i % (inner * cols));
        let (row, col) = (r / cols, r % cols);
        let (bn, o) = (row / ohw, row % ohw);
        let (ci, k) = (col / kk, col % kk);
        plan[o * kk + k].map_or(PAD, |p| ((bn * c) + g * cg + ci) * h * w + p)
    });
    let prod = matmul(proto, &a, &b, &[group, mg, cols])?;
    Ok(with_dims(prod, out))
}

/// `convgradx`, a transposed convolution: `gx[n, g, ci, p] = Σ_{m, k} W[g·M/G + m, ci, k] ·
/// gy[n, g·M/G + m, o_k(p)]` (`o_k(p)` the window that reads `p` at offset `k`). Its
/// columns `Wᵀ·gy` are `kk` times the result: a protocol that reshares a product's result
/// gathers the columns from `gy` before the product, so it reshares `[N, C, H, W]`; one
/// whose product opens its operands ([`qmpc_protocols::Core::products_open_operands`])
/// multiplies the small `Wᵀ` and `gy` and adds the columns back after it.
pub(crate) fn conv_grad_x<P: Protocol>(
    proto: &mut P,
    gy: &Value<P::Shares>,
    w: &Value<P::Shares>,
    win: &Window,
    group: usize,
    out: &[usize],
) -> Result<Value<P::Shares>, Fail> {
    let (gd, wd) = (x_dims(gy), x_dims(w));
    let geo = GradX {
        n: gd[0],
        m: gd[1],
        ohw: gd[2] * gd[3],
        c: out[1],
        h: out[2],
        w: out[3],
        group,
        kk: wd[2] * wd[3],
    };
    let (_, inv) = inverse_plan(win, geo.h, geo.w)?;
    if proto.products_open_operands() {
        grad_x_by_columns(proto, gy, w, &geo, &inv, out)
    } else {
        grad_x_gathered(proto, gy, w, &geo, &inv, out)
    }
}

/// The sizes of a transposed convolution.
struct GradX {
    n: usize,
    m: usize,
    ohw: usize,
    c: usize,
    h: usize,
    w: usize,
    group: usize,
    kk: usize,
}

/// The columns `Wᵀ·gy` `[N, G, C/G·kk, OH·OW]` as one product, added back onto the input
/// positions their windows read.
fn grad_x_by_columns<P: Protocol>(
    proto: &mut P,
    gy: &Value<P::Shares>,
    w: &Value<P::Shares>,
    geo: &GradX,
    inv: &[Option<usize>],
    out: &[usize],
) -> Result<Value<P::Shares>, Fail> {
    let &GradX {
        n,
        m,
        ohw,
        c,
        group,
        kk,
        ..
    } = geo;
    let (mg, cg) = (m / group, c / group);
    let rows = cg * kk;
    // Wᵀ per group: [1, G, C/G·kk, M/G] from w [G, M/G, C/G·kk].
    let wt = gather(w, vec![1, group, rows, mg], |i| {
        let (g, r) = (i / (rows * mg), i % (rows * mg));
        let (row, mi) = (r / mg, r % mg);
        (g * mg + mi) * rows + row
    });
    // gy as [N, G, M/G, OH·OW] is its own layout.
    let g4 = with_dims(gy.clone(), &[n, group, mg, ohw]);
    let cols = matmul(proto, &wt, &g4, &[n, group, rows, ohw])?;
    col2im(proto, &cols, out, inv, |k, plane, o| {
        // plane = n·C + g·C/G + ci, which is block (n, g) and row ci·kk + k.
        let (bn, ch) = (plane / c, plane % c);
        let (g, ci) = (ch / cg, ch % cg);
        (((bn * group + g) * cg + ci) * kk + k) * ohw + o
    })
}

/// The columns `[N, G, M/G·kk, H·W]` gathered from `gy`, then one product with `W` per
/// group `[1, G, C/G, M/G·kk]` whose result is the gradient itself.
fn grad_x_gathered<P: Protocol>(
    proto: &mut P,
    gy: &Value<P::Shares>,
    w: &Value<P::Shares>,
    geo: &GradX,
    inv: &[Option<usize>],
    out: &[usize],
) -> Result<Value<P::Shares>, Fail> {
    let &GradX {
        n,
        m,
        ohw,
        c,
        h,
        w: wi,
        group,
        kk,
    } = geo;
    let hw = h * wi;
    let (mg, cg) = (m / group, c / group);
    let inner = mg * kk;
    // W per group as [1, G, C/G, M/G·kk] from w [G, M/G, C/G, kk].
    let wg = gather(w, vec![1, group, cg, inner], |i| {
        let (g, r) = (i / (cg * inner), i % (cg * inner));
        let (ci, r) = (r / inner, r % inner);
        let (mi, k) = (r / kk, r % kk);
        ((g * mg + mi) * cg + ci) * kk + k
    });
    // Rows (sample·group, m, k), each `H·W` long: the largest gather of a training step,
    // so its indices are built once, row by row, without a division per element.
    let mut idx = vec![PAD; n * group * inner * hw];
    idx.par_chunks_mut(hw.max(1))
        .enumerate()
        .for_each(|(row, out)| {
            let (bgm, k) = (row / kk, row % kk);
            let base = bgm * ohw;
            for (o, at) in out.iter_mut().zip(&inv[k * hw..(k + 1) * hw]) {
                *o = at.map_or(PAD, |a| base + a);
            }
        });
    let cols = gather_at(gy, vec![n, group, inner, hw], &idx);
    let gx = matmul(proto, &wg, &cols, &[n, group, cg, hw])?;
    Ok(with_dims(gx, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmpc_protocols::clear::Clear;

    fn numbers(len: usize, seed: u64) -> Vec<i64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 59) as i64 - 16
            })
            .collect()
    }

    fn secret(dims: &[usize], seed: u64) -> Value<Vec<i64>> {
        let n = dims.iter().product();
        Value::Secret(Shared::new(dims.to_vec(), numbers(n, seed)))
    }

    fn data(v: &Value<Vec<i64>>) -> Vec<i64> {
        match v {
            Value::Public(t) => t.data.clone(),
            Value::Secret(t) => t.data.clone(),
        }
    }

    /// Every geometry: (N, C, H, W, M, kernel, stride, pad, dilation, group).
    fn geometries() -> Vec<[usize; 10]> {
        vec![
            [2, 2, 5, 5, 3, 3, 1, 1, 1, 1],
            [2, 2, 6, 5, 4, 3, 2, 1, 1, 1],
            [1, 4, 5, 6, 4, 2, 1, 0, 2, 2],
            [3, 1, 7, 7, 2, 3, 2, 0, 1, 1],
            [2, 4, 4, 4, 4, 3, 1, 1, 1, 4],
        ]
    }

    /// The definitions, by loops over every term.
    #[test]
    fn conv_gradients_are_the_sums_of_their_definitions() {
        for (gi, [n, c, h, w, m, k, s, p, d, g]) in geometries().into_iter().enumerate() {
            let win =
                crate::shapes::window(&[k, k], &[s as i64; 2], &[p as i64; 4], &[d as i64; 2])
                    .unwrap();
            let (oh, ow) = win.out_hw(h, w).unwrap();
            let (cg, mg) = (c / g, m / g);
            let x = secret(&[n, c, h, w], 1 + gi as u64);
            let gy = secret(&[n, m, oh, ow], 100 + gi as u64);
            let wt = secret(&[m, cg, k, k], 200 + gi as u64);
            let (xv, gv, wv) = (data(&x), data(&gy), data(&wt));
            let at = |oy: usize, ky: usize| (oy * s + ky * d) as isize - p as isize;
            let mut want_w = vec![0i64; m * cg * k * k];
            let mut want_x = vec![0i64; n * c * h * w];
            for b in 0..n {
                for mo in 0..m {
                    let grp = mo / mg;
                    for ci in 0..cg {
                        let ch = grp * cg + ci;
                        for (oy, ox, ky, kx) in itertools(oh, ow, k) {
                            let (y, xx) = (at(oy, ky), at(ox, kx));
                            if y < 0 || xx < 0 || y as usize >= h || xx as usize >= w {
                                continue;
                            }
                            let xi = ((b * c + ch) * h + y as usize) * w + xx as usize;
                            let gi = ((b * m + mo) * oh + oy) * ow + ox;
                            let wi = ((mo * cg + ci) * k + ky) * k + kx;
                            want_w[wi] += gv[gi] * xv[xi];
                            want_x[xi] += gv[gi] * wv[wi];
                        }
                    }
                }
            }
            let got_w = conv_grad_w(&mut Clear, &x, &gy, &win, g, &[m, cg, k, k])
                .unwrap_or_else(|_| panic!("geometry {gi}"));
            assert_eq!(data(&got_w), want_w, "weight gradient, geometry {gi}");
            let got_x = conv_grad_x(&mut Clear, &gy, &wt, &win, g, &[n, c, h, w])
                .unwrap_or_else(|_| panic!("geometry {gi}"));
            assert_eq!(data(&got_x), want_x, "input gradient, geometry {gi}");
            // Both layouts of the product, whichever one `Clear` picks.
            let geo = GradX {
                n,
                m,
                ohw: oh * ow,
                c,
                h,
                w,
                group: g,
                kk: k * k,
            };
            let (_, inv) = inverse_plan(&win, h, w).unwrap();
            let out = [n, c, h, w];
            let by_columns = grad_x_by_columns(&mut Clear, &gy, &wt, &geo, &inv, &out)
                .unwrap_or_else(|_| panic!("geometry {gi}"));
            let gathered = grad_x_gathered(&mut Clear, &gy, &wt, &geo, &inv, &out)
                .unwrap_or_else(|_| panic!("geometry {gi}"));
            assert_eq!(data(&by_columns), want_x, "columns, geometry {gi}");
            assert_eq!(data(&gathered), want_x, "gathered, geometry {gi}");
            // The same with public operands.
            let public = |v: &Value<Vec<i64>>, dims: &[usize]| {
                Value::Public(Tensor::new(dims.to_vec(), data(v)))
            };
            let pw = conv_grad_w(
                &mut Clear,
                &public(&x, &[n, c, h, w]),
                &gy,
                &win,
                g,
                &[m, cg, k, k],
            )
            .unwrap_or_else(|_| panic!("public"));
            assert_eq!(data(&pw), want_w);
        }
    }

    fn itertools(oh: usize, ow: usize, k: usize) -> Vec<(usize, usize, usize, usize)> {
        let mut v = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..k {
                    for kx in 0..k {
                        v.push((oy, ox, ky, kx));
                    }
                }
            }
        }
        v
    }

    /// `unwindow` is the adjoint of `window`: ⟨window(x), y⟩ = ⟨x, unwindow(y)⟩.
    #[test]
    fn unwindow_is_the_adjoint_of_window() {
        for (gi, [n, c, h, w, _, k, s, p, d, _]) in geometries().into_iter().enumerate() {
            let win =
                crate::shapes::window(&[k, k], &[s as i64; 2], &[p as i64; 4], &[d as i64; 2])
                    .unwrap();
            let (oh, ow) = win.out_hw(h, w).unwrap();
            let wdims = [k * k, n, c, oh, ow];
            let x = secret(&[n, c, h, w], 7 + gi as u64);
            let y = secret(&wdims, 70 + gi as u64);
            let wx = window(&x, &win, &wdims).unwrap_or_else(|_| panic!("window"));
            let uy = unwindow(&mut Clear, &y, &win, &[n, c, h, w])
                .unwrap_or_else(|_| panic!("unwindow"));
            let dot = |a: &[i64], b: &[i64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<i64>();
            assert_eq!(
                dot(&data(&wx), &data(&y)),
                dot(&data(&x), &data(&uy)),
                "geometry {gi}"
            );
        }
    }
}
