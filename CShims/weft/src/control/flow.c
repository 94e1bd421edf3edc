/*
 * flow.c: a P2P cross-connect switched by the NIC (rte_flow transfer rules
 * on an eswitch: ConnectX in switchdev mode, its representors as DPDK
 * ports), control side. One rule per direction:
 *
 *   from a port:         REPRESENTED_PORT(in) ETH
 *   from a VLAN side:    REPRESENTED_PORT(uplink) ETH VLAN(vid)        -> OF_POP_VLAN
 *   from a VXLAN side:   REPRESENTED_PORT(uplink) ETH IPV4|IPV6(remote -> local)
 *                        UDP(dst = local port) VXLAN(vni)              -> VXLAN_DECAP
 *   to a port:           -> REPRESENTED_PORT(out)
 *   to a VLAN side:      -> OF_PUSH_VLAN(0x8100) OF_SET_VLAN_VID(vid) REPRESENTED_PORT(uplink)
 *   to a VXLAN side:     -> VXLAN_ENCAP(ETH(uplink MAC -> next hop MAC) IPV4|IPV6
 *                           UDP(dst port) VXLAN(vni)) REPRESENTED_PORT(uplink)
 *   and always COUNT, in a transfer rule (attr.transfer) made on the ports'
 *   transfer proxy.
 *
 * The software path is never taken away: a connection forwards in software
 * until its rules are in, and stays there when a side is not a DPDK ethdev
 * (Weft's own memif/AF_PACKET/AF_XDP ports), the ports have no common
 * transfer proxy, a VXLAN next hop is unresolved, or the PMD says no
 * (rte_flow_validate); the reason is kept and shown. Offloaded frames never
 * reach a worker: their counts come from the rules' COUNT actions and are
 * added to the software counters by the caller.
 *
 * Control thread only (as wf_xc_add). Untested on hardware: this machine has
 * no eswitch; the tests check the rules field by field (wf_xc_offload_describe)
 * and the fallback on the ports they have.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_ip.h>
#include <rte_log.h>

#include "wf_internal.h"

#define WF_FLOW_ITEMS 8
#define WF_FLOW_ACTIONS 8

/* One rule with the storage its items and actions point into. */
struct wf_flow_rule {
	struct rte_flow_attr attr;
	struct rte_flow_item pattern[WF_FLOW_ITEMS];
	struct rte_flow_action actions[WF_FLOW_ACTIONS];
	uint16_t proxy; /* the port the rule is made on */
	bool built;     /* pattern and actions complete (the proxy may still be missing) */
	bool vxlan_encap; /* an encap rule: it carries the next hop's MAC */
	uint64_t encap_mac; /* that MAC, as dp->nbr_mac holds it */
	struct rte_flow_item_ethdev in, in_mask;
	struct rte_flow_item_vlan vlan, vlan_mask;
	struct rte_flow_item_ipv4 ip4, ip4_mask;
	struct rte_flow_item_ipv6 ip6, ip6_mask;
	struct rte_flow_item_udp udp, udp_mask;
	struct rte_flow_item_vxlan vxlan, vxlan_mask;
	struct rte_flow_action_ethdev out;
	struct rte_flow_action_of_push_vlan push;
	struct rte_flow_action_of_set_vlan_vid vid;
	struct rte_flow_action_count count;
	/* VXLAN_ENCAP's definition: the outer headers as items. */
	struct rte_flow_action_vxlan_encap encap;
	struct rte_flow_item def[5];
	struct rte_flow_item_eth d_eth;
	struct rte_flow_item_ipv4 d_ip4;
	struct rte_flow_item_ipv6 d_ip6;
	struct rte_flow_item_udp d_udp;
	struct rte_flow_item_vxlan d_vxlan;
};

struct wf_offload {
	bool tried, on;
	uint8_t mode;
	struct rte_flow *flow[2];
	uint16_t proxy[2];
	char why[WF_OFFLOAD_WHY];
	uint64_t packets[2], bytes[2]; /* the current rules' last counts read (a failed query keeps them) */
	uint64_t base_packets[2], base_bytes[2]; /* what rules replaced or gone had counted */
	uint64_t encap_mac[2]; /* a VXLAN encap rule's next-hop MAC; 0: no encap that way */
};

static void
vni_bytes(uint8_t out[3], uint32_t vni)
{
	out[0] = (uint8_t)(vni >> 16);
	out[1] = (uint8_t)(vni >> 8);
	out[2] = (uint8_t)vni;
}

/* The DPDK port behind a side (a port, or a tunnel's uplink), or why there is none. */
static int
side_eth(const struct wf_dataplane *dp, uint32_t side, uint16_t *eth, const struct wf_tunnel_ctl **tun,
	 char *why, size_t wl)
{
	uint16_t p = (uint16_t)side;
	*tun = NULL;
	if (side & WF_SIDE_TUNNEL) {
		*tun = &dp->tunnels[side & ~WF_SIDE_TUNNEL];
		p = (*tun)->uplink;
	}
	const struct wf_port_ctl *pc = &dp->ports[p];
	if (pc->eth == WF_PORT_NONE) {
		snprintf(why, wl, "%s is a port of Weft's own driver, not a NIC's (no DPDK ethdev to offload to)", pc->devname);
		return -EOPNOTSUPP;
	}
	*eth = pc->eth;
	return 0;
}

/* The rule for frames from side `from` to side `to`. */
static int
build_rule(struct wf_dataplane *dp, uint32_t from, uint32_t to, struct wf_flow_rule *r, char *why, size_t wl)
{
	memset(r, 0, sizeof(*r));
	uint16_t in_eth, out_eth;
	const struct wf_tunnel_ctl *tin, *tout;
	int rc = side_eth(dp, from, &in_eth, &tin, why, wl);
	if (rc == 0)
		rc = side_eth(dp, to, &out_eth, &tout, why, wl);
	if (rc)
		return rc;
	r->attr.transfer = 1;
	unsigned ni = 0, na = 0;

	r->in.port_id = in_eth;
	r->in_mask.port_id = 0xffff;
	r->pattern[ni++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT, .spec = &r->in, .mask = &r->in_mask };
	r->pattern[ni++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_ETH };
	if (tin != NULL && tin->kind == WF_TUN_VLAN) {
		r->vlan.hdr.vlan_tci = rte_cpu_to_be_16(tin->vlan_id);
		r->vlan_mask.hdr.vlan_tci = rte_cpu_to_be_16(0x0fff);
		r->pattern[ni++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_VLAN, .spec = &r->vlan, .mask = &r->vlan_mask };
		r->actions[na++] = (struct rte_flow_action){ .type = RTE_FLOW_ACTION_TYPE_OF_POP_VLAN };
	} else if (tin != NULL && tin->kind == WF_TUN_VXLAN) {
		const struct wf_underlay *u = dp->ul_ctl[tin->uplink];
		if (u == NULL) {
			snprintf(why, wl, "the VXLAN uplink has no underlay address");
			return -EOPNOTSUPP;
		}
		if (tin->vx.is_v6) {
			memcpy(r->ip6.hdr.src_addr, tin->vx.remote, 16);
			memcpy(r->ip6.hdr.dst_addr, u->cfg.ip6, 16);
			memset(r->ip6_mask.hdr.src_addr, 0xff, 16);
			memset(r->ip6_mask.hdr.dst_addr, 0xff, 16);
			r->pattern[ni++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_IPV6, .spec = &r->ip6, .mask = &r->ip6_mask };
		} else {
			memcpy(&r->ip4.hdr.src_addr, tin->vx.remote, 4);
			memcpy(&r->ip4.hdr.dst_addr, u->cfg.ip4, 4);
			r->ip4_mask.hdr.src_addr = r->ip4_mask.hdr.dst_addr = 0xffffffff;
			r->pattern[ni++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_IPV4, .spec = &r->ip4, .mask = &r->ip4_mask };
		}
		r->udp.hdr.dst_port = rte_cpu_to_be_16(tin->vx.local_port);
		r->udp_mask.hdr.dst_port = 0xffff;
		r->pattern[ni++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_UDP, .spec = &r->udp, .mask = &r->udp_mask };
		vni_bytes(r->vxlan.vni, tin->vx.vni);
		memset(r->vxlan_mask.vni, 0xff, 3);
		r->pattern[ni++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_VXLAN, .spec = &r->vxlan, .mask = &r->vxlan_mask };
		r->actions[na++] = (struct rte_flow_action){ .type = RTE_FLOW_ACTION_TYPE_VXLAN_DECAP };
	}
	r->pattern[ni] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_END };

	if (tout != NULL && tout->kind == WF_TUN_VLAN) {
		r->push.ethertype = rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN);
		r->vid.vlan_vid = rte_cpu_to_be_16(tout->vlan_id);
		r->actions[na++] = (struct rte_flow_action){ .type = RTE_FLOW_ACTION_TYPE_OF_PUSH_VLAN, .conf = &r->push };
		r->actions[na++] = (struct rte_flow_action){ .type = RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_VID, .conf = &r->vid };
	} else if (tout != NULL && tout->kind == WF_TUN_VXLAN) {
		/* The encap rule carries the next hop's MAC: wf_xc_offload_check
		 * replaces the rule when it changes, and puts the connection back in
		 * software when it is lost. */
		r->vxlan_encap = true;
		const struct wf_underlay *u = dp->ul_ctl[tout->uplink];
		const uint64_t mac = tout->nbr < WF_MAX_NEIGHBOURS ? __atomic_load_n(&dp->nbr_mac[tout->nbr], __ATOMIC_ACQUIRE) : 0;
		if (u == NULL || mac == 0) {
			snprintf(why, wl, "the VXLAN next hop is not resolved yet");
			return -EAGAIN;
		}
		unsigned d = 0;
		r->encap_mac = mac;
		memcpy(r->d_eth.hdr.src_addr.addr_bytes, u->mac, 6);
		for (int i = 0; i < 6; i++)
			r->d_eth.hdr.dst_addr.addr_bytes[i] = (uint8_t)(mac >> (8 * i));
		r->d_eth.hdr.ether_type = rte_cpu_to_be_16(tout->vx.is_v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
		r->def[d++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_ETH, .spec = &r->d_eth };
		if (tout->vx.is_v6) {
			r->d_ip6.hdr.vtc_flow = rte_cpu_to_be_32(6u << 28);
			memcpy(r->d_ip6.hdr.src_addr, u->cfg.ip6, 16);
			memcpy(r->d_ip6.hdr.dst_addr, tout->vx.remote, 16);
			r->d_ip6.hdr.proto = IPPROTO_UDP;
			r->d_ip6.hdr.hop_limits = 64;
			r->def[d++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_IPV6, .spec = &r->d_ip6 };
		} else {
			memcpy(&r->d_ip4.hdr.src_addr, u->cfg.ip4, 4);
			memcpy(&r->d_ip4.hdr.dst_addr, tout->vx.remote, 4);
			r->d_ip4.hdr.version_ihl = RTE_IPV4_VHL_DEF;
			r->d_ip4.hdr.time_to_live = 64;
			r->d_ip4.hdr.next_proto_id = IPPROTO_UDP;
			r->def[d++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_IPV4, .spec = &r->d_ip4 };
		}
		r->d_udp.hdr.dst_port = rte_cpu_to_be_16(tout->vx.dst_port);
		r->def[d++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_UDP, .spec = &r->d_udp };
		r->d_vxlan.flags = 0x08;
		vni_bytes(r->d_vxlan.vni, tout->vx.vni);
		r->def[d++] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_VXLAN, .spec = &r->d_vxlan };
		r->def[d] = (struct rte_flow_item){ .type = RTE_FLOW_ITEM_TYPE_END };
		r->encap.definition = r->def;
		r->actions[na++] = (struct rte_flow_action){ .type = RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP, .conf = &r->encap };
	}
	r->out.port_id = out_eth;
	r->actions[na++] = (struct rte_flow_action){ .type = RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT, .conf = &r->out };
	r->actions[na++] = (struct rte_flow_action){ .type = RTE_FLOW_ACTION_TYPE_COUNT, .conf = &r->count };
	r->actions[na] = (struct rte_flow_action){ .type = RTE_FLOW_ACTION_TYPE_END };
	r->built = true;

	/* A transfer rule is made on the eswitch's proxy port; both ends must share it. */
	struct rte_flow_error err;
	uint16_t p_in, p_out;
	memset(&err, 0, sizeof(err));
	if ((rc = rte_flow_pick_transfer_proxy(in_eth, &p_in, &err)) != 0 ||
	    (rc = rte_flow_pick_transfer_proxy(out_eth, &p_out, &err)) != 0) {
		snprintf(why, wl, "no transfer proxy (not on an eswitch): %s", err.message ? err.message : strerror(-rc));
		r->proxy = UINT16_MAX;
		return rc < 0 ? rc : -EOPNOTSUPP;
	}
	if (p_in != p_out) {
		snprintf(why, wl, "DPDK ports %u and %u are not on one eswitch (transfer proxies %u and %u)", in_eth, out_eth, p_in, p_out);
		return -EOPNOTSUPP;
	}
	r->proxy = p_in;
	return 0;
}

static struct wf_offload *
offload_of(struct wf_dataplane *dp, uint32_t slot)
{
	if (dp->offload == NULL) {
		dp->offload = calloc(dp->cfg.max_xconnects, sizeof(*dp->offload));
		if (dp->offload == NULL)
			return NULL;
	}
	return &dp->offload[slot];
}

static int
p2p_slot(struct wf_dataplane *dp, uint32_t slot)
{
	if (dp == NULL || slot >= dp->cfg.max_xconnects || !dp->xcs[slot].used || dp->xcs[slot].p2mp) {
		wf_set_error("no P2P cross-connect in slot %u", slot);
		return -ENOENT;
	}
	return 0;
}

void
wf_xc_offload_remove(wf_dataplane_t *dp, uint32_t slot)
{
	if (dp == NULL || dp->offload == NULL || slot >= dp->cfg.max_xconnects)
		return;
	struct wf_offload *o = &dp->offload[slot];
	for (int i = 0; i < 2; i++)
		if (o->flow[i] != NULL) {
			struct rte_flow_error err;
			memset(&err, 0, sizeof(err));
			if (rte_flow_destroy(o->proxy[i], o->flow[i], &err) != 0)
				/* Nothing more can be done here: the port may still switch this way. */
				RTE_LOG(ERR, USER1, "weft: cannot remove the NIC rule of cross-connect %u on port %u: %s\n", slot,
					o->proxy[i], err.message ? err.message : "unknown error");
			o->flow[i] = NULL;
		}
	memset(o, 0, sizeof(*o));
}

int
wf_xc_offload(wf_dataplane_t *dp, uint32_t slot, int mode)
{
	int rc = p2p_slot(dp, slot);
	if (rc)
		return rc;
	wf_xc_offload_remove(dp, slot);
	struct wf_offload *o = offload_of(dp, slot);
	if (o == NULL)
		return -ENOMEM;
	o->mode = (uint8_t)mode;
	if (mode == WF_OFFLOAD_OFF) {
		snprintf(o->why, sizeof(o->why), "offload off");
		return 0;
	}
	o->tried = true;
	const struct wf_xc_ctl *x = &dp->xcs[slot];
	struct wf_flow_rule r;
	for (int d = 0; d < 2; d++) {
		rc = build_rule(dp, d ? x->b : x->a, d ? x->a : x->b, &r, o->why, sizeof(o->why));
		o->encap_mac[d] = r.vxlan_encap ? r.encap_mac : 0;
		if (rc == 0) {
			struct rte_flow_error err;
			memset(&err, 0, sizeof(err));
			rc = rte_flow_validate(r.proxy, &r.attr, r.pattern, r.actions, &err);
			if (rc == 0)
				o->flow[d] = rte_flow_create(r.proxy, &r.attr, r.pattern, r.actions, &err);
			if (rc == 0 && o->flow[d] == NULL)
				rc = -EIO;
			if (rc != 0)
				snprintf(o->why, sizeof(o->why), "port %u refused the %s rule: %s", r.proxy, d ? "B->A" : "A->B",
					 err.message ? err.message : strerror(rc < 0 ? -rc : rc));
			o->proxy[d] = r.proxy;
		}
		if (rc != 0) {
			/* Nothing half-offloaded: the other direction's rule goes too. */
			char keep[WF_OFFLOAD_WHY];
			memcpy(keep, o->why, sizeof(keep));
			wf_xc_offload_remove(dp, slot);
			o->tried = true;
			o->mode = (uint8_t)mode;
			memcpy(o->why, keep, sizeof(keep));
			if (mode == WF_OFFLOAD_REQUIRED) {
				wf_set_error("offload required but not possible: %s", o->why);
				return -EOPNOTSUPP;
			}
			return 0; /* software path */
		}
	}
	o->on = true;
	o->why[0] = '\0';
	return 0;
}

/* Back to software (a path that never stopped): both of the connection's rules
 * go, the reason is kept, and what they counted stays in its totals. */
static void
offload_fall_back(struct wf_dataplane *dp, uint32_t slot, const char *msg)
{
	struct wf_offload *o = &dp->offload[slot];
	uint64_t packets[2], bytes[2];
	for (int d = 0; d < 2; d++) {
		packets[d] = o->base_packets[d] + o->packets[d];
		bytes[d] = o->base_bytes[d] + o->bytes[d];
	}
	uint8_t mode = o->mode;
	char keep[WF_OFFLOAD_WHY];
	snprintf(keep, sizeof(keep), "%s", msg);
	wf_xc_offload_remove(dp, slot);
	o->tried = true;
	o->mode = mode;
	memcpy(o->why, keep, sizeof(keep));
	memcpy(o->base_packets, packets, sizeof(packets));
	memcpy(o->base_bytes, bytes, sizeof(bytes));
}

/* Direction d's VXLAN next hop changed its MAC: a new rule with the new MAC is
 * made first, then the old one goes (its counts kept). 0, or -1 when the
 * connection had to go back to software (the MAC is lost, or the rule refused). */
static int
offload_replace_encap(struct wf_dataplane *dp, uint32_t slot, int d)
{
	struct wf_offload *o = &dp->offload[slot];
	const struct wf_xc_ctl *x = &dp->xcs[slot];
	struct wf_flow_rule r;
	char why[WF_OFFLOAD_WHY] = "";
	struct rte_flow_error err;
	memset(&err, 0, sizeof(err));
	struct rte_flow *nf = NULL;
	int rc = build_rule(dp, d ? x->b : x->a, d ? x->a : x->b, &r, why, sizeof(why));
	if (rc == 0 && (rc = rte_flow_validate(r.proxy, &r.attr, r.pattern, r.actions, &err)) == 0 &&
	    (nf = rte_flow_create(r.proxy, &r.attr, r.pattern, r.actions, &err)) == NULL)
		rc = -EIO;
	if (rc != 0) {
		if (why[0] == '\0')
			snprintf(why, sizeof(why), "%s", err.message ? err.message : strerror(rc < 0 ? -rc : rc));
		char msg[WF_OFFLOAD_WHY];
		snprintf(msg, sizeof(msg), "the VXLAN next hop's MAC changed and the %s rule could not follow (%s): back in software",
			 d ? "B->A" : "A->B", why);
		offload_fall_back(dp, slot, msg);
		return -1;
	}
	struct rte_flow_query_count q = { .reset = 0 };
	struct rte_flow_action a[2] = { { .type = RTE_FLOW_ACTION_TYPE_COUNT }, { .type = RTE_FLOW_ACTION_TYPE_END } };
	if (rte_flow_query(o->proxy[d], o->flow[d], a, &q, &err) == 0) {
		o->packets[d] = q.hits;
		o->bytes[d] = q.bytes;
	}
	o->base_packets[d] += o->packets[d];
	o->base_bytes[d] += o->bytes[d];
	o->packets[d] = o->bytes[d] = 0;
	if (rte_flow_destroy(o->proxy[d], o->flow[d], &err) != 0)
		RTE_LOG(ERR, USER1, "weft: cannot remove the replaced NIC rule of cross-connect %u: %s\n", slot,
			err.message ? err.message : "unknown error");
	o->flow[d] = nf;
	o->proxy[d] = r.proxy;
	o->encap_mac[d] = r.encap_mac;
	return 0;
}

/* The current next-hop MAC of the VXLAN side a direction ends on (0: unresolved). */
static uint64_t
encap_mac_now(const struct wf_dataplane *dp, uint32_t to)
{
	if (!(to & WF_SIDE_TUNNEL))
		return 0;
	const struct wf_tunnel_ctl *t = &dp->tunnels[to & ~WF_SIDE_TUNNEL];
	if (t->kind != WF_TUN_VXLAN || t->nbr >= WF_MAX_NEIGHBOURS)
		return 0;
	return __atomic_load_n(&dp->nbr_mac[t->nbr], __ATOMIC_ACQUIRE);
}

int
wf_xc_offload_check(wf_dataplane_t *dp)
{
	if (dp == NULL || dp->offload == NULL)
		return 0;
	int n = 0;
	for (uint32_t slot = 0; slot < dp->cfg.max_xconnects; slot++) {
		struct wf_offload *o = &dp->offload[slot];
		if (!o->on)
			continue;
		const struct wf_xc_ctl *x = &dp->xcs[slot];
		for (int d = 0; d < 2; d++) {
			if (o->encap_mac[d] != 0 && encap_mac_now(dp, d ? x->a : x->b) != o->encap_mac[d]) {
				if (offload_replace_encap(dp, slot, d) != 0) {
					RTE_LOG(WARNING, USER1, "weft: cross-connect %u: %s\n", slot, o->why);
					n++;
					break;
				}
			}
			/* A rule whose count query fails is taken as gone (a port reset, a device
			 * removed, the PMD dropped it). */
			struct rte_flow_query_count q = { .reset = 0 };
			struct rte_flow_action a[2] = { { .type = RTE_FLOW_ACTION_TYPE_COUNT },
							{ .type = RTE_FLOW_ACTION_TYPE_END } };
			struct rte_flow_error err;
			memset(&err, 0, sizeof(err));
			int rc = rte_flow_query(o->proxy[d], o->flow[d], a, &q, &err);
			if (rc != 0) {
				char msg[WF_OFFLOAD_WHY];
				snprintf(msg, sizeof(msg), "the NIC's %s rule failed later (%s): back in software", d ? "B->A" : "A->B",
					 err.message ? err.message : strerror(rc < 0 ? -rc : rc));
				offload_fall_back(dp, slot, msg);
				RTE_LOG(WARNING, USER1, "weft: cross-connect %u: %s\n", slot, o->why);
				n++;
				break;
			}
			o->packets[d] = q.hits;
			o->bytes[d] = q.bytes;
		}
	}
	return n;
}

int
wf_test_offload_pretend(wf_dataplane_t *dp, uint32_t slot, const uint64_t packets[2], const uint64_t bytes[2])
{
	int rc = p2p_slot(dp, slot);
	if (rc)
		return rc;
	struct wf_offload *o = offload_of(dp, slot);
	if (o == NULL)
		return -ENOMEM;
	const struct wf_xc_ctl *x = &dp->xcs[slot];
	memset(o, 0, sizeof(*o));
	o->tried = o->on = true;
	o->mode = WF_OFFLOAD_AUTO;
	for (int d = 0; d < 2; d++) {
		/* Never dereferenced: the ports' PMDs have no flow ops, so every call on it fails. */
		o->flow[d] = (struct rte_flow *)(uintptr_t)(0x100 + d);
		uint32_t side = d ? x->b : x->a;
		uint16_t p = (side & WF_SIDE_TUNNEL) ? dp->tunnels[side & ~WF_SIDE_TUNNEL].uplink : (uint16_t)side;
		o->proxy[d] = dp->ports[p].eth;
		o->packets[d] = packets[d];
		o->bytes[d] = bytes[d];
		o->encap_mac[d] = encap_mac_now(dp, d ? x->a : x->b);
	}
	return 0;
}

int
wf_xc_offload_status(wf_dataplane_t *dp, uint32_t slot, struct wf_offload_status *st)
{
	int rc = p2p_slot(dp, slot);
	if (rc)
		return rc;
	memset(st, 0, sizeof(*st));
	const struct wf_offload *o = dp->offload ? &dp->offload[slot] : NULL;
	if (o == NULL || !o->tried) {
		snprintf(st->why, sizeof(st->why), "%s", o && o->why[0] ? o->why : "offload off");
		return 0;
	}
	st->offloaded = o->on;
	snprintf(st->why, sizeof(st->why), "%s", o->why);
	struct wf_offload *ow = &dp->offload[slot];
	/* What replaced or fallen-back rules counted stays in the totals. */
	for (int d = 0; d < 2; d++) {
		st->packets[d] = o->base_packets[d] + (o->on ? 0 : o->packets[d]);
		st->bytes[d] = o->base_bytes[d] + (o->on ? 0 : o->bytes[d]);
	}
	for (int d = 0; d < 2 && o->on; d++) {
		struct rte_flow_query_count q = { .reset = 0 };
		struct rte_flow_action a[2] = { { .type = RTE_FLOW_ACTION_TYPE_COUNT }, { .type = RTE_FLOW_ACTION_TYPE_END } };
		struct rte_flow_error err;
		if (rte_flow_query(o->proxy[d], o->flow[d], a, &q, &err) == 0) {
			ow->packets[d] = q.hits;
			ow->bytes[d] = q.bytes;
		}
		/* A failed query keeps the last counts: totals never go backwards. */
		st->packets[d] += ow->packets[d];
		st->bytes[d] += ow->bytes[d];
	}
	return 0;
}

int
wf_port_ethdev(wf_dataplane_t *dp, uint16_t port)
{
	if (dp == NULL || port >= WF_MAX_PORTS || !dp->ports[port].attached || dp->ports[port].eth == WF_PORT_NONE)
		return -ENODEV;
	return dp->ports[port].eth;
}

/* ---- the rules as text (tests; `weftctl` could show it) ---------------------- */

static void
put(char **p, size_t *left, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(*p, *left, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t k = (size_t)n < *left ? (size_t)n : (*left ? *left - 1 : 0);
	*p += k;
	*left -= k;
}

static void
ip_text(char **p, size_t *left, const uint8_t *a, bool v6)
{
	char b[64];
	if (v6)
		snprintf(b, sizeof(b), "%x:%x:%x:%x:%x:%x:%x:%x", a[0] << 8 | a[1], a[2] << 8 | a[3], a[4] << 8 | a[5],
			 a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11], a[12] << 8 | a[13], a[14] << 8 | a[15]);
	else
		snprintf(b, sizeof(b), "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	put(p, left, "%s", b);
}

static void
describe(const struct wf_flow_rule *r, char **p, size_t *left)
{
	put(p, left, "transfer=%u pattern:", r->attr.transfer);
	for (const struct rte_flow_item *i = r->pattern; i->type != RTE_FLOW_ITEM_TYPE_END; i++) {
		switch (i->type) {
		case RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT:
			put(p, left, " represented_port(%u)", ((const struct rte_flow_item_ethdev *)i->spec)->port_id);
			break;
		case RTE_FLOW_ITEM_TYPE_ETH:
			put(p, left, " eth");
			break;
		case RTE_FLOW_ITEM_TYPE_VLAN:
			put(p, left, " vlan(vid=%u/0x%03x)", rte_be_to_cpu_16(((const struct rte_flow_item_vlan *)i->spec)->hdr.vlan_tci),
			    rte_be_to_cpu_16(((const struct rte_flow_item_vlan *)i->mask)->hdr.vlan_tci));
			break;
		case RTE_FLOW_ITEM_TYPE_IPV4: {
			const struct rte_flow_item_ipv4 *s = i->spec;
			put(p, left, " ipv4(src=");
			ip_text(p, left, (const uint8_t *)&s->hdr.src_addr, false);
			put(p, left, ",dst=");
			ip_text(p, left, (const uint8_t *)&s->hdr.dst_addr, false);
			put(p, left, ")");
			break;
		}
		case RTE_FLOW_ITEM_TYPE_IPV6: {
			const struct rte_flow_item_ipv6 *s = i->spec;
			put(p, left, " ipv6(src=");
			ip_text(p, left, s->hdr.src_addr, true);
			put(p, left, ",dst=");
			ip_text(p, left, s->hdr.dst_addr, true);
			put(p, left, ")");
			break;
		}
		case RTE_FLOW_ITEM_TYPE_UDP:
			put(p, left, " udp(dst=%u)", rte_be_to_cpu_16(((const struct rte_flow_item_udp *)i->spec)->hdr.dst_port));
			break;
		case RTE_FLOW_ITEM_TYPE_VXLAN: {
			const uint8_t *v = ((const struct rte_flow_item_vxlan *)i->spec)->vni;
			put(p, left, " vxlan(vni=%u)", (unsigned)v[0] << 16 | v[1] << 8 | v[2]);
			break;
		}
		default:
			put(p, left, " item%d", (int)i->type);
		}
	}
	put(p, left, " actions:");
	for (const struct rte_flow_action *a = r->actions; a->type != RTE_FLOW_ACTION_TYPE_END; a++) {
		switch (a->type) {
		case RTE_FLOW_ACTION_TYPE_OF_POP_VLAN:
			put(p, left, " of_pop_vlan");
			break;
		case RTE_FLOW_ACTION_TYPE_OF_PUSH_VLAN:
			put(p, left, " of_push_vlan(0x%04x)", rte_be_to_cpu_16(((const struct rte_flow_action_of_push_vlan *)a->conf)->ethertype));
			break;
		case RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_VID:
			put(p, left, " of_set_vlan_vid(%u)", rte_be_to_cpu_16(((const struct rte_flow_action_of_set_vlan_vid *)a->conf)->vlan_vid));
			break;
		case RTE_FLOW_ACTION_TYPE_VXLAN_DECAP:
			put(p, left, " vxlan_decap");
			break;
		case RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP: {
			put(p, left, " vxlan_encap(");
			for (const struct rte_flow_item *i = ((const struct rte_flow_action_vxlan_encap *)a->conf)->definition;
			     i->type != RTE_FLOW_ITEM_TYPE_END; i++) {
				if (i->type == RTE_FLOW_ITEM_TYPE_ETH) {
					const struct rte_flow_item_eth *e = i->spec;
					const uint8_t *s = e->hdr.src_addr.addr_bytes, *d = e->hdr.dst_addr.addr_bytes;
					put(p, left, "eth(%02x:%02x:%02x:%02x:%02x:%02x>%02x:%02x:%02x:%02x:%02x:%02x,type=0x%04x)", s[0], s[1],
					    s[2], s[3], s[4], s[5], d[0], d[1], d[2], d[3], d[4], d[5], rte_be_to_cpu_16(e->hdr.ether_type));
				} else if (i->type == RTE_FLOW_ITEM_TYPE_IPV4) {
					const struct rte_flow_item_ipv4 *s = i->spec;
					put(p, left, " ipv4(");
					ip_text(p, left, (const uint8_t *)&s->hdr.src_addr, false);
					put(p, left, ">");
					ip_text(p, left, (const uint8_t *)&s->hdr.dst_addr, false);
					put(p, left, ",ver=%u,ttl=%u,proto=%u)", s->hdr.version_ihl >> 4, s->hdr.time_to_live,
					    s->hdr.next_proto_id);
				} else if (i->type == RTE_FLOW_ITEM_TYPE_IPV6) {
					const struct rte_flow_item_ipv6 *s = i->spec;
					put(p, left, " ipv6(");
					ip_text(p, left, s->hdr.src_addr, true);
					put(p, left, ">");
					ip_text(p, left, s->hdr.dst_addr, true);
					put(p, left, ",ver=%u,hlim=%u,proto=%u)", rte_be_to_cpu_32(s->hdr.vtc_flow) >> 28,
					    s->hdr.hop_limits, s->hdr.proto);
				} else if (i->type == RTE_FLOW_ITEM_TYPE_UDP) {
					put(p, left, " udp(dst=%u)", rte_be_to_cpu_16(((const struct rte_flow_item_udp *)i->spec)->hdr.dst_port));
				} else if (i->type == RTE_FLOW_ITEM_TYPE_VXLAN) {
					const struct rte_flow_item_vxlan *v = i->spec;
					put(p, left, " vxlan(flags=0x%02x,vni=%u)", v->flags, (unsigned)v->vni[0] << 16 | v->vni[1] << 8 | v->vni[2]);
				}
			}
			put(p, left, ")");
			break;
		}
		case RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT:
			put(p, left, " represented_port(%u)", ((const struct rte_flow_action_ethdev *)a->conf)->port_id);
			break;
		case RTE_FLOW_ACTION_TYPE_COUNT:
			put(p, left, " count");
			break;
		default:
			put(p, left, " action%d", (int)a->type);
		}
	}
}

int
wf_xc_offload_describe(wf_dataplane_t *dp, uint32_t slot, char *buf, size_t len)
{
	int rc = p2p_slot(dp, slot);
	if (rc)
		return rc;
	if (buf == NULL || len == 0)
		return -EINVAL;
	buf[0] = '\0';
	char *p = buf;
	size_t left = len;
	const struct wf_xc_ctl *x = &dp->xcs[slot];
	struct wf_flow_rule r;
	for (int d = 0; d < 2; d++) {
		char why[WF_OFFLOAD_WHY];
		rc = build_rule(dp, d ? x->b : x->a, d ? x->a : x->b, &r, why, sizeof(why));
		if (rc != 0 && !r.built) {
			/* Not even built (a side with no ethdev, an unresolved next hop). */
			wf_set_error("%s", why);
			return rc;
		}
		put(&p, &left, "%s%s: ", d ? "\n" : "", d ? "B->A" : "A->B");
		describe(&r, &p, &left);
	}
	return 0;
}
