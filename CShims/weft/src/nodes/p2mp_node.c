/*
 * p2mp_node.c: replication and bridging, per burst.
 *
 * Replication: every member gets exactly one copy of each frame. Frames of
 * at least clone_min bytes go to plain members as reference-counted clones
 * (no data copy); smaller frames, and frames for members that add headers
 * (VLAN, VXLAN), are copied. The last member takes the original when it is
 * plain. Each member is sent as its own burst, so a full TX queue costs only
 * that member (counted on its slot).
 *
 * Bridging: each worker learns into its own MAC table (no locks, no sharing);
 * a MAC seen on one worker is flooded by another until that one learns it.
 */
#include <rte_hash_crc.h>

#include "wf_internal.h"

#define MAC48 0xffffffffffffULL

static inline uint64_t
wf_mac48(const uint8_t *p)
{
	uint64_t k = 0;
	memcpy(&k, p, 6); /* little-endian: byte i at bits 8i, as the control side builds keys */
	return k;
}

static inline void
wf_p2mp_drop(struct wf_worker *w, uint32_t slot, uint8_t dir, enum wf_drop_reason r, uint16_t n)
{
	w->drops[r] += n;
	w->xcc[slot].drops[dir] += n;
}

static inline struct rte_mbuf *
wf_replica(struct rte_mempool *pool, struct rte_mbuf *m, const struct wf_member_way *mw, uint32_t clone_min)
{
	if (mw->plain && rte_pktmbuf_pkt_len(m) >= clone_min)
		return rte_pktmbuf_clone(m, pool);
	return rte_pktmbuf_copy(m, pool, 0, UINT32_MAX);
}

static void
wf_replicate(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f,
	     struct rte_mbuf **pkts, uint16_t n)
{
	const struct wf_p2mp_tbl *g = t->p2mp[f->tun];
	const uint32_t last = g->last;
	const bool give_original = g->m[last].plain && g->m[last].way.out_port != WF_PORT_NONE;
	struct rte_mbuf *out[WF_MAX_BURST];

	for (uint32_t j = 0; j < g->n; j++) {
		const struct wf_member_way *mw = &g->m[j];
		if (mw->way.out_port == WF_PORT_NONE)
			continue; /* a member that left */
		uint16_t k = 0;
		if (j == last && give_original) {
			memcpy(out, pkts, n * sizeof(*pkts));
			k = n;
		} else {
			for (uint16_t i = 0; i < n; i++) {
				struct rte_mbuf *c = wf_replica(w->dp->pool, pkts[i], mw, g->clone_min);
				if (unlikely(c == NULL)) {
					wf_p2mp_drop(w, mw->way.xc_slot, 0, WF_DROP_REPLICA_ALLOC, 1);
					continue;
				}
				out[k++] = c;
			}
		}
		if (k)
			wf_send(w, t, &mw->way, out, k);
	}
	if (!give_original)
		rte_pktmbuf_free_bulk(pkts, n);
}

/* Learn `mac` on member `mbr`. false: a new MAC past the limit (drop the frame). */
static inline bool
wf_learn(struct wf_mac_tbl *tb, const struct wf_p2mp_tbl *g, uint64_t mac, uint16_t mbr, uint64_t now)
{
	for (uint32_t s = 0; s < g->n_static; s++)
		if ((g->static_key[s] & MAC48) == mac)
			return true; /* static entries never move */
	struct wf_mac_slot *b = &tb->s[(rte_hash_crc_8byte(mac, 0) & tb->mask) * 4];
	const uint64_t key = mac | WF_MAC_TAG(mbr, g->m[mbr].gen);
	int free_i = -1, expired_i = -1;
	for (int i = 0; i < 4; i++) {
		uint64_t k = b[i].key;
		if (k != 0 && (k & MAC48) == mac) {
			if (k != key) {
				tb->moves += (now - b[i].seen <= g->age_tsc); /* an expired entry is no move */
				__atomic_store_n(&b[i].key, key, __ATOMIC_RELAXED);
			}
			__atomic_store_n(&b[i].seen, now, __ATOMIC_RELAXED);
			return true;
		}
		if (k == 0) {
			if (free_i < 0)
				free_i = i;
		} else if (expired_i < 0 && now - b[i].seen > g->age_tsc) {
			expired_i = i;
		}
	}
	int use = expired_i >= 0 ? expired_i : free_i; /* reclaim before growing */
	if (use == free_i && free_i >= 0 && tb->count >= g->mac_limit) {
		tb->limit_drops++;
		return false;
	}
	if (use < 0)
		return true; /* bucket full of live entries: forward, do not learn */
	if (use == free_i)
		tb->count++;
	__atomic_store_n(&b[use].key, key, __ATOMIC_RELAXED);
	__atomic_store_n(&b[use].seen, now, __ATOMIC_RELAXED);
	tb->learned++;
	return true;
}

/* The member a unicast MAC lives on, or -1. */
static inline int
wf_lookup(const struct wf_mac_tbl *tb, const struct wf_p2mp_tbl *g, uint64_t mac, uint64_t now)
{
	for (uint32_t s = 0; s < g->n_static; s++)
		if ((g->static_key[s] & MAC48) == mac)
			return (int)(g->static_key[s] >> 48);
	const struct wf_mac_slot *b = &tb->s[(rte_hash_crc_8byte(mac, 0) & tb->mask) * 4];
	for (int i = 0; i < 4; i++) {
		uint64_t k = b[i].key;
		if (k != 0 && (k & MAC48) == mac && now - b[i].seen <= g->age_tsc) {
			uint32_t m = WF_MAC_MEMBER(k);
			/* A generation mismatch: learned on a member that has left since. */
			return WF_MAC_GEN(k) == g->m[m].gen ? (int)m : -1;
		}
	}
	return -1;
}

static void
wf_flood(struct wf_worker *w, const struct wf_table *t, const struct wf_p2mp_tbl *g, uint32_t in_m,
	 struct rte_mbuf *m)
{
	const uint16_t shg = g->m[in_m].shg;
	for (uint32_t j = 0; j < g->n; j++) {
		const struct wf_member_way *mw = &g->m[j];
		if (j == in_m || (shg != 0 && mw->shg == shg) || mw->way.out_port == WF_PORT_NONE)
			continue; /* split horizon: never back where it came from */
		struct rte_mbuf *c = wf_replica(w->dp->pool, m, mw, g->clone_min);
		if (unlikely(c == NULL)) {
			wf_p2mp_drop(w, mw->way.xc_slot, 0, WF_DROP_REPLICA_ALLOC, 1);
			continue;
		}
		wf_send(w, t, &mw->way, &c, 1);
	}
	rte_pktmbuf_free(m);
}

#define WF_BD_BATCHES 8

static void
wf_bridge(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f,
	  struct rte_mbuf **pkts, uint16_t n)
{
	const struct wf_p2mp_tbl *g = t->p2mp[f->tun];
	struct wf_mac_tbl *tb = w->mac[f->tun];
	const uint32_t in_m = f->vlan_tci;
	const uint16_t shg = g->m[in_m].shg;
	const uint64_t now = rte_rdtsc();
	struct {
		uint32_t member;
		uint16_t n;
		struct rte_mbuf *pkts[WF_MAX_BURST];
	} b[WF_BD_BATCHES];
	uint32_t nb = 0;

	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		if (unlikely(rte_pktmbuf_data_len(m) < 14)) {
			wf_p2mp_drop(w, f->xc_slot, 1, WF_DROP_RUNT, 1);
			rte_pktmbuf_free(m);
			continue;
		}
		const uint8_t *e = rte_pktmbuf_mtod(m, const uint8_t *);
		if (!(e[6] & 1) && unlikely(!wf_learn(tb, g, wf_mac48(e + 6), (uint16_t)in_m, now))) {
			wf_p2mp_drop(w, f->xc_slot, 1, WF_DROP_MAC_LIMIT, 1);
			rte_pktmbuf_free(m);
			continue;
		}
		int k = (e[0] & 1) ? -1 : wf_lookup(tb, g, wf_mac48(e), now);
		if (k >= 0 && g->m[k].way.out_port == WF_PORT_NONE)
			k = -1; /* learned on a member that left: unknown again */
		if (k < 0) {
			tb->flooded++;
			wf_flood(w, t, g, in_m, m);
			continue;
		}
		if ((uint32_t)k == in_m || (shg != 0 && g->m[k].shg == shg)) {
			wf_p2mp_drop(w, f->xc_slot, 1, WF_DROP_BRIDGE_FILTER, 1);
			rte_pktmbuf_free(m);
			continue;
		}
		uint32_t x;
		for (x = 0; x < nb && b[x].member != (uint32_t)k; x++)
			;
		if (x == nb) {
			if (unlikely(nb == WF_BD_BATCHES)) {
				wf_send(w, t, &g->m[b[0].member].way, b[0].pkts, b[0].n);
				b[0] = b[--nb];
				x = nb;
			}
			b[x].member = (uint32_t)k;
			b[x].n = 0;
			nb++;
		}
		b[x].pkts[b[x].n++] = m;
	}
	for (uint32_t x = 0; x < nb; x++)
		wf_send(w, t, &g->m[b[x].member].way, b[x].pkts, b[x].n);
}

static void
wf_p2mp_ready(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	      uint16_t n)
{
	if (f->action == WF_ACT_REPLICATE)
		wf_replicate(w, t, f, pkts, n);
	else
		wf_bridge(w, t, f, pkts, n);
}

/* Into the group / domain from this side: counted on its slot, dir 1. */
void
wf_p2mp_burst(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	      uint16_t n, uint64_t bytes)
{
	struct wf_xc_counters *xc = &w->xcc[f->xc_slot];
	xc->packets[1] += n;
	uint64_t ol = 0;
	for (uint16_t i = 0; i < n; i++)
		ol |= pkts[i]->ol_flags;
	if (bytes == 0)
		bytes = wf_burst_bytes(pkts, n);
	xc->bytes[1] += bytes;
	/* Replicas share or copy the data: nothing may still need finishing. */
	if (unlikely(ol & WF_OL_PENDING))
		wf_finish_then(w, t, f, pkts, n, 0, 0, wf_p2mp_ready);
	else
		wf_p2mp_ready(w, t, f, pkts, n);
}
