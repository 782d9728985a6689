#!/usr/bin/env bash
# docs/performance.md's ImageNet table, from one command: every model of
# ../shared/corpus/realnets (or CORPUS, any directory in that layout) at batch 1 on its
# first reference image, under `clear` and each protocol given (default rep3), all parties
# as threads of one process over loopback, beside onnxruntime's 1-thread time on the same
# file. Prints a markdown table: `clear` cold (`qmpc run --stats`, one run) and warm (the
# median of 19 runs after the first in one process, as onnxruntime's is taken:
# benches/clear.rs); rounds and MB sent (the busiest party, online) from
# `--stats`, wall and online seconds, the process's peak RSS, and whether the output is
# byte-identical with clear's.
#
# Usage: benches/realnets/run.sh [PROTOCOL[:FAVOR]...]
#   (`rep3:rounds` runs rep3 with `--favor rounds`; a row per protocol given)
#   QMPC_BIN   the binary (default target/release/qmpc)
#   CORPUS     the models' directory (default ../shared/corpus/realnets; ../shared/corpus
#              gives the main corpus's models, a row with the error for those that do not
#              compile)
#   MODELS     a regex on `model/variant` (default: all)
#   PYTHON     a python with onnxruntime and numpy (default: python3 if it has them, else a
#              virtualenv made in target/bench-venv with the corpus's versions)
#   ORT_REPS   onnxruntime runs per model (default 20; the median is printed)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
qmpc=${QMPC_BIN:-$root/target/release/qmpc}
corpus=${CORPUS:-$root/../shared/corpus/realnets}
corpus=$(cd "$corpus" && pwd)  # absolute: relative paths broke the reference links
filter=${MODELS:-.}
reps=${ORT_REPS:-20}
protocols=("$@")
[ ${#protocols[@]} -gt 0 ] || protocols=(rep3)
py=${PYTHON:-}
if [ -z "$py" ]; then
  if python3 -c "import onnxruntime, numpy" 2>/dev/null; then
    py=python3
  else
    venv=$root/target/bench-venv
    if [ ! -x "$venv/bin/python" ]; then
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q onnxruntime==1.31.1 numpy==2.4.6
    fi
    py=$venv/bin/python
  fi
fi
# `clear` warm (benches/clear.rs), built once.
clear_bench=$(cd "$root" && cargo bench --bench clear --no-run --message-format=json 2>/dev/null |
  "$py" -c "import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get('reason') == 'compiler-artifact' and m['target']['name'] == 'clear' and m.get('executable'):
        print(m['executable'])")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One figure of a stats file.
stat() { "$py" -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
echo "| model | format | onnxruntime 1 thread | clear (cold / warm) | clear / ort | protocol | rounds | MB sent (busiest party) | dealer MB | wall | online | peak RSS | = clear |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for onnx in "$corpus"/models/*/*.onnx; do
  var=$(basename "$onnx" .onnx)
  model=$(basename "$(dirname "$onnx")")
  [[ "$model/$var" =~ $filter ]] || continue
  ref=$corpus/models/$model/ref/$var
  ort_ms=$("$py" "$root/benches/realnets/ort_time.py" "$onnx" "$ref/input.npy" "$work/x.npy" "$reps")
  if ! "$qmpc" compile "$onnx" -o "$work/m.qmpc" >/dev/null 2>"$work/err"; then
    # A float or dynamically quantized file of the main corpus: say why, go on.
    echo "| $model | $var | $ort_ms ms | — | — | — | — | — | — | — | — | — | $(tr '|' '/' <"$work/err" | head -c 160) |"
    continue
  fi
  "$qmpc" run "$work/m.qmpc" --protocol clear --input "$work/x.npy" --output "$work/clear.npy" \
    --stats "$work/clear.json"
  clear_ms=$(stat "$work/clear.json" "f\"{1000 * j['wall_s']:.3g}\"")
  # The same program warm, as onnxruntime's time is taken (benches/clear.rs).
  warm_ms=$(MIMALLOC_PURGE_DELAY=-1 MIMALLOC_ALLOW_THP=0 "$clear_bench" "$work/m.qmpc" "$work/x.npy" 20 | cut -d' ' -f2)
  ratio=$("$py" -c "print(f'{$clear_ms / $ort_ms:.0f}× / {$warm_ms / $ort_ms:.0f}×' if $ort_ms > 0 else '—')")
  for p in "${protocols[@]}"; do
    name=${p%%:*}
    favor=bytes
    [[ "$p" == *:* ]] && favor=${p#*:}
    /usr/bin/time -f "%M" -o "$work/rss" "$qmpc" run "$work/m.qmpc" --protocol "$name" \
      --favor "$favor" --quiet --input "$work/x.npy" --output "$work/out.npy" --stats "$work/s.json"
    rounds=$(stat "$work/s.json" "j['rounds']")
    mb=$(stat "$work/s.json" "f\"{max(p['bytes_sent'] for p in j['per_party']) / 1e6:.3g}\"")
    dealer=$(stat "$work/s.json" "f\"{j['preprocessing']['bytes_sent'] / 1e6:.3g}\"")
    wall=$(stat "$work/s.json" "f\"{j['wall_s']:.3g}\"")
    online=$(stat "$work/s.json" "f\"{j['online_s']:.3g}\"")
    rss=$("$py" -c "print(f'{$(cat "$work/rss") / 1e6:.1f}')")
    same=$(cmp -s "$work/clear.npy" "$work/out.npy" && echo yes || echo NO)
    echo "| $model | $var | $ort_ms ms | $clear_ms / $warm_ms ms | $ratio | $p | $rounds | $mb | $dealer | $wall s | $online s | $rss GB | $same |"
  done
done
