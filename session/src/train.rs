//! `qmpc train`: compile the training programs of a float ONNX export, then run the
//! session in every party — share the model and the data once, run the step over the
//! batches of a public per-epoch shuffle, count the test rows classified right, and reveal
//! the trained parameters to the model owner, who writes the trained ONNX file.

use crate::io::quantize_input;
use crate::npy::{self, Array};
use crate::party;
use anyhow::{bail, Context, Result};
use qmpc_compiler::train::{self as tc, TrainOptions, Training};
use qmpc_protocols::net::Transport;
use qmpc_protocols::net::{Hello, Mesh, Stats, Timeouts};
use qmpc_protocols::planes::Plane;
use qmpc_protocols::registry::{DealerMode, DealerRole, DealerVisitor, Party, PartyVisitor};
use qmpc_protocols::{PartyId, Protocol, Spec, TruncMode};
use qmpc_vm::bytecode::{Program, Weights};
use qmpc_vm::interp::{self, PartyData, Roles, Shared, States};
use qmpc_vm::tensor::Tensor;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The most dealer material one step may take: it is held whole by the dealer and by
/// the last party while the run goes.
const MAX_DEALT_PER_STEP: u64 = 4_000_000_000;

/// The public choices of a training session: every party must make them alike (`qmpc
/// party --train` compares them at start-up).
#[derive(Clone, Debug)]
pub struct Settings {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub optimizer: tc::Optimizer,
    pub loss: tc::Loss,
    pub trunc: TruncMode,
    /// Seed of the public shuffle.
    pub seed: u64,
    /// Reveal each epoch's mean training loss to the model owner.
    pub reveal_loss: bool,
}

impl Settings {
    /// The compiler's options for a data set of `rows` rows and `test_rows` test rows.
    pub fn options(&self, rows: usize, test_rows: Option<usize>) -> TrainOptions {
        TrainOptions {
            batch: self.batch,
            lr: self.lr,
            optimizer: self.optimizer,
            loss: self.loss,
            rows,
            test_rows,
            trunc: self.trunc,
            numerics: tc::Numerics::default(),
            reveal_loss: self.reveal_loss,
        }
    }

    /// Each choice as a flag and its value (floats in Rust's shortest round-trip form),
    /// to compare with another party's.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("--epochs", self.epochs.to_string()),
            ("--batch", self.batch.to_string()),
            ("--lr", format!("{:?}", self.lr)),
            (
                "--loss",
                match self.loss {
                    tc::Loss::CrossEntropy => "cross-entropy",
                    tc::Loss::Mse => "mse",
                }
                .into(),
            ),
        ];
        match self.optimizer {
            tc::Optimizer::Sgd { momentum } => {
                f.push(("--optimizer", "sgd".into()));
                f.push(("--momentum", format!("{momentum:?}")));
            }
            tc::Optimizer::Adam { beta1, beta2 } => {
                f.push(("--optimizer", "adam".into()));
                f.push(("--beta1", format!("{beta1:?}")));
                f.push(("--beta2", format!("{beta2:?}")));
            }
        }
        f.push((
            "--trunc",
            match self.trunc {
                TruncMode::Exact => "exact",
                TruncMode::Probabilistic => "probabilistic",
            }
            .into(),
        ));
        f.push(("--seed", self.seed.to_string()));
        f.push(("--reveal-loss", self.reveal_loss.to_string()));
        f
    }
}

/// What `qmpc train` was asked.
pub struct TrainArgs {
    pub model: PathBuf,
    /// Each data owner's rows and labels, by party.
    pub data: Vec<(PartyId, PathBuf)>,
    pub labels: Vec<(PartyId, PathBuf)>,
    pub test_data: Option<PathBuf>,
    pub test_labels: Option<PathBuf>,
    pub settings: Settings,
    pub protocol: String,
    pub parties: Option<usize>,
    /// `--favor`: what the protocol's constructions save (rep3 only).
    pub favor: qmpc_protocols::Favor,
    pub output: PathBuf,
    pub stats: Option<PathBuf>,
    pub timeouts: Timeouts,
}

/// `FILE` (party 1's) or `P=FILE` (party P's), once per data owner.
pub fn owned_files(flag: &str, values: &[String]) -> Result<Vec<(PartyId, PathBuf)>> {
    let mut out: Vec<(PartyId, PathBuf)> = Vec::new();
    for v in values {
        let (party, file) = match v.split_once('=') {
            Some((p, f)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (
                p.parse()
                    .with_context(|| format!("{flag} {v}: `{p}` is not a party id"))?,
                f,
            ),
            _ => (1, v.as_str()),
        };
        if out.iter().any(|(q, _)| *q == party) {
            bail!("{flag} names party {party} twice");
        }
        out.push((party, PathBuf::from(file)));
    }
    Ok(out)
}

/// The public shuffle of epoch `epoch`: Fisher–Yates driven by splitmix64 from `seed`
/// (docs/training.md; `models/train/make_train_refs.py` implements the same).
pub fn epoch_perm(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut state = seed ^ (epoch + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// The data owner's rows, quantized as `setup_data` takes them, with one-hot labels.
pub(crate) fn read_rows(
    program: &Program,
    x: &Array,
    labels: &Array,
    classes: usize,
    loss: tc::Loss,
) -> Result<Vec<Tensor<i64>>> {
    let n = x.dims().first().copied().unwrap_or(0);
    if loss == tc::Loss::Mse {
        // Float targets, one row of `classes` per sample, encoded as the rows are.
        if !matches!(labels, Array::F32(..)) || labels.dims() != [n, classes] {
            bail!(
                "--loss mse takes float32 targets of shape [{n}, {classes}], not {:?}",
                labels.dims()
            );
        }
        let [xd, yd] = program.inputs.as_slice() else {
            bail!("the data program takes rows and targets");
        };
        let (xq, _) = quantize_input(xd, x).context("--data")?;
        let (yq, _) = quantize_input(yd, labels).context("--labels")?;
        return Ok(vec![xq, yq]);
    }
    let Array::Int(ld, lv, _) = labels else {
        bail!("labels must be integer class indices, the file holds float32");
    };
    if ld.as_slice() != [n] {
        bail!("{} rows of data but labels of shape {ld:?}", n);
    }
    if let Some(bad) = lv.iter().find(|&&c| c < 0 || c as usize >= classes) {
        bail!("label {bad} is not a class of a model with {classes} outputs");
    }
    let mut onehot = vec![0f32; n * classes];
    for (r, &c) in lv.iter().enumerate() {
        onehot[r * classes + c as usize] = 1.0;
    }
    let (xq, _) = quantize_input(&program.inputs[0], x).context("--data")?;
    let (yq, _) = quantize_input(&program.inputs[1], &Array::F32(vec![n, classes], onehot))?;
    Ok(vec![xq, yq])
}

/// Chunks of `rows` rows that hold `n` test rows (public: every party counts them).
pub(crate) fn test_chunks(n: usize, rows: usize) -> usize {
    n.div_ceil(rows).max(1)
}

/// The test rows padded to whole chunks of `rows`: zero rows labelled 255, a class no
/// model here has, so they never count.
fn padded_test(x: &Array, labels: &Array, rows: usize) -> Result<(Array, Array, usize)> {
    let (Array::F32(xd, xv), Array::Int(ld, lv, t)) = (x, labels) else {
        bail!("test rows must be float32 and test labels integers");
    };
    let n = xd.first().copied().unwrap_or(0);
    if ld.as_slice() != [n] {
        bail!("{n} test rows but test labels of shape {ld:?}");
    }
    let chunks = test_chunks(n, rows);
    let row: usize = xd[1..].iter().product();
    let mut xd = xd.clone();
    xd[0] = chunks * rows;
    let mut xv = xv.clone();
    xv.resize(chunks * rows * row, 0.0);
    let mut lv = lv.clone();
    lv.resize(chunks * rows, 255);
    Ok((
        Array::F32(xd, xv),
        Array::Int(vec![chunks * rows], lv, t),
        chunks,
    ))
}

/// What one party brings to the session.
#[derive(Default)]
pub(crate) struct Owned {
    pub weights: Option<Arc<Weights>>,
    /// The rows and labels of the data owners this party is, by their place in
    /// [`Plan::owners`].
    pub data: BTreeMap<usize, Vec<Tensor<i64>>>,
    pub test: Option<Vec<Tensor<i64>>>,
}

/// What the session is: the programs and the public schedule.
pub(crate) struct Plan<'a> {
    pub t: &'a Training,
    pub epochs: usize,
    pub batch: usize,
    pub rows: usize,
    /// The data owners in order, and their rows: the data set is their rows one after
    /// the other.
    pub owners: Vec<(PartyId, usize)>,
    pub seed: u64,
    pub roles: Roles,
    /// The party that shares the test rows.
    pub test_owner: PartyId,
    /// Chunks of the padded test set (0 without one).
    pub test_chunks: usize,
    /// Whether this party prints progress (the model owner does).
    pub talk: bool,
}

/// What one party has at the end.
#[derive(Default)]
pub(crate) struct Outcome {
    pub params: Option<Vec<Option<Tensor<i64>>>>,
    pub correct: Vec<i64>,
    /// With `--reveal-loss`, at the model owner: each epoch's summed loss (fixed point).
    pub losses: Vec<i64>,
    pub stats: Stats,
    /// The traffic of the first step alone (`qmpc cost --train` predicts it).
    pub step: Stats,
}

/// The sharings one after the other along their first axis.
fn concat_rows<S: Plane>(parts: &[Shared<S>]) -> Shared<S> {
    let mut dims = parts.first().map(|p| p.dims.clone()).unwrap_or_default();
    if let Some(d) = dims.first_mut() {
        *d = parts.iter().map(|p| p.dims[0]).sum();
    }
    let planes: Vec<&S> = parts.iter().map(|p| &p.data).collect();
    Shared::new(dims, S::concat(&planes))
}

/// `rows` of `src` (along its first axis), as a new sharing.
fn gather_rows<S: Plane>(src: &Shared<S>, rows: &[usize]) -> Shared<S> {
    let row: usize = src.dims[1..].iter().product();
    let idx: Vec<usize> = rows.iter().flat_map(|&r| r * row..(r + 1) * row).collect();
    let mut dims = src.dims.clone();
    dims[0] = rows.len();
    Shared::new(dims, src.data.gather(&idx))
}

/// Run the whole session in one party.
fn session_loop<P: Protocol + Send>(
    proto: &mut P,
    plan: &Plan,
    own: &Owned,
    online: impl Fn(&P) -> Stats,
) -> Result<Outcome> {
    let t = plan.t;
    let roles = plan.roles;
    let owner = Roles {
        output_to: roles.model_owner,
        ..roles
    };
    let mut states = States::new();
    let me_model = PartyData {
        inputs: None,
        weights: own.weights.clone(),
    };
    interp::run_session(&t.setup_model, proto, roles, &me_model, 1, &mut states)
        .context("sharing the model")?;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (k, &(owner, rows)) in plan.owners.iter().enumerate() {
        let data = PartyData {
            inputs: own.data.get(&k).cloned(),
            weights: None,
        };
        let r = Roles {
            data_owner: owner,
            ..roles
        };
        interp::run_session(&t.setup_data, proto, r, &data, rows, &mut states)
            .with_context(|| format!("sharing the rows of party {owner}"))?;
        xs.push(states.remove(tc::DATA_X).context("no shared data")?);
        ys.push(states.remove(tc::DATA_Y).context("no shared labels")?);
    }
    let (xs, ys) = (concat_rows(&xs), concat_rows(&ys));
    let steps = plan.rows / plan.batch;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut out = Outcome::default();
    let start = Instant::now();
    let before = online(proto);
    for epoch in 0..plan.epochs {
        let perm = epoch_perm(plan.rows, plan.seed, epoch as u64);
        let mut epoch_loss: Option<Shared<P::Shares>> = None;
        for s in 0..steps {
            let rows = &perm[s * plan.batch..(s + 1) * plan.batch];
            states.insert(tc::BATCH_X.into(), gather_rows(&xs, rows));
            states.insert(tc::BATCH_Y.into(), gather_rows(&ys, rows));
            if let tc::Optimizer::Adam { beta1, beta2 } = t.optimizer {
                // Adam's bias corrections for this step: public, the same in every party.
                let t = (epoch * steps + s + 1) as u64;
                let c = tc::adam::adam_scale(beta1, beta2, t);
                states.insert(
                    tc::adam::ADAM_SCALE.into(),
                    Shared::new(vec![1], proto.public(&[c])),
                );
            }
            interp::run_session(&t.step, proto, roles, &PartyData::default(), 1, &mut states)
                .with_context(|| format!("epoch {}, step {}", epoch + 1, s + 1))?;
            if let Some(l) = states.remove(tc::LOSS_STEP) {
                // The epoch's loss stays shared: a local sum of the steps' shares.
                epoch_loss = Some(match epoch_loss {
                    None => l,
                    Some(t) => Shared::new(t.dims.clone(), proto.add(&t.data, &l.data)),
                });
            }
            if epoch == 0 && s == 0 {
                out.step = online(proto).since(before);
            }
            // A malicious protocol verifies the step's products now rather than at the
            // next reveal: its record of unchecked values would otherwise grow with every
            // step of the epoch (≈ 430 MB per digits step under mal-rep3).
            proto
                .check()
                .with_context(|| format!("epoch {}, step {}: the check", epoch + 1, s + 1))?;
            // On a terminal the line is redrawn after every step; in a log, it is written
            // once per epoch.
            if plan.talk && (tty || s + 1 == steps) {
                let st = online(proto);
                let done = (epoch * steps + s + 1) * plan.batch;
                eprint!(
                    "{}epoch {}/{} batch {}/{steps}: {:.0} samples/s, {} rounds, {:.1} MB sent{}",
                    if tty { "\r" } else { "" },
                    epoch + 1,
                    plan.epochs,
                    s + 1,
                    done as f64 / start.elapsed().as_secs_f64().max(1e-9),
                    st.rounds,
                    st.bytes_sent as f64 / 1e6,
                    if tty { "   " } else { "" }
                );
            }
        }
        if let (Some(reveal), Some(total)) = (&t.loss_total, epoch_loss) {
            states.insert(tc::LOSS_TOTAL.into(), total);
            let got =
                interp::run_session(reveal, proto, owner, &PartyData::default(), 1, &mut states)
                    .context("revealing the epoch's loss")?;
            if let Some(Some(l)) = got.first() {
                out.losses.push(l.data.first().copied().unwrap_or(0));
            }
        }
        if let Some(eval) = &t.eval {
            let r = Roles {
                data_owner: plan.test_owner,
                ..roles
            };
            let c = count_right(proto, eval, plan.test_chunks, r, own, &mut states)
                .context("counting the test rows classified right")?;
            out.correct.extend(c);
        }
        if plan.talk {
            match out.correct.last() {
                Some(c) if t.eval.is_some() => {
                    eprintln!("{}test: {c} right", if tty { "" } else { ", " })
                }
                _ => eprintln!(),
            }
        }
    }
    let params = interp::run_session(
        &t.finish,
        proto,
        owner,
        &PartyData::default(),
        1,
        &mut states,
    )
    .context("revealing the trained parameters")?;
    if proto.party() == roles.model_owner {
        out.params = Some(params);
    }
    out.stats = online(proto);
    Ok(out)
}

/// Chunk `c` of `rows` rows of each tensor.
fn chunk_of(ts: &[Tensor<i64>], c: usize, rows: usize) -> Vec<Tensor<i64>> {
    ts.iter()
        .map(|t| {
            let row: usize = t.dims[1..].iter().product();
            let mut dims = t.dims.clone();
            dims[0] = rows;
            Tensor::new(dims, t.data[c * rows * row..(c + 1) * rows * row].to_vec())
        })
        .collect()
}

/// The count of test rows classified right: every chunk's count stays shared, their
/// shares are added here (a local sum), and only the total is revealed, to the model
/// owner. Returns it where this party is the model owner.
fn count_right<P: Protocol + Send>(
    proto: &mut P,
    eval: &tc::Eval,
    chunks: usize,
    roles: Roles,
    own: &Owned,
    states: &mut States<P::Shares>,
) -> Result<Option<i64>> {
    let mut total: Option<Shared<P::Shares>> = None;
    for c in 0..chunks {
        let data = PartyData {
            inputs: own.test.as_ref().map(|ts| chunk_of(ts, c, eval.rows)),
            weights: None,
        };
        interp::run_session(&eval.chunk, proto, roles, &data, 1, states)?;
        let count = states.remove(tc::EVAL_COUNT).context("no count")?;
        total = Some(match total {
            None => count,
            Some(t) => Shared::new(t.dims.clone(), proto.add(&t.data, &count.data)),
        });
    }
    states.insert(tc::EVAL_TOTAL.into(), total.context("no test rows")?);
    let owner = Roles {
        output_to: roles.model_owner,
        ..roles
    };
    let got = interp::run_session(&eval.total, proto, owner, &PartyData::default(), 1, states)?;
    Ok(got
        .first()
        .and_then(|c| c.as_ref())
        .map(|c| c.data.first().copied().unwrap_or(0)))
}

/// Runs the session in a freshly set-up networked party.
pub(crate) struct TrainWith<'a> {
    pub plan: &'a Plan<'a>,
    pub own: &'a Owned,
}

impl PartyVisitor for TrainWith<'_> {
    type Output = Result<Outcome>;
    fn visit<P: Party>(self, mut party: P) -> Result<Outcome> {
        let r = session_loop(&mut party, self.plan, self.own, |p: &P| p.online());
        if let Err(e) = &r {
            party.abort(&format!("training failed: {}", e.root_cause()));
        }
        r
    }
}

/// Walks the session in the dealer, sending each run's material as the run ends.
pub(crate) struct DealSession<'a> {
    pub plan: &'a Plan<'a>,
    pub net: Box<dyn Transport>,
}

impl DealerVisitor for DealSession<'_> {
    type Output = Result<Stats>;
    fn visit<D: DealerRole>(self, mut dealer: D) -> Result<Stats> {
        dealer.attach(self.net);
        let r = session_loop(&mut dealer, self.plan, &Owned::default(), |_| {
            Stats::default()
        });
        if let Err(e) = &r {
            dealer.abort_session(&format!("the dealer failed: {}", e.root_cause()));
        }
        r.map(|_| dealer.session_stats())
    }
}

/// Who plays which role in a training session of `n` parties: one party plays all of
/// them under `clear`.
pub fn session_roles(n: usize) -> Roles {
    if n == 1 {
        Roles {
            model_owner: 0,
            data_owner: 0,
            output_to: 0,
        }
    } else {
        Roles::default()
    }
}

/// The ring every program of the session fits: one ring for the whole session, since
/// the states outlive each program.
pub fn session_ring(spec: &Spec, t: &Training) -> u32 {
    let mut programs = vec![&t.setup_model, &t.setup_data, &t.step, &t.finish];
    if let Some(e) = &t.eval {
        programs.extend([&e.chunk, &e.total]);
    }
    programs
        .into_iter()
        .map(|p| qmpc_vm::cost::ring_bits(spec, p))
        .max()
        .unwrap_or(64)
}

/// `qmpc strip`: the float model at `model` with every trainable weight zero, written to
/// `output` — what the parties other than the model owner compile the training from
/// (the programs do not depend on the weights' values; the start-up compares them).
pub fn strip(model: &Path, output: &Path) -> Result<()> {
    let bytes =
        std::fs::read(model).with_context(|| format!("{}: cannot read", model.display()))?;
    let file = model.display().to_string();
    let m = tc::model::Model::read(&bytes, &file).map_err(anyhow::Error::msg)?;
    let zeros: Vec<(String, Vec<f32>)> = m
        .params
        .iter()
        .map(|p| (p.name.clone(), vec![0.0; p.values.len()]))
        .collect();
    let out = tc::model::with_params(&bytes, &file, &zeros).map_err(anyhow::Error::msg)?;
    std::fs::write(output, out).with_context(|| format!("{}: cannot write", output.display()))
}

/// The training programs of the float model at `path`.
pub fn compile(path: &std::path::Path, opts: &TrainOptions) -> Result<Training> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    tc::compile(&bytes, &path.display().to_string(), opts).map_err(anyhow::Error::msg)
}

/// The test rows and labels of `--test-data` / `--test-labels`, read.
pub(crate) fn read_test(
    data: Option<&PathBuf>,
    labels: Option<&PathBuf>,
) -> Result<Option<(Array, Array)>> {
    Ok(match (data, labels) {
        (Some(a), Some(b)) => Some((
            npy::read(a).with_context(|| format!("--test-data {}", a.display()))?,
            npy::read(b).with_context(|| format!("--test-labels {}", b.display()))?,
        )),
        (None, None) => None,
        _ => bail!("--test-data and --test-labels go together"),
    })
}

/// The test rows quantized for the count program, padded to whole chunks, and the
/// number of chunks (0 without a test set).
pub(crate) fn test_inputs(
    t: &Training,
    test: Option<&(Array, Array)>,
) -> Result<(Option<Vec<Tensor<i64>>>, usize)> {
    let (Some(eval), Some((tx, tl))) = (&t.eval, test) else {
        return Ok((None, 0));
    };
    let (x, labels, chunks) = padded_test(tx, tl, eval.rows)?;
    let decl = |i: usize| {
        let mut d = eval.chunk.inputs[i].clone();
        d.ty.dims[0] = chunks * eval.rows;
        d
    };
    let (xq, _) = quantize_input(&decl(0), &x).context("--test-data")?;
    let (lq, _) = quantize_input(&decl(1), &labels).context("--test-labels")?;
    Ok((Some(vec![xq, lq]), chunks))
}

/// A dealer protocol's run material is built whole before it is sent (docs/training.md):
/// refuse a step whose material would not fit rather than be killed for memory halfway.
pub(crate) fn check_dealt(
    spec: &Spec,
    t: &Training,
    n: usize,
    roles: Roles,
    batch: usize,
) -> Result<()> {
    if !spec.dealer {
        return Ok(());
    }
    let pre = party::preprocessing(spec, &t.step, n, roles, 1)?;
    if pre.bytes > MAX_DEALT_PER_STEP {
        bail!(
            "{}'s dealer would send {:.1} GB for every step of {} rows (more than the \
             {:.0} GB one run's material may take); use a smaller --batch or another \
             protocol",
            spec.name,
            pre.bytes as f64 / 1e9,
            batch,
            MAX_DEALT_PER_STEP as f64 / 1e9
        );
    }
    Ok(())
}

/// The model owner's end of a session: the trained ONNX file written, each epoch's mean
/// loss and test accuracy printed. Returns the mean losses.
pub(crate) fn finish_owner(
    t: &Training,
    model: &Path,
    output: &Path,
    mine: &Outcome,
    settings: &Settings,
    rows: usize,
    test_rows: usize,
) -> Result<Vec<f64>> {
    let params = mine
        .params
        .as_ref()
        .context("the model owner got no parameters")?;
    let mut trained = Vec::new();
    for ((decl, p), v) in t.finish.outputs.iter().zip(&t.model.params).zip(params) {
        let v = v.as_ref().context("a parameter was not revealed")?;
        let scale = decl.dequant.as_ref().map_or(1.0, |q| q.scale[0]);
        trained.push((
            p.name.clone(),
            v.data.iter().map(|&q| q as f32 * scale).collect(),
        ));
    }
    let bytes =
        std::fs::read(model).with_context(|| format!("{}: cannot read", model.display()))?;
    let file = model.display().to_string();
    let onnx = tc::model::with_params(&bytes, &file, &trained).map_err(anyhow::Error::msg)?;
    std::fs::write(output, onnx).with_context(|| format!("{}: cannot write", output.display()))?;
    let frac = t.numerics.frac as i32;
    let batch = settings.batch;
    let mean_loss: Vec<f64> = mine
        .losses
        .iter()
        .map(|&l| l as f64 * 2f64.powi(-frac) / ((rows / batch) * batch) as f64)
        .collect();
    for (e, l) in mean_loss.iter().enumerate() {
        println!("epoch {}: mean training loss {l:.6}", e + 1);
    }
    for (e, c) in mine.correct.iter().enumerate() {
        println!(
            "epoch {}: test accuracy {:.2} % ({c} / {test_rows})",
            e + 1,
            100.0 * *c as f64 / test_rows.max(1) as f64
        );
    }
    Ok(mean_loss)
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let settings = &args.settings;
    let (spec, n) = party::protocol(&args.protocol, args.parties, args.favor)?;
    let spec = &spec;
    // Every owner's rows and labels, read before anything is compiled.
    let mut sets = Vec::new();
    for (owner, path) in &args.data {
        if n > 1 && *owner >= n {
            bail!("--data {owner}=…: there are parties 0 to {} only", n - 1);
        }
        let Some((_, lpath)) = args.labels.iter().find(|(p, _)| p == owner) else {
            bail!("--data names party {owner} but no --labels does");
        };
        let x = npy::read(path).with_context(|| format!("--data {}", path.display()))?;
        let y = npy::read(lpath).with_context(|| format!("--labels {}", lpath.display()))?;
        sets.push((*owner, x, y));
    }
    if let Some((p, _)) = args
        .labels
        .iter()
        .find(|(p, _)| !args.data.iter().any(|(q, _)| q == p))
    {
        bail!("--labels names party {p} but no --data does");
    }
    let rows: usize = sets
        .iter()
        .map(|(_, x, _)| x.dims().first().copied().unwrap_or(0))
        .sum();
    let test = read_test(args.test_data.as_ref(), args.test_labels.as_ref())?;
    if settings.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let test_rows = test
        .as_ref()
        .map(|(x, _)| x.dims().first().copied().unwrap_or(0));
    let t = compile(&args.model, &settings.options(rows, test_rows))?;
    // Under `clear` one party plays every role.
    let party_of = |owner: PartyId| if n == 1 { 0 } else { owner };
    let first = sets.first().map(|s| s.0).context("no --data")?;
    let roles = Roles {
        data_owner: party_of(first),
        ..session_roles(n)
    };
    check_dealt(spec, &t, n, roles, settings.batch)?;
    let (test, test_chunks) = test_inputs(&t, test.as_ref())?;
    let test_rows = test_rows.unwrap_or(0);
    let mut owned: Vec<Owned> = (0..n).map(|_| Owned::default()).collect();
    owned[roles.model_owner].weights = Some(Arc::new(t.weights.clone()));
    let mut owners = Vec::new();
    for (k, (owner, x, y)) in sets.iter().enumerate() {
        let data = read_rows(&t.setup_data, x, y, t.classes, t.loss)
            .with_context(|| format!("the rows of party {owner}"))?;
        owners.push((party_of(*owner), x.dims().first().copied().unwrap_or(0)));
        owned[party_of(*owner)].data.insert(k, data);
    }
    owned[roles.data_owner].test = test;
    let plan = |me: PartyId| Plan {
        t: &t,
        epochs: settings.epochs,
        batch: settings.batch,
        rows,
        owners: owners.clone(),
        seed: settings.seed,
        roles,
        test_owner: roles.data_owner,
        test_chunks,
        talk: me == roles.model_owner,
    };
    let start = Instant::now();
    let ring = session_ring(spec, &t);
    let (results, dealer): (Vec<Result<Outcome>>, Option<Result<Stats>>) = if spec.is_clear() {
        let mut c = qmpc_protocols::clear::Clear;
        // On a worker of rayon's pool, as `Session::run` runs `clear`.
        let r = rayon::scope(|_| session_loop(&mut c, &plan(0), &owned[0], |_| Stats::default()));
        (vec![r], None)
    } else {
        let (addrs, mut listeners) = qmpc_protocols::net::loopback(n + usize::from(spec.dealer))?;
        let dealer_listener = if spec.dealer { listeners.pop() } else { None };
        let hello = Hello {
            claim: Vec::new(),
            program: t.step.digest(),
            protocol: spec.label(),
            parties: n,
            roles: format!("model owner {}", roles.model_owner),
        };
        let pool = &party::party_pool(n)?;
        std::thread::scope(|s| {
            let dealer = dealer_listener.map(|l| {
                let (addrs, hello) = (&addrs, &hello);
                let plan = plan(n);
                s.spawn(move || -> Result<Stats> {
                    let mesh = Mesh::with_listener(n, l, addrs, hello, args.timeouts)?;
                    spec.dealer(
                        n,
                        ring,
                        DealerMode::Generate,
                        DealSession {
                            plan: &plan,
                            net: Box::new(mesh),
                        },
                    )?
                    .context("the dealer")
                })
            });
            let handles: Vec<_> = listeners
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    let (addrs, hello, own) = (&addrs, &hello, &owned[i]);
                    let plan = plan(i);
                    s.spawn(move || -> Result<Outcome> {
                        pool.install(|| {
                            let mesh = Mesh::with_listener(i, l, addrs, hello, args.timeouts)?;
                            spec.setup_party(Box::new(mesh), ring, TrainWith { plan: &plan, own })?
                        })
                        .with_context(|| format!("party {i}"))
                    })
                })
                .collect();
            party::join_all(handles, dealer)
        })
    };
    let wall = start.elapsed().as_secs_f64();
    let mut outcomes = Vec::new();
    let mut errs = Vec::new();
    let dealer_sent = match dealer {
        Some(Ok(s)) => Some(s.bytes_sent),
        Some(Err(e)) => {
            errs.push(e);
            None
        }
        None => None,
    };
    for r in results {
        match r {
            Ok(o) => outcomes.push(o),
            Err(e) => errs.push(e),
        }
    }
    if !errs.is_empty() {
        let pick = errs
            .iter()
            .position(|e| !party::is_echo(&format!("{e:#}")))
            .unwrap_or(0);
        return Err(errs.swap_remove(pick));
    }
    let mine = &outcomes[roles.model_owner];
    let mean_loss = finish_owner(
        &t,
        &args.model,
        &args.output,
        mine,
        settings,
        rows,
        test_rows,
    )?;
    if let Some(path) = &args.stats {
        let per: Vec<Stats> = outcomes.iter().map(|o| o.stats).collect();
        let steps = (rows / settings.batch) * settings.epochs;
        let mut f = std::fs::File::create(path)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        let rounds = per.iter().map(|s| s.rounds).max().unwrap_or(0);
        let acc: Vec<String> = mine.correct.iter().map(|c| c.to_string()).collect();
        writeln!(
            f,
            "{{\"protocol\": \"{}\", \"parties\": {n}, \"batch\": {}, \"epochs\": {}, \
             \"steps\": {steps}, \"rounds\": {rounds}, \"bytes_sent\": {}, \"per_party\": [{}], \
             \"step\": {{\"per_party\": [{}]}}, \"test_correct\": [{}], \"test_rows\": {test_rows}, \"ring_bits\": {ring}, \"dealer_bytes_sent\": {}, \"mean_loss\": [{}], \"wall_s\": {wall:.6}}}",
            spec.name,
            settings.batch,
            settings.epochs,
            per.iter().map(|s| s.bytes_sent).sum::<u64>(),
            per.iter()
                .enumerate()
                .map(|(i, s)| format!(
                    "{{\"id\": {i}, \"rounds\": {}, \"bytes_sent\": {}}}",
                    s.rounds, s.bytes_sent
                ))
                .collect::<Vec<_>>()
                .join(", "),
            outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| format!(
                    "{{\"id\": {i}, \"rounds\": {}, \"bytes_sent\": {}}}",
                    o.step.rounds, o.step.bytes_sent
                ))
                .collect::<Vec<_>>()
                .join(", "),
            acc.join(", "),
            dealer_sent.unwrap_or(0),
            mean_loss
                .iter()
                .map(|l| format!("{l:.6}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}
