/*
 * common.h: what every Weft fuzz harness shares. EAL once per process
 * (--no-huge, no PCI, a file prefix of its own), a dataplane with no worker
 * lcores whose worker 0 is polled on the calling thread (the code a worker
 * lcore runs), ring test ports, and the checks made after every input:
 *
 *  - every mbuf accounted for: the dataplane's pool and the input pool are
 *    back to where they were once the TX rings are drained;
 *  - counters add up: what the ports received is what they sent, dropped
 *    (by reason) or handed to the control plane, with the stage's fan-out;
 *  - every transmitted mbuf passes rte_mbuf_check(), carries no offload the
 *    ring port cannot take, and fits the port's largest frame.
 *
 * Input frames come from a pool of their own, and the tailroom of each of
 * their segments is poisoned for ASan: DPDK's memory is not ASan's, so
 * without this a read past a frame's end (or past its first segment) inside
 * the mbuf would go unnoticed. Nothing but the harness allocates from that
 * pool, so no legitimate write ever lands in a poisoned tailroom.
 */
#ifndef WEFT_FUZZ_COMMON_H
#define WEFT_FUZZ_COMMON_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sanitizer/asan_interface.h>
#include <rte_ether.h>

#include "wf_internal.h"
#include "weft_test.h"

#define FZ_MAX_PORTS 24
#ifndef FZ_MAX_FRAMES
#define FZ_MAX_FRAMES 8
#endif
#define FZ_SEG_ROOM 2048 /* data bytes per input segment: longer frames are chains */

static wf_dataplane_t *fz_dp;
static struct rte_mempool *fz_in;
static uint16_t fz_port[FZ_MAX_PORTS];
static const char *fz_name[FZ_MAX_PORTS];
static uint32_t fz_nports;
static int fz_verbose;

static void __attribute__((noreturn, format(printf, 1, 2)))
fz_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "\nWEFT-FUZZ INVARIANT: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}
#define FZ_CHECK(c, ...) do { if (!(c)) fz_fail(__VA_ARGS__); } while (0)
#define FZ_OK(call) do { int rc_ = (call); if (rc_ != 0) { char e_[256]; wf_last_error(e_, sizeof(e_)); \
	fz_fail("%s: %d (%s)", #call, rc_, e_); } } while (0)

/*
 * Every mbuf pool of the process (EAL's --mbuf-pool-ops-name) goes through
 * these mempool ops: DPDK's ring ops, with the data buffer of an mbuf
 * poisoned for ASan while it is free and made addressable when it is
 * allocated. A stage that reads or writes a frame's bytes after freeing it
 * (a reference count off by one between clones, a frame both sent and
 * freed) is then reported where it happens.
 */
static struct rte_mempool_ops fz_ops;
static uint64_t fz_dequeue_failures;
static const struct rte_mempool_ops *fz_ring_ops;
static bool fz_poison_free = true;

static void
fz_buf(struct rte_mempool *mp, void *obj, void **buf, size_t *len)
{
	*buf = (uint8_t *)obj + sizeof(struct rte_mbuf) + rte_pktmbuf_priv_size(mp);
	*len = rte_pktmbuf_data_room_size(mp);
}

static int
fz_ops_enqueue(struct rte_mempool *mp, void *const *objs, unsigned n)
{
	for (unsigned i = 0; i < n && fz_poison_free; i++) {
		void *b;
		size_t l;
		fz_buf(mp, objs[i], &b, &l);
		ASAN_POISON_MEMORY_REGION(b, l);
	}
	return fz_ring_ops->enqueue(mp, objs, n);
}

static int
fz_ops_dequeue(struct rte_mempool *mp, void **objs, unsigned n)
{
	int rc = fz_ring_ops->dequeue(mp, objs, n);
	if (rc != 0)
		fz_dequeue_failures++; /* a pool ran dry (fuzz_memif's model does not follow the pool) */
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		void *b;
		size_t l;
		fz_buf(mp, objs[i], &b, &l);
		ASAN_UNPOISON_MEMORY_REGION(b, l);
	}
	return rc;
}

static void
fz_register_ops(void)
{
	for (uint32_t i = 0; i < rte_mempool_ops_table.num_ops; i++)
		if (strcmp(rte_mempool_ops_table.ops[i].name, "ring_mp_mc") == 0)
			fz_ring_ops = &rte_mempool_ops_table.ops[i];
	FZ_CHECK(fz_ring_ops != NULL, "no ring_mp_mc mempool ops");
	fz_ops = *fz_ring_ops;
	snprintf(fz_ops.name, sizeof(fz_ops.name), "fz_asan");
	fz_ops.enqueue = fz_ops_enqueue;
	fz_ops.dequeue = fz_ops_dequeue;
	fz_ops.dequeue_contig_blocks = NULL;
	FZ_CHECK(rte_mempool_register_ops(&fz_ops) >= 0, "cannot register mempool ops");
}

/* At exit: the dataplane's own teardown, so that LeakSanitizer's report at
 * exit is about Weft's teardown, not about a dataplane left standing. */
static void
fz_unpoison_obj(struct rte_mempool *mp, void *arg, void *obj, unsigned idx)
{
	(void)arg, (void)idx;
	void *b;
	size_t l;
	fz_buf(mp, obj, &b, &l);
	ASAN_UNPOISON_MEMORY_REGION(b, l);
}

static struct rte_mbuf *fz_frame(const uint8_t *d, uint32_t len, uint32_t first);

static void
fz_teardown(void)
{
	/* The pools' memory is cleared when it goes: nothing poisoned then. */
	fz_poison_free = false;
	rte_mempool_obj_iter(fz_dp->pool, fz_unpoison_obj, NULL);
	rte_mempool_obj_iter(fz_in, fz_unpoison_obj, NULL);
	wf_dp_destroy(fz_dp);
	rte_mempool_free(fz_in);
	wf_eal_cleanup();
}

static void
fz_eal(const char *target)
{
	static char prefix[64];
	snprintf(prefix, sizeof(prefix), "weft-fuzz-%s-%d", target, (int)getpid());
	const char *argv[] = { target, "-l", "0", "--no-huge", "--no-pci", "-m", "256", "--no-shconf",
			       "--file-prefix", prefix, "--log-level", "lib.eal:error", "--log-level", "*:error",
			       "--mbuf-pool-ops-name", "fz_asan" };
	FZ_OK(wf_eal_init((int)RTE_DIM(argv), argv));
	fz_register_ops();
	fz_verbose = getenv("WEFT_FUZZ_VERBOSE") != NULL;
	struct wf_dp_config c;
	memset(&c, 0, sizeof(c));
	c.n_workers = 0; /* worker 0 is polled here with wf_dp_poll_once */
	c.mbufs = 4095;
	c.mbuf_cache = 0; /* exact in-use counts */
	c.burst = 32;
	c.max_xconnects = 64;
	FZ_OK(wf_dp_create(&c, &fz_dp));
	FZ_CHECK(strcmp(rte_mempool_get_ops(fz_dp->pool->ops_index)->name, "fz_asan") == 0,
		 "the dataplane's pool does not use the poisoning mempool ops");
	fz_in = rte_pktmbuf_pool_create("fz_in", 1023, 0, 0, RTE_PKTMBUF_HEADROOM + FZ_SEG_ROOM,
					(int)rte_socket_id());
	FZ_CHECK(fz_in != NULL, "input pool");
	atexit(fz_teardown);
	/* WEFT_FUZZ_SELFTEST=uaf|tail: the poisoning must catch these (run.sh checks it does). */
	const char *st = getenv("WEFT_FUZZ_SELFTEST");
	if (st != NULL) {
		static const uint8_t one[64];
		struct rte_mbuf *m = fz_frame(one, sizeof(one), 0);
		volatile uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
		if (strcmp(st, "tail") == 0)
			(void)p[sizeof(one)]; /* one byte past the frame */
		rte_pktmbuf_free(m);
		if (strcmp(st, "uaf") == 0)
			(void)p[0]; /* the frame after it was freed */
		fprintf(stderr, "WEFT-FUZZ SELFTEST %s: not caught\n", st);
		exit(3);
	}
}

static uint16_t
fz_add_port(const char *name)
{
	uint16_t p;
	FZ_OK(wf_testport_create(fz_dp, name, &p));
	fz_port[fz_nports] = p;
	fz_name[fz_nports++] = name;
	return p;
}

static __attribute__((unused)) uint32_t
fz_port_index(uint16_t port)
{
	for (uint32_t i = 0; i < fz_nports; i++)
		if (fz_port[i] == port)
			return i;
	fz_fail("port %u is not the harness's", port);
}

/* One segment from the input pool: whole buffer addressable while written. */
static struct rte_mbuf *
fz_seg(void)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(fz_in);
	FZ_CHECK(m != NULL, "input pool exhausted: frames leaked");
	ASAN_UNPOISON_MEMORY_REGION(m->buf_addr, m->buf_len);
	return m;
}

static void
fz_poison_tail(struct rte_mbuf *m)
{
	for (struct rte_mbuf *s = m; s != NULL; s = s->next) {
		uint8_t *end = rte_pktmbuf_mtod_offset(s, uint8_t *, s->data_len);
		ASAN_POISON_MEMORY_REGION(end, (uint8_t *)s->buf_addr + s->buf_len - end);
	}
}

/*
 * A frame as an mbuf chain: the first segment holds `first` bytes (0: as
 * many as fit), the others FZ_SEG_ROOM each. A short first segment is what
 * a memif peer's descriptors can make. Tailrooms poisoned.
 */
static struct rte_mbuf *
fz_frame(const uint8_t *d, uint32_t len, uint32_t first)
{
	struct rte_mbuf *head = fz_seg(), *tail = head;
	uint32_t room = first != 0 && first < FZ_SEG_ROOM ? first : FZ_SEG_ROOM;
	for (uint32_t off = 0;;) {
		uint32_t k = len - off < room ? len - off : room;
		memcpy(rte_pktmbuf_mtod(tail, uint8_t *), d + off, k);
		tail->data_len = (uint16_t)k;
		off += k;
		if (off == len)
			break;
		struct rte_mbuf *n = fz_seg();
		tail->next = n;
		tail = n;
		head->nb_segs++;
		room = FZ_SEG_ROOM;
	}
	head->pkt_len = len;
	fz_poison_tail(head);
	return head;
}

static void
fz_inject(uint16_t port, struct rte_mbuf *m)
{
	m->port = port;
	FZ_CHECK(rte_ring_enqueue(fz_dp->ports[port].test_rx, m) == 0, "RX ring full");
}

/* Poll worker 0 until every RX ring is empty. */
static void
fz_poll(void)
{
	for (int i = 0; i < 64; i++) {
		bool more = false;
		wf_dp_poll_once(fz_dp, 0);
		for (uint32_t p = 0; p < fz_nports; p++)
			more |= rte_ring_count(fz_dp->ports[fz_port[p]].test_rx) != 0;
		if (!more)
			return;
	}
	fz_fail("RX rings never drained");
}

/* ---- counters -------------------------------------------------------------- */

struct fz_snap {
	uint64_t rx[FZ_MAX_PORTS], tx[FZ_MAX_PORTS], ifdrops[FZ_MAX_PORTS];
	uint64_t wdrops[WF_DROP_MAX];
	uint64_t rx_sum, tx_sum, drops; /* drops: the worker's, by reason, summed */
};

static void
fz_snap(struct fz_snap *s)
{
	memset(s, 0, sizeof(*s));
	for (uint32_t i = 0; i < fz_nports; i++) {
		struct wf_if_stats st;
		FZ_OK(wf_if_stats(fz_dp, fz_port[i], &st));
		s->rx[i] = st.rx_packets;
		s->tx[i] = st.tx_packets;
		for (uint32_t r = 0; r < WF_DROP_MAX; r++)
			s->ifdrops[i] += st.drops[r];
		s->rx_sum += st.rx_packets;
		s->tx_sum += st.tx_packets;
	}
	struct wf_worker_stats ws;
	FZ_OK(wf_worker_stats(fz_dp, 0, &ws));
	for (uint32_t r = 0; r < WF_DROP_MAX; r++) {
		s->wdrops[r] = ws.drops[r];
		s->drops += ws.drops[r];
	}
}

static void
fz_print_delta(const struct fz_snap *a, const struct fz_snap *b)
{
	for (uint32_t i = 0; i < fz_nports; i++)
		if (b->rx[i] != a->rx[i] || b->tx[i] != a->tx[i] || b->ifdrops[i] != a->ifdrops[i])
			fprintf(stderr, "  %-6s rx +%lu tx +%lu drops +%lu\n", fz_name[i],
				(unsigned long)(b->rx[i] - a->rx[i]), (unsigned long)(b->tx[i] - a->tx[i]),
				(unsigned long)(b->ifdrops[i] - a->ifdrops[i]));
	for (uint32_t r = 0; r < WF_DROP_MAX; r++)
		if (b->wdrops[r] != a->wdrops[r])
			fprintf(stderr, "  drop %s +%lu\n", wf_drop_reason_name(r),
				(unsigned long)(b->wdrops[r] - a->wdrops[r]));
}

/* ---- draining what was sent ----------------------------------------------- */

/* Take every transmitted frame off port i's TX ring, check it, free it. */
/* A harness's own look at each transmitted frame (content checks), before it is freed. */
static void (*fz_on_tx)(uint32_t port_index, const struct rte_mbuf *m);

static uint32_t
fz_drain_port(uint32_t i)
{
	const uint16_t port = fz_port[i];
	const struct wf_port_fp *fp = &fz_dp->fp[port];
	void *obj;
	uint32_t n = 0;
	while (rte_ring_dequeue(fz_dp->ports[port].test_tx, &obj) == 0) {
		struct rte_mbuf *m = obj;
		const char *why = NULL;
		FZ_CHECK(rte_mbuf_check(m, 1, &why) == 0, "%s sent a broken mbuf: %s", fz_name[i], why);
		FZ_CHECK(!(m->ol_flags & WF_OL_PENDING) || (fp->caps & WF_CAP_L4_CSUM),
			 "%s sent a frame with an unfinished offload (ol_flags %#lx)", fz_name[i],
			 (unsigned long)m->ol_flags);
		/* A super-frame goes whole to a port that segments it (AF_PACKET). */
		FZ_CHECK(fp->max_frame == 0 || m->pkt_len <= fp->max_frame ||
				 ((m->ol_flags & WF_OL_SEG) && (fp->caps & WF_CAP_GSO)),
			 "%s sent a %u-byte frame, more than its %u", fz_name[i], m->pkt_len, fp->max_frame);
		if (fz_on_tx != NULL)
			fz_on_tx(i, m);
		rte_pktmbuf_free(m);
		n++;
	}
	return n;
}

static uint32_t
fz_drain(uint32_t *per_port)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < fz_nports; i++) {
		uint32_t k = fz_drain_port(i);
		if (per_port)
			per_port[i] = k;
		n += k;
	}
	return n;
}

/* The pools back where they were: nothing leaked, nothing freed twice. */
static unsigned fz_base_dp, fz_base_in;
static void
fz_pools_baseline(void)
{
	fz_base_dp = rte_mempool_in_use_count(fz_dp->pool);
	fz_base_in = rte_mempool_in_use_count(fz_in);
}
static void
fz_pools_check(void)
{
	unsigned a = rte_mempool_in_use_count(fz_dp->pool), b = rte_mempool_in_use_count(fz_in);
	FZ_CHECK(a == fz_base_dp, "dataplane pool: %u mbufs in use, %u before the input", a, fz_base_dp);
	FZ_CHECK(b == fz_base_in, "input pool: %u mbufs in use, %u before the input", b, fz_base_in);
}

/* Punted frames answered and what the control plane sent out transmitted. */
static __attribute__((unused)) uint32_t
fz_underlay(uint32_t *punted)
{
	*punted = rte_ring_count(fz_dp->punt);
	FZ_CHECK(rte_ring_count(fz_dp->inject) == 0, "inject ring not empty before the underlay ran");
	int rc = wf_underlay_service(fz_dp);
	FZ_CHECK(rc >= 0 && (uint32_t)rc == *punted, "underlay service: %d of %u", rc, *punted);
	uint32_t sent = rte_ring_count(fz_dp->inject);
	wf_dp_poll_once(fz_dp, 0); /* worker 0 transmits them */
	FZ_CHECK(rte_ring_count(fz_dp->inject) == 0, "inject ring not drained");
	return sent;
}

/*
 * The input as frames: per frame a control byte (which port, and what the
 * harness reads from the other bits), a split byte (first segment length,
 * 0: whole), a 16-bit length, `extra` bytes of metadata when the control
 * byte's bit 7 is set, then the frame. The last frame takes what is left.
 */
struct fz_in_frame {
	uint8_t ctl, split;
	const uint8_t *meta; /* NULL when none */
	const uint8_t *d;
	uint32_t len;
};

static uint32_t
fz_parse(const uint8_t *d, size_t n, struct fz_in_frame *f, uint32_t max, uint32_t extra)
{
	uint32_t k = 0;
	while (n >= 4 && k < max) {
		f[k].ctl = d[0];
		f[k].split = d[1];
		uint32_t len = (uint32_t)d[2] << 8 | d[3];
		d += 4, n -= 4;
		f[k].meta = NULL;
		if ((f[k].ctl & 0x80) && extra) {
			if (n < extra)
				break;
			f[k].meta = d;
			d += extra, n -= extra;
		}
		if (len > n || k == max - 1)
			len = (uint32_t)n;
		f[k].d = d;
		f[k].len = len;
		d += len, n -= len;
		k++;
	}
	return k;
}

#endif
