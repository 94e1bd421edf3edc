/*
 * xconnect.c: sides and the P2P cross-connect, control side (the burst
 * functions are xconnect_node.c and uplink_node.c). A side is a port or a
 * tunnel (vlan.c, vxlan.c); a cross-connect joins two. This file says what
 * way frames from a side take (wf_entry_for) and builds the entries of the
 * sides that are ports; the tunnels' builders place their sides' entries.
 * Both calls are hitless.
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

const uint32_t *
wf_side_slot_c(const struct wf_dataplane *dp, uint32_t side)
{
	return wf_side_slot((struct wf_dataplane *)(uintptr_t)dp, side, NULL);
}

/* How a frame reaches `side`: the port it leaves on and the header it gets. */
struct wf_fwd
wf_way_to(const struct wf_dataplane *dp, uint32_t side, uint32_t slot, uint8_t dir)
{
	struct wf_fwd f = { .out_port = (uint16_t)side, .dir = dir, .action = WF_ACT_FWD, .xc_slot = slot };
	if (side & WF_SIDE_TUNNEL) {
		uint32_t ti = side & ~WF_SIDE_TUNNEL;
		const struct wf_tunnel_ctl *tc = &dp->tunnels[ti];
		f.out_port = tc->uplink;
		if (tc->kind == WF_TUN_VXLAN) {
			f.action = WF_ACT_VXLAN_ENCAP;
			f.tun = ti;
		} else if (tc->vlan_id != WF_VLAN_RAW) {
			f.action = WF_ACT_VLAN_PUSH;
			f.vlan_tci = tc->vlan_id;
		}
	}
	return f;
}

/* The way frames from a side go, from the control state: nowhere, across
 * its cross-connect, or into its group or domain. */
struct wf_fwd
wf_entry_for(const struct wf_dataplane *dp, uint32_t side)
{
	const struct wf_fwd none = { .out_port = WF_PORT_NONE };
	const uint32_t *ss = wf_side_slot_c(dp, side);
	if (ss == NULL || *ss == UINT32_MAX)
		return none;
	const struct wf_xc_ctl *x = &dp->xcs[*ss];
	if (!x->used)
		return none;
	if (x->p2mp)
		return wf_p2mp_entry(dp, x, *ss, side);
	return side == x->a ? wf_way_to(dp, x->b, *ss, 0) : wf_way_to(dp, x->a, *ss, 1);
}

/* The sides that are ports: their entries in the root. */
static int
wf_side_build(struct wf_dataplane *dp, struct wf_build *b)
{
	for (uint32_t w = 0; w < WF_MAX_PORTS / 64; w++) {
		uint64_t bits = dp->dirty.all ? ~0ull : dp->dirty.port[w];
		while (bits) {
			uint32_t p = w * 64 + (uint32_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			b->t->fwd[p] = wf_entry_for(dp, p);
			b->sides++;
		}
	}
	return 0;
}

const struct wf_builder wf_side_builder = { .name = "sides", .build = wf_side_build };

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
