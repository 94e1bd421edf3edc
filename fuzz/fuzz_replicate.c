/*
 * fuzz_replicate: a sequence of frames into a replication group, one poll
 * each: a frame from the ingress reaches every member exactly once (or is
 * dropped there, counted), a frame from a member goes to the ingress.
 * Members that add headers get copies; plain ones clones (frames of 128
 * bytes and more) and the last one the original, so reference counts and
 * shared data are exercised.
 *
 *   ingress r0; members: VLAN 300 on u, VXLAN 100 (10.0.0.2) on u, r1, r2
 *   u has underlay addresses (10.0.0.1/24, fd00::1/64): its ARP/ND/echo
 *   go to the underlay and are answered.
 *
 * Input: frames as common.h reads them; control byte & 3 picks the port
 * (r0 r1 r2 u); bit 7: a 10-byte virtio-net header precedes the frame and
 * goes through the AF_PACKET driver's parser (as in fuzz_p2p), so partial
 * checksums are finished and super-frames cut before replication.
 */
#include "common.h"

#include "ports/afpacket.c"

static const uint8_t PEER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x02 };
static uint16_t r0, r1, r2, pu;
#define NMEMBERS 4

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_eal("fuzz_replicate");
	r0 = fz_add_port("r0"), r1 = fz_add_port("r1"), r2 = fz_add_port("r2"), pu = fz_add_port("u");
	struct wf_underlay_cfg u;
	memset(&u, 0, sizeof(u));
	u.has_ip4 = u.has_ip6 = 1;
	u.prefix4 = 24, u.prefix6 = 64;
	memcpy(u.ip4, (uint8_t[]){ 10, 0, 0, 1 }, 4);
	memcpy(u.ip6, (uint8_t[]){ 0xfd, 0, [15] = 1 }, 16);
	u.mtu = 1500;
	u.n_vxlan_ports = 1;
	u.vxlan_ports[0] = 4789;
	FZ_OK(wf_underlay_set(fz_dp, pu, &u));
	const uint8_t p4[4] = { 10, 0, 0, 2 };
	FZ_OK(wf_neighbour_static(fz_dp, pu, 0, p4, PEER_MAC));
	uint32_t vside, xside;
	FZ_OK(wf_vlan_add(fz_dp, pu, 300, &vside));
	struct wf_vxlan_cfg c;
	memset(&c, 0, sizeof(c));
	c.uplink = pu;
	c.vni = 100;
	memcpy(c.remote, p4, 4);
	c.dst_port = c.local_port = 4789;
	FZ_OK(wf_vxlan_add(fz_dp, &c, &xside));
	struct wf_p2mp_member m[NMEMBERS];
	memset(m, 0, sizeof(m));
	m[0].side = vside, m[1].side = xside, m[2].side = r1, m[3].side = r2;
	uint32_t id, slots[NMEMBERS];
	FZ_OK(wf_replicate_add(fz_dp, r0, m, NMEMBERS, 128, &id, slots));
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
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t in = f[i].ctl & 3;
		struct fz_snap a, b;
		uint32_t per[FZ_MAX_PORTS];
		struct rte_mbuf *m = fz_frame(f[i].d, f[i].len, f[i].split);
		bool super = false;
		if (f[i].meta != NULL) {
			struct virtio_net_hdr vh;
			memcpy(&vh, f[i].meta, sizeof(vh));
			if (wf_vnet_rx(m, &vh, 0) != WF_DROP_MAX) {
				rte_pktmbuf_free(m); /* the driver drops it (counted there) */
				continue;
			}
			super = (m->ol_flags & WF_OL_SEG) != 0;
		}
		fz_snap(&a);
		fz_inject(fz_port[in], m);
		fz_poll();
		uint32_t punted, answers = fz_underlay(&punted);
		fz_snap(&b);
		uint32_t sent = fz_drain(per);
		const uint64_t tx = b.tx_sum - a.tx_sum, drops = b.drops - a.drops;
		if (fz_verbose) {
			fprintf(stderr, "frame %u from %s: punted %u answers %u sent %u\n", i, fz_name[in], punted,
				answers, sent);
			fz_print_delta(&a, &b);
		}
		FZ_CHECK(b.rx_sum - a.rx_sum == 1, "one frame in, %lu counted", (unsigned long)(b.rx_sum - a.rx_sum));
		if (super) /* its segments each replicated, or it dropped whole */
			FZ_CHECK(tx + drops + punted >= 1, "a super-frame vanished");
		else if (in == 0)
			FZ_CHECK(tx + drops == NMEMBERS || (f[i].meta != NULL && tx == 0 && drops == 1),
				 "from the ingress: sent %lu + dropped %lu, not one per member",
				 (unsigned long)tx, (unsigned long)drops);
		else
			FZ_CHECK(tx + drops + punted == 1, "from %s: sent %lu + dropped %lu + punted %u, not 1",
				 fz_name[in], (unsigned long)tx, (unsigned long)drops, punted);
		FZ_CHECK(in != 0 || per[0] == 0, "the ingress got its own frame back");
		FZ_CHECK(in == 0 || tx == per[0], "a member's frame went elsewhere than the ingress");
		FZ_CHECK(sent == tx + answers, "%u frames on the TX rings, %lu counted sent + %u answers", sent,
			 (unsigned long)tx, answers);
		FZ_CHECK(b.wdrops[WF_DROP_NO_PEER] == a.wdrops[WF_DROP_NO_PEER], "no-peer drop: every side is connected");
		fz_pools_check();
	}
	return 0;
}
