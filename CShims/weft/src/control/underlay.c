/*
 * underlay.c: an uplink's own addresses (set, cleared), the rings the punt
 * path uses, and the builder of the table's underlay parts. Answering and
 * resolving are punt.c and neighbour.c.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_arp.h>
#include <rte_malloc.h>
#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_hash_crc.h>
#include <rte_icmp.h>
#include <rte_ip.h>

#include "wf_internal.h"

int
wf_underlay_init(struct wf_dataplane *dp)
{
	pthread_mutex_init(&dp->ul_lock, NULL);
	char name[RTE_RING_NAMESIZE];
	snprintf(name, sizeof(name), "wf_punt_%p", (void *)dp);
	dp->punt = rte_ring_create(name, 1024, (int)rte_socket_id(), RING_F_SC_DEQ);
	snprintf(name, sizeof(name), "wf_inj_%p", (void *)dp);
	/* Several producers (the underlay thread, control calls that probe a
	 * next hop right away); one consumer (worker 0). */
	dp->inject = rte_ring_create(name, 1024, (int)rte_socket_id(), RING_F_SC_DEQ);
	return dp->punt && dp->inject ? 0 : -ENOMEM;
}

void
wf_underlay_fini(struct wf_dataplane *dp)
{
	wf_underlay_stop(dp);
	struct rte_ring *rings[2] = { dp->punt, dp->inject };
	for (int i = 0; i < 2; i++) {
		void *m;
		if (rings[i] == NULL)
			continue;
		while (rte_ring_dequeue(rings[i], &m) == 0)
			rte_pktmbuf_free(m);
		rte_ring_free(rings[i]);
	}
	dp->punt = dp->inject = NULL;
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		free(dp->ul_ctl[p]);
		dp->ul_ctl[p] = NULL;
	}
}

/* ---- control: addresses and neighbours ----------------------------------- */

int
wf_underlay_set(wf_dataplane_t *dp, uint16_t port, const struct wf_underlay_cfg *cfg)
{
	if (dp == NULL || cfg == NULL || port >= WF_MAX_PORTS || cfg->n_vxlan_ports > 4)
		return -EINVAL;
	if (!dp->ports[port].attached)
		return -ENODEV;
	if (dp->ports[port].xc_slot != UINT32_MAX) {
		wf_set_error("%s is a plain cross-connect side; it cannot be an uplink", dp->ports[port].devname);
		return -EBUSY;
	}
	if ((cfg->has_ip4 && cfg->prefix4 > 32) || (cfg->has_ip6 && cfg->prefix6 > 128) ||
	    cfg->mtu < 576) {
		wf_set_error("underlay prefix or MTU out of range");
		return -EINVAL;
	}
	struct wf_underlay *u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	u->cfg = *cfg;
	memcpy(u->mac, dp->ports[port].mac, 6);
	pthread_mutex_lock(&dp->ul_lock);
	struct wf_underlay *old = dp->ul_ctl[port];
	if (old != NULL && dp->n_tunnels_on[port] > 0) {
		pthread_mutex_unlock(&dp->ul_lock);
		free(u);
		wf_set_error("%s carries tunnels; remove them before changing its underlay",
			     dp->ports[port].devname);
		return -EBUSY;
	}
	dp->ul_ctl[port] = u;
	pthread_mutex_unlock(&dp->ul_lock);
	wf_dirty_ul(dp, port);
	int rc = wf_table_publish_add(dp);
	if (rc != 0) {
		pthread_mutex_lock(&dp->ul_lock);
		dp->ul_ctl[port] = old;
		pthread_mutex_unlock(&dp->ul_lock);
		free(u);
		return rc;
	}
	free(old);
	return 0;
}

int
wf_underlay_clear(wf_dataplane_t *dp, uint16_t port)
{
	if (dp == NULL || port >= WF_MAX_PORTS)
		return -EINVAL;
	if (dp->n_tunnels_on[port] > dp->n_vlans_on[port]) {
		wf_set_error("%s carries VXLAN tunnels; remove them first", dp->ports[port].devname);
		return -EBUSY;
	}
	/* Tunnels removed while publishing was held still count as users of their
	 * neighbours: publish first, so the static neighbours below can go. */
	if (dp->n_retiring > 0) {
		int rc = wf_table_publish(dp);
		if (rc != 0)
			return rc;
	}
	pthread_mutex_lock(&dp->ul_lock);
	struct wf_underlay *old = dp->ul_ctl[port];
	dp->ul_ctl[port] = NULL;
	/* Static neighbours of the port go with its addresses. */
	for (uint32_t i = 0; i < WF_MAX_NEIGHBOURS; i++)
		if (dp->nbr[i].used && dp->nbr[i].port == port && dp->nbr[i].users == 0) {
			dp->nbr[i].used = 0;
			__atomic_store_n(&dp->nbr_mac[i], 0, __ATOMIC_RELAXED);
		}
	pthread_mutex_unlock(&dp->ul_lock);
	wf_dirty_ul(dp, port);
	int rc = wf_table_publish(dp);
	free(old);
	return rc;
}

/* The uplinks' underlay parts: each table has its own copy of the control
 * side's (under the underlay lock: the underlay thread learns MACs into it). */
static int
wf_ul_build(struct wf_dataplane *dp, struct wf_build *b)
{
	int rc = 0;
	pthread_mutex_lock(&dp->ul_lock);
	for (uint32_t w = 0; w < WF_MAX_PORTS / 64 && rc == 0; w++) {
		uint64_t bits = dp->dirty.all ? ~0ull : dp->dirty.ul[w];
		while (bits && rc == 0) {
			uint32_t p = w * 64 + (uint32_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			if ((rc = wf_build_retire(b, b->t->ul[p])) != 0)
				break;
			b->t->ul[p] = NULL;
			if (dp->ul_ctl[p] == NULL)
				continue;
			struct wf_underlay *u = wf_build_alloc(b, "weft_ul", sizeof(*u), false);
			if (u == NULL) {
				rc = -ENOMEM;
				break;
			}
			*u = *dp->ul_ctl[p];
			b->t->ul[p] = u;
		}
	}
	pthread_mutex_unlock(&dp->ul_lock);
	return rc;
}

static void
wf_ul_free(struct wf_table *t)
{
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		rte_free(t->ul[p]);
		t->ul[p] = NULL;
	}
}

const struct wf_builder wf_ul_builder = { .name = "underlay", .build = wf_ul_build, .free = wf_ul_free };

/* Find or create a neighbour entry; caller holds ul_lock. */
