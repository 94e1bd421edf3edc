#!/usr/bin/env bash
# Reconfiguration under load: a P2P memif<->memif cross-connect carries traffic at
# a fixed rate, the same for every DUT (RATE; each DUT's no-drop rate is searched
# first with weft-pktgen --ndr and shown, so RATE can be checked against NDR/2) while other
# connections are added and removed as fast as the control plane takes them; the
# generator counts what the untouched connection lost.
#   Weft: `weftctl interface add` two null ports, `xconnect add`, then delete all
#         three, in a loop (each change is an RCU-published table).
#   OVS-DPDK: the same on br0: add two null ports, an in_port->output flow pair,
#         then delete them, in a loop.
#   perf/reconfig-under-load.sh [ROUNDS] [SECONDS] [RATE_PPS]
# Needs root, hugepages (scripts/install.sh) and openvswitch-switch-dpdk.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
ROUNDS=${1:-3}; SECS=${2:-10}; RATE=${3:-1000000}
. perf/lib.sh
perf_prepare reconf
A="net_memif0,role=client,socket=$D/a.sock,socket-abstract=no"
B="net_memif1,role=client,socket=$D/b.sock,socket-abstract=no"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
gen() { # $1 rx queues, $2 rate (0 with --ndr), $3 seconds, [$4 extra]
  taskset -c 0 "$BIN/weft-pktgen" --tx "$A" --rx "$B" --rx-queues "$1" --size 64 --rate "$2" --duration "$3" --json ${4:-}
}

start_weft() {
  cat > "$OUT/weft.yaml" <<YAML
eal: {hugepages: true, memory_mb: 512, file_prefix: perf-reconf}
dataplane: {workers: [1], mbufs: 16383}
admin: {socket: $D/weftd.sock, runtime_dir: $D/state}
interfaces:
  - {name: a, type: memif, socket: $D/a.sock}
  - {name: b, type: memif, socket: $D/b.sock}
cross_connects:
  - {name: ab, a: a, b: b}
YAML
  "$BIN/weftd" run --config "$OUT/weft.yaml" > "$OUT/weftd.log" 2>&1 & echo $! > "$OUT/weftd.pid"
  for _ in $(seq 100); do "$BIN/weftctl" show workers --socket "$D/weftd.sock" >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_weft() { kill -TERM "$(cat "$OUT/weftd.pid")"; wait "$(cat "$OUT/weftd.pid")" 2>/dev/null || true; }
churn_weft() { # runs until killed; counts changes in $OUT/changes
  local n=0 c="$BIN/weftctl"; export WEFT_ADMIN_SOCKET=$D/weftd.sock
  while :; do
    taskset -c 0 $c interface add x1 --type null >/dev/null
    taskset -c 0 $c interface add x2 --type null >/dev/null
    taskset -c 0 $c xconnect add xx x1 x2 >/dev/null
    taskset -c 0 $c xconnect del xx >/dev/null
    taskset -c 0 $c interface del x1 >/dev/null
    taskset -c 0 $c interface del x2 >/dev/null
    n=$((n + 6)); echo $n > "$OUT/changes"
  done
}

OVSDB=""
start_ovs() {
  ovs_start "$OUT/ovs" perf-reconf-ovs
  OVSDB=$OVS_DB
  ovs-vsctl --db=$OVSDB add-port br0 a -- set Interface a type=dpdk "options:dpdk-devargs=net_memif_pa,role=server,socket=$D/a.sock,socket-abstract=no"
  ovs-vsctl --db=$OVSDB add-port br0 b -- set Interface b type=dpdk "options:dpdk-devargs=net_memif_pb,role=server,socket=$D/b.sock,socket-abstract=no"
  ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=a,actions=output:b"
  ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=b,actions=output:a"
  for _ in $(seq 100); do [ -S "$D/a.sock" ] && [ -S "$D/b.sock" ] && break; sleep 0.1; done
  sleep 1
}
stop_ovs() { ovs_stop; }
churn_ovs() {
  local n=0 k=0 m=unix:$OUT/ovs/br0.mgmt
  while :; do
    k=$((k + 1))
    taskset -c 0 ovs-vsctl --db=$OVSDB add-port br0 x1 -- set Interface x1 type=dpdk "options:dpdk-devargs=net_null_x1$k,no-rx=1"
    taskset -c 0 ovs-vsctl --db=$OVSDB add-port br0 x2 -- set Interface x2 type=dpdk "options:dpdk-devargs=net_null_x2$k,no-rx=1"
    taskset -c 0 ovs-ofctl add-flow $m "in_port=x1,actions=output:x2"
    taskset -c 0 ovs-ofctl del-flows $m "in_port=x1"
    taskset -c 0 ovs-vsctl --db=$OVSDB del-port br0 x1
    taskset -c 0 ovs-vsctl --db=$OVSDB del-port br0 x2
    n=$((n + 6)); echo $n > "$OUT/changes"
  done
}

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); DPDK $(dpkg-query -W -f='${Version}' libdpdk-dev); $(ovs-vswitchd --version | head -1)"
echo "== P2P memif<->memif, 64 B; NDR first (1 s trials, 6 steps), then ${SECS} s at $RATE pps while other connections are added and removed; $ROUNDS rounds"
printf "%-6s %-6s %10s %10s %10s %10s %10s %10s %10s\n" round dut ndr_mpps rate_mpps changes sent skipped lost loss_pct
for r in $(seq "$ROUNDS"); do
  for dut in weft ovs; do
    rm -f "$D/a.sock" "$D/b.sock"
    q=1; [ $dut = ovs ] && q=2
    start_$dut
    ndr=$(gen $q 0 1 "--ndr --steps 6" | field ndrPps)
    rate=$RATE
    : > "$OUT/changes"
    churn_$dut & cp=$!
    # The churn loop itself (bash, its forks) on core 0 too, not only the commands.
    taskset -apc 0 $cp >/dev/null
    t=$(gen $q "$rate" "$SECS")
    pkill -P $cp 2>/dev/null || true; kill $cp 2>/dev/null; wait $cp 2>/dev/null || true
    changes=$(cat "$OUT/changes" 2>/dev/null || echo 0)
    stop_$dut
    lost=$(echo "$t" | field lost); loss=$(echo "$t" | field lossRatio)
    sent=$(echo "$t" | field txPackets); skipped=$(echo "$t" | field txSkipped)
    python3 -c "print(f'{\"$r\":<6} {\"$dut\":<6} {$ndr/1e6:10.3f} {$rate/1e6:10.3f} {\"${changes:-0}\":>10} {\"$sent\":>10} {\"$skipped\":>10} {\"$lost\":>10} {$loss*100:10.4f}')"
  done
done
echo "logs: $OUT"
