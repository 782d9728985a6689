//! `qmpc cost`: a program's rounds and bytes per party and per layer, without running it,
//! and the budget check users put in CI.

use crate::party::{self, Preprocessing};
use crate::Session;
use anyhow::{bail, Context, Result};
use qmpc_vm::cost::ProgramCost;
use qmpc_vm::interp::Roles;
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub struct CostArgs {
    pub model: PathBuf,
    pub protocol: String,
    pub parties: Option<usize>,
    /// `--favor`: what the protocol's constructions save (rep3 only).
    pub favor: qmpc_protocols::Favor,
    pub batch: usize,
    pub json: bool,
    pub budget: Option<PathBuf>,
    pub opts: qmpc_compiler::Options,
    pub roles: Roles,
    /// `--train`: cost one training step of a float model (and an epoch of `rows` rows).
    pub train: Option<TrainCost>,
}

/// What a training step is compiled for (`qmpc cost --train`).
pub struct TrainCost {
    pub rows: usize,
    pub lr: f64,
    pub optimizer: qmpc_compiler::train::Optimizer,
    pub loss: qmpc_compiler::train::Loss,
}

/// The static cost of `args.model`, the ring it was computed for, and the bytes the dealer
/// sends (0 without one).
pub fn compute(args: &CostArgs) -> Result<(ProgramCost, u32, Preprocessing)> {
    let session =
        Session::favoring(&args.protocol, args.parties, args.favor)?.with_roles(args.roles)?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let program = if args.model.extension().is_some_and(|e| e == "onnx") {
        qmpc_compiler::compile_file(&args.model, &args.opts)?.program
    } else {
        crate::load_program(&args.model)?
    };
    let c = session
        .cost(&program, args.batch)
        .with_context(|| args.model.display().to_string())?;
    Ok((c.program, c.ring_bits, c.preprocessing))
}

/// The static cost of one training step of `args.model` in the ring of the whole session,
/// and the steps of one epoch.
pub fn compute_train(
    args: &CostArgs,
    t: &TrainCost,
) -> Result<(ProgramCost, u32, usize, Preprocessing)> {
    let (spec, n) = party::protocol(&args.protocol, args.parties, args.favor)?;
    let rows = t.rows.max(args.batch);
    let training = crate::train::compile(
        &args.model,
        &qmpc_compiler::train::TrainOptions {
            batch: args.batch,
            lr: t.lr,
            optimizer: t.optimizer,
            loss: t.loss,
            rows,
            test_rows: None,
            trunc: args.opts.trunc,
            numerics: Default::default(),
            reveal_loss: false,
        },
    )?;
    let roles = crate::train::session_roles(n);
    let ring = crate::train::session_ring(&spec, &training);
    let costs = spec.costs(n, ring)?;
    let mut c = qmpc_vm::cost::cost(&training.step, costs.as_ref(), roles, 1)
        .with_context(|| format!("{}: cannot cost the training step", args.model.display()))?;
    // The step's batch is fixed in the program, not the VM's batch axis.
    c.batch = args.batch;
    let pre = party::preprocessing(&spec, &training.step, n, roles, 1)?;
    Ok((c, ring, rows / args.batch, pre))
}

/// `qmpc cost`: print the figures, then check the budget.
pub fn cost(args: &CostArgs) -> Result<()> {
    if let Some(t) = &args.train {
        let (c, ring, steps, pre) = compute_train(args, t)?;
        let epoch_rounds = c.rounds() * steps as u64;
        let epoch_bytes = c.bytes_sent() * steps as u64;
        if args.json {
            let step = json(&c, ring, pre);
            println!(
                "{{\"step\": {}, \"steps_per_epoch\": {steps}, \"epoch_rounds\": {epoch_rounds}, \"epoch_bytes_sent\": {epoch_bytes}}}",
                step.trim_end()
            );
        } else {
            print!(
                "one training step: {}",
                text(&args.model.display().to_string(), &c, pre)
            );
            println!(
                "\none epoch ({steps} steps): {epoch_rounds} rounds, {} bytes sent by all parties",
                grouped(epoch_bytes)
            );
        }
        return Ok(());
    }
    let (c, ring, pre) = compute(args)?;
    let out = if args.json {
        json(&c, ring, pre)
    } else {
        text(&args.model.display().to_string(), &c, pre)
    };
    print!("{out}");
    if let Some(path) = &args.budget {
        let budget = Budget::read(path)?;
        let over = budget.check(&args.model, &c)?;
        if !over.is_empty() {
            bail!(
                "{}: over budget ({}): {}",
                args.model.display(),
                path.display(),
                over.join("; ")
            );
        }
    }
    Ok(())
}

/// Thousands separated by commas, for tables people read.
fn grouped(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn text(model: &str, c: &ProgramCost, pre: Preprocessing) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} under {} ({} parties), batch {}: {} rounds, {} bytes sent by all parties",
        model,
        c.protocol_label(),
        c.parties,
        c.batch,
        c.rounds(),
        grouped(c.bytes_sent())
    );
    if pre.bytes > 0 {
        let _ = writeln!(
            s,
            "preprocessing: the dealer sends {} bytes (streamed beside the computation)",
            grouped(pre.bytes)
        );
    }
    if pre.keys > 0 {
        let _ = writeln!(
            s,
            "keys: {} DCF keys, {} bytes of key material per party ({} bytes per key on average)",
            grouped(pre.keys),
            grouped(pre.key_bytes),
            grouped(pre.key_bytes / pre.keys)
        );
    }
    let _ = writeln!(s, "\n{:>6} {:>8} {:>16}", "party", "rounds", "bytes sent");
    for (i, p) in c.per_party.iter().enumerate() {
        let _ = writeln!(s, "{i:>6} {:>8} {:>16}", p.rounds, grouped(p.bytes_sent));
    }
    if !c.layers.is_empty() {
        let width = c
            .layers
            .iter()
            .map(|l| l.node.len())
            .max()
            .unwrap_or(4)
            .max(5);
        let _ = writeln!(
            s,
            "\n{:<width$} {:>8} {:>16}  (per party: {})",
            "layer",
            "rounds",
            "bytes sent",
            (0..c.parties)
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        );
        for l in &c.layers {
            let total: u64 = l.bytes_sent.iter().sum();
            let each: Vec<String> = l.bytes_sent.iter().map(|&b| grouped(b)).collect();
            let _ = writeln!(
                s,
                "{:<width$} {:>8} {:>16}  {}",
                l.node,
                l.rounds,
                grouped(total),
                each.join(" / ")
            );
        }
    }
    s
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The `--stats` keys that are known before running, plus the per-layer list.
pub(crate) fn json(c: &ProgramCost, ring: u32, pre: Preprocessing) -> String {
    let parties: Vec<String> = c
        .per_party
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{{\"id\": {i}, \"rounds\": {}, \"bytes_sent\": {}}}",
                p.rounds, p.bytes_sent
            )
        })
        .collect();
    let layers: Vec<String> = c
        .layers
        .iter()
        .map(|l| {
            format!(
                "{{\"node\": {}, \"rounds\": {}, \"bytes_sent\": {:?}}}",
                json_str(&l.node),
                l.rounds,
                l.bytes_sent
            )
        })
        .collect();
    format!(
        "{{\"protocol\": \"{}\", \"favor\": \"{}\", \"parties\": {}, \"batch\": {}, \"rounds\": {}, \
         \"bytes_sent\": {}, \"per_party\": [{}], \
         \"preprocessing\": {{\"bytes_sent\": {}, \"dcf_keys\": {}, \"key_bytes_per_party\": {}}}, \
         \"ring_bits\": {}, \
         \"layers\": [{}]}}\n",
        c.protocol,
        c.favor.name(),
        c.parties,
        c.batch,
        c.rounds(),
        c.bytes_sent(),
        parties.join(", "),
        pre.bytes,
        pre.keys,
        pre.key_bytes,
        ring,
        layers.join(", ")
    )
}

/// `BUDGET.toml`: limits per model, protocol and batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default)]
    budget: Vec<Limit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    /// Matched against the end of the model's path without its extension, e.g.
    /// `lenet/qop_s8_pt` matches `models/lenet/qop_s8_pt.onnx`.
    model: String,
    protocol: String,
    /// `rounds` for the limits of `--favor rounds`; `bytes` (the default) otherwise.
    #[serde(default = "bytes")]
    favor: String,
    #[serde(default = "one")]
    batch: usize,
    /// Rounds of the slowest party.
    rounds: Option<u64>,
    /// Bytes sent by all parties together.
    bytes_sent: Option<u64>,
    /// Bytes sent by the busiest party.
    party_bytes_sent: Option<u64>,
}

fn one() -> usize {
    1
}

fn bytes() -> String {
    qmpc_protocols::Favor::Bytes.name().to_string()
}

impl Budget {
    pub fn read(path: &Path) -> Result<Budget> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: not a valid budget", path.display()))
    }

    /// Every figure of `c` over its limit, named; an error if no limit covers the model.
    pub fn check(&self, model: &Path, c: &ProgramCost) -> Result<Vec<String>> {
        let stem = model.with_extension("");
        let matches = |m: &str| stem.ends_with(m);
        let limit = self
            .budget
            .iter()
            .find(|l| {
                matches(&l.model)
                    && l.protocol == c.protocol
                    && l.favor == c.favor.name()
                    && l.batch == c.batch
            })
            .with_context(|| {
                format!(
                    "the budget has no entry for {} under {} favouring {} at batch {}",
                    model.display(),
                    c.protocol,
                    c.favor.name(),
                    c.batch
                )
            })?;
        let mut over = Vec::new();
        let mut check = |what: &str, got: u64, max: Option<u64>| {
            if let Some(max) = max.filter(|&m| got > m) {
                over.push(format!("{what} {got} > {max}"));
            }
        };
        check("rounds", c.rounds(), limit.rounds);
        check("bytes_sent", c.bytes_sent(), limit.bytes_sent);
        let busiest = c.per_party.iter().map(|p| p.bytes_sent).max().unwrap_or(0);
        check("party_bytes_sent", busiest, limit.party_bytes_sent);
        Ok(over)
    }
}
