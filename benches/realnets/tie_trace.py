#!/usr/bin/env python3
"""Trace, layer by layer, every difference between qmpc's `clear` protocol and onnxruntime
on a realnets model down to the float near-ties where it starts.

    target/bench-venv/bin/python benches/realnets/tie_trace.py [MODEL/VARIANT | FILE.onnx ...]

Default: mobilenet_v3_small/qdq_s8_pc and mobilenet_v3_small/qop_u8_pt (the two files that
tests/corpus.rs's FLOAT_TIE_TOLERANCE lets be 2 steps from onnxruntime). A FILE.onnx needs
its reference input beside it in the realnets layout (ref/<variant>/input.npy).

Environment: QMPC (the binary, default target/release/qmpc), QMPC_SHARED (the shared data,
default ../shared next to the repository), TIE_EPS (default 1e-5: how close to .5, in output
steps, an exact pre-rounding value must be to count as a near-tie), TIETRACE_TMP (scratch
directory, default /tmp/tietrace).

For each model, with the quantized tensors T (outputs of QuantizeLinear, QLinear*/QGemm, and
of shape ops on those) in graph order:

1. onnxruntime (CPU, 1 thread, ORT_DISABLE_ALL, batch 1 per image) on a copy of the model
   with every T added as a graph output: onnxruntime's value of every T.
2. end to end: the model cut to `input -> T`, run by `qmpc run --protocol clear` on the 4
   images: which elements of T differ from onnxruntime, per image. An *origin* is a T that
   differs for an image where all the quantized tensors it is computed from agree.
3. local: the model cut to `(the quantized tensors T is computed from) -> T`, those fed with
   onnxruntime's own values: where qmpc now differs from onnxruntime it cannot be inherited.
   Every element of T is also computed exactly (Python integers and fractions, f32 scales
   taken exactly): v = the pre-rounding value in output steps per the ONNX definition
   (e.g. QDQ Conv: (sum (x-zx)(w-zw) sx sw[c] + b sb[c]) / sy), and v_qmpc = the rational
   qmpc's docs/semantics.md says it rounds (GEMM-like ops: (acc + b) * f32(f32(sx sw)/sy)).
   A local difference is *traced to a tie* when it is one step, |frac(v) - 1/2| < TIE_EPS,
   and qmpc's value is round-half-even of v or of v_qmpc. Also counted: elements anywhere
   where qmpc is not round-half-even of v_qmpc (qmpc not doing what its semantics say).
4. replay: the whole model cut so that every T with a local difference is a graph input
   fed with onnxruntime's value of it: qmpc's last integer tensor (the logits before the
   final DequantizeLinear) must then equal onnxruntime's bit for bit, on every image.

Prints per model a table of every tensor that differs (end to end or locally), the local
differences element by element, and a verdict; the last line is the overall verdict. Exits 1
if some difference is not traced to a tie, or the replay does not reproduce onnxruntime.
"""
import os
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QMPC = os.environ.get("QMPC", os.path.join(ROOT, "target", "release", "qmpc"))
SHARED = os.environ.get("QMPC_SHARED", os.path.join(ROOT, "..", "shared"))
REALNETS = os.path.join(SHARED, "corpus", "realnets")
TMP = os.environ.get("TIETRACE_TMP", "/tmp/tietrace")
TIE_EPS = float(os.environ.get("TIE_EPS", "1e-5"))
DEFAULT = ["mobilenet_v3_small/qdq_s8_pc", "mobilenet_v3_small/qop_u8_pt"]

# Ops that only move quantized integers (their output is a quantized tensor when the
# first input is one).
SHAPE_OPS = {"Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Slice",
             "MaxPool", "Split", "Gather"}
# Index of the output zero point among the inputs of the integer ops.
QLINEAR_ZP = {"QLinearConv": 7, "QLinearAdd": 7, "QLinearMul": 7, "QLinearMatMul": 7,
              "QLinearGlobalAveragePool": 4, "QGemm": 8, "QLinearAveragePool": 4,
              "QLinearSigmoid": 4, "QLinearLeakyRelu": 4, "QLinearConcat": 1}
NP2ONNX = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
           np.dtype(np.float32): TensorProto.FLOAT}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Model:
    def __init__(self, path):
        self.path = path
        self.m = onnx.load(path)
        g = self.m.graph
        self.inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.init_protos = {i.name: i for i in g.initializer}
        self.nodes = list(g.node)
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.graph_inputs = {i.name: i for i in g.input if i.name not in self.inits}
        self.input_name = next(iter(self.graph_inputs))
        # Quantized activations, in graph (topological) order, and their integer type.
        self.qdtype = {}
        self.quantized = []
        for n in self.nodes:
            dt = None
            if n.op_type == "QuantizeLinear" and n.input[0] not in self.inits:
                zp = self.inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
                dt = zp.dtype if zp is not None else np.dtype(np.uint8)
            elif n.op_type in QLINEAR_ZP:
                i = QLINEAR_ZP[n.op_type]
                if n.op_type == "QGemm" and (len(n.input) <= 7 or not n.input[7]):
                    continue  # float output
                if n.op_type == "QLinearConcat":
                    dt = self.inits[n.input[1]].dtype
                else:
                    dt = self.inits[n.input[i]].dtype if len(n.input) > i and n.input[i] \
                        else np.dtype(np.uint8)
            elif n.op_type in SHAPE_OPS and n.input[0] in self.qdtype:
                dt = self.qdtype[n.input[0]]
            if dt is not None:
                for o in n.output:
                    if o:
                        self.qdtype[o] = np.dtype(dt)
                        self.quantized.append(o)
        self.qset = set(self.quantized)

    def sources(self, t):
        """The quantized tensors (or graph inputs) that t's own segment reads, and the
        segment's nodes."""
        srcs, seg, stack, seen = [], [], [t], set()
        first = True
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            if not first and (x in self.qset or x in self.graph_inputs):
                srcs.append(x)
                continue
            first = False
            if x in self.inits or not x:
                continue
            n = self.producer[x]
            if n not in seg:
                seg.append(n)
            stack.extend(i for i in n.input if i)
        order = {id(n): k for k, n in enumerate(self.nodes)}
        seg.sort(key=lambda n: order[id(n)])
        srcs.sort(key=lambda s: self.quantized.index(s) if s in self.qset else -1)
        return srcs, seg

    def submodel(self, inputs, outputs, shapes, path):
        """The graph cut to inputs -> outputs (inputs other than the float graph input are
        renamed tin0, tin1, ... and typed from qdtype, shapes [1, ...])."""
        keep, stack, seen = [], list(outputs), set()
        inset = set(inputs)
        while stack:
            x = stack.pop()
            if x in seen or not x:
                continue
            seen.add(x)
            if x in inset or x in self.inits:
                continue
            if x in self.graph_inputs:
                raise ValueError(f"{outputs} needs graph input {x} not given")
            n = self.producer[x]
            if n not in keep:
                keep.append(n)
            stack.extend(n.input)
        order = {id(n): k for k, n in enumerate(self.nodes)}
        keep.sort(key=lambda n: order[id(n)])
        rename = {}
        ginputs = []
        used = {i for n in keep for i in n.input} | set(outputs)
        for k, name in enumerate(inputs):
            if name not in used:
                continue
            if name in self.graph_inputs:
                ginputs.append(self.graph_inputs[name])
            else:
                new = f"tin{k}"
                rename[name] = new
                ginputs.append(helper.make_tensor_value_info(
                    new, NP2ONNX[self.qdtype[name]], [1] + list(shapes[name][1:])))
        nodes = []
        for n in keep:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            for j, i in enumerate(c.input):
                if i in rename:
                    c.input[j] = rename[i]
            nodes.append(c)
        inits = [self.init_protos[i] for i in self.init_protos if i in used]
        gout = [helper.make_tensor_value_info(o, NP2ONNX[self.qdtype[o]],
                                              [1] + list(shapes[o][1:])) for o in outputs]
        g = helper.make_graph(nodes, "cut", ginputs, gout, inits)
        m = helper.make_model(g, opset_imports=self.m.opset_import)
        m.ir_version = self.m.ir_version
        onnx.save(m, path)
        return [rename.get(i, i) if i in used else None for i in inputs]


def ort_values(model, x, names, tmpdir):
    """onnxruntime's value of each tensor in names, images run one at a time."""
    m = onnx.ModelProto()
    m.CopyFrom(model.m)
    have = {o.name for o in m.graph.output}
    for t in names:
        if t not in have:
            m.graph.output.append(helper.make_tensor_value_info(t, NP2ONNX[model.qdtype[t]], None))
    path = os.path.join(tmpdir, "augmented.onnx")
    onnx.save(m, path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    outs = [o.name for o in s.get_outputs()]
    rows = [s.run(None, {model.input_name: x[i:i + 1]}) for i in range(len(x))]
    return {o: np.concatenate([r[k] for r in rows]) for k, o in enumerate(outs)}


def qmpc_run(model_path, feeds, out_path):
    """feeds: list of (input name, .npy path)."""
    cmd = [QMPC, "run", model_path, "--protocol", "clear", "--output", out_path, "--quiet"]
    for name, p in feeds:
        cmd += ["--input", f"{name}={p}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"qmpc failed on {model_path}: {r.stderr.strip()[-2000:]}")
    return np.load(out_path)


# ---------------------------------------------------------------------------------------
# Exact pre-rounding values.
#
# A segment's value before its final rounding is written as
#     v = clamp(sum_j A_j * c_j[channel] + k0, lo, hi)
# with A_j exact int64 arrays over the output (accumulators, sums, products of centred
# integers) and c_j exact Fractions per output channel (axis 1) or per tensor. v is in
# output steps, before the output zero point is added.

def F(x):
    return Fraction(float(x))


def f32(x):
    return np.float32(x)


class Exact:
    def __init__(self, shape, zp, qmin, qmax):
        self.shape, self.zp, self.qmin, self.qmax = shape, zp, qmin, qmax
        self.terms = []      # (int64 array, [Fraction] per channel)
        self.k0 = Fraction(0)
        self.clamp = None    # (lo, hi) Fractions
        self.qterms = None   # qmpc's own rational, where it differs from the definition
        self.qk0 = Fraction(0)
        self.float_input = None  # the input QuantizeLinear: x (float32) / scale

    @staticmethod
    def _coef64(c, ndim):
        a = np.array([float(v) for v in c])
        if len(a) == 1 or ndim < 2:
            return a[0] if len(a) == 1 else a
        return a.reshape([1, len(a)] + [1] * (ndim - 2))

    def _v64(self, terms, k0):
        v = np.zeros(self.shape)
        for arr, c in terms:
            v = v + np.broadcast_to(arr, self.shape).astype(np.float64) * self._coef64(c, len(self.shape))
        v = v + float(k0)
        if self.clamp:
            v = np.clip(v, float(self.clamp[0]), float(self.clamp[1]))
        return v

    def v64(self, qmpc_form=False):
        if self.float_input is not None:
            x, s = self.float_input
            if qmpc_form:  # the f32 quotient, as qmpc's data owner (and onnxruntime) computes it
                return (x.astype(np.float32) / f32(float(s))).astype(np.float64)
            return x.astype(np.float64) / float(s)
        if qmpc_form and self.qterms is not None:
            return self._v64(self.qterms, self.qk0)
        return self._v64(self.terms, self.k0)

    def _vexact(self, terms, k0, idx):
        v = k0
        for arr, c in terms:
            a = np.broadcast_to(arr, self.shape)[idx]
            v += int(a) * (c[idx[1]] if len(c) > 1 else c[0])
        if self.clamp:
            v = min(max(v, self.clamp[0]), self.clamp[1])
        return v

    def vexact(self, idx, qmpc_form=False):
        if self.float_input is not None:
            x, s = self.float_input
            v = F(x[idx]) / s
            # qmpc (like onnxruntime) quantizes its input with the f32 quotient.
            return Fraction(float(f32(x[idx]) / f32(float(s)))) if qmpc_form else v
        if qmpc_form and self.qterms is not None:
            return self._vexact(self.qterms, self.qk0, idx)
        return self._vexact(self.terms, self.k0, idx)

    def quantize(self, v):
        """round half to even (exact Fraction), plus zp, saturated."""
        fl = v.numerator // v.denominator
        r = v - fl
        q = fl + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and fl % 2) else 0)
        return min(max(q + self.zp, self.qmin), self.qmax)


def rhe_dist(v):
    """|frac(v) - 1/2| for a Fraction."""
    return abs(v - (v.numerator // v.denominator) - Fraction(1, 2))


class SegmentError(Exception):
    pass


def conv_acc(x, w, node):
    """Exact integer convolution of centred int64 x [N,C,H,W] and w [M,C/g,kh,kw]."""
    at = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise SegmentError("auto_pad")
    g = at.get("group", 1)
    kh, kw = w.shape[2:]
    s = at.get("strides", [1, 1])
    d = at.get("dilations", [1, 1])
    p = at.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    n, c, hp, wp = x.shape
    oh = (hp - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (wp - d[1] * (kw - 1) - 1) // s[1] + 1
    xg = x.reshape(n, g, c // g, hp, wp).astype(np.float64)
    wg = w.reshape(g, w.shape[0] // g, c // g, kh, kw).astype(np.float64)
    out = np.zeros((n, g, w.shape[0] // g, oh, ow))
    for i in range(kh):
        for j in range(kw):
            xs = xg[:, :, :, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
                    j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]]
            out += np.einsum("ngchw,goc->ngohw", xs, wg[:, :, :, i, j], optimize=True)
    # Integer-valued float64 sums stay exact below 2^53.
    assert np.abs(out).max() < 2 ** 52
    return np.rint(out).astype(np.int64).reshape(n, w.shape[0], oh, ow)


def exact_segment(model, t, vals):
    """Exact value of t from the values (vals) of the quantized tensors it reads."""
    srcs, seg = model.sources(t)
    inits = model.inits

    def q_int(name):  # integers of a quantized tensor or initializer
        return (vals[name] if name in vals else inits[name]).astype(np.int64)

    def dq(name):
        """A DequantizeLinear output: (centred int64 array, [scale Fractions], axis)."""
        n = model.producer.get(name)
        if n is None or n.op_type != "DequantizeLinear":
            raise SegmentError(f"{name} is not a DequantizeLinear output")
        q = q_int(n.input[0])
        s = np.atleast_1d(inits[n.input[1]])
        zp = np.atleast_1d(inits[n.input[2]]).astype(np.int64) if len(n.input) > 2 and n.input[2] \
            else np.zeros(1, np.int64)
        axis = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"), 1)
        if len(s) > 1 or len(zp) > 1:
            shp = [1] * q.ndim
            shp[axis] = -1
            q = q - zp.reshape(shp) if len(zp) > 1 else q - zp[0]
        else:
            q = q - zp[0]
        return q, [F(v) for v in s], axis

    last = model.producer[t]
    op = last.op_type
    if op == "QuantizeLinear":
        sy, zy = inits[last.input[1]], inits[last.input[2]]
        if np.size(sy) != 1:
            raise SegmentError("per-axis output scale")
        sy, zy = F(sy), int(zy)
        dt = model.qdtype[t]
        info = np.iinfo(dt)
        src = last.input[0]
        if src in model.graph_inputs:
            e = Exact(vals[t].shape, zy, info.min, info.max)
            e.float_input = (vals[src], sy)
            return e
        p = model.producer[src]
        clamp = None
        if p.op_type == "Relu":
            clamp = (Fraction(0), None)
            p = model.producer[p.input[0]]
        shape = vals[t].shape
        e = Exact(shape, zy, info.min, info.max)
        if p.op_type in ("Conv", "Gemm"):
            x, sx, _ = dq(p.input[0])
            w, sw, _ = dq(p.input[1])
            if len(sx) != 1:
                raise SegmentError("per-axis activation scale")
            if p.op_type == "Conv":
                acc = conv_acc(x, w, p)
            else:
                at = {a.name: helper.get_attribute_value(a) for a in p.attribute}
                if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
                    raise SegmentError("Gemm attributes")
                wm = w if at.get("transB", 0) else w.T
                acc = np.rint(x.reshape(x.shape[0], -1).astype(np.float64)
                              @ wm.T.astype(np.float64)).astype(np.int64)
            cout = acc.shape[1]
            sw = sw if len(sw) > 1 else sw * cout
            e.terms.append((acc, [sx[0] * s / sy for s in sw]))
            b = np.zeros(cout, np.int64)
            mq = [Fraction(float(f32(f32(float(sx[0])) * f32(float(s))) / f32(float(sy))))
                  for s in sw]
            if len(p.input) > 2 and p.input[2]:
                b, sb, _ = dq(p.input[2])
                sb = sb if len(sb) > 1 else sb * cout
                bshape = [1, cout] + [1] * (acc.ndim - 2)
                e.terms.append((b.reshape(bshape), [s / sy for s in sb]))
                e.qterms = [(acc + b.reshape(bshape), mq)]
            else:
                e.qterms = [(acc, mq)]
        elif p.op_type in ("Add", "Mul"):
            a, sa, _ = dq(p.input[0])
            b, sb, _ = dq(p.input[1])
            if len(sa) != 1 or len(sb) != 1:
                raise SegmentError("per-axis scale in Add/Mul")
            if p.op_type == "Add":
                e.terms += [(a, [sa[0] / sy]), (b, [sb[0] / sy])]
            else:
                e.terms.append((a * b, [sa[0] * sb[0] / sy]))
        elif p.op_type in ("GlobalAveragePool", "ReduceMean"):
            x, sx, _ = dq(p.input[0])
            if p.op_type == "ReduceMean":
                at = {a.name: helper.get_attribute_value(a) for a in p.attribute}
                axes = at.get("axes")
                if axes is None and len(p.input) > 1:
                    axes = list(inits[p.input[1]])
                axes = tuple(a % x.ndim for a in axes)
                keep = at.get("keepdims", 1)
            else:
                axes, keep = tuple(range(2, x.ndim)), 1
            cnt = int(np.prod([x.shape[a] for a in axes]))
            e.terms.append((x.sum(axis=axes, keepdims=bool(keep)).reshape(shape),
                            [sx[0] / (cnt * sy)]))
        elif p.op_type == "HardSigmoid":
            x, sx, _ = dq(p.input[0])
            at = {a.name: helper.get_attribute_value(a) for a in p.attribute}
            al, be = F(f32(at.get("alpha", 0.2))), F(f32(at.get("beta", 0.5)))
            e.terms.append((x, [al * sx[0] / sy]))
            e.k0 = be / sy
            clamp = (Fraction(0), 1 / sy)
        elif p.op_type in ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"):
            x, sx, _ = dq(p.input[0])
            e.terms.append((x.reshape(shape), [sx[0] / sy]))
        else:
            raise SegmentError(f"no exact form for QDQ {p.op_type}")
        if clamp:
            lo, hi = clamp
            e.clamp = (lo, hi if hi is not None else Fraction(10 ** 9))
        return e

    # QOperator ops.
    shape = vals[t].shape
    dt = model.qdtype[t]
    info = np.iinfo(dt)

    def qin(i):  # input i as (centred ints, [scales], zp), the scale/zp at i+1, i+2
        q = q_int(last.input[i])
        s = np.atleast_1d(inits[last.input[i + 1]])
        zp = np.atleast_1d(inits[last.input[i + 2]]).astype(np.int64)
        if len(zp) > 1:
            q = q - zp.reshape([-1] + [1] * (q.ndim - 1))  # weights: axis 0
        else:
            q = q - zp[0]
        return q, [F(v) for v in s]

    if op in SHAPE_OPS:
        e = Exact(shape, 0, info.min, info.max)
        if op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"):
            e.terms.append((vals[last.input[0]].astype(np.int64).reshape(shape), [Fraction(1)]))
            return e
        raise SegmentError(f"no exact form for {op}")
    if op in ("QLinearConv", "QGemm"):
        x, sx = qin(0)
        w, sw = qin(3)
        yi = 6 if op == "QLinearConv" else 7
        sy, zy = F(inits[last.input[yi]]), int(inits[last.input[yi + 1]])
        e = Exact(shape, zy, info.min, info.max)
        if op == "QLinearConv":
            acc = conv_acc(x, w, last)
            bi = 8
        else:
            at = {a.name: helper.get_attribute_value(a) for a in last.attribute}
            if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0:
                raise SegmentError("QGemm attributes")
            wm = w.T if at.get("transB", 0) else w
            acc = np.rint(x.reshape(x.shape[0], -1).astype(np.float64)
                          @ wm.astype(np.float64)).astype(np.int64)
            bi = 6
        cout = acc.shape[1]
        sw = sw if len(sw) > 1 else sw * cout
        if len(last.input) > bi and last.input[bi]:
            b = inits[last.input[bi]].astype(np.int64).reshape([1, cout] + [1] * (acc.ndim - 2))
            acc = acc + b
        e.terms.append((acc, [sx[0] * s / sy for s in sw]))
        e.qterms = [(acc, [Fraction(float(f32(f32(float(sx[0])) * f32(float(s))) / f32(float(sy))))
                           for s in sw])]
        return e
    if op in ("QLinearAdd", "QLinearMul"):
        a, sa = qin(0)
        b, sb = qin(3)
        sy, zy = F(inits[last.input[6]]), int(inits[last.input[7]])
        e = Exact(shape, zy, info.min, info.max)
        if op == "QLinearAdd":
            e.terms += [(a, [sa[0] / sy]), (b, [sb[0] / sy])]
        else:
            e.terms.append((a * b, [sa[0] * sb[0] / sy]))
        return e
    if op == "QLinearGlobalAveragePool":
        if any(a.name == "channels_last" and helper.get_attribute_value(a) for a in last.attribute):
            raise SegmentError("channels_last")
        x, sx = qin(0)
        sy, zy = F(inits[last.input[3]]), int(inits[last.input[4]])
        e = Exact(shape, zy, info.min, info.max)
        cnt = int(np.prod(x.shape[2:]))
        e.terms.append((x.sum(axis=tuple(range(2, x.ndim)), keepdims=True), [sx[0] / (cnt * sy)]))
        return e
    raise SegmentError(f"no exact form for {op}")


def check_local(e, q, o, near=1e-9):
    """Compare qmpc's (q) and onnxruntime's (o) values of a tensor with its exact value.
    Returns (diff list, count of elements where qmpc != rhe(v_qmpc), count where qmpc !=
    rhe(v))."""
    v64 = e.v64()
    vq64 = e.v64(qmpc_form=True)
    y64 = np.clip(np.rint(vq64) + e.zp, e.qmin, e.qmax)
    yd64 = np.clip(np.rint(v64) + e.zp, e.qmin, e.qmax)
    dq = np.abs(vq64 - np.floor(vq64) - 0.5)
    dd = np.abs(v64 - np.floor(v64) - 0.5)
    qi = q.astype(np.int64)
    # Elements decided exactly: differences, near-ties of either form, and any element
    # the float64 values say qmpc rounds otherwise (to be confirmed exactly).
    sel = (qi != o.astype(np.int64)) | (dq < near) | (dd < near) | (qi != y64) | (qi != yd64)
    diffs, bad_q, bad_d = [], [], []
    for idx in zip(*np.nonzero(sel)):
        idx = tuple(int(i) for i in idx)
        v = e.vexact(idx)
        vq = e.vexact(idx, qmpc_form=True)
        yq, yd = e.quantize(vq), e.quantize(v)
        rec = dict(idx=idx, v=v, vq=vq, q=int(qi[idx]), o=int(o[idx]), yd=yd, yq=yq,
                   dist=float(rhe_dist(v)), distq=float(rhe_dist(vq)),
                   rhe=(yq == qi[idx] or yd == qi[idx]))
        if yq != qi[idx]:
            bad_q.append(rec)
        if yd != qi[idx]:
            bad_d.append(rec)
        if qi[idx] != int(o[idx]):
            diffs.append(rec)
    return diffs, bad_q, bad_d


def short(t, n=60):
    for suffix in ("_QuantizeLinear_Output", "_quantized"):
        if t.endswith(suffix) and len(t) > len(suffix):
            t = t[:-len(suffix)]
    t = t.lstrip("/")
    if t.startswith("features/"):
        t = t[len("features/"):]
    t = t.replace("/block/block.", "/block.")
    return t if len(t) <= n else "…" + t[-(n - 1):]


def trace(spec):
    t0 = time.time()
    if spec.endswith(".onnx"):
        path = spec
        var = os.path.basename(path)[:-5]
        refdir = os.path.join(os.path.dirname(path), "ref", var)
        label = os.path.join(os.path.basename(os.path.dirname(path)), var)
    else:
        model_name, var = spec.split("/")
        path = os.path.join(REALNETS, "models", model_name, var + ".onnx")
        refdir = os.path.join(REALNETS, "models", model_name, "ref", var)
        label = spec
    tmp = os.path.join(TMP, label.replace("/", "__"))
    os.makedirs(tmp, exist_ok=True)
    model = Model(path)
    x = np.load(os.path.join(refdir, "input.npy"))
    nimg = len(x)
    print(f"\n## {label}\n")
    print(f"{len(model.quantized)} quantized tensors, {nimg} images; qmpc {QMPC}; "
          f"onnxruntime {ort.__version__}; TIE_EPS {TIE_EPS:g}")

    # 1. onnxruntime's values.
    ta = time.time()
    ov = ort_values(model, x, model.quantized, tmp)
    out_name = model.m.graph.output[0].name
    ref_notes = []
    ref0 = os.path.join(refdir, "output_0.npy")
    if os.path.exists(ref0):
        same = np.array_equal(ov[out_name], np.load(ref0))
        ref_notes.append(f"onnxruntime {ort.__version__} output_0 "
                         f"{'==' if same else '!='} the corpus's output_0.npy")
    # The last quantized tensor the output is dequantized from.
    last_q = model.quantized[-1]
    refl = os.path.join(refdir, "last_int8.npy")
    if os.path.exists(refl):
        same = np.array_equal(ov[last_q], np.load(refl))
        ref_notes.append(f"{'==' if same else '!='} last_int8.npy")
    print("; ".join(ref_notes) + f" ({time.time() - ta:.1f} s)")
    shapes = {t: ov[t].shape for t in model.quantized}
    ov[model.input_name] = x
    xin = os.path.join(tmp, "input.npy")
    np.save(xin, x)

    # 2. End to end: qmpc's value of every quantized tensor.
    ta = time.time()
    e2e = {}
    for k, t in enumerate(model.quantized):
        mp = os.path.join(tmp, f"prefix_{k}.onnx")
        model.submodel([model.input_name], [t], shapes, mp)
        qv = qmpc_run(mp, [(model.input_name, xin)], os.path.join(tmp, f"prefix_{k}.npy"))
        if qv.shape != ov[t].shape:
            raise RuntimeError(f"{t}: qmpc shape {qv.shape} != {ov[t].shape}")
        d = np.abs(qv.astype(np.int64) - ov[t].astype(np.int64)).reshape(nimg, -1)
        e2e[t] = ((d > 0).sum(axis=1), d.max(axis=1))
    t_e2e = time.time() - ta
    log(f"{label}: end to end {t_e2e:.1f} s")

    # 3. Local: each tensor from onnxruntime's values of what it reads, plus exact values.
    ta = time.time()
    local = {}
    t_exact = 0.0
    for k, t in enumerate(model.quantized):
        srcs, _ = model.sources(t)
        mp = os.path.join(tmp, f"local_{k}.onnx")
        names = model.submodel(srcs, [t], shapes, mp)
        feeds = []
        for j, (s, nm) in enumerate(zip(srcs, names)):
            if nm is None:
                continue
            if s in model.graph_inputs:
                feeds.append((nm, xin))
            else:
                fp = os.path.join(tmp, f"local_{k}_in{j}.npy")
                np.save(fp, ov[s])
                feeds.append((nm, fp))
        qv = qmpc_run(mp, feeds, os.path.join(tmp, f"local_{k}.npy"))
        tb = time.time()
        vals = {s: ov[s] for s in srcs}
        vals[t] = ov[t]
        try:
            e = exact_segment(model, t, vals)
            diffs, bad_q, bad_d = check_local(e, qv.reshape(ov[t].shape), ov[t])
            err = None
        except SegmentError as ex:
            diffs, bad_q, bad_d, err = None, None, None, str(ex)
        t_exact += time.time() - tb
        nd = int((qv.reshape(ov[t].shape) != ov[t]).sum())
        local[t] = dict(n=nd, diffs=diffs, bad_q=bad_q, bad_d=bad_d, err=err,
                        op=model.producer[t].op_type if model.producer[t].op_type != "QuantizeLinear"
                        else (model.producer.get(model.producer[t].input[0]).op_type
                              if model.producer[t].input[0] in model.producer else "input"))
    t_local = time.time() - ta
    log(f"{label}: local {t_local:.1f} s (exact values {t_exact:.1f} s)")

    # Origins: per image, tensors that differ end to end while what they read agrees.
    origins = {}
    for t in model.quantized:
        srcs, _ = model.sources(t)
        for i in range(nimg):
            if e2e[t][0][i] and all(e2e[s][0][i] == 0 for s in srcs if s in e2e):
                origins.setdefault(t, []).append(i)

    # 4. Replay: onnxruntime's values of every locally differing tensor fed to qmpc.
    ta = time.time()
    tie_ts = [t for t in model.quantized if local[t]["n"]]
    rp = os.path.join(tmp, "replay.onnx")
    names = model.submodel([model.input_name] + tie_ts, [last_q], shapes, rp)
    feeds = [(names[0], xin)] if names[0] else []
    for j, t in enumerate(tie_ts):
        if names[j + 1] is None:
            continue
        fp = os.path.join(tmp, f"replay_in{j}.npy")
        np.save(fp, ov[t])
        feeds.append((names[j + 1], fp))
    rv = qmpc_run(rp, feeds, os.path.join(tmp, "replay.npy"))
    replay_diff = (rv.reshape(ov[last_q].shape) != ov[last_q]).reshape(nimg, -1).sum(axis=1)
    t_replay = time.time() - ta

    # Report.
    print(f"\nEnd to end, qmpc clear vs onnxruntime at the last integer tensor "
          f"`{short(last_q, 40)}`: differing elements per image "
          f"{'/'.join(str(v) for v in e2e[last_q][0])}, max steps "
          f"{'/'.join(str(v) for v in e2e[last_q][1])}.")
    print("\nEvery tensor that differs end to end or locally (e2e: differing elements per "
          "image and max steps; local: differing elements given onnxruntime's inputs, how many "
          "of them are ties, the largest |frac(v) - 1/2| among them; origin: images for which "
          "this tensor is where the difference starts):\n")
    print("| # | tensor | op | e2e diffs i0/i1/i2/i3 | e2e max | local diffs | at ties | "
          "max dist from .5 | origin for |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, t in enumerate(model.quantized):
        L = local[t]
        if not (e2e[t][0].any() or L["n"]):
            continue
        if L["diffs"] is None:
            ties, md = "n/a", L["err"]
        else:
            ties = sum(1 for d in L["diffs"] if abs(d["q"] - d["o"]) == 1 and d["dist"] < TIE_EPS and d["rhe"])
            md = f"{max((d['dist'] for d in L['diffs']), default=0):.2e}" if L["diffs"] else "–"
        org = ",".join(str(i) for i in origins.get(t, [])) or ""
        print(f"| {k} | `{short(t)}` | {L['op']} | {'/'.join(str(v) for v in e2e[t][0])} | "
              f"{e2e[t][1].max()} | {L['n']} | {ties} | {md} | {org} |")

    # Element-wise detail of every local difference.
    all_diffs, untraced, unsupported = [], [], []
    for k, t in enumerate(model.quantized):
        L = local[t]
        if L["n"] == 0:
            continue
        if L["diffs"] is None:
            unsupported.append(t)
            continue
        for d in L["diffs"]:
            d["t"], d["k"] = t, k
            all_diffs.append(d)
            if not (abs(d["q"] - d["o"]) == 1 and d["dist"] < TIE_EPS and d["rhe"]):
                untraced.append(d)
    print(f"\nLocal differences element by element (image, element index; v = exact "
          f"pre-rounding value in output steps per ONNX, before the zero point; v_qmpc = "
          f"the rational qmpc rounds; distances |frac - 1/2|):\n")
    print("| # | image | element | v | v − tie | v_qmpc − tie | qmpc | onnxruntime | "
          "rhe(v) | rhe(v_qmpc) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for d in all_diffs:
        half = lambda v: v - (v.numerator // v.denominator) - Fraction(1, 2)
        print(f"| {d['k']} | {d['idx'][0]} | {list(d['idx'][1:])} | {float(d['v']):.9f} | "
              f"{float(half(d['v'])):+.2e} | {float(half(d['vq'])):+.2e} | {d['q']} | {d['o']} | "
              f"{d['yd']} | {d['yq']} |")
    n_local = sum(local[t]["n"] for t in model.quantized)
    bad_q = sum(len(local[t]["bad_q"] or []) for t in model.quantized)
    bad_d = sum(len(local[t]["bad_d"] or []) for t in model.quantized)
    offs = [(k, t, r, r in (local[t]["bad_q"] or [])) for k, t in enumerate(model.quantized)
            for r in (local[t]["bad_d"] or []) + [r for r in (local[t]["bad_q"] or [])
                                                   if r not in (local[t]["bad_d"] or [])]]
    if offs:
        print("\nElements where qmpc is not round-half-even of the exact value v (ONNX) or of "
              "v_qmpc (its own documented rational):\n")
        print("| # | tensor | image | element | v | v_qmpc | qmpc | onnxruntime | "
              "qmpc = rhe(v_qmpc) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for k, t, r, is_q in offs:
            print(f"| {k} | `{short(t, 40)}` | {r['idx'][0]} | {list(r['idx'][1:])} | "
                  f"{float(r['v']):.9f} | {float(r['vq']):.9f} | {r['q']} | {r['o']} | "
                  f"{'NO' if is_q else 'yes'} |")
    n_elems = sum(int(np.prod(shapes[t])) for t in model.quantized if local[t]["diffs"] is not None)
    nonties = [d for d in all_diffs if d["dist"] >= TIE_EPS]
    print(f"\nLocal: {n_local} differing elements in {len(tie_ts)} tensors, "
          f"{len(all_diffs) - len(untraced)} at ties (1 step, |frac(v) - 1/2| < {TIE_EPS:g}, "
          f"qmpc = round-half-even); max |frac(v) - 1/2| of a difference "
          f"{max((d['dist'] for d in all_diffs), default=0):.3g}"
          f"{'' if not nonties else f'; {len(nonties)} NOT at a tie'}; "
          f"qmpc = rhe(v) (the exact ONNX value) at {sum(d['q'] == d['yd'] for d in all_diffs)}, "
          f"onnxruntime at {sum(d['o'] == d['yd'] for d in all_diffs)}; "
          f"qmpc = rhe(v_qmpc) at {sum(d['q'] == d['yq'] for d in all_diffs)}.")
    print(f"Exact check of every element ({n_elems} elements of "
          f"{sum(1 for t in model.quantized if local[t]['diffs'] is not None)} tensors, "
          f"from onnxruntime's inputs): qmpc != round-half-even(v_qmpc) at {bad_q}, "
          f"!= round-half-even(v) at {bad_d}."
          + (f" No exact form for: {', '.join(unsupported)}." if unsupported else ""))
    print(f"Origins (end to end): " + ("; ".join(
        f"`{short(t, 50)}` image {','.join(map(str, i))}" for t, i in origins.items()) or "none"))
    print(f"Replay (onnxruntime's value of the {len(tie_ts)} locally differing tensors fed to "
          f"qmpc, the rest computed by qmpc): differing elements of the last integer tensor "
          f"per image {'/'.join(str(int(v)) for v in replay_diff)}.")
    ok = not untraced and not unsupported and not replay_diff.any() and bad_q == 0
    total = time.time() - t0
    print(f"Time: {total:.1f} s (qmpc end to end {t_e2e:.1f} s over {len(model.quantized)} cuts, "
          f"local {t_local:.1f} s of which exact values {t_exact:.1f} s, replay {t_replay:.1f} s)")
    print(f"Verdict {label}: " + ("every difference from onnxruntime starts at a float near-tie "
                                  "that qmpc rounds exactly" if ok else "NOT all traced to ties"))
    return ok, dict(label=label, n_local=n_local, untraced=untraced, unsupported=unsupported,
                    replay=replay_diff, bad_q=bad_q)


def main():
    specs = sys.argv[1:] or DEFAULT
    os.makedirs(TMP, exist_ok=True)
    t0 = time.time()
    results = [trace(s) for s in specs]
    bad = [r["label"] for ok, r in results if not ok]
    print(f"\nVERDICT: {'PASS' if not bad else 'FAIL'} — "
          + ("every qmpc/onnxruntime difference in " + ", ".join(r['label'] for _, r in results)
             + " is traced to a float near-tie that qmpc rounds exactly"
             if not bad else "not traced to ties: " + ", ".join(bad))
          + f" ({time.time() - t0:.0f} s)")
    sys.exit(0 if not bad else 1)


if __name__ == "__main__":
    main()
