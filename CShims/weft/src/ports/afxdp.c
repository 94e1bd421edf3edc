/*
 * afxdp.c: kernel interfaces through AF_XDP, Weft's own driver (libxdp's
 * xsk rings, libbpf).
 *
 * One XDP program of Weft's own per interface ("weft_xsk": redirect to the
 * socket of the frame's RX queue, XDP_PASS when there is none), loaded from
 * five instructions built here (no BPF object file, no dispatcher), in
 * native mode where the driver has it (veth does) and generic mode
 * otherwise. A program of that name left by a weftd that died is replaced;
 * any other program is refused with its name. One socket and one small UMEM
 * per queue; copy mode unless the driver does zero-copy; XDP_USE_NEED_WAKEUP.
 * A received frame is copied into an mbuf and its UMEM frame goes straight
 * back to the fill ring, so a socket never holds pool mbufs (DPDK's af_xdp
 * PMD reserved 2,048 of them per queue: why attaches failed under load).
 *
 * XDP sees only frames arriving on the interface: the host's own outgoing
 * frames never reach Weft, and fragments are never reassembled. XDP cannot
 * see the kernel's checksum metadata, so a veth peer that offers TX checksum
 * offload would hand over partial checksums: with fix_peer_csum the peer's
 * TX checksum offload is turned off (which also turns its TSO off), as NSM's
 * forwarders do, and the port's note says so.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#include <rte_ether.h>
#include <rte_malloc.h>
#include <rte_spinlock.h>

#include "wf_internal.h"

/* UMEM frames: 2 KiB for a standard MTU, 4 KiB above (less the kernel's
 * 256-byte XDP headroom each): 1 or 2 MiB per queue. */
#define WF_XSK_FRAME_MAX 4096u
#define WF_XSK_RX 256u     /* RX and fill ring, and the frames they own */
#define WF_XSK_TX 256u     /* TX and completion ring, and the frames they own */
#define WF_XSK_PROG "weft_xsk"

struct wf_xsk {
	struct wf_rxq_base b; /* RX side: one worker */
	uint32_t frame;       /* UMEM frame size */
	struct xsk_socket *xsk;
	struct xsk_umem *umem;
	void *area;
	int fd;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod fq;
	struct rte_mempool *pool;
	/* TX side: the workers that transmit on it (a lock when more than one) */
	struct xsk_ring_prod tx;
	struct xsk_ring_cons cq;
	rte_spinlock_t tx_lock;
	bool tx_shared;
	uint32_t n_free;
	uint64_t free[WF_XSK_TX];
	bool zerocopy;
};

/* A worker's way to transmit: the socket of queue (worker % queues). */
struct wf_xsk_txq {
	struct wf_txq_base tb;
	struct wf_xsk *q;
};

struct wf_xdp {
	struct wf_kif kif;
	uint16_t nq;
	struct wf_xsk *q[WF_MAX_RXQ_PER_PORT];
	struct wf_xsk_txq txq[WF_MAX_WORKERS];
	int prog_fd, map_fd;
	uint32_t xdp_flags; /* the mode the program was attached in */
	bool attached, watched;
	char peer_note[96];
};

/* ---- RX ------------------------------------------------------------------ */

static uint16_t
wf_xsk_rx(void *arg, struct rte_mbuf **pkts, uint16_t n)
{
	struct wf_xsk *q = arg;
	uint32_t idx = 0;
	uint32_t got = xsk_ring_cons__peek(&q->rx, n, &idx);
	if (got == 0)
		return 0;
	uint32_t fidx = 0;
	/* The fill ring has room for every frame RX can hand us. */
	uint32_t room = xsk_ring_prod__reserve(&q->fq, got, &fidx);
	uint16_t k = 0;
	for (uint32_t i = 0; i < got; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&q->rx, idx + i);
		uint64_t addr = xsk_umem__extract_addr(d->addr) + xsk_umem__extract_offset(d->addr);
		uint32_t len = d->len;
		if (likely(addr + len <= (uint64_t)q->frame * (WF_XSK_RX + WF_XSK_TX))) {
			struct rte_mbuf *m = rte_pktmbuf_alloc(q->pool);
			if (likely(m != NULL) &&
			    likely(wf_mbuf_put(m, q->pool, xsk_umem__get_data(q->area, addr), len) == 0)) {
				m->port = q->b.port;
				pkts[k++] = m;
			} else {
				rte_pktmbuf_free(m);
				wf_rxq_drop(&q->b, WF_DROP_NO_MBUF, len);
			}
		}
		if (i < room)
			*xsk_ring_prod__fill_addr(&q->fq, fidx + i) = xsk_umem__extract_addr(d->addr);
	}
	xsk_ring_cons__release(&q->rx, got);
	xsk_ring_prod__submit(&q->fq, room);
	if (xsk_ring_prod__needs_wakeup(&q->fq))
		recvfrom(q->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
	return k;
}

/* Sleep: nothing to arm, the socket is readable when its RX ring has a frame. */
static int
wf_xsk_arm(struct wf_rxq_base *b)
{
	struct wf_xsk *q = (struct wf_xsk *)b;
	if (xsk_cons_nb_avail(&q->rx, 1) > 0)
		return -EAGAIN;
	return q->fd;
}

static void
wf_xsk_disarm(struct wf_rxq_base *b)
{
	(void)b;
}

/* ---- TX ------------------------------------------------------------------ */

static uint16_t
wf_xsk_tx(void *arg, struct rte_mbuf **pkts, uint16_t n)
{
	struct wf_xsk *q = ((struct wf_xsk_txq *)arg)->q;
	if (q->tx_shared)
		rte_spinlock_lock(&q->tx_lock);
	uint32_t cidx = 0;
	uint32_t done = xsk_ring_cons__peek(&q->cq, WF_XSK_TX, &cidx);
	for (uint32_t i = 0; i < done; i++)
		q->free[q->n_free++] = *xsk_ring_cons__comp_addr(&q->cq, cidx + i);
	xsk_ring_cons__release(&q->cq, done);
	uint32_t k = n < q->n_free ? n : q->n_free;
	uint32_t tidx = 0;
	k = xsk_ring_prod__reserve(&q->tx, k, &tidx);
	for (uint32_t i = 0; i < k; i++) {
		struct rte_mbuf *m = pkts[i];
		uint64_t addr = q->free[--q->n_free];
		uint8_t *dst = xsk_umem__get_data(q->area, addr);
		/* Frames longer than a UMEM frame never get here (port max_frame). */
		const void *src = rte_pktmbuf_read(m, 0, rte_pktmbuf_pkt_len(m), dst);
		if (src != dst)
			memcpy(dst, src, rte_pktmbuf_pkt_len(m));
		struct xdp_desc *d = xsk_ring_prod__tx_desc(&q->tx, tidx + i);
		d->addr = addr;
		d->len = rte_pktmbuf_pkt_len(m);
	}
	xsk_ring_prod__submit(&q->tx, k);
	/* Copy mode always wants the kick; zero-copy drivers say when. */
	if (k && xsk_ring_prod__needs_wakeup(&q->tx))
		sendto(q->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
	if (q->tx_shared)
		rte_spinlock_unlock(&q->tx_lock);
	rte_pktmbuf_free_bulk(pkts, k);
	return (uint16_t)k;
}

/* ---- the XDP program ----------------------------------------------------------- */

/*
 * r2 = ctx->rx_queue_index; r1 = &xsks_map; r3 = XDP_PASS;
 * return bpf_redirect_map(r1, r2, r3)  (r3: the action when the queue has no socket)
 */
static int
wf_xdp_prog_load(int map_fd, char *log, size_t log_len)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_1,
		  .off = offsetof(struct xdp_md, rx_queue_index) },
		{ .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = BPF_REG_1, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd },
		{ 0 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_3, .imm = XDP_PASS },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect_map },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .log_buf = log, .log_size = (uint32_t)log_len, .log_level = 1);
	return bpf_prog_load(BPF_PROG_TYPE_XDP, WF_XSK_PROG, "GPL", insns, sizeof(insns) / sizeof(insns[0]), &opts);
}

/* The name of the program attached to ifindex in this mode ("" when none). */
static void
wf_xdp_attached_name(int ifindex, uint32_t mode, char *name, size_t len, uint32_t *id)
{
	name[0] = '\0';
	*id = 0;
	if (bpf_xdp_query_id(ifindex, (int)mode, id) != 0 || *id == 0)
		return;
	int fd = bpf_prog_get_fd_by_id(*id);
	if (fd < 0) {
		snprintf(name, len, "id %u", *id);
		return;
	}
	struct bpf_prog_info info;
	uint32_t il = sizeof(info);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &il) == 0)
		snprintf(name, len, "%s", info.name);
	close(fd);
}

struct wf_xdp_open {
	struct wf_xdp *a;
	uint16_t n_workers;
	uint8_t promisc;
};

/* Program, map, sockets; runs inside the interface's namespace. */
static int
wf_xdp_open_cb(void *arg)
{
	struct wf_xdp_open *o = arg;
	struct wf_xdp *a = o->a;
	const char *ifn = a->kif.ifname;
	int rc;
	a->map_fd = bpf_map_create(BPF_MAP_TYPE_XSKMAP, "weft_xsks", sizeof(uint32_t), sizeof(uint32_t),
				   WF_MAX_RXQ_PER_PORT, NULL);
	if (a->map_fd < 0) {
		rc = -errno;
		wf_set_error("%s: cannot create the XSK map: %s", ifn, strerror(-rc));
		return rc;
	}
	char log[1024] = "";
	a->prog_fd = wf_xdp_prog_load(a->map_fd, log, sizeof(log));
	if (a->prog_fd < 0) {
		rc = a->prog_fd;
		wf_set_error("%s: the kernel refused Weft's XDP program: %s %s", ifn, strerror(-rc), log);
		return rc;
	}
	/* Native mode where the driver has it, else generic; never over a foreign program. */
	const uint32_t modes[2] = { XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE };
	rc = -EOPNOTSUPP;
	for (int i = 0; i < 2 && rc != 0; i++) {
		char name[64];
		uint32_t id;
		wf_xdp_attached_name(a->kif.ifindex, modes[i], name, sizeof(name), &id);
		uint32_t flags = modes[i];
		if (name[0] != '\0' && strcmp(name, WF_XSK_PROG) != 0) {
			wf_set_error("%s already has an XDP program (%s); Weft will not replace it", ifn, name);
			return -EBUSY;
		}
		if (name[0] == '\0')
			flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
		rc = bpf_xdp_attach(a->kif.ifindex, a->prog_fd, flags, NULL);
		if (rc == 0)
			a->xdp_flags = modes[i];
	}
	if (rc != 0) {
		wf_set_error("%s: cannot attach the XDP program: %s%s", ifn, strerror(-rc),
			     rc == -EBUSY ? " (a veth's peer MTU above what XDP allows?)" : "");
		return rc;
	}
	a->attached = true;
	for (uint16_t i = 0; i < a->nq; i++) {
		struct wf_xsk *q = a->q[i];
		size_t size = (size_t)q->frame * (WF_XSK_RX + WF_XSK_TX);
		q->area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (q->area == MAP_FAILED) {
			q->area = NULL;
			return -ENOMEM;
		}
		struct xsk_umem_config uc = { .fill_size = WF_XSK_RX, .comp_size = WF_XSK_TX,
					      .frame_size = q->frame, .frame_headroom = 0 };
		rc = xsk_umem__create(&q->umem, q->area, size, &q->fq, &q->cq, &uc);
		if (rc != 0) {
			wf_set_error("%s queue %u: cannot register the UMEM: %s", ifn, i, strerror(-rc));
			return rc;
		}
		struct xsk_socket_config sc = { .rx_size = WF_XSK_RX, .tx_size = WF_XSK_TX,
						.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
						.xdp_flags = a->xdp_flags, .bind_flags = XDP_USE_NEED_WAKEUP };
		rc = xsk_socket__create(&q->xsk, ifn, i, q->umem, &q->rx, &q->tx, &sc);
		if (rc != 0) {
			wf_set_error("%s queue %u: cannot create the AF_XDP socket: %s%s", ifn, i, strerror(-rc),
				     rc == -EBUSY ? " (another AF_XDP socket holds the queue)" : "");
			return rc;
		}
		q->fd = xsk_socket__fd(q->xsk);
		struct xdp_options opt;
		socklen_t ol = sizeof(opt);
		q->zerocopy = getsockopt(q->fd, SOL_XDP, XDP_OPTIONS, &opt, &ol) == 0 &&
			      (opt.flags & XDP_OPTIONS_ZEROCOPY);
		/* The first frames to the fill ring, the others for TX. */
		uint32_t fidx = 0;
		if (xsk_ring_prod__reserve(&q->fq, WF_XSK_RX, &fidx) != WF_XSK_RX)
			return -ENOMEM;
		for (uint32_t f = 0; f < WF_XSK_RX; f++)
			*xsk_ring_prod__fill_addr(&q->fq, fidx + f) = (uint64_t)f * q->frame;
		xsk_ring_prod__submit(&q->fq, WF_XSK_RX);
		for (uint32_t f = 0; f < WF_XSK_TX; f++)
			q->free[q->n_free++] = (uint64_t)(WF_XSK_RX + f) * q->frame;
		q->tx_shared = o->n_workers > a->nq;
		rte_spinlock_init(&q->tx_lock);
		uint32_t key = i;
		if (bpf_map_update_elem(a->map_fd, &key, &q->fd, 0) != 0) {
			rc = -errno;
			wf_set_error("%s queue %u: cannot add the socket to the XSK map: %s", ifn, i, strerror(-rc));
			return rc;
		}
	}
	if (o->promisc) {
		/* XDP sees what the interface accepts: let it accept everything. */
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifn);
		if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_PROMISC)) {
			ifr.ifr_flags |= IFF_PROMISC;
			ioctl(fd, SIOCSIFFLAGS, &ifr);
		}
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

struct wf_xdp_close_req {
	struct wf_xdp *a;
};

static int
wf_xdp_close_cb(void *arg)
{
	struct wf_xdp *a = ((struct wf_xdp_close_req *)arg)->a;
	for (uint16_t i = 0; i < WF_MAX_RXQ_PER_PORT; i++) {
		struct wf_xsk *q = a->q[i];
		if (q == NULL)
			continue;
		if (q->xsk != NULL)
			xsk_socket__delete(q->xsk);
		if (q->umem != NULL)
			xsk_umem__delete(q->umem);
		if (q->area != NULL)
			munmap(q->area, (size_t)q->frame * (WF_XSK_RX + WF_XSK_TX));
		rte_free(q);
	}
	if (a->attached) {
		/* Only our own program, and only if it is still the one attached. */
		LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = a->prog_fd);
		bpf_xdp_detach(a->kif.ifindex, a->xdp_flags | XDP_FLAGS_REPLACE, &opts);
	}
	if (a->prog_fd > 0)
		close(a->prog_fd);
	if (a->map_fd > 0)
		close(a->map_fd);
	return 0;
}

static void
wf_xdp_free(struct wf_dataplane *dp, struct wf_xdp *a)
{
	if (a->watched)
		wf_kif_unwatch(dp, &a->kif);
	for (uint16_t i = 0; i < WF_MAX_RXQ_PER_PORT; i++)
		if (a->q[i] != NULL)
			wf_rxq_unwatch(dp, &a->q[i]->b);
	struct wf_xdp_close_req r = { .a = a };
	wf_in_netns(a->kif.netns[0] ? a->kif.netns : NULL, wf_xdp_close_cb, &r);
	free(a);
}

static void
wf_xdp_stats(struct wf_dataplane *dp, struct wf_port_ctl *pc, struct wf_if_stats *s)
{
	(void)dp;
	const struct wf_xdp *a = pc->priv;
	for (uint16_t i = 0; i < a->nq; i++) {
		struct xdp_statistics st;
		socklen_t len = sizeof(st);
		if (getsockopt(a->q[i]->fd, SOL_XDP, XDP_STATISTICS, &st, &len) == 0)
			s->drops[WF_DROP_RX_RING_FULL] += st.rx_dropped + st.rx_ring_full;
	}
}

static int
wf_xdp_link(struct wf_dataplane *dp, struct wf_port_ctl *pc)
{
	(void)dp;
	const struct wf_xdp *a = pc->priv;
	return __atomic_load_n(&a->kif.link, __ATOMIC_RELAXED);
}

static void
wf_xdp_info(const struct wf_dataplane *dp, const struct wf_port_ctl *pc, struct wf_port_info *i)
{
	(void)dp;
	const struct wf_xdp *a = pc->priv;
	snprintf(i->note, sizeof(i->note), "%s: XDP %s mode, %s%s%s", a->kif.ifname,
		 a->xdp_flags == XDP_FLAGS_DRV_MODE ? "native" : "generic",
		 a->q[0] && a->q[0]->zerocopy ? "zero-copy" : "copy", a->peer_note[0] ? "; " : "", a->peer_note);
}

static void
wf_xdp_close(struct wf_dataplane *dp, struct wf_port_ctl *pc)
{
	wf_xdp_free(dp, pc->priv);
	pc->priv = NULL;
}

static const struct wf_port_ops wf_xdp_ops = {
	.name = "af_xdp",
	.link = wf_xdp_link,
	.info = wf_xdp_info,
	.close = wf_xdp_close,
	.stats = wf_xdp_stats,
};

int
wf_xdp_attach(struct wf_dataplane *dp, const struct wf_kif_attach *req, uint16_t *port_id)
{
	uint16_t port;
	int rc = wf_port_alloc(dp, &port);
	if (rc != 0)
		return rc;
	struct wf_xdp *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->prog_fd = a->map_fd = -1;
	if ((rc = wf_kif_lookup(&a->kif, req->ifname, req->netns)) != 0) {
		free(a);
		return rc;
	}
	a->nq = req->rx_queues ? req->rx_queues : 1;
	if (a->nq > WF_MAX_RXQ_PER_PORT) {
		free(a);
		wf_set_error("%s: at most %d RX queues", req->ifname, WF_MAX_RXQ_PER_PORT);
		return -EINVAL;
	}
	const uint32_t need = a->kif.mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + XDP_PACKET_HEADROOM;
	if (need > WF_XSK_FRAME_MAX) {
		free(a);
		wf_set_error("%s: MTU %u is above what Weft's AF_XDP frames hold (%u); use af_packet", req->ifname,
			     a->kif.mtu, WF_XSK_FRAME_MAX - XDP_PACKET_HEADROOM - RTE_ETHER_HDR_LEN - RTE_VLAN_HLEN);
		return -EMSGSIZE;
	}
	for (uint16_t i = 0; i < a->nq; i++) {
		a->q[i] = rte_zmalloc("weft_xsk", sizeof(struct wf_xsk), RTE_CACHE_LINE_SIZE);
		if (a->q[i] == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
		a->q[i]->fd = -1;
		a->q[i]->pool = dp->pool;
		a->q[i]->frame = need <= 2048 ? 2048 : WF_XSK_FRAME_MAX;
		a->q[i]->b.watched_fd = -1;
		a->q[i]->b.arm = wf_xsk_arm;
		a->q[i]->b.disarm = wf_xsk_disarm;
	}
	if (req->fix_peer_csum) {
		char peer_ns[WF_NETNS_LEN], peer[16];
		rc = wf_nl_veth_peer(a->kif.netns[0] ? a->kif.netns : NULL, a->kif.ifindex, peer_ns, sizeof(peer_ns),
				     peer);
		if (rc == 0) {
			int was = wf_ethtool_tx_csum(peer_ns[0] ? peer_ns : NULL, peer, 0);
			if (was < 0)
				snprintf(a->peer_note, sizeof(a->peer_note),
					 "veth peer %s: TX checksum offload could not be turned off", peer);
			else
				snprintf(a->peer_note, sizeof(a->peer_note), "veth peer %s: TX checksum offload %s",
					 peer, was ? "turned off" : "already off");
			if (was < 0) {
				rc = was;
				goto fail;
			}
		} else if (rc != -ENOENT) {
			goto fail;
		}
		/* -ENOENT: not a veth; the frames come from a wire, complete. */
	}
	struct wf_xdp_open o = { .a = a, .n_workers = (uint16_t)dp->n_pollers, .promisc = req->promiscuous };
	if ((rc = wf_in_netns(req->netns, wf_xdp_open_cb, &o)) != 0)
		goto fail;
	if ((rc = wf_kif_watch(dp, &a->kif)) != 0)
		goto fail;
	a->watched = true;

	struct wf_port_ctl *pc = &dp->ports[port];
	pc->ops = &wf_xdp_ops;
	pc->priv = a;
	pc->eth = WF_PORT_NONE;
	pc->nb_rxq = a->nq;
	pc->nb_txq = (uint16_t)dp->n_pollers;
	pc->rx = wf_xsk_rx;
	for (uint16_t i = 0; i < a->nq; i++)
		pc->rxq[i] = a->q[i];
	snprintf(pc->devname, sizeof(pc->devname), "xdp:%s", a->kif.ifname);
	memcpy(pc->mac, a->kif.mac, 6);
	pc->mtu = (uint16_t)a->kif.mtu;
	struct wf_port_fp *fp = &dp->fp[port];
	memset(fp, 0, sizeof(*fp));
	fp->eth = WF_PORT_NONE;
	fp->tx = wf_xsk_tx;
	fp->caps = 0;
	fp->max_frame = a->kif.mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN;
	for (uint32_t w = 0; w < dp->n_pollers; w++) {
		a->txq[w].q = a->q[w % a->nq];
		fp->txq[w] = &a->txq[w];
	}
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
fail:
	wf_xdp_free(dp, a);
	return rc;
}
