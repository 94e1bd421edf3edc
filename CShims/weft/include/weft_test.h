/*
 * weft_test.h: hooks for Weft's own tests and benchmarks, apart from the
 * product API in weft.h. Nothing here is used by weftd.
 */
#ifndef WEFT_TEST_H
#define WEFT_TEST_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Driving a dataplane without worker lcores ------------------------------ */

/*
 * Run one poll iteration of worker `worker` on the calling thread: the same
 * code path a worker lcore runs. For in-process stage tests when the
 * dataplane was created with n_workers = 0 (then worker 0 is the virtual
 * poller). Returns packets received.
 */
int wf_dp_poll_once(wf_dataplane_t *dp, uint32_t worker);

/*
 * Run the events thread's work once on the calling thread (stage tests; weftd
 * runs it on its own thread from wf_dp_start): memif control messages, link
 * events, wake-ups. Waits at most timeout_ms. Returns events handled.
 */
int wf_events_service(wf_dataplane_t *dp, int timeout_ms);
/*
 * Process punted ARP/ND/ICMP and neighbour timers once on the calling
 * thread. weftd's underlay thread runs it after wf_dp_start; stage tests (no
 * worker lcores) call it directly. -EBUSY while that thread runs. Returns packets handled.
 */
int wf_underlay_service(wf_dataplane_t *dp);

/* Fault injection: the n-th allocation of a table part from now fails (the
 * publish that needs it must fail whole); -1 turns it off. */
void wf_test_fail_table_alloc(int n);

/* Called when a kernel interface (af_packet, af_xdp) is attached, after its
 * link state was read and before it is registered for link events: a stage
 * test changes the link there. NULL: nothing. */
extern void (*wf_test_kif_before_watch)(void *arg);
extern void *wf_test_kif_before_watch_arg;

/* ---- Test ports ---------------------------------------------------------------- */

/* Inject one frame into the port's RX ring. */
int wf_testport_inject(wf_dataplane_t *dp, uint16_t port_id,
		       const uint8_t *frame, uint32_t len);
/* Take one transmitted frame; returns its length, 0 when none, -errno. */
int wf_testport_collect(wf_dataplane_t *dp, uint16_t port_id,
			uint8_t *buf, uint32_t cap);

/* ---- Benchmarks (perf/stage-bench.sh) ----------------------------------- */

/*
 * Closed-loop stage benchmarks on two test ports with a cross-connect a -> b
 * and frames already injected into a. Only for a dataplane with no worker
 * lcores. Cycles are TSC cycles spent inside the timed polls.
 */
int wf_bench_xconnect(wf_dataplane_t *dp, uint16_t a, uint16_t b, uint32_t iterations,
		      uint64_t *cycles, uint64_t *packets);
/* The io-forward limit on the same ports: RX burst, TX burst, nothing else. */
int wf_bench_io_baseline(wf_dataplane_t *dp, uint16_t a, uint16_t b, uint32_t iterations,
			 uint64_t *cycles, uint64_t *packets);

/* Inject `count` copies of a frame; returns how many fit in the RX ring. */
int wf_testport_inject_n(wf_dataplane_t *dp, uint16_t port_id, const uint8_t *frame, uint32_t len,
			 uint32_t count);
/* Free every transmitted frame; returns how many there were. */
int wf_testport_discard(wf_dataplane_t *dp, uint16_t port_id);

/* Replication to test-port members (perf/replicate-bench.sh). */
/* VLAN/VXLAN round trip pod -> uplink -> (turned round) -> pod; see bench.c. */
int wf_bench_roundtrip(wf_dataplane_t *dp, uint16_t pod, uint16_t uplink, uint8_t reflect_ipv4,
		       uint32_t iterations, uint64_t *cycles, uint64_t *packets);
int wf_bench_replicate(wf_dataplane_t *dp, uint16_t ingress, const uint16_t *members, uint32_t n,
		       uint32_t iterations, uint64_t *cycles, uint64_t *frames);



/*
 * Inject one frame into a test port's RX with the offload metadata a kernel
 * interface would have attached: a partial TCP/UDP checksum at l4_offset
 * (l4_proto 6 or 17; 0: none) and, with gso_size > 0, a TCP/UDP super-frame
 * to be cut into gso_size-byte segments. The frame may be longer than one
 * mbuf (it is chained).
 */
struct wf_test_offload {
	uint16_t l2_len, l3_len, l4_len;
	uint8_t l4_proto;
	uint8_t ipv6;
	uint16_t gso_size;
};
int wf_testport_inject_offload(wf_dataplane_t *dp, uint16_t port, const uint8_t *frame, uint32_t len,
			       const struct wf_test_offload *ol);

/*
 * Mark a P2P cross-connect as offloaded with rules that are not there (no
 * eswitch here) and these counts: every query of them then fails, as a rule
 * that a port reset took away would. For the fallback's tests.
 */
int wf_test_offload_pretend(wf_dataplane_t *dp, uint32_t slot, const uint64_t packets[2], const uint64_t bytes[2]);

#ifdef __cplusplus
}
#endif
#endif
