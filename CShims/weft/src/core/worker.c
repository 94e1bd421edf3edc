/*
 * worker.c: the run-to-completion loop of one worker lcore. All setup is
 * done before the loop; inside it: RX burst per (port, queue), the
 * cross-connect stage, quiescent-state report, stop-flag check. No
 * allocation, locks, logging or syscalls. The one exception is opt-in:
 * with idle_sleep_us set, a worker that found nothing for WF_IDLE_SPINS
 * polls sleeps (like OVS pmd-sleep-max), going RCU-offline first so that
 * control-plane publishes never wait on a sleeping worker.
 */
#include <rte_cycles.h>

#include "wf_internal.h"

#define WF_IDLE_SPINS 1024

static __rte_noinline void
wf_worker_inject(struct wf_worker *w)
{
	void *objs[32];
	unsigned n = rte_ring_dequeue_burst(w->dp->inject, objs, 32, NULL);
	for (unsigned i = 0; i < n; i++) {
		struct rte_mbuf *m = objs[i];
		if (wf_port_tx(w, m->port, &m, 1) != 1)
			rte_pktmbuf_free(m);
	}
}

uint16_t
wf_worker_poll(struct wf_worker *w)
{
	struct rte_mbuf *pkts[WF_MAX_BURST];
	const struct wf_table *t = __atomic_load_n(&w->dp->table, __ATOMIC_ACQUIRE);
	const uint32_t np = t->n_polls[w->idx];
	const struct wf_poll *pl = t->polls[w->idx];
	const uint16_t burst = w->dp->cfg.burst;
	uint16_t total = 0;

	for (uint32_t i = 0; i < np; i++) {
		uint16_t n = likely(pl[i].eth != WF_PORT_NONE)
				     ? rte_eth_rx_burst(pl[i].eth, pl[i].queue, pkts, burst)
				     : pl[i].rx(pl[i].rxq, pkts, burst);
		if (n == 0)
			continue;
		total += n;
		if (t->vlan[pl[i].port] != NULL || t->ul[pl[i].port] != NULL)
			wf_uplink_burst(w, t, pl[i].port, pkts, n);
		else
			wf_xconnect_burst(w, t, pl[i].port, pkts, n);
	}
	/* Worker 0 also sends what the control plane built (ARP/ND/echo replies). */
	if (w->idx == 0 && unlikely(!rte_ring_empty(w->dp->inject)))
		wf_worker_inject(w);
	w->rx_packets += total;
	return total;
}

int
wf_worker_main(void *arg)
{
	struct wf_worker *w = arg;
	struct wf_dataplane *dp = w->dp;
	const uint32_t sleep_us = dp->cfg.idle_sleep_us;
	uint32_t idle = 0;

	rte_rcu_qsbr_thread_online(dp->qs, w->idx);
	uint64_t prev = rte_rdtsc();
	while (!__atomic_load_n(&dp->stop, __ATOMIC_ACQUIRE)) {
		uint16_t n = wf_worker_poll(w);
		uint64_t now = rte_rdtsc();
		if (n) {
			w->busy_cycles += now - prev;
			w->busy_iter++;
			idle = 0;
		} else {
			w->idle_cycles += now - prev;
			w->idle_iter++;
		}
		prev = now;
		rte_rcu_qsbr_quiescent(dp->qs, w->idx);
		if (n == 0 && sleep_us && ++idle >= WF_IDLE_SPINS) {
			rte_rcu_qsbr_thread_offline(dp->qs, w->idx);
			rte_delay_us_sleep(sleep_us);
			rte_rcu_qsbr_thread_online(dp->qs, w->idx);
			prev = rte_rdtsc(); /* sleeping is neither busy nor idle polling */
		}
	}
	rte_rcu_qsbr_thread_offline(dp->qs, w->idx);
	return 0;
}
