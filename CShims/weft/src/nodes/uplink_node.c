/*
 * uplink_node.c: frames from an uplink port (one that carries tunnels) are
 * classified one by one: an 802.1Q tag is checked and popped and its VLAN id
 * picks the connection (id 0: untagged frames). Frames for the same
 * connection are gathered and sent together (wf_send). Anything that matches
 * nothing is dropped with its own reason.
 */
#include <rte_ether.h>

#include "wf_internal.h"

#define WF_BATCHES 8

struct wf_batch {
	const struct wf_fwd *f;
	uint16_t n;
	struct rte_mbuf *pkts[WF_MAX_BURST];
};

/* Frames for the control plane (ARP, ICMP, ICMPv6 to the uplink). */
#define WF_PUNT ((const struct wf_fwd *)1)

/*
 * Untagged IPv4/IPv6 for the uplink's own addresses: VXLAN is decapsulated,
 * ARP/ICMP/ICMPv6 go to the control plane. NULL with *why unset (NO_PEER):
 * not for the underlay, carry on with VLAN classification.
 */
static inline const struct wf_fwd *
wf_underlay_classify(const struct wf_table *t, const struct wf_underlay *ul, struct rte_mbuf *m,
		     uint16_t type, enum wf_drop_reason *why)
{
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	const uint32_t len = rte_pktmbuf_data_len(m);
	if (type == RTE_ETHER_TYPE_ARP && ul->cfg.has_ip4)
		return WF_PUNT;
	if (type == RTE_ETHER_TYPE_IPV4 && ul->cfg.has_ip4) {
		if (len < 14 + 20) {
			*why = WF_DROP_RUNT; /* too short to be the IPv4 it says it is */
			return NULL;
		}
		if (memcmp(p + 14 + 16, ul->cfg.ip4, 4) != 0)
			return NULL;
		uint8_t proto = p[14 + 9];
		if (proto == IPPROTO_ICMP) {
			if (ul->cfg.kernel_shared) {
				*why = WF_DROP_LEFT_TO_KERNEL; /* the kernel answers its own echo */
				return NULL;
			}
			return WF_PUNT;
		}
		const struct wf_fwd *f = wf_vxlan_decap(t, ul, m, 14, false, why);
		if (f == NULL && (*why == WF_DROP_NO_PEER || *why == WF_DROP_NOT_FOR_TUNNEL))
			*why = ul->cfg.kernel_shared ? WF_DROP_LEFT_TO_KERNEL : WF_DROP_NOT_FOR_TUNNEL;
		return f;
	}
	if (type == RTE_ETHER_TYPE_IPV6 && ul->cfg.has_ip6) {
		if (len < 14 + 40) {
			*why = WF_DROP_RUNT;
			return NULL;
		}
		const uint8_t *dst = p + 14 + 24;
		bool mine = memcmp(dst, ul->cfg.ip6, 16) == 0;
		bool link_mcast = dst[0] == 0xff && (dst[1] & 0x0f) == 0x02;
		if (!mine && !link_mcast)
			return NULL;
		if (p[14 + 6] == IPPROTO_ICMPV6)
			return WF_PUNT; /* ND, echo; RAs are consumed there, never forwarded */
		if (!mine)
			return NULL;
		const struct wf_fwd *f = wf_vxlan_decap(t, ul, m, 14, true, why);
		if (f == NULL && *why == WF_DROP_NOT_FOR_TUNNEL && ul->cfg.kernel_shared)
			*why = WF_DROP_LEFT_TO_KERNEL;
		return f;
	}
	return NULL;
}

/* The connection for one uplink frame, popping its tag; NULL: dropped (reason set). */
static inline const struct wf_fwd *
wf_classify(const struct wf_table *t, const struct wf_fwd *vlan, const struct wf_underlay *ul,
	    struct rte_mbuf *m, enum wf_drop_reason *why)
{
	if (unlikely(rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr))) {
		*why = WF_DROP_RUNT;
		return NULL;
	}
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
	uint16_t type = rte_be_to_cpu_16(*(uint16_t *)(p + 12));
	if (ul != NULL) {
		*why = WF_DROP_NO_PEER;
		const struct wf_fwd *f = wf_underlay_classify(t, ul, m, type, why);
		if (f != NULL || *why != WF_DROP_NO_PEER)
			return f;
	}
	uint16_t vid = WF_VLAN_RAW;
	if (type == RTE_ETHER_TYPE_VLAN) {
		if (unlikely(rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr) + sizeof(struct rte_vlan_hdr))) {
			*why = WF_DROP_RUNT;
			return NULL;
		}
		uint16_t inner = rte_be_to_cpu_16(*(uint16_t *)(p + 16));
		if (unlikely(inner == RTE_ETHER_TYPE_VLAN || inner == RTE_ETHER_TYPE_QINQ)) {
			*why = WF_DROP_QINQ;
			return NULL;
		}
		vid = rte_be_to_cpu_16(*(uint16_t *)(p + 14)) & 0xfff;
		if (unlikely(vid == WF_VLAN_RAW || vid == 0xfff)) {
			/* Priority-tagged (id 0) and reserved 4095 frames map to no VLAN. */
			*why = WF_DROP_UNKNOWN_VLAN;
			return NULL;
		}
	} else if (unlikely(type == RTE_ETHER_TYPE_QINQ)) {
		*why = WF_DROP_QINQ;
		return NULL;
	}
	if (unlikely(vlan == NULL)) {
		/* No VLANs here: neither its VXLAN nor for its addresses (the peer's
		 * multicast, another host's traffic). */
		*why = ul != NULL && ul->cfg.kernel_shared ? WF_DROP_LEFT_TO_KERNEL : WF_DROP_NOT_FOR_UPLINK;
		return NULL;
	}
	const struct wf_fwd *f = &vlan[vid];
	if (unlikely(f->out_port == WF_PORT_NONE)) {
		if (ul != NULL && ul->cfg.kernel_shared && vid == WF_VLAN_RAW) {
			*why = WF_DROP_LEFT_TO_KERNEL; /* the host's own untagged traffic */
			return NULL;
		}
		*why = WF_DROP_UNKNOWN_VLAN;
		return NULL;
	}
	if (vid != WF_VLAN_RAW) {
		/* Pop: the MAC addresses move 4 bytes back over the tag. */
		memmove(p + sizeof(struct rte_vlan_hdr), p, 2 * RTE_ETHER_ADDR_LEN);
		rte_pktmbuf_adj(m, sizeof(struct rte_vlan_hdr));
		if (unlikely(m->ol_flags & WF_OL_PENDING))
			wf_ol_front_removed(m, sizeof(struct rte_vlan_hdr), true);
	}
	return f;
}

/* The worker's punt token bucket: one frame's token, refilled by TSC. */
static inline bool
wf_punt_allowed(struct wf_worker *w)
{
	if (w->punt_per_tsc32 == 0)
		return true;
	const uint64_t one = 1ull << 32;
	if (w->punt_tokens < one) {
		const uint64_t now = rte_rdtsc();
		const uint64_t gap = now - w->punt_last_tsc;
		w->punt_last_tsc = now;
		if (gap >= w->punt_full_tsc) {
			w->punt_tokens = w->punt_burst32;
		} else {
			const uint64_t add = gap * w->punt_per_tsc32;
			w->punt_tokens = w->punt_tokens + add > w->punt_burst32 ? w->punt_burst32 : w->punt_tokens + add;
		}
		if (w->punt_tokens < one)
			return false;
	}
	w->punt_tokens -= one;
	return true;
}

void
wf_uplink_burst(struct wf_worker *w, const struct wf_table *t, uint16_t in_port,
		struct rte_mbuf **pkts, uint16_t n)
{
	const struct wf_fwd *vlan = t->vlan[in_port];
	const struct wf_underlay *ul = t->ul[in_port];
	struct wf_if_counters *ic = &w->ifc[in_port];
	const struct wf_fwd *fs[WF_MAX_BURST];
	struct rte_mbuf *ms[WF_MAX_BURST];
	uint16_t k = 0;

	/* Many tunnels: start every decap lookup of the burst before the first. */
	if (ul != NULL && t->dec != NULL && t->dec_mask >= WF_DEC_PREFETCH_MASK)
		for (uint16_t i = 0; i < n; i++)
			wf_vxlan_prefetch(t, ul, pkts[i]);

	ic->rx_packets += n;
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		ic->rx_bytes += rte_pktmbuf_pkt_len(m);
		enum wf_drop_reason why = WF_DROP_NO_PEER;
		const struct wf_fwd *f = wf_classify(t, vlan, ul, m, &why);
		if (unlikely(f == NULL)) {
			wf_count_drop(w, ic, why, 1);
			rte_pktmbuf_free(m);
			continue;
		}
		if (f == WF_PUNT) {
			m->port = in_port;
			if (unlikely(!wf_punt_allowed(w))) {
				wf_count_drop(w, ic, WF_DROP_PUNT_RATE, 1);
				rte_pktmbuf_free(m);
				continue;
			}
			if (unlikely(rte_ring_enqueue(w->dp->punt, m) != 0)) {
				wf_count_drop(w, ic, WF_DROP_PUNT_FULL, 1);
				rte_pktmbuf_free(m);
			} else {
				w->punted++;
			}
			continue;
		}
		fs[k] = f;
		ms[k++] = m;
	}

	/* Few connections (the usual case): one wf_deliver per connection. */
	struct wf_batch b[WF_BATCHES];
	uint32_t nb = 0;
	for (uint16_t i = 0; i < k; i++) {
		uint32_t j;
		for (j = 0; j < nb && b[j].f != fs[i]; j++)
			;
		if (j == nb) {
			if (unlikely(nb == WF_BATCHES)) {
				/* More connections than batches: per frame, grouped by port
				 * (frames for groups and domains one by one). */
				uint16_t p2p = 0;
				for (uint16_t x = 0; x < k; x++) {
					if (fs[x]->action >= WF_ACT_REPLICATE) {
						wf_send_mixed(w, t, fs, ms, p2p);
						p2p = 0;
						wf_p2mp_burst(w, t, fs[x], &ms[x], 1, 0);
					} else {
						fs[p2p] = fs[x];
						ms[p2p++] = ms[x];
					}
				}
				wf_send_mixed(w, t, fs, ms, p2p);
				return;
			}
			b[j].f = fs[i];
			b[j].n = 0;
			nb++;
		}
		b[j].pkts[b[j].n++] = ms[i];
	}
	for (uint32_t j = 0; j < nb; j++)
		wf_deliver(w, t, b[j].f, b[j].pkts, b[j].n, 0);
}
