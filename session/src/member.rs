//! [`Member`]: one party (or the dealer) of a session whose members run on several hosts,
//! each its own process, with the addresses, protocol, roles and pinned certificates of
//! one shared config (`parties.toml`, docs/parties.md).

use crate::error::{Error, Kind, Result};
use crate::io::{self, Input};
use crate::model::Model;
use crate::npy::Array;
use crate::party::{self, DealerResult, PartiesConfig};
use anyhow::Context;
use qmpc_protocols::net::{Security, Stats};
use qmpc_protocols::{PartyId, Spec};
use qmpc_vm::bytecode::Program;
use qmpc_vm::interp::{PartyData, Roles};
use std::path::{Path, PathBuf};

/// A member's view of the session's config.
pub struct Member {
    config: PartiesConfig,
    path: PathBuf,
    spec: Spec,
    parties: usize,
}

/// What one party has at the end of a run.
#[derive(Debug)]
pub struct MemberOutcome {
    /// The outputs revealed to this party (all of them at the output receiver, none
    /// elsewhere), as their ONNX types.
    pub outputs: Vec<Option<Array>>,
    pub batch: usize,
    /// This party's online traffic.
    pub stats: Stats,
    pub wall_s: f64,
    pub online_s: f64,
    pub ring_bits: u32,
    pub protocol: Spec,
}

impl MemberOutcome {
    /// This party's own figures as `--stats` JSON (the others' are not known here).
    pub fn stats_json(&self) -> String {
        party::stats_json(
            &self.protocol,
            self.ring_bits,
            self.batch,
            &[self.stats],
            (self.wall_s, self.online_s),
            None,
        )
    }
}

impl Member {
    /// Read the session's config.
    pub fn open(config: &Path) -> Result<Member> {
        let cfg = PartiesConfig::read(config).or_setup()?;
        let (spec, parties) = cfg
            .favor()
            .and_then(|f| party::protocol(&cfg.protocol, Some(cfg.party.len()), f))
            .or_setup()?;
        Ok(Member {
            config: cfg,
            path: config.to_path_buf(),
            spec,
            parties,
        })
    }

    pub fn protocol(&self) -> &Spec {
        &self.spec
    }

    pub fn parties(&self) -> usize {
        self.parties
    }

    pub fn roles(&self) -> Roles {
        self.config.roles()
    }

    pub fn config(&self) -> &PartiesConfig {
        &self.config
    }

    /// How this member's links are secured: its key (`qmpc keygen`) and the config's pins
    /// (mutual TLS), or plain TCP where `insecure` (with a warning on stderr).
    pub fn security(&self, key: Option<&Path>, insecure: bool) -> Result<Security> {
        self.config.security(&self.path, key, insecure).or_setup()
    }

    /// Check that party `me` exists.
    pub fn check_id(&self, me: PartyId) -> Result<()> {
        if me >= self.parties {
            return Err(Error::Setup(format!(
                "--id {me}: {} lists parties 0..{}",
                self.path.display(),
                self.parties
            )));
        }
        Ok(())
    }

    /// Run party `me` on `model`: the model owner's weights are `model`'s (ignored at
    /// every other party), the data owner gives `inputs` (one array per graph input, in
    /// graph order; `None` elsewhere).
    pub fn run_party(
        &self,
        me: PartyId,
        model: &Model,
        inputs: Option<&[Input]>,
        security: &Security,
    ) -> Result<MemberOutcome> {
        self.check_id(me)?;
        let roles = self.roles();
        let program = &model.program;
        party::warn_probabilistic(program, &self.spec);
        let weights = if me == roles.model_owner {
            if !model.has_weights() {
                return Err(Error::Setup(format!(
                    "party {me} is the model owner: it needs the weights (MODEL.qmpw)"
                )));
            }
            Some(model.weights.clone())
        } else if model.secret_weights() && !model.weights.tensors.is_empty() {
            // The weights must stay on the model owner's host: refuse them anywhere else.
            return Err(Error::Setup(format!(
                "party {me} is not the model owner (party {}); it must not be given the \
                 weights (give it the public program alone)",
                roles.model_owner
            )));
        } else {
            None
        };
        let (inputs, batch) = match (me == roles.data_owner, inputs) {
            (true, Some(inputs)) => {
                let (x, b) = io::quantize_inputs(program, inputs)?;
                (Some(x), Some(b))
            }
            (true, None) => {
                return Err(Error::Input(format!(
                    "party {me} is the data owner: it needs the input"
                )))
            }
            (false, Some(_)) => {
                return Err(Error::Setup(format!(
                    "party {me} is not the data owner (party {}); it must not be given an input",
                    roles.data_owner
                )))
            }
            (false, None) => (None, None),
        };
        let addrs = self.config.addrs().or_setup()?;
        let listener = party::listen(addrs[me], &format!("party {me}")).or_setup()?;
        let timeouts = self.config.timeouts().or_setup()?;
        let data = PartyData { inputs, weights };
        let r = party::party_pool(1)
            .or_setup()?
            .install(|| {
                party::run_party(
                    program,
                    &self.spec,
                    me,
                    listener,
                    &addrs,
                    roles,
                    &data,
                    batch,
                    (timeouts, security, None),
                )
            })
            .with_context(|| format!("party {me}"))
            .or_run()?;
        Ok(MemberOutcome {
            outputs: io::finish_outputs(program, &r.outputs),
            batch: r.batch,
            stats: r.stats,
            wall_s: r.wall_s,
            online_s: r.online_s,
            ring_bits: qmpc_vm::cost::ring_bits(&self.spec, program),
            protocol: self.spec,
        })
    }

    /// Run the dealer of the session's protocol on `program`: it holds no data, makes
    /// the preprocessing, sends it and leaves.
    pub fn run_dealer(&self, program: &Program, security: &Security) -> Result<DealerResult> {
        if !self.spec.dealer {
            return Err(Error::Setup(format!(
                "protocol `{}` has no dealer",
                self.spec.name
            )));
        }
        let addrs = self.config.addrs().or_setup()?;
        let me = addrs.len() - 1;
        let listener = party::listen(addrs[me], "the dealer").or_setup()?;
        let timeouts = self.config.timeouts().or_setup()?;
        party::run_dealer(
            program,
            &self.spec,
            listener,
            &addrs,
            self.roles(),
            (timeouts, security),
        )
        .context("the dealer")
        .or_run()
    }
}
