/*
 * wf_internal.h: the core's private structures. DPDK headers stay in here
 * and in the .c files; nothing below is visible to Swift.
 */
#ifndef WF_INTERNAL_H
#define WF_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <rte_common.h>
#include <rte_ethdev.h>
#include <rte_hash_crc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include "weft.h"

/* Weft's port ids: NICs (DPDK ethdevs) and pod interfaces of Weft's own
 * drivers share one space, independent of DPDK's RTE_MAX_ETHPORTS. */
#define WF_MAX_PORTS 4096
#define WF_MAX_BURST 256

#define WF_VLAN_IDS 4096

enum wf_action {
	WF_ACT_FWD = 0,     /* send as is */
	WF_ACT_VLAN_PUSH,   /* push an 802.1Q tag (tci) */
	WF_ACT_VXLAN_ENCAP, /* prepend the tunnel's outer headers (tun) */
	WF_ACT_REPLICATE,   /* copy to every member of p2mp[tun] */
	WF_ACT_BRIDGE,      /* L2 switch in p2mp[tun]; vlan_tci = ingress member index */
};

/* What a worker does with a frame from a side (after any tunnel header is removed). */
struct wf_fwd {
	uint16_t out_port; /* WF_PORT_NONE: no cross-connect */
	uint8_t dir;       /* 0: a -> b, 1: b -> a */
	uint8_t action;    /* enum wf_action */
	uint32_t xc_slot;
	uint16_t vlan_tci; /* WF_ACT_VLAN_PUSH */
	uint16_t pad;
	uint32_t tun;      /* WF_ACT_VXLAN_ENCAP: index into wf_table.vx */
};

#define WF_MAX_P2MP 256
#define WF_MAX_MEMBERS 128
enum wf_p2mp_kind { WF_P2MP_REPLICATE = 1, WF_P2MP_BRIDGE = 2 };

struct wf_member_way {
	struct wf_fwd way; /* how a frame reaches the member (slot = its counters, dir 0) */
	uint16_t shg;
	uint8_t plain;     /* WF_ACT_FWD: clones may go there unmodified */
	uint8_t pad;
	uint16_t gen;      /* bumped when a member index is reused */
};

/* Learned MAC keys: mac48 | (member index (7 bits) | generation (9 bits) << 7) << 48. */
#define WF_MAC_MEMBER(k) ((uint32_t)((k) >> 48) & 0x7f)
#define WF_MAC_GEN(k) ((uint32_t)((k) >> 55))
#define WF_MAC_TAG(idx, gen) ((uint64_t)((idx) | ((gen) & 0x1ff) << 7) << 48)

/* A replication group or bridge domain as the workers see it. */
struct wf_p2mp_tbl {
	uint8_t kind;
	uint32_t id;
	uint32_t n;        /* member indices in use, holes included */
	uint32_t last;     /* the last live member */
	uint32_t clone_min;
	uint64_t age_tsc;
	uint32_t mac_limit;
	uint32_t n_static;
	uint64_t static_key[16]; /* mac48 | member << 48 */
	struct wf_member_way m[WF_MAX_MEMBERS];
};

/* A worker's MAC table for one bridge domain: 4-way buckets, aged, limited. */
struct wf_mac_slot {
	uint64_t key;  /* mac48 | member << 48; 0 = empty */
	uint64_t seen; /* TSC */
};
struct wf_mac_tbl {
	uint32_t mask;  /* buckets - 1 */
	uint32_t count; /* non-empty slots */
	uint64_t learned, moves, flooded, limit_drops;
	struct wf_mac_slot s[]; /* (mask + 1) * 4 */
};


#define WF_VX_HDR_MAX 72

/* An uplink's underlay as the workers see it. */
struct wf_underlay {
	struct wf_underlay_cfg cfg;
	uint8_t mac[6];
};

/* Encapsulation template of one VXLAN tunnel: outer Ethernet/IP/UDP/VXLAN. */
struct wf_vxtpl {
	uint8_t hdr[WF_VX_HDR_MAX];
	uint8_t len;        /* 50 (IPv4) or 70 (IPv6) */
	uint8_t is_v6;
	uint16_t out_port;
	uint32_t nbr;       /* neighbour whose MAC is the outer destination */
	uint32_t max_inner; /* largest inner frame that fits the underlay MTU */
	uint8_t ip4_cksum_offload; /* the uplink computes the outer IPv4 checksum */
	uint32_t ip4_sum;   /* one's-complement sum of the outer IPv4 header with
			     * total length and checksum 0: per frame only the
			     * length is added (RFC 1624) */
};

/* Decap lookup key; src all 0xff marks "some tunnel has this VNI". 24 bytes,
 * no implicit padding (compared as three words). */
struct wf_vxkey {
	uint8_t is_v6;
	uint8_t pad;
	uint16_t port;  /* UDP destination port (host order) */
	uint32_t vni;
	uint8_t src[16];
};

_Static_assert(sizeof(struct wf_vxkey) == 24, "wf_vxkey is compared as three 64-bit words");

struct wf_vxdec {
	struct wf_vxkey key;
	uint8_t used;
	struct wf_fwd f;
	uint32_t refs; /* markers: tunnels with this VNI (the control side's count) */
};

/* VXLAN's parts of a table are chunked, so that a change copies a chunk,
 * not the whole array: templates by tunnel index, decap slots by hash. */
#define WF_VXT_SHIFT 6
#define WF_VXT_CHUNK (1u << WF_VXT_SHIFT)
#define WF_DEC_SHIFT 6
#define WF_DEC_CHUNK (1u << WF_DEC_SHIFT)

/* Control-side neighbour entry (guarded by ul_lock). */
struct wf_nbr_ctl {
	uint8_t used, is_v6, state, pad;
	uint16_t port;
	uint16_t users;
	uint8_t ip[16];
	uint32_t probes;
	uint64_t confirmed_tsc, next_probe_tsc;
};

/*
 * One RX queue a worker polls: a DPDK ethdev queue (eth != WF_PORT_NONE,
 * read with the inline rte_eth_rx_burst) or a queue of one of Weft's own
 * drivers (rx(rxq, ...)).
 */
typedef uint16_t (*wf_burst_fn)(void *q, struct rte_mbuf **pkts, uint16_t n);

struct wf_poll {
	uint16_t port;
	uint16_t queue;
	uint16_t eth;
	uint16_t pad;
	wf_burst_fn rx;
	void *rxq;
};

/*
 * The table workers read. Immutable once published: the control thread
 * builds the next one and publishes it with one atomic store, and frees what
 * only the old one used after rte_rcu_qsbr_synchronize (core/table.c). The
 * root is copied per publish; its parts (an uplink's VLAN map and underlay,
 * VXLAN's chunks, a group's table) are shared with the previous table unless
 * the change touched them: a change costs what it changed.
 */
struct wf_table {
	uint64_t gen; /* which publish this is */
	struct wf_fwd fwd[WF_MAX_PORTS];
	/* Uplinks: per VLAN id (0 = untagged), what to do with the popped frame. */
	struct wf_fwd *vlan[WF_MAX_PORTS]; /* NULL: no VLANs on it */
	struct wf_underlay *ul[WF_MAX_PORTS]; /* NULL: no underlay addresses */
	/* VXLAN: templates by tunnel index, in chunks (NULL: none there). */
	struct wf_vxtpl **vxt;                /* [n_vxt] */
	uint32_t n_vxt;
	/* Decap keys: open addressing over dec_mask + 1 slots, in chunks. */
	struct wf_vxdec **dec;
	uint32_t dec_mask;
	/* Per-VNI markers (src all 0xff), consulted only when dec misses: they
	 * tell an unknown source from an unknown VNI. Kept apart so the table
	 * every frame looks up is half the size. */
	struct wf_vxdec **mark;
	uint32_t mark_mask;
	uint32_t n_keys, n_marks; /* entries in dec and mark */
	struct wf_p2mp_tbl *p2mp[WF_MAX_P2MP];
};

static inline const struct wf_vxtpl *
wf_vxtpl_of(const struct wf_table *t, uint32_t tun)
{
	return &t->vxt[tun >> WF_VXT_SHIFT][tun & (WF_VXT_CHUNK - 1)];
}

static inline const struct wf_vxdec *
wf_dec_at(struct wf_vxdec *const *chunks, uint32_t i)
{
	return &chunks[i >> WF_DEC_SHIFT][i & (WF_DEC_CHUNK - 1)];
}

/*
 * Building the next table (core/table.c). What changed is marked dirty by
 * the control calls; each stage's builder, registered with the dataplane,
 * brings the parts it owns up to date in `t` (a copy of the published
 * root). Parts are allocated through wf_build_alloc (freed if the build
 * fails) and the parts they replace handed to wf_build_retire (freed after
 * the grace period).
 */
struct wf_build {
	struct wf_table *t;
	const struct wf_table *old;
	void **fresh, **retire;
	uint32_t n_fresh, cap_fresh, n_retire, cap_retire;
	uint64_t bytes; /* written into new parts, the root included */
	uint32_t parts; /* new parts */
	uint32_t sides; /* sides whose way was recomputed */
};
void *wf_build_alloc(struct wf_build *b, const char *what, size_t bytes, bool zero);
int wf_build_retire(struct wf_build *b, void *part);
/* A part this build may write: `cur` is what the new table holds at that
 * place and `old` what the published one does. Shared (cur == old): a copy
 * is made (zeroed when there was none) and cur retired; else cur is this
 * build's own already. NULL: out of memory. */
void *wf_build_own(struct wf_build *b, void *cur, const void *old, size_t bytes);
/* Removed while publishing is held (a slot, or WF_SIDE_TUNNEL | tunnel). */
int wf_retire_later(struct wf_dataplane *dp, uint32_t e);

struct wf_builder {
	const char *name;
	int (*build)(struct wf_dataplane *dp, struct wf_build *b);
	/* Free what a table's parts of this stage hold (the dataplane's end). */
	void (*free)(struct wf_table *t);
};
#define WF_MAX_BUILDERS 8
void wf_builder_register(struct wf_dataplane *dp, const struct wf_builder *b);

/* What needs rebuilding at the next publish. */
struct wf_dirty {
	bool all;
	uint64_t port[WF_MAX_PORTS / 64]; /* sides that are ports: their fwd entry */
	uint64_t ul[WF_MAX_PORTS / 64];   /* uplinks: their underlay part */
	uint64_t p2mp[WF_MAX_P2MP / 64];  /* groups and domains: their part */
	uint32_t *tun;                    /* tunnels (VLAN and VXLAN): their entry, template, key */
	uint32_t n_tun, cap_tun;
	uint64_t *tun_bit;                /* [max_xconnects / 64 + 1]: listed already */
};
void wf_dirty_side(struct wf_dataplane *dp, uint32_t side);
void wf_dirty_ul(struct wf_dataplane *dp, uint16_t port);
void wf_dirty_p2mp(struct wf_dataplane *dp, uint32_t id);
/* The way frames from a side go now, from the control state. */
struct wf_fwd wf_entry_for(const struct wf_dataplane *dp, uint32_t side);

/*
 * What the control thread tells a worker about the queues it polls
 * (core/worker.c). A worker's poll set is its own: it changes it when it
 * reads these, between two polls, and acknowledges.
 */
enum wf_msg_type { WF_MSG_ADD = 1, WF_MSG_DEL = 2 };
struct wf_msg {
	uint32_t type;
	uint16_t port, pad;
	struct wf_poll poll; /* ADD */
};
/* A worker can poll every queue of every port. */
#define WF_POLLSET_CAP (WF_MAX_PORTS * WF_MAX_RXQ_PER_PORT)

/* A queue with nothing for this many polls in a row, and for WF_SLEEP_MS,
 * goes to sleep (request/response traffic with gaps of a few hundred
 * microseconds keeps its queues polled: waking costs tens of microseconds). */
#define WF_SLEEP_POLLS 1024
#define WF_SLEEP_MS 20

/* Per worker, per interface. One cache line pair, written by one core. */
struct wf_if_counters {
	uint64_t rx_packets, rx_bytes;
	uint64_t tx_packets, tx_bytes;
	uint64_t drops[WF_DROP_MAX];
} __rte_cache_aligned;

/* Per worker, per cross-connect slot; the array belongs to one core. */
struct wf_xc_counters {
	uint64_t packets[2], bytes[2], drops[2];
};

struct wf_worker {
	struct wf_dataplane *dp;
	uint32_t idx;
	uint32_t lcore;
	uint16_t txq;
	bool launched;
	/* busy-cycle accounting, written only by this worker */
	uint64_t busy_cycles, idle_cycles;
	uint64_t busy_iter, idle_iter;
	uint64_t rx_packets;
	uint64_t drops[WF_DROP_MAX];
	struct wf_if_counters *ifc;  /* [WF_MAX_PORTS] */
	struct wf_xc_counters *xcc;  /* [max_xconnects] */
	struct wf_mac_tbl *mac[WF_MAX_P2MP]; /* bridge domains: this worker's MAC table */
	/* The queues it polls (its own: changed by it, on the control thread's
	 * messages) and of those the ones not asleep. */
	struct wf_poll *all, *act;     /* [WF_POLLSET_CAP] */
	uint32_t n_all;
	uint32_t *pos;                 /* port * WF_MAX_RXQ_PER_PORT + queue -> index in all */
	struct rte_ring *ctl;          /* control -> worker messages (one producer, one consumer) */
	volatile uint64_t ctl_sent;    /* messages enqueued (the control thread's) */
	volatile uint64_t ctl_done;    /* messages applied (the worker's) */
	uint32_t n_assigned;           /* queues given to it (the control thread's count) */
	uint64_t loop_tsc;             /* TSC at the start of the current poll */
	uint64_t sleep_tsc;            /* WF_SLEEP_MS in TSC cycles */
	/* Punt rate limit (a token bucket in frames, scaled by 2^32): a flood of
	 * ARP/ND/ICMP at an uplink costs the underlay thread at most punt_rate/s. */
	uint64_t punt_tokens, punt_last_tsc, punt_per_tsc32, punt_burst32, punt_full_tsc;
	uint32_t n_active;
	/* Packet trace (core/trace.c): `hooks` is checked once per RX burst;
	 * trace_cur is set only while one traced frame is being forwarded, and
	 * wf_port_tx records what it sends meanwhile. */
	volatile uint8_t hooks;        /* WF_HOOK_*: trace or capture at RX */
	volatile uint8_t tx_hooks;     /* WF_TXHOOK_*: a traced frame in flight, or capture at TX */
	struct wf_trace_frame *trace_cur;
	uint64_t punted;               /* frames handed to the underlay thread */
	uint64_t wakes_seen;
	volatile uint64_t wakes;       /* bumped by the events thread after setting `woken` */
	struct rte_ring *sleepers;     /* rxqs that went to sleep: worker -> events thread */
} __rte_cache_aligned;

/*
 * Ports. A port is a DPDK ethdev (NICs; ring and null vdevs in tests; any
 * DPDK vdev a user asks for) or an interface of one of Weft's own drivers
 * (memif, AF_PACKET, AF_XDP), which never touch DPDK's port table.
 */

/* What a port can take from the egress node (struct wf_port_fp.caps). */
#define WF_CAP_L4_CSUM 0x1  /* frames whose TCP/UDP checksum is still partial */
#define WF_CAP_GSO 0x2      /* TCP/UDP super-frames (it segments them) */
#define WF_CAP_IP4_CSUM 0x4 /* RTE_MBUF_F_TX_IP_CKSUM: it computes IPv4 header checksums */

struct wf_port_ctl;

/* A driver's control side. Every function runs on a control thread. */
struct wf_port_ops {
	const char *name;
	/* Link state (1 up, 0 down) for the workers' flag; cheap, no worker calls it. */
	int (*link)(struct wf_dataplane *dp, struct wf_port_ctl *pc);
	/* Fill what the port knows beyond struct wf_port_ctl (driver name, speed, ...). */
	void (*info)(const struct wf_dataplane *dp, const struct wf_port_ctl *pc, struct wf_port_info *i);
	/* The port is in no published table any more: free what the driver holds. */
	void (*close)(struct wf_dataplane *dp, struct wf_port_ctl *pc);
	/* Optional: add what the driver counts outside the workers (the kernel's
	 * drops before a frame reached Weft). Control threads, serialised. */
	void (*stats)(struct wf_dataplane *dp, struct wf_port_ctl *pc, struct wf_if_stats *s);
};

/* What a worker reads to transmit on a port: one TX queue per worker. */
struct wf_port_fp {
	uint16_t eth;   /* DPDK port id, or WF_PORT_NONE for Weft's own drivers */
	uint8_t caps;   /* WF_CAP_* */
	uint8_t pad;
	uint32_t max_frame; /* longest frame it takes (MTU + Ethernet + one tag); 0: not checked */
	wf_burst_fn tx;
	void *txq[WF_MAX_WORKERS];
} __rte_cache_aligned;

/* Control-side view of a port; read only by control threads. */
struct wf_port_ctl {
	bool attached;
	bool is_testport;
	uint16_t nb_rxq;
	uint16_t nb_txq;
	uint16_t eth;     /* DPDK port id; WF_PORT_NONE for Weft's own drivers */
	const struct wf_port_ops *ops;
	void *priv;       /* the driver's state */
	wf_burst_fn rx;   /* own drivers: RX burst over rxq[q] */
	void *rxq[WF_MAX_RXQ_PER_PORT];
	uint32_t rx_worker[WF_MAX_RXQ_PER_PORT];
	char devname[WF_NAME_LEN];
	uint8_t mac[6];
	uint16_t mtu;
	uint32_t xc_slot; /* UINT32_MAX when not cross-connected */
	bool tx_ip4_cksum; /* IPv4 header checksum TX offload enabled */
	struct rte_ring *test_rx, *test_tx;
	/* DPDK memif PMD server: its listening socket (see memif_listener_retire) */
	bool memif_server;
	bool memif_abstract;
	char memif_socket[108];
};

struct wf_xc_ctl {
	bool used;
	bool retiring; /* removed while publishing was held: not reused until published */
	bool p2mp;     /* a member's counter slot, not a P2P cross-connect */
	uint32_t a, b; /* sides */
	uint32_t group; /* p2mp: the group or domain */
};

struct wf_p2mp_ctl {
	uint8_t kind; /* 0: free */
	uint32_t ingress;      /* replication: the ingress side */
	uint32_t ingress_slot;
	uint32_t n;
	struct wf_p2mp_member m[WF_MAX_MEMBERS];
	uint32_t slot[WF_MAX_MEMBERS];
	uint16_t gen[WF_MAX_MEMBERS];
	uint32_t clone_min;
	struct wf_bridge_cfg bcfg;
};

enum wf_tunnel_kind { WF_TUN_VLAN = 1, WF_TUN_VXLAN = 2 };

struct wf_tunnel_ctl {
	uint8_t kind; /* 0: free */
	uint16_t uplink;
	uint16_t vlan_id;
	uint32_t xc_slot; /* UINT32_MAX when not cross-connected */
	struct wf_vxlan_cfg vx; /* WF_TUN_VXLAN */
	uint32_t nbr;           /* WF_TUN_VXLAN: next-hop neighbour */
	/* Removed while publishing was held: the published table may still use
	 * the slot and the neighbour; both are released after the next publish. */
	bool retiring;
	uint8_t retired_kind;
};

struct wf_dataplane {
	struct wf_dp_config cfg;
	uint32_t n_pollers; /* n_workers, or 1 for poll-once mode */
	struct rte_mempool *pool;
	struct rte_rcu_qsbr *qs;
	struct wf_table *table; /* published; atomic load/store */
	volatile uint8_t stop;
	bool started;
	uint8_t link_up[WF_MAX_PORTS]; /* written by control, read by workers */
	/* Ports whose link state a worker may read itself (DPDK's memif PMD reports
	 * the connection state from memory, no syscall): a stale link-down is
	 * re-checked at TX instead of dropping a just-connected peer's first frames. */
	uint8_t link_cheap[WF_MAX_PORTS];
	struct wf_port_fp fp[WF_MAX_PORTS]; /* read by workers while a table names the port */
	struct wf_worker workers[WF_MAX_WORKERS];
	struct wf_port_ctl ports[WF_MAX_PORTS];
	struct wf_xc_ctl *xcs; /* [max_xconnects] */
	struct wf_tunnel_ctl *tunnels; /* [max_xconnects] */
	struct wf_offload *offload;    /* [max_xconnects], control/flow.c; NULL until first used */
	struct wf_p2mp_ctl p2mp[WF_MAX_P2MP];
	uint32_t n_tunnels_on[WF_MAX_PORTS]; /* tunnels carried per uplink port */
	uint32_t n_vlans_on[WF_MAX_PORTS];   /* of those, VLANs (the uplink classifies by VLAN id) */

	/* Underlay: addresses per uplink, neighbours, the punt path (underlay.c). */
	struct wf_underlay *ul_ctl[WF_MAX_PORTS];
	pthread_mutex_t ul_lock;
	/* Attaching and detaching vs the link poller and counter readers (the
	 * events thread, admin calls): who may read `attached` and call a driver. */
	pthread_mutex_t port_lock;
	struct wf_nbr_ctl nbr[WF_MAX_NEIGHBOURS];
	uint64_t nbr_mac[WF_MAX_NEIGHBOURS]; /* workers: atomic load; 0 = unresolved */
	struct rte_ring *punt;   /* workers -> underlay thread */
	struct rte_ring *inject; /* underlay thread -> worker 0, which transmits */
	pthread_t ul_thread;
	bool ul_running;
	volatile uint8_t ul_stop;
	uint32_t name_seq;

	/* Publishing held (wf_dp_hold): changes are published together at
	 * wf_dp_release. Removed cross-connect and tunnel slots are marked
	 * retiring and not reused before that publish; removing a port, a
	 * group or an underlay publishes at once. */
	uint32_t hold;
	bool pending;
	/* Cross-connect slots and tunnels (WF_SIDE_TUNNEL | index) waiting for a publish. */
	uint32_t *retiring;
	uint32_t n_retiring, cap_retiring;
	uint64_t table_gen;       /* publishes so far */
	struct wf_dirty dirty;
	const struct wf_builder *builders[WF_MAX_BUILDERS];
	uint32_t n_builders;
	struct wf_table_stats tstats;
	/* Packet trace (core/trace.c) and capture (core/capture.c). */
	struct wf_trace *trace;
	struct wf_capture *capture;
	/* VLAN tunnels per uplink by id (UINT32_MAX: none), allocated with the first. */
	uint32_t *vlan_tun[WF_MAX_PORTS];
	/* Queues of ports attached while publishing was held: given to their
	 * workers when the table that has their entries is published. */
	struct wf_pending_poll { uint32_t worker; struct wf_poll poll; } *pending_polls;
	uint32_t n_pending_polls, cap_pending_polls;
	struct wf_events *ev;     /* the events thread (platform/events.c) */
	struct wf_nlmon *nlmon;   /* link monitors per namespace (ports/kif.c), under the events lock */
	/* memif (ports/memif_ctl.c), under the events lock */
	struct wf_memif_listener *memif_listeners;
	struct wf_memif_conn *memif_conns;
	struct wf_memif **memifs;
	uint32_t n_memifs, cap_memifs;
	bool memif_tick;
	/* Where the next free tunnel / cross-connect slot search starts. */
	uint32_t tun_hint, xc_hint;
	/* VXLAN demux keys -> tunnel index + 1 (open addressing, linear probing):
	 * the duplicate check at add without a scan of every tunnel. */
	uint32_t *vxk;
	uint32_t vxk_mask, vxk_used;
};

/* ports/port.c: the driver-independent part of attaching and detaching */
/* A free port id (the lowest), or -ENOSPC. */
int wf_port_alloc(struct wf_dataplane *dp, uint16_t *port);
/* Counters reset, RX queues spread over the workers, link state read, the
 * port published (or left for wf_dp_release while publishing is held). The
 * driver has filled pc (ops, rx/rxq or eth, nb_rxq) and dp->fp[port]. */
int wf_port_publish_new(struct wf_dataplane *dp, uint16_t port);

/*
 * Queues of Weft's own drivers start with this: the port and the counters of
 * the one worker that polls the queue (set when the port is published), so a
 * driver counts what it drops itself, with its reason.
 */
struct wf_rxq_base {
	struct wf_if_counters *ic;
	uint64_t *wdrops;
	uint16_t port;
	/*
	 * Idle queues sleep (core/worker.c, platform/events.c). arm() asks the
	 * kernel or the peer to signal (memif: clear MASK_INT) and returns the
	 * fd the events thread waits on, -1 when the driver itself wakes the
	 * queue (a memif with no peer yet), or -EAGAIN when frames are already
	 * waiting. disarm() goes back to plain polling. NULL arm: never sleeps.
	 */
	int (*arm)(struct wf_rxq_base *b);
	void (*disarm)(struct wf_rxq_base *b);
	uint32_t worker;        /* the worker that polls it (set when the port is published) */
	uint32_t idle;          /* consecutive empty polls (the worker's) */
	uint64_t last_rx;       /* TSC of the loop that last found frames (the worker's) */
	uint8_t asleep;         /* the worker's: off its active list */
	volatile uint8_t woken; /* the events thread's: put it back */
	int sleep_fd;           /* what arm() returned (the worker's, read by the events thread) */
	bool wake_eventfd;      /* sleep_fd is an eventfd the events thread reads to clear */
	int watched_fd;         /* the events thread's: the fd in its epoll set, -1: none */
	uint32_t ev_id;
};

/*
 * TX queues of Weft's own drivers start with this: why the driver took fewer
 * frames than it was given (the egress node counts the rest with it).
 */
struct wf_txq_base {
	uint8_t short_reason; /* enum wf_drop_reason; 0 (no-peer) is read as tx-full */
};

static inline enum wf_drop_reason
wf_tx_short_reason(const struct wf_dataplane *dp, uint16_t port, uint32_t worker);

static inline void
wf_rxq_drop(struct wf_rxq_base *b, enum wf_drop_reason why, uint32_t len)
{
	b->ic->rx_packets++;
	b->ic->rx_bytes += len;
	b->ic->drops[why]++;
	b->wdrops[why]++;
}


/* A kernel interface as Weft's AF_PACKET and AF_XDP drivers see it (kif.c). */
struct wf_kif {
	char ifname[16];
	char netns[WF_NETNS_LEN]; /* "" = weftd's own */
	uint64_t ns_dev, ns_ino;
	int ifindex;
	uint8_t mac[6];
	uint32_t mtu;
	uint8_t link; /* IFF_RUNNING, kept from link events */
};
int wf_kif_lookup(struct wf_kif *k, const char *ifname, const char *netns);
int wf_kif_watch(struct wf_dataplane *dp, struct wf_kif *k);
void wf_kif_unwatch(struct wf_dataplane *dp, struct wf_kif *k);
int wf_afp_attach(struct wf_dataplane *dp, const struct wf_kif_attach *req, uint16_t *port);
int wf_xdp_attach(struct wf_dataplane *dp, const struct wf_kif_attach *req, uint16_t *port);

/* platform/events.c: the events thread's epoll set */
#include <sys/epoll.h>
typedef void (*wf_ev_fn)(struct wf_dataplane *dp, void *arg, uint32_t events);
int wf_events_init(struct wf_dataplane *dp);
void wf_events_fini(struct wf_dataplane *dp);
void wf_events_stop(struct wf_dataplane *dp);
int wf_ev_add(struct wf_dataplane *dp, int fd, uint32_t events, wf_ev_fn fn, void *arg, uint32_t *id);
int wf_ev_mod(struct wf_dataplane *dp, uint32_t id, uint32_t events);
void wf_ev_del(struct wf_dataplane *dp, uint32_t id);
void wf_ev_lock(struct wf_dataplane *dp);
/* fn(dp, arg, 0) every ~100 ms on the events thread (and in wf_events_service). */
int wf_ev_tick_add(struct wf_dataplane *dp, wf_ev_fn fn, void *arg);
/* Sleeping queues: wake one (events lock held), forget one before it is freed. */
void wf_rxq_wake(struct wf_dataplane *dp, struct wf_rxq_base *b);
void wf_rxq_unwatch(struct wf_dataplane *dp, struct wf_rxq_base *b);
void wf_ev_unlock(struct wf_dataplane *dp);

/* ports/ethdev.c */
int wf_ethdev_setup(struct wf_dataplane *dp, uint16_t port, uint16_t eth, const char *devname,
		    uint16_t nb_rxq, uint16_t mtu, uint8_t promisc);
extern const struct wf_port_ops wf_ethdev_ops;

/* core/trace.c (the packet trace) and core/capture.c (pcapng capture): the
 * workers' hooks, each behind one test of a byte per RX burst or TX call. */
#define WF_HOOK_TRACE 0x1
#define WF_HOOK_CAPTURE 0x2
#define WF_TXHOOK_TRACE 0x1
#define WF_TXHOOK_CAPTURE 0x2
struct wf_trace_frame;
void wf_trace_burst(struct wf_worker *w, const struct wf_table *t, uint16_t port, uint16_t queue,
		    struct rte_mbuf **pkts, uint16_t n);
void wf_trace_tx(const struct wf_worker *w, uint16_t port, struct rte_mbuf *const *pkts, uint16_t n);
void wf_trace_free(struct wf_dataplane *dp);
void wf_capture_rx(struct wf_worker *w, uint16_t port, struct rte_mbuf *const *pkts, uint16_t n);
void wf_tx_hook(const struct wf_worker *w, uint16_t port, struct rte_mbuf *const *pkts, uint16_t n);
void wf_capture_free(struct wf_dataplane *dp);

/* Transmit on a port through this worker's TX queue. */
static inline uint16_t
wf_port_tx(const struct wf_worker *w, uint16_t port, struct rte_mbuf **pkts, uint16_t n)
{
	if (unlikely(w->tx_hooks))
		wf_tx_hook(w, port, pkts, n);
	const struct wf_port_fp *fp = &w->dp->fp[port];
	if (likely(fp->eth != WF_PORT_NONE))
		return rte_eth_tx_burst(fp->eth, w->txq, pkts, n);
	return fp->tx(fp->txq[w->idx], pkts, n);
}

static inline enum wf_drop_reason
wf_tx_short_reason(const struct wf_dataplane *dp, uint16_t port, uint32_t worker)
{
	const struct wf_port_fp *fp = &dp->fp[port];
	if (fp->eth != WF_PORT_NONE || fp->txq[worker] == NULL)
		return WF_DROP_TX_FULL;
	uint8_t r = ((const struct wf_txq_base *)fp->txq[worker])->short_reason;
	return r == 0 ? WF_DROP_TX_FULL : (enum wf_drop_reason)r;
}

/* Receive on a port's queue outside the workers' poll lists (weft-pktgen). */
static inline uint16_t
wf_port_rx(const struct wf_dataplane *dp, uint16_t port, uint16_t q, struct rte_mbuf **pkts, uint16_t n)
{
	const struct wf_port_ctl *pc = &dp->ports[port];
	if (q >= pc->nb_rxq)
		return 0;
	if (pc->eth != WF_PORT_NONE)
		return rte_eth_rx_burst(pc->eth, q, pkts, n);
	return pc->rx(pc->rxq[q], pkts, n);
}

/* table.c: publishing */
int wf_table_init(struct wf_dataplane *dp);
int wf_table_publish(struct wf_dataplane *dp);
/* After an addition: publishes now, or at wf_dp_release while held. */
int wf_table_publish_add(struct wf_dataplane *dp);
/* The dataplane's end: the published table and every part it holds. */
void wf_table_fini(struct wf_dataplane *dp);

/* sides.c */
uint32_t *wf_side_slot(struct wf_dataplane *dp, uint32_t side, const char **what);
const uint32_t *wf_side_slot_c(const struct wf_dataplane *dp, uint32_t side);
/* How a frame reaches `side`: the port it leaves on and the header it gets. */
struct wf_fwd wf_way_to(const struct wf_dataplane *dp, uint32_t side, uint32_t slot, uint8_t dir);
extern const struct wf_builder wf_side_builder;
/* xconnect.c */
int wf_slot_alloc(struct wf_dataplane *dp, uint32_t *slot);
/* the builders of tunnel.c, underlay.c and p2mp.c */
extern const struct wf_builder wf_ul_builder;
extern const struct wf_builder wf_vlan_builder;
extern const struct wf_builder wf_vxlan_builder;
extern const struct wf_builder wf_p2mp_builder;
void wf_p2mp_dirty(struct wf_dataplane *dp, uint32_t id);

/* xconnect_node.c: the per-burst stage */
void wf_xconnect_burst(struct wf_worker *w, const struct wf_table *t,
		       uint16_t in_port, struct rte_mbuf **pkts, uint16_t n);

/* uplink_node.c: classify an uplink's frames (VLAN pop and demux) */
void wf_uplink_burst(struct wf_worker *w, const struct wf_table *t,
		     uint16_t in_port, struct rte_mbuf **pkts, uint16_t n);

/* A burst received on a port, to its first stage: the uplink classifier for a
 * port that carries VLANs or an underlay, else the cross-connect stage. */
static inline void
wf_dispatch_rx(struct wf_worker *w, const struct wf_table *t, uint16_t port, struct rte_mbuf **pkts, uint16_t n)
{
	if (t->vlan[port] != NULL || t->ul[port] != NULL)
		wf_uplink_burst(w, t, port, pkts, n);
	else
		wf_xconnect_burst(w, t, port, pkts, n);
}

/* nodes/egress_node.c: the one way out */
void wf_send(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	     uint16_t n);
/* The same for a burst already scanned (its frames unchanged since). */
struct wf_scan;
void wf_send_scanned(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
		     uint16_t n, const struct wf_scan *s);
typedef void (*wf_next_fn)(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f,
			   struct rte_mbuf **pkts, uint16_t n);
void wf_finish_then(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
		    uint16_t n, uint8_t caps, uint32_t max_frame, wf_next_fn next);

/*
 * Offloads a frame may still carry (nodes/offload.c): a partial TCP/UDP
 * checksum (pseudo-header sum in the field, L4 header at l2_len + l3_len) or
 * a super-frame to cut into tso_segsz-byte segments.
 */
#define WF_OL_SEG (RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_UDP_SEG)
#define WF_OL_PENDING (RTE_MBUF_F_TX_L4_MASK | WF_OL_SEG)
int wf_csum_finish(struct rte_mbuf *m);
/* `removed` bytes went from the front of a frame that may carry offload metadata
 * (tag: a VLAN tag popped; else outer tunnel headers): keep the metadata right. */
void wf_ol_front_removed(struct rte_mbuf *m, uint32_t removed, bool tag);
/* Complete the Internet checksum at start + off over [start, end) in software. */
int wf_csum_at(struct rte_mbuf *m, uint32_t start, uint32_t off, bool udp);
/* rte_raw_cksum_mbuf() with each segment's sum folded before an odd offset swaps it (see offload.c). */
int wf_raw_cksum_mbuf(const struct rte_mbuf *m, uint32_t off, uint32_t len, uint16_t *cksum);
/* Append bytes to an mbuf, chaining new segments from pool as needed. */
int wf_mbuf_put(struct rte_mbuf *m, struct rte_mempool *pool, const void *data, uint32_t len);
int wf_gso_count(const struct rte_mbuf *m);
int wf_gso_range(const struct rte_mbuf *m, struct rte_mempool *pool, uint32_t first, uint16_t cap,
		 struct rte_mbuf **out);

static inline uint64_t
wf_burst_bytes(struct rte_mbuf **pkts, uint16_t n)
{
	uint64_t b = 0;
	for (uint16_t i = 0; i < n; i++)
		b += rte_pktmbuf_pkt_len(pkts[i]);
	return b;
}

/* What the egress node needs to know of a burst, read in one pass (at RX for a
 * cross-connect, so that egress does not read every mbuf again). */
struct wf_scan {
	uint64_t bytes;
	uint64_t ol;      /* the frames' ol_flags or-ed */
	uint32_t longest; /* the longest frame */
};

static inline struct wf_scan
wf_burst_scan(struct rte_mbuf **pkts, uint16_t n)
{
	struct wf_scan s = {0, 0, 0};
	for (uint16_t i = 0; i < n; i++) {
		const uint32_t len = rte_pktmbuf_pkt_len(pkts[i]);
		s.bytes += len;
		s.ol |= pkts[i]->ol_flags;
		s.longest = len > s.longest ? len : s.longest;
	}
	return s;
}

/* vxlan_node.c */
int wf_vxlan_encap(struct wf_worker *w, const struct wf_table *t, uint32_t tun, struct rte_mbuf *m,
		   enum wf_drop_reason *why);
const struct wf_fwd *wf_vxlan_decap(const struct wf_table *t, const struct wf_underlay *ul,
				    struct rte_mbuf *m, uint32_t l3off, bool is_v6,
				    enum wf_drop_reason *why);
const struct wf_vxdec *wf_vxdec_find(struct wf_vxdec *const *tab, uint32_t mask, const struct wf_vxkey *k);
void wf_vxlan_prefetch(const struct wf_table *t, const struct wf_underlay *ul, const struct rte_mbuf *m);
/* Decap tables this big (slots - 1) and up are prefetched a burst ahead. */
#define WF_DEC_PREFETCH_MASK 8191

/* xconnect_node.c: a burst whose frames go to many connections */
void wf_send_mixed(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd **fs,
		   struct rte_mbuf **ms, uint16_t n);

/* table.c: memory for table parts, in DPDK's memory (huge pages when EAL
 * has them); rte_free() releases it. */
void *wf_tbl_alloc(const char *what, size_t bytes, bool zero);

/* tunnel.c */
void wf_vxk_remove(struct wf_dataplane *dp, uint32_t tun);
uint32_t wf_tunnel_free_slot(struct wf_dataplane *dp);
void wf_vx_build_tpl(const struct wf_dataplane *dp, const struct wf_tunnel_ctl *tc, struct wf_vxtpl *x);

/* underlay.c, punt.c (the underlay thread) */
int wf_underlay_init(struct wf_dataplane *dp);
void wf_underlay_fini(struct wf_dataplane *dp);
int wf_underlay_start(struct wf_dataplane *dp);
void wf_underlay_stop(struct wf_dataplane *dp);
/* neighbour.c (callers hold ul_lock where noted there) */
int wf_nbr_track(struct wf_dataplane *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip, uint32_t *idx);
void wf_nbr_release(struct wf_dataplane *dp, uint32_t idx);
void wf_nbr_learn(struct wf_dataplane *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip, const uint8_t *mac);
void wf_nbr_timers(struct wf_dataplane *dp);
struct rte_mbuf *wf_ul_alloc(struct wf_dataplane *dp, uint32_t len);
void wf_ul_tx(struct wf_dataplane *dp, uint16_t port, struct rte_mbuf *m);
void wf_ul_send_arp(struct wf_dataplane *dp, uint16_t port, const struct wf_underlay *u, uint16_t op,
		    const uint8_t *dst_mac, const uint8_t *tha, const uint8_t *tip);
void wf_ul_send_nd(struct wf_dataplane *dp, uint16_t port, const struct wf_underlay *u, uint8_t type,
		   const uint8_t *dst_mac, const uint8_t *dst_ip, const uint8_t *target, uint8_t na_flags);
/* Three CRC steps over the 24-byte key (no length loop, no tail). */
static inline __attribute__((always_inline)) uint32_t
wf_vx_hash(const struct wf_vxkey *k)
{
	uint64_t w[3];
	memcpy(w, k, sizeof(w));
	uint32_t h = rte_hash_crc_8byte(w[0], 0x9e3779b9);
	h = rte_hash_crc_8byte(w[1], h);
	return rte_hash_crc_8byte(w[2], h);
}

/* nodes/xconnect_node.c: hand frames on along way f (egress or a group/domain) */
void wf_deliver(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f,
		struct rte_mbuf **pkts, uint16_t n, uint64_t bytes);
/* nodes/p2mp_node.c: frames into a replication group or bridge domain */
void wf_p2mp_burst(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
		   uint16_t n, uint64_t bytes);

/* vlan_node.c */
int wf_vlan_push(struct rte_mbuf *m, uint16_t tci, enum wf_drop_reason *why);

/* worker.c */
int wf_worker_main(void *arg);
uint16_t wf_worker_poll(struct wf_worker *w);
/* The poll sets (core/worker.c): allocate, give a queue to a worker (at the
 * next publish when publishing is held), take a port's queues back (returns
 * when no worker polls them), free. */
int wf_pollset_init(struct wf_dataplane *dp, struct wf_worker *w);
void wf_pollset_fini(struct wf_worker *w);
int wf_pollset_add(struct wf_dataplane *dp, uint32_t worker, const struct wf_poll *poll);
int wf_pollset_flush(struct wf_dataplane *dp);
void wf_pollset_drop_port(struct wf_dataplane *dp, uint16_t port);
void wf_pollset_settle(struct wf_worker *w);

/* bench.c */
uint16_t wf_io_poll_once(uint16_t a, uint16_t b, uint16_t burst);

/* log.c (errors, namespaces and netlink: weft_kernel.h) */
int wf_log_capture_init(void);

static inline void
wf_count_drop(struct wf_worker *w, struct wf_if_counters *ic,
	      enum wf_drop_reason r, uint16_t n)
{
	ic->drops[r] += n;
	w->drops[r] += n;
}

#endif
