#!/usr/bin/env bash
# Pod to pod over kernel interfaces: two namespaces, each joined to the root
# namespace by a veth pair (the kernel's default offloads), the host ends
# switched by one contender at a time, contenders alternating round by round:
#   weft-afxdp    weftd, both host ends `af_xdp` (Weft turns the pods' veth TX
#                 checksum offload off, and TSO with it: AF_XDP cannot see it)
#   weft-afpacket weftd, both host ends `af_packet` (TPACKET_V2 + vnet header:
#                 the pods keep TSO; super-frames cross whole)
#   tc-mirred     the kernel's own cross-connect: tc ingress + mirred redirect
#                 from each host end to the other (the practical limit)
#   bridge        a Linux bridge of the two host ends
#   ovs-dpdk      OVS-DPDK with the host ends as DPDK af_packet ports (its PMD
#                 has no vnet header: the pods' TX checksum offload is turned
#                 off for this row, or TCP would not work)
# Per contender and round: TCP throughput with 1 and 4 streams (iperf3), UDP
# 64-byte frames per second received (iperf3 -u -l 18), request/response
# latency (sockperf ping-pong, 64-byte messages). Pinning: the applications on
# core 0; Weft's worker and OVS's PMD thread on core 1 (the kernel paths run
# in the senders' context, core 0).
#   perf/kernel-pods.sh [ROUNDS] [SECONDS] [CONTENDERS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
ROUNDS=${1:-3}; SECS=${2:-4}
CONTENDERS=${3:-"weft-afxdp weft-afpacket tc-mirred bridge ovs-dpdk"}
. perf/lib.sh
perf_prepare kernel-pods
for p in iperf3 sockperf ethtool; do command -v $p >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null; done
N1=wkp-n1; N2=wkp-n2; H1=wkp-h1; H2=wkp-h2

pods() { # fresh namespaces and veths, default offloads
  for i in 1 2; do
    ip netns del wkp-n$i 2>/dev/null || true; ip link del wkp-h$i 2>/dev/null || true
    ip netns add wkp-n$i
    ip link add wkp-h$i type veth peer name eth0 netns wkp-n$i
    ip link set wkp-h$i up
    sysctl -qw net.ipv6.conf.wkp-h$i.disable_ipv6=1
    ip netns exec wkp-n$i sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n wkp-n$i addr add 10.79.0.$i/24 dev eth0
    ip -n wkp-n$i link set eth0 up
    ip -n wkp-n$i link set lo up
  done
}
cleanup_pods() { for i in 1 2; do ip netns del wkp-n$i 2>/dev/null || true; ip link del wkp-h$i 2>/dev/null || true; done; }
trap 'cleanup_pods; pkill -f -- "$OUT/" 2>/dev/null || true; ip link del wkp-br 2>/dev/null || true' EXIT

start() { # $1 contender
  case $1 in
    weft-*)
      local t=${1#weft-}; [ "$t" = afxdp ] && t=af_xdp || t=af_packet
      cat > "$OUT/weft.yaml" <<YAML
eal: {hugepages: true, memory_mb: 512, file_prefix: perf-kp}
dataplane: {workers: [1], mbufs: 16383}
admin: {socket: $D/weftd.sock, runtime_dir: $D/state}
interfaces:
  - {name: a, type: $t, iface: $H1}
  - {name: b, type: $t, iface: $H2}
cross_connects:
  - {name: x, a: a, b: b}
YAML
      taskset -c 0 "$BIN/weftd" run --config "$OUT/weft.yaml" > "$OUT/weftd-$1.log" 2>&1 &
      for _ in $(seq 100); do WEFT_ADMIN_SOCKET=$D/weftd.sock "$BIN/weftctl" show interfaces >/dev/null 2>&1 && break; sleep 0.1; done
      ;;
    tc-mirred)
      for p in "$H1 $H2" "$H2 $H1"; do set -- $p
        tc qdisc add dev "$1" ingress
        tc filter add dev "$1" parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev "$2"
      done;;
    bridge)
      ip link add wkp-br type bridge; ip link set wkp-br up
      ip link set "$H1" master wkp-br; ip link set "$H2" master wkp-br;;
    ovs-dpdk)
      for n in $N1 $N2; do ip netns exec $n ethtool -K eth0 tx off >/dev/null; done
      ovs_start "$OUT/ovs" perf-kp-ovs
      ovs-vsctl --db=$OVS_DB add-port br0 p1 -- set Interface p1 type=dpdk "options:dpdk-devargs=net_af_packet0,iface=$H1"
      ovs-vsctl --db=$OVS_DB add-port br0 p2 -- set Interface p2 type=dpdk "options:dpdk-devargs=net_af_packet1,iface=$H2"
      ovs-ofctl add-flow "unix:$OVS_DIR/br0.mgmt" in_port=p1,actions=output:p2
      ovs-ofctl add-flow "unix:$OVS_DIR/br0.mgmt" in_port=p2,actions=output:p1;;
  esac
  sleep 1
}

stop() { # $1 contender
  case $1 in
    weft-*) pkill -TERM -f -- "$OUT/weft.yaml" || true; sleep 1;;
    tc-mirred) tc qdisc del dev "$H1" ingress 2>/dev/null || true; tc qdisc del dev "$H2" ingress 2>/dev/null || true;;
    bridge) ip link del wkp-br 2>/dev/null || true;;
    ovs-dpdk) ovs_stop;;
  esac
}

measure() { # $1 contender $2 round -> one line of results
  local c=$1 r=$2
  ip netns exec $N2 taskset -c 0 iperf3 -s -D -1 -p 5301 >/dev/null 2>&1; sleep 0.3
  local t1; t1=$(ip netns exec $N1 taskset -c 0 iperf3 -c 10.79.0.2 -p 5301 -t "$SECS" -J 2>/dev/null |
    python3 -c "import json,sys; print('%.2f' % (json.load(sys.stdin)['end']['sum_received']['bits_per_second']/1e9))" || echo 0)
  ip netns exec $N2 taskset -c 0 iperf3 -s -D -1 -p 5302 >/dev/null 2>&1; sleep 0.3
  local t4; t4=$(ip netns exec $N1 taskset -c 0 iperf3 -c 10.79.0.2 -p 5302 -t "$SECS" -P 4 -J 2>/dev/null |
    python3 -c "import json,sys; print('%.2f' % (json.load(sys.stdin)['end']['sum_received']['bits_per_second']/1e9))" || echo 0)
  ip netns exec $N2 taskset -c 0 iperf3 -s -D -1 -p 5303 >/dev/null 2>&1; sleep 0.3
  local u; u=$(ip netns exec $N1 taskset -c 0 iperf3 -c 10.79.0.2 -p 5303 -t "$SECS" -u -l 18 -b 0 -J 2>/dev/null |
    python3 -c "
import json,sys
e = json.load(sys.stdin)['end']['sum']
print('%.0f' % ((e['packets'] - e['lost_packets']) / e['seconds'] / 1000))" || echo 0)
  ip netns exec $N2 taskset -c 0 sockperf server -i 10.79.0.2 -p 5304 >/dev/null 2>&1 &
  local sp=$!; sleep 0.5
  local l; l=$(ip netns exec $N1 taskset -c 0 sockperf ping-pong -i 10.79.0.2 -p 5304 -m 64 -t "$SECS" 2>/dev/null |
    awk '/avg-latency=/ { for (i = 1; i <= NF; i++) if ($i ~ /avg-latency=/) { split($i, a, "="); print a[2] } }' | tail -1)
  kill $sp 2>/dev/null || true; wait $sp 2>/dev/null || true
  printf "%-14s %5s %9s %9s %10s %9s\n" "$c" "$r" "$t1" "$t4" "$u" "${l:-0}" | tee -a "$OUT/results.txt"
}

printf "%-14s %5s %9s %9s %10s %9s\n" contender round "tcp1Gb/s" "tcp4Gb/s" "udp64kpps" "rr-us" | tee "$OUT/results.txt"
for r in $(seq "$ROUNDS"); do
  for c in $CONTENDERS; do
    pods
    start "$c"
    ip netns exec $N1 ping -c 2 -i 0.2 -W 2 10.79.0.2 >/dev/null 2>&1 || echo "warning: $c: no ping" >&2
    measure "$c" "$r"
    stop "$c"
  done
done
cleanup_pods

# Medians, and each contender against the kernel's own tc mirred path.
python3 - "$OUT/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:] if l.strip()]
by = {}
for r in rows:
    by.setdefault(r[0], []).append([float(x) for x in r[2:6]])
names = ["tcp1Gb/s", "tcp4Gb/s", "udp64kpps", "rr-us"]
base = by.get("tc-mirred")
print("\nmedian (min-max) over rounds; ratio = contender / tc-mirred (rr: lower is better)")
for c, vals in by.items():
    cols = []
    for i, n in enumerate(names):
        xs = [v[i] for v in vals]
        med = statistics.median(xs)
        ratio = ""
        if base:
            b = statistics.median([v[i] for v in base])
            ratio = " x%.2f" % (med / b) if b else ""
        cols.append("%s %.2f (%.2f-%.2f)%s" % (n, med, min(xs), max(xs), ratio))
    print("%-14s " % c + "; ".join(cols))
PY
echo "raw: $OUT/results.txt"
