"""qmpc: run and train int8-quantized ONNX models under secure multi-party computation.

    import qmpc
    prog = qmpc.compile("model.onnx")             # or the ONNX bytes; weights secret by default
    prog.cost(protocol="rep3", batch=1)           # rounds and bytes per party, per layer
    y = prog.run(x, protocol="rep3")              # numpy in, numpy out

Every call that computes or waits on the network releases the GIL. Errors are
``qmpc.Error`` subclasses (``ModelError``, ``InputError``, ``SetupError``, ``RunError``)
whose message is the one line the ``qmpc`` command prints.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from . import _qmpc
from ._qmpc import Error, InputError, ModelError, RunError, SetupError

__all__ = [
    "Program",
    "compile",
    "load",
    "from_torch",
    "keygen",
    "protocols",
    "train",
    "Error",
    "ModelError",
    "InputError",
    "SetupError",
    "RunError",
]

PathLike = Union[str, "os.PathLike[str]"]


def _as_inputs(x: Any, names: Sequence[str]) -> list:
    """One numpy array per graph input, in graph order: `x` is an array (one input), a
    sequence of arrays, or a mapping from input name to array."""
    if isinstance(x, Mapping):
        unknown = [k for k in x if k not in names]
        if unknown:
            raise InputError(f"the model has no input {unknown[0]!r} (it takes {list(names)})")
        missing = [n for n in names if n not in x]
        if missing:
            raise InputError(f"no array for the model's input {missing[0]!r}")
        arrays = [x[n] for n in names]
    elif isinstance(x, (list, tuple)) and (
        len(names) > 1 or (len(x) > 0 and all(isinstance(a, np.ndarray) for a in x))
    ):
        # Several inputs; a nested list for a one-input model is one array.
        arrays = list(x)
    else:
        arrays = [x]
    return [_array(a) for a in arrays]


def _array(a: Any) -> np.ndarray:
    a = np.asarray(a)
    # The models take float32 (what an ONNX export declares); numpy makes float64 by
    # default. The cast is what `x.astype(np.float32)` does, before quantization.
    if a.dtype in (np.float64, np.float16):
        a = a.astype(np.float32)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    return a


def _model_bytes(model: Any) -> tuple:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<bytes>"
    if hasattr(model, "SerializeToString"):  # an onnx.ModelProto
        return model.SerializeToString(), "<onnx.ModelProto>"
    path = os.fspath(model)
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror})") from None


class Program:
    """A compiled model: the public program every party runs and, at the model owner,
    the secret weights."""

    def __init__(self, inner: "_qmpc.Program", name: str = "program"):
        self._p = inner
        self._name = name

    @staticmethod
    def from_bytes(program: bytes, weights: Optional[bytes] = None) -> "Program":
        """A program (``.qmpc`` contents) and optionally its weights (``.qmpw``)."""
        return Program(_qmpc.Program.from_bytes(program, weights))

    def to_bytes(self) -> bytes:
        """The public program (``.qmpc``), for the other parties."""
        return self._p.to_bytes()

    def weights_bytes(self) -> Optional[bytes]:
        """The model owner's secret weights (``.qmpw``), or None."""
        return self._p.weights_bytes()

    def save(self, path: PathLike) -> None:
        """Write ``path`` (the program) and, with secret weights, ``path`` as ``.qmpw``."""
        self._p.save(os.fspath(path))

    @property
    def inputs(self) -> list:
        """Each graph input as a dict: name, shape (batch first where batched), dtype the
        program shares it as, and whether the data owner gives floats it quantizes."""
        return [
            {"name": n, "shape": tuple(d), "batched": b, "dtype": t, "float": f}
            for (n, d, b, t, f) in self._p.inputs
        ]

    @property
    def outputs(self) -> list:
        return list(self._p.outputs)

    @property
    def secret_weights(self) -> bool:
        return self._p.secret_weights

    @property
    def digest(self) -> str:
        """BLAKE3 of the program, hex: what every party's start-up compares."""
        return self._p.digest

    def disassemble(self) -> str:
        return self._p.disassemble()

    def cost(
        self,
        protocol: str = "rep3",
        batch: int = 1,
        parties: Optional[int] = None,
        model_owner: int = 0,
        data_owner: int = 1,
        output_to: int = 1,
        favor: str = "bytes",
    ) -> dict:
        """Every party's online rounds and bytes, per layer, and the dealer's bytes, for
        ``batch`` samples, without running: what ``run`` measures. The dict is ``qmpc
        cost --format json``'s; ``str(cost)`` of ``cost["text"]`` is its table.
        ``favor="rounds"`` costs ``run(..., favor="rounds")``."""
        js, text = self._p.cost(
            protocol, parties, batch, model_owner, data_owner, output_to, self._name, favor
        )
        out = json.loads(js)
        out["text"] = text
        return out

    def run(
        self,
        x: Any,
        protocol: str = "clear",
        parties: Optional[int] = None,
        *,
        model_owner: int = 0,
        data_owner: int = 1,
        output_to: int = 1,
        timeout: float = 60.0,
        return_stats: bool = False,
        favor: str = "bytes",
    ):
        """Run every party of ``protocol`` here (threads linked over loopback) on ``x``:
        an array for a one-input model, a list in graph order, or a dict by input name.
        Returns the first output (a list where the model has several), and with
        ``return_stats`` also the stats dict of ``qmpc run --stats``. ``favor="rounds"``
        is ``qmpc run --favor rounds`` (rep3: a fifth fewer rounds for more bytes)."""
        arrays = _as_inputs(x, [i["name"] for i in self.inputs])
        outs, stats = self._p.run(
            arrays,
            protocol,
            parties,
            model_owner,
            data_owner,
            output_to,
            float(timeout),
            favor,
        )
        y = outs[0] if len(outs) == 1 else outs
        return (y, json.loads(stats)) if return_stats else y

    def party(
        self,
        config: PathLike,
        id: int,
        x: Any = None,
        *,
        key: Optional[PathLike] = None,
        insecure: bool = False,
        return_stats: bool = False,
    ):
        """Run party ``id`` of the session that ``config`` (parties.toml) describes, on
        this host, as ``qmpc party`` does: the model owner's program holds the weights,
        the data owner passes ``x``; links are mutual TLS with ``key`` (``qmpc.keygen``)
        unless ``insecure``. Every party but the model owner must be given the public
        program alone (``Program.from_bytes(prog.to_bytes())``), or it is refused.
        Returns the output as ``run`` does where it is revealed here, else None (and with
        ``return_stats`` this party's stats)."""
        arrays = None if x is None else _as_inputs(x, [i["name"] for i in self.inputs])
        outs, stats = self._p.party(
            os.fspath(config),
            id,
            arrays,
            None if key is None else os.fspath(key),
            insecure,
        )
        if all(o is None for o in outs):
            y = None
        else:
            y = outs[0] if len(outs) == 1 else outs
        return (y, json.loads(stats)) if return_stats else y

    def dealer(
        self, config: PathLike, *, key: Optional[PathLike] = None, insecure: bool = False
    ) -> int:
        """Run the dealer of the session in ``config`` (semi2k, fss, spdz2k); returns the
        bytes it sent."""
        return self._p.dealer(
            os.fspath(config), None if key is None else os.fspath(key), insecure
        )

    def __repr__(self) -> str:
        ins = ", ".join(f"{i['name']}{list(i['shape'])}" for i in self.inputs)
        w = "secret" if self.secret_weights else "public"
        return f"<qmpc.Program inputs=[{ins}] weights={w} digest={self.digest[:12]}>"


def compile(
    model: Any,
    *,
    weights: str = "secret",
    trunc: str = "exact",
    optimize: bool = True,
) -> Program:
    """Compile an int8-quantized ONNX model (a path, the file's bytes, or an
    ``onnx.ModelProto``): QOperator or QDQ, as onnxruntime's quantizer writes them.
    ``weights="secret"`` keeps them the model owner's; ``"public"`` makes them constants."""
    if weights not in ("secret", "public"):
        raise SetupError(f"weights must be 'secret' or 'public', not {weights!r}")
    if trunc not in ("exact", "probabilistic"):
        raise SetupError(f"trunc must be 'exact' or 'probabilistic', not {trunc!r}")
    data, name = _model_bytes(model)
    return Program(
        _qmpc.compile(data, name, weights == "secret", trunc == "exact", bool(optimize)),
        name,
    )


def load(path: PathLike, *, weights: bool = True) -> Program:
    """A ``.qmpc`` program (with its ``.qmpw`` weights beside it, where secret) or an
    ``.onnx`` model compiled with secret weights. ``weights=False`` loads the public
    program alone, as every party but the model owner holds it."""
    path = os.fspath(path)
    if not weights:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ModelError(f"{path}: cannot read ({e.strerror})") from None
        return Program(_qmpc.Program.from_bytes(data, None), path)
    return Program(_qmpc.load(path), path)


def keygen(id: Union[int, str], out: PathLike) -> dict:
    """Make party ``id``'s (or ``"dealer"``'s) TLS key and self-signed certificate in
    ``out``, as ``qmpc keygen`` does; never overwrites a key."""
    name, key, crt, fp = _qmpc.keygen(str(id), os.fspath(out))
    return {"name": name, "key": key, "certificate": crt, "fingerprint": fp}


def protocols() -> list:
    """The protocols this build runs."""
    return [
        {"name": n, "parties": p, "dealer": d, "malicious": m}
        for (n, p, d, m) in _qmpc.protocols()
    ]


from ._torch import from_torch  # noqa: E402
from ._train import train  # noqa: E402
