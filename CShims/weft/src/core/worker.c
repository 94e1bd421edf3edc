/*
 * worker.c: the run-to-completion loop of one worker lcore, and its poll set.
 * All setup is done before the loop; inside it: the control thread's
 * messages (queues given or taken back), RX burst per active (port, queue),
 * the stages, quiescent-state report, stop-flag check. No allocation, locks,
 * logging or syscalls. The one exception is opt-in:
 * with idle_sleep_us set, a worker that found nothing for WF_IDLE_SPINS
 * polls sleeps (like OVS pmd-sleep-max), going RCU-offline first so that
 * control-plane publishes never wait on a sleeping worker.
 */
#include <errno.h>

#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_ring_elem.h>

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
		const uint16_t port = m->port;
		if (wf_port_tx(w, port, &m, 1) != 1) {
			/*
			 * Counted like any frame TX refused: an answer or probe lost to a
			 * full queue went without a trace before (found by fuzz/fuzz_p2p,
			 * regression fuzz/regressions/p2p/answer-tx-full: an echo reply
			 * behind 1140 GSO segments on a 1024-slot ring).
			 * Sent ones are not counted as the interface's: they are the
			 * control plane's, not forwarded frames.
			 */
			wf_count_drop(w, &w->ifc[port], wf_tx_short_reason(w->dp, port, w->idx), 1);
			rte_pktmbuf_free(m);
		}
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
 * The active list anew (queues woke): every queue of this worker that is not
 * asleep, woken ones back in. Slow path.
 */
static __rte_noinline void
wf_worker_rebuild(struct wf_worker *w)
{
	uint32_t n = 0;
	w->wakes_seen = __atomic_load_n(&w->wakes, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < w->n_all; i++) {
		struct wf_rxq_base *b = w->all[i].eth == WF_PORT_NONE ? w->all[i].rxq : NULL;
		if (b != NULL && b->asleep) {
			if (!__atomic_load_n(&b->woken, __ATOMIC_ACQUIRE))
				continue;
			wf_rxq_awake(b);
		}
		w->act[n++] = w->all[i];
	}
	__atomic_store_n(&w->n_active, n, __ATOMIC_RELAXED);
}

/* ---- The poll set: the control thread's messages, applied by the worker ---- */

static inline uint32_t
wf_pos_key(uint16_t port, uint16_t queue)
{
	return (uint32_t)port * WF_MAX_RXQ_PER_PORT + queue;
}

/* Apply one message to the worker's own poll set (on the worker, or on the
 * control thread when no worker lcore runs). O(1) but for a removal, which
 * also scans the active list (idle queues are not on it). */
static void
wf_pollset_apply(struct wf_worker *w, const struct wf_msg *m)
{
	if (m->type == WF_MSG_ADD) {
		uint32_t k = wf_pos_key(m->poll.port, m->poll.queue);
		if (w->pos[k] != UINT32_MAX || w->n_all >= WF_POLLSET_CAP)
			return;
		w->pos[k] = w->n_all;
		w->all[w->n_all++] = m->poll;
		w->act[w->n_active] = m->poll;
		__atomic_store_n(&w->n_active, w->n_active + 1, __ATOMIC_RELAXED);
		return;
	}
	/* WF_MSG_DEL: every queue of the port. */
	for (uint16_t q = 0; q < WF_MAX_RXQ_PER_PORT; q++) {
		uint32_t k = wf_pos_key(m->port, q);
		uint32_t i = w->pos[k];
		if (i == UINT32_MAX)
			continue;
		w->pos[k] = UINT32_MAX;
		uint32_t last = --w->n_all;
		if (i != last) {
			w->all[i] = w->all[last];
			w->pos[wf_pos_key(w->all[i].port, w->all[i].queue)] = i;
		}
	}
	uint32_t n = w->n_active;
	for (uint32_t i = 0; i < n;)
		if (w->act[i].port == m->port)
			w->act[i] = w->act[--n];
		else
			i++;
	__atomic_store_n(&w->n_active, n, __ATOMIC_RELAXED);
}

static __rte_noinline void
wf_worker_ctl(struct wf_worker *w)
{
	struct wf_msg m;
	uint64_t n = 0;
	while (rte_ring_sc_dequeue_elem(w->ctl, &m, sizeof(m)) == 0) {
		wf_pollset_apply(w, &m);
		n++;
	}
	__atomic_store_n(&w->ctl_done, w->ctl_done + n, __ATOMIC_RELEASE);
}

/* After the worker lcore stopped: what it was sent and did not read yet. */
void
wf_pollset_settle(struct wf_worker *w)
{
	if (w->ctl != NULL)
		wf_worker_ctl(w);
	w->ctl_sent = w->ctl_done;
}

int
wf_pollset_init(struct wf_dataplane *dp, struct wf_worker *w)
{
	w->all = rte_zmalloc("weft_polls", sizeof(struct wf_poll) * WF_POLLSET_CAP, RTE_CACHE_LINE_SIZE);
	w->act = rte_zmalloc("weft_active", sizeof(struct wf_poll) * WF_POLLSET_CAP, RTE_CACHE_LINE_SIZE);
	w->pos = rte_malloc("weft_pos", sizeof(uint32_t) * WF_POLLSET_CAP, RTE_CACHE_LINE_SIZE);
	char name[RTE_RING_NAMESIZE];
	snprintf(name, sizeof(name), "wf_ctl_%u_%p", w->idx, (void *)dp);
	w->ctl = rte_ring_create_elem(name, sizeof(struct wf_msg), 1024, (int)rte_socket_id(),
				      RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (w->all == NULL || w->act == NULL || w->pos == NULL || w->ctl == NULL)
		return -ENOMEM;
	memset(w->pos, 0xff, sizeof(uint32_t) * WF_POLLSET_CAP);
	return 0;
}

void
wf_pollset_fini(struct wf_worker *w)
{
	rte_free(w->all);
	rte_free(w->act);
	rte_free(w->pos);
	rte_ring_free(w->ctl);
	w->all = w->act = NULL;
	w->pos = NULL;
	w->ctl = NULL;
}

/* Hand a message to a worker: applied at once when no worker lcore runs
 * (the control thread is the poller then), else queued for the worker. */
static void
wf_pollset_send(struct wf_dataplane *dp, struct wf_worker *w, const struct wf_msg *m)
{
	if (!dp->started || !w->launched) {
		wf_pollset_apply(w, m);
		return;
	}
	while (rte_ring_sp_enqueue_elem(w->ctl, (void *)(uintptr_t)m, sizeof(*m)) != 0)
		rte_delay_us_sleep(10); /* full: the worker drains it between two polls */
	__atomic_store_n(&w->ctl_sent, w->ctl_sent + 1, __ATOMIC_RELEASE);
}

/* Wait until the worker has applied everything it was sent. */
static void
wf_pollset_wait(struct wf_dataplane *dp, struct wf_worker *w)
{
	if (!dp->started || !w->launched)
		return;
	for (uint32_t spins = 0; __atomic_load_n(&w->ctl_done, __ATOMIC_ACQUIRE) != w->ctl_sent; spins++) {
		if (spins < 1000)
			rte_pause();
		else
			rte_delay_us_sleep(10);
	}
}

int
wf_pollset_add(struct wf_dataplane *dp, uint32_t worker, const struct wf_poll *poll)
{
	if (dp->n_pending_polls == dp->cap_pending_polls) {
		uint32_t cap = dp->cap_pending_polls ? dp->cap_pending_polls * 2 : 64;
		void *p = realloc(dp->pending_polls, sizeof(*dp->pending_polls) * cap);
		if (p == NULL)
			return -ENOMEM;
		dp->pending_polls = p;
		dp->cap_pending_polls = cap;
	}
	dp->pending_polls[dp->n_pending_polls++] = (struct wf_pending_poll){ .worker = worker, .poll = *poll };
	return 0;
}

/* After a publish: the queues of the ports it brought go to their workers
 * (their table entries are in place: nothing arrives before its way out). */
int
wf_pollset_flush(struct wf_dataplane *dp)
{
	for (uint32_t i = 0; i < dp->n_pending_polls; i++) {
		struct wf_pending_poll *pp = &dp->pending_polls[i];
		struct wf_msg m = { .type = WF_MSG_ADD, .port = pp->poll.port, .poll = pp->poll };
		wf_pollset_send(dp, &dp->workers[pp->worker], &m);
	}
	dp->n_pending_polls = 0;
	return 0;
}

/* Take a port's queues off every worker; returns when none polls them. */
void
wf_pollset_drop_port(struct wf_dataplane *dp, uint16_t port)
{
	/* Not yet handed over: forget them. */
	uint32_t k = 0;
	for (uint32_t i = 0; i < dp->n_pending_polls; i++)
		if (dp->pending_polls[i].poll.port != port)
			dp->pending_polls[k++] = dp->pending_polls[i];
	dp->n_pending_polls = k;
	const struct wf_port_ctl *pc = &dp->ports[port];
	bool told[WF_MAX_WORKERS] = { false };
	for (uint16_t q = 0; q < pc->nb_rxq; q++) {
		uint32_t wi = pc->rx_worker[q];
		if (wi >= dp->n_pollers || told[wi])
			continue;
		told[wi] = true;
		struct wf_msg m = { .type = WF_MSG_DEL, .port = port };
		wf_pollset_send(dp, &dp->workers[wi], &m);
	}
	for (uint32_t wi = 0; wi < dp->n_pollers; wi++)
		if (told[wi])
			wf_pollset_wait(dp, &dp->workers[wi]);
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
	if (unlikely(__atomic_load_n(&w->ctl_sent, __ATOMIC_ACQUIRE) != w->ctl_done))
		wf_worker_ctl(w);
	if (unlikely(__atomic_load_n(&w->wakes, __ATOMIC_RELAXED) != w->wakes_seen))
		wf_worker_rebuild(w);
	const struct wf_table *t = __atomic_load_n(&w->dp->table, __ATOMIC_ACQUIRE);
	struct wf_poll *pl = w->act;
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
		if (unlikely(w->hooks)) { /* a capture (core/capture.c) or trace (core/trace.c) */
			if (w->hooks & WF_HOOK_CAPTURE)
				wf_capture_rx(w, pl[i].port, pkts, n);
			wf_trace_burst(w, t, pl[i].port, pl[i].queue, pkts, n);
			continue;
		}
		wf_dispatch_rx(w, t, pl[i].port, pkts, n);
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
