#!/usr/bin/env bash
# LAN and WAN figures of docs/performance.md: every party (and the dealer) on its own host
# (a network namespace), with mutual TLS, each host's uplink shaped by `tc tbf`, and on
# the WAN a one-way delay added by a relay in front of every party (tests/netns/relay.py:
# this kernel's tc has no netem). Needs root. Prints one line per model, protocol and
# network, with the measured time beside rounds × RTT + bytes / bandwidth and rounds ×
# RTT / 2 + bytes / bandwidth (a markdown table row: docs/performance.md).
#
# Usage: benches/wan/run.sh [BATCH]        (QMPC_BIN overrides the binary; MODELS the
#        models, default "lenet resnet_tiny"; CORPUS their directory, default
#        ../shared/corpus/models — ../shared/corpus/realnets/models for resnet18)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
qmpc=${QMPC_BIN:-$root/target/release/qmpc}
corpus=${CORPUS:-$root/../shared/corpus/models}
models=${MODELS:-lenet resnet_tiny}
batch=${1:-1}
work=$(mktemp -d)
p=qwan$$
hosts=5            # parties 0..2 (or 0..1 and the dealer), and host 4 for the relays
cleanup() {
  for i in $(seq 0 $((hosts - 1))); do ip netns del ${p}h$i 2>/dev/null || true; done
  ip netns del ${p}hub 2>/dev/null || true
  pkill -f "relay.py 10.89." 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add ${p}hub
ip -n ${p}hub link add br0 type bridge
ip -n ${p}hub link set br0 up
for i in $(seq 0 $((hosts - 1))); do
  ip netns add ${p}h$i
  ip -n ${p}h$i link add eth0 type veth peer name p$i netns ${p}hub
  ip -n ${p}hub link set p$i master br0 up
  ip -n ${p}h$i addr add 10.89.0.$((i + 1))/24 dev eth0
  ip -n ${p}h$i link set eth0 up
  ip -n ${p}h$i link set lo up
done
addr() { echo 10.89.0.$(($1 + 1)); }
shape() { # RATE: every host's uplink
  for i in $(seq 0 $((hosts - 1))); do
    ip netns exec ${p}h$i tc qdisc replace dev eth0 root tbf rate "$1" burst 1mb latency 100ms
  done
}
for i in 0 1 2 dealer; do "$qmpc" keygen --id $i --out "$work/keys" >/dev/null; done

# config PROTOCOL PARTIES DEALER VIA_RELAY: the config every member reads (with relays, a
# member dials party j at the relay host's port 7100 + j, which forwards to party j).
config() {
  local protocol=$1 n=$2 dealer=$3 relay=$4 f="$work/$1-$4.toml"
  echo "protocol = \"$protocol\"" > "$f"
  echo "io_timeout_s = 600" >> "$f"
  for i in $(seq 0 $((n - 1))); do
    local at="$(addr $i):7000"
    [ "$relay" = 1 ] && at="$(addr 4):$((7100 + i))"
    printf '[[party]]\nid = %d\naddress = "%s"\ncertificate = "keys/party-%d.crt"\n' $i "$at" $i >> "$f"
  done
  if [ "$dealer" = 1 ]; then
    local at="$(addr $n):7000"
    [ "$relay" = 1 ] && at="$(addr 4):$((7100 + n))"
    printf '[dealer]\naddress = "%s"\ncertificate = "keys/dealer.crt"\n' "$at" >> "$f"
  fi
  echo "$f"
}
# own_config CONFIG MEMBER: the member's copy, with its own listening address.
own_config() {
  local f="${1%.toml}-own$2.toml"
  sed "s/$(addr 4):$((7100 + $2))\"/$(addr $2):7000\"/" "$1" > "$f"
  echo "$f"
}

relays_up() { # DELAY_MS MEMBERS
  for j in $(seq 0 $(($2 - 1))); do
    ip netns exec ${p}h4 python3 "$root/tests/netns/relay.py" "$(addr 4):$((7100 + j))" "$(addr $j):7000" --delay-ms "$1" > "$work/relay$j" &
  done
  sleep 0.5
}
relays_down() { pkill -f "relay.py 10.89." 2>/dev/null || true; sleep 0.2; }

measure() { # MODEL_NAME PROTOCOL NETWORK RTT_MS MBIT
  local name=$1 protocol=$2 net=$3 rtt=$4 mbit=$5
  local n=3 dealer=0 key
  case $protocol in semi2k) dealer=1 ;; fss) n=2; dealer=1 ;; esac
  local members=$((n + dealer)) relay=0
  [ "$net" = wan ] && relay=1
  local cfg; cfg=$(config "$protocol" $n $dealer $relay)
  [ $relay = 1 ] && relays_up $((rtt / 2)) $members
  local start; start=$(date +%s.%N)
  local pids=()
  for i in $(seq 0 $((members - 1))); do
    local own="$cfg"; [ $relay = 1 ] && own=$(own_config "$cfg" $i)
    local args=(party --config "$own" "$work/$name.qmpc" --stats "$work/s$i.json")
    if [ $i -lt $n ]; then args+=(--id $i --key "$work/keys/party-$i.key"); else args+=(--role dealer --key "$work/keys/dealer.key"); fi
    [ $i = 0 ] && args+=(--weights-file "$work/$name.qmpw")
    [ $i = 1 ] && args+=(--input "$work/$name.npy" --output "$work/out.npy")
    (cd "$work" && ip netns exec ${p}h$i "$qmpc" "${args[@]}" 2> "$work/e$i") &
    pids+=($!)
  done
  local ok=1
  for pid in "${pids[@]}"; do wait $pid || ok=0; done
  local end; end=$(date +%s.%N)
  [ $relay = 1 ] && relays_down
  if [ $ok = 0 ]; then echo "$name $protocol $net: FAILED: $(cat "$work"/e* | head -3)"; return; fi
  python3 - "$work/s0.json" "$name" "$protocol" "$net" "$rtt" "$mbit" "$start" "$end" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
name, protocol, net = sys.argv[2:5]
rtt, mbit, start, end = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
rounds, sent = s["rounds"], s["bytes_sent"]
# A round is every party's message at once: one one-way latency (RTT / 2) each.
wire = sent * 8 / (mbit * 1e6)
full, half = rounds * rtt / 1000 + wire, rounds * rtt / 2000 + wire
print(f"| {name} | {protocol} | {net} | {s['online_s']:.3f} s | {end - start:.2f} s | {rounds} | "
      f"{sent / 1e6:.2f} MB | {full:.3f} s | {half:.3f} s |")
PY
}

for name in $models; do
  "$qmpc" compile "$corpus/$name/qdq_s8_pc.onnx" -o "$work/$name.qmpc" >/dev/null
  python3 - "$corpus/$name/ref/qdq_s8_pc/input.npy" "$work/$name.npy" "$batch" <<'PY'
import sys
# The first BATCH rows of the reference input (a version 1.0 .npy of float32 [N, ...]).
src, dst, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = open(src, "rb").read()
assert b[6] == 1, "a version 1.0 .npy"
hlen = int.from_bytes(b[8:10], "little")
header = b[10:10 + hlen].decode("latin1")
shape = tuple(int(d) for d in header.split("'shape': (")[1].split(")")[0].split(",") if d.strip())
per = 4
for d in shape[1:]:
    per *= d
h = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (str((k,) + shape[1:]),)
h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
data = b[10 + hlen:10 + hlen + k * per]
open(dst, "wb").write(b[:8] + len(h).to_bytes(2, "little") + h.encode("latin1") + data)
PY
done
for net in lan wan; do
  if [ $net = lan ]; then shape 1gbit; rtt=0.2; mbit=1000; else shape 400mbit; rtt=40; mbit=400; fi
  for name in $models; do
    for protocol in ${PROTOCOLS:-rep3 semi2k shamir fss}; do
      measure $name $protocol $net $rtt $mbit
    done
  done
done
