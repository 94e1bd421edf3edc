/*
 * fdproxy.c: the bridge between NIO's gRPC connections and unix-socket peers
 * that pass file descriptors (weft_fdproxy.h says what and why).
 *
 * One thread, one epoll set, level-triggered. A bridge is two non-blocking
 * sockets and a capped buffer each way; when a buffer is full its source is
 * not read until the buffer drains, so a peer that stops reading only stalls
 * its own bridge. The thread holds the proxy's lock while it handles a batch
 * of events (every syscall in it is non-blocking); callers on other threads
 * take the same lock, and take/flush wait on the condition variable the
 * thread broadcasts whenever fds arrive, go out, or a connection ends.
 *
 * Objects closed while a batch is being handled (by the thread or by
 * undial) go to a graveyard freed only after the batch: an event of that
 * batch may still point at them. Their fds leave the epoll set first, so no
 * later batch can.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "weft_fdproxy.h"
#include "weft_kernel.h"

#define FP_BUF_CAP (64 * 1024)     /* per direction per bridge */
#define FP_FDS_PER_MSG 64          /* fds on one sendmsg: a Go grpcfd peer reads at most 64 per message */
#define FP_CMSG_FDS 253            /* the kernel's SCM_MAX_FD: the most one message can carry */
#define FP_MAX_BRIDGES 4096        /* beyond this, new peers are refused */
#define FP_CONNECT_RETRY_MS 10     /* a unix connect refused with EAGAIN (backlog full) is retried */
#define FP_CONNECT_GIVEUP_MS 5000
#define FP_ACCEPT_PAUSE_MS 100     /* after EMFILE/ENFILE, the listener rests */
#define FP_ROUNDS 8                /* copy rounds per bridge per event, for fairness */

enum fp_kind { FP_KICK, FP_SERVE, FP_DIALER, FP_PEER, FP_NIO };

/* What an epoll event points at. */
struct fp_handle {
	enum fp_kind kind;
	void *owner;
};

struct fp_buf {
	char *data;
	size_t off, len; /* bytes waiting are data[off, len) */
};

struct fp_held {
	uint64_t dev, ino;
	uint64_t conn; /* the bridge that carried it: it closes with that bridge */
	int fd;
	bool taken;
};

/* Fds received and fds to send: per served bridge, or per dialer. */
struct fp_fdset {
	struct fp_held held[WF_FDPROXY_MAX_HELD];
	int n_held;
	int queued[WF_FDPROXY_MAX_QUEUED];
	int n_queued;
};

struct fp_serve {
	struct fp_handle h;
	int fd;
	char backend[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int64_t paused_until;
	bool registered;
	struct fp_serve *next;
};

struct fp_dialer {
	struct fp_handle h;
	int id;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char peer[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct fp_fdset set;
	uint64_t newest; /* id of its newest bridge: queued fds go there */
	int64_t paused_until;
	bool registered;
	bool dead;
	struct fp_dialer *next;
};

/* One side of a bridge. */
struct fp_side {
	struct fp_handle h;
	int fd;
	uint32_t events;  /* interest registered in epoll (0 with !registered) */
	bool registered;
	bool connecting;  /* connect() said EAGAIN: retried on the timer */
	bool eof;         /* read returned 0 */
	bool shut;        /* we shut its write side (or it can take nothing more) */
	bool hup;         /* epoll said HUP/ERR */
};

struct fp_bridge {
	uint64_t id;
	struct fp_side peer, nio;
	struct fp_buf to_peer, to_nio;
	int64_t connect_deadline;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* serve: our bound path (the key) */
	struct fp_dialer *dialer;                               /* dial: owner */
	struct fp_serve *serve;                                 /* serve: where it came in (lives until stop) */
	struct fp_fdset own;                                    /* serve: its fds */
	bool dead;
	struct fp_bridge *next;
};

struct wf_fdproxy {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	int ep;
	int kick;
	struct fp_handle kick_h;
	bool stop;
	char dir[80]; /* checked by start: room for "/b-<20 digits>.sock" */
	uint64_t next_id;
	struct fp_serve *serves;
	struct fp_dialer *dialers;
	struct fp_bridge *bridges;
	struct fp_bridge *grave_bridges;
	struct fp_dialer *grave_dialers;
	struct wf_fdproxy_stats st;
	int64_t last_notice;
	uint64_t notices_skipped;
};

static int64_t
fp_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A hostile peer can make these happen in a loop: one line a second at most. */
__attribute__((format(printf, 2, 3))) static void
fp_notice(struct wf_fdproxy *p, const char *fmt, ...)
{
	int64_t now = fp_now_ms();
	if (now - p->last_notice < 1000 && p->last_notice != 0) {
		p->notices_skipped++;
		return;
	}
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "weft-fdproxy: %s (%llu more notices skipped before this one)\n", line,
		(unsigned long long)p->notices_skipped);
	p->last_notice = now;
	p->notices_skipped = 0;
}

/* ---- fd sets ------------------------------------------------------------------ */

static struct fp_fdset *
fp_set_of(struct fp_bridge *b)
{
	return b->dialer != NULL ? &b->dialer->set : &b->own;
}

static struct fp_held *
fp_find(struct fp_fdset *s, uint64_t dev, uint64_t ino)
{
	for (int i = 0; i < s->n_held; i++)
		if (s->held[i].dev == dev && s->held[i].ino == ino)
			return &s->held[i];
	return NULL;
}

static void
fp_hold(struct wf_fdproxy *p, struct fp_bridge *b, int fd)
{
	struct fp_fdset *s = fp_set_of(b);
	struct stat st;
	p->st.fds_received++;
	if (fstat(fd, &st) < 0) { /* no identity, no way to ask for it */
		close(fd);
		p->st.fds_over_cap++;
		return;
	}
	if (fp_find(s, (uint64_t)st.st_dev, (uint64_t)st.st_ino) != NULL) {
		close(fd);
		p->st.fds_duplicate++;
		return;
	}
	if (s->n_held >= WF_FDPROXY_MAX_HELD) {
		close(fd);
		p->st.fds_over_cap++;
		fp_notice(p, "connection %llu holds %d fds already: closed one more", (unsigned long long)b->id,
			  s->n_held);
		return;
	}
	s->held[s->n_held++] = (struct fp_held){ .dev = (uint64_t)st.st_dev, .ino = (uint64_t)st.st_ino,
						 .conn = b->id, .fd = fd };
	p->st.fds_held++;
	pthread_cond_broadcast(&p->cond);
}

/* Close the held fds that bridge conn carried (conn 0: all of them). */
static void
fp_release_held(struct wf_fdproxy *p, struct fp_fdset *s, uint64_t conn)
{
	int w = 0;
	for (int i = 0; i < s->n_held; i++) {
		if (conn == 0 || s->held[i].conn == conn) {
			if (!s->held[i].taken)
				p->st.fds_unclaimed++;
			close(s->held[i].fd);
			p->st.fds_held--;
		} else {
			s->held[w++] = s->held[i];
		}
	}
	s->n_held = w;
}

static void
fp_release_queued(struct wf_fdproxy *p, struct fp_fdset *s)
{
	for (int i = 0; i < s->n_queued; i++)
		close(s->queued[i]);
	p->st.fds_send_dropped += (uint64_t)s->n_queued;
	s->n_queued = 0;
}

/* ---- sockets ------------------------------------------------------------------ */

static int
fp_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

/* A non-blocking stream socket, bound to bind_path if given, connected (0),
 * or waiting for room in the listener's backlog (1), or -errno. */
static int
fp_connect(int *fdp, const char *path, const char *bind_path)
{
	struct sockaddr_un sa;
	int rc = fp_addr(path, &sa);
	if (rc < 0)
		return rc;
	int fd = *fdp;
	if (fd < 0) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (bind_path != NULL) {
			/* A file left there by an earlier weftd in our private directory. */
			struct sockaddr_un ba;
			rc = fp_addr(bind_path, &ba);
			if (rc == 0) {
				unlink(bind_path);
				if (bind(fd, (struct sockaddr *)&ba, sizeof(ba)) < 0)
					rc = -errno;
			}
			if (rc < 0) {
				close(fd);
				return rc;
			}
		}
		*fdp = fd;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return 0;
	/* A unix connect never says EINPROGRESS; EAGAIN is a full backlog. */
	if (errno == EAGAIN)
		return 1;
	return -errno;
}

static void
fp_epoll_set(struct wf_fdproxy *p, struct fp_side *s, uint32_t events)
{
	if (s->fd < 0)
		return;
	/* A side that hung up would be reported on every wait (HUP ignores the
	 * interest mask): it leaves the set, and the other side's events drive
	 * reading what it left behind. */
	if (s->hup) {
		if (s->registered)
			epoll_ctl(p->ep, EPOLL_CTL_DEL, s->fd, NULL);
		s->registered = false;
		return;
	}
	if (s->registered && s->events == events)
		return;
	struct epoll_event ev = { .events = events, .data.ptr = &s->h };
	if (!s->registered) {
		if (epoll_ctl(p->ep, EPOLL_CTL_ADD, s->fd, &ev) == 0)
			s->registered = true;
	} else {
		epoll_ctl(p->ep, EPOLL_CTL_MOD, s->fd, &ev);
	}
	s->events = events;
}

static void
fp_side_close(struct wf_fdproxy *p, struct fp_side *s)
{
	if (s->fd < 0)
		return;
	if (s->registered)
		epoll_ctl(p->ep, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	s->registered = false;
}

/* ---- bridges ------------------------------------------------------------------ */

static void
fp_bridge_close(struct wf_fdproxy *p, struct fp_bridge *b)
{
	if (b->dead)
		return;
	b->dead = true;
	fp_side_close(p, &b->peer);
	fp_side_close(p, &b->nio);
	if (b->path[0] != '\0')
		unlink(b->path);
	if (b->dialer != NULL) {
		fp_release_held(p, &b->dialer->set, b->id);
	} else {
		fp_release_held(p, &b->own, 0);
		fp_release_queued(p, &b->own);
	}
	for (struct fp_bridge **pp = &p->bridges; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	b->next = p->grave_bridges;
	p->grave_bridges = b;
	p->st.bridges_open--;
	pthread_cond_broadcast(&p->cond);
}

static struct fp_bridge *
fp_bridge_new(struct wf_fdproxy *p)
{
	if (p->st.bridges_open >= FP_MAX_BRIDGES)
		return NULL;
	struct fp_bridge *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->to_peer.data = malloc(FP_BUF_CAP);
	b->to_nio.data = malloc(FP_BUF_CAP);
	if (b->to_peer.data == NULL || b->to_nio.data == NULL) {
		free(b->to_peer.data);
		free(b->to_nio.data);
		free(b);
		return NULL;
	}
	b->id = ++p->next_id;
	b->peer = (struct fp_side){ .h = { FP_PEER, b }, .fd = -1 };
	b->nio = (struct fp_side){ .h = { FP_NIO, b }, .fd = -1 };
	b->next = p->bridges;
	p->bridges = b;
	p->st.bridges_open++;
	p->st.bridges_total++;
	return b;
}

static void
fp_bridge_free(struct fp_bridge *b)
{
	free(b->to_peer.data);
	free(b->to_nio.data);
	free(b);
}

static size_t
fp_room(struct fp_buf *q)
{
	if (q->off == q->len)
		q->off = q->len = 0;
	if (q->len == FP_BUF_CAP && q->off > 0) {
		memmove(q->data, q->data + q->off, q->len - q->off);
		q->len -= q->off;
		q->off = 0;
	}
	return FP_BUF_CAP - q->len;
}

/* Read the NIO side into to_peer: 1 progress, 0 nothing, -1 failed. */
static int
fp_read_nio(struct wf_fdproxy *p, struct fp_bridge *b)
{
	(void)p;
	struct fp_buf *q = &b->to_peer;
	size_t room = fp_room(q);
	if (b->nio.eof || b->nio.connecting || b->nio.fd < 0 || room == 0)
		return 0;
	ssize_t n = recv(b->nio.fd, q->data + q->len, room, MSG_DONTWAIT);
	if (n > 0) {
		q->len += (size_t)n;
		return 1;
	}
	if (n == 0) {
		b->nio.eof = true;
		return 1;
	}
	return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

/* Read the unix peer into to_nio, keeping the fds that ride on the bytes. */
static int
fp_read_peer(struct wf_fdproxy *p, struct fp_bridge *b)
{
	struct fp_buf *q = &b->to_nio;
	size_t room = fp_room(q);
	if (b->peer.eof || b->peer.connecting || b->peer.fd < 0 || room == 0)
		return 0;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * FP_CMSG_FDS)];
	} ctl;
	struct iovec iov = { .iov_base = q->data + q->len, .iov_len = room };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf) };
	ssize_t n = recvmsg(b->peer.fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (m.msg_flags & MSG_CTRUNC) {
		/* The kernel closed what did not fit; the peer loses those fds. */
		p->st.ctrunc++;
		fp_notice(p, "connection %llu: ancillary data cut (MSG_CTRUNC), fds lost", (unsigned long long)b->id);
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			fp_hold(p, b, fd);
		}
	}
	if (n == 0) {
		b->peer.eof = true;
		return 1;
	}
	q->len += (size_t)n;
	p->st.bytes_from_peers += (uint64_t)n;
	return 1;
}

static int
fp_write_nio(struct wf_fdproxy *p, struct fp_bridge *b)
{
	(void)p;
	struct fp_buf *q = &b->to_nio;
	if (q->len == q->off || b->nio.connecting || b->nio.fd < 0)
		return 0;
	ssize_t n = send(b->nio.fd, q->data + q->off, q->len - q->off, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n > 0) {
		q->off += (size_t)n;
		return 1;
	}
	return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
}

/* Write to_peer to the unix peer; queued fds ride on these bytes. */
static int
fp_write_peer(struct wf_fdproxy *p, struct fp_bridge *b)
{
	struct fp_buf *q = &b->to_peer;
	if (q->len == q->off || b->peer.connecting || b->peer.fd < 0)
		return 0;
	struct fp_fdset *s = fp_set_of(b);
	bool mine = b->dialer == NULL || b->dialer->newest == b->id;
	int k = mine ? s->n_queued : 0;
	if (k > FP_FDS_PER_MSG)
		k = FP_FDS_PER_MSG;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * FP_FDS_PER_MSG)];
	} ctl;
	struct iovec iov = { .iov_base = q->data + q->off, .iov_len = q->len - q->off };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (k > 0) {
		memset(&ctl, 0, sizeof(ctl));
		m.msg_control = ctl.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)k);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)k);
		memcpy(CMSG_DATA(c), s->queued, sizeof(int) * (size_t)k);
	}
	ssize_t n = sendmsg(b->peer.fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && k > 0 && errno != EAGAIN && errno != EINTR && errno != EPIPE && errno != ECONNRESET) {
		/* The kernel refused the fds (ETOOMANYREFS, EBADF, ...), not the bytes:
		 * drop the fds, keep the stream going. */
		fp_notice(p, "connection %llu: %d fds not sent: %s", (unsigned long long)b->id, k, strerror(errno));
		for (int i = 0; i < k; i++)
			close(s->queued[i]);
		memmove(s->queued, s->queued + k, sizeof(int) * (size_t)(s->n_queued - k));
		s->n_queued -= k;
		p->st.fds_send_dropped += (uint64_t)k;
		pthread_cond_broadcast(&p->cond);
		return 1;
	}
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	/* Bytes went, so the fds went with the first of them. */
	if (k > 0) {
		for (int i = 0; i < k; i++)
			close(s->queued[i]);
		memmove(s->queued, s->queued + k, sizeof(int) * (size_t)(s->n_queued - k));
		s->n_queued -= k;
		p->st.fds_sent += (uint64_t)k;
		pthread_cond_broadcast(&p->cond);
	}
	q->off += (size_t)n;
	p->st.bytes_to_peers += (uint64_t)n;
	return 1;
}

/* After a full close (HUP) a side can take nothing more: what was on its way
 * there is dropped. */
static void
fp_side_gone(struct fp_side *s, struct fp_buf *to_it)
{
	if (s->hup && s->eof) {
		s->shut = true;
		to_it->off = to_it->len = 0;
	}
}

/* Copy what can be copied, propagate half-closes, close when both ways are
 * done, and say to epoll what is wanted next. */
static void
fp_pump(struct wf_fdproxy *p, struct fp_bridge *b)
{
	if (b->dead)
		return;
	for (int round = 0; round < FP_ROUNDS; round++) {
		int a = fp_read_nio(p, b), c = fp_read_peer(p, b);
		int w1 = fp_write_peer(p, b), w2 = fp_write_nio(p, b);
		if (a < 0 || c < 0 || w1 < 0 || w2 < 0) {
			fp_bridge_close(p, b);
			return;
		}
		if (a + c + w1 + w2 == 0)
			break;
	}
	fp_side_gone(&b->peer, &b->to_peer);
	fp_side_gone(&b->nio, &b->to_nio);
	struct fp_buf *tp = &b->to_peer, *tn = &b->to_nio;
	if (b->nio.eof && tp->off == tp->len && !b->peer.shut && !b->peer.connecting) {
		shutdown(b->peer.fd, SHUT_WR);
		b->peer.shut = true;
	}
	if (b->peer.eof && tn->off == tn->len && !b->nio.shut && !b->nio.connecting) {
		shutdown(b->nio.fd, SHUT_WR);
		b->nio.shut = true;
	}
	/* Done: nothing more can flow either way. A side that is gone (HUP) ends
	 * the bridge once what it sent has been delivered. */
	bool peer_done = b->peer.eof && tn->off == tn->len;
	bool nio_done = b->nio.eof && tp->off == tp->len;
	if ((b->peer.shut && b->nio.shut) || (b->peer.hup && peer_done) || (b->nio.hup && nio_done)) {
		fp_bridge_close(p, b);
		return;
	}
	if (!b->peer.connecting) {
		uint32_t e = 0;
		if (!b->peer.eof && fp_room(tn) > 0)
			e |= EPOLLIN;
		if (tp->off != tp->len)
			e |= EPOLLOUT;
		fp_epoll_set(p, &b->peer, e);
	}
	if (!b->nio.connecting) {
		uint32_t e = 0;
		if (!b->nio.eof && fp_room(tp) > 0)
			e |= EPOLLIN;
		if (tn->off != tn->len)
			e |= EPOLLOUT;
		fp_epoll_set(p, &b->nio, e);
	}
}

/* The side we connect ourselves: retry a full backlog until the deadline. */
static void
fp_try_connect(struct wf_fdproxy *p, struct fp_bridge *b, struct fp_side *s, const char *to, const char *bind_path)
{
	int rc = fp_connect(&s->fd, to, bind_path);
	if (rc == 1) {
		s->connecting = true;
		if (b->connect_deadline == 0)
			b->connect_deadline = fp_now_ms() + FP_CONNECT_GIVEUP_MS;
		else if (fp_now_ms() > b->connect_deadline)
			rc = -ETIMEDOUT;
	}
	if (rc < 0) {
		p->st.connect_failed++;
		fp_notice(p, "connection %llu: cannot connect to %s: %s", (unsigned long long)b->id, to, strerror(-rc));
		fp_bridge_close(p, b);
		return;
	}
	if (rc == 0) {
		s->connecting = false;
		fp_pump(p, b);
	}
}


static void
fp_connect_out(struct wf_fdproxy *p, struct fp_bridge *b)
{
	if (b->dialer != NULL)
		fp_try_connect(p, b, &b->peer, b->dialer->peer, NULL);
	else
		fp_try_connect(p, b, &b->nio, b->serve->backend, b->path);
}

/* ---- accepting ------------------------------------------------------------------- */

static int
fp_accept(struct wf_fdproxy *p, int lfd, int64_t *paused_until)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
			/* Level-triggered: the listener would wake us at once again. */
			p->st.accept_refused++;
			fp_notice(p, "cannot accept: %s", strerror(e));
			*paused_until = fp_now_ms() + FP_ACCEPT_PAUSE_MS;
		}
		return -e;
	}
	if (p->st.bridges_open >= FP_MAX_BRIDGES) {
		close(fd);
		p->st.accept_refused++;
		fp_notice(p, "%d connections bridged already: refused one", FP_MAX_BRIDGES);
		return -EAGAIN;
	}
	return fd;
}

/* A peer dialled the product's socket: bridge it to the gRPC server from a
 * socket bound to a fresh path, the key the server will see. */
static void
fp_on_serve(struct wf_fdproxy *p, struct fp_serve *sv)
{
	for (int i = 0; i < 64 && sv->paused_until == 0; i++) {
		int fd = fp_accept(p, sv->fd, &sv->paused_until);
		if (fd < 0)
			break;
		struct fp_bridge *b = fp_bridge_new(p);
		if (b == NULL) {
			close(fd);
			p->st.accept_refused++;
			continue;
		}
		b->serve = sv;
		b->peer.fd = fd;
		snprintf(b->path, sizeof(b->path), "%s/b-%llu.sock", p->dir, (unsigned long long)b->id);
		fp_connect_out(p, b);
	}
}

/* The gRPC client connected to a dialer's socket: bridge it to the peer. */
static void
fp_on_dialer(struct wf_fdproxy *p, struct fp_dialer *d)
{
	for (int i = 0; i < 64 && d->paused_until == 0 && !d->dead; i++) {
		int fd = fp_accept(p, d->fd, &d->paused_until);
		if (fd < 0)
			break;
		struct fp_bridge *b = fp_bridge_new(p);
		if (b == NULL) {
			close(fd);
			p->st.accept_refused++;
			continue;
		}
		b->dialer = d;
		b->nio.fd = fd;
		d->newest = b->id;
		fp_connect_out(p, b);
	}
}

static void
fp_listener_interest(struct wf_fdproxy *p, int fd, struct fp_handle *h, bool *registered, bool want)
{
	if (want == *registered)
		return;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = h };
	if (want) {
		if (epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev) == 0)
			*registered = true;
	} else {
		epoll_ctl(p->ep, EPOLL_CTL_DEL, fd, NULL);
		*registered = false;
	}
}

/* Timers: listeners resting after EMFILE, bridges waiting for backlog room.
 * Returns the epoll timeout (-1: nothing waits). */
static int
fp_timers(struct wf_fdproxy *p)
{
	int64_t now = fp_now_ms();
	int timeout = -1;
	for (struct fp_serve *sv = p->serves; sv != NULL; sv = sv->next) {
		if (sv->paused_until != 0 && now >= sv->paused_until)
			sv->paused_until = 0;
		fp_listener_interest(p, sv->fd, &sv->h, &sv->registered, sv->paused_until == 0);
		if (sv->paused_until != 0)
			timeout = FP_CONNECT_RETRY_MS;
	}
	for (struct fp_dialer *d = p->dialers; d != NULL; d = d->next) {
		if (d->paused_until != 0 && now >= d->paused_until)
			d->paused_until = 0;
		fp_listener_interest(p, d->fd, &d->h, &d->registered, d->paused_until == 0);
		if (d->paused_until != 0)
			timeout = FP_CONNECT_RETRY_MS;
	}
	struct fp_bridge *next;
	for (struct fp_bridge *b = p->bridges; b != NULL; b = next) {
		next = b->next; /* b may close */
		if (b->peer.connecting || b->nio.connecting) {
			fp_connect_out(p, b);
			timeout = FP_CONNECT_RETRY_MS;
		}
	}
	return timeout;
}

static void
fp_bury(struct wf_fdproxy *p)
{
	while (p->grave_bridges != NULL) {
		struct fp_bridge *b = p->grave_bridges;
		p->grave_bridges = b->next;
		fp_bridge_free(b);
	}
	while (p->grave_dialers != NULL) {
		struct fp_dialer *d = p->grave_dialers;
		p->grave_dialers = d->next;
		free(d);
	}
}

static void
fp_on_event(struct wf_fdproxy *p, struct epoll_event *ev)
{
	struct fp_handle *h = ev->data.ptr;
	switch (h->kind) {
	case FP_KICK: {
		uint64_t v;
		(void)!read(p->kick, &v, sizeof(v));
		/* Something was queued to send: bridges with bytes waiting try now. */
		struct fp_bridge *next;
		for (struct fp_bridge *b = p->bridges; b != NULL; b = next) {
			next = b->next; /* b may close */
			if (b->to_peer.off != b->to_peer.len && !b->peer.connecting && !b->nio.connecting)
				fp_pump(p, b);
		}
		break;
	}
	case FP_SERVE:
		fp_on_serve(p, h->owner);
		break;
	case FP_DIALER: {
		struct fp_dialer *d = h->owner;
		if (!d->dead)
			fp_on_dialer(p, d);
		break;
	}
	case FP_PEER:
	case FP_NIO: {
		struct fp_bridge *b = h->owner;
		if (b->dead)
			break;
		if (ev->events & (EPOLLHUP | EPOLLERR)) {
			if (h->kind == FP_PEER)
				b->peer.hup = true;
			else
				b->nio.hup = true;
		}
		fp_pump(p, b);
		break;
	}
	}
}

static void *
fp_main(void *arg)
{
	struct wf_fdproxy *p = arg;
	struct epoll_event evs[64];
	/* Signals are weftd's main thread's business (service-lifecycle). */
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	int timeout = -1;
	for (;;) {
		int n = epoll_wait(p->ep, evs, 64, timeout);
		pthread_mutex_lock(&p->lock);
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		for (int i = 0; i < n; i++)
			fp_on_event(p, &evs[i]);
		timeout = fp_timers(p);
		fp_bury(p);
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

static void
fp_kick(struct wf_fdproxy *p)
{
	uint64_t one = 1;
	(void)!write(p->kick, &one, sizeof(one));
}

/* ---- the API --------------------------------------------------------------------- */

/* Sockets an earlier run left in the private directory (kill -9): only the
 * names this file makes, b-<n>.sock and d-<n>.sock. */
static void
fp_sweep(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		size_t len = strlen(n);
		if ((n[0] != 'b' && n[0] != 'd') || n[1] != '-' || len < 8 || strcmp(n + len - 5, ".sock") != 0)
			continue;
		if (strspn(n + 2, "0123456789") != len - 7 || e->d_type != DT_SOCK)
			continue;
		unlinkat(dirfd(d), n, 0);
	}
	closedir(d);
}

int
wf_fdproxy_start(const char *private_dir, wf_fdproxy_t **out)
{
	struct stat st;
	if (private_dir == NULL || out == NULL)
		return -EINVAL;
	/* "/b-" + 20 digits + ".sock" must fit after the directory. */
	if (strlen(private_dir) >= 79) {
		wf_set_error("fdproxy: %s is too long for socket paths in it", private_dir);
		return -ENAMETOOLONG;
	}
	if (stat(private_dir, &st) < 0) {
		int e = errno;
		wf_set_error("fdproxy: %s: %s", private_dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode) || (st.st_mode & 077) != 0 || st.st_uid != geteuid()) {
		wf_set_error("fdproxy: %s must be a directory of ours that no one else may enter (mode %o)",
			     private_dir, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	fp_sweep(private_dir);
	struct wf_fdproxy *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	snprintf(p->dir, sizeof(p->dir), "%s", private_dir);
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	p->ep = epoll_create1(EPOLL_CLOEXEC);
	p->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int rc = 0;
	if (p->ep < 0 || p->kick < 0) {
		rc = -errno;
		wf_set_error("fdproxy: epoll or eventfd: %s", strerror(-rc));
		goto fail;
	}
	p->kick_h = (struct fp_handle){ FP_KICK, p };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &p->kick_h };
	if (epoll_ctl(p->ep, EPOLL_CTL_ADD, p->kick, &ev) < 0) {
		rc = -errno;
		goto fail;
	}
	rc = -pthread_create(&p->thread, NULL, fp_main, p);
	if (rc < 0) {
		wf_set_error("fdproxy: thread: %s", strerror(-rc));
		goto fail;
	}
	pthread_setname_np(p->thread, "weft-fdproxy");
	*out = p;
	return 0;
fail:
	if (p->ep >= 0)
		close(p->ep);
	if (p->kick >= 0)
		close(p->kick);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return rc;
}

static void
fp_dialer_close(struct wf_fdproxy *p, struct fp_dialer *d)
{
	struct fp_bridge *next;
	for (struct fp_bridge *b = p->bridges; b != NULL; b = next) {
		next = b->next;
		if (b->dialer == d)
			fp_bridge_close(p, b);
	}
	if (d->registered)
		epoll_ctl(p->ep, EPOLL_CTL_DEL, d->fd, NULL);
	close(d->fd);
	unlink(d->path);
	fp_release_held(p, &d->set, 0);
	fp_release_queued(p, &d->set);
	d->dead = true;
	for (struct fp_dialer **pp = &p->dialers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	d->next = p->grave_dialers;
	p->grave_dialers = d;
	p->st.dialers_open--;
	pthread_cond_broadcast(&p->cond);
}

void
wf_fdproxy_stop(wf_fdproxy_t *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	fp_kick(p);
	pthread_join(p->thread, NULL);
	while (p->bridges != NULL)
		fp_bridge_close(p, p->bridges);
	while (p->dialers != NULL)
		fp_dialer_close(p, p->dialers);
	while (p->serves != NULL) {
		struct fp_serve *sv = p->serves;
		p->serves = sv->next;
		close(sv->fd);
		free(sv);
	}
	fp_bury(p);
	close(p->ep);
	close(p->kick);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int
wf_fdproxy_serve(wf_fdproxy_t *p, int listen_fd, const char *backend_path)
{
	struct sockaddr_un sa;
	if (p == NULL || listen_fd < 0)
		return -EINVAL;
	if (fp_addr(backend_path, &sa) < 0) {
		wf_set_error("fdproxy: backend path %s is empty or too long", backend_path ? backend_path : "(null)");
		return -ENAMETOOLONG;
	}
	struct fp_serve *sv = calloc(1, sizeof(*sv));
	if (sv == NULL)
		return -ENOMEM;
	sv->fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
	if (sv->fd < 0 || fcntl(sv->fd, F_SETFL, fcntl(sv->fd, F_GETFL) | O_NONBLOCK) < 0) {
		int e = errno;
		wf_set_error("fdproxy: serve on fd %d: %s", listen_fd, strerror(e));
		if (sv->fd >= 0)
			close(sv->fd);
		free(sv);
		return -e;
	}
	snprintf(sv->backend, sizeof(sv->backend), "%s", backend_path);
	sv->h = (struct fp_handle){ FP_SERVE, sv };
	pthread_mutex_lock(&p->lock);
	sv->next = p->serves;
	p->serves = sv;
	fp_listener_interest(p, sv->fd, &sv->h, &sv->registered, true);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int
wf_fdproxy_dial(wf_fdproxy_t *p, const char *peer_path, char *local_path_out, size_t len)
{
	struct sockaddr_un sa;
	if (p == NULL || local_path_out == NULL)
		return -EINVAL;
	if (fp_addr(peer_path, &sa) < 0) {
		wf_set_error("fdproxy: peer path %s is empty or too long", peer_path ? peer_path : "(null)");
		return -ENAMETOOLONG;
	}
	struct fp_dialer *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->h = (struct fp_handle){ FP_DIALER, d };
	snprintf(d->peer, sizeof(d->peer), "%s", peer_path);
	pthread_mutex_lock(&p->lock);
	d->id = (int)(++p->next_id & 0x7fffffff);
	if (d->id == 0)
		d->id = (int)(++p->next_id & 0x7fffffff);
	snprintf(d->path, sizeof(d->path), "%s/d-%d.sock", p->dir, d->id);
	int rc = 0;
	if (strlen(d->path) + 1 > len) {
		rc = -ENAMETOOLONG;
		wf_set_error("fdproxy: no room for the dialer's path");
		goto fail;
	}
	d->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	fp_addr(d->path, &sa);
	unlink(d->path);
	if (d->fd < 0 || bind(d->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(d->fd, 128) < 0) {
		rc = -errno;
		wf_set_error("fdproxy: listen on %s: %s", d->path, strerror(-rc));
		if (d->fd >= 0) {
			close(d->fd);
			unlink(d->path);
		}
		goto fail;
	}
	d->next = p->dialers;
	p->dialers = d;
	p->st.dialers_open++;
	fp_listener_interest(p, d->fd, &d->h, &d->registered, true);
	snprintf(local_path_out, len, "%s", d->path);
	rc = d->id;
	pthread_mutex_unlock(&p->lock);
	return rc;
fail:
	pthread_mutex_unlock(&p->lock);
	free(d);
	return rc;
}

static struct fp_dialer *
fp_dialer_find(struct wf_fdproxy *p, int id)
{
	for (struct fp_dialer *d = p->dialers; d != NULL; d = d->next)
		if (d->id == id)
			return d;
	return NULL;
}

int
wf_fdproxy_undial(wf_fdproxy_t *p, int dialer)
{
	pthread_mutex_lock(&p->lock);
	struct fp_dialer *d = fp_dialer_find(p, dialer);
	if (d != NULL)
		fp_dialer_close(p, d);
	pthread_mutex_unlock(&p->lock);
	if (d == NULL) {
		wf_set_error("fdproxy: no dialer %d", dialer);
		return -ENOENT;
	}
	return 0;
}

/* The fd set a caller means: a served connection by its bound path, or a dialer. */
static struct fp_fdset *
fp_lookup(struct wf_fdproxy *p, const char *bridge_path, int dialer, struct fp_bridge **bp)
{
	*bp = NULL;
	if (bridge_path == NULL) {
		struct fp_dialer *d = fp_dialer_find(p, dialer);
		return d != NULL ? &d->set : NULL;
	}
	for (struct fp_bridge *b = p->bridges; b != NULL; b = b->next) {
		if (b->dialer == NULL && strcmp(b->path, bridge_path) == 0) {
			*bp = b;
			return &b->own;
		}
	}
	return NULL;
}

static struct timespec
fp_deadline(int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (timeout_ms < 0)
		timeout_ms = 0;
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

int
wf_fdproxy_take(wf_fdproxy_t *p, const char *bridge_path, int dialer, uint64_t dev, uint64_t ino, int timeout_ms)
{
	struct timespec deadline = fp_deadline(timeout_ms);
	struct fp_bridge *b;
	int rc;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct fp_fdset *s = fp_lookup(p, bridge_path, dialer, &b);
		if (s == NULL || p->stop) {
			rc = -ENOENT;
			wf_set_error("fdproxy: no connection %s", bridge_path ? bridge_path : "of that dialer");
			break;
		}
		struct fp_held *h = fp_find(s, dev, ino);
		if (h != NULL) {
			/* The fd goes to the caller: the connection no longer holds it, so a
			 * long-lived connection (the NSMgr's) passing a new namespace with every
			 * request never reaches the cap. A later send of the same file is a new
			 * fd again. */
			rc = h->fd;
			*h = s->held[--s->n_held];
			p->st.fds_held--;
			p->st.fds_taken++;
			break;
		}
		if (pthread_cond_timedwait(&p->cond, &p->lock, &deadline) == ETIMEDOUT) {
			rc = -ETIMEDOUT;
			wf_set_error("fdproxy: no fd inode://%llu/%llu arrived in %d ms", (unsigned long long)dev,
				     (unsigned long long)ino, timeout_ms);
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int
wf_fdproxy_send(wf_fdproxy_t *p, const char *bridge_path, int dialer, int fd)
{
	struct fp_bridge *b;
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (copy < 0) {
		int e = errno;
		wf_set_error("fdproxy: copy fd %d: %s", fd, strerror(e));
		return -e;
	}
	int rc = 0;
	pthread_mutex_lock(&p->lock);
	struct fp_fdset *s = fp_lookup(p, bridge_path, dialer, &b);
	if (s == NULL) {
		rc = -ENOENT;
		wf_set_error("fdproxy: no connection %s", bridge_path ? bridge_path : "of that dialer");
	} else if (s->n_queued >= WF_FDPROXY_MAX_QUEUED) {
		rc = -ENOBUFS;
		wf_set_error("fdproxy: %d fds already wait to be sent", s->n_queued);
	} else {
		s->queued[s->n_queued++] = copy;
	}
	pthread_mutex_unlock(&p->lock);
	if (rc < 0)
		close(copy);
	else
		fp_kick(p);
	return rc;
}

int
wf_fdproxy_flush(wf_fdproxy_t *p, const char *bridge_path, int dialer, int timeout_ms)
{
	struct timespec deadline = fp_deadline(timeout_ms);
	struct fp_bridge *b;
	int rc;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct fp_fdset *s = fp_lookup(p, bridge_path, dialer, &b);
		if (s == NULL || p->stop) {
			rc = -ENOENT;
			wf_set_error("fdproxy: no connection %s", bridge_path ? bridge_path : "of that dialer");
			break;
		}
		if (s->n_queued == 0) {
			rc = 0;
			break;
		}
		if (pthread_cond_timedwait(&p->cond, &p->lock, &deadline) == ETIMEDOUT) {
			rc = -ETIMEDOUT;
			wf_set_error("fdproxy: %d fds still queued after %d ms (no bytes went to the peer)", s->n_queued,
				     timeout_ms);
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void
wf_fdproxy_get_stats(wf_fdproxy_t *p, struct wf_fdproxy_stats *out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->st;
	pthread_mutex_unlock(&p->lock);
}
