//! Reading ONNX files: the protobuf messages, tensors with their exact integers, attributes.

pub mod proto;

use prost::Message;
use proto::{attribute_type, data_type, AttributeProto, ModelProto, NodeProto, TensorProto};
use std::collections::HashMap;

/// Why an ONNX file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{path}: not a valid ONNX protobuf ({err})")]
    Protobuf {
        path: String,
        err: prost::DecodeError,
    },
    #[error("{path}: the model has no graph")]
    NoGraph { path: String },
}

/// Decode an ONNX model from bytes.
pub fn decode_model(bytes: &[u8], path: &str) -> Result<ModelProto, LoadError> {
    let m = ModelProto::decode(bytes).map_err(|err| LoadError::Protobuf {
        path: path.to_string(),
        err,
    })?;
    if m.graph.is_none() {
        return Err(LoadError::NoGraph {
            path: path.to_string(),
        });
    }
    Ok(m)
}

/// Opset version per domain (`""` and `"ai.onnx"` are the same domain).
pub fn opsets(m: &ModelProto) -> HashMap<String, i64> {
    m.opset_import
        .iter()
        .map(|o| (canonical_domain(&o.domain).to_string(), o.version))
        .collect()
}

pub fn canonical_domain(d: &str) -> &str {
    if d.is_empty() || d == "ai.onnx" {
        "ai.onnx"
    } else {
        d
    }
}

/// Values of a tensor, exact: integer types as `i64`, floating types as `f32`.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    Int(Vec<i64>),
    Float(Vec<f32>),
}

/// A decoded tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub dtype: i32,
    pub dims: Vec<usize>,
    pub values: Values,
}

impl TensorData {
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.values {
            Values::Int(v) => Some(v),
            Values::Float(_) => None,
        }
    }
    pub fn floats(&self) -> Option<&[f32]> {
        match &self.values {
            Values::Float(v) => Some(v),
            Values::Int(_) => None,
        }
    }
    pub fn is_float(&self) -> bool {
        matches!(self.values, Values::Float(_))
    }
}

/// Element types qmpc reads exactly.
pub fn supported_type(t: i32) -> bool {
    matches!(
        t,
        data_type::FLOAT
            | data_type::UINT8
            | data_type::INT8
            | data_type::INT16
            | data_type::UINT16
            | data_type::INT32
            | data_type::INT64
            | data_type::BOOL
            | data_type::DOUBLE
            | data_type::UINT32
            | data_type::FLOAT16
            | data_type::BFLOAT16
    )
}

/// IEEE half precision to f32 (exact: every half is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match (exp, man) {
        // Zero and subnormals: man · 2^-24, exact in f32.
        (0, _) => f32::from_bits(sign | ((man as f32) * (-24f32).exp2()).to_bits()),
        (0x1f, 0) => f32::from_bits(sign | 0x7f80_0000),
        (0x1f, _) => f32::NAN,
        _ => f32::from_bits(sign | ((exp + 127 - 15) << 23) | (man << 13)),
    }
}

/// bfloat16 to f32 (the upper half of an f32).
fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Decode a TensorProto (raw or typed storage). Errors name the tensor.
pub fn tensor_data(t: &TensorProto) -> Result<TensorData, String> {
    let name = &t.name;
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(format!(
            "tensor `{name}` uses external data, which qmpc does not read"
        ));
    }
    if !supported_type(t.data_type) {
        return Err(format!(
            "tensor `{name}` has unsupported type {}",
            data_type::name(t.data_type)
        ));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("tensor `{name}` has negative dimension {d}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 1 << 31)
        .ok_or_else(|| format!("tensor `{name}` is too large"))?;
    let raw = &t.raw_data;
    let width = match t.data_type {
        data_type::UINT8 | data_type::INT8 | data_type::BOOL => 1,
        data_type::INT16 | data_type::UINT16 | data_type::FLOAT16 | data_type::BFLOAT16 => 2,
        data_type::FLOAT | data_type::INT32 | data_type::UINT32 => 4,
        _ => 8,
    };
    let values = if !raw.is_empty() {
        if raw.len() != n * width {
            return Err(format!(
                "tensor `{name}` has {} raw bytes, expected {}",
                raw.len(),
                n * width
            ));
        }
        let chunks = raw.chunks_exact(width);
        match t.data_type {
            data_type::FLOAT => Values::Float(
                chunks
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            data_type::DOUBLE => Values::Float(
                chunks
                    .map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                    })
                    .collect(),
            ),
            data_type::FLOAT16 => Values::Float(
                chunks
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            ),
            data_type::BFLOAT16 => Values::Float(
                chunks
                    .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            ),
            data_type::UINT8 | data_type::BOOL => {
                Values::Int(chunks.map(|c| c[0] as i64).collect())
            }
            data_type::INT8 => Values::Int(chunks.map(|c| c[0] as i8 as i64).collect()),
            data_type::INT16 => Values::Int(
                chunks
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            data_type::UINT16 => Values::Int(
                chunks
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            data_type::INT32 => Values::Int(
                chunks
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            data_type::UINT32 => Values::Int(
                chunks
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            _ => Values::Int(
                chunks
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
        }
    } else {
        match t.data_type {
            data_type::FLOAT => Values::Float(t.float_data.clone()),
            data_type::DOUBLE => Values::Float(t.double_data.iter().map(|&d| d as f32).collect()),
            data_type::INT64 => Values::Int(t.int64_data.clone()),
            data_type::UINT32 => Values::Int(t.uint64_data.iter().map(|&d| d as i64).collect()),
            data_type::INT8 => Values::Int(t.int32_data.iter().map(|&d| d as i8 as i64).collect()),
            data_type::UINT8 | data_type::BOOL => {
                Values::Int(t.int32_data.iter().map(|&d| d as u8 as i64).collect())
            }
            data_type::INT16 => {
                Values::Int(t.int32_data.iter().map(|&d| d as i16 as i64).collect())
            }
            // Halves are stored as their bit patterns in int32_data.
            data_type::FLOAT16 => {
                Values::Float(t.int32_data.iter().map(|&d| f16_to_f32(d as u16)).collect())
            }
            data_type::BFLOAT16 => Values::Float(
                t.int32_data
                    .iter()
                    .map(|&d| bf16_to_f32(d as u16))
                    .collect(),
            ),
            data_type::UINT16 => {
                Values::Int(t.int32_data.iter().map(|&d| d as u16 as i64).collect())
            }
            _ => Values::Int(t.int32_data.iter().map(|&d| d as i64).collect()),
        }
    };
    let len = match &values {
        Values::Int(v) => v.len(),
        Values::Float(v) => v.len(),
    };
    if len != n {
        return Err(format!(
            "tensor `{name}` has {len} values for dimensions {dims:?}"
        ));
    }
    Ok(TensorData {
        dtype: t.data_type,
        dims,
        values,
    })
}

/// Attribute access for one node.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attrs { node }
    }
    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.find(name) {
            None => Ok(default),
            Some(a) if a.r#type == attribute_type::INT || (a.r#type == 0 && a.ints.is_empty()) => {
                Ok(a.i)
            }
            Some(_) => Err(format!("attribute `{name}` must be an integer")),
        }
    }
    pub fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        match self.find(name) {
            None => Ok(default),
            Some(a) if a.r#type == attribute_type::FLOAT || a.r#type == 0 => Ok(a.f),
            Some(_) => Err(format!("attribute `{name}` must be a float")),
        }
    }
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, String> {
        match self.find(name) {
            None => Ok(None),
            Some(a) if a.r#type == attribute_type::FLOATS || a.r#type == 0 => {
                Ok(Some(a.floats.clone()))
            }
            Some(_) => Err(format!("attribute `{name}` must be a list of floats")),
        }
    }
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.find(name) {
            None => Ok(None),
            Some(a) if a.r#type == attribute_type::INTS || a.r#type == 0 => {
                Ok(Some(a.ints.clone()))
            }
            Some(_) => Err(format!("attribute `{name}` must be a list of integers")),
        }
    }
    pub fn string(&self, name: &str, default: &str) -> Result<String, String> {
        match self.find(name) {
            None => Ok(default.to_string()),
            Some(a) if a.r#type == attribute_type::STRING || a.r#type == 0 => {
                Ok(String::from_utf8_lossy(&a.s).into_owned())
            }
            Some(_) => Err(format!("attribute `{name}` must be a string")),
        }
    }
    pub fn tensor(&self, name: &str) -> Result<Option<TensorData>, String> {
        match self.find(name) {
            None => Ok(None),
            Some(a) if a.r#type == attribute_type::TENSOR || a.t.is_some() => {
                a.t.as_ref().map(tensor_data).transpose()
            }
            Some(a) if a.r#type == attribute_type::FLOAT => Ok(Some(TensorData {
                dtype: data_type::FLOAT,
                dims: vec![],
                values: Values::Float(vec![a.f]),
            })),
            Some(a) if a.r#type == attribute_type::INT => Ok(Some(TensorData {
                dtype: data_type::INT64,
                dims: vec![],
                values: Values::Int(vec![a.i]),
            })),
            Some(a) if a.r#type == attribute_type::INTS => Ok(Some(TensorData {
                dtype: data_type::INT64,
                dims: vec![a.ints.len()],
                values: Values::Int(a.ints.clone()),
            })),
            Some(a) if a.r#type == attribute_type::FLOATS => Ok(Some(TensorData {
                dtype: data_type::FLOAT,
                dims: vec![a.floats.len()],
                values: Values::Float(a.floats.clone()),
            })),
            Some(_) => Err(format!("attribute `{name}` has a type qmpc does not read")),
        }
    }
    /// Names of attributes outside `known`: an attribute qmpc ignores must be an error.
    pub fn unknown(&self, known: &[&str]) -> Option<String> {
        self.node
            .attribute
            .iter()
            .map(|a| a.name.clone())
            .find(|n| !known.contains(&n.as_str()))
    }
    pub fn is_graph(&self, name: &str) -> bool {
        self.find(name)
            .is_some_and(|a| a.r#type == attribute_type::GRAPH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_convert_exactly() {
        for (h, f) in [
            (0x3c00u16, 1.0f32),
            (0x3800, 0.5),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 5.960_464_5e-8),
            (0x8001, -5.960_464_5e-8),
            (0x0000, 0.0),
            (0x2e66, 0.099_975_586),
        ] {
            assert_eq!(f16_to_f32(h), f, "{h:#06x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }
}
