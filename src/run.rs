//! `qmpc run`, `qmpc party` (inference) and `qmpc demo`: files in and out around the
//! library's [`Session`] and [`Member`].

use crate::progress::{Goal, Progress};
use anyhow::{bail, Context, Result};
use qmpc_protocols::net::{Timeouts, Traffic};
use qmpc_session::{load_program, load_weights, npy, Array, Input, Member, Model, Roles, Session};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct RunArgs {
    pub model: PathBuf,
    pub protocol: String,
    pub parties: Option<usize>,
    /// `--favor`: what the protocol's constructions save (rep3 only).
    pub favor: qmpc_protocols::Favor,
    /// `X.npy` or `NAME=X.npy`, one per distinct graph input.
    pub input: Vec<String>,
    pub output: Option<PathBuf>,
    pub stats: Option<PathBuf>,
    pub opts: qmpc_session::CompileOptions,
    pub roles: Roles,
    pub timeouts: Timeouts,
    /// No prediction before a secure run, no summary after it.
    pub quiet: bool,
}

/// Reads the data owner's `--input` files, one per graph input of the program: `NAME=FILE`
/// for the input `NAME`, plain files for the others in graph order.
fn read_inputs(
    program: &qmpc_vm::bytecode::Program,
    specs: &[String],
) -> Result<Vec<(PathBuf, Array)>> {
    let names = qmpc_session::io::input_names(program);
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
    names
        .iter()
        .zip(files)
        .map(|(name, f)| {
            let f = f.with_context(|| format!("no --input for the model's input `{name}`"))?;
            let a = npy::read(&f)?;
            Ok((f, a))
        })
        .collect()
}

/// The arrays as the library's inputs, each named by its file in errors.
fn as_inputs(arrays: &[(PathBuf, Array)]) -> Vec<Input<'_>> {
    arrays
        .iter()
        .map(|(f, a)| Input {
            array: a,
            origin: Some(f.display().to_string()),
        })
        .collect()
}

pub fn run(args: &RunArgs) -> Result<()> {
    let session = Session::favoring(&args.protocol, args.parties, args.favor)?
        .with_roles(args.roles)?
        .with_timeout(args.timeouts.io);
    let model = Model::open(&args.model, &args.opts)?;
    let arrays = read_inputs(&model.program, &args.input)?;
    let inputs = as_inputs(&arrays);
    let secure = !session.protocol().is_clear();
    let (session, progress) = if secure && !args.quiet {
        // Before a run that may send tens of GB, say what it will cost; while it runs, a
        // progress line on a terminal.
        let (_, batch) = qmpc_session::io::quantize_inputs(&model.program, &inputs)?;
        // A protocol whose costs come from its own code run on zeros (`mal-rep3`) takes
        // minutes to predict a large network: say what is happening meanwhile.
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        if tty {
            eprint!("predicting the run's rounds and bytes (--quiet skips this)...");
        }
        let start = std::time::Instant::now();
        let cost = session.cost(&model.program, batch)?;
        if tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{}", prediction(&cost, start.elapsed()));
        let party0 = cost.program.per_party.first();
        let goal = Goal {
            rounds: party0.map_or(0, |p| p.rounds),
            bytes: party0.map_or(0, |p| p.bytes_sent),
        };
        let traffic = Arc::new(Traffic::default());
        (
            session.watched(traffic.clone()),
            Some(Progress::start(traffic, goal)),
        )
    } else {
        (session, None)
    };
    let outcome = session.run(&model, &inputs);
    drop(progress);
    let outcome = outcome?;
    if secure && !args.quiet {
        eprintln!("{}", measured(&outcome));
    }
    if let Some(path) = &args.output {
        write_output(outcome.outputs.first(), path)?;
    } else {
        for (decl, out) in model.program.outputs.iter().zip(&outcome.outputs) {
            println!("{}", summary(&decl.name, out));
        }
    }
    if let Some(path) = &args.stats {
        write(path, outcome.stats_json().as_bytes())?;
    }
    Ok(())
}

/// `1234567` bytes as `1.23 MB` (decimal units, as `qmpc cost` and the benchmarks).
fn megabytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} kB", b as f64 / 1e3),
    }
}

/// The line printed before a secure run: `qmpc cost`'s totals for this batch, and the time
/// the prediction took where it was long enough to notice.
fn prediction(cost: &qmpc_session::Cost, took: std::time::Duration) -> String {
    let p = &cost.program;
    let busiest = p.per_party.iter().map(|c| c.bytes_sent).max().unwrap_or(0);
    let mut s = format!(
        "{} ({} parties), batch {}: {} rounds, {} sent by the busiest party, {} in all",
        p.protocol_label(),
        p.parties,
        p.batch,
        p.rounds(),
        megabytes(busiest),
        megabytes(p.bytes_sent())
    );
    if cost.preprocessing.bytes > 0 {
        s += &format!(
            ", and {} from the dealer before it",
            megabytes(cost.preprocessing.bytes)
        );
    }
    if took.as_secs_f64() >= 1.0 {
        s + &format!(
            " (predicted in {:.1} s; --quiet skips it)",
            took.as_secs_f64()
        )
    } else {
        s + " (predicted)"
    }
}

/// The line printed after a secure run: what it took.
fn measured(o: &qmpc_session::Outcome) -> String {
    let busiest = o.per_party.iter().map(|s| s.bytes_sent).max().unwrap_or(0);
    format!(
        "done in {:.2} s ({:.2} s online): {} rounds, {} sent by the busiest party",
        o.wall_s,
        o.online_s,
        o.rounds(),
        megabytes(busiest)
    )
}

/// What `qmpc run` prints of an output it writes nowhere: its type and shape, and for a
/// classifier (`[batch, classes]` floats) each row's top class.
fn summary(name: &str, out: &Array) -> String {
    let (ty, dims) = match out {
        Array::F32(d, _) => ("float32", d),
        Array::Int(d, _, t) => (*t, d),
    };
    let mut s = format!("output `{name}`: {ty} {dims:?}");
    if let (Array::F32(d, v), [_, classes]) = (out, dims.as_slice()) {
        if *classes > 1 && !v.is_empty() {
            const SHOWN: usize = 32;
            let tops: Vec<String> = v
                .chunks(*classes)
                .take(SHOWN)
                .map(|row| argmax(row).to_string())
                .collect();
            let more = if d[0] > SHOWN { " …" } else { "" };
            s.push_str(&format!("; top-1 per row: {}{more}", tops.join(" ")));
        }
    }
    s
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

/// Write the first output of the program (what the receiver computes from the integers).
fn write_output(out: Option<&Array>, path: &Path) -> Result<()> {
    let out = out.context("the program has no output")?;
    write(path, &out.to_npy())
}

/// `qmpc party`: one party in its own process, addresses and roles from the TOML file.
pub fn party(args: &PartyArgs) -> Result<()> {
    let member = Member::open(&args.config)?;
    let Some(me) = args.id else {
        return dealer(args, &member);
    };
    member.check_id(me)?;
    let roles = member.roles();
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
    let security = member.security(args.key.as_deref(), args.insecure)?;
    let program = load_program(&args.model)?;
    let weights = if me == roles.model_owner && !program.weights.is_empty() {
        let wp = args
            .weights_file
            .as_ref()
            .context("the model owner needs --weights-file MODEL.qmpw")?;
        load_weights(wp, "the weights")?
    } else {
        qmpc_vm::bytecode::Weights { tensors: vec![] }
    };
    let model = Model {
        program,
        weights: std::sync::Arc::new(weights),
    };
    let arrays = if me == roles.data_owner {
        if args.input.is_empty() {
            bail!("the data owner needs --input X.npy");
        }
        Some(read_inputs(&model.program, &args.input)?)
    } else {
        None
    };
    let inputs = arrays.as_deref().map(as_inputs);
    let r = member.run_party(me, &model, inputs.as_deref(), &security)?;
    if let Some(path) = &args.output {
        match r.outputs.first() {
            Some(None) => bail!("no output was revealed to this party"),
            first => write_output(first.and_then(Option::as_ref), path)?,
        }
    }
    if let Some(path) = &args.stats {
        write(path, r.stats_json().as_bytes())?;
    }
    Ok(())
}

/// `qmpc party --role dealer`: the dealer holds no data and writes no output.
fn dealer(args: &PartyArgs, member: &Member) -> Result<()> {
    if !member.protocol().dealer {
        bail!("protocol `{}` has no dealer", member.protocol().name);
    }
    if args.weights_file.is_some() || !args.input.is_empty() || args.output.is_some() {
        bail!("the dealer holds no weights, input or output");
    }
    let security = member.security(args.key.as_deref(), args.insecure)?;
    let program = load_program(&args.model)?;
    let d = member.run_dealer(&program, &security)?;
    if let Some(path) = &args.stats {
        let peak = qmpc_session::memory::peak_rss_json();
        let json = format!(
            "{{\"protocol\": \"{}\", \"role\": \"dealer\", \"preprocessing\": \
             {{\"bytes_sent\": {}, \"wall_s\": {:.6}}}, \"peak_rss_bytes\": {peak}}}\n",
            member.protocol().name,
            d.stats.bytes_sent,
            d.wall_s
        );
        write(path, json.as_bytes())?;
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

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |b, (i, &x)| if x > row[b] { i } else { b })
}

/// `qmpc demo`: the README's first command. The model runs in the clear and under `rep3`
/// (three parties over loopback, the weights and the image secret-shared); each image's
/// prediction is printed beside onnxruntime's, then what the secure run cost.
pub fn demo(model: &Path, dir: &Path) -> Result<()> {
    let model = Model::open(model, &Default::default())?;
    let input = dir.join("input.npy");
    let x = npy::read(&input)?;
    let inputs = [Input {
        array: &x,
        origin: Some(input.display().to_string()),
    }];
    let clear = Session::new("clear", None)?.run(&model, &inputs)?;
    let secure = Session::new("rep3", None)?.run(&model, &inputs)?;
    let want = npy::read(&dir.join("output_0.npy"))?;
    let (Some(Array::F32(d, c)), Some(Array::F32(_, r)), Array::F32(_, w)) =
        (clear.outputs.first(), secure.outputs.first(), want)
    else {
        bail!("unexpected output types")
    };
    let cols = d
        .get(1)
        .copied()
        .context("output is not [batch, classes]")?;
    let mut agree = 0;
    let rows = c.chunks(cols).zip(r.chunks(cols)).zip(w.chunks(cols));
    for (i, ((c, r), w)) in rows.enumerate() {
        let (pc, pr, pw) = (argmax(c), argmax(r), argmax(w));
        agree += usize::from(pc == pw && pr == pw);
        if i < 8 {
            println!(
                "image {i}: clear predicts {pc}, rep3 predicts {pr}, onnxruntime predicts {pw}"
            );
        }
    }
    println!("{agree}/{} predictions agree with onnxruntime", d[0]);
    let same = if c == r {
        "bit-identical with clear"
    } else {
        "DIFFERENT from clear"
    };
    println!(
        "rep3 (3 parties over loopback, weights and images secret-shared): {same}; {} rounds, \
         {} sent by the busiest party, {:.3} s (clear: {:.3} s)",
        secure.rounds(),
        megabytes(
            secure
                .per_party
                .iter()
                .map(|s| s.bytes_sent)
                .max()
                .unwrap_or(0)
        ),
        secure.wall_s,
        clear.wall_s
    );
    if c != r {
        bail!("rep3's output differs from clear's");
    }
    Ok(())
}
