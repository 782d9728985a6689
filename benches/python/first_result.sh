#!/usr/bin/env bash
# The time from `pip install ./python` in a fresh virtualenv to the first result: the
# README's Python lines on LeNet (../shared/corpus) under rep3, checked equal to `qmpc run`.
# Usage: benches/python/first_result.sh [cold]
#   cold: build in an empty cargo target directory (what a fresh clone pays), else reuse
#   the tree's target/ (what a developer who ran `cargo build --release` pays).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$root/../shared/corpus/models/lenet/qdq_s8_pc.onnx
x=$root/../shared/corpus/models/lenet/ref/qdq_s8_pc/input.npy
[ -f "$model" ] || { echo "$model is missing (../shared beside the repository)" >&2; exit 1; }
if [ "${1:-}" = cold ]; then export CARGO_TARGET_DIR=$work/target; fi
start=$(date +%s.%N)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$root/python"
installed=$(date +%s.%N)
cd "$work"
"$work/venv/bin/python" - "$model" "$x" <<'PY'
import sys, numpy as np
import qmpc
prog = qmpc.compile(sys.argv[1])
print(prog.cost(protocol="rep3", batch=1)["text"].splitlines()[0])
y = prog.run(np.load(sys.argv[2]), protocol="rep3")
np.save("y.npy", y)
print("predictions:", y.argmax(1)[:10])
PY
done=$(date +%s.%N)
qmpc=${QMPC_BIN:-$root/target/release/qmpc}
"$qmpc" run "$model" --protocol rep3 --input "$x" --output "$work/y_cli.npy"
"$work/venv/bin/python" -c "
import numpy as np, sys
a, b = np.load('$work/y.npy'), np.load('$work/y_cli.npy')
sys.exit(0 if a.dtype == b.dtype and np.array_equal(a, b) else 'differs from qmpc run')"
echo "equal to qmpc run"
python3 -c "print('pip install: %.1f s, then the first result: %.1f s, in all %.1f s' % ($installed - $start, $done - $installed, $done - $start))"
