//! Minimal `.npy` (NumPy format v1/v2/v3) reading and writing for the tensors qmpc exchanges.

use anyhow::{bail, Context, Result};

/// An array read from an `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    F32(Vec<usize>, Vec<f32>),
    /// Any integer type, widened; the string is the numpy type name.
    Int(Vec<usize>, Vec<i64>, &'static str),
}

impl Array {
    pub fn dims(&self) -> &[usize] {
        match self {
            Array::F32(d, _) | Array::Int(d, _, _) => d,
        }
    }

    /// The array as an `.npy` file, in its own type.
    pub fn to_npy(&self) -> Vec<u8> {
        match self {
            Array::F32(d, v) => encode_f32(d, v),
            Array::Int(d, v, t) => encode_ints(descr_of(t), d, v),
        }
    }
}

/// The `.npy` type string of a numpy integer type name.
fn descr_of(name: &str) -> &'static str {
    match name {
        "int8" => "|i1",
        "uint8" => "|u1",
        "int16" => "<i2",
        "uint16" => "<u2",
        "int32" => "<i4",
        "uint32" => "<u4",
        _ => "<i8",
    }
}

fn parse_header(h: &str) -> Result<(String, bool, Vec<usize>)> {
    let field = |key: &str| -> Result<&str> {
        let i = h
            .find(&format!("'{key}'"))
            .with_context(|| format!("header has no '{key}'"))?;
        Ok(h[i + key.len() + 2..]
            .trim_start()
            .trim_start_matches(':')
            .trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .context("bad descr")?
        .to_string();
    let fortran = field("fortran_order")?.starts_with("True");
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .context("bad shape")?;
    let dims = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().context("bad shape"))
        .collect::<Result<Vec<_>>>()?;
    Ok((descr, fortran, dims))
}

pub fn read(path: &std::path::Path) -> Result<Array> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&bytes).with_context(|| format!("{}: not a readable .npy file", path.display()))
}

pub fn parse(bytes: &[u8]) -> Result<Array> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("bad magic");
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("unsupported version {v}"),
    };
    let header = bytes.get(start..start + hlen).context("truncated header")?;
    let (descr, fortran, dims) = parse_header(std::str::from_utf8(header)?)?;
    if fortran {
        bail!("Fortran-ordered arrays are not supported");
    }
    let data = &bytes[start + hlen..];
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .context("shape too large")?;
    let (width, kind): (usize, &str) = match descr.as_str() {
        "<f4" => (4, "float32"),
        // numpy's default float type: narrowed to the float32 an ONNX model takes, as
        // `x.astype(np.float32)` would.
        "<f8" => (8, "float64"),
        "|i1" | "<i1" => (1, "int8"),
        "|u1" | "<u1" => (1, "uint8"),
        "<i4" => (4, "int32"),
        "<i8" => (8, "int64"),
        "<u4" => (4, "uint32"),
        "<i2" => (2, "int16"),
        "<u2" => (2, "uint16"),
        d => bail!("unsupported dtype {d}"),
    };
    if data.len() != n.checked_mul(width).context("shape too large")? {
        bail!("{} data bytes for shape {:?} of {kind}", data.len(), dims);
    }
    let c = data.chunks_exact(width);
    Ok(match kind {
        "float32" => Array::F32(
            dims,
            c.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        "float64" => Array::F32(
            dims,
            c.map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        ),
        "int8" => Array::Int(dims, c.map(|b| b[0] as i8 as i64).collect(), "int8"),
        "uint8" => Array::Int(dims, c.map(|b| b[0] as i64).collect(), "uint8"),
        "int16" => Array::Int(
            dims,
            c.map(|b| i16::from_le_bytes([b[0], b[1]]) as i64).collect(),
            "int16",
        ),
        "uint16" => Array::Int(
            dims,
            c.map(|b| u16::from_le_bytes([b[0], b[1]]) as i64).collect(),
            "uint16",
        ),
        "int32" => Array::Int(
            dims,
            c.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
            "int32",
        ),
        "uint32" => Array::Int(
            dims,
            c.map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
            "uint32",
        ),
        _ => Array::Int(
            dims,
            c.map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            "int64",
        ),
    })
}

/// Serialize: `descr` is the numpy type string, `data` its little-endian bytes.
pub fn encode(descr: &str, dims: &[usize], data: &[u8]) -> Vec<u8> {
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

pub fn encode_f32(dims: &[usize], v: &[f32]) -> Vec<u8> {
    encode(
        "<f4",
        dims,
        &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
    )
}

pub fn encode_ints(descr: &str, dims: &[usize], v: &[i64]) -> Vec<u8> {
    let bytes: Vec<u8> = match descr {
        "|i1" | "|u1" => v.iter().map(|&x| x as u8).collect(),
        "<i2" | "<u2" => v.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect(),
        "<i4" | "<u4" => v.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    encode(descr, dims, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let b = encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(
            parse(&b).unwrap(),
            Array::F32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5])
        );
        let b = encode_ints("|i1", &[3], &[-1, 0, 7]);
        assert_eq!(
            parse(&b).unwrap(),
            Array::Int(vec![3], vec![-1, 0, 7], "int8")
        );
        assert!(parse(&b[..b.len() - 1]).is_err());
        assert!(parse(b"garbage").is_err());
    }

    /// numpy's default float64 is read as the float32 a model takes.
    #[test]
    fn float64_is_narrowed_to_float32() {
        let data: Vec<u8> = [0.5f64, -1.25, 3.0e38]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let b = encode("<f8", &[3], &data);
        assert_eq!(
            parse(&b).unwrap(),
            Array::F32(vec![3], vec![0.5, -1.25, 3.0e38])
        );
    }
}
