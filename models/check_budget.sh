#!/usr/bin/env bash
# Fails when any model of models/budget.toml costs more than its budget: one `qmpc cost
# --budget` per entry, which names every figure over its limit.
set -euo pipefail
cd "$(dirname "$0")/.."
qmpc=${QMPC:-target/release/qmpc}
budget=models/budget.toml
failed=0
checked=0
while read -r model protocol batch favor; do
  checked=$((checked + 1))
  if ! "$qmpc" cost "models/$model.onnx" --protocol "$protocol" --batch "$batch" \
      --favor "${favor:-bytes}" --budget "$budget" >/dev/null; then
    failed=$((failed + 1))
  fi
done < <(sed -n 's/.*model = "\([^"]*\)", protocol = "\([^"]*\)", batch = \([0-9]*\)\(, favor = "\([a-z]*\)"\)\{0,1\}.*/\1 \2 \3 \5/p' "$budget")
echo "budget: $checked entries checked, $failed over budget"
[ "$checked" -gt 0 ] && [ "$failed" -eq 0 ]
