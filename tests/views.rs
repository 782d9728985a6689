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
    fn visit<D: DealerRole>(mut self, mut d: D) {
        interp::run(self.program, &mut d, ROLES, &PartyData::default(), 1)
            .expect("the dealer walks the program");
        d.send(&mut self.net).expect("the dealer sends");
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
        program: program.digest(),
        protocol: spec.name.into(),
        parties: total,
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
                    weights: (i == ROLES.model_owner).then(|| weights.clone()),
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
