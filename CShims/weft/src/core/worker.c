/*
 * worker.c: the run-to-completion loop of one worker lcore. All setup is
 * done before the loop; inside it: RX burst per (port, queue), the
 * cross-connect stage, quiescent-state report, stop-flag check. No
 * allocation, locks, logging or syscalls. The one exception is opt-in:
 * with idle_sleep_us set, a worker that found nothing for WF_IDLE_SPINS
 * polls sleeps (like OVS pmd-sleep-max), going RCU-offline first so that
 * control-plane publishes never wait on a sleeping worker.
 */
#include <errno.h>

#include <rte_cycles.h>

#include "wf_internal.h"
#include "weft_test.h"

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

/* A queue put back on the active list: polling again, nothing to wait for. */
static inline void
wf_rxq_awake(struct wf_rxq_base *b)
{
	b->asleep = 0;
	__atomic_store_n(&b->woken, 0, __ATOMIC_RELAXED);
	b->idle = 0;
	b->disarm(b);
}

/*
 * The active list anew (the table changed, or queues woke): every poll of
 * this worker's table that is not asleep, woken ones back in. Slow path.
 */
static __rte_noinline void
wf_worker_rebuild(struct wf_worker *w, const struct wf_table *t)
{
	const uint32_t np = t->n_polls[w->idx];
	const struct wf_poll *pl = t->polls[w->idx];
	struct wf_poll *act = t->active[w->idx];
	uint32_t n = 0;
	w->wakes_seen = __atomic_load_n(&w->wakes, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < np; i++) {
		struct wf_rxq_base *b = pl[i].eth == WF_PORT_NONE ? pl[i].rxq : NULL;
		if (b != NULL && b->asleep) {
			if (!__atomic_load_n(&b->woken, __ATOMIC_ACQUIRE))
				continue;
			wf_rxq_awake(b);
		}
		act[n++] = pl[i];
	}
	w->n_active = n;
	w->seen_gen = t->gen;
}

/*
 * An idle queue goes to sleep: armed (the peer or the kernel will signal),
 * handed to the events thread to wait on, taken off the active list. No
 * syscall here: the events thread adds it to its epoll set. false: it
 * stays (frames arrived meanwhile, or the hand-over ring is full).
 */
static __rte_noinline bool
wf_worker_sleep(struct wf_worker *w, struct wf_rxq_base *b)
{
	int fd = b->arm(b);
	if (fd == -EAGAIN) {
		b->idle = 0;
		return false;
	}
	b->sleep_fd = fd;
	__atomic_store_n(&b->woken, 0, __ATOMIC_RELAXED);
	b->asleep = 1;
	if (rte_ring_sp_enqueue(w->sleepers, b) != 0) {
		b->asleep = 0;
		b->idle = 0;
		b->disarm(b);
		return false;
	}
	return true;
}

uint16_t
wf_worker_poll(struct wf_worker *w)
{
	struct rte_mbuf *pkts[WF_MAX_BURST];
	const struct wf_table *t = __atomic_load_n(&w->dp->table, __ATOMIC_ACQUIRE);
	if (unlikely(t->gen != w->seen_gen ||
		     __atomic_load_n(&w->wakes, __ATOMIC_RELAXED) != w->wakes_seen))
		wf_worker_rebuild(w, t);
	struct wf_poll *pl = t->active[w->idx];
	const uint16_t burst = w->dp->cfg.burst;
	const bool can_sleep = w->dp->cfg.queues_sleep != 0;
	const uint64_t now = w->loop_tsc;
	uint16_t total = 0;

	for (uint32_t i = 0; i < w->n_active; i++) {
		uint16_t n = likely(pl[i].eth != WF_PORT_NONE)
				     ? rte_eth_rx_burst(pl[i].eth, pl[i].queue, pkts, burst)
				     : pl[i].rx(pl[i].rxq, pkts, burst);
		if (n == 0) {
			struct wf_rxq_base *b = pl[i].eth == WF_PORT_NONE ? pl[i].rxq : NULL;
			if (can_sleep && b != NULL && b->arm != NULL && ++b->idle >= WF_SLEEP_POLLS &&
			    now - b->last_rx >= w->sleep_tsc && wf_worker_sleep(w, b)) {
				pl[i--] = pl[--w->n_active]; /* the last one takes its place */
			}
			continue;
		}
		if (pl[i].eth == WF_PORT_NONE) {
			struct wf_rxq_base *b = pl[i].rxq;
			b->idle = 0;
			b->last_rx = now;
		}
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
		w->loop_tsc = prev;
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
