/*
 * afpacket.c: kernel interfaces through AF_PACKET, Weft's own driver.
 *
 * RX: one socket per queue with a TPACKET_V2 ring (per-frame status: a frame
 * is Weft's as soon as the kernel wrote it; no syscall per packet) and
 * PACKET_VNET_HDR, so every frame comes with the kernel's virtio-net header:
 * a partial checksum or a TSO/GSO super-frame is known as such and travels on
 * as offload metadata (offload.c) instead of leaving Weft broken. Ring slots
 * hold an MTU-sized frame; a super-frame does not fit, so PACKET_COPY_THRESH
 * has the kernel also queue it whole on the socket (TP_STATUS_COPY in its
 * slot), and it is read with one recvmsg(): one syscall per 64 KiB.
 * (TPACKET_V3 was tried first: its blocks reach the reader when full or
 * after tp_retire_blk_tov, at least 1 ms, which put 0.6-2.4 ms on every ping
 * at low rates; V2 with the copy path has neither that delay nor a limit on
 * frame size.) PACKET_IGNORE_OUTGOING: only what arrives on the interface is
 * forwarded, never what the host itself sends out of it. No fanout
 * defragmentation: IP fragments cross as fragments. A tag the kernel took
 * off (VLAN acceleration) is put back.
 *
 * TX: one socket per worker, bound with protocol 0 (it receives nothing),
 * PACKET_VNET_HDR as well, and sendmmsg() with the mbuf segments as the
 * iovecs: the kernel copies each frame once, super-frames and partial
 * checksums go to the kernel as such (WF_CAP_GSO | WF_CAP_L4_CSUM), and
 * there is no TX ring memory per interface.
 */
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_tcp.h>

#include "wf_internal.h"

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5 /* kernel 6.2+ hands UDP GSO this way; Debian 12's headers predate it */
#endif
#ifndef PACKET_FANOUT_FLAG_IGNORE_OUTGOING
#define PACKET_FANOUT_FLAG_IGNORE_OUTGOING 0x4000
#endif

#define WF_AFP_BLOCK (64u << 10) /* ring block: slots are carved from blocks of this size */
#define WF_AFP_IOV 1024          /* iovecs per sendmmsg(): segments of a burst */
#define WF_AFP_BIG (64u << 10)   /* the largest super-frame the kernel builds (gso_max_size) */

struct wf_afp_rxq {
	struct wf_rxq_base b;
	int fd;
	uint8_t *map;
	size_t map_len;
	uint32_t slot_size; /* bytes per ring slot */
	uint32_t n_slots;
	uint32_t cur;       /* next slot to read */
	struct rte_mempool *pool;
	uint8_t *big;       /* WF_AFP_BIG + a header: what recvmsg() reads a super-frame into */
};

struct wf_afp_txq {
	struct wf_txq_base tb;
	int fd;
	struct mmsghdr msg[WF_MAX_BURST];
	struct virtio_net_hdr vh[WF_MAX_BURST];
	struct iovec iov[WF_AFP_IOV];
};

struct wf_afp {
	struct wf_kif kif;
	uint64_t kernel_drops; /* PACKET_STATISTICS tp_drops, summed (each read resets them) */
	uint16_t nrxq, ntxq;
	struct wf_afp_rxq *rxq[WF_MAX_RXQ_PER_PORT];
	struct wf_afp_txq *txq[WF_MAX_WORKERS];
	bool watched;
};

/* ---- RX ------------------------------------------------------------------ */

/* Offload metadata of a received frame from its virtio-net header; shift:
 * bytes put in front of what the kernel described (a re-inserted tag). */
static enum wf_drop_reason
wf_vnet_rx(struct rte_mbuf *m, const struct virtio_net_hdr *vh, uint32_t shift)
{
	const uint8_t gso = vh->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	const bool csum = (vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) != 0;
	if (likely(!csum && gso == VIRTIO_NET_HDR_GSO_NONE))
		return WF_DROP_MAX;
	if (!csum)
		return WF_DROP_OVERSIZE_GSO; /* a super-frame always has a partial checksum */
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	const uint32_t len = rte_pktmbuf_pkt_len(m), head = m->data_len;
	const uint32_t start = (uint32_t)vh->csum_start + shift, off = vh->csum_offset;
	/* The L3 header follows the Ethernet header and up to two tags. */
	uint32_t l2 = 14;
	uint16_t type = head >= 14 ? (uint16_t)(p[12] << 8 | p[13]) : 0;
	for (int tags = 0; tags < 2 && (type == RTE_ETHER_TYPE_VLAN || type == RTE_ETHER_TYPE_QINQ) &&
			   head >= l2 + 4; tags++) {
		type = (uint16_t)(p[l2 + 2] << 8 | p[l2 + 3]);
		l2 += 4;
	}
	if (start < l2 || start + off + 2 > len || start + off + 2 > head)
		return gso ? WF_DROP_OVERSIZE_GSO : WF_DROP_BAD_CSUM_OFFLOAD;
	const uint32_t l3 = start - l2;
	if (gso == VIRTIO_NET_HDR_GSO_NONE) {
		if (l3 < 512 && (off == 16 || off == 6)) {
			m->l2_len = l2;
			m->l3_len = l3;
			m->ol_flags |= off == 16 ? RTE_MBUF_F_TX_TCP_CKSUM : RTE_MBUF_F_TX_UDP_CKSUM;
			return WF_DROP_MAX;
		}
		/* Any other place (or a very long L3 header): finished here. */
		return wf_csum_at(m, start, off, false) == 0 ? WF_DROP_MAX : WF_DROP_BAD_CSUM_OFFLOAD;
	}
	if (l3 >= 512 || vh->gso_size == 0)
		return WF_DROP_OVERSIZE_GSO;
	const uint8_t ipv = head > l2 ? p[l2] >> 4 : 0;
	uint64_t ol;
	uint32_t l4;
	if (gso == VIRTIO_NET_HDR_GSO_TCPV4 || gso == VIRTIO_NET_HDR_GSO_TCPV6) {
		if (off != 16 || ipv != (gso == VIRTIO_NET_HDR_GSO_TCPV4 ? 4 : 6) || head < start + 20)
			return WF_DROP_OVERSIZE_GSO;
		l4 = (uint32_t)(p[start + 12] >> 4) * 4;
		if (l4 < 20 || head < start + l4)
			return WF_DROP_OVERSIZE_GSO;
		ol = RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_TCP_CKSUM;
	} else if (gso == VIRTIO_NET_HDR_GSO_UDP_L4) {
		if (off != 6 || (ipv != 4 && ipv != 6) || head < start + 8)
			return WF_DROP_OVERSIZE_GSO;
		l4 = 8;
		ol = RTE_MBUF_F_TX_UDP_SEG | RTE_MBUF_F_TX_UDP_CKSUM;
	} else {
		return WF_DROP_OVERSIZE_GSO; /* UFO and tunnel types: the kernel never hands them to a packet socket */
	}
	m->ol_flags |= ol | (ipv == 4 ? RTE_MBUF_F_TX_IPV4 : RTE_MBUF_F_TX_IPV6);
	m->l2_len = l2;
	m->l3_len = l3;
	m->l4_len = l4;
	m->tso_segsz = vh->gso_size;
	return WF_DROP_MAX;
}

/* A frame into an mbuf (chain), a VLAN tag the kernel took off put back; NULL when dropped (counted). */
static inline struct rte_mbuf *
wf_afp_mbuf(struct wf_afp_rxq *q, const uint8_t *frame, uint32_t len, const struct virtio_net_hdr *vh,
	    bool vlan, uint16_t tpid, uint16_t tci)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(q->pool);
	if (unlikely(m == NULL)) {
		wf_rxq_drop(&q->b, WF_DROP_NO_MBUF, len);
		return NULL;
	}
	int rc;
	if (vlan && len >= 12) {
		uint8_t tag[4] = { (uint8_t)(tpid >> 8), (uint8_t)tpid, (uint8_t)(tci >> 8), (uint8_t)tci };
		rc = wf_mbuf_put(m, q->pool, frame, 12);
		rc |= wf_mbuf_put(m, q->pool, tag, 4);
		rc |= wf_mbuf_put(m, q->pool, frame + 12, len - 12);
	} else {
		vlan = false;
		rc = wf_mbuf_put(m, q->pool, frame, len);
	}
	if (unlikely(rc != 0)) {
		rte_pktmbuf_free(m);
		wf_rxq_drop(&q->b, WF_DROP_NO_MBUF, len);
		return NULL;
	}
	enum wf_drop_reason why = wf_vnet_rx(m, vh, vlan ? 4 : 0);
	if (unlikely(why != WF_DROP_MAX)) {
		rte_pktmbuf_free(m);
		wf_rxq_drop(&q->b, why, len);
		return NULL;
	}
	m->port = q->b.port;
	return m;
}

/* A frame too long for its ring slot: the kernel queued it whole on the socket. */
static __rte_noinline struct rte_mbuf *
wf_afp_copied(struct wf_afp_rxq *q, uint32_t len)
{
	struct virtio_net_hdr vh;
	struct iovec iov[2] = { { &vh, sizeof(vh) }, { q->big, WF_AFP_BIG + 64 } };
	union {
		struct cmsghdr c;
		uint8_t b[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
	} ctl;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = &ctl, .msg_controllen = sizeof(ctl) };
	ssize_t n = recvmsg(q->fd, &mh, MSG_DONTWAIT | MSG_TRUNC);
	if (n < (ssize_t)sizeof(vh) || (mh.msg_flags & MSG_TRUNC)) {
		wf_rxq_drop(&q->b, WF_DROP_RX_TRUNCATED, len);
		return NULL;
	}
	bool vlan = false;
	uint16_t tpid = ETH_P_8021Q, tci = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA)
			continue;
		struct tpacket_auxdata aux;
		memcpy(&aux, CMSG_DATA(c), sizeof(aux));
		vlan = (aux.tp_status & TP_STATUS_VLAN_VALID) != 0;
		if (aux.tp_status & TP_STATUS_VLAN_TPID_VALID)
			tpid = aux.tp_vlan_tpid;
		tci = aux.tp_vlan_tci;
	}
	return wf_afp_mbuf(q, q->big, (uint32_t)n - sizeof(vh), &vh, vlan, tpid, tci);
}

static uint16_t
wf_afp_rx(void *arg, struct rte_mbuf **pkts, uint16_t n)
{
	struct wf_afp_rxq *q = arg;
	uint16_t k = 0;
	while (k < n) {
		struct tpacket2_hdr *h = (struct tpacket2_hdr *)(q->map + (size_t)q->cur * q->slot_size);
		const uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
		if (!(status & TP_STATUS_USER))
			break;
		struct rte_mbuf *m;
		if (unlikely(status & TP_STATUS_COPY)) {
			m = wf_afp_copied(q, h->tp_len);
		} else if (unlikely(h->tp_snaplen < h->tp_len || h->tp_mac + (size_t)h->tp_snaplen > q->slot_size)) {
			/* Longer than the slot and not copied (the socket's buffer was full). */
			wf_rxq_drop(&q->b, WF_DROP_RX_TRUNCATED, h->tp_len);
			m = NULL;
		} else {
			const uint8_t *frame = (const uint8_t *)h + h->tp_mac;
			m = wf_afp_mbuf(q, frame, h->tp_snaplen, (const struct virtio_net_hdr *)(frame - 10),
					(status & TP_STATUS_VLAN_VALID) != 0,
					(status & TP_STATUS_VLAN_TPID_VALID) ? h->tp_vlan_tpid : ETH_P_8021Q, h->tp_vlan_tci);
		}
		__atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
		q->cur = q->cur + 1 == q->n_slots ? 0 : q->cur + 1;
		if (m != NULL)
			pkts[k++] = m;
	}
	return k;
}

/* Sleep: nothing to arm, the socket is readable when a frame is in the ring. */
static int
wf_afp_arm(struct wf_rxq_base *b)
{
	struct wf_afp_rxq *q = (struct wf_afp_rxq *)b;
	const struct tpacket2_hdr *h = (const struct tpacket2_hdr *)(q->map + (size_t)q->cur * q->slot_size);
	if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)
		return -EAGAIN;
	return q->fd;
}

static void
wf_afp_disarm(struct wf_rxq_base *b)
{
	(void)b;
}

/* ---- TX ------------------------------------------------------------------ */

/* The virtio-net header of a frame leaving: what it still needs from the kernel. */
static inline void
wf_vnet_tx(struct virtio_net_hdr *vh, const struct rte_mbuf *m)
{
	memset(vh, 0, sizeof(*vh));
	const uint64_t ol = m->ol_flags;
	if (likely(!(ol & WF_OL_PENDING)))
		return;
	vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	vh->csum_start = (uint16_t)(m->l2_len + m->l3_len);
	vh->csum_offset = (ol & RTE_MBUF_F_TX_L4_MASK) == RTE_MBUF_F_TX_UDP_CKSUM ? 6 : 16;
	if (ol & WF_OL_SEG) {
		vh->gso_size = m->tso_segsz;
		vh->hdr_len = (uint16_t)(m->l2_len + m->l3_len + m->l4_len);
		if (ol & RTE_MBUF_F_TX_UDP_SEG)
			vh->gso_type = VIRTIO_NET_HDR_GSO_UDP_L4;
		else
			vh->gso_type = (ol & RTE_MBUF_F_TX_IPV6) ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
	}
}

static uint16_t
wf_afp_tx(void *arg, struct rte_mbuf **pkts, uint16_t n)
{
	struct wf_afp_txq *q = arg;
	uint16_t done = 0;
	while (done < n) {
		/* As many frames as the iovecs hold (a super-frame is ~33 segments). */
		uint32_t iv = 0;
		uint16_t k = 0;
		for (; done + k < n; k++) {
			struct rte_mbuf *m = pkts[done + k];
			if (iv + 1 + m->nb_segs > WF_AFP_IOV)
				break;
			wf_vnet_tx(&q->vh[k], m);
			struct iovec *v = &q->iov[iv];
			v[0] = (struct iovec){ .iov_base = &q->vh[k], .iov_len = sizeof(struct virtio_net_hdr) };
			uint32_t j = 1;
			for (struct rte_mbuf *s = m; s != NULL; s = s->next)
				v[j++] = (struct iovec){ .iov_base = rte_pktmbuf_mtod(s, void *), .iov_len = s->data_len };
			q->msg[k].msg_hdr = (struct msghdr){ .msg_iov = v, .msg_iovlen = j };
			iv += j;
		}
		if (k == 0)
			break; /* one frame with more segments than WF_AFP_IOV: never built by Weft */
		int sent = sendmmsg(q->fd, q->msg, k, MSG_DONTWAIT);
		if (sent <= 0)
			break; /* EAGAIN, ENOBUFS: the socket's buffer is full */
		rte_pktmbuf_free_bulk(pkts + done, (unsigned)sent);
		done = (uint16_t)(done + sent);
		if (sent < k)
			break;
	}
	return done;
}

/* ---- control --------------------------------------------------------------- */

static int
wf_afp_link(struct wf_dataplane *dp, struct wf_port_ctl *pc)
{
	(void)dp;
	const struct wf_afp *a = pc->priv;
	return __atomic_load_n(&a->kif.link, __ATOMIC_RELAXED);
}

static void
wf_afp_info(const struct wf_dataplane *dp, const struct wf_port_ctl *pc, struct wf_port_info *i)
{
	(void)dp;
	const struct wf_afp *a = pc->priv;
	snprintf(i->note, sizeof(i->note),
		 "%s%s: TPACKET_V2 + vnet header (partial checksums and GSO honoured)", a->kif.ifname,
		 a->kif.netns[0] ? " (other netns)" : "");
}

static void
wf_afp_stats(struct wf_dataplane *dp, struct wf_port_ctl *pc, struct wf_if_stats *s)
{
	(void)dp;
	struct wf_afp *a = pc->priv;
	for (uint16_t q = 0; q < a->nrxq; q++) {
		struct tpacket_stats st;
		socklen_t len = sizeof(st);
		if (getsockopt(a->rxq[q]->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
			a->kernel_drops += st.tp_drops;
	}
	s->drops[WF_DROP_RX_RING_FULL] += a->kernel_drops;
}

static void
wf_afp_free(struct wf_dataplane *dp, struct wf_afp *a)
{
	if (a->watched)
		wf_kif_unwatch(dp, &a->kif);
	for (uint16_t q = 0; q < WF_MAX_RXQ_PER_PORT; q++) {
		struct wf_afp_rxq *r = a->rxq[q];
		if (r == NULL)
			continue;
		wf_rxq_unwatch(dp, &r->b);
		if (r->map != NULL && r->map != MAP_FAILED)
			munmap(r->map, r->map_len);
		if (r->fd >= 0)
			close(r->fd);
		free(r->big);
		rte_free(r);
	}
	for (uint32_t w = 0; w < WF_MAX_WORKERS; w++) {
		if (a->txq[w] == NULL)
			continue;
		if (a->txq[w]->fd >= 0)
			close(a->txq[w]->fd);
		rte_free(a->txq[w]);
	}
	free(a);
}

static void
wf_afp_close(struct wf_dataplane *dp, struct wf_port_ctl *pc)
{
	wf_afp_free(dp, pc->priv);
	pc->priv = NULL;
}

static const struct wf_port_ops wf_afp_ops = {
	.name = "af_packet",
	.link = wf_afp_link,
	.info = wf_afp_info,
	.close = wf_afp_close,
	.stats = wf_afp_stats,
};

struct wf_afp_open {
	struct wf_afp *a;
	uint32_t ring_blocks;
	uint32_t slot_size;
	uint8_t promisc;
	uint16_t fanout;
};

static int
wf_setsockopt(int fd, int level, int opt, int val, const char *what, const char *ifname)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)) == 0)
		return 0;
	int rc = -errno;
	wf_set_error("%s: AF_PACKET %s: %s", ifname, what, strerror(-rc));
	return rc;
}

/* Sockets, rings and bindings; runs inside the interface's namespace. */
static int
wf_afp_open_cb(void *arg)
{
	struct wf_afp_open *o = arg;
	struct wf_afp *a = o->a;
	const char *ifn = a->kif.ifname;
	int rc;
	for (uint16_t q = 0; q < a->nrxq; q++) {
		struct wf_afp_rxq *r = a->rxq[q];
		/* Protocol 0 until bound: nothing from other interfaces meanwhile. */
		r->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (r->fd < 0) {
			rc = -errno;
			wf_set_error("%s: AF_PACKET socket: %s", ifn, strerror(-rc));
			return rc;
		}
		if ((rc = wf_setsockopt(r->fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "TPACKET_V2", ifn)) != 0 ||
		    (rc = wf_setsockopt(r->fd, SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR", ifn)) != 0 ||
		    (rc = wf_setsockopt(r->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING",
					ifn)) != 0 ||
		    (rc = wf_setsockopt(r->fd, SOL_PACKET, PACKET_COPY_THRESH, 1, "PACKET_COPY_THRESH", ifn)) != 0 ||
		    (rc = wf_setsockopt(r->fd, SOL_PACKET, PACKET_AUXDATA, 1, "PACKET_AUXDATA", ifn)) != 0)
			return rc;
		/* Room on the socket for the super-frames the ring cannot hold. */
		int rcvbuf = 8 << 20;
		if (setsockopt(r->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0)
			setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
		struct tpacket_req req = {
			.tp_block_size = WF_AFP_BLOCK,
			.tp_block_nr = o->ring_blocks,
			.tp_frame_size = o->slot_size,
			.tp_frame_nr = (WF_AFP_BLOCK / o->slot_size) * o->ring_blocks,
		};
		if (setsockopt(r->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0) {
			rc = -errno;
			wf_set_error("%s: AF_PACKET RX ring of %u x %u-byte slots: %s", ifn, req.tp_frame_nr,
				     req.tp_frame_size, strerror(-rc));
			return rc;
		}
		r->slot_size = o->slot_size;
		r->n_slots = req.tp_frame_nr;
		r->map_len = (size_t)WF_AFP_BLOCK * o->ring_blocks;
		r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
		if (r->map == MAP_FAILED) {
			rc = -errno;
			r->map = NULL;
			wf_set_error("%s: mmap of the AF_PACKET ring: %s", ifn, strerror(-rc));
			return rc;
		}
		struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
					   .sll_ifindex = a->kif.ifindex };
		if (bind(r->fd, (struct sockaddr *)&sll, sizeof(sll)) != 0) {
			rc = -errno;
			wf_set_error("%s: AF_PACKET bind: %s", ifn, strerror(-rc));
			return rc;
		}
		if (a->nrxq > 1) {
			/* Flows spread over the queues by hash; never the defragment flag. */
			int v = o->fanout | (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16;
			if (setsockopt(r->fd, SOL_PACKET, PACKET_FANOUT, &v, sizeof(v)) != 0) {
				v = o->fanout | PACKET_FANOUT_HASH << 16; /* kernels before 6.2 */
				if ((rc = wf_setsockopt(r->fd, SOL_PACKET, PACKET_FANOUT, v, "fanout", ifn)) != 0)
					return rc;
			}
		}
		if (q == 0 && o->promisc) {
			struct packet_mreq mr = { .mr_ifindex = a->kif.ifindex, .mr_type = PACKET_MR_PROMISC };
			if (setsockopt(r->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) != 0) {
				rc = -errno;
				wf_set_error("%s: promiscuous mode: %s", ifn, strerror(-rc));
				return rc;
			}
		}
	}
	for (uint16_t w = 0; w < a->ntxq; w++) {
		struct wf_afp_txq *t = a->txq[w];
		t->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (t->fd < 0) {
			rc = -errno;
			wf_set_error("%s: AF_PACKET socket: %s", ifn, strerror(-rc));
			return rc;
		}
		if ((rc = wf_setsockopt(t->fd, SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR", ifn)) != 0)
			return rc;
		/* Room for a burst of super-frames in flight (root may exceed wmem_max). */
		int sndbuf = 16 << 20;
		if (setsockopt(t->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) != 0)
			setsockopt(t->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		/* Protocol 0: this socket only sends. */
		struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = 0, .sll_ifindex = a->kif.ifindex };
		if (bind(t->fd, (struct sockaddr *)&sll, sizeof(sll)) != 0) {
			rc = -errno;
			wf_set_error("%s: AF_PACKET bind: %s", ifn, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int
wf_afp_attach(struct wf_dataplane *dp, const struct wf_kif_attach *req, uint16_t *port_id)
{
	uint16_t port;
	int rc = wf_port_alloc(dp, &port);
	if (rc != 0)
		return rc;
	struct wf_afp *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	if ((rc = wf_kif_lookup(&a->kif, req->ifname, req->netns)) != 0) {
		free(a);
		return rc;
	}
	a->nrxq = req->rx_queues ? req->rx_queues : 1;
	a->ntxq = (uint16_t)dp->n_pollers;
	if (a->nrxq > WF_MAX_RXQ_PER_PORT) {
		free(a);
		wf_set_error("%s: at most %d RX queues", req->ifname, WF_MAX_RXQ_PER_PORT);
		return -EINVAL;
	}
	for (uint16_t q = 0; q < a->nrxq; q++) {
		a->rxq[q] = rte_zmalloc("weft_afp_rxq", sizeof(struct wf_afp_rxq), RTE_CACHE_LINE_SIZE);
		if (a->rxq[q] == NULL)
			goto nomem;
		a->rxq[q]->big = malloc(WF_AFP_BIG + 64);
		if (a->rxq[q]->big == NULL)
			goto nomem;
		a->rxq[q]->fd = -1;
		a->rxq[q]->pool = dp->pool;
		a->rxq[q]->b.port = port;
		a->rxq[q]->b.watched_fd = -1;
		a->rxq[q]->b.arm = wf_afp_arm;
		a->rxq[q]->b.disarm = wf_afp_disarm;
	}
	for (uint16_t w = 0; w < a->ntxq; w++) {
		a->txq[w] = rte_zmalloc("weft_afp_txq", sizeof(struct wf_afp_txq), RTE_CACHE_LINE_SIZE);
		if (a->txq[w] == NULL)
			goto nomem;
		a->txq[w]->fd = -1;
	}
	/* A slot holds an MTU-sized frame (with a tag) after the ring's own headers. */
	uint32_t slot = 2048;
	while (slot < a->kif.mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + 128 && slot < WF_AFP_BLOCK)
		slot <<= 1;
	uint32_t ring_kb = req->ring_kb ? req->ring_kb : 1024;
	struct wf_afp_open o = { .a = a, .ring_blocks = ring_kb / (WF_AFP_BLOCK >> 10), .slot_size = slot,
				 .promisc = req->promiscuous, .fanout = (uint16_t)(getpid() ^ (port * 7919u)) };
	if (o.ring_blocks < 2)
		o.ring_blocks = 2;
	if ((rc = wf_in_netns(req->netns, wf_afp_open_cb, &o)) != 0)
		goto fail;
	if ((rc = wf_kif_watch(dp, &a->kif)) != 0)
		goto fail;
	a->watched = true;

	struct wf_port_ctl *pc = &dp->ports[port];
	pc->ops = &wf_afp_ops;
	pc->priv = a;
	pc->eth = WF_PORT_NONE;
	pc->nb_rxq = a->nrxq;
	pc->nb_txq = a->ntxq;
	pc->rx = wf_afp_rx;
	for (uint16_t q = 0; q < a->nrxq; q++)
		pc->rxq[q] = a->rxq[q];
	snprintf(pc->devname, sizeof(pc->devname), "afp:%s", a->kif.ifname);
	memcpy(pc->mac, a->kif.mac, 6);
	pc->mtu = (uint16_t)a->kif.mtu;
	struct wf_port_fp *fp = &dp->fp[port];
	memset(fp, 0, sizeof(*fp));
	fp->eth = WF_PORT_NONE;
	fp->tx = wf_afp_tx;
	fp->caps = WF_CAP_L4_CSUM | WF_CAP_GSO;
	fp->max_frame = a->kif.mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN;
	for (uint16_t w = 0; w < a->ntxq; w++)
		fp->txq[w] = a->txq[w];
	rc = wf_port_publish_new(dp, port);
	if (rc != 0) {
		pc->ops = NULL;
		pc->priv = NULL;
		memset(fp, 0, sizeof(*fp));
		fp->eth = WF_PORT_NONE;
		goto fail;
	}
	*port_id = port;
	return 0;
nomem:
	rc = -ENOMEM;
fail:
	wf_afp_free(dp, a);
	return rc;
}
