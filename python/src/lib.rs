//! `qmpc._qmpc`: the Python bindings of `qmpc-session`. Every blocking call (compiling,
//! running the parties, waiting for peers) releases the GIL; errors are the library's
//! one-line messages, raised as `qmpc.Error` subclasses by kind.

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{PyArray, PyReadonlyArrayDyn};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use qmpc_session::{Array, CompileOptions, Input, Member, Model, Roles, Session};
use std::path::PathBuf;
use std::time::Duration;

create_exception!(
    _qmpc,
    Error,
    PyException,
    "A qmpc error: one line naming the file, input, node, party or setting."
);
create_exception!(
    _qmpc,
    ModelError,
    Error,
    "The model: an ONNX file the compiler refuses, a program or weights that do not load."
);
create_exception!(
    _qmpc,
    InputError,
    Error,
    "The data: an input of the wrong shape, type or range, or a missing one."
);
create_exception!(
    _qmpc,
    SetupError,
    Error,
    "The session's set-up: protocol, party count, roles, config, keys."
);
create_exception!(
    _qmpc,
    RunError,
    Error,
    "A party or the dealer failed while running: a peer that disconnected, stalled, lied or was refused."
);

fn raise(e: qmpc_session::Error) -> PyErr {
    use qmpc_session::Error as E;
    match e {
        E::Model(m) => ModelError::new_err(m),
        E::Input(m) => InputError::new_err(m),
        E::Setup(m) => SetupError::new_err(m),
        E::Run(m) => RunError::new_err(m),
    }
}

fn setup(msg: String) -> PyErr {
    SetupError::new_err(msg)
}

/// A numpy array as the library's array (float32 or an integer type), read in logical
/// (C) order whatever its strides.
fn to_array(x: &Bound<'_, PyAny>) -> PyResult<Array> {
    fn ints<'py, T>(x: &Bound<'py, PyAny>, name: &'static str) -> Option<Array>
    where
        T: numpy::Element + Copy + Into<i64>,
    {
        let a = x.extract::<PyReadonlyArrayDyn<'py, T>>().ok()?;
        let v = a.as_array();
        Some(Array::Int(
            v.shape().to_vec(),
            v.iter().map(|&e| e.into()).collect(),
            name,
        ))
    }
    if let Ok(a) = x.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        let v = a.as_array();
        return Ok(Array::F32(v.shape().to_vec(), v.iter().copied().collect()));
    }
    ints::<i8>(x, "int8")
        .or_else(|| ints::<u8>(x, "uint8"))
        .or_else(|| ints::<i16>(x, "int16"))
        .or_else(|| ints::<u16>(x, "uint16"))
        .or_else(|| ints::<i32>(x, "int32"))
        .or_else(|| ints::<u32>(x, "uint32"))
        .or_else(|| ints::<i64>(x, "int64"))
        .ok_or_else(|| {
            let ty = x
                .getattr("dtype")
                .map(|d| d.to_string())
                .unwrap_or_else(|_| x.get_type().to_string());
            qmpc_session::Error::Input(format!(
                "an input is {ty}: qmpc takes numpy arrays of float32 or integers"
            ))
        })
        .map_err(raise)
}

/// The library's array as a numpy array that owns its buffer (no copy).
fn to_numpy<'py>(py: Python<'py>, a: Array) -> PyResult<Bound<'py, PyAny>> {
    fn owned<'py, T: numpy::Element>(
        py: Python<'py>,
        dims: Vec<usize>,
        v: Vec<T>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let a = ArrayD::from_shape_vec(IxDyn(&dims), v)
            .map_err(|e| RunError::new_err(format!("an output does not fit its shape: {e}")))?;
        Ok(PyArray::from_owned_array(py, a).into_any())
    }
    match a {
        Array::F32(d, v) => owned(py, d, v),
        Array::Int(d, v, "int8") => owned(py, d, v.into_iter().map(|x| x as i8).collect()),
        Array::Int(d, v, "uint8") => owned(py, d, v.into_iter().map(|x| x as u8).collect()),
        Array::Int(d, v, "int32") => owned(py, d, v.into_iter().map(|x| x as i32).collect()),
        Array::Int(d, v, _) => owned(py, d, v),
    }
}

fn roles(model_owner: usize, data_owner: usize, output_to: usize) -> Roles {
    Roles {
        model_owner,
        data_owner,
        output_to,
    }
}

/// `favor=` by name (as `--favor`).
fn favor(name: &str) -> PyResult<qmpc_protocols::Favor> {
    qmpc_session::party::favor(name).map_err(|e| setup(format!("{e:#}")))
}

fn session(
    (protocol, parties, favor_name): (&str, Option<usize>, &str),
    roles: Roles,
    timeout: f64,
) -> PyResult<Session> {
    if !(timeout.is_finite() && timeout > 0.0 && timeout < 1e6) {
        return Err(setup(format!(
            "timeout must be a positive number of seconds, not {timeout}"
        )));
    }
    Ok(Session::favoring(protocol, parties, favor(favor_name)?)
        .and_then(|s| s.with_roles(roles))
        .map_err(raise)?
        .with_timeout(Duration::from_secs_f64(timeout)))
}

fn inputs(arrays: &[Array]) -> Vec<Input<'_>> {
    arrays
        .iter()
        .map(|a| Input {
            array: a,
            origin: None,
        })
        .collect()
}

/// A compiled model: the public program and, at the model owner, the secret weights.
#[pyclass(frozen, module = "qmpc._qmpc")]
struct Program {
    model: Model,
}

#[pymethods]
impl Program {
    /// A program and, optionally, its weights as bytes (`.qmpc` and `.qmpw` contents).
    #[staticmethod]
    #[pyo3(signature = (program, weights=None))]
    fn from_bytes(py: Python<'_>, program: Vec<u8>, weights: Option<Vec<u8>>) -> PyResult<Self> {
        let model = py
            .detach(|| Model::from_bytes(&program, weights.as_deref()))
            .map_err(raise)?;
        Ok(Program { model })
    }

    /// The public program (`.qmpc` bytes).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.model.program.to_bytes())
    }

    /// The model owner's weights (`.qmpw` bytes); `None` where they are public or not held.
    fn weights_bytes<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        (self.model.secret_weights() && self.model.has_weights())
            .then(|| PyBytes::new(py, &self.model.weights.to_bytes()))
    }

    /// Write the program to `path` and, with secret weights, `path` with `.qmpw`.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.model.save(&path)).map_err(raise)
    }

    /// Each graph input: (name, dims with the batch first where batched, batched, dtype,
    /// whether the data owner gives floats that the program quantizes).
    #[getter]
    fn inputs(&self) -> Vec<(String, Vec<usize>, bool, String, bool)> {
        let names = qmpc_session::io::input_names(&self.model.program);
        names
            .iter()
            .filter_map(|n| self.model.program.inputs.iter().find(|i| i.name == *n))
            .map(|i| {
                (
                    i.name.clone(),
                    i.ty.dims.clone(),
                    i.ty.batched,
                    i.ty.dtype.to_string(),
                    i.quant.is_some(),
                )
            })
            .collect()
    }

    /// The output names.
    #[getter]
    fn outputs(&self) -> Vec<String> {
        self.model
            .program
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .collect()
    }

    /// Whether the weights are the model owner's secret.
    #[getter]
    fn secret_weights(&self) -> bool {
        self.model.secret_weights()
    }

    /// Whether this object holds the secret weights (the model owner's copy).
    #[getter]
    fn has_weights(&self) -> bool {
        self.model.has_weights()
    }

    /// The program's digest (BLAKE3, hex): what every party's start-up compares.
    #[getter]
    fn digest(&self) -> String {
        self.model
            .program
            .digest()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The program as assembly text.
    fn disassemble(&self) -> String {
        qmpc_vm::bytecode::asm::disassemble(&self.model.program)
    }

    /// `qmpc cost`: (JSON, text table) of every party's rounds and bytes, per layer, and
    /// the dealer's bytes, for `batch` samples.
    #[pyo3(signature = (protocol, parties, batch, model_owner, data_owner, output_to, name, favor))]
    #[allow(clippy::too_many_arguments)]
    fn cost(
        &self,
        py: Python<'_>,
        protocol: &str,
        parties: Option<usize>,
        batch: usize,
        model_owner: usize,
        data_owner: usize,
        output_to: usize,
        name: &str,
        favor: &str,
    ) -> PyResult<(String, String)> {
        let s = session(
            (protocol, parties, favor),
            roles(model_owner, data_owner, output_to),
            60.0,
        )?;
        let c = py
            .detach(|| s.cost(&self.model.program, batch))
            .map_err(raise)?;
        Ok((c.json(), c.text(name)))
    }

    /// Run every party here (threads over loopback): (outputs, stats JSON).
    #[pyo3(signature = (inputs, protocol, parties, model_owner, data_owner, output_to, timeout, favor))]
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<Bound<'py, PyAny>>,
        protocol: &str,
        parties: Option<usize>,
        model_owner: usize,
        data_owner: usize,
        output_to: usize,
        timeout: f64,
        favor: &str,
    ) -> PyResult<(Vec<Bound<'py, PyAny>>, String)> {
        let s = session(
            (protocol, parties, favor),
            roles(model_owner, data_owner, output_to),
            timeout,
        )?;
        let arrays = inputs.iter().map(to_array).collect::<PyResult<Vec<_>>>()?;
        let outcome = py
            .detach(|| s.run(&self.model, &self::inputs(&arrays)))
            .map_err(raise)?;
        let stats = outcome.stats_json();
        let outs = outcome
            .outputs
            .into_iter()
            .map(|a| to_numpy(py, a))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((outs, stats))
    }

    /// Run party `id` of the session in `config` (parties.toml) on this host: (outputs
    /// revealed here, None for the others; this party's stats JSON).
    #[pyo3(signature = (config, id, inputs, key, insecure))]
    fn party<'py>(
        &self,
        py: Python<'py>,
        config: PathBuf,
        id: usize,
        inputs: Option<Vec<Bound<'py, PyAny>>>,
        key: Option<PathBuf>,
        insecure: bool,
    ) -> PyResult<(Vec<Option<Bound<'py, PyAny>>>, String)> {
        let arrays = match inputs {
            Some(xs) => Some(xs.iter().map(to_array).collect::<PyResult<Vec<_>>>()?),
            None => None,
        };
        let outcome = py
            .detach(|| {
                let member = Member::open(&config)?;
                let security = member.security(key.as_deref(), insecure)?;
                let ins = arrays.as_deref().map(self::inputs);
                member.run_party(id, &self.model, ins.as_deref(), &security)
            })
            .map_err(raise)?;
        let stats = outcome.stats_json();
        let outs = outcome
            .outputs
            .into_iter()
            .map(|a| a.map(|a| to_numpy(py, a)).transpose())
            .collect::<PyResult<Vec<_>>>()?;
        Ok((outs, stats))
    }

    /// Run the dealer of the session in `config` on this host: bytes it sent.
    #[pyo3(signature = (config, key, insecure))]
    fn dealer(
        &self,
        py: Python<'_>,
        config: PathBuf,
        key: Option<PathBuf>,
        insecure: bool,
    ) -> PyResult<u64> {
        let d = py
            .detach(|| {
                let member = Member::open(&config)?;
                if !member.protocol().dealer {
                    return Err(qmpc_session::Error::Setup(format!(
                        "protocol `{}` has no dealer",
                        member.protocol().name
                    )));
                }
                if self.model.secret_weights() && !self.model.weights.tensors.is_empty() {
                    return Err(qmpc_session::Error::Setup(
                        "the dealer must not be given the weights (give it the public \
                         program alone)"
                            .into(),
                    ));
                }
                let security = member.security(key.as_deref(), insecure)?;
                member.run_dealer(&self.model.program, &security)
            })
            .map_err(raise)?;
        Ok(d.stats.bytes_sent)
    }
}

/// Compile ONNX bytes; `name` names the model in errors.
#[pyfunction]
#[pyo3(signature = (onnx, name, secret_weights, exact_trunc, optimize))]
fn compile(
    py: Python<'_>,
    onnx: Vec<u8>,
    name: String,
    secret_weights: bool,
    exact_trunc: bool,
    optimize: bool,
) -> PyResult<Program> {
    let opts = CompileOptions {
        weights: if secret_weights {
            qmpc_compiler::WeightsMode::Secret
        } else {
            qmpc_compiler::WeightsMode::Public
        },
        trunc: if exact_trunc {
            qmpc_protocols::TruncMode::Exact
        } else {
            qmpc_protocols::TruncMode::Probabilistic
        },
        passes: qmpc_compiler::passes::PassSet {
            none: !optimize,
            disabled: Vec::new(),
        },
        progress: None,
    };
    let model = py
        .detach(|| Model::compile(&onnx, &name, &opts))
        .map_err(raise)?;
    Ok(Program { model })
}

/// An `.onnx` file (compiled with secret weights) or a `.qmpc` program with its `.qmpw`
/// beside it.
#[pyfunction]
fn load(py: Python<'_>, path: PathBuf) -> PyResult<Program> {
    let model = py
        .detach(|| Model::open(&path, &CompileOptions::default()))
        .map_err(raise)?;
    Ok(Program { model })
}

/// Make a member's TLS key and certificate in `out`: (name, key path, certificate path,
/// fingerprint).
#[pyfunction]
fn keygen(id: &str, out: PathBuf) -> PyResult<(String, PathBuf, PathBuf, String)> {
    let k = qmpc_session::keygen::keygen(id, &out).map_err(|e| setup(format!("{e:#}")))?;
    Ok((k.name, k.key, k.certificate, k.fingerprint))
}

/// The protocols this build runs: (name, party counts, whether a dealer takes part,
/// whether it withstands malicious parties).
#[pyfunction]
fn protocols() -> Vec<(String, String, bool, bool)> {
    use qmpc_protocols::registry::{self, Threat};
    registry::implemented()
        .into_iter()
        .filter_map(|n| registry::find(n).ok())
        .map(|s| {
            (
                s.name.to_string(),
                s.parties.to_string(),
                s.dealer,
                matches!(s.threat, Threat::Malicious { .. }),
            )
        })
        .collect()
}

/// `qmpc train` with every party here: `data` and `labels` are `(party, .npy path)` per
/// data owner; the trained ONNX model is written to `output`, the stats JSON to `stats`.
#[pyfunction]
#[pyo3(signature = (model, data, labels, test, output, stats, protocol, parties, epochs, batch, lr, optimizer, loss, reveal_loss, exact_trunc, seed, timeout, favor))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    model: PathBuf,
    data: Vec<(usize, PathBuf)>,
    labels: Vec<(usize, PathBuf)>,
    test: Option<(PathBuf, PathBuf)>,
    output: PathBuf,
    stats: PathBuf,
    protocol: String,
    parties: Option<usize>,
    epochs: usize,
    batch: usize,
    lr: f64,
    optimizer: (String, f64, f64, f64),
    loss: String,
    reveal_loss: bool,
    exact_trunc: bool,
    seed: u64,
    timeout: f64,
    favor: &str,
) -> PyResult<()> {
    use qmpc_compiler::train::{Loss, Optimizer};
    let favor = self::favor(favor)?;
    let optimizer = match optimizer.0.as_str() {
        "sgd" => Optimizer::Sgd {
            momentum: optimizer.1,
        },
        "adam" => Optimizer::Adam {
            beta1: optimizer.2,
            beta2: optimizer.3,
        },
        o => {
            return Err(setup(format!(
                "optimizer must be 'sgd' or 'adam', not '{o}'"
            )))
        }
    };
    let loss = match loss.as_str() {
        "cross-entropy" => Loss::CrossEntropy,
        "mse" => Loss::Mse,
        l => {
            return Err(setup(format!(
                "loss must be 'cross-entropy' or 'mse', not '{l}'"
            )))
        }
    };
    let t =
        qmpc_session::party::seconds("timeout", timeout).map_err(|e| setup(format!("{e:#}")))?;
    let (test_data, test_labels) = test.map_or((None, None), |(x, y)| (Some(x), Some(y)));
    let args = qmpc_session::train::TrainArgs {
        model,
        data,
        labels,
        test_data,
        test_labels,
        settings: qmpc_session::train::Settings {
            epochs,
            batch,
            lr,
            optimizer,
            loss,
            trunc: if exact_trunc {
                qmpc_protocols::TruncMode::Exact
            } else {
                qmpc_protocols::TruncMode::Probabilistic
            },
            seed,
            reveal_loss,
        },
        protocol,
        parties,
        favor,
        output,
        stats: Some(stats),
        timeouts: qmpc_protocols::net::Timeouts { connect: t, io: t },
    };
    py.detach(|| qmpc_session::train::train(&args))
        .map_err(|e| Error::new_err(format!("{e:#}")))
}

#[pymodule]
fn _qmpc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("SetupError", py.get_type::<SetupError>())?;
    m.add("RunError", py.get_type::<RunError>())?;
    m.add_class::<Program>()?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add_function(wrap_pyfunction!(protocols, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    Ok(())
}
