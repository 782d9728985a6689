#!/usr/bin/env python3
"""Make qmpc's own small int8 ONNX models and their onnxruntime reference data.

    python models/make_models.py --out models            (from the repository root)

Deterministic: fixed seeds, 1 thread. Writes, under --out:

    manifest.json                              {"versions": {...}, "models": [entry, ...]}
    <model>/<variant>.onnx
    <model>/ref/<variant>/input.npy            8 inputs, row i taken as input[i:i+1]
    <model>/ref/<variant>/output_0.npy         onnxruntime CPU, ORT_DISABLE_ALL, 1 thread, rows stacked
    <model>/ref/<variant>/last_int8.npy        the int8/uint8 tensor feeding the final DequantizeLinear
    <model>/ref/<variant>/labels.npy           (digits models only) true labels
    <model>/ref/<variant>/int8_intermediates_sample0.npz  every int8/uint8 node output for input[0:1]
    <model>/ref/<variant>/output_0.optimized.npy  only where ORT_ENABLE_ALL gives a different output

Paths in manifest.json are relative to the directory holding manifest.json (as in
../shared/corpus/manifest.json), so tools that read the corpus read this directory as well.

Part A: tiny_mlp / tiny_cnn, real PyTorch models trained on sklearn's load_digits, exported with
torch.onnx.export (TorchScript, opset 13) and quantized by onnxruntime.quantization.quantize_static.
Part B: one hand-built model (onnx.helper) per quantized operator / pattern the corpus lacks.
See models/README.md.
"""
import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

N_REF = 8
MS = "com.microsoft"
KINDS = {  # name: (onnx elem type, numpy dtype, qmin, qmax)
    "s8": (TP.INT8, np.int8, -128, 127),
    "u8": (TP.UINT8, np.uint8, 0, 255),
}
REPRODUCE = "python models/make_models.py --out models"

# ----------------------------------------------------------------------------------------------
# onnxruntime helpers


def session(model, optimized=False):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def run_rows(sess, x, out_names=None):
    """Run every row x[i:i+1] separately; stack each output along axis 0."""
    outs = None
    for i in range(len(x)):
        r = sess.run(out_names, {"input": x[i:i + 1]})
        if outs is None:
            outs = [[] for _ in r]
        for j, a in enumerate(r):
            outs[j].append(np.asarray(a))
    return [np.concatenate(o, axis=0) if o[0].ndim else np.stack(o) for o in outs]


def float_op(op, inputs, attrs=None, opset=13):
    """Evaluate one float ONNX node with onnxruntime (used to pick output quantization ranges)."""
    names = [f"i{k}" for k in range(len(inputs))]
    g = h.make_graph(
        [h.make_node(op, names, ["y"], **(attrs or {}))], "f",
        [h.make_tensor_value_info(n, TP.FLOAT, list(a.shape)) for n, a in zip(names, inputs)],
        [h.make_tensor_value_info("y", TP.FLOAT, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 7
    return session(m).run(None, {n: a.astype(np.float32) for n, a in zip(names, inputs)})[0]


# ----------------------------------------------------------------------------------------------
# quantization helpers (numpy)


def qparams(lo, hi, kind, shrink=1.0):
    """onnxruntime-MinMax-style asymmetric scale/zero point for the range [lo, hi] (0 included)."""
    _, npt, qmin, qmax = KINDS[kind]
    lo = min(float(lo) * shrink, 0.0)
    hi = max(float(hi) * shrink, 0.0)
    s = (hi - lo) / (qmax - qmin) or 1.0
    zp = int(np.clip(round(qmin - lo / s), qmin, qmax))
    return np.float32(s), npt(zp)


def quant(x, s, zp, kind):
    _, npt, qmin, qmax = KINDS[kind]
    return np.clip(np.rint(np.asarray(x, np.float32) / np.float32(s)) + int(zp), qmin, qmax).astype(npt)


def dequant(q, s, zp):
    return ((q.astype(np.int32) - np.asarray(zp).astype(np.int32)) * np.asarray(s, np.float32)).astype(np.float32)


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


# ----------------------------------------------------------------------------------------------
# graph builder


class B:
    def __init__(self):
        self.nodes, self.inits = [], []

    def c(self, name, arr):
        self.inits.append(nh.from_array(np.asarray(arr), name))
        return name

    def qp(self, prefix, s, zp):
        return self.c(prefix + "_scale", np.asarray(s, np.float32)), self.c(prefix + "_zero_point", np.asarray(zp))

    def n(self, op, ins, out, domain="", **attrs):
        self.nodes.append(h.make_node(op, ins, [out], name=f"{op}_{len(self.nodes)}", domain=domain, **attrs))
        return out

    def Q(self, x, s_zp, out):
        return self.n("QuantizeLinear", [x, *s_zp], out)

    def DQ(self, x, s_zp, out, axis=None):
        kw = {} if axis is None else {"axis": axis}
        return self.n("DequantizeLinear", [x, *s_zp], out, **kw)

    def model(self, in_type, in_shape, out_type=TP.FLOAT, out_shape=None, opset=13):
        uses_ms = any(nd.domain == MS for nd in self.nodes)
        g = h.make_graph(self.nodes, "qmpc_op_test",
                         [h.make_tensor_value_info("input", in_type, in_shape)],
                         [h.make_tensor_value_info("logits", out_type, out_shape)], self.inits)
        ops = [h.make_opsetid("", opset)] + ([h.make_opsetid(MS, 1)] if uses_ms else [])
        m = h.make_model(g, opset_imports=ops, producer_name="qmpc models/make_models.py", producer_version="1")
        m.ir_version = 7
        return m


def uniform(name, shape, lo=-1.0, hi=1.0):
    return rng_for(name).uniform(lo, hi, size=(N_REF, *shape[1:])).astype(np.float32)


def int_weights(rng, shape, kind="s8", lo=-100, hi=100):
    return rng.integers(lo, hi + 1, size=shape).astype(KINDS[kind][1])


# ----------------------------------------------------------------------------------------------
# Part B: hand-built operator models. Each returns a list of (variant, model, inputs, meta).


def m_qlinear_binary(op):
    """com.microsoft QLinearAdd / QLinearMul. B is a constant (full shape or broadcast [1,4,1,1]) or a
    second quantization of the input (x2)."""
    res = []
    shape = [1, 4, 5, 5]
    for var, kind, bmode in [("s8", "s8", "full"), ("u8", "u8", "full"), ("s8_bcast", "s8", "bcast"),
                             ("s8_x2", "s8", "x2")]:
        name = f"{op}/{var}"
        rng = rng_for(name)
        x = uniform(name, shape, -1.0, 1.5)
        g = B()
        sa, za = qparams(x.min(), x.max(), kind, 0.95)
        aq = quant(x, sa, za, kind)
        if bmode == "x2":
            sb, zb = qparams(x.min(), x.max(), kind, 0.8)
            bq = quant(x, sb, zb, kind)
        else:
            bshape = shape if bmode == "full" else [1, 4, 1, 1]
            sb, zb = qparams(-0.7, 1.2, kind)
            bq = int_weights(rng, bshape, kind, KINDS[kind][2], KINDS[kind][3])
        fa, fb = dequant(aq, sa, za), dequant(bq, sb, zb)
        fy = fa + fb if op == "QLinearAdd" else fa * fb
        sy, zy = qparams(fy.min(), fy.max(), kind, 0.9)
        g.Q("input", g.qp("A", sa, za), "A_q")
        if bmode == "x2":
            g.Q("input", g.qp("B", sb, zb), "B_q")
        else:
            g.c("B_q", bq)
            g.qp("B", sb, zb)
        y = g.n(op, ["A_q", "A_scale", "A_zero_point", "B_q", "B_scale", "B_zero_point", "Y_scale", "Y_zero_point"],
                "Y_q", domain=MS)
        g.qp("Y", sy, zy)
        g.DQ(y, ("Y_scale", "Y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind}))
    return res


def m_qlinear_avgpool():
    res = []
    shape = [1, 4, 5, 5]
    for var, kind, cip in [("s8_cip0", "s8", 0), ("s8_cip1", "s8", 1), ("u8_cip0", "u8", 0), ("u8_cip1", "u8", 1)]:
        name = f"QLinearAveragePool/{var}"
        x = uniform(name, shape, -1.0, 1.5)
        attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=cip)
        sx, zx = qparams(x.min(), x.max(), kind, 0.95)
        fy = float_op("AveragePool", [dequant(quant(x, sx, zx, kind), sx, zx)], attrs)
        sy, zy = qparams(fy.min(), fy.max(), kind)
        g = B()
        g.Q("input", g.qp("X", sx, zx), "X_q")
        g.qp("Y", sy, zy)
        g.n("QLinearAveragePool", ["X_q", "X_scale", "X_zero_point", "Y_scale", "Y_zero_point"], "Y_q", domain=MS,
            channels_last=0, **attrs)
        g.DQ("Y_q", ("Y_scale", "Y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind, "attributes": attrs}))
    return res


def m_qlinear_gap():
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("s8", "s8"), ("u8", "u8")]:
        name = f"QLinearGlobalAveragePool/{var}"
        x = uniform(name, shape, -0.5, 1.5)
        sx, zx = qparams(x.min(), x.max(), kind)
        fy = dequant(quant(x, sx, zx, kind), sx, zx).mean(axis=(2, 3))
        sy, zy = qparams(fy.min(), fy.max(), kind)
        g = B()
        g.Q("input", g.qp("X", sx, zx), "X_q")
        g.qp("Y", sy, zy)
        g.n("QLinearGlobalAveragePool", ["X_q", "X_scale", "X_zero_point", "Y_scale", "Y_zero_point"], "Y_q",
            domain=MS, channels_last=0)
        g.DQ("Y_q", ("Y_scale", "Y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind}))
    return res


def m_qlinear_concat():
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("s8", "s8"), ("u8", "u8")]:
        name = f"QLinearConcat/{var}"
        rng = rng_for(name)
        x = uniform(name, shape, -1.0, 1.5)
        sy, zy = qparams(-1.2, 1.5, kind)        # A uses the output's own scale / zero point
        sb, zb = qparams(x.min(), x.max(), kind, 0.7)
        sc, zc = qparams(-2.0, 0.5, kind)
        cq = int_weights(rng, [1, 2, 5, 5], kind, KINDS[kind][2], KINDS[kind][3])
        g = B()
        g.qp("Y", sy, zy)
        g.Q("input", g.qp("A", sy, zy), "A_q")
        g.Q("input", g.qp("B", sb, zb), "B_q")
        g.c("C_q", cq)
        g.qp("C", sc, zc)
        g.n("QLinearConcat", ["Y_scale", "Y_zero_point", "A_q", "A_scale", "A_zero_point", "B_q", "B_scale",
                              "B_zero_point", "C_q", "C_scale", "C_zero_point"], "Y_q", domain=MS, axis=1)
        g.DQ("Y_q", ("Y_scale", "Y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind}))
    return res


def m_qlinear_unary(op):
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("s8", "s8"), ("u8", "u8")]:
        name = f"{op}/{var}"
        x = uniform(name, shape, -4.0, 3.0)
        sx, zx = qparams(x.min(), x.max(), kind)
        fx = dequant(quant(x, sx, zx, kind), sx, zx)
        attrs = {}
        if op == "QLinearLeakyRelu":
            attrs = {"alpha": 0.1}
            fy = np.where(fx >= 0, fx, 0.1 * fx)
            sy, zy = qparams(fy.min(), fy.max(), kind, 0.9)
        else:
            sy, zy = np.float32(1.0 / 256), KINDS[kind][1](KINDS[kind][2])
        g = B()
        g.Q("input", g.qp("X", sx, zx), "X_q")
        g.qp("Y", sy, zy)
        g.n(op, ["X_q", "X_scale", "X_zero_point", "Y_scale", "Y_zero_point"], "Y_q", domain=MS, **attrs)
        g.DQ("Y_q", ("Y_scale", "Y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind, "attributes": attrs}))
    return res


def m_qgemm():
    """com.microsoft QGemm, transB=1, int32 bias C; per-tensor / per-column b_scale; float output."""
    res = []
    shape = [1, 8]
    N = 6
    for var, kind, pc, fout in [("s8", "s8", False, False), ("u8", "u8", False, False), ("s8_pc", "s8", True, False),
                                ("s8_floatout", "s8", False, True)]:
        name = f"QGemm/{var}"
        rng = rng_for(name)
        x = uniform(name, shape, -1.0, 1.0)
        sa, za = qparams(x.min(), x.max(), kind)
        w = int_weights(rng, [N, 8])                                   # [N, K], transB=1
        sb = (rng.uniform(0.004, 0.012, size=N) if pc else np.array(0.008)).astype(np.float32)
        zb = np.zeros(N if pc else (), np.int8)
        bias = rng.integers(-3000, 3000, size=N).astype(np.int32)
        fa = dequant(quant(x, sa, za, kind), sa, za)
        fy = fa @ (w.astype(np.float32) * sb.reshape(-1, 1)).T + bias * (sa * sb)
        sy, zy = qparams(fy.min(), fy.max(), kind, 0.9)
        g = B()
        g.Q("input", g.qp("A", sa, za), "A_q")
        g.c("B_q", w)
        g.qp("B", sb, zb)
        g.c("C_bias", bias)
        ins = ["A_q", "A_scale", "A_zero_point", "B_q", "B_scale", "B_zero_point", "C_bias"]
        if fout:
            g.n("QGemm", ins, "logits", domain=MS, transB=1, alpha=1.0)
        else:
            g.qp("Y", sy, zy)
            g.n("QGemm", ins + ["Y_scale", "Y_zero_point"], "Y_q", domain=MS, transB=1, alpha=1.0)
            g.DQ("Y_q", ("Y_scale", "Y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind, "per_channel": pc,
                                                        "output": "float (no y_scale)" if fout else "quantized"}))
    return res


def m_qlinear_conv():
    """ai.onnx QLinearConv: depthwise (group=4, channel multiplier 2), stride 2, pads 2, dilation 2;
    and a grouped (group=2) conv with asymmetric pads."""
    res = []
    for var, kind, pc, mode in [("s8", "s8", False, "dw"), ("s8_pc", "s8", True, "dw"), ("u8", "u8", False, "dw"),
                                ("u8_pc", "u8", True, "dw"), ("s8_g2", "s8", False, "g2")]:
        name = f"QLinearConv/{var}"
        rng = rng_for(name)
        if mode == "dw":
            shape = [1, 4, 7, 7]
            wshape = [8, 1, 3, 3]
            attrs = dict(group=4, strides=[2, 2], pads=[2, 2, 2, 2], dilations=[2, 2], kernel_shape=[3, 3])
        else:
            shape = [1, 4, 5, 5]
            wshape = [6, 2, 3, 3]
            attrs = dict(group=2, strides=[1, 1], pads=[0, 1, 1, 0], kernel_shape=[3, 3])
        M = wshape[0]
        x = uniform(name, shape, -1.0, 1.5)
        sx, zx = qparams(x.min(), x.max(), kind)
        w = int_weights(rng, wshape, "s8", -127, 127)
        sw = (rng.uniform(0.003, 0.01, size=M) if pc else np.array(0.006)).astype(np.float32)
        zw = np.zeros(M if pc else (), np.int8)
        bias = rng.integers(-2000, 2000, size=M).astype(np.int32)
        fx = dequant(quant(x, sx, zx, kind), sx, zx)
        fw = w.astype(np.float32) * sw.reshape(-1, 1, 1, 1)
        fb = (bias * (sx * sw)).astype(np.float32)
        fy = float_op("Conv", [fx, fw, fb], attrs)
        sy, zy = qparams(fy.min(), fy.max(), kind, 0.9)
        g = B()
        g.Q("input", g.qp("x", sx, zx), "x_q")
        g.c("w_q", w)
        g.qp("w", sw, zw)
        g.qp("y", sy, zy)
        g.c("bias", bias)
        g.n("QLinearConv", ["x_q", "x_scale", "x_zero_point", "w_q", "w_scale", "w_zero_point", "y_scale",
                            "y_zero_point", "bias"], "y_q", **attrs)
        g.DQ("y_q", ("y_scale", "y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind, "weight_type": "s8",
                                                        "per_channel": pc, "attributes": attrs}))
    return res


def m_qlinear_matmul():
    res = []
    for var, kind, pc, shape in [("s8", "s8", False, [1, 8]), ("u8", "u8", False, [1, 8]),
                                 ("s8_pc", "s8", True, [1, 8]), ("s8_3d", "s8", False, [1, 3, 8])]:
        name = f"QLinearMatMul/{var}"
        rng = rng_for(name)
        x = uniform(name, shape, -1.0, 1.0)
        sa, za = qparams(x.min(), x.max(), kind)
        w = int_weights(rng, [8, 6], "s8", -127, 127)
        sb = (rng.uniform(0.004, 0.012, size=6) if pc else np.array(0.008)).astype(np.float32)
        zb = np.zeros(6 if pc else (), np.int8)
        fy = dequant(quant(x, sa, za, kind), sa, za) @ (w.astype(np.float32) * sb)
        sy, zy = qparams(fy.min(), fy.max(), kind, 0.9)
        g = B()
        g.Q("input", g.qp("a", sa, za), "a_q")
        g.c("b_q", w)
        g.qp("b", sb, zb)
        g.qp("y", sy, zy)
        g.n("QLinearMatMul", ["a_q", "a_scale", "a_zero_point", "b_q", "b_scale", "b_zero_point", "y_scale",
                              "y_zero_point"], "y_q")
        g.DQ("y_q", ("y_scale", "y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind, "weight_type": "s8",
                                                        "per_channel": pc}))
    return res


def m_matmul_integer():
    """ai.onnx MatMulInteger with integer model input. Output int32 -> Cast(float) -> Mul(scale) = logits,
    or (variant *_i32out) the int32 accumulator itself as `logits`."""
    res = []
    for var, kind, i32 in [("s8", "s8", False), ("u8", "u8", False), ("s8_i32out", "s8", True)]:
        name = f"MatMulInteger/{var}"
        rng = rng_for(name)
        et, npt, qmin, qmax = KINDS[kind]
        x = rng.integers(qmin, qmax + 1, size=(N_REF, 8)).astype(npt)
        w = int_weights(rng, [8, 6], "s8", -127, 127)
        za = npt(3 if kind == "s8" else 128)
        zb = np.int8(-2)
        g = B()
        g.c("B_q", w)
        g.c("a_zero_point", np.asarray(za))
        g.c("b_zero_point", np.asarray(zb))
        if i32:
            g.n("MatMulInteger", ["input", "B_q", "a_zero_point", "b_zero_point"], "logits")
            m = g.model(et, [1, 8], TP.INT32, [1, 6])
        else:
            g.n("MatMulInteger", ["input", "B_q", "a_zero_point", "b_zero_point"], "acc")
            g.n("Cast", ["acc"], "acc_f", to=TP.FLOAT)
            g.c("out_scale", np.asarray(np.float32(0.0123 * 0.0071), np.float32))
            g.n("Mul", ["acc_f", "out_scale"], "logits")
            m = g.model(et, [1, 8], TP.FLOAT, [1, 6])
        res.append((var, m, x, {"activation_type": kind, "weight_type": "s8", "input_dtype": np.dtype(npt).name}))
    return res


def m_conv_integer():
    res = []
    for var, kind, attrs in [("u8", "u8", dict(pads=[1, 1, 1, 1], kernel_shape=[3, 3])),
                             ("s8", "s8", dict(pads=[1, 1, 1, 1], strides=[2, 2], kernel_shape=[3, 3]))]:
        name = f"ConvInteger/{var}"
        rng = rng_for(name)
        et, npt, qmin, qmax = KINDS[kind]
        x = rng.integers(qmin, qmax + 1, size=(N_REF, 4, 5, 5)).astype(npt)
        w = int_weights(rng, [6, 4, 3, 3], "s8", -127, 127)
        za = npt(120 if kind == "u8" else -5)
        g = B()
        g.c("w_q", w)
        g.c("x_zero_point", np.asarray(za))
        g.n("ConvInteger", ["input", "w_q", "x_zero_point"], "acc", **attrs)
        g.n("Cast", ["acc"], "acc_f", to=TP.FLOAT)
        g.c("out_scale", np.asarray(np.float32(0.0087 * 0.0051), np.float32))
        g.n("Mul", ["acc_f", "out_scale"], "logits")
        res.append((var, g.model(et, [1, 4, 5, 5]), x, {"activation_type": kind, "weight_type": "s8",
                                                         "input_dtype": np.dtype(npt).name, "attributes": attrs}))
    return res


# ---- QDQ patterns -----------------------------------------------------------------------------


def qdq_tail(g, y_float, fy, kind, shrink=1.0, same=None):
    sy, zy = same if same is not None else qparams(fy.min(), fy.max(), kind, shrink)
    g.Q(y_float, g.qp("y", sy, zy), "y_q")
    g.DQ("y_q", ("y_scale", "y_zero_point"), "logits")


def m_qdq_pool(op):
    res = []
    shape = [1, 4, 5, 5]
    if op == "AveragePool":
        cases = [("s8_cip0", "s8", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)),
                 ("s8_cip1", "s8", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
                 ("u8_cip0", "u8", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)),
                 ("s8_k2", "s8", dict(kernel_shape=[2, 2], strides=[1, 1]))]
    elif op == "MaxPool":
        cases = [("s8", "s8", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
                 ("u8", "u8", dict(kernel_shape=[2, 2], strides=[2, 2]))]
    else:
        cases = [("s8", "s8", {}), ("u8", "u8", {})]
    for var, kind, attrs in cases:
        name = f"qdq_{op}/{var}"
        x = uniform(name, shape, -1.0, 1.5)
        sx, zx = qparams(x.min(), x.max(), kind, 0.95)
        fx = dequant(quant(x, sx, zx, kind), sx, zx)
        fy = float_op(op, [fx], attrs)
        g = B()
        g.Q("input", g.qp("x", sx, zx), "x_q")
        g.DQ("x_q", ("x_scale", "x_zero_point"), "x_dq")
        g.n(op, ["x_dq"], "y", **attrs)
        # the quantizer gives MaxPool's output the input's scale/zero point; s8 MaxPool does that
        qdq_tail(g, "y", fy, kind, same=(sx, zx) if (op == "MaxPool" and kind == "s8") else None)
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind, "attributes": attrs}))
    return res


def m_qdq_binary(op):
    res = []
    shape = [1, 4, 5, 5]
    for var, kind, bmode in [("s8", "s8", "const"), ("u8", "u8", "const"), ("s8_x2", "s8", "x2")]:
        name = f"qdq_{op}/{var}"
        rng = rng_for(name)
        x = uniform(name, shape, -1.0, 1.5)
        sa, za = qparams(x.min(), x.max(), kind, 0.95)
        fa = dequant(quant(x, sa, za, kind), sa, za)
        g = B()
        g.Q("input", g.qp("a", sa, za), "a_q")
        g.DQ("a_q", ("a_scale", "a_zero_point"), "a_dq")
        if bmode == "x2":
            sb, zb = qparams(x.min(), x.max(), kind, 0.8)
            fb = dequant(quant(x, sb, zb, kind), sb, zb)
            g.Q("input", g.qp("b", sb, zb), "b_q")
        else:
            sb, zb = qparams(-0.7, 1.2, kind)
            bq = int_weights(rng, [4, 1, 1], kind, KINDS[kind][2], KINDS[kind][3])   # broadcast constant
            fb = dequant(bq, sb, zb)
            g.c("b_q", bq)
            g.qp("b", sb, zb)
        g.DQ("b_q", ("b_scale", "b_zero_point"), "b_dq")
        g.n(op, ["a_dq", "b_dq"], "y")
        fy = fa + fb if op == "Add" else fa * fb
        qdq_tail(g, "y", fy, kind, 0.9)
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind}))
    return res


def m_qdq_concat():
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("s8", "s8"), ("u8", "u8")]:
        name = f"qdq_Concat/{var}"
        rng = rng_for(name)
        x = uniform(name, shape, -1.0, 1.5)
        sa, za = qparams(x.min(), x.max(), kind)
        sb, zb = qparams(x.min(), x.max(), kind, 0.7)
        sc, zc = qparams(-2.0, 0.5, kind)
        cq = int_weights(rng, [1, 2, 5, 5], kind, KINDS[kind][2], KINDS[kind][3])
        g = B()
        g.Q("input", g.qp("a", sa, za), "a_q")
        g.DQ("a_q", ("a_scale", "a_zero_point"), "a_dq")
        g.Q("input", g.qp("b", sb, zb), "b_q")
        g.DQ("b_q", ("b_scale", "b_zero_point"), "b_dq")
        g.c("c_q", cq)
        g.DQ("c_q", g.qp("c", sc, zc), "c_dq")
        g.n("Concat", ["a_dq", "b_dq", "c_dq"], "y", axis=1)
        qdq_tail(g, "y", np.array([-2.0, 1.5]), kind)
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind}))
    return res


def m_qdq_conv():
    """DQ(x) -> Conv(DQ(w int8, per-channel axis 0), DQ(bias int32, scale x_scale*w_scale[c])) -> Q."""
    res = []
    shape = [1, 4, 5, 5]
    attrs = dict(pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    for var, kind in [("s8_pc", "s8"), ("u8_pc", "u8")]:
        name = f"qdq_Conv/{var}"
        rng = rng_for(name)
        x = uniform(name, shape, -1.0, 1.5)
        sx, zx = qparams(x.min(), x.max(), kind)
        M = 6
        w = int_weights(rng, [M, 4, 3, 3], "s8", -127, 127)
        sw = rng.uniform(0.003, 0.01, size=M).astype(np.float32)
        bias = rng.integers(-2000, 2000, size=M).astype(np.int32)
        sbias = (sx * sw).astype(np.float32)
        fx = dequant(quant(x, sx, zx, kind), sx, zx)
        fy = float_op("Conv", [fx, w.astype(np.float32) * sw.reshape(-1, 1, 1, 1), bias * sbias], attrs)
        g = B()
        g.Q("input", g.qp("x", sx, zx), "x_q")
        g.DQ("x_q", ("x_scale", "x_zero_point"), "x_dq")
        g.c("w_q", w)
        g.DQ("w_q", g.qp("w", sw, np.zeros(M, np.int8)), "w_dq", axis=0)
        g.c("bias_q", bias)
        g.DQ("bias_q", g.qp("bias", sbias, np.zeros(M, np.int32)), "bias_dq", axis=0)
        g.n("Conv", ["x_dq", "w_dq", "bias_dq"], "y", **attrs)
        qdq_tail(g, "y", fy, kind, 0.9)
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind, "weight_type": "s8",
                                                        "per_channel": True}))
    return res


# ---- plain ops, symbolic batch, ArgMax, Softmax -------------------------------------------------


def m_plain_ops():
    """NHWC float input -> Q -> Transpose (to NCHW) -> Pad (zero point) -> QLinearConv -> Clip (int) ->
    Reshape -> Unsqueeze -> Squeeze -> Identity -> DQ -> Relu -> Q -> DQ."""
    res = []
    shape = [1, 5, 5, 4]
    for var, kind in [("s8", "s8"), ("u8", "u8")]:
        name = f"plain_ops/{var}"
        rng = rng_for(name)
        et, npt, qmin, qmax = KINDS[kind]
        x = uniform(name, shape, -1.0, 1.5)
        sx, zx = qparams(x.min(), x.max(), kind)
        w = int_weights(rng, [6, 4, 3, 3], "s8", -127, 127)
        sw = np.float32(0.006)
        bias = rng.integers(-2000, 2000, size=6).astype(np.int32)
        fx = dequant(quant(x, sx, zx, kind), sx, zx).transpose(0, 3, 1, 2)
        fx = np.pad(fx, [(0, 0), (0, 0), (1, 1), (1, 1)])
        fy = float_op("Conv", [fx, w.astype(np.float32) * sw, bias * (sx * sw)], dict(kernel_shape=[3, 3]))
        sy, zy = qparams(fy.min(), fy.max(), kind)
        clip_lo, clip_hi = npt(int(zy) - 40), npt(min(int(zy) + 60, qmax))
        g = B()
        g.Q("input", g.qp("x", sx, zx), "x_q")
        g.n("Transpose", ["x_q"], "x_nchw", perm=[0, 3, 1, 2])
        g.c("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
        g.n("Pad", ["x_nchw", "pads", "x_zero_point"], "x_pad", mode="constant")
        g.c("w_q", w)
        g.qp("w", sw, np.int8(0))
        g.qp("y", sy, zy)
        g.c("bias", bias)
        g.n("QLinearConv", ["x_pad", "x_scale", "x_zero_point", "w_q", "w_scale", "w_zero_point", "y_scale",
                            "y_zero_point", "bias"], "y_q", kernel_shape=[3, 3])
        g.c("clip_min", np.asarray(clip_lo))
        g.c("clip_max", np.asarray(clip_hi))
        g.n("Clip", ["y_q", "clip_min", "clip_max"], "y_clip")
        g.c("shape", np.array([1, 6, 25], np.int64))
        g.n("Reshape", ["y_clip", "shape"], "y_flat")
        g.c("axes", np.array([2], np.int64))
        g.n("Unsqueeze", ["y_flat", "axes"], "y_unsq")
        g.n("Squeeze", ["y_unsq", "axes"], "y_sq")
        g.n("Identity", ["y_sq"], "y_id")
        g.DQ("y_id", ("y_scale", "y_zero_point"), "y_dq")
        g.n("Relu", ["y_dq"], "y_relu")
        fr = np.maximum(dequant(np.array([clip_lo, clip_hi]), sy, zy), 0)
        s2, z2 = qparams(0.0, fr.max(), kind, 0.8)
        g.Q("y_relu", g.qp("out", s2, z2), "out_q")
        g.DQ("out_q", ("out_scale", "out_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind, "input_layout": "NHWC"}))
    return res


def m_symbolic_batch():
    """Input with a symbolic batch dimension "N" (dim_param)."""
    res = []
    for var in ["s8_gemm", "s8_conv"]:
        name = f"symbolic_batch/{var}"
        rng = rng_for(name)
        kind = "s8"
        g = B()
        if var == "s8_gemm":
            shape = ["N", 8]
            x = uniform(name, [1, 8], -1.0, 1.0)
            sa, za = qparams(x.min(), x.max(), kind)
            w = int_weights(rng, [10, 8])
            bias = rng.integers(-3000, 3000, size=10).astype(np.int32)
            fy = dequant(quant(x, sa, za, kind), sa, za) @ (w.astype(np.float32).T * 0.008) + bias * (sa * 0.008)
            sy, zy = qparams(fy.min(), fy.max(), kind, 0.9)
            g.Q("input", g.qp("A", sa, za), "A_q")
            g.c("B_q", w)
            g.qp("B", np.float32(0.008), np.int8(0))
            g.c("C_bias", bias)
            g.qp("Y", sy, zy)
            g.n("QGemm", ["A_q", "A_scale", "A_zero_point", "B_q", "B_scale", "B_zero_point", "C_bias", "Y_scale",
                          "Y_zero_point"], "Y_q", domain=MS, transB=1)
            g.DQ("Y_q", ("Y_scale", "Y_zero_point"), "logits")
            out_shape = ["N", 10]
        else:
            shape = ["N", 4, 5, 5]
            x = uniform(name, [1, 4, 5, 5], -1.0, 1.5)
            sx, zx = qparams(x.min(), x.max(), kind)
            w = int_weights(rng, [8, 4, 3, 3], "s8", -127, 127)
            bias = rng.integers(-2000, 2000, size=8).astype(np.int32)
            fx = dequant(quant(x, sx, zx, kind), sx, zx)
            fy = float_op("Conv", [fx, w.astype(np.float32) * 0.006, bias * (sx * np.float32(0.006))],
                          dict(pads=[1, 1, 1, 1]))
            sy, zy = qparams(fy.min(), fy.max(), kind, 0.9)
            g.Q("input", g.qp("x", sx, zx), "x_q")
            g.c("w_q", w)
            g.qp("w", np.float32(0.006), np.int8(0))
            g.qp("y", sy, zy)
            g.c("bias", bias)
            g.n("QLinearConv", ["x_q", "x_scale", "x_zero_point", "w_q", "w_scale", "w_zero_point", "y_scale",
                                "y_zero_point", "bias"], "y_q", pads=[1, 1, 1, 1], kernel_shape=[3, 3])
            fg = np.maximum(fy, fy.min()).mean(axis=(2, 3))
            sg, zg = qparams(fg.min(), fg.max(), kind)
            g.qp("g", sg, zg)
            g.n("QLinearGlobalAveragePool", ["y_q", "y_scale", "y_zero_point", "g_scale", "g_zero_point"], "g_q",
                domain=MS, channels_last=0)
            g.DQ("g_q", ("g_scale", "g_zero_point"), "logits")
            out_shape = ["N", 8, 1, 1]
        res.append((var, g.model(TP.FLOAT, shape, TP.FLOAT, out_shape), x,
                    {"activation_type": kind, "symbolic_batch": True}))
    return res


def m_argmax_softmax(tail):
    res = []
    variants = {"ArgMax": [("s8", "s8", "float"), ("s8_int8argmax", "s8", "int")],
                "Softmax": [("s8", "s8", None), ("u8", "u8", None)]}[tail]
    for var, kind, where in variants:
        name = f"{tail}/{var}"
        rng = rng_for(name)
        x = uniform(name, [1, 8], -1.0, 1.0)
        sa, za = qparams(x.min(), x.max(), kind)
        w = int_weights(rng, [8, 10], "s8", -127, 127)
        fy = dequant(quant(x, sa, za, kind), sa, za) @ (w.astype(np.float32) * 0.01)
        sy, zy = qparams(fy.min(), fy.max(), kind, 0.9)
        g = B()
        g.Q("input", g.qp("a", sa, za), "a_q")
        g.c("b_q", w)
        g.qp("b", np.float32(0.01), np.int8(0))
        g.qp("y", sy, zy)
        g.n("QLinearMatMul", ["a_q", "a_scale", "a_zero_point", "b_q", "b_scale", "b_zero_point", "y_scale",
                              "y_zero_point"], "y_q")
        if tail == "ArgMax":
            if where == "float":
                g.DQ("y_q", ("y_scale", "y_zero_point"), "y")
                g.n("ArgMax", ["y"], "logits", axis=1, keepdims=0)
            else:
                g.n("ArgMax", ["y_q"], "logits", axis=1, keepdims=0)
            m = g.model(TP.FLOAT, [1, 8], TP.INT64, [1])
        else:
            g.DQ("y_q", ("y_scale", "y_zero_point"), "y")
            g.n("Softmax", ["y"], "logits", axis=-1)
            m = g.model(TP.FLOAT, [1, 8], TP.FLOAT, [1, 10])
        res.append((var, m, x, {"activation_type": kind}))
    return res


def qdq_in(g, name, kind, shape, lo=-1.0, hi=1.5):
    """Input -> Q -> DQ ("x_dq"); returns the inputs and the dequantized float values."""
    x = uniform(name, shape, lo, hi)
    sx, zx = qparams(x.min(), x.max(), kind, 0.95)
    g.Q("input", g.qp("x", sx, zx), "x_q")
    g.DQ("x_q", ("x_scale", "x_zero_point"), "x_dq")
    return x, dequant(quant(x, sx, zx, kind), sx, zx)


def requant(g, name, fy, kind, shrink=1.0):
    """float `name` -> Q -> DQ (`name`_dq) with MinMax parameters for the values fy."""
    s, z = qparams(fy.min(), fy.max(), kind, shrink)
    g.Q(name, g.qp(name, s, z), name + "_q")
    g.DQ(name + "_q", (name + "_scale", name + "_zero_point"), name + "_dq")
    return dequant(quant(fy, s, z, kind), s, z)


def hard_sigmoid(x, alpha, beta):
    return np.clip(alpha * x + beta, 0.0, 1.0).astype(np.float32)


def m_qdq_hardswish():
    """HardSigmoid, HardSwish and the activations MobileNetV3 multiplies."""
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("hardsigmoid_s8", "s8"), ("hardswish_u8", "u8"), ("inline_s8", "s8"), ("se_u8", "u8")]:
        name = f"qdq_HardSwish/{var}"
        g = B()
        x, fx = qdq_in(g, name, kind, shape, -4.0, 4.0)
        opset = 13
        if var.startswith("hardsigmoid"):
            g.n("HardSigmoid", ["x_dq"], "y", alpha=0.2, beta=0.6)
            fy = hard_sigmoid(fx, 0.2, 0.6)
        elif var.startswith("hardswish"):
            g.n("HardSwish", ["x_dq"], "y")
            fy = fx * hard_sigmoid(fx, 1 / 6, 0.5)
            opset = 14
        elif var.startswith("inline"):
            # quant_pre_process inlines HardSwish as an unnamed HardSigmoid and a Mul
            g.nodes.append(h.make_node("HardSigmoid", ["x_dq"], ["hs"], alpha=1 / 6, beta=0.5))
            fh = requant(g, "hs", hard_sigmoid(fx, 1 / 6, 0.5), kind)
            g.nodes.append(h.make_node("Mul", ["x_dq", "hs_dq"], ["y"]))
            fy = fx * fh
        else:
            # squeeze-excitation: a global pool, its HardSigmoid broadcast over the map
            g.n("GlobalAveragePool", ["x_dq"], "pool")
            fp = requant(g, "pool", fx.mean(axis=(2, 3), keepdims=True), kind)
            g.n("HardSigmoid", ["pool_dq"], "gate", alpha=1 / 6, beta=0.5)
            fgate = requant(g, "gate", hard_sigmoid(fp, 1 / 6, 0.5), kind)
            g.n("Mul", ["gate_dq", "x_dq"], "y")
            fy = fgate * fx
        qdq_tail(g, "y", fy, kind)
        res.append((var, g.model(TP.FLOAT, shape, opset=opset), x, {"activation_type": kind}))
    return res


def m_qdq_silu():
    """SiLU as quantize_static writes it (Sigmoid quantized before the Mul by its input) and
    EfficientNet's squeeze-excitation around it."""
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("silu_s8", "s8"), ("se_u8", "u8")]:
        name = f"qdq_SiLU/{var}"
        g = B()
        x, fx = qdq_in(g, name, kind, shape, -4.0, 4.0)
        g.n("Sigmoid", ["x_dq"], "sig")
        fsig = requant(g, "sig", sigmoid(fx), kind)
        if var.startswith("silu"):
            g.n("Mul", ["x_dq", "sig_dq"], "y")
            fy = fx * fsig
        else:
            g.n("Mul", ["x_dq", "sig_dq"], "silu")
            # the SiLU is read twice: by the pool of the gate and by the gated product
            fsilu = requant(g, "silu", fx * fsig, kind)
            g.n("GlobalAveragePool", ["silu_dq"], "pool")
            fp = requant(g, "pool", fsilu.mean(axis=(2, 3), keepdims=True), kind)
            g.n("Sigmoid", ["pool_dq"], "gate")
            fgate = requant(g, "gate", sigmoid(fp), kind)
            g.n("Mul", ["gate_dq", "silu_dq"], "y")
            fy = fgate * fsilu
        qdq_tail(g, "y", fy, kind)
        res.append((var, g.model(TP.FLOAT, shape, opset=13), x, {"activation_type": kind}))
    return res


def sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def m_qdq_slice():
    """Slice, Split and ShuffleNet's channel shuffle on dequantized tensors."""
    res = []
    shape = [1, 4, 5, 5]
    big = np.iinfo(np.int64).max
    for var, kind in [("slice_s8", "s8"), ("shuffle_u8", "u8"), ("split18_s8", "s8")]:
        name = f"qdq_Slice/{var}"
        g = B()
        x, fx = qdq_in(g, name, kind, shape)
        opset = 13
        if var.startswith("slice"):
            g.c("starts", np.array([1, -4], np.int64))
            g.c("ends", np.array([big, 5], np.int64))
            g.c("axes", np.array([1, 3], np.int64))
            g.c("steps", np.array([2, 2], np.int64))
            g.n("Slice", ["x_dq", "starts", "ends", "axes", "steps"], "y")
            fy = fx[:, 1::2, :, 1:5:2]
        elif var.startswith("shuffle"):
            # ShuffleNetV2: split channels in halves (Slice), concat, shuffle groups of 2
            for part, (a, b) in (("lo", (0, 2)), ("hi", (2, 4))):
                g.c(part + "_starts", np.array([a], np.int64))
                g.c(part + "_ends", np.array([b], np.int64))
                g.c(part + "_axes", np.array([1], np.int64))
                g.n("Slice", ["x_dq", part + "_starts", part + "_ends", part + "_axes"], part)
            g.n("Concat", ["hi", "lo"], "cat", axis=1)
            g.c("shape5", np.array([1, 2, 2, 5, 5], np.int64))
            g.n("Reshape", ["cat", "shape5"], "r5")
            g.n("Transpose", ["r5"], "t5", perm=[0, 2, 1, 3, 4])
            g.c("shape4", np.array([1, 4, 5, 5], np.int64))
            g.n("Reshape", ["t5", "shape4"], "y")
            cat = np.concatenate([fx[:, 2:], fx[:, :2]], axis=1)
            fy = cat.reshape(-1, 2, 2, 5, 5).transpose(0, 2, 1, 3, 4).reshape(-1, 4, 5, 5)
        else:
            # opset 18: Split into equal parts along the rows (3 + 2), concatenated back reversed
            opset = 18
            g.nodes.append(h.make_node("Split", ["x_dq"], ["top", "bottom"], name="Split_rows", axis=2,
                                       num_outputs=2))
            g.n("Concat", ["bottom", "top"], "y", axis=2)
            fy = np.concatenate([fx[:, :, 3:], fx[:, :, :3]], axis=2)
        qdq_tail(g, "y", fy, kind)
        res.append((var, g.model(TP.FLOAT, shape, opset=opset), x, {"activation_type": kind}))
    return res


def m_qdq_reduce():
    """ReduceMean as the dynamo exporter's global pool, and reductions over other axes."""
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("mean_hw_s8", "s8"), ("mean_c_u8", "u8"), ("sum_s8", "s8"), ("max_u8", "u8"),
                      ("min_s8", "s8")]:
        name = f"qdq_Reduce/{var}"
        g = B()
        x, fx = qdq_in(g, name, kind, shape)
        opset = 13
        if var.startswith("mean_hw"):
            # dynamo's ResNet tail: ReduceMean(axes [-1, -2], keepdims) then Reshape [1, C]
            opset = 18
            g.c("axes", np.array([-1, -2], np.int64))
            g.n("ReduceMean", ["x_dq", "axes"], "m", keepdims=1)
            g.c("shape", np.array([1, 4], np.int64))
            g.n("Reshape", ["m", "shape"], "y", allowzero=1)
            fy = fx.mean(axis=(2, 3))
        elif var.startswith("mean_c"):
            g.n("ReduceMean", ["x_dq"], "y", axes=[1], keepdims=0)
            fy = fx.mean(axis=1)
        elif var.startswith("sum"):
            g.c("axes", np.array([1, 3], np.int64))
            g.n("ReduceSum", ["x_dq", "axes"], "y", keepdims=0)
            fy = fx.sum(axis=(1, 3))
        elif var.startswith("max"):
            g.n("ReduceMax", ["x_dq"], "y", axes=[2], keepdims=1)
            fy = fx.max(axis=2, keepdims=True)
        else:
            g.n("ReduceMin", ["x_dq"], "y", axes=[1, 2, 3], keepdims=1)
            fy = fx.min(axis=(1, 2, 3), keepdims=True)
        qdq_tail(g, "y", fy, kind)
        res.append((var, g.model(TP.FLOAT, shape, opset=opset), x, {"activation_type": kind}))
    return res


def m_qdq_float_chain():
    """Float ops between DQ and Q that are one function of one quantized tensor."""
    from math import erf, sqrt
    verf = np.vectorize(erf)
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("gelu_s8", "s8"), ("gelu20_u8", "u8"), ("silu_s8", "s8"), ("rsqrt_u8", "u8"),
                      ("tanh_clip_s8", "s8")]:
        name = f"qdq_FloatChain/{var}"
        g = B()
        x, fx = qdq_in(g, name, kind, shape, -3.0, 3.0)
        opset = 13
        if var.startswith("gelu_"):
            # as torch.onnx exports nn.GELU(): Div, Erf, Add, Mul, Mul
            g.c("sqrt2", np.array(sqrt(2.0), np.float32))
            g.c("one", np.array(1.0, np.float32))
            g.c("half", np.array(0.5, np.float32))
            g.n("Div", ["x_dq", "sqrt2"], "d")
            g.n("Erf", ["d"], "e")
            g.n("Add", ["e", "one"], "a")
            g.n("Mul", ["x_dq", "a"], "m")
            g.n("Mul", ["m", "half"], "y")
            fy = 0.5 * fx * (1 + verf(fx / np.float32(sqrt(2.0))))
        elif var.startswith("gelu20"):
            opset = 20
            g.n("Gelu", ["x_dq"], "y", approximate="tanh")
            fy = 0.5 * fx * (1 + np.tanh(np.sqrt(2 / np.pi) * (fx + 0.044715 * fx ** 3)))
        elif var.startswith("silu"):
            g.n("Sigmoid", ["x_dq"], "sig")
            g.n("Mul", ["x_dq", "sig"], "y")
            fy = fx / (1 + np.exp(-fx))
        elif var.startswith("rsqrt"):
            # a normalization's 1 / sqrt(x^2 + eps)
            g.c("two", np.array(2.0, np.float32))
            g.c("eps", np.array(1e-3, np.float32))
            g.n("Pow", ["x_dq", "two"], "p")
            g.n("Add", ["p", "eps"], "pe")
            g.n("Sqrt", ["pe"], "r")
            g.n("Reciprocal", ["r"], "y")
            fy = 1 / np.sqrt(fx ** 2 + 1e-3)
        else:
            g.c("k", np.array(0.7, np.float32))
            g.c("b", np.array(0.3, np.float32))
            g.c("lo", np.array(-0.5, np.float32))
            g.c("hi", np.array(0.8, np.float32))
            g.n("Mul", ["x_dq", "k"], "xk")
            g.n("Add", ["xk", "b"], "xb")
            g.n("Tanh", ["xb"], "t")
            g.n("Clip", ["t", "lo", "hi"], "y")
            fy = np.clip(np.tanh(fx * 0.7 + 0.3), -0.5, 0.8)
        qdq_tail(g, "y", fy.astype(np.float32), kind)
        res.append((var, g.model(TP.FLOAT, shape, opset=opset), x, {"activation_type": kind}))
    return res


def m_qdq_softmax():
    """Softmax inside the network: DQ -> (Div by a constant) -> Softmax -> Q, on the last axis and on an
    inner one, int8 and uint8 (the output parameters onnxruntime's quantizer gives a softmax: 1/256 or 1/255)."""
    res = []
    for var, kind, shape, axis, div in [("s8_last", "s8", [1, 3, 10], -1, None),
                                        ("u8_inner", "u8", [1, 4, 5, 3], 1, None),
                                        ("s8_scaled", "s8", [1, 2, 6, 16], -1, 2.828427)]:
        name = f"QDQSoftmax/{var}"
        g = B()
        x, _ = qdq_in(g, name, kind, shape, -3.0, 4.0)
        src = "x_dq"
        if div is not None:
            g.c("d", np.asarray(np.float32(div)))
            src = g.n("Div", [src, "d"], "x_div")
        g.n("Softmax", [src], "p", axis=axis)
        sy, zy = (np.float32(1 / 256), np.int8(-128)) if kind == "s8" else (np.float32(1 / 255), np.uint8(0))
        g.Q("p", g.qp("y", sy, zy), "y_q")
        g.DQ("y_q", ("y_scale", "y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape, TP.FLOAT, shape), x, {"activation_type": kind, "axis": axis}))
    return res


def m_qlinear_softmax():
    """com.microsoft QLinearSoftmax (what onnxruntime's QOperator quantizer writes for a Softmax)."""
    res = []
    for var, kind, shape, axis in [("u8", "u8", [1, 3, 12], -1), ("s8_inner", "s8", [1, 5, 4], 1)]:
        name = f"QLinearSoftmax/{var}"
        x = uniform(name, shape, -2.0, 3.0)
        sx, zx = qparams(x.min(), x.max(), kind, 0.95)
        sy, zy = (np.float32(1 / 256), np.int8(-128)) if kind == "s8" else (np.float32(1 / 256), np.uint8(0))
        g = B()
        g.Q("input", g.qp("x", sx, zx), "x_q")
        g.qp("y", sy, zy)
        g.n("QLinearSoftmax", ["x_q", "x_scale", "x_zero_point", "y_scale", "y_zero_point"], "y_q", domain=MS,
            axis=axis, opset=13)
        g.DQ("y_q", ("y_scale", "y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape, TP.FLOAT, shape), x, {"activation_type": kind, "axis": axis}))
    return res


def layer_norm(x, axis, gamma, beta, eps):
    axes = tuple(range(axis % x.ndim, x.ndim))
    m = x.mean(axis=axes, keepdims=True)
    v = ((x - m) ** 2).mean(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * gamma + (0 if beta is None else beta)


def m_qdq_layernorm():
    """LayerNormalization (opset 17) between DQ and Q: over the last axis, over the last two, without a bias."""
    res = []
    for var, kind, shape, axis, bias, eps in [("s8_last", "s8", [1, 4, 16], -1, True, 1e-5),
                                              ("u8_two_axes", "u8", [1, 3, 4, 5], 2, True, 1e-5),
                                              ("s8_nobias", "s8", [1, 2, 64], -1, False, 1e-3)]:
        name = f"QDQLayerNorm/{var}"
        rng = rng_for(name)
        g = B()
        x, xd = qdq_in(g, name, kind, shape, -2.0, 3.0)
        norm = shape[axis % len(shape):]
        gamma = rng.uniform(0.5, 1.5, norm).astype(np.float32)
        beta = rng.uniform(-0.3, 0.3, norm).astype(np.float32) if bias else None
        g.c("gamma", gamma)
        ins = ["x_dq", "gamma"]
        if bias:
            ins.append(g.c("beta", beta))
        g.n("LayerNormalization", ins, "ln", axis=axis, epsilon=eps)
        fy = layer_norm(xd.astype(np.float64), axis, gamma, beta, eps)
        sy, zy = qparams(fy.min(), fy.max(), kind)
        g.Q("ln", g.qp("y", sy, zy), "y_q")
        g.DQ("y_q", ("y_scale", "y_zero_point"), "logits")
        res.append((var, g.model(TP.FLOAT, shape, TP.FLOAT, shape, opset=17), x,
                    {"activation_type": kind, "axis": axis}))
    return res


def m_qdq_gather_resize():
    """Gather with constant indices and nearest-neighbour Resize on dequantized tensors."""
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("gather_s8", "s8"), ("gather_scalar_u8", "u8"), ("resize2x_s8", "s8"),
                      ("resize_sizes_u8", "u8")]:
        name = f"qdq_GatherResize/{var}"
        g = B()
        x, fx = qdq_in(g, name, kind, shape)
        if var.startswith("gather_s8"):
            g.c("idx", np.array([3, 1, 1], np.int64))
            g.n("Gather", ["x_dq", "idx"], "y", axis=1)
            fy = fx[:, [3, 1, 1]]
        elif var.startswith("gather_scalar"):
            # a class token: one position, its axis dropped
            g.c("idx", np.array(-1, np.int64))
            g.n("Gather", ["x_dq", "idx"], "y", axis=3)
            fy = fx[:, :, :, -1]
        elif var.startswith("resize2x"):
            # an FPN / U-Net upsampling: scales [1, 1, 2, 2], the defaults (half_pixel,
            # round_prefer_floor)
            g.c("roi", np.array([], np.float32))
            g.c("scales", np.array([1, 1, 2, 2], np.float32))
            g.n("Resize", ["x_dq", "roi", "scales"], "y", mode="nearest")
            fy = fx.repeat(2, axis=2).repeat(2, axis=3)
        else:
            g.c("roi", np.array([], np.float32))
            g.c("scales", np.array([], np.float32))
            g.c("sizes", np.array([1, 4, 7, 3], np.int64))
            g.n("Resize", ["x_dq", "roi", "scales", "sizes"], "y", mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            fy = fx
        qdq_tail(g, "y", fy, kind)
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind}))
    return res


def m_qdq_batchnorm():
    """BatchNormalization left unfolded between DQ and Q (as an MXNet export keeps it)."""
    res = []
    shape = [1, 4, 5, 5]
    for var, kind in [("bn_s8", "s8"), ("bn_relu_u8", "u8")]:
        name = f"qdq_BatchNorm/{var}"
        rng = rng_for(name)
        g = B()
        x, fx = qdq_in(g, name, kind, shape)
        gamma = np.array([1.3, -0.6, 0.8, 2.1], np.float32)   # one negative scale
        beta = rng.uniform(-0.5, 0.5, 4).astype(np.float32)
        mean = rng.uniform(-0.3, 0.3, 4).astype(np.float32)
        var_ = rng.uniform(0.2, 1.5, 4).astype(np.float32)
        for n, v in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var_)):
            g.c(n, v)
        out = "bn" if "relu" in var else "y"
        g.n("BatchNormalization", ["x_dq", "gamma", "beta", "mean", "var"], out, epsilon=1e-3)
        c = lambda v: v.reshape(1, 4, 1, 1)
        fy = c(gamma) * (fx - c(mean)) / np.sqrt(c(var_) + 1e-3) + c(beta)
        if "relu" in var:
            g.n("Relu", ["bn"], "y")
            fy = np.maximum(fy, 0)
        qdq_tail(g, "y", fy.astype(np.float32), kind)
        res.append((var, g.model(TP.FLOAT, shape), x, {"activation_type": kind}))
    return res


# ---- dynamic quantization (onnxruntime's quantize_dynamic pattern) ----------------------------


def dynamic_rows(name, shape):
    """Reference rows for dynamic quantization: uniform ones, and the edge cases of a range picked
    at run time (all zero, all negative, a tiny range, a large one, one outlier)."""
    x = uniform(name, shape, -1.0, 1.5)
    x[0] = 0.0
    x[1] = -np.abs(x[1])
    x[2] *= 1e-2
    x[3] *= 300.0
    x[4].flat[0] = 40.0
    return x


def dyn_linear(g, x, w, ws, wz, bias, out, conv=None):
    """DynamicQuantizeLinear -> MatMulInteger/ConvInteger -> Cast -> Mul(x_scale * w_scale) -> Add(bias)."""
    p = f"l{len(g.nodes)}"
    g.nodes.append(h.make_node("DynamicQuantizeLinear", [x], [p + "_q", p + "_s", p + "_z"], name=p + "_dql"))
    g.c(p + "_w", w)
    g.c(p + "_ws", np.asarray(np.float32(ws)))
    g.c(p + "_wz", np.asarray(wz))
    g.n("Mul", [p + "_s", p + "_ws"], p + "_scale")
    if conv is None:
        g.n("MatMulInteger", [p + "_q", p + "_w", p + "_z", p + "_wz"], p + "_acc")
    else:
        g.n("ConvInteger", [p + "_q", p + "_w", p + "_z", p + "_wz"], p + "_acc", **conv)
    g.n("Cast", [p + "_acc"], p + "_accf", to=TP.FLOAT)
    g.n("Mul", [p + "_accf", p + "_scale"], p + "_y")
    g.c(p + "_b", bias.astype(np.float32))
    return g.n("Add", [p + "_y", p + "_b"], out)


def m_dynamic():
    """What quantize_dynamic writes: the activation scale and zero point picked from each tensor at
    run time, a float tail between the integer products."""
    res = []
    # mlp: two MatMulInteger layers (int8 then uint8 weights with a zero point).
    name = "Dynamic/mlp"
    rng = rng_for(name)
    g = B()
    h1 = dyn_linear(g, "input", int_weights(rng, [16, 12], "s8", -127, 127), 0.011, np.int8(0),
                    rng.uniform(-0.5, 0.5, 12), "h1")
    g.n("Relu", [h1], "h1r")
    dyn_linear(g, "h1r", int_weights(rng, [12, 6], "u8", 0, 255), 0.0093, np.uint8(131),
               rng.uniform(-0.5, 0.5, 6), "logits")
    res.append(("mlp", g.model(TP.FLOAT, [1, 16], TP.FLOAT, [1, 6]), dynamic_rows(name, [1, 16]),
                {"activation_type": "u8", "weight_type": "s8"}))
    # cnn: ConvInteger (uint8 weights, zero point), Relu, MaxPool, Flatten, MatMulInteger.
    name = "Dynamic/cnn"
    rng = rng_for(name)
    g = B()
    c1 = dyn_linear(g, "input", int_weights(rng, [4, 2, 3, 3], "u8", 0, 255), 0.0071, np.uint8(118),
                    rng.uniform(-0.3, 0.3, (1, 4, 1, 1)), "c1",
                    conv=dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    g.n("Relu", [c1], "c1r")
    g.n("MaxPool", ["c1r"], "p1", kernel_shape=[2, 2], strides=[2, 2])
    g.n("Flatten", ["p1"], "f1", axis=1)
    dyn_linear(g, "f1", int_weights(rng, [36, 5], "s8", -127, 127), 0.0088, np.int8(0),
               rng.uniform(-0.5, 0.5, 5), "logits")
    res.append(("cnn", g.model(TP.FLOAT, [1, 2, 6, 6], TP.FLOAT, [1, 5]), dynamic_rows(name, [1, 2, 6, 6]),
                {"activation_type": "u8", "weight_type": "u8"}))
    return res


OP_MODELS = [
    ("op_qlinearadd", "com.microsoft QLinearAdd on [1,4,5,5] (B: constant full / broadcast [1,4,1,1] / "
                      "second quantization of the input)", lambda: m_qlinear_binary("QLinearAdd")),
    ("op_qlinearmul", "com.microsoft QLinearMul, same cases as op_qlinearadd", lambda: m_qlinear_binary("QLinearMul")),
    ("op_qlinearaveragepool", "com.microsoft QLinearAveragePool 3x3 stride 2 pads 1, count_include_pad 0/1",
     m_qlinear_avgpool),
    ("op_qlinearglobalaveragepool", "com.microsoft QLinearGlobalAveragePool channels_last=0, [1,4,5,5]->[1,4,1,1]",
     m_qlinear_gap),
    ("op_qlinearconcat", "com.microsoft QLinearConcat axis 1 of two quantizations of the input and a constant",
     m_qlinear_concat),
    ("op_qlinearleakyrelu", "com.microsoft QLinearLeakyRelu alpha=0.1", lambda: m_qlinear_unary("QLinearLeakyRelu")),
    ("op_qlinearsigmoid", "com.microsoft QLinearSigmoid, output scale 1/256", lambda: m_qlinear_unary("QLinearSigmoid")),
    ("op_qgemm", "com.microsoft QGemm [1,8]x[6,8]^T (transB=1) + int32 bias; per-tensor, per-column, float output",
     m_qgemm),
    ("op_qlinearconv", "ai.onnx QLinearConv depthwise group=4 (x2 multiplier) stride 2 pads 2 dilation 2 on "
                       "[1,4,7,7]; s8_g2: group=2, asymmetric pads", m_qlinear_conv),
    ("op_qlinearmatmul", "ai.onnx QLinearMatMul [1,8]x[8,6] (s8_3d: [1,3,8]x[8,6])", m_qlinear_matmul),
    ("op_matmulinteger", "ai.onnx MatMulInteger with an int8/uint8 model input, nonzero zero points; int32 -> Cast "
                         "-> Mul(scale) float output (s8_i32out: int32 output)", m_matmul_integer),
    ("op_convinteger", "ai.onnx ConvInteger with an int8/uint8 model input; int32 -> Cast -> Mul(scale)",
     m_conv_integer),
    ("op_qdq_averagepool", "QDQ: DQ -> AveragePool -> Q", lambda: m_qdq_pool("AveragePool")),
    ("op_qdq_globalaveragepool", "QDQ: DQ -> GlobalAveragePool -> Q", lambda: m_qdq_pool("GlobalAveragePool")),
    ("op_qdq_maxpool", "QDQ: DQ -> MaxPool -> Q", lambda: m_qdq_pool("MaxPool")),
    ("op_qdq_concat", "QDQ: DQ x3 -> Concat -> Q", m_qdq_concat),
    ("op_qdq_add", "QDQ: DQ, DQ -> Add -> Q (broadcast constant or input twice)", lambda: m_qdq_binary("Add")),
    ("op_qdq_mul", "QDQ: DQ, DQ -> Mul -> Q (broadcast constant or input twice)", lambda: m_qdq_binary("Mul")),
    ("op_qdq_conv", "QDQ: DQ -> Conv (per-channel int8 weights, int32 bias) -> Q", m_qdq_conv),
    ("op_plain_ops", "NHWC input; int8 Transpose, Pad, QLinearConv, Clip, Reshape, Unsqueeze, Squeeze, Identity; "
                     "DQ -> Relu -> Q", m_plain_ops),
    ("op_symbolic_batch", "symbolic batch dimension N (QGemm; QLinearConv + QLinearGlobalAveragePool)",
     m_symbolic_batch),
    ("op_argmax", "QLinearMatMul then ArgMax (on the dequantized float, or on the int8 tensor); int64 output",
     lambda: m_argmax_softmax("ArgMax")),
    ("op_softmax", "QLinearMatMul -> DequantizeLinear -> Softmax", lambda: m_argmax_softmax("Softmax")),
    ("op_qdq_hardswish", "QDQ: HardSigmoid, HardSwish (opset 14), HardSwish inlined as HardSigmoid + Mul of two "
                         "activations, squeeze-excitation (GlobalAveragePool, HardSigmoid, broadcast Mul)",
     m_qdq_hardswish),
    ("op_qdq_silu", "QDQ: SiLU with its Sigmoid quantized before the Mul by its input (quantize_static), and "
                    "read twice by a squeeze-excitation gate (GlobalAveragePool, Sigmoid, Mul)", m_qdq_silu),
    ("op_qdq_slice", "QDQ: Slice (negative start, INT64_MAX end, steps 2 on two axes), ShuffleNet's channel split "
                     "(Slice), Concat and shuffle (Reshape 5-D, Transpose, Reshape), opset-18 Split",
     m_qdq_slice),
    ("op_qdq_float_chain", "QDQ: float ops between DQ and Q that are one function of one tensor: GELU as "
                           "Div/Erf/Add/Mul/Mul, Gelu-20 (tanh), SiLU (Sigmoid, Mul by its input), "
                           "Pow/Add/Sqrt/Reciprocal, Mul/Add/Tanh/Clip", m_qdq_float_chain),
    ("op_qdq_gather_resize", "QDQ: Gather with constant indices (a list along C; a scalar index dropping W), "
                             "nearest Resize (scales 2x2 with the defaults; sizes [1,4,7,3] asymmetric floor)",
     m_qdq_gather_resize),
    ("op_qdq_batchnorm", "QDQ: BatchNormalization unfolded between DQ and Q (one negative scale), alone and "
                         "followed by Relu", m_qdq_batchnorm),
    ("op_qdq_reduce", "QDQ: ReduceMean over H, W (opset 18 axes input) + Reshape as dynamo exports a global "
                      "pool; ReduceMean over C (keepdims 0), ReduceSum, ReduceMax, ReduceMin",
     m_qdq_reduce),
    ("op_qdq_softmax", "QDQ: Softmax inside the network (DQ -> Softmax -> Q) on the last axis, on an inner axis, "
                       "and after a Div by a constant (attention's scaling)", m_qdq_softmax),
    ("op_qlinearsoftmax", "com.microsoft QLinearSoftmax (opset 13 semantics) on the last axis and on an inner one",
     m_qlinear_softmax),
    ("op_qdq_layernorm", "QDQ: LayerNormalization (opset 17) between DQ and Q: last axis, last two axes, no bias",
     m_qdq_layernorm),
    ("op_dynamic", "dynamic quantization as quantize_dynamic writes it: DynamicQuantizeLinear -> MatMulInteger / "
                   "ConvInteger -> Cast -> Mul by the run-time scale -> Add bias -> Relu (MaxPool, Flatten); rows "
                   "with all zeros, all negatives, a tiny range, a large one, an outlier", m_dynamic),
]

# ----------------------------------------------------------------------------------------------
# Part A: PyTorch models on digits


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    X = (d.images.reshape(-1, 64) / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    test = np.arange(len(X)) % 4 == 3
    return X[~test], y[~test], X[test], y[test]


def encoder_models(out, tmp):
    """A one-layer transformer encoder (post-LN, 2 heads, S=8, D=16; GELU as Div/Erf/Add/Mul/Mul) built
    with onnx.helper in float, then quantized by onnxruntime's quantize_static (after quant_pre_process
    without its graph optimizations, which would merge the batch into Gemm rows) as QDQ s8 per tensor,
    QDQ s8 per channel and QOperator u8. Yields (model name, variant, model, x, meta)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    S, D, H = 8, 16, 2
    dh = D // H
    rng = np.random.default_rng(zlib.crc32(b"tiny_encoder"))
    g = B()

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)

    def small(n):
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    for k in "qkv":
        g.c(f"W{k}", w(D, D))
        g.c(f"b{k}", small(D))
        g.n("MatMul", ["input", f"W{k}"], f"{k}0")
        g.n("Add", [f"{k}0", f"b{k}"], f"{k}1")
        g.c(f"shape_{k}", np.array([0, S, H, dh], np.int64))
        g.n("Reshape", [f"{k}1", f"shape_{k}"], f"{k}2")
        g.n("Transpose", [f"{k}2"], f"{k}3", perm=[0, 2, 3, 1] if k == "k" else [0, 2, 1, 3])
    g.n("MatMul", ["q3", "k3"], "att0")
    g.c("sqrt_dh", np.array(np.sqrt(dh), np.float32))
    g.n("Div", ["att0", "sqrt_dh"], "att1")
    g.n("Softmax", ["att1"], "att2", axis=-1)
    g.n("MatMul", ["att2", "v3"], "ctx0")
    g.n("Transpose", ["ctx0"], "ctx1", perm=[0, 2, 1, 3])
    g.c("shape_o", np.array([0, S, D], np.int64))
    g.n("Reshape", ["ctx1", "shape_o"], "ctx2")
    g.c("Wo", w(D, D))
    g.c("bo", small(D))
    g.n("MatMul", ["ctx2", "Wo"], "o0")
    g.n("Add", ["o0", "bo"], "o1")
    g.n("Add", ["o1", "input"], "r1")
    g.c("ln1_g", (1 + small(D)).astype(np.float32))
    g.c("ln1_b", small(D))
    g.n("LayerNormalization", ["r1", "ln1_g", "ln1_b"], "ln1", axis=-1, epsilon=1e-5)
    g.c("W1", w(D, 4 * D))
    g.c("b1", small(4 * D))
    g.n("MatMul", ["ln1", "W1"], "f0")
    g.n("Add", ["f0", "b1"], "f1")
    g.c("sqrt2", np.array(np.sqrt(2), np.float32))
    g.c("one", np.array(1, np.float32))
    g.c("half", np.array(0.5, np.float32))
    g.n("Div", ["f1", "sqrt2"], "e0")
    g.n("Erf", ["e0"], "e1")
    g.n("Add", ["e1", "one"], "e2")
    g.n("Mul", ["f1", "e2"], "e3")
    g.n("Mul", ["e3", "half"], "f2")
    g.c("W2", w(4 * D, D))
    g.c("b2", small(D))
    g.n("MatMul", ["f2", "W2"], "f3")
    g.n("Add", ["f3", "b2"], "f4")
    g.n("Add", ["f4", "ln1"], "r2")
    g.c("ln2_g", (1 + small(D)).astype(np.float32))
    g.c("ln2_b", small(D))
    g.n("LayerNormalization", ["r2", "ln2_g", "ln2_b"], "logits", axis=-1, epsilon=1e-5)
    model = g.model(TP.FLOAT, [1, S, D], TP.FLOAT, [1, S, D], opset=17)
    fpath = os.path.join(tmp, "encoder_float.onnx")
    onnx.save(model, fpath)
    pre = os.path.join(tmp, "encoder_pre.onnx")
    quant_pre_process(fpath, pre, skip_symbolic_shape=True, skip_optimization=True)
    calib = rng.standard_normal((32, 1, S, D)).astype(np.float32)
    x = rng.standard_normal((N_REF, S, D)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    for var, fmt, act, pc in [("qdq_s8_pt", QuantFormat.QDQ, QuantType.QInt8, False),
                              ("qdq_s8_pc", QuantFormat.QDQ, QuantType.QInt8, True),
                              ("qop_u8_pt", QuantFormat.QOperator, QuantType.QUInt8, False)]:
        qpath = os.path.join(tmp, f"encoder_{var}.onnx")
        quantize_static(pre, qpath, Reader(), quant_format=fmt, activation_type=act, weight_type=QuantType.QInt8,
                        per_channel=pc)
        q = onnx.load(qpath)
        q.producer_name, q.producer_version = "qmpc models/make_models.py", "1"
        meta = {"activation_type": "s8" if act == QuantType.QInt8 else "u8", "weight_type": "s8",
                "per_channel": pc, "format": "QDQ" if fmt == QuantFormat.QDQ else "QOperator",
                "architecture": "one transformer encoder layer (post-LN, 2 heads, S=8, D=16, GELU), float built with "
                                "onnx.helper, quantized by onnxruntime.quantization.quantize_static",
                "quantizer": f"onnxruntime.quantization.quantize_static (onnxruntime {ort.__version__}) after "
                             "quant_pre_process(skip_optimization=True), 32 calibration rows"}
        yield "tiny_encoder", var, q, x, meta


def torch_models(out, tmp):
    import torch
    import torch.nn as nn
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    Xtr, ytr, Xte, yte = digits()

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.relu, self.fc2 = nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)

        def forward(self, x):
            return self.fc2(self.relu(self.fc1(x)))

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)      # [4,8,8]
            self.pool1 = nn.MaxPool2d(2)                     # [4,4,4]
            self.conv2 = nn.Conv2d(4, 8, 3, padding=1, groups=4)  # grouped: [8,4,4]
            self.pool2 = nn.AvgPool2d(2)                     # [8,2,2]
            self.fc = nn.Linear(8 * 2 * 2, 10)
            self.relu = nn.ReLU()

        def forward(self, x):
            x = self.pool1(self.relu(self.conv1(x)))
            x = self.pool2(self.relu(self.conv2(x)))
            return self.fc(torch.flatten(x, 1))

    specs = [
        ("tiny_mlp", MLP, [1, 64], "Linear(64,16)-ReLU-Linear(16,10)"),
        ("tiny_cnn", CNN, [1, 1, 8, 8],
         "Conv2d(1,4,3,pad 1)-ReLU-MaxPool2d(2)-Conv2d(4,8,3,pad 1,groups=4)-ReLU-AvgPool2d(2)-Flatten-Linear(32,10)"),
    ]
    results = []
    for mname, cls, shape, arch in specs:
        torch.manual_seed(0)
        net = cls()
        xtr = torch.from_numpy(Xtr.reshape(-1, *shape[1:]))
        ttr = torch.from_numpy(ytr)
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        epochs = 30
        g = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            perm = torch.randperm(len(xtr), generator=g)
            for i in range(0, len(xtr), 32):
                idx = perm[i:i + 32]
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(xtr[idx]), ttr[idx])
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            acc_t = float((net(torch.from_numpy(Xte.reshape(-1, *shape[1:]))).argmax(1).numpy() == yte).mean())
        os.makedirs(os.path.join(out, mname), exist_ok=True)
        fpath = os.path.join(out, mname, "float.onnx")
        torch.onnx.export(net, torch.zeros(shape), fpath, input_names=["input"], output_names=["logits"],
                          opset_version=13, dynamo=False)
        xte = Xte.reshape(-1, *shape[1:])
        common = {"dataset": "digits", "test_set_size": int(len(Xte)),
                  "input_preprocessing": f"pixels/16, shape {shape}", "architecture": arch, "epochs": epochs,
                  "float_accuracy_torch": round(acc_t, 4),
                  "exporter": f"torch.onnx.export(dynamo=False, opset_version=13) torch {torch.__version__}"}

        def acc(model, optimized=False):
            s = session(model, optimized)
            pred = np.concatenate([s.run(None, {"input": xte[i:i + 1]})[0] for i in range(len(xte))]).argmax(1)
            return round(float((pred == yte).mean()), 4)

        fm = onnx.load(fpath)
        facc = acc(fm)
        results.append((mname, "float", fm, xte[:N_REF], dict(common, format="float32",
                                                              accuracy_onnxruntime=facc), yte[:N_REF]))
        pre = os.path.join(tmp, mname + "_pre.onnx")
        quant_pre_process(fpath, pre, skip_symbolic_shape=True, skip_optimization=False)
        rs = np.random.default_rng(1234)
        calib = Xtr[rs.choice(len(Xtr), 100, replace=False)].reshape(-1, *shape[1:])

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

            def get_next(self):
                return next(self.it, None)

        for var, fmt, pc, act in [("qop_s8_pt", QuantFormat.QOperator, False, QuantType.QInt8),
                                  ("qdq_s8_pc", QuantFormat.QDQ, True, QuantType.QInt8),
                                  ("qop_u8_pt", QuantFormat.QOperator, False, QuantType.QUInt8)]:
            qpath = os.path.join(tmp, f"{mname}_{var}.onnx")
            quantize_static(pre, qpath, Reader(), quant_format=fmt, per_channel=pc, activation_type=act,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
            qm = onnx.load(qpath)
            meta = dict(common, format="QOperator" if fmt == QuantFormat.QOperator else "QDQ", per_channel=pc,
                        activation_type="int8" if act == QuantType.QInt8 else "uint8", weight_type="int8",
                        quantizer=f"onnxruntime.quantization.quantize_static (onnxruntime {ort.__version__}), "
                                  "after quant_pre_process",
                        calibration="MinMax over 100 training samples",
                        pre_process="quant_pre_process(skip_symbolic_shape=True, skip_optimization=False)",
                        float_accuracy_onnx=facc, int8_accuracy_onnxruntime=acc(qm, True),
                        int8_accuracy_onnxruntime_unoptimized=acc(qm))
            results.append((mname, var, qm, xte[:N_REF], meta, yte[:N_REF]))
    return results


# ----------------------------------------------------------------------------------------------
# writing a model + its references + its manifest entry

DT_NAME = {TP.FLOAT: "float32", TP.INT8: "int8", TP.UINT8: "uint8", TP.INT32: "int32", TP.INT64: "int64"}


def vi_json(vi):
    t = vi.type.tensor_type
    shape = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim] if t.HasField(
        "shape") else None
    return {"name": vi.name, "dtype": DT_NAME.get(t.elem_type, str(t.elem_type)), "shape": shape}


def final_dq(model):
    """The DequantizeLinear whose output becomes the model output (through at most Softmax/ArgMax)."""
    prod = {o: n for n in model.graph.node for o in n.output}
    n = prod.get(model.graph.output[0].name)
    while n is not None and n.op_type in ("Softmax", "ArgMax", "Identity"):
        n = prod.get(n.input[0])
    return n if n is not None and n.op_type == "DequantizeLinear" else None


def scalar_init(model, name):
    for i in model.graph.initializer:
        if i.name == name:
            a = nh.to_array(i)
            return a.reshape(-1).tolist() if a.size > 1 else a.reshape(()).item()
    return None


def write_entry(out, mname, var, model, x, meta, labels=None):
    mdir = os.path.join(out, mname)
    rdir = os.path.join(mdir, "ref", var)
    if os.path.isdir(rdir):
        shutil.rmtree(rdir)
    os.makedirs(rdir, exist_ok=True)
    ot = model.graph.output[0].type.tensor_type
    if not ot.HasField("shape"):   # fill in the static output shape from a run
        shp = session(model).run(None, {"input": x[0:1]})[0].shape
        for d in shp:
            ot.shape.dim.add().dim_value = d
    mpath = os.path.join(mdir, var + ".onnx")
    onnx.save(model, mpath)
    raw = open(mpath, "rb").read()
    checker = "ok"
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # com.microsoft ops are unknown to onnx's checker
        checker = "failed: " + str(e).splitlines()[0][:200]

    ref = {"files": {}}
    sess = session(raw)
    outs = run_rows(sess, x)
    y = outs[0]
    sess_opt = session(raw, optimized=True)
    y_opt = run_rows(sess_opt, x)[0]
    ref["ort_optimized_vs_unoptimized_max_abs_diff"] = float(np.abs(y.astype(np.float64) - y_opt).max())
    if not np.array_equal(y, y_opt):
        np.save(os.path.join(rdir, "output_0.optimized.npy"), y_opt)
        ref["files"]["output_0_optimized"] = f"{mname}/ref/{var}/output_0.optimized.npy"
    is_sym = any(d.HasField("dim_param") for d in model.graph.input[0].type.tensor_type.shape.dim)
    if is_sym:
        yb = sess.run(None, {"input": x})[0]
        ref["whole_batch_run_equal"] = bool(np.array_equal(yb, y))

    np.save(os.path.join(rdir, "input.npy"), x)
    np.save(os.path.join(rdir, "output_0.npy"), y)
    ref["files"] = {"input": f"{mname}/ref/{var}/input.npy", **ref["files"]}
    if labels is not None:
        np.save(os.path.join(rdir, "labels.npy"), labels)
        ref["files"]["labels"] = f"{mname}/ref/{var}/labels.npy"
    ref["files"]["output_0"] = f"{mname}/ref/{var}/output_0.npy"

    # augmented copy: every node output as an extra graph output
    dq = final_dq(model)
    inter_names = []
    if meta.get("format") != "float32":
        aug = onnx.ModelProto()
        aug.CopyFrom(model)
        have = {o.name for o in aug.graph.output}
        for n in aug.graph.node:
            for o in n.output:
                if o and o not in have:
                    aug.graph.output.append(onnx.ValueInfoProto(name=o))
                    have.add(o)
                    inter_names.append(o)
        aout_names = [o.name for o in aug.graph.output]
        asess = session(aug)
        aouts = run_rows(asess, x)
        ref["augmented_model_outputs_identical"] = bool(np.array_equal(aouts[0], y))
        by = dict(zip(aout_names, aouts))
        a0 = dict(zip(aout_names, asess.run(None, {"input": x[0:1]})))
        ints = {k: v for k, v in a0.items() if k in inter_names and v.dtype in (np.int8, np.uint8)}
        if ints:
            np.savez(os.path.join(rdir, "int8_intermediates_sample0.npz"), **ints)
            ref["files"]["int8_intermediates_sample0"] = f"{mname}/ref/{var}/int8_intermediates_sample0.npz"
            ref["int8_intermediates_note"] = ("every int8/uint8 tensor of the graph for input[0:1], run with graph "
                                              "optimizations disabled (literal node semantics)")
        if dq is not None:
            t = dq.input[0]
            li = by[t] if t in by else run_rows(sess, x, [t])[0]   # t may be a graph input? (never here)
            np.save(os.path.join(rdir, "last_int8.npy"), li)
            ref["files"]["last_int8"] = f"{mname}/ref/{var}/last_int8.npy"
            s_v, z_v = scalar_init(model, dq.input[1]), scalar_init(model, dq.input[2])
            ref["last_int8"] = {"tensor": t, "dtype": li.dtype.name, "shape": list(li.shape[1:]),
                                "dequantized_by": {"op": "DequantizeLinear", "scale": dq.input[1],
                                                   "zero_point": dq.input[2], "scale_value": s_v,
                                                   "zero_point_value": z_v},
                                "model_output_is_its_dequantization": dq.output[0] == model.graph.output[0].name}
            if dq.output[0] == model.graph.output[0].name and not isinstance(s_v, list):
                ref["last_int8_consistent_with_output_0"] = bool(np.array_equal(
                    ((li.astype(np.int32) - int(z_v)) * np.float32(s_v)).astype(np.float32), y))
    # onnx's reference evaluator (ai.onnx-only files)
    domains = {n.domain or "ai.onnx" for n in model.graph.node}
    if domains == {"ai.onnx"}:
        try:
            from onnx.reference import ReferenceEvaluator
            # onnx.reference implements QuantizeLinear/DequantizeLinear only from opset 19 on; for
            # int8/uint8 (and every other op used here) opsets 13 and 21 mean the same, so evaluate a
            # copy that declares opset 21.
            m21 = onnx.ModelProto()
            m21.CopyFrom(model)
            for o in m21.opset_import:
                if o.domain in ("", "ai.onnx"):
                    o.version = max(o.version, 21)
            m21.ir_version = max(m21.ir_version, 10)
            ev = ReferenceEvaluator(m21)
            same, md = 0, 0.0
            for i in range(len(x)):
                r = np.asarray(ev.run(None, {"input": x[i:i + 1]})[0])
                d = float(np.abs(r.astype(np.float64) - y[i:i + 1]).max()) if r.size else 0.0
                same += int(d == 0.0)
                md = max(md, d)
            ref["onnx_reference_evaluator"] = {"samples_identical_to_unoptimized_ort": same, "of": len(x),
                                               "max_abs_diff": md, "note": "opset_import raised to 21 for "
                                               "onnx.reference (no DequantizeLinear before 19)"}
        except Exception as e:
            ref["onnx_reference_evaluator"] = {"error": str(e).splitlines()[0][:200]}

    ops = sorted({f"{n.domain or 'ai.onnx'}::{n.op_type}" for n in model.graph.node})
    entry = {"model_name": mname}
    entry.update({k: v for k, v in meta.items()})
    entry.update({
        "id": f"{mname}/{var}",
        "model": f"{mname}/{var}.onnx",
        "reproduce": REPRODUCE,
        "ops": ops,
        "opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [vi_json(v) for v in model.graph.input],
        "outputs": [vi_json(v) for v in model.graph.output],
        "n_nodes": len(model.graph.node),
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "onnx_checker": checker,
        "reference": ref,
    })
    if meta.get("format") != "float32" and "float_model" not in entry and os.path.exists(
            os.path.join(mdir, "float.onnx")):
        entry["float_model"] = f"{mname}/float.onnx"
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--only", default="", help="substring filter on model names")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch (digits) models")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    entries = []
    versions = {"python": platform.python_version(), "numpy": np.__version__, "onnx": onnx.__version__,
                "onnxruntime": ort.__version__}
    if not a.no_torch:
        import sklearn
        import torch
        versions["torch"] = torch.__version__
        versions["scikit-learn"] = sklearn.__version__
        with tempfile.TemporaryDirectory() as tmp:
            for mname, var, model, x, meta, labels in torch_models(out, tmp):
                if a.only in mname:
                    entries.append(write_entry(out, mname, var, model, x, meta, labels))
    if a.only in "tiny_encoder":
        with tempfile.TemporaryDirectory() as tmp:
            for mname, var, model, x, meta in encoder_models(out, tmp):
                entries.append(write_entry(out, mname, var, model, x, meta))
    for mname, desc, fn in OP_MODELS:
        if a.only not in mname:
            continue
        for var, model, x, meta in fn():
            fmt = ("QDQ" if mname.startswith("op_qdq_") else
                   "dynamic (DynamicQuantizeLinear + MatMulInteger/ConvInteger, float rescale)"
                   if mname == "op_dynamic" else
                   "integer (MatMulInteger/ConvInteger)" if mname in ("op_matmulinteger", "op_convinteger") else
                   "QOperator")
            m = {"dataset": "synthetic (numpy default_rng, seeded by crc32 of the model id)",
                 "architecture": desc, "format": fmt,
                 "builder": f"onnx.helper (onnx {onnx.__version__}), make_models.py"}
            m.update(meta)
            for k in ("activation_type", "weight_type"):
                if k in m:
                    m[k] = {"s8": "int8", "u8": "uint8"}.get(m[k], m[k])
            entries.append(write_entry(out, mname, var, model, x, m))

    man_path = os.path.join(out, "manifest.json")
    if a.only and os.path.exists(man_path):   # merge into the existing manifest
        old_man = json.load(open(man_path))
        old = old_man["models"]
        versions = {**old_man.get("versions", {}), **versions}
        new_ids = {e["id"] for e in entries}
        entries = [e for e in old if e["id"] not in new_ids] + entries
    entries.sort(key=lambda e: e["id"])
    with open(man_path, "w") as f:
        json.dump({"versions": versions, "models": entries}, f, indent=1)
        f.write("\n")

    print(f"{'id':42s} {'format':10s} {'input':24s} {'output':18s} ops (non-Q/DQ)")
    for e in entries:
        i, o = e["inputs"][0], e["outputs"][0]
        ops = [op.split("::")[1] if op.startswith("ai.onnx::") else op for op in e["ops"]
               if op not in ("ai.onnx::QuantizeLinear", "ai.onnx::DequantizeLinear")]
        print(f"{e['id']:42s} {e['format'].split(' ')[0]:10s} {i['dtype'] + str(i['shape']):24s} "
              f"{o['dtype'] + str(o['shape']):18s} {','.join(ops)}")
    bad = [e["id"] for e in entries if e["reference"].get("augmented_model_outputs_identical") is False
           or e["reference"].get("last_int8_consistent_with_output_0") is False
           or e["reference"].get("whole_batch_run_equal") is False]
    print(f"{len(entries)} model files; inconsistent references: {bad or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
