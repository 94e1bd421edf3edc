/*
 * testport.c: ring-backed ports. The test (or a `type: ring` interface)
 * owns one ring feeding the port's RX and one collecting its TX, so frames
 * built in a test pass through the real configure/poll/xconnect/TX path and
 * come out where they can be compared byte by byte.
 */
#include <errno.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_eth_ring.h>

#include "wf_internal.h"
#include "weft_test.h"

int
wf_testport_create(wf_dataplane_t *dp, const char *name, uint16_t *port_id)
{
	if (dp == NULL || name == NULL || port_id == NULL || strlen(name) > 24)
		return -EINVAL;
	char rxn[RTE_RING_NAMESIZE], txn[RTE_RING_NAMESIZE];
	snprintf(rxn, sizeof(rxn), "wfr_%s", name);
	snprintf(txn, sizeof(txn), "wft_%s", name);
	struct rte_ring *rx = rte_ring_create(rxn, 1024, (int)rte_socket_id(), 0);
	struct rte_ring *tx = rte_ring_create(txn, 1024, (int)rte_socket_id(), 0);
	if (rx == NULL || tx == NULL) {
		int err = rte_errno ? rte_errno : ENOMEM;
		wf_set_error("cannot create rings for test port %s: %s", name, rte_strerror(err));
		rte_ring_free(rx);
		rte_ring_free(tx);
		return -err;
	}
	uint16_t port;
	int rc = wf_port_alloc(dp, &port);
	if (rc != 0) {
		rte_ring_free(rx);
		rte_ring_free(tx);
		return rc;
	}
	/* One TX ring per worker queue; they share the one collecting ring. */
	struct rte_ring *txs[WF_MAX_WORKERS];
	for (uint32_t i = 0; i < dp->n_pollers; i++)
		txs[i] = tx;
	char devname[RTE_DEV_NAME_MAX_LEN];
	snprintf(devname, sizeof(devname), "net_ring_%s", name);
	int eth = rte_eth_from_rings(devname, &rx, 1, txs, dp->n_pollers, rte_socket_id());
	if (eth < 0) {
		int err = rte_errno ? rte_errno : ENODEV;
		wf_set_error("cannot create ring port %s: %s", devname, rte_strerror(err));
		rte_ring_free(rx);
		rte_ring_free(tx);
		return -err;
	}
	/* Before the publish: the rings must be known when the port becomes visible. */
	dp->ports[port].is_testport = true;
	dp->ports[port].test_rx = rx;
	dp->ports[port].test_tx = tx;
	rc = wf_ethdev_setup(dp, port, (uint16_t)eth, devname, 1, 0, 0);
	if (rc != 0) {
		dp->ports[port].is_testport = false;
		rte_eth_dev_stop((uint16_t)eth);
		rte_eth_dev_close((uint16_t)eth);
		rte_ring_free(rx);
		rte_ring_free(tx);
		return rc;
	}
	*port_id = port;
	return 0;
}

int
wf_testport_inject(wf_dataplane_t *dp, uint16_t port, const uint8_t *frame, uint32_t len)
{
	if (dp == NULL || port >= WF_MAX_PORTS || !dp->ports[port].is_testport ||
	    frame == NULL)
		return -EINVAL;
	struct rte_mbuf *m = rte_pktmbuf_alloc(dp->pool);
	if (m == NULL)
		return -ENOMEM;
	char *p = rte_pktmbuf_append(m, (uint16_t)len);
	if (p == NULL || len > UINT16_MAX) {
		rte_pktmbuf_free(m);
		return -EMSGSIZE;
	}
	memcpy(p, frame, len);
	m->port = port;
	if (rte_ring_enqueue(dp->ports[port].test_rx, m) != 0) {
		rte_pktmbuf_free(m);
		return -ENOBUFS;
	}
	return 0;
}

int
wf_testport_collect(wf_dataplane_t *dp, uint16_t port, uint8_t *buf, uint32_t cap)
{
	if (dp == NULL || port >= WF_MAX_PORTS || !dp->ports[port].is_testport || buf == NULL)
		return -EINVAL;
	void *obj;
	if (rte_ring_dequeue(dp->ports[port].test_tx, &obj) != 0)
		return 0;
	struct rte_mbuf *m = obj;
	uint32_t len = rte_pktmbuf_pkt_len(m);
	if (len > cap) {
		rte_pktmbuf_free(m);
		return -EMSGSIZE;
	}
	const void *data = rte_pktmbuf_read(m, 0, len, buf);
	if (data != buf)
		memcpy(buf, data, len);
	rte_pktmbuf_free(m);
	return (int)len;
}

int
wf_testport_inject_n(wf_dataplane_t *dp, uint16_t port, const uint8_t *frame, uint32_t len, uint32_t count)
{
	uint32_t done = 0;
	for (; done < count; done++)
		if (wf_testport_inject(dp, port, frame, len) != 0)
			break;
	return (int)done;
}

int
wf_testport_discard(wf_dataplane_t *dp, uint16_t port)
{
	if (dp == NULL || port >= WF_MAX_PORTS || !dp->ports[port].is_testport)
		return -EINVAL;
	void *objs[64];
	unsigned n, total = 0;
	while ((n = rte_ring_dequeue_burst(dp->ports[port].test_tx, objs, 64, NULL)) > 0) {
		rte_pktmbuf_free_bulk((struct rte_mbuf **)objs, n);
		total += n;
	}
	return (int)total;
}

int
wf_testport_inject_offload(wf_dataplane_t *dp, uint16_t port, const uint8_t *frame, uint32_t len,
			   const struct wf_test_offload *ol)
{
	if (dp == NULL || port >= WF_MAX_PORTS || !dp->ports[port].is_testport || frame == NULL || ol == NULL)
		return -EINVAL;
	struct rte_mbuf *m = rte_pktmbuf_alloc(dp->pool);
	if (m == NULL)
		return -ENOMEM;
	if (wf_mbuf_put(m, dp->pool, frame, len) != 0) {
		rte_pktmbuf_free(m);
		return -ENOMEM;
	}
	m->port = port;
	if (ol->l4_proto != 0) {
		m->l2_len = ol->l2_len;
		m->l3_len = ol->l3_len;
		m->l4_len = ol->l4_len;
		const bool tcp = ol->l4_proto == 6;
		m->ol_flags |= tcp ? RTE_MBUF_F_TX_TCP_CKSUM : RTE_MBUF_F_TX_UDP_CKSUM;
		if (ol->gso_size > 0) {
			m->ol_flags |= (tcp ? RTE_MBUF_F_TX_TCP_SEG : RTE_MBUF_F_TX_UDP_SEG) |
				       (ol->ipv6 ? RTE_MBUF_F_TX_IPV6 : RTE_MBUF_F_TX_IPV4);
			m->tso_segsz = ol->gso_size;
		}
	}
	if (rte_ring_enqueue(dp->ports[port].test_rx, m) != 0) {
		rte_pktmbuf_free(m);
		return -ENOBUFS;
	}
	return 0;
}
