/*
 * events.c: the one place the core waits for the kernel: an epoll set with
 * the memif control sockets (listeners and connections), the netlink link
 * events of kernel interfaces and the wake-ups of idle interfaces. It runs on
 * its own thread ("weft-events"), started by wf_dp_start (or wf_events_start
 * for a dataplane without workers, e.g. weft-pktgen) and stopped by
 * wf_dp_stop; stage tests run it step by step with wf_events_service().
 *
 * Sources are named by (slot, generation), never by pointer, in what epoll
 * hands back: a source removed while its event is pending is recognised and
 * skipped. Callbacks run under ev_lock (recursive: a callback may add or
 * remove sources); wf_ev_del() returns only when the callback is not running
 * and will never run again for that source.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "wf_internal.h"
#include "weft_test.h"
#include "weft_pktgen.h"

#define WF_EV_MAX 16384

struct wf_ev_src {
	int fd;
	uint32_t gen;
	bool used;
	wf_ev_fn fn;
	void *arg;
};

struct wf_events {
	int epfd;
	int kick; /* eventfd: wakes the thread to stop */
	pthread_mutex_t lock;
	struct wf_ev_src *src; /* [WF_EV_MAX] */
	uint32_t hint;
	pthread_t thread;
	bool running;
	volatile uint8_t stop;
	/* periodic work (memif handshake timeouts, faults, client retries) */
	wf_ev_fn tick_fn[4];
	void *tick_arg[4];
	uint32_t n_ticks;
	uint64_t next_tick;
	uint64_t next_link;
};

#include <rte_cycles.h>

int
wf_ev_tick_add(struct wf_dataplane *dp, wf_ev_fn fn, void *arg)
{
	struct wf_events *ev = dp->ev;
	pthread_mutex_lock(&ev->lock);
	int rc = -ENOSPC;
	if (ev->n_ticks < 4) {
		ev->tick_fn[ev->n_ticks] = fn;
		ev->tick_arg[ev->n_ticks++] = arg;
		rc = 0;
	}
	pthread_mutex_unlock(&ev->lock);
	return rc;
}

int
wf_events_init(struct wf_dataplane *dp)
{
	struct wf_events *ev = calloc(1, sizeof(*ev));
	if (ev == NULL)
		return -ENOMEM;
	ev->src = calloc(WF_EV_MAX, sizeof(*ev->src));
	ev->epfd = epoll_create1(EPOLL_CLOEXEC);
	ev->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ev->src == NULL || ev->epfd < 0 || ev->kick < 0) {
		if (ev->epfd >= 0)
			close(ev->epfd);
		if (ev->kick >= 0)
			close(ev->kick);
		free(ev->src);
		free(ev);
		return -ENOMEM;
	}
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&ev->lock, &a);
	pthread_mutexattr_destroy(&a);
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
	epoll_ctl(ev->epfd, EPOLL_CTL_ADD, ev->kick, &e);
	dp->ev = ev;
	return 0;
}

void
wf_events_fini(struct wf_dataplane *dp)
{
	struct wf_events *ev = dp->ev;
	if (ev == NULL)
		return;
	wf_events_stop(dp);
	close(ev->epfd);
	close(ev->kick);
	free(ev->src);
	pthread_mutex_destroy(&ev->lock);
	free(ev);
	dp->ev = NULL;
}

void
wf_ev_lock(struct wf_dataplane *dp)
{
	pthread_mutex_lock(&dp->ev->lock);
}

void
wf_ev_unlock(struct wf_dataplane *dp)
{
	pthread_mutex_unlock(&dp->ev->lock);
}

int
wf_ev_add(struct wf_dataplane *dp, int fd, uint32_t events, wf_ev_fn fn, void *arg, uint32_t *id)
{
	struct wf_events *ev = dp->ev;
	pthread_mutex_lock(&ev->lock);
	uint32_t slot = WF_EV_MAX;
	for (uint32_t k = 0; k < WF_EV_MAX; k++) {
		uint32_t c = (ev->hint + k) % WF_EV_MAX;
		if (!ev->src[c].used) {
			slot = c;
			break;
		}
	}
	if (slot == WF_EV_MAX) {
		pthread_mutex_unlock(&ev->lock);
		wf_set_error("too many event sources (%d)", WF_EV_MAX);
		return -ENOSPC;
	}
	struct wf_ev_src *s = &ev->src[slot];
	s->gen++;
	struct epoll_event e = { .events = events, .data.u64 = (uint64_t)s->gen << 32 | slot };
	if (epoll_ctl(ev->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
		int rc = -errno;
		pthread_mutex_unlock(&ev->lock);
		wf_set_error("epoll_ctl(ADD, fd %d): %s", fd, strerror(-rc));
		return rc;
	}
	s->fd = fd;
	s->fn = fn;
	s->arg = arg;
	s->used = true;
	ev->hint = (slot + 1) % WF_EV_MAX;
	*id = slot;
	pthread_mutex_unlock(&ev->lock);
	return 0;
}

int
wf_ev_mod(struct wf_dataplane *dp, uint32_t id, uint32_t events)
{
	struct wf_events *ev = dp->ev;
	pthread_mutex_lock(&ev->lock);
	struct wf_ev_src *s = &ev->src[id];
	int rc = 0;
	struct epoll_event e = { .events = events, .data.u64 = (uint64_t)s->gen << 32 | id };
	if (!s->used || epoll_ctl(ev->epfd, EPOLL_CTL_MOD, s->fd, &e) != 0)
		rc = s->used ? -errno : -ENOENT;
	pthread_mutex_unlock(&ev->lock);
	return rc;
}

void
wf_ev_del(struct wf_dataplane *dp, uint32_t id)
{
	struct wf_events *ev = dp->ev;
	if (id >= WF_EV_MAX)
		return;
	pthread_mutex_lock(&ev->lock);
	struct wf_ev_src *s = &ev->src[id];
	if (s->used) {
		epoll_ctl(ev->epfd, EPOLL_CTL_DEL, s->fd, NULL);
		s->used = false;
		s->fn = NULL;
		s->arg = NULL;
	}
	pthread_mutex_unlock(&ev->lock);
}

/* ---- sleeping queues --------------------------------------------------------- */

static void
wf_rxq_event(struct wf_dataplane *dp, void *arg, uint32_t events)
{
	(void)events;
	struct wf_rxq_base *b = arg;
	if (b->wake_eventfd) {
		uint64_t v;
		(void)!read(b->watched_fd, &v, sizeof(v)); /* consumed: no wake-up again for it */
	}
	wf_rxq_wake(dp, b);
}

void
wf_rxq_wake(struct wf_dataplane *dp, struct wf_rxq_base *b)
{
	if (__atomic_load_n(&b->woken, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&b->woken, 1, __ATOMIC_RELEASE);
	__atomic_fetch_add(&dp->workers[b->worker].wakes, 1, __ATOMIC_RELEASE);
}

/* Wait on what a queue that went to sleep armed (events lock held). */
static void
wf_sleeper_watch(struct wf_dataplane *dp, struct wf_rxq_base *b)
{
	const int fd = b->sleep_fd;
	if (b->watched_fd >= 0 && b->watched_fd != fd) {
		wf_ev_del(dp, b->ev_id);
		b->watched_fd = -1;
	}
	if (fd < 0)
		return; /* the driver wakes it (a memif without a peer, when one connects) */
	const uint32_t ev = EPOLLIN | EPOLLONESHOT;
	if (b->watched_fd == fd) {
		if (wf_ev_mod(dp, b->ev_id, ev) == 0)
			return;
		wf_ev_del(dp, b->ev_id);
		b->watched_fd = -1;
	}
	if (wf_ev_add(dp, fd, ev, wf_rxq_event, b, &b->ev_id) == 0)
		b->watched_fd = fd;
	else
		wf_rxq_wake(dp, b); /* cannot wait for it: poll it */
}

/* Take what the workers put to sleep since the last time (events lock held);
 * `skip`: a queue about to be freed. */
static void
wf_sleepers_drain(struct wf_dataplane *dp, const struct wf_rxq_base *skip)
{
	for (uint32_t w = 0; w < dp->n_pollers; w++) {
		void *objs[64];
		unsigned n;
		while ((n = rte_ring_dequeue_burst(dp->workers[w].sleepers, objs, 64, NULL)) > 0)
			for (unsigned i = 0; i < n; i++)
				if (objs[i] != skip)
					wf_sleeper_watch(dp, objs[i]);
	}
}

void
wf_rxq_unwatch(struct wf_dataplane *dp, struct wf_rxq_base *b)
{
	pthread_mutex_lock(&dp->ev->lock);
	wf_sleepers_drain(dp, b);
	if (b->watched_fd >= 0) {
		wf_ev_del(dp, b->ev_id);
		b->watched_fd = -1;
	}
	pthread_mutex_unlock(&dp->ev->lock);
}

int
wf_events_service(wf_dataplane_t *dp, int timeout_ms)
{
	if (dp == NULL || dp->ev == NULL)
		return -EINVAL;
	struct wf_events *ev = dp->ev;
	pthread_mutex_lock(&ev->lock);
	wf_sleepers_drain(dp, NULL);
	pthread_mutex_unlock(&ev->lock);
	struct epoll_event evs[64];
	int n = epoll_wait(ev->epfd, evs, 64, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	int handled = 0;
	for (int i = 0; i < n; i++) {
		uint64_t d = evs[i].data.u64;
		if (d == UINT64_MAX) {
			uint64_t v;
			(void)!read(ev->kick, &v, sizeof(v));
			continue;
		}
		uint32_t slot = (uint32_t)d, gen = (uint32_t)(d >> 32);
		pthread_mutex_lock(&ev->lock);
		struct wf_ev_src *s = &ev->src[slot];
		if (s->used && s->gen == gen) {
			s->fn(dp, s->arg, evs[i].events);
			handled++;
		}
		pthread_mutex_unlock(&ev->lock);
	}
	uint64_t now = rte_rdtsc();
	/* Link state for the workers, every 5 ms: DPDK's PMDs raise no link events
	 * here, and a peer that just connected must not lose its first frames to a
	 * stale link-down. Drivers of Weft's own answer from memory. */
	if (now >= ev->next_link) {
		ev->next_link = now + rte_get_tsc_hz() / 200;
		wf_link_poll(dp);
	}
	if (now >= ev->next_tick) {
		ev->next_tick = now + rte_get_tsc_hz() / 10;
		pthread_mutex_lock(&ev->lock);
		for (uint32_t i = 0; i < ev->n_ticks; i++)
			ev->tick_fn[i](dp, ev->tick_arg[i], 0);
		pthread_mutex_unlock(&ev->lock);
	}
	return handled;
}

static void *
wf_events_main(void *arg)
{
	struct wf_dataplane *dp = arg;
	/* Queues that went to sleep are picked up within a millisecond (the workers
	 * never make a syscall to say so); the link poll every 5 ms in any case. */
	const int timeout = dp->cfg.queues_sleep ? 1 : 5;
	while (!__atomic_load_n(&dp->ev->stop, __ATOMIC_ACQUIRE))
		wf_events_service(dp, timeout);
	return NULL;
}

int
wf_events_start(wf_dataplane_t *dp)
{
	if (dp == NULL || dp->ev == NULL)
		return -EINVAL;
	struct wf_events *ev = dp->ev;
	if (ev->running)
		return 0;
	ev->stop = 0;
	int rc = pthread_create(&ev->thread, NULL, wf_events_main, dp);
	if (rc != 0)
		return -rc;
	pthread_setname_np(ev->thread, "weft-events");
	ev->running = true;
	return 0;
}

void
wf_events_stop(struct wf_dataplane *dp)
{
	struct wf_events *ev = dp->ev;
	if (ev == NULL || !ev->running)
		return;
	__atomic_store_n(&ev->stop, 1, __ATOMIC_RELEASE);
	uint64_t one = 1;
	(void)!write(ev->kick, &one, sizeof(one));
	pthread_join(ev->thread, NULL);
	ev->running = false;
}
