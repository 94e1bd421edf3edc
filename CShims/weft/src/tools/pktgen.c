/*
 * pktgen.c: the traffic generator and sink of weft-pktgen, on the same C
 * core as weftd (ports come from wf_port_attach). One thread transmits at a
 * TSC-paced rate and receives: every frame carries a magic, a sequence number
 * and the TSC at transmission in its UDP payload, so the receive side counts
 * loss, reordering and duplicates and measures latency (log2 buckets of TSC
 * cycles; Swift turns them into percentiles).
 */
#include <errno.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "wf_internal.h"
#include "weft_pktgen.h"

#define PG_MAGIC 0x57454654u /* "WEFT" */
#define PG_WINDOW 65536      /* duplicate detection window (sequence numbers) */

/* 20 bytes: with Ethernet/IPv4/UDP headers a 64-byte frame still holds it. */
struct pg_payload {
	uint32_t magic;
	uint64_t seq;
	uint64_t tsc;
} __rte_packed;

#define PG_VXLAN_OUTER 50 /* Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 */

/* Headers before the payload: the inner frame's, plus the outer ones with VXLAN. */
static uint32_t
pg_l2_l4_len(const struct wf_pktgen_cfg *c)
{
	return (c->vxlan_vni ? PG_VXLAN_OUTER : 0) + 14 + (c->vlan_id ? 4 : 0) + (c->ipv6 ? 40 : 20) + 8;
}

/* Outer headers of a VXLAN-encapsulated frame of `size` bytes (RFC 7348). */
static void
pg_build_outer(const struct wf_pktgen_cfg *c, uint8_t *p, uint32_t size)
{
	memcpy(p, c->outer_dst_mac, 6);
	memcpy(p + 6, c->outer_src_mac, 6);
	p[12] = 0x08, p[13] = 0x00;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(p + 14);
	memset(ip, 0, sizeof(*ip));
	ip->version_ihl = 0x45;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(size - 14));
	ip->time_to_live = 64;
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->next_proto_id = IPPROTO_UDP;
	memcpy(&ip->src_addr, c->outer_src_ip, 4);
	memcpy(&ip->dst_addr, c->outer_dst_ip, 4);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	struct rte_udp_hdr *u = (struct rte_udp_hdr *)(ip + 1);
	u->src_port = rte_cpu_to_be_16(49152);
	u->dst_port = rte_cpu_to_be_16(c->outer_dst_port ? c->outer_dst_port : 4789);
	u->dgram_len = rte_cpu_to_be_16((uint16_t)(size - 34));
	u->dgram_cksum = 0;
	uint8_t *vx = (uint8_t *)(u + 1);
	memset(vx, 0, 8);
	vx[0] = 0x08; /* I flag: the VNI is valid */
	vx[4] = (uint8_t)(c->vxlan_vni >> 16), vx[5] = (uint8_t)(c->vxlan_vni >> 8), vx[6] = (uint8_t)c->vxlan_vni;
}

/* Build one frame of `size` bytes; returns the payload offset. */
static uint32_t
pg_build_inner(const struct wf_pktgen_cfg *c, uint8_t *p, uint32_t size, uint32_t flow);

static uint32_t
pg_build(const struct wf_pktgen_cfg *c, uint8_t *p, uint32_t size, uint32_t flow)
{
	if (!c->vxlan_vni)
		return pg_build_inner(c, p, size, flow);
	memset(p, 0, size);
	pg_build_outer(c, p, size);
	return PG_VXLAN_OUTER + pg_build_inner(c, p + PG_VXLAN_OUTER, size - PG_VXLAN_OUTER, flow);
}

static uint32_t
pg_build_inner(const struct wf_pktgen_cfg *c, uint8_t *p, uint32_t size, uint32_t flow)
{
	memset(p, 0, size);
	memcpy(p, c->dst_mac, 6);
	memcpy(p + 6, c->src_mac, 6);
	uint32_t off = 12;
	if (c->vlan_id) {
		p[12] = 0x81, p[13] = 0x00, p[14] = (uint8_t)(c->vlan_id >> 8), p[15] = (uint8_t)c->vlan_id;
		off = 16;
	}
	const uint32_t l3 = off + 2;
	uint16_t sport = (uint16_t)(c->src_port + (c->flows ? flow % c->flows : 0));
	if (!c->ipv6) {
		p[off] = 0x08, p[off + 1] = 0x00;
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(p + l3);
		ip->version_ihl = 0x45;
		ip->total_length = rte_cpu_to_be_16((uint16_t)(size - l3));
		ip->time_to_live = 64;
		ip->next_proto_id = IPPROTO_UDP;
		uint32_t src = rte_be_to_cpu_32(*(const uint32_t *)c->src_ip) + (c->flows ? flow % c->flows : 0);
		ip->src_addr = rte_cpu_to_be_32(src);
		memcpy(&ip->dst_addr, c->dst_ip, 4);
		ip->hdr_checksum = rte_ipv4_cksum(ip);
		struct rte_udp_hdr *u = (struct rte_udp_hdr *)(ip + 1);
		u->src_port = rte_cpu_to_be_16(sport);
		u->dst_port = rte_cpu_to_be_16(c->dst_port);
		u->dgram_len = rte_cpu_to_be_16((uint16_t)(size - l3 - 20));
	} else {
		p[off] = 0x86, p[off + 1] = 0xdd;
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(p + l3);
		ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
		ip->payload_len = rte_cpu_to_be_16((uint16_t)(size - l3 - 40));
		ip->proto = IPPROTO_UDP;
		ip->hop_limits = 64;
		memcpy(ip->src_addr, c->src_ip, 16);
		memcpy(ip->dst_addr, c->dst_ip, 16);
		ip->src_addr[15] = (uint8_t)(ip->src_addr[15] + (c->flows ? flow % c->flows : 0));
		struct rte_udp_hdr *u = (struct rte_udp_hdr *)(ip + 1);
		u->src_port = rte_cpu_to_be_16(sport);
		u->dst_port = rte_cpu_to_be_16(c->dst_port);
		u->dgram_len = ip->payload_len;
	}
	return 14 + (c->vlan_id ? 4 : 0) + (c->ipv6 ? 40 : 20) + 8;
}

/* Where the payload starts in a received frame: tags may have been pushed or
 * popped on the way, so parse rather than assume the sent layout. */
static inline uint32_t
pg_payload_offset_at(const struct rte_mbuf *m, uint32_t base, int depth)
{
	uint8_t hdr[18];
	const uint8_t *p = rte_pktmbuf_read(m, base, sizeof(hdr), hdr);
	if (p == NULL)
		return UINT32_MAX;
	uint32_t off = 12;
	uint16_t type = (uint16_t)(p[12] << 8 | p[13]);
	if (type == RTE_ETHER_TYPE_VLAN) {
		off = 16;
		type = (uint16_t)(p[16] << 8 | p[17]);
	}
	const uint32_t l3 = off + 2, l3len = type == RTE_ETHER_TYPE_IPV6 ? 40 : 20;
	if (depth == 0) {
		/* A VXLAN-encapsulated frame (a DUT encapsulated it): the payload is inside. */
		uint8_t l34[40 + 4];
		const uint8_t *q = rte_pktmbuf_read(m, base + l3, l3len + 4, l34);
		if (q != NULL) {
			const uint8_t proto = type == RTE_ETHER_TYPE_IPV6 ? q[6] : q[9];
			const uint16_t dport = (uint16_t)(q[l3len + 2] << 8 | q[l3len + 3]);
			if (proto == IPPROTO_UDP && (dport == 4789 || dport == 8472))
				return pg_payload_offset_at(m, base + l3 + l3len + 8 + 8, 1);
		}
	}
	return base + l3 + l3len + 8;
}

static inline uint32_t
pg_payload_offset(const struct rte_mbuf *m)
{
	return pg_payload_offset_at(m, 0, 0);
}

static inline void
pg_receive(struct wf_pktgen_result *r, struct rte_mbuf **pkts, uint16_t n, uint32_t poff,
	   uint8_t *seen, uint64_t now)
{
	(void)poff;
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		r->rx_bytes += rte_pktmbuf_pkt_len(m);
		struct pg_payload pl;
		uint32_t at = pg_payload_offset(m);
		const struct pg_payload *q = at == UINT32_MAX ? NULL : rte_pktmbuf_read(m, at, sizeof(pl), &pl);
		if (q == NULL || q->magic != PG_MAGIC) {
			r->rx_foreign++;
			continue;
		}
		/* Sequence: a window of PG_WINDOW bits tells duplicates from late frames. */
		uint64_t seq = q->seq;
#define PG_BIT(s) seen[((s) % PG_WINDOW) / 8], (uint8_t)(1u << ((s) % 8))
		if (r->rx_packets == 0 || seq > r->rx_max_seq) {
			uint64_t from = r->rx_packets == 0 ? seq : r->rx_max_seq + 1;
			for (uint64_t s = from; s < seq && s - from < PG_WINDOW; s++)
				seen[(s % PG_WINDOW) / 8] &= (uint8_t)~(1u << (s % 8));
			seen[(seq % PG_WINDOW) / 8] |= (uint8_t)(1u << (seq % 8));
			r->rx_max_seq = seq;
		} else if (r->rx_max_seq - seq >= PG_WINDOW) {
			r->reordered++; /* too late to tell a duplicate */
		} else if (seen[(seq % PG_WINDOW) / 8] & (1u << (seq % 8))) {
			r->duplicates++;
			continue;
		} else {
			seen[(seq % PG_WINDOW) / 8] |= (uint8_t)(1u << (seq % 8));
			r->reordered++;
		}
#undef PG_BIT
		r->rx_packets++;
		uint64_t lat = now > q->tsc ? now - q->tsc : 0;
		uint32_t b = lat ? 63 - (uint32_t)__builtin_clzll(lat) : 0;
		r->latency_log2[b < 48 ? b : 47]++;
		if (lat > r->latency_max)
			r->latency_max = lat;
		if (r->latency_min == 0 || lat < r->latency_min)
			r->latency_min = lat;
		r->latency_sum += lat;
	}
	rte_pktmbuf_free_bulk(pkts, n);
}

int
wf_pktgen_run(wf_dataplane_t *dp, uint16_t tx_port, uint16_t rx_port, const struct wf_pktgen_cfg *c,
	      struct wf_pktgen_result *r)
{
	if (dp == NULL || c == NULL || r == NULL || c->n_sizes == 0 || c->n_sizes > 16 || c->burst == 0 ||
	    c->burst > WF_MAX_BURST)
		return -EINVAL;
	for (uint32_t i = 0; i < c->n_sizes; i++)
		if (c->sizes[i] < pg_l2_l4_len(c) + sizeof(struct pg_payload) || c->sizes[i] > 9000) {
			wf_set_error("frame size %u out of range for this template", c->sizes[i]);
			return -EINVAL;
		}
	memset(r, 0, sizeof(*r));
	static uint8_t seen[PG_WINDOW / 8];
	memset(seen, 0, sizeof(seen));
	/* Frame templates, one per size (IMIX cycles through them). */
	static uint8_t tpl[16][9000];
	uint32_t poff = 0;
	for (uint32_t i = 0; i < c->n_sizes; i++)
		poff = pg_build(c, tpl[i], c->sizes[i], 0);

	const uint64_t hz = rte_get_tsc_hz();
	const uint64_t start = rte_rdtsc();
	const uint64_t end = start + (uint64_t)(c->duration_ms * (double)hz / 1000.0);
	const uint64_t drain_end = end + hz / 5; /* 200 ms for frames in flight */
	const double gap = c->rate_pps > 0 ? (double)hz / c->rate_pps : 0; /* TSC per frame */
	double next = (double)start;
	uint64_t seq = 0;
	struct rte_mbuf *tx[WF_MAX_BURST], *rx[WF_MAX_BURST];

	for (;;) {
		uint64_t now = rte_rdtsc();
		if (now < end) {
			/* How many frames are due: rate control from the TSC. */
			uint32_t due = c->burst;
			if (gap > 0 && (double)now - next > gap * 4.0 * c->burst) {
				/* More than 4 bursts behind: this thread was descheduled. Sending
				 * the backlog back to back would measure the generator, not the
				 * DUT: skip it (counted) and go on at the rate. */
				uint64_t behind = (uint64_t)(((double)now - next) / gap);
				r->tx_skipped += behind;
				next += gap * (double)behind;
			}
			if (gap > 0) {
				double ahead = ((double)now - next) / gap;
				due = ahead <= 0 ? 0 : ahead >= c->burst ? c->burst : (uint32_t)ahead + 1;
			}
			if (due > 0 && rte_pktmbuf_alloc_bulk(dp->pool, tx, due) == 0) {
				for (uint32_t i = 0; i < due; i++) {
					uint32_t k = (uint32_t)((seq + i) % c->n_sizes);
					uint32_t sz = c->sizes[k];
					uint8_t *p = (uint8_t *)rte_pktmbuf_append(tx[i], (uint16_t)sz);
					memcpy(p, tpl[k], sz);
					if (c->mac_flows > 1) {
						/* Source MACs 02:..:xx:yy over the range: a bridge learns each. */
						uint32_t f = (uint32_t)((seq + i) % c->mac_flows);
						uint8_t *inner = p + (c->vxlan_vni ? PG_VXLAN_OUTER : 0);
						inner[10] = (uint8_t)(f >> 8);
						inner[11] = (uint8_t)f;
					}
					if (c->vxlan_vni && c->vxlan_vnis > 1) {
						/* One connection per VNI: consecutive frames on different ones. */
						uint32_t v = c->vxlan_vni + (uint32_t)((seq + i) % c->vxlan_vnis);
						p[14 + 20 + 8 + 4] = (uint8_t)(v >> 16);
						p[14 + 20 + 8 + 5] = (uint8_t)(v >> 8);
						p[14 + 20 + 8 + 6] = (uint8_t)v;
					}
					if (c->flows > 1) {
						/* Vary the (inner) UDP source port per flow. */
						uint32_t l4 = pg_l2_l4_len(c) - 8;
						uint16_t sp = rte_cpu_to_be_16((uint16_t)(c->src_port + (seq + i) % c->flows));
						memcpy(p + l4, &sp, 2);
					}
					struct pg_payload pl = { .magic = PG_MAGIC, .seq = seq + i, .tsc = rte_rdtsc() };
					memcpy(p + poff, &pl, sizeof(pl));
				}
				uint16_t sent = wf_port_tx(&dp->workers[0], tx_port, tx, (uint16_t)due);
				for (uint16_t i = 0; i < sent; i++)
					r->tx_bytes += rte_pktmbuf_pkt_len(tx[i]);
				if (sent < due) {
					r->tx_refused += due - sent;
					rte_pktmbuf_free_bulk(tx + sent, due - sent);
				}
				/* Refused frames keep their sequence numbers: they count as lost. */
				seq += due;
				r->tx_packets += sent;
				r->tx_attempted += due;
				if (gap > 0)
					next += gap * due;
			}
		} else if (now >= drain_end) {
			break;
		}
		for (uint16_t q = 0; q < (c->rx_queues ? c->rx_queues : 1); q++) {
			uint16_t n = wf_port_rx(dp, rx_port, q, rx, c->burst);
			if (n)
				pg_receive(r, rx, n, poff, seen, rte_rdtsc());
		}
	}
	r->elapsed_tsc = rte_rdtsc() - start;
	r->tsc_hz = hz;
	return 0;
}
