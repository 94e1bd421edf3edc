/*
 * tunnel.c: the tunnels an uplink carries, control side: 802.1Q VLANs and
 * VXLAN (RFC 7348): tunnel slots, validation, the next hop a VXLAN tunnel
 * sends to, its encapsulation template, removal of either kind, and the
 * builders of the table's tunnel parts: an uplink's VLAN map, and VXLAN's
 * templates by tunnel index and decap hash, both in chunks so that one
 * tunnel's change copies a chunk, not the whole. The per-packet work is
 * vlan_node.c, vxlan_node.c and uplink_node.c. Hitless.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_udp.h>

#include "wf_internal.h"

/* ==== VXLAN tunnels ========================================================== */

static bool
wf_same_prefix(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	for (unsigned i = 0; bits > 0; i++, bits = bits >= 8 ? bits - 8 : 0) {
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
		if ((a[i] & mask) != (b[i] & mask))
			return false;
	}
	return true;
}

static bool
wf_is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- control-side index of VXLAN keys (duplicate check in O(1)) ---------- */

static bool
wf_same_key(const struct wf_vxlan_cfg *a, const struct wf_vxlan_cfg *b)
{
	return a->is_v6 == b->is_v6 && a->vni == b->vni && a->local_port == b->local_port &&
	       memcmp(a->remote, b->remote, a->is_v6 ? 16 : 4) == 0;
}

static uint32_t
wf_cfg_hash(const struct wf_vxlan_cfg *c)
{
	struct wf_vxkey k;
	memset(&k, 0, sizeof(k));
	k.is_v6 = c->is_v6;
	k.port = c->local_port;
	k.vni = c->vni;
	memcpy(k.src, c->remote, c->is_v6 ? 16 : 4);
	return wf_vx_hash(&k);
}

/* The slot holding that key (tunnel index + 1), or the empty slot where it
 * would go. With `tun` set, the slot holding exactly that tunnel. */
static uint32_t *
wf_vxk_probe(struct wf_dataplane *dp, const struct wf_vxlan_cfg *c, uint32_t tun)
{
	for (uint32_t i = wf_cfg_hash(c) & dp->vxk_mask;; i = (i + 1) & dp->vxk_mask) {
		uint32_t e = dp->vxk[i];
		if (e == 0 || (tun == UINT32_MAX ? wf_same_key(&dp->tunnels[e - 1].vx, c) : e - 1 == tun))
			return &dp->vxk[i];
	}
}

/* Room for one more key at a load of at most 1/2. */
static int
wf_vxk_grow(struct wf_dataplane *dp)
{
	if (dp->vxk != NULL && (dp->vxk_used + 1) * 2 <= dp->vxk_mask + 1)
		return 0;
	uint32_t size = dp->vxk == NULL ? 64 : (dp->vxk_mask + 1) * 2;
	uint32_t *old = dp->vxk, old_size = dp->vxk == NULL ? 0 : dp->vxk_mask + 1;
	dp->vxk = calloc(size, sizeof(uint32_t));
	if (dp->vxk == NULL) {
		dp->vxk = old;
		wf_set_error("out of memory for the VXLAN key index");
		return -ENOMEM;
	}
	dp->vxk_mask = size - 1;
	for (uint32_t i = 0; i < old_size; i++)
		if (old[i] != 0)
			*wf_vxk_probe(dp, &dp->tunnels[old[i] - 1].vx, UINT32_MAX) = old[i];
	free(old);
	return 0;
}

/* Drop tunnel `tun` (still holding its key) from the index: backward shift. */
void
wf_vxk_remove(struct wf_dataplane *dp, uint32_t tun)
{
	if (dp->vxk == NULL)
		return;
	uint32_t *hole = wf_vxk_probe(dp, &dp->tunnels[tun].vx, tun);
	if (*hole == 0)
		return;
	uint32_t i = (uint32_t)(hole - dp->vxk);
	for (uint32_t j = (i + 1) & dp->vxk_mask; dp->vxk[j] != 0; j = (j + 1) & dp->vxk_mask) {
		uint32_t h = wf_cfg_hash(&dp->tunnels[dp->vxk[j] - 1].vx) & dp->vxk_mask;
		/* The entry at j may fill the hole at i unless its home lies in (i, j]. */
		bool home_between = i < j ? (h > i && h <= j) : (h > i || h <= j);
		if (!home_between) {
			dp->vxk[i] = dp->vxk[j];
			i = j;
		}
	}
	dp->vxk[i] = 0;
	dp->vxk_used--;
}

/* A free tunnel slot, searched round from where the last one was found. */
uint32_t
wf_tunnel_free_slot(struct wf_dataplane *dp)
{
	const uint32_t n = dp->cfg.max_xconnects;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t t = (dp->tun_hint + k) % n;
		if (dp->tunnels[t].kind == 0 && !dp->tunnels[t].retiring) {
			dp->tun_hint = (t + 1) % n;
			return t;
		}
	}
	return UINT32_MAX;
}

int
wf_vxlan_add(wf_dataplane_t *dp, const struct wf_vxlan_cfg *cfg, uint32_t *side)
{
	if (dp == NULL || cfg == NULL || side == NULL || cfg->uplink >= WF_MAX_PORTS)
		return -EINVAL;
	if (cfg->vni > 0xffffff || cfg->dst_port == 0 || cfg->local_port == 0) {
		wf_set_error("VNI must be 0..16777215 and UDP ports non-zero");
		return -EINVAL;
	}
	struct wf_port_ctl *pc = &dp->ports[cfg->uplink];
	if (!pc->attached)
		return -ENODEV;
	if (pc->xc_slot != UINT32_MAX) {
		wf_set_error("%s is a plain cross-connect side; it cannot carry tunnels", pc->devname);
		return -EBUSY;
	}
	const struct wf_underlay *ul = dp->ul_ctl[cfg->uplink];
	const size_t alen = cfg->is_v6 ? 16 : 4;
	if (ul == NULL || (cfg->is_v6 ? !ul->cfg.has_ip6 : !ul->cfg.has_ip4)) {
		wf_set_error("%s has no IPv%c underlay address", pc->devname, cfg->is_v6 ? '6' : '4');
		return -EADDRNOTAVAIL;
	}
	bool ports_ok = false;
	for (uint16_t i = 0; i < ul->cfg.n_vxlan_ports; i++)
		ports_ok |= ul->cfg.vxlan_ports[i] == cfg->local_port;
	if (!ports_ok) {
		wf_set_error("UDP port %u is not a VXLAN port of %s's underlay", cfg->local_port, pc->devname);
		return -EINVAL;
	}
	if (wf_is_zero(cfg->remote, alen)) {
		wf_set_error("VXLAN remote address is unspecified");
		return -EINVAL;
	}
	/* Anti-spoofing and demux key: (family, local port, VNI, remote) is unique. */
	if (wf_vxk_grow(dp) != 0)
		return -ENOMEM;
	uint32_t *ks = wf_vxk_probe(dp, cfg, UINT32_MAX);
	if (*ks != 0) {
		wf_set_error("VNI %u from that remote on port %u is already a tunnel", cfg->vni,
			     cfg->local_port);
		return -EEXIST;
	}
	uint32_t free_t = wf_tunnel_free_slot(dp);
	if (free_t == UINT32_MAX) {
		wf_set_error("all %u tunnel slots are in use", dp->cfg.max_xconnects);
		return -ENOSPC;
	}
	/* Next hop: the remote itself when on-link, else the gateway. */
	const uint8_t *mine = cfg->is_v6 ? ul->cfg.ip6 : ul->cfg.ip4;
	const uint8_t *gw = cfg->is_v6 ? ul->cfg.gw6 : ul->cfg.gw4;
	unsigned plen = cfg->is_v6 ? ul->cfg.prefix6 : ul->cfg.prefix4;
	const uint8_t *nh = cfg->remote;
	if (!wf_same_prefix(mine, cfg->remote, plen)) {
		if (wf_is_zero(gw, alen)) {
			wf_set_error("remote is off-link and %s's underlay has no IPv%c gateway", pc->devname,
				     cfg->is_v6 ? '6' : '4');
			return -ENETUNREACH;
		}
		nh = gw;
	}
	uint32_t nbr;
	int rc = wf_nbr_track(dp, cfg->uplink, cfg->is_v6, nh, &nbr);
	if (rc)
		return rc;
	dp->tunnels[free_t] = (struct wf_tunnel_ctl){ .kind = WF_TUN_VXLAN, .uplink = cfg->uplink,
						      .xc_slot = UINT32_MAX, .vx = *cfg, .nbr = nbr };
	dp->n_tunnels_on[cfg->uplink]++;
	wf_dirty_side(dp, WF_SIDE_TUNNEL | free_t);
	rc = wf_table_publish_add(dp);
	if (rc != 0) {
		dp->tunnels[free_t].kind = 0;
		dp->n_tunnels_on[cfg->uplink]--;
		wf_nbr_release(dp, nbr);
		return rc;
	}
	*ks = free_t + 1;
	dp->vxk_used++;
	*side = WF_SIDE_TUNNEL | free_t;
	return 0;
}

/* The outer headers of a tunnel; per-packet fields are filled at encap. */
void
wf_vx_build_tpl(const struct wf_dataplane *dp, const struct wf_tunnel_ctl *tc, struct wf_vxtpl *x)
{
	const struct wf_underlay *ul = dp->ul_ctl[tc->uplink];
	memset(x, 0, sizeof(*x));
	x->is_v6 = tc->vx.is_v6;
	x->out_port = tc->uplink;
	x->ip4_cksum_offload = dp->ports[tc->uplink].tx_ip4_cksum;
	x->nbr = tc->nbr;
	uint8_t *h = x->hdr;
	memcpy(h + 6, ul->mac, 6); /* destination MAC comes from the neighbour */
	uint32_t l3;
	if (!x->is_v6) {
		h[12] = 0x08, h[13] = 0x00;
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(h + 14);
		ip->version_ihl = 0x45;
		ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG); /* never fragmented */
		ip->time_to_live = 64;
		ip->next_proto_id = IPPROTO_UDP;
		memcpy(&ip->src_addr, ul->cfg.ip4, 4);
		memcpy(&ip->dst_addr, tc->vx.remote, 4);
		l3 = sizeof(*ip);
	} else {
		h[12] = 0x86, h[13] = 0xdd;
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(h + 14);
		ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
		ip->proto = IPPROTO_UDP;
		ip->hop_limits = 64;
		memcpy(ip->src_addr, ul->cfg.ip6, 16);
		memcpy(ip->dst_addr, tc->vx.remote, 16);
		l3 = sizeof(*ip);
	}
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(h + 14 + l3);
	udp->dst_port = rte_cpu_to_be_16(tc->vx.dst_port);
	uint8_t *vx = (uint8_t *)(udp + 1);
	vx[0] = 0x08; /* I flag: the VNI is valid */
	vx[4] = (uint8_t)(tc->vx.vni >> 16), vx[5] = (uint8_t)(tc->vx.vni >> 8), vx[6] = (uint8_t)tc->vx.vni;
	x->len = (uint8_t)(14 + l3 + 8 + 8);
	if (!x->is_v6)
		x->ip4_sum = __rte_raw_cksum(h + 14, sizeof(struct rte_ipv4_hdr), 0);
	/*
	 * NSM's path MTU: the connection (inner L3) MTU is the uplink MTU less 54
	 * (IPv4) or 74 (IPv6): outer IP + UDP + VXLAN + inner Ethernet, plus 4
	 * bytes NSM keeps for a tag. The largest inner frame is that plus its
	 * 14-byte Ethernet header.
	 */
	uint32_t overhead = x->is_v6 ? 74 : 54;
	x->max_inner = ul->cfg.mtu > overhead ? ul->cfg.mtu - overhead + 14 : 0;
}


/* ==== VLAN tunnels, and removing a tunnel of either kind ======================= */

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


/* ==== the table's tunnel parts ================================================ */

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

/* ---- the table's VXLAN parts ---------------------------------------------------- */

static struct wf_vxkey
wf_key_of(const struct wf_vxlan_cfg *c, bool marker)
{
	struct wf_vxkey k;
	memset(&k, 0, sizeof(k));
	k.is_v6 = c->is_v6;
	k.port = c->local_port;
	k.vni = c->vni;
	if (marker)
		memset(k.src, 0xff, sizeof(k.src));
	else
		memcpy(k.src, c->remote, c->is_v6 ? 16 : 4);
	return k;
}

/* One of the two hashes (decap keys, markers) of the table being built. */
struct wf_hash_ref {
	struct wf_vxdec ***chunks;      /* &t->dec or &t->mark */
	struct wf_vxdec *const *old;    /* the published table's, when of the same size */
	uint32_t mask;
};

static uint32_t
wf_hash_find(struct wf_vxdec *const *c, uint32_t mask, const struct wf_vxkey *k)
{
	if (c == NULL)
		return UINT32_MAX;
	for (uint32_t i = wf_vx_hash(k) & mask;; i = (i + 1) & mask) {
		const struct wf_vxdec *d = wf_dec_at(c, i);
		if (!d->used)
			return UINT32_MAX;
		if (memcmp(&d->key, k, sizeof(*k)) == 0)
			return i;
	}
}

/* Slot i, writable: its chunk (and the chunk array) this build's own. */
static struct wf_vxdec *
wf_hash_slot(struct wf_build *b, struct wf_hash_ref *h, uint32_t i)
{
	uint32_t n = (h->mask + 1) >> WF_DEC_SHIFT;
	struct wf_vxdec **arr = wf_build_own(b, *h->chunks, h->old, sizeof(void *) * n);
	if (arr == NULL)
		return NULL;
	*h->chunks = arr;
	uint32_t c = i >> WF_DEC_SHIFT;
	struct wf_vxdec *chunk = wf_build_own(b, arr[c], h->old ? h->old[c] : NULL, sizeof(struct wf_vxdec) * WF_DEC_CHUNK);
	if (chunk == NULL)
		return NULL;
	arr[c] = chunk;
	return &chunk[i & (WF_DEC_CHUNK - 1)];
}

static int
wf_hash_put(struct wf_build *b, struct wf_hash_ref *h, const struct wf_vxkey *k, const struct wf_fwd *f, int refs,
	    bool *added)
{
	uint32_t i = wf_hash_find(*h->chunks, h->mask, k);
	*added = i == UINT32_MAX;
	if (i == UINT32_MAX)
		for (i = wf_vx_hash(k) & h->mask; wf_dec_at(*h->chunks, i)->used; i = (i + 1) & h->mask)
			;
	struct wf_vxdec *d = wf_hash_slot(b, h, i);
	if (d == NULL)
		return -ENOMEM;
	if (*added) {
		memset(d, 0, sizeof(*d));
		d->key = *k;
	}
	d->f = *f;
	d->refs += (uint32_t)refs;
	/* Written last: a reader probing this chunk copy sees the whole slot. */
	d->used = 1;
	return 0;
}

/* Linear probing's deletion: shift back the entries that probed past it. */
static int
wf_hash_del(struct wf_build *b, struct wf_hash_ref *h, uint32_t i)
{
	struct wf_vxdec *hole = wf_hash_slot(b, h, i);
	if (hole == NULL)
		return -ENOMEM;
	for (uint32_t j = (i + 1) & h->mask; wf_dec_at(*h->chunks, j)->used; j = (j + 1) & h->mask) {
		const struct wf_vxdec *e = wf_dec_at(*h->chunks, j);
		uint32_t home = wf_vx_hash(&e->key) & h->mask;
		bool home_between = i < j ? (home > i && home <= j) : (home > i || home <= j);
		if (home_between)
			continue;
		struct wf_vxdec *dst = wf_hash_slot(b, h, i);
		struct wf_vxdec *src = wf_hash_slot(b, h, j);
		if (dst == NULL || src == NULL)
			return -ENOMEM;
		*dst = *src;
		i = j;
	}
	struct wf_vxdec *last = wf_hash_slot(b, h, i);
	if (last == NULL)
		return -ENOMEM;
	memset(last, 0, sizeof(*last));
	return 0;
}

/* A tunnel's template, key and marker in the table being built. */
static int
wf_vxlan_build_one(struct wf_dataplane *dp, struct wf_build *b, struct wf_hash_ref *dec, struct wf_hash_ref *mark,
		   uint32_t ti)
{
	const struct wf_tunnel_ctl *tc = &dp->tunnels[ti];
	bool removed = tc->kind == 0 && tc->retired_kind == WF_TUN_VXLAN;
	if (tc->kind != WF_TUN_VXLAN && !removed)
		return 0;
	struct wf_table *t = b->t;
	struct wf_vxkey exact = wf_key_of(&tc->vx, false), marker = wf_key_of(&tc->vx, true);
	bool added;
	if (removed) {
		uint32_t i = wf_hash_find(t->dec, t->dec_mask, &exact);
		if (i == UINT32_MAX)
			return 0; /* added and removed before any publish */
		int rc = wf_hash_del(b, dec, i);
		if (rc)
			return rc;
		t->n_keys--;
		uint32_t m = wf_hash_find(t->mark, t->mark_mask, &marker);
		if (m != UINT32_MAX) {
			struct wf_vxdec *d = wf_hash_slot(b, mark, m);
			if (d == NULL)
				return -ENOMEM;
			if (--d->refs == 0) {
				if ((rc = wf_hash_del(b, mark, m)) != 0)
					return rc;
				t->n_marks--;
			}
		}
		return 0;
	}
	/* The template, in its chunk. */
	struct wf_vxtpl **arr = wf_build_own(b, t->vxt, b->old ? b->old->vxt : NULL, sizeof(void *) * t->n_vxt);
	if (arr == NULL)
		return -ENOMEM;
	t->vxt = arr;
	uint32_t c = ti >> WF_VXT_SHIFT;
	struct wf_vxtpl *chunk = wf_build_own(b, arr[c], b->old && b->old->vxt ? b->old->vxt[c] : NULL,
					      sizeof(struct wf_vxtpl) * WF_VXT_CHUNK);
	if (chunk == NULL)
		return -ENOMEM;
	arr[c] = chunk;
	wf_vx_build_tpl(dp, tc, &chunk[ti & (WF_VXT_CHUNK - 1)]);
	/* Its key, with the way its frames go; its VNI's marker. */
	struct wf_fwd f = wf_entry_for(dp, WF_SIDE_TUNNEL | ti);
	int rc = wf_hash_put(b, dec, &exact, &f, 0, &added);
	if (rc)
		return rc;
	b->sides++;
	if (added) {
		t->n_keys++;
		struct wf_fwd none = { .out_port = WF_PORT_NONE };
		bool madded;
		if ((rc = wf_hash_put(b, mark, &marker, &none, 1, &madded)) != 0)
			return rc;
		if (madded)
			t->n_marks++;
	}
	return 0;
}

/* Fresh hashes (first tunnel, growth): every VXLAN tunnel inserted anew. */
static int
wf_vxlan_rehash(struct wf_dataplane *dp, struct wf_build *b, uint32_t n_vx)
{
	struct wf_table *t = b->t;
	uint32_t slots = WF_DEC_CHUNK;
	while (slots < 2 * (n_vx + 1))
		slots <<= 1;
	uint32_t n = slots >> WF_DEC_SHIFT;
	struct wf_vxdec **arrays[2] = { NULL, NULL };
	for (int h = 0; h < 2; h++) {
		arrays[h] = wf_build_alloc(b, "weft_dec", sizeof(void *) * n, true);
		if (arrays[h] == NULL)
			return -ENOMEM;
		for (uint32_t c = 0; c < n; c++)
			if ((arrays[h][c] = wf_build_alloc(b, "weft_dec", sizeof(struct wf_vxdec) * WF_DEC_CHUNK, true)) == NULL)
				return -ENOMEM;
	}
	/* The old hashes go with the old table. */
	struct wf_vxdec **olds[2] = { t->dec, t->mark };
	uint32_t omask[2] = { t->dec_mask, t->mark_mask };
	for (int h = 0; h < 2; h++) {
		if (olds[h] == NULL)
			continue;
		for (uint32_t c = 0; c <= omask[h] >> WF_DEC_SHIFT; c++)
			if (wf_build_retire(b, olds[h][c]) != 0)
				return -ENOMEM;
		if (wf_build_retire(b, olds[h]) != 0)
			return -ENOMEM;
	}
	t->dec = arrays[0];
	t->mark = arrays[1];
	t->dec_mask = t->mark_mask = slots - 1;
	t->n_keys = t->n_marks = 0;
	struct wf_hash_ref dec = { .chunks = &t->dec, .old = NULL, .mask = t->dec_mask };
	struct wf_hash_ref mark = { .chunks = &t->mark, .old = NULL, .mask = t->mark_mask };
	for (uint32_t ti = 0; ti < dp->cfg.max_xconnects; ti++)
		if (dp->tunnels[ti].kind == WF_TUN_VXLAN) {
			int rc = wf_vxlan_build_one(dp, b, &dec, &mark, ti);
			if (rc)
				return rc;
		}
	return 0;
}

static int
wf_vxlan_build(struct wf_dataplane *dp, struct wf_build *b)
{
	struct wf_table *t = b->t;
	uint32_t adds = 0;
	for (uint32_t i = 0; i < dp->dirty.n_tun; i++)
		adds += dp->tunnels[dp->dirty.tun[i]].kind == WF_TUN_VXLAN;
	if (!dp->dirty.all && adds == 0 && dp->dirty.n_tun == 0)
		return 0;
	if (t->vxt == NULL && (adds > 0 || dp->dirty.all)) {
		t->n_vxt = (dp->cfg.max_xconnects + WF_VXT_CHUNK - 1) >> WF_VXT_SHIFT;
		if ((t->vxt = wf_build_alloc(b, "weft_vxt", sizeof(void *) * t->n_vxt, true)) == NULL)
			return -ENOMEM;
	}
	/* Full rebuild, or growth past a load of 1/2: new hashes. */
	if (dp->dirty.all || t->dec == NULL || 2 * (t->n_keys + adds) > t->dec_mask + 1) {
		uint32_t n_vx = 0;
		for (uint32_t ti = 0; ti < dp->cfg.max_xconnects; ti++)
			n_vx += dp->tunnels[ti].kind == WF_TUN_VXLAN;
		if (n_vx == 0 && t->dec == NULL)
			return 0;
		return wf_vxlan_rehash(dp, b, n_vx);
	}
	struct wf_hash_ref dec = { .chunks = &t->dec, .old = b->old ? b->old->dec : NULL, .mask = t->dec_mask };
	struct wf_hash_ref mark = { .chunks = &t->mark, .old = b->old ? b->old->mark : NULL, .mask = t->mark_mask };
	for (uint32_t i = 0; i < dp->dirty.n_tun; i++) {
		int rc = wf_vxlan_build_one(dp, b, &dec, &mark, dp->dirty.tun[i]);
		if (rc)
			return rc;
	}
	return 0;
}

static void
wf_vxlan_free(struct wf_table *t)
{
	if (t->vxt != NULL)
		for (uint32_t c = 0; c < t->n_vxt; c++)
			rte_free(t->vxt[c]);
	rte_free(t->vxt);
	struct wf_vxdec **hs[2] = { t->dec, t->mark };
	uint32_t masks[2] = { t->dec_mask, t->mark_mask };
	for (int h = 0; h < 2; h++) {
		if (hs[h] == NULL)
			continue;
		for (uint32_t c = 0; c <= masks[h] >> WF_DEC_SHIFT; c++)
			rte_free(hs[h][c]);
		rte_free(hs[h]);
	}
	t->vxt = NULL;
	t->dec = t->mark = NULL;
}

const struct wf_builder wf_vxlan_builder = { .name = "VXLAN", .build = wf_vxlan_build, .free = wf_vxlan_free };
