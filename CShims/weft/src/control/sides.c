/*
 * sides.c: what a cross-connect, a group or a domain joins (a port, or a
 * tunnel on an uplink), and the way frames from each side go: nowhere,
 * across its cross-connect, or into its group or domain. The builders place
 * these ways: the root's entries for ports (here), an uplink's VLAN map and
 * the VXLAN decap keys for tunnels (tunnel.c). Read only: the connections'
 * own files change the control state.
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

/* The way frames from a side in a group or domain go (wf_entry_for). */
static struct wf_fwd
wf_p2mp_entry(const struct wf_dataplane *dp, const struct wf_xc_ctl *x, uint32_t slot, uint32_t side)
{
	const struct wf_fwd none = { .out_port = WF_PORT_NONE };
	uint32_t id = x->group;
	const struct wf_p2mp_ctl *g = id < WF_MAX_P2MP ? &dp->p2mp[id] : NULL;
	if (g == NULL || g->kind == 0)
		return none;
	if (g->kind == WF_P2MP_REPLICATE && side == g->ingress)
		return (struct wf_fwd){ .out_port = 0, .dir = 1, .action = WF_ACT_REPLICATE, .xc_slot = g->ingress_slot, .tun = id };
	for (uint32_t i = 0; i < g->n; i++) {
		if (g->m[i].side != side)
			continue;
		if (g->kind == WF_P2MP_REPLICATE)
			return wf_way_to(dp, g->ingress, slot, 1);
		return (struct wf_fwd){ .out_port = 0, .dir = 1, .action = WF_ACT_BRIDGE, .xc_slot = slot,
					.vlan_tci = (uint16_t)i, .tun = id };
	}
	return none; /* it left the group in this change */
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

