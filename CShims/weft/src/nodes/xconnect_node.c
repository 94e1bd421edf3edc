/*
 * xconnect_node.c: the P2P cross-connect stage, and the dispatch every stage
 * uses to hand frames on (wf_deliver): to the egress node for a point-to-point
 * way, to the replication or bridge stage for a group or domain. Frames from
 * one side leave unchanged apart from the tunnel header the other side
 * implies.
 */
#include "wf_internal.h"

void
wf_xconnect_burst(struct wf_worker *w, const struct wf_table *t, uint16_t in_port,
		  struct rte_mbuf **pkts, uint16_t n)
{
	const struct wf_fwd *f = &t->fwd[in_port];
	struct wf_if_counters *ic = &w->ifc[in_port];

	/* One pass over the burst: its size for the counters, and what egress
	 * checks (offloads pending, the longest frame). */
	const struct wf_scan s = wf_burst_scan(pkts, n);
	ic->rx_packets += n;
	ic->rx_bytes += s.bytes;

	if (unlikely(f->out_port == WF_PORT_NONE)) {
		wf_count_drop(w, ic, WF_DROP_NO_PEER, n);
		rte_pktmbuf_free_bulk(pkts, n);
		return;
	}
	/* Forwarded as is, the burst leaves with the bytes it came with. */
	if (likely(f->action < WF_ACT_REPLICATE))
		wf_send_scanned(w, t, f, pkts, n, &s);
	else
		wf_p2mp_burst(w, t, f, pkts, n, s.bytes);
}

void
wf_deliver(struct wf_worker *w, const struct wf_table *t, const struct wf_fwd *f, struct rte_mbuf **pkts,
	   uint16_t n, uint64_t bytes)
{
	if (likely(f->action < WF_ACT_REPLICATE))
		wf_send(w, t, f, pkts, n);
	else
		wf_p2mp_burst(w, t, f, pkts, n, bytes);
}
