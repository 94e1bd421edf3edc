# Sourced by the perf scripts.

# perf_prepare NAME: install what the benchmarks need (hugepages, OVS-DPDK),
# build the release binaries; sets BIN, D (/run/weft/perf-NAME, sockets) and
# OUT (a fresh log directory).
perf_prepare() {
  ./scripts/install.sh >/dev/null
  dpkg-query -W -f='${Status}' openvswitch-switch-dpdk 2>/dev/null | grep -q "ok installed" || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openvswitch-switch-dpdk >/dev/null; }
  local p
  for p in weftd weftctl weft-pktgen; do swift build -c release --product $p >/dev/null; done
  BIN=$(swift build -c release --show-bin-path)
  D=/run/weft/perf-$1; OUT=$(mktemp -d /tmp/weft-$1.XXXXXX)
  mkdir -p "$D"
  # However the script ends: no DUT left running (weftd's config and OVS's
  # pid files live in $OUT), no OVS tap device left holding an address.
  trap 'pkill -f -- "$OUT/" 2>/dev/null || true
        for l in br-phy br-phy-a br-phy-b br0 ovs-netdev; do ip link del $l 2>/dev/null || true; done' EXIT
}

# A private OVS-DPDK instance (its own ovsdb, run and log directory) pinned
# like the other DUTs: main thread on core 0, one PMD thread on core 1.

# ovs_start DIR FILE_PREFIX: sets OVS_DB (ovsdb socket), OVS_CTL (vswitchd
# control socket) and OVS_DIR; br0 exists (netdev datapath), no ports.
ovs_start() {
  OVS_DIR=$1
  export OVS_RUNDIR=$OVS_DIR OVS_DBDIR=$OVS_DIR OVS_LOGDIR=$OVS_DIR
  rm -rf "$OVS_DIR"; mkdir -p "$OVS_DIR"
  OVS_DB=unix:$OVS_DIR/db.sock
  ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server --remote=punix:$OVS_DIR/db.sock --pidfile=$OVS_DIR/ovsdb.pid --detach \
    --log-file=$OVS_DIR/ovsdb.log "$OVS_DIR/conf.db" 2>/dev/null
  ovs-vsctl --db=$OVS_DB --no-wait init
  ovs-vsctl --db=$OVS_DB --no-wait set Open_vSwitch . other_config:dpdk-init=true \
    other_config:dpdk-lcore-mask=0x1 other_config:pmd-cpu-mask=0x2 other_config:dpdk-socket-mem=${OVS_SOCKET_MEM:-512} \
    "other_config:dpdk-extra=--no-pci --file-prefix=$2"
  /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk $OVS_DB --pidfile=$OVS_DIR/vswitchd.pid --detach \
    --log-file=$OVS_DIR/vswitchd.log 2>/dev/null
  OVS_CTL=$OVS_DIR/ovs-vswitchd-dpdk.$(cat "$OVS_DIR/vswitchd.pid").ctl
  ovs-vsctl --db=$OVS_DB add-br br0 -- set bridge br0 datapath_type=netdev
  ovs-ofctl del-flows "unix:$OVS_DIR/br0.mgmt"
}

# ovs_stop [BRIDGE...]: stop OVS and remove the tap devices of its netdev
# bridges, which outlive ovs-vswitchd (a br-phy may hold an address).
ovs_stop() {
  kill "$(cat "$OVS_DIR/vswitchd.pid")" "$(cat "$OVS_DIR/ovsdb.pid")" 2>/dev/null || true
  sleep 1
  local l
  for l in "$@" br0 ovs-netdev; do ip link del "$l" 2>/dev/null || true; done
}
