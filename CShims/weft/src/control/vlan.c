/*
 * vlan.c: control side of 802.1Q VLAN tunnels on an uplink port (the
 * per-packet work is vlan_node.c and uplink_node.c). Hitless.
 */
#include <errno.h>

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
	for (uint32_t t = 0; t < dp->cfg.max_xconnects; t++) {
		const struct wf_tunnel_ctl *tc = &dp->tunnels[t];
		if (tc->kind == WF_TUN_VLAN && tc->uplink == uplink && tc->vlan_id == vlan_id) {
			wf_set_error("VLAN %u on %s is already in use", vlan_id, pc->devname);
			return -EEXIST;
		}
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
	int rc = wf_table_publish_add(dp);
	if (rc != 0) {
		dp->tunnels[free_t].kind = 0;
		dp->n_tunnels_on[uplink]--;
		dp->n_vlans_on[uplink]--;
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
	tc->kind = 0;
	dp->n_tunnels_on[saved.uplink]--;
	if (saved.kind == WF_TUN_VLAN)
		dp->n_vlans_on[saved.uplink]--;
	if (dp->hold > 0) {
		/* Published at release; slot and neighbour are released after it. */
		if (saved.kind == WF_TUN_VXLAN)
			wf_vxk_remove(dp, t);
		tc->retiring = true;
		tc->retired_kind = saved.kind;
		dp->n_retiring++;
		dp->pending = true;
		return 0;
	}
	int rc = wf_table_publish(dp);
	if (rc != 0) {
		*tc = saved;
		dp->n_tunnels_on[saved.uplink]++;
		if (saved.kind == WF_TUN_VLAN)
			dp->n_vlans_on[saved.uplink]++;
		return rc;
	}
	if (saved.kind == WF_TUN_VXLAN) {
		tc->vx = saved.vx; /* the key the index finds it by */
		wf_vxk_remove(dp, t);
		wf_nbr_release(dp, saved.nbr);
	}
	return 0;
}
