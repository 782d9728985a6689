//! A float ONNX export read as a training graph: its layers in ONNX order, each naming the
//! tensors it reads and writes, and the trainable initializers with their float values.
//!
//! Only what training supports is accepted; any other node is refused naming it.

use crate::onnx::proto::{GraphProto, NodeProto};
use crate::onnx::{self, tensor_data, Attrs};
use std::collections::HashMap;

/// A trainable tensor: an initializer of the ONNX file.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The initializer's name, which the trained ONNX file keeps.
    pub name: String,
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

/// What a layer computes.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerOp {
    /// `y = x · W` (`MatMul`, W `[in, out]`) or `y = x · Wᵀ` (`Gemm` with `transB = 1`,
    /// W `[out, in]`), plus a bias `[out]` where `Gemm` has one.
    Dense {
        w: usize,
        bias: Option<usize>,
        trans_w: bool,
    },
    /// `y = x + b`, `b` a parameter broadcast along the rows (`Add` after `MatMul`).
    Bias {
        b: usize,
    },
    /// A 2-D convolution `[N, C, H, W] * [M, C/group, kh, kw]` with an optional bias `[M]`.
    Conv {
        w: usize,
        bias: Option<usize>,
        strides: [usize; 2],
        /// top, left, bottom, right
        pads: [usize; 4],
        dilations: [usize; 2],
        group: usize,
    },
    /// Max or average over windows (no padding).
    MaxPool {
        kernel: [usize; 2],
        strides: [usize; 2],
    },
    AvgPool {
        kernel: [usize; 2],
        strides: [usize; 2],
    },
    /// The mean over `H × W`, `[N, C, H, W] → [N, C, 1, 1]`.
    GlobalAvgPool,
    /// `y = x + other`, two activations (a residual connection).
    Residual {
        other: String,
    },
    Relu,
    /// `[N, ...] → [N, prod(...)]` (`Flatten` with axis 1, or a `Reshape` that does that).
    Flatten,
}

/// One ONNX node.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub op: LayerOp,
    /// The activation it reads.
    pub input: String,
    pub output: String,
    /// The ONNX node's name and op type, for errors and origins.
    pub node: String,
    pub op_type: String,
}

/// A float model ready for training.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub input: String,
    /// Dimensions of one sample (the batch axis left out).
    pub sample_dims: Vec<usize>,
    pub output: String,
    pub layers: Vec<Layer>,
    pub params: Vec<Param>,
}

impl Model {
    /// Read the float graph of `bytes` (`file` names it in errors).
    pub fn read(bytes: &[u8], file: &str) -> Result<Model, String> {
        let m = onnx::decode_model(bytes, file).map_err(|e| e.to_string())?;
        let g = m
            .graph
            .as_ref()
            .ok_or(format!("{file}: the model has no graph"))?;
        read_graph(g).map_err(|e| format!("{file}: {e}"))
    }

    /// Dimensions of one sample at each activation, from the input's.
    pub fn sample_dims_of(&self) -> Result<HashMap<String, Vec<usize>>, String> {
        let mut dims = HashMap::from([(self.input.clone(), self.sample_dims.clone())]);
        for l in &self.layers {
            let x = dims
                .get(&l.input)
                .cloned()
                .ok_or_else(|| l.error(&format!("reads `{}`, computed nowhere", l.input)))?;
            let y = match &l.op {
                LayerOp::Dense { w, trans_w, .. } => {
                    let wd = &self.params[*w].dims;
                    if wd.len() != 2 {
                        return Err(l.error(&format!("the weight must be a matrix, is {wd:?}")));
                    }
                    let (k, n) = if *trans_w {
                        (wd[1], wd[0])
                    } else {
                        (wd[0], wd[1])
                    };
                    if x.len() != 1 || x[0] != k {
                        return Err(l.error(&format!(
                            "multiplies a sample of shape {x:?} by a weight of shape {wd:?}"
                        )));
                    }
                    vec![n]
                }
                LayerOp::Bias { b } => {
                    if self.params[*b].dims != x {
                        return Err(l.error(&format!(
                            "adds a bias of shape {:?} to a sample of shape {x:?}",
                            self.params[*b].dims
                        )));
                    }
                    x
                }
                LayerOp::Relu => x,
                LayerOp::Flatten => vec![x.iter().product()],
                LayerOp::Conv {
                    w,
                    strides,
                    pads,
                    dilations,
                    group,
                    bias,
                } => {
                    let wd = &self.params[*w].dims;
                    if x.len() != 3
                        || wd.len() != 4
                        || x[0] != wd[1] * group
                        || !wd[0].is_multiple_of(*group)
                    {
                        return Err(l.error(&format!(
                            "a sample of shape {x:?} and a weight of shape {wd:?} with group {group}"
                        )));
                    }
                    if let Some(b) = bias {
                        if self.params[*b].dims != [wd[0]] {
                            return Err(l.error("the bias must have one value per output channel"));
                        }
                    }
                    let (oh, ow) = out_hw(x[1], x[2], [wd[2], wd[3]], *strides, *pads, *dilations)
                        .ok_or_else(|| l.error("the kernel is larger than the padded input"))?;
                    vec![wd[0], oh, ow]
                }
                LayerOp::MaxPool { kernel, strides } | LayerOp::AvgPool { kernel, strides } => {
                    if x.len() != 3 {
                        return Err(l.error(&format!("pools a sample of shape {x:?}")));
                    }
                    let (oh, ow) = out_hw(x[1], x[2], *kernel, *strides, [0; 4], [1, 1])
                        .ok_or_else(|| l.error("the window is larger than the input"))?;
                    vec![x[0], oh, ow]
                }
                LayerOp::GlobalAvgPool => {
                    if x.len() != 3 {
                        return Err(l.error(&format!("pools a sample of shape {x:?}")));
                    }
                    vec![x[0], 1, 1]
                }
                LayerOp::Residual { other } => {
                    let o = dims
                        .get(other)
                        .ok_or_else(|| l.error(&format!("reads `{other}`, computed nowhere")))?;
                    if *o != x {
                        return Err(l.error(&format!("adds shapes {x:?} and {o:?}")));
                    }
                    x
                }
            };
            dims.insert(l.output.clone(), y);
        }
        Ok(dims)
    }
}

/// Output size of a window over `h × w` (floor mode).
pub fn out_hw(
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 4],
    d: [usize; 2],
) -> Option<(usize, usize)> {
    let ext = |i: usize| Some(k[i].checked_sub(1)? * d[i] + 1);
    let (eh, ew) = (ext(0)?, ext(1)?);
    let (ph, pw) = (h + p[0] + p[2], w + p[1] + p[3]);
    if ph < eh || pw < ew || s[0] == 0 || s[1] == 0 {
        return None;
    }
    Some(((ph - eh) / s[0] + 1, (pw - ew) / s[1] + 1))
}

/// `[a, b]` from an attribute of two non-negative integers (or `default`).
fn pair(a: &Attrs, name: &str, default: usize, n: &NodeProto) -> Result<[usize; 2], String> {
    match a.ints(name)? {
        None => Ok([default; 2]),
        Some(v) => match v.as_slice() {
            [x, y] if *x >= 0 && *y >= 0 => Ok([*x as usize, *y as usize]),
            _ => Err(node_error(
                n,
                &format!("`{name}` must be two non-negative integers, not {v:?}"),
            )),
        },
    }
}

/// ONNX `pads` `[top, left, bottom, right]`.
fn pads4(a: &Attrs, n: &NodeProto) -> Result<[usize; 4], String> {
    if a.string("auto_pad", "NOTSET")? != "NOTSET" {
        return Err(node_error(
            n,
            "only explicit pads (auto_pad NOTSET) are trainable",
        ));
    }
    match a.ints("pads")? {
        None => Ok([0; 4]),
        Some(v) if v.len() == 4 && v.iter().all(|&p| p >= 0) => {
            Ok([v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize])
        }
        Some(v) => Err(node_error(
            n,
            &format!("pads {v:?} are not four non-negative integers"),
        )),
    }
}

impl Layer {
    /// The activations it reads.
    pub fn inputs(&self) -> Vec<&str> {
        match &self.op {
            LayerOp::Residual { other } => vec![&self.input, other],
            _ => vec![&self.input],
        }
    }

    pub fn error(&self, msg: &str) -> String {
        format!("node `{}` ({}): {msg}", self.node, self.op_type)
    }
}

fn read_graph(g: &GraphProto) -> Result<Model, String> {
    let mut inits: HashMap<&str, onnx::TensorData> = HashMap::new();
    for t in &g.initializer {
        let d = tensor_data(t).map_err(|e| format!("initializer `{}`: {e}", t.name))?;
        inits.insert(t.name.as_str(), d);
    }
    let inputs: Vec<_> = g
        .input
        .iter()
        .filter(|i| !inits.contains_key(i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(format!(
            "training needs exactly one graph input (the data), found {}",
            inputs.len()
        ));
    };
    let dims: Vec<usize> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| d.dim_value.unwrap_or(1).max(1) as usize)
                .collect()
        })
        .ok_or_else(|| format!("input `{}` has no shape", input.name))?;
    if dims.len() < 2 {
        return Err(format!(
            "input `{}` must have a batch axis and a sample shape, has shape {dims:?}",
            input.name
        ));
    }
    let [output] = g.output.as_slice() else {
        return Err(format!(
            "training needs exactly one graph output (the logits), found {}",
            g.output.len()
        ));
    };
    let mut params: Vec<Param> = Vec::new();
    let mut param_of: HashMap<String, usize> = HashMap::new();
    let mut param = |name: &str, node: &NodeProto| -> Result<usize, String> {
        if let Some(&i) = param_of.get(name) {
            return Ok(i);
        }
        let t = inits.get(name).ok_or_else(|| {
            node_error(
                node,
                &format!("`{name}` must be an initializer (a trainable weight)"),
            )
        })?;
        let values = t
            .floats()
            .ok_or_else(|| node_error(node, &format!("initializer `{name}` is not float")))?
            .to_vec();
        params.push(Param {
            name: name.to_string(),
            dims: t.dims.clone(),
            values,
        });
        param_of.insert(name.to_string(), params.len() - 1);
        Ok(params.len() - 1)
    };
    let mut layers = Vec::new();
    // Outputs of `Constant` nodes (a Reshape's target shape).
    let mut constants: HashMap<String, onnx::TensorData> = HashMap::new();
    for n in &g.node {
        let a = Attrs::new(n);
        if n.op_type == "Constant" {
            let t = a.tensor("value")?.ok_or_else(|| {
                node_error(n, "only a Constant with a `value` tensor is supported")
            })?;
            let out = n
                .output
                .first()
                .ok_or_else(|| node_error(n, "has no output"))?;
            constants.insert(out.clone(), t);
            continue;
        }
        let op = match n.op_type.as_str() {
            "Gemm" => {
                if a.int("transA", 0)? != 0
                    || a.float("alpha", 1.0)? != 1.0
                    || a.float("beta", 1.0)? != 1.0
                {
                    return Err(node_error(
                        n,
                        "only Gemm with transA = 0 and alpha = beta = 1 is trainable",
                    ));
                }
                let w = param(input_at(n, 1)?, n)?;
                let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
                    Some(b) => Some(param(b, n)?),
                    None => None,
                };
                LayerOp::Dense {
                    w,
                    bias,
                    trans_w: a.int("transB", 0)? != 0,
                }
            }
            "MatMul" => LayerOp::Dense {
                w: param(input_at(n, 1)?, n)?,
                bias: None,
                trans_w: false,
            },
            "Add" => {
                let b = input_at(n, 1)?;
                if inits.contains_key(b) {
                    LayerOp::Bias { b: param(b, n)? }
                } else if inits.contains_key(input_at(n, 0)?) {
                    return Err(node_error(n, "the bias must be the second operand"));
                } else {
                    LayerOp::Residual {
                        other: b.to_string(),
                    }
                }
            }
            "Conv" => {
                let w = param(input_at(n, 1)?, n)?;
                let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
                    Some(b) => Some(param(b, n)?),
                    None => None,
                };
                LayerOp::Conv {
                    w,
                    bias,
                    strides: pair(&a, "strides", 1, n)?,
                    pads: pads4(&a, n)?,
                    dilations: pair(&a, "dilations", 1, n)?,
                    group: usize::try_from(a.int("group", 1)?)
                        .ok()
                        .filter(|&g| g > 0)
                        .ok_or_else(|| node_error(n, "group must be positive"))?,
                }
            }
            "MaxPool" | "AveragePool" => {
                if pads4(&a, n)? != [0; 4] || a.int("ceil_mode", 0)? != 0 {
                    return Err(node_error(
                        n,
                        "only pooling without padding or ceil mode is trainable",
                    ));
                }
                if pair(&a, "dilations", 1, n)? != [1, 1] || a.int("storage_order", 0)? != 0 {
                    return Err(node_error(n, "only pooling without dilation is trainable"));
                }
                let kernel = pair(&a, "kernel_shape", 1, n)?;
                let strides = pair(&a, "strides", 1, n)?;
                if n.op_type == "MaxPool" {
                    if n.output.len() > 1 {
                        return Err(node_error(n, "MaxPool's indices output is not trainable"));
                    }
                    LayerOp::MaxPool { kernel, strides }
                } else {
                    LayerOp::AvgPool { kernel, strides }
                }
            }
            "GlobalAveragePool" => LayerOp::GlobalAvgPool,
            "Relu" => LayerOp::Relu,
            "Flatten" => {
                if a.int("axis", 1)? != 1 {
                    return Err(node_error(n, "only Flatten with axis 1 is trainable"));
                }
                LayerOp::Flatten
            }
            "Reshape" => {
                let shape = input_at(n, 1)?;
                let s = inits
                    .get(shape)
                    .or_else(|| constants.get(shape))
                    .and_then(|t| t.ints())
                    .ok_or_else(|| node_error(n, "the shape must be a constant"))?;
                // The exporter writes the example's batch size (or -1, or 0) first.
                if s.len() != 2 || s[1] != -1 {
                    return Err(node_error(
                        n,
                        &format!("only a Reshape to [N, -1] is trainable, not {s:?}"),
                    ));
                }
                LayerOp::Flatten
            }
            "Identity" | "Dropout" => {
                return Err(node_error(
                    n,
                    "not trainable yet (export the model in eval mode without it)",
                ))
            }
            other => {
                return Err(node_error(
                    n,
                    &format!("`{other}` is not supported in a training graph"),
                ))
            }
        };
        layers.push(Layer {
            op,
            input: input_at(n, 0)?.to_string(),
            output: n
                .output
                .first()
                .cloned()
                .ok_or_else(|| node_error(n, "has no output"))?,
            node: n.name.clone(),
            op_type: n.op_type.clone(),
        });
    }
    let model = Model {
        input: input.name.clone(),
        sample_dims: dims[1..].to_vec(),
        output: output.name.clone(),
        layers: pool_before_relu(layers, &output.name),
        params,
    };
    let shapes = model.sample_dims_of()?;
    if !shapes.contains_key(&model.output) {
        return Err(format!("the output `{}` is computed nowhere", model.output));
    }
    Ok(model)
}

/// A `Relu` read only by a `MaxPool` is computed after it: the values are the same (a
/// maximum commutes with a non-decreasing function, as the fixed-point ReLU's rounding and
/// clip are), and so are the gradients — the pool routes to the first maximum of the
/// pre-activations, which is the first maximum after the ReLU wherever the ReLU passes a
/// gradient at all. The ReLU, its truncation and its gradient's test then touch a quarter
/// of the elements (a 2×2 pool), and the pool compares the untruncated products.
fn pool_before_relu(mut layers: Vec<Layer>, output: &str) -> Vec<Layer> {
    let readers = |layers: &[Layer], name: &str| {
        layers
            .iter()
            .flat_map(|l| l.inputs())
            .filter(|&i| i == name)
            .count()
    };
    for i in 0..layers.len().saturating_sub(1) {
        let (relu, pool) = (&layers[i], &layers[i + 1]);
        let swap = relu.op == LayerOp::Relu
            && matches!(pool.op, LayerOp::MaxPool { .. })
            && pool.input == relu.output
            && relu.output != output
            && readers(&layers, &relu.output) == 1;
        if swap {
            let pooled = format!("{}/before_relu", pool.output);
            let (relu_in, pool_out) = (relu.input.clone(), pool.output.clone());
            let mut pool = layers.remove(i + 1);
            pool.input = relu_in;
            pool.output = pooled.clone();
            let relu = &mut layers[i];
            relu.input = pooled;
            relu.output = pool_out;
            layers.insert(i, pool);
        }
    }
    layers
}

fn input_at(n: &NodeProto, i: usize) -> Result<&str, String> {
    n.input
        .get(i)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| node_error(n, &format!("has no input {i}")))
}

fn node_error(n: &NodeProto, msg: &str) -> String {
    format!("node `{}` ({}): {msg}", n.name, n.op_type)
}

/// The ONNX file `bytes` with the float initializers named in `params` replaced by the
/// given values (same shapes): the trained model, which loads wherever the export did.
pub fn with_params(
    bytes: &[u8],
    file: &str,
    params: &[(String, Vec<f32>)],
) -> Result<Vec<u8>, String> {
    use prost::Message;
    let mut m = onnx::decode_model(bytes, file).map_err(|e| e.to_string())?;
    let g = m
        .graph
        .as_mut()
        .ok_or(format!("{file}: the model has no graph"))?;
    for (name, values) in params {
        let t = g
            .initializer
            .iter_mut()
            .find(|t| &t.name == name)
            .ok_or_else(|| format!("{file}: no initializer `{name}`"))?;
        let n: i64 = t.dims.iter().product();
        if n != values.len() as i64 {
            return Err(format!(
                "{file}: initializer `{name}` has {n} values, {} given",
                values.len()
            ));
        }
        t.data_type = crate::onnx::proto::data_type::FLOAT;
        t.float_data.clear();
        t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    Ok(m.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(op: LayerOp, input: &str, output: &str) -> Layer {
        Layer {
            op,
            input: input.into(),
            output: output.into(),
            node: format!("/{output}"),
            op_type: String::new(),
        }
    }

    fn pool() -> LayerOp {
        LayerOp::MaxPool {
            kernel: [2, 2],
            strides: [2, 2],
        }
    }

    fn flow(layers: &[Layer]) -> Vec<(String, String, String)> {
        layers
            .iter()
            .map(|l| (l.node.clone(), l.input.clone(), l.output.clone()))
            .collect()
    }

    #[test]
    fn a_relu_read_only_by_a_max_pool_moves_after_it() {
        let layers = vec![
            layer(LayerOp::Relu, "x", "r"),
            layer(pool(), "r", "p"),
            layer(LayerOp::Flatten, "p", "y"),
        ];
        let got = pool_before_relu(layers, "y");
        assert_eq!(got[0].op, pool());
        assert_eq!(got[1].op, LayerOp::Relu);
        assert_eq!(
            flow(&got),
            vec![
                ("/p".into(), "x".into(), "p/before_relu".into()),
                ("/r".into(), "p/before_relu".into(), "p".into()),
                ("/y".into(), "p".into(), "y".into()),
            ]
        );
    }

    #[test]
    fn a_relu_read_elsewhere_too_stays_before_its_pool() {
        let twice = vec![
            layer(LayerOp::Relu, "x", "r"),
            layer(pool(), "r", "p"),
            layer(LayerOp::Residual { other: "r".into() }, "p", "y"),
        ];
        assert_eq!(pool_before_relu(twice.clone(), "y"), twice);
        let output = vec![layer(LayerOp::Relu, "x", "r"), layer(pool(), "r", "p")];
        assert_eq!(pool_before_relu(output.clone(), "r"), output);
    }
}
