//! The `Protocol` abstraction over secret-shared integer tensors, and every qmpc protocol.
//!
//! A protocol sees flat slices of ring elements (Z_2^64, two's complement in `i64`) and the
//! public metadata it needs (value bounds, rescale constants). Tensor layout (shapes,
//! im2col, transposes) is the VM's job: moving shares around is local in every linear
//! secret-sharing scheme, so protocols only implement arithmetic and the interactive steps.
//!
//! Architecture invariant: this crate knows nothing about ONNX or bytecode.

mod bitvec;
pub(crate) mod borrow;
pub mod cheat;
pub mod clear;
pub mod coins;
pub mod cost;
mod cost_memo;
pub(crate) mod dcf;
pub mod dry_run;
pub mod dzkp;
mod error;
pub mod field;
pub mod func;
pub mod gemm;
pub(crate) mod lanes;
pub mod malrep3;
pub mod mux;
pub mod net;
pub mod planes;
pub mod registry;
pub mod rep3;
mod segmented;
pub mod semi2k;
pub mod shamir;
pub mod spdz2k;
pub mod stream;
#[cfg(test)]
mod testutil;
#[cfg(any(test, feature = "view-tests"))]
pub mod viewtest;
pub mod wires;
pub mod word;

pub use clear::Clear;
pub use error::ProtocolError;
pub use qmpc_semantics::{requant, ring, Bounds, MatDims, Requant, TruncMode};
pub use registry::{Favor, Party, Spec};
pub use rep3::{Rep3, Rep3Costs};
pub use semi2k::Semi2k;

/// Index of a party, `0..parties`.
pub type PartyId = usize;

/// The stream number of instruction `index` in run `run` of a session: forks and
/// [`Core::begin_instruction`] take it, so masks never repeat across runs.
pub fn task_id(run: u64, index: usize) -> u64 {
    (run << 32) | index as u64
}

/// The instruction index within its run of a [`task_id`].
pub fn task_index(task: u64) -> usize {
    (task & 0xFFFF_FFFF) as usize
}

/// The arithmetic black box of one protocol (docs/core.md): sharing, opening, local
/// linear maps, products, and the hooks that let instructions share rounds.
///
/// Local operations take `&self`; operations that communicate take `&mut self` and are
/// batched over whole slices so that one call is at most a fixed number of rounds.
pub trait Core {
    /// One party's shares of a run of elements, stored as planes (structure of arrays,
    /// [`planes`]): a tensor's shares are one value of this type, and every layout move
    /// the VM makes is a [`planes::Plane::gather`].
    type Shares: planes::Plane;

    /// The protocol's command-line name.
    fn name(&self) -> &'static str;
    /// This party's id.
    fn party(&self) -> PartyId;
    /// Number of computing parties.
    fn parties(&self) -> usize;
    /// The VM starts an instruction in sequence; `task` is its stream number
    /// ([`task_id`]: the run of the session and the instruction's index), so no two
    /// instructions of a session draw the same masks. Cost tallies group their records
    /// by the index ([`task_index`]).
    fn begin_instruction(&mut self, _task: u64) {}

    /// Whether this protocol sends registers that need only their low bits in narrower
    /// words ([`wires`]), and what its openings read. `None` for every protocol but one
    /// whose ring is wider than its narrow words.
    fn narrowing(&self) -> Option<wires::Narrowing> {
        None
    }

    /// Whether this protocol's calls have a dealer that rotates among the parties by
    /// element groups, which the VM may split unevenly ([`wires::Deal`]).
    fn dealing(&self) -> Option<wires::Dealing> {
        None
    }

    /// Whether this protocol's calls may leave results pending for readers that open them
    /// from the evaluators' components ([`wires::Pending`]); the VM marks the instructions
    /// whose readers all do ([`wires::Wires::pending_out`]).
    fn pending(&self) -> Option<wires::Pending> {
        None
    }

    /// The program's wires, one per instruction by index (the VM sets them before a run
    /// where [`Core::narrowing`], [`Core::dealing`] or [`Core::pending`] is `Some`); the instruction that
    /// [`Core::begin_instruction`] or [`Core::fork`] names runs with its own.
    fn set_wires(&mut self, _wires: std::sync::Arc<[wires::Wires]>) {}

    /// The VM starts run `run` of a session (run 0 is the first program a party runs).
    /// A dealer-assisted party fetches that run's material here.
    fn begin_run(&mut self, _run: u64) -> Result<(), ProtocolError> {
        Ok(())
    }

    /// The VM finished a run successfully. A dealer in a session sends the material of
    /// the run it has just walked.
    fn end_run(&mut self) -> Result<(), ProtocolError> {
        Ok(())
    }

    /// Whether [`Core::fork`] and [`Core::exchange_merged`] work, so instructions
    /// can share rounds.
    fn shares_rounds(&self) -> bool {
        false
    }

    /// Whether a product of two secrets sends its masked operands (Beaver triples: its
    /// traffic grows with the operands) rather than a resharing of its result
    /// (replicated and Shamir shares). The VM lays out a product whose operands and
    /// result differ much in size (a transposed convolution) for the cheaper side; a
    /// protocol's data-free twins (its dealer, its costs) answer as the protocol does.
    fn products_open_operands(&self) -> bool {
        false
    }

    /// This party's shares as the values themselves, where a share is the value (`clear`):
    /// the VM then runs fused plaintext kernels (a convolution straight into its
    /// requantization) instead of the general steps. `None` for every protocol that hides
    /// anything, and for the data-free twins.
    fn values<'s>(&self, _shares: &'s Self::Shares) -> Option<&'s [i64]> {
        None
    }

    /// Shares that are `values` themselves: the inverse of [`Core::values`], `None` where
    /// that is `None`.
    fn shares_of_values(&self, _values: Vec<i64>) -> Option<Self::Shares> {
        None
    }

    /// A copy of this party that runs one of several instructions at the same time, its
    /// rounds going through `port` (see [`mux`]); `None` if the protocol runs instructions
    /// one at a time (it never communicates).
    fn fork(&mut self, _task: u64, _port: mux::Port) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// [`Core::fork`] for an instruction that shares an owner's values (`input`,
    /// `weight`), which takes no material from a dealer: the dataflow runner begins it
    /// as soon as the run starts, wherever it stands in the program, and a dealer's
    /// party must not read ahead to it.
    fn fork_input(&mut self, task: u64, port: mux::Port) -> Option<Self>
    where
        Self: Sized,
    {
        self.fork(task, port)
    }

    /// Read the dealer's next chunk of material for a running copy that needs it
    /// ([`mux::Fetcher`]): the dealer's link is this copy's transport's.
    fn fetch_material(&mut self) -> Result<(), ProtocolError> {
        Err(ProtocolError::Invalid(format!(
            "{} takes no material from a dealer",
            self.name()
        )))
    }

    /// One real round carrying the rounds of every running copy, in `requests` order.
    fn exchange_merged(
        &mut self,
        _requests: Vec<mux::Request>,
    ) -> Result<Vec<mux::Reply>, ProtocolError> {
        Err(ProtocolError::Invalid(format!(
            "{} does not run instructions at the same time",
            self.name()
        )))
    }

    /// Verify everything opened or computed alone since the last check: a malicious
    /// protocol's MAC check and proofs; a semi-honest one has nothing to verify. Every
    /// `reveal` runs it before anything leaves the secret domain, and so must any
    /// functionality that lets a value derived from unchecked ones decide what a party
    /// sends (docs/protocols.md, "Delayed checks"). On failure every honest party gets
    /// [`ProtocolError::Cheat`] naming the check.
    fn check(&mut self) -> Result<(), ProtocolError> {
        Ok(())
    }

    /// Secret-share `len` values that `owner` holds (`values` is `Some` exactly at the owner).
    fn input(
        &mut self,
        owner: PartyId,
        values: Option<&[i64]>,
        len: usize,
    ) -> Result<Self::Shares, ProtocolError>;
    /// Open `x` to party `to` only; every other party gets `None`.
    fn reveal(&mut self, x: &Self::Shares, to: PartyId) -> Result<Option<Vec<i64>>, ProtocolError>;
    /// A sharing of public values (no communication).
    fn public(&self, values: &[i64]) -> Self::Shares;

    fn add(&self, a: &Self::Shares, b: &Self::Shares) -> Self::Shares;
    fn sub(&self, a: &Self::Shares, b: &Self::Shares) -> Self::Shares;
    fn add_public(&self, a: &Self::Shares, c: &[i64]) -> Self::Shares;
    fn mul_public(&self, a: &Self::Shares, c: &[i64]) -> Self::Shares;
    /// `a · B` with a secret `a` and a public `B`, or `A · b` when `public_left`.
    fn matmul_public(
        &self,
        secret: &Self::Shares,
        public: &[i64],
        dims: MatDims,
        public_left: bool,
    ) -> Self::Shares;

    /// Element-wise product of two secrets.
    fn mul(&mut self, a: &Self::Shares, b: &Self::Shares) -> Result<Self::Shares, ProtocolError>;
    /// Product of two secret matrices; one resharing per output element.
    fn matmul(
        &mut self,
        a: &Self::Shares,
        b: &Self::Shares,
        dims: MatDims,
    ) -> Result<Self::Shares, ProtocolError>;
}

/// A secret-sharing protocol as the VM drives it: its [`Core`] and the functionalities
/// over it. A protocol with the selection primitive ([`func::Selection`]) gets every
/// functionality from [`func`], written once for all of them; `rep3` and `clear` override
/// them with their own constructions.
pub trait Protocol: Core {
    /// `round_half_even(x · num / den)` element-wise (`num`, `den` public, `den > 0`).
    fn rescale(
        &mut self,
        x: &Self::Shares,
        num: &[i64],
        den: &[i64],
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Self::Shares, ProtocolError>;
    /// `clamp(round_half_even(x · num / den) + zp, lo, hi)` element-wise: one whole
    /// requantization. By default a `rescale`, an addition and a `clamp`; a protocol may
    /// share work between them.
    fn requantize(
        &mut self,
        x: &Self::Shares,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Self::Shares, ProtocolError>
    where
        Self: Sized,
    {
        requantize_unfused(self, x, q, bounds, mode)
    }
    /// `requantize(a·b + bias)` for a product of two secret matrices that only this
    /// requantization reads (`bias` in the product's layout, `bounds` those of the sum). By
    /// default the product, the sum and the requantization one after the other; a protocol
    /// may requantize the product's unreshared parts (`rep3`: a round and a word per
    /// element fewer).
    #[allow(clippy::too_many_arguments)]
    fn product_requantize(
        &mut self,
        a: &Self::Shares,
        b: &Self::Shares,
        dims: MatDims,
        bias: &Self::Shares,
        q: &Requant,
        bounds: Bounds,
        mode: TruncMode,
    ) -> Result<Self::Shares, ProtocolError>
    where
        Self: Sized,
    {
        product_requantize_unfused(self, a, b, dims, bias, q, bounds, mode)
    }
    /// `min(max(x, lo), hi)` element-wise.
    fn clamp(
        &mut self,
        x: &Self::Shares,
        lo: i64,
        hi: i64,
        bounds: Bounds,
    ) -> Result<Self::Shares, ProtocolError>;
    /// Element-wise maximum of two secrets.
    fn max(
        &mut self,
        a: &Self::Shares,
        b: &Self::Shares,
        bounds: Bounds,
    ) -> Result<Self::Shares, ProtocolError>;
    /// `table[x - offset]` element-wise, for `x` in `offset..offset + table.len()`.
    fn lookup(
        &mut self,
        x: &Self::Shares,
        table: &[i64],
        offset: i64,
    ) -> Result<Self::Shares, ProtocolError>;
    /// Index of the maximum of each row of `rows` (`row_len` elements each); ties go to
    /// the first index, or the last with `select_last`.
    fn argmax(
        &mut self,
        x: &Self::Shares,
        row_len: usize,
        select_last: bool,
        bounds: Bounds,
    ) -> Result<Self::Shares, ProtocolError>;
}

/// [`Protocol::product_requantize`] as its steps: the product (resharing it), the sum, the
/// requantization. The default, and the fallback of a protocol that fuses only some.
#[allow(clippy::too_many_arguments)]
pub fn product_requantize_unfused<P: Protocol>(
    p: &mut P,
    a: &P::Shares,
    b: &P::Shares,
    dims: MatDims,
    bias: &P::Shares,
    q: &Requant,
    bounds: Bounds,
    mode: TruncMode,
) -> Result<P::Shares, ProtocolError> {
    let z = p.matmul(a, b, dims)?;
    let z = p.add(&z, bias);
    p.requantize(&z, q, bounds, mode)
}

/// A requantization as its three steps: `rescale`, the zero point, `clamp` (on the bounds of
/// the rescaled values). The default of [`Protocol::requantize`], and the fallback of a
/// protocol that fuses only some parameters.
pub fn requantize_unfused<P: Protocol>(
    p: &mut P,
    x: &P::Shares,
    q: &Requant,
    bounds: Bounds,
    mode: TruncMode,
) -> Result<P::Shares, ProtocolError> {
    let mid = q.mid_bounds(bounds, mode);
    let r = p.rescale(x, &q.num, &q.den, bounds, mode)?;
    let r = p.add_public(&r, &q.zp);
    p.clamp(&r, q.lo, q.hi, mid)
}
