//! Operand kinds of the instruction table: how each is encoded, decoded and written in
//! assembly.

use std::fmt;

/// A register written by the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dst(pub u32);
/// A register read by the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u32);
/// Several registers read by the instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regs(pub Vec<u32>);
/// An index into one of the program's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Index(pub u32);
/// An immediate integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int(pub i64);
/// A list of immediate integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ints(pub Vec<i64>);

/// Why an instruction stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("instruction stream ends in the middle of an instruction")]
    Truncated,
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("operand does not fit its type")]
    Overflow,
    #[error("operand list of {0} entries is longer than the stream")]
    ListTooLong(u64),
}

/// A value in the assembly text.
#[derive(Clone, Debug, PartialEq)]
pub enum AsmValue {
    Dst(u32),
    Reg(u32),
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    List(Vec<AsmValue>),
}

impl fmt::Display for AsmValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsmValue::Dst(r) | AsmValue::Reg(r) => write!(f, "%{r}"),
            AsmValue::Int(i) => write!(f, "{i}"),
            AsmValue::Float(x) => write!(f, "{x:?}"),
            AsmValue::Str(s) => write!(f, "{s:?}"),
            AsmValue::Ident(s) => f.write_str(s),
            AsmValue::List(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
        }
    }
}

pub(crate) fn write_uvarint(buf: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, buf);
}

pub(crate) fn read_uvarint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Truncated);
    }
    prost::encoding::decode_varint(buf).map_err(|_| DecodeError::Truncated)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn read_u32(buf: &mut &[u8]) -> Result<u32, DecodeError> {
    u32::try_from(read_uvarint(buf)?).map_err(|_| DecodeError::Overflow)
}

fn read_len(buf: &mut &[u8]) -> Result<usize, DecodeError> {
    let n = read_uvarint(buf)?;
    // Every element takes at least one byte: a longer list is corruption, not a huge allocation.
    if n > buf.len() as u64 {
        return Err(DecodeError::ListTooLong(n));
    }
    Ok(n as usize)
}

/// What an operand kind must provide to appear in the instruction table.
pub trait Operand: Sized {
    /// Name of the kind in assembler error messages.
    const KIND: &'static str;
    fn encode(&self, buf: &mut Vec<u8>);
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError>;
    fn to_asm(&self) -> AsmValue;
    fn from_asm(v: &AsmValue) -> Option<Self>;
    fn as_dst(&self) -> Option<u32> {
        None
    }
    fn push_srcs(&self, _out: &mut Vec<u32>) {}
}

impl Operand for Dst {
    const KIND: &'static str = "a register";
    fn encode(&self, buf: &mut Vec<u8>) {
        write_uvarint(buf, self.0 as u64);
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        read_u32(buf).map(Dst)
    }
    fn to_asm(&self) -> AsmValue {
        AsmValue::Dst(self.0)
    }
    fn from_asm(v: &AsmValue) -> Option<Self> {
        match v {
            AsmValue::Dst(r) | AsmValue::Reg(r) => Some(Dst(*r)),
            _ => None,
        }
    }
    fn as_dst(&self) -> Option<u32> {
        Some(self.0)
    }
}

impl Operand for Reg {
    const KIND: &'static str = "a register";
    fn encode(&self, buf: &mut Vec<u8>) {
        write_uvarint(buf, self.0 as u64);
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        read_u32(buf).map(Reg)
    }
    fn to_asm(&self) -> AsmValue {
        AsmValue::Reg(self.0)
    }
    fn from_asm(v: &AsmValue) -> Option<Self> {
        match v {
            AsmValue::Reg(r) => Some(Reg(*r)),
            _ => None,
        }
    }
    fn push_srcs(&self, out: &mut Vec<u32>) {
        out.push(self.0);
    }
}

impl Operand for Regs {
    const KIND: &'static str = "a list of registers";
    fn encode(&self, buf: &mut Vec<u8>) {
        write_uvarint(buf, self.0.len() as u64);
        for r in &self.0 {
            write_uvarint(buf, *r as u64);
        }
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let n = read_len(buf)?;
        (0..n)
            .map(|_| read_u32(buf))
            .collect::<Result<_, _>>()
            .map(Regs)
    }
    fn to_asm(&self) -> AsmValue {
        AsmValue::List(self.0.iter().map(|r| AsmValue::Reg(*r)).collect())
    }
    fn from_asm(v: &AsmValue) -> Option<Self> {
        match v {
            AsmValue::List(xs) => xs
                .iter()
                .map(|x| match x {
                    AsmValue::Reg(r) => Some(*r),
                    _ => None,
                })
                .collect::<Option<_>>()
                .map(Regs),
            _ => None,
        }
    }
    fn push_srcs(&self, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.0);
    }
}

impl Operand for Index {
    const KIND: &'static str = "a table index";
    fn encode(&self, buf: &mut Vec<u8>) {
        write_uvarint(buf, self.0 as u64);
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        read_u32(buf).map(Index)
    }
    fn to_asm(&self) -> AsmValue {
        AsmValue::Int(self.0 as i64)
    }
    fn from_asm(v: &AsmValue) -> Option<Self> {
        match v {
            AsmValue::Int(i) => u32::try_from(*i).ok().map(Index),
            _ => None,
        }
    }
}

impl Operand for Int {
    const KIND: &'static str = "an integer";
    fn encode(&self, buf: &mut Vec<u8>) {
        write_uvarint(buf, zigzag(self.0));
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        read_uvarint(buf).map(|v| Int(unzigzag(v)))
    }
    fn to_asm(&self) -> AsmValue {
        AsmValue::Int(self.0)
    }
    fn from_asm(v: &AsmValue) -> Option<Self> {
        match v {
            AsmValue::Int(i) => Some(Int(*i)),
            _ => None,
        }
    }
}

impl Operand for Ints {
    const KIND: &'static str = "a list of integers";
    fn encode(&self, buf: &mut Vec<u8>) {
        write_uvarint(buf, self.0.len() as u64);
        for v in &self.0 {
            write_uvarint(buf, zigzag(*v));
        }
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let n = read_len(buf)?;
        (0..n)
            .map(|_| read_uvarint(buf).map(unzigzag))
            .collect::<Result<_, _>>()
            .map(Ints)
    }
    fn to_asm(&self) -> AsmValue {
        AsmValue::List(self.0.iter().map(|v| AsmValue::Int(*v)).collect())
    }
    fn from_asm(v: &AsmValue) -> Option<Self> {
        match v {
            AsmValue::List(xs) => xs
                .iter()
                .map(|x| match x {
                    AsmValue::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Option<_>>()
                .map(Ints),
            _ => None,
        }
    }
}

/// Decode a signed zigzag varint list (used by the container for tensor data too).
pub fn zigzag_encode(v: i64) -> u64 {
    zigzag(v)
}
