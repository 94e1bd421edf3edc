/*
 * table.c: build the workers' table from the control-side state and publish
 * it hitlessly: one atomic pointer store, then wait for every worker to pass
 * a quiescent point (DPDK RCU) before freeing the old table. Workers never
 * see a half-built table and never wait for the control thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wf_internal.h"

int
wf_table_publish(struct wf_dataplane *dp)
{
	struct wf_table *t = malloc(sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++)
		t->fwd[p].out_port = WF_PORT_NONE;

	for (uint32_t s = 0; s < dp->cfg.max_xconnects; s++) {
		const struct wf_xc_ctl *x = &dp->xcs[s];
		if (!x->used)
			continue;
		t->fwd[x->a] = (struct wf_fwd){ .out_port = x->b, .dir = 0, .xc_slot = s };
		t->fwd[x->b] = (struct wf_fwd){ .out_port = x->a, .dir = 1, .xc_slot = s };
	}
	for (uint16_t p = 0; p < WF_MAX_PORTS; p++) {
		const struct wf_port_ctl *pc = &dp->ports[p];
		if (!pc->attached)
			continue;
		for (uint16_t q = 0; q < pc->nb_rxq; q++) {
			uint32_t w = pc->rx_worker[q];
			t->polls[w][t->n_polls[w]++] = (struct wf_poll){ .port = p, .queue = q };
		}
	}

	struct wf_table *old = __atomic_exchange_n(&dp->table, t, __ATOMIC_ACQ_REL);
	/* The control thread is not an RCU reader: RTE_QSBR_THRID_INVALID. */
	rte_rcu_qsbr_synchronize(dp->qs, RTE_QSBR_THRID_INVALID);
	free(old);
	return 0;
}
