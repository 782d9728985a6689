//! `DynamicQuantizeLinear` against its exact definition (docs/semantics.md): for inputs that
//! are exact in the 2^-16 fixed point, `y` must be `clamp(round(255·v/R) + zp, 0, 255)`
//! with `zp = clamp(round(−255·mn/R), 0, 255)`, computed here in exact integers, wherever
//! the quotients are not within 10^-3 of a tie (qmpc's reciprocal is within 2^-19). Ranges
//! from a few units to 2^31 units, rows of zeros, of one value, of one sign; each sample of
//! a batch on its own, and a tensor without a batch axis as a whole.

mod common;
use common::npy::{self, Array};
use common::{qmpc, stderr, tmp};
use prost::Message;
use qmpc_compiler::onnx::proto::{
    data_type, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};

fn value_info(name: &str, elem: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            dim_value: *d,
                            dim_param: d.is_none().then(|| "N".to_string()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// `x → DynamicQuantizeLinear → y` with `x` of shape `dims` (`None`: a symbolic batch).
fn model(dims: &[Option<i64>]) -> Vec<u8> {
    let m = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "dql".into(),
            node: vec![NodeProto {
                input: vec!["x".into()],
                output: vec!["y".into(), "y_scale".into(), "y_zero_point".into()],
                name: "dql".into(),
                op_type: "DynamicQuantizeLinear".into(),
                ..Default::default()
            }],
            input: vec![value_info("x", data_type::FLOAT, dims)],
            output: vec![value_info("y", data_type::UINT8, dims)],
            ..Default::default()
        }),
        ..Default::default()
    };
    m.encode_to_vec()
}

/// `round_half_even(n/d)` for `d > 0`, and whether `n/d` is within 10^-3 of a tie.
fn rhe(n: i128, d: i128) -> (i128, bool) {
    let fl = n.div_euclid(d);
    let rest = n - fl * d;
    let near_tie = ((2 * rest - d).abs() as f64) < 2e-3 * d as f64;
    let r = match (2 * rest).cmp(&d) {
        std::cmp::Ordering::Less => fl,
        std::cmp::Ordering::Greater => fl + 1,
        std::cmp::Ordering::Equal => fl + (fl & 1),
    };
    (r, near_tie)
}

/// The values `y` may take for each element of one quantized group (`v` in 2^-16 units).
fn allowed(v: &[i64]) -> Vec<Vec<i64>> {
    let mx = v.iter().copied().max().unwrap_or(0).max(0) as i128;
    let mn = v.iter().copied().min().unwrap_or(0).min(0) as i128;
    let r = mx - mn;
    if r == 0 {
        return vec![vec![0]; v.len()];
    }
    let options = |(q, tie): (i128, bool)| {
        if tie {
            vec![q - 1, q, q + 1]
        } else {
            vec![q]
        }
    };
    let zps: Vec<i128> = options(rhe(-255 * mn, r))
        .into_iter()
        .map(|z| z.clamp(0, 255))
        .collect();
    v.iter()
        .map(|&x| {
            let mut ys: Vec<i64> = options(rhe(255 * x as i128, r))
                .into_iter()
                .flat_map(|q| zps.iter().map(move |z| (q + z).clamp(0, 255) as i64))
                .collect();
            ys.sort_unstable();
            ys.dedup();
            ys
        })
        .collect()
}

/// A deterministic generator (xorshift64*), enough for test data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A multiple of 4 (the input is taken at 2^-14 inside: exact) below 2^bits in magnitude,
    /// with at most 22 significant bits (exact in f32).
    fn units(&mut self, bits: u32) -> i64 {
        let sig = bits.min(22);
        let m = (((self.next() >> (64 - sig)) as i64) << (bits - sig)) & !3;
        if self.next() & 1 == 1 {
            -m
        } else {
            m
        }
    }
}

/// Rows of `len` input units: random ranges of 3 to 31 bits, and the edge cases.
fn rows(count: usize, len: usize, seed: u64) -> Vec<Vec<i64>> {
    let mut g = Rng(seed);
    let mut out = vec![
        vec![0; len],
        vec![-4 * 77; len],
        vec![4 * 1000; len],
        (0..len).map(|i| if i == 3 { 4 } else { 0 }).collect(),
        (0..len).map(|i| -(i as i64) * 4 * 999 * 1024).collect(),
    ];
    while out.len() < count {
        let bits = 3 + (g.next() % 29) as u32;
        let sign = g.next() % 3;
        out.push(
            (0..len)
                .map(|_| {
                    let u = g.units(bits);
                    match sign {
                        0 => u.abs(),
                        1 => -u.abs(),
                        _ => u,
                    }
                })
                .collect(),
        );
    }
    out
}

fn run(name: &str, onnx: &[u8], dims: &[usize], units: &[i64]) -> Vec<i64> {
    let (m, x, y) = (
        tmp(&format!("{name}.onnx")),
        tmp(&format!("{name}.x.npy")),
        tmp(&format!("{name}.y.npy")),
    );
    std::fs::write(&m, onnx).expect("temp file");
    let xs: Vec<f32> = units.iter().map(|&u| u as f32 / 65536.0).collect();
    assert!(units
        .iter()
        .zip(&xs)
        .all(|(&u, &f)| (f * 65536.0) as i64 == u));
    std::fs::write(&x, npy::encode_f32(dims, &xs)).expect("temp file");
    let p = |p: &std::path::Path| p.to_str().expect("UTF-8").to_string();
    let o = qmpc(&[
        "run",
        &p(&m),
        "--protocol",
        "clear",
        "--input",
        &p(&x),
        "--output",
        &p(&y),
    ]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    match npy::read(&y).expect("an output") {
        Array::Int(d, v, _) => {
            assert_eq!(d, dims);
            v
        }
        other => panic!("{name}: uint8 output expected, got {other:?}"),
    }
}

fn check(name: &str, groups: &[Vec<i64>], got: &[i64]) {
    let len = groups[0].len();
    let mut bad = Vec::new();
    for (g, (v, y)) in groups.iter().zip(got.chunks(len)).enumerate() {
        for (i, (ok, &y)) in allowed(v).iter().zip(y).enumerate() {
            if !ok.contains(&y) {
                bad.push(format!(
                    "group {g} element {i}: y = {y}, exact {ok:?} (v = {v:?})"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {}",
        bad[..bad.len().min(5)].join("\n")
    );
}

#[test]
fn each_sample_of_a_batch_is_quantized_exactly() {
    let len = 24;
    let groups = rows(64, len, 0x5eed);
    let units: Vec<i64> = groups.concat();
    let got = run(
        "dql_batch",
        &model(&[None, Some(len as i64)]),
        &[groups.len(), len],
        &units,
    );
    check("batch", &groups, &got);
}

#[test]
fn a_tensor_without_batch_axis_is_quantized_as_a_whole() {
    for (k, group) in rows(8, 12, 0xface).into_iter().enumerate() {
        let got = run(
            &format!("dql_whole{k}"),
            &model(&[Some(3), Some(4)]),
            &[3, 4],
            &group,
        );
        check(&format!("whole {k}"), &[group], &got);
    }
}
