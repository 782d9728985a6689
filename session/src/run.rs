//! `qmpc run`: load or compile a program, quantize the input, run every party, write outputs.

use crate::npy::{self, Array};
use crate::party;
use anyhow::{bail, Context, Result};
use qmpc_protocols::net::{Security, Stats, Timeouts};
use qmpc_protocols::Spec;
use qmpc_vm::bytecode::{
    ExternalType, InputDecl, OutputDecl, PostOp, Program, QuantParams, Weights,
};
use qmpc_vm::interp::{self, PartyData, Roles};
use qmpc_vm::tensor::Tensor;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct RunArgs {
    pub model: PathBuf,
    pub protocol: String,
    pub parties: Option<usize>,
    /// `X.npy` or `NAME=X.npy`, one per distinct graph input.
    pub input: Vec<String>,
    pub output: Option<PathBuf>,
    pub stats: Option<PathBuf>,
    pub opts: qmpc_compiler::Options,
    pub roles: Roles,
    pub timeouts: Timeouts,
}

/// Read and verify a `.qmpc` file.
pub fn load_program(path: &Path) -> Result<Program> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let p = Program::from_bytes(&bytes)
        .with_context(|| format!("{}: not a valid qmpc program", path.display()))?;
    qmpc_vm::verify::verify(&p)
        .with_context(|| format!("{}: rejected by the verifier", path.display()))?;
    Ok(p)
}

fn load(args: &RunArgs) -> Result<(Program, Weights)> {
    if args.model.extension().is_some_and(|e| e == "onnx") {
        let c = qmpc_compiler::compile_file(&args.model, &args.opts)?;
        return Ok((c.program, c.weights));
    }
    let p = load_program(&args.model)?;
    let weights = if p.weights.is_empty() {
        Weights { tensors: vec![] }
    } else {
        let wp = crate::weights_path(&args.model);
        let bytes = std::fs::read(&wp)
            .with_context(|| format!("{}: cannot read the model owner's weights", wp.display()))?;
        Weights::from_bytes(&bytes)
            .with_context(|| format!("{}: not a valid weights file", wp.display()))?
    };
    Ok((p, weights))
}

/// Quantize the data owner's input with the program's public parameters; returns the batch.
pub fn quantize_input(decl: &InputDecl, a: &Array) -> Result<(Tensor<i64>, usize)> {
    let want = &decl.ty.dims;
    let got = a.dims();
    let batch = if decl.ty.batched {
        if got.len() != want.len() || got[1..] != want[1..] || got[0] == 0 {
            bail!(
                "input `{}` has shape {:?}, the model takes {}",
                decl.name,
                got,
                decl.ty
            );
        }
        got[0]
    } else {
        if got != want.as_slice() {
            bail!(
                "input `{}` has shape {:?}, the model takes {:?}",
                decl.name,
                got,
                want
            );
        }
        1
    };
    let (lo, hi) = decl.ty.dtype.range();
    let data = match (a, &decl.quant) {
        (Array::F32(_, v), Some(q)) => quantize(v, got, q, lo, hi),
        (Array::F32(..), None) => bail!(
            "input `{}` takes {} integers, the file holds float32",
            decl.name,
            decl.ty.dtype
        ),
        (Array::Int(_, v, t), _) => {
            if let Some(bad) = v.iter().find(|&&x| x < lo || x > hi) {
                bail!(
                    "input `{}` takes {}, the file's {t} holds {bad}",
                    decl.name,
                    decl.ty.dtype
                );
            }
            v.clone()
        }
    };
    Ok((Tensor::new(got.to_vec(), data), batch))
}

/// Reads and quantizes the data owner's files for every input of the program. A graph input
/// quantized twice appears as two program inputs of one name; both take the same file.
pub fn read_inputs(program: &Program, specs: &[String]) -> Result<(Vec<Tensor<i64>>, usize)> {
    let mut names: Vec<&str> = Vec::new();
    for i in &program.inputs {
        if !names.contains(&i.name.as_str()) {
            names.push(&i.name);
        }
    }
    let mut files: Vec<Option<PathBuf>> = vec![None; names.len()];
    let mut positional = Vec::new();
    for spec in specs {
        match spec.split_once('=') {
            Some((name, path)) if !Path::new(spec).exists() => {
                let i = names.iter().position(|n| *n == name).with_context(|| {
                    format!("--input {spec}: the model has no input `{name}` (it takes {names:?})")
                })?;
                files[i] = Some(PathBuf::from(path));
            }
            _ => positional.push(PathBuf::from(spec)),
        }
    }
    let mut positional = positional.into_iter();
    for f in files.iter_mut().filter(|f| f.is_none()) {
        *f = positional.next();
    }
    if positional.next().is_some() {
        bail!(
            "{} --input files for a model with {} input(s) {names:?}",
            specs.len(),
            names.len()
        );
    }
    let mut arrays = Vec::new();
    for (name, f) in names.iter().zip(&files) {
        let f = f
            .as_ref()
            .with_context(|| format!("no --input for the model's input `{name}`"))?;
        arrays.push((*name, f, npy::read(f)?));
    }
    let mut batch = None;
    let mut out = Vec::new();
    for decl in &program.inputs {
        let (_, file, arr) = arrays
            .iter()
            .find(|(n, _, _)| *n == decl.name)
            .context("every input has a file")?;
        let (x, b) = quantize_input(decl, arr).with_context(|| file.display().to_string())?;
        if *batch.get_or_insert(b) != b {
            bail!(
                "{}: batch {b} differs from the other inputs' batch {}",
                file.display(),
                batch.unwrap_or(b)
            );
        }
        out.push(x);
    }
    Ok((out, batch.unwrap_or(1)))
}

/// `QuantizeLinear` as onnxruntime computes it: `x / scale` in f32, round half to even, add the
/// zero point, saturate.
fn quantize(v: &[f32], dims: &[usize], q: &QuantParams, lo: i64, hi: i64) -> Vec<i64> {
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            let c = q.param_index(i, dims);
            let r = (x / q.scale[c]).round_ties_even();
            let r = if r.is_nan() { 0 } else { r as i64 };
            r.saturating_add(q.zero_point[c]).clamp(lo, hi)
        })
        .collect()
}

/// What the output receiver computes in the clear from the revealed integers.
pub fn finish_output(decl: &OutputDecl, t: &Tensor<i64>) -> Vec<u8> {
    match (&decl.dequant, decl.external) {
        (Some(q), _) => {
            let mut v: Vec<f32> = t
                .data
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let c = q.param_index(i, &t.dims);
                    ((x - q.zero_point[c]) as f32) * q.scale[c]
                })
                .collect();
            if let PostOp::Softmax { axis } = decl.post {
                softmax(&mut v, &t.dims, axis);
            }
            npy::encode_f32(&t.dims, &v)
        }
        (None, ExternalType::I8) => npy::encode_ints("|i1", &t.dims, &t.data),
        (None, ExternalType::U8) => npy::encode_ints("|u1", &t.dims, &t.data),
        (None, ExternalType::I32) => npy::encode_ints("<i4", &t.dims, &t.data),
        (None, ExternalType::I64) => npy::encode_ints("<i8", &t.dims, &t.data),
        (None, ExternalType::F32) => npy::encode_f32(
            &t.dims,
            &t.data.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        ),
    }
}

fn softmax(v: &mut [f32], dims: &[usize], axis: usize) {
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let idx = |k: usize| (o * n + k) * inner + i;
            let m = (0..n).map(|k| v[idx(k)]).fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = (0..n).map(|k| (v[idx(k)] - m).exp()).sum();
            for k in 0..n {
                v[idx(k)] = (v[idx(k)] - m).exp() / s;
            }
        }
    }
}

pub fn run(args: &RunArgs) -> Result<()> {
    let (spec, n) = party::protocol(&args.protocol, args.parties)?;
    let (program, weights) = load(args)?;
    party::warn_probabilistic(&program, spec);
    let (inputs, batch) = read_inputs(&program, &args.input)?;
    let (outs, per_party, times, dealer) = if spec.is_clear() {
        let start = Instant::now();
        let roles = Roles {
            model_owner: 0,
            data_owner: 0,
            output_to: 0,
        };
        let data = PartyData {
            inputs: Some(inputs),
            weights: Some(weights),
        };
        let outs = interp::run(&program, &mut qmpc_protocols::Clear, roles, &data, batch)?;
        let wall = start.elapsed().as_secs_f64();
        (outs, vec![Stats::default()], (wall, wall), None)
    } else {
        run_local_parties(args, (spec, n), &program, weights, inputs, batch)?
    };
    if let Some(path) = &args.output {
        write_output(&program, &outs, path)?;
    }
    if let Some(path) = &args.stats {
        std::fs::write(
            path,
            party::stats_json(
                spec,
                qmpc_vm::cost::ring_bits(spec, &program),
                batch,
                &per_party,
                times,
                dealer.as_ref(),
            ),
        )
        .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// Write the first output of the program (what the receiver computes from the integers).
fn write_output(program: &Program, outs: &[Option<Tensor<i64>>], path: &Path) -> Result<()> {
    let (decl, t) = program
        .outputs
        .iter()
        .zip(outs)
        .next()
        .context("the program has no output")?;
    let t = t.as_ref().context("no output was revealed to this party")?;
    std::fs::write(path, finish_output(decl, t))
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// The output receiver's outputs, each party's online traffic, the wall time with and
/// without the connection set-up (the slowest party's), and the dealer's figures.
type Outcome = (
    Vec<Option<Tensor<i64>>>,
    Vec<Stats>,
    (f64, f64),
    Option<party::DealerResult>,
);

/// Every party of a secure protocol on its own thread, connected over loopback TCP. Returns
/// the output receiver's outputs, each party's online traffic and the wall time.
fn run_local_parties(
    args: &RunArgs,
    (spec, n): (&'static Spec, usize),
    program: &Program,
    weights: Weights,
    inputs: Vec<Tensor<i64>>,
    batch: usize,
) -> Result<Outcome> {
    let roles = args.roles;
    party::check_roles(roles, n).with_context(|| format!("protocol `{}`", args.protocol))?;
    let dealt = spec.dealer;
    let (addrs, mut listeners) = qmpc_protocols::net::loopback(n + usize::from(dealt))?;
    let dealer_listener = if dealt { listeners.pop() } else { None };
    let mut weights = Some(weights);
    let mut inputs = Some(inputs);
    let datas: Vec<PartyData> = (0..n)
        .map(|i| PartyData {
            inputs: if i == roles.data_owner {
                inputs.take()
            } else {
                None
            },
            weights: if i == roles.model_owner {
                weights.take()
            } else {
                None
            },
        })
        .collect();
    let pool = &party::party_pool(n)?;
    let start = Instant::now();
    let (results, dealer) = std::thread::scope(|s| {
        let dealer = dealer_listener.map(|l| {
            let addrs = &addrs;
            s.spawn(move || {
                party::run_dealer(program, spec, l, addrs, roles, (args.timeouts, &PLAIN))
                    .context("the dealer")
            })
        });
        let handles: Vec<_> = listeners
            .into_iter()
            .zip(&datas)
            .enumerate()
            .map(|(i, (l, data))| {
                let addrs = &addrs;
                s.spawn(move || {
                    pool.install(|| {
                        party::run_party(
                            program,
                            spec,
                            i,
                            l,
                            addrs,
                            roles,
                            data,
                            (i == roles.data_owner).then_some(batch),
                            (args.timeouts, &PLAIN),
                        )
                    })
                    .with_context(|| format!("party {i}"))
                })
            })
            .collect();
        let results: Vec<Result<party::PartyResult>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a party thread panicked")))
            })
            .collect();
        let dealer = dealer.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the dealer thread panicked")))
        });
        (results, dealer)
    });
    let wall = start.elapsed().as_secs_f64();
    // A party that fails first makes the others see it disconnect: report the root cause.
    let dealer_failed = matches!(dealer, Some(Err(_)));
    if results.iter().any(|r| r.is_err()) || dealer_failed {
        let mut errs: Vec<anyhow::Error> = results.into_iter().filter_map(|r| r.err()).collect();
        if let Some(Err(e)) = dealer {
            errs.insert(0, e);
        }
        let text = |e: &anyhow::Error| format!("{e:#}");
        // Where every error echoes another, a wait that ran out is the root cause (a party
        // or the dealer that took longer than the timeout), not the disconnects it caused.
        let timed_out = |e: &anyhow::Error| text(e).contains("sent nothing");
        let pick = errs
            .iter()
            .position(|e| !party::is_echo(&text(e)))
            .or_else(|| errs.iter().position(timed_out))
            .unwrap_or(0);
        let err = errs
            .into_iter()
            .nth(pick)
            .unwrap_or_else(|| anyhow::anyhow!("a party failed"));
        if timed_out(&err) {
            return Err(err.context(format!(
                "a party waited longer than --timeout {} s; a large batch can need more (the \
                 dealer builds all its material before it sends)",
                args.timeouts.io.as_secs_f64()
            )));
        }
        return Err(err);
    }
    let mut per_party = Vec::new();
    let mut outs = Vec::new();
    let mut online: f64 = 0.0;
    for (i, r) in results.into_iter().enumerate() {
        let r = r?;
        per_party.push(r.stats);
        online = online.max(r.online_s);
        if i == roles.output_to {
            outs = r.outputs;
        }
    }
    Ok((outs, per_party, (wall, online), dealer.transpose()?))
}

/// `qmpc party`: one party in its own process, addresses and roles from the TOML file.
pub fn party(args: &PartyArgs) -> Result<()> {
    let cfg = party::PartiesConfig::read(&args.config)?;
    let (spec, n) = party::protocol(&cfg.protocol, Some(cfg.party.len()))?;
    let Some(me) = args.id else {
        return dealer(args, &cfg, spec);
    };
    if me >= n {
        bail!("--id {me}: {} lists parties 0..{n}", args.config.display());
    }
    let roles = cfg.roles();
    if args.weights_file.is_some() && me != roles.model_owner {
        bail!(
            "party {me} is not the model owner (party {}); it must not be given --weights-file",
            roles.model_owner
        );
    }
    if !args.input.is_empty() && me != roles.data_owner {
        bail!(
            "party {me} is not the data owner (party {}); it must not be given --input",
            roles.data_owner
        );
    }
    if args.output.is_some() && me != roles.output_to {
        bail!(
            "party {me} does not receive the output (party {} does); it must not be given --output",
            roles.output_to
        );
    }
    let security = cfg.security(&args.config, args.key.as_deref(), args.insecure)?;
    let program = load_program(&args.model)?;
    party::warn_probabilistic(&program, spec);
    let weights = if me == roles.model_owner {
        if program.weights.is_empty() {
            Some(Weights { tensors: vec![] })
        } else {
            let wp = args
                .weights_file
                .as_ref()
                .context("the model owner needs --weights-file MODEL.qmpw")?;
            let bytes = std::fs::read(wp)
                .with_context(|| format!("{}: cannot read the weights", wp.display()))?;
            Some(
                Weights::from_bytes(&bytes)
                    .with_context(|| format!("{}: not a valid weights file", wp.display()))?,
            )
        }
    } else {
        None
    };
    let (inputs, batch) = if me == roles.data_owner {
        if args.input.is_empty() {
            bail!("the data owner needs --input X.npy");
        }
        let (x, b) = read_inputs(&program, &args.input)?;
        (Some(x), Some(b))
    } else {
        (None, None)
    };
    let addrs = cfg.addrs()?;
    let listener = party::listen(addrs[me], &format!("party {me}"))?;
    let data = PartyData { inputs, weights };
    let timeouts = cfg.timeouts()?;
    let r = party::party_pool(1)?
        .install(|| {
            party::run_party(
                &program,
                spec,
                me,
                listener,
                &addrs,
                roles,
                &data,
                batch,
                (timeouts, &security),
            )
        })
        .with_context(|| format!("party {me}"))?;
    if let Some(path) = &args.output {
        write_output(&program, &r.outputs, path)?;
    }
    if let Some(path) = &args.stats {
        // This party's own figures; the others are not known here.
        std::fs::write(
            path,
            party::stats_json(
                spec,
                qmpc_vm::cost::ring_bits(spec, &program),
                r.batch,
                &[r.stats],
                (r.wall_s, r.online_s),
                None,
            ),
        )
        .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// `qmpc party --role dealer`: the dealer holds no data and writes no output.
fn dealer(args: &PartyArgs, cfg: &party::PartiesConfig, spec: &Spec) -> Result<()> {
    if !spec.dealer {
        bail!("protocol `{}` has no dealer", spec.name);
    }
    if args.weights_file.is_some() || !args.input.is_empty() || args.output.is_some() {
        bail!("the dealer holds no weights, input or output");
    }
    let security = cfg.security(&args.config, args.key.as_deref(), args.insecure)?;
    let program = load_program(&args.model)?;
    let addrs = cfg.addrs()?;
    let me = addrs.len() - 1;
    let listener = party::listen(addrs[me], "the dealer")?;
    let d = party::run_dealer(
        &program,
        spec,
        listener,
        &addrs,
        cfg.roles(),
        (cfg.timeouts()?, &security),
    )
    .context("the dealer")?;
    if let Some(path) = &args.stats {
        let json = format!(
            "{{\"protocol\": \"{}\", \"role\": \"dealer\", \"preprocessing\": \
             {{\"bytes_sent\": {}, \"wall_s\": {:.6}}}}}\n",
            cfg.protocol, d.stats.bytes_sent, d.wall_s
        );
        std::fs::write(path, json).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

pub struct PartyArgs {
    /// `None`: the dealer.
    pub id: Option<usize>,
    pub config: PathBuf,
    pub model: PathBuf,
    pub weights_file: Option<PathBuf>,
    pub input: Vec<String>,
    pub output: Option<PathBuf>,
    pub stats: Option<PathBuf>,
    /// This party's TLS key (`qmpc keygen`), or `None` with `insecure`.
    pub key: Option<PathBuf>,
    pub insecure: bool,
}

/// `qmpc run`'s parties are threads of one process on loopback: no one else is on the
/// links (tests run the same meshes with TLS on).
const PLAIN: Security = Security::Plain;

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |b, (i, &x)| if x > row[b] { i } else { b })
}

/// `qmpc demo`: the README's first command.
pub fn demo(model: &Path, dir: &Path) -> Result<()> {
    let out = std::env::temp_dir().join(format!("qmpc-demo-{}.npy", std::process::id()));
    let args = RunArgs {
        model: model.to_path_buf(),
        protocol: "clear".into(),
        parties: None,
        input: vec![dir.join("input.npy").display().to_string()],
        output: Some(out.clone()),
        stats: None,
        opts: Default::default(),
        roles: Roles::default(),
        timeouts: Timeouts::default(),
    };
    run(&args)?;
    let got = npy::read(&out)?;
    let want = npy::read(&dir.join("output_0.npy"))?;
    let _ = std::fs::remove_file(&out);
    let (Array::F32(d, g), Array::F32(_, w)) = (got, want) else {
        bail!("unexpected output types")
    };
    let cols = d
        .get(1)
        .copied()
        .context("output is not [batch, classes]")?;
    let mut agree = 0;
    for (i, (a, b)) in g.chunks(cols).zip(w.chunks(cols)).enumerate() {
        let (p, r) = (argmax(a), argmax(b));
        agree += usize::from(p == r);
        if i < 8 {
            println!("image {i}: qmpc (clear) predicts {p}, onnxruntime predicts {r}");
        }
    }
    println!("{agree}/{} predictions agree with onnxruntime", d[0]);
    Ok(())
}
