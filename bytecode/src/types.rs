//! Element types and tensor types of the bytecode.

use std::fmt;

/// Element type of a register. Every value lives in Z_2^64 at run time; the type states the
/// range the program guarantees, which the verifier and the protocols rely on.
///
/// `Fx(f)` is a fixed-point number: the integer `v` stands for the real `v · 2^-f`
/// (training, docs/training.md). Its range is the ring's exact one, `|v| < 2^62`; the
/// register's bounds say how much of it is used. The verifier's scale rules (`verify::check_scales`) keep the
/// fractional bits of every operation consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    I8,
    U8,
    I16,
    U16,
    I32,
    I64,
    Fx(u8),
}

impl DType {
    /// The integer types, narrowest first.
    pub const INTS: [DType; 6] = [
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::I64,
    ];

    /// The most fractional bits a fixed-point type may have.
    pub const MAX_FRAC: u8 = 62;

    pub fn name(self) -> String {
        match self {
            DType::I8 => "i8".into(),
            DType::U8 => "u8".into(),
            DType::I16 => "i16".into(),
            DType::U16 => "u16".into(),
            DType::I32 => "i32".into(),
            DType::I64 => "i64".into(),
            DType::Fx(f) => format!("fx{f}"),
        }
    }

    pub fn from_name(s: &str) -> Option<DType> {
        if let Some(f) = s.strip_prefix("fx") {
            return f
                .parse::<u8>()
                .ok()
                .filter(|f| (1..=Self::MAX_FRAC).contains(f))
                .map(DType::Fx);
        }
        DType::INTS.into_iter().find(|d| d.name() == s)
    }

    /// Stable numeric code used in the binary container: 1–6 the integer types, 100 + f
    /// the fixed-point types.
    pub fn code(self) -> i32 {
        match self {
            DType::Fx(f) => 100 + f as i32,
            _ => DType::INTS
                .iter()
                .position(|&d| d == self)
                .map_or(0, |p| p as i32 + 1),
        }
    }

    pub fn from_code(c: i32) -> Option<DType> {
        if let Some(f) = c.checked_sub(100).filter(|&f| f > 0) {
            return u8::try_from(f)
                .ok()
                .filter(|&f| f <= Self::MAX_FRAC)
                .map(DType::Fx);
        }
        usize::try_from(c)
            .ok()
            .and_then(|c| c.checked_sub(1))
            .and_then(|i| DType::INTS.get(i).copied())
    }

    /// Fractional bits: 0 for the integer types.
    pub fn frac(self) -> u8 {
        match self {
            DType::Fx(f) => f,
            _ => 0,
        }
    }

    /// Smallest and largest value of the type.
    pub fn range(self) -> (i64, i64) {
        match self {
            DType::I8 => (i8::MIN as i64, i8::MAX as i64),
            DType::U8 => (0, u8::MAX as i64),
            DType::I16 => (i16::MIN as i64, i16::MAX as i64),
            DType::U16 => (0, u16::MAX as i64),
            DType::I32 => (i32::MIN as i64, i32::MAX as i64),
            DType::I64 => (i64::MIN, i64::MAX),
            // Within the ring's exact range (`verify::RING_BOUND`), so that a fixed-point
            // tensor loaded at its type's bounds (a weight) still verifies.
            DType::Fx(_) => (-(1 << 62) + 1, (1 << 62) - 1),
        }
    }

    /// The narrowest integer type holding every value in `lo..=hi`.
    pub fn fitting(lo: i64, hi: i64) -> DType {
        DType::INTS
            .into_iter()
            .find(|d| {
                let (a, b) = d.range();
                a <= lo && hi <= b
            })
            .unwrap_or(DType::I64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Whether a register holds a public value (known to all parties) or a secret-shared one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Visibility {
    Public,
    Secret,
}

impl Visibility {
    pub fn name(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Secret => "secret",
        }
    }
}

/// Static type of a register: element type, shape and where the batch dimension is.
///
/// With `batched`, `dims[0]` is the batch size the model was exported with; at run time it is
/// replaced by the batch size of the input, so one program runs any batch in the same
/// number of rounds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub batched: bool,
}

impl TensorType {
    /// Dimensions with the batch dimension set to `batch`.
    pub fn dims_at(&self, batch: usize) -> Vec<usize> {
        let mut d = self.dims.clone();
        if self.batched {
            if let Some(first) = d.first_mut() {
                *first = batch;
            }
        }
        d
    }

    pub fn numel_at(&self, batch: usize) -> usize {
        self.dims_at(batch).iter().product()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if i == 0 && self.batched {
                f.write_str("N")?;
            } else {
                write!(f, "{d}")?;
            }
        }
        f.write_str("]")
    }
}
