#!/usr/bin/env bash
# The `pci` path for real: weftd in a QEMU guest (TCG: KVM does not boot guests on
# these machines) binds two emulated NICs, an Intel 82574 (e1000e; DPDK's net_e1000_em)
# and a virtio-net (modern, through the IOMMU; DPDK's net_virtio), to vfio-pci behind an
# emulated IOMMU (q35 + intel-iommu), cross-connects them, and moves ping, TCP and
# UDP (content checked) between two network namespaces on the host whose taps are
# the NICs' backends. Then, at runtime: one NIC deleted (it must go back to virtio-pci
# while the other stays on vfio-pci), added again with --bind (probed by the attach,
# not by EAL at init), traffic again; refusals (a device not bound and not to be
# bound, a non-network device); and at shutdown both NICs back on their kernel drivers.
#
# The guest is virtme-ng's: it boots Debian's kernel (linux-image-amd64) on the
# host's own filesystem, so it runs the weftd this tree built. As root; bounded
# (WEFT_VFIO_TIMEOUT, default 900 s). Names are this run's own: wtv<pid>.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
bin=${WEFT_BIN:-$repo/.build/debug}
limit=${WEFT_VFIO_TIMEOUT:-900}
kernel=$(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
# vng: on PATH, else where pip put the python3's scripts (a pyenv shim may not exist yet).
vng=$(command -v vng || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/vng")
if [ -z "$kernel" ] || [ ! -x "$vng" ] || ! command -v qemu-system-x86_64 >/dev/null; then
  echo "vfio-guest-test: needs qemu-system-x86, linux-image-amd64, busybox-static and virtme-ng (scripts/install.sh)" >&2
  exit 1
fi
[ -x "$bin/weftd" ] && [ -x "$bin/weftctl" ] || { echo "vfio-guest-test: build first (no $bin/weftd)" >&2; exit 1; }

tag=wtv$$
dir=$(mktemp -d /tmp/$tag.XXXX)
nsA=${tag}a nsB=${tag}b tapA=${tag}t0 tapB=${tag}t1
vng_pid=
cleanup() {
  [ -n "$vng_pid" ] && kill "$vng_pid" 2>/dev/null || true
  ip netns del "$nsA" 2>/dev/null || true
  ip netns del "$nsB" 2>/dev/null || true
  ip link del "$tapA" 2>/dev/null || true
  ip link del "$tapB" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "vfio-guest-test: FAIL: $*" >&2; for f in guest.log weftd.log; do [ -f "$dir/$f" ] && { echo "--- $f (tail)"; tail -n 40 "$dir/$f"; }; done; exit 1; }

# Guest PCI addresses: QEMU places the two -device NICs after virtme-ng's own devices;
# the guest finds them by MAC (its netdevs) before binding, and says which they are.
macA=52:54:00:77:00:01 macB=52:54:00:77:00:02

cat >"$dir/guest.sh" <<EOF
#!/bin/bash
# Runs inside the guest. Every check writes one line to checks; any failure ends it.
exec >"$dir/guest.log" 2>&1
D=$dir; BIN=$bin; SOCK=/run/$tag/weftd.sock
ok()  { echo "ok: \$*" >>\$D/checks; }
bad() { echo "FAIL: \$*" >>\$D/checks; touch \$D/guest-failed; exit 1; }
addr_of() { # a netdev's MAC -> its PCI address (a virtio netdev sits on a virtioN below it)
  local n d
  for n in /sys/class/net/*; do
    [ "\$(cat \$n/address)" = "\$1" ] || continue
    d=\$(readlink -f \$n/device); case \$(basename \$d) in virtio*) d=\$(dirname \$d);; esac; basename \$d
  done
}
drv() { local l; l=\$(readlink /sys/bus/pci/devices/\$1/driver) && basename "\$l" || echo none; }
wctl() { \$BIN/weftctl "\$@" --socket \$SOCK; }
A=\$(addr_of $macA); B=\$(addr_of $macB)
[ -n "\$A" ] && [ -n "\$B" ] || bad "NICs $macA/$macB not found"
echo "\$A \$B" >\$D/addresses
[ "\$(drv \$A)" = e1000e ] && [ "\$(drv \$B)" = virtio-pci ] || bad "NICs not on e1000e and virtio-pci at boot"
[ -e /sys/bus/pci/devices/\$A/iommu_group ] || bad "no IOMMU group for \$A"
! grep -q '^vfio_pci ' /proc/modules || bad "vfio_pci already loaded (weftd must load it)"
echo 96 >/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
mkdir -p /dev/hugepages /run/$tag && mount -t hugetlbfs none /dev/hugepages
config() { # the node's file: both NICs (bound by weftd), then what joins them (\$1)
  cat >\$D/weft.yaml <<YAML
eal: {main_lcore: 0, hugepages: true, memory_mb: 128, file_prefix: $tag, log_level: notice}
dataplane: {workers: [1], mbufs: 4095, idle_sleep_us: 50}
admin: {socket: /run/$tag/weftd.sock, runtime_dir: /run/$tag}
interfaces:
  - {name: nic0, type: pci, pci: "\$A", bind: true}
  - {name: nic1, type: pci, pci: "\$B", bind: true}
\$1
YAML
}
config "cross_connects: [{name: xc, a: nic0, b: nic1}]"
\$BIN/weftd run --config \$D/weft.yaml >\$D/weftd.log 2>&1 &
W=\$!
for i in \$(seq 300); do wctl show xconnects >/dev/null 2>&1 && break; kill -0 \$W 2>/dev/null || bad "weftd exited"; sleep 1; done
wctl show xconnects || bad "weftd did not come up"
[ "\$(drv \$A)" = vfio-pci ] && [ "\$(drv \$B)" = vfio-pci ] || bad "weftd did not bind both NICs to vfio-pci"
ok "weftd loaded vfio-pci and bound \$A and \$B to it; iommu groups \$(basename \$(readlink /sys/bus/pci/devices/\$A/iommu_group)) \$(basename \$(readlink /sys/bus/pci/devices/\$B/iommu_group))"
wctl show interfaces
wctl show interfaces --json >\$D/interfaces-1.json
python3 -c "import json,sys; d={i['name']: i['driver'] for i in json.load(open(sys.argv[1]))}; sys.exit(0 if d == {'nic0': 'net_e1000_em', 'nic1': 'net_virtio'} else 1)" \$D/interfaces-1.json || bad "DPDK drivers: \$(cat \$D/interfaces-1.json)"
ok "DPDK drivers: nic0 net_e1000_em, nic1 net_virtio"
touch \$D/phase1

for i in \$(seq 600); do [ -e \$D/phase1-done ] && break; sleep 1; done
wctl show interfaces; wctl show xconnects --json >\$D/xconnects-1.json

# Runtime: nic1 deleted -> back on e1000e, nic0 untouched; added again with --bind.
wctl xconnect del xc || bad "xconnect del"
wctl interface del nic1 || bad "del nic1"
[ "\$(drv \$B)" = virtio-pci ] || bad "\$B not back on virtio-pci after delete (\$(drv \$B))"
ls /sys/bus/pci/devices/\$B/virtio*/net >/dev/null || bad "\$B has no netdev after delete"
[ "\$(drv \$A)" = vfio-pci ] || bad "\$A left vfio-pci"
ok "deleted nic1: \$B back on virtio-pci (netdev \$(ls /sys/bus/pci/devices/\$B/virtio*/net)), \$A still on vfio-pci"
out=\$(wctl interface add nic1 --type pci --pci \$B 2>&1) && bad "added a device bound to e1000e without --bind: \$out"
echo "\$out" | grep -q "bound to virtio-pci, not vfio-pci" || bad "unclear refusal: \$out"
[ "\$(drv \$B)" = virtio-pci ] || bad "refused add changed \$B's driver"
ok "without --bind, refused: \$out"
lpc=\$(for d in /sys/bus/pci/devices/*; do [ "\$(cut -c1-4 \$d/class)" = 0x06 ] && [ "\$(drv \$(basename \$d))" != none ] && basename \$d && break; done)
if [ -n "\$lpc" ]; then
  was=\$(drv \$lpc)
  out=\$(wctl interface add bridge0 --type pci --pci \$lpc --bind 2>&1) && bad "bound a bridge device: \$out"
  echo "\$out" | grep -q "not a network controller" || bad "unclear refusal: \$out"
  [ "\$(drv \$lpc)" = "\$was" ] || bad "\$lpc changed driver"
  ok "a bridge (\$lpc, \$was) refused: \$out"
fi
wctl interface add nic1 --type pci --pci \$B --bind || bad "add nic1 --bind"
[ "\$(drv \$B)" = vfio-pci ] || bad "\$B not on vfio-pci after add --bind"
wctl xconnect add xc nic0 nic1 || bad "re-adding the cross-connect"
wctl show interfaces
ok "nic1 added at runtime with --bind: \$B on vfio-pci, probed by the attach"
touch \$D/phase2

for i in \$(seq 600); do [ -e \$D/phase2-done ] && break; sleep 1; done
wctl show interfaces; wctl show xconnects --json >\$D/xconnects-2.json

# Reload: the NICs become the members of a bridge domain instead (MAC learning, flooding).
config "bridge_domains: [{name: lan, members: [{interface: nic0}, {interface: nic1}]}]"
out=\$(wctl reload 2>&1) || bad "reload: \$out"
echo "\$out"
[ "\$(drv \$A)" = vfio-pci ] && [ "\$(drv \$B)" = vfio-pci ] || bad "reload moved a NIC"
ok "reload: \$out"
touch \$D/phase3

for i in \$(seq 600); do [ -e \$D/phase3-done ] && break; sleep 1; done
wctl show interfaces --json >\$D/interfaces-3.json
wctl show interfaces
kill -TERM \$W; wait \$W; echo "weftd exit \$?"
grep -q "weftd stopped" \$D/weftd.log || bad "weftd did not stop cleanly"
[ "\$(drv \$A)" = e1000e ] && [ "\$(drv \$B)" = virtio-pci ] || bad "after shutdown: \$A \$(drv \$A), \$B \$(drv \$B)"
ok "weftd stopped: both NICs back on their kernel drivers (e1000e, virtio-pci)"
touch \$D/guest-passed
EOF
chmod +x "$dir/guest.sh"

ip netns add "$nsA"; ip netns add "$nsB"
start=$SECONDS
echo "== vfio guest: booting $(basename "$kernel") under TCG (names $tag, files $dir)"
timeout "$limit" "$vng" --disable-kvm --disable-microvm --run "$kernel" --cpus 2 --memory 2G --rwdir /tmp \
  --append 'intel_iommu=on iommu=pt' \
  --qemu-opts="-machine q35,kernel-irqchip=split -device intel-iommu,intremap=on \
-netdev tap,id=n0,ifname=$tapA,script=no,downscript=no -device e1000e,netdev=n0,mac=$macA \
-netdev tap,id=n1,ifname=$tapB,script=no,downscript=no -device virtio-net-pci,netdev=n1,mac=$macB,iommu_platform=on,disable-legacy=on" \
  --exec "$dir/guest.sh" >"$dir/vng.log" 2>&1 &
vng_pid=$!

# QEMU makes the taps in this namespace; each then moves into its own.
for i in $(seq 120); do ip link show "$tapA" >/dev/null 2>&1 && ip link show "$tapB" >/dev/null 2>&1 && break; sleep 0.5; done
ip link show "$tapA" >/dev/null 2>&1 || fail "QEMU made no tap ($(tail -n 5 "$dir/vng.log"))"
ip link set "$tapA" netns "$nsA"; ip link set "$tapB" netns "$nsB"
ip -n "$nsA" addr add 10.231.0.1/24 dev "$tapA"; ip -n "$nsA" addr add fd00:231::1/64 dev "$tapA" nodad
ip -n "$nsB" addr add 10.231.0.2/24 dev "$tapB"; ip -n "$nsB" addr add fd00:231::2/64 dev "$tapB" nodad
ip -n "$nsA" link set "$tapA" up; ip -n "$nsB" link set "$tapB" up
ip -n "$nsA" link set lo up; ip -n "$nsB" link set lo up
echo "   taps $tapA ($nsA) and $tapB ($nsB): offloads at the kernel's defaults"

wait_for() { # file, what
  for i in $(seq "$limit"); do
    [ -e "$dir/$1" ] && return 0
    [ -e "$dir/guest-failed" ] && fail "guest: $(grep FAIL "$dir/checks" | head -n 1)"
    kill -0 "$vng_pid" 2>/dev/null || fail "guest ended before $2"
    sleep 1
  done
  fail "timed out waiting for $2"
}

xfer() { # proto addr bytes port
  local proto=$1 addr=$2 bytes=$3 port=$4 out sent
  ip netns exec "$nsB" python3 Tests/peers/xfer.py serve "$proto" "$addr" "$port" --expect "$bytes" --timeout 60 >"$dir/serve.out" 2>&1 &
  local sp=$!
  for i in $(seq 100); do grep -q ready "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
  sent=$(ip netns exec "$nsA" python3 Tests/peers/xfer.py send "$proto" "$addr" "$port" "$bytes" --seed $port --size 1200 --rate 300 2>&1) || { kill $sp; fail "$proto send: $sent"; }
  wait $sp || true
  out=$(tail -n 1 "$dir/serve.out")
  python3 - "$sent" "$out" "$proto $addr $bytes" <<'PY' || fail "$proto to $addr: sent $sent, received $out"
import json, sys
s, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert r["bytes"] == s["bytes"] and r["sha256"] == s["sha256"], (s, r)
print("   %s: %d bytes, sha256 %s.. same both ends" % (sys.argv[3], r["bytes"], r["sha256"][:12]))
PY
}

traffic() { # round
  ip netns exec "$nsA" ping -c 3 -i 0.3 -W 10 10.231.0.2 >"$dir/ping.out" || fail "ping (round $1): $(tail -n 3 "$dir/ping.out")"
  echo "   ping 10.231.0.2: $(grep -o '[0-9]* received' "$dir/ping.out")"
  ip netns exec "$nsA" ping -6 -c 2 -i 0.3 -W 10 fd00:231::2 >"$dir/ping6.out" || fail "ping6 (round $1): $(tail -n 3 "$dir/ping6.out")"
  xfer tcp 10.231.0.2 300000 $((5200 + $1))
  xfer tcp fd00:231::2 100000 $((5210 + $1))
  xfer udp 10.231.0.2 60000 $((5220 + $1))
}

wait_for phase1 "weftd to cross-connect the NICs"
echo "   guest up, NICs on vfio-pci after $((SECONDS - start)) s: $(cat "$dir/addresses")"
traffic 1
touch "$dir/phase1-done"
wait_for phase2 "the runtime delete/add"
traffic 2
touch "$dir/phase2-done"
wait_for phase3 "the reload to a bridge domain"
traffic 3
touch "$dir/phase3-done"
wait_for guest-passed "weftd's shutdown"
wait "$vng_pid" || true
vng_pid=
sed 's/^/   guest /' "$dir/checks"
python3 - "$dir/xconnects-2.json" "$dir/interfaces-3.json" <<'PY' || fail "counters"
import json, sys
x = json.load(open(sys.argv[1]))
x = x[0] if isinstance(x, list) else x
c = x["counters"]
print("   round 2 through xc: a->b %d packets, b->a %d, drops %d/%d; %s" % (
    c["aToB"]["packets"], c["bToA"]["packets"], c["aToB"]["drops"], c["bToA"]["drops"], x["offload"]))
assert c["aToB"]["packets"] > 250 and c["bToA"]["packets"] > 100, c
for i in json.load(open(sys.argv[2])):
    k = i["counters"]
    print("   round 3, %s (bridge member): rx %d tx %d packets" % (i["name"], k["rxPackets"], k["txPackets"]))
    assert k["rxPackets"] > 100 and k["txPackets"] > 100, i
PY
echo "vfio-guest-test: passed in $((SECONDS - start)) s"
