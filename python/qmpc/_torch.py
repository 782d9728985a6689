"""qmpc.from_torch: a PyTorch model to a qmpc program, by the route ML engineers already
take for deployment — torch.onnx.export, onnxruntime's quant_pre_process and
quantize_static (QDQ, int8, per-channel weights) — then qmpc.compile."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Iterable, Optional

import numpy as np

from ._qmpc import SetupError


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def from_torch(
    model: Any,
    example_input: Any,
    calibration: Optional[Iterable[Any]] = None,
    *,
    per_channel: bool = True,
    opset: int = 17,
    weights: str = "secret",
    trunc: str = "exact",
    save_onnx: Optional[str] = None,
):
    """Export ``model`` (a ``torch.nn.Module`` taking one tensor) at ``example_input``'s
    shape, quantize it to int8 with onnxruntime's ``quantize_static`` calibrated on
    ``calibration`` (an iterable of input batches; ``[example_input]`` where omitted),
    and compile it. ``save_onnx`` keeps the quantized ONNX file (to compare with
    onnxruntime). Needs torch, onnx and onnxruntime (``pip install 'qmpc[torch]'``)."""
    try:
        import torch
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise SetupError(
            f"qmpc.from_torch needs torch, onnx and onnxruntime ({e}): "
            "pip install 'qmpc[torch]'"
        ) from None
    from . import compile

    batches = [_numpy(b) for b in (calibration if calibration is not None else [example_input])]
    if not batches:
        raise SetupError("qmpc.from_torch: calibration holds no batch")

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self.rows = iter([{name: b} for b in batches])

        def get_next(self):
            return next(self.rows, None)

    x = torch.as_tensor(_numpy(example_input))
    model.eval()
    with tempfile.TemporaryDirectory(prefix="qmpc-from-torch-") as d:
        f32 = os.path.join(d, "model.onnx")
        pre = os.path.join(d, "pre.onnx")
        q = save_onnx or os.path.join(d, "model.int8.onnx")
        with torch.no_grad():
            torch.onnx.export(
                model,
                (x,),
                f32,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                # Any batch: calibration batches and runs need not have the example's.
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        quant_pre_process(f32, pre, skip_symbolic_shape=False)
        quantize_static(
            pre,
            q,
            Reader("input"),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
        return compile(q, weights=weights, trunc=trunc)
