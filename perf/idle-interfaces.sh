#!/usr/bin/env bash
# The per-packet cost of a worker with 2, 100 and 1,000 memif interfaces on
# the node, traffic on 2 of them (weft-pktgen, memif clients, a -> b at a
# fixed rate): idle interfaces' queues sleep (dataplane.queues_sleep, the
# default) and should cost nothing; with SLEEP=false every queue is polled.
# Counts alternate round by round.
#   perf/idle-interfaces.sh [ROUNDS] [RATE_PPS] [SECONDS] [COUNTS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
ROUNDS=${1:-3}; RATE=${2:-2000000}; SECS=${3:-3}; COUNTS=${4:-"2 100 1000"}; SLEEP=${SLEEP:-true}
. perf/lib.sh
perf_prepare idle
A="net_memif0,role=client,socket=$D/a.sock,socket-abstract=no"
B="net_memif1,role=client,socket=$D/b.sock,socket-abstract=no"

run() { # $1: interfaces on the node -> cycles per packet, rx pps
  local n=$1
  {
    echo "eal: {hugepages: true, memory_mb: 1024, file_prefix: perf-idle}"
    echo "dataplane: {workers: [1], mbufs: 32767, queues_sleep: $SLEEP}"
    echo "admin: {socket: $D/weftd.sock, runtime_dir: $D/state}"
    echo "interfaces:"
    echo "  - {name: a, type: memif, socket: $D/a.sock}"
    echo "  - {name: b, type: memif, socket: $D/b.sock}"
    for i in $(seq 1 $(((n - 2) / 2))); do
      echo "  - {name: i$i, type: memif, socket: $D/i$i.sock}"
      echo "  - {name: j$i, type: memif, socket: $D/j$i.sock}"
    done
    echo "cross_connects:"
    echo "  - {name: ab, a: a, b: b}"
    for i in $(seq 1 $(((n - 2) / 2))); do echo "  - {name: x$i, a: i$i, b: j$i}"; done
  } > "$OUT/weft.yaml"
  taskset -c 0 "$BIN/weftd" run --config "$OUT/weft.yaml" > "$OUT/weftd-$n.log" 2>&1 & local pid=$!
  for _ in $(seq 200); do "$BIN/weftctl" show workers --socket "$D/weftd.sock" >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1 # idle queues fall asleep after 20 ms without frames
  local w0; w0=$("$BIN/weftctl" show workers --json --socket "$D/weftd.sock")
  local t; t=$(taskset -c 0 "$BIN/weft-pktgen" --tx "$A" --rx "$B" --size 64 --rate "$RATE" --duration "$SECS" --json)
  local w1; w1=$("$BIN/weftctl" show workers --json --socket "$D/weftd.sock")
  kill -TERM $pid; wait $pid || true
  python3 - "$w0" "$w1" "$t" "$n" <<'PY'
import json, sys
a, b, t, n = json.loads(sys.argv[1])[0], json.loads(sys.argv[2])[0], json.loads(sys.argv[3]), sys.argv[4]
p = b["rxPackets"] - a["rxPackets"]
print(f'{n} {(b["busyCycles"] - a["busyCycles"]) / p:.1f} {t["rxPps"]:.0f} {b["activeQueues"]}')
PY
}

echo "== per-packet cost with idle interfaces: 64 B at $RATE pps for $SECS s, queues_sleep $SLEEP, $ROUNDS rounds"
printf "%-6s %-11s %11s %10s %7s\n" round interfaces cycles/pkt rx_pps polled
: > "$OUT/rows"
for r in $(seq "$ROUNDS"); do
  order=$(python3 -c "d='$COUNTS'.split(); k=$r % len(d); print(' '.join(d[k:] + d[:k]))")
  for n in $order; do
    rm -f "$D"/*.sock
    line=$(run "$n")
    set -- $line
    printf "%-6s %-11s %11s %10s %7s\n" "$r" "$1" "$2" "$3" "$4"
    echo "$r $line" >> "$OUT/rows"
  done
done
python3 - "$OUT/rows" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, n, cpp, rx, polled in rows:
    by.setdefault(r, {})[int(n)] = float(cpp)
counts = sorted({int(x[1]) for x in rows})
base = counts[0]
for n in counts[1:]:
    ratios = [v[n] / v[base] for v in by.values() if n in v and base in v and v[base] > 0]
    print(f"{n} interfaces / {base}: cycles per packet x{st.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}) over {len(ratios)} rounds")
PY
echo "logs: $OUT"
