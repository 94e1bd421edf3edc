#!/usr/bin/env bash
# In-process micro-benchmark of the P2P cross-connect stage on ring ports,
# against the io-forward limit on the same ports (RX burst + TX burst, nothing
# else), alternating the two contenders round by round; then instructions per
# packet under callgrind, which do not depend on the machine's noise.
#   perf/stage-bench.sh [ROUNDS] [ITERATIONS] [STAGE]
# STAGE p2p (default), vlan, vxlan, bridge or replicate: vlan and vxlan time a round trip through
# a VLAN (push + pop) or VXLAN (encap + decap) tunnel instead of the P2P
# cross-connect (cycles per packet: the mean of the two directions); bridge a bridge
# domain of the two ports; replicate a replication group to 4 members (per ingress frame).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
ROUNDS=${1:-9}
ITER=${2:-200000}
STAGE=${3:-p2p}
swift build -c release --product weft-stagebench >/dev/null
BIN=$(swift build -c release --show-bin-path)/weft-stagebench

echo "== CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); DPDK $(pkg-config --modversion libdpdk 2>/dev/null || dpkg-query -W -f='${Version}' libdpdk-dev)"
echo "== cycles per packet (TSC), $ROUNDS rounds alternating"
taskset -c 1 "$BIN" --rounds "$ROUNDS" --iterations "$ITER" --stage "$STAGE" | tail -4

if command -v valgrind >/dev/null; then
  echo "== instructions per packet (callgrind, deterministic)"
  # valgrind 3.19 cannot read the toolchain's DWARF 5: keep symbols, drop debug info.
  tmp=$(mktemp -d)
  objcopy --strip-debug "$BIN" "$tmp/bench"
  for who in xconnect baseline; do
    fn=wf_worker_poll; [ "$who" = baseline ] && fn=wf_io_poll_once
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$who" --toggle-collect="$fn" \
      "$tmp/bench" --rounds 1 --iterations 20000 --only "$who" --stage "$STAGE" > "$tmp/out.$who" 2>&1
    pk=$(sed -nE 's/.*round 0 [a-z]+: ([0-9]+) packets.*/\1/p' "$tmp/out.$who")
    ir=$(sed -nE 's/.*Collected : ([0-9]+).*/\1/p' "$tmp/out.$who")
    label=$who; [ "$who" = xconnect ] && label=$STAGE
    echo "$label: $ir instructions / $pk packets = $(awk -v a="$ir" -v b="$pk" 'BEGIN{printf "%.2f", a/b}') per packet (inside $fn)"
  done
  rm -rf "$tmp"
fi
