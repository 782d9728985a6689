//! One party of a secure run: connect, agree on the program and the batch, set up the
//! protocol, interpret the program. `qmpc run` starts one per party on loopback threads;
//! `qmpc party` runs one per process.

use anyhow::{bail, Context, Result};
use qmpc_protocols::net::{Hello, Mesh, NetError, Stats, Timeouts, Transport};
use qmpc_protocols::semi2k::{Dealer, Gates};
use qmpc_protocols::shamir::Shamir;
use qmpc_protocols::word::Word;
use qmpc_protocols::{PartyId, Rep3, Semi2k};
use qmpc_vm::bytecode::Program;
use qmpc_vm::interp::{self, PartyData, Roles};
use qmpc_vm::tensor::Tensor;
use qmpc_vm::types::Visibility;
use serde::Deserialize;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

/// How many computing parties a protocol this build runs takes.
#[derive(Clone, Copy, Debug)]
enum PartyCount {
    Exactly(usize),
    /// `min` to `max`; `default` without `--parties`.
    Between {
        min: usize,
        max: usize,
        default: usize,
    },
}

/// The secure protocols this build runs.
const SECURE: &[(&str, PartyCount)] = &[
    ("rep3", PartyCount::Exactly(3)),
    (
        "semi2k",
        PartyCount::Between {
            min: 2,
            max: MAX_PARTIES,
            default: 2,
        },
    ),
    // Every party holds a key per subset of `t` others: C(n − 1, t) grows fast.
    (
        "shamir",
        PartyCount::Between {
            min: 3,
            max: qmpc_protocols::shamir::MAX_PARTIES,
            default: 3,
        },
    ),
    ("fss", PartyCount::Exactly(2)),
];

/// The most computing parties a run may have.
const MAX_PARTIES: usize = 64;

/// Whether `protocol` has a dealer beside its computing parties (the mesh's last party).
pub fn has_dealer(protocol: &str) -> bool {
    dealer_gates(protocol).is_some()
}

/// The gates of a protocol with a dealer.
fn dealer_gates(protocol: &str) -> Option<Gates> {
    match protocol {
        "semi2k" => Some(Gates::Beaver),
        "fss" => Some(Gates::Fss),
        _ => None,
    }
}

/// Every protocol name of DESIGN.md, implemented or not.
pub const ALL: &[&str] = &[
    "clear", "rep3", "semi2k", "shamir", "fss", "mal-rep3", "spdz2k",
];

/// Check a protocol name and party count; returns the number of parties.
pub fn parties_for(protocol: &str, parties: Option<usize>) -> Result<usize> {
    let count = match (protocol, SECURE.iter().find(|(p, _)| *p == protocol)) {
        ("clear", _) => PartyCount::Exactly(1),
        (_, Some((_, c))) => *c,
        (p, None) if ALL.contains(&p) => {
            bail!(
                "protocol `{p}` is not implemented yet; this build runs clear, rep3, semi2k, shamir and fss"
            )
        }
        (p, None) => bail!("unknown protocol `{p}`; protocols: {}", ALL.join(", ")),
    };
    match (count, parties) {
        (PartyCount::Exactly(n), Some(k)) if k != n => {
            bail!("protocol `{protocol}` runs with {n} parties, not {k}")
        }
        (PartyCount::Exactly(n), _) => Ok(n),
        (PartyCount::Between { min, max, .. }, Some(k)) if !(min..=max).contains(&k) => {
            bail!("protocol `{protocol}` runs with {min} to {max} parties, not {k}")
        }
        (PartyCount::Between { default, .. }, k) => Ok(k.unwrap_or(default)),
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
    protocol: &str,
    me: PartyId,
    listener: TcpListener,
    addrs: &[SocketAddr],
    roles: Roles,
    data: &PartyData,
    batch: Option<usize>,
    timeouts: Timeouts,
) -> Result<PartyResult> {
    let hello = Hello {
        program: program.digest(),
        protocol: protocol.to_string(),
        parties: addrs.len(),
    };
    let start = Instant::now();
    let mut mesh = Mesh::with_listener(me, listener, addrs, &hello, timeouts)?;
    let batch = agree_batch(&mut mesh, roles.data_owner, batch)?;
    let ring = ring_bits(protocol, program);
    let run = match (protocol, ring) {
        ("rep3", 32) => run_with(
            Rep3::<u32>::setup(Box::new(mesh))?,
            program,
            roles,
            data,
            batch,
        ),
        ("rep3", 64) => run_with(
            Rep3::<u64>::setup(Box::new(mesh))?,
            program,
            roles,
            data,
            batch,
        ),
        ("rep3", _) => run_with(
            Rep3::<u128>::setup(Box::new(mesh))?,
            program,
            roles,
            data,
            batch,
        ),
        ("semi2k", 32) => run_semi2k::<u32>(Gates::Beaver, mesh, program, roles, data, batch),
        ("semi2k", 64) => run_semi2k::<u64>(Gates::Beaver, mesh, program, roles, data, batch),
        ("semi2k", _) => run_semi2k::<u128>(Gates::Beaver, mesh, program, roles, data, batch),
        ("shamir", _) => run_with(Shamir::setup(Box::new(mesh))?, program, roles, data, batch),
        ("fss", 32) => run_semi2k::<u32>(Gates::Fss, mesh, program, roles, data, batch),
        ("fss", 64) => run_semi2k::<u64>(Gates::Fss, mesh, program, roles, data, batch),
        ("fss", _) => run_semi2k::<u128>(Gates::Fss, mesh, program, roles, data, batch),
        _ => bail!("protocol `{protocol}` cannot run as a party"),
    }?;
    Ok(PartyResult {
        outputs: run.outputs,
        batch,
        stats: run.stats,
        wall_s: start.elapsed().as_secs_f64(),
        online_s: run.online_s,
    })
}

/// What a protocol's run gives back.
struct Run {
    outputs: Outputs,
    stats: Stats,
    online_s: f64,
}

type Outputs = Vec<Option<Tensor<i64>>>;

/// A party of a set-up protocol: what the run needs besides [`qmpc_vm::interp`].
trait Party: qmpc_protocols::Protocol + Send {
    fn online(&self) -> Stats;
    fn abort(&mut self, reason: &str);
}

impl<W: Word> Party for Rep3<W> {
    fn online(&self) -> Stats {
        self.stats()
    }
    fn abort(&mut self, reason: &str) {
        Rep3::abort(self, reason)
    }
}

impl Party for Shamir {
    fn online(&self) -> Stats {
        self.stats()
    }
    fn abort(&mut self, reason: &str) {
        Shamir::abort(self, reason)
    }
}

impl<W: Word> Party for Semi2k<W> {
    fn online(&self) -> Stats {
        self.stats()
    }
    fn abort(&mut self, reason: &str) {
        Semi2k::abort(self, reason)
    }
}

fn run_semi2k<W: Word>(
    gates: Gates,
    mesh: Mesh,
    program: &Program,
    roles: Roles,
    data: &PartyData,
    batch: usize,
) -> Result<Run> {
    run_with(
        Semi2k::<W>::setup_with(Box::new(mesh), gates)?,
        program,
        roles,
        data,
        batch,
    )
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
pub struct DealerResult {
    pub stats: Stats,
    pub wall_s: f64,
}

/// Run the dealer of `protocol` (party `addrs.len() − 1` of the mesh): learn the batch,
/// walk the program making every call's material, send it, leave.
pub fn run_dealer(
    program: &Program,
    protocol: &str,
    listener: TcpListener,
    addrs: &[SocketAddr],
    roles: Roles,
    timeouts: Timeouts,
) -> Result<DealerResult> {
    let hello = Hello {
        program: program.digest(),
        protocol: protocol.to_string(),
        parties: addrs.len(),
    };
    let start = Instant::now();
    let n = addrs.len() - 1;
    let mut mesh = Mesh::with_listener(n, listener, addrs, &hello, timeouts)?;
    let batch = agree_batch(&mut mesh, roles.data_owner, None)?;
    let gates = dealer_gates(protocol)
        .ok_or_else(|| anyhow::anyhow!("protocol `{protocol}` has no dealer"))?;
    let stats = match ring_bits(protocol, program) {
        32 => deal::<u32>(&mut mesh, program, roles, batch, (n, gates)),
        64 => deal::<u64>(&mut mesh, program, roles, batch, (n, gates)),
        _ => deal::<u128>(&mut mesh, program, roles, batch, (n, gates)),
    };
    let stats = match stats {
        Ok(s) => s,
        Err(e) => {
            Transport::abort(&mut mesh, "the dealer failed");
            return Err(e);
        }
    };
    Ok(DealerResult {
        stats,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

fn deal<W: Word>(
    mesh: &mut Mesh,
    program: &Program,
    roles: Roles,
    batch: usize,
    (n, gates): (usize, Gates),
) -> Result<Stats> {
    let before = Transport::stats(mesh);
    let mut dealer = Dealer::<W>::new(n, gates)?;
    interp::run(program, &mut dealer, roles, &PartyData::default(), batch)
        .context("the dealer cannot walk the program")?;
    Ok(dealer.send(mesh)?.since(before))
}

/// What the dealer sends before the computation.
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
    protocol: &str,
    program: &Program,
    parties: usize,
    roles: Roles,
    batch: usize,
) -> Result<Preprocessing> {
    let Some(gates) = dealer_gates(protocol) else {
        return Ok(Preprocessing::default());
    };
    fn count<W: Word>(
        program: &Program,
        (n, gates): (usize, Gates),
        roles: Roles,
        batch: usize,
    ) -> Result<Preprocessing> {
        let mut d = Dealer::<W>::counting(n, gates);
        interp::run(program, &mut d, roles, &PartyData::default(), batch)?;
        let (keys, key_bytes) = d.keys();
        Ok(Preprocessing {
            bytes: d.bytes_per_party().iter().sum(),
            keys,
            key_bytes,
        })
    }
    let who = (parties, gates);
    match ring_bits(protocol, program) {
        32 => count::<u32>(program, who, roles, batch),
        64 => count::<u64>(program, who, roles, batch),
        _ => count::<u128>(program, who, roles, batch),
    }
}

/// What a failing party tells the others: instruction, node and network cause, never the
/// text of a local check, which may quote the party's own data.
fn abort_reason(e: &interp::VmError) -> String {
    match e {
        interp::VmError::Protocol { .. } => e.to_string(),
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
    msg.contains("disconnected") || msg.contains("sent nothing") || msg.contains("stopped:")
}

/// The data owner tells every other party the batch size (8 bytes, before the computation).
fn agree_batch(mesh: &mut Mesh, owner: PartyId, batch: Option<usize>) -> Result<usize> {
    let me = Transport::party(mesh);
    if me == owner {
        let b = batch.context("the data owner has no input")?;
        let out = (0..mesh.parties())
            .filter(|&p| p != me)
            .map(|p| (p, (b as u64).to_le_bytes().to_vec()))
            .collect();
        Transport::exchange(mesh, out, &[])?;
        Ok(b)
    } else {
        let got = Transport::exchange(mesh, Vec::new(), &[owner])?;
        let bytes: [u8; 8] = got
            .first()
            .and_then(|(_, m)| m.as_slice().try_into().ok())
            .ok_or(NetError::Garbage {
                party: owner,
                what: "a malformed batch size".into(),
            })?;
        let b = u64::from_le_bytes(bytes) as usize;
        if b == 0 || b > 1 << 20 {
            bail!("party {owner} announced a batch of {b}");
        }
        Ok(b)
    }
}

/// Bits of the ring a protocol computes `program` in: the narrowest of Z_2^32, Z_2^64 and
/// Z_2^128 that every primitive of the program fits (the cost formulas fail exactly where a
/// primitive would, e.g. a masked opening without its statistical headroom) and, for
/// Z_2^32, that holds every secret register's bounds. A function of the public program, so
/// every party and `qmpc cost` pick the same.
pub fn ring_bits(protocol: &str, program: &Program) -> u32 {
    match protocol {
        "clear" => return 64,
        // A prime field: the bits of p = 2^127 − 1.
        "shamir" => return 127,
        _ => {}
    }
    let fits = |bits: u32| {
        // The ring does not depend on the number of parties.
        let n = match SECURE.iter().find(|(p, _)| *p == protocol) {
            Some((_, PartyCount::Exactly(n))) => *n,
            Some((_, PartyCount::Between { default, .. })) => *default,
            None => 3,
        };
        qmpc_protocols::cost::costs_for(protocol, n, bits).is_ok_and(|c| {
            let roles = Roles {
                model_owner: 0,
                data_owner: 0,
                output_to: 0,
            };
            qmpc_vm::cost::cost(program, c.as_ref(), roles, 1).is_ok()
        })
    };
    let i32_range = i64::from(i32::MIN)..=i64::from(i32::MAX);
    let secret_in_32 = program.registers.iter().all(|r| {
        r.vis == Visibility::Public || (i32_range.contains(&r.lo) && i32_range.contains(&r.hi))
    });
    if secret_in_32 && fits(32) {
        32
    } else if fits(64) {
        64
    } else {
        128
    }
}

/// `--stats` JSON (DESIGN.md keys, plus bytes received, the ring and `online_s`: the wall
/// time without the connection set-up).
pub fn stats_json(
    protocol: &str,
    ring: u32,
    batch: usize,
    per_party: &[Stats],
    (wall_s, online_s): (f64, f64),
    preprocessing: Option<&DealerResult>,
) -> String {
    let (pre_bytes, pre_wall) = preprocessing.map_or((0, 0.0), |d| (d.stats.bytes_sent, d.wall_s));
    let rounds = per_party.iter().map(|s| s.rounds).max().unwrap_or(0);
    let sent: u64 = per_party.iter().map(|s| s.bytes_sent).sum();
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
        "{{\"protocol\": \"{protocol}\", \"parties\": {}, \"batch\": {batch}, \"rounds\": {rounds}, \
         \"bytes_sent\": {sent}, \"per_party\": [{}], \
         \"preprocessing\": {{\"bytes_sent\": {pre_bytes}, \"wall_s\": {pre_wall:.6}}}, \"ring_bits\": {ring}, \
         \"wall_s\": {wall_s:.6}, \"online_s\": {online_s:.6}}}\n",
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyEntry {
    pub id: usize,
    /// `HOST:PORT` this party listens on.
    pub address: String,
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

/// A timeout in seconds, checked.
pub fn seconds(what: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s < 1e6) {
        bail!("{what} must be a positive number of seconds, not {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

impl PartiesConfig {
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
        match (&self.dealer, has_dealer(&self.protocol)) {
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

    pub fn timeouts(&self) -> Result<Timeouts> {
        Ok(Timeouts {
            connect: seconds("connect_timeout_s", self.connect_timeout_s)?,
            io: seconds("io_timeout_s", self.io_timeout_s)?,
        })
    }
}
