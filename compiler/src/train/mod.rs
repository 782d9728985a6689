//! Training: a float ONNX export becomes the programs of a training session
//! (docs/training.md). The session's secret state — parameters, momenta, the shared data
//! set and the current batch — lives in session states between runs:
//!
//! - `setup_model`: the model owner shares the initial parameters; momenta start at zero;
//! - `setup_data`: a data owner shares its rows and one-hot labels (run once per owner);
//! - `step`: one SGD-with-momentum step on the batch the runner gathered into
//!   `batch:x` / `batch:y` (a public permutation of the shared rows);
//! - `eval`: the number of test rows classified right, revealed to the model owner only;
//! - `finish`: the trained parameters, revealed to the model owner only.
//!
//! The step is compiled for a fixed batch size, so its cost does not depend on the data
//! set's size, and its backward pass is derived from the forward graph (`step.rs`).

pub mod adam;
mod emit;
pub mod model;
mod nonlinear;
mod step;

use crate::ir::Graph;
use crate::{lower, passes, Options, WeightsMode};
use emit::{Emit, R};
use model::Model;
use nonlinear::fixed;
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::{DType, ExternalType, InputDecl, OutputDecl, PostOp, Program};
use qmpc_bytecode::{QuantParams, StateDecl, TensorType, Weights};
use qmpc_semantics::TruncMode;

/// The state holding parameter `name`.
pub fn param_state(name: &str) -> String {
    format!("param:{name}")
}
/// The state holding the momentum of parameter `name`.
pub fn momentum_state(name: &str) -> String {
    format!("mom:{name}")
}
/// The state holding Adam's second moment of parameter `name` (the first is
/// [`momentum_state`]).
pub fn variance_state(name: &str) -> String {
    format!("var:{name}")
}
/// The shared rows and one-hot labels of the data set (all owners' rows, in order).
pub const DATA_X: &str = "data:x";
pub const DATA_Y: &str = "data:y";
/// Test rows per run of the evaluation program: the count of a larger test set is the
/// sum of the counts of its chunks (the last one padded with rows that never count), so
/// memory does not grow with the test set.
pub const EVAL_CHUNK: usize = 1000;
/// The shared count of one evaluation chunk, and the sum the runner keeps of them.
pub const EVAL_COUNT: &str = "eval:count";
pub const EVAL_TOTAL: &str = "eval:total";

/// With `--reveal-loss`: the step's summed loss, and the sum the runner keeps of an
/// epoch's, which `loss_total` reveals to the model owner.
pub const LOSS_STEP: &str = "loss:step";
pub const LOSS_TOTAL: &str = "loss:total";

/// The rows of the current step, gathered by the runner from [`DATA_X`] / [`DATA_Y`].
pub const BATCH_X: &str = "batch:x";
pub const BATCH_Y: &str = "batch:y";

/// The fixed-point plan: fractional bits and the clips that let the verifier prove that no
/// value wraps the 64-bit ring (docs/training.md, "Headroom"). A clip that binds changes
/// the result; the defaults are far above what these models reach.
#[derive(Clone, Debug, PartialEq)]
pub struct Numerics {
    /// Fractional bits of every activation, gradient and parameter.
    pub frac: u32,
    /// Fractional bits the data owner encodes its values with (`i16`: `|x| < 2^(15 − data_frac)`).
    pub data_frac: u32,
    /// Parameters are clipped to ± this after every update.
    pub weight: f64,
    /// Activations are clipped to ± this (ReLU outputs to `[0, act]`).
    pub act: f64,
    /// Logits are clipped to ± this.
    pub logit: f64,
    /// Gradients of activations are clipped to ± this.
    pub grad: f64,
    /// Gradients of parameters (summed over the batch) are clipped to ± this.
    pub wgrad: f64,
    /// Adam: batch-mean gradients are clipped to ± this (a power of two at most 4, so
    /// the second moment's integer stays within 2^44).
    pub adam_grad: f64,
}

impl Default for Numerics {
    fn default() -> Self {
        Numerics {
            frac: 16,
            data_frac: 12,
            weight: 8.0,
            act: 64.0,
            logit: 32.0,
            grad: 16.0,
            wgrad: 16384.0,
            adam_grad: 4.0,
        }
    }
}

impl Numerics {
    /// The data owner's largest value.
    pub fn data_range(&self) -> f64 {
        (1i64 << (15 - self.data_frac)) as f64
    }
    /// Momenta stay within ± this: `|v| ≤ μ|v| + 1 + wgrad` holds for every
    /// `|v| ≤ (wgrad + 2) / (1 − μ)`, so a store never breaks the state's bounds.
    fn momentum_bound(&self, momentum: f64) -> f64 {
        let need = (self.wgrad + 2.0) / (1.0 - momentum).max(1e-3);
        2f64.powi(need.log2().ceil() as i32)
    }
}

/// How the step updates the parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// SGD with momentum (PyTorch's: `v ← μ v + g`, `w ← w − lr v`).
    Sgd { momentum: f64 },
    /// Adam (PyTorch's, without weight decay; `ε` is in effect `2^-12`, see
    /// [`adam`]).
    Adam { beta1: f64, beta2: f64 },
}

/// What the step minimizes, averaged over the batch (and for MSE over the outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy against integer class labels (PyTorch's `CrossEntropyLoss`).
    CrossEntropy,
    /// Mean squared error against float targets `[N, C]` (PyTorch's `MSELoss`), within
    /// the data range (`|y| < 8`).
    Mse,
}

/// What a training session is compiled for.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Rows per step (the last rows of an epoch that do not fill a batch are left out).
    pub batch: usize,
    pub lr: f64,
    pub optimizer: Optimizer,
    pub loss: Loss,
    /// Rows of the data set, all owners together.
    pub rows: usize,
    /// Rows of the test set, if the model owner asks for the test accuracy.
    pub test_rows: Option<usize>,
    pub trunc: TruncMode,
    pub numerics: Numerics,
    /// Whether the step keeps its summed loss for the runner to reveal after each epoch.
    pub reveal_loss: bool,
}

/// The compiled programs of a training session.
pub struct Training {
    pub model: Model,
    pub optimizer: Optimizer,
    pub loss: Loss,
    pub classes: usize,
    pub numerics: Numerics,
    pub setup_model: Program,
    /// The model owner's initial parameters for `setup_model`, in fixed point.
    pub weights: Weights,
    /// One data owner's rows (batched: any number of rows).
    pub setup_data: Program,
    pub step: Program,
    pub eval: Option<Eval>,
    /// With `reveal_loss`: reveals [`LOSS_TOTAL`] (a float, the epoch's summed loss).
    pub loss_total: Option<Program>,
    pub finish: Program,
}

/// Counting the test rows classified right: `chunk` runs on `rows` rows at a time and
/// stores its count in [`EVAL_COUNT`]; the runner adds the counts' shares into
/// [`EVAL_TOTAL`] (a local sum), which `total` reveals to the model owner.
pub struct Eval {
    pub chunk: Program,
    pub rows: usize,
    pub total: Program,
}

/// Compile the training programs of the float ONNX model `bytes` (`file` names it).
pub fn compile(bytes: &[u8], file: &str, opts: &TrainOptions) -> Result<Training, String> {
    let model = Model::read(bytes, file)?;
    let num = opts.numerics.clone();
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        return Err(format!(
            "the learning rate must be positive, not {}",
            opts.lr
        ));
    }
    match opts.optimizer {
        Optimizer::Sgd { momentum } if !(0.0..1.0).contains(&momentum) => {
            return Err(format!("the momentum must be in [0, 1), not {momentum}"));
        }
        Optimizer::Adam { beta1, beta2 }
            if !(0.0..1.0).contains(&beta1)
                || !(0.0..1.0).contains(&beta2)
                || beta1 * beta1 >= beta2 =>
        {
            return Err(format!(
                "Adam's betas must be in [0, 1) with β1² < β2 (its update's bound), \
                 not ({beta1}, {beta2})"
            ));
        }
        _ => {}
    }
    if opts.loss == Loss::Mse && opts.test_rows.is_some() {
        return Err(
            "the test count compares arg-maxes with class labels; a model trained with MSE \
             has no classes to count (leave out --test-data)"
                .into(),
        );
    }
    if opts.batch == 0 || opts.batch > opts.rows {
        return Err(format!(
            "a batch of {} rows from a data set of {}",
            opts.batch, opts.rows
        ));
    }
    let shapes = model.sample_dims_of().map_err(|e| format!("{file}: {e}"))?;
    let out = &shapes[&model.output];
    let [classes] = out.as_slice() else {
        return Err(format!(
            "{file}: the output `{}` must be a vector of class scores per sample, is {out:?}",
            model.output
        ));
    };
    let classes = *classes;
    let build = Build {
        model: &model,
        num: &num,
        opts,
        classes,
    };
    let (setup_model, weights) = build.setup_model().map_err(|e| format!("{file}: {e}"))?;
    let setup_data = build.program(Build::setup_data, "setup_data")?;
    let step = build.program(Build::step, "step")?;
    let eval = match opts.test_rows {
        Some(n) => {
            let rows = n.clamp(1, EVAL_CHUNK);
            let padded = n.div_ceil(rows) * rows;
            Some(Eval {
                chunk: build.program(|b, g| b.eval(g, rows), "eval")?,
                rows,
                total: build.program(|b, g| b.eval_total(g, padded), "eval_total")?,
            })
        }
        None => None,
    };
    let finish = build.program(Build::finish, "finish")?;
    let loss_total = if opts.reveal_loss {
        let decl = step
            .states
            .iter()
            .find(|s| s.name == LOSS_STEP)
            .cloned()
            .ok_or("the step stores no loss")?;
        let steps = (opts.rows / opts.batch) as i64;
        Some(build.program(|b, g| b.loss_total(g, &decl, steps), "loss_total")?)
    } else {
        None
    };
    Ok(Training {
        loss_total,
        model: model.clone(),
        optimizer: opts.optimizer,
        loss: opts.loss,
        classes,
        numerics: num,
        setup_model,
        weights,
        setup_data,
        step,
        eval,
        finish,
    })
}

struct Build<'a> {
    model: &'a Model,
    num: &'a Numerics,
    opts: &'a TrainOptions,
    classes: usize,
}

fn fx_type(frac: u32, dims: &[usize], batched: bool) -> TensorType {
    TensorType {
        dtype: DType::Fx(frac as u8),
        dims: dims.to_vec(),
        batched,
    }
}

impl Build<'_> {
    fn compile_opts(&self) -> Options {
        Options {
            weights: WeightsMode::Secret,
            trunc: self.opts.trunc,
            passes: passes::PassSet::default(),
            progress: None,
        }
    }

    /// Lower and verify the graph `f` builds.
    fn program(
        &self,
        f: impl Fn(&Self, &mut Graph) -> R<()>,
        name: &str,
    ) -> Result<Program, String> {
        let mut g = Graph {
            name: name.into(),
            trunc: self.opts.trunc,
            ..Graph::default()
        };
        f(self, &mut g).map_err(|e| format!("training program `{name}`: {e}"))?;
        self.finish_graph(g, name).map(|(p, _)| p)
    }

    fn finish_graph(&self, mut g: Graph, name: &str) -> Result<(Program, Weights), String> {
        passes::dead_code_elimination(&mut g);
        passes::schedule(&mut g);
        let (p, w) = lower::lower(&g, &self.compile_opts())
            .map_err(|e| format!("training program `{name}`: {e}"))?;
        qmpc_bytecode::verify::verify(&p)
            .map_err(|e| format!("training program `{name}` does not verify: {e}"))?;
        Ok((p, w))
    }

    fn param_decl(&self, i: usize) -> StateDecl {
        let p = &self.model.params[i];
        let w = fixed(self.num.weight, self.num.frac);
        StateDecl {
            name: param_state(&p.name),
            ty: fx_type(self.num.frac, &p.dims, false),
            lo: -w,
            hi: w,
        }
    }

    fn momentum_decl(&self, i: usize) -> StateDecl {
        let p = &self.model.params[i];
        let (bound, frac) = match self.opts.optimizer {
            Optimizer::Sgd { momentum } => (self.num.momentum_bound(momentum), self.num.frac),
            Optimizer::Adam { .. } => (self.num.adam_grad, adam::MOMENT_FRAC),
        };
        let v = fixed(bound, frac);
        StateDecl {
            name: momentum_state(&p.name),
            ty: fx_type(frac, &p.dims, false),
            lo: -v,
            hi: v,
        }
    }

    /// Adam's second moment of parameter `i`.
    fn variance_decl(&self, i: usize) -> StateDecl {
        let p = &self.model.params[i];
        StateDecl {
            name: variance_state(&p.name),
            ty: fx_type(adam::ADAM_VFRAC, &p.dims, false),
            lo: 0,
            hi: adam::v_bound(self.num),
        }
    }

    /// Rows of `rows` samples (`batched`: any number at run time).
    fn x_decl(&self, name: &str, rows: usize, batched: bool) -> StateDecl {
        let mut dims = vec![rows];
        dims.extend(&self.model.sample_dims);
        let (lo, hi) = self.data_bounds();
        StateDecl {
            name: name.into(),
            ty: fx_type(self.num.frac, &dims, batched),
            lo,
            hi,
        }
    }

    /// One-hot labels (cross-entropy) or float targets (MSE, encoded as the rows are).
    fn y_decl(&self, name: &str, rows: usize, batched: bool) -> StateDecl {
        let (lo, hi) = match self.opts.loss {
            Loss::CrossEntropy => (0, 255 << self.num.frac),
            Loss::Mse => self.data_bounds(),
        };
        StateDecl {
            name: name.into(),
            ty: fx_type(self.num.frac, &[rows, self.classes], batched),
            lo,
            hi,
        }
    }

    /// The bounds of a data owner's `i16` values once in fixed point.
    fn data_bounds(&self) -> (i64, i64) {
        let unit = 1i64 << (self.num.frac - self.num.data_frac);
        let b = (1i64 << 15) * unit;
        (-b, b - unit)
    }

    /// A data owner's float rows, encoded as `i16` with `data_frac` fractional bits.
    fn rows_input(&self, name: &str, dims: Vec<usize>, batched: bool) -> InputDecl {
        InputDecl {
            name: name.into(),
            external: ExternalType::F32,
            quant: Some(fixed_point(self.num.data_frac)),
            ty: TensorType {
                dtype: DType::I16,
                dims,
                batched,
            },
        }
    }

    /// The model owner's parameters, in fixed point and within the weight clip.
    fn initial_weights(&self) -> R<Vec<(String, qmpc_bytecode::ConstTensor)>> {
        let w = self.num.weight;
        self.model
            .params
            .iter()
            .map(|p| {
                if let Some(v) = p
                    .values
                    .iter()
                    .find(|v| !v.is_finite() || v.abs() as f64 > w)
                {
                    return Err(format!(
                        "initializer `{}` holds {v}, outside the weight range ±{w}",
                        p.name
                    ));
                }
                Ok((
                    p.name.clone(),
                    qmpc_bytecode::ConstTensor {
                        dtype: DType::Fx(self.num.frac as u8),
                        dims: p.dims.clone(),
                        data: p
                            .values
                            .iter()
                            .map(|&v| fixed(v as f64, self.num.frac))
                            .collect(),
                    },
                ))
            })
            .collect()
    }

    fn setup_model(&self) -> R<(Program, Weights)> {
        let mut g = Graph {
            name: "setup_model".into(),
            trunc: self.opts.trunc,
            ..Graph::default()
        };
        let weights = self.initial_weights()?;
        for (i, (name, data)) in weights.into_iter().enumerate() {
            let decl = self.param_decl(i);
            let (lo, hi) = (decl.lo, decl.hi);
            let ps = g.add_state(decl);
            let w = g.add_weight(&name, data.clone(), &name);
            // The owner promises the clip; the VM checks its values against it on loading.
            g.g[w].decl.lo = lo;
            g.g[w].decl.hi = hi;
            g.add_store(ps, w, &name)?;
            let ms = g.add_state(self.momentum_decl(i));
            let mut e = Emit {
                g: &mut g,
                origin: name.clone(),
            };
            let mfrac = self.momentum_decl(i).ty.dtype.frac() as u32;
            let zeros = e.konst(mfrac, &data.dims, vec![0; data.data.len()]);
            if let Optimizer::Adam { .. } = self.opts.optimizer {
                let vzeros = e.konst(adam::ADAM_VFRAC, &data.dims, vec![0; data.data.len()]);
                let vs = g.add_state(self.variance_decl(i));
                g.add_store(vs, vzeros, &name)?;
            }
            g.add_store(ms, zeros, &name)?;
        }
        self.finish_graph(g, "setup_model")
    }

    /// A data owner's rows (`i16` with `data_frac` fractional bits) and one-hot labels.
    fn setup_data(&self, g: &mut Graph) -> R<()> {
        let rows = self.opts.batch;
        let mut xdims = vec![rows];
        xdims.extend(&self.model.sample_dims);
        let x = g.add_input(self.rows_input("data", xdims, true), "data");
        let (labels, shift) = match self.opts.loss {
            Loss::CrossEntropy => (
                InputDecl {
                    name: "labels".into(),
                    external: ExternalType::F32,
                    quant: Some(QuantParams {
                        scale: vec![1.0],
                        zero_point: vec![0],
                        axis: 0,
                        block: 0,
                    }),
                    ty: TensorType {
                        dtype: DType::U8,
                        dims: vec![rows, self.classes],
                        batched: true,
                    },
                },
                self.num.frac,
            ),
            Loss::Mse => (
                self.rows_input("labels", vec![rows, self.classes], true),
                self.num.frac - self.num.data_frac,
            ),
        };
        let y = g.add_input(labels, "labels");
        let xs = g.add_state(self.x_decl(DATA_X, rows, true));
        let ys = g.add_state(self.y_decl(DATA_Y, rows, true));
        let mut e = Emit {
            g,
            origin: "data".into(),
        };
        let x = to_fixed(&mut e, x, self.num.frac - self.num.data_frac, self.num.frac)?;
        e.origin = "labels".into();
        let y = to_fixed(&mut e, y, shift, self.num.frac)?;
        g.add_store(xs, x, "data")?;
        g.add_store(ys, y, "labels")?;
        Ok(())
    }

    /// Load every parameter; returns their nodes by index and their state indices.
    fn load_params(&self, g: &mut Graph) -> R<(Vec<NodeIndex>, Vec<usize>)> {
        let mut nodes = Vec::new();
        let mut states = Vec::new();
        for i in 0..self.model.params.len() {
            let s = g.add_state(self.param_decl(i));
            nodes.push(g.add_load(s, &self.model.params[i].name)?);
            states.push(s);
        }
        Ok((nodes, states))
    }

    fn step(&self, g: &mut Graph) -> R<()> {
        let b = self.opts.batch;
        let xs = g.add_state(self.x_decl(BATCH_X, b, false));
        let ys = g.add_state(self.y_decl(BATCH_Y, b, false));
        let x = g.add_load(xs, BATCH_X)?;
        let y = g.add_load(ys, BATCH_Y)?;
        let (params, pstates) = self.load_params(g)?;
        let mut e = Emit {
            g,
            origin: String::new(),
        };
        let fwd = step::forward(&mut e, self.model, self.num, x, &params, step::Pass::Train)?;
        let step::Backward { grads, loss } = step::backward(
            &mut e,
            self.model,
            self.num,
            self.opts.loss,
            &fwd,
            y,
            &params,
        )?;
        if self.opts.reveal_loss {
            let decl = e.g.decl(loss).clone();
            let ls = e.g.add_state(StateDecl {
                name: LOSS_STEP.into(),
                ty: decl.ty,
                lo: decl.lo,
                hi: decl.hi,
            });
            e.g.add_store(ls, loss, "loss")?;
        }
        let momentum = match self.opts.optimizer {
            Optimizer::Sgd { momentum } => momentum,
            Optimizer::Adam { beta1, beta2 } => {
                return self.adam_update(e, &params, &pstates, &grads, (beta1, beta2));
            }
        };
        // SGD with momentum (PyTorch's): v ← μ v + g, w ← w − (lr / B) v, then the clip.
        let frac = self.num.frac;
        let (mu_num, mu_den) = (fixed(momentum, 20), 1i64 << 20);
        let (lr_num, lr_den) = (fixed(self.opts.lr, 20), (b as i64) << 20);
        let wmax = fixed(self.num.weight, frac);
        let mut stores = Vec::new();
        for (i, p) in self.model.params.iter().enumerate() {
            e.origin = format!("{}/update", p.name);
            let ms = e.g.add_state(self.momentum_decl(i));
            let v = e.g.add_load(ms, &p.name)?;
            let mv = e.rescale(v, (mu_num, mu_den), frac)?;
            let v2 = e.add(mv, grads[i])?;
            let den = e.int(lr_den);
            let num = e.int(lr_num);
            let scaled_w = e.mul(params[i], den)?;
            let step = e.mul(v2, num)?;
            let target = e.sub(scaled_w, step)?;
            let w2 = e.requant(target, (1, lr_den), (-wmax, wmax), frac)?;
            stores.push((pstates[i], w2, ms, v2, p.name.clone()));
        }
        for (ps, w2, ms, v2, name) in stores {
            g.add_store(ps, w2, &name)?;
            g.add_store(ms, v2, &name)?;
        }
        Ok(())
    }

    /// Adam's update of every parameter ([`adam`]).
    fn adam_update(
        &self,
        mut e: Emit,
        params: &[NodeIndex],
        pstates: &[usize],
        grads: &[NodeIndex],
        (beta1, beta2): (f64, f64),
    ) -> R<()> {
        e.origin = "adam".into();
        let ss = e.g.add_state(StateDecl {
            name: adam::ADAM_SCALE.into(),
            ty: fx_type(adam::SCALE_FRAC, &[1], false),
            lo: 0,
            hi: 2 << adam::SCALE_FRAC,
        });
        let scale = e.g.add_load(ss, adam::ADAM_SCALE)?;
        let adam = adam::Adam {
            num: self.num,
            lr: self.opts.lr,
            beta1,
            beta2,
            batch: self.opts.batch,
            scale,
        };
        let mut stores = Vec::new();
        for (i, p) in self.model.params.iter().enumerate() {
            e.origin = format!("{}/update", p.name);
            let ms = e.g.add_state(self.momentum_decl(i));
            let vs = e.g.add_state(self.variance_decl(i));
            let m = e.g.add_load(ms, &p.name)?;
            let v = e.g.add_load(vs, &p.name)?;
            let next = adam.update(&mut e, params[i], grads[i], m, v)?;
            stores.push((pstates[i], next.w, p.name.clone()));
            stores.push((ms, next.m, p.name.clone()));
            stores.push((vs, next.v, p.name.clone()));
        }
        for (s, x, name) in stores {
            e.g.add_store(s, x, &name)?;
        }
        Ok(())
    }

    /// The count of test rows whose arg-max is their label, into [`EVAL_COUNT`].
    fn eval(&self, g: &mut Graph, rows: usize) -> R<()> {
        let mut xdims = vec![rows];
        xdims.extend(&self.model.sample_dims);
        let x = g.add_input(self.rows_input("test_data", xdims, false), "test_data");
        let labels = g.add_input(
            InputDecl {
                name: "test_labels".into(),
                external: ExternalType::I64,
                quant: None,
                ty: TensorType {
                    dtype: DType::U8,
                    dims: vec![rows],
                    batched: false,
                },
            },
            "test_labels",
        );
        let (params, _) = self.load_params(g)?;
        let mut e = Emit {
            g,
            origin: "test_data".into(),
        };
        let x = to_fixed(&mut e, x, self.num.frac - self.num.data_frac, self.num.frac)?;
        let fwd = step::forward(&mut e, self.model, self.num, x, &params, step::Pass::Eval)?;
        e.origin = "accuracy".into();
        let arg = e.argmax_rows(fwd.logits)?;
        let diff = e.sub(arg, labels)?;
        let (lo, hi) = (e.g.decl(diff).lo, e.g.decl(diff).hi);
        let hit: Vec<i64> = (lo..=hi).map(|d| i64::from(d == 0)).collect();
        let right = e.lookup(diff, hit, lo, 0)?;
        let right = e.reshape(right, &[1, rows])?;
        let ones = e.konst(0, &[rows, 1], vec![1; rows]);
        let count = e.matmul(right, ones)?;
        let decl = g.decl(count).clone();
        let s = g.add_state(StateDecl {
            name: EVAL_COUNT.into(),
            ty: decl.ty,
            lo: 0,
            hi: decl.hi,
        });
        g.add_store(s, count, "accuracy")?;
        Ok(())
    }

    /// The sum of the chunks' counts (at most `rows`), to the model owner.
    fn eval_total(&self, g: &mut Graph, rows: usize) -> R<()> {
        let s = g.add_state(StateDecl {
            name: EVAL_TOTAL.into(),
            ty: TensorType {
                dtype: DType::I32,
                dims: vec![1, 1],
                batched: false,
            },
            lo: 0,
            hi: rows as i64,
        });
        let total = g.add_load(s, "accuracy")?;
        g.add_output(
            OutputDecl {
                name: "correct".into(),
                external: ExternalType::I64,
                dequant: None,
                post: PostOp::None,
            },
            total,
            "accuracy",
        );
        Ok(())
    }

    /// The epoch's summed loss (`steps` steps' sums, each within `step`'s bounds), as a
    /// float, to the model owner.
    fn loss_total(&self, g: &mut Graph, step: &StateDecl, steps: i64) -> R<()> {
        let s = g.add_state(StateDecl {
            name: LOSS_TOTAL.into(),
            ty: step.ty.clone(),
            lo: step.lo.saturating_mul(steps),
            hi: step.hi.saturating_mul(steps),
        });
        let total = g.add_load(s, "loss")?;
        g.add_output(
            OutputDecl {
                name: "loss".into(),
                external: ExternalType::F32,
                dequant: Some(fixed_point(self.num.frac)),
                post: PostOp::None,
            },
            total,
            "loss",
        );
        Ok(())
    }

    /// Every trained parameter, as floats, to the model owner.
    fn finish(&self, g: &mut Graph) -> R<()> {
        let (params, _) = self.load_params(g)?;
        for (p, n) in self.model.params.iter().zip(params) {
            g.add_output(
                OutputDecl {
                    name: p.name.clone(),
                    external: ExternalType::F32,
                    dequant: Some(fixed_point(self.num.frac)),
                    post: PostOp::None,
                },
                n,
                &p.name,
            );
        }
        Ok(())
    }
}

/// Integers `x` times `2^shift`, read with `frac` fractional bits.
fn to_fixed(e: &mut Emit, x: NodeIndex, shift: u32, frac: u32) -> R<NodeIndex> {
    let k = e.int(1i64 << shift);
    let v = e.mul(x, k)?;
    e.cast(v, frac)
}

/// The quantization of a fixed-point value with `frac` fractional bits: `v · 2^-frac`.
fn fixed_point(frac: u32) -> QuantParams {
    QuantParams {
        scale: vec![2f32.powi(-(frac as i32))],
        zero_point: vec![0],
        axis: 0,
        block: 0,
    }
}

/// A nonlinear function of training, for measuring its error over its documented range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Function {
    /// `exp(x)` for `x ≤ 0`.
    Exp,
    /// `1 / x` for `1 ≤ x ≤ max`.
    Reciprocal { max: f64 },
    /// Softmax over rows of `classes` values.
    Softmax { classes: usize },
    /// `1 / √x` for `2^-frac ≤ x ≤ 16` (smaller values read as `2^-frac`).
    Rsqrt,
}

/// A program applying `f` to `n` float inputs (`Softmax`: `n / classes` rows), each first
/// clipped to the function's domain, with `frac` fractional bits; its output is float.
pub fn function_program(f: Function, n: usize, frac: u32) -> Result<Program, String> {
    let one = 1i64 << frac;
    let mut g = Graph {
        name: "function".into(),
        ..Graph::default()
    };
    let dims = match f {
        Function::Softmax { classes } => vec![n / classes, classes],
        _ => vec![n],
    };
    let x = g.add_input(
        InputDecl {
            name: "x".into(),
            external: ExternalType::F32,
            quant: Some(fixed_point(frac)),
            ty: TensorType {
                dtype: DType::I32,
                dims,
                batched: false,
            },
        },
        "x",
    );
    let mut e = Emit {
        g: &mut g,
        origin: "function".into(),
    };
    let x = e.cast(x, frac)?;
    let y = match f {
        Function::Exp => {
            let x = e.clamp(x, -64 * one, 0)?;
            nonlinear::exp_nonpositive(&mut e, x)?
        }
        Function::Reciprocal { max } => {
            let x = e.clamp(x, one, fixed(max, frac))?;
            nonlinear::reciprocal(&mut e, x, max)?
        }
        Function::Softmax { .. } => {
            let x = e.clamp(x, -32 * one, 32 * one)?;
            nonlinear::softmax(&mut e, x)?
        }
        Function::Rsqrt => {
            // Adam's second moments have 40 fractional bits and stay within 16.
            let x = e.clamp(x, 0, 16 * one)?;
            let wide = e.int(1 << (adam::ADAM_VFRAC - frac));
            let v = e.mul(x, wide)?;
            let v = e.cast(v, adam::ADAM_VFRAC)?;
            let v = e.reshape(v, &[n, 1])?;
            let r = nonlinear::rsqrt(&mut e, v, 45)?;
            e.reshape(r, &[n])?
        }
    };
    g.add_output(
        OutputDecl {
            name: "y".into(),
            external: ExternalType::F32,
            dequant: Some(fixed_point(frac)),
            post: PostOp::None,
        },
        y,
        "y",
    );
    passes::dead_code_elimination(&mut g);
    let opts = Options::default();
    let (p, _) = lower::lower(&g, &opts)?;
    qmpc_bytecode::verify::verify(&p).map_err(|e| e.to_string())?;
    Ok(p)
}
