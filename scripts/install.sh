#!/usr/bin/env bash
# Install what Weft needs on Debian 12, only where something is missing:
# DPDK 22.11 and its tools, the libraries the C core links, the test peers
# (iproute2, ping, tcpdump), 2 MiB hugepages and a hugetlbfs mount; QEMU, Debian's
# kernel, busybox and virtme-ng for the vfio-pci guest (scripts/vfio-guest-test.sh).
# Idempotent; run as root. Used by the README commands and .ci/run.
set -euo pipefail

HUGEPAGES=${WEFT_HUGEPAGES:-1024}   # 2 MiB pages: 2 GiB for weftd and its DPDK peers

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (apt, hugepages and network namespaces need it)" >&2
  exit 1
fi

pkgs=(libdpdk-dev dpdk dpdk-dev libibverbs-dev libmnl-dev libbpf-dev libxdp-dev pkg-config
      iproute2 iputils-ping tcpdump libpcap-dev procps psmisc python3 python3-scapy iperf3 ethtool
      prometheus qemu-system-x86 linux-image-amd64 busybox-static)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
  if [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
  else
    echo "install.sh: Swift 6.1+ is required (expected at /opt/swift or on PATH)" >&2
    exit 1
  fi
fi

# Debian's prometheus (the server; its unit is not started) scrapes weftd in
# MetricsSystemTests; prometheus_client's parser reads /metrics.
# The NSM cluster's test peers (Tests/peers/nsm_cluster: a SPIFFE Workload API,
# an NSMgr/registry and an endpoint with mTLS, tokens and fd passing) and the JWT
# interop test; the OTLP collector of the tracing tests (Tests/peers/otlp_receiver.py:
# opentelemetry-proto's messages and gRPC stubs): Python packages from PyPI, for the
# python3 the tests run.
if ! python3 -c 'import sys, grpc, google.protobuf as pb, cryptography, jwt, prometheus_client
import opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc, opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc
v = lambda s: tuple(int(x) for x in s.split(".")[:2])
sys.exit(0 if v(grpc.__version__) >= (1, 85) and v(pb.__version__) >= (7, 35) else 1)' 2>/dev/null; then
  echo "install.sh: installing grpcio, protobuf, cryptography, PyJWT, prometheus_client, opentelemetry-proto for $(command -v python3)"
  python3 -m pip install -q "grpcio>=1.85.1" "protobuf>=7.35.1" "cryptography>=42" "PyJWT>=2.8" "prometheus_client>=0.20" "opentelemetry-proto>=1.45"
fi

# virtme-ng boots Debian's kernel (linux-image-amd64) in QEMU on the host's own
# filesystem: the vfio-pci guest test runs the weftd this tree built.
if ! command -v vng >/dev/null 2>&1 && [ ! -x "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/vng" ]; then
  echo "install.sh: installing virtme-ng for $(command -v python3)"
  python3 -m pip install -q "virtme-ng>=1.30"
fi

# Hugepages: reserve, then mount hugetlbfs where DPDK looks by default.
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$HUGEPAGES" ]; then
  echo "$HUGEPAGES" > /proc/sys/vm/nr_hugepages || true
  have=$(cat /proc/sys/vm/nr_hugepages)
  echo "install.sh: hugepages reserved: $have x 2 MiB"
fi
if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
  mkdir -p /dev/hugepages
  mount -t hugetlbfs nodev /dev/hugepages
  echo "install.sh: mounted hugetlbfs on /dev/hugepages"
fi
mkdir -p /run/weft
