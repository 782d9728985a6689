#!/usr/bin/env bash
# Writes models/budget.toml: the current rep3 (favouring bytes, and rounds), semi2k (2
# parties), shamir (3 parties), fss, spdz2k (2 parties) and mal-rep3 cost of every model of models/ that compiles,
# at batch 1, as the limit. `.ci/run` fails when a change makes any of them cost more; after
# a change that makes them cheaper, run this again to ratchet the budget down.
set -euo pipefail
cd "$(dirname "$0")/.."
qmpc=${QMPC:-target/release/qmpc}
out=models/budget.toml
{
  echo "# Communication budget of models/ (rounds of the slowest party, bytes sent by all"
  echo "# parties). Written by models/update_budget.sh; checked by .ci/run."
  echo "budget = ["
  for f in models/*/*.onnx; do
    m=${f#models/}
    m=${m%.onnx}
    # `rep3:rounds`: rep3 with `--favor rounds`, an entry with `favor = "rounds"`.
    for p in rep3 rep3:rounds semi2k shamir fss spdz2k mal-rep3; do
      protocol=${p%%:*}
      favor=bytes
      extra=
      if [[ "$p" == *:* ]]; then
        favor=${p#*:}
        extra=", favor = \"$favor\""
      fi
      if j=$("$qmpc" cost "$f" --protocol "$protocol" --favor "$favor" --format json 2>/dev/null); then
        rounds=$(grep -o '"rounds": [0-9]*' <<<"$j" | head -1 | grep -o '[0-9]*$')
        bytes=$(grep -o '"bytes_sent": [0-9]*' <<<"$j" | head -1 | grep -o '[0-9]*$')
        echo "  { model = \"$m\", protocol = \"$protocol\", batch = 1$extra, rounds = $rounds, bytes_sent = $bytes },"
      fi
    done
  done
  echo "]"
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
