/*
 * dataplane.c: creation and teardown of the dataplane (mempool, per-worker
 * counters, RCU), worker launch/stop, and counter reads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include "wf_internal.h"
#include "weft_test.h"
#include "weft_pktgen.h"

int
wf_dp_create(const struct wf_dp_config *cfg, wf_dataplane_t **out)
{
	if (cfg == NULL || out == NULL)
		return -EINVAL;
	if (cfg->n_workers > WF_MAX_WORKERS) {
		wf_set_error("at most %d workers", WF_MAX_WORKERS);
		return -EINVAL;
	}
	if (cfg->burst == 0 || cfg->burst > WF_MAX_BURST) {
		wf_set_error("burst must be 1..%d", WF_MAX_BURST);
		return -EINVAL;
	}
	if (cfg->max_xconnects == 0 || cfg->max_xconnects > (1u << 24) || cfg->mbufs < 64) {
		wf_set_error("max_xconnects must be 1..16777216 and mbufs >= 64");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < cfg->n_workers; i++) {
		unsigned lc = cfg->worker_lcores[i];
		if (lc >= RTE_MAX_LCORE || !rte_lcore_is_enabled(lc) ||
		    lc == rte_get_main_lcore()) {
			wf_set_error("worker lcore %u is not an enabled non-main EAL lcore", lc);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < i; j++)
			if (cfg->worker_lcores[j] == lc) {
				wf_set_error("worker lcore %u listed twice", lc);
				return -EINVAL;
			}
	}

	struct wf_dataplane *dp = rte_zmalloc("weft_dp", sizeof(*dp), RTE_CACHE_LINE_SIZE);
	if (dp == NULL)
		return -ENOMEM;
	dp->cfg = *cfg;
	dp->n_pollers = cfg->n_workers ? cfg->n_workers : 1;
	int rc = -ENOMEM;

	/* Unique name: a process may hold more than one dataplane (tests). */
	static uint32_t seq;
	char pool_name[RTE_MEMPOOL_NAMESIZE];
	snprintf(pool_name, sizeof(pool_name), "weft_mbufs_%u", seq++);
	dp->pool = rte_pktmbuf_pool_create(pool_name, cfg->mbufs, cfg->mbuf_cache, 0,
					   cfg->mbuf_data_room ? cfg->mbuf_data_room
							       : RTE_MBUF_DEFAULT_BUF_SIZE,
					   (int)rte_socket_id());
	if (dp->pool == NULL) {
		rc = -rte_errno;
		wf_set_error("cannot create mbuf pool of %u mbufs: %s", cfg->mbufs,
			     rte_strerror(rte_errno));
		goto fail;
	}

	pthread_mutex_init(&dp->port_lock, NULL);
	if (wf_underlay_init(dp) != 0 || wf_events_init(dp) != 0)
		goto fail;

	size_t qsz = rte_rcu_qsbr_get_memsize(dp->n_pollers);
	dp->qs = rte_zmalloc("weft_rcu", qsz, RTE_CACHE_LINE_SIZE);
	if (dp->qs == NULL || rte_rcu_qsbr_init(dp->qs, dp->n_pollers) != 0)
		goto fail;

	dp->xcs = calloc(cfg->max_xconnects, sizeof(*dp->xcs));
	dp->tunnels = calloc(cfg->max_xconnects, sizeof(*dp->tunnels));
	if (dp->xcs == NULL || dp->tunnels == NULL)
		goto fail;

	for (uint32_t i = 0; i < dp->n_pollers; i++) {
		struct wf_worker *w = &dp->workers[i];
		w->dp = dp;
		w->idx = i;
		w->txq = (uint16_t)i;
		w->lcore = cfg->n_workers ? cfg->worker_lcores[i] : rte_get_main_lcore();
		w->sleep_tsc = rte_get_tsc_hz() / 1000 * WF_SLEEP_MS;
		if (dp->cfg.punt_rate != 0) {
			/* Tokens (<< 32) per TSC cycle; a burst of a tenth of a second, at least 32.
			 * A gap longer than the time to fill the bucket just fills it (no overflow). */
			const uint64_t hz = rte_get_tsc_hz();
			w->punt_per_tsc32 = ((uint64_t)dp->cfg.punt_rate << 32) / hz;
			if (w->punt_per_tsc32 == 0)
				w->punt_per_tsc32 = 1;
			uint64_t burst = dp->cfg.punt_rate / 10 > 32 ? dp->cfg.punt_rate / 10 : 32;
			w->punt_burst32 = burst << 32;
			w->punt_full_tsc = w->punt_burst32 / w->punt_per_tsc32 + 1;
			w->punt_tokens = w->punt_burst32;
			w->punt_last_tsc = rte_rdtsc();
		}
		w->ifc = rte_zmalloc("weft_ifc", sizeof(*w->ifc) * WF_MAX_PORTS,
				     RTE_CACHE_LINE_SIZE);
		w->xcc = rte_zmalloc("weft_xcc", sizeof(*w->xcc) * cfg->max_xconnects,
				     RTE_CACHE_LINE_SIZE);
		if (w->ifc == NULL || w->xcc == NULL)
			goto fail;
		char rn[RTE_RING_NAMESIZE];
		snprintf(rn, sizeof(rn), "wf_sl_%u_%p", i, (void *)dp);
		w->sleepers = rte_ring_create(rn, 8192, (int)rte_socket_id(), RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (w->sleepers == NULL || wf_pollset_init(dp, w) != 0)
			goto fail;
		rte_rcu_qsbr_thread_register(dp->qs, i);
	}
	for (uint32_t i = 0; i < WF_MAX_PORTS; i++) {
		dp->ports[i].xc_slot = UINT32_MAX;
		dp->ports[i].eth = WF_PORT_NONE;
		dp->fp[i].eth = WF_PORT_NONE;
	}

	/* The stages that own table parts, in the order their parts are built
	 * (the tunnels' templates need the underlay; sides and groups last). */
	wf_builder_register(dp, &wf_ul_builder);
	wf_builder_register(dp, &wf_vlan_builder);
	wf_builder_register(dp, &wf_vxlan_builder);
	wf_builder_register(dp, &wf_side_builder);
	wf_builder_register(dp, &wf_p2mp_builder);
	/* The first table: no ports, nothing to poll. */
	if (wf_table_init(dp) != 0)
		goto fail;
	*out = dp;
	return 0;
fail:
	wf_dp_destroy(dp);
	return rc;
}

int
wf_dp_start(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return -EINVAL;
	if (dp->started)
		return -EALREADY;
	dp->stop = 0;
	for (uint32_t i = 0; i < dp->cfg.n_workers; i++) {
		struct wf_worker *w = &dp->workers[i];
		int rc = rte_eal_remote_launch(wf_worker_main, w, w->lcore);
		if (rc != 0) {
			wf_set_error("cannot launch worker on lcore %u: %s", w->lcore,
				     rte_strerror(-rc));
			wf_dp_stop(dp);
			return rc;
		}
		w->launched = true;
	}
	int rc = wf_underlay_start(dp);
	if (rc != 0) {
		wf_set_error("cannot start the underlay thread: %s", strerror(-rc));
		wf_dp_stop(dp);
		return rc;
	}
	rc = wf_events_start(dp);
	if (rc != 0) {
		wf_set_error("cannot start the events thread: %s", strerror(-rc));
		wf_dp_stop(dp);
		return rc;
	}
	dp->started = true;
	return 0;
}

int
wf_dp_stop(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return -EINVAL;
	wf_underlay_stop(dp);
	if (dp->ev != NULL)
		wf_events_stop(dp);
	__atomic_store_n(&dp->stop, 1, __ATOMIC_RELEASE);
	for (uint32_t i = 0; i < dp->cfg.n_workers; i++) {
		struct wf_worker *w = &dp->workers[i];
		if (w->launched) {
			rte_eal_wait_lcore(w->lcore);
			w->launched = false;
			wf_pollset_settle(w);
		}
	}
	dp->started = false;
	return 0;
}

void
wf_dp_destroy(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return;
	wf_dp_stop(dp);
	/* Cross-connects and tunnels go in one publish, not one each. */
	wf_dp_hold(dp);
	if (dp->xcs != NULL)
		for (uint32_t i = 0; i < dp->cfg.max_xconnects; i++)
			if (dp->xcs[i].used && !dp->xcs[i].p2mp)
				wf_xc_del(dp, i);
	for (uint32_t i = 0; i < WF_MAX_P2MP; i++)
		if (dp->p2mp[i].kind != 0)
			wf_p2mp_del(dp, i);
	if (dp->tunnels != NULL)
		for (uint32_t i = 0; i < dp->cfg.max_xconnects; i++)
			if (dp->tunnels[i].kind != 0)
				wf_tunnel_del(dp, WF_SIDE_TUNNEL | i);
	wf_dp_release(dp);
	for (uint16_t p = 0; p < WF_MAX_PORTS; p++)
		if (dp->ul_ctl[p] != NULL)
			wf_underlay_clear(dp, p);
	for (uint16_t p = 0; p < WF_MAX_PORTS; p++)
		if (dp->ports[p].attached)
			wf_port_detach(dp, p);
	for (uint32_t i = 0; i < WF_MAX_WORKERS; i++) {
		rte_free(dp->workers[i].ifc);
		rte_free(dp->workers[i].xcc);
		rte_ring_free(dp->workers[i].sleepers);
		wf_pollset_fini(&dp->workers[i]);
	}
	free(dp->pending_polls);
	wf_trace_free(dp);
	wf_capture_free(dp);
	wf_underlay_fini(dp);
	wf_events_fini(dp);
	wf_table_fini(dp);
	free(dp->xcs);
	free(dp->tunnels);
	free(dp->offload);
	free(dp->vxk);
	rte_free(dp->qs);
	rte_mempool_free(dp->pool);
	rte_free(dp);
}

int
wf_dp_poll_once(wf_dataplane_t *dp, uint32_t worker)
{
	if (dp == NULL || worker >= dp->n_pollers || dp->started)
		return -EINVAL;
	struct wf_worker *w = &dp->workers[worker];
	rte_rcu_qsbr_thread_online(dp->qs, worker);
	w->loop_tsc = rte_rdtsc();
	int n = wf_worker_poll(w);
	rte_rcu_qsbr_quiescent(dp->qs, worker);
	/* Offline between calls, or a publish from this thread would wait forever. */
	rte_rcu_qsbr_thread_offline(dp->qs, worker);
	return n;
}

uint32_t
wf_dp_mbufs_available(const wf_dataplane_t *dp)
{
	return dp ? rte_mempool_avail_count(dp->pool) : 0;
}

/* Counters are written by one worker each; reads are relaxed 64-bit loads. */
#define WF_RD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

int
wf_if_stats(wf_dataplane_t *dp, uint16_t port, struct wf_if_stats *s)
{
	if (dp == NULL || s == NULL || port >= WF_MAX_PORTS)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	for (uint32_t i = 0; i < dp->n_pollers; i++) {
		const struct wf_if_counters *c = &dp->workers[i].ifc[port];
		s->rx_packets += WF_RD(c->rx_packets);
		s->rx_bytes += WF_RD(c->rx_bytes);
		s->tx_packets += WF_RD(c->tx_packets);
		s->tx_bytes += WF_RD(c->tx_bytes);
		for (int r = 0; r < WF_DROP_MAX; r++)
			s->drops[r] += WF_RD(c->drops[r]);
	}
	struct wf_port_ctl *pc = &dp->ports[port];
	pthread_mutex_lock(&dp->port_lock);
	if (pc->attached && pc->ops != NULL && pc->ops->stats != NULL)
		pc->ops->stats(dp, pc, s);
	pthread_mutex_unlock(&dp->port_lock);
	return 0;
}

int
wf_xc_stats(const wf_dataplane_t *dp, uint32_t slot, struct wf_xc_stats *s)
{
	if (dp == NULL || s == NULL || slot >= dp->cfg.max_xconnects)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	for (uint32_t i = 0; i < dp->n_pollers; i++) {
		const struct wf_xc_counters *c = &dp->workers[i].xcc[slot];
		for (int d = 0; d < 2; d++) {
			s->packets[d] += WF_RD(c->packets[d]);
			s->bytes[d] += WF_RD(c->bytes[d]);
			s->drops[d] += WF_RD(c->drops[d]);
		}
	}
	return 0;
}

int
wf_worker_stats(const wf_dataplane_t *dp, uint32_t worker, struct wf_worker_stats *s)
{
	if (dp == NULL || s == NULL || worker >= dp->n_pollers)
		return -EINVAL;
	const struct wf_worker *w = &dp->workers[worker];
	memset(s, 0, sizeof(*s));
	s->lcore = w->lcore;
	s->polls_assigned = __atomic_load_n(&w->n_all, __ATOMIC_RELAXED);
	s->polls_active = __atomic_load_n(&w->n_active, __ATOMIC_RELAXED);
	s->busy_cycles = WF_RD(w->busy_cycles);
	s->idle_cycles = WF_RD(w->idle_cycles);
	s->busy_iterations = WF_RD(w->busy_iter);
	s->idle_iterations = WF_RD(w->idle_iter);
	s->rx_packets = WF_RD(w->rx_packets);
	for (int r = 0; r < WF_DROP_MAX; r++)
		s->drops[r] = WF_RD(w->drops[r]);
	return 0;
}
