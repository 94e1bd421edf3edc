#!/usr/bin/env bash
# Replication cost per replica: reference-counted clones against copies, by
# frame size, in-process on ring ports, alternating the two round by round.
#   perf/replicate-bench.sh [ROUNDS] [ITERATIONS] [MEMBERS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product weft-replicatebench >/dev/null
BIN=$(swift build -c release --show-bin-path)/weft-replicatebench
echo "== CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); DPDK $(dpkg-query -W -f='${Version}' libdpdk-dev)"
taskset -c 1 "$BIN" --rounds "${1:-7}" --iterations "${2:-10000}" --members "${3:-4}"
