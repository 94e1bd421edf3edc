/*
 * fuzz_uplink: frames into uplinks, through the worker's real poll
 * (classification, VLAN pop, VXLAN decap, the punt path) and the underlay's
 * answers (wf_underlay_service: ARP, NS/NA, ICMP/ICMPv6 echo), and frames
 * from the pods the other way (VLAN push, VXLAN encap).
 *
 *   up  (Weft owns 10.0.0.1/24, fd00::1/64; VXLAN on 4789 and 8472)
 *       VLAN 100 <-> podv, untagged (VLAN 0) <-> pod0,
 *       VXLAN 100 from 10.0.0.2 <-> pod4, VXLAN 200 from fd00::2 <-> pod6,
 *       VXLAN 101 from 10.0.0.3 (next hop not resolved) <-> pod5
 *       VLANs 101-108 <-> m1..m8 (a burst for more connections than the
 *       uplink batches: wf_send_mixed)
 *   up2 (kernel_shared: the kernel owns 192.168.1.1/24; VXLAN on 4789)
 *       VLAN 200 <-> podk, VXLAN 300 from 192.168.1.2 <-> pod7
 *
 * Input: frames as common.h reads them (up to 16); the control byte's low
 * nibble picks the ingress port (0 up, 1 up2, then podv pod0 pod4 pod6 pod5
 * podk pod7 m1..m7).
 */
#define FZ_MAX_FRAMES 16
#include "common.h"

static const uint8_t PEER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x02 };

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

/*
 * What the underlay answered (ARP replies, echo replies, neighbour
 * advertisements and probes): well formed, checksums right. Only frames
 * the underlay built reach this check (the forwarded ones are drained first).
 */
static void
answer_check(uint32_t i, const struct rte_mbuf *m)
{
	static uint8_t buf[4096];
	FZ_CHECK(m->pkt_len <= sizeof(buf), "a %u-byte answer", m->pkt_len);
	const uint8_t *p = rte_pktmbuf_read(m, 0, m->pkt_len, buf);
	FZ_CHECK(i < 2 && m->pkt_len >= 42, "%s sent a %u-byte answer", fz_name[i], m->pkt_len);
	const uint16_t type = (uint16_t)(p[12] << 8 | p[13]);
	if (type == RTE_ETHER_TYPE_ARP)
		return; /* built from constants */
	if (type == RTE_ETHER_TYPE_IPV4) {
		const uint32_t ihl = (p[14] & 0xf) * 4u, tot = (uint32_t)(p[16] << 8 | p[17]);
		FZ_CHECK(p[14 + 9] == IPPROTO_ICMP && ihl >= 20 && 14 + tot == m->pkt_len,
			 "echo reply: IPv4 header and frame disagree");
		FZ_CHECK(rte_raw_cksum(p + 14, ihl) == 0xffff, "echo reply: IPv4 header checksum wrong");
		FZ_CHECK(rte_raw_cksum(p + 14 + ihl, tot - ihl) == 0xffff, "echo reply: ICMP checksum wrong");
		return;
	}
	FZ_CHECK(type == RTE_ETHER_TYPE_IPV6 && m->pkt_len >= 62, "answer of ethertype %#x", type);
	const struct rte_ipv6_hdr *ip = (const struct rte_ipv6_hdr *)(p + 14);
	FZ_CHECK(ip->proto == IPPROTO_ICMPV6 && 54u + rte_be_to_cpu_16(ip->payload_len) == m->pkt_len,
		 "ICMPv6 answer: IPv6 header and frame disagree");
	FZ_CHECK(rte_ipv6_udptcp_cksum_verify(ip, p + 54) == 0, "ICMPv6 answer (type %u): checksum wrong", p[54]);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_eal("fuzz_uplink");
	uint16_t up = fz_add_port("up"), up2 = fz_add_port("up2");
	uint16_t podv = fz_add_port("podv"), pod0 = fz_add_port("pod0"), pod4 = fz_add_port("pod4");
	uint16_t pod6 = fz_add_port("pod6"), pod5 = fz_add_port("pod5"), podk = fz_add_port("podk");
	uint16_t pod7 = fz_add_port("pod7");

	struct wf_underlay_cfg u;
	memset(&u, 0, sizeof(u));
	u.has_ip4 = u.has_ip6 = 1;
	u.prefix4 = 24, u.prefix6 = 64;
	memcpy(u.ip4, (uint8_t[]){ 10, 0, 0, 1 }, 4);
	memcpy(u.gw4, (uint8_t[]){ 10, 0, 0, 254 }, 4);
	memcpy(u.ip6, (uint8_t[]){ 0xfd, 0, [15] = 1 }, 16);
	u.mtu = 1500;
	u.n_vxlan_ports = 2;
	u.vxlan_ports[0] = 4789, u.vxlan_ports[1] = 8472;
	FZ_OK(wf_underlay_set(fz_dp, up, &u));
	const uint8_t p4[4] = { 10, 0, 0, 2 }, p6[16] = { 0xfd, 0, [15] = 2 }, u4[4] = { 10, 0, 0, 3 };
	FZ_OK(wf_neighbour_static(fz_dp, up, 0, p4, PEER_MAC));
	FZ_OK(wf_neighbour_static(fz_dp, up, 1, p6, PEER_MAC));

	struct wf_underlay_cfg k;
	memset(&k, 0, sizeof(k));
	k.has_ip4 = 1;
	k.prefix4 = 24;
	memcpy(k.ip4, (uint8_t[]){ 192, 168, 1, 1 }, 4);
	k.mtu = 1500;
	k.n_vxlan_ports = 1;
	k.vxlan_ports[0] = 4789;
	k.kernel_shared = 1;
	FZ_OK(wf_underlay_set(fz_dp, up2, &k));
	const uint8_t k4[4] = { 192, 168, 1, 2 };
	FZ_OK(wf_neighbour_static(fz_dp, up2, 0, k4, PEER_MAC));

	uint32_t side, slot;
	FZ_OK(wf_vlan_add(fz_dp, up, 100, &side));
	FZ_OK(wf_xc_add(fz_dp, podv, side, &slot));
	FZ_OK(wf_vlan_add(fz_dp, up, WF_VLAN_RAW, &side));
	FZ_OK(wf_xc_add(fz_dp, pod0, side, &slot));
	FZ_OK(wf_xc_add(fz_dp, pod4, fz_vxlan(up, 0, 100, p4, 4789), &slot));
	FZ_OK(wf_xc_add(fz_dp, pod6, fz_vxlan(up, 1, 200, p6, 8472), &slot));
	FZ_OK(wf_xc_add(fz_dp, pod5, fz_vxlan(up, 0, 101, u4, 4789), &slot));
	FZ_OK(wf_vlan_add(fz_dp, up2, 200, &side));
	FZ_OK(wf_xc_add(fz_dp, podk, side, &slot));
	FZ_OK(wf_xc_add(fz_dp, pod7, fz_vxlan(up2, 0, 300, k4, 4789), &slot));
	static const char *const mname[8] = { "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8" };
	for (int i = 0; i < 8; i++) {
		uint16_t mp = fz_add_port(mname[i]);
		FZ_OK(wf_vlan_add(fz_dp, up, (uint16_t)(101 + i), &side));
		FZ_OK(wf_xc_add(fz_dp, mp, side, &slot));
	}

	/* The first probes for 10.0.0.3 out of the way. */
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
	uint32_t n = fz_parse(data, size, f, FZ_MAX_FRAMES, 0);
	struct fz_snap a, b;
	fz_snap(&a);
	for (uint32_t i = 0; i < n; i++)
		fz_inject(fz_port[f[i].ctl & 0x0f], fz_frame(f[i].d, f[i].len, f[i].split));
	fz_poll();
	uint32_t sent = fz_drain(NULL), punted;
	fz_on_tx = answer_check;
	uint32_t answers = fz_underlay(&punted);
	sent += fz_drain(NULL);
	fz_on_tx = NULL;
	fz_snap(&b);
	if (fz_verbose) {
		fprintf(stderr, "frames %u punted %u answers %u sent %u\n", n, punted, answers, sent);
		fz_print_delta(&a, &b);
	}
	const uint64_t rx = b.rx_sum - a.rx_sum, tx = b.tx_sum - a.tx_sum, drops = b.drops - a.drops;
	uint64_t ifdrops = 0;
	for (uint32_t i = 0; i < fz_nports; i++)
		ifdrops += b.ifdrops[i] - a.ifdrops[i];
	FZ_CHECK(rx == n, "%u frames in, %lu counted received", n, (unsigned long)rx);
	FZ_CHECK(tx + drops + punted == rx, "received %lu != sent %lu + dropped %lu + punted %u",
		 (unsigned long)rx, (unsigned long)tx, (unsigned long)drops, punted);
	FZ_CHECK(ifdrops == drops, "interfaces count %lu drops, the worker %lu", (unsigned long)ifdrops,
		 (unsigned long)drops);
	FZ_CHECK(b.wdrops[WF_DROP_NO_PEER] == a.wdrops[WF_DROP_NO_PEER], "no-peer drop: every side is connected");
	FZ_CHECK(sent == tx + answers, "%u frames on the TX rings, %lu counted sent + %u answers", sent,
		 (unsigned long)tx, answers);
	fz_pools_check();
	return 0;
}
