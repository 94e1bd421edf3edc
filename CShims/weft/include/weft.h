/*
 * weft.h: the one public interface of Weft's C poll-mode core.
 *
 * Swift (the control layer) is the only caller. No DPDK type crosses this
 * header: handles are opaque, structs are fixed-width, names start with wf_.
 * Every call returns 0 or -errno (burst-style calls return counts). After a
 * failure, wf_last_error() gives the most recent error line DPDK or the core
 * logged, so the Swift side can say *why*, not only *that*.
 *
 * Threads. Each call is tagged:
 *   [A] any thread, any time (constant tables, no state);
 *   [S] setup: the control thread, workers not running (create, start,
 *       stop, destroy);
 *   [C] the control thread, one caller at a time (weftd's control actor),
 *       workers running or not. Changes are hitless: the next table is
 *       published with one atomic store and what only the old one used is
 *       freed after an RCU grace period; between wf_dp_hold and
 *       wf_dp_release they reach the workers together;
 *   [R] reads of what workers and driver threads count: any thread, a
 *       relaxed snapshot.
 * Hooks for tests, benchmarks and weft-pktgen are in weft_test.h and
 * weft_pktgen.h; kernel plumbing and errors in weft_kernel.h.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stdint.h>
#include <stddef.h>

#include "weft_kernel.h" /* errors: wf_last_error() */

#ifdef __cplusplus
extern "C" {
#endif

#define WF_MAX_WORKERS 16
#define WF_MAX_RXQ_PER_PORT 8
/* Underlay next hops (tunnel remotes, gateways, static entries) a node tracks. */
#define WF_MAX_NEIGHBOURS 1024
#define WF_NAME_LEN 64
#define WF_PORT_NONE UINT16_MAX

/*
 * Drop reasons, one list per stage (like VPP's *_error.def): the enum, the
 * names, the descriptions and the stage of each reason are generated from
 * these lists. X(enum_suffix, short_name, description).
 */
/* xconnect_node.c: the P2P stage */
#define WF_DROPS_XCONNECT(X) \
	X(NO_PEER, "no-peer", "received on an interface with no cross-connect")
/* egress_node.c: the one way out */
#define WF_DROPS_EGRESS(X) \
	X(LINK_DOWN, "link-down", "egress interface link is down") \
	X(TX_FULL, "tx-full", "egress TX queue full") \
	X(NO_HEADROOM, "no-headroom", "no mbuf headroom to push a header") \
	X(MTU_EXCEEDED, "mtu-exceeded", "frame too large for the egress interface's MTU (after any encapsulation)")
/* uplink_node.c, vlan_node.c: an uplink's classification */
#define WF_DROPS_UPLINK(X) \
	X(RUNT, "runt", "frame shorter than its Ethernet, VLAN or IP header") \
	X(UNKNOWN_VLAN, "unknown-vlan", "uplink frame whose VLAN id (or no tag) maps to no connection") \
	X(QINQ, "qinq", "uplink frame with a second VLAN tag (QinQ), none configured") \
	X(NOT_FOR_TUNNEL, "not-for-tunnel", "addressed to the uplink but to no tunnel and no service Weft answers") \
	X(NOT_FOR_UPLINK, "not-for-uplink", "on a VXLAN-only uplink: neither VXLAN nor for its addresses (e.g. the peer's multicast)") \
	X(PUNT_FULL, "punt-full", "control-plane queue (ARP/ND/ICMP) full") \
	X(PUNT_RATE, "punt-rate", "control-plane frame (ARP/ND/ICMP) over the worker's punt rate (dataplane.punt_rate)") \
	X(LEFT_TO_KERNEL, "left-to-kernel", "not for a tunnel: left to the kernel's stack on a shared uplink (not an error)")
/* vxlan_node.c */
#define WF_DROPS_VXLAN(X) \
	X(VXLAN_TRUNCATED, "vxlan-truncated", "VXLAN packet shorter than its headers say") \
	X(VXLAN_BAD_FLAGS, "vxlan-bad-flags", "VXLAN header without the I (valid VNI) flag") \
	X(VXLAN_UNKNOWN_VNI, "vxlan-unknown-vni", "VXLAN VNI (on that UDP port) matches no tunnel") \
	X(VXLAN_UNKNOWN_SOURCE, "vxlan-unknown-source", "VXLAN from a source address the VNI's tunnel does not name (anti-spoofing)") \
	X(NEIGHBOUR_UNRESOLVED, "neighbour-unresolved", "tunnel next hop has no resolved MAC address yet")
/* p2mp_node.c: replication groups and bridge domains */
#define WF_DROPS_P2MP(X) \
	X(REPLICA_ALLOC, "replica-alloc", "no mbuf for a replica (pool exhausted)") \
	X(MAC_LIMIT, "mac-limit", "bridge frame from a new MAC past the domain's MAC limit") \
	X(BRIDGE_FILTER, "bridge-filter", "bridge frame for its own ingress member or its split-horizon group")
/* offload.c: the kernel's offload metadata */
#define WF_DROPS_OFFLOAD(X) \
	X(BAD_CSUM_OFFLOAD, "bad-checksum-offload", "partial checksum the kernel handed over whose offsets lie outside the frame") \
	X(OVERSIZE_GSO, "oversize-gso", "super-frame (GSO) Weft cannot segment: unsupported type or headers that do not match")
/* the drivers of Weft's own (memif, AF_PACKET, AF_XDP) */
#define WF_DROPS_DRIVER(X) \
	X(RX_TRUNCATED, "rx-truncated", "frame longer than the receive ring's slot (the kernel cut it)") \
	X(RX_RING_FULL, "rx-ring-full", "dropped by the kernel: the interface's receive ring was full") \
	X(NO_MBUF, "no-mbuf", "no packet buffer to receive or segment into (pool exhausted)") \
	X(PEER_BAD_DESC, "peer-bad-descriptor", "a memif peer's ring index or descriptor pointed outside its shared memory: the peer is disconnected")

/* Every stage's list, in this order (the enum's). */
#define WF_DROP_REASONS(X) \
	WF_DROPS_XCONNECT(X) WF_DROPS_EGRESS(X) WF_DROPS_UPLINK(X) WF_DROPS_VXLAN(X) WF_DROPS_P2MP(X) \
	WF_DROPS_OFFLOAD(X) WF_DROPS_DRIVER(X)

enum wf_drop_reason {
#define WF_X_ENUM(e, s, d) WF_DROP_##e,
	WF_DROP_REASONS(WF_X_ENUM)
#undef WF_X_ENUM
	WF_DROP_MAX
};

/* Name ("tx-full"), description and stage ("egress") of a drop reason; NULL
 * when out of range. Any thread. */
/* [A] */
const char *wf_drop_reason_name(uint32_t reason);
/* [A] */
const char *wf_drop_reason_description(uint32_t reason);
/* [A] */
const char *wf_drop_reason_stage(uint32_t reason);

/* ---- EAL lifecycle ---------------------------------------------------- */

/*
 * Initialise DPDK's EAL with the given arguments (argv[0] is the program
 * name). Never exits the process. Returns 0 or -errno; -EALREADY when EAL is
 * already up in this process. The calling thread becomes the main lcore.
 */
/* [S] */
int wf_eal_init(int argc, const char *const *argv);
/* Release EAL resources. Call after wf_dp_destroy. */
/* [S] */
int wf_eal_cleanup(void);
/* 1 when EAL enabled VFIO at init (the vfio module was loaded then) and it is
 * still loaded: a device on vfio-pci can be probed. 0 otherwise. */
/* [any] */
int wf_eal_vfio_enabled(void);
/*
 * Keep every thread of the process except the EAL worker lcores off the
 * workers' CPUs: pin them to the main lcore's CPU set. Threads created before
 * EAL (the Swift runtime's pools) otherwise run on a worker's CPU and preempt
 * it; threads created later inherit the mask. Returns how many were moved.
 */
/* [S] */
int wf_confine_control_threads(void);
/* Logical core id of the calling thread, or -1 if not an EAL thread. */
/* [A] */
int wf_lcore_id(void);
/* Number of lcores EAL has enabled. */
/* [A] */
uint32_t wf_lcore_count(void);
/* TSC frequency in Hz (for cycles <-> time). */
/* [A] */
uint64_t wf_tsc_hz(void);

/* ---- Dataplane -------------------------------------------------------- */

typedef struct wf_dataplane wf_dataplane_t;

struct wf_dp_config {
	uint32_t n_workers;                    /* 0 means: poll only via wf_dp_poll_once */
	uint32_t worker_lcores[WF_MAX_WORKERS];
	uint32_t mbufs;                        /* mbufs in the pool */
	uint32_t mbuf_cache;                   /* per-lcore mempool cache */
	uint16_t mbuf_data_room;               /* bytes per mbuf incl. headroom */
	uint16_t burst;                        /* RX/TX burst, <= 256 */
	uint16_t rx_desc;
	uint16_t tx_desc;
	uint32_t max_xconnects;                /* size of the cross-connect slot space */
	uint32_t idle_sleep_us;                /* 0: busy-poll always (default) */
	uint8_t queues_sleep;                  /* 1: idle queues of Weft's own drivers wait for an
						* event instead of being polled (memif, AF_PACKET, AF_XDP) */
	uint8_t pad[3];
	uint32_t punt_rate;                    /* frames per second each worker hands the underlay
						* thread (ARP/ND/ICMP); more are dropped as punt-rate.
						* 0: no limit */
};

/* Create the dataplane: mempool, counters, RCU, empty tables. */
/* [S] */
int wf_dp_create(const struct wf_dp_config *cfg, wf_dataplane_t **out);
/* Launch the worker lcores. */
/* [S] */
int wf_dp_start(wf_dataplane_t *dp);
/* Signal workers to stop and wait for them. Idempotent. */
/* [S] */
int wf_dp_stop(wf_dataplane_t *dp);
/* Detach every port and free everything. Workers must be stopped. */
/* [S] */
void wf_dp_destroy(wf_dataplane_t *dp);

/*
 * Batch a set of changes: between wf_dp_hold and wf_dp_release, additions
 * (ports, tunnels, cross-connects, groups, underlays) and removals of
 * cross-connects and tunnels change the control state only, and the
 * workers' table is rebuilt and published once at release, so a large
 * configuration costs one rebuild and the workers see it whole. A removed
 * slot is not reused before that publish. Removing a port, a group or an
 * underlay still publishes at once (taking what is pending with it). Holds
 * nest. wf_dp_release returns the publish's error; the changes are then in
 * the control state but not published (the caller rolls them back).
 */
/* [C] */
int wf_dp_hold(wf_dataplane_t *dp);
/* [C] */
int wf_dp_release(wf_dataplane_t *dp);

/* Number of free mbufs in the pool (leak checks). */
/* [R] */
uint32_t wf_dp_mbufs_available(const wf_dataplane_t *dp);

/* ---- Ports ------------------------------------------------------------ */

struct wf_port_attach {
	const char *devargs;   /* "net_memif_x,role=server,socket=..." or a PCI address */
	uint16_t rx_queues;    /* 0 -> 1 */
	uint8_t promiscuous;   /* 1: enable promiscuous mode where supported */
	uint8_t pad;
	uint16_t mtu;          /* 0: leave the PMD default */
	const char *netns;     /* NULL, or a network namespace path the device is
				* probed in (its sockets live there: a memif
				* abstract socket inside a pod, an af_packet
				* interface of a pod) */
};

/*
 * Probe the device, configure one RX queue set and one TX queue per worker,
 * start it and put its RX queues on the workers' poll lists.
 * Hitless: safe while workers run.
 */
/* [C] */
int wf_port_attach(wf_dataplane_t *dp, const struct wf_port_attach *req,
		   uint16_t *port_id);
/*
 * Take the port off every poll list (RCU publish), then stop, close and
 * remove the device. -EBUSY while a cross-connect uses it.
 * Hitless: safe while workers run.
 */
/* [C] */
int wf_port_detach(wf_dataplane_t *dp, uint16_t port_id);

struct wf_port_info {
	char name[WF_NAME_LEN];     /* DPDK device name */
	char driver[WF_NAME_LEN];
	uint8_t mac[6];
	uint8_t link_up;
	uint8_t attached;
	uint32_t link_speed_mbps;
	uint16_t rx_queues;
	uint16_t tx_queues;
	uint16_t mtu;
	uint8_t tx_ip4_cksum_offload; /* VXLAN outer IPv4 checksums done by the port */
	uint8_t pad;
	uint32_t rx_worker[WF_MAX_RXQ_PER_PORT];
	char note[160];             /* what the driver did or could not do (offloads, fallbacks) */
};
/* [C] */
int wf_port_info(const wf_dataplane_t *dp, uint16_t port_id,
		 struct wf_port_info *info);

/*
 * A kernel interface through one of Weft's own drivers (no DPDK port):
 * AF_PACKET (TPACKET_V2 ring, virtio-net header: partial checksums and
 * TSO/GSO super-frames honoured) or AF_XDP (one XDP program per interface;
 * the interface's veth peer gets TX checksum offload turned off when
 * fix_peer_csum is set, since AF_XDP cannot see partial checksums).
 * Hitless: safe while workers run.
 */
enum wf_kif_backend { WF_KIF_AF_PACKET = 1, WF_KIF_AF_XDP = 2 };
struct wf_kif_attach {
	const char *ifname;
	const char *netns;      /* NULL: weftd's own namespace */
	uint8_t backend;        /* enum wf_kif_backend */
	uint8_t promiscuous;
	uint16_t rx_queues;     /* 0 -> 1 */
	uint8_t fix_peer_csum;  /* AF_XDP */
	uint8_t pad[3];
	uint32_t ring_kb;       /* receive ring memory per queue; 0: the default (1 MiB) */
};
/* [C] */
int wf_kif_attach(wf_dataplane_t *dp, const struct wf_kif_attach *req, uint16_t *port);

/*
 * memif interfaces through Weft's own driver (no DPDK port): the memif
 * protocol (version 2.0) as a server (a listening socket, many interface ids
 * on one socket) or a client (Weft creates the shared memory). Every peer
 * is untrusted: a bad message, region, ring or descriptor disconnects it
 * with a counted reason (wf_memif_stats) and the interface waits for the
 * next peer. Hitless: safe while workers run.
 */
struct wf_memif_cfg {
	const char *socket;     /* file path, or an abstract name (abstract = 1) */
	const char *netns;      /* NULL: weftd's own; the socket is bound/connected there */
	const char *secret;     /* NULL or "": none; at most 23 characters */
	uint32_t id;            /* interface id on the socket */
	uint8_t client;         /* 0: server (listen), 1: client (connect) */
	uint8_t abstract;
	uint8_t ip_mode;        /* 0: Ethernet frames, 1: IP packets */
	uint8_t log2_ring;      /* client: ring size (log2, 0 -> 10); server: the most it accepts (0 -> 14) */
	uint16_t rx_queues;     /* rings Weft reads (0 -> 1) */
	uint16_t buffer_size;   /* client: bytes per buffer (0 -> 2048) */
	uint8_t mac[6];         /* the port's MAC (all zero: a locally administered one is made) */
	uint16_t mtu;           /* 0: none checked (frames up to 64 KiB cross as chained buffers) */
};
/* [C] */
int wf_memif_attach(wf_dataplane_t *dp, const struct wf_memif_cfg *cfg, uint16_t *port);

/* What happened on a memif interface's control channel, by reason. */
#define WF_MEMIF_EVENTS(X) \
	X(CONNECTED, "connected", "a peer completed the handshake") \
	X(PEER_CLOSED, "peer-closed", "the peer closed the control socket or sent DISCONNECT") \
	X(EARLY_CLOSE, "closed-before-init", "a connection closed before identifying itself (counted on its socket)") \
	X(BAD_SIZE, "bad-message-size", "a control message that was not 128 bytes") \
	X(BAD_TYPE, "unknown-message", "a control message of an unknown type") \
	X(UNEXPECTED, "unexpected-message", "a control message out of order") \
	X(BAD_VERSION, "incompatible-version", "a peer of another memif version") \
	X(NO_ID, "unknown-id", "INIT for an interface id this socket does not serve (counted on its socket)") \
	X(BUSY, "already-connected", "INIT for an interface that has a peer") \
	X(BAD_MODE, "mode-mismatch", "INIT with another mode (Ethernet/IP) than the interface's") \
	X(BAD_SECRET, "bad-secret", "INIT without the secret, or with another one") \
	X(BAD_REGION, "bad-region", "a region without fd, out of order, too big, not sealed against shrinking, or unmappable") \
	X(BAD_RING, "bad-ring", "a ring without eventfd, with a bad index, size or place, or a wrong cookie") \
	X(TIMEOUT, "handshake-timeout", "a peer that did not finish the handshake within 5 s") \
	X(FLOOD, "too-many-pending", "a connection refused: too many unfinished ones on the socket") \
	X(BAD_INDEX, "bad-ring-index", "a ring index moved by more than the ring holds (data path)") \
	X(BAD_DESC, "bad-descriptor", "a descriptor outside its region (data path)") \
	X(BAD_CHAIN, "bad-chain", "a frame chained over too many buffers or bytes (data path)") \
	X(REFUSED, "refused-by-server", "as a client: the server refused us (its DISCONNECT reason is in the note)")

enum wf_memif_event {
#define WF_X_ENUM(e, s, d) WF_MEMIF_EV_##e,
	WF_MEMIF_EVENTS(WF_X_ENUM)
#undef WF_X_ENUM
	WF_MEMIF_EV_MAX
};
/* [A] */
const char *wf_memif_event_name(uint32_t ev);
/* [A] */
const char *wf_memif_event_description(uint32_t ev);

struct wf_memif_stats {
	uint8_t connected;
	uint8_t pad[3];
	uint16_t rx_rings, tx_rings;  /* while connected */
	uint64_t events[WF_MEMIF_EV_MAX];        /* this interface's */
	uint64_t socket_events[WF_MEMIF_EV_MAX]; /* its socket's, before a peer named an interface (server) */
	char peer_name[32];
	char last_reason[96];
};
/* [R] */
int wf_memif_stats(wf_dataplane_t *dp, uint16_t port, struct wf_memif_stats *s);


/*
 * Refresh the link state the workers read (no syscalls on workers). Call it
 * periodically from the control thread. Returns the number of ports whose
 * state changed, or -errno.
 */
/* [C] */
int wf_link_poll(wf_dataplane_t *dp);

/* ---- Sides: what a cross-connect joins ----------------------------------- */

/*
 * A side is a port (its port id, < WF_SIDE_TUNNEL) or a tunnel carried by an
 * uplink port (WF_SIDE_TUNNEL | tunnel index). A port that carries tunnels is
 * an uplink: its frames are classified (VLAN id, ...) instead of forwarded
 * whole, so it cannot also be a plain cross-connect side.
 */
#define WF_SIDE_TUNNEL 0x80000000u
#define WF_VLAN_RAW 0 /* VLAN id 0: the raw, untagged uplink */

/*
 * An 802.1Q VLAN on an uplink port: frames toward it get the tag pushed,
 * frames from the uplink with this tag are popped and delivered. VLAN id 0
 * carries untagged frames. -EEXIST when (uplink, id) is taken, -EBUSY when
 * the port is a plain cross-connect side. Hitless.
 */
/* [C] */
int wf_vlan_add(wf_dataplane_t *dp, uint16_t uplink, uint16_t vlan_id, uint32_t *side);
/* An uplink's own addresses: the underlay tunnels use (network byte order). */
struct wf_underlay_cfg {
	uint8_t has_ip4, has_ip6;
	uint8_t prefix4, prefix6;
	uint8_t ip4[4], gw4[4];   /* gw all zero: none */
	uint8_t ip6[16], gw6[16];
	uint16_t mtu;             /* L3 MTU of the underlay, e.g. 1500 */
	uint16_t n_vxlan_ports;   /* UDP ports VXLAN is accepted on */
	uint16_t vxlan_ports[4];
	/*
	 * 1: the kernel owns these addresses on the same netdev (AF_PACKET/AF_XDP
	 * uplinks): it answers ARP/ND/echo and gets all that is not a tunnel's;
	 * Weft only learns neighbours from what it sees and takes its VXLAN.
	 */
	uint8_t kernel_shared;
	uint8_t pad[3];
};
/*
 * Give an uplink port underlay addresses: Weft then answers ARP, neighbour
 * solicitations and ICMP/ICMPv6 echo for them, and can carry VXLAN. Hitless.
 */
/* [C] */
int wf_underlay_set(wf_dataplane_t *dp, uint16_t port, const struct wf_underlay_cfg *cfg);
/* [C] */
int wf_underlay_clear(wf_dataplane_t *dp, uint16_t port);

/* A static neighbour on an uplink (never aged, never re-resolved). */
/* [C] */
int wf_neighbour_static(wf_dataplane_t *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip,
			const uint8_t mac[6]);

struct wf_neighbour_info {
	uint16_t port;
	uint8_t is_v6;
	uint8_t state;      /* 0 incomplete, 1 reachable, 2 static, 3 failed */
	uint8_t ip[16];
	uint8_t mac[6];
	uint16_t users;     /* tunnels using it */
	uint32_t probes;    /* requests sent */
	uint64_t age_ms;    /* since last confirmed */
};
/* Copy up to `cap` neighbour entries; returns how many exist. */
/* [R] */
int wf_neighbour_list(wf_dataplane_t *dp, struct wf_neighbour_info *out, uint32_t cap);

struct wf_vxlan_cfg {
	uint16_t uplink;
	uint8_t is_v6;
	uint8_t pad;
	uint32_t vni;            /* 24 bits */
	uint8_t remote[16];      /* IPv4 in the first 4 bytes */
	uint16_t dst_port;       /* UDP port we send to (peer's) */
	uint16_t local_port;     /* UDP port we receive on */
};
/*
 * A VXLAN tunnel (RFC 7348) on an uplink with underlay addresses: frames
 * toward it are encapsulated to `remote`; VXLAN packets from `remote` with
 * this VNI arriving on `local_port` are decapsulated. The next hop (remote
 * when on-link, else the gateway) is resolved by ARP/ND. Hitless.
 */
/* [C] */
int wf_vxlan_add(wf_dataplane_t *dp, const struct wf_vxlan_cfg *cfg, uint32_t *side);

/* Remove a tunnel side; -EBUSY while cross-connected. Hitless. */
/* [C] */
int wf_tunnel_del(wf_dataplane_t *dp, uint32_t side);

/* ---- Cross-connects ------------------------------------------------------ */

/*
 * Cross-connect sides a and b in both directions; Ethernet frames are
 * forwarded unchanged apart from the tunnel headers the sides imply.
 * Returns the connection's slot in *slot (its counter index).
 * -EBUSY when either side is already cross-connected, -ENODEV when a side
 * does not exist, -ENOSPC when every slot is used.
 * Hitless: safe while workers run.
 */
/* [C] */
int wf_xc_add(wf_dataplane_t *dp, uint32_t a, uint32_t b, uint32_t *slot);
/* Remove a cross-connect. Hitless: safe while workers run. */
/* [C] */
int wf_xc_del(wf_dataplane_t *dp, uint32_t slot);

/* ---- NIC offload of a P2P cross-connect (control/flow.c) ----
 * rte_flow transfer rules on an eswitch (representors, VLAN push/pop, VXLAN
 * encap/decap, COUNT), one per direction. The software path stays: with
 * `auto` a connection whose sides cannot be offloaded (not DPDK ethdevs, no
 * common transfer proxy, an unresolved next hop, the PMD refuses) forwards
 * in software and the reason is kept; `required` then fails (-EOPNOTSUPP)
 * with the reason; `off` removes any rules. Removing the cross-connect
 * removes its rules. Untested on an eswitch (none here). */
enum wf_offload_mode { WF_OFFLOAD_OFF = 0, WF_OFFLOAD_AUTO = 1, WF_OFFLOAD_REQUIRED = 2 };
#define WF_OFFLOAD_WHY 160
struct wf_offload_status {
	uint8_t offloaded;
	char why[WF_OFFLOAD_WHY];  /* why not ("" when offloaded) */
	uint64_t packets[2], bytes[2]; /* the rules' COUNT: A->B, B->A */
};
/* [C] */
int wf_xc_offload(wf_dataplane_t *dp, uint32_t slot, int mode);
/* [C] */
int wf_xc_offload_status(wf_dataplane_t *dp, uint32_t slot, struct wf_offload_status *st);
/* The rules as text, one line per direction (what the NIC would be given). [C] */
int wf_xc_offload_describe(wf_dataplane_t *dp, uint32_t slot, char *buf, size_t len);
/* [C] */
void wf_xc_offload_remove(wf_dataplane_t *dp, uint32_t slot);
/* Reads every offloaded connection's rule counts; a rule that fails its query is
 * taken as gone: the connection's rules are removed, it is switched in software
 * (which never stopped), the reason is kept and its counts stay in the totals.
 * Returns how many connections fell back. Called with the link poll. [C] */
int wf_xc_offload_check(wf_dataplane_t *dp);
/* The DPDK ethdev behind a port: its id, or -ENODEV (Weft's own drivers). [C] */
int wf_port_ethdev(wf_dataplane_t *dp, uint16_t port);

/* ---- Point-to-multipoint ---------------------------------------------------- */

struct wf_p2mp_member {
	uint32_t side;
	uint16_t shg;  /* bridge: split-horizon group, 0 = none */
	uint16_t pad;
};

/*
 * Replication group: frames from `ingress` are copied to every member
 * (exactly one copy each); frames from a member go to the ingress. Each
 * member's counters are the cross-connect slot returned in slots[i]
 * ([0] toward the member, [1] from it). Frames of at least
 * clone_min_bytes go to plain (untunnelled) members as reference-counted
 * clones, smaller ones as copies. Hitless.
 */
/* [C] */
int wf_replicate_add(wf_dataplane_t *dp, uint32_t ingress, const struct wf_p2mp_member *members,
		     uint32_t n, uint32_t clone_min_bytes, uint32_t *id, uint32_t *slots);

struct wf_bridge_cfg {
	uint32_t mac_limit;   /* learned MACs per worker; past it new MACs are dropped */
	uint32_t age_ms;      /* learned entries expire after this */
	uint32_t n_static;
	uint8_t static_mac[16][6];
	uint16_t static_member[16]; /* index into members */
};
/*
 * L2 bridge domain over the member sides: MAC learning (per worker, lock
 * free), aging, a MAC limit, moves, static entries; broadcast, multicast and
 * unknown unicast flooded to every member but the ingress and, for shg != 0,
 * its split-horizon group. Per-member counters in slots[i]. Hitless.
 */
/* [C] */
int wf_bridge_add(wf_dataplane_t *dp, const struct wf_bridge_cfg *cfg,
		  const struct wf_p2mp_member *members, uint32_t n, uint32_t *id, uint32_t *slots);
/*
 * Change the members in one publish: members that stay keep their index,
 * counters and learned MACs, and lose nothing; slots[i] answers members[i].
 * Hitless.
 */
/* [C] */
int wf_p2mp_update(wf_dataplane_t *dp, uint32_t id, const struct wf_p2mp_member *members, uint32_t n,
		   uint32_t *slots);
/* Remove a replication group or bridge domain. Hitless. */
/* [C] */
int wf_p2mp_del(wf_dataplane_t *dp, uint32_t id);

struct wf_mac_entry {
	uint8_t mac[6];
	uint16_t member;
	uint32_t worker;
	uint8_t is_static;
	uint8_t pad[3];
	uint64_t age_ms;
};
/* Learned and static MACs of a bridge domain; returns how many exist. */
/* [R] */
int wf_bridge_macs(wf_dataplane_t *dp, uint32_t id, struct wf_mac_entry *out, uint32_t cap);
struct wf_bridge_stats { uint64_t learned, moves, flooded, limit_drops; };
/* [R] */
int wf_bridge_stats(const wf_dataplane_t *dp, uint32_t id, struct wf_bridge_stats *s);

/* ---- Ring ports (`type: ring` interfaces; the stage tests' ports) ------ */

/*
 * Create a ring-backed ethdev named `name`: frames injected with
 * wf_testport_inject appear on its RX; frames it transmits are collected by
 * wf_testport_collect. Not a stub: the port goes through the same
 * configure/start/poll path as every other PMD.
 */
/* [C] */
int wf_testport_create(wf_dataplane_t *dp, const char *name, uint16_t *port_id);

/* ---- Counters (summed over workers on read) ---------------------------- */

struct wf_if_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t tx_packets, tx_bytes;
	uint64_t drops[WF_DROP_MAX];
};
/* Also reads the drivers' own counts (the kernel's ring drops): control threads. */
/* [R] */
int wf_if_stats(wf_dataplane_t *dp, uint16_t port_id, struct wf_if_stats *s);

struct wf_xc_stats {
	/* [0]: a -> b, [1]: b -> a */
	uint64_t packets[2], bytes[2], drops[2];
};
/* [R] */
int wf_xc_stats(const wf_dataplane_t *dp, uint32_t slot, struct wf_xc_stats *s);

struct wf_worker_stats {
	uint32_t lcore;
	uint32_t polls_assigned;    /* (port, queue) pairs it has */
	uint32_t polls_active;      /* of those, not asleep (idle queues wait for an event) */
	uint64_t busy_cycles;       /* TSC cycles in polls that returned packets */
	uint64_t idle_cycles;       /* TSC cycles in polls that returned nothing */
	uint64_t busy_iterations;
	uint64_t idle_iterations;
	uint64_t rx_packets;
	uint64_t drops[WF_DROP_MAX];
};
/* [R] */
int wf_worker_stats(const wf_dataplane_t *dp, uint32_t worker, struct wf_worker_stats *s);

/* The work of publishing tables: a change copies the table's root and builds
 * only the parts it touched (the rest is shared with the previous table). */
struct wf_table_stats {
	uint64_t publishes;
	uint64_t last_bytes;  /* written into the last table's new parts, its root included */
	uint32_t last_parts;  /* new parts in the last table */
	uint32_t last_sides;  /* sides (ports, tunnels) whose way was recomputed */
	uint64_t total_bytes;
};
/* [C] */
int wf_table_stats(const wf_dataplane_t *dp, struct wf_table_stats *s);

/*
 * Packet trace, as VPP's `trace add`: the next `count` frames received (on
 * `port`, or any port with WF_PORT_NONE) are forwarded one at a time and
 * what happened to each is written down: where it came in and its headers,
 * what the table said, the connections that counted it, bridge learning and
 * flooding, every copy sent (port, queue, headers as sent) and any drop by
 * reason. Lines name ports as {port:N}, a connection slot's direction as
 * {xcd:SLOT:DIR} and a bridge domain as {grp:N}; the caller puts names on them. Off, it costs one branch per RX burst and one
 * per TX call. [C]
 */
#define WF_TRACE_LINES 24
#define WF_TRACE_LINE_LEN 320
struct wf_trace_info {
	uint32_t id;          /* in the order the frames were received */
	uint32_t worker;
	uint64_t rx_tsc;
	uint32_t n_lines;
	char lines[WF_TRACE_LINES][WF_TRACE_LINE_LEN];
};
/* Start (or restart) tracing; what was traced before is kept until cleared.
 * count: 1..WF_TRACE_MAX in all (what is kept is capped there). */
#define WF_TRACE_MAX 1024
int wf_trace_start(wf_dataplane_t *dp, uint16_t port, uint32_t count);
int wf_trace_stop(wf_dataplane_t *dp);
/* Stop and forget every traced frame. */
int wf_trace_clear(wf_dataplane_t *dp);
/* Frames traced so far (complete ones), and the i-th of them. */
uint32_t wf_trace_count(wf_dataplane_t *dp);
int wf_trace_get(wf_dataplane_t *dp, uint32_t i, struct wf_trace_info *out);
/* Tracing now, and frames still to trace. */
int wf_trace_state(wf_dataplane_t *dp, uint32_t *armed, uint32_t *left);

/*
 * Capture: frames of one port, received and/or sent, into a new pcapng file
 * (nanosecond timestamps, direction flags), with a BPF filter (tcpdump's
 * syntax) applied by the writer thread. Workers only copy into free slots:
 * with none free the copy is dropped and counted, never the frame. It ends
 * after `count` frames written (0: no limit), after `seconds` (0: none), or
 * at wf_capture_stop. One capture at a time. [C]
 */
struct wf_capture_params {
	uint16_t port;
	uint8_t dirs;        /* 1 rx, 2 tx, 3 both */
	uint32_t snaplen;    /* 64..65535 */
	uint32_t slots;      /* 16..65536 copies in flight */
	uint64_t count;
	uint32_t seconds;
	const char *filter;  /* NULL or "": everything */
	const char *path;    /* created; an existing file is an error */
	const char *ifname;  /* the interface's name in the file */
};
struct wf_capture_info {
	uint16_t port;
	uint8_t dirs;
	uint8_t running;
	uint64_t copied;   /* copies the workers made */
	uint64_t dropped;  /* copies not made: no free slot */
	uint64_t written;  /* frames in the file */
	uint64_t filtered; /* copies the filter left out */
	char path[4096];
	char error[256];
};
int wf_capture_start(wf_dataplane_t *dp, const struct wf_capture_params *p);
/* Stop copying, write what was copied, close the file. */
int wf_capture_stop(wf_dataplane_t *dp);
/* The current or last capture; -ENOENT if there was none. */
int wf_capture_status(wf_dataplane_t *dp, struct wf_capture_info *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_H */
