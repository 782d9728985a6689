//! One party of a secure run: connect, agree on the program and the batch, set up the
//! protocol, interpret the program. `qmpc run` starts one per party on loopback threads;
//! `qmpc party` runs one per process.

use anyhow::{bail, Context, Result};
use qmpc_protocols::net::tls::{self, Fingerprint};
use qmpc_protocols::net::{Hello, Mesh, NetError, Security, Stats, Timeouts, Traffic, Transport};
use qmpc_protocols::registry::{self, DealerMode, DealerRole, DealerVisitor, Party, PartyVisitor};
use qmpc_protocols::{Favor, PartyId, Spec, TruncMode};
use qmpc_vm::bytecode::Program;
use qmpc_vm::interp::{self, PartyData, Roles};
use qmpc_vm::tensor::Tensor;
use serde::Deserialize;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The protocol called `name` (which this build must run) favouring `favor`, and its
/// number of computing parties for `--parties`.
pub fn protocol(name: &str, parties: Option<usize>, favor: Favor) -> Result<(Spec, usize)> {
    let spec = registry::find(name)?.favoring(favor)?;
    let n = spec.party_count(parties)?;
    Ok((spec, n))
}

/// `--favor` (or a config's `favor`) by name.
pub fn favor(name: &str) -> Result<Favor> {
    Favor::from_name(name).with_context(|| {
        let names: Vec<&str> = Favor::ALL.iter().map(|f| f.name()).collect();
        format!("favor must be {}, not `{name}`", names.join(" or "))
    })
}

/// A thread pool for `parties` parties of this process to run on, one worker each, plus
/// one fewer than the machine's cores to take over the work they split. A party that runs
/// on a worker does its share of a parallel loop itself; one outside the pool hands the
/// whole loop over and sleeps until it is done, and the pool's idle workers spin beside it.
/// On 2 cores this took `mal-rep3`'s LeNet batch-1 run from 0.155 s to 0.125 s.
pub fn party_pool(parties: usize) -> Result<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    rayon::ThreadPoolBuilder::new()
        .num_threads(parties + cores.saturating_sub(1))
        .thread_name(|i| format!("qmpc-worker-{i}"))
        .build()
        .context("cannot start the worker threads")
}

/// The warning printed where `--trunc probabilistic` meets secret weights (compile, run,
/// party): the one-step error of each rescale happens with a probability that depends on
/// the secret low bits of the value, so a data owner who repeats a query learns them.
pub const PROBABILISTIC_WARNING: &str = "warning: --trunc probabilistic with secret weights: \
     whether a rescale rounds one step off depends on secret low bits, so repeated queries \
     learn about the weights (docs/protocols.md, \"What probabilistic truncation leaks\")";

/// Print [`PROBABILISTIC_WARNING`] when `program` truncates probabilistically with secret
/// weights under a secure protocol.
pub fn warn_probabilistic(program: &Program, protocol: &Spec) {
    let secret_weights = !program.weights.is_empty();
    if secret_weights && program.trunc == TruncMode::Probabilistic && !protocol.is_clear() {
        eprintln!("{PROBABILISTIC_WARNING}");
    }
}

/// What one party has at the end of a run.
pub struct PartyResult {
    pub outputs: Vec<Option<Tensor<i64>>>,
    pub batch: usize,
    /// Online traffic.
    pub stats: Stats,
    /// From the start of the connection set-up to the end.
    pub wall_s: f64,
    /// From the end of the set-up (connections, batch, key exchange) to the end: the time
    /// MPC frameworks report for a computation.
    pub online_s: f64,
}

/// Run party `me` of `protocol` on `program`. The data owner passes `batch`; the others
/// learn it from the data owner at start-up (the batch size is public).
#[allow(clippy::too_many_arguments)]
pub fn run_party(
    program: &Program,
    protocol: &Spec,
    me: PartyId,
    listener: TcpListener,
    addrs: &[SocketAddr],
    roles: Roles,
    data: &PartyData,
    batch: Option<usize>,
    (timeouts, security, traffic): (Timeouts, &Security, Option<&Arc<Traffic>>),
) -> Result<PartyResult> {
    // The data owner states the batch in its announcement: bound into the session id, so
    // every member computes on the same batch or none starts.
    if me == roles.data_owner {
        check_batch(me, batch.context("the data owner has no input")?)?;
    }
    let hello = Hello {
        claim: batch.map_or(Vec::new(), |b| (b as u64).to_le_bytes().to_vec()),
        program: program.digest(),
        protocol: protocol.label(),
        parties: addrs.len(),
        roles: roles_text(roles),
    };
    let start = Instant::now();
    let mut mesh = Mesh::establish(me, listener, addrs, &hello, timeouts, security)?;
    let batch = agree_batch(&mut mesh, roles.data_owner, batch)?;
    if let Some(t) = traffic {
        mesh.watch(t.clone());
    }
    let ring = qmpc_vm::cost::ring_bits(protocol, program);
    let run = protocol.setup_party(
        Box::new(mesh),
        ring,
        RunWith {
            program,
            roles,
            data,
            batch,
        },
    )??;
    Ok(PartyResult {
        outputs: run.outputs,
        batch,
        stats: run.stats,
        wall_s: start.elapsed().as_secs_f64(),
        online_s: run.online_s,
    })
}

/// The roles as the start-up announces them (every party must have the same).
fn roles_text(r: Roles) -> String {
    format!(
        "model owner {}, data owner {}, output to {}",
        r.model_owner, r.data_owner, r.output_to
    )
}

/// What a protocol's run gives back.
struct Run {
    outputs: Outputs,
    stats: Stats,
    online_s: f64,
}

type Outputs = Vec<Option<Tensor<i64>>>;

/// Runs a freshly set-up party on the program.
struct RunWith<'a> {
    program: &'a Program,
    roles: Roles,
    data: &'a PartyData,
    batch: usize,
}

impl PartyVisitor for RunWith<'_> {
    type Output = Result<Run>;
    fn visit<P: Party>(self, party: P) -> Result<Run> {
        run_with(party, self.program, self.roles, self.data, self.batch)
    }
}

fn run_with<P: Party>(
    mut proto: P,
    program: &Program,
    roles: Roles,
    data: &PartyData,
    batch: usize,
) -> Result<Run> {
    let start = Instant::now();
    match interp::run(program, &mut proto, roles, data, batch) {
        // Protocols count from the end of their set-up, so the batch agreement before it
        // is left out too.
        Ok(outputs) => Ok(Run {
            outputs,
            stats: proto.online(),
            online_s: start.elapsed().as_secs_f64(),
        }),
        Err(e) => {
            proto.abort(&abort_reason(&e));
            Err(e.into())
        }
    }
}

/// What the dealer did.
#[derive(Clone, Copy, Debug)]
pub struct DealerResult {
    pub stats: Stats,
    pub wall_s: f64,
}

/// Run the dealer of `protocol` (party `addrs.len() − 1` of the mesh): learn the batch,
/// walk the program making every call's material, send it, leave.
pub fn run_dealer(
    program: &Program,
    protocol: &Spec,
    listener: TcpListener,
    addrs: &[SocketAddr],
    roles: Roles,
    (timeouts, security): (Timeouts, &Security),
) -> Result<DealerResult> {
    let hello = Hello {
        claim: Vec::new(),
        program: program.digest(),
        protocol: protocol.label(),
        parties: addrs.len(),
        roles: roles_text(roles),
    };
    let start = Instant::now();
    let n = addrs.len() - 1;
    let mut mesh = Mesh::establish(n, listener, addrs, &hello, timeouts, security)?;
    let batch = agree_batch(&mut mesh, roles.data_owner, None)?;
    let ring = qmpc_vm::cost::ring_bits(protocol, program);
    let stats = protocol
        .dealer(
            n,
            ring,
            DealerMode::Generate,
            Deal {
                mesh,
                program,
                roles,
                batch,
            },
        )
        .map_err(anyhow::Error::from)
        .and_then(|r| r)?;
    Ok(DealerResult {
        stats,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// Walks the program with a generating dealer, its material going out as it is made.
struct Deal<'a> {
    mesh: Mesh,
    program: &'a Program,
    roles: Roles,
    batch: usize,
}

impl DealerVisitor for Deal<'_> {
    type Output = Result<Stats>;
    fn visit<D: DealerRole>(self, mut dealer: D) -> Result<Stats> {
        // The start-up's traffic is not the dealer's material.
        let before = Transport::stats(&self.mesh);
        dealer.attach(Box::new(self.mesh));
        let walked = interp::run(
            self.program,
            &mut dealer,
            self.roles,
            &PartyData::default(),
            self.batch,
        );
        if let Err(e) = walked {
            dealer.abort_session("the dealer failed");
            return Err(anyhow::Error::from(e).context("the dealer cannot walk the program"));
        }
        Ok(dealer.session_stats().since(before))
    }
}

/// What the dealer sends: its material, streamed beside the computation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Preprocessing {
    /// Bytes to all parties together.
    pub bytes: u64,
    /// DCF keys (`fss`), and their bytes per party: correction words and root seeds.
    pub keys: u64,
    pub key_bytes: u64,
}

/// What the dealer of `protocol` sends for `program` at `batch` (nothing without a
/// dealer), without running it.
pub fn preprocessing(
    protocol: &Spec,
    program: &Program,
    parties: usize,
    roles: Roles,
    batch: usize,
) -> Result<Preprocessing> {
    if !protocol.dealer {
        return Ok(Preprocessing::default());
    }
    /// Walks the program with a counting dealer.
    struct Count<'a> {
        program: &'a Program,
        roles: Roles,
        batch: usize,
    }
    impl DealerVisitor for Count<'_> {
        type Output = Result<Preprocessing>;
        fn visit<D: DealerRole>(self, mut d: D) -> Result<Preprocessing> {
            interp::run_session(
                self.program,
                &mut d,
                self.roles,
                &PartyData::default(),
                self.batch,
                &mut qmpc_vm::cost::blank_states(self.program, self.batch),
            )?;
            let (keys, key_bytes) = d.keys();
            Ok(Preprocessing {
                bytes: d.bytes_per_party().iter().sum(),
                keys,
                key_bytes,
            })
        }
    }
    let ring = qmpc_vm::cost::ring_bits(protocol, program);
    protocol.dealer(
        parties,
        ring,
        DealerMode::Count,
        Count {
            program,
            roles,
            batch,
        },
    )?
}

/// What a failing party tells the others: instruction, node and network cause, never the
/// text of a local check, which may quote the party's own data.
fn abort_reason(e: &interp::VmError) -> String {
    match e {
        interp::VmError::Protocol { .. } | interp::VmError::Run { .. } => e.to_string(),
        interp::VmError::Instr {
            index,
            mnemonic,
            node,
            ..
        } => format!("instruction {index} (`{mnemonic}`, node `{node}`) failed a local check"),
        interp::VmError::Setup(_) => "its data does not match the program".into(),
    }
}

/// Every role names one of the `n` parties.
pub fn check_roles(roles: Roles, n: usize) -> Result<()> {
    for (what, r) in [
        ("model owner", roles.model_owner),
        ("data owner", roles.data_owner),
        ("output receiver", roles.output_to),
    ] {
        if r >= n {
            bail!("the {what} is party {r}, but the parties are 0..{n}");
        }
    }
    Ok(())
}

/// Whether an error only repeats another party's failure.
pub fn is_echo(msg: &str) -> bool {
    msg.contains("disconnected")
        || msg.contains("sent nothing")
        || msg.contains("took nothing")
        || msg.contains("stopped:")
}

/// The batch size the data owner stated in its start-up announcement (8 bytes, the same
/// at every member: the session id binds every announcement).
fn agree_batch(mesh: &mut Mesh, owner: PartyId, batch: Option<usize>) -> Result<usize> {
    if Transport::party(mesh) == owner {
        return batch.context("the data owner has no input");
    }
    let bytes: [u8; 8] = mesh
        .claim(owner)
        .try_into()
        .map_err(|_| NetError::Garbage {
            party: owner,
            what: "a malformed batch size".into(),
        })?;
    let b = u64::from_le_bytes(bytes) as usize;
    check_batch(owner, b)?;
    Ok(b)
}

/// A batch any member accepts: 1 to 2^20 samples.
fn check_batch(owner: PartyId, b: usize) -> Result<()> {
    if b == 0 || b > 1 << 20 {
        bail!("party {owner} announced a batch of {b}");
    }
    Ok(())
}

/// `--stats` JSON (DESIGN.md keys, plus bytes received, the ring, `online_s`: the wall
/// time without the connection set-up, and `peak_rss_bytes`: the process's peak resident
/// set when the JSON is made, `null` where the system does not say).
pub fn stats_json(
    protocol: &Spec,
    ring: u32,
    batch: usize,
    per_party: &[Stats],
    (wall_s, online_s): (f64, f64),
    preprocessing: Option<&DealerResult>,
) -> String {
    let (pre_bytes, pre_wall) = preprocessing.map_or((0, 0.0), |d| (d.stats.bytes_sent, d.wall_s));
    let rounds = per_party.iter().map(|s| s.rounds).max().unwrap_or(0);
    let sent: u64 = per_party.iter().map(|s| s.bytes_sent).sum();
    let peak = crate::memory::peak_rss_json();
    let parties: Vec<String> = per_party
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{{\"id\": {i}, \"rounds\": {}, \"bytes_sent\": {}, \"bytes_received\": {}}}",
                s.rounds, s.bytes_sent, s.bytes_received
            )
        })
        .collect();
    format!(
        "{{\"protocol\": \"{}\", \"favor\": \"{}\", \"parties\": {}, \"batch\": {batch}, \"rounds\": {rounds}, \
         \"bytes_sent\": {sent}, \"per_party\": [{}], \
         \"preprocessing\": {{\"bytes_sent\": {pre_bytes}, \"wall_s\": {pre_wall:.6}}}, \"ring_bits\": {ring}, \
         \"wall_s\": {wall_s:.6}, \"online_s\": {online_s:.6}, \"peak_rss_bytes\": {peak}}}\n",
        protocol.name,
        protocol.favor().name(),
        per_party.len(),
        parties.join(", ")
    )
}

/// `parties.toml` for `qmpc party`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartiesConfig {
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// `rounds` or `bytes` (the default), as `qmpc run --favor`.
    pub favor: Option<String>,
    /// Seconds to wait for every party to connect.
    #[serde(default = "default_connect")]
    pub connect_timeout_s: f64,
    /// Seconds to wait for one message of a peer.
    #[serde(default = "default_io")]
    pub io_timeout_s: f64,
    #[serde(default)]
    pub roles: RolesConfig,
    pub party: Vec<PartyEntry>,
    /// The dealer's address, for protocols with one.
    pub dealer: Option<DealerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealerEntry {
    /// `HOST:PORT` the dealer listens on.
    pub address: String,
    /// Its certificate file (PEM), relative to the config's directory.
    pub certificate: Option<String>,
    /// Or the certificate's SHA-256 fingerprint, `sha256:` and 64 hex digits.
    pub fingerprint: Option<String>,
}

/// Which certificate a member must present (`qmpc keygen` prints both forms).
struct Pin<'a> {
    certificate: &'a Option<String>,
    fingerprint: &'a Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyEntry {
    pub id: usize,
    /// `HOST:PORT` this party listens on.
    pub address: String,
    /// Its certificate file (PEM), relative to the config's directory.
    pub certificate: Option<String>,
    /// Or the certificate's SHA-256 fingerprint, `sha256:` and 64 hex digits.
    pub fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    #[serde(default)]
    pub model_owner: usize,
    #[serde(default = "one")]
    pub data_owner: usize,
    #[serde(default = "one")]
    pub output_to: usize,
}

impl Default for RolesConfig {
    fn default() -> Self {
        RolesConfig {
            model_owner: 0,
            data_owner: 1,
            output_to: 1,
        }
    }
}

fn default_protocol() -> String {
    "rep3".into()
}
fn default_connect() -> f64 {
    30.0
}
fn default_io() -> f64 {
    60.0
}
fn one() -> usize {
    1
}

impl Pin<'_> {
    fn fingerprint(&self, dir: &Path, who: &str, config: &Path) -> Result<Fingerprint> {
        match (self.certificate, self.fingerprint) {
            (Some(c), None) => {
                let file = dir.join(c);
                let pem = std::fs::read(&file).with_context(|| {
                    format!(
                        "{}: {who}'s certificate {}: cannot read",
                        config.display(),
                        file.display()
                    )
                })?;
                tls::certificate_fingerprint(&pem)
                    .with_context(|| format!("{}: {who}'s certificate", file.display()))
            }
            (None, Some(f)) => Fingerprint::parse(f)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}: {who}'s fingerprint", config.display())),
            (Some(_), Some(_)) => bail!(
                "{}: {who} has both `certificate` and `fingerprint`: give one",
                config.display()
            ),
            (None, None) => bail!(
                "{}: {who} has no `certificate` or `fingerprint`: TLS pins every member's \
                 certificate (`qmpc keygen` prints both), or run with --insecure",
                config.display()
            ),
        }
    }
}

/// Listen on `addr`, the address `who` (a party, or the dealer) has in the config.
pub fn listen(addr: SocketAddr, who: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("{who}: cannot listen on {addr}"))
}

/// A timeout in seconds, checked.
pub fn seconds(what: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s < 1e6) {
        bail!("{what} must be a positive number of seconds, not {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

impl PartiesConfig {
    /// Its `favor` (bytes where it names none).
    pub fn favor(&self) -> Result<Favor> {
        self.favor.as_deref().map_or(Ok(Favor::Bytes), favor)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let c: PartiesConfig =
            toml::from_str(&text).with_context(|| format!("{}: invalid", path.display()))?;
        let n = c.party.len();
        for (i, p) in c.party.iter().enumerate() {
            if p.id != i {
                bail!(
                    "{}: party entries must list ids 0..{n} in order; entry {i} has id {}",
                    path.display(),
                    p.id
                );
            }
        }
        check_roles(c.roles(), n).with_context(|| format!("{}: [roles]", path.display()))?;
        Ok(c)
    }

    /// Every party's address, then the dealer's where the protocol has one.
    pub fn addrs(&self) -> Result<Vec<SocketAddr>> {
        let resolve = |what: String, address: &str| {
            use std::net::ToSocketAddrs;
            address
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .with_context(|| format!("{what}: bad address `{address}`"))
        };
        let mut out = self
            .party
            .iter()
            .map(|p| resolve(format!("party {}", p.id), &p.address))
            .collect::<Result<Vec<_>>>()?;
        match (&self.dealer, registry::find(&self.protocol)?.dealer) {
            (Some(d), true) => out.push(resolve("the dealer".into(), &d.address)?),
            (None, true) => bail!(
                "protocol `{}` needs a dealer: add `[dealer] address = \"HOST:PORT\"`",
                self.protocol
            ),
            (Some(_), false) => bail!(
                "protocol `{}` has no dealer; remove [dealer]",
                self.protocol
            ),
            (None, false) => {}
        }
        Ok(out)
    }

    pub fn roles(&self) -> Roles {
        Roles {
            model_owner: self.roles.model_owner,
            data_owner: self.roles.data_owner,
            output_to: self.roles.output_to,
        }
    }

    /// Every member's pinned certificate, in the order of [`PartiesConfig::addrs`].
    fn pins(&self, path: &Path) -> Result<Vec<Fingerprint>> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut out = Vec::new();
        for p in &self.party {
            let pin = Pin {
                certificate: &p.certificate,
                fingerprint: &p.fingerprint,
            };
            out.push(pin.fingerprint(dir, &format!("party {}", p.id), path)?);
        }
        if let (Some(d), true) = (&self.dealer, registry::find(&self.protocol)?.dealer) {
            let pin = Pin {
                certificate: &d.certificate,
                fingerprint: &d.fingerprint,
            };
            out.push(pin.fingerprint(dir, "the dealer", path)?);
        }
        Ok(out)
    }

    /// How `qmpc party` secures its links: `--key` and the config's pins (mutual TLS), or
    /// plain TCP with `--insecure` (and a warning).
    pub fn security(&self, path: &Path, key: Option<&Path>, insecure: bool) -> Result<Security> {
        if insecure {
            if key.is_some() {
                bail!("--insecure and --key exclude each other");
            }
            eprintln!(
                "warning: --insecure: the links are plain TCP; anyone on the network path \
                 reads every share and can take a party's seat"
            );
            return Ok(Security::Plain);
        }
        let key = key.context(
            "qmpc party needs --key KEY (this party's key, made by `qmpc keygen`) and every \
             party's certificate pinned in the config (docs/deploy.md), or --insecure for \
             plain TCP",
        )?;
        let pem = std::fs::read(key).with_context(|| format!("{}: cannot read", key.display()))?;
        let identity =
            tls::Identity::from_pem(&pem).with_context(|| format!("{}", key.display()))?;
        Ok(Security::Tls(Arc::new(tls::Tls::new(
            identity,
            self.pins(path)?,
        ))))
    }

    pub fn timeouts(&self) -> Result<Timeouts> {
        Ok(Timeouts {
            connect: seconds("connect_timeout_s", self.connect_timeout_s)?,
            io: seconds("io_timeout_s", self.io_timeout_s)?,
        })
    }
}

/// Joins the threads of every party and of the dealer of one process's session; a thread
/// that panicked becomes an error like any other.
pub(crate) fn join_all<T, D>(
    parties: Vec<std::thread::ScopedJoinHandle<'_, Result<T>>>,
    dealer: Option<std::thread::ScopedJoinHandle<'_, Result<D>>>,
) -> (Vec<Result<T>>, Option<Result<D>>) {
    let parties = parties
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
    (parties, dealer)
}
