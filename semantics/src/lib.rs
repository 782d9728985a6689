//! The integer semantics every part of qmpc agrees on: ring arithmetic and exact rounding
//! (`ring`), the public parameters of a requantization (`requant`), the truncation mode,
//! static bounds and matrix shapes. The compiler and the protocols both use them; this
//! crate has no dependencies.

pub mod requant;
pub mod ring;

pub use requant::Requant;

/// How a protocol should truncate after a rescale (`--trunc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TruncMode {
    /// Bit-exact with `clear`.
    #[default]
    Exact,
    /// May differ from `clear` by one in the last place, with a documented frequency.
    Probabilistic,
}

/// Shapes of a batched matrix product `[batch, m, k] x [batch, k, n] -> [batch, m, n]`.
/// A `batch` of operands with stride 0 is expressed by `a_batched`/`b_batched` = false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatDims {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a_batched: bool,
    pub b_batched: bool,
}

/// Static bounds of a secret value, known to every party from the public program.
/// Protocols use them to compare on fewer bits than the ring has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub lo: i64,
    pub hi: i64,
}

impl Bounds {
    /// Number of bits of a two's complement integer holding every value in the bounds.
    pub fn signed_bits(&self) -> u32 {
        let need = |v: i64| {
            if v < 0 {
                65 - (!v).leading_zeros()
            } else {
                65 - v.leading_zeros()
            }
        };
        need(self.lo).max(need(self.hi))
    }
}
