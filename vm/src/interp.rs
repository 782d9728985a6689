//! The interpreter: runs a verified program in one party against a [`Protocol`].
//!
//! Layout work (broadcast, im2col, transpose, padding, window gathering) happens here on
//! shares; arithmetic and every interactive step go through the protocol, one call per
//! instruction so each instruction is a fixed number of rounds whatever the batch size.

use crate::bytecode::{Instr, Program, RoundSchedule, Weights};
use crate::plain::View;
use crate::shapes;
use crate::tensor::{self, broadcast_to, Tensor};
use qmpc_protocols::planes::{Plane, PAD};
use qmpc_protocols::{Bounds, MatDims, PartyId, Protocol, ProtocolError};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which party plays which role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Holds the secret weights (the `.qmpw` file).
    pub model_owner: PartyId,
    /// Holds the inputs.
    pub data_owner: PartyId,
    /// Receives the outputs.
    pub output_to: PartyId,
}

impl Default for Roles {
    fn default() -> Self {
        Roles {
            model_owner: 0,
            data_owner: 1,
            output_to: 1,
        }
    }
}

/// What one party brings to a run. Only the data owner has `inputs`, only the model
/// owner has `weights`.
#[derive(Clone, Debug, Default)]
pub struct PartyData {
    /// Quantized inputs, one per program input, with the run's batch size.
    pub inputs: Option<Vec<Tensor<i64>>>,
    /// Shared, not copied: a run only reads them (ResNet-50's are 200 MB of words).
    pub weights: Option<Arc<Weights>>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("instruction {index} (`{mnemonic}`, node `{node}`): {cause}")]
    Protocol {
        index: usize,
        mnemonic: &'static str,
        node: String,
        cause: ProtocolError,
    },
    #[error("instruction {index} (`{mnemonic}`, node `{node}`): {msg}")]
    Instr {
        index: usize,
        mnemonic: &'static str,
        node: String,
        msg: String,
    },
    #[error("{0}")]
    Setup(String),
    /// Fetching or sending a run's dealer material between two runs of a session.
    #[error("between runs of the session (run {run}): {cause}")]
    Run { run: u64, cause: ProtocolError },
}

/// A secret tensor in one party: its dimensions and its shares, one plane for all of it.
#[derive(Clone, Debug)]
pub struct Shared<S> {
    pub dims: Vec<usize>,
    pub data: S,
}

impl<S: Plane> Shared<S> {
    pub fn new(dims: Vec<usize>, data: S) -> Self {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        Shared { dims, data }
    }

    /// A sharing of zeros of these dimensions.
    pub fn zeros(dims: Vec<usize>) -> Self {
        let len = dims.iter().product();
        Shared::new(dims, S::zeros(len))
    }

    /// A layout move written for any element type (`tensor`'s functions), applied to the
    /// shares: `f` moves the tensor of element indices (padding reads [`PAD`], a sharing
    /// of zero) and the plane gathers by the result.
    fn relayout(&self, f: impl FnOnce(&Tensor<usize>) -> Tensor<usize>) -> Self {
        let moved = f(&self.indices());
        Shared::new(moved.dims, self.data.gather(&moved.data))
    }

    /// The tensor of this tensor's element indices.
    fn indices(&self) -> Tensor<usize> {
        Tensor::new(self.dims.clone(), (0..self.data.len()).collect())
    }

    /// The shares broadcast to `dims` (no copy where they already have them; no index
    /// vector otherwise: the source of each element is a formula of its position).
    pub(crate) fn broadcast(&self, dims: &[usize]) -> Cow<'_, S> {
        if self.dims == dims {
            return Cow::Borrowed(&self.data);
        }
        let offset = dims.len() - self.dims.len();
        let src = tensor::strides(&self.dims);
        let out = tensor::strides(dims);
        // (stride of the output axis, its length, the source stride) of the axes the
        // source has (a broadcast axis adds nothing to the source index: a per-channel
        // bias over `[N, C, H, W]` costs two divisions per element, not eight).
        let axes: Vec<(usize, usize, usize)> = (0..dims.len())
            .filter_map(|d| {
                let from = d.checked_sub(offset).filter(|&i| self.dims[i] != 1)?;
                Some((out[d], dims[d], src[from]))
            })
            .collect();
        let len = dims.iter().product();
        Cow::Owned(self.data.gather_by(len, |o| {
            axes.iter().map(|&(os, n, ss)| (o / os % n) * ss).sum()
        }))
    }
}

impl<S: Plane> Value<S> {
    /// The values themselves where this party sees them: a public value's, or a secret's
    /// where `proto`'s shares are the values ([`qmpc_protocols::Core::values`]).
    pub(crate) fn plain<'a, P: Protocol<Shares = S>>(&'a self, proto: &P) -> Option<View<'a>> {
        match self {
            Value::Public(t) => Some(View {
                dims: &t.dims,
                data: &t.data,
            }),
            Value::Secret(s) => proto.values(&s.data).map(|data| View {
                dims: &s.dims,
                data,
            }),
        }
    }

    /// `data` of shape `dims` as a value of the same kind as `self` (public, or shares that
    /// are the values), `None` where `proto` has no such shares.
    pub(crate) fn like<P: Protocol<Shares = S>>(
        &self,
        proto: &P,
        dims: Vec<usize>,
        data: Vec<i64>,
    ) -> Option<Value<S>> {
        match self {
            Value::Public(_) => Some(Value::Public(Tensor::new(dims, data))),
            Value::Secret(_) => proto
                .shares_of_values(data)
                .map(|d| Value::Secret(Shared::new(dims, d))),
        }
    }
}

/// A register's value in one party.
#[derive(Clone, Debug)]
pub enum Value<S> {
    Public(Tensor<i64>),
    Secret(Shared<S>),
}

impl<S: Plane> Value<S> {
    pub(crate) fn dims(&self) -> &[usize] {
        match self {
            Value::Public(t) => &t.dims,
            Value::Secret(t) => &t.dims,
        }
    }

    /// The tensor repeated `times` along its first axis (a batch-free operand, per sample).
    fn repeat_rows(&self, times: usize) -> Value<S> {
        match self {
            Value::Public(t) => Value::Public(tensor::repeat_rows(t, times)),
            Value::Secret(t) => Value::Secret(t.relayout(|i| tensor::repeat_rows(i, times))),
        }
    }
}

pub(crate) enum Fail {
    Protocol(ProtocolError),
    Msg(String),
}

impl From<ProtocolError> for Fail {
    fn from(e: ProtocolError) -> Self {
        Fail::Protocol(e)
    }
}
impl From<&str> for Fail {
    fn from(e: &str) -> Self {
        Fail::Msg(e.to_string())
    }
}
impl From<String> for Fail {
    fn from(e: String) -> Self {
        Fail::Msg(e)
    }
}

/// The error of instruction `index`, with its mnemonic and ONNX node.
pub(crate) fn failed(program: &Program, index: usize, f: Fail) -> VmError {
    let mnemonic = program.code.get(index).map_or("?", Instr::mnemonic);
    let node = program.origins.get(index).cloned().unwrap_or_default();
    match f {
        Fail::Protocol(cause) => VmError::Protocol {
            index,
            mnemonic,
            node,
            cause,
        },
        Fail::Msg(msg) => VmError::Instr {
            index,
            mnemonic,
            node,
            msg,
        },
    }
}

/// Check the party's private data against the program before anything is shared.
pub(crate) fn check_party_data(
    p: &Program,
    roles: Roles,
    me: PartyId,
    data: &PartyData,
    batch: usize,
) -> Result<(), VmError> {
    if me == roles.data_owner && !p.inputs.is_empty() {
        let inputs = data.inputs.as_ref().ok_or_else(|| {
            VmError::Setup(format!("party {me} owns the input but was given none"))
        })?;
        if inputs.len() != p.inputs.len() {
            return Err(VmError::Setup(format!(
                "the program takes {} inputs, {} given",
                p.inputs.len(),
                inputs.len()
            )));
        }
        for (t, d) in inputs.iter().zip(&p.inputs) {
            let want = d.ty.dims_at(batch);
            if t.dims != want {
                return Err(VmError::Setup(format!(
                    "input `{}` has shape {:?}, the program expects {want:?}",
                    d.name, t.dims
                )));
            }
        }
    }
    if me == roles.model_owner && !p.weights.is_empty() {
        let w = data.weights.as_ref().ok_or_else(|| {
            VmError::Setup(format!("party {me} owns the model but has no weights file"))
        })?;
        if w.tensors.len() != p.weights.len() {
            return Err(VmError::Setup(format!(
                "the weights file holds {} tensors, the program expects {}",
                w.tensors.len(),
                p.weights.len()
            )));
        }
        for ((name, t), d) in w.tensors.iter().zip(&p.weights) {
            if name != &d.name || t.dims != d.ty.dims || t.dtype != d.ty.dtype {
                return Err(VmError::Setup(format!(
                    "weights file tensor `{name}` ({}{:?}) does not match the program's `{}` ({})",
                    t.dtype, t.dims, d.name, d.ty
                )));
            }
        }
    }
    Ok(())
}

/// What one party keeps between the runs of a session's programs: the shares of the
/// session states (`load`/`store`, [`crate::bytecode::StateDecl`]) by name, and how many
/// runs there were.
#[derive(Clone, Debug)]
pub struct States<S> {
    values: BTreeMap<String, Shared<S>>,
    runs: u64,
}

impl<S> Default for States<S> {
    fn default() -> Self {
        States {
            values: BTreeMap::new(),
            runs: 0,
        }
    }
}

impl<S> States<S> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, name: &str) -> Option<&Shared<S>> {
        self.values.get(name)
    }
    pub fn insert(&mut self, name: String, value: Shared<S>) {
        self.values.insert(name, value);
    }
    pub fn remove(&mut self, name: &str) -> Option<Shared<S>> {
        self.values.remove(name)
    }
    /// Runs so far in this session.
    pub fn runs(&self) -> u64 {
        self.runs
    }
    /// The stream number of instruction `index`'s forked copy in this run. Two runs of
    /// one program must not draw the same masks, so the run number is part of it.
    pub(crate) fn task(&self, index: usize) -> u64 {
        qmpc_protocols::task_id(self.runs, index)
    }
}

/// The `store`s of one run, applied to the [`States`] only when the whole run succeeded,
/// so a failed step leaves the session as it was.
pub(crate) type Stores<S> = Vec<(String, Shared<S>)>;

/// `load` and `store`, which touch the session's states rather than the protocol; `None`
/// for every other instruction.
pub(crate) fn state_step<P: Protocol>(
    p: &Program,
    proto: &P,
    batch: usize,
    regs: &[Option<Value<P::Shares>>],
    ins: &Instr,
    states: &States<P::Shares>,
    stores: &mut Stores<P::Shares>,
) -> Option<Result<Option<Value<P::Shares>>, Fail>> {
    match ins {
        Instr::Load { index, .. } => {
            let decl = &p.states[index.0 as usize];
            let want = decl.ty.dims_at(batch);
            Some(match states.get(&decl.name) {
                None => Err(format!("state `{}` has no value in this session", decl.name).into()),
                Some(t) if t.dims != want => Err(format!(
                    "state `{}` holds shape {:?}, the program expects {want:?}",
                    decl.name, t.dims
                )
                .into()),
                Some(t) => Ok(Some(Value::Secret(t.clone()))),
            })
        }
        Instr::Store { x, index } => {
            let decl = &p.states[index.0 as usize];
            Some(get(regs, x.0).map_err(Fail::from).map(|v| {
                stores.push((decl.name.clone(), secret_of(proto, v)));
                None
            }))
        }
        _ => None,
    }
}

/// Run a verified program. Returns the outputs this party is entitled to (`None` elsewhere).
/// A program with session state needs [`run_session`].
pub fn run<P: Protocol + Send>(
    program: &Program,
    proto: &mut P,
    roles: Roles,
    data: &PartyData,
    batch: usize,
) -> Result<Vec<Option<Tensor<i64>>>, VmError> {
    run_session(program, proto, roles, data, batch, &mut States::new())
}

/// [`run`] within a session: `load`s read `states`, and the run's `store`s replace them
/// once every instruction has succeeded.
pub fn run_session<P: Protocol + Send>(
    program: &Program,
    proto: &mut P,
    roles: Roles,
    data: &PartyData,
    batch: usize,
    states: &mut States<P::Shares>,
) -> Result<Vec<Option<Tensor<i64>>>, VmError> {
    let me = proto.party();
    check_party_data(program, roles, me, data, batch)?;
    if program.code.len() >= 1 << 32 {
        return Err(VmError::Setup(
            "the program has too many instructions".into(),
        ));
    }
    let probe = qmpc_protocols::wires::Probe {
        narrowing: proto.narrowing(),
        pending: proto.pending(),
    };
    let dealing = proto.dealing();
    if probe.narrowing.is_some() || probe.pending.is_some() || dealing.is_some() {
        let layout = crate::wires::Layout {
            name: proto.name(),
            parties: proto.parties(),
            products_open_operands: proto.products_open_operands(),
        };
        let mut wires = if probe.narrowing.is_some() || probe.pending.is_some() {
            crate::wires::wires(program, probe, &layout)?
        } else {
            vec![Default::default(); program.code.len()].into()
        };
        if let Some(dealing) = dealing {
            let deal = crate::wires::deal(program, &wires, dealing, roles, batch);
            wires = wires
                .iter()
                .map(|w| qmpc_protocols::wires::Wires { deal, ..*w })
                .collect();
        }
        proto.set_wires(wires);
    }
    let mut stores = Stores::new();
    proto.begin_run(states.runs).map_err(|cause| VmError::Run {
        run: states.runs,
        cause,
    })?;
    let outputs = if program.rounds == RoundSchedule::Merged && proto.shares_rounds() {
        crate::concurrent::run(program, proto, roles, data, batch, states, &mut stores)
    } else {
        run_in_order(program, proto, roles, data, batch, states, &mut stores)
    };
    states.runs += 1;
    let outputs = outputs?;
    proto.end_run().map_err(|cause| VmError::Run {
        run: states.runs - 1,
        cause,
    })?;
    states.values.extend(stores);
    Ok(outputs)
}

fn run_in_order<P: Protocol + Send>(
    program: &Program,
    proto: &mut P,
    roles: Roles,
    data: &PartyData,
    batch: usize,
    states: &States<P::Shares>,
    stores: &mut Stores<P::Shares>,
) -> Result<Vec<Option<Tensor<i64>>>, VmError> {
    // Registers are dropped after their last read to bound memory.
    let mut last_use = vec![usize::MAX; program.registers.len()];
    for (i, ins) in program.code.iter().enumerate() {
        for s in ins.srcs() {
            last_use[s as usize] = i;
        }
    }
    let mut regs: Vec<Option<Value<P::Shares>>> = vec![None; program.registers.len()];
    let mut outputs = vec![None; program.outputs.len()];
    for (index, ins) in program.code.iter().enumerate() {
        proto.begin_instruction(states.task(index));
        let result = match state_step(program, proto, batch, &regs, ins, states, stores) {
            Some(r) => r,
            None => step(program, proto, roles, data, batch, &regs, ins, &mut outputs),
        };
        match result {
            Ok(Some(v)) => {
                if let Some(d) = ins.dst() {
                    regs[d as usize] = Some(v);
                }
            }
            Ok(None) => {}
            Err(f) => return Err(failed(program, index, f)),
        }
        for s in ins.srcs() {
            if last_use[s as usize] == index {
                regs[s as usize] = None;
            }
        }
    }
    Ok(outputs)
}

pub(crate) fn get<S>(regs: &[Option<Value<S>>], r: u32) -> Result<&Value<S>, String> {
    regs.get(r as usize)
        .and_then(Option::as_ref)
        .ok_or_else(|| format!("register %{r} is empty"))
}

fn public<S>(regs: &[Option<Value<S>>], r: u32) -> Result<&Tensor<i64>, String> {
    match get(regs, r)? {
        Value::Public(t) => Ok(t),
        Value::Secret(_) => Err(format!("register %{r} must be public")),
    }
}

fn secret_of<P: Protocol>(proto: &P, v: &Value<P::Shares>) -> Shared<P::Shares> {
    match v {
        Value::Secret(t) => t.clone(),
        Value::Public(t) => Shared::new(t.dims.clone(), proto.public(&t.data)),
    }
}

/// One layout move on a value: `f` on public values, `g` on the element indices of a
/// secret one ([`Shared::relayout`]).
fn map_layout<S: Plane>(
    v: &Value<S>,
    f: impl FnOnce(&Tensor<i64>) -> Tensor<i64>,
    g: impl FnOnce(&Tensor<usize>) -> Tensor<usize>,
) -> Value<S> {
    match v {
        Value::Public(t) => Value::Public(f(t)),
        Value::Secret(t) => Value::Secret(t.relayout(g)),
    }
}

pub(crate) fn bounds(p: &Program, r: u32) -> Bounds {
    let d = &p.registers[r as usize];
    Bounds { lo: d.lo, hi: d.hi }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn step<P: Protocol>(
    p: &Program,
    proto: &mut P,
    roles: Roles,
    data: &PartyData,
    batch: usize,
    regs: &[Option<Value<P::Shares>>],
    ins: &Instr,
    outputs: &mut [Option<Tensor<i64>>],
) -> Result<Option<Value<P::Shares>>, Fail> {
    let me = proto.party();
    let dst_dims = |d: u32| p.registers[d as usize].ty.dims_at(batch);
    let v = match ins {
        Instr::Input { dst, index } => {
            let dims = dst_dims(dst.0);
            let n: usize = dims.iter().product();
            let mine = if me == roles.data_owner {
                let t = &data.inputs.as_ref().ok_or("no inputs")?[index.0 as usize];
                Some(t.data.as_slice())
            } else {
                None
            };
            Value::Secret(Shared::new(dims, proto.input(roles.data_owner, mine, n)?))
        }
        Instr::Weight { dst, index } => {
            let dims = dst_dims(dst.0);
            let n: usize = dims.iter().product();
            let decl = &p.registers[dst.0 as usize];
            let mine = if me == roles.model_owner {
                let (name, t) =
                    &data.weights.as_ref().ok_or("no weights")?.tensors[index.0 as usize];
                let outside = |v: &i64| *v < decl.lo || *v > decl.hi;
                // In chunks: rayon's per-element search costs more than the check.
                let first = t
                    .data
                    .par_chunks(1 << 16)
                    .find_map_first(|c| c.iter().copied().find(outside));
                if let Some(v) = first {
                    return Err(format!(
                        "weight `{name}` holds {v}, outside the program's bounds [{}, {}]",
                        decl.lo, decl.hi
                    )
                    .into());
                }
                Some(t.data.as_slice())
            } else {
                None
            };
            Value::Secret(Shared::new(dims, proto.input(roles.model_owner, mine, n)?))
        }
        Instr::Const { index, .. } => {
            let c = &p.consts[index.0 as usize];
            Value::Public(Tensor::new(c.dims.clone(), c.data.clone()))
        }
        Instr::Add { dst, a, b } | Instr::Sub { dst, a, b } | Instr::Mul { dst, a, b } => {
            let op = match ins {
                Instr::Sub { .. } => Elementwise::Sub,
                Instr::Mul { .. } => Elementwise::Mul,
                _ => Elementwise::Add,
            };
            elementwise(proto, get(regs, a.0)?, get(regs, b.0)?, dst_dims(dst.0), op)?
        }
        Instr::MatMul { dst, a, b } => {
            let dims = dst_dims(dst.0);
            matmul(proto, get(regs, a.0)?, get(regs, b.0)?, &dims)?
        }
        Instr::Conv {
            dst,
            x,
            w,
            strides,
            pads,
            dilations,
            group,
        } => {
            let dims = dst_dims(dst.0);
            conv(
                proto,
                get(regs, x.0)?,
                get(regs, w.0)?,
                &strides.0,
                &pads.0,
                &dilations.0,
                group.0 as usize,
                &dims,
            )?
        }
        Instr::ConvGradW {
            dst,
            x,
            gy,
            strides,
            pads,
            dilations,
            group,
        } => {
            let out = dst_dims(dst.0);
            let win = shapes::window(&out[2..], &strides.0, &pads.0, &dilations.0)?;
            let (x, gy) = (get(regs, x.0)?, get(regs, gy.0)?);
            crate::grad::conv_grad_w(proto, x, gy, &win, group.0 as usize, &out)?
        }
        Instr::ConvGradX {
            dst,
            gy,
            w,
            strides,
            pads,
            dilations,
            group,
        } => {
            let out = dst_dims(dst.0);
            let (gy, w) = (get(regs, gy.0)?, get(regs, w.0)?);
            let win = shapes::window(&w.dims()[2..], &strides.0, &pads.0, &dilations.0)?;
            crate::grad::conv_grad_x(proto, gy, w, &win, group.0 as usize, &out)?
        }
        Instr::Window {
            dst,
            x,
            kernel,
            strides,
            pads,
            dilations,
        }
        | Instr::Unwindow {
            dst,
            x,
            kernel,
            strides,
            pads,
            dilations,
        } => {
            let out = dst_dims(dst.0);
            let k = shapes::kernel_of(&kernel.0)?;
            let win = shapes::window(&k, &strides.0, &pads.0, &dilations.0)?;
            let x = get(regs, x.0)?;
            if matches!(ins, Instr::Window { .. }) {
                crate::grad::window(x, &win, &out)?
            } else {
                crate::grad::unwindow(proto, x, &win, &out)?
            }
        }
        Instr::SumPool {
            x,
            kernel,
            strides,
            pads,
            dilations,
            ..
        } => {
            let k = shapes::kernel_of(&kernel.0)?;
            let win = shapes::window(&k, &strides.0, &pads.0, &dilations.0)?;
            let xv = get(regs, x.0)?;
            let (out_dims, cols) = gather_windows(xv.dims(), &win)?;
            match xv {
                Value::Public(t) => {
                    let mut acc = vec![0i64; cols[0].len()];
                    for c in &cols {
                        for (a, &i) in acc.iter_mut().zip(c) {
                            if i != PAD {
                                *a = a.wrapping_add(t.data[i]);
                            }
                        }
                    }
                    Value::Public(Tensor::new(out_dims, acc))
                }
                Value::Secret(t) => {
                    Value::Secret(Shared::new(out_dims, sum_windows(proto, &t.data, &cols)))
                }
            }
        }
        Instr::MaxPool {
            dst,
            x,
            kernel,
            strides,
            pads,
            dilations,
            ..
        } => {
            let k = shapes::kernel_of(&kernel.0)?;
            let win = shapes::window(&k, &strides.0, &pads.0, &dilations.0)?;
            let xv = get(regs, x.0)?;
            if let Some(view) = xv.plain(proto) {
                let out = crate::plain::max_pool(view, &win)?;
                if let Some(v) = xv.like(proto, dst_dims(dst.0), out) {
                    return Ok(Some(v));
                }
            }
            let (out_dims, mut cols) = gather_windows(xv.dims(), &win)?;
            // Padding never wins: a padded slot repeats a real element of its window.
            let n = cols[0].len();
            for i in 0..n {
                let real = cols
                    .iter()
                    .map(|c| c[i])
                    .find(|&e| e != PAD)
                    .ok_or("empty pooling window")?;
                for c in cols.iter_mut() {
                    if c[i] == PAD {
                        c[i] = real;
                    }
                }
            }
            match xv {
                Value::Public(t) => {
                    let out = (0..n)
                        .map(|i| cols.iter().map(|c| t.data[c[i]]).max().unwrap_or(0))
                        .collect();
                    Value::Public(Tensor::new(out_dims, out))
                }
                Value::Secret(t) => {
                    let mut layers: Vec<P::Shares> =
                        cols.iter().map(|c| t.data.gather(c)).collect();
                    let b = bounds(p, x.0);
                    // Tree reduction: ceil(log2(k)) rounds of element-wise maxima.
                    while layers.len() > 1 {
                        let half = layers.len() / 2;
                        let odd = layers.len() % 2 == 1;
                        let lhs: Vec<&P::Shares> = layers.iter().step_by(2).take(half).collect();
                        let rhs: Vec<&P::Shares> = layers.iter().skip(1).step_by(2).collect();
                        let m = proto.max(&P::Shares::concat(&lhs), &P::Shares::concat(&rhs), b)?;
                        let mut next: Vec<P::Shares> =
                            (0..half).map(|j| m.slice(j * n..(j + 1) * n)).collect();
                        if odd {
                            next.push(layers.pop().ok_or("empty pooling window")?);
                        }
                        layers = next;
                    }
                    Value::Secret(Shared::new(
                        out_dims,
                        layers.pop().ok_or("empty pooling window")?,
                    ))
                }
            }
        }
        Instr::Rescale { dst, x, num, den } => {
            let dims = dst_dims(dst.0);
            let num = broadcast_to(public(regs, num.0)?, &dims);
            let den = broadcast_to(public(regs, den.0)?, &dims);
            match get(regs, x.0)? {
                Value::Public(t) => Value::Public(Tensor::new(
                    dims,
                    t.data
                        .iter()
                        .zip(num.iter().zip(&den))
                        .map(|(&v, (&n, &d))| qmpc_protocols::ring::rescale(v, n, d))
                        .collect(),
                )),
                Value::Secret(t) => Value::Secret(Shared::new(
                    dims,
                    proto.rescale(&t.data, &num, &den, bounds(p, x.0), p.trunc)?,
                )),
            }
        }
        Instr::Requant {
            dst,
            x,
            num,
            den,
            zp,
            lo,
            hi,
        } => {
            let dims = dst_dims(dst.0);
            let xv = get(regs, x.0)?;
            if let Some(v) =
                plain_requant(proto, regs, xv, (num.0, den.0, zp.0), (lo.0, hi.0), &dims)
            {
                return Ok(Some(v));
            }
            let q = requant_params(regs, (num.0, den.0, zp.0), (lo.0, hi.0), &dims)?;
            requant(proto, xv, &q, bounds(p, x.0), p.trunc)?
        }
        Instr::ConvRequant { .. } | Instr::MatMulRequant { .. } => {
            crate::fused::product_requant(p, proto, regs, ins, &dst_dims)?
        }
        Instr::Clamp { x, lo, hi, .. } => match get(regs, x.0)? {
            Value::Public(t) => Value::Public(Tensor::new(
                t.dims.clone(),
                t.data.iter().map(|v| (*v).clamp(lo.0, hi.0)).collect(),
            )),
            Value::Secret(t) => Value::Secret(Shared::new(
                t.dims.clone(),
                proto.clamp(&t.data, lo.0, hi.0, bounds(p, x.0))?,
            )),
        },
        Instr::Max { a, b, .. } => {
            let (x, y) = (get(regs, a.0)?, get(regs, b.0)?);
            match (x, y) {
                (Value::Public(x), Value::Public(y)) => Value::Public(Tensor::new(
                    x.dims.clone(),
                    x.data.iter().zip(&y.data).map(|(a, b)| *a.max(b)).collect(),
                )),
                _ => {
                    let (x, y) = (secret_of(proto, x), secret_of(proto, y));
                    let bb = bounds(p, a.0);
                    let bc = bounds(p, b.0);
                    let b = Bounds {
                        lo: bb.lo.min(bc.lo),
                        hi: bb.hi.max(bc.hi),
                    };
                    Value::Secret(Shared::new(x.dims.clone(), proto.max(&x.data, &y.data, b)?))
                }
            }
        }
        Instr::ArgMax {
            dst,
            x,
            axis,
            select_last,
        } => {
            let dims = dst_dims(dst.0);
            let xv = get(regs, x.0)?;
            let xd = xv.dims().to_vec();
            let a = axis.0 as usize;
            // Move the axis last so each row is contiguous.
            let mut perm: Vec<usize> = (0..xd.len()).filter(|&i| i != a).collect();
            perm.push(a);
            let row = xd[a];
            let moved = map_layout(
                xv,
                |t| tensor::transpose(t, &perm),
                |t| tensor::transpose(t, &perm),
            );
            match moved {
                Value::Public(t) => {
                    let out = qmpc_protocols::Clear.argmax(
                        &t.data,
                        row,
                        select_last.0 == 1,
                        bounds(p, x.0),
                    )?;
                    Value::Public(Tensor::new(dims, out))
                }
                Value::Secret(t) => Value::Secret(Shared::new(
                    dims,
                    proto.argmax(&t.data, row, select_last.0 == 1, bounds(p, x.0))?,
                )),
            }
        }
        Instr::Lookup {
            x, table, offset, ..
        } => {
            let t = &p.consts[table.0 as usize].data;
            match get(regs, x.0)? {
                Value::Public(v) => Value::Public(Tensor::new(
                    v.dims.clone(),
                    qmpc_protocols::Clear.lookup(&v.data, t, offset.0)?,
                )),
                Value::Secret(v) => Value::Secret(Shared::new(
                    v.dims.clone(),
                    proto.lookup(&v.data, t, offset.0)?,
                )),
            }
        }
        Instr::Reshape { dst, x } | Instr::Cast { dst, x } => {
            let dims = dst_dims(dst.0);
            match get(regs, x.0)? {
                Value::Public(t) => Value::Public(Tensor::new(dims, t.data.clone())),
                Value::Secret(t) => Value::Secret(Shared::new(dims, t.data.clone())),
            }
        }
        Instr::Transpose { x, perm, .. } => {
            let perm: Vec<usize> = perm.0.iter().map(|&v| v as usize).collect();
            map_layout(
                get(regs, x.0)?,
                |t| tensor::transpose(t, &perm),
                |t| tensor::transpose(t, &perm),
            )
        }
        Instr::Slice {
            dst,
            x,
            starts,
            steps,
        } => {
            let out = dst_dims(dst.0);
            let xv = get(regs, x.0)?;
            let (st, sp) = shapes::slice(xv.dims(), &starts.0, &steps.0, &out)?;
            map_layout(
                xv,
                |t| tensor::slice(t, &st, &sp, &out),
                |t| tensor::slice(t, &st, &sp, &out),
            )
        }
        Instr::Pad { x, pads, value, .. } => {
            let pads: Vec<usize> = pads.0.iter().map(|&v| v as usize).collect();
            match get(regs, x.0)? {
                Value::Public(t) => Value::Public(tensor::pad(t, &pads, value.0)),
                Value::Secret(t) => {
                    let idx = tensor::pad(&t.indices(), &pads, PAD);
                    let mut data = t.data.gather(&idx.data);
                    if value.0 != 0 {
                        // Padding reads a sharing of 0: add the fill there.
                        let fill: Vec<i64> = idx
                            .data
                            .iter()
                            .map(|&i| if i == PAD { value.0 } else { 0 })
                            .collect();
                        data = proto.add_public(&data, &fill);
                    }
                    Value::Secret(Shared::new(idx.dims, data))
                }
            }
        }
        Instr::Concat { xs, axis, .. } => {
            let vals: Vec<&Value<P::Shares>> =
                xs.0.iter()
                    .map(|&r| get(regs, r))
                    .collect::<Result<_, _>>()?;
            let a = axis.0 as usize;
            // Operands without the batch axis are repeated for every sample.
            let batched = |r: u32| p.registers[r as usize].ty.batched;
            let rows = xs.0.iter().any(|&r| batched(r)).then_some(batch);
            let tiled: Vec<Option<Value<P::Shares>>> =
                xs.0.iter()
                    .zip(&vals)
                    .map(|(&r, v)| match rows {
                        Some(b) if b > 1 && !batched(r) => Some(v.repeat_rows(b)),
                        _ => None,
                    })
                    .collect();
            let vals: Vec<&Value<P::Shares>> = vals
                .into_iter()
                .zip(&tiled)
                .map(|(v, t)| t.as_ref().unwrap_or(v))
                .collect();
            let publics: Vec<&Tensor<i64>> = vals
                .iter()
                .filter_map(|v| {
                    if let Value::Public(t) = v {
                        Some(t)
                    } else {
                        None
                    }
                })
                .collect();
            if publics.len() == vals.len() {
                Value::Public(tensor::concat(&publics, a))
            } else {
                // The operands one after another, then their element indices (offset
                // into that run) concatenated along the axis and gathered.
                let ts: Vec<Shared<P::Shares>> = vals.iter().map(|v| secret_of(proto, v)).collect();
                let mut at = 0;
                let idx: Vec<Tensor<usize>> = ts
                    .iter()
                    .map(|t| {
                        let i = Tensor::new(t.dims.clone(), (at..at + t.data.len()).collect());
                        at += t.data.len();
                        i
                    })
                    .collect();
                let run = P::Shares::concat(&ts.iter().map(|t| &t.data).collect::<Vec<_>>());
                let moved = tensor::concat(&idx.iter().collect::<Vec<_>>(), a);
                Value::Secret(Shared::new(moved.dims, run.gather(&moved.data)))
            }
        }
        Instr::Load { .. } | Instr::Store { .. } => {
            return Err("session state is handled by the runner, not `step`".into())
        }
        Instr::Output { x, index } => {
            let revealed = match get(regs, x.0)? {
                Value::Public(t) => (me == roles.output_to).then(|| t.clone()),
                Value::Secret(t) => proto
                    .reveal(&t.data, roles.output_to)?
                    .map(|d| Tensor::new(t.dims.clone(), d)),
            };
            outputs[index.0 as usize] = revealed;
            return Ok(None);
        }
    };
    Ok(Some(v))
}

/// Below this many gathered elements in all, a pooling sum gathers every window position
/// at once and adds halves: a global average pool has thousands of positions of a few
/// elements each, and one addition per position cost more than the sums themselves.
const TREE_SUM_ELEMENTS: usize = 1 << 20;

/// The sum, element by element, of `x` gathered at each of `cols` (equal lengths).
fn sum_windows<P: Protocol>(proto: &P, x: &P::Shares, cols: &[Vec<usize>]) -> P::Shares {
    let n = cols.first().map_or(0, Vec::len);
    if cols.len() * n > TREE_SUM_ELEMENTS {
        let mut acc = x.gather(&cols[0]);
        for c in &cols[1..] {
            acc = proto.add(&acc, &x.gather(c));
        }
        return acc;
    }
    // Rows of `n`: row `r` is window position `r`. Pair the first half of the rows with
    // the last half; an odd row in the middle waits for the next level. Addition in the
    // ring is associative and commutative, so the order changes nothing.
    let mut acc = x.gather(&cols.concat());
    let mut rows = cols.len();
    while rows > 1 {
        let half = rows / 2;
        let sum = proto.add(
            &acc.slice(0..half * n),
            &acc.slice((rows - half) * n..rows * n),
        );
        acc = if rows % 2 == 1 {
            P::Shares::concat(&[&sum, &acc.slice(half * n..(half + 1) * n)])
        } else {
            sum
        };
        rows -= half;
    }
    acc
}

/// For each kernel offset, the element index every output position reads there ([`PAD`]
/// for padding), over a tensor `[N,C,H,W]`; and the output's dimensions.
fn gather_windows(
    d: &[usize],
    win: &tensor::Window,
) -> Result<(Vec<usize>, Vec<Vec<usize>>), String> {
    if d.len() != 4 {
        return Err(format!("pooling needs [N,C,H,W], has {d:?}"));
    }
    let (n, c, h, w) = (d[0], d[1], d[2], d[3]);
    let (oh, ow, plan) = win
        .gather_plan(h, w)
        .ok_or("pooling window larger than the input")?;
    let kk = win.kernel[0] * win.kernel[1];
    let (hw, ohw) = (h * w, oh * ow);
    let cols = (0..kk)
        .map(|k| {
            let mut col = Vec::with_capacity(n * c * ohw);
            for pl in 0..n * c {
                for o in 0..ohw {
                    col.push(plan[o * kk + k].map_or(PAD, |i| pl * hw + i));
                }
            }
            col
        })
        .collect();
    Ok((vec![n, c, oh, ow], cols))
}

/// What a matmul operand needs of a tensor, public or secret: its dimensions, its data,
/// and its data broadcast to other dimensions.
trait Operand {
    type Data: Clone;
    fn dims(&self) -> &[usize];
    fn data(&self) -> &Self::Data;
    fn broadcast(&self, dims: &[usize]) -> Cow<'_, Self::Data>;
}

impl Operand for Tensor<i64> {
    type Data = Vec<i64>;
    fn dims(&self) -> &[usize] {
        &self.dims
    }
    fn data(&self) -> &Vec<i64> {
        &self.data
    }
    fn broadcast(&self, dims: &[usize]) -> Cow<'_, Vec<i64>> {
        Cow::Owned(broadcast_to(self, dims))
    }
}

impl<S: Plane> Operand for Shared<S> {
    type Data = S;
    fn dims(&self) -> &[usize] {
        &self.dims
    }
    fn data(&self) -> &S {
        &self.data
    }
    fn broadcast(&self, dims: &[usize]) -> Cow<'_, S> {
        Shared::broadcast(self, dims)
    }
}

/// Which element-wise operation of two values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elementwise {
    Add,
    Sub,
    Mul,
}

/// `x op y` with numpy broadcasting to `dims`.
pub(crate) fn elementwise<P: Protocol>(
    proto: &mut P,
    x: &Value<P::Shares>,
    y: &Value<P::Shares>,
    dims: Vec<usize>,
    op: Elementwise,
) -> Result<Value<P::Shares>, Fail> {
    if let Some(v) = plain_elementwise(proto, x, y, &dims, op) {
        return Ok(v);
    }
    Ok(match (x, y) {
        (Value::Public(x), Value::Public(y)) => {
            let (x, y) = (broadcast_to(x, &dims), broadcast_to(y, &dims));
            let f = |(a, b): (&i64, &i64)| {
                if op == Elementwise::Mul {
                    a.wrapping_mul(*b)
                } else if op == Elementwise::Sub {
                    a.wrapping_sub(*b)
                } else {
                    a.wrapping_add(*b)
                }
            };
            Value::Public(Tensor::new(dims, x.iter().zip(&y).map(f).collect()))
        }
        (Value::Secret(s), Value::Public(c)) => {
            let (s, c) = (s.broadcast(&dims), broadcast_to(c, &dims));
            let out = if op == Elementwise::Mul {
                proto.mul_public(&s, &c)
            } else if op == Elementwise::Sub {
                let neg: Vec<i64> = c.iter().map(|v| v.wrapping_neg()).collect();
                proto.add_public(&s, &neg)
            } else {
                proto.add_public(&s, &c)
            };
            Value::Secret(Shared::new(dims, out))
        }
        (Value::Public(c), Value::Secret(s)) => {
            let (s, c) = (s.broadcast(&dims), broadcast_to(c, &dims));
            let out = if op == Elementwise::Mul {
                proto.mul_public(&s, &c)
            } else if op == Elementwise::Sub {
                let cs = proto.public(&c);
                proto.sub(&cs, &s)
            } else {
                proto.add_public(&s, &c)
            };
            Value::Secret(Shared::new(dims, out))
        }
        (Value::Secret(x), Value::Secret(y)) => {
            let (x, y) = (x.broadcast(&dims), y.broadcast(&dims));
            let out = if op == Elementwise::Mul {
                proto.mul(&x, &y)?
            } else if op == Elementwise::Sub {
                proto.sub(&x, &y)
            } else {
                proto.add(&x, &y)
            };
            Value::Secret(Shared::new(dims, out))
        }
    })
}

/// `x op y` in one plaintext pass where both are plaintext ([`Value::plain`]: public, or
/// shares that are the values) and each is whole, one value or one per channel of
/// `dims`; `None` where the general path runs. Public where both are.
fn plain_elementwise<P: Protocol>(
    proto: &P,
    x: &Value<P::Shares>,
    y: &Value<P::Shares>,
    dims: &[usize],
    op: Elementwise,
) -> Option<Value<P::Shares>> {
    use crate::plain::{zip_spread, Spread};
    let a = Spread::of(x.plain(proto)?, dims)?;
    let b = Spread::of(y.plain(proto)?, dims)?;
    let out = match op {
        Elementwise::Add => zip_spread(&a, &b, dims, i64::wrapping_add),
        Elementwise::Sub => zip_spread(&a, &b, dims, i64::wrapping_sub),
        Elementwise::Mul => zip_spread(&a, &b, dims, i64::wrapping_mul),
    };
    let like = if matches!(x, Value::Secret(_)) { x } else { y };
    like.like(proto, dims.to_vec(), out)
}

/// A requantization's parameters from their registers, broadcast to `dims`.
pub(crate) fn requant_params<S>(
    regs: &[Option<Value<S>>],
    (num, den, zp): (u32, u32, u32),
    (lo, hi): (i64, i64),
    dims: &[usize],
) -> Result<qmpc_protocols::Requant, Fail> {
    Ok(qmpc_protocols::Requant {
        num: broadcast_to(public(regs, num)?, dims),
        den: broadcast_to(public(regs, den)?, dims),
        zp: broadcast_to(public(regs, zp)?, dims),
        lo,
        hi,
    })
}

/// `requant` of plaintext values ([`Value::plain`]) whose parameters vary along the
/// channel axis only, without broadcasting them to every element; `None` where the
/// general path runs.
pub(crate) fn plain_requant<P: Protocol>(
    proto: &P,
    regs: &[Option<Value<P::Shares>>],
    x: &Value<P::Shares>,
    (num, den, zp): (u32, u32, u32),
    (lo, hi): (i64, i64),
    dims: &[usize],
) -> Option<Value<P::Shares>> {
    let view = x.plain(proto)?;
    if view.dims != dims || dims.len() < 2 {
        return None;
    }
    let channels = |r: u32| match get(regs, r).ok()? {
        Value::Public(t) => crate::plain::per_channel(&t.dims, &t.data, dims),
        Value::Secret(_) => None,
    };
    let q = qmpc_protocols::Requant {
        num: channels(num)?,
        den: channels(den)?,
        zp: channels(zp)?,
        lo,
        hi,
    };
    x.like(proto, dims.to_vec(), crate::plain::requantize(view, &q))
}

/// `q` on `x`, whose values lie in `b`.
pub(crate) fn requant<P: Protocol>(
    proto: &mut P,
    x: &Value<P::Shares>,
    q: &qmpc_protocols::Requant,
    b: Bounds,
    trunc: qmpc_protocols::TruncMode,
) -> Result<Value<P::Shares>, Fail> {
    Ok(match x {
        Value::Public(t) => Value::Public(Tensor::new(
            t.dims.clone(),
            t.data
                .iter()
                .enumerate()
                .map(|(i, &v)| q.apply(i, v))
                .collect(),
        )),
        Value::Secret(t) => Value::Secret(Shared::new(
            t.dims.clone(),
            proto.requantize(&t.data, q, b, trunc)?,
        )),
    })
}

/// Broadcast the batch axes of a matmul operand to `batch_dims`; returns the flat data and
/// whether it varies along the batch.
fn matmul_operand<'a, T: Operand>(t: &'a T, batch_dims: &[usize]) -> (Cow<'a, T::Data>, bool) {
    let dims = t.dims();
    let r = dims.len();
    let own_batch: usize = dims[..r - 2].iter().product();
    if own_batch <= 1 {
        return (Cow::Borrowed(t.data()), false);
    }
    if dims[..r - 2] == *batch_dims {
        return (Cow::Borrowed(t.data()), true);
    }
    let mut full = batch_dims.to_vec();
    full.extend_from_slice(&dims[r - 2..]);
    (t.broadcast(&full), true)
}

pub(crate) fn matmul<P: Protocol>(
    proto: &mut P,
    a: &Value<P::Shares>,
    b: &Value<P::Shares>,
    out: &[usize],
) -> Result<Value<P::Shares>, Fail> {
    let (ad, bd) = (a.dims().to_vec(), b.dims().to_vec());
    let (m, k, n) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let batch_dims = &out[..out.len() - 2];
    let batch: usize = batch_dims.iter().product();
    let base = MatDims {
        batch,
        m,
        k,
        n,
        a_batched: false,
        b_batched: false,
    };
    let secret = |data| Value::Secret(Shared::new(out.to_vec(), data));
    Ok(match (a, b) {
        (Value::Public(x), Value::Public(y)) => {
            let (xa, ya, d) = matmul_operands(x, y, batch_dims, base);
            Value::Public(Tensor::new(
                out.to_vec(),
                qmpc_protocols::clear::matmul_ring(&xa, &ya, d),
            ))
        }
        (Value::Secret(x), Value::Public(y)) => {
            let (xa, ya, d) = matmul_operands(x, y, batch_dims, base);
            secret(proto.matmul_public(&xa, &ya, d, false))
        }
        (Value::Public(x), Value::Secret(y)) => {
            let (xa, ya, d) = matmul_operands(x, y, batch_dims, base);
            secret(proto.matmul_public(&ya, &xa, d, true))
        }
        (Value::Secret(x), Value::Secret(y)) => {
            let (xa, ya, d) = matmul_operands(x, y, batch_dims, base);
            secret(proto.matmul(&xa, &ya, d)?)
        }
    })
}

/// The operands of a matmul of two secrets, broadcast over the batch axes of `out`, and
/// the product's dimensions.
pub(crate) fn matmul_secret_operands<'a, S: Plane>(
    x: &'a Shared<S>,
    y: &'a Shared<S>,
    out: &[usize],
) -> (Cow<'a, S>, Cow<'a, S>, MatDims) {
    let (ad, bd) = (&x.dims, &y.dims);
    let batch_dims = &out[..out.len() - 2];
    let base = MatDims {
        batch: batch_dims.iter().product(),
        m: ad[ad.len() - 2],
        k: ad[ad.len() - 1],
        n: bd[bd.len() - 1],
        a_batched: false,
        b_batched: false,
    };
    matmul_operands(x, y, batch_dims, base)
}

/// Both operands of a matmul broadcast over `batch_dims`, with `base` marked by which of
/// them varies along the batch.
fn matmul_operands<'a, 'b, A: Operand, B: Operand>(
    x: &'a A,
    y: &'b B,
    batch_dims: &[usize],
    base: MatDims,
) -> (Cow<'a, A::Data>, Cow<'b, B::Data>, MatDims) {
    let (xa, a_batched) = matmul_operand(x, batch_dims);
    let (ya, b_batched) = matmul_operand(y, batch_dims);
    let d = MatDims {
        a_batched,
        b_batched,
        ..base
    };
    (xa, ya, d)
}

/// im2col columns `[N·G, C/G·kh·kw, OH·OW]` of `x` for a grouped convolution.
fn im2col<T: Clone>(
    x: &Tensor<T>,
    win: &tensor::Window,
    group: usize,
    zero: T,
) -> Result<(usize, usize, Vec<T>), String> {
    let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let (oh, ow, plan) = win
        .gather_plan(h, w)
        .ok_or("convolution window larger than the input")?;
    let kk = win.kernel[0] * win.kernel[1];
    let cg = c / group;
    let ohw = oh * ow;
    let mut cols = Vec::with_capacity(n * c * kk * ohw);
    for b in 0..n {
        for g in 0..group {
            for ci in 0..cg {
                let plane =
                    &x.data[((b * c) + g * cg + ci) * h * w..((b * c) + g * cg + ci + 1) * h * w];
                for k in 0..kk {
                    for o in 0..ohw {
                        cols.push(match plan[o * kk + k] {
                            Some(i) => plane[i].clone(),
                            None => zero.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok((oh, ow, cols))
}

/// Weights `[M, C/G, kh, kw]` as `[N·G, M/G, C/G·kh·kw]`, repeated for every sample where
/// `repeat` (`[M, C/G·kk]` is already `[G, M/G, C/G·kk]` in row-major order), else
/// borrowed.
fn weight_blocks<T: Clone>(w: &Tensor<T>, n: usize, repeat: bool) -> Cow<'_, [T]> {
    if !repeat {
        return Cow::Borrowed(&w.data);
    }
    let mut out = Vec::with_capacity(n * w.data.len());
    for _ in 0..n {
        out.extend_from_slice(&w.data);
    }
    Cow::Owned(out)
}

/// [`weight_blocks`] of secret weights, borrowed where they need no repeat.
fn weight_blocks_shared<S: Plane>(w: &Shared<S>, n: usize, repeat: bool) -> Cow<'_, S> {
    if repeat {
        Cow::Owned(S::concat(&vec![&w.data; n]))
    } else {
        Cow::Borrowed(&w.data)
    }
}

/// [`im2col`] of a secret input: the columns of its element indices, gathered. The
/// indices are written straight from the window plan, one input plane per task.
fn im2col_shared<'x, S: Plane>(
    x: &'x Shared<S>,
    win: &tensor::Window,
) -> Result<Cow<'x, S>, String> {
    if is_pointwise(win) {
        // A 1×1 window without stride or padding reads every element once, in order:
        // the columns are the input itself.
        return Ok(Cow::Borrowed(&x.data));
    }
    let (h, w) = (x.dims[2], x.dims[3]);
    let (oh, ow, plan) = win
        .gather_plan(h, w)
        .ok_or("convolution window larger than the input")?;
    let (kk, ohw) = (win.kernel[0] * win.kernel[1], oh * ow);
    // `im2col` walks (sample, group, channel of the group) in order, which is the input
    // plane's own index `b·c + g·(c/g) + ci`; so output block `p` reads input plane `p`
    // whatever the grouping.
    let block = (kk * ohw).max(1);
    let len = x.data.len() / (h * w).max(1) * kk * ohw;
    Ok(Cow::Owned(x.data.gather_by(len, |o| {
        let (plane, r) = (o / block, o % block);
        plan[(r % ohw) * kk + r / ohw].map_or(PAD, |i| plane * h * w + i)
    })))
}

/// Whether `win` is a 1×1 window with unit strides and no padding.
fn is_pointwise(win: &tensor::Window) -> bool {
    win.kernel == [1, 1] && win.strides == [1, 1] && win.pads == [0; 4]
}

/// A convolution as one batched product over `N·G` blocks `[M/G, K] x [K, OH·OW]`.
pub(crate) struct ConvPlan {
    pub dims: MatDims,
    pub win: tensor::Window,
    /// Samples, whose weights repeat where `repeat`.
    pub n: usize,
    pub repeat: bool,
}

/// The product a convolution of `x` by `w` (dimensions) runs as, for an output of `out`.
pub(crate) fn conv_plan(
    x: &[usize],
    wd: &[usize],
    (strides, pads, dilations): (&[i64], &[i64], &[i64]),
    group: usize,
    out: &[usize],
) -> Result<ConvPlan, Fail> {
    let win = shapes::window(&wd[2..], strides, pads, dilations)?;
    let n = x[0];
    let (mg, k) = (wd[0] / group, wd[1] * wd[2] * wd[3]);
    let ohw = out[2] * out[3];
    // One batched product over N·G blocks: [M/G, K] x [K, OH·OW] each. Block `b` reads
    // weight block `b mod G`: with one group every block reads the same weights, and with
    // one sample the blocks are the weights' own groups, so only several samples of a
    // grouped convolution need the weights repeated.
    let repeat = n > 1 && group > 1;
    let dims = MatDims {
        batch: n * group,
        m: mg,
        k,
        n: ohw,
        a_batched: group > 1,
        b_batched: true,
    };
    Ok(ConvPlan {
        dims,
        win,
        n,
        repeat,
    })
}

/// The operands of a convolution of two secrets as its product runs them: the weight
/// blocks and the input's columns.
pub(crate) fn conv_secret_operands<'a, S: Plane>(
    plan: &ConvPlan,
    x: &'a Shared<S>,
    w: &'a Shared<S>,
) -> Result<(Cow<'a, S>, Cow<'a, S>), Fail> {
    let cols = im2col_shared(x, &plan.win)?;
    Ok((weight_blocks_shared(w, plan.n, plan.repeat), cols))
}

#[allow(clippy::too_many_arguments)]
fn conv<P: Protocol>(
    proto: &mut P,
    x: &Value<P::Shares>,
    w: &Value<P::Shares>,
    strides: &[i64],
    pads: &[i64],
    dilations: &[i64],
    group: usize,
    out: &[usize],
) -> Result<Value<P::Shares>, Fail> {
    let plan = conv_plan(x.dims(), w.dims(), (strides, pads, dilations), group, out)?;
    if let (Some(xv), Some(wv)) = (x.plain(proto), w.plain(proto)) {
        let data = crate::plain::conv_requant(xv, wv, &plan.win, group, None)?;
        // A public product is public; any secret operand makes it shares.
        let like = if matches!(x, Value::Secret(_)) { x } else { w };
        if let Some(v) = like.like(proto, out.to_vec(), data) {
            return Ok(v);
        }
    }
    conv_value(proto, x, w, &plan, group, out)
}

/// The convolution of `x` by `w` as `plan` runs it.
pub(crate) fn conv_value<P: Protocol>(
    proto: &mut P,
    x: &Value<P::Shares>,
    w: &Value<P::Shares>,
    plan: &ConvPlan,
    group: usize,
    out: &[usize],
) -> Result<Value<P::Shares>, Fail> {
    let (win, n, repeat, dims) = (&plan.win, plan.n, plan.repeat, plan.dims);
    let data = match (x, w) {
        (Value::Public(xt), Value::Public(wt)) => {
            let (_, _, cols) = im2col(xt, win, group, 0)?;
            let wb = weight_blocks(wt, n, repeat);
            return Ok(Value::Public(Tensor::new(
                out.to_vec(),
                qmpc_protocols::clear::matmul_ring(&wb, &cols, dims),
            )));
        }
        (Value::Secret(xt), Value::Public(wt)) => {
            let cols = im2col_shared(xt, win)?;
            let wb = weight_blocks(wt, n, repeat);
            proto.matmul_public(&cols, &wb, dims, true)
        }
        (Value::Public(xt), Value::Secret(wt)) => {
            let (_, _, cols) = im2col(xt, win, group, 0)?;
            let wb = weight_blocks_shared(wt, n, repeat);
            proto.matmul_public(&wb, &cols, dims, false)
        }
        (Value::Secret(xt), Value::Secret(wt)) => {
            let (wb, cols) = conv_secret_operands(plan, xt, wt)?;
            proto.matmul(&wb, &cols, dims)?
        }
    };
    Ok(Value::Secret(Shared::new(out.to_vec(), data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// A secret tensor whose shares are its element numbers, so a move of shares can be
    /// compared with the same move of public values.
    fn numbered(dims: &[usize]) -> (Tensor<i64>, Shared<Vec<i64>>) {
        let n: usize = dims.iter().product();
        let v: Vec<i64> = (1..=n as i64).collect();
        (
            Tensor::new(dims.to_vec(), v.clone()),
            Shared::new(dims.to_vec(), v),
        )
    }

    proptest! {
        /// A pooling sum adds every window position's element, whichever way it pairs
        /// them (halves below [`TREE_SUM_ELEMENTS`], one position at a time above), padding
        /// reading zero.
        #[test]
        fn window_sums_add_every_position(
            (positions, n) in (1usize..40, 1usize..6),
            values in vec(any::<i64>(), 1..50),
        ) {
            let cols: Vec<Vec<usize>> = (0..positions)
                .map(|p| (0..n).map(|i| if (p + i) % 5 == 4 { PAD } else { (p * 7 + i) % values.len() }).collect())
                .collect();
            let want: Vec<i64> = (0..n)
                .map(|i| cols.iter().filter(|c| c[i] != PAD).fold(0i64, |a, c| a.wrapping_add(values[c[i]])))
                .collect();
            let clear = qmpc_protocols::Clear;
            prop_assert_eq!(sum_windows(&clear, &values, &cols), want);
        }

        /// The formula moves (`broadcast`, `im2col_shared`) equal `tensor.rs`'s moves of
        /// values, padding reading zero.
        #[test]
        fn moves_of_shares_equal_the_moves_of_values(
            dims in vec(1usize..4, 1..4),
            ones in vec(any::<bool>(), 4),
            lead in vec(1usize..3, 0..2),
            (c, g) in (1usize..3).prop_flat_map(|g| (1usize..3).prop_map(move |k| (k * g, g))),
            (hw, k, s, pad, dil) in (3usize..7, 1usize..4, 1i64..3, 0i64..2, 1i64..3),
        ) {
            let small: Vec<usize> = dims.iter().zip(&ones).map(|(&d, &o)| if o { 1 } else { d }).collect();
            let full: Vec<usize> = lead.iter().chain(&dims).copied().collect();
            let (t, sh) = numbered(&small);
            prop_assert_eq!(sh.broadcast(&full).into_owned(), broadcast_to(&t, &full));

            let (t, sh) = numbered(&[2, c, hw, hw + 1]);
            let win = shapes::window(&[k, k], &[s, s], &[pad, pad, pad, pad], &[dil, dil]).unwrap();
            if let Ok((_, _, want)) = im2col(&t, &win, g, 0) {
                prop_assert_eq!(im2col_shared(&sh, &win).unwrap().into_owned(), want);
            }
        }
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::bytecode::asm::assemble;
    use crate::verify::verify;
    use qmpc_protocols::clear::Clear;

    /// A momentum step in fixed point: `v' = 9v/10 + g`, with `g` a constant; `v` must
    /// stay within ±2^20, which `9·2^20/10 + 1 + 2^16 ≤ 2^20` proves.
    const STEP: &str = r#"
.program name="momentum", trunc=exact
.state 0, name="v", type=fx16, dims=[2], batched=0, lo=-1048576, hi=1048576
.const 0, type=fx16, dims=[2], data=[65536, -32768]
.const 1, type=i64, dims=[1], data=[9]
.const 2, type=i64, dims=[1], data=[10]
.reg %0, type=fx16, dims=[2], batched=0, vis=secret, lo=-1048576, hi=1048576
.reg %1, type=i64, dims=[1], batched=0, vis=public, lo=9, hi=9
.reg %2, type=i64, dims=[1], batched=0, vis=public, lo=10, hi=10
.reg %3, type=fx16, dims=[2], batched=0, vis=secret, lo=-943719, hi=943719
.reg %4, type=fx16, dims=[2], batched=0, vis=public, lo=-32768, hi=65536
.reg %5, type=fx16, dims=[2], batched=0, vis=secret, lo=-976487, hi=1009255
%0 = load index=0
%1 = const index=1
%2 = const index=2
%3 = rescale x=%0, num=%1, den=%2
%4 = const index=0
%5 = add a=%3, b=%4
store x=%5, index=0
"#;

    #[test]
    fn stores_carry_state_from_one_run_to_the_next() {
        let p = assemble(STEP).unwrap();
        verify(&p).unwrap();
        let text = crate::bytecode::asm::disassemble(&p);
        assert_eq!(assemble(&text).unwrap(), p);
        let bytes = p.to_bytes();
        assert_eq!(Program::from_bytes(&bytes).unwrap(), p);
        let mut states = States::new();
        states.insert("v".into(), Shared::new(vec![2], vec![0i64, 0]));
        assert_eq!(states.runs(), 0);
        let (mut v0, mut v1) = (0i64, 0i64);
        for _ in 0..5 {
            run_session(
                &p,
                &mut Clear,
                Roles::default(),
                &PartyData::default(),
                1,
                &mut states,
            )
            .unwrap();
            v0 = qmpc_protocols::ring::rescale(v0, 9, 10) + 65536;
            v1 = qmpc_protocols::ring::rescale(v1, 9, 10) - 32768;
        }
        assert_eq!(states.get("v").unwrap().data, vec![v0, v1]);
        assert_eq!(states.runs(), 5);
        assert!(v0 > 4 * 65536, "five steps of momentum accumulate: {v0}");
    }

    #[test]
    fn a_load_without_a_value_names_the_state() {
        let p = assemble(STEP).unwrap();
        let e = run(&p, &mut Clear, Roles::default(), &PartyData::default(), 1).unwrap_err();
        assert!(e.to_string().contains("state `v` has no value"), "{e}");
    }

    #[test]
    fn the_verifier_holds_stores_to_the_state_invariant_and_scales_to_their_rules() {
        // A state whose bound the step cannot keep: 9·2^19/10 + 2^16 > 2^19.
        let loose = STEP
            .replace(
                "lo=-1048576, hi=1048576\n.const",
                "lo=-524288, hi=524288\n.const",
            )
            .replace(
                "%0, type=fx16, dims=[2], batched=0, vis=secret, lo=-1048576, hi=1048576",
                "%0, type=fx16, dims=[2], batched=0, vis=secret, lo=-524288, hi=524288",
            );
        let e = verify(&assemble(&loose).unwrap()).unwrap_err().to_string();
        assert!(e.contains("state `v` promises"), "{e}");
        let twice = format!("{STEP}store x=%5, index=0\n");
        let e = verify(&assemble(&twice).unwrap()).unwrap_err().to_string();
        assert!(e.contains("stored twice"), "{e}");
        // Adding an integer to a fixed-point value mixes scales.
        let mixed = STEP.replace(
            ".const 0, type=fx16, dims=[2]",
            ".const 0, type=i64, dims=[2]",
        );
        let mixed = mixed.replace(
            "%4, type=fx16, dims=[2], batched=0, vis=public",
            "%4, type=i64, dims=[2], batched=0, vis=public",
        );
        let e = verify(&assemble(&mixed).unwrap()).unwrap_err().to_string();
        assert!(e.contains("different scales"), "{e}");
    }
}
