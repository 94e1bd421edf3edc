/*
 * table.c: publishing the workers' table, hitlessly. The next table is the
 * published one's root copied, with the parts a change touched rebuilt by
 * the builder of the stage that owns them (registered at create: underlay,
 * VLAN, VXLAN, sides, groups); every other part is shared. Publishing is one
 * atomic pointer store; what only the old table used is freed after every
 * worker has passed a quiescent point (DPDK RCU). Workers never see a
 * half-built table and never wait for the control thread.
 *
 * This file knows no stage: it holds the build context, the dirty marks the
 * control calls set, hold/release, and the swap.
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

/* ---- the build context --------------------------------------------------- */

static int
wf_push(void ***arr, uint32_t *n, uint32_t *cap, void *p)
{
	if (*n == *cap) {
		uint32_t c = *cap ? *cap * 2 : 32;
		void **a = realloc(*arr, sizeof(void *) * c);
		if (a == NULL)
			return -ENOMEM;
		*arr = a;
		*cap = c;
	}
	(*arr)[(*n)++] = p;
	return 0;
}

void *
wf_build_alloc(struct wf_build *b, const char *what, size_t bytes, bool zero)
{
	void *p = wf_tbl_alloc(what, bytes, zero);
	if (p == NULL)
		return NULL;
	if (wf_push(&b->fresh, &b->n_fresh, &b->cap_fresh, p) != 0) {
		rte_free(p);
		return NULL;
	}
	b->bytes += bytes;
	b->parts++;
	return p;
}

int
wf_build_retire(struct wf_build *b, void *part)
{
	if (part == NULL)
		return 0;
	return wf_push(&b->retire, &b->n_retire, &b->cap_retire, part);
}

void *
wf_build_own(struct wf_build *b, void *cur, const void *old, size_t bytes)
{
	if (cur != old && cur != NULL)
		return cur; /* made by this build already */
	void *copy = wf_build_alloc(b, "weft_part", bytes, cur == NULL);
	if (copy == NULL)
		return NULL;
	if (cur != NULL) {
		memcpy(copy, cur, bytes);
		if (wf_build_retire(b, cur) != 0)
			return NULL;
	}
	return copy;
}

void
wf_builder_register(struct wf_dataplane *dp, const struct wf_builder *b)
{
	if (dp->n_builders < WF_MAX_BUILDERS)
		dp->builders[dp->n_builders++] = b;
}

/* ---- dirty marks ------------------------------------------------------------- */

/* A cross-connect slot (or a tunnel, WF_SIDE_TUNNEL | index) removed while
 * publishing is held: not reused until the publish that drops it. */
int
wf_retire_later(struct wf_dataplane *dp, uint32_t e)
{
	if (dp->n_retiring == dp->cap_retiring) {
		uint32_t c = dp->cap_retiring ? dp->cap_retiring * 2 : 64;
		uint32_t *a = realloc(dp->retiring, sizeof(uint32_t) * c);
		if (a == NULL)
			return -ENOMEM;
		dp->retiring = a;
		dp->cap_retiring = c;
	}
	dp->retiring[dp->n_retiring++] = e;
	dp->pending = true;
	return 0;
}

void
wf_dirty_side(struct wf_dataplane *dp, uint32_t side)
{
	if (!(side & WF_SIDE_TUNNEL)) {
		if (side < WF_MAX_PORTS)
			dp->dirty.port[side / 64] |= 1ull << (side % 64);
		return;
	}
	uint32_t t = side & ~WF_SIDE_TUNNEL;
	if (t >= dp->cfg.max_xconnects || (dp->dirty.tun_bit[t / 64] & (1ull << (t % 64))))
		return;
	if (dp->dirty.n_tun == dp->dirty.cap_tun) {
		uint32_t c = dp->dirty.cap_tun ? dp->dirty.cap_tun * 2 : 64;
		uint32_t *a = realloc(dp->dirty.tun, sizeof(uint32_t) * c);
		if (a == NULL) {
			dp->dirty.all = true; /* remembered as "everything" */
			return;
		}
		dp->dirty.tun = a;
		dp->dirty.cap_tun = c;
	}
	dp->dirty.tun_bit[t / 64] |= 1ull << (t % 64);
	dp->dirty.tun[dp->dirty.n_tun++] = t;
}

void
wf_dirty_ul(struct wf_dataplane *dp, uint16_t port)
{
	if (port < WF_MAX_PORTS)
		dp->dirty.ul[port / 64] |= 1ull << (port % 64);
}

void
wf_dirty_p2mp(struct wf_dataplane *dp, uint32_t id)
{
	if (id < WF_MAX_P2MP)
		dp->dirty.p2mp[id / 64] |= 1ull << (id % 64);
}

static void
wf_dirty_clear(struct wf_dataplane *dp)
{
	struct wf_dirty *d = &dp->dirty;
	d->all = false;
	memset(d->port, 0, sizeof(d->port));
	memset(d->ul, 0, sizeof(d->ul));
	memset(d->p2mp, 0, sizeof(d->p2mp));
	for (uint32_t i = 0; i < d->n_tun; i++)
		d->tun_bit[d->tun[i] / 64] &= ~(1ull << (d->tun[i] % 64));
	d->n_tun = 0;
}

/* ---- publishing --------------------------------------------------------------- */

int
wf_table_init(struct wf_dataplane *dp)
{
	dp->dirty.tun_bit = calloc(dp->cfg.max_xconnects / 64 + 1, sizeof(uint64_t));
	if (dp->dirty.tun_bit == NULL)
		return -ENOMEM;
	dp->dirty.all = true;
	return wf_table_publish(dp);
}

static void
wf_build_discard(struct wf_build *b)
{
	for (uint32_t i = 0; i < b->n_fresh; i++)
		rte_free(b->fresh[i]);
	free(b->fresh);
	free(b->retire);
}

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
	struct wf_build b = { .old = dp->table };
	b.t = wf_build_alloc(&b, "weft_table", sizeof(struct wf_table), b.old == NULL);
	if (b.t == NULL) {
		wf_build_discard(&b);
		wf_set_error("out of memory for a new table (DPDK memory: eal.memory_mb)");
		return -ENOMEM;
	}
	if (b.old != NULL) {
		memcpy(b.t, b.old, sizeof(*b.t));
	} else {
		for (uint32_t p = 0; p < WF_MAX_PORTS; p++)
			b.t->fwd[p] = (struct wf_fwd){ .out_port = WF_PORT_NONE };
	}
	for (uint32_t i = 0; i < dp->n_builders; i++) {
		int rc = dp->builders[i]->build(dp, &b);
		if (rc != 0) {
			/* Nothing published; the marks stay for the next try. */
			wf_build_discard(&b);
			if (rc == -ENOMEM)
				wf_set_error("out of memory building the %s part of a new table (DPDK memory: eal.memory_mb)",
					     dp->builders[i]->name);
			return rc;
		}
	}
	b.t->gen = ++dp->table_gen;
	struct wf_table *old = __atomic_exchange_n(&dp->table, b.t, __ATOMIC_ACQ_REL);
	wf_dirty_clear(dp);
	dp->tstats.publishes++;
	dp->tstats.last_bytes = b.bytes;
	dp->tstats.last_parts = b.parts;
	dp->tstats.last_sides = b.sides;
	dp->tstats.total_bytes += b.bytes;
	/* Ports this table brings: their queues go to their workers now. */
	wf_pollset_flush(dp);
	/* The control thread is not an RCU reader: RTE_QSBR_THRID_INVALID. */
	rte_rcu_qsbr_synchronize(dp->qs, RTE_QSBR_THRID_INVALID);
	rte_free(old);
	for (uint32_t i = 0; i < b.n_retire; i++)
		rte_free(b.retire[i]);
	free(b.fresh);
	free(b.retire);
	/* No worker uses what was removed while publishing was held any more. */
	for (uint32_t i = 0; i < dp->n_retiring; i++) {
		uint32_t e = dp->retiring[i];
		if (!(e & WF_SIDE_TUNNEL)) {
			dp->xcs[e].retiring = false;
			continue;
		}
		struct wf_tunnel_ctl *tc = &dp->tunnels[e & ~WF_SIDE_TUNNEL];
		tc->retiring = false;
		if (tc->retired_kind == WF_TUN_VXLAN)
			wf_nbr_release(dp, tc->nbr);
	}
	dp->n_retiring = 0;
	return 0;
}

void
wf_table_fini(struct wf_dataplane *dp)
{
	struct wf_table *t = dp->table;
	dp->table = NULL;
	if (t != NULL) {
		for (uint32_t i = 0; i < dp->n_builders; i++)
			if (dp->builders[i]->free != NULL)
				dp->builders[i]->free(t);
		rte_free(t);
	}
	free(dp->dirty.tun);
	free(dp->dirty.tun_bit);
	free(dp->retiring);
	dp->retiring = NULL;
	dp->dirty.tun = NULL;
	dp->dirty.tun_bit = NULL;
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		free(dp->vlan_tun[p]);
		dp->vlan_tun[p] = NULL;
	}
}

int
wf_table_stats(const wf_dataplane_t *dp, struct wf_table_stats *s)
{
	if (dp == NULL || s == NULL)
		return -EINVAL;
	*s = dp->tstats;
	return 0;
}
