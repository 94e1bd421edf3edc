#!/usr/bin/env bash
# The Weft demo, no NIC needed: two network namespaces and a second DPDK
# process (dpdk-testpmd, memif) joined through weftd's P2P cross-connects.
#
#   weft-ns1 (10.77.0.1) -veth/af_packet- [ns1]==xc==[memif-a] -memif- testpmd
#   weft-ns2 (10.77.0.2) -veth/af_packet- [ns2]==xc==[memif-b] -memif-  (io fwd)
#
# Installs what is missing, builds in release mode, builds the topology,
# starts weftd with configs/demo.yaml, pings across, runs TCP (iperf3) across
# and prints its throughput, prints the counters and tears everything down.
# Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
./scripts/install.sh

echo "== building (release)"
swift build -c release --product weftd
swift build -c release --product weftctl
BIN=$(swift build -c release --show-bin-path)
RUN=/run/weft/demo
SOCK=$RUN/weftd.sock
LOGS=$(mktemp -d /tmp/weft-demo.XXXXXX)
export WEFT_ADMIN_SOCKET=$SOCK
ctl() { "$BIN/weftctl" "$@"; }

WEFTD_PID= PEER_PID=
teardown() {
  set +e
  echo "== tearing down"
  [ -n "$PEER_PID" ] && kill -INT "$PEER_PID" 2>/dev/null && wait "$PEER_PID" 2>/dev/null
  [ -n "$WEFTD_PID" ] && kill -TERM "$WEFTD_PID" 2>/dev/null && wait "$WEFTD_PID" 2>/dev/null
  for i in 1 2; do ip netns del weft-ns$i 2>/dev/null; ip link del weft-veth$i 2>/dev/null; done
  echo "logs: $LOGS"
}
trap teardown EXIT

echo "== topology: namespaces weft-ns1, weft-ns2 with veth pairs"
for i in 1 2; do
  ip netns del weft-ns$i 2>/dev/null || true
  ip link del weft-veth$i 2>/dev/null || true
  ip netns add weft-ns$i
  ip link add weft-veth$i type veth peer name eth0 netns weft-ns$i
  ip link set weft-veth$i up
  ip -n weft-ns$i addr add 10.77.0.$i/24 dev eth0
  # IPv4 only: no IPv6 neighbour discovery or MLD reports in the counters.
  ip netns exec weft-ns$i sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  sysctl -qw net.ipv6.conf.weft-veth$i.disable_ipv6=1
  ip -n weft-ns$i link set eth0 up
  ip -n weft-ns$i link set lo up
done
mkdir -p "$RUN"

echo "== starting weftd --config configs/demo.yaml"
"$BIN/weftd" run --config configs/demo.yaml > "$LOGS/weftd.log" 2>&1 &
WEFTD_PID=$!
for _ in $(seq 100); do ctl show interfaces >/dev/null 2>&1 && break; sleep 0.2; done
ctl show interfaces >/dev/null || { cat "$LOGS/weftd.log"; exit 1; }

echo "== starting the memif peer: dpdk-testpmd (io forward between its two memif clients)"
# --stats-period keeps non-interactive testpmd running until SIGINT.
dpdk-testpmd --lcores '0@0,1@0' -m 256 --file-prefix weft-demo-peer --no-pci \
  --vdev "net_memif0,role=client,socket=$RUN/memif-a.sock,socket-abstract=no,id=0" \
  --vdev "net_memif1,role=client,socket=$RUN/memif-b.sock,socket-abstract=no,id=0" \
  -- --forward-mode=io --auto-start --no-mlockall --total-num-mbufs=8192 --stats-period=3600 \
  < /dev/null > "$LOGS/testpmd.log" 2>&1 &
PEER_PID=$!
# The memif interfaces are up once testpmd has connected: wait, so that no
# frame meets a link that is still down.
for _ in $(seq 100); do
  ctl show interfaces --json | grep -q '"link" : "down"' || break
  sleep 0.2
done

echo "== ping weft-ns1 -> weft-ns2 (through weftd, testpmd, weftd)"
ip netns exec weft-ns1 ping -c 5 -i 0.2 10.77.0.2
echo "== ping weft-ns2 -> weft-ns1"
ip netns exec weft-ns2 ping -c 5 -i 0.2 10.77.0.1

# Real traffic: TCP through weftd, testpmd and weftd again, with the veths'
# default offloads (partial checksums and TSO super-frames from the pods).
echo "== TCP weft-ns1 -> weft-ns2 (iperf3, 5 s)"
ip netns exec weft-ns2 iperf3 -s -1 -D -p 5201 >/dev/null 2>&1
sleep 0.5
ip netns exec weft-ns1 iperf3 -c 10.77.0.2 -p 5201 -t 5 -f g | tee "$LOGS/iperf3.log" | grep -E "sender|receiver"
tput=$(awk '/receiver/ {print $(NF-2), $(NF-1)}' "$LOGS/iperf3.log")
echo "TCP throughput through Weft and the memif peer: ${tput:-?}"

echo; echo "== weftctl show interfaces"; ctl show interfaces
echo; echo "== weftctl show xconnects"; ctl show xconnects
echo; echo "== weftctl show drops"; ctl show drops
echo; echo "== weftctl show workers"; ctl show workers
