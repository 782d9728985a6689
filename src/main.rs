//! `qmpc`: compile int8-quantized ONNX models to MPC bytecode and run them.

mod alloc;
mod progress;
mod run;

use qmpc_session::{cost, keygen, party as session, train, train_party};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "qmpc",
    version,
    about = "Compile int8-quantized ONNX models to MPC bytecode and run them under secret sharing"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum WeightsArg {
    Secret,
    Public,
}

/// How to compile an ONNX model (for `compile`, and `run`/`cost` given an `.onnx`).
#[derive(Args)]
struct BuildFlags {
    /// Whether the weights are the model owner's secret or constants of the program.
    #[arg(long, value_enum, default_value = "secret")]
    weights: WeightsArg,
    /// Truncation of secure protocols: bit-exact, or cheaper and off by one at most.
    #[arg(long, value_enum, default_value = "exact")]
    trunc: TruncArg,
    /// Optimization level: 0 runs no IR pass, 1 (the default) runs them all.
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    opt_level: u8,
    /// Switch one IR pass off (repeatable): dce, schedule.
    #[arg(long = "no-pass", value_name = "NAME")]
    no_pass: Vec<String>,
}

/// Who plays which role (`run` and `cost`; `party` reads them from its config).
#[derive(Args)]
struct RoleFlags {
    /// The party that holds the weights.
    #[arg(long, default_value_t = 0)]
    model_owner: usize,
    /// The party that holds the input.
    #[arg(long, default_value_t = 1)]
    data_owner: usize,
    /// The party that receives the output.
    #[arg(long, default_value_t = 1)]
    output_to: usize,
}

impl RoleFlags {
    fn roles(&self) -> qmpc_vm::interp::Roles {
        qmpc_vm::interp::Roles {
            model_owner: self.model_owner,
            data_owner: self.data_owner,
            output_to: self.output_to,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    /// Softmax cross-entropy against integer class labels `[N]`.
    CrossEntropy,
    /// Mean squared error against float32 targets `[N, C]`.
    Mse,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    /// SGD with momentum (`--momentum`).
    Sgd,
    /// Adam (`--beta1`, `--beta2`; PyTorch's defaults).
    Adam,
}

/// What a training step minimizes and how it updates the parameters (`train`, and
/// `cost --train`).
#[derive(Args)]
struct OptimizerFlags {
    /// What the step minimizes.
    #[arg(long, value_enum, default_value = "cross-entropy")]
    loss: LossArg,
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: OptimizerArg,
    /// SGD's momentum.
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Adam's decay of the first moment.
    #[arg(long, default_value_t = 0.9)]
    beta1: f64,
    /// Adam's decay of the second moment.
    #[arg(long, default_value_t = 0.999)]
    beta2: f64,
}

impl OptimizerFlags {
    fn loss(&self) -> qmpc_compiler::train::Loss {
        match self.loss {
            LossArg::CrossEntropy => qmpc_compiler::train::Loss::CrossEntropy,
            LossArg::Mse => qmpc_compiler::train::Loss::Mse,
        }
    }

    fn optimizer(&self) -> qmpc_compiler::train::Optimizer {
        use qmpc_compiler::train::Optimizer;
        match self.optimizer {
            OptimizerArg::Sgd => Optimizer::Sgd {
                momentum: self.momentum,
            },
            OptimizerArg::Adam => Optimizer::Adam {
                beta1: self.beta1,
                beta2: self.beta2,
            },
        }
    }
}

/// The public choices of a training session (`train`, and `party --train`, where every
/// party must give the same ones).
#[derive(Args)]
struct TrainFlags {
    /// Passes over the data set.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Rows per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// The learning rate (required).
    #[arg(long)]
    lr: Option<f64>,
    #[command(flatten)]
    optimizer: OptimizerFlags,
    /// Reveal each epoch's mean training loss (the only value revealed besides the
    /// trained weights and the test count), to the model owner.
    #[arg(long)]
    reveal_loss: bool,
    /// Truncation after products: bit-exact, or cheaper and off by one at most.
    #[arg(long, value_enum, default_value = "exact")]
    trunc: TruncArg,
    /// Seed of the public shuffle.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl TrainFlags {
    fn settings(&self) -> Result<train::Settings> {
        Ok(train::Settings {
            epochs: self.epochs,
            batch: self.batch,
            lr: self
                .lr
                .context("--lr is required: the learning rate of the training")?,
            optimizer: self.optimizer.optimizer(),
            loss: self.optimizer.loss(),
            trunc: trunc_mode(self.trunc),
            seed: self.seed,
            reveal_loss: self.reveal_loss,
        })
    }
}

fn trunc_mode(t: TruncArg) -> qmpc_protocols::TruncMode {
    match t {
        TruncArg::Exact => qmpc_protocols::TruncMode::Exact,
        TruncArg::Probabilistic => qmpc_protocols::TruncMode::Probabilistic,
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum TruncArg {
    Exact,
    Probabilistic,
}

/// `--favor`, for the protocols that can trade bytes for rounds.
#[derive(Clone, Copy, ValueEnum)]
enum FavorArg {
    /// Fewest bytes (the default).
    Bytes,
    /// Fewest rounds: about a fifth fewer for 1.5× the bytes (rep3), for high-latency links.
    Rounds,
}

impl FavorArg {
    fn favor(self) -> qmpc_protocols::Favor {
        match self {
            FavorArg::Bytes => qmpc_protocols::Favor::Bytes,
            FavorArg::Rounds => qmpc_protocols::Favor::Rounds,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile an ONNX model to bytecode (MODEL.qmpc) and the model owner's weights (MODEL.qmpw).
    Compile {
        /// The int8-quantized ONNX model (QOperator or QDQ, as onnxruntime's quantizer
        /// writes them).
        model: PathBuf,
        /// The program to write (MODEL.qmpc); with secret weights, MODEL.qmpw beside it.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        build: BuildFlags,
        /// Also write the program as assembly text.
        #[arg(long)]
        emit_asm: Option<PathBuf>,
        /// Also write the integer IR as text.
        #[arg(long)]
        emit_ir: Option<PathBuf>,
    },
    /// Run a program (or an ONNX model, compiled on the fly) on an input.
    Run {
        /// The program (MODEL.qmpc, with MODEL.qmpw beside it where the weights are
        /// secret) or an ONNX model, compiled first.
        model: PathBuf,
        /// clear (plaintext reference), rep3 (3 parties, honest majority), semi2k (2 or
        /// more, dishonest majority, dealer), shamir (3 to 12, honest majority), fss (2,
        /// dealer), mal-rep3 (3, malicious), spdz2k (2 or more, malicious, dealer).
        #[arg(long)]
        protocol: String,
        /// Computing parties, where the protocol takes several counts (semi2k, shamir,
        /// spdz2k); its default otherwise.
        #[arg(long)]
        parties: Option<usize>,
        /// What rep3's comparisons save: bytes (the default), or rounds — one round fewer
        /// per requantization for about 1.5× the bytes, for links with a long round trip
        /// (docs/performance.md, "Rounds or bytes").
        #[arg(long, value_enum, default_value = "bytes")]
        favor: FavorArg,
        /// X.npy, or NAME=X.npy for the graph input NAME; repeat it for a model with several
        /// inputs (plain files go to the inputs in graph order).
        #[arg(long, required = true)]
        input: Vec<String>,
        /// Where the output receiver writes the model's first output (.npy, its ONNX type);
        /// without it, its shape and each row's top class are printed.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Every party's rounds and bytes, the dealer's bytes, the times and the process's
        /// peak memory (all parties together), as JSON.
        #[arg(long)]
        stats: Option<PathBuf>,
        /// With an ONNX model: how to compile it.
        #[command(flatten)]
        build: BuildFlags,
        #[command(flatten)]
        roles: RoleFlags,
        /// Seconds a party waits for a peer (to connect, or for one message) before it stops.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        /// Print nothing on stderr: neither the predicted rounds and bytes before a secure
        /// run nor the measured ones after it.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Online rounds and bytes of every party and layer, without running; `--budget` gates CI.
    Cost {
        /// The program (MODEL.qmpc) or an ONNX model, compiled first.
        model: PathBuf,
        /// The protocol to cost (as for `run`).
        #[arg(long)]
        protocol: String,
        /// Computing parties (as for `run`).
        #[arg(long)]
        parties: Option<usize>,
        /// What the protocol's comparisons save (as for `run`).
        #[arg(long, value_enum, default_value = "bytes")]
        favor: FavorArg,
        /// Samples per run (the input's leading dimension).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: FormatArg,
        /// Limits per model and protocol; exits non-zero naming every figure over them.
        #[arg(long)]
        budget: Option<PathBuf>,
        #[command(flatten)]
        build: BuildFlags,
        #[command(flatten)]
        roles: RoleFlags,
        /// Cost one step of `qmpc train` on a float model (batch `--batch`) and an epoch
        /// of `--rows` rows.
        #[arg(long)]
        train: bool,
        /// With `--train`: rows of the data set.
        #[arg(long, requires = "train")]
        rows: Option<usize>,
        /// With `--train`: the learning rate and optimizer the step is compiled for.
        #[arg(long, requires = "train", default_value_t = 0.1)]
        lr: f64,
        #[command(flatten)]
        optimizer: OptimizerFlags,
    },
    /// One party (or the dealer) of a run, or with `--train` of a training session, in its
    /// own process; addresses, protocol and roles come from the config (parties.toml).
    Party {
        /// This party's id (a computing party).
        #[arg(long, required_unless_present = "role")]
        id: Option<usize>,
        /// `dealer`: run the trusted dealer of `semi2k`, `fss` or `spdz2k`, whose address is
        /// `[dealer]` in the config, instead of a computing party.
        #[arg(long, value_parser = ["dealer"], conflicts_with = "id")]
        role: Option<String>,
        /// The parties' addresses, the protocol and the roles (parties.toml; the same
        /// file for every party; docs/parties.md).
        #[arg(long)]
        config: PathBuf,
        /// The program (MODEL.qmpc), or with `--train` the float ONNX model: the model
        /// owner's own file, the architecture (`qmpc strip`) for every other party.
        model: PathBuf,
        /// The model owner's secret weights (MODEL.qmpw); only the model owner takes it.
        #[arg(long, conflicts_with = "train")]
        weights_file: Option<PathBuf>,
        /// The data owner's input(s), as for `run`; only the data owner takes them.
        #[arg(long, conflicts_with = "train")]
        input: Vec<String>,
        /// Where the output receiver writes the output (with `--train`: where the model
        /// owner writes the trained model); only it takes this.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// This party's own rounds and bytes, its times and its peak memory, as JSON.
        #[arg(long)]
        stats: Option<PathBuf>,
        /// Train MODEL, a float ONNX export, as `qmpc train` does, with the session's flags
        /// below (the same in every party, checked at start-up).
        #[arg(long)]
        train: bool,
        /// With `--train`: this party's training rows, if it is a data owner (float32
        /// `[N, ...]`). The data set is the owners' rows in party order.
        #[arg(long, requires = "train")]
        data: Option<PathBuf>,
        /// With `--train`: the classes of its rows (integer `[N]`).
        #[arg(long, requires = "train")]
        labels: Option<PathBuf>,
        /// With `--train`: test rows, of one party; the model owner learns the count right.
        #[arg(long, requires = "train")]
        test_data: Option<PathBuf>,
        /// With `--train`: the classes of the test rows.
        #[arg(long, requires = "train")]
        test_labels: Option<PathBuf>,
        #[command(flatten, next_help_heading = "Training session (with --train)")]
        training: TrainFlags,
        /// This party's private key and certificate (`qmpc keygen`'s KEY file); the
        /// config pins every member's certificate, and every link is mutual TLS.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Plain TCP links instead of TLS: anyone on the network path reads every share
        /// and can take a party's seat. For a private network you trust.
        #[arg(long)]
        insecure: bool,
    },
    /// Make a party's (or the dealer's) TLS key and self-signed certificate, and print the
    /// certificate's fingerprint for the others' parties.toml.
    Keygen {
        /// The party's id, or `dealer`.
        #[arg(long)]
        id: String,
        /// The directory for `party-I.key` (secret: this party alone reads it) and
        /// `party-I.crt` (public: the others pin it).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a float ONNX model with its trainable weights set to zero: the architecture the
    /// other parties of `party --train` compile from, without the model owner's weights.
    Strip {
        model: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Train a float ONNX model under a protocol: the model owner's initial weights and the
    /// data owner's rows stay secret; the trained model goes to the model owner.
    Train {
        model: PathBuf,
        /// Training rows (float32 `[N, ...]`, the model's input shape per row), of party
        /// 1; `P=FILE` for party P's. Once per data owner: the rows of several owners
        /// (horizontally split data) are trained on together, in owner order.
        #[arg(long, required = true)]
        data: Vec<String>,
        /// Their classes (integer `[N]`), or with `--loss mse` float32 targets `[N, C]`:
        /// `FILE` or `P=FILE`, once per data owner.
        #[arg(long, required = true)]
        labels: Vec<String>,
        #[command(flatten)]
        training: TrainFlags,
        #[arg(long)]
        protocol: String,
        #[arg(long)]
        parties: Option<usize>,
        /// What the protocol's comparisons save (as for `run`).
        #[arg(long, value_enum, default_value = "bytes")]
        favor: FavorArg,
        /// Where the model owner writes the trained model (the same graph, new weights).
        #[arg(short, long)]
        output: PathBuf,
        /// Test rows and classes: after each epoch the model owner learns how many of them
        /// the model classifies right (a count, nothing else).
        #[arg(long)]
        test_data: Option<PathBuf>,
        #[arg(long)]
        test_labels: Option<PathBuf>,
        #[arg(long)]
        stats: Option<PathBuf>,
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Assemble text into a binary program.
    Asm {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run a program on the reference inputs in DIR (input.npy, output_0.npy) in the clear
    /// and under rep3 (three parties, everything secret-shared); print each image's class
    /// from both beside onnxruntime's, and the secure run's rounds, bytes and time.
    Demo { model: PathBuf, dir: PathBuf },
    /// Print a binary program as assembly text.
    Disasm {
        input: PathBuf,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn options(b: &BuildFlags) -> qmpc_compiler::Options {
    qmpc_compiler::Options {
        weights: match b.weights {
            WeightsArg::Secret => qmpc_compiler::WeightsMode::Secret,
            WeightsArg::Public => qmpc_compiler::WeightsMode::Public,
        },
        trunc: trunc_mode(b.trunc),
        passes: qmpc_compiler::passes::PassSet {
            none: b.opt_level == 0,
            disabled: b.no_pass.clone(),
        },
        progress: None,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

/// Write `text` to standard output; a reader that closed the pipe (`| head`) ends the
/// output quietly, as for any Unix filter, instead of a panic.
fn to_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

fn main() {
    let cli = Cli::parse();
    // The allocator's settings depend on the protocol: set before anything big is made.
    let spec = cli
        .cmd
        .protocol()
        .and_then(|p| qmpc_protocols::registry::find(&p).ok());
    alloc::configure(spec.and_then(|s| s.purge_after_ms()));
    if let Err(e) = dispatch(cli.cmd) {
        // A progress line may be half drawn.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!("\r\x1b[2K");
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

impl Cmd {
    /// The protocol this command runs, where it runs one (a party's is in its config; an
    /// unreadable config is reported when the party starts).
    fn protocol(&self) -> Option<String> {
        match self {
            Cmd::Run { protocol, .. } | Cmd::Train { protocol, .. } => Some(protocol.clone()),
            Cmd::Party { config, .. } => qmpc_session::party::PartiesConfig::read(config)
                .ok()
                .map(|c| c.protocol),
            _ => None,
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Compile {
            model,
            output,
            build,
            emit_asm,
            emit_ir,
        } => {
            let start = std::time::Instant::now();
            let mut opts = options(&build);
            let name = model.file_name().unwrap_or(model.as_os_str());
            opts.progress = progress::compile_hook(name.to_string_lossy().into_owned());
            let c = qmpc_compiler::compile_file(&model, &opts)?;
            let took = start.elapsed();
            // Big models get one summary line (on a terminal, after the progress line).
            if took >= std::time::Duration::from_secs(1) {
                eprintln!(
                    "compiled {} to {} instructions in {:.1} s",
                    model.display(),
                    c.program.code.len(),
                    took.as_secs_f64()
                );
            }
            write(&output, &c.program.to_bytes())?;
            if matches!(build.weights, WeightsArg::Secret) {
                let wp = qmpc_session::weights_path(&output);
                write(&wp, &c.weights.to_bytes())?;
                println!(
                    "wrote {} (the public program, for every party) and {} (the model \
                     owner's secret weights)",
                    output.display(),
                    wp.display()
                );
                if matches!(build.trunc, TruncArg::Probabilistic) {
                    eprintln!("{}", session::PROBABILISTIC_WARNING);
                }
            } else {
                println!(
                    "wrote {} (the program, with the weights as public constants)",
                    output.display()
                );
            }
            if let Some(p) = emit_asm {
                write(
                    &p,
                    qmpc_vm::bytecode::asm::disassemble(&c.program).as_bytes(),
                )?;
            }
            if let Some(p) = emit_ir {
                write(&p, qmpc_compiler::ir::dump(&c.ir).as_bytes())?;
            }
            Ok(())
        }
        Cmd::Run {
            model,
            protocol,
            parties,
            favor,
            input,
            output,
            stats,
            build,
            roles,
            timeout,
            quiet,
        } => {
            let t = session::seconds("--timeout", timeout)?;
            run::run(&run::RunArgs {
                quiet,
                model,
                protocol,
                parties,
                favor: favor.favor(),
                input,
                output,
                stats,
                opts: options(&build),
                roles: roles.roles(),
                timeouts: qmpc_protocols::net::Timeouts { connect: t, io: t },
            })
        }
        Cmd::Cost {
            model,
            protocol,
            parties,
            favor,
            batch,
            format,
            budget,
            build,
            roles,
            train,
            rows,
            lr,
            optimizer,
        } => cost::cost(&cost::CostArgs {
            model,
            protocol,
            parties,
            favor: favor.favor(),
            batch,
            budget,
            json: matches!(format, FormatArg::Json),
            opts: options(&build),
            roles: roles.roles(),
            train: train.then_some(cost::TrainCost {
                rows: rows.unwrap_or(batch),
                lr,
                optimizer: optimizer.optimizer(),
                loss: optimizer.loss(),
            }),
        }),
        Cmd::Party {
            id,
            config,
            model,
            output,
            stats,
            train: true,
            data,
            labels,
            test_data,
            test_labels,
            training,
            key,
            insecure,
            ..
        } => train_party::party(&train_party::PartyTrainArgs {
            id,
            config,
            model,
            data,
            labels,
            test_data,
            test_labels,
            settings: training.settings()?,
            output,
            stats,
            key,
            insecure,
        }),
        Cmd::Party {
            id,
            role: _,
            config,
            model,
            weights_file,
            input,
            output,
            stats,
            training,
            key,
            insecure,
            ..
        } => {
            if training.lr.is_some() {
                anyhow::bail!("--lr and the other training flags go with --train");
            }
            run::party(&run::PartyArgs {
                // `--role dealer` excludes `--id`.
                id,
                config,
                model,
                weights_file,
                input,
                output,
                stats,
                key,
                insecure,
            })
        }
        Cmd::Keygen { id, out } => {
            println!("{}", keygen::keygen(&id, &out)?.describe());
            Ok(())
        }
        Cmd::Strip { model, output } => train::strip(&model, &output),
        Cmd::Demo { model, dir } => run::demo(&model, &dir),
        Cmd::Train {
            model,
            data,
            labels,
            training,
            protocol,
            parties,
            favor,
            output,
            test_data,
            test_labels,
            stats,
            timeout,
        } => {
            let t = session::seconds("--timeout", timeout)?;
            train::train(&train::TrainArgs {
                model,
                data: train::owned_files("--data", &data)?,
                labels: train::owned_files("--labels", &labels)?,
                test_data,
                test_labels,
                settings: training.settings()?,
                protocol,
                parties,
                favor: favor.favor(),
                output,
                stats,
                timeouts: qmpc_protocols::net::Timeouts { connect: t, io: t },
            })
        }
        Cmd::Asm { input, output } => {
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("{}: cannot read", input.display()))?;
            let p = qmpc_vm::bytecode::asm::assemble(&text)
                .with_context(|| input.display().to_string())?;
            qmpc_vm::verify::verify(&p)
                .with_context(|| format!("{}: the program does not verify", input.display()))?;
            write(&output, &p.to_bytes())
        }
        Cmd::Disasm { input, output } => {
            let p = qmpc_session::load_program(&input)?;
            let text = qmpc_vm::bytecode::asm::disassemble(&p);
            match output {
                Some(o) => write(&o, text.as_bytes()),
                None => to_stdout(&text),
            }
        }
    }
}
