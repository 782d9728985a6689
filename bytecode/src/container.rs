//! The binary container: a prost message holding the public program, and a second one for
//! the model owner's secret weights (`.qmpw`). The instruction stream is one `bytes` field
//! in the table-generated encoding.

use super::operand::DecodeError;
use super::ops::Instr;
use super::program::*;
use crate::types::{DType, TensorType, Visibility};
use prost::Message;
use qmpc_semantics::TruncMode;

/// Magic bytes in front of every `.qmpc` file.
pub const PROGRAM_MAGIC: &[u8; 4] = b"QMPC";
/// Magic bytes in front of every `.qmpw` file.
pub const WEIGHTS_MAGIC: &[u8; 4] = b"QMPW";

/// Why a container could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("not a qmpc file (bad magic bytes)")]
    BadMagic,
    #[error("bytecode format version {found}, this qmpc reads version {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("corrupted container: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("corrupted instruction stream at instruction {index}: {err}")]
    Code { index: usize, err: DecodeError },
    #[error("corrupted container: {0}")]
    Field(String),
}

#[derive(Clone, PartialEq, Message)]
struct ProgramProto {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(int32, tag = "3")]
    trunc: i32,
    #[prost(message, repeated, tag = "4")]
    registers: Vec<RegisterProto>,
    #[prost(message, repeated, tag = "5")]
    consts: Vec<ConstProto>,
    #[prost(message, repeated, tag = "6")]
    inputs: Vec<InputProto>,
    #[prost(message, repeated, tag = "7")]
    weights: Vec<WeightProto>,
    #[prost(message, repeated, tag = "8")]
    outputs: Vec<OutputProto>,
    #[prost(bytes = "vec", tag = "9")]
    code: Vec<u8>,
    #[prost(string, repeated, tag = "10")]
    origins: Vec<String>,
    /// 0: sequential, 1: merged.
    #[prost(int32, tag = "11")]
    rounds: i32,
    #[prost(message, repeated, tag = "12")]
    states: Vec<StateProto>,
}

#[derive(Clone, PartialEq, Message)]
struct StateProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    ty: Option<TypeProto>,
    #[prost(sint64, tag = "3")]
    lo: i64,
    #[prost(sint64, tag = "4")]
    hi: i64,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(uint64, repeated, tag = "2")]
    dims: Vec<u64>,
    #[prost(bool, tag = "3")]
    batched: bool,
}

#[derive(Clone, PartialEq, Message)]
struct RegisterProto {
    #[prost(message, optional, tag = "1")]
    ty: Option<TypeProto>,
    #[prost(bool, tag = "2")]
    secret: bool,
    #[prost(sint64, tag = "3")]
    lo: i64,
    #[prost(sint64, tag = "4")]
    hi: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ConstProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(uint64, repeated, tag = "2")]
    dims: Vec<u64>,
    #[prost(sint64, repeated, tag = "3")]
    data: Vec<i64>,
    #[prost(string, tag = "4")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct QuantProto {
    #[prost(float, repeated, tag = "1")]
    scale: Vec<f32>,
    #[prost(sint64, repeated, tag = "2")]
    zero_point: Vec<i64>,
    #[prost(uint32, tag = "3")]
    axis: u32,
    #[prost(uint32, tag = "4")]
    block: u32,
}

#[derive(Clone, PartialEq, Message)]
struct InputProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, tag = "2")]
    external: i32,
    #[prost(message, optional, tag = "3")]
    quant: Option<QuantProto>,
    #[prost(message, optional, tag = "4")]
    ty: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct WeightProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    ty: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OutputProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, tag = "2")]
    external: i32,
    #[prost(message, optional, tag = "3")]
    dequant: Option<QuantProto>,
    #[prost(int32, tag = "4")]
    post: i32,
    #[prost(uint32, tag = "5")]
    post_axis: u32,
}

#[derive(Clone, PartialEq, Message)]
struct WeightsProto {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(message, repeated, tag = "2")]
    tensors: Vec<ConstProto>,
}

fn ty_to(t: &TensorType) -> TypeProto {
    TypeProto {
        dtype: t.dtype.code(),
        dims: t.dims.iter().map(|&d| d as u64).collect(),
        batched: t.batched,
    }
}

fn ty_from(t: Option<&TypeProto>, what: &str) -> Result<TensorType, ContainerError> {
    let t = t.ok_or_else(|| ContainerError::Field(format!("{what} has no type")))?;
    let dtype = DType::from_code(t.dtype).ok_or_else(|| {
        ContainerError::Field(format!("{what} has unknown element type {}", t.dtype))
    })?;
    let dims = dims_from(&t.dims, what)?;
    Ok(TensorType {
        dtype,
        dims,
        batched: t.batched,
    })
}

fn dims_from(d: &[u64], what: &str) -> Result<Vec<usize>, ContainerError> {
    d.iter()
        .map(|&x| usize::try_from(x).ok().filter(|&x| x <= u32::MAX as usize))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ContainerError::Field(format!("{what} has a dimension out of range")))
}

fn quant_to(q: &QuantParams) -> QuantProto {
    QuantProto {
        scale: q.scale.clone(),
        zero_point: q.zero_point.clone(),
        axis: q.axis as u32,
        block: q.block as u32,
    }
}

fn quant_from(q: &QuantProto) -> QuantParams {
    QuantParams {
        scale: q.scale.clone(),
        zero_point: q.zero_point.clone(),
        axis: q.axis as usize,
        block: q.block as usize,
    }
}

fn const_to(c: &ConstTensor, name: &str) -> ConstProto {
    ConstProto {
        dtype: c.dtype.code(),
        dims: c.dims.iter().map(|&d| d as u64).collect(),
        data: c.data.clone(),
        name: name.to_string(),
    }
}

fn const_from(c: &ConstProto, what: &str) -> Result<ConstTensor, ContainerError> {
    let dtype = DType::from_code(c.dtype).ok_or_else(|| {
        ContainerError::Field(format!("{what} has unknown element type {}", c.dtype))
    })?;
    let dims = dims_from(&c.dims, what)?;
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(c.data.len()) {
        return Err(ContainerError::Field(format!(
            "{what} has {} values for dimensions {:?}",
            c.data.len(),
            dims
        )));
    }
    Ok(ConstTensor {
        dtype,
        dims,
        data: c.data.clone(),
    })
}

fn external_from(c: i32, what: &str) -> Result<ExternalType, ContainerError> {
    ExternalType::from_code(c)
        .ok_or_else(|| ContainerError::Field(format!("{what} has unknown element type {c}")))
}

/// Encode the instruction stream.
pub fn encode_code(code: &[Instr]) -> Vec<u8> {
    let mut buf = Vec::new();
    for i in code {
        i.encode(&mut buf);
    }
    buf
}

/// Decode an instruction stream.
pub fn decode_code(mut bytes: &[u8]) -> Result<Vec<Instr>, ContainerError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let i = Instr::decode(&mut bytes).map_err(|err| ContainerError::Code {
            index: out.len(),
            err,
        })?;
        out.push(i);
    }
    Ok(out)
}

impl Program {
    /// The binary `.qmpc` form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = ProgramProto {
            version: FORMAT_VERSION,
            name: self.name.clone(),
            trunc: match self.trunc {
                TruncMode::Exact => 0,
                TruncMode::Probabilistic => 1,
            },
            rounds: match self.rounds {
                RoundSchedule::Sequential => 0,
                RoundSchedule::Merged => 1,
            },
            registers: self
                .registers
                .iter()
                .map(|r| RegisterProto {
                    ty: Some(ty_to(&r.ty)),
                    secret: r.vis == Visibility::Secret,
                    lo: r.lo,
                    hi: r.hi,
                })
                .collect(),
            consts: self.consts.iter().map(|c| const_to(c, "")).collect(),
            inputs: self
                .inputs
                .iter()
                .map(|i| InputProto {
                    name: i.name.clone(),
                    external: i.external.code(),
                    quant: i.quant.as_ref().map(quant_to),
                    ty: Some(ty_to(&i.ty)),
                })
                .collect(),
            weights: self
                .weights
                .iter()
                .map(|w| WeightProto {
                    name: w.name.clone(),
                    ty: Some(ty_to(&w.ty)),
                })
                .collect(),
            outputs: self
                .outputs
                .iter()
                .map(|o| OutputProto {
                    name: o.name.clone(),
                    external: o.external.code(),
                    dequant: o.dequant.as_ref().map(quant_to),
                    post: match o.post {
                        PostOp::None => 0,
                        PostOp::Softmax { .. } => 1,
                    },
                    post_axis: match o.post {
                        PostOp::Softmax { axis } => axis as u32,
                        PostOp::None => 0,
                    },
                })
                .collect(),
            code: encode_code(&self.code),
            origins: self.origins.clone(),
            states: self
                .states
                .iter()
                .map(|s| StateProto {
                    name: s.name.clone(),
                    ty: Some(ty_to(&s.ty)),
                    lo: s.lo,
                    hi: s.hi,
                })
                .collect(),
        };
        let mut out = PROGRAM_MAGIC.to_vec();
        out.extend(p.encode_to_vec());
        out
    }

    /// Decode a `.qmpc` file. Structure only: [`crate::verify`] checks the semantics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, ContainerError> {
        let body = bytes
            .strip_prefix(PROGRAM_MAGIC)
            .ok_or(ContainerError::BadMagic)?;
        let p = ProgramProto::decode(body)?;
        if p.version != FORMAT_VERSION {
            return Err(ContainerError::Version { found: p.version });
        }
        let trunc = match p.trunc {
            0 => TruncMode::Exact,
            1 => TruncMode::Probabilistic,
            t => {
                return Err(ContainerError::Field(format!(
                    "unknown truncation mode {t}"
                )))
            }
        };
        let rounds = match p.rounds {
            0 => RoundSchedule::Sequential,
            1 => RoundSchedule::Merged,
            r => return Err(ContainerError::Field(format!("unknown round schedule {r}"))),
        };
        let registers = p
            .registers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(RegDecl {
                    ty: ty_from(r.ty.as_ref(), &format!("register %{i}"))?,
                    vis: if r.secret {
                        Visibility::Secret
                    } else {
                        Visibility::Public
                    },
                    lo: r.lo,
                    hi: r.hi,
                })
            })
            .collect::<Result<_, ContainerError>>()?;
        let consts = p
            .consts
            .iter()
            .enumerate()
            .map(|(i, c)| const_from(c, &format!("constant #{i}")))
            .collect::<Result<_, _>>()?;
        let inputs = p
            .inputs
            .iter()
            .map(|i| {
                let what = format!("input `{}`", i.name);
                Ok(InputDecl {
                    name: i.name.clone(),
                    external: external_from(i.external, &what)?,
                    quant: i.quant.as_ref().map(quant_from),
                    ty: ty_from(i.ty.as_ref(), &what)?,
                })
            })
            .collect::<Result<_, ContainerError>>()?;
        let weights = p
            .weights
            .iter()
            .map(|w| {
                Ok(WeightDecl {
                    name: w.name.clone(),
                    ty: ty_from(w.ty.as_ref(), &format!("weight `{}`", w.name))?,
                })
            })
            .collect::<Result<_, ContainerError>>()?;
        let outputs = p
            .outputs
            .iter()
            .map(|o| {
                let what = format!("output `{}`", o.name);
                Ok(OutputDecl {
                    name: o.name.clone(),
                    external: external_from(o.external, &what)?,
                    dequant: o.dequant.as_ref().map(quant_from),
                    post: match o.post {
                        0 => PostOp::None,
                        1 => PostOp::Softmax {
                            axis: o.post_axis as usize,
                        },
                        x => {
                            return Err(ContainerError::Field(format!(
                                "{what} has unknown post-processing {x}"
                            )))
                        }
                    },
                })
            })
            .collect::<Result<_, ContainerError>>()?;
        let states = p
            .states
            .iter()
            .map(|s| {
                Ok(StateDecl {
                    name: s.name.clone(),
                    ty: ty_from(s.ty.as_ref(), &format!("state `{}`", s.name))?,
                    lo: s.lo,
                    hi: s.hi,
                })
            })
            .collect::<Result<_, ContainerError>>()?;
        Ok(Program {
            name: p.name,
            trunc,
            rounds,
            registers,
            consts,
            inputs,
            weights,
            outputs,
            states,
            code: decode_code(&p.code)?,
            origins: p.origins,
        })
    }

    /// BLAKE3 digest of the binary program: what parties compare at start-up.
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.to_bytes()).as_bytes()
    }
}

/// The model owner's secret weights, one tensor per [`WeightDecl`], in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weights {
    pub tensors: Vec<(String, ConstTensor)>,
}

impl Weights {
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = WeightsProto {
            version: FORMAT_VERSION,
            tensors: self.tensors.iter().map(|(n, t)| const_to(t, n)).collect(),
        };
        let mut out = WEIGHTS_MAGIC.to_vec();
        out.extend(p.encode_to_vec());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Weights, ContainerError> {
        let body = bytes
            .strip_prefix(WEIGHTS_MAGIC)
            .ok_or(ContainerError::BadMagic)?;
        let p = WeightsProto::decode(body)?;
        if p.version != FORMAT_VERSION {
            return Err(ContainerError::Version { found: p.version });
        }
        let tensors = p
            .tensors
            .iter()
            .map(|c| {
                Ok((
                    c.name.clone(),
                    const_from(c, &format!("weight `{}`", c.name))?,
                ))
            })
            .collect::<Result<_, ContainerError>>()?;
        Ok(Weights { tensors })
    }
}
