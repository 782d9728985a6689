"""qmpc.train: train a float ONNX export under a protocol, as ``qmpc train`` does."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from . import _qmpc


def _rows(v: Any, what: str) -> dict:
    """``{party: array}`` from an array (party 1's) or a mapping by party."""
    if isinstance(v, Mapping):
        return {int(p): np.asarray(a) for p, a in v.items()}
    return {1: np.asarray(v)}


def train(
    model: Union[str, "os.PathLike[str]", bytes],
    data: Any,
    labels: Any,
    *,
    protocol: str = "rep3",
    parties: Optional[int] = None,
    epochs: int = 1,
    batch: int = 128,
    lr: float,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    betas: Tuple[float, float] = (0.9, 0.999),
    loss: str = "cross-entropy",
    test: Optional[Tuple[Any, Any]] = None,
    reveal_loss: bool = False,
    trunc: str = "exact",
    seed: int = 0,
    timeout: float = 60.0,
    output: Optional[Union[str, "os.PathLike[str]"]] = None,
    favor: str = "bytes",
) -> Tuple[bytes, dict]:
    """Train ``model`` (a float ONNX export: path or bytes) with the model owner's initial
    weights and the data owners' rows secret; every party runs here. ``data`` and
    ``labels`` are party 1's arrays, or ``{party: array}`` for several data owners
    (float32 rows ``[N, ...]``; integer classes ``[N]``, or float32 targets with
    ``loss="mse"``). ``test=(x, y)``: after each epoch the model owner learns how many
    rows the model classifies right. Returns the trained ONNX model's bytes (also
    written to ``output`` where given) and the stats of ``qmpc train --stats``
    (``test_correct`` per epoch, rounds, bytes). The arrays reach the session as
    ``.npy`` files in a private temporary directory."""
    if trunc not in ("exact", "probabilistic"):
        raise _qmpc.SetupError(f"trunc must be 'exact' or 'probabilistic', not {trunc!r}")
    xs, ys = _rows(data, "data"), _rows(labels, "labels")
    with tempfile.TemporaryDirectory(prefix="qmpc-train-") as d:
        if isinstance(model, (bytes, bytearray)):
            path = os.path.join(d, "model.onnx")
            with open(path, "wb") as f:
                f.write(model)
        else:
            path = os.fspath(model)

        def save(name: str, a: np.ndarray) -> str:
            p = os.path.join(d, name)
            if a.dtype in (np.float64, np.float16):
                a = a.astype(np.float32)
            np.save(p, np.ascontiguousarray(a))
            return p

        data_files = [(p, save(f"x{p}.npy", a)) for p, a in xs.items()]
        label_files = [(p, save(f"y{p}.npy", a)) for p, a in ys.items()]
        test_files = None
        if test is not None:
            test_files = (save("xt.npy", np.asarray(test[0])), save("yt.npy", np.asarray(test[1])))
        out = os.path.join(d, "trained.onnx")
        stats = os.path.join(d, "stats.json")
        _qmpc.train(
            path,
            data_files,
            label_files,
            test_files,
            out,
            stats,
            protocol,
            parties,
            int(epochs),
            int(batch),
            float(lr),
            (optimizer, float(momentum), float(betas[0]), float(betas[1])),
            loss,
            bool(reveal_loss),
            trunc == "exact",
            int(seed),
            float(timeout),
            favor,
        )
        with open(out, "rb") as f:
            trained = f.read()
        with open(stats) as f:
            figures = json.load(f)
    if output is not None:
        with open(os.fspath(output), "wb") as f:
            f.write(trained)
    return trained, figures
