/*
 * weft_pktgen.h: weft-pktgen, the generator and sink on the same C core
 * (its own frames, sequence numbers and timestamps; TSC pacing). Not part of
 * weftd's interface.
 */
#ifndef WEFT_PKTGEN_H
#define WEFT_PKTGEN_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- weft-pktgen ------------------------------------------------------------ */

struct wf_pktgen_cfg {
	uint8_t src_mac[6], dst_mac[6];
	uint8_t ipv6;
	uint8_t pad;
	uint16_t vlan_id;          /* 0: untagged */
	uint8_t src_ip[16], dst_ip[16];
	uint16_t src_port, dst_port;
	uint32_t flows;            /* source address/port ranges */
	uint32_t mac_flows;        /* source MAC range (bridge learning); 0/1: one MAC */
	uint32_t n_sizes;          /* 1: fixed size; up to 16: IMIX, cycled */
	uint32_t sizes[16];
	uint16_t burst;
	uint16_t rx_queues;        /* RX queues polled on rx_port (0 -> 1) */
	double rate_pps;           /* 0: as fast as possible */
	double duration_ms;
	/* VXLAN encapsulation of the frame above (to feed a decap): vni 0 = none.
	 * Outer Ethernet/IPv4/UDP(4789)/VXLAN, 50 bytes of the frame size. */
	uint32_t vxlan_vni;
	uint8_t outer_src_mac[6], outer_dst_mac[6];
	uint8_t outer_src_ip[4], outer_dst_ip[4];
	uint16_t outer_dst_port;   /* 0 -> 4789 */
	uint32_t vxlan_vnis;       /* VNIs vxlan_vni .. vxlan_vni + n - 1, cycled per frame (0/1: one) */
};

struct wf_pktgen_result {
	uint64_t tx_attempted, tx_packets, tx_refused, tx_bytes;
	uint64_t tx_skipped; /* frames not sent because the generator fell behind its
			      * schedule (descheduled): never sent, so never lost */
	uint64_t rx_packets, rx_bytes, rx_foreign;
	uint64_t rx_max_seq, reordered, duplicates;
	uint64_t latency_min, latency_max, latency_sum; /* TSC cycles */
	uint64_t latency_log2[48];
	uint64_t elapsed_tsc, tsc_hz;
};

/*
 * Generate on tx_port and receive on rx_port (may be the same) for
 * duration_ms at rate_pps, on the calling thread. Frames carry a sequence
 * number and a TSC timestamp. Control-thread only (not while workers run on
 * these ports).
 */
int wf_pktgen_run(wf_dataplane_t *dp, uint16_t tx_port, uint16_t rx_port, const struct wf_pktgen_cfg *cfg,
		  struct wf_pktgen_result *res);


/* Start the events thread without starting workers (weft-pktgen's own memif). */
int wf_events_start(wf_dataplane_t *dp);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PKTGEN_H */
