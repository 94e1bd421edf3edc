/*
 * port.c: what every port has, whatever its driver: an id of Weft's own
 * (not DPDK's), RX queues spread over the workers, one TX queue per worker,
 * counters, the link state workers read without a syscall, and the
 * publish/RCU dance that takes a port in and out of the workers' tables.
 * The drivers (ethdev.c, memif.c, afpacket.c, afxdp.c) fill in the rest.
 */
#include <errno.h>
#include <string.h>

#include "wf_internal.h"

/* The worker with the fewest queues gets the next one. */
static uint32_t
wf_least_loaded_worker(const struct wf_dataplane *dp)
{
	uint32_t best = 0;
	for (uint32_t w = 1; w < dp->n_pollers; w++)
		if (dp->workers[w].n_assigned < dp->workers[best].n_assigned)
			best = w;
	return best;
}

int
wf_port_alloc(struct wf_dataplane *dp, uint16_t *port)
{
	for (uint16_t p = 0; p < WF_MAX_PORTS; p++) {
		if (!dp->ports[p].attached && dp->ports[p].ops == NULL) {
			*port = p;
			return 0;
		}
	}
	wf_set_error("all %d ports are in use", WF_MAX_PORTS);
	return -ENOSPC;
}

int
wf_port_publish_new(struct wf_dataplane *dp, uint16_t port)
{
	struct wf_port_ctl *pc = &dp->ports[port];
	/* Fresh counters: the id may have belonged to an earlier port. */
	for (uint32_t w = 0; w < dp->n_pollers; w++)
		memset(&dp->workers[w].ifc[port], 0, sizeof(struct wf_if_counters));
	pc->xc_slot = UINT32_MAX;
	for (uint16_t q = 0; q < pc->nb_rxq; q++)
		pc->rx_worker[q] = 0;
	for (uint16_t q = 0; q < pc->nb_rxq; q++) {
		pc->rx_worker[q] = wf_least_loaded_worker(dp);
		dp->workers[pc->rx_worker[q]].n_assigned++;
		if (pc->eth == WF_PORT_NONE && pc->rxq[q] != NULL) {
			struct wf_rxq_base *b = pc->rxq[q];
			b->ic = &dp->workers[pc->rx_worker[q]].ifc[port];
			b->wdrops = dp->workers[pc->rx_worker[q]].drops;
			b->port = port;
			b->worker = pc->rx_worker[q];
			b->asleep = 0;
			b->woken = 0;
			b->idle = 0;
			b->sleep_fd = -1;
			b->watched_fd = -1;
		}
	}
	__atomic_store_n(&dp->link_up[port], pc->ops->link(dp, pc) ? 1 : 0, __ATOMIC_RELAXED);
	pthread_mutex_lock(&dp->port_lock); /* the link poller reads `attached` */
	pc->attached = true;
	pthread_mutex_unlock(&dp->port_lock);
	/* Its queues go to their workers with the publish that has its entries. */
	int rc = 0;
	for (uint16_t q = 0; q < pc->nb_rxq && rc == 0; q++)
		rc = wf_pollset_add(dp, pc->rx_worker[q],
				    &(struct wf_poll){ .port = port, .queue = q, .eth = pc->eth, .rx = pc->rx, .rxq = pc->rxq[q] });
	if (rc == 0)
		rc = wf_table_publish_add(dp);
	if (rc != 0) {
		wf_pollset_drop_port(dp, port);
		for (uint16_t q = 0; q < pc->nb_rxq; q++)
			dp->workers[pc->rx_worker[q]].n_assigned--;
		pthread_mutex_lock(&dp->port_lock);
		pc->attached = false;
		pthread_mutex_unlock(&dp->port_lock);
	}
	return rc;
}

int
wf_kif_attach(wf_dataplane_t *dp, const struct wf_kif_attach *req, uint16_t *port)
{
	if (dp == NULL || req == NULL || req->ifname == NULL || port == NULL)
		return -EINVAL;
	switch (req->backend) {
	case WF_KIF_AF_PACKET:
		return wf_afp_attach(dp, req, port);
	case WF_KIF_AF_XDP:
		return wf_xdp_attach(dp, req, port);
	default:
		wf_set_error("unknown kernel interface backend %u", req->backend);
		return -EINVAL;
	}
}

int
wf_port_detach(wf_dataplane_t *dp, uint16_t port)
{
	if (dp == NULL || port >= WF_MAX_PORTS)
		return -EINVAL;
	struct wf_port_ctl *pc = &dp->ports[port];
	if (!pc->attached)
		return -ENODEV;
	if (pc->xc_slot != UINT32_MAX) {
		wf_set_error("%s is cross-connected; remove the cross-connect first", pc->devname);
		return -EBUSY;
	}
	if (dp->n_tunnels_on[port] > 0 || dp->ul_ctl[port] != NULL) {
		wf_set_error("%s carries tunnels or underlay addresses; remove them first", pc->devname);
		return -EBUSY;
	}
	pthread_mutex_lock(&dp->port_lock);
	pc->attached = false;
	pthread_mutex_unlock(&dp->port_lock);
	wf_dirty_side(dp, port);
	int rc = wf_table_publish(dp);
	if (rc != 0) {
		pthread_mutex_lock(&dp->port_lock);
		pc->attached = true;
		pthread_mutex_unlock(&dp->port_lock);
		return rc;
	}
	/* No table sends to it; now no worker polls it either. */
	wf_pollset_drop_port(dp, port);
	for (uint16_t q = 0; q < pc->nb_rxq; q++)
		dp->workers[pc->rx_worker[q]].n_assigned--;
	/* No worker polls or transmits on it any more. */
	__atomic_store_n(&dp->link_up[port], 0, __ATOMIC_RELAXED);
	dp->link_cheap[port] = 0;
	pc->ops->close(dp, pc);
	memset(pc, 0, sizeof(*pc));
	pc->xc_slot = UINT32_MAX;
	pc->eth = WF_PORT_NONE;
	memset(&dp->fp[port], 0, sizeof(dp->fp[port]));
	dp->fp[port].eth = WF_PORT_NONE;
	return 0;
}

int
wf_port_info(const wf_dataplane_t *dp, uint16_t port, struct wf_port_info *info)
{
	if (dp == NULL || info == NULL || port >= WF_MAX_PORTS)
		return -EINVAL;
	const struct wf_port_ctl *pc = &dp->ports[port];
	memset(info, 0, sizeof(*info));
	if (!pc->attached)
		return -ENODEV;
	snprintf(info->name, sizeof(info->name), "%s", pc->devname);
	memcpy(info->mac, pc->mac, 6);
	info->mtu = pc->mtu;
	/* The driver's own view, fresh (the workers' flag is refreshed every 5 ms). */
	info->link_up = pc->ops->link((struct wf_dataplane *)dp, (struct wf_port_ctl *)pc) ? 1 : 0;
	info->attached = 1;
	info->rx_queues = pc->nb_rxq;
	info->tx_queues = pc->nb_txq;
	info->tx_ip4_cksum_offload = pc->tx_ip4_cksum;
	for (uint16_t q = 0; q < pc->nb_rxq; q++)
		info->rx_worker[q] = pc->rx_worker[q];
	snprintf(info->driver, sizeof(info->driver), "%s", pc->ops->name);
	if (pc->ops->info != NULL)
		pc->ops->info(dp, pc, info);
	return 0;
}

int
wf_link_poll(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return -EINVAL;
	int changed = 0;
	pthread_mutex_lock(&dp->port_lock);
	for (uint16_t p = 0; p < WF_MAX_PORTS; p++) {
		struct wf_port_ctl *pc = &dp->ports[p];
		if (!pc->attached)
			continue;
		uint8_t up = pc->ops->link(dp, pc) ? 1 : 0;
		if (__atomic_load_n(&dp->link_up[p], __ATOMIC_RELAXED) != up) {
			__atomic_store_n(&dp->link_up[p], up, __ATOMIC_RELAXED);
			changed++;
		}
	}
	pthread_mutex_unlock(&dp->port_lock);
	return changed;
}
