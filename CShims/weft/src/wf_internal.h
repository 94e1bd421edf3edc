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

#define WF_MAX_PORTS RTE_MAX_ETHPORTS
#define WF_MAX_POLLS (WF_MAX_PORTS * WF_MAX_RXQ_PER_PORT)
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


#define WF_MAX_NEIGHBOURS 1024
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
};

/* Control-side neighbour entry (guarded by ul_lock). */
struct wf_nbr_ctl {
	uint8_t used, is_v6, state, pad;
	uint16_t port;
	uint16_t users;
	uint8_t ip[16];
	uint32_t probes;
	uint64_t confirmed_tsc, next_probe_tsc;
};

struct wf_poll {
	uint16_t port;
	uint16_t queue;
};

/*
 * The table workers read. Immutable once published: the control thread
 * builds a fresh one, publishes it with one atomic store and frees the old
 * one after rte_rcu_qsbr_synchronize.
 */
struct wf_table {
	struct wf_fwd fwd[WF_MAX_PORTS];
	/* Uplinks: per VLAN id (0 = untagged), what to do with the popped frame. */
	struct wf_fwd *vlan[WF_MAX_PORTS]; /* NULL: not an uplink */
	struct wf_underlay *ul[WF_MAX_PORTS]; /* NULL: no underlay addresses */
	struct wf_vxtpl *vx;                  /* [n_vx] */
	uint32_t n_vx;
	struct wf_vxdec *dec;                 /* open addressing, dec_mask + 1 slots */
	uint32_t dec_mask;
	/* Per-VNI markers (src all 0xff), consulted only when dec misses: they
	 * tell an unknown source from an unknown VNI. Kept apart so the table
	 * every frame looks up is half the size. */
	struct wf_vxdec *mark;
	uint32_t mark_mask;
	struct wf_p2mp_tbl *p2mp[WF_MAX_P2MP];
	uint32_t n_polls[WF_MAX_WORKERS];
	struct wf_poll polls[WF_MAX_WORKERS][WF_MAX_POLLS];
};

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
} __rte_cache_aligned;

/* Control-side view of a port; read only by the control thread. */
struct wf_port_ctl {
	bool attached;
	bool is_testport;
	uint16_t nb_rxq;
	uint16_t nb_txq;
	uint32_t rx_worker[WF_MAX_RXQ_PER_PORT];
	char devname[RTE_DEV_NAME_MAX_LEN];
	uint32_t xc_slot; /* UINT32_MAX when not cross-connected */
	bool tx_ip4_cksum; /* IPv4 header checksum TX offload enabled */
	struct rte_ring *test_rx, *test_tx;
	/* memif server: its listening socket (see wf_memif_listener_retire) */
	bool memif_server;
	bool memif_abstract;
	char memif_socket[108];
};

struct wf_xc_ctl {
	bool used;
	bool retiring; /* removed while publishing was held: not reused until published */
	bool p2mp;     /* a member's counter slot, not a P2P cross-connect */
	uint32_t a, b; /* sides */
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
	/* Ports whose link state a worker may read itself (memif: the PMD reports the
	 * connection state from memory, no syscall): a stale link-down is re-checked
	 * at TX instead of dropping a just-connected peer's first frames. */
	uint8_t link_cheap[WF_MAX_PORTS];
	struct wf_worker workers[WF_MAX_WORKERS];
	struct wf_port_ctl ports[WF_MAX_PORTS];
	struct wf_xc_ctl *xcs; /* [max_xconnects] */
	struct wf_tunnel_ctl *tunnels; /* [max_xconnects] */
	struct wf_p2mp_ctl p2mp[WF_MAX_P2MP];
	uint32_t n_tunnels_on[WF_MAX_PORTS]; /* tunnels carried per uplink port */

	/* Underlay: addresses per uplink, neighbours, the punt path (underlay.c). */
	struct wf_underlay *ul_ctl[WF_MAX_PORTS];
	pthread_mutex_t ul_lock;
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
	uint32_t n_retiring; /* cross-connect and tunnel slots waiting for a publish */
	/* Where the next free tunnel / cross-connect slot search starts. */
	uint32_t tun_hint, xc_hint;
	/* VXLAN demux keys -> tunnel index + 1 (open addressing, linear probing):
	 * the duplicate check at add without a scan of every tunnel. */
	uint32_t *vxk;
	uint32_t vxk_mask, vxk_used;
};

/* port.c */
int wf_port_setup(struct wf_dataplane *dp, uint16_t port, const char *devname,
		  uint16_t nb_rxq, uint16_t mtu, uint8_t promisc);

/* table.c */
int wf_table_publish(struct wf_dataplane *dp);
/* After an addition: publishes now, or at wf_dp_release while held. */
int wf_table_publish_add(struct wf_dataplane *dp);
void wf_table_free(struct wf_table *t);

/* xconnect.c */
uint32_t *wf_side_slot(struct wf_dataplane *dp, uint32_t side, const char **what);
int wf_slot_alloc(struct wf_dataplane *dp, uint32_t *slot);

/* table.c: side entries, shared with the P2MP builder */
struct wf_fwd *wf_entry_from(const struct wf_dataplane *dp, struct wf_table *t, uint32_t side);
struct wf_fwd wf_way_to(const struct wf_dataplane *dp, const uint32_t *vx_index, uint32_t side,
			uint32_t slot, uint8_t dir);

/* xconnect_node.c: the per-burst stage */
void wf_xconnect_burst(struct wf_worker *w, const struct wf_table *t,
		       uint16_t in_port, struct rte_mbuf **pkts, uint16_t n);

/* uplink_node.c: classify an uplink's frames (VLAN pop and demux) */
void wf_uplink_burst(struct wf_worker *w, const struct wf_table *t,
		     uint16_t in_port, struct rte_mbuf **pkts, uint16_t n);

void wf_send(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	     uint16_t n, uint64_t bytes);

/* vxlan_node.c */
int wf_vxlan_encap(struct wf_worker *w, const struct wf_table *t, uint32_t tun, struct rte_mbuf *m,
		   enum wf_drop_reason *why);
const struct wf_fwd *wf_vxlan_decap(const struct wf_table *t, const struct wf_underlay *ul,
				    struct rte_mbuf *m, uint32_t l3off, bool is_v6,
				    enum wf_drop_reason *why);
const struct wf_vxdec *wf_vxdec_find(const struct wf_vxdec *tab, uint32_t mask, const struct wf_vxkey *k);
void wf_vxlan_prefetch(const struct wf_table *t, const struct wf_underlay *ul, const struct rte_mbuf *m);
/* Decap tables this big (slots - 1) and up are prefetched a burst ahead. */
#define WF_DEC_PREFETCH_MASK 8191

/* xconnect_node.c: a burst whose frames go to many connections */
void wf_send_mixed(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd **fs,
		   struct rte_mbuf **ms, uint16_t n);

/* table.c: zeroed memory for the table's arrays, in DPDK's memory (huge
 * pages when EAL has them); rte_free() releases it. */
void *wf_big_calloc(size_t n, size_t size);

/* vxlan.c */
void wf_vxk_remove(struct wf_dataplane *dp, uint32_t tun);
uint32_t wf_tunnel_free_slot(struct wf_dataplane *dp);
void wf_vx_build_tpl(const struct wf_dataplane *dp, const struct wf_tunnel_ctl *tc, struct wf_vxtpl *x);

/* underlay.c */
int wf_underlay_init(struct wf_dataplane *dp);
void wf_underlay_fini(struct wf_dataplane *dp);
int wf_underlay_start(struct wf_dataplane *dp);
void wf_underlay_stop(struct wf_dataplane *dp);
int wf_nbr_track(struct wf_dataplane *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip, uint32_t *idx);
void wf_nbr_release(struct wf_dataplane *dp, uint32_t idx);
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

/* p2mp_node.c */
void wf_deliver(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f,
		struct rte_mbuf **pkts, uint16_t n, uint64_t bytes);

/* vlan_node.c */
int wf_vlan_push(struct rte_mbuf *m, uint16_t tci);

/* worker.c */
int wf_worker_main(void *arg);
uint16_t wf_worker_poll(struct wf_worker *w);

/* bench.c */
uint16_t wf_io_poll_once(uint16_t a, uint16_t b, uint16_t burst);

/* netlink.c: run fn(arg) with the calling thread inside the namespace at path. */
int wf_in_netns(const char *path, int (*fn)(void *), void *arg);

/* log.c */
void wf_set_error(const char *fmt, ...) __rte_format_printf(1, 2);
int wf_log_capture_init(void);

static inline void
wf_count_drop(struct wf_worker *w, struct wf_if_counters *ic,
	      enum wf_drop_reason r, uint16_t n)
{
	ic->drops[r] += n;
	w->drops[r] += n;
}

#endif
