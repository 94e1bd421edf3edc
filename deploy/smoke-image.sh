#!/usr/bin/env bash
# Smoke-test Weft's image where containers cannot be started (e.g. no usable OCI
# runtime): run the image's own weftd in a chroot of the image's filesystem, as the
# DaemonSet runs it (same configuration and NSM variables, host network, the
# container-private listen socket /listen.on.sock, the SPIRE agent's socket directory
# bind-mounted at /run/spire/sockets, /run/weft on the host), then check the NSM health
# service over that socket with mutual TLS as the DaemonSet's -spiffe probes do, and
# weftctl over the admin socket.
#
#   deploy/smoke-image.sh [IMAGE]      (default localhost/weft:dev; as root; podman)
#
# The SPIRE agent is the test peers' Workload API (Tests/peers/nsm_cluster/spire_agent.py:
# its own CA, one SVID; needs grpcio, protobuf and cryptography, as scripts/install.sh
# installs them). The uplink is a veth made for the test (wfsmk0, 192.0.2.7/24), standing
# in for the node NIC. Without the registry (register: false). Removes everything it made.
set -euo pipefail
image=${1:-localhost/weft:dev}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "smoke-image.sh: run as root" >&2; exit 1; }

t=$(mktemp -d /tmp/weft-smoke.XXXXXX)
ctr=weft-smoke-$$
pid=
agent=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null
  podman umount "$ctr" >/dev/null 2>&1 || true
  podman rm -f "$ctr" >/dev/null 2>&1 || true
  ip link del wfsmk0 2>/dev/null || true
  rm -rf "$t"
}
trap cleanup EXIT

ip link add wfsmk0 type veth peer name wfsmk1
ip link set wfsmk0 up; ip link set wfsmk1 up
ip addr add 192.0.2.7/24 dev wfsmk0

# The SPIRE agent stand-in: hands out spiffe://test.weft/forwarder-weft-smoke.
mkdir -p "$t/spire"
python3 Tests/peers/nsm_cluster/spire_agent.py --socket "$t/spire/agent.sock" \
  --id spiffe://test.weft/forwarder-weft-smoke > "$t/agent.out" 2> "$t/agent.err" &
agent=$!
for _ in $(seq 1 50); do grep -q ready "$t/agent.out" 2>/dev/null && break; sleep 0.2; done
grep -q ready "$t/agent.out" || { echo "FAIL: the test Workload API did not start:"; cat "$t/agent.err"; exit 1; }

podman create --name "$ctr" "$image" >/dev/null
root=$(podman mount "$ctr")
mkdir -p "$t/nsm" "$t/run"
sed -e 's#iface: eth0#iface: wfsmk0#' -e 's#register: true#register: false#' \
    -e 's#file_prefix: weft-nsm#file_prefix: weft-smoke#' \
    "$root/etc/weft/weft.yaml" > "$root/etc/weft/smoke.yaml"

cat > "$t/inside.sh" <<EOF
set -e
for d in proc sys dev; do mount --rbind /\$d "$root/\$d"; done
mkdir -p "$root/var/lib/networkservicemesh" "$root/run/weft" "$root/run/spire/sockets"
mount --bind "$t/nsm" "$root/var/lib/networkservicemesh"
mount --bind "$t/run" "$root/run/weft"
mount --bind "$t/spire" "$root/run/spire/sockets"
exec chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
  NSM_NAME=forwarder-weft-smoke NSM_TUNNEL_IP=192.0.2.7 NSM_LOG_LEVEL=INFO \
  NSM_MAX_TOKEN_LIFETIME=10m NSM_DIAL_TIMEOUT=750ms \
  NSM_LISTEN_ON=unix:///listen.on.sock \
  NSM_CONNECT_TO=unix:///var/lib/networkservicemesh/nsm.io.sock \
  SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/sockets/agent.sock \
  "\$@"
EOF
unshare -m --propagation private bash "$t/inside.sh" /usr/local/bin/weftd run --config /etc/weft/smoke.yaml > "$t/weftd.log" 2>&1 &
pid=$!

sock="$root/listen.on.sock"
for _ in $(seq 1 50); do [ -S "$sock" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.2; done
if [ ! -S "$sock" ]; then
  echo "FAIL: weftd in the image did not open its NSM socket:"; cat "$t/weftd.log"; exit 1
fi
grep -E 'SPIFFE identity|EAL:|NSM forwarder|weftd running' "$t/weftd.log" | sed 's/^/  weftd: /'

status=0
if [ -x "$root/bin/grpc-health-probe" ]; then
  # The DaemonSet's probe command, inside the image.
  if unshare -m --propagation private bash "$t/inside.sh" /bin/grpc-health-probe \
       -spiffe -addr=unix:///listen.on.sock; then
    echo "ok: grpc-health-probe -spiffe (the DaemonSet's probe)"
  else echo "FAIL: grpc-health-probe -spiffe"; status=1; fi
else
  # What the probe does, in Python with the test peers' TLS: an SVID from the Workload
  # API, mutual TLS, Health/Check. Then a plaintext client, which must be refused.
  # (through a short symlink: the overlay's path is too long for a unix socket address)
  ln -s "$root" "$t/root"
  if SPIFFE_ENDPOINT_SOCKET="unix://$t/spire/agent.sock" python3 - "$t/root/listen.on.sock" <<'EOF'
import os, sys
sys.path[:0] = ["Tests/peers/nsm_cluster", "Tests/peers/nsm_cluster/gen"]
import grpcfd, spire_agent, health_pb2 as h, health_pb2_grpc as hg
sock = os.environ["SPIFFE_ENDPOINT_SOCKET"].removeprefix("unix://")
svid = spire_agent.svid_from_message(spire_agent.fetch_x509_svids(sock)[0].svids[0])
d = grpcfd.ClientDialer(sys.argv[1], grpcfd.Identity(svid))
ch = grpcfd.channel(d)
grpcfd.wait_ready(ch, d, 5)
for svc in ["", "networkservice.NetworkService", "connection.MonitorConnection"]:
    r = hg.HealthStub(ch).Check(h.HealthCheckRequest(service=svc), timeout=3)
    print(f"  health over mTLS as {svid.spiffe_id}: {svc or '(server)'}: {h.HealthCheckResponse.ServingStatus.Name(r.status)}")
    assert r.status == h.HealthCheckResponse.SERVING
d2 = grpcfd.ClientDialer(sys.argv[1], None)
try:
    grpcfd.wait_ready(grpcfd.channel(d2), d2, 3)
    sys.exit("a plaintext client was served")
except ConnectionError:
    print("  plaintext client refused")
EOF
  then echo "ok: gRPC health over mTLS (the image has no grpc-health-probe; checked as -spiffe does, in Python)"
  else echo "FAIL: gRPC health over mTLS"; status=1; fi
fi

if unshare -m --propagation private bash "$t/inside.sh" /usr/local/bin/weftctl show interfaces > "$t/ctl.out" 2>&1 \
   && grep -q 'uplink .*wfsmk0' "$t/ctl.out"; then
  echo "ok: weftctl show interfaces:"; sed 's/^/  /' "$t/ctl.out"
else echo "FAIL: weftctl show interfaces:"; cat "$t/ctl.out"; status=1; fi

rss=$(awk '/VmRSS/ {print int($2/1024)}' /proc/"$(pgrep -n -f 'weftd run --config /etc/weft/smoke.yaml')"/status 2>/dev/null || echo "?")
echo "weftd RSS: ${rss} MiB"
kill -TERM $pid; wait $pid 2>/dev/null || true; pid=
if grep -q 'weftd stopped' "$t/weftd.log"; then echo "ok: SIGTERM: weftd stopped cleanly"; else echo "FAIL: no clean stop"; status=1; fi
[ "$status" = 0 ] || { echo "weftd's log (last 20 lines):"; tail -20 "$t/weftd.log" | sed 's/^/  /'; }
exit $status
