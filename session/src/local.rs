//! [`Session`]: a protocol, its parties and their roles; costs a program, or runs it with
//! every party (and the dealer) on a thread of this process, linked over loopback TCP.

use crate::error::{Error, Kind, Result};
use crate::io::{self, Input};
use crate::model::Model;
use crate::npy::Array;
use crate::party::{self, DealerResult, Preprocessing};
use anyhow::Context;
use qmpc_protocols::net::{Security, Stats, Timeouts, Traffic};
use qmpc_protocols::{Favor, Spec};
use qmpc_vm::bytecode::{Program, Weights};
use qmpc_vm::cost::ProgramCost;
use qmpc_vm::interp::{self, PartyData, Roles};
use qmpc_vm::tensor::Tensor;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A protocol, its number of computing parties, who plays which role, and how long a
/// party waits for a peer.
#[derive(Clone, Debug)]
pub struct Session {
    spec: Spec,
    parties: usize,
    roles: Roles,
    timeouts: Timeouts,
    /// Where party 0 publishes its rounds and bytes while a run goes on.
    traffic: Option<Arc<Traffic>>,
}

/// Under `clear` one party plays every role.
const CLEAR_ROLES: Roles = Roles {
    model_owner: 0,
    data_owner: 0,
    output_to: 0,
};

/// What a run gives back: the output receiver's outputs and every party's figures.
#[derive(Debug)]
pub struct Outcome {
    /// The program's outputs as their ONNX types, finished by the output receiver.
    pub outputs: Vec<Array>,
    pub batch: usize,
    /// Each party's online traffic.
    pub per_party: Vec<Stats>,
    /// From the start of the connection set-up to the end (the slowest party's).
    pub wall_s: f64,
    /// Without the set-up: the time MPC frameworks report for a computation.
    pub online_s: f64,
    /// What the dealer sent, for protocols with one.
    pub dealer: Option<DealerResult>,
    /// The ring (bits) the shares lived in.
    pub ring_bits: u32,
    pub protocol: Spec,
}

impl Outcome {
    /// The most rounds any party took.
    pub fn rounds(&self) -> u64 {
        self.per_party.iter().map(|s| s.rounds).max().unwrap_or(0)
    }

    /// `--stats` JSON (DESIGN.md's keys, plus bytes received, the ring and `online_s`).
    pub fn stats_json(&self) -> String {
        party::stats_json(
            &self.protocol,
            self.ring_bits,
            self.batch,
            &self.per_party,
            (self.wall_s, self.online_s),
            self.dealer.as_ref(),
        )
    }
}

/// A program's static cost under a session: what `run` will measure, before it runs.
#[derive(Clone, Debug)]
pub struct Cost {
    pub program: ProgramCost,
    pub ring_bits: u32,
    /// What the dealer sends (nothing without a dealer).
    pub preprocessing: Preprocessing,
}

impl Cost {
    /// `qmpc cost`'s table; `model` names the model in its first line.
    pub fn text(&self, model: &str) -> String {
        crate::cost::text(model, &self.program, self.preprocessing)
    }

    /// `qmpc cost --format json`.
    pub fn json(&self) -> String {
        crate::cost::json(&self.program, self.ring_bits, self.preprocessing)
    }
}

impl Session {
    /// The protocol called `protocol` (which this build must run) with `parties` computing
    /// parties (its default where `None`), and the default roles: party 0 holds the
    /// weights, party 1 the input and receives the output (under `clear`, party 0 all).
    pub fn new(protocol: &str, parties: Option<usize>) -> Result<Session> {
        Session::favoring(protocol, parties, Favor::Bytes)
    }

    /// [`Session::new`] with the protocol favouring `favor` (refused where the protocol
    /// has no choice between rounds and bytes).
    pub fn favoring(protocol: &str, parties: Option<usize>, favor: Favor) -> Result<Session> {
        let (spec, parties) = party::protocol(protocol, parties, favor).or_setup()?;
        let roles = if spec.is_clear() {
            CLEAR_ROLES
        } else {
            Roles::default()
        };
        let session = Session {
            spec,
            parties,
            roles,
            timeouts: Timeouts::default(),
            traffic: None,
        };
        session.with_roles(roles)
    }

    /// Who holds the weights, who the input, who receives the output (ignored under
    /// `clear`, where one party plays every role).
    pub fn with_roles(mut self, roles: Roles) -> Result<Session> {
        if self.spec.is_clear() {
            return Ok(self);
        }
        party::check_roles(roles, self.parties)
            .with_context(|| format!("protocol `{}`", self.spec.name))
            .or_setup()?;
        self.roles = roles;
        Ok(self)
    }

    /// How long a party waits for a peer to connect and for one message.
    pub fn with_timeout(mut self, t: Duration) -> Session {
        self.timeouts = Timeouts { connect: t, io: t };
        self
    }

    /// Let another thread follow a run: party 0 (the busiest in every protocol's usual
    /// roles) publishes its rounds and bytes to `traffic` after every round.
    pub fn watched(mut self, traffic: Arc<Traffic>) -> Session {
        self.traffic = Some(traffic);
        self
    }

    pub fn protocol(&self) -> &Spec {
        &self.spec
    }

    pub fn parties(&self) -> usize {
        self.parties
    }

    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// Every party's rounds and bytes and the per-layer table for `batch` samples, and the
    /// dealer's bytes, without running: the figures `run` measures.
    pub fn cost(&self, program: &Program, batch: usize) -> Result<Cost> {
        if batch == 0 {
            return Err(Error::Setup("the batch must be at least 1".into()));
        }
        let ring_bits = qmpc_vm::cost::ring_bits(&self.spec, program);
        let costs = self.spec.costs(self.parties, ring_bits).or_setup()?;
        let c = qmpc_vm::cost::cost(program, costs.as_ref(), self.roles, batch)
            .context("cannot cost the program")
            .or_model()?;
        let preprocessing =
            party::preprocessing(&self.spec, program, self.parties, self.roles, batch)
                .context("cannot cost the preprocessing")
                .or_model()?;
        Ok(Cost {
            program: c,
            ring_bits,
            preprocessing,
        })
    }

    /// Run `model` on `inputs` (one array per graph input, in graph order) with every
    /// party of the session on a thread of this process: the model owner's thread holds the
    /// weights, the data owner's the quantized inputs, and only the output receiver's
    /// thread learns the outputs.
    pub fn run(&self, model: &Model, inputs: &[Input]) -> Result<Outcome> {
        if !model.has_weights() {
            return Err(Error::Setup(
                "the model has secret weights but holds none: load it with its weights".into(),
            ));
        }
        party::warn_probabilistic(&model.program, &self.spec);
        let (tensors, batch) = io::quantize_inputs(&model.program, inputs)?;
        let program = &model.program;
        let weights = model.weights.clone();
        let (outs, per_party, (wall_s, online_s), dealer) = if self.spec.is_clear() {
            let start = Instant::now();
            let data = PartyData {
                inputs: Some(tensors),
                weights: Some(weights),
            };
            // On a worker of rayon's pool, so that each parallel loop is split with the
            // other workers instead of handed over whole while this thread sleeps.
            let outs = rayon::scope(|_| {
                interp::run(
                    program,
                    &mut qmpc_protocols::Clear,
                    CLEAR_ROLES,
                    &data,
                    batch,
                )
            })
            .or_run()?;
            let wall = start.elapsed().as_secs_f64();
            (outs, vec![Stats::default()], (wall, wall), None)
        } else {
            self.run_local_parties(program, weights, tensors, batch)?
        };
        let outputs = io::finish_outputs(program, &outs)
            .into_iter()
            .collect::<Option<Vec<Array>>>()
            .ok_or_else(|| Error::Run("no output was revealed to the output receiver".into()))?;
        Ok(Outcome {
            outputs,
            batch,
            per_party,
            wall_s,
            online_s,
            dealer,
            ring_bits: qmpc_vm::cost::ring_bits(&self.spec, program),
            protocol: self.spec,
        })
    }

    /// Every party of a secure protocol on its own thread, connected over loopback TCP.
    fn run_local_parties(
        &self,
        program: &Program,
        weights: Arc<Weights>,
        inputs: Vec<Tensor<i64>>,
        batch: usize,
    ) -> Result<LocalOutcome> {
        let (spec, n, roles) = (&self.spec, self.parties, self.roles);
        let dealt = spec.dealer;
        let (addrs, mut listeners) =
            qmpc_protocols::net::loopback(n + usize::from(dealt)).or_setup()?;
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
        let pool = &party::party_pool(n).or_setup()?;
        let timeouts = self.timeouts;
        let start = Instant::now();
        let (results, dealer) = std::thread::scope(|s| {
            let dealer = dealer_listener.map(|l| {
                let addrs = &addrs;
                s.spawn(move || {
                    party::run_dealer(program, spec, l, addrs, roles, (timeouts, &PLAIN))
                        .context("the dealer")
                })
            });
            let handles: Vec<_> = listeners
                .into_iter()
                .zip(&datas)
                .enumerate()
                .map(|(i, (l, data))| {
                    let addrs = &addrs;
                    let traffic = self.traffic.as_ref().filter(|_| i == 0);
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
                                (timeouts, &PLAIN, traffic),
                            )
                        })
                        .with_context(|| format!("party {i}"))
                    })
                })
                .collect();
            party::join_all(handles, dealer)
        });
        let wall = start.elapsed().as_secs_f64();
        // A party that fails first makes the others see it disconnect: report the root cause.
        let dealer_failed = matches!(dealer, Some(Err(_)));
        if results.iter().any(|r| r.is_err()) || dealer_failed {
            let mut errs: Vec<anyhow::Error> =
                results.into_iter().filter_map(|r| r.err()).collect();
            if let Some(Err(e)) = dealer {
                errs.insert(0, e);
            }
            return Err(self.root_cause(errs));
        }
        let mut per_party = Vec::new();
        let mut outs = Vec::new();
        let mut online: f64 = 0.0;
        for (i, r) in results.into_iter().enumerate() {
            let r = r.or_run()?;
            per_party.push(r.stats);
            online = online.max(r.online_s);
            if i == roles.output_to {
                outs = r.outputs;
            }
        }
        let dealer = dealer.transpose().or_run()?;
        Ok((outs, per_party, (wall, online), dealer))
    }

    /// The error to report of several parties' failures: the first that is not an echo of
    /// another's (a disconnect it caused), else a wait that ran out.
    fn root_cause(&self, errs: Vec<anyhow::Error>) -> Error {
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
            return Error::Run(text(&err.context(format!(
                "a party waited longer than --timeout {} s; a large batch can need more",
                self.timeouts.io.as_secs_f64()
            ))));
        }
        Error::Run(text(&err))
    }
}

/// The output receiver's outputs, each party's online traffic, the wall time with and
/// without the connection set-up (the slowest party's), and the dealer's figures.
type LocalOutcome = (
    Vec<Option<Tensor<i64>>>,
    Vec<Stats>,
    (f64, f64),
    Option<DealerResult>,
);

/// `qmpc run`'s parties are threads of one process on loopback: no one else is on the
/// links (tests run the same meshes with TLS on).
const PLAIN: Security = Security::Plain;
