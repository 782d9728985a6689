//! `qmpc party --train`: one party (or the dealer) of a training session in its own
//! process. At start-up the parties agree on the public plan before anything secret
//! moves: every public choice of the session is compared flag by flag, every party
//! announces how many training and test rows it holds, then each compiles the training
//! programs from its own copy of the architecture and they compare the programs'
//! digests. A party given other flags or another model stops every party, naming the
//! difference, before a share is sent. The session itself is `qmpc train`'s
//! ([`train::session_loop`] through [`TrainWith`] and [`DealSession`]).

use crate::npy::{self, Array};
use crate::party::{self, PartiesConfig};
use crate::train::{self, DealSession, Outcome, Owned, Plan, Settings, TrainWith};
use anyhow::{bail, Context, Result};
use qmpc_compiler::train::Training;
use qmpc_protocols::net::{Hello, Mesh, NetError, Stats, Transport, MAX_HELLO};
use qmpc_protocols::registry::DealerMode;
use qmpc_protocols::{PartyId, Spec};
use qmpc_vm::interp::Roles;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What `qmpc party --train` was asked.
pub struct PartyTrainArgs {
    /// `None`: the dealer.
    pub id: Option<PartyId>,
    pub config: PathBuf,
    pub model: PathBuf,
    /// This party's training rows and labels, if it is a data owner.
    pub data: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub test_data: Option<PathBuf>,
    pub test_labels: Option<PathBuf>,
    pub settings: Settings,
    /// Where the model owner writes the trained model.
    pub output: Option<PathBuf>,
    pub stats: Option<PathBuf>,
    /// This party's TLS key (`qmpc keygen`), or `None` with `insecure`.
    pub key: Option<PathBuf>,
    pub insecure: bool,
}

/// The handshake's program digest of a training session: the programs are compiled only
/// once the row counts are known, and compared then ([`agree_programs`]).
const TRAIN_HELLO: [u8; 32] = *b"qmpc train session: plan follows";

/// Most bytes a party's plan announcement may take (a few dozen short lines).
const MAX_PLAN: usize = 4096;

/// What one member of the mesh announced at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Holdings {
    rows: usize,
    test_rows: usize,
}

/// A member of the mesh, for messages: `party 2`, or the dealer (the last member).
fn who(p: PartyId, parties: usize) -> String {
    if p == parties {
        "the dealer".into()
    } else {
        format!("party {p}")
    }
}

/// The public fields this member sends: the session's flags and the model owner, then
/// its own row counts.
fn plan_message(settings: &Settings, roles: Roles, own: Holdings) -> Vec<u8> {
    let mut text = String::new();
    for (k, v) in public_fields(settings, roles) {
        text.push_str(&format!("{k}={v}\n"));
    }
    text.push_str(&format!("rows={}\ntest-rows={}\n", own.rows, own.test_rows));
    text.into_bytes()
}

fn public_fields(settings: &Settings, roles: Roles) -> Vec<(&'static str, String)> {
    let mut f = settings.fields();
    f.push(("model owner", roles.model_owner.to_string()));
    f
}

/// Checks a peer's announcement against this member's choices; returns what it holds.
fn read_plan(bytes: &[u8], from: &str, settings: &Settings, roles: Roles) -> Result<Holdings> {
    let garbled = || anyhow::anyhow!("{from} sent a malformed training plan");
    if bytes.len() > MAX_PLAN {
        return Err(garbled());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| garbled())?;
    let theirs: BTreeMap<&str, &str> = text
        .lines()
        .map(|l| l.split_once('=').ok_or_else(garbled))
        .collect::<Result<_>>()?;
    for (k, ours) in public_fields(settings, roles) {
        let got = theirs.get(k).ok_or_else(garbled)?;
        if *got != ours {
            bail!(
                "{from} trains with {k} {got}, this party with {k} {ours}: every party must \
                 give the same training flags (and the same [roles])"
            );
        }
    }
    let count = |k: &str| -> Result<usize> {
        theirs
            .get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(garbled)
    };
    Ok(Holdings {
        rows: count("rows")?,
        test_rows: count("test-rows")?,
    })
}

/// One round: every member announces its plan and holdings to every other; each checks
/// the others' choices. Returns every member's holdings, by id (the dealer last).
fn agree_plan(
    mesh: &mut Mesh,
    settings: &Settings,
    roles: Roles,
    own: Holdings,
) -> Result<Vec<Holdings>> {
    let me = mesh.party();
    let members = mesh.parties();
    let peers: Vec<PartyId> = (0..members).filter(|&p| p != me).collect();
    let msg = plan_message(settings, roles, own);
    let got = mesh.exchange_capped(
        peers.iter().map(|&p| (p, msg.clone())).collect(),
        &peers,
        MAX_PLAN,
    )?;
    let mut all = vec![own; members];
    for (p, bytes) in got {
        all[p] = read_plan(&bytes, &who(p, members - 1), settings, roles)?;
    }
    Ok(all)
}

/// The digests of every training program, one after the other.
fn programs_digest(t: &Training) -> Vec<u8> {
    let mut programs = vec![&t.setup_model, &t.setup_data, &t.step, &t.finish];
    if let Some(e) = &t.eval {
        programs.extend([&e.chunk, &e.total]);
    }
    programs.extend(&t.loss_total);
    programs.iter().flat_map(|p| p.digest()).collect()
}

/// One round: every member sends the digests of the programs it compiled; any
/// difference stops the session before a share is sent.
fn agree_programs(mesh: &mut Mesh, t: &Training) -> Result<()> {
    let me = mesh.party();
    let members = mesh.parties();
    let peers: Vec<PartyId> = (0..members).filter(|&p| p != me).collect();
    let ours = programs_digest(t);
    let out = peers.iter().map(|&p| (p, ours.clone())).collect();
    let got = mesh.exchange_capped(out, &peers, MAX_HELLO)?;
    for (p, theirs) in got {
        if theirs != ours {
            let hex = |d: &[u8]| {
                d.iter()
                    .take(4)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            };
            bail!(
                "{} compiled other training programs than this party ({}… against {}…): \
                 the model files differ in architecture",
                who(p, members - 1),
                hex(&theirs),
                hex(&ours)
            );
        }
    }
    Ok(())
}

/// The training rows and labels of `--data` / `--labels`, read.
fn read_set(args: &PartyTrainArgs) -> Result<Option<(Array, Array)>> {
    Ok(match (&args.data, &args.labels) {
        (Some(x), Some(y)) => Some((
            npy::read(x).with_context(|| format!("--data {}", x.display()))?,
            npy::read(y).with_context(|| format!("--labels {}", y.display()))?,
        )),
        (None, None) => None,
        _ => bail!("--data and --labels go together"),
    })
}

fn rows_of(a: &Array) -> usize {
    a.dims().first().copied().unwrap_or(0)
}

/// Data owners with their rows, in the data set's order.
type Owners = Vec<(PartyId, usize)>;

/// The data owners in id order with their rows, and the party that holds the test rows.
fn owners_of(all: &[Holdings], parties: usize) -> Result<(Owners, Option<PartyId>)> {
    let owners: Owners = all[..parties]
        .iter()
        .enumerate()
        .filter(|(_, h)| h.rows > 0)
        .map(|(p, h)| (p, h.rows))
        .collect();
    if owners.is_empty() {
        bail!("no party holds training rows: give a data owner --data and --labels");
    }
    let testers: Vec<PartyId> = (0..parties).filter(|&p| all[p].test_rows > 0).collect();
    let test_owner = match testers.as_slice() {
        [] => None,
        [p] => Some(*p),
        [a, b, ..] => {
            bail!("parties {a} and {b} both hold test rows; one party shares the test set")
        }
    };
    Ok((owners, test_owner))
}

pub fn party(args: &PartyTrainArgs) -> Result<()> {
    let cfg = PartiesConfig::read(&args.config)?;
    let (spec, n) = party::protocol(&cfg.protocol, Some(cfg.party.len()), cfg.favor()?)?;
    let spec = &spec;
    let roles = cfg.roles();
    let me = match args.id {
        Some(i) if i >= n => bail!("--id {i}: {} lists parties 0..{n}", args.config.display()),
        Some(i) => i,
        None if !spec.dealer => bail!("protocol `{}` has no dealer", spec.name),
        None => n,
    };
    let owner = me == roles.model_owner;
    match (&args.output, owner) {
        (Some(_), false) => bail!(
            "{} is not the model owner (party {}); only it receives the trained model \
             (--output)",
            who(me, n),
            roles.model_owner
        ),
        (None, true) => bail!("the model owner (party {me}) needs --output TRAINED.onnx"),
        _ => {}
    }
    if me == n && (args.data.is_some() || args.test_data.is_some()) {
        bail!("the dealer holds no rows");
    }
    if args.settings.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let security = cfg.security(&args.config, args.key.as_deref(), args.insecure)?;
    let set = read_set(args)?;
    let test = train::read_test(args.test_data.as_ref(), args.test_labels.as_ref())?;
    let held = Holdings {
        rows: set.as_ref().map_or(0, |(x, _)| rows_of(x)),
        test_rows: test.as_ref().map_or(0, |(x, _)| rows_of(x)),
    };
    // What can be checked alone is checked before connecting.
    for (what, pair) in [("--data", &set), ("--test-data", &test)] {
        if let Some((x, y)) = pair {
            if rows_of(x) == 0 {
                bail!("{what} holds no rows");
            }
            if rows_of(y) != rows_of(x) {
                bail!(
                    "{what} has {} rows but its labels {}",
                    rows_of(x),
                    rows_of(y)
                );
            }
        }
    }
    let addrs = cfg.addrs()?;
    let listener = party::listen(addrs[me], &who(me, n))?;
    let hello = Hello {
        claim: Vec::new(),
        program: TRAIN_HELLO,
        protocol: spec.label(),
        parties: addrs.len(),
        roles: format!("model owner {}", roles.model_owner),
    };
    let start = Instant::now();
    let mut mesh = Mesh::establish(me, listener, &addrs, &hello, cfg.timeouts()?, &security)?;
    // Until the protocol takes the links, a failure here tells the others which stage
    // stopped (never the local error's text, which may quote this party's data).
    let session = match prepare(&mut mesh, args, spec, roles, held, set, test) {
        Ok(s) => s,
        Err(e) => {
            if e.downcast_ref::<NetError>().is_none() && !party::is_echo(&format!("{e:#}")) {
                Transport::abort(
                    &mut mesh,
                    &format!("{} could not prepare the training session", who(me, n)),
                );
            }
            return Err(e);
        }
    };
    let t = &session.t;
    let rows: usize = session.owners.iter().map(|o| o.1).sum();
    let roles = Roles {
        data_owner: session.owners[0].0,
        ..roles
    };
    let plan = Plan {
        t,
        epochs: args.settings.epochs,
        batch: args.settings.batch,
        rows,
        owners: session.owners.clone(),
        seed: args.settings.seed,
        roles,
        test_owner: session.test_owner.unwrap_or(roles.data_owner),
        test_chunks: session.test_chunks,
        talk: owner,
    };
    let ring = train::session_ring(spec, t);
    if me == n {
        let stats = spec
            .dealer(
                n,
                ring,
                DealerMode::Generate,
                DealSession {
                    plan: &plan,
                    net: Box::new(mesh),
                },
            )?
            .context("the dealer")?;
        if let Some(path) = &args.stats {
            let json = format!(
                "{{\"protocol\": \"{}\", \"role\": \"dealer\", \"dealer_bytes_sent\": {}, \
                 \"wall_s\": {:.6}}}\n",
                spec.name,
                stats.bytes_sent,
                start.elapsed().as_secs_f64()
            );
            std::fs::write(path, json)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        return Ok(());
    }
    let own = &session.own;
    let out: Outcome = party::party_pool(1)?
        .install(|| spec.setup_party(Box::new(mesh), ring, TrainWith { plan: &plan, own })?)
        .with_context(|| format!("party {me}"))?;
    if let Some(output) = &args.output {
        train::finish_owner(
            t,
            &args.model,
            output,
            &out,
            &args.settings,
            rows,
            session.test_rows,
        )?;
    }
    if let Some(path) = &args.stats {
        std::fs::write(path, party_stats(spec.name, me, &out, start))
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// This party's own figures as JSON (the others' are not known here).
fn party_stats(protocol: &str, me: PartyId, out: &Outcome, start: Instant) -> String {
    let s: Stats = out.stats;
    let correct: Vec<String> = out.correct.iter().map(|c| c.to_string()).collect();
    format!(
        "{{\"protocol\": \"{protocol}\", \"id\": {me}, \"rounds\": {}, \"bytes_sent\": {}, \
         \"bytes_received\": {}, \"step\": {{\"rounds\": {}, \"bytes_sent\": {}}}, \
         \"test_correct\": [{}], \"wall_s\": {:.6}}}\n",
        s.rounds,
        s.bytes_sent,
        s.bytes_received,
        out.step.rounds,
        out.step.bytes_sent,
        correct.join(", "),
        start.elapsed().as_secs_f64()
    )
}

/// What the parties agreed on at start-up, and this party's share of it.
struct Agreed {
    t: Training,
    own: Owned,
    /// The data owners in id order, with their rows.
    owners: Owners,
    test_owner: Option<PartyId>,
    test_rows: usize,
    /// Chunks of the padded test set: public, the same in every party.
    test_chunks: usize,
}

/// The start-up after the handshake: agree on the plan, compile, agree on the programs,
/// and quantize this party's own weights and rows.
fn prepare(
    mesh: &mut Mesh,
    args: &PartyTrainArgs,
    spec: &Spec,
    roles: Roles,
    held: Holdings,
    set: Option<(Array, Array)>,
    test: Option<(Array, Array)>,
) -> Result<Agreed> {
    let me = mesh.party();
    let n = mesh.parties() - usize::from(spec.dealer);
    let all = agree_plan(mesh, &args.settings, roles, held)?;
    let (owners, test_owner) = owners_of(&all, n)?;
    let rows: usize = owners.iter().map(|o| o.1).sum();
    let test_rows = test_owner.map(|p| all[p].test_rows);
    let t = train::compile(&args.model, &args.settings.options(rows, test_rows))?;
    agree_programs(mesh, &t)?;
    let first = Roles {
        data_owner: owners[0].0,
        ..roles
    };
    train::check_dealt(spec, &t, n, first, args.settings.batch)?;
    let mut own = Owned::default();
    if me == roles.model_owner {
        own.weights = Some(Arc::new(t.weights.clone()));
    }
    if let Some((x, y)) = &set {
        let k = owners
            .iter()
            .position(|o| o.0 == me)
            .context("this party's rows are not in the plan")?;
        let data = train::read_rows(&t.setup_data, x, y, t.classes, t.loss)
            .with_context(|| format!("the rows of party {me}"))?;
        own.data.insert(k, data);
    }
    own.test = train::test_inputs(&t, test.as_ref())?.0;
    let test_chunks = match (&t.eval, test_rows) {
        (Some(e), Some(r)) => train::test_chunks(r, e.rows),
        _ => 0,
    };
    Ok(Agreed {
        t,
        own,
        owners,
        test_owner,
        test_rows: test_rows.unwrap_or(0),
        test_chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmpc_compiler::train::{Loss, Optimizer};

    fn settings() -> Settings {
        Settings {
            epochs: 2,
            batch: 64,
            lr: 0.1,
            optimizer: Optimizer::Sgd { momentum: 0.9 },
            loss: Loss::CrossEntropy,
            trunc: qmpc_protocols::TruncMode::Exact,
            seed: 3,
            reveal_loss: false,
        }
    }

    #[test]
    fn a_plan_reads_back_and_every_field_is_compared() {
        let (s, roles) = (settings(), Roles::default());
        let held = Holdings {
            rows: 80,
            test_rows: 7,
        };
        let msg = plan_message(&s, roles, held);
        assert_eq!(read_plan(&msg, "party 1", &s, roles).unwrap(), held);
        let mut other = s.clone();
        other.optimizer = Optimizer::Sgd { momentum: 0.5 };
        let e = read_plan(&msg, "party 1", &other, roles)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("party 1 trains with --momentum 0.9, this party with --momentum 0.5"),
            "{e}"
        );
        let moved = Roles {
            model_owner: 2,
            ..roles
        };
        let e = read_plan(&msg, "party 1", &s, moved)
            .unwrap_err()
            .to_string();
        assert!(e.contains("model owner 0"), "{e}");
        for bad in [&b"rows=1"[..], b"\xff", &vec![b'a'; MAX_PLAN + 1]] {
            let e = read_plan(bad, "the dealer", &s, roles)
                .unwrap_err()
                .to_string();
            assert_eq!(e, "the dealer sent a malformed training plan");
        }
    }

    #[test]
    fn owners_come_in_party_order_and_one_party_holds_the_test_rows() {
        let h = |rows, test_rows| Holdings { rows, test_rows };
        let (owners, test) = owners_of(&[h(0, 0), h(5, 0), h(9, 4), h(0, 0)], 3).unwrap();
        assert_eq!((owners, test), (vec![(1, 5), (2, 9)], Some(2)));
        let e = owners_of(&[h(0, 0), h(0, 0)], 2).unwrap_err().to_string();
        assert!(e.starts_with("no party holds training rows"), "{e}");
        let e = owners_of(&[h(0, 3), h(5, 4)], 2).unwrap_err().to_string();
        assert!(e.starts_with("parties 0 and 1 both hold test rows"), "{e}");
    }
}
