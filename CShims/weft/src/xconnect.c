/*
 * xconnect.c: control side of the P2P cross-connect (the burst function is
 * xconnect_node.c). Both calls are hitless: the new table is published and
 * the old one reclaimed after an RCU grace period.
 */
#include <errno.h>
#include <string.h>

#include "wf_internal.h"

int
wf_xc_add(wf_dataplane_t *dp, uint16_t a, uint16_t b, uint32_t *slot)
{
	if (dp == NULL || slot == NULL || a >= WF_MAX_PORTS || b >= WF_MAX_PORTS)
		return -EINVAL;
	if (a == b) {
		wf_set_error("a cross-connect needs two different interfaces");
		return -EINVAL;
	}
	struct wf_port_ctl *pa = &dp->ports[a], *pb = &dp->ports[b];
	if (!pa->attached || !pb->attached)
		return -ENODEV;
	if (pa->xc_slot != UINT32_MAX || pb->xc_slot != UINT32_MAX) {
		wf_set_error("%s is already cross-connected",
			     pa->xc_slot != UINT32_MAX ? pa->devname : pb->devname);
		return -EBUSY;
	}
	uint32_t s;
	for (s = 0; s < dp->cfg.max_xconnects; s++)
		if (!dp->xcs[s].used)
			break;
	if (s == dp->cfg.max_xconnects) {
		wf_set_error("all %u cross-connect slots are in use", dp->cfg.max_xconnects);
		return -ENOSPC;
	}
	/* The slot is unused and no published table names it: safe to zero. */
	for (uint32_t w = 0; w < dp->n_pollers; w++)
		memset(&dp->workers[w].xcc[s], 0, sizeof(struct wf_xc_counters));
	dp->xcs[s] = (struct wf_xc_ctl){ .used = true, .a = a, .b = b };
	pa->xc_slot = s;
	pb->xc_slot = s;
	int rc = wf_table_publish(dp);
	if (rc != 0) {
		dp->xcs[s].used = false;
		pa->xc_slot = pb->xc_slot = UINT32_MAX;
		return rc;
	}
	*slot = s;
	return 0;
}

int
wf_xc_del(wf_dataplane_t *dp, uint32_t slot)
{
	if (dp == NULL || slot >= dp->cfg.max_xconnects)
		return -EINVAL;
	struct wf_xc_ctl *x = &dp->xcs[slot];
	if (!x->used)
		return -ENOENT;
	x->used = false;
	int rc = wf_table_publish(dp);
	if (rc != 0) {
		x->used = true;
		return rc;
	}
	dp->ports[x->a].xc_slot = UINT32_MAX;
	dp->ports[x->b].xc_slot = UINT32_MAX;
	return 0;
}
