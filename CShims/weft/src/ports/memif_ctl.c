/*
 * memif_ctl.c: the memif control channel (memif.h has the protocol) and the
 * memif interfaces' lifecycle, all on the events thread under its lock.
 *
 * Server: one listening socket per (name, namespace), shared by the
 * interfaces (ids) that use it. A connection gets HELLO at once; INIT names
 * the interface (id, mode, secret); ADD_REGION / ADD_RING bring fds; CONNECT
 * makes Weft map the regions, check every ring against them and their
 * cookies, and only then put the rings in the workers' hands. One reply per
 * message (what DPDK's client waits for). Anything wrong is answered with
 * DISCONNECT and a reason, counted, and the connection is closed; the
 * interface goes on listening. Limits: WF_MEMIF_MAX_PENDING unfinished
 * connections per socket, 5 s to finish the handshake.
 *
 * Client: Weft creates one memfd region (rings, then buffers; sealed against
 * shrinking), one eventfd per ring, connects (again every second while
 * there is no peer) and sends INIT, ADD_REGION, ADD_RINGs and CONNECT, one
 * per ACK.
 *
 * Regions a peer gives must be sealed against shrinking (F_SEAL_SHRINK, as
 * DPDK, VPP and libmemif create them): a region that can shrink under a
 * mapping would make a worker fault on a page that is gone.
 *
 * Disconnect: queues down, link down, an RCU grace period (no worker is
 * inside the rings any more), then unmap and close.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_version.h>

#include "ports/memif.h"

extern wf_burst_fn wf_memif_rx_fn, wf_memif_tx_fn;
extern int (*wf_memif_arm_fn)(struct wf_rxq_base *);
extern void (*wf_memif_disarm_fn)(struct wf_rxq_base *);

#define WF_MEMIF_MAX_PENDING 64
#define WF_MEMIF_HANDSHAKE_MS 5000
#define WF_MEMIF_RETRY_MS 1000

static const char *const wf_memif_ev_names[] = {
#define WF_X_NAME(e, s, d) s,
	WF_MEMIF_EVENTS(WF_X_NAME)
#undef WF_X_NAME
};
static const char *const wf_memif_ev_descs[] = {
#define WF_X_DESC(e, s, d) d,
	WF_MEMIF_EVENTS(WF_X_DESC)
#undef WF_X_DESC
};

const char *
wf_memif_event_name(uint32_t ev)
{
	return ev < WF_MEMIF_EV_MAX ? wf_memif_ev_names[ev] : NULL;
}

const char *
wf_memif_event_description(uint32_t ev)
{
	return ev < WF_MEMIF_EV_MAX ? wf_memif_ev_descs[ev] : NULL;
}

struct wf_memif;

struct wf_memif_listener {
	char name[108];
	bool abstract;
	char netns[WF_NETNS_LEN];
	uint64_t ns_dev, ns_ino;
	int fd;
	uint32_t ev_id;
	struct wf_memif **ifs;
	uint32_t n_ifs, cap_ifs;
	uint32_t pending;
	uint64_t events[WF_MEMIF_EV_MAX];
	struct wf_memif_listener *next;
};

enum wf_memif_state {
	WF_MS_HELLO_SENT = 1, /* server: waiting for INIT */
	WF_MS_INIT_OK,        /* server: regions, rings, CONNECT */
	WF_MS_CONNECTED,
	WF_MS_WAIT_HELLO,     /* client */
	WF_MS_WAIT_ACK,       /* client: one message out, its ACK (or CONNECTED) awaited */
};

struct wf_memif_conn {
	int fd;
	uint32_t ev_id;
	bool registered;
	enum wf_memif_state state;
	struct wf_memif_listener *l; /* server side */
	struct wf_memif *itf;        /* after INIT (server), always (client) */
	uint64_t deadline;           /* TSC: the handshake must be done by then */
	struct wf_memif_conn *prev, *next; /* every connection (dp->memif_conns) */
	/* client: what is still to be sent, one per ACK */
	uint32_t step;
};

/* What a peer gave for one ring before CONNECT. */
struct wf_memif_ringdef {
	bool set;
	int fd;
	uint16_t region;
	uint32_t offset;
	uint8_t log2;
};

struct wf_memif {
	struct wf_dataplane *dp;
	uint16_t port;
	bool client, abstract, ip_mode;
	uint32_t id;
	char secret[MEMIF_SECRET_SZ];
	char socket[108];
	char netns[WF_NETNS_LEN];
	uint16_t nrxq, ntx;
	uint8_t log2;
	uint16_t buf_size;
	struct wf_memif_listener *l;
	struct wf_memif_conn *conn;
	volatile uint8_t link;
	/* a connection's memory: regions and rings (server: the peer's; client: ours) */
	int region_fd[WF_MEMIF_MAX_REGIONS];
	struct wf_memif_region regions[WF_MEMIF_MAX_REGIONS];
	uint16_t n_regions;
	struct wf_memif_ringdef c2s_def[WF_MEMIF_MAX_RINGS], s2c_def[WF_MEMIF_MAX_RINGS];
	struct wf_memif_ring c2s[WF_MEMIF_MAX_RINGS], s2c[WF_MEMIF_MAX_RINGS];
	uint16_t n_c2s, n_s2c;
	/* worker queues */
	struct wf_memif_rxq *rxq[WF_MAX_RXQ_PER_PORT];
	struct wf_memif_txq *txq[WF_MAX_WORKERS];
	/* client: the next connection attempt */
	uint64_t retry_at;
	/* what happened */
	uint64_t events[WF_MEMIF_EV_MAX];
	char peer_name[MEMIF_NAME_SZ];
	char last_reason[96];
	bool detaching;
};

static uint64_t
wf_ms_tsc(uint64_t ms)
{
	return ms * rte_get_tsc_hz() / 1000;
}

/* ---- sending ----------------------------------------------------------------------- */

static int
wf_memif_send(int fd, const struct memif_msg *msg, int pass_fd)
{
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = sizeof(*msg) };
	union {
		struct cmsghdr c;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (pass_fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = &ctl;
		mh.msg_controllen = sizeof(ctl);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	/* MSG_NOSIGNAL: a peer that closed gets no SIGPIPE into weftd. */
	ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	return n == (ssize_t)sizeof(*msg) ? 0 : -1;
}

static void
wf_memif_send_simple(int fd, uint16_t type)
{
	struct memif_msg m;
	memset(&m, 0, sizeof(m));
	m.type = type;
	wf_memif_send(fd, &m, -1);
}

static void
wf_memif_send_disconnect(int fd, const char *reason)
{
	struct memif_msg m;
	memset(&m, 0, sizeof(m));
	m.type = MEMIF_MSG_DISCONNECT;
	snprintf((char *)m.disconnect.string, sizeof(m.disconnect.string), "%s", reason);
	wf_memif_send(fd, &m, -1);
}

/* ---- teardown --------------------------------------------------------------------------- */

static void
wf_memif_conn_link(struct wf_dataplane *dp, struct wf_memif_conn *c)
{
	c->prev = NULL;
	c->next = dp->memif_conns;
	if (c->next != NULL)
		c->next->prev = c;
	dp->memif_conns = c;
}

static void
wf_memif_conn_close(struct wf_dataplane *dp, struct wf_memif_conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (dp->memif_conns == c)
		dp->memif_conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->registered)
		wf_ev_del(dp, c->ev_id);
	if (c->fd >= 0)
		close(c->fd);
	if (c->l != NULL && c->state != WF_MS_CONNECTED) {
		struct wf_memif_listener *l = c->l;
		l->pending--;
	}
	free(c);
}

/* Drop everything a connection brought: queues down, grace period, unmap, close. */
static void
wf_memif_release(struct wf_memif *m)
{
	struct wf_dataplane *dp = m->dp;
	bool was_up = m->link;
	for (uint16_t q = 0; q < m->nrxq; q++)
		__atomic_store_n(&m->rxq[q]->up, 0, __ATOMIC_RELEASE);
	for (uint16_t w = 0; w < m->ntx; w++)
		__atomic_store_n(&m->txq[w]->up, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&m->link, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&dp->link_up[m->port], 0, __ATOMIC_RELAXED);
	if (was_up)
		/* No worker reads a ring or a region after this. */
		rte_rcu_qsbr_synchronize(dp->qs, RTE_QSBR_THRID_INVALID);
	/* Sleeping queues wait on the rings' eventfds, about to be closed: woken,
	 * they find no peer and sleep again with nothing to wait on. */
	for (uint16_t q = 0; q < m->nrxq; q++) {
		wf_rxq_unwatch(dp, &m->rxq[q]->b);
		if (m->rxq[q]->b.asleep)
			wf_rxq_wake(dp, &m->rxq[q]->b);
	}
	for (uint16_t i = 0; i < WF_MEMIF_MAX_REGIONS; i++) {
		if (m->regions[i].base != NULL)
			munmap(m->regions[i].base, m->regions[i].size);
		m->regions[i].base = NULL;
		m->regions[i].size = 0;
		if (m->region_fd[i] >= 0)
			close(m->region_fd[i]);
		m->region_fd[i] = -1;
	}
	m->n_regions = 0;
	for (uint16_t i = 0; i < WF_MEMIF_MAX_RINGS; i++) {
		struct wf_memif_ringdef *d[2] = { &m->c2s_def[i], &m->s2c_def[i] };
		for (int k = 0; k < 2; k++) {
			if (d[k]->set && d[k]->fd >= 0)
				close(d[k]->fd);
			memset(d[k], 0, sizeof(*d[k]));
			d[k]->fd = -1;
		}
		memset(&m->c2s[i], 0, sizeof(m->c2s[i]));
		memset(&m->s2c[i], 0, sizeof(m->s2c[i]));
		m->c2s[i].int_fd = m->s2c[i].int_fd = -1;
	}
	m->n_c2s = m->n_s2c = 0;
	for (uint16_t q = 0; q < m->nrxq; q++)
		m->rxq[q]->fault = WF_MEMIF_OK;
	for (uint16_t w = 0; w < m->ntx; w++)
		m->txq[w]->fault = WF_MEMIF_OK;
	m->peer_name[0] = '\0';
}

/* End the interface's connection: tell the peer why (when there is a reason), count it. */
static void
wf_memif_disconnect(struct wf_memif *m, enum wf_memif_event ev, const char *reason)
{
	struct wf_memif_conn *c = m->conn;
	if (c != NULL) {
		if (reason != NULL && c->fd >= 0)
			wf_memif_send_disconnect(c->fd, reason);
		m->conn = NULL;
		wf_memif_conn_close(m->dp, c);
	}
	wf_memif_release(m);
	m->events[ev]++;
	if (reason != NULL)
		snprintf(m->last_reason, sizeof(m->last_reason), "%s", reason);
	if (m->client)
		m->retry_at = rte_rdtsc() + wf_ms_tsc(WF_MEMIF_RETRY_MS);
}

/* A connection not (yet) tied to an interface fails: counted on its socket. */
static void
wf_memif_refuse(struct wf_dataplane *dp, struct wf_memif_conn *c, enum wf_memif_event ev, const char *reason)
{
	if (c->itf != NULL && c->itf->conn == c) {
		wf_memif_disconnect(c->itf, ev, reason);
		return;
	}
	if (reason != NULL)
		wf_memif_send_disconnect(c->fd, reason);
	/* Counted on the interface it named, else on its socket. */
	if (c->itf != NULL)
		c->itf->events[ev]++;
	else if (c->l != NULL)
		c->l->events[ev]++;
	wf_memif_conn_close(dp, c);
}

/* ---- the server's handshake --------------------------------------------------------------- */

static struct wf_memif *
wf_memif_find(struct wf_memif_listener *l, uint32_t id)
{
	for (uint32_t i = 0; i < l->n_ifs; i++)
		if (l->ifs[i]->id == id)
			return l->ifs[i];
	return NULL;
}

static enum wf_memif_event
wf_memif_on_init(struct wf_memif_conn *c, const struct memif_msg *msg, const char **why)
{
	if (msg->init.version != MEMIF_VERSION) {
		*why = "Incompatible memif version";
		return WF_MEMIF_EV_BAD_VERSION;
	}
	struct wf_memif *m = wf_memif_find(c->l, msg->init.id);
	if (m == NULL || m->detaching) {
		*why = "ID not found";
		return WF_MEMIF_EV_NO_ID;
	}
	if (m->conn != NULL) {
		*why = "Already connected";
		c->itf = m; /* counted there; its connection is untouched */
		return WF_MEMIF_EV_BUSY;
	}
	if (msg->init.mode != (m->ip_mode ? MEMIF_MODE_IP : MEMIF_MODE_ETHERNET)) {
		*why = m->ip_mode ? "Only IP mode supported" : "Only ethernet mode supported";
		c->itf = m;
		return WF_MEMIF_EV_BAD_MODE;
	}
	if (m->secret[0] != '\0' &&
	    (msg->init.secret[0] == 0 || strncmp(m->secret, (const char *)msg->init.secret, MEMIF_SECRET_SZ) != 0)) {
		*why = msg->init.secret[0] == 0 ? "Secret required" : "Incorrect secret";
		c->itf = m;
		return WF_MEMIF_EV_BAD_SECRET;
	}
	c->itf = m;
	m->conn = c;
	memcpy(m->peer_name, msg->init.name, MEMIF_NAME_SZ);
	m->peer_name[MEMIF_NAME_SZ - 1] = '\0';
	c->state = WF_MS_INIT_OK;
	return WF_MEMIF_EV_MAX;
}

static enum wf_memif_event
wf_memif_on_region(struct wf_memif *m, const struct memif_msg *msg, int *fd, const char **why)
{
	if (*fd < 0) {
		*why = "Missing region fd";
		return WF_MEMIF_EV_BAD_REGION;
	}
	uint16_t idx = msg->add_region.index;
	uint64_t size = msg->add_region.size;
	if (idx != m->n_regions || idx >= WF_MEMIF_MAX_REGIONS) {
		*why = "Invalid region index";
		return WF_MEMIF_EV_BAD_REGION;
	}
	struct stat st;
	if (size == 0 || size > (1ull << 40) || fstat(*fd, &st) != 0 || (uint64_t)st.st_size < size) {
		*why = "Invalid region size";
		return WF_MEMIF_EV_BAD_REGION;
	}
	int seals = fcntl(*fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		*why = "Region must be sealed against shrinking";
		return WF_MEMIF_EV_BAD_REGION;
	}
	m->region_fd[idx] = *fd;
	m->regions[idx].size = size;
	m->n_regions++;
	*fd = -1; /* kept */
	return WF_MEMIF_EV_MAX;
}

static enum wf_memif_event
wf_memif_on_ring(struct wf_memif *m, const struct memif_msg *msg, int *fd, const char **why)
{
	if (*fd < 0) {
		*why = "Missing interrupt fd";
		return WF_MEMIF_EV_BAD_RING;
	}
	const bool c2s = (msg->add_ring.flags & MEMIF_RING_FLAG_C2S) != 0;
	const uint16_t idx = msg->add_ring.index;
	/* C2S rings are the ones Weft reads: at most its queues (HELLO said so). */
	const uint16_t max = c2s ? m->nrxq : WF_MEMIF_MAX_RINGS;
	struct wf_memif_ringdef *defs = c2s ? m->c2s_def : m->s2c_def;
	if (idx >= max || defs[idx].set || msg->add_ring.private_hdr_size != 0 ||
	    msg->add_ring.log2_ring_size == 0 || msg->add_ring.log2_ring_size > MEMIF_MAX_LOG2_RING ||
	    msg->add_ring.region >= WF_MEMIF_MAX_REGIONS) {
		*why = "Invalid ring";
		return WF_MEMIF_EV_BAD_RING;
	}
	defs[idx] = (struct wf_memif_ringdef){ .set = true, .fd = *fd, .region = msg->add_ring.region,
					       .offset = msg->add_ring.offset, .log2 = msg->add_ring.log2_ring_size };
	*fd = -1;
	return WF_MEMIF_EV_MAX;
}

/* Rings 0..n-1 given, no gaps; returns n. */
static uint16_t
wf_memif_count(const struct wf_memif_ringdef *defs)
{
	uint16_t n = 0;
	while (n < WF_MEMIF_MAX_RINGS && defs[n].set)
		n++;
	for (uint16_t i = n; i < WF_MEMIF_MAX_RINGS; i++)
		if (defs[i].set)
			return 0;
	return n;
}

/* Put the rings in the workers' hands: RX = the rings Weft reads, TX = the ones it fills. */
static void
wf_memif_go(struct wf_memif *m)
{
	struct wf_memif_ring *rx = m->client ? m->s2c : m->c2s, *tx = m->client ? m->c2s : m->s2c;
	uint16_t nrx = m->client ? m->n_s2c : m->n_c2s, ntx = m->client ? m->n_c2s : m->n_s2c;
	for (uint16_t q = 0; q < m->nrxq; q++) {
		m->rxq[q]->r = q < nrx ? &rx[q] : NULL;
		m->rxq[q]->fault = WF_MEMIF_OK;
	}
	for (uint16_t w = 0; w < m->ntx; w++) {
		tx[w % ntx].shared = m->ntx > ntx;
		rte_spinlock_init(&tx[w % ntx].lock);
		m->txq[w]->r = &tx[w % ntx];
		m->txq[w]->fault = WF_MEMIF_OK;
		m->txq[w]->tb.short_reason = 0;
	}
	for (uint16_t q = 0; q < m->nrxq; q++)
		if (m->rxq[q]->r != NULL) {
			m->rxq[q]->b.wake_eventfd = true;
			__atomic_store_n(&m->rxq[q]->up, 1, __ATOMIC_RELEASE);
			if (m->rxq[q]->b.asleep)
				wf_rxq_wake(m->dp, &m->rxq[q]->b); /* it slept without a peer */
		}
	for (uint16_t w = 0; w < m->ntx; w++)
		__atomic_store_n(&m->txq[w]->up, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&m->link, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&m->dp->link_up[m->port], 1, __ATOMIC_RELAXED);
	m->events[WF_MEMIF_EV_CONNECTED]++;
}

/* One ring from what the peer described, checked against the mapped regions. */
static bool
wf_memif_ring_init(struct wf_memif *m, struct wf_memif_ring *r, const struct wf_memif_ringdef *d, bool we_produce)
{
	if (d->region >= m->n_regions)
		return false;
	const struct wf_memif_region *reg = &m->regions[d->region];
	if ((uint64_t)d->offset + memif_ring_bytes(d->log2) > reg->size || (d->offset & 3) != 0)
		return false;
	struct memif_ring *ring = (struct memif_ring *)(reg->base + d->offset);
	if (ring->cookie != MEMIF_COOKIE)
		return false;
	memset(r, 0, sizeof(*r));
	r->ring = ring;
	r->mask = (uint16_t)((1u << d->log2) - 1);
	r->int_fd = d->fd;
	r->we_produce = we_produce;
	r->regions = m->regions;
	r->n_regions = m->n_regions;
	r->ip_mode = m->ip_mode;
	__atomic_store_n(&ring->head, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&ring->tail, 0, __ATOMIC_RELAXED);
	if (!we_produce)
		ring->flags = MEMIF_RING_FLAG_MASK_INT; /* Weft polls */
	return true;
}

static enum wf_memif_event
wf_memif_on_connect(struct wf_memif *m, const struct memif_msg *msg, const char **why)
{
	m->n_c2s = wf_memif_count(m->c2s_def);
	m->n_s2c = wf_memif_count(m->s2c_def);
	if (m->n_regions == 0 || m->n_c2s == 0 || m->n_s2c == 0) {
		*why = "Regions or rings missing";
		return m->n_regions == 0 ? WF_MEMIF_EV_BAD_REGION : WF_MEMIF_EV_BAD_RING;
	}
	for (uint16_t i = 0; i < m->n_regions; i++) {
		void *p = mmap(NULL, m->regions[i].size, PROT_READ | PROT_WRITE, MAP_SHARED, m->region_fd[i], 0);
		if (p == MAP_FAILED) {
			*why = "Region cannot be mapped";
			return WF_MEMIF_EV_BAD_REGION;
		}
		m->regions[i].base = p;
	}
	for (uint16_t i = 0; i < m->n_c2s; i++)
		if (!wf_memif_ring_init(m, &m->c2s[i], &m->c2s_def[i], false)) {
			*why = "Invalid ring (place or cookie)";
			return WF_MEMIF_EV_BAD_RING;
		}
	for (uint16_t i = 0; i < m->n_s2c; i++)
		if (!wf_memif_ring_init(m, &m->s2c[i], &m->s2c_def[i], true)) {
			*why = "Invalid ring (place or cookie)";
			return WF_MEMIF_EV_BAD_RING;
		}
	(void)msg;
	return WF_MEMIF_EV_MAX;
}

/* ---- the client's handshake --------------------------------------------------------------- */

/* Our region: rings (C2S first), then one buffer per slot. */
static int
wf_memif_client_region(struct wf_memif *m, uint8_t log2)
{
	const uint32_t n = 1u << log2;
	const uint64_t ring_bytes = memif_ring_bytes(log2);
	const uint64_t rings = (uint64_t)(m->n_c2s + m->n_s2c) * ring_bytes;
	const uint64_t bufs = (uint64_t)(m->n_c2s + m->n_s2c) * n * m->buf_size;
	const uint64_t size = rings + bufs;
	if (size > UINT32_MAX)
		return -EFBIG;
	int fd = memfd_create("weft_memif", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	m->region_fd[0] = fd;
	m->regions[0] = (struct wf_memif_region){ .base = base, .size = size };
	m->n_regions = 1;
	for (uint16_t t = 0; t < 2; t++) {
		uint16_t count = t == 0 ? m->n_c2s : m->n_s2c;
		for (uint16_t i = 0; i < count; i++) {
			uint16_t ri = (uint16_t)(i + (t == 0 ? 0 : m->n_c2s));
			struct memif_ring *ring = (struct memif_ring *)(base + (uint64_t)ri * ring_bytes);
			ring->cookie = MEMIF_COOKIE;
			ring->flags = 0;
			ring->head = ring->tail = 0;
			uint32_t own_off = (uint32_t)(rings + (uint64_t)ri * n * m->buf_size);
			for (uint32_t j = 0; j < n; j++)
				ring->desc[j] = (struct memif_desc){ .flags = 0, .region = 0, .length = m->buf_size,
								     .offset = own_off + j * m->buf_size };
			struct wf_memif_ringdef *d = t == 0 ? &m->c2s_def[i] : &m->s2c_def[i];
			*d = (struct wf_memif_ringdef){ .set = true, .fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
							.region = 0, .offset = (uint32_t)((uint64_t)ri * ring_bytes),
							.log2 = log2 };
			if (d->fd < 0)
				return -errno;
			struct wf_memif_ring *r = t == 0 ? &m->c2s[i] : &m->s2c[i];
			memset(r, 0, sizeof(*r));
			r->ring = ring;
			r->mask = (uint16_t)(n - 1);
			r->int_fd = d->fd;
			r->we_produce = t == 0;
			r->client = true;
			r->buf_size = m->buf_size;
			r->own_off = own_off;
			r->own_base = base + own_off;
			r->regions = m->regions;
			r->n_regions = 1;
			r->ip_mode = m->ip_mode;
		}
	}
	return 0;
}

/* The client's next message after an ACK: INIT, ADD_REGION, ADD_RINGs, CONNECT. */
static int
wf_memif_client_next(struct wf_memif *m, struct wf_memif_conn *c)
{
	struct memif_msg msg;
	memset(&msg, 0, sizeof(msg));
	int pass = -1;
	const uint32_t s = c->step++;
	const uint32_t rings = (uint32_t)m->n_c2s + m->n_s2c;
	if (s == 0) {
		msg.type = MEMIF_MSG_INIT;
		msg.init.version = MEMIF_VERSION;
		msg.init.id = m->id;
		msg.init.mode = m->ip_mode ? MEMIF_MODE_IP : MEMIF_MODE_ETHERNET;
		memcpy(msg.init.secret, m->secret, MEMIF_SECRET_SZ);
		snprintf((char *)msg.init.name, MEMIF_NAME_SZ, "weft");
	} else if (s == 1) {
		msg.type = MEMIF_MSG_ADD_REGION;
		msg.add_region.index = 0;
		msg.add_region.size = m->regions[0].size;
		pass = m->region_fd[0];
	} else if (s < 2 + rings) {
		uint32_t i = s - 2;
		bool c2s = i < m->n_c2s;
		const struct wf_memif_ringdef *d = c2s ? &m->c2s_def[i] : &m->s2c_def[i - m->n_c2s];
		msg.type = MEMIF_MSG_ADD_RING;
		msg.add_ring.flags = c2s ? MEMIF_RING_FLAG_C2S : 0;
		msg.add_ring.index = (uint16_t)(c2s ? i : i - m->n_c2s);
		msg.add_ring.region = 0;
		msg.add_ring.offset = d->offset;
		msg.add_ring.log2_ring_size = d->log2;
		pass = d->fd;
	} else {
		msg.type = MEMIF_MSG_CONNECT;
		snprintf((char *)msg.connect.if_name, MEMIF_NAME_SZ, "weft-%u", m->port);
	}
	return wf_memif_send(c->fd, &msg, pass);
}

static enum wf_memif_event
wf_memif_on_hello(struct wf_memif *m, const struct memif_msg *msg, const char **why)
{
	if (msg->hello.min_version > MEMIF_VERSION || msg->hello.max_version < MEMIF_VERSION) {
		*why = "Incompatible memif version";
		return WF_MEMIF_EV_BAD_VERSION;
	}
	/* HELLO gives the server's highest ring index and ring size. */
	uint32_t c2s = (uint32_t)msg->hello.max_c2s_ring + 1, s2c = (uint32_t)msg->hello.max_s2c_ring + 1;
	m->n_c2s = (uint16_t)RTE_MIN(RTE_MIN(c2s, (uint32_t)m->ntx), (uint32_t)WF_MEMIF_MAX_RINGS);
	m->n_s2c = (uint16_t)RTE_MIN(RTE_MIN(s2c, (uint32_t)m->nrxq), (uint32_t)WF_MEMIF_MAX_RINGS);
	uint8_t log2 = RTE_MIN(m->log2, msg->hello.max_log2_ring_size);
	if (log2 == 0) {
		*why = "Invalid ring size";
		return WF_MEMIF_EV_BAD_RING;
	}
	memcpy(m->peer_name, msg->hello.name, MEMIF_NAME_SZ);
	m->peer_name[MEMIF_NAME_SZ - 1] = '\0';
	int rc = wf_memif_client_region(m, log2);
	if (rc != 0) {
		snprintf(m->last_reason, sizeof(m->last_reason), "cannot create the shared memory: %s", strerror(-rc));
		*why = "Client could not create its shared memory";
		return WF_MEMIF_EV_BAD_REGION;
	}
	return WF_MEMIF_EV_MAX;
}

static void
wf_memif_client_connected(struct wf_memif *m)
{
	/* The server has reset the rings: ours now. Post every S2C buffer. */
	for (uint16_t i = 0; i < m->n_c2s; i++) {
		__atomic_store_n(&m->c2s[i].ring->head, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&m->c2s[i].ring->tail, 0, __ATOMIC_RELAXED);
		m->c2s[i].last = 0;
	}
	for (uint16_t i = 0; i < m->n_s2c; i++) {
		struct wf_memif_ring *r = &m->s2c[i];
		struct memif_ring *ring = r->ring;
		ring->flags = MEMIF_RING_FLAG_MASK_INT;
		__atomic_store_n(&ring->tail, 0, __ATOMIC_RELAXED);
		uint16_t n = (uint16_t)(r->mask + 1);
		for (uint16_t j = 0; j < n; j++)
			ring->desc[j] = (struct memif_desc){ .flags = 0, .region = 0, .length = r->buf_size,
							     .offset = r->own_off + (uint32_t)j * r->buf_size };
		r->last = 0;
		r->post = n;
		__atomic_store_n(&ring->head, n, __ATOMIC_RELEASE);
	}
	wf_memif_go(m);
}

/* ---- receiving ----------------------------------------------------------------------------- */

static void wf_memif_conn_event(struct wf_dataplane *dp, void *arg, uint32_t events);

/* One control message; returns false when the connection is gone. */
static bool
wf_memif_handle(struct wf_dataplane *dp, struct wf_memif_conn *c)
{
	uint8_t buf[MEMIF_MSG_SZ + 1];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	union {
		struct cmsghdr c;
		char b[CMSG_SPACE(sizeof(int) * 4)];
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl) };
	ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n < 0)
		mh.msg_controllen = 0; /* ECONNRESET and the like: no control data came, read none */
	/* Every fd that came along: kept only where a message needs it, closed otherwise. */
	int fds[4], nfd = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (nfd < 4)
				fds[nfd++] = fd;
			else
				close(fd);
		}
	}
	int fd = nfd == 1 ? fds[0] : -1;
	if (nfd > 1)
		for (int i = 0; i < nfd; i++)
			close(fds[i]);
	struct wf_memif *m = c->itf;
	enum wf_memif_event ev = WF_MEMIF_EV_MAX;
	const char *why = NULL;
	if (n <= 0) {
		/* EOF or error: the peer is gone. */
		if (fd >= 0)
			close(fd);
		if (m != NULL && m->conn == c)
			wf_memif_disconnect(m, c->state == WF_MS_CONNECTED ? WF_MEMIF_EV_PEER_CLOSED
								    : WF_MEMIF_EV_EARLY_CLOSE, NULL);
		else
			wf_memif_refuse(dp, c, WF_MEMIF_EV_EARLY_CLOSE, NULL);
		return false;
	}
	if (n != MEMIF_MSG_SZ || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		if (fd >= 0)
			close(fd);
		wf_memif_refuse(dp, c, WF_MEMIF_EV_BAD_SIZE, "Invalid message size");
		return false;
	}
	struct memif_msg msg;
	memcpy(&msg, buf, sizeof(msg));
	bool server = c->l != NULL;
	switch (msg.type) {
	case MEMIF_MSG_INIT:
		if (!server || c->state != WF_MS_HELLO_SENT) {
			ev = WF_MEMIF_EV_UNEXPECTED, why = "Unexpected message";
			break;
		}
		ev = wf_memif_on_init(c, &msg, &why);
		if (ev == WF_MEMIF_EV_MAX)
			wf_memif_send_simple(c->fd, MEMIF_MSG_ACK);
		break;
	case MEMIF_MSG_ADD_REGION:
	case MEMIF_MSG_ADD_RING:
		if (!server || c->state != WF_MS_INIT_OK) {
			ev = WF_MEMIF_EV_UNEXPECTED, why = "Unexpected message";
			break;
		}
		ev = msg.type == MEMIF_MSG_ADD_REGION ? wf_memif_on_region(m, &msg, &fd, &why)
						      : wf_memif_on_ring(m, &msg, &fd, &why);
		if (ev == WF_MEMIF_EV_MAX)
			wf_memif_send_simple(c->fd, MEMIF_MSG_ACK);
		break;
	case MEMIF_MSG_CONNECT:
		if (!server || c->state != WF_MS_INIT_OK) {
			ev = WF_MEMIF_EV_UNEXPECTED, why = "Unexpected message";
			break;
		}
		ev = wf_memif_on_connect(m, &msg, &why);
		if (ev == WF_MEMIF_EV_MAX) {
			struct memif_msg r;
			memset(&r, 0, sizeof(r));
			r.type = MEMIF_MSG_CONNECTED;
			snprintf((char *)r.connect.if_name, MEMIF_NAME_SZ, "weft-%u", m->port);
			c->state = WF_MS_CONNECTED;
			c->l->pending--;
			wf_memif_go(m);
			wf_memif_send(c->fd, &r, -1);
		}
		break;
	case MEMIF_MSG_HELLO:
		if (server || c->state != WF_MS_WAIT_HELLO) {
			ev = WF_MEMIF_EV_UNEXPECTED, why = "Unexpected message";
			break;
		}
		ev = wf_memif_on_hello(m, &msg, &why);
		if (ev == WF_MEMIF_EV_MAX) {
			c->state = WF_MS_WAIT_ACK;
			wf_memif_client_next(m, c);
		}
		break;
	case MEMIF_MSG_ACK:
		if (server || c->state != WF_MS_WAIT_ACK ||
		    c->step >= 2u + m->n_c2s + m->n_s2c + 1u) {
			ev = WF_MEMIF_EV_UNEXPECTED, why = "Unexpected message";
			break;
		}
		wf_memif_client_next(m, c);
		break;
	case MEMIF_MSG_CONNECTED:
		if (server || c->state != WF_MS_WAIT_ACK || c->step != 2u + m->n_c2s + m->n_s2c + 1u) {
			ev = WF_MEMIF_EV_UNEXPECTED, why = "Unexpected message";
			break;
		}
		c->state = WF_MS_CONNECTED;
		wf_memif_client_connected(m);
		break;
	case MEMIF_MSG_DISCONNECT:
		if (m != NULL && m->conn == c) {
			char reason[97];
			memcpy(reason, msg.disconnect.string, 96);
			reason[96] = '\0';
			for (char *p = reason; *p; p++)
				if (*p < 0x20 || *p > 0x7e)
					*p = '?'; /* a peer's text, printed later */
			wf_memif_disconnect(m, c->state == WF_MS_CONNECTED || server ? WF_MEMIF_EV_PEER_CLOSED
										     : WF_MEMIF_EV_REFUSED, NULL);
			snprintf(m->last_reason, sizeof(m->last_reason), "peer: %s", reason);
		} else {
			wf_memif_refuse(dp, c, WF_MEMIF_EV_EARLY_CLOSE, NULL);
		}
		if (fd >= 0)
			close(fd);
		return false;
	default:
		ev = WF_MEMIF_EV_BAD_TYPE, why = "Unknown message type";
		break;
	}
	if (fd >= 0)
		close(fd); /* an fd this message does not carry */
	if (ev != WF_MEMIF_EV_MAX) {
		wf_memif_refuse(dp, c, ev, why);
		return false;
	}
	return true;
}

static void
wf_memif_conn_event(struct wf_dataplane *dp, void *arg, uint32_t events)
{
	struct wf_memif_conn *c = arg;
	if (events & EPOLLIN) {
		/* One message per event: a flood is served fairly with the others. */
		wf_memif_handle(dp, c);
		return;
	}
	if (events & (EPOLLHUP | EPOLLERR)) {
		struct wf_memif *m = c->itf;
		if (m != NULL && m->conn == c)
			wf_memif_disconnect(m, c->state == WF_MS_CONNECTED ? WF_MEMIF_EV_PEER_CLOSED
									    : WF_MEMIF_EV_EARLY_CLOSE, NULL);
		else
			wf_memif_refuse(dp, c, WF_MEMIF_EV_EARLY_CLOSE, NULL);
	}
}

static void
wf_memif_accept(struct wf_dataplane *dp, void *arg, uint32_t events)
{
	(void)events;
	struct wf_memif_listener *l = arg;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (l->pending >= WF_MEMIF_MAX_PENDING) {
			l->events[WF_MEMIF_EV_FLOOD]++;
			close(fd);
			continue;
		}
		struct wf_memif_conn *c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->l = l;
		c->state = WF_MS_HELLO_SENT;
		c->deadline = rte_rdtsc() + wf_ms_tsc(WF_MEMIF_HANDSHAKE_MS);
		l->pending++;
		wf_memif_conn_link(dp, c);
		if (wf_ev_add(dp, fd, EPOLLIN, wf_memif_conn_event, c, &c->ev_id) != 0) {
			wf_memif_conn_close(dp, c);
			continue;
		}
		c->registered = true;
		struct memif_msg h;
		memset(&h, 0, sizeof(h));
		h.type = MEMIF_MSG_HELLO;
		snprintf((char *)h.hello.name, MEMIF_NAME_SZ, "weft");
		h.hello.min_version = h.hello.max_version = MEMIF_VERSION;
		h.hello.max_region = WF_MEMIF_MAX_REGIONS - 1;
		/* The rings Weft reads are its queues; any number of rings to fill. */
		uint16_t most_rx = 1;
		for (uint32_t k = 0; k < l->n_ifs; k++)
			most_rx = RTE_MAX(most_rx, l->ifs[k]->nrxq);
		h.hello.max_c2s_ring = (uint16_t)(most_rx - 1);
		h.hello.max_s2c_ring = WF_MEMIF_MAX_RINGS - 1;
		h.hello.max_log2_ring_size = MEMIF_MAX_LOG2_RING;
		if (wf_memif_send(fd, &h, -1) != 0)
			wf_memif_refuse(dp, c, WF_MEMIF_EV_EARLY_CLOSE, NULL);
	}
}

/* ---- the client's connection attempts ------------------------------------------------------- */

struct wf_memif_sock_req {
	const char *name;
	bool abstract, listen;
	int fd;
};

static socklen_t
wf_memif_addr(struct sockaddr_un *un, const char *name, bool abstract)
{
	memset(un, 0, sizeof(*un));
	un->sun_family = AF_UNIX;
	if (abstract) {
		/* A leading NUL and the name, no trailing NUL (as DPDK, VPP and libmemif). */
		size_t n = strnlen(name, sizeof(un->sun_path) - 1);
		memcpy(un->sun_path + 1, name, n);
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	}
	snprintf(un->sun_path, sizeof(un->sun_path), "%s", name);
	return (socklen_t)sizeof(*un);
}

/* A socket bound (listen) or connected to the name; runs in the interface's namespace. */
static int
wf_memif_sock_cb(void *arg)
{
	struct wf_memif_sock_req *r = arg;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un un;
	socklen_t len = wf_memif_addr(&un, r->name, r->abstract);
	int rc;
	if (r->listen)
		rc = bind(fd, (struct sockaddr *)&un, len) == 0 && listen(fd, 64) == 0 ? 0 : -errno;
	else
		rc = connect(fd, (struct sockaddr *)&un, len) == 0 ? 0 : -errno;
	if (rc != 0) {
		close(fd);
		return rc;
	}
	r->fd = fd;
	return 0;
}

static void
wf_memif_client_try(struct wf_dataplane *dp, struct wf_memif *m)
{
	struct wf_memif_sock_req r = { .name = m->socket, .abstract = m->abstract, .listen = false, .fd = -1 };
	int rc = wf_in_netns(m->netns[0] ? m->netns : NULL, wf_memif_sock_cb, &r);
	m->retry_at = rte_rdtsc() + wf_ms_tsc(WF_MEMIF_RETRY_MS);
	if (rc != 0) {
		snprintf(m->last_reason, sizeof(m->last_reason), "connect: %s", strerror(-rc));
		return;
	}
	struct wf_memif_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(r.fd);
		return;
	}
	c->fd = r.fd;
	c->itf = m;
	c->state = WF_MS_WAIT_HELLO;
	c->deadline = rte_rdtsc() + wf_ms_tsc(WF_MEMIF_HANDSHAKE_MS);
	wf_memif_conn_link(dp, c);
	if (wf_ev_add(dp, r.fd, EPOLLIN, wf_memif_conn_event, c, &c->ev_id) != 0) {
		wf_memif_conn_close(dp, c);
		return;
	}
	c->registered = true;
	m->conn = c;
}

/* ---- every 100 ms on the events thread ------------------------------------------------------- */

static const enum wf_memif_event wf_fault_event[] = {
	[WF_MEMIF_BAD_INDEX] = WF_MEMIF_EV_BAD_INDEX,
	[WF_MEMIF_BAD_DESC] = WF_MEMIF_EV_BAD_DESC,
	[WF_MEMIF_BAD_CHAIN] = WF_MEMIF_EV_BAD_CHAIN,
};
static const char *const wf_fault_text[] = {
	[WF_MEMIF_BAD_INDEX] = "Ring index out of range",
	[WF_MEMIF_BAD_DESC] = "Descriptor outside its region",
	[WF_MEMIF_BAD_CHAIN] = "Frame chained over too many buffers",
};

static void
wf_memif_tick(struct wf_dataplane *dp, void *arg, uint32_t events)
{
	(void)arg;
	(void)events;
	const uint64_t now = rte_rdtsc();
	/* Handshakes that took too long. */
	for (struct wf_memif_conn *c = dp->memif_conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->state != WF_MS_CONNECTED && now > c->deadline) {
			if (c->itf != NULL && c->itf->conn == c)
				wf_memif_disconnect(c->itf, WF_MEMIF_EV_TIMEOUT, "Handshake timeout");
			else
				wf_memif_refuse(dp, c, WF_MEMIF_EV_TIMEOUT, "Handshake timeout");
		}
	}
	for (uint32_t i = 0; i < dp->n_memifs; i++) {
		struct wf_memif *m = dp->memifs[i];
		/* Faults the workers found in the data path. */
		uint32_t f = WF_MEMIF_OK;
		for (uint16_t q = 0; q < m->nrxq && f == WF_MEMIF_OK; q++)
			f = __atomic_load_n(&m->rxq[q]->fault, __ATOMIC_ACQUIRE);
		for (uint16_t w = 0; w < m->ntx && f == WF_MEMIF_OK; w++)
			f = __atomic_load_n(&m->txq[w]->fault, __ATOMIC_ACQUIRE);
		if (f != WF_MEMIF_OK && m->conn != NULL)
			wf_memif_disconnect(m, wf_fault_event[f], wf_fault_text[f]);
		else if (f != WF_MEMIF_OK)
			wf_memif_release(m);
		if (m->client && m->conn == NULL && !m->detaching && now >= m->retry_at)
			wf_memif_client_try(dp, m);
	}
}

/* ---- listeners --------------------------------------------------------------------------------- */

static struct wf_memif_listener *
wf_memif_listener_get(struct wf_dataplane *dp, struct wf_memif *m, uint64_t ns_dev, uint64_t ns_ino, int *err)
{
	for (struct wf_memif_listener *l = dp->memif_listeners; l != NULL; l = l->next)
		if (l->abstract == m->abstract && l->ns_dev == ns_dev && l->ns_ino == ns_ino &&
		    strcmp(l->name, m->socket) == 0)
			return l;
	struct wf_memif_listener *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		*err = -ENOMEM;
		return NULL;
	}
	snprintf(l->name, sizeof(l->name), "%s", m->socket);
	snprintf(l->netns, sizeof(l->netns), "%s", m->netns);
	l->abstract = m->abstract;
	l->ns_dev = ns_dev;
	l->ns_ino = ns_ino;
	struct wf_memif_sock_req r = { .name = m->socket, .abstract = m->abstract, .listen = true, .fd = -1 };
	int rc = wf_in_netns(m->netns[0] ? m->netns : NULL, wf_memif_sock_cb, &r);
	if (rc != 0) {
		wf_set_error("memif socket %s%s: %s%s", m->abstract ? "@" : "", m->socket, strerror(-rc),
			     rc == -EADDRINUSE ? " (another process serves it)" : "");
		free(l);
		*err = rc;
		return NULL;
	}
	l->fd = r.fd;
	if ((rc = wf_ev_add(dp, l->fd, EPOLLIN, wf_memif_accept, l, &l->ev_id)) != 0) {
		close(l->fd);
		if (!l->abstract)
			unlink(l->name);
		free(l);
		*err = rc;
		return NULL;
	}
	l->next = dp->memif_listeners;
	dp->memif_listeners = l;
	return l;
}

static void
wf_memif_listener_put(struct wf_dataplane *dp, struct wf_memif_listener *l, struct wf_memif *m)
{
	for (uint32_t i = 0; i < l->n_ifs; i++)
		if (l->ifs[i] == m)
			l->ifs[i] = l->ifs[--l->n_ifs];
	if (l->n_ifs > 0)
		return;
	/* Its unfinished connections go with it. */
	for (struct wf_memif_conn *c = dp->memif_conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->l == l)
			wf_memif_refuse(dp, c, WF_MEMIF_EV_EARLY_CLOSE, "Interface removed");
	}
	wf_ev_del(dp, l->ev_id);
	close(l->fd);
	if (!l->abstract)
		unlink(l->name);
	for (struct wf_memif_listener **pp = &dp->memif_listeners; *pp != NULL; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	free(l->ifs);
	free(l);
}

/* ---- the port ----------------------------------------------------------------------------------- */

static int
wf_memif_link(struct wf_dataplane *dp, struct wf_port_ctl *pc)
{
	(void)dp;
	const struct wf_memif *m = pc->priv;
	return __atomic_load_n(&m->link, __ATOMIC_RELAXED);
}

static void
wf_memif_info(const struct wf_dataplane *dp, const struct wf_port_ctl *pc, struct wf_port_info *i)
{
	(void)dp;
	const struct wf_memif *m = pc->priv;
	if (m->link)
		snprintf(i->note, sizeof(i->note), "connected to '%s' (%u rx, %u tx rings)", m->peer_name,
			 m->client ? m->n_s2c : m->n_c2s, m->client ? m->n_c2s : m->n_s2c);
	else
		snprintf(i->note, sizeof(i->note), "%s%s%s", m->client ? "connecting" : "waiting for a peer",
			 m->last_reason[0] ? "; last: " : "", m->last_reason);
}

static void wf_memif_free(struct wf_dataplane *dp, struct wf_memif *m);

static void
wf_memif_close(struct wf_dataplane *dp, struct wf_port_ctl *pc)
{
	wf_memif_free(dp, pc->priv);
	pc->priv = NULL;
}

static const struct wf_port_ops wf_memif_ops = {
	.name = "memif",
	.link = wf_memif_link,
	.info = wf_memif_info,
	.close = wf_memif_close,
};

static void
wf_memif_free(struct wf_dataplane *dp, struct wf_memif *m)
{
	wf_ev_lock(dp);
	m->detaching = true;
	if (m->conn != NULL)
		wf_memif_disconnect(m, WF_MEMIF_EV_PEER_CLOSED, "Interface removed");
	else
		wf_memif_release(m);
	if (m->l != NULL)
		wf_memif_listener_put(dp, m->l, m);
	for (uint32_t i = 0; i < dp->n_memifs; i++)
		if (dp->memifs[i] == m)
			dp->memifs[i] = dp->memifs[--dp->n_memifs];
	wf_ev_unlock(dp);
	for (uint16_t q = 0; q < WF_MAX_RXQ_PER_PORT; q++)
		rte_free(m->rxq[q]);
	for (uint16_t w = 0; w < WF_MAX_WORKERS; w++)
		rte_free(m->txq[w]);
	free(m);
}

int
wf_memif_attach(wf_dataplane_t *dp, const struct wf_memif_cfg *cfg, uint16_t *port_id)
{
	if (dp == NULL || cfg == NULL || cfg->socket == NULL || port_id == NULL)
		return -EINVAL;
	size_t name_max = cfg->abstract ? 107 : 108;
	if (cfg->socket[0] == '\0' || strlen(cfg->socket) >= name_max) {
		wf_set_error("memif socket name is empty or longer than %zu characters", name_max - 1);
		return -EINVAL;
	}
	if (cfg->secret != NULL && strlen(cfg->secret) >= MEMIF_SECRET_SZ) {
		wf_set_error("memif secret longer than %d characters", MEMIF_SECRET_SZ - 1);
		return -EINVAL;
	}
	if (cfg->netns != NULL && strlen(cfg->netns) >= WF_NETNS_LEN)
		return -ENAMETOOLONG;
	uint16_t nrxq = cfg->rx_queues ? cfg->rx_queues : 1;
	if (nrxq > WF_MAX_RXQ_PER_PORT) {
		wf_set_error("memif: at most %d RX queues", WF_MAX_RXQ_PER_PORT);
		return -EINVAL;
	}
	uint8_t log2 = cfg->log2_ring ? cfg->log2_ring : (cfg->client ? 10 : MEMIF_MAX_LOG2_RING);
	if (log2 > MEMIF_MAX_LOG2_RING) {
		wf_set_error("memif ring size 2^%u is above 2^%d", log2, MEMIF_MAX_LOG2_RING);
		return -EINVAL;
	}
	uint16_t port;
	int rc = wf_port_alloc(dp, &port);
	if (rc != 0)
		return rc;
	struct wf_memif *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->dp = dp;
	m->port = port;
	m->client = cfg->client != 0;
	m->abstract = cfg->abstract != 0;
	m->ip_mode = cfg->ip_mode != 0;
	m->id = cfg->id;
	m->nrxq = nrxq;
	m->ntx = (uint16_t)dp->n_pollers;
	m->log2 = log2;
	m->buf_size = cfg->buffer_size ? cfg->buffer_size : 2048;
	snprintf(m->secret, sizeof(m->secret), "%s", cfg->secret ? cfg->secret : "");
	snprintf(m->socket, sizeof(m->socket), "%s", cfg->socket);
	snprintf(m->netns, sizeof(m->netns), "%s", cfg->netns ? cfg->netns : "");
	for (uint16_t i = 0; i < WF_MEMIF_MAX_REGIONS; i++)
		m->region_fd[i] = -1;
	for (uint16_t i = 0; i < WF_MEMIF_MAX_RINGS; i++) {
		m->c2s_def[i].fd = m->s2c_def[i].fd = -1;
		m->c2s[i].int_fd = m->s2c[i].int_fd = -1;
	}
	for (uint16_t q = 0; q < nrxq; q++) {
		m->rxq[q] = rte_zmalloc("weft_memif_rxq", sizeof(struct wf_memif_rxq), RTE_CACHE_LINE_SIZE);
		if (m->rxq[q] == NULL)
			goto nomem;
		m->rxq[q]->pool = dp->pool;
		m->rxq[q]->b.watched_fd = -1;
		m->rxq[q]->b.arm = wf_memif_arm_fn;
		m->rxq[q]->b.disarm = wf_memif_disarm_fn;
	}
	for (uint16_t w = 0; w < m->ntx; w++) {
		m->txq[w] = rte_zmalloc("weft_memif_txq", sizeof(struct wf_memif_txq), RTE_CACHE_LINE_SIZE);
		if (m->txq[w] == NULL)
			goto nomem;
	}
	const char *ns = m->netns[0] ? m->netns : "/proc/self/ns/net";
	struct stat st;
	if (stat(ns, &st) != 0) {
		rc = -errno;
		wf_set_error("network namespace %s: %s", ns, strerror(-rc));
		goto fail;
	}

	wf_ev_lock(dp);
	if (dp->n_memifs == dp->cap_memifs) {
		uint32_t cap = dp->cap_memifs ? dp->cap_memifs * 2 : 64;
		struct wf_memif **n = realloc(dp->memifs, cap * sizeof(*n));
		if (n == NULL) {
			wf_ev_unlock(dp);
			goto nomem;
		}
		dp->memifs = n;
		dp->cap_memifs = cap;
	}
	if (!dp->memif_tick) {
		wf_ev_tick_add(dp, wf_memif_tick, NULL);
		dp->memif_tick = true;
	}
	if (!m->client) {
		struct wf_memif_listener *l = wf_memif_listener_get(dp, m, st.st_dev, st.st_ino, &rc);
		if (l == NULL) {
			wf_ev_unlock(dp);
			goto fail;
		}
		if (wf_memif_find(l, m->id) != NULL) {
			wf_set_error("memif socket %s already serves id %u", m->socket, m->id);
			rc = -EEXIST;
			if (l->n_ifs == 0)
				wf_memif_listener_put(dp, l, m);
			wf_ev_unlock(dp);
			goto fail;
		}
		if (l->n_ifs == l->cap_ifs) {
			uint32_t cap = l->cap_ifs ? l->cap_ifs * 2 : 4;
			struct wf_memif **n = realloc(l->ifs, cap * sizeof(*n));
			if (n == NULL) {
				if (l->n_ifs == 0)
					wf_memif_listener_put(dp, l, m);
				wf_ev_unlock(dp);
				goto nomem;
			}
			l->ifs = n;
			l->cap_ifs = cap;
		}
		l->ifs[l->n_ifs++] = m;
		m->l = l;
	}
	dp->memifs[dp->n_memifs++] = m;
	wf_ev_unlock(dp);

	struct wf_port_ctl *pc = &dp->ports[port];
	pc->ops = &wf_memif_ops;
	pc->priv = m;
	pc->eth = WF_PORT_NONE;
	pc->nb_rxq = nrxq;
	pc->nb_txq = m->ntx;
	pc->rx = wf_memif_rx_fn;
	for (uint16_t q = 0; q < nrxq; q++)
		pc->rxq[q] = m->rxq[q];
	snprintf(pc->devname, sizeof(pc->devname), "memif:%s%s/%u", m->abstract ? "@" : "", m->socket, m->id);
	static const uint8_t zero[6];
	if (memcmp(cfg->mac, zero, 6) != 0) {
		memcpy(pc->mac, cfg->mac, 6);
	} else {
		/* Locally administered, from the port id and the process. */
		uint32_t salt = (uint32_t)getpid();
		uint8_t mac[6] = { 0x02, 0xfe, (uint8_t)(salt >> 8), (uint8_t)salt, (uint8_t)(port >> 8), (uint8_t)port };
		memcpy(pc->mac, mac, 6);
	}
	pc->mtu = cfg->mtu; /* 0: no MTU of its own (memif frames can be up to 64 KiB, chained) */
	struct wf_port_fp *fp = &dp->fp[port];
	memset(fp, 0, sizeof(*fp));
	fp->eth = WF_PORT_NONE;
	fp->tx = wf_memif_tx_fn;
	fp->caps = 0;
	fp->max_frame = cfg->mtu ? (uint32_t)cfg->mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN : 0;
	for (uint16_t w = 0; w < m->ntx; w++)
		fp->txq[w] = m->txq[w];
	rc = wf_port_publish_new(dp, port);
	if (rc != 0) {
		pc->ops = NULL;
		pc->priv = NULL;
		memset(fp, 0, sizeof(*fp));
		fp->eth = WF_PORT_NONE;
		wf_memif_free(dp, m);
		return rc;
	}
	*port_id = port;
	return 0;
nomem:
	rc = -ENOMEM;
fail:
	for (uint16_t q = 0; q < WF_MAX_RXQ_PER_PORT; q++)
		rte_free(m->rxq[q]);
	for (uint16_t w = 0; w < WF_MAX_WORKERS; w++)
		rte_free(m->txq[w]);
	free(m);
	return rc;
}

int
wf_memif_stats(wf_dataplane_t *dp, uint16_t port, struct wf_memif_stats *s)
{
	if (dp == NULL || s == NULL || port >= WF_MAX_PORTS)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	struct wf_port_ctl *pc = &dp->ports[port];
	if (!pc->attached || pc->ops != &wf_memif_ops)
		return -ENODEV;
	wf_ev_lock(dp);
	const struct wf_memif *m = pc->priv;
	s->connected = m->link;
	s->rx_rings = m->client ? m->n_s2c : m->n_c2s;
	s->tx_rings = m->client ? m->n_c2s : m->n_s2c;
	memcpy(s->events, m->events, sizeof(s->events));
	if (m->l != NULL)
		memcpy(s->socket_events, m->l->events, sizeof(s->socket_events));
	snprintf(s->peer_name, sizeof(s->peer_name), "%s", m->peer_name);
	snprintf(s->last_reason, sizeof(s->last_reason), "%s", m->last_reason);
	wf_ev_unlock(dp);
	return 0;
}
