"""onnxruntime's time for one image of a realnets model, and that image as its own .npy.

    python ort_time.py MODEL.onnx INPUT.npy OUT_X1.npy REPS

Prints the median wall time of REPS runs (after one warm-up) in milliseconds, on one
intra-op and one inter-op thread with all graph optimizations (onnxruntime's default)."""
import sys
import time

import numpy as np
import onnxruntime as ort

model, inp, out, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.load(inp)[:1]
np.save(out, x)
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
s.run(None, {name: x})
times = []
for _ in range(reps):
    t = time.perf_counter()
    s.run(None, {name: x})
    times.append(time.perf_counter() - t)
print(f"{1000 * float(np.median(times)):.3g}")
