/*
 * vlan.c: control side of 802.1Q VLAN tunnels on an uplink port (the
 * per-packet work is vlan_node.c and uplink_node.c), removing any tunnel,
 * and the builder of the uplinks' VLAN maps. Hitless.
 */
#include <errno.h>
#include <stdlib.h>
#include <rte_malloc.h>

#include "wf_internal.h"

int
wf_vlan_add(wf_dataplane_t *dp, uint16_t uplink, uint16_t vlan_id, uint32_t *side)
{
	if (dp == NULL || side == NULL || uplink >= WF_MAX_PORTS)
		return -EINVAL;
	if (vlan_id >= WF_VLAN_IDS - 1) {
		wf_set_error("VLAN id %u out of range 0..4094", vlan_id);
		return -EINVAL;
	}
	struct wf_port_ctl *pc = &dp->ports[uplink];
	if (!pc->attached)
		return -ENODEV;
	if (pc->xc_slot != UINT32_MAX) {
		wf_set_error("%s is a plain cross-connect side; it cannot carry tunnels", pc->devname);
		return -EBUSY;
	}
	if (dp->vlan_tun[uplink] == NULL) {
		dp->vlan_tun[uplink] = malloc(sizeof(uint32_t) * WF_VLAN_IDS);
		if (dp->vlan_tun[uplink] == NULL)
			return -ENOMEM;
		memset(dp->vlan_tun[uplink], 0xff, sizeof(uint32_t) * WF_VLAN_IDS);
	}
	if (dp->vlan_tun[uplink][vlan_id] != UINT32_MAX) {
		wf_set_error("VLAN %u on %s is already in use", vlan_id, pc->devname);
		return -EEXIST;
	}
	uint32_t free_t = wf_tunnel_free_slot(dp);
	if (free_t == UINT32_MAX) {
		wf_set_error("all %u tunnel slots are in use", dp->cfg.max_xconnects);
		return -ENOSPC;
	}
	dp->tunnels[free_t] = (struct wf_tunnel_ctl){
		.kind = WF_TUN_VLAN, .uplink = uplink, .vlan_id = vlan_id, .xc_slot = UINT32_MAX };
	dp->n_tunnels_on[uplink]++;
	dp->n_vlans_on[uplink]++;
	dp->vlan_tun[uplink][vlan_id] = free_t;
	wf_dirty_side(dp, WF_SIDE_TUNNEL | free_t);
	int rc = wf_table_publish_add(dp);
	if (rc != 0) {
		dp->tunnels[free_t].kind = 0;
		dp->n_tunnels_on[uplink]--;
		dp->n_vlans_on[uplink]--;
		dp->vlan_tun[uplink][vlan_id] = UINT32_MAX;
		return rc;
	}
	*side = WF_SIDE_TUNNEL | free_t;
	return 0;
}

int
wf_tunnel_del(wf_dataplane_t *dp, uint32_t side)
{
	if (dp == NULL || !(side & WF_SIDE_TUNNEL))
		return -EINVAL;
	uint32_t t = side & ~WF_SIDE_TUNNEL;
	if (t >= dp->cfg.max_xconnects || dp->tunnels[t].kind == 0)
		return -ENOENT;
	struct wf_tunnel_ctl *tc = &dp->tunnels[t];
	if (tc->xc_slot != UINT32_MAX) {
		wf_set_error("tunnel is cross-connected; remove the cross-connect first");
		return -EBUSY;
	}
	struct wf_tunnel_ctl saved = *tc;
	if (dp->hold > 0 && wf_retire_later(dp, WF_SIDE_TUNNEL | t) != 0)
		return -ENOMEM;
	tc->kind = 0;
	tc->retired_kind = saved.kind; /* what the builders take out */
	dp->n_tunnels_on[saved.uplink]--;
	if (saved.kind == WF_TUN_VLAN) {
		dp->n_vlans_on[saved.uplink]--;
		dp->vlan_tun[saved.uplink][saved.vlan_id] = UINT32_MAX;
	}
	wf_dirty_side(dp, side);
	if (dp->hold > 0) {
		/* Published at release; slot and neighbour are released after it. */
		if (saved.kind == WF_TUN_VXLAN)
			wf_vxk_remove(dp, t);
		tc->retiring = true;
		tc->retired_kind = saved.kind;
		return 0;
	}
	int rc = wf_table_publish(dp);
	if (rc != 0) {
		*tc = saved;
		dp->n_tunnels_on[saved.uplink]++;
		if (saved.kind == WF_TUN_VLAN) {
			dp->n_vlans_on[saved.uplink]++;
			dp->vlan_tun[saved.uplink][saved.vlan_id] = t;
		}
		return rc;
	}
	if (saved.kind == WF_TUN_VXLAN) {
		tc->vx = saved.vx; /* the key the index finds it by */
		wf_vxk_remove(dp, t);
		wf_nbr_release(dp, saved.nbr);
	}
	return 0;
}

/*
 * The VLAN maps: an uplink with VLANs classifies by VLAN id through a map of
 * 4,096 ways (copied when one of its VLAN sides changes); a VXLAN-only uplink
 * has none (what is neither its VXLAN nor for its addresses is dropped as
 * not-for-uplink, not counted as an unknown VLAN).
 */
static int
wf_vlan_build_one(struct wf_dataplane *dp, struct wf_build *b, uint32_t ti)
{
	const struct wf_tunnel_ctl *tc = &dp->tunnels[ti];
	/* A removed tunnel keeps its uplink and id until its slot is reused,
	 * which is never before this publish. */
	uint16_t up = tc->uplink;
	bool removed = tc->kind == 0 && tc->retired_kind == WF_TUN_VLAN;
	if (tc->kind != WF_TUN_VLAN && !(removed && b->t->vlan[up] != NULL))
		return 0;
	if (dp->n_vlans_on[up] == 0) {
		if (wf_build_retire(b, b->t->vlan[up]) != 0)
			return -ENOMEM;
		b->t->vlan[up] = NULL;
		return 0;
	}
	if (b->t->vlan[up] == NULL || b->t->vlan[up] == (b->old ? b->old->vlan[up] : NULL)) {
		struct wf_fwd *m = wf_build_own(b, b->t->vlan[up], b->old ? b->old->vlan[up] : NULL,
						sizeof(struct wf_fwd) * WF_VLAN_IDS);
		if (m == NULL)
			return -ENOMEM;
		if (b->t->vlan[up] == NULL)
			for (uint32_t v = 0; v < WF_VLAN_IDS; v++)
				m[v] = (struct wf_fwd){ .out_port = WF_PORT_NONE };
		b->t->vlan[up] = m;
	}
	b->t->vlan[up][tc->vlan_id] = tc->kind == WF_TUN_VLAN ? wf_entry_for(dp, WF_SIDE_TUNNEL | ti)
							       : (struct wf_fwd){ .out_port = WF_PORT_NONE };
	b->sides++;
	return 0;
}

static int
wf_vlan_build(struct wf_dataplane *dp, struct wf_build *b)
{
	if (dp->dirty.all) {
		for (uint32_t t = 0; t < dp->cfg.max_xconnects; t++)
			if (dp->tunnels[t].kind == WF_TUN_VLAN) {
				int rc = wf_vlan_build_one(dp, b, t);
				if (rc)
					return rc;
			}
		return 0;
	}
	for (uint32_t i = 0; i < dp->dirty.n_tun; i++) {
		int rc = wf_vlan_build_one(dp, b, dp->dirty.tun[i]);
		if (rc)
			return rc;
	}
	return 0;
}

static void
wf_vlan_free(struct wf_table *t)
{
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		rte_free(t->vlan[p]);
		t->vlan[p] = NULL;
	}
}

const struct wf_builder wf_vlan_builder = { .name = "VLAN", .build = wf_vlan_build, .free = wf_vlan_free };
