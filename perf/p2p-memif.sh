#!/usr/bin/env bash
# P2P memif<->memif: Weft against testpmd io-forward (the limit) and OVS-DPDK
# (the peer), same generator (weft-pktgen, memif clients), same pinning
# (generator and each DUT's main thread on core 0, the DUT's forwarding
# thread on core 1), contenders alternating round by round.
# Per run: received rate and loss at a fixed offered rate, and the DUT's own
# busy cycles per packet (Weft: weftctl show workers; testpmd:
# --record-core-cycles; OVS: pmd-stats-show "processing cycles per packet").
#   perf/p2p-memif.sh [ROUNDS] [RATE_PPS] [SECONDS] [SIZE] [SCENARIO]
# GEN=testpmd: the generator is dpdk-testpmd in flowgen mode instead (full
# rate, no pacing: it saturates the DUT; RATE_PPS is ignored), sending into
# both ports. QUEUES=2: every DUT and the generator use 2 queues per port.
# SCENARIO p2p (default), vlan, vlan-push, vxlan-encap, vxlan-decap, replicate or bridge:
#   vlan: the generator sends 802.1Q id 100 into A, the DUT pops it toward B
#         (testpmd io-forward cannot express that: Weft and OVS only);
#   vlan-push: the generator sends untagged frames into B, the DUT pushes id 100
#         toward A;
#   vxlan-encap: plain frames into A, the DUT encapsulates them (VNI 1000, outer
#         IPv4 10.253.0.1 -> 10.253.0.2, UDP 4789) out of B, its uplink; the generator
#         finds its payload inside (Weft: a vxlan interface with a static neighbour;
#         OVS: a vxlan tunnel port on br-int, B on br-phy with the underlay address);
#   vxlan-decap: VXLAN frames (50 + 64 bytes) into B, the DUT decapsulates toward A;
#   replicate: every frame from A goes to 4 members: B back to the generator
#         and 3 null sinks (Weft replication group; OVS output to 4 ports);
#   bridge: a bridge domain of A, B and 2 null sinks; the generator sends from
#         1,000 source MACs (all learned) to a MAC that is static on B (Weft
#         static_macs; OVS NORMAL with `fdb/add`), so frames are unicast to B.
# Needs root, hugepages (scripts/install.sh) and openvswitch-switch-dpdk.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
ROUNDS=${1:-3}; RATE=${2:-2000000}; SECS=${3:-3}; SIZE=${4:-64}; SCENARIO=${5:-p2p}
TXDEV=A; RXDEV=B; VNI=0
case $SCENARIO in p2p) VLAN=0; DUTS=${DUTS:-"weft weftpmd testpmd ovs"};;
  vlan) VLAN=100; DUTS="weft ovs"; [ "$SIZE" -lt 68 ] && SIZE=68;; # 64 bytes + the tag
  vlan-push) VLAN=0; DUTS="weft ovs"; TXDEV=B; RXDEV=A;;
  vxlan-encap) VLAN=0; DUTS="weft ovs";;
  vxlan-decap) VLAN=0; DUTS="weft ovs"; TXDEV=B; RXDEV=A; VNI=1000; SIZE=$((SIZE + 50));;
  replicate) VLAN=0; DUTS="weft ovs";;
  bridge) VLAN=0; DUTS="weft ovs"; MACS=1000;;
  *) echo "unknown scenario $SCENARIO (p2p, vlan, vlan-push, vxlan-encap, vxlan-decap, replicate, bridge)" >&2; exit 2;; esac
case $SCENARIO in vxlan-*) VXLAN=1;; *) VXLAN=0;; esac
UL_MAC=02:77:70:00:00:0b; GEN_UL_MAC=02:77:70:00:00:0a # the DUT's uplink (B) and the generator's
MACS=${MACS:-1}
DST=02:77:70:00:00:02
. perf/lib.sh
perf_prepare p2p
A="net_memif0,role=client,socket=$D/a.sock,socket-abstract=no"
B="net_memif1,role=client,socket=$D/b.sock,socket-abstract=no"

pktgen() { # $1: rx queues [$2: hold seconds] -> JSON trial
  local tx=$A rx=$B
  [ "$TXDEV" = B ] && tx=$B rx=$A
  taskset -c 0 "$BIN/weft-pktgen" --tx "$tx" --rx "$rx" --rx-queues "$1" --size "$SIZE" --rate "$RATE" --duration "$SECS" \
    --vlan "$VLAN" --mac-flows "$MACS" --dst-mac "$DST" --hold "${2:-0}" --json \
    --vxlan-vni "$VNI" --outer-src 10.253.0.2 --outer-dst 10.253.0.1 --outer-dst-mac "$UL_MAC"
}
# The saturating generator: testpmd flowgen on core 0 through memif clients;
# its RX and TX totals when it stops give the same JSON fields as weft-pktgen.
if [ "${GEN:-pktgen}" = testpmd ]; then
  pktgen() { # $1: RX queues the DUT needs (OVS: 2) [$2: hold seconds]
    local q=${QUEUES:-1} rq=${QUEUES:-1}; [ "$1" -gt "$rq" ] && rq=$1
    dpdk-testpmd --lcores '0@0,1@0' -m 512 --file-prefix perf-gen --no-pci \
      --vdev "net_memif8,role=client,socket=$D/a.sock,socket-abstract=no" \
      --vdev "net_memif9,role=client,socket=$D/b.sock,socket-abstract=no" \
      -- --forward-mode=flowgen --txpkts="$SIZE" --nb-cores=1 --rxq="$rq" --txq="$q" --auto-start \
      --stats-period=1 --total-num-mbufs=32768 < /dev/null > "$OUT/gen.log" 2>&1 & local g=$!
    sleep "$((SECS + 1))"
    # The rates of the last 1 s period, both ports (the DUT's counters are read
    # while the generator is still connected: memif counters go with the peer).
    python3 - "$OUT/gen.log" <<'PY'
import json, re, sys
log = open(sys.argv[1]).read()
rx = [int(x) for x in re.findall(r"Rx-pps:\s*(\d+)", log)][-2:]
tx = [int(x) for x in re.findall(r"Tx-pps:\s*(\d+)", log)][-2:]
r, t = sum(rx), sum(tx)
print(json.dumps({"rxPps": r, "lossRatio": max(0, (t - r) / t) if t else 1}))
PY
    sleep "${2:-0}"
    kill -INT $g; wait $g || true
  }
fi
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# weftpmd: Weft with DPDK's own memif PMD (type vdev), as Weft was before its
# memif driver: the same stages, the PMD's rings.
run_weftpmd() { MEMIF_PMD=1 run_weft; }

run_weft() {
  local q=${QUEUES:-1}
  local ma="{name: a, type: memif, socket: $D/a.sock, rx_queues: $q}"
  if [ "${MEMIF_PMD:-0}" = 1 ]; then
    ma="{name: a, type: vdev, devargs: \"net_memif0,role=server,socket=$D/a.sock,socket-abstract=no\", rx_queues: $q}"
  fi
  cat > "$OUT/weft.yaml" <<YAML
eal: {hugepages: true, memory_mb: 512, file_prefix: perf-weft}
dataplane: {workers: [1], mbufs: 16383}
admin: {socket: $D/weftd.sock, runtime_dir: $D/state}
interfaces:
  - $ma
YAML
  if [ "$VXLAN" = 1 ]; then
    cat >> "$OUT/weft.yaml" <<YAML
  - name: b
    type: memif
    socket: $D/b.sock
    mac: "$UL_MAC"
    underlay: {ipv4: 10.253.0.1/24, neighbours: [{ip: 10.253.0.2, mac: "$GEN_UL_MAC"}]}
  - {name: tun, type: vxlan, uplink: b, vni: 1000, remote: 10.253.0.2}
cross_connects:
  - {name: at, a: a, b: tun}
YAML
  elif [ "${MEMIF_PMD:-0}" = 1 ]; then
    echo "  - {name: b, type: vdev, devargs: \"net_memif1,role=server,socket=$D/b.sock,socket-abstract=no\", rx_queues: $q}" >> "$OUT/weft.yaml"
  else
    echo "  - {name: b, type: memif, socket: $D/b.sock, rx_queues: $q}" >> "$OUT/weft.yaml"
  fi
  if [ "$VXLAN" = 1 ]; then :
  elif [ "$SCENARIO" = vlan ] || [ "$SCENARIO" = vlan-push ]; then
    printf '  - {name: v100, type: vlan, uplink: a, vlan_id: 100}\ncross_connects:\n  - {name: vb, a: v100, b: b}\n' >> "$OUT/weft.yaml"
  elif [ "$SCENARIO" = bridge ]; then
    printf '  - {name: n1, type: null}\n  - {name: n2, type: null}\n' >> "$OUT/weft.yaml"
    printf 'bridge_domains:\n  - name: lan\n    members: [{interface: a}, {interface: b}, {interface: n1}, {interface: n2}]\n' >> "$OUT/weft.yaml"
    printf '    mac_limit: 4096\n    static_macs: [{mac: "%s", interface: b}]\n' "$DST" >> "$OUT/weft.yaml"
  elif [ "$SCENARIO" = replicate ]; then
    printf '  - {name: n1, type: null}\n  - {name: n2, type: null}\n  - {name: n3, type: null}\n' >> "$OUT/weft.yaml"
    printf 'replication_groups:\n  - {name: feed, ingress: a, members: [n1, n2, n3, b]}\n' >> "$OUT/weft.yaml"
  else
    printf 'cross_connects:\n  - {name: ab, a: a, b: b}\n' >> "$OUT/weft.yaml"
  fi
  "$BIN/weftd" run --config "$OUT/weft.yaml" > "$OUT/weftd.log" 2>&1 & local pid=$!
  for _ in $(seq 100); do "$BIN/weftctl" show workers --socket "$D/weftd.sock" >/dev/null 2>&1 && break; sleep 0.1; done
  local w0; w0=$("$BIN/weftctl" show workers --json --socket "$D/weftd.sock")
  local t; t=$(pktgen 1)
  local w1; w1=$("$BIN/weftctl" show workers --json --socket "$D/weftd.sock")
  kill -TERM $pid; wait $pid || true
  local cpp; cpp=$(python3 - "$w0" "$w1" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1])[0], json.loads(sys.argv[2])[0]
p = b["rxPackets"] - a["rxPackets"]
print(f'{(b["busyCycles"] - a["busyCycles"]) / p:.1f}' if p else "nan")
PY
)
  local me=weft; [ "${MEMIF_PMD:-0}" = 1 ] && me=weftpmd
  echo "$t" > "$OUT/$me.json"; echo "$cpp"
}

run_testpmd() {
  dpdk-testpmd -l 0,1 --main-lcore 0 -m 512 --file-prefix perf-tp --no-pci \
    --vdev "net_memif0,role=server,socket=$D/a.sock,socket-abstract=no" \
    --vdev "net_memif1,role=server,socket=$D/b.sock,socket-abstract=no" \
    -- --forward-mode=io --auto-start --record-core-cycles --nb-cores=1 --stats-period=3600 \
    --rxq="${QUEUES:-1}" --txq="${QUEUES:-1}" --total-num-mbufs=16384 < /dev/null > "$OUT/testpmd.log" 2>&1 & local pid=$!
  for _ in $(seq 100); do [ -S "$D/b.sock" ] && break; sleep 0.1; done
  # memif counters vanish when the client leaves: stop testpmd while the
  # generator holds its ports open after printing its result.
  pktgen 1 5 > "$OUT/testpmd.json" & local gen=$!
  for _ in $(seq 600); do python3 -c "import json; json.load(open('$OUT/testpmd.json'))" 2>/dev/null && break; sleep 0.1; done
  kill -INT $pid; wait $pid || true
  wait $gen || true
  # testpmd prints the forwarding totals, cycles per packet included, when it stops.
  grep -o 'CPU cycles/packet=[0-9.]*' "$OUT/testpmd.log" | tail -1 | cut -d= -f2 || echo nan
}

run_ovs() {
  ovs_start "$OUT/ovs" perf-ovs
  local db=$OVS_DB
  ovs-vsctl --db=$db add-port br0 a -- set Interface a type=dpdk "options:dpdk-devargs=net_memif_pa,role=server,socket=$D/a.sock,socket-abstract=no" options:n_rxq=${QUEUES:-1}
  [ "$VXLAN" = 1 ] || ovs-vsctl --db=$db add-port br0 b -- set Interface b type=dpdk "options:dpdk-devargs=net_memif_pb,role=server,socket=$D/b.sock,socket-abstract=no" options:n_rxq=${QUEUES:-1}
  if [ "$SCENARIO" = bridge ]; then
    for n in 1 2; do
      ovs-vsctl --db=$db add-port br0 n$n -- set Interface n$n type=dpdk "options:dpdk-devargs=net_null_p$n,no-rx=1"
    done
    ovs-vsctl --db=$db set bridge br0 other_config:mac-table-size=4096
    ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "actions=NORMAL"
    ovs-appctl -t "$OVS_CTL" fdb/add br0 b 0 "$DST" >/dev/null
  elif [ "$SCENARIO" = replicate ]; then
    for n in 1 2 3; do
      ovs-vsctl --db=$db add-port br0 n$n -- set Interface n$n type=dpdk "options:dpdk-devargs=net_null_p$n,no-rx=1"
    done
    ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=a,actions=output:n1,output:n2,output:n3,output:b"
    ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=b,actions=output:a"
  elif [ "$VXLAN" = 1 ]; then
    # Userspace VXLAN as OVS-DPDK documents it: the tunnel port on br0 (the
    # integration bridge), the uplink B on br-phy, which holds the underlay address.
    ovs-vsctl --db=$db add-port br0 vx -- set Interface vx type=vxlan options:remote_ip=10.253.0.2 \
      options:local_ip=10.253.0.1 options:key=1000 options:dst_port=4789
    ovs-vsctl --db=$db add-br br-phy -- set bridge br-phy datapath_type=netdev other_config:hwaddr=$UL_MAC
    ovs-vsctl --db=$db add-port br-phy b -- set Interface b type=dpdk \
      "options:dpdk-devargs=net_memif_pb,role=server,socket=$D/b.sock,socket-abstract=no,mac=$UL_MAC"
    ip addr add 10.253.0.1/24 dev br-phy; ip link set br-phy up
    ovs-appctl -t "$OVS_CTL" ovs/route/add 10.253.0.1/24 br-phy >/dev/null
    ovs-appctl -t "$OVS_CTL" tnl/neigh/set br-phy 10.253.0.2 $GEN_UL_MAC >/dev/null
    ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=a,actions=output:vx"
    ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=vx,actions=output:a"
  elif [ "$SCENARIO" = vlan ] || [ "$SCENARIO" = vlan-push ]; then
    ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=a,dl_vlan=100,actions=strip_vlan,output:b"
    ovs-ofctl -O OpenFlow13 add-flow unix:$OUT/ovs/br0.mgmt "in_port=b,actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:a"
  else
    ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=a,actions=output:b"
    ovs-ofctl add-flow unix:$OUT/ovs/br0.mgmt "in_port=b,actions=output:a"
  fi
  local ctl=$OVS_CTL
  sleep 1
  ovs-appctl -t "$ctl" dpif-netdev/pmd-stats-clear >/dev/null
  # OVS sends on one TX queue per PMD thread plus one: the client needs as many RX queues.
  local t; t=$(pktgen 2)
  local cpp; cpp=$(ovs-appctl -t "$ctl" dpif-netdev/pmd-stats-show | grep -o 'avg processing cycles per packet: [0-9.]*' | head -1 | awk '{print $NF}')
  ovs_stop br-phy
  echo "$t" > "$OUT/ovs.json"; echo "$cpp"
}

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), TSC-based; DPDK $(dpkg-query -W -f='${Version}' libdpdk-dev); $(ovs-vswitchd --version | head -1)"
echo "== $SCENARIO memif<->memif, ${SIZE} B frames, generator ${GEN:-pktgen} ($([ "${GEN:-pktgen}" = testpmd ] && echo "flowgen, full rate, both ports" || echo "into $TXDEV at $RATE pps")) for ${SECS} s, ${QUEUES:-1} queue(s), burst 32, $ROUNDS rounds"
printf "%-6s %-8s %10s %10s %12s\n" round dut rx_mpps loss_pct cycles/pkt
: > "$OUT/rows"
for r in $(seq "$ROUNDS"); do
  # Rotate who goes first.
  order=$(python3 -c "d='$DUTS'.split(); k=$r % len(d); print(' '.join(d[k:] + d[:k]))")
  for dut in $order; do
    rm -f "$D/a.sock" "$D/b.sock" # testpmd and OVS leave theirs behind
    cpp=$(run_$dut)
    rx=$(field rxPps < "$OUT/$dut.json"); loss=$(field lossRatio < "$OUT/$dut.json")
    python3 -c "print(f'{\"$r\":<6} {\"$dut\":<8} {$rx/1e6:10.3f} {$loss*100:10.3f} {\"$cpp\":>12}')"
    echo "$r $dut $rx $loss $cpp" >> "$OUT/rows"
  done
done
python3 - "$OUT/rows" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, dut, rx, loss, cpp in rows:
    by.setdefault(r, {})[dut] = float(cpp)
for peer in ("weftpmd", "testpmd", "ovs"):
    ratios = [v["weft"] / v[peer] for v in by.values() if peer in v and "weft" in v and v[peer] > 0]
    if ratios:
        print(f"weft/{peer} cycles per packet: median {st.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}) over {len(ratios)} rounds")
PY
echo "logs: $OUT"
