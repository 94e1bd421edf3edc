/*
 * vxlan_node.c: per-packet VXLAN (RFC 7348). Encap copies the tunnel's
 * template in front of the inner frame and fills lengths, the UDP source
 * port (a hash of the inner flow), the IPv4 header checksum and the IPv6 UDP
 * checksum. Decap checks lengths and the I flag, then looks the packet up by
 * (family, UDP port, VNI, outer source): the source check is the
 * anti-spoofing rule, a VNI known from another source is counted apart.
 */
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "wf_internal.h"

int
wf_vxlan_encap(struct wf_worker *w, const struct wf_table *t, uint32_t tun, struct rte_mbuf *m,
	       enum wf_drop_reason *why)
{
	const struct wf_vxtpl *x = &t->vx[tun];
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
	/* Source port from the inner MACs, type and first 16 bytes of payload:
	 * one flow keeps one port, flows spread over ECMP/RSS (RFC 7348 5). */
	const uint8_t *in = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t n = rte_pktmbuf_data_len(m) < 30 ? rte_pktmbuf_data_len(m) : 30;
	uint32_t h = rte_hash_crc(in, n, 0x5eed);
	uint16_t sport = (uint16_t)(49152 + (h % 16384));

	uint8_t *o = (uint8_t *)rte_pktmbuf_prepend(m, x->len);
	memcpy(o, x->hdr, x->len);
	for (int i = 0; i < 6; i++)
		o[i] = (uint8_t)(mac >> (8 * i));
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
			ip->hdr_checksum = rte_ipv4_cksum(ip);
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
		uint16_t ck = rte_ipv6_udptcp_cksum_mbuf(m, ip, 14 + sizeof(*ip));
		udp->dgram_cksum = ck == 0 ? 0xffff : ck;
	}
	return 0;
}

const struct wf_vxdec *
wf_vxdec_find(const struct wf_table *t, const struct wf_vxkey *k)
{
	if (t->dec == NULL)
		return NULL;
	for (uint32_t i = wf_vx_hash(k) & t->dec_mask;; i = (i + 1) & t->dec_mask) {
		const struct wf_vxdec *d = &t->dec[i];
		if (!d->used)
			return NULL;
		if (memcmp(&d->key, k, sizeof(*k)) == 0)
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
	const uint32_t len = rte_pktmbuf_data_len(m);
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
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)(p + l4off);
	k.port = rte_be_to_cpu_16(udp->dst_port);
	bool vx = false;
	for (uint16_t i = 0; i < ul->cfg.n_vxlan_ports; i++)
		vx |= ul->cfg.vxlan_ports[i] == k.port;
	if (!vx)
		return NULL;
	/* UDP length must hold VXLAN + an inner Ethernet header, within the frame. */
	uint32_t ulen = rte_be_to_cpu_16(udp->dgram_len);
	if (ulen < 8 + 8 + 14 || l4off + ulen > len) {
		*why = WF_DROP_VXLAN_TRUNCATED;
		return NULL;
	}
	const uint8_t *vh = p + l4off + 8;
	if (!(vh[0] & 0x08)) {
		*why = WF_DROP_VXLAN_BAD_FLAGS;
		return NULL;
	}
	k.vni = (uint32_t)vh[4] << 16 | (uint32_t)vh[5] << 8 | vh[6];
	const struct wf_vxdec *d = wf_vxdec_find(t, &k);
	if (d == NULL) {
		memset(k.src, 0xff, sizeof(k.src));
		*why = wf_vxdec_find(t, &k) ? WF_DROP_VXLAN_UNKNOWN_SOURCE : WF_DROP_VXLAN_UNKNOWN_VNI;
		return NULL;
	}
	if (d->f.out_port == WF_PORT_NONE) {
		*why = WF_DROP_NO_PEER;
		return NULL;
	}
	/* Trim any Ethernet padding after the UDP datagram, then strip the outer headers. */
	uint32_t end = l4off + ulen;
	if (rte_pktmbuf_pkt_len(m) > end)
		rte_pktmbuf_trim(m, (uint16_t)(rte_pktmbuf_pkt_len(m) - end));
	rte_pktmbuf_adj(m, (uint16_t)(l4off + 16));
	return &d->f;
}
