/*
 * xconnect.c: control side of the P2P cross-connect (the burst functions are
 * xconnect_node.c and uplink_node.c). A cross-connect joins two sides: ports
 * or tunnels (vlan.c). Both calls are hitless: the new table is published
 * and the old one reclaimed after an RCU grace period.
 */
#include <errno.h>
#include <string.h>

#include "wf_internal.h"

/* The xc_slot field of a side, or NULL when the side does not exist. */
uint32_t *
wf_side_slot(struct wf_dataplane *dp, uint32_t side, const char **what)
{
	if (side & WF_SIDE_TUNNEL) {
		uint32_t t = side & ~WF_SIDE_TUNNEL;
		if (t >= dp->cfg.max_xconnects || dp->tunnels[t].kind == 0)
			return NULL;
		if (what)
			*what = "tunnel";
		return &dp->tunnels[t].xc_slot;
	}
	if (side >= WF_MAX_PORTS || !dp->ports[side].attached)
		return NULL;
	if (what)
		*what = dp->ports[side].devname;
	return &dp->ports[side].xc_slot;
}

int
wf_xc_add(wf_dataplane_t *dp, uint32_t a, uint32_t b, uint32_t *slot)
{
	if (dp == NULL || slot == NULL)
		return -EINVAL;
	if (a == b) {
		wf_set_error("a cross-connect needs two different sides");
		return -EINVAL;
	}
	const char *na = "", *nb = "";
	uint32_t *sa = wf_side_slot(dp, a, &na), *sb = wf_side_slot(dp, b, &nb);
	if (sa == NULL || sb == NULL)
		return -ENODEV;
	if (*sa != UINT32_MAX || *sb != UINT32_MAX) {
		wf_set_error("%s is already cross-connected", *sa != UINT32_MAX ? na : nb);
		return -EBUSY;
	}
	for (int i = 0; i < 2; i++) {
		uint32_t s = i ? b : a;
		if (!(s & WF_SIDE_TUNNEL) && dp->n_tunnels_on[s] > 0) {
			wf_set_error("%s carries tunnels (an uplink); cross-connect one of its tunnels instead",
				     dp->ports[s].devname);
			return -EBUSY;
		}
	}
	uint32_t s;
	int rc = wf_slot_alloc(dp, &s);
	if (rc)
		return rc;
	dp->xcs[s] = (struct wf_xc_ctl){ .used = true, .a = a, .b = b };
	*sa = s;
	*sb = s;
	rc = wf_table_publish_add(dp);
	if (rc != 0) {
		dp->xcs[s].used = false;
		*sa = *sb = UINT32_MAX;
		return rc;
	}
	*slot = s;
	return 0;
}

/* A free counter slot, zeroed (no published table names it). Marked used by the caller. */
int
wf_slot_alloc(struct wf_dataplane *dp, uint32_t *slot)
{
	const uint32_t n = dp->cfg.max_xconnects;
	uint32_t s = n;
	/* Round from the last slot handed out: a slot just freed is reused last. */
	for (uint32_t k = 0; k < n; k++) {
		uint32_t c = (dp->xc_hint + k) % n;
		if (!dp->xcs[c].used && !dp->xcs[c].retiring) {
			s = c;
			dp->xc_hint = (c + 1) % n;
			break;
		}
	}
	if (s == n) {
		wf_set_error("all %u cross-connect slots are in use", dp->cfg.max_xconnects);
		return -ENOSPC;
	}
	for (uint32_t w = 0; w < dp->n_pollers; w++)
		memset(&dp->workers[w].xcc[s], 0, sizeof(struct wf_xc_counters));
	*slot = s;
	return 0;
}

int
wf_xc_del(wf_dataplane_t *dp, uint32_t slot)
{
	if (dp == NULL || slot >= dp->cfg.max_xconnects)
		return -EINVAL;
	struct wf_xc_ctl *x = &dp->xcs[slot];
	if (!x->used || x->p2mp)
		return -ENOENT;
	x->used = false;
	if (dp->hold > 0) {
		/* Published at release; the slot is not reused before. */
		x->retiring = true;
		dp->n_retiring++;
		dp->pending = true;
		uint32_t *sa = wf_side_slot(dp, x->a, NULL), *sb = wf_side_slot(dp, x->b, NULL);
		if (sa)
			*sa = UINT32_MAX;
		if (sb)
			*sb = UINT32_MAX;
		return 0;
	}
	int rc = wf_table_publish(dp);
	if (rc != 0) {
		x->used = true;
		return rc;
	}
	uint32_t *sa = wf_side_slot(dp, x->a, NULL), *sb = wf_side_slot(dp, x->b, NULL);
	if (sa)
		*sa = UINT32_MAX;
	if (sb)
		*sb = UINT32_MAX;
	return 0;
}
