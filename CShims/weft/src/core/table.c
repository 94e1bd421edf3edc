/*
 * table.c: build the workers' table from the control-side state and publish
 * it hitlessly: one atomic pointer store, then wait for every worker to pass
 * a quiescent point (DPDK RCU) before freeing the old table. Workers never
 * see a half-built table and never wait for the control thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <rte_malloc.h>

#include "wf_internal.h"

/* Tests: the n-th table allocation from now fails (-1: none fails). */
static int wf_fail_alloc_in = -1;

void
wf_test_fail_table_alloc(int n)
{
	wf_fail_alloc_in = n;
}

/*
 * Every allocation of a table part goes through here, in DPDK's memory (huge
 * pages when EAL has them: fewer TLB misses on random lookups, and memory
 * that is never given back to the kernel, so publishing and freeing tables
 * causes no page faults or TLB shootdowns on the workers' cores).
 */
void *
wf_tbl_alloc(const char *what, size_t bytes, bool zero)
{
	if (wf_fail_alloc_in >= 0 && wf_fail_alloc_in-- == 0)
		return NULL;
	return zero ? rte_zmalloc(what, bytes, RTE_CACHE_LINE_SIZE) : rte_malloc(what, bytes, RTE_CACHE_LINE_SIZE);
}

void *
wf_big_calloc(size_t n, size_t size)
{
	size_t bytes = n * size;
	if (size != 0 && bytes / size != n)
		return NULL;
	return wf_tbl_alloc("weft_table", bytes, true);
}

void
wf_table_free(struct wf_table *t)
{
	if (t == NULL)
		return;
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		rte_free(t->vlan[p]);
		rte_free(t->ul[p]);
	}
	for (uint32_t i = 0; i < WF_MAX_P2MP; i++)
		rte_free(t->p2mp[i]);
	rte_free(t->vx);
	rte_free(t->dec);
	rte_free(t->mark);
	rte_free(t);
}

/* Decap slot of a VXLAN key (inserted if new). The table has room: 4x keys. */
static struct wf_vxdec *
wf_dec_slot(struct wf_vxdec *tab, uint32_t mask, const struct wf_vxkey *k)
{
	for (uint32_t i = wf_vx_hash(k) & mask;; i = (i + 1) & mask) {
		struct wf_vxdec *d = &tab[i];
		if (!d->used) {
			d->used = 1;
			d->key = *k;
			d->f = (struct wf_fwd){ .out_port = WF_PORT_NONE };
			return d;
		}
		if (memcmp(&d->key, k, sizeof(*k)) == 0)
			return d;
	}
}

static struct wf_vxkey
wf_key_of(const struct wf_tunnel_ctl *tc, bool marker)
{
	struct wf_vxkey k;
	memset(&k, 0, sizeof(k));
	k.is_v6 = tc->vx.is_v6;
	k.port = tc->vx.local_port;
	k.vni = tc->vx.vni;
	if (marker)
		memset(k.src, 0xff, sizeof(k.src));
	else
		memcpy(k.src, tc->vx.remote, tc->vx.is_v6 ? 16 : 4);
	return k;
}

/* Where the table says what to do with frames coming from `side`. */
struct wf_fwd *
wf_entry_from(const struct wf_dataplane *dp, struct wf_table *t, uint32_t side)
{
	if (!(side & WF_SIDE_TUNNEL))
		return &t->fwd[side];
	const struct wf_tunnel_ctl *tc = &dp->tunnels[side & ~WF_SIDE_TUNNEL];
	if (tc->kind == WF_TUN_VXLAN) {
		struct wf_vxkey k = wf_key_of(tc, false);
		return &wf_dec_slot(t->dec, t->dec_mask, &k)->f;
	}
	return &t->vlan[tc->uplink][tc->vlan_id];
}

/* How a frame reaches `side`: the port it leaves on and the header it gets. */
struct wf_fwd
wf_way_to(const struct wf_dataplane *dp, const uint32_t *vx_index, uint32_t side, uint32_t slot,
	  uint8_t dir)
{
	struct wf_fwd f = { .out_port = (uint16_t)side, .dir = dir, .action = WF_ACT_FWD, .xc_slot = slot };
	if (side & WF_SIDE_TUNNEL) {
		uint32_t ti = side & ~WF_SIDE_TUNNEL;
		const struct wf_tunnel_ctl *tc = &dp->tunnels[ti];
		f.out_port = tc->uplink;
		if (tc->kind == WF_TUN_VXLAN) {
			f.action = WF_ACT_VXLAN_ENCAP;
			f.tun = vx_index[ti];
		} else if (tc->vlan_id != WF_VLAN_RAW) {
			f.action = WF_ACT_VLAN_PUSH;
			f.vlan_tci = tc->vlan_id;
		}
	}
	return f;
}

/* An uplink with VLANs classifies by VLAN id. A VXLAN-only uplink has no
 * map: what is neither its VXLAN nor for its addresses is dropped as
 * not-for-uplink, not counted as an unknown VLAN. */
static bool
wf_has_vlan_map(const struct wf_dataplane *dp, uint32_t p)
{
	return dp->n_vlans_on[p] > 0;
}

int wf_p2mp_build(const struct wf_dataplane *dp, struct wf_table *t, const uint32_t *vx_index);

int
wf_table_publish_add(struct wf_dataplane *dp)
{
	if (dp->hold > 0) {
		dp->pending = true;
		return 0;
	}
	return wf_table_publish(dp);
}

int
wf_dp_hold(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return -EINVAL;
	dp->hold++;
	return 0;
}

int
wf_dp_release(wf_dataplane_t *dp)
{
	if (dp == NULL || dp->hold == 0)
		return -EINVAL;
	if (--dp->hold > 0 || !dp->pending)
		return 0;
	int rc = wf_table_publish(dp);
	if (rc != 0)
		dp->pending = true;
	return rc;
}

int
wf_table_publish(struct wf_dataplane *dp)
{
	dp->pending = false;
	/* Every part of a table lives in DPDK's memory, which is never given back
	 * to the kernel: publishing and freeing tables causes no page faults on the
	 * workers and no TLB shootdowns (IPIs) on their cores. */
	struct wf_table *t = wf_tbl_alloc("weft_table", sizeof(*t), true);
	if (t == NULL)
		return -ENOMEM;
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		t->fwd[p].out_port = WF_PORT_NONE;
		if (!wf_has_vlan_map(dp, p))
			continue;
		t->vlan[p] = wf_tbl_alloc("weft_vlan", sizeof(struct wf_fwd) * WF_VLAN_IDS, false);
		if (t->vlan[p] == NULL) {
			wf_table_free(t);
			return -ENOMEM;
		}
		for (uint32_t v = 0; v < WF_VLAN_IDS; v++)
			t->vlan[p][v] = (struct wf_fwd){ .out_port = WF_PORT_NONE };
	}

	/* Underlay addresses: each table owns its copy. */
	pthread_mutex_lock(&dp->ul_lock);
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		if (dp->ul_ctl[p] == NULL)
			continue;
		t->ul[p] = wf_tbl_alloc("weft_ul", sizeof(struct wf_underlay), false);
		if (t->ul[p] == NULL) {
			pthread_mutex_unlock(&dp->ul_lock);
			wf_table_free(t);
			wf_set_error("out of memory for an uplink's underlay in the new table (DPDK memory: eal.memory_mb)");
			return -ENOMEM;
		}
		*t->ul[p] = *dp->ul_ctl[p];
	}
	pthread_mutex_unlock(&dp->ul_lock);

	/* VXLAN: encap templates, and decap keys (exact + a per-VNI marker). */
	uint32_t n_vx = 0;
	for (uint32_t i = 0; i < dp->cfg.max_xconnects; i++)
		n_vx += dp->tunnels[i].kind == WF_TUN_VXLAN;
	uint32_t *vx_index = NULL;
	if (n_vx > 0) {
		/* Linear probing at a load of at most 1/2. */
		uint32_t slots = 16;
		while (slots < 2 * n_vx)
			slots <<= 1;
		t->vx = wf_big_calloc(n_vx, sizeof(*t->vx));
		t->dec = wf_big_calloc(slots, sizeof(*t->dec));
		t->mark = wf_big_calloc(slots, sizeof(*t->mark));
		vx_index = calloc(dp->cfg.max_xconnects, sizeof(*vx_index));
		if (t->vx == NULL || t->dec == NULL || t->mark == NULL || vx_index == NULL) {
			free(vx_index);
			wf_table_free(t);
			wf_set_error("out of memory for the tables of %u VXLAN tunnels (DPDK memory: eal.memory_mb)",
				     n_vx);
			return -ENOMEM;
		}
		t->dec_mask = slots - 1;
		t->mark_mask = slots - 1;
		for (uint32_t i = 0; i < dp->cfg.max_xconnects; i++) {
			const struct wf_tunnel_ctl *tc = &dp->tunnels[i];
			if (tc->kind != WF_TUN_VXLAN)
				continue;
			vx_index[i] = t->n_vx;
			wf_vx_build_tpl(dp, tc, &t->vx[t->n_vx++]);
			struct wf_vxkey exact = wf_key_of(tc, false), marker = wf_key_of(tc, true);
			wf_dec_slot(t->dec, t->dec_mask, &exact);
			wf_dec_slot(t->mark, t->mark_mask, &marker);
		}
	}

	for (uint32_t s = 0; s < dp->cfg.max_xconnects; s++) {
		const struct wf_xc_ctl *x = &dp->xcs[s];
		if (!x->used || x->p2mp)
			continue;
		*wf_entry_from(dp, t, x->a) = wf_way_to(dp, vx_index, x->b, s, 0);
		*wf_entry_from(dp, t, x->b) = wf_way_to(dp, vx_index, x->a, s, 1);
	}
	int rc = wf_p2mp_build(dp, t, vx_index);
	free(vx_index);
	if (rc != 0) {
		wf_table_free(t);
		return rc;
	}
	t->gen = ++dp->table_gen;
	struct wf_table *old = __atomic_exchange_n(&dp->table, t, __ATOMIC_ACQ_REL);
	/* The control thread is not an RCU reader: RTE_QSBR_THRID_INVALID. */
	/* Ports this table brings: their queues go to their workers now. */
	wf_pollset_flush(dp);
	rte_rcu_qsbr_synchronize(dp->qs, RTE_QSBR_THRID_INVALID);
	wf_table_free(old);
	/* No worker uses what was removed while publishing was held any more. */
	if (dp->n_retiring > 0) {
		for (uint32_t i = 0; i < dp->cfg.max_xconnects; i++) {
			dp->xcs[i].retiring = false;
			struct wf_tunnel_ctl *tc = &dp->tunnels[i];
			if (!tc->retiring)
				continue;
			tc->retiring = false;
			if (tc->retired_kind == WF_TUN_VXLAN)
				wf_nbr_release(dp, tc->nbr);
		}
		dp->n_retiring = 0;
	}
	return 0;
}
