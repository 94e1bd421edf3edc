/*
 * fuzz_bridge: a sequence of frames into a bridge domain, one poll each, so
 * that every frame's fate is checked on its own: learned, forwarded to one
 * member, flooded to all but its own and its split-horizon group, or
 * dropped with a reason.
 *
 *   members: b0, b1 (shg 0), b2, b3 (shg 1), VLAN 10 on uplink u (shg 0)
 *   static MACs 02:00:00:00:00:aa on b0 and 02:00:00:00:00:bb on the VLAN
 *   MAC limit 16 per worker, aging 100 ms
 *
 * Input: frames as common.h reads them; control byte % 5 picks the ingress
 * (b0 b1 b2 b3 u).
 */
#include "common.h"

#define NM 5
static const uint16_t shg_of[NM] = { 0, 0, 1, 1, 0 };
static uint16_t pu;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_eal("fuzz_bridge");
	uint16_t b[4];
	b[0] = fz_add_port("b0"), b[1] = fz_add_port("b1"), b[2] = fz_add_port("b2"), b[3] = fz_add_port("b3");
	pu = fz_add_port("u");
	uint32_t vside;
	FZ_OK(wf_vlan_add(fz_dp, pu, 10, &vside));
	struct wf_p2mp_member m[NM];
	memset(m, 0, sizeof(m));
	for (int i = 0; i < 4; i++)
		m[i].side = b[i];
	m[4].side = vside;
	for (int i = 0; i < NM; i++)
		m[i].shg = shg_of[i];
	struct wf_bridge_cfg c;
	memset(&c, 0, sizeof(c));
	c.mac_limit = 16;
	c.age_ms = 100;
	c.n_static = 2;
	memcpy(c.static_mac[0], (uint8_t[]){ 2, 0, 0, 0, 0, 0xaa }, 6);
	c.static_member[0] = 0;
	memcpy(c.static_mac[1], (uint8_t[]){ 2, 0, 0, 0, 0, 0xbb }, 6);
	c.static_member[1] = 4;
	uint32_t id, slots[NM];
	FZ_OK(wf_bridge_add(fz_dp, &c, m, NM, &id, slots));
	fz_drain(NULL);
	fz_pools_baseline();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in_frame f[FZ_MAX_FRAMES];
	uint32_t n = fz_parse(data, size, f, FZ_MAX_FRAMES, 0);
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t in = f[i].ctl % NM; /* member index == harness port index */
		struct fz_snap a, b;
		uint32_t per[FZ_MAX_PORTS];
		fz_snap(&a);
		fz_inject(fz_port[in], fz_frame(f[i].d, f[i].len, f[i].split));
		fz_poll();
		fz_snap(&b);
		uint32_t sent = fz_drain(per);
		const uint64_t tx = b.tx_sum - a.tx_sum, drops = b.drops - a.drops;
		if (fz_verbose) {
			fprintf(stderr, "frame %u from member %u: sent %u\n", i, in, sent);
			fz_print_delta(&a, &b);
		}
		uint32_t fanout = 0;
		for (uint32_t j = 0; j < NM; j++)
			fanout += j != in && (shg_of[in] == 0 || shg_of[j] != shg_of[in]);
		FZ_CHECK(b.rx_sum - a.rx_sum == 1, "one frame in, %lu counted", (unsigned long)(b.rx_sum - a.rx_sum));
		FZ_CHECK(tx + drops == 1 || tx + drops == fanout,
			 "frame from member %u: sent %lu + dropped %lu is neither 1 nor its flood fan-out %u", in,
			 (unsigned long)tx, (unsigned long)drops, fanout);
		FZ_CHECK(sent == tx, "%u frames on the TX rings, %lu counted sent", sent, (unsigned long)tx);
		FZ_CHECK(per[in] == 0, "member %u got its own frame back", in);
		for (uint32_t j = 0; j < NM; j++)
			FZ_CHECK(j == in || shg_of[in] == 0 || shg_of[j] != shg_of[in] || per[j] == 0,
				 "member %u got a frame from member %u of its split-horizon group", j, in);
		FZ_CHECK(b.wdrops[WF_DROP_NO_PEER] == a.wdrops[WF_DROP_NO_PEER], "no-peer drop: every side is connected");
		fz_pools_check();
	}
	return 0;
}
