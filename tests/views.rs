//! Privacy from the registry: every protocol runs a real model through the VM, the data
//! owner's input one of two different tensors, and what each corrupted coalition receives
//! (its own keys fixed, `viewtest::CoalitionCoins`) must not tell the two apart
//! (`viewtest::views_differ`: bytes and words as integers, a sum over words, reused masks).
//! The coalitions follow the registry's threat model: each single party but the data owner
//! where a minority may collude, every party but the data owner where all but one may.
//! The model owner (party 0) holds the weights; the data owner (party 1) receives the output.

use qmpc_protocols::net::{loopback, Hello, Mesh, Timeouts, Transport};
use qmpc_protocols::registry::{
    self, Colluding, DealerMode, DealerRole, DealerVisitor, Party, PartyVisitor, Threat,
};
use qmpc_protocols::stream::ledger::Ledger;
use qmpc_protocols::viewtest::{views_differ, CoalitionCoins, Recorder};
use qmpc_protocols::{PartyId, Spec};
use qmpc_vm::bytecode::{Program, Weights};
use qmpc_vm::interp::{self, PartyData, Roles};
use qmpc_vm::tensor::Tensor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const ROLES: Roles = Roles {
    model_owner: 0,
    data_owner: 1,
    output_to: 1,
};

/// The coalitions the registry's threat model allows that exclude the data owner.
fn coalitions(spec: &Spec, n: usize) -> Vec<Vec<PartyId>> {
    let others: Vec<PartyId> = (0..n).filter(|&p| p != ROLES.data_owner).collect();
    match spec.threat {
        Threat::SemiHonest {
            colluding: Colluding::AllButOne,
        }
        | Threat::Malicious {
            colluding: Colluding::AllButOne,
        } => vec![others],
        _ => others.into_iter().map(|p| vec![p]).collect(),
    }
}

struct RunParty<'a> {
    program: &'a Program,
    data: &'a PartyData,
}

impl PartyVisitor for RunParty<'_> {
    type Output = ();
    fn visit<P: Party>(self, mut p: P) {
        interp::run(self.program, &mut p, ROLES, self.data, 1).expect("the party runs");
    }
}

struct Deal<'a> {
    program: &'a Program,
    net: Mesh,
}

impl DealerVisitor for Deal<'_> {
    type Output = ();
    fn visit<D: DealerRole>(self, mut d: D) {
        d.attach(Box::new(self.net));
        interp::run(self.program, &mut d, ROLES, &PartyData::default(), 1)
            .expect("the dealer walks and sends");
    }
}

/// What `coalition` received, joined, in one run on `input`.
fn view(
    spec: &Spec,
    n: usize,
    (program, weights): (&Program, &Weights),
    input: &Tensor<i64>,
    coalition: &[PartyId],
    ledger: Option<&Ledger>,
) -> Vec<u8> {
    let coins = CoalitionCoins {
        coalition: coalition.to_vec(),
    };
    let total = n + usize::from(spec.dealer);
    let (addrs, listeners) = loopback(total).expect("loopback");
    let hello = Hello {
        claim: Vec::new(),
        program: program.digest(),
        protocol: spec.name.into(),
        parties: total,
        roles: String::new(),
    };
    let bits = qmpc_vm::cost::ring_bits(spec, program);
    let logs: Vec<Arc<Mutex<Vec<u8>>>> = (0..n).map(|_| Arc::default()).collect();
    std::thread::scope(|s| {
        for (i, l) in listeners.into_iter().enumerate() {
            let (addrs, hello, coins, logs) = (&addrs, &hello, &coins, &logs);
            s.spawn(move || {
                let _ledger = ledger.map(|l| l.enter(i));
                let mesh = Mesh::with_listener(i, l, addrs, hello, Timeouts::default())
                    .expect("the mesh connects");
                if i == n {
                    let deal = Deal { program, net: mesh };
                    spec.dealer_with_coins(n, bits, DealerMode::Generate, coins, deal)
                        .expect("a dealer");
                    return;
                }
                let data = PartyData {
                    inputs: (i == ROLES.data_owner).then(|| vec![input.clone()]),
                    weights: (i == ROLES.model_owner).then(|| Arc::new(weights.clone())),
                };
                let net: Box<dyn Transport> = Box::new(Recorder {
                    inner: Box::new(mesh),
                    seen: logs[i].clone(),
                });
                spec.setup_party_with_coins(
                    net,
                    bits,
                    coins,
                    RunParty {
                        program,
                        data: &data,
                    },
                )
                .expect("the party sets up");
            });
        }
    });
    coalition
        .iter()
        .flat_map(|&p| logs[p].lock().expect("log").clone())
        .collect()
}

/// The mask ledger (`qmpc_protocols::stream::ledger`): every protocol at each party count
/// of its range up to 4 runs a model; no party may draw the same bytes of a key twice,
/// and every holder of a key must draw exactly the bytes of it the others draw (a mask
/// drawn by one holder alone is known to another party). Its detector power is in
/// `stream.rs`'s tests.
#[test]
fn every_protocol_draws_each_key_once_and_alike_at_every_holder() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny_mlp/qop_s8_pt.onnx");
    let c = qmpc_compiler::compile_file(&model, &Default::default()).expect("compiles");
    let x = input_of(&c.program, |i| (i as i64 * 37) % 256 - 128);
    let mut checked = Vec::new();
    for spec in registry::PROTOCOLS
        .iter()
        .filter(|s| s.implemented() && !s.is_clear())
    {
        for n in 2..=4 {
            if !spec.parties.allows(n) {
                continue;
            }
            let ledger = Ledger::default();
            view(spec, n, (&c.program, &c.weights), &x, &[], Some(&ledger));
            let records = ledger.records();
            assert!(
                records.len() >= n,
                "{} with {n} parties: {} streams recorded",
                spec.name,
                records.len()
            );
            if let Err(why) = ledger.verify() {
                panic!("{} with {n} parties:\n{why}", spec.name);
            }
            let shared = ledger.shared();
            assert!(
                shared > 0,
                "{} with {n} parties: no key has two holders",
                spec.name
            );
            checked.push(format!(
                "{}/{n}: {} streams, {shared} drawn by several parties",
                spec.name,
                records.len()
            ));
        }
    }
    eprintln!("{}", checked.join(", "));
    assert!(checked.len() >= 5);
}

/// The data owner's input tensor of `program` at batch 1, element `i` being `f(i)`.
fn input_of(program: &Program, f: impl Fn(usize) -> i64) -> Tensor<i64> {
    let mut dims = program.inputs[0].ty.dims.clone();
    dims[0] = 1;
    let len: usize = dims.iter().product();
    Tensor::new(dims, (0..len).map(f).collect())
}

#[test]
fn no_coalition_of_any_protocol_learns_the_data_owners_input() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny_mlp/qop_s8_pt.onnx");
    let c = qmpc_compiler::compile_file(&model, &Default::default()).expect("compiles");
    let decl = &c.program.inputs[0];
    let mut dims = decl.ty.dims.clone();
    dims[0] = 1;
    let len: usize = dims.iter().product();
    // The lowest and highest int8 values against a ramp.
    let xa = Tensor::new(
        dims.clone(),
        (0..len)
            .map(|i| if i % 2 == 0 { -128 } else { 127 })
            .collect(),
    );
    let xb = Tensor::new(
        dims,
        (0..len).map(|i| (i as i64 * 37) % 256 - 128).collect(),
    );
    const RUNS: usize = 60;
    let mut checked = 0;
    for spec in registry::PROTOCOLS
        .iter()
        .filter(|s| s.implemented() && !s.is_clear())
    {
        let n = spec.party_count(None).expect("a default count");
        for coalition in coalitions(spec, n) {
            let runs = |x: &Tensor<i64>| -> Vec<Vec<u8>> {
                (0..RUNS)
                    .map(|_| view(spec, n, (&c.program, &c.weights), x, &coalition, None))
                    .collect()
            };
            let (va, vb) = (runs(&xa), runs(&xb));
            assert!(
                va[0].len() > 100,
                "{}: the coalition receives {} bytes",
                spec.name,
                va[0].len()
            );
            if let Some(why) = views_differ(&va, &vb) {
                panic!(
                    "{}: parties {coalition:?} learn the input: {why}",
                    spec.name
                );
            }
            // The detector fires on the same views with the input appended in the clear.
            let leak = |vs: &[Vec<u8>], x: &Tensor<i64>| -> Vec<Vec<u8>> {
                vs.iter()
                    .map(|v| [v.clone(), x.data.iter().map(|&e| e as u8).collect()].concat())
                    .collect()
            };
            assert!(views_differ(&leak(&va, &xa), &leak(&vb, &xb)).is_some());
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked} protocol coalitions checked");
}

/// A training session's parties: share the model and rows, then run the step `steps`
/// times, each in the session's own `States` (`fresh`: a new `States` per step instead,
/// which restarts the run counter — what the ledger must catch).
struct TrainParty<'a> {
    t: &'a qmpc_compiler::train::Training,
    data: &'a PartyData,
    model: &'a PartyData,
    rows: usize,
    steps: usize,
    fresh: bool,
}

impl PartyVisitor for TrainParty<'_> {
    type Output = ();
    fn visit<P: Party>(self, mut p: P) {
        self.walk(&mut p);
    }
}

/// The dealer of a training session walks the same runs, sending each run's material.
struct TrainDealer<'a> {
    parties: TrainParty<'a>,
    net: Mesh,
}

impl DealerVisitor for TrainDealer<'_> {
    type Output = ();
    fn visit<D: DealerRole>(self, mut d: D) {
        d.attach(Box::new(self.net));
        self.parties.walk(&mut d);
    }
}

impl TrainParty<'_> {
    fn walk<P: qmpc_protocols::Protocol + Send>(&self, p: &mut P) {
        use qmpc_compiler::train::{BATCH_X, BATCH_Y, DATA_X, DATA_Y};
        let mut states = interp::States::new();
        interp::run_session(&self.t.setup_model, p, ROLES, self.model, 1, &mut states)
            .expect("the model is shared");
        interp::run_session(
            &self.t.setup_data,
            p,
            ROLES,
            self.data,
            self.rows,
            &mut states,
        )
        .expect("the rows are shared");
        let (x, y) = (
            states.remove(DATA_X).unwrap(),
            states.remove(DATA_Y).unwrap(),
        );
        let batch = self
            .t
            .step
            .states
            .iter()
            .find(|s| s.name == BATCH_X)
            .unwrap()
            .ty
            .dims[0];
        let cut = |v: &interp::Shared<P::Shares>| {
            use qmpc_protocols::planes::Plane;
            let row: usize = v.dims[1..].iter().product();
            let mut dims = v.dims.clone();
            dims[0] = batch;
            interp::Shared::new(dims, v.data.slice(0..batch * row))
        };
        for _ in 0..self.steps {
            states.insert(BATCH_X.into(), cut(&x));
            states.insert(BATCH_Y.into(), cut(&y));
            if !self.fresh {
                interp::run_session(
                    &self.t.step,
                    p,
                    ROLES,
                    &PartyData::default(),
                    1,
                    &mut states,
                )
                .expect("the step runs");
                continue;
            }
            let mut fresh = interp::States::new();
            for s in &self.t.step.states {
                if let Some(v) = states.get(&s.name) {
                    fresh.insert(s.name.clone(), v.clone());
                }
            }
            interp::run_session(&self.t.step, p, ROLES, &PartyData::default(), 1, &mut fresh)
                .expect("the step runs");
            for s in &self.t.step.states {
                if let Some(v) = fresh.get(&s.name) {
                    states.insert(s.name.clone(), v.clone());
                }
            }
        }
    }
}

/// Runs a training session of the digits MLP under `spec` (3 parties) with the ledger on.
fn train_ledger(spec: &Spec, fresh: bool) -> Ledger {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(root.join("models/train/mlp_digits_init.onnx")).expect("model");
    let (rows, batch) = (64, 32);
    let opts = qmpc_compiler::train::TrainOptions {
        batch,
        lr: 0.1,
        optimizer: qmpc_compiler::train::Optimizer::Sgd { momentum: 0.9 },
        loss: qmpc_compiler::train::Loss::CrossEntropy,
        rows,
        test_rows: None,
        trunc: qmpc_protocols::TruncMode::Exact,
        numerics: Default::default(),
        reveal_loss: false,
    };
    let t = qmpc_compiler::train::compile(&bytes, "mlp_digits_init.onnx", &opts).expect("compiles");
    let x = Tensor::new(
        vec![rows, 64],
        (0..rows * 64).map(|i| (i as i64 * 37) % 4096).collect(),
    );
    let y = Tensor::new(
        vec![rows, 10],
        (0..rows * 10)
            .map(|i| i64::from(i % 10 == (i / 10) % 10))
            .collect(),
    );
    let data = PartyData {
        inputs: Some(vec![x, y]),
        weights: None,
    };
    let model = PartyData {
        inputs: None,
        weights: Some(Arc::new(t.weights.clone())),
    };
    let n = if spec.parties.allows(3) { 3 } else { 2 };
    let total = n + usize::from(spec.dealer);
    let (addrs, listeners) = loopback(total).expect("loopback");
    let hello = Hello {
        claim: Vec::new(),
        program: t.step.digest(),
        protocol: spec.name.into(),
        parties: total,
        roles: String::new(),
    };
    let ledger = Ledger::default();
    let bits = [&t.setup_model, &t.setup_data, &t.step]
        .into_iter()
        .map(|p| qmpc_vm::cost::ring_bits(spec, p))
        .max()
        .unwrap_or(64);
    std::thread::scope(|s| {
        for (i, l) in listeners.into_iter().enumerate() {
            let (addrs, hello, ledger, t, data, model) =
                (&addrs, &hello, &ledger, &t, &data, &model);
            s.spawn(move || {
                let _in = ledger.enter(i);
                let mesh = Mesh::with_listener(i, l, addrs, hello, Timeouts::default())
                    .expect("the mesh connects");
                let none = PartyData::default();
                let parties = TrainParty {
                    t,
                    data: if i == ROLES.data_owner { data } else { &none },
                    model: if i == ROLES.model_owner { model } else { &none },
                    rows,
                    steps: 2,
                    fresh,
                };
                if i == n {
                    let deal = TrainDealer { parties, net: mesh };
                    spec.dealer(n, bits, DealerMode::Generate, deal)
                        .expect("a dealer");
                } else {
                    spec.setup_party(Box::new(mesh), bits, parties)
                        .expect("the party sets up");
                }
            });
        }
    });
    ledger
}

/// Two steps of a training session draw fresh masks: every protocol passes the ledger
/// over a whole session, the dealer's material included. Restarting the run counter
/// between the steps (as if every run began a new session) must be caught as a two-time
/// pad wherever instructions run as forked copies keyed by their index (`rep3`, `shamir`;
/// `mal-rep3` runs them in order from streams that never restart; a dealer protocol
/// cannot restart: its parties would wait for material the dealer never sends).
#[test]
fn a_training_session_never_draws_a_mask_twice() {
    let mut caught = Vec::new();
    for spec in registry::PROTOCOLS
        .iter()
        .filter(|s| s.implemented() && !s.is_clear())
    {
        let ledger = train_ledger(spec, false);
        if let Err(why) = ledger.verify() {
            panic!("{}: a training session reuses masks:\n{why}", spec.name);
        }
        if spec.dealer {
            continue;
        }
        if train_ledger(spec, true).verify().is_err() {
            caught.push(spec.name);
        }
    }
    assert!(
        caught.len() >= 2,
        "the ledger caught restarted runs only in {caught:?}"
    );
}
