/*
 * p2mp.c: control side of point-to-multipoint connections: replication
 * groups and L2 bridge domains (per-packet work: p2mp_node.c). Each member
 * side gets a counter slot of its own; a side belongs to one connection at
 * a time. Hitless: tables are published through RCU; per-worker MAC tables
 * are allocated before a domain is published and freed after it is gone.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_malloc.h>

#include "wf_internal.h"

static int
wf_p2mp_claim(struct wf_dataplane *dp, struct wf_p2mp_ctl *g, uint32_t n_claim, const uint32_t *sides,
	      uint32_t *slots)
{
	uint32_t done = 0;
	int rc = 0;
	for (; done < n_claim; done++) {
		const char *what = "side";
		uint32_t *ss = wf_side_slot(dp, sides[done], &what);
		if (ss == NULL) {
			wf_set_error("member side %u does not exist", sides[done]);
			rc = -ENODEV;
			break;
		}
		if (*ss != UINT32_MAX) {
			wf_set_error("%s is already in a connection", what);
			rc = -EBUSY;
			break;
		}
		if (!(sides[done] & WF_SIDE_TUNNEL) && dp->n_tunnels_on[sides[done]] > 0) {
			wf_set_error("%s is an uplink; use one of its tunnels", what);
			rc = -EBUSY;
			break;
		}
		uint32_t s;
		if ((rc = wf_slot_alloc(dp, &s)) != 0)
			break;
		dp->xcs[s] = (struct wf_xc_ctl){ .used = true, .p2mp = true, .a = sides[done], .b = sides[done],
						 .group = (uint32_t)(g - dp->p2mp) };
		*ss = s;
		slots[done] = s;
	}
	if (rc != 0) {
		while (done-- > 0) {
			dp->xcs[slots[done]].used = false;
			*wf_side_slot(dp, sides[done], NULL) = UINT32_MAX;
		}
	}
	return rc;
}

#define WF_HOLE UINT32_MAX /* a removed member's index, free for reuse */

static bool
wf_taken(const uint32_t *idx, uint32_t n, uint32_t h)
{
	for (uint32_t i = 0; i < n; i++)
		if (idx[i] == h)
			return true;
	return false;
}

static void
wf_p2mp_release(struct wf_dataplane *dp, const struct wf_p2mp_ctl *g)
{
	for (uint32_t i = 0; i < g->n; i++) {
		if (g->m[i].side == WF_HOLE)
			continue;
		dp->xcs[g->slot[i]].used = false;
		uint32_t *ss = wf_side_slot(dp, g->m[i].side, NULL);
		if (ss)
			*ss = UINT32_MAX;
	}
	if (g->kind == WF_P2MP_REPLICATE) {
		dp->xcs[g->ingress_slot].used = false;
		uint32_t *ss = wf_side_slot(dp, g->ingress, NULL);
		if (ss)
			*ss = UINT32_MAX;
	}
}

static int
wf_p2mp_free_id(struct wf_dataplane *dp, uint32_t *id)
{
	for (uint32_t i = 0; i < WF_MAX_P2MP; i++)
		if (dp->p2mp[i].kind == 0) {
			*id = i;
			return 0;
		}
	wf_set_error("all %d replication groups / bridge domains are in use", WF_MAX_P2MP);
	return -ENOSPC;
}

static int
wf_check_members(const struct wf_p2mp_member *members, uint32_t n, uint32_t min)
{
	if (members == NULL || n < min || n > WF_MAX_MEMBERS) {
		wf_set_error("need %u..%d members, got %u", min, WF_MAX_MEMBERS, n);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < i; j++)
			if (members[i].side == members[j].side) {
				wf_set_error("member %u is listed twice", i);
				return -EINVAL;
			}
	return 0;
}

int
wf_replicate_add(wf_dataplane_t *dp, uint32_t ingress, const struct wf_p2mp_member *members, uint32_t n,
		 uint32_t clone_min_bytes, uint32_t *id, uint32_t *slots)
{
	if (dp == NULL || id == NULL || slots == NULL)
		return -EINVAL;
	int rc = wf_check_members(members, n, 1);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < n; i++)
		if (members[i].side == ingress) {
			wf_set_error("a replication group cannot include its own ingress");
			return -EINVAL;
		}
	uint32_t gid;
	if ((rc = wf_p2mp_free_id(dp, &gid)) != 0)
		return rc;
	struct wf_p2mp_ctl *g = &dp->p2mp[gid];
	memset(g, 0, sizeof(*g));
	uint32_t sides[WF_MAX_MEMBERS + 1];
	uint32_t got[WF_MAX_MEMBERS + 1];
	sides[0] = ingress;
	for (uint32_t i = 0; i < n; i++)
		sides[i + 1] = members[i].side;
	if ((rc = wf_p2mp_claim(dp, g, n + 1, sides, got)) != 0)
		return rc;
	g->ingress = ingress;
	g->ingress_slot = got[0];
	g->n = n;
	memcpy(g->m, members, n * sizeof(*members));
	memcpy(g->slot, got + 1, n * sizeof(uint32_t));
	g->clone_min = clone_min_bytes;
	g->kind = WF_P2MP_REPLICATE;
	wf_p2mp_dirty(dp, gid);
	if ((rc = wf_table_publish_add(dp)) != 0) {
		wf_p2mp_release(dp, g);
		g->kind = 0;
		return rc;
	}
	memcpy(slots, g->slot, n * sizeof(uint32_t));
	*id = gid;
	return 0;
}

int
wf_bridge_add(wf_dataplane_t *dp, const struct wf_bridge_cfg *cfg, const struct wf_p2mp_member *members,
	      uint32_t n, uint32_t *id, uint32_t *slots)
{
	if (dp == NULL || cfg == NULL || id == NULL || slots == NULL)
		return -EINVAL;
	int rc = wf_check_members(members, n, 2);
	if (rc)
		return rc;
	if (cfg->mac_limit == 0 || cfg->mac_limit > (1u << 20) || cfg->n_static > 16) {
		wf_set_error("MAC limit must be 1..1048576 and at most 16 static MACs");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < cfg->n_static; i++)
		if (cfg->static_member[i] >= n) {
			wf_set_error("static MAC %u names member %u of %u", i, cfg->static_member[i], n);
			return -EINVAL;
		}
	uint32_t gid;
	if ((rc = wf_p2mp_free_id(dp, &gid)) != 0)
		return rc;
	/* Per-worker MAC tables: 4-way buckets holding twice the limit. */
	uint32_t buckets = 1;
	while (buckets * 4 < cfg->mac_limit * 2)
		buckets <<= 1;
	for (uint32_t w = 0; w < dp->n_pollers; w++) {
		size_t sz = sizeof(struct wf_mac_tbl) + sizeof(struct wf_mac_slot) * buckets * 4;
		struct wf_mac_tbl *m = rte_zmalloc("weft_mac", sz, RTE_CACHE_LINE_SIZE);
		if (m == NULL) {
			for (uint32_t v = 0; v < w; v++) {
				rte_free(dp->workers[v].mac[gid]);
				dp->workers[v].mac[gid] = NULL;
			}
			return -ENOMEM;
		}
		m->mask = buckets - 1;
		dp->workers[w].mac[gid] = m;
	}
	struct wf_p2mp_ctl *g = &dp->p2mp[gid];
	memset(g, 0, sizeof(*g));
	uint32_t sides[WF_MAX_MEMBERS];
	for (uint32_t i = 0; i < n; i++)
		sides[i] = members[i].side;
	if ((rc = wf_p2mp_claim(dp, g, n, sides, g->slot)) != 0)
		goto fail;
	g->n = n;
	memcpy(g->m, members, n * sizeof(*members));
	g->bcfg = *cfg;
	g->kind = WF_P2MP_BRIDGE;
	wf_p2mp_dirty(dp, gid);
	if ((rc = wf_table_publish_add(dp)) != 0) {
		wf_p2mp_release(dp, g);
		g->kind = 0;
		goto fail;
	}
	memcpy(slots, g->slot, n * sizeof(uint32_t));
	*id = gid;
	return 0;
fail:
	for (uint32_t w = 0; w < dp->n_pollers; w++) {
		rte_free(dp->workers[w].mac[gid]);
		dp->workers[w].mac[gid] = NULL;
	}
	return rc;
}

int
wf_p2mp_del(wf_dataplane_t *dp, uint32_t id)
{
	if (dp == NULL || id >= WF_MAX_P2MP || dp->p2mp[id].kind == 0)
		return -ENOENT;
	struct wf_p2mp_ctl saved = dp->p2mp[id];
	wf_p2mp_dirty(dp, id);
	dp->p2mp[id].kind = 0;
	int rc = wf_table_publish(dp);
	if (rc != 0) {
		dp->p2mp[id] = saved;
		return rc;
	}
	/* No worker can reach the domain any more: free its tables and slots. */
	wf_p2mp_release(dp, &saved);
	for (uint32_t w = 0; w < dp->n_pollers; w++) {
		rte_free(dp->workers[w].mac[id]);
		dp->workers[w].mac[id] = NULL;
	}
	return 0;
}

/*
 * Change the members of a group or domain in one publish: members that stay
 * keep their index, slot and learned MACs; removed ones leave a hole; new
 * ones are appended. Traffic of the members that stay is not disturbed.
 */
int
wf_p2mp_update(wf_dataplane_t *dp, uint32_t id, const struct wf_p2mp_member *members, uint32_t n,
	       uint32_t *slots)
{
	if (dp == NULL || id >= WF_MAX_P2MP || dp->p2mp[id].kind == 0 || slots == NULL)
		return -ENOENT;
	struct wf_p2mp_ctl *g = &dp->p2mp[id];
	int rc = wf_check_members(members, n, g->kind == WF_P2MP_BRIDGE ? 2 : 1);
	if (rc)
		return rc;
	struct wf_p2mp_ctl next = *g;
	uint32_t added_side[WF_MAX_MEMBERS], added_idx[WF_MAX_MEMBERS], n_added = 0;
	bool keep[WF_MAX_MEMBERS] = { false };
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < g->n; j++)
			if (g->m[j].side == members[i].side && members[i].side != WF_HOLE)
				keep[j] = true;
	for (uint32_t j = 0; j < g->n; j++)
		if (!keep[j])
			next.m[j].side = WF_HOLE;
	for (uint32_t i = 0; i < n; i++) {
		if (g->kind == WF_P2MP_REPLICATE && members[i].side == g->ingress) {
			wf_set_error("a replication group cannot include its own ingress");
			return -EINVAL;
		}
		uint32_t j;
		for (j = 0; j < g->n && g->m[j].side != members[i].side; j++)
			;
		if (j < g->n) {
			next.m[j].shg = members[i].shg;
			continue;
		}
		/* Reuse a hole (with a new generation, so no learned MAC of the
		 * member that left can match), else append. */
		uint32_t h;
		for (h = 0; h < next.n; h++)
			if (next.m[h].side == WF_HOLE && !(h < g->n && keep[h]) && !wf_taken(added_idx, n_added, h))
				break;
		if (h == next.n) {
			if (next.n >= WF_MAX_MEMBERS) {
				wf_set_error("at most %d members", WF_MAX_MEMBERS);
				return -ENOSPC;
			}
			next.n++;
		} else {
			next.gen[h] = (uint16_t)((next.gen[h] + 1) & 0x1ff);
		}
		added_idx[n_added] = h;
		added_side[n_added++] = members[i].side;
		next.m[h] = members[i];
	}
	uint32_t new_slots[WF_MAX_MEMBERS];
	if ((rc = wf_p2mp_claim(dp, &next, n_added, added_side, new_slots)) != 0)
		return rc;
	for (uint32_t a = 0; a < n_added; a++)
		next.slot[added_idx[a]] = new_slots[a];
	struct wf_p2mp_ctl old = *g;
	wf_p2mp_dirty(dp, id); /* the members that leave */
	*g = next;
	wf_p2mp_dirty(dp, id); /* and those that stay or join */
	if ((rc = wf_table_publish(dp)) != 0) {
		*g = old;
		for (uint32_t a = 0; a < n_added; a++) {
			dp->xcs[new_slots[a]].used = false;
			*wf_side_slot(dp, added_side[a], NULL) = UINT32_MAX;
		}
		return rc;
	}
	/* Published: release the members that left. */
	for (uint32_t j = 0; j < old.n; j++)
		if (!keep[j] && old.m[j].side != WF_HOLE) {
			dp->xcs[old.slot[j]].used = false;
			uint32_t *ss = wf_side_slot(dp, old.m[j].side, NULL);
			if (ss)
				*ss = UINT32_MAX;
		}
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < g->n; j++)
			if (g->m[j].side == members[i].side)
				slots[i] = g->slot[j];
	return 0;
}

/* A group or domain changes: its part, and the ways of its sides. */
void
wf_p2mp_dirty(struct wf_dataplane *dp, uint32_t id)
{
	const struct wf_p2mp_ctl *g = &dp->p2mp[id];
	wf_dirty_p2mp(dp, id);
	if (g->kind == WF_P2MP_REPLICATE)
		wf_dirty_side(dp, g->ingress);
	for (uint32_t i = 0; i < g->n; i++)
		if (g->m[i].side != WF_HOLE)
			wf_dirty_side(dp, g->m[i].side);
}

/* The workers' view of each changed group or domain. */
static int
wf_p2mp_build_one(struct wf_dataplane *dp, struct wf_build *b, uint32_t id)
{
	const struct wf_p2mp_ctl *g = &dp->p2mp[id];
	if (wf_build_retire(b, b->t->p2mp[id]) != 0)
		return -ENOMEM;
	b->t->p2mp[id] = NULL;
	if (g->kind == 0)
		return 0;
	struct wf_p2mp_tbl *pt = wf_build_alloc(b, "weft_p2mp", sizeof(*pt), true);
	if (pt == NULL)
		return -ENOMEM;
	b->t->p2mp[id] = pt;
	pt->kind = g->kind;
	pt->id = id;
	pt->n = g->n;
	pt->clone_min = g->clone_min ? g->clone_min : UINT32_MAX;
	for (uint32_t i = 0; i < g->n; i++) {
		if (g->m[i].side == WF_HOLE) {
			pt->m[i].way = (struct wf_fwd){ .out_port = WF_PORT_NONE };
			continue;
		}
		pt->m[i].way = wf_way_to(dp, g->m[i].side, g->slot[i], 0);
		pt->m[i].shg = g->m[i].shg;
		pt->m[i].gen = g->gen[i];
		pt->m[i].plain = pt->m[i].way.action == WF_ACT_FWD;
	}
	/* The last live member, which may take the original frame. */
	pt->last = 0;
	for (uint32_t i = 0; i < g->n; i++)
		if (g->m[i].side != WF_HOLE)
			pt->last = i;
	if (g->kind == WF_P2MP_BRIDGE) {
		pt->age_tsc = (uint64_t)g->bcfg.age_ms * rte_get_tsc_hz() / 1000;
		pt->mac_limit = g->bcfg.mac_limit;
		pt->n_static = g->bcfg.n_static;
		for (uint32_t i = 0; i < g->bcfg.n_static; i++) {
			uint64_t k = 0;
			for (int c = 0; c < 6; c++)
				k |= (uint64_t)g->bcfg.static_mac[i][c] << (8 * c);
			pt->static_key[i] = k | (uint64_t)g->bcfg.static_member[i] << 48;
		}
	}
	return 0;
}

static int
wf_p2mp_build(struct wf_dataplane *dp, struct wf_build *b)
{
	for (uint32_t w = 0; w < WF_MAX_P2MP / 64; w++) {
		uint64_t bits = dp->dirty.all ? ~0ull : dp->dirty.p2mp[w];
		while (bits) {
			uint32_t id = w * 64 + (uint32_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			int rc = wf_p2mp_build_one(dp, b, id);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static void
wf_p2mp_free(struct wf_table *t)
{
	for (uint32_t i = 0; i < WF_MAX_P2MP; i++) {
		rte_free(t->p2mp[i]);
		t->p2mp[i] = NULL;
	}
}

const struct wf_builder wf_p2mp_builder = { .name = "groups", .build = wf_p2mp_build, .free = wf_p2mp_free };

int
wf_bridge_macs(wf_dataplane_t *dp, uint32_t id, struct wf_mac_entry *out, uint32_t cap)
{
	if (dp == NULL || id >= WF_MAX_P2MP || dp->p2mp[id].kind != WF_P2MP_BRIDGE)
		return -ENOENT;
	const struct wf_p2mp_ctl *g = &dp->p2mp[id];
	uint64_t now = rte_rdtsc(), hz = rte_get_tsc_hz(), age = (uint64_t)g->bcfg.age_ms * hz / 1000;
	uint32_t n = 0;
	for (uint32_t i = 0; i < g->bcfg.n_static; i++, n++)
		if (out && n < cap) {
			memset(&out[n], 0, sizeof(out[n]));
			memcpy(out[n].mac, g->bcfg.static_mac[i], 6);
			out[n].member = g->bcfg.static_member[i];
			out[n].is_static = 1;
		}
	for (uint32_t w = 0; w < dp->n_pollers; w++) {
		const struct wf_mac_tbl *m = dp->workers[w].mac[id];
		if (m == NULL)
			continue;
		/* Racy by design: a snapshot of tables only their worker writes. */
		for (uint32_t i = 0; i < (m->mask + 1) * 4; i++) {
			uint64_t k = __atomic_load_n(&m->s[i].key, __ATOMIC_RELAXED);
			uint64_t seen = __atomic_load_n(&m->s[i].seen, __ATOMIC_RELAXED);
			if (k == 0 || now - seen > age || WF_MAC_GEN(k) != g->gen[WF_MAC_MEMBER(k)] ||
			    g->m[WF_MAC_MEMBER(k)].side == WF_HOLE)
				continue;
			if (out && n < cap) {
				memset(&out[n], 0, sizeof(out[n]));
				for (int b = 0; b < 6; b++)
					out[n].mac[b] = (uint8_t)(k >> (8 * b));
				out[n].member = (uint16_t)WF_MAC_MEMBER(k);
				out[n].worker = w;
				out[n].age_ms = (now - seen) * 1000 / hz;
			}
			n++;
		}
	}
	return (int)n;
}

int
wf_bridge_stats(const wf_dataplane_t *dp, uint32_t id, struct wf_bridge_stats *s)
{
	if (dp == NULL || s == NULL || id >= WF_MAX_P2MP || dp->p2mp[id].kind != WF_P2MP_BRIDGE)
		return -ENOENT;
	memset(s, 0, sizeof(*s));
	for (uint32_t w = 0; w < dp->n_pollers; w++) {
		const struct wf_mac_tbl *m = dp->workers[w].mac[id];
		if (m == NULL)
			continue;
		s->learned += __atomic_load_n(&m->learned, __ATOMIC_RELAXED);
		s->moves += __atomic_load_n(&m->moves, __ATOMIC_RELAXED);
		s->flooded += __atomic_load_n(&m->flooded, __ATOMIC_RELAXED);
		s->limit_drops += __atomic_load_n(&m->limit_drops, __ATOMIC_RELAXED);
	}
	return 0;
}
