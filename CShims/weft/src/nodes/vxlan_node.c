/*
 * vxlan_node.c: per-packet VXLAN (RFC 7348). Encap copies the tunnel's
 * template in front of the inner frame and fills lengths, the UDP source
 * port (a hash of the inner flow), the IPv4 header checksum and the IPv6 UDP
 * checksum. Decap checks lengths and the I flag, then looks the packet up by
 * (family, UDP port, VNI, outer source): the source check is the
 * anti-spoofing rule, a VNI known from another source is counted apart.
 */
#include <rte_hash_crc.h>
#include <rte_prefetch.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "wf_internal.h"

/*
 * The outer UDP source port's entropy (RFC 7348 5): one flow keeps one port,
 * flows spread over ECMP/RSS. IPv4: the inner MACs, addresses, protocol and
 * (unfragmented) L4 ports, nothing that changes from frame to frame within a
 * flow (not the length, ID or checksum). Others: the Ethernet header and the
 * 16 bytes after it.
 */
static inline uint32_t
wf_inner_flow_hash(const struct rte_mbuf *m)
{
	const uint8_t *in = rte_pktmbuf_mtod(m, const uint8_t *);
	const uint32_t len = rte_pktmbuf_data_len(m);
	uint64_t w;
	uint32_t v;
	if (likely(len >= 38 && in[12] == 0x08 && in[13] == 0x00 && in[14] == 0x45)) {
		memcpy(&w, in, 8);
		uint32_t h = rte_hash_crc_8byte(w, 0x5eed);
		memcpy(&v, in + 8, 4);
		h = rte_hash_crc_4byte(v, h);
		memcpy(&w, in + 26, 8); /* source and destination addresses */
		h = rte_hash_crc_8byte(w, h);
		bool unfragmented = ((in[20] & 0x3f) | in[21]) == 0;
		memcpy(&v, in + 34, 4); /* L4 ports */
		return rte_hash_crc_4byte(unfragmented ? v ^ in[23] : in[23], h);
	}
	return rte_hash_crc(in, len < 30 ? len : 30, 0x5eed);
}

int
wf_vxlan_encap(struct wf_worker *w, const struct wf_table *t, uint32_t tun, struct rte_mbuf *m,
	       enum wf_drop_reason *why)
{
	const struct wf_vxtpl *x = wf_vxtpl_of(t, tun);
	const uint32_t inner = rte_pktmbuf_pkt_len(m);
	if (unlikely(inner > x->max_inner)) {
		*why = WF_DROP_MTU_EXCEEDED;
		return -1;
	}
	uint64_t mac = __atomic_load_n(&w->dp->nbr_mac[x->nbr], __ATOMIC_RELAXED);
	if (unlikely(mac == 0)) {
		*why = WF_DROP_NEIGHBOUR_UNRESOLVED;
		return -1;
	}
	if (unlikely(rte_pktmbuf_headroom(m) < x->len || !RTE_MBUF_DIRECT(m) ||
		     rte_mbuf_refcnt_read(m) != 1 || rte_pktmbuf_data_len(m) < 14)) {
		*why = WF_DROP_NO_HEADROOM;
		return -1;
	}
	uint16_t sport = (uint16_t)(49152 + (wf_inner_flow_hash(m) % 16384));

	uint8_t *o = (uint8_t *)rte_pktmbuf_prepend(m, x->len);
	/* Fixed sizes: the copies are a few vector moves, not a call. */
	if (!x->is_v6)
		memcpy(o, x->hdr, 50);
	else
		memcpy(o, x->hdr, 70);
	/* The neighbour's MAC, kept as bytes 0..5 of a little-endian word. */
	const uint64_t mac_le = rte_cpu_to_le_64(mac);
	memcpy(o, &mac_le, 4);
	memcpy(o + 4, (const uint8_t *)&mac_le + 4, 2);
	if (!x->is_v6) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(o + 14);
		struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
		ip->total_length = rte_cpu_to_be_16((uint16_t)(inner + 36));
		ip->hdr_checksum = 0;
		if (x->ip4_cksum_offload) {
			m->ol_flags = (m->ol_flags & ~RTE_MBUF_F_TX_OFFLOAD_MASK) | RTE_MBUF_F_TX_IPV4 |
				      RTE_MBUF_F_TX_IP_CKSUM;
			m->l2_len = 14;
			m->l3_len = sizeof(*ip);
		} else {
			/* The template's sum plus the one field that changes (RFC 1624). */
			uint32_t sum = x->ip4_sum + ip->total_length;
			sum = (sum & 0xffff) + (sum >> 16);
			sum = (sum & 0xffff) + (sum >> 16);
			ip->hdr_checksum = (uint16_t)~sum;
		}
		udp->src_port = rte_cpu_to_be_16(sport);
		udp->dgram_len = rte_cpu_to_be_16((uint16_t)(inner + 16));
		udp->dgram_cksum = 0; /* optional over IPv4 (RFC 7348 5) */
	} else {
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(o + 14);
		struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
		ip->payload_len = rte_cpu_to_be_16((uint16_t)(inner + 16));
		udp->src_port = rte_cpu_to_be_16(sport);
		udp->dgram_len = ip->payload_len;
		udp->dgram_cksum = 0;
		/* Mandatory over IPv6 for receivers that do not accept zero (Linux default). */
		/* Not rte_ipv6_udptcp_cksum_mbuf(): its chain sum is wrong after an
		 * odd-length segment (wf_raw_cksum_mbuf, offload.c). */
		uint16_t raw = 0;
		wf_raw_cksum_mbuf(m, 14 + sizeof(*ip), inner + 16, &raw);
		uint32_t sum = (uint32_t)raw + rte_ipv6_phdr_cksum(ip, 0);
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		uint16_t ck = (uint16_t)~sum;
		udp->dgram_cksum = ck == 0 ? 0xffff : ck;
	}
	return 0;
}

/*
 * Prefetch the decap slot an underlay VXLAN frame will look up: with many
 * tunnels the table is far bigger than the caches, and a burst's lookups
 * overlap instead of waiting one after another. Only the checks needed to
 * build the key; wf_vxlan_decap does the real ones.
 */
void
wf_vxlan_prefetch(const struct wf_table *t, const struct wf_underlay *ul, const struct rte_mbuf *m)
{
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	const uint32_t len = rte_pktmbuf_data_len(m);
	struct wf_vxkey k;
	uint32_t l4off;
	memset(&k, 0, sizeof(k));
	if (len >= 14 + 20 + 16 && p[12] == 0x08 && p[13] == 0x00 && ul->cfg.has_ip4) {
		if (memcmp(p + 14 + 16, ul->cfg.ip4, 4) != 0 || p[14 + 9] != IPPROTO_UDP)
			return;
		l4off = 14 + (p[14] & 0xf) * 4u;
		memcpy(k.src, p + 14 + 12, 4);
	} else if (len >= 14 + 40 + 16 && p[12] == 0x86 && p[13] == 0xdd && ul->cfg.has_ip6) {
		if (memcmp(p + 14 + 24, ul->cfg.ip6, 16) != 0 || p[14 + 6] != IPPROTO_UDP)
			return;
		l4off = 14 + 40;
		k.is_v6 = 1;
		memcpy(k.src, p + 14 + 8, 16);
	} else {
		return;
	}
	if (len < l4off + 16)
		return;
	k.port = (uint16_t)(p[l4off + 2] << 8 | p[l4off + 3]);
	k.vni = (uint32_t)p[l4off + 12] << 16 | (uint32_t)p[l4off + 13] << 8 | p[l4off + 14];
	const struct wf_vxdec *d = wf_dec_at(t->dec, wf_vx_hash(&k) & t->dec_mask);
	rte_prefetch0(d);
	rte_prefetch0((const uint8_t *)(d + 1) - 1);
}

/* The 24-byte key as three words: no call into memcmp per lookup. */
static inline bool
wf_vxkey_eq(const struct wf_vxkey *a, const struct wf_vxkey *b)
{
	uint64_t x[3], y[3];
	memcpy(x, a, sizeof(x));
	memcpy(y, b, sizeof(y));
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2])) == 0;
}

const struct wf_vxdec *
wf_vxdec_find(struct wf_vxdec *const *tab, uint32_t mask, const struct wf_vxkey *k)
{
	if (tab == NULL)
		return NULL;
	for (uint32_t i = wf_vx_hash(k) & mask;; i = (i + 1) & mask) {
		const struct wf_vxdec *d = wf_dec_at(tab, i);
		if (!d->used)
			return NULL;
		if (wf_vxkey_eq(&d->key, k))
			return d;
	}
}

/*
 * An IPv4/IPv6 packet addressed to the uplink (l3off: its offset). Returns
 * where the decapsulated frame goes (the mbuf now starts at the inner
 * frame), or NULL with *why set; *why = NOT_FOR_TUNNEL means "not VXLAN".
 */
const struct wf_fwd *
wf_vxlan_decap(const struct wf_table *t, const struct wf_underlay *ul, struct rte_mbuf *m,
	       uint32_t l3off, bool is_v6, enum wf_drop_reason *why)
{
	/* Lengths against the whole frame (a jumbo frame is an mbuf chain); the
	 * headers themselves must be in the first segment. */
	const uint32_t len = rte_pktmbuf_pkt_len(m), head = rte_pktmbuf_data_len(m);
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
	struct wf_vxkey k;
	memset(&k, 0, sizeof(k));
	uint32_t l4off;
	*why = WF_DROP_NOT_FOR_TUNNEL;
	if (!is_v6) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(p + l3off);
		uint32_t ihl = (ip->version_ihl & 0xf) * 4u;
		if (ip->next_proto_id != IPPROTO_UDP || ihl < 20)
			return NULL;
		if (rte_be_to_cpu_16(ip->fragment_offset) & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
			return NULL; /* VXLAN is never fragmented here */
		l4off = l3off + ihl;
		if (len < l4off + 8 || rte_be_to_cpu_16(ip->total_length) > len - l3off) {
			*why = WF_DROP_VXLAN_TRUNCATED;
			return NULL;
		}
		memcpy(k.src, &ip->src_addr, 4);
	} else {
		const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(p + l3off);
		if (ip->proto != IPPROTO_UDP)
			return NULL;
		l4off = l3off + sizeof(*ip);
		if (len < l4off + 8 || rte_be_to_cpu_16(ip->payload_len) > len - l4off) {
			*why = WF_DROP_VXLAN_TRUNCATED;
			return NULL;
		}
		k.is_v6 = 1;
		memcpy(k.src, ip->src_addr, 16);
	}
	/*
	 * The UDP header must be in the first segment before its ports are read:
	 * the lengths above are the whole chain's. Found by fuzz/fuzz_uplink
	 * (regression fuzz/regressions/uplink/vxlan-udp-past-first-segment): a
	 * chain whose first segment ends inside the IP header, as a memif peer's
	 * descriptors can make it, had its UDP ports read from past that
	 * segment's end.
	 */
	if (head < l4off + 8) {
		*why = WF_DROP_VXLAN_TRUNCATED;
		return NULL;
	}
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)(p + l4off);
	k.port = rte_be_to_cpu_16(udp->dst_port);
	bool vx = false;
	for (uint16_t i = 0; i < ul->cfg.n_vxlan_ports; i++)
		vx |= ul->cfg.vxlan_ports[i] == k.port;
	if (!vx)
		return NULL;
	/* UDP length must hold VXLAN + an inner Ethernet header, within the frame. */
	uint32_t ulen = rte_be_to_cpu_16(udp->dgram_len);
	if (ulen < 8 + 8 + 14 || l4off + ulen > len || head < l4off + 8 + 8 + 14) {
		*why = WF_DROP_VXLAN_TRUNCATED;
		return NULL;
	}
	const uint8_t *vh = p + l4off + 8;
	if (!(vh[0] & 0x08)) {
		*why = WF_DROP_VXLAN_BAD_FLAGS;
		return NULL;
	}
	k.vni = (uint32_t)vh[4] << 16 | (uint32_t)vh[5] << 8 | vh[6];
	const struct wf_vxdec *d = wf_vxdec_find(t->dec, t->dec_mask, &k);
	if (d == NULL) {
		memset(k.src, 0xff, sizeof(k.src));
		*why = wf_vxdec_find(t->mark, t->mark_mask, &k) ? WF_DROP_VXLAN_UNKNOWN_SOURCE
								 : WF_DROP_VXLAN_UNKNOWN_VNI;
		return NULL;
	}
	if (d->f.out_port == WF_PORT_NONE) {
		*why = WF_DROP_NO_PEER;
		return NULL;
	}
	/* Trim any Ethernet padding after the UDP datagram, then strip the outer headers. */
	uint32_t end = l4off + ulen;
	if (len > end && rte_pktmbuf_trim(m, (uint16_t)(len - end)) != 0) {
		*why = WF_DROP_VXLAN_TRUNCATED; /* padding spread over segments: never built by a sender */
		return NULL;
	}
	rte_pktmbuf_adj(m, (uint16_t)(l4off + 16));
	if (unlikely(m->ol_flags & WF_OL_PENDING))
		wf_ol_front_removed(m, l4off + 16, false);
	return &d->f;
}
