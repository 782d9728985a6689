#!/usr/bin/env python3
"""PyTorch reference data for qmpc's secure training (`qmpc train`).

    /tmp/tvenv/bin/python models/train/make_train_refs.py          (from the repository root)

(create the venv as described in models/train/requirements.txt). Writes into the directory
holding this script (models/train/, or --out):

    perm_check.json                    the public shuffle (epoch_perm below) on a few inputs
    mlp_digits_init.onnx               Linear(64,32)-ReLU-Linear(32,10), torch.manual_seed(0) init
    mlp_digits_sgd.json                10 epochs SGD(lr 0.1, momentum 0.9), batch 128: losses, accuracy
    mlp_digits_sgd_trained.onnx        the model after that run
    mlp_digits_adam.json               the same with Adam(lr 0.01)
    mlp_digits_step0/                  first batch of the SGD run: x, labels, loss, grads, weights after
    lenet_init.onnx                    the corpus LeNet architecture, torch.manual_seed(0) init
    lenet_sgd.json                     1 epoch over the first 10,000 MNIST training images
    lenet_sgd_trained.onnx             the model after that run
    lenet_full.json                    5 epochs over all 60,000 (skipped with --skip-full)
    grads/<case>/...                   per-op float64 autograd references, grads/index.json

Deterministic: seeds fixed, torch and onnxruntime on 1 thread, CPU only. The data come from
../shared/data/{digits,mnist}.npz (relative to the repository root; --shared to change); nothing
from them is copied here except the 128 digits rows of mlp_digits_step0/x.npy.
See models/train/README.md.
"""
import argparse
import copy
import json
import os
import platform
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper as nh

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REPRODUCE = "/tmp/tvenv/bin/python models/train/make_train_refs.py"
SEED = 0

# ----------------------------------------------------------------------------------------------
# The public shuffle. Rust reimplements exactly this (see README.md).
M = 2**64 - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return state, z ^ (z >> 31)


def epoch_perm(n, seed, epoch):
    state = (seed ^ (((epoch + 1) * 0xD1B54A32D192ED03) & M)) & M
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        state, r = splitmix64(state)
        j = r % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def epoch_batches(n, batch, seed, epoch):
    """Batches of one epoch: consecutive slices of epoch_perm, drop_last."""
    p = epoch_perm(n, seed, epoch)
    return [p[b * batch:(b + 1) * batch] for b in range(n // batch)]


def perm_checksum(p):
    """sum(i * p[i]) mod 2^64, easy to recompute in Rust."""
    s = 0
    for i, v in enumerate(p):
        s = (s + i * v) & M
    return s


# ----------------------------------------------------------------------------------------------
# Helpers


def versions():
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "machine": platform.machine(),
    }


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def jdump(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def export(model, example, path, output_name="logits"):
    """TorchScript exporter, opset 13, static shapes (those of `example`)."""
    model.eval()
    torch.onnx.export(model, (example,), path, dynamo=False, opset_version=13,
                      input_names=["input"], output_names=[output_name],
                      do_constant_folding=True)
    model.train()
    onnx.checker.check_model(onnx.load(path))


def onnx_summary(path):
    m = onnx.load(path)
    nodes = []
    for n in m.graph.node:
        attrs = {}
        for a in n.attribute:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, onnx.TensorProto):
                v = {"tensor": nh.to_array(v).tolist()}
            elif isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list):
                v = [x.decode() if isinstance(x, bytes) else x for x in v]
            attrs[a.name] = v
        nodes.append({"op": n.op_type, "inputs": list(n.input), "outputs": list(n.output),
                      "attrs": attrs})

    def dims(vi):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in vi.type.tensor_type.shape.dim]
    ops = []
    for n in nodes:
        if n["op"] not in ops:
            ops.append(n["op"])
    return {
        "opset": [{"domain": o.domain, "version": o.version} for o in m.opset_import],
        "producer": f"{m.producer_name} {m.producer_version}",
        "inputs": {i.name: dims(i) for i in m.graph.input},
        "outputs": {o.name: dims(o) for o in m.graph.output},
        "initializers": [{"name": i.name, "shape": list(i.dims),
                          "dtype": onnx.helper.tensor_dtype_to_np_dtype(i.data_type).name}
                         for i in m.graph.initializer],
        "ops": ops,
        "nodes": nodes,
    }


def param_map(path, module):
    """Map each ONNX initializer to the module parameter holding the same values.

    Returns {onnx_name: {"param": torch_name, "layout": "same" | "transposed"}} for
    parameters, {onnx_name: {"param": None, ...}} for non-parameter constants."""
    m = onnx.load(path)
    params = {k: v.detach().cpu().numpy() for k, v in module.named_parameters()}
    out, used = {}, set()
    for init in m.graph.initializer:
        arr = nh.to_array(init)
        hit = None
        if init.name in params and params[init.name].shape == arr.shape \
                and np.array_equal(params[init.name], arr):
            hit = (init.name, "same")
        else:
            for k, v in params.items():
                if v.shape == arr.shape and np.array_equal(v, arr):
                    hit = (k, "same")
                    break
                if v.ndim == 2 and v.T.shape == arr.shape and np.array_equal(v.T, arr):
                    hit = (k, "transposed")
                    break
        if hit is None:
            out[init.name] = {"param": None, "note": "constant, not a parameter"}
        else:
            assert hit[0] not in used, f"{path}: parameter {hit[0]} appears twice"
            used.add(hit[0])
            out[init.name] = {"param": hit[0], "layout": hit[1]}
    missing = set(params) - used
    assert not missing, f"{path}: parameters not found among initializers: {missing}"
    return out


def fname(name):
    """Initializer name -> file-name part (names here are like 'fc1.weight'; kept as is)."""
    bad = set('/\\:<>"|?* ')
    return "".join("_" if c in bad else c for c in name)


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_run(path, x):
    """Run the ONNX file on x; if the file has a static batch smaller than x, row by row."""
    sess = ort_session(path)
    inp = sess.get_inputs()[0]
    b = inp.shape[0]
    if isinstance(b, int) and b != x.shape[0]:
        assert x.shape[0] % b == 0
        return np.concatenate([sess.run(None, {inp.name: x[i:i + b]})[0]
                               for i in range(0, x.shape[0], b)])
    return sess.run(None, {inp.name: x})[0]


def check_ort(path, module, x, tol=1e-5):
    module.eval()
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    module.train()
    got = ort_run(path, x)
    d = float(np.max(np.abs(got - ref)))
    assert got.shape == ref.shape and d <= tol, f"{path}: onnxruntime vs torch max |diff| {d}"
    return d


def save(path, arr, dtype):
    arr = np.ascontiguousarray(np.asarray(arr, dtype=dtype))
    np.save(path, arr)


def accuracy(model, x, y, chunk=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            correct += int((model(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum())
    model.train()
    return correct / len(x)


# ----------------------------------------------------------------------------------------------
# Models (module/parameter names chosen to match ../shared/corpus/models/*/float.onnx)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(256, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = torch.flatten(x, 1)  # exports as Flatten(axis=1), as in the corpus file
        x = F.relu(self.f1(x))
        x = F.relu(self.f2(x))
        return self.f3(x)


def same_graph(path_a, path_b):
    """Same op sequence, attributes, tensor names and initializer names/shapes."""
    a, b = onnx_summary(path_a), onnx_summary(path_b)
    keys = ["opset", "inputs", "outputs", "nodes"]
    ia = [(i["name"], i["shape"]) for i in a["initializers"]]
    ib = [(i["name"], i["shape"]) for i in b["initializers"]]
    return all(a[k] == b[k] for k in keys) and ia == ib


# ----------------------------------------------------------------------------------------------
# 1. shuffle check


def make_perm_check(out):
    st, outs = 0, []
    for _ in range(3):
        st, r = splitmix64(st)
        outs.append(r)
    # splitmix64 from state 0: the published reference sequence begins with these.
    assert outs[0] == 0xE220A8397B1DCDAF and outs[1] == 0x6E789E6AA1B965F4, [hex(o) for o in outs]
    cases = []
    for n, seed, epoch in [(1348, 0, 0), (1348, 0, 1), (10000, 0, 0), (60000, 0, 0), (10, 0, 0)]:
        p = epoch_perm(n, seed, epoch)
        assert p == epoch_perm(n, seed, epoch), "epoch_perm not deterministic"
        assert sorted(p) == list(range(n)), "epoch_perm is not a permutation"
        cases.append({"n": n, "seed": seed, "epoch": epoch, "first10": p[:10], "last10": p[-10:],
                      "checksum_sum_i_times_p_i_mod_2_64": perm_checksum(p)})
    assert epoch_perm(1348, 0, 0) != epoch_perm(1348, 0, 1)
    jdump({
        "spec": "epoch_perm(n, seed, epoch) in make_train_refs.py / README.md; "
                "batches of epoch e are p[b*B:(b+1)*B] for b in range(n // B) (drop_last)",
        "splitmix64_from_state_0_first3": [str(o) for o in outs],
        "splitmix64_from_state_0_first3_hex": [hex(o) for o in outs],
        "cases": cases,
        "full_epoch_perm_10_0_0": epoch_perm(10, 0, 0),
    }, os.path.join(out, "perm_check.json"))
    return cases


# ----------------------------------------------------------------------------------------------
# 2. digits MLP


def train_digits(data, opt_name, out, step0_dir=None, onnx_out=None):
    xtr = torch.from_numpy(data["x_train"]).float()
    ytr = torch.from_numpy(data["y_train"]).long()
    xte = torch.from_numpy(data["x_test"]).float()
    yte = torch.from_numpy(data["y_test"]).long()
    n, B, epochs = len(xtr), 128, 10
    torch.manual_seed(SEED)
    model = MLP()
    init_path = os.path.join(out, "mlp_digits_init.onnx")
    if opt_name == "sgd":
        export(model, torch.zeros(1, 64), init_path)
    else:  # same init as the exported file
        ref = onnx.load(init_path)
        for i in ref.graph.initializer:
            assert np.array_equal(nh.to_array(i), dict(model.named_parameters())[i.name].detach().numpy())
    if opt_name == "sgd":
        hp = {"optimizer": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9, "dampening": 0.0,
              "weight_decay": 0.0, "nesterov": False}
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        hp = {"optimizer": "torch.optim.Adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
              "weight_decay": 0.0, "amsgrad": False}
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
    crit = nn.CrossEntropyLoss()
    init_acc = accuracy(model, xte, yte)
    hist = []
    t0 = time.time()
    for epoch in range(epochs):
        losses = []
        for b, idx in enumerate(epoch_batches(n, B, SEED, epoch)):
            idx = torch.tensor(idx)
            xb, yb = xtr[idx], ytr[idx]
            opt.zero_grad()
            loss = crit(model(xb), yb)
            loss.backward()
            if step0_dir is not None and epoch == 0 and b == 0:
                os.makedirs(step0_dir, exist_ok=True)
                save(os.path.join(step0_dir, "x.npy"), xb.numpy(), np.float32)
                save(os.path.join(step0_dir, "labels.npy"), yb.numpy(), np.int64)
                save(os.path.join(step0_dir, "loss.npy"), [loss.item()], np.float32)
                with torch.no_grad():
                    save(os.path.join(step0_dir, "logits.npy"), model(xb).numpy(), np.float32)
                pmap = param_map(init_path, model)
                params = dict(model.named_parameters())
                for oname, info in pmap.items():
                    g = params[info["param"]].grad.numpy()
                    g = g.T if info["layout"] == "transposed" else g
                    save(os.path.join(step0_dir, f"grad_{fname(oname)}.npy"), g, np.float32)
            opt.step()
            if step0_dir is not None and epoch == 0 and b == 0:
                for oname, info in pmap.items():
                    w = params[info["param"]].detach().numpy()
                    w = w.T if info["layout"] == "transposed" else w
                    save(os.path.join(step0_dir, f"weights_after_{fname(oname)}.npy"), w, np.float32)
                jdump({
                    "what": "first batch (epoch 0, batch 0) of the mlp_digits SGD run: "
                            "x = x_train[epoch_perm(1348,0,0)[0:128]], forward/backward in float32 "
                            "PyTorch from mlp_digits_init.onnx's weights, then one "
                            "SGD(lr=0.1, momentum=0.9) step (first step: momentum buffer = grad, "
                            "so weights_after = w - 0.1 * grad)",
                    "batch_indices": idx.tolist(),
                    "loss": "nn.CrossEntropyLoss(): mean over the 128 rows of -log_softmax(logits)[label]",
                    "files": {"x.npy": "float32 [128,64]", "labels.npy": "int64 [128]",
                              "loss.npy": "float32 [1]", "logits.npy": "float32 [128,10] (before the step)",
                              "grad_<name>.npy": "float32, dLoss/d(initializer), ONNX initializer layout",
                              "weights_after_<name>.npy": "float32, after the step, ONNX layout"},
                    "initializers": {k: dict(v, file_part=fname(k)) for k, v in pmap.items()},
                }, os.path.join(step0_dir, "index.json"))
            losses.append(loss.item())
        acc = accuracy(model, xte, yte)
        hist.append({"epoch": epoch, "mean_train_loss": float(np.mean(losses)),
                     "batch_losses": losses, "train_accuracy": accuracy(model, xtr, ytr),
                     "test_accuracy": acc})
        print(f"  digits {opt_name} epoch {epoch}: loss {np.mean(losses):.4f} test acc {acc:.4f}",
              flush=True)
    print(f"  digits {opt_name}: {time.time() - t0:.1f}s", flush=True)
    rec = {
        "model": "mlp_digits: Linear(64,32)-ReLU-Linear(32,10), torch.manual_seed(0) default init "
                 "(= mlp_digits_init.onnx)",
        "data": "digits.npz x_train [1348,64] / y_train; test x_test [449,64] / y_test",
        "hyperparameters": dict(hp, batch_size=B, epochs=epochs, shuffle="epoch_perm(1348, 0, epoch)",
                                drop_last=True, batches_per_epoch=n // B,
                                loss="nn.CrossEntropyLoss() (mean over batch)", dtype="float32"),
        "initial_test_accuracy": init_acc,
        "epochs": hist,
        "final_test_accuracy": hist[-1]["test_accuracy"],
        "versions": versions(),
        "reproduce": REPRODUCE,
    }
    if onnx_out is not None:
        export(model, torch.zeros(1, 64), onnx_out)
        d = check_ort(onnx_out, model, data["x_test"])
        ort_acc = float((ort_run(onnx_out, data["x_test"]).argmax(1) == data["y_test"]).mean())
        rec["trained_onnx"] = {"file": os.path.basename(onnx_out), "ort_test_accuracy": ort_acc,
                               "ort_vs_torch_max_abs_diff": d}
    return rec, model


# ----------------------------------------------------------------------------------------------
# 3. LeNet / MNIST


def mnist_x(u8):
    # float32 division, = float64 division rounded to float32 (exact for these inputs)
    return torch.from_numpy((u8.astype(np.float32) / np.float32(255.0))[:, None, :, :])


def train_lenet(mn, n_train, epochs, lr, out, init_path, onnx_out=None, label="", timing=False):
    """timing: record wall-clock seconds (makes the JSON differ between runs)."""
    xtr = mnist_x(mn["x_train"][:n_train])
    ytr = torch.from_numpy(mn["y_train"][:n_train].astype(np.int64))
    xte = mnist_x(mn["x_test"])
    yte = torch.from_numpy(mn["y_test"].astype(np.int64))
    torch.manual_seed(SEED)
    model = LeNet()
    ref = onnx.load(init_path)
    for i in ref.graph.initializer:
        assert np.array_equal(nh.to_array(i), dict(model.named_parameters())[i.name].detach().numpy())
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    B = 128
    hist = []
    t0 = time.time()
    init_acc = accuracy(model, xte, yte)
    for epoch in range(epochs):
        losses = []
        te = time.time()
        for idx in epoch_batches(n_train, B, SEED, epoch):
            idx = torch.tensor(idx)
            opt.zero_grad()
            loss = crit(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        acc = accuracy(model, xte, yte)
        hist.append({"epoch": epoch, "mean_train_loss": float(np.mean(losses)), "batch_losses": losses,
                     "test_accuracy": acc})
        if timing:
            hist[-1]["seconds"] = round(time.time() - te, 2)
        print(f"  lenet {label} epoch {epoch}: loss {np.mean(losses):.4f} test acc {acc:.4f} "
              f"({time.time() - te:.1f}s)", flush=True)
    rec = {
        "model": "lenet (architecture of ../shared/corpus/models/lenet/float.onnx), "
                 "torch.manual_seed(0) default init (= lenet_init.onnx)",
        "data": f"mnist.npz: first {n_train} of x_train (uint8 -> float32 / 255, [N,1,28,28]); "
                "test: all 10000 of x_test",
        "hyperparameters": {"optimizer": "torch.optim.SGD", "lr": lr, "momentum": 0.9, "dampening": 0.0,
                            "weight_decay": 0.0, "nesterov": False, "batch_size": B, "epochs": epochs,
                            "shuffle": f"epoch_perm({n_train}, 0, epoch)", "drop_last": True,
                            "batches_per_epoch": n_train // B,
                            "loss": "nn.CrossEntropyLoss() (mean over batch)", "dtype": "float32"},
        "initial_test_accuracy": init_acc,
        "epochs": hist,
        "final_test_accuracy": hist[-1]["test_accuracy"],
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "reproduce": REPRODUCE,
    }
    if timing:
        rec["seconds"] = round(time.time() - t0, 2)
        rec["cpu"] = cpu_name()
    if onnx_out is not None:
        export(model, torch.zeros(1, 1, 28, 28), onnx_out)
        xt = xte.numpy()
        d = check_ort(onnx_out, model, xt[:64])
        ort_acc = float((ort_run(onnx_out, xt).argmax(1) == mn["y_test"]).mean())
        rec["trained_onnx"] = {"file": os.path.basename(onnx_out), "ort_test_accuracy": ort_acc,
                               "ort_vs_torch_max_abs_diff_first64": d}
    return rec


# ----------------------------------------------------------------------------------------------
# 4. per-op gradient cases


class MatMulAdd(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.W = nn.Parameter(torch.empty(i, o).uniform_(-1 / i ** 0.5, 1 / i ** 0.5))
        self.b = nn.Parameter(torch.empty(o).uniform_(-1 / i ** 0.5, 1 / i ** 0.5))

    def forward(self, x):
        return x @ self.W + self.b


class ConvFc(nn.Module):
    """conv [-> relu] [-> pool] -> flatten (nn.Flatten, or x.reshape(n, -1)) -> fc."""

    def __init__(self, conv, fc_in, c_out, relu=False, pool=None, reshape=False):
        super().__init__()
        self.conv = conv
        self.relu = relu
        self.pool = pool
        self.reshape = reshape
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(fc_in, c_out)

    def forward(self, x):
        x = self.conv(x)
        if self.relu:
            x = F.relu(x)
        if self.pool is not None:
            x = self.pool(x)
        x = x.reshape(x.shape[0], -1) if self.reshape else self.flatten(x)
        return self.fc(x)


class ReluMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(F.relu(self.a(x)) + x)


class LeNetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3)    # 16 -> 14, pool -> 7
        self.c2 = nn.Conv2d(4, 8, 3)    # 7 -> 5, pool -> 2
        self.f1 = nn.Linear(32, 16)
        self.f2 = nn.Linear(16, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = torch.flatten(x, 1)
        return self.f2(F.relu(self.f1(x)))


GRAD_CASES = [
    # name, constructor, input shape, C (classes / outputs), loss, description
    ("gemm", lambda: nn.Linear(6, 5), [4, 6], 5, "ce", "Linear(6,5)"),
    ("matmul_add", lambda: MatMulAdd(6, 5), [4, 6], 5, "ce",
     "x @ W + b, W [6,5], b [5] nn.Parameters (uniform(+-1/sqrt(6)) init)"),
    ("relu", lambda: ReluMLP(), [4, 6], 5, "ce", "Linear(6,8)-ReLU-Linear(8,5)"),
    ("conv", lambda: ConvFc(nn.Conv2d(2, 4, 3, stride=1, padding=1), 144, 5), [4, 2, 6, 6], 5, "ce",
     "Conv2d(2,4,3,stride=1,padding=1)-Flatten-Linear(144,5)"),
    ("conv_strided", lambda: ConvFc(nn.Conv2d(2, 4, 3, stride=2, padding=1), 36, 5), [4, 2, 6, 6], 5,
     "ce", "Conv2d(2,4,3,stride=2,padding=1)-Flatten-Linear(36,5)"),
    ("conv_grouped", lambda: ConvFc(nn.Conv2d(4, 4, 3, padding=1, groups=2), 100, 5), [4, 4, 5, 5], 5,
     "ce", "Conv2d(4,4,3,padding=1,groups=2)-Flatten-Linear(100,5)"),
    ("maxpool", lambda: ConvFc(nn.Conv2d(1, 2, 3), 18, 5, relu=True, pool=nn.MaxPool2d(2)),
     [4, 1, 8, 8], 5, "ce", "Conv2d(1,2,3)-ReLU-MaxPool2d(2)-Flatten-Linear(18,5)"),
    ("avgpool", lambda: ConvFc(nn.Conv2d(1, 2, 3), 18, 5, pool=nn.AvgPool2d(2)), [4, 1, 8, 8], 5, "ce",
     "Conv2d(1,2,3)-AvgPool2d(2)-Flatten-Linear(18,5)"),
    ("gap", lambda: ConvFc(nn.Conv2d(2, 4, 3), 4, 5, relu=True, pool=nn.AdaptiveAvgPool2d(1)),
     [4, 2, 6, 6], 5, "ce", "Conv2d(2,4,3)-ReLU-AdaptiveAvgPool2d(1)-Flatten-Linear(4,5)"),
    ("reshape", lambda: ConvFc(nn.Conv2d(2, 3, 3), 48, 5, reshape=True), [4, 2, 6, 6], 5, "ce",
     "Conv2d(2,3,3)-x.reshape(x.shape[0],-1)-Linear(48,5)"),
    ("residual", lambda: Residual(), [4, 6], 5, "ce", "y = relu(a(x)) + x, a = Linear(6,6); Linear(6,5)"),
    ("mse", lambda: nn.Linear(6, 3), [4, 6], 3, "mse", "Linear(6,3), loss mean((out - target)^2)"),
    ("lenet_small", lambda: LeNetSmall(), [4, 1, 16, 16], 5, "ce",
     "Conv2d(1,4,3)-ReLU-MaxPool2-Conv2d(4,8,3)-ReLU-MaxPool2-Flatten-Linear(32,16)-ReLU-Linear(16,5)"),
]


def maxpool_ties(module, x64):
    """Count 2x2 max-pool windows whose max is attained more than once with a non-zero
    gradient path (a tie among zeros after a ReLU whose inputs are < 0 does not matter)."""
    ties = []

    def hook(mod, inp, outp):
        t = inp[0]
        n, c, h, w = t.shape
        t = t[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
        t = t.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        mx = t.max(-1, keepdim=True).values
        cnt = (t == mx).sum(-1)
        ties.append(int(((cnt > 1) & (mx[..., 0] > 0)).sum()))
    return ties, hook


def make_grad_case(name, ctor, shape, C, loss_kind, desc, root):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(SEED)
    model = ctor()
    x = (torch.rand(*shape) * 2 - 1).float()          # U(-1, 1)
    if loss_kind == "ce":
        labels = torch.randint(0, C, (shape[0],))
    else:
        target = torch.randn(shape[0], C).float()
    path = os.path.join(d, "model.onnx")
    export(model, x, path)
    summ = onnx_summary(path)
    check_ort(path, model, x.numpy())

    m64 = copy.deepcopy(model).double()
    x64 = x.double().clone().requires_grad_(True)
    out = m64(x64)
    assert list(out.shape) == [shape[0], C]
    if loss_kind == "ce":
        loss = F.cross_entropy(out, labels)
    else:
        loss = ((out - target.double()) ** 2).mean()
    loss.backward()

    save(os.path.join(d, "x.npy"), x.numpy(), np.float32)
    if loss_kind == "ce":
        save(os.path.join(d, "labels.npy"), labels.numpy(), np.int64)
    else:
        save(os.path.join(d, "target.npy"), target.numpy(), np.float32)
    save(os.path.join(d, "loss.npy"), [loss.item()], np.float64)
    save(os.path.join(d, "output.npy"), out.detach().numpy(), np.float64)
    save(os.path.join(d, "grad_input.npy"), x64.grad.numpy(), np.float64)
    pmap = param_map(path, model)
    p64 = dict(m64.named_parameters())
    grads = {}
    for oname, info in pmap.items():
        if info["param"] is None:
            continue
        g = p64[info["param"]].grad.numpy()
        g = g.T if info["layout"] == "transposed" else g
        f = f"grad_{fname(oname)}.npy"
        save(os.path.join(d, f), g, np.float64)
        grads[oname] = f

    # sanity: float64 finite differences on a few coordinates of x
    rng = np.random.default_rng(0)
    flat = x64.detach().clone().reshape(-1)
    for k in rng.choice(flat.numel(), size=min(5, flat.numel()), replace=False):
        e = torch.zeros_like(flat)
        e[k] = 1e-6
        with torch.no_grad():
            def L(v):
                o = m64(v.reshape(x64.shape))
                return (F.cross_entropy(o, labels) if loss_kind == "ce"
                        else ((o - target.double()) ** 2).mean()).item()
            fd = (L(flat + e) - L(flat - e)) / 2e-6
        assert abs(fd - x64.grad.reshape(-1)[k].item()) < 1e-6, (name, k, fd)

    ties = None
    pools = [m for m in m64.modules() if isinstance(m, nn.MaxPool2d)]
    if pools or name == "lenet_small":
        counts, hook = maxpool_ties(m64, x64)
        hs = [p.register_forward_hook(hook) for p in pools]
        if name == "lenet_small":  # functional max_pool2d: recompute with explicit inputs
            with torch.no_grad():
                a = F.relu(m64.c1(x64))
                hook(None, (a,), None)
                b = F.relu(m64.c2(F.max_pool2d(a, 2)))
                hook(None, (b,), None)
        else:
            with torch.no_grad():
                m64(x64)
        for h in hs:
            h.remove()
        ties = sum(counts)
        assert ties == 0, f"{name}: max-pool ties with a live gradient"

    entry = {
        "name": name,
        "module": desc,
        "loss": "softmax_cross_entropy_mean" if loss_kind == "ce" else "mse_mean",
        "loss_formula": ("mean_i( logsumexp(out[i,:]) - out[i, labels[i]] )" if loss_kind == "ce"
                         else "mean over all elements of (out - target)^2"),
        "input_shape": shape,
        "output_shape": [shape[0], C],
        "classes" if loss_kind == "ce" else "outputs": C,
        "ops": summ["ops"],
        "nodes": [{"op": n["op"], "attrs": n["attrs"]} for n in summ["nodes"]],
        "initializers": summ["initializers"],
        "initializer_to_torch_param": pmap,
        "grad_files": grads,
        "files": sorted(os.listdir(d)),
        "loss_value": loss.item(),
        "maxpool_live_ties": ties,
    }
    print(f"  grads/{name}: ops {summ['ops']} loss {loss.item():.6f}", flush=True)
    return entry


# ----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(REPO), "shared"))
    ap.add_argument("--skip-full", action="store_true", help="skip the 60k x 5 epochs LeNet run")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    t_all = time.time()

    print("1. shuffle", flush=True)
    make_perm_check(out)

    print("2. digits MLP", flush=True)
    dg = dict(np.load(os.path.join(args.shared, "data", "digits.npz")))
    corpus_mlp = os.path.join(args.shared, "corpus", "models", "mlp_digits", "float.onnx")
    rec, _ = train_digits(dg, "sgd", out, step0_dir=os.path.join(out, "mlp_digits_step0"),
                          onnx_out=os.path.join(out, "mlp_digits_sgd_trained.onnx"))
    init_path = os.path.join(out, "mlp_digits_init.onnx")
    torch.manual_seed(SEED)
    mlp0 = MLP()
    d_init = check_ort(init_path, mlp0, dg["x_test"][:64])
    rec["init_onnx"] = {"file": "mlp_digits_init.onnx", "summary": onnx_summary(init_path),
                        "initializer_to_torch_param": param_map(init_path, mlp0),
                        "ort_vs_torch_max_abs_diff_first64_test": d_init,
                        "same_graph_as_corpus_mlp_digits_float_onnx": same_graph(init_path, corpus_mlp)}
    jdump(rec, os.path.join(out, "mlp_digits_sgd.json"))
    rec, _ = train_digits(dg, "adam", out)
    jdump(rec, os.path.join(out, "mlp_digits_adam.json"))
    # onnxruntime on the step-0 batch (batch-1 model, row by row)
    torch.manual_seed(SEED)
    check_ort(init_path, MLP(), np.load(os.path.join(out, "mlp_digits_step0", "x.npy")))

    print("3. LeNet / MNIST", flush=True)
    mn = dict(np.load(os.path.join(args.shared, "data", "mnist.npz")))
    corpus_lenet = os.path.join(args.shared, "corpus", "models", "lenet", "float.onnx")
    lenet_init = os.path.join(out, "lenet_init.onnx")
    torch.manual_seed(SEED)
    ln = LeNet()
    export(ln, torch.zeros(1, 1, 28, 28), lenet_init)
    d_ln = check_ort(lenet_init, ln, mnist_x(mn["x_test"][:64]).numpy())
    rec = train_lenet(mn, 10000, 1, 0.05, out, lenet_init,
                      onnx_out=os.path.join(out, "lenet_sgd_trained.onnx"), label="10k")
    rec["init_onnx"] = {"file": "lenet_init.onnx", "summary": onnx_summary(lenet_init),
                        "initializer_to_torch_param": param_map(lenet_init, ln),
                        "ort_vs_torch_max_abs_diff_first64_test": d_ln,
                        "same_graph_as_corpus_lenet_float_onnx": same_graph(lenet_init, corpus_lenet)}
    jdump(rec, os.path.join(out, "lenet_sgd.json"))
    if not args.skip_full:
        rec = train_lenet(mn, 60000, 5, 0.05, out, lenet_init, label="60k", timing=True)
        jdump(rec, os.path.join(out, "lenet_full.json"))

    print("4. gradient cases", flush=True)
    groot = os.path.join(out, "grads")
    os.makedirs(groot, exist_ok=True)
    entries = [make_grad_case(*c, groot) for c in GRAD_CASES]
    jdump({
        "what": "per-op gradient references: a tiny float32 ONNX model per case (torch.onnx.export, "
                "TorchScript exporter, opset 13, static batch 4), inputs x.npy (float32 U(-1,1)), "
                "labels.npy (int64 in [0,C)) or target.npy (mse, float32 N(0,1)); loss, output, "
                "grad_input and grad_<initializer>.npy computed by autograd in float64 on the module "
                "converted with .double() (the float32 weights and inputs, exactly)",
        "seeding": "torch.manual_seed(0) at the start of each case, then the module is constructed "
                   "(default init), then x = torch.rand(shape)*2-1, then labels = "
                   "torch.randint(0, C, (4,)) or target = torch.randn(4, C)",
        "files": {"model.onnx": "float32 model, input 'input', output 'logits'",
                  "x.npy": "float32 input", "labels.npy": "int64 [4] (ce cases)",
                  "target.npy": "float32 [4,C] (mse case)", "loss.npy": "float64 [1]",
                  "output.npy": "float64 [4,C], module output (float64 forward)",
                  "grad_input.npy": "float64, dLoss/dx", "grad_<name>.npy":
                  "float64, dLoss/d(initializer <name>), same shape/layout as the ONNX initializer"},
        "versions": versions(),
        "reproduce": REPRODUCE,
        "cases": entries,
    }, os.path.join(groot, "index.json"))
    print(f"done in {time.time() - t_all:.1f}s", flush=True)


if __name__ == "__main__":
    main()
