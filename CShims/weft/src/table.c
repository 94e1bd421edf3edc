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

void
wf_table_free(struct wf_table *t)
{
	if (t == NULL)
		return;
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++)
		free(t->vlan[p]);
	free(t);
}

/* Where the table says what to do with frames coming from `side`. */
static struct wf_fwd *
wf_entry_from(const struct wf_dataplane *dp, struct wf_table *t, uint32_t side)
{
	if (!(side & WF_SIDE_TUNNEL))
		return &t->fwd[side];
	const struct wf_tunnel_ctl *tc = &dp->tunnels[side & ~WF_SIDE_TUNNEL];
	return &t->vlan[tc->uplink][tc->vlan_id];
}

/* How a frame reaches `side`: the port it leaves on and the header it gets. */
static struct wf_fwd
wf_way_to(const struct wf_dataplane *dp, uint32_t side, uint32_t slot, uint8_t dir)
{
	struct wf_fwd f = { .out_port = (uint16_t)side, .dir = dir, .action = WF_ACT_FWD, .xc_slot = slot };
	if (side & WF_SIDE_TUNNEL) {
		const struct wf_tunnel_ctl *tc = &dp->tunnels[side & ~WF_SIDE_TUNNEL];
		f.out_port = tc->uplink;
		if (tc->vlan_id != WF_VLAN_RAW) {
			f.action = WF_ACT_VLAN_PUSH;
			f.vlan_tci = tc->vlan_id;
		}
	}
	return f;
}

int
wf_table_publish(struct wf_dataplane *dp)
{
	struct wf_table *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		t->fwd[p].out_port = WF_PORT_NONE;
		if (dp->n_tunnels_on[p] == 0)
			continue;
		t->vlan[p] = malloc(sizeof(struct wf_fwd) * WF_VLAN_IDS);
		if (t->vlan[p] == NULL) {
			wf_table_free(t);
			return -ENOMEM;
		}
		for (uint32_t v = 0; v < WF_VLAN_IDS; v++)
			t->vlan[p][v] = (struct wf_fwd){ .out_port = WF_PORT_NONE };
	}

	for (uint32_t s = 0; s < dp->cfg.max_xconnects; s++) {
		const struct wf_xc_ctl *x = &dp->xcs[s];
		if (!x->used)
			continue;
		*wf_entry_from(dp, t, x->a) = wf_way_to(dp, x->b, s, 0);
		*wf_entry_from(dp, t, x->b) = wf_way_to(dp, x->a, s, 1);
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
	wf_table_free(old);
	return 0;
}
