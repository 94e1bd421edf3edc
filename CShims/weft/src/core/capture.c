/*
 * capture.c: frames of one interface written to a pcapng file, as
 * dpdk-dumpcap or tcpdump would write them, while weftd forwards.
 *
 * Workers only copy: a frame received (RX hook, worker.c) or sent (TX hook,
 * wf_port_tx) on the captured port is copied, up to the snap length, into a
 * free slot, and the slot goes on a ring. No free slot: the copy is not made
 * and counted (`dropped`); the frame itself is forwarded as ever. A writer
 * thread of the control side takes the slots, applies the BPF filter
 * (libpcap's compiler and interpreter), writes Enhanced Packet Blocks with
 * nanosecond timestamps (TSC to wall clock, from one reading at start) and
 * the direction, and gives the slots back. It stops after `count` frames
 * written, after `seconds`, or when stopped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pcap/pcap.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include "wf_internal.h"

struct cap_slot {
	uint64_t tsc;
	uint32_t orig_len, cap_len;
	uint8_t dir; /* 1 rx, 2 tx */
	uint8_t pad[7];
	uint8_t data[];
};

struct wf_capture {
	struct wf_dataplane *dp;
	uint16_t port;
	uint8_t dirs;
	uint32_t snaplen;
	uint32_t n_slots;
	size_t slot_size;
	uint8_t *mem;
	struct rte_ring *free_r, *full_r;
	/* the writer */
	FILE *f;
	struct bpf_program prog;
	bool has_filter;
	uint64_t max_count;
	uint64_t deadline_tsc; /* 0: none */
	uint64_t tsc0, wall0_ns, hz;
	pthread_t thread;
	bool thread_started;
	volatile uint8_t stop;
	volatile uint8_t done;
	/* figures */
	volatile uint64_t copied, dropped, written, filtered;
	char error[256];
	char path[4096];
};

/* ---- the workers' side --------------------------------------------------------- */

static void
cap_copy(struct wf_capture *c, uint8_t dir, const struct rte_mbuf *m, uint64_t now)
{
	void *o;
	if (rte_ring_mc_dequeue(c->free_r, &o) != 0) {
		__atomic_fetch_add(&c->dropped, 1, __ATOMIC_RELAXED);
		return;
	}
	struct cap_slot *s = o;
	const uint32_t len = rte_pktmbuf_pkt_len(m);
	s->tsc = now;
	s->orig_len = len;
	s->cap_len = len < c->snaplen ? len : c->snaplen;
	s->dir = dir;
	const void *p = rte_pktmbuf_read(m, 0, s->cap_len, s->data);
	if (p == NULL)
		s->cap_len = 0;
	else if (p != s->data)
		memcpy(s->data, p, s->cap_len);
	if (rte_ring_mp_enqueue(c->full_r, s) != 0) { /* cannot happen: as many places as slots */
		rte_ring_mp_enqueue(c->free_r, s);
		__atomic_fetch_add(&c->dropped, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_fetch_add(&c->copied, 1, __ATOMIC_RELAXED);
}

void
wf_capture_rx(struct wf_worker *w, uint16_t port, struct rte_mbuf *const *pkts, uint16_t n)
{
	struct wf_capture *c = __atomic_load_n(&w->dp->capture, __ATOMIC_ACQUIRE);
	if (c == NULL || c->port != port || !(c->dirs & 1))
		return;
	const uint64_t now = rte_rdtsc();
	for (uint16_t i = 0; i < n; i++)
		cap_copy(c, 1, pkts[i], now);
}

void
wf_tx_hook(const struct wf_worker *w, uint16_t port, struct rte_mbuf *const *pkts, uint16_t n)
{
	if (w->trace_cur != NULL)
		wf_trace_tx(w, port, pkts, n);
	if (!(w->tx_hooks & WF_TXHOOK_CAPTURE))
		return;
	struct wf_capture *c = __atomic_load_n(&w->dp->capture, __ATOMIC_ACQUIRE);
	if (c == NULL || c->port != port || !(c->dirs & 2))
		return;
	const uint64_t now = rte_rdtsc();
	for (uint16_t i = 0; i < n; i++)
		cap_copy(c, 2, pkts[i], now);
}

/* ---- pcapng -------------------------------------------------------------------- */

static void
put32(FILE *f, uint32_t v)
{
	fwrite(&v, 4, 1, f);
}

static void
put16(FILE *f, uint16_t v)
{
	fwrite(&v, 2, 1, f);
}

static void
pad4(FILE *f, size_t n)
{
	static const uint8_t z[4] = { 0 };
	if (n % 4)
		fwrite(z, 1, 4 - n % 4, f);
}

static size_t
opt_len(size_t n)
{
	return 4 + (n + 3) / 4 * 4;
}

static void
put_opt(FILE *f, uint16_t code, const void *v, uint16_t n)
{
	put16(f, code);
	put16(f, n);
	fwrite(v, 1, n, f);
	pad4(f, n);
}

static void
write_headers(struct wf_capture *c, const char *ifname)
{
	/* Section Header Block. */
	static const char appl[] = "weftd";
	uint32_t len = 28 + (uint32_t)opt_len(sizeof(appl) - 1) + 4;
	put32(c->f, 0x0A0D0D0A);
	put32(c->f, len);
	put32(c->f, 0x1A2B3C4D);
	put16(c->f, 1);
	put16(c->f, 0);
	uint64_t section = UINT64_MAX; /* unknown */
	fwrite(&section, 8, 1, c->f);
	put_opt(c->f, 4, appl, sizeof(appl) - 1); /* shb_userappl */
	put32(c->f, 0);                           /* opt_endofopt */
	put32(c->f, len);
	/* Interface Description Block: Ethernet, nanosecond timestamps. */
	const uint16_t nl = (uint16_t)strnlen(ifname, 64);
	const uint8_t tsresol = 9;
	len = 20 + (uint32_t)opt_len(nl) + (uint32_t)opt_len(1) + 4;
	put32(c->f, 1);
	put32(c->f, len);
	put16(c->f, 1); /* LINKTYPE_ETHERNET */
	put16(c->f, 0);
	put32(c->f, c->snaplen);
	put_opt(c->f, 2, ifname, nl);     /* if_name */
	put_opt(c->f, 9, &tsresol, 1);    /* if_tsresol */
	put32(c->f, 0);
	put32(c->f, len);
}

static void
write_epb(struct wf_capture *c, const struct cap_slot *s)
{
	const uint64_t ns = c->wall0_ns + (uint64_t)((double)(s->tsc - c->tsc0) * 1e9 / (double)c->hz);
	const uint32_t flags = s->dir == 1 ? 1 : 2; /* inbound / outbound */
	/* 28 bytes of fields, the data, the flags option, end of options, the length again. */
	const uint32_t len = 28 + (s->cap_len + 3) / 4 * 4 + (uint32_t)opt_len(4) + 4 + 4;
	put32(c->f, 6);
	put32(c->f, len);
	put32(c->f, 0); /* interface 0 */
	put32(c->f, (uint32_t)(ns >> 32));
	put32(c->f, (uint32_t)ns);
	put32(c->f, s->cap_len);
	put32(c->f, s->orig_len);
	fwrite(s->data, 1, s->cap_len, c->f);
	pad4(c->f, s->cap_len);
	put_opt(c->f, 2, &flags, 4); /* epb_flags */
	put32(c->f, 0);
	put32(c->f, len);
}

/* Workers copy (or stop copying) frames of the captured port, at RX and at
 * TX. Atomic: the trace sets its own bits of the same bytes. */
static void
set_capture_hooks(struct wf_dataplane *dp, bool on)
{
	for (uint32_t i = 0; i < WF_MAX_WORKERS; i++) {
		struct wf_worker *w = &dp->workers[i];
		if (on) {
			__atomic_fetch_or(&w->tx_hooks, WF_TXHOOK_CAPTURE, __ATOMIC_RELEASE);
			__atomic_fetch_or(&w->hooks, WF_HOOK_CAPTURE, __ATOMIC_RELEASE);
		} else {
			__atomic_fetch_and(&w->tx_hooks, (uint8_t)~WF_TXHOOK_CAPTURE, __ATOMIC_RELEASE);
			__atomic_fetch_and(&w->hooks, (uint8_t)~WF_HOOK_CAPTURE, __ATOMIC_RELEASE);
		}
	}
}

/* ---- the writer ---------------------------------------------------------------- */

static void *
writer(void *arg)
{
	struct wf_capture *c = arg;
	void *objs[64];
	for (;;) {
		const bool stopping = __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) ||
				      (c->deadline_tsc != 0 && rte_rdtsc() >= c->deadline_tsc) ||
				      (c->max_count != 0 && c->written >= c->max_count);
		unsigned n = rte_ring_sc_dequeue_burst(c->full_r, objs, 64, NULL);
		for (unsigned i = 0; i < n; i++) {
			struct cap_slot *s = objs[i];
			bool keep = c->max_count == 0 || c->written < c->max_count;
			if (keep && c->has_filter) {
				struct pcap_pkthdr h = { .caplen = s->cap_len, .len = s->orig_len };
				keep = pcap_offline_filter(&c->prog, &h, s->data) != 0;
				if (!keep)
					__atomic_fetch_add(&c->filtered, 1, __ATOMIC_RELAXED);
			}
			if (keep) {
				write_epb(c, s);
				__atomic_fetch_add(&c->written, 1, __ATOMIC_RELAXED);
			}
			rte_ring_mp_enqueue(c->free_r, s);
		}
		if (stopping && n == 0) {
			/* Done: the workers stop copying (what they still copy stays in the
			 * ring until the capture is retired). */
			set_capture_hooks(c->dp, false);
			break;
		}
		if (n == 0)
			usleep(1000);
	}
	fflush(c->f);
	if (ferror(c->f))
		snprintf(c->error, sizeof(c->error), "writing %s failed", c->path);
	fclose(c->f);
	c->f = NULL;
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ---- the control side ------------------------------------------------------------ */

static void
cap_free(struct wf_capture *c)
{
	if (c == NULL)
		return;
	if (c->has_filter)
		pcap_freecode(&c->prog);
	rte_ring_free(c->free_r);
	rte_ring_free(c->full_r);
	free(c->mem);
	if (c->f != NULL)
		fclose(c->f);
	free(c);
}


/* The previous capture, finished: its thread joined, its memory freed. Only
 * once no worker can hold it (hooks off, a grace period). */
static void
retire(struct wf_dataplane *dp)
{
	struct wf_capture *c = dp->capture;
	if (c == NULL)
		return;
	set_capture_hooks(dp, false);
	__atomic_store_n(&dp->capture, NULL, __ATOMIC_RELEASE);
	if (dp->started && dp->cfg.n_workers > 0)
		rte_rcu_qsbr_synchronize(dp->qs, RTE_QSBR_THRID_INVALID);
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
	if (c->thread_started)
		pthread_join(c->thread, NULL);
	cap_free(c);
}

int
wf_capture_start(wf_dataplane_t *dp, const struct wf_capture_params *p)
{
	if (dp == NULL || p == NULL || p->port >= WF_MAX_PORTS || !dp->ports[p->port].attached) {
		wf_set_error("capture: no such port");
		return -EINVAL;
	}
	if (p->dirs == 0 || p->dirs > 3 || p->snaplen < 64 || p->snaplen > 65535 || p->slots < 16 || p->slots > 65536) {
		wf_set_error("capture: direction rx/tx/both, snap length 64..65535, 16..65536 slots");
		return -EINVAL;
	}
	if (dp->capture != NULL && !__atomic_load_n(&dp->capture->done, __ATOMIC_ACQUIRE)) {
		wf_set_error("a capture is running (to %s): stop it first", dp->capture->path);
		return -EBUSY;
	}
	retire(dp);
	struct wf_capture *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->dp = dp;
	c->port = p->port;
	c->dirs = p->dirs;
	c->snaplen = p->snaplen;
	c->n_slots = p->slots;
	c->max_count = p->count;
	snprintf(c->path, sizeof(c->path), "%s", p->path);
	if (p->filter != NULL && p->filter[0] != 0) {
		pcap_t *pc = pcap_open_dead(DLT_EN10MB, (int)p->snaplen);
		if (pc == NULL || pcap_compile(pc, &c->prog, p->filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
			wf_set_error("capture filter '%s': %s", p->filter, pc ? pcap_geterr(pc) : "libpcap failed");
			if (pc)
				pcap_close(pc);
			free(c);
			return -EINVAL;
		}
		pcap_close(pc);
		c->has_filter = true;
	}
	c->slot_size = (sizeof(struct cap_slot) + p->snaplen + 63) / 64 * 64;
	c->mem = aligned_alloc(64, c->slot_size * p->slots);
	char name[RTE_RING_NAMESIZE];
	snprintf(name, sizeof(name), "wfcapf%u", dp->name_seq);
	c->free_r = rte_ring_create(name, rte_align32pow2(p->slots + 1), SOCKET_ID_ANY, 0);
	snprintf(name, sizeof(name), "wfcapq%u", dp->name_seq++);
	c->full_r = rte_ring_create(name, rte_align32pow2(p->slots + 1), SOCKET_ID_ANY, 0);
	if (c->mem == NULL || c->free_r == NULL || c->full_r == NULL) {
		wf_set_error("capture: no memory for %u slots of %u bytes", p->slots, p->snaplen);
		cap_free(c);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < p->slots; i++)
		rte_ring_enqueue(c->free_r, c->mem + (size_t)i * c->slot_size);
	c->f = fopen(p->path, "wx"); /* never over an existing file */
	if (c->f == NULL) {
		const int e = errno;
		wf_set_error("capture: cannot create %s: %s", p->path, strerror(e));
		cap_free(c);
		return -e;
	}
	write_headers(c, p->ifname);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	c->hz = rte_get_tsc_hz();
	c->tsc0 = rte_rdtsc();
	c->wall0_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	c->deadline_tsc = p->seconds ? c->tsc0 + (uint64_t)p->seconds * c->hz : 0;
	if (pthread_create(&c->thread, NULL, writer, c) != 0) {
		wf_set_error("capture: cannot start the writer thread");
		cap_free(c);
		return -EAGAIN;
	}
	c->thread_started = true;
	__atomic_store_n(&dp->capture, c, __ATOMIC_RELEASE);
	set_capture_hooks(dp, true);
	return 0;
}

int
wf_capture_stop(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return -EINVAL;
	struct wf_capture *c = dp->capture;
	if (c == NULL)
		return 0;
	/* Workers stop copying first; then the writer drains what they copied. */
	set_capture_hooks(dp, false);
	if (dp->started && dp->cfg.n_workers > 0)
		rte_rcu_qsbr_synchronize(dp->qs, RTE_QSBR_THRID_INVALID);
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
	if (c->thread_started) {
		pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
	return 0;
}

int
wf_capture_status(wf_dataplane_t *dp, struct wf_capture_info *out)
{
	if (dp == NULL || out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	const struct wf_capture *c = dp->capture;
	if (c == NULL)
		return -ENOENT;
	out->port = c->port;
	out->dirs = c->dirs;
	out->running = !__atomic_load_n(&c->done, __ATOMIC_ACQUIRE);
	out->copied = __atomic_load_n(&c->copied, __ATOMIC_RELAXED);
	out->dropped = __atomic_load_n(&c->dropped, __ATOMIC_RELAXED);
	out->written = __atomic_load_n(&c->written, __ATOMIC_RELAXED);
	out->filtered = __atomic_load_n(&c->filtered, __ATOMIC_RELAXED);
	snprintf(out->path, sizeof(out->path), "%s", c->path);
	snprintf(out->error, sizeof(out->error), "%s", c->error);
	return 0;
}

void
wf_capture_free(struct wf_dataplane *dp)
{
	if (dp->capture != NULL) {
		wf_capture_stop(dp);
		retire(dp);
	}
}
