#!/usr/bin/env bash
# Connection scaling: the per-packet cost at 1, 1,000, 10,000 and 100,000
# connections, Weft against OVS-DPDK, same generator, same pinning.
#   perf/scale.sh [ROUNDS] [RATE] [SECONDS] [COUNTS]   (defaults: 3 2000000 3 "1 1000 10000 100000")
# A connection is one VXLAN tunnel-to-tunnel cross-connect: VNI v arriving on
# uplink B (underlay 10.253.0.1, peer 10.253.0.2) leaves on uplink A (underlay
# 10.254.0.1, peer 10.254.0.2) re-encapsulated with VNI v. The generator
# (weft-pktgen, memif client, core 0) sends 114-byte VXLAN frames (64-byte
# inner) into B cycling over the N VNIs frame by frame, so consecutive frames
# belong to different connections (the worst case for caches), and finds its
# sequence numbers inside what comes back on A.
#   Weft: N vxlan interfaces on each uplink, N cross-connects (one YAML file,
#         applied as one batch).
#   OVS:  a flow-based VXLAN port per underlay (options:key=flow) on br0, the
#         memif uplinks on br-phy-a / br-phy-b holding the underlay addresses,
#         and N OpenFlow rules `in_port=vxb,tun_id=v,actions=set_field:v->tun_id,output:vxa`.
# Before each measured trial a warm-up at the same rate runs (2 s + 1 s per
# 25,000 connections), so OVS has installed its datapath flows (one upcall
# per VNI) and Weft's tables are touched the same way. Cycles per packet are each DUT's busy cycles per
# received packet, as in p2p-memif.sh.
# Needs root, hugepages (scripts/install.sh) and openvswitch-switch-dpdk.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
. perf/lib.sh
ROUNDS=${1:-3}; RATE=${2:-2000000}; SECS=${3:-3}; COUNTS=${4:-"1 1000 10000 100000"}
DUTS=${DUTS:-"weft ovs"}
SIZE=114 VNI0=1000
UL_A=02:77:70:00:00:0a UL_B=02:77:70:00:00:0b   # the DUT's uplinks
GEN_A=02:77:70:00:01:0a GEN_B=02:77:70:00:01:0b # the generator's side of each
perf_prepare scale
A="net_memif0,role=client,socket=$D/a.sock,socket-abstract=no,mac=$GEN_A"
B="net_memif1,role=client,socket=$D/b.sock,socket-abstract=no,mac=$GEN_B"

pktgen() { # $1: N, $2: rx queues, $3: seconds, [$4: hold seconds] -> JSON trial
  taskset -c 0 "$BIN/weft-pktgen" --tx "$B" --rx "$A" --rx-queues "$2" --size $SIZE --rate "$RATE" --duration "$3" \
    --hold "${4:-0}" --json --vxlan-vni $VNI0 --vxlan-vnis "$1" \
    --outer-src 10.253.0.2 --outer-dst 10.253.0.1 --outer-dst-mac $UL_B
}
warmup() { echo $((2 + $1 / 25000)); }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

run_weft() { # $1: N -> cycles per packet; the trial JSON in $OUT/weft.json
  local n=$1
  python3 - "$n" > "$OUT/weft.yaml" <<PY
import sys
n = int(sys.argv[1])
print(f"""eal: {{hugepages: true, memory_mb: 1024, file_prefix: perf-scale}}
dataplane: {{workers: [1], mbufs: 16383, max_cross_connects: {2 * n + 16}}}
admin: {{socket: $D/weftd.sock, runtime_dir: $D/state}}
interfaces:
  - name: a
    type: memif
    socket: $D/a.sock
    mac: "$UL_A"
    underlay: {{ipv4: 10.254.0.1/24, neighbours: [{{ip: 10.254.0.2, mac: "$GEN_A"}}]}}
  - name: b
    type: memif
    socket: $D/b.sock
    mac: "$UL_B"
    underlay: {{ipv4: 10.253.0.1/24, neighbours: [{{ip: 10.253.0.2, mac: "$GEN_B"}}]}}""")
for i in range(n):
    print(f"  - {{name: i{i}, type: vxlan, uplink: b, vni: {$VNI0 + i}, remote: 10.253.0.2}}")
    print(f"  - {{name: o{i}, type: vxlan, uplink: a, vni: {$VNI0 + i}, remote: 10.254.0.2}}")
print("cross_connects:")
for i in range(n):
    print(f"  - {{name: x{i}, a: i{i}, b: o{i}}}")
PY
  local t0; t0=$(date +%s.%N)
  "$BIN/weftd" run --config "$OUT/weft.yaml" > "$OUT/weftd.log" 2>&1 & local pid=$!
  for _ in $(seq 3000); do "$BIN/weftctl" show workers --socket "$D/weftd.sock" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "weft N=$n: up in $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s" >> "$OUT/setup"
  pktgen "$n" 1 "$(warmup "$n")" > /dev/null
  local w0; w0=$("$BIN/weftctl" show workers --json --socket "$D/weftd.sock")
  local t; t=$(pktgen "$n" 1 "$SECS")
  local w1; w1=$("$BIN/weftctl" show workers --json --socket "$D/weftd.sock")
  kill -TERM $pid; wait $pid || true
  echo "$t" > "$OUT/weft.json"
  python3 - "$w0" "$w1" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1])[0], json.loads(sys.argv[2])[0]
p = b["rxPackets"] - a["rxPackets"]
print(f'{(b["busyCycles"] - a["busyCycles"]) / p:.1f}' if p else "nan")
PY
}

run_ovs() { # $1: N -> cycles per packet; the trial JSON in $OUT/ovs.json
  local n=$1 t0; t0=$(date +%s.%N)
  ovs_start "$OUT/ovs" perf-scale-ovs
  local br="unix:$OUT/ovs/br0.mgmt" u
  for u in a b; do
    local mac=$UL_A net=10.254.0 gen=$GEN_A
    [ $u = b ] && mac=$UL_B net=10.253.0 gen=$GEN_B
    ovs-vsctl --db=$OVS_DB add-br br-phy-$u -- set bridge br-phy-$u datapath_type=netdev other_config:hwaddr=$mac
    ovs-vsctl --db=$OVS_DB add-port br-phy-$u $u -- set Interface $u type=dpdk \
      "options:dpdk-devargs=net_memif_p$u,role=server,socket=$D/$u.sock,socket-abstract=no,mac=$mac"
    ip addr add $net.1/24 dev br-phy-$u; ip link set br-phy-$u up
    ovs-appctl -t "$OVS_CTL" ovs/route/add $net.1/24 br-phy-$u >/dev/null
    ovs-appctl -t "$OVS_CTL" tnl/neigh/set br-phy-$u $net.2 $gen >/dev/null
    ovs-vsctl --db=$OVS_DB add-port br0 vx$u -- set Interface vx$u type=vxlan options:remote_ip=$net.2 \
      options:local_ip=$net.1 options:key=flow options:dst_port=4789
  done
  python3 -c "
for i in range($n): print(f'in_port=vxb,tun_id={$VNI0 + i},actions=set_field:{$VNI0 + i}->tun_id,output:vxa')" > "$OUT/flows"
  ovs-ofctl add-flows "$br" "$OUT/flows"
  echo "ovs N=$n: up in $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s" >> "$OUT/setup"
  sleep 1
  # OVS sends on one TX queue per PMD thread plus one: the client needs as many RX queues.
  pktgen "$n" 2 "$(warmup "$n")" > /dev/null
  ovs-appctl -t "$OVS_CTL" dpif-netdev/pmd-stats-clear >/dev/null
  local t; t=$(pktgen "$n" 2 "$SECS")
  ovs-appctl -t "$OVS_CTL" dpif-netdev/pmd-stats-show > "$OUT/ovs-pmd.txt"
  echo "ovs N=$n: $(ovs-appctl -t "$OVS_CTL" dpctl/dump-flows 2>/dev/null | wc -l) datapath flows" >> "$OUT/setup"
  ovs_stop br-phy-a br-phy-b
  echo "$t" > "$OUT/ovs.json"
  grep -o 'avg processing cycles per packet: [0-9.]*' "$OUT/ovs-pmd.txt" | head -1 | awk '{print $NF}'
}

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), TSC-based; DPDK $(dpkg-query -W -f='${Version}' libdpdk-dev); $(ovs-vswitchd --version | head -1)"
echo "== VXLAN tunnel-to-tunnel, $SIZE B frames into B at $RATE pps for $SECS s, N in $COUNTS, $ROUNDS rounds"
printf "%-6s %-8s %-7s %10s %10s %12s\n" round dut N rx_mpps loss_pct cycles/pkt
: > "$OUT/rows"
for r in $(seq "$ROUNDS"); do
  for n in $COUNTS; do
    # Rotate who goes first.
    order=$(python3 -c "d='$DUTS'.split(); k=$r % len(d); print(' '.join(d[k:] + d[:k]))")
    for dut in $order; do
      rm -f "$D/a.sock" "$D/b.sock"
      cpp=$(run_$dut "$n")
      rx=$(field rxPps < "$OUT/$dut.json"); loss=$(field lossRatio < "$OUT/$dut.json")
      python3 -c "print(f'{\"$r\":<6} {\"$dut\":<8} {\"$n\":<7} {$rx/1e6:10.3f} {$loss*100:10.3f} {\"$cpp\":>12}')"
      echo "$r $dut $n $rx $loss $cpp" >> "$OUT/rows"
    done
  done
done
cat "$OUT/setup"
python3 - "$OUT/rows" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
cpp = {}
for r, dut, n, rx, loss, c in rows:
    cpp.setdefault((dut, int(n)), {})[r] = float(c)
ns = sorted({n for _, n in cpp})
for dut in ("weft", "ovs"):
    if (dut, ns[0]) not in cpp: continue
    base = st.median(cpp[(dut, ns[0])].values())
    print(f"{dut}: median cycles/packet " + ", ".join(
        f"N={n}: {st.median(cpp[(dut, n)].values()):.1f} (x{st.median(cpp[(dut, n)].values()) / base:.2f} of N={ns[0]})"
        for n in ns if (dut, n) in cpp))
for n in ns:
    if ("weft", n) in cpp and ("ovs", n) in cpp:
        rs = [cpp[("weft", n)][r] / cpp[("ovs", n)][r] for r in cpp[("weft", n)] if r in cpp[("ovs", n)]]
        print(f"N={n}: weft/ovs cycles per packet median {st.median(rs):.2f} (min {min(rs):.2f}, max {max(rs):.2f}) over {len(rs)} rounds")
PY
echo "logs: $OUT"
