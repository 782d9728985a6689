#!/usr/bin/env bash
# The digits row of docs/training.md's table: 10 epochs of the digits MLP from PyTorch's
# initial weights under each protocol, with the test count after each epoch; prints the
# accuracy, the wall time, the first step's rounds and bytes of party 0 and the dealer's
# bytes, and checks every trained file against clear's.
# Usage: models/train/digits_table.sh DIR   (DIR holds digits' x_train/y_train/x_test/y_test .npy)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
qmpc=${QMPC_BIN:-$root/target/release/qmpc}
dir=${1:?usage: $0 DIR}
out=$(mktemp -d)
for p in ${PROTOCOLS:-clear rep3 semi2k fss shamir mal-rep3 spdz2k}; do
  "$qmpc" train "$root/models/train/mlp_digits_init.onnx" \
    --data "$dir/x_train.npy" --labels "$dir/y_train.npy" \
    --test-data "$dir/x_test.npy" --test-labels "$dir/y_test.npy" \
    --epochs 10 --batch 128 --lr 0.1 --momentum 0.9 --protocol "$p" \
    -o "$out/$p.onnx" --stats "$out/$p.json" 2>/dev/null
  python3 -c "
import json, sys
d = json.load(open('$out/$p.json')); s = d['step']['per_party'][0]
print('$p: test %d / %d, %.2f s, %d rounds, step %d rounds %.2f MB (party 0), dealer %.1f MB'
      % (d['test_correct'][-1], d['test_rows'], d['wall_s'], d['rounds'], s['rounds'],
         s['bytes_sent'] / 1e6, d['dealer_bytes_sent'] / 1e6))"
  cmp -s "$out/clear.onnx" "$out/$p.onnx" || echo "$p: the trained file differs from clear's"
done
