//! The forward pass, the backward pass derived from it, and the optimizer update, as IR.
//!
//! Activations and their gradients have `frac` fractional bits. A product of two of them
//! has `2·frac` until one fused requantization truncates it back and clips it to the bound
//! of the headroom plan ([`super::Numerics`]), so that the verifier proves that nothing
//! wraps the ring. A dense layer followed by a ReLU is one product and one requantization
//! (bias, truncation, ReLU and clip together).

use super::emit::{ConvGeo, Emit, R};
use super::model::{LayerOp, Model};
use super::nonlinear::{self, fixed, Softmax};
use super::{Loss, Numerics};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;

/// An activation: with `frac` fractional bits, or a product not yet truncated (`2·frac`).
#[derive(Clone, Copy, Debug)]
enum Act {
    Fx(NodeIndex),
    Wide(NodeIndex),
}

/// What the backward pass needs of a forward run.
pub(crate) struct Forward {
    /// The truncated value of every activation tensor by name.
    values: HashMap<String, NodeIndex>,
    /// Each max pool's route by its output's name (training passes only).
    routes: HashMap<String, Pooled>,
    /// The logits (`frac` fractional bits, clipped to ± the logit bound).
    pub logits: NodeIndex,
}

/// What a forward pass is for: a training step keeps what its gradient needs (each max
/// pool's route); an evaluation does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    Train,
    Eval,
}

/// Emit the forward pass of `model` on `x` with the parameters `params` (by index).
pub(crate) fn forward(
    e: &mut Emit,
    model: &Model,
    num: &Numerics,
    x: NodeIndex,
    params: &[NodeIndex],
    pass: Pass,
) -> R<Forward> {
    let frac = num.frac;
    let act = fixed(num.act, frac);
    let mut acts: HashMap<String, Act> = HashMap::from([(model.input.clone(), Act::Fx(x))]);
    let mut values: HashMap<String, NodeIndex> = HashMap::from([(model.input.clone(), x)]);
    let mut routes = HashMap::new();
    let readers = |name: &str| {
        model
            .layers
            .iter()
            .flat_map(|l| l.inputs())
            .filter(|&i| i == name)
            .count()
    };
    for l in &model.layers {
        e.origin = l.node.clone();
        let input = *acts
            .get(&l.input)
            .ok_or_else(|| l.error(&format!("reads `{}`, computed nowhere", l.input)))?;
        // A wide value feeding anything but a bias or ReLU is truncated and clipped first.
        let fx = |e: &mut Emit, a: Act| -> R<NodeIndex> {
            match a {
                Act::Fx(n) => Ok(n),
                Act::Wide(n) => e.trunc(n, frac, (-act, act)),
            }
        };
        let out = match &l.op {
            LayerOp::Dense { w, bias, trans_w } => {
                let xin = fx(e, input)?;
                values.insert(l.input.clone(), xin);
                let wt = if *trans_w {
                    e.t(params[*w])?
                } else {
                    params[*w]
                };
                let mut z = e.matmul(xin, wt)?;
                if let Some(b) = bias {
                    z = add_bias_wide(e, z, params[*b], frac)?;
                }
                Act::Wide(z)
            }
            LayerOp::Bias { b } => match input {
                Act::Wide(z) => Act::Wide(add_bias_wide(e, z, params[*b], frac)?),
                Act::Fx(v) => Act::Fx(e.add(v, params[*b])?),
            },
            LayerOp::Relu => Act::Fx(match input {
                Act::Wide(z) => e.trunc(z, frac, (0, act))?,
                Act::Fx(v) => e.clamp(v, 0, act)?,
            }),
            LayerOp::Flatten => {
                let v = fx(e, input)?;
                values.insert(l.input.clone(), v);
                let d = e.dims(v);
                Act::Fx(e.reshape(v, &[d[0], d[1..].iter().product()])?)
            }
            LayerOp::Conv {
                w,
                bias,
                strides,
                pads,
                dilations,
                group,
            } => {
                let xin = fx(e, input)?;
                values.insert(l.input.clone(), xin);
                let geo = ConvGeo {
                    strides: *strides,
                    pads: *pads,
                    dilations: *dilations,
                    group: *group,
                };
                let mut z = e.conv(xin, params[*w], &geo)?;
                if let Some(b) = bias {
                    let m = e.dims(params[*b])[0];
                    let b3 = e.reshape(params[*b], &[m, 1, 1])?;
                    z = add_bias_wide(e, z, b3, frac)?;
                }
                Act::Wide(z)
            }
            LayerOp::MaxPool { kernel, strides } => {
                // A wide input (a pool before its ReLU, `pool_before_relu`) is pooled as it
                // is: the maximum commutes with the truncation that follows.
                let (v, wrap): (NodeIndex, fn(NodeIndex) -> Act) = match input {
                    Act::Wide(z) => (z, Act::Wide),
                    Act::Fx(v) => (v, Act::Fx),
                };
                wrap(match pass {
                    Pass::Eval => e.maxpool(v, *kernel, *strides)?,
                    Pass::Train => {
                        let pooled = max_pool_routed(e, v, *kernel, *strides)?;
                        let max = pooled.max;
                        routes.insert(l.output.clone(), pooled);
                        max
                    }
                })
            }
            LayerOp::AvgPool { kernel, strides } => {
                let xin = fx(e, input)?;
                values.insert(l.input.clone(), xin);
                let s = e.sumpool(xin, *kernel, *strides)?;
                Act::Fx(e.rescale(s, (1, (kernel[0] * kernel[1]) as i64), frac)?)
            }
            LayerOp::GlobalAvgPool => {
                let xin = fx(e, input)?;
                values.insert(l.input.clone(), xin);
                let d = e.dims(xin);
                let s = e.sumpool(xin, [d[2], d[3]], [1, 1])?;
                Act::Fx(e.rescale(s, (1, (d[2] * d[3]) as i64), frac)?)
            }
            LayerOp::Residual { other } => {
                let a = fx(e, input)?;
                let b = *acts
                    .get(other)
                    .ok_or_else(|| l.error(&format!("reads `{other}`, computed nowhere")))?;
                let b = fx(e, b)?;
                Act::Fx(e.add(a, b)?)
            }
        };
        if let Act::Fx(n) = out {
            values.insert(l.output.clone(), n);
        }
        // A wide value read twice is truncated once, here.
        let out = match out {
            Act::Wide(z) if readers(&l.output) > 1 => {
                let n = e.trunc(z, frac, (-act, act))?;
                values.insert(l.output.clone(), n);
                Act::Fx(n)
            }
            o => o,
        };
        acts.insert(l.output.clone(), out);
    }
    e.origin = model.output.clone();
    let logit = fixed(num.logit, frac);
    let logits = match acts.get(&model.output) {
        Some(Act::Wide(z)) => e.trunc(*z, frac, (-logit, logit))?,
        Some(Act::Fx(v)) => e.clamp(*v, -logit, logit)?,
        None => return Err(format!("the output `{}` is computed nowhere", model.output)),
    };
    values.insert(model.output.clone(), logits);
    Ok(Forward {
        values,
        routes,
        logits,
    })
}

/// The forward value of `name`, which a layer's gradient needs.
fn kept(fwd: &Forward, name: &str, l: &super::model::Layer) -> R<NodeIndex> {
    fwd.values
        .get(name)
        .copied()
        .ok_or_else(|| l.error(&format!("`{name}` was not kept for the backward pass")))
}

fn input_dims(e: &Emit, fwd: &Forward, l: &super::model::Layer) -> R<Vec<usize>> {
    Ok(e.dims(kept(fwd, &l.input, l)?))
}

/// `gy` `[N, C, OH, OW]` repeated for each of the `kk` window offsets, `[kk, N, C, OH, OW]`.
fn spread(e: &mut Emit, gy: NodeIndex, kk: usize) -> R<NodeIndex> {
    let d = e.dims(gy);
    let g5 = e.reshape(gy, &[1, d[0], d[1], d[2], d[3]])?;
    let ones = e.konst(0, &[kk, 1, 1, 1, 1], vec![1; kk]);
    e.mul(g5, ones)
}

/// A max pool kept for its gradient.
pub(crate) struct Pooled {
    /// Each window's maximum, `[N, C, OH, OW]`.
    max: NodeIndex,
    /// The tournament that found it, whose duels' bits route the gradient back.
    tree: Tree,
    /// The windows' shape, `[kk, N, C, OH, OW]` (as `window` lays them out).
    window_dims: Vec<usize>,
    /// The pooled input's shape, `[N, C, H, W]`.
    input_dims: Vec<usize>,
}

/// A max pool's tournament: a window element (its offset in the window), or a duel whose
/// bit `s` is 1 where the earlier side won.
enum Tree {
    Leaf(usize),
    Duel {
        s: NodeIndex,
        earlier: Box<Tree>,
        later: Box<Tree>,
    },
}

/// One entry of a tournament: its value and how it was found.
struct Entry {
    value: NodeIndex,
    tree: Tree,
}

/// A max pool whose comparisons are kept for the gradient: a tournament over the window
/// elements, `[a ≥ b]` per duel (ties to the earlier element, PyTorch's first maximum),
/// `⌈log2 kk⌉` comparison levels. The backward pass sends the gradient down the same
/// tree, one product per duel, instead of comparing every window element with the
/// maximum again.
fn max_pool_routed(
    e: &mut Emit,
    x: NodeIndex,
    kernel: [usize; 2],
    strides: [usize; 2],
) -> R<Pooled> {
    let input_dims = e.dims(x);
    let kk = kernel[0] * kernel[1];
    let wins = e.window(x, kernel, strides)?;
    let window_dims = e.dims(wins);
    let n: usize = window_dims[1..].iter().product();
    let rows = e.reshape(wins, &[kk, n])?;
    let mut entries = (0..kk)
        .map(|k| {
            Ok(Entry {
                value: e.slice(rows, &[k, 0], &[1, 1], &[1, n])?,
                tree: Tree::Leaf(k),
            })
        })
        .collect::<R<Vec<_>>>()?;
    let one = e.int(1);
    while entries.len() > 1 {
        let mut next = Vec::with_capacity(entries.len().div_ceil(2));
        let mut it = entries.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => duel(e, a, b, one)?,
                None => a,
            });
        }
        entries = next;
    }
    let winner = entries.pop().ok_or("a max pool over an empty window")?;
    Ok(Pooled {
        max: e.reshape(winner.value, &window_dims[1..])?,
        tree: winner.tree,
        window_dims,
        input_dims,
    })
}

/// The later-in-window entry `b` against the earlier `a`: `s = [a ≥ b]` (one comparison,
/// `clamp(a − b, −1, 0) + 1`) and the maximum `b + s·(a − b)`.
fn duel(e: &mut Emit, a: Entry, b: Entry, one: NodeIndex) -> R<Entry> {
    let d = e.sub(a.value, b.value)?;
    let ge = e.clamp(d, -1, 0)?;
    let ge = e.cast(ge, 0)?;
    let s = e.add(ge, one)?;
    let gain = e.mul(d, s)?;
    Ok(Entry {
        value: e.add(b.value, gain)?,
        tree: Tree::Duel {
            s,
            earlier: Box::new(a.tree),
            later: Box::new(b.tree),
        },
    })
}

/// The gradient of a max pool: `gy` sent down its tournament (the earlier side of a duel
/// gets `s·g`, the later `g − s·g`) to the window elements, added back onto the input by
/// `unwindow`.
fn max_pool_grad(
    e: &mut Emit,
    pooled: &Pooled,
    gy: NodeIndex,
    kernel: [usize; 2],
    strides: [usize; 2],
) -> R<NodeIndex> {
    let wd = &pooled.window_dims;
    let n: usize = wd[1..].iter().product();
    let g = e.reshape(gy, &[1, n])?;
    let mut parts = vec![None; wd[0]];
    route_down(e, &pooled.tree, g, &mut parts)?;
    let parts = parts
        .into_iter()
        .map(|p| p.ok_or_else(|| "a window element outside its pool's tournament".to_string()))
        .collect::<R<Vec<_>>>()?;
    let routed = e.concat(&parts, 0)?;
    let routed = e.reshape(routed, wd)?;
    e.unwindow(routed, kernel, strides, &pooled.input_dims)
}

fn route_down(e: &mut Emit, tree: &Tree, g: NodeIndex, out: &mut [Option<NodeIndex>]) -> R<()> {
    match tree {
        Tree::Leaf(k) => {
            out[*k] = Some(g);
            Ok(())
        }
        Tree::Duel { s, earlier, later } => {
            let won = e.mul(g, *s)?;
            let lost = e.sub(g, won)?;
            route_down(e, earlier, won, out)?;
            route_down(e, later, lost, out)
        }
    }
}

/// `z + b` where `z` has `2·frac` fractional bits and `b` has `frac`.
fn add_bias_wide(e: &mut Emit, z: NodeIndex, b: NodeIndex, frac: u32) -> R<NodeIndex> {
    let unit = e.konst(0, &[1], vec![1i64 << frac]);
    let bw = e.mul(b, unit)?;
    let bw = e.cast(bw, 2 * frac)?;
    e.add(z, bw)
}

/// Emit the gradient of the mean softmax cross-entropy times the batch size (the mean's
/// `1/B` is folded into the learning rate), `softmax(z) − y`, and the backward pass.
/// Returns the gradient of every parameter (by index), with `frac` fractional bits,
/// clipped to ± the weight-gradient bound.
pub(crate) fn backward(
    e: &mut Emit,
    model: &Model,
    num: &Numerics,
    loss_kind: Loss,
    fwd: &Forward,
    y: NodeIndex,
    params: &[NodeIndex],
) -> R<Backward> {
    let frac = num.frac;
    let (grad, wgrad) = (fixed(num.grad, frac), fixed(num.wgrad, frac));
    let (g, loss) = match loss_kind {
        Loss::CrossEntropy => {
            e.origin = "SoftmaxCrossEntropy".into();
            let sm = nonlinear::softmax_parts(e, fwd.logits)?;
            let loss = batch_loss(e, fwd.logits, y, &sm)?;
            (e.sub(sm.p, y)?, loss)
        }
        Loss::Mse => {
            e.origin = "MeanSquaredError".into();
            mse(e, fwd.logits, y, grad)?
        }
    };
    let mut grads: HashMap<String, NodeIndex> = HashMap::from([(model.output.clone(), g)]);
    let mut pgrads: Vec<Option<NodeIndex>> = vec![None; model.params.len()];
    let mut add_pgrad = |e: &mut Emit, i: usize, g: NodeIndex| -> R<()> {
        pgrads[i] = Some(match pgrads[i] {
            Some(old) => e.add(old, g)?,
            None => g,
        });
        Ok(())
    };
    for l in model.layers.iter().rev() {
        e.origin = format!("{}/grad", l.node);
        let Some(&gy) = grads.get(&l.output) else {
            continue; // nothing downstream depends on it
        };
        let needs_input = l.input != model.input;
        let gx = match &l.op {
            LayerOp::Dense { w, bias, trans_w } => {
                let x = *fwd
                    .values
                    .get(&l.input)
                    .ok_or_else(|| l.error("its input was not kept"))?;
                // dW: gyᵀ·x ([out, in]) for W [out, in], xᵀ·gy for W [in, out].
                let gw = if *trans_w {
                    let gyt = e.t(gy)?;
                    e.matmul(gyt, x)?
                } else {
                    let xt = e.t(x)?;
                    e.matmul(xt, gy)?
                };
                let gw = e.trunc(gw, frac, (-wgrad, wgrad))?;
                add_pgrad(e, *w, gw)?;
                if let Some(b) = bias {
                    let gb = e.sum_rows(gy)?;
                    let gb = e.clamp(gb, -wgrad, wgrad)?;
                    add_pgrad(e, *b, gb)?;
                }
                if needs_input {
                    let wm = if *trans_w {
                        params[*w]
                    } else {
                        e.t(params[*w])?
                    };
                    let gx = e.matmul(gy, wm)?;
                    Some(e.trunc(gx, frac, (-grad, grad))?)
                } else {
                    None
                }
            }
            LayerOp::Bias { b } => {
                let gb = e.sum_rows(gy)?;
                let gb = e.clamp(gb, -wgrad, wgrad)?;
                add_pgrad(e, *b, gb)?;
                Some(gy)
            }
            LayerOp::Relu => {
                let yv = *fwd
                    .values
                    .get(&l.output)
                    .ok_or_else(|| l.error("its output was not kept"))?;
                // 1 where the output is positive: the integer clamp(y, 0, 1), read as 0/1.
                let bit = e.clamp(yv, 0, 1)?;
                let bit = e.cast(bit, 0)?;
                Some(e.mul(gy, bit)?)
            }
            LayerOp::Flatten => {
                let d = input_dims(e, fwd, l)?;
                Some(e.reshape(gy, &d)?)
            }
            LayerOp::Conv {
                w,
                bias,
                strides,
                pads,
                dilations,
                group,
            } => {
                let x = kept(fwd, &l.input, l)?;
                let geo = ConvGeo {
                    strides: *strides,
                    pads: *pads,
                    dilations: *dilations,
                    group: *group,
                };
                let wdims = e.dims(params[*w]);
                let gw = e.conv_grad_w(x, gy, &geo, &wdims)?;
                let gw = e.trunc(gw, frac, (-wgrad, wgrad))?;
                add_pgrad(e, *w, gw)?;
                if let Some(b) = bias {
                    // Σ over samples and positions: [M, N·OH·OW] times ones.
                    let d = e.dims(gy);
                    let gt = e.transpose(gy, &[1, 0, 2, 3])?;
                    let gm = e.reshape(gt, &[d[1], d[0] * d[2] * d[3]])?;
                    let gb = e.sum_cols(gm)?;
                    let gb = e.reshape(gb, &[d[1]])?;
                    let gb = e.clamp(gb, -wgrad, wgrad)?;
                    add_pgrad(e, *b, gb)?;
                }
                if needs_input {
                    let xd = e.dims(x);
                    let gx = e.conv_grad_x(gy, params[*w], &geo, &xd)?;
                    Some(e.trunc(gx, frac, (-grad, grad))?)
                } else {
                    None
                }
            }
            LayerOp::MaxPool { kernel, strides } => {
                let pooled = fwd
                    .routes
                    .get(&l.output)
                    .ok_or_else(|| l.error("its route was not kept for the backward pass"))?;
                Some(max_pool_grad(e, pooled, gy, *kernel, *strides)?)
            }
            LayerOp::AvgPool { kernel, strides } => {
                let xd = input_dims(e, fwd, l)?;
                let kk = kernel[0] * kernel[1];
                let spread = spread(e, gy, kk)?;
                let back = e.unwindow(spread, *kernel, *strides, &xd)?;
                Some(e.rescale(back, (1, kk as i64), frac)?)
            }
            LayerOp::GlobalAvgPool => {
                let xd = input_dims(e, fwd, l)?;
                let ones = e.konst(0, &[1, 1, xd[2], xd[3]], vec![1; xd[2] * xd[3]]);
                let back = e.mul(gy, ones)?;
                Some(e.rescale(back, (1, (xd[2] * xd[3]) as i64), frac)?)
            }
            LayerOp::Residual { other } => {
                if other != &model.input {
                    let sum = match grads.get(other) {
                        Some(&old) => e.add(old, gy)?,
                        None => gy,
                    };
                    grads.insert(other.clone(), sum);
                }
                Some(gy)
            }
        };
        if let (Some(gx), true) = (gx, needs_input) {
            let sum = match grads.get(&l.input) {
                Some(&old) => e.add(old, gx)?,
                None => gx,
            };
            grads.insert(l.input.clone(), sum);
        }
    }
    let grads = pgrads
        .into_iter()
        .zip(&model.params)
        .map(|(g, p)| g.ok_or_else(|| format!("parameter `{}` does not reach the loss", p.name)))
        .collect::<R<Vec<_>>>()?;
    Ok(Backward { grads, loss })
}

/// The parameters' gradients (summed over the batch), and the batch's summed loss (which
/// dead-code elimination drops unless the step stores it).
pub(crate) struct Backward {
    pub grads: Vec<NodeIndex>,
    pub loss: NodeIndex,
}

/// MSE against the targets `y` (`[n, c]`): the output's gradient `2 (z − y) / c` per row
/// (the batch's `1/B` is folded into the learning rate, as for the cross-entropy),
/// clipped to ±`grad`, and the loss summed over the batch, `Σ_rows Σ (z − y)² / c`.
fn mse(e: &mut Emit, z: NodeIndex, y: NodeIndex, grad: i64) -> R<(NodeIndex, NodeIndex)> {
    let frac = e.frac(z);
    let c = *e
        .dims(z)
        .get(1)
        .ok_or("MSE needs outputs of shape [batch, classes]")? as i64;
    let d = e.sub(z, y)?;
    let g = e.requant(d, (2, c), (-grad, grad), frac)?;
    let sq = e.mul(d, d)?;
    let per_row = e.sum_cols(sq)?;
    let hi = e.g.decl(per_row).hi;
    let per_row = e.requant(per_row, (1, c << frac), (0, hi / (c << frac) + 1), frac)?;
    Ok((g, e.sum_rows(per_row)?))
}

/// The cross-entropy summed over the batch, `Σ_rows max + ln(sum) − z_label` (`[1]`),
/// from the softmax's parts: one product for `z_label` (the labels are secret), the
/// logarithm of each row's sum in `[1, c]`.
fn batch_loss(e: &mut Emit, z: NodeIndex, y: NodeIndex, sm: &Softmax) -> R<NodeIndex> {
    let frac = e.frac(z);
    let (lo, hi) = (e.g.decl(z).lo, e.g.decl(z).hi);
    let yz = e.mul(y, z)?;
    let picked = e.sum_cols(yz)?;
    let zy = e.trunc(picked, frac, (lo, hi))?;
    let ln = nonlinear::ln_range(e, sm.sum)?;
    let a = e.add(sm.max, ln)?;
    let per_row = e.sub(a, zy)?;
    e.sum_rows(per_row)
}
