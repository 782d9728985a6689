#!/usr/bin/env python3
"""make_extra.py -- ResNet-50 and EfficientNet-B0, the two networks of issue 21's goal table
that ../shared/corpus/realnets does not hold (too large to commit), built by the corpus's
own recipe (../shared/tools/make_realnets.py: random initialisation, TorchScript export,
quant_pre_process, quantize_static QDQ s8 per channel and QOperator u8 per tensor,
onnxruntime references) into a directory of the same layout.

    python benches/realnets/make_extra.py --out target/realnets-extra --resnet50
    python benches/realnets/make_extra.py --out target/realnets-extra --efficientnet_b0
    CORPUS=target/realnets-extra benches/realnets/run.sh rep3

EfficientNet-B0 is torchvision's `efficientnet_b0` (SiLU = x·Sigmoid(x), squeeze-excitation
with Sigmoid gates, stochastic depth off in eval mode), registered here under the script's
model table; every other argument is make_realnets.py's. Needs its requirements (torch,
torchvision, onnxscript, onnxruntime; the versions its docstring names).
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "..", "..", "shared", "tools", "make_realnets.py")

spec = importlib.util.spec_from_file_location("make_realnets", TOOL)
if spec is None or not os.path.exists(TOOL):
    sys.exit(f"make_extra.py: {TOOL} not found (../shared beside the repository)")
mr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mr)

mr.MODELS["efficientnet_b0"] = (
    lambda: mr.torchvision.models.efficientnet_b0(weights=None),
    mr.IMAGENET,
    "torchvision efficientnet_b0 (MBConv blocks, SiLU = x*Sigmoid(x), squeeze-excitation "
    "with Sigmoid gates)",
)
mr.EXTRA_SPECS["efficientnet_b0"] = [("efficientnet_b0", "efficientnet_b0", "ts", mr.STATIC)]

if __name__ == "__main__":
    mr.main()
