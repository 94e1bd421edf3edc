/*
 * offload.c: what the kernel left unfinished, finished in software.
 *
 * A kernel interface hands over frames whose TCP/UDP checksum is only partial
 * (the veth peer offered TX checksum offload) and TCP/UDP super-frames up to
 * 64 KiB (TSO/GSO), described by the virtio-net header AF_PACKET gives with
 * PACKET_VNET_HDR. They travel through Weft with the metadata DPDK uses for
 * TX offloads (RTE_MBUF_F_TX_TCP_CKSUM / _UDP_CKSUM with the pseudo-header
 * sum already in the checksum field; RTE_MBUF_F_TX_TCP_SEG / _UDP_SEG with
 * tso_segsz; l2_len + l3_len = where the L4 header starts). An egress port
 * that takes them (AF_PACKET with a virtio-net header) gets them as they are;
 * for every other port, and before a frame is encapsulated or replicated,
 * this file completes the checksum (RFC 1071) or cuts the super-frame into
 * frames of at most tso_segsz payload bytes, each complete, as the kernel's
 * own GSO would have. Frames of any length: mbuf chains are read and built.
 */
#include <rte_ip.h>
#include <rte_memcpy.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "wf_internal.h"

/* Where the L4 checksum field is, from the offload flags. */
static inline uint32_t
wf_l4_cksum_off(uint64_t ol)
{
	return (ol & RTE_MBUF_F_TX_L4_MASK) == RTE_MBUF_F_TX_UDP_CKSUM ? 6 : 16;
}

/* Bytes [off, off + len) of a chain as a pointer into its segment, when contiguous there. */
static inline uint8_t *
wf_mbuf_ptr(struct rte_mbuf *m, uint32_t off, uint32_t len)
{
	while (m != NULL && off >= m->data_len) {
		off -= m->data_len;
		m = m->next;
	}
	if (m == NULL || off + len > m->data_len)
		return NULL;
	return rte_pktmbuf_mtod_offset(m, uint8_t *, off);
}

void
wf_ol_front_removed(struct rte_mbuf *m, uint32_t removed, bool tag)
{
	const uint32_t start = (uint32_t)m->l2_len + m->l3_len;
	if (start < removed + RTE_ETHER_HDR_LEN) {
		/* The partial checksum was in what went (an outer UDP header): nothing left to do. */
		m->ol_flags &= ~WF_OL_PENDING;
		return;
	}
	if (tag) {
		m->l2_len = (uint8_t)(m->l2_len - removed); /* a VLAN tag out of the L2 header */
		return;
	}
	/* Decapsulated: the L4 header is where it was, less the outer headers, after an inner Ethernet header. */
	m->l2_len = RTE_ETHER_HDR_LEN;
	m->l3_len = (uint16_t)(start - removed - RTE_ETHER_HDR_LEN);
}

/*
 * The one's-complement sum of bytes [off, off + len) of a chain, as DPDK's
 * rte_raw_cksum_mbuf() means it. That one (DPDK 22.11, rte_ip.h) casts a
 * segment's 32-bit partial sum to 16 bits before byte-swapping it when the
 * bytes before it were odd in number, dropping its carries: a chain with an
 * odd-length segment (a memif peer's descriptors can make one) got a wrong
 * checksum. Found by fuzz/fuzz_p2p (regression fuzz/regressions/p2p/
 * odd-segment-csum: a 3-byte second segment after a 19-byte first, VXLAN
 * over IPv6). Here each segment's sum is folded before the swap. Can go
 * when the DPDK Weft builds on folds it itself.
 */
int
wf_raw_cksum_mbuf(const struct rte_mbuf *m, uint32_t off, uint32_t len, uint16_t *cksum)
{
	if ((uint64_t)off + len > rte_pktmbuf_pkt_len(m))
		return -1;
	if (len == 0) {
		*cksum = 0;
		return 0;
	}
	while (m != NULL && off >= m->data_len) {
		off -= m->data_len;
		m = m->next;
	}
	uint64_t sum = 0;
	uint32_t done = 0;
	for (; done < len && m != NULL; m = m->next, off = 0) {
		uint32_t k = m->data_len - off < len - done ? m->data_len - off : len - done;
		uint16_t part = __rte_raw_cksum_reduce(__rte_raw_cksum(rte_pktmbuf_mtod_offset(m, const void *, off), k, 0));
		sum += done & 1 ? rte_bswap16(part) : part;
		done += k;
	}
	if (done != len)
		return -1;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	*cksum = (uint16_t)sum;
	return 0;
}

int
wf_csum_at(struct rte_mbuf *m, uint32_t start, uint32_t off, bool udp)
{
	const uint32_t len = rte_pktmbuf_pkt_len(m);
	/* Bytes, not a uint16_t: the kernel's csum_start may be odd (UBSan, fuzz_p2p:
	 * fuzz/regressions/p2p/odd-csum-start). */
	uint8_t *field = wf_mbuf_ptr(m, start + off, 2);
	if (start >= len || field == NULL)
		return -1;
	/* The field holds the pseudo-header sum: summing over it includes it. */
	uint16_t sum = 0;
	if (wf_raw_cksum_mbuf(m, start, len - start, &sum) != 0)
		return -1;
	uint16_t ck = (uint16_t)~sum;
	if (ck == 0 && udp)
		ck = 0xffff; /* UDP: zero means "no checksum" */
	memcpy(field, &ck, sizeof(ck));
	return 0;
}

int
wf_csum_finish(struct rte_mbuf *m)
{
	const bool udp = (m->ol_flags & RTE_MBUF_F_TX_L4_MASK) == RTE_MBUF_F_TX_UDP_CKSUM;
	if (wf_csum_at(m, m->l2_len + m->l3_len, wf_l4_cksum_off(m->ol_flags), udp) != 0)
		return -1;
	m->ol_flags &= ~RTE_MBUF_F_TX_L4_MASK;
	return 0;
}

int
wf_mbuf_put(struct rte_mbuf *m, struct rte_mempool *pool, const void *data, uint32_t len)
{
	struct rte_mbuf *tail = rte_pktmbuf_lastseg(m);
	const uint8_t *src = data;
	while (len > 0) {
		uint32_t room = rte_pktmbuf_tailroom(tail);
		if (room == 0) {
			struct rte_mbuf *n = rte_pktmbuf_alloc(pool);
			if (n == NULL)
				return -1;
			if (rte_pktmbuf_chain(m, n) != 0) {
				rte_pktmbuf_free(n);
				return -1;
			}
			tail = n;
			room = rte_pktmbuf_tailroom(tail);
		}
		uint32_t k = len < room ? len : room;
		rte_memcpy(rte_pktmbuf_mtod_offset(tail, uint8_t *, tail->data_len), src, k);
		tail->data_len = (uint16_t)(tail->data_len + k);
		if (tail != m)
			m->pkt_len += k;
		else
			m->pkt_len = m->data_len;
		src += k;
		len -= k;
	}
	return 0;
}

/* Append `len` bytes of `src` from `off` to the chain `dst`, adding segments as needed. */
static int
wf_chain_append(struct rte_mbuf *dst, struct rte_mempool *pool, const struct rte_mbuf *src, uint32_t off,
		uint32_t len)
{
	struct rte_mbuf *tail = rte_pktmbuf_lastseg(dst);
	while (len > 0) {
		uint32_t room = rte_pktmbuf_tailroom(tail);
		if (room == 0) {
			struct rte_mbuf *n = rte_pktmbuf_alloc(pool);
			if (n == NULL)
				return -1;
			if (rte_pktmbuf_chain(dst, n) != 0) {
				rte_pktmbuf_free(n);
				return -1;
			}
			tail = n;
			room = rte_pktmbuf_tailroom(tail);
		}
		uint32_t k = len < room ? len : room;
		uint8_t *d = rte_pktmbuf_mtod_offset(tail, uint8_t *, tail->data_len);
		/* Copies into d when the bytes span segments; else points into src. */
		const void *s = rte_pktmbuf_read(src, off, k, d);
		if (s == NULL)
			return -1;
		if (s != d)
			memcpy(d, s, k);
		tail->data_len = (uint16_t)(tail->data_len + k);
		dst->pkt_len += k;
		off += k;
		len -= k;
	}
	return 0;
}

/*
 * One segment of a super-frame: the headers, then payload bytes
 * [pos, pos + seg) after them, with lengths, IPv4 id and checksum, TCP
 * sequence and flags fixed, and the L4 checksum completed.
 */
static struct rte_mbuf *
wf_gso_one(const struct rte_mbuf *m, struct rte_mempool *pool, uint32_t hdr, uint32_t pos, uint32_t seg,
	   uint32_t index, bool last)
{
	struct rte_mbuf *s = rte_pktmbuf_alloc(pool);
	if (s == NULL)
		return NULL;
	if (wf_chain_append(s, pool, m, 0, hdr) != 0 || wf_chain_append(s, pool, m, hdr + pos, seg) != 0 ||
	    s->data_len < hdr) {
		rte_pktmbuf_free(s);
		return NULL;
	}
	uint8_t *p = rte_pktmbuf_mtod(s, uint8_t *);
	const uint32_t l3 = m->l2_len, l4 = m->l2_len + m->l3_len;
	const bool tcp = (m->ol_flags & RTE_MBUF_F_TX_TCP_SEG) != 0;
	if (m->ol_flags & RTE_MBUF_F_TX_IPV4) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(p + l3);
		ip->total_length = rte_cpu_to_be_16((uint16_t)(s->pkt_len - l3));
		/* The kernel's GSO: consecutive IP ids (DF or not). */
		ip->packet_id = rte_cpu_to_be_16((uint16_t)(rte_be_to_cpu_16(ip->packet_id) + index));
		ip->hdr_checksum = 0;
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	} else {
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(p + l3);
		ip->payload_len = rte_cpu_to_be_16((uint16_t)(s->pkt_len - l3 - sizeof(*ip)));
	}
	if (tcp) {
		struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(p + l4);
		th->sent_seq = rte_cpu_to_be_32(rte_be_to_cpu_32(th->sent_seq) + pos);
		if (index > 0)
			th->tcp_flags &= (uint8_t)~RTE_TCP_CWR_FLAG; /* congestion window reduced: once */
		if (!last)
			th->tcp_flags &= (uint8_t)~(RTE_TCP_FIN_FLAG | RTE_TCP_PSH_FLAG);
	} else {
		struct rte_udp_hdr *uh = (struct rte_udp_hdr *)(p + l4);
		uh->dgram_len = rte_cpu_to_be_16((uint16_t)(s->pkt_len - l4));
	}
	/* The L4 checksum from scratch: pseudo-header with this segment's length. */
	uint8_t *field = p + l4 + (tcp ? 16 : 6); /* may be unaligned: bytes */
	memset(field, 0, 2);
	uint32_t l4len = s->pkt_len - l4;
	uint32_t sum;
	if (m->ol_flags & RTE_MBUF_F_TX_IPV4) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(p + l3);
		struct { uint32_t s, d; uint8_t z, proto; uint16_t len; } __rte_packed ph = {
			ip->src_addr, ip->dst_addr, 0, ip->next_proto_id, rte_cpu_to_be_16((uint16_t)l4len) };
		sum = rte_raw_cksum(&ph, sizeof(ph));
	} else {
		const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(p + l3);
		struct { uint8_t s[16], d[16]; uint32_t len; uint8_t z[3], proto; } __rte_packed ph;
		memcpy(ph.s, ip->src_addr, 16);
		memcpy(ph.d, ip->dst_addr, 16);
		ph.len = rte_cpu_to_be_32(l4len);
		memset(ph.z, 0, 3);
		ph.proto = tcp ? IPPROTO_TCP : IPPROTO_UDP;
		sum = rte_raw_cksum(&ph, sizeof(ph));
	}
	uint16_t body = 0;
	wf_raw_cksum_mbuf(s, l4, l4len, &body);
	sum += body;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	uint16_t ck = (uint16_t)~sum;
	if (!tcp && ck == 0)
		ck = 0xffff;
	memcpy(field, &ck, sizeof(ck));
	s->ol_flags = 0;
	return s;
}

/* How many frames a super-frame becomes; -1 when its metadata does not fit it. */
int
wf_gso_count(const struct rte_mbuf *m)
{
	const uint32_t hdr = (uint32_t)m->l2_len + m->l3_len + m->l4_len;
	const uint32_t len = rte_pktmbuf_pkt_len(m);
	const uint32_t seg = m->tso_segsz;
	if (seg == 0 || hdr >= len || m->data_len < hdr || m->l4_len == 0 ||
	    !(m->ol_flags & (RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IPV6)))
		return -1;
	/*
	 * The IP header must be the one the metadata places: each segment's IPv4
	 * checksum covers the header's own IHL and its lengths are written at
	 * l2_len. Found by fuzz/fuzz_p2p (regression fuzz/regressions/p2p/
	 * gso-ihl-mismatch): a TSO frame with IHL 0 after a 20-byte l3_len left
	 * as segments with a checksum over 0 bytes (IHL 15: over 40 bytes past
	 * the headers, beyond a short segment's end); and one with l3_len and
	 * IHL both 0 (fuzz/regressions/p2p/gso-l3-zero), its "IP header" the
	 * UDP header.
	 */
	const uint8_t *ip = rte_pktmbuf_mtod_offset(m, const uint8_t *, m->l2_len);
	if (m->ol_flags & RTE_MBUF_F_TX_IPV4 ? m->l3_len < 20 || (ip[0] & 0xf) * 4u != m->l3_len
					      : m->l3_len < 40)
		return -1;
	return (int)((len - hdr + seg - 1) / seg);
}

/* Segments [first, first + cap) of a super-frame (wf_gso_count() in all);
 * returns how many were built, 0 when the pool is empty. */
int
wf_gso_range(const struct rte_mbuf *m, struct rte_mempool *pool, uint32_t first, uint16_t cap,
	     struct rte_mbuf **out)
{
	const uint32_t hdr = (uint32_t)m->l2_len + m->l3_len + m->l4_len;
	const uint32_t payload = rte_pktmbuf_pkt_len(m) - hdr;
	const uint32_t seg = m->tso_segsz;
	const uint32_t n = (payload + seg - 1) / seg;
	uint16_t k = 0;
	for (uint32_t i = first; i < n && k < cap; i++) {
		uint32_t pos = i * seg;
		uint32_t len = payload - pos < seg ? payload - pos : seg;
		out[k] = wf_gso_one(m, pool, hdr, pos, len, i, i == n - 1);
		if (out[k] == NULL)
			break;
		k++;
	}
	return k;
}
