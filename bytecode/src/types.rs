//! Element types and tensor types of the bytecode.

use std::fmt;

/// Element type of a register. Every value lives in Z_2^64 at run time; the type states the
/// range the program guarantees, which the verifier and the protocols rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    I8,
    U8,
    I16,
    U16,
    I32,
    I64,
}

impl DType {
    pub const ALL: [DType; 6] = [
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::I64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }

    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Stable numeric code used in the binary container.
    pub fn code(self) -> i32 {
        DType::ALL
            .iter()
            .position(|&d| d == self)
            .map_or(0, |p| p as i32 + 1)
    }

    pub fn from_code(c: i32) -> Option<DType> {
        usize::try_from(c)
            .ok()
            .and_then(|c| c.checked_sub(1))
            .and_then(|i| DType::ALL.get(i).copied())
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
        }
    }

    /// The narrowest type holding every value in `lo..=hi`.
    pub fn fitting(lo: i64, hi: i64) -> DType {
        DType::ALL
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
        f.write_str(self.name())
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
