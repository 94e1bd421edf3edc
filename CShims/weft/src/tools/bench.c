/*
 * bench.c: in-process stage benchmark on ring ports (perf/stage-bench.sh).
 * A closed loop: frames the cross-connect transmits on port `to` are moved
 * back into port `from`'s RX ring, so no allocation happens while timing.
 * Only the poll itself (RX burst, stage, TX burst) is inside the TSC window.
 * The baseline does what testpmd's io-forward does on the same ports: RX
 * burst, TX burst, nothing else: the limit the stage is compared with.
 */
#include <errno.h>
#include <string.h>

#include <rte_cycles.h>

#include "wf_internal.h"
#include "weft_test.h"

static void
wf_recycle(struct wf_dataplane *dp, uint16_t tx_port, uint16_t rx_port)
{
	void *objs[WF_MAX_BURST];
	unsigned n;
	while ((n = rte_ring_dequeue_burst(dp->ports[tx_port].test_tx, objs, WF_MAX_BURST, NULL)) > 0)
		rte_ring_enqueue_burst(dp->ports[rx_port].test_rx, objs, n, NULL);
}

static int
wf_bench_check(struct wf_dataplane *dp, uint16_t a, uint16_t b)
{
	if (dp == NULL || dp->started || a >= WF_MAX_PORTS || b >= WF_MAX_PORTS ||
	    !dp->ports[a].is_testport || !dp->ports[b].is_testport)
		return -EINVAL;
	return 0;
}

/* Outside the timed window: frames a tunnel uplink sent go back into its RX,
 * with the outer IPv4 source and destination swapped when `reflect`. */
static void
wf_turn_round(struct wf_dataplane *dp, uint16_t uplink, bool reflect)
{
	void *objs[WF_MAX_BURST];
	unsigned k;
	while ((k = rte_ring_dequeue_burst(dp->ports[uplink].test_tx, objs, WF_MAX_BURST, NULL)) > 0) {
		for (unsigned j = 0; reflect && j < k; j++) {
			uint8_t *f = rte_pktmbuf_mtod((struct rte_mbuf *)objs[j], uint8_t *);
			uint8_t tmp[4];
			memcpy(tmp, f + 26, 4);
			memcpy(f + 26, f + 30, 4);
			memcpy(f + 30, tmp, 4);
		}
		rte_ring_enqueue_burst(dp->ports[uplink].test_rx, objs, k, NULL);
	}
}

enum wf_bench_loop { WF_LOOP_XCONNECT, WF_LOOP_ROUNDTRIP, WF_LOOP_ROUNDTRIP_VXLAN };

/* Timed worker polls; between them, frames are put back where they restart. */
static int
wf_bench_polls(struct wf_dataplane *dp, uint16_t a, uint16_t b, enum wf_bench_loop loop,
	       uint32_t iterations, uint64_t *cycles, uint64_t *packets)
{
	int rc = wf_bench_check(dp, a, b);
	if (rc)
		return rc;
	struct wf_worker *w = &dp->workers[0];
	uint64_t c = 0, p = 0;
	rte_rcu_qsbr_thread_online(dp->qs, 0);
	for (uint32_t i = 0; i < iterations; i++) {
		uint64_t t0 = rte_rdtsc_precise();
		uint16_t n = wf_worker_poll(w);
		uint64_t t1 = rte_rdtsc_precise();
		c += t1 - t0;
		p += n;
		if (loop == WF_LOOP_XCONNECT) {
			wf_recycle(dp, b, a);
		} else {
			wf_recycle(dp, a, a);
			wf_turn_round(dp, b, loop == WF_LOOP_ROUNDTRIP_VXLAN);
		}
	}
	rte_rcu_qsbr_thread_offline(dp->qs, 0);
	*cycles = c;
	*packets = p;
	return 0;
}

int
wf_bench_xconnect(wf_dataplane_t *dp, uint16_t a, uint16_t b, uint32_t iterations,
		  uint64_t *cycles, uint64_t *packets)
{
	return wf_bench_polls(dp, a, b, WF_LOOP_XCONNECT, iterations, cycles, packets);
}

/* Kept out of line so callgrind can count it alone (--toggle-collect). */
__attribute__((noinline)) uint16_t
wf_io_poll_once(uint16_t a, uint16_t b, uint16_t burst)
{
	struct rte_mbuf *pkts[WF_MAX_BURST];
	/* The same two polls a worker makes (a and b), forwarding a -> b. */
	uint16_t n = rte_eth_rx_burst(a, 0, pkts, burst);
	uint16_t sent = rte_eth_tx_burst(b, 0, pkts, n);
	if (unlikely(sent < n))
		rte_pktmbuf_free_bulk(pkts + sent, n - sent);
	uint16_t m = rte_eth_rx_burst(b, 0, pkts, burst);
	if (m)
		rte_pktmbuf_free_bulk(pkts, m);
	return n;
}

int
wf_bench_io_baseline(wf_dataplane_t *dp, uint16_t a, uint16_t b, uint32_t iterations,
		     uint64_t *cycles, uint64_t *packets)
{
	int rc = wf_bench_check(dp, a, b);
	if (rc)
		return rc;
	uint64_t c = 0, p = 0;
	for (uint32_t i = 0; i < iterations; i++) {
		uint64_t t0 = rte_rdtsc_precise();
		uint16_t n = wf_io_poll_once(dp->ports[a].eth, dp->ports[b].eth, dp->cfg.burst);
		uint64_t t1 = rte_rdtsc_precise();
		c += t1 - t0;
		p += n;
		wf_recycle(dp, b, a);
	}
	*cycles = c;
	*packets = p;
	return 0;
}

/*
 * Replication: frames injected into `ingress` are replicated to `members`;
 * the last member's output (the original, when it is plain) goes back to the
 * ingress and the replicas are freed outside the timed window.
 */
int
wf_bench_replicate(wf_dataplane_t *dp, uint16_t ingress, const uint16_t *members, uint32_t n,
		   uint32_t iterations, uint64_t *cycles, uint64_t *frames)
{
	if (dp == NULL || members == NULL || n == 0 || dp->started || !dp->ports[ingress].is_testport)
		return -EINVAL;
	struct wf_worker *w = &dp->workers[0];
	uint64_t c = 0, f = 0;
	rte_rcu_qsbr_thread_online(dp->qs, 0);
	for (uint32_t i = 0; i < iterations; i++) {
		uint64_t t0 = rte_rdtsc_precise();
		uint16_t got = wf_worker_poll(w);
		uint64_t t1 = rte_rdtsc_precise();
		c += t1 - t0;
		f += got;
		for (uint32_t j = 0; j + 1 < n; j++)
			wf_testport_discard(dp, members[j]);
		wf_recycle(dp, members[n - 1], ingress);
	}
	rte_rcu_qsbr_thread_offline(dp->qs, 0);
	*cycles = c;
	*frames = f;
	return 0;
}

/*
 * Tunnel round trip: `pod` is cross-connected to a VLAN or VXLAN tunnel on
 * `uplink`. Frames from the pod leave the uplink encapsulated; outside the
 * timed window they are turned round (VXLAN: outer IPv4 source and
 * destination swapped, so they come from the tunnel's remote to the uplink's
 * address) and fed to the uplink's RX, decapsulated back to the pod, and fed
 * to the pod's RX again. Each timed poll does both directions: cycles per
 * packet are the mean of push/encap and pop/decap.
 */
int
wf_bench_roundtrip(wf_dataplane_t *dp, uint16_t pod, uint16_t uplink, uint8_t reflect_ipv4,
		   uint32_t iterations, uint64_t *cycles, uint64_t *packets)
{
	return wf_bench_polls(dp, pod, uplink, reflect_ipv4 ? WF_LOOP_ROUNDTRIP_VXLAN : WF_LOOP_ROUNDTRIP,
			      iterations, cycles, packets);
}
