/*
 * xconnect.c: the P2P cross-connect, control side (the burst functions are
 * xconnect_node.c and uplink_node.c): it joins two sides (sides.c) and owns
 * the counter slots every connection uses. Both calls are hitless.
 */
#include <errno.h>
#include <string.h>

#include "wf_internal.h"

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
	wf_dirty_side(dp, a);
	wf_dirty_side(dp, b);
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
	/* The NIC's rules first: the software path takes the frames until it goes too. */
	wf_xc_offload_remove(dp, slot);
	x->used = false;
	wf_dirty_side(dp, x->a);
	wf_dirty_side(dp, x->b);
	if (dp->hold > 0) {
		/* Published at release; the slot is not reused before. */
		if (wf_retire_later(dp, slot) != 0) {
			x->used = true;
			return -ENOMEM;
		}
		x->retiring = true;
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
