/*
 * ethdev.c: ports that are DPDK ethdevs: NICs (vfio-pci, mlx5), the ring and
 * null vdevs of the tests, and any DPDK vdev a user names (`type: vdev`,
 * e.g. DPDK's own memif PMD). Probed from devargs at runtime, configured with
 * one TX queue per worker, RSS over `rx_queues` where the NIC has it.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_errno.h>

#include "wf_internal.h"

static uint16_t
wf_ethdev_tx(void *q, struct rte_mbuf **pkts, uint16_t n)
{
	/* Never called: wf_port_tx calls rte_eth_tx_burst inline for ethdevs. */
	(void)q;
	(void)pkts;
	(void)n;
	return 0;
}

static void
wf_ethdev_release(uint16_t eth)
{
	struct rte_eth_dev_info info;
	if (rte_eth_dev_info_get(eth, &info) != 0 || info.device == NULL) {
		rte_eth_dev_close(eth);
		return;
	}
	rte_eth_dev_stop(eth);
	if (rte_dev_remove(info.device) != 0)
		rte_eth_dev_close(eth);
}

static int
wf_ethdev_link(struct wf_dataplane *dp, struct wf_port_ctl *pc)
{
	(void)dp;
	struct rte_eth_link link;
	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(pc->eth, &link) != 0)
		return 0;
	return link.link_status ? 1 : 0;
}

static void
wf_ethdev_info(const struct wf_dataplane *dp, const struct wf_port_ctl *pc, struct wf_port_info *i)
{
	(void)dp;
	struct rte_eth_dev_info di;
	if (rte_eth_dev_info_get(pc->eth, &di) == 0 && di.driver_name)
		snprintf(i->driver, sizeof(i->driver), "%s", di.driver_name);
	struct rte_eth_link link;
	memset(&link, 0, sizeof(link));
	rte_eth_link_get_nowait(pc->eth, &link);
	i->link_speed_mbps = link.link_speed;
	rte_eth_dev_get_mtu(pc->eth, &i->mtu);
}

static void wf_ethdev_close(struct wf_dataplane *dp, struct wf_port_ctl *pc);

const struct wf_port_ops wf_ethdev_ops = {
	.name = "ethdev",
	.link = wf_ethdev_link,
	.info = wf_ethdev_info,
	.close = wf_ethdev_close,
};

/* Configure, set up and start a probed ethdev as Weft port `port`, then publish it. */
int
wf_ethdev_setup(struct wf_dataplane *dp, uint16_t port, uint16_t eth, const char *devname,
		uint16_t nb_rxq, uint16_t mtu, uint8_t promisc)
{
	struct rte_eth_dev_info info;
	int rc = rte_eth_dev_info_get(eth, &info);
	if (rc != 0) {
		wf_set_error("%s: cannot read device info: %s", devname, rte_strerror(-rc));
		return rc;
	}
	const uint16_t nb_txq = (uint16_t)dp->n_pollers; /* one per worker */
	if (nb_rxq > info.max_rx_queues || nb_rxq > WF_MAX_RXQ_PER_PORT) {
		wf_set_error("%s: %u RX queues requested, device supports %u (Weft at most %d)",
			     devname, nb_rxq, info.max_rx_queues, WF_MAX_RXQ_PER_PORT);
		return -EINVAL;
	}
	if (nb_txq > info.max_tx_queues) {
		wf_set_error("%s: device supports %u TX queues, Weft needs one per worker (%u)",
			     devname, info.max_tx_queues, nb_txq);
		return -EINVAL;
	}
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	if (nb_rxq > 1 && info.flow_type_rss_offloads != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = RTE_ETH_RSS_IP & info.flow_type_rss_offloads;
	}
	/* Outer IPv4 checksums of VXLAN go to the NIC where it can do them. */
	const bool ip4_ck = (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0;
	if (ip4_ck)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	/* Frames longer than one mbuf (jumbo) leave as mbuf chains where the PMD takes them. */
	if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	if (mtu > RTE_ETHER_MTU && (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER))
		conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
	rc = rte_eth_dev_configure(eth, nb_rxq, nb_txq, &conf);
	if (rc != 0) {
		wf_set_error("%s: configure failed: %s", devname, rte_strerror(-rc));
		return rc;
	}
	if (mtu != 0 && (rc = rte_eth_dev_set_mtu(eth, mtu)) != 0) {
		wf_set_error("%s: cannot set MTU %u: %s", devname, mtu, rte_strerror(-rc));
		return rc;
	}
	uint16_t nrx = dp->cfg.rx_desc, ntx = dp->cfg.tx_desc;
	rte_eth_dev_adjust_nb_rx_tx_desc(eth, &nrx, &ntx);
	const int socket = rte_eth_dev_socket_id(eth) < 0 ? (int)rte_socket_id()
							   : rte_eth_dev_socket_id(eth);
	for (uint16_t q = 0; q < nb_rxq; q++)
		if ((rc = rte_eth_rx_queue_setup(eth, q, nrx, socket, NULL, dp->pool)) != 0) {
			wf_set_error("%s: RX queue %u setup failed: %s", devname, q,
				     rte_strerror(-rc));
			return rc;
		}
	for (uint16_t q = 0; q < nb_txq; q++)
		if ((rc = rte_eth_tx_queue_setup(eth, q, ntx, socket, NULL)) != 0) {
			wf_set_error("%s: TX queue %u setup failed: %s", devname, q,
				     rte_strerror(-rc));
			return rc;
		}
	if (promisc) {
		rc = rte_eth_promiscuous_enable(eth);
		if (rc != 0 && rc != -ENOTSUP) {
			wf_set_error("%s: promiscuous mode failed: %s", devname, rte_strerror(-rc));
			return rc;
		}
	}
	if ((rc = rte_eth_dev_start(eth)) != 0) {
		wf_set_error("%s: start failed: %s", devname, rte_strerror(-rc));
		return rc;
	}

	struct wf_port_ctl *pc = &dp->ports[port];
	pc->ops = &wf_ethdev_ops;
	pc->eth = eth;
	pc->tx_ip4_cksum = ip4_ck;
	pc->nb_rxq = nb_rxq;
	pc->nb_txq = nb_txq;
	snprintf(pc->devname, sizeof(pc->devname), "%s", devname);
	struct rte_ether_addr mac;
	if (rte_eth_macaddr_get(eth, &mac) == 0)
		memcpy(pc->mac, mac.addr_bytes, 6);
	rte_eth_dev_get_mtu(eth, &pc->mtu);
	struct wf_port_fp *fp = &dp->fp[port];
	memset(fp, 0, sizeof(*fp));
	fp->eth = eth;
	fp->tx = wf_ethdev_tx;
	fp->caps = ip4_ck ? WF_CAP_IP4_CSUM : 0;
	rc = wf_port_publish_new(dp, port);
	if (rc != 0) {
		rte_eth_dev_stop(eth);
		pc->ops = NULL;
		fp->eth = WF_PORT_NONE;
	}
	return rc;
}

/*
 * DPDK 22.11's memif PMD leaks a server's listening socket when its last
 * device is removed (memif_socket_remove_device frees the socket and its
 * interrupt handle but neither closes the fd nor unregisters the listener
 * callback). The socket keeps its name (an abstract name stays taken, so the
 * same connection cannot be re-created) and keeps accepting: a client that
 * connects later runs the callback on freed memory.
 *
 * Weft retires such a listener: it finds the fd (a listening AF_UNIX socket
 * bound to that name) and dup2()s a never-readable eventfd over it. The name
 * is released, the fd number stays occupied (so EAL's stale registration can
 * never fire for another file), and the callback can never run. Cost: one fd
 * slot per removed memif server, all sharing one eventfd.
 */
static int memif_quiet_fd = -1;

static void
memif_note(struct wf_port_ctl *pc, const char *devargs)
{
	pc->memif_server = false;
	if (strncmp(devargs, "net_memif", 9) != 0)
		return;
	bool server = strstr(devargs, "role=client") == NULL;
	const char *s = strstr(devargs, "socket=");
	if (!server || s == NULL)
		return;
	s += strlen("socket=");
	size_t n = strcspn(s, ",");
	if (n == 0 || n >= sizeof(pc->memif_socket))
		return;
	memcpy(pc->memif_socket, s, n);
	pc->memif_socket[n] = '\0';
	/* the PMD's default is abstract */
	pc->memif_abstract = strstr(devargs, "socket-abstract=no") == NULL;
	pc->memif_server = true;
}

static void
memif_listener_retire(const char *name, bool abstract)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (fd <= 2 || fd == dirfd(d))
			continue;
		struct sockaddr_un un;
		socklen_t len = sizeof(un);
		int acc = 0, dom = 0;
		socklen_t ol = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &ol) != 0 || dom != AF_UNIX)
			continue;
		ol = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ol) != 0 || !acc)
			continue;
		memset(&un, 0, sizeof(un));
		if (getsockname(fd, (struct sockaddr *)&un, &len) != 0 || len <= offsetof(struct sockaddr_un, sun_path))
			continue;
		size_t plen = len - offsetof(struct sockaddr_un, sun_path);
		bool match;
		if (abstract)
			match = un.sun_path[0] == '\0' && plen - 1 == strlen(name) &&
				memcmp(un.sun_path + 1, name, plen - 1) == 0;
		else
			match = un.sun_path[0] != '\0' && strncmp(un.sun_path, name, sizeof(un.sun_path)) == 0;
		if (!match)
			continue;
		if (memif_quiet_fd < 0)
			memif_quiet_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (memif_quiet_fd >= 0)
			(void)dup2(memif_quiet_fd, fd);
	}
	closedir(d);
}

static void
wf_ethdev_close(struct wf_dataplane *dp, struct wf_port_ctl *pc)
{
	wf_ethdev_release(pc->eth);
	if (pc->memif_server) {
		bool shared = false;
		for (uint16_t p = 0; p < WF_MAX_PORTS; p++)
			if (&dp->ports[p] != pc && dp->ports[p].attached && dp->ports[p].memif_server &&
			    dp->ports[p].memif_abstract == pc->memif_abstract &&
			    strcmp(dp->ports[p].memif_socket, pc->memif_socket) == 0)
				shared = true;
		if (!shared)
			memif_listener_retire(pc->memif_socket, pc->memif_abstract);
	}
	if (pc->is_testport) {
		rte_ring_free(pc->test_rx);
		rte_ring_free(pc->test_tx);
	}
}

static int
probe_cb(void *devargs)
{
	return rte_dev_probe((const char *)devargs);
}

struct wf_setup_req {
	struct wf_dataplane *dp;
	uint16_t port, eth;
	const char *devname;
	const struct wf_port_attach *req;
};

static int
setup_cb(void *arg)
{
	struct wf_setup_req *r = arg;
	return wf_ethdev_setup(r->dp, r->port, r->eth, r->devname, r->req->rx_queues ? r->req->rx_queues : 1,
			       r->req->mtu, r->req->promiscuous);
}

int
wf_port_attach(wf_dataplane_t *dp, const struct wf_port_attach *req, uint16_t *port_id)
{
	if (dp == NULL || req == NULL || req->devargs == NULL || port_id == NULL)
		return -EINVAL;
	struct rte_devargs da;
	memset(&da, 0, sizeof(da));
	int rc = rte_devargs_parse(&da, req->devargs);
	if (rc != 0) {
		wf_set_error("cannot parse devargs '%s' (no DPDK bus or driver matches it)",
			     req->devargs);
		return -EINVAL;
	}
	char devname[RTE_DEV_NAME_MAX_LEN];
	snprintf(devname, sizeof(devname), "%s", da.name);
	rte_devargs_reset(&da);

	uint16_t eth, port;
	bool probed = false;
	if (rte_eth_dev_get_port_by_name(devname, &eth) == 0) {
		/* Probed already by EAL at its init (an -a or --vdev in eal.extra_args;
		 * Weft's own allow list names no device): ours to set up unless a port of
		 * Weft's drives it. */
		for (uint16_t p = 0; p < WF_MAX_PORTS; p++)
			if (dp->ports[p].attached && dp->ports[p].eth == eth) {
				wf_set_error("device %s already exists", devname);
				return -EEXIST;
			}
		probed = true;
	}
	if ((rc = wf_port_alloc(dp, &port)) != 0)
		return rc;
	rc = probed ? 0 : wf_in_netns(req->netns, probe_cb, (void *)(uintptr_t)req->devargs);
	if (rc != 0) {
		char why[256];
		wf_last_error(why, sizeof(why));
		wf_set_error("cannot probe '%s': %s%s%s", req->devargs, rte_strerror(-rc),
			     why[0] ? "; " : "", why);
		return rc < 0 ? rc : -ENODEV;
	}
	if (rte_eth_dev_get_port_by_name(devname, &eth) != 0) {
		wf_set_error("device %s probed but no ethdev port appeared", devname);
		return -ENODEV;
	}
	/* Queue setup too runs in the namespace: DPDK's tap PMD opens a tun fd per
	 * queue, which would otherwise make a second device in weftd's namespace. */
	struct wf_setup_req sr = { .dp = dp, .port = port, .eth = eth, .devname = devname, .req = req };
	rc = wf_in_netns(req->netns, setup_cb, &sr);
	if (rc != 0) {
		wf_ethdev_release(eth);
		return rc;
	}
	memif_note(&dp->ports[port], req->devargs);
	dp->link_cheap[port] = strncmp(req->devargs, "net_memif", 9) == 0;
	*port_id = port;
	return 0;
}
