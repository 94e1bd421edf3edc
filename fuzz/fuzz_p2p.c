/*
 * fuzz_p2p: frames through cross-connects, with the offload metadata a
 * kernel interface hands over. The metadata comes from the input as the
 * virtio-net header AF_PACKET reads, and goes through the AF_PACKET
 * driver's own parser (wf_vnet_rx, static in ports/afpacket.c, which this
 * file includes), so partial checksums and GSO super-frames reach egress
 * exactly as that driver would pass them: checksum completion and
 * segmentation (offload.c) before a port that cannot take them, before
 * VLAN push and VXLAN encap, and after VLAN pop and VXLAN decap.
 *
 *   a <-> b   (b: a 1518-byte largest frame)
 *   g <-> k   (k: takes partial checksums and GSO, like an AF_PACKET port)
 *   c <-> VLAN 100 on u, d <-> VXLAN 100 (10.0.0.2) on u, e <-> VXLAN 200 (fd00::2) on u
 *
 * Input: frames as common.h reads them. Control byte: bits 0-2 the ingress
 * port (a b g k c d e u); bit 6: the frame holds a VLAN tag the kernel had
 * taken off (virtio offsets 4 bytes short); bit 7: a 10-byte virtio-net
 * header precedes the frame.
 */
#include "common.h"

#include "ports/afpacket.c"

static const uint8_t PEER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x02 };
static uint16_t pa, pb, pg, pk, pc, pd, pe, pu;

/* Plain frames between a and b: what leaves must be what came in. */
struct fz_expect {
	uint32_t n, next;
	const uint8_t *d[FZ_MAX_FRAMES];
	uint32_t len[FZ_MAX_FRAMES];
};
static struct fz_expect fz_exp[FZ_MAX_PORTS];

/*
 * A lone super-frame between plain ports: each frame that leaves is one of
 * its segments, complete. Checked here with this file's own sums: lengths,
 * the IPv4 header checksum, the TCP/UDP checksum over the pseudo-header.
 */
static struct {
	bool on;
	uint32_t port; /* harness index of the egress */
	uint32_t l3, l4, hdr, segsz;
	bool v4, tcp;
} fz_sg;

static uint32_t
fz_sum(const uint8_t *p, uint32_t n, uint32_t s)
{
	for (uint32_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

static void
fz_segment_check(const uint8_t *p, uint32_t len)
{
	FZ_CHECK(len > fz_sg.hdr && len - fz_sg.hdr <= fz_sg.segsz, "segment of %u bytes (headers %u, gso %u)",
		 len, fz_sg.hdr, fz_sg.segsz);
	const uint32_t l4len = len - fz_sg.l4;
	uint32_t s;
	if (fz_sg.v4) {
		const uint8_t *ip = p + fz_sg.l3;
		FZ_CHECK((uint32_t)(ip[2] << 8 | ip[3]) == len - fz_sg.l3, "segment: IPv4 total length wrong");
		FZ_CHECK(fz_sum(ip, (ip[0] & 0xf) * 4u, 0) == 0xffff, "segment: IPv4 header checksum wrong");
		s = fz_sum(ip + 12, 8, ip[9] + l4len);
	} else {
		const uint8_t *ip = p + fz_sg.l3;
		FZ_CHECK((uint32_t)(ip[4] << 8 | ip[5]) == len - fz_sg.l3 - 40, "segment: IPv6 payload length wrong");
		s = fz_sum(ip + 8, 32, (fz_sg.tcp ? 6u : 17u) + l4len);
	}
	if (!fz_sg.tcp)
		FZ_CHECK((uint32_t)(p[fz_sg.l4 + 4] << 8 | p[fz_sg.l4 + 5]) == l4len, "segment: UDP length wrong");
	FZ_CHECK(fz_sum(p + fz_sg.l4, l4len, s) == 0xffff, "segment: %s checksum wrong", fz_sg.tcp ? "TCP" : "UDP");
}

static void
p2p_on_tx(uint32_t i, const struct rte_mbuf *m)
{
	static uint8_t buf[1 << 17];
	const uint8_t *p = rte_pktmbuf_read(m, 0, m->pkt_len, buf);
	if (fz_sg.on && i == fz_sg.port)
		fz_segment_check(p, m->pkt_len);
	struct fz_expect *e = &fz_exp[i];
	if (e->n != 0) {
		FZ_CHECK(e->next < e->n, "%s sent more frames than it was given", fz_name[i]);
		uint32_t k = e->next++;
		FZ_CHECK(m->pkt_len == e->len[k] && memcmp(p, e->d[k], e->len[k]) == 0,
			 "%s sent frame %u changed (%u bytes, %u in)", fz_name[i], k, m->pkt_len, e->len[k]);
	}
	if (fz_port[i] != pu || m->pkt_len < 14 + 40 + 8)
		return;
	/* What VXLAN encap built: lengths and checksums right, over chains too. */
	if (p[12] == 0x08 && p[13] == 0x00 && p[14 + 9] == 17 && p[36] == 0x12 && p[37] == 0xb5) {
		const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(p + 14);
		FZ_CHECK(rte_raw_cksum(ip, 20) == 0xffff, "VXLAN outer IPv4 header checksum wrong");
		FZ_CHECK(rte_be_to_cpu_16(ip->total_length) == m->pkt_len - 14, "VXLAN outer IPv4 length wrong");
		FZ_CHECK((uint32_t)(p[38] << 8 | p[39]) == m->pkt_len - 34, "VXLAN outer UDP length wrong");
	} else if (p[12] == 0x86 && p[13] == 0xdd && p[14 + 6] == 17 && p[56] == 0x21 && p[57] == 0x18) {
		const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(p + 14);
		FZ_CHECK(rte_be_to_cpu_16(ip->payload_len) == m->pkt_len - 54, "VXLAN outer IPv6 length wrong");
		FZ_CHECK(rte_ipv6_udptcp_cksum_verify(ip, p + 54) == 0, "VXLAN outer UDP checksum wrong");
	}
}

static uint32_t
fz_vxlan(uint16_t up, uint8_t v6, uint32_t vni, const uint8_t *remote, uint16_t port)
{
	struct wf_vxlan_cfg c;
	memset(&c, 0, sizeof(c));
	c.uplink = up;
	c.is_v6 = v6;
	c.vni = vni;
	memcpy(c.remote, remote, v6 ? 16 : 4);
	c.dst_port = port;
	c.local_port = port;
	uint32_t side;
	FZ_OK(wf_vxlan_add(fz_dp, &c, &side));
	return side;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_eal("fuzz_p2p");
	pa = fz_add_port("a"), pb = fz_add_port("b"), pg = fz_add_port("g"), pk = fz_add_port("k");
	pc = fz_add_port("c"), pd = fz_add_port("d"), pe = fz_add_port("e"), pu = fz_add_port("u");
	uint32_t side, slot;
	FZ_OK(wf_xc_add(fz_dp, pa, pb, &slot));
	FZ_OK(wf_xc_add(fz_dp, pg, pk, &slot));
	/* What the AF_PACKET driver sets for its ports (afpacket.c), on ring ports. */
	fz_dp->fp[pb].max_frame = 1500 + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN;
	fz_dp->fp[pk].max_frame = 1500 + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN;
	fz_dp->fp[pk].caps = WF_CAP_L4_CSUM | WF_CAP_GSO;

	struct wf_underlay_cfg u;
	memset(&u, 0, sizeof(u));
	u.has_ip4 = u.has_ip6 = 1;
	u.prefix4 = 24, u.prefix6 = 64;
	memcpy(u.ip4, (uint8_t[]){ 10, 0, 0, 1 }, 4);
	memcpy(u.ip6, (uint8_t[]){ 0xfd, 0, [15] = 1 }, 16);
	u.mtu = 1500;
	u.n_vxlan_ports = 2;
	u.vxlan_ports[0] = 4789, u.vxlan_ports[1] = 8472;
	FZ_OK(wf_underlay_set(fz_dp, pu, &u));
	const uint8_t p4[4] = { 10, 0, 0, 2 }, p6[16] = { 0xfd, 0, [15] = 2 };
	FZ_OK(wf_neighbour_static(fz_dp, pu, 0, p4, PEER_MAC));
	FZ_OK(wf_neighbour_static(fz_dp, pu, 1, p6, PEER_MAC));
	FZ_OK(wf_vlan_add(fz_dp, pu, 100, &side));
	FZ_OK(wf_xc_add(fz_dp, pc, side, &slot));
	FZ_OK(wf_xc_add(fz_dp, pd, fz_vxlan(pu, 0, 100, p4, 4789), &slot));
	FZ_OK(wf_xc_add(fz_dp, pe, fz_vxlan(pu, 1, 200, p6, 8472), &slot));

	fz_on_tx = p2p_on_tx;
	uint32_t punted;
	fz_underlay(&punted);
	fz_drain(NULL);
	fz_pools_baseline();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in_frame f[FZ_MAX_FRAMES];
	uint32_t n = fz_parse(data, size, f, FZ_MAX_FRAMES, sizeof(struct virtio_net_hdr));
	struct fz_snap a, b;
	bool any_meta = false;
	for (uint32_t i = 0; i < n; i++)
		any_meta |= f[i].meta != NULL;
	memset(fz_exp, 0, sizeof(fz_exp));
	fz_sg.on = false;
	fz_snap(&a);
	uint32_t injected = 0, refused = 0, super = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint16_t in = fz_port[f[i].ctl & 7];
		struct rte_mbuf *m = fz_frame(f[i].d, f[i].len, f[i].split);
		if (f[i].meta != NULL) {
			struct virtio_net_hdr vh;
			memcpy(&vh, f[i].meta, sizeof(vh));
			if (wf_vnet_rx(m, &vh, f[i].ctl & 0x40 ? 4 : 0) != WF_DROP_MAX) {
				/* The driver drops it before any worker sees it (counted there). */
				rte_pktmbuf_free(m);
				refused++;
				continue;
			}
			super += (m->ol_flags & WF_OL_SEG) != 0;
			if (n == 1 && (m->ol_flags & WF_OL_SEG) && (in == pa || in == pb || in == pk)) {
				fz_sg.on = true;
				fz_sg.port = fz_port_index(in == pa ? pb : in == pb ? pa : pg);
				fz_sg.l3 = m->l2_len;
				fz_sg.l4 = (uint32_t)m->l2_len + m->l3_len;
				fz_sg.hdr = fz_sg.l4 + m->l4_len;
				fz_sg.segsz = m->tso_segsz;
				fz_sg.v4 = (m->ol_flags & RTE_MBUF_F_TX_IPV4) != 0;
				fz_sg.tcp = (m->ol_flags & RTE_MBUF_F_TX_TCP_SEG) != 0;
			}
		}
		if (!any_meta && (in == pa || in == pb)) {
			uint32_t o = fz_port_index(in == pa ? pb : pa);
			if (fz_dp->fp[fz_port[o]].max_frame == 0 || f[i].len <= fz_dp->fp[fz_port[o]].max_frame) {
				struct fz_expect *e = &fz_exp[o];
				e->d[e->n] = f[i].d;
				e->len[e->n++] = f[i].len;
			}
		}
		fz_inject(in, m);
		injected++;
	}
	/* Forwarding, then the underlay's answers on TX rings that may be full
	 * by then: an answer TX refuses is a counted drop
	 * (fuzz/regressions/p2p/answer-tx-full). */
	fz_poll();
	fz_snap(&b);
	uint32_t punted;
	uint32_t answers = fz_underlay(&punted);
	struct fz_snap c;
	fz_snap(&c);
	const uint32_t all = fz_drain(NULL);
	FZ_CHECK(all >= b.tx_sum - a.tx_sum, "%u frames on the TX rings, %lu counted sent", all,
		 (unsigned long)(b.tx_sum - a.tx_sum));
	const uint32_t sent = (uint32_t)(b.tx_sum - a.tx_sum), answered = all - sent;
	if (fz_verbose) {
		fprintf(stderr, "frames %u refused %u super %u punted %u answers %u/%u sent %u\n", n, refused, super,
			punted, answered, answers, sent);
		fz_print_delta(&a, &b);
	}
	FZ_CHECK(c.tx_sum == b.tx_sum && answered + (c.drops - b.drops) == answers,
		 "%u answers: %u sent, %lu dropped, %lu counted sent", answers, answered,
		 (unsigned long)(c.drops - b.drops), (unsigned long)(c.tx_sum - b.tx_sum));
	for (uint32_t i = 0; i < fz_nports; i++)
		FZ_CHECK(fz_exp[i].next == fz_exp[i].n, "%s sent %u of the %u plain frames it was given",
			 fz_name[i], fz_exp[i].next, fz_exp[i].n);
	const uint64_t rx = b.rx_sum - a.rx_sum, tx = b.tx_sum - a.tx_sum, drops = b.drops - a.drops;
	FZ_CHECK(rx == injected, "%u frames in, %lu counted received", injected, (unsigned long)rx);
	if (super == 0)
		FZ_CHECK(tx + drops + punted == rx, "received %lu != sent %lu + dropped %lu + punted %u",
			 (unsigned long)rx, (unsigned long)tx, (unsigned long)drops, punted);
	else /* a super-frame becomes its segments */
		FZ_CHECK(tx + drops + punted >= rx, "received %lu > sent %lu + dropped %lu + punted %u",
			 (unsigned long)rx, (unsigned long)tx, (unsigned long)drops, punted);
	FZ_CHECK(b.wdrops[WF_DROP_NO_PEER] == a.wdrops[WF_DROP_NO_PEER], "no-peer drop: every side is connected");
	fz_pools_check();
	return 0;
}
