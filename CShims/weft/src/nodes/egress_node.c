/*
 * egress_node.c: the one way out. Every stage hands its frames here: the
 * egress action (VLAN push, VXLAN encap) is applied, offloads the egress
 * port cannot take are finished in software (offload.c), frames too long for
 * the port are dropped, and the burst goes to the port's TX queue owned by
 * this worker. Counters are this worker's own; what TX refused is freed and
 * counted as tx-full.
 */
#include <rte_prefetch.h>

#include "wf_internal.h"

/* Slow path: the flag says down; a port whose state is cheap to read may be up already. */
static __rte_noinline bool
wf_link_recheck(struct wf_dataplane *dp, uint16_t port)
{
	if (!dp->link_cheap[port])
		return false;
	struct rte_eth_link link;
	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(dp->fp[port].eth, &link) != 0 || !link.link_status)
		return false;
	__atomic_store_n(&dp->link_up[port], 1, __ATOMIC_RELAXED);
	return true;
}

/* Drop one frame on its way out: counted on the egress interface and the connection. */
static inline void
wf_egress_drop(struct wf_worker *w, const struct wf_fwd *f, enum wf_drop_reason why, struct rte_mbuf *m)
{
	if (f->action < WF_ACT_REPLICATE)
		wf_count_drop(w, &w->ifc[f->out_port], why, 1);
	else
		w->drops[why]++;
	w->xcc[f->xc_slot].drops[f->dir]++;
	rte_pktmbuf_free(m);
}

/*
 * The slow way out, for a burst holding frames whose offloads must be
 * finished here (the port cannot take them, or they are about to be
 * encapsulated or replicated) or frames longer than the port takes: each
 * frame is finished or segmented in order, and what is ready goes on to
 * `next` in bursts.
 */
void
wf_finish_then(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	       uint16_t n, uint8_t caps, uint32_t max_frame, wf_next_fn next)
{
	struct rte_mbuf *out[WF_MAX_BURST];
	uint16_t k = 0;
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		const uint64_t ol = m->ol_flags & WF_OL_PENDING;
		if ((ol & WF_OL_SEG) && !(caps & WF_CAP_GSO)) {
			int total = wf_gso_count(m);
			if (total < 0) {
				wf_egress_drop(w, f, WF_DROP_OVERSIZE_GSO, m);
				continue;
			}
			/*
			 * Segments longer than the port takes are dropped as a frame that
			 * long would be: found by fuzz/fuzz_p2p (regression
			 * fuzz/regressions/p2p/gso-segment-over-mtu), where a TSO frame
			 * whose gso_size exceeded the egress MTU (a pod with a larger
			 * MTU than the egress) left as 2054-byte frames on a 1518-byte port.
			 */
			const uint32_t hdr = (uint32_t)m->l2_len + m->l3_len + m->l4_len;
			const uint32_t biggest = RTE_MIN(hdr + m->tso_segsz, rte_pktmbuf_pkt_len(m));
			if (max_frame != 0 && biggest > max_frame) {
				wf_egress_drop(w, f, WF_DROP_MTU_EXCEEDED, m);
				continue;
			}
			for (int first = 0; first < total;) {
				if (k == WF_MAX_BURST) {
					next(w, t, f, out, k);
					k = 0;
				}
				uint16_t room = (uint16_t)(WF_MAX_BURST - k);
				int got = wf_gso_range(m, w->dp->pool, (uint32_t)first, room, out + k);
				if (got <= 0) {
					/* No mbufs: the rest of this super-frame is lost, counted once. */
					w->drops[WF_DROP_NO_MBUF]++;
					w->xcc[f->xc_slot].drops[f->dir]++;
					break;
				}
				k = (uint16_t)(k + got);
				first += got;
			}
			rte_pktmbuf_free(m);
			continue;
		}
		if ((ol & RTE_MBUF_F_TX_L4_MASK) && !(ol & WF_OL_SEG) && !(caps & WF_CAP_L4_CSUM) &&
		    wf_csum_finish(m) != 0) {
			wf_egress_drop(w, f, WF_DROP_BAD_CSUM_OFFLOAD, m);
			continue;
		}
		if (max_frame != 0 && !(m->ol_flags & WF_OL_SEG) && rte_pktmbuf_pkt_len(m) > max_frame) {
			wf_egress_drop(w, f, WF_DROP_MTU_EXCEEDED, m);
			continue;
		}
		if (k == WF_MAX_BURST) {
			next(w, t, f, out, k);
			k = 0;
		}
		out[k++] = m;
	}
	if (k)
		next(w, t, f, out, k);
}

/* What a port cannot take of a frame about to leave through way f. */
static inline bool
wf_needs_finish(const struct wf_port_fp *fp, const struct wf_fwd *f, uint64_t ol, uint32_t longest)
{
	if (unlikely(fp->max_frame != 0 && longest > fp->max_frame))
		return true;
	if (likely(!(ol & WF_OL_PENDING)))
		return false;
	/* Offloads of an inner frame are finished before it is encapsulated. */
	if (f->action == WF_ACT_VXLAN_ENCAP)
		return true;
	if ((ol & WF_OL_SEG) && !(fp->caps & WF_CAP_GSO))
		return true;
	return (ol & RTE_MBUF_F_TX_L4_MASK) && !(fp->caps & WF_CAP_L4_CSUM);
}

static void wf_send_ready(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f,
			  struct rte_mbuf **pkts, uint16_t n);
static void wf_send_sized(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f,
			  struct rte_mbuf **pkts, uint16_t n, uint64_t bytes);

/*
 * Send a burst that all goes one way (f): finish what the port cannot take,
 * apply the egress action, transmit, count. Bytes are counted as they leave
 * (after any pushed header). The burst is read once here (wf_burst_scan);
 * wf_send_scanned takes one its caller scanned already (a cross-connect, at RX).
 */
void
wf_send(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	uint16_t n)
{
	const struct wf_scan s = wf_burst_scan(pkts, n);
	wf_send_scanned(w, t, f, pkts, n, &s);
}

void
wf_send_scanned(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
		uint16_t n, const struct wf_scan *s)
{
	const struct wf_port_fp *fp = &w->dp->fp[f->out_port];
	if (unlikely(wf_needs_finish(fp, f, s->ol, s->longest))) {
		uint8_t caps = f->action == WF_ACT_VXLAN_ENCAP ? 0 : fp->caps;
		uint32_t max_frame = f->action == WF_ACT_VXLAN_ENCAP ? 0 : fp->max_frame;
		wf_finish_then(w, t, f, pkts, n, caps, max_frame, wf_send_ready);
		return;
	}
	wf_send_sized(w, t, f, pkts, n, f->action == WF_ACT_FWD ? s->bytes : 0);
}

static void
wf_send_ready(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	      uint16_t n)
{
	wf_send_sized(w, t, f, pkts, n, 0);
}

/* Apply the egress action, transmit, count; bytes: the burst's size as it leaves, 0 when not known. */
static void
wf_send_sized(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	      uint16_t n, uint64_t bytes)
{
	struct wf_xc_counters *xc = &w->xcc[f->xc_slot];
	struct wf_if_counters *oc = &w->ifc[f->out_port];
	const uint8_t d = f->dir;

	if (unlikely(!__atomic_load_n(&w->dp->link_up[f->out_port], __ATOMIC_RELAXED)) &&
	    !wf_link_recheck(w->dp, f->out_port)) {
		wf_count_drop(w, oc, WF_DROP_LINK_DOWN, n);
		xc->drops[d] += n;
		rte_pktmbuf_free_bulk(pkts, n);
		return;
	}
	/* The connection counts its frames as they are (inner); the port what it
	 * sends (with the pushed tag or the VXLAN headers). */
	uint32_t inner[WF_MAX_BURST];
	const bool grows = f->action != WF_ACT_FWD;
	if (grows) {
		uint8_t keep[WF_MAX_BURST];
		uint16_t bad = 0;
		for (uint16_t i = 0; i < n; i++) {
			inner[i] = rte_pktmbuf_pkt_len(pkts[i]);
			enum wf_drop_reason why = WF_DROP_NO_HEADROOM;
			int rc = f->action == WF_ACT_VLAN_PUSH ? wf_vlan_push(pkts[i], f->vlan_tci, &why)
							      : wf_vxlan_encap(w, t, f->tun, pkts[i], &why);
			keep[i] = rc == 0;
			if (unlikely(rc != 0)) {
				wf_count_drop(w, oc, why, 1);
				bad++;
			}
		}
		if (unlikely(bad)) {
			xc->drops[d] += bad;
			uint16_t k = 0;
			for (uint16_t i = 0; i < n; i++) {
				if (keep[i]) {
					inner[k] = inner[i];
					pkts[k++] = pkts[i];
				} else {
					rte_pktmbuf_free(pkts[i]);
				}
			}
			n = k;
			if (n == 0)
				return;
		}
		bytes = 0;
	}
	if (bytes == 0)
		bytes = wf_burst_bytes(pkts, n);
	uint16_t sent = wf_port_tx(w, f->out_port, pkts, n);
	uint64_t sent_bytes = bytes;
	if (unlikely(sent < n)) {
		uint16_t left = n - sent;
		sent_bytes -= wf_burst_bytes(pkts + sent, left);
		wf_count_drop(w, oc, wf_tx_short_reason(w->dp, f->out_port, w->idx), left);
		xc->drops[d] += left;
		rte_pktmbuf_free_bulk(pkts + sent, left);
	}
	uint64_t conn_bytes = sent_bytes;
	if (grows) {
		conn_bytes = 0;
		for (uint16_t i = 0; i < sent; i++)
			conn_bytes += inner[i];
	}
	oc->tx_packets += sent;
	oc->tx_bytes += sent_bytes;
	xc->packets[d] += sent;
	xc->bytes[d] += conn_bytes;
}

/* Frames gathered for one egress port, each with the connection it belongs to. */
struct wf_port_batch {
	uint16_t port;
	uint16_t n;
	struct rte_mbuf *pkts[WF_MAX_BURST];
	const struct wf_fwd *f[WF_MAX_BURST];
	uint32_t len[WF_MAX_BURST];
};

#define WF_PORT_BATCHES 4

static void
wf_port_flush(struct wf_worker *w, struct wf_port_batch *b)
{
	struct wf_if_counters *oc = &w->ifc[b->port];
	/* The port counts what it sends (outer headers included); the connections
	 * their frames as they were (b->len, before any header was added). */
	uint64_t wire = 0;
	for (uint16_t i = 0; i < b->n; i++)
		wire += rte_pktmbuf_pkt_len(b->pkts[i]);
	uint16_t sent = wf_port_tx(w, b->port, b->pkts, b->n);
	/* Per-connection counters, one update per run of the same connection. */
	for (uint16_t i = 0; i < b->n;) {
		const struct wf_fwd *f = b->f[i];
		uint64_t pk = 0, by = 0, dr = 0;
		for (; i < b->n && b->f[i] == f; i++) {
			if (i < sent) {
				pk++;
				by += b->len[i];
			} else {
				dr++;
			}
		}
		struct wf_xc_counters *xc = &w->xcc[f->xc_slot];
		xc->packets[f->dir] += pk;
		xc->bytes[f->dir] += by;
		xc->drops[f->dir] += dr;
	}
	if (unlikely(sent < b->n)) {
		for (uint16_t i = sent; i < b->n; i++)
			wire -= rte_pktmbuf_pkt_len(b->pkts[i]);
		wf_count_drop(w, oc, wf_tx_short_reason(w->dp, b->port, w->idx), b->n - sent);
		rte_pktmbuf_free_bulk(b->pkts + sent, b->n - sent);
	}
	oc->tx_packets += sent;
	oc->tx_bytes += wire;
	b->n = 0;
}

/*
 * A burst whose frames belong to more connections than wf_send's batching
 * keeps apart (many tunnels, each with a few frames): each frame gets its
 * connection's egress action, then frames are grouped by egress port, so a
 * TX burst still carries many frames. Counted as wf_send counts. Only
 * point-to-point ways: frames for groups and domains go to wf_p2mp_burst.
 */
void
wf_send_mixed(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd **fs,
	      struct rte_mbuf **ms, uint16_t n)
{
	struct wf_port_batch b[WF_PORT_BATCHES];
	uint32_t nb = 0;
	/* The connections' counters and templates are scattered: fetch them together. */
	for (uint16_t i = 0; i < n; i++) {
		rte_prefetch0(&w->xcc[fs[i]->xc_slot]);
		if (fs[i]->action == WF_ACT_VXLAN_ENCAP) {
			const struct wf_vxtpl *x = wf_vxtpl_of(t, fs[i]->tun);
			rte_prefetch0(x);
			rte_prefetch0((const uint8_t *)(x + 1) - 1);
		}
	}
	for (uint16_t i = 0; i < n; i++) {
		const struct wf_fwd *f = fs[i];
		struct rte_mbuf *m = ms[i];
		const struct wf_port_fp *fp = &w->dp->fp[f->out_port];
		if (unlikely(wf_needs_finish(fp, f, m->ol_flags, rte_pktmbuf_pkt_len(m)))) {
			/* The slow way, after what is batched for that port (frame order). */
			for (uint32_t k = 0; k < nb; k++)
				if (b[k].port == f->out_port && b[k].n > 0)
					wf_port_flush(w, &b[k]);
			wf_send(w, t, f, &m, 1);
			continue;
		}
		struct wf_if_counters *oc = &w->ifc[f->out_port];
		const uint32_t inner_len = rte_pktmbuf_pkt_len(m);
		enum wf_drop_reason why = WF_DROP_LINK_DOWN;
		int rc = 0;
		if (unlikely(!__atomic_load_n(&w->dp->link_up[f->out_port], __ATOMIC_RELAXED)) &&
		    !wf_link_recheck(w->dp, f->out_port))
			rc = -1;
		else if (f->action == WF_ACT_VLAN_PUSH)
			rc = wf_vlan_push(m, f->vlan_tci, &why);
		else if (f->action == WF_ACT_VXLAN_ENCAP)
			rc = wf_vxlan_encap(w, t, f->tun, m, &why);
		if (unlikely(rc != 0)) {
			wf_count_drop(w, oc, why, 1);
			w->xcc[f->xc_slot].drops[f->dir]++;
			rte_pktmbuf_free(m);
			continue;
		}
		uint32_t k;
		for (k = 0; k < nb && b[k].port != f->out_port; k++)
			;
		if (k == nb) {
			if (unlikely(nb == WF_PORT_BATCHES)) {
				wf_port_flush(w, &b[0]);
				b[0] = b[--nb];
				k = nb;
			}
			b[k].port = f->out_port;
			b[k].n = 0;
			nb++;
		}
		struct wf_port_batch *pb = &b[k];
		pb->pkts[pb->n] = m;
		pb->f[pb->n] = f;
		pb->len[pb->n++] = inner_len;
	}
	for (uint32_t k = 0; k < nb; k++)
		wf_port_flush(w, &b[k]);
}

