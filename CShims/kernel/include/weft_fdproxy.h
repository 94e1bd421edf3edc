/*
 * weft_fdproxy.h: file descriptors over gRPC's unix sockets, the way NSM's
 * grpcfd passes them (SCM_RIGHTS riding on the connection's own bytes).
 *
 * grpc-swift on NIO cannot send or receive ancillary data, so this proxy sits
 * between a unix-socket peer (NSMgr, an NSC, a registry) and NIO. It copies
 * the bytes both ways untouched (HTTP/2, TLS: it never parses them, never adds
 * a byte) and moves the file descriptors aside:
 *
 *  - fds that arrive from the peer are kept per connection, keyed by their
 *    inode identity (st_dev, st_ino), until someone takes a copy with
 *    wf_fdproxy_take() or the connection ends;
 *  - fds queued with wf_fdproxy_send() ride on the next bytes written to the
 *    peer (grpcfd does not care which bytes carry them).
 *
 * Serve: the product's public listening socket is handed over; each peer that
 * connects is bridged to a new connection to the gRPC server's internal
 * socket, made from a client socket bound to <private_dir>/b-<n>.sock. NIO
 * reports that path as the connection's remote peer ("unix:<path>", see
 * grpc-swift-nio-transport's Channel+AddressInfo.swift), so a handler finds
 * its connection's fds by the remotePeer it sees.
 *
 * Dial: the proxy listens on <private_dir>/d-<n>.sock; the gRPC client
 * connects there and each connection is bridged to a new connection to the
 * peer. Fds are kept and queued per dialer; queued fds go out on its newest
 * connection.
 *
 * Threads: one thread per wf_fdproxy (started and stopped by the caller of
 * wf_fdproxy_start / wf_fdproxy_stop) does all the copying with epoll and
 * never blocks. Every other call may come from any thread, concurrently;
 * take and flush block the caller (bounded by their timeout), nothing else
 * does. Nothing here touches the dataplane.
 *
 * Errors: 0 (or an fd / id) or -errno; the reason is in wf_last_error()
 * (weft_kernel.h) on the calling thread.
 */
#ifndef WEFT_FDPROXY_H
#define WEFT_FDPROXY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_fdproxy wf_fdproxy_t;

/* Limits: fds one connection (or dialer) may hold; fds one may have queued. */
#define WF_FDPROXY_MAX_HELD 64
#define WF_FDPROXY_MAX_QUEUED 64

/* Counters since start. Every field only grows except the *_open ones. */
struct wf_fdproxy_stats {
	uint64_t bridges_open;     /* connections being bridged now */
	uint64_t bridges_total;    /* bridged since start */
	uint64_t dialers_open;
	uint64_t fds_held;         /* received fds held now */
	uint64_t fds_received;     /* fds that arrived from peers (all of them) */
	uint64_t fds_duplicate;    /* closed: an fd with the same inode was already held */
	uint64_t fds_over_cap;     /* closed: the connection already held WF_FDPROXY_MAX_HELD */
	uint64_t fds_unclaimed;    /* closed when their connection ended, never taken */
	uint64_t fds_taken;        /* copies handed out by wf_fdproxy_take */
	uint64_t fds_sent;         /* queued fds that went out to a peer */
	uint64_t fds_send_dropped; /* queued fds closed unsent (connection ended, kernel refused) */
	uint64_t ctrunc;           /* messages whose ancillary data was cut (the kernel closed the rest) */
	uint64_t connect_failed;   /* bridges that could not reach the other end */
	uint64_t accept_refused;   /* connections refused (too many bridges, out of fds) */
	uint64_t bytes_from_peers; /* bytes copied from unix peers to NIO */
	uint64_t bytes_to_peers;   /* bytes copied from NIO to unix peers */
};

/*
 * Start the proxy and its thread. private_dir must be an existing directory
 * that only its owner may enter (mode & 077 == 0): bridge sockets are made
 * there and their paths are what the gRPC server trusts as keys. At most 78
 * bytes long: a sockaddr_un must hold it and "/b-<20 digits>.sock". Sockets
 * named like the proxy's own (b-<n>.sock, d-<n>.sock) that an earlier run left
 * there are removed.
 */
int wf_fdproxy_start(const char *private_dir, wf_fdproxy_t **out);
/* Stop the thread, close every connection and fd, unlink every socket made in
 * private_dir. No other call on p may be running or follow. */
void wf_fdproxy_stop(wf_fdproxy_t *p);

/*
 * Serve: accept peers on listen_fd (a bound, listening unix stream socket;
 * the proxy keeps its own dup and makes the socket non-blocking, which the
 * caller's fd shares) and bridge each to backend_path.
 */
int wf_fdproxy_serve(wf_fdproxy_t *p, int listen_fd, const char *backend_path);

/*
 * Dial: listen on a new socket in private_dir (its path written to
 * local_path_out) and bridge every connection made there to peer_path (a
 * socket path, or /proc/self/fd/N of an O_PATH fd of one: it is resolved for
 * every new connection, so that fd stays open until undial). Returns the
 * dialer's id (> 0).
 */
int wf_fdproxy_dial(wf_fdproxy_t *p, const char *peer_path, char *local_path_out, size_t len);
/* Close the dialer's socket and connections; its fds are closed. */
int wf_fdproxy_undial(wf_fdproxy_t *p, int dialer);

/*
 * Take the fd (O_CLOEXEC, the caller's to close) with identity (dev, ino)
 * received on the served connection whose bound path is bridge_path, or
 * (bridge_path NULL) on the dialer's connections. Waits up to timeout_ms for
 * it to arrive. The connection no longer holds it afterwards (a long-lived
 * connection that passes many files never reaches the cap): the same file is
 * taken again only if the peer sends it again.
 * -ETIMEDOUT: not arrived; -ENOENT: no such connection or dialer (or it ended).
 */
int wf_fdproxy_take(wf_fdproxy_t *p, const char *bridge_path, int dialer, uint64_t dev, uint64_t ino,
		    int timeout_ms);

/*
 * Queue a copy of fd to ride on the next bytes written to the peer of the
 * served connection bridge_path, or (bridge_path NULL) of the dialer's newest
 * connection. -ENOBUFS when WF_FDPROXY_MAX_QUEUED are already waiting.
 */
int wf_fdproxy_send(wf_fdproxy_t *p, const char *bridge_path, int dialer, int fd);
/* Wait up to timeout_ms until nothing is queued to send there: 0, or
 * -ETIMEDOUT (no bytes went to the peer meanwhile), -ENOENT. */
int wf_fdproxy_flush(wf_fdproxy_t *p, const char *bridge_path, int dialer, int timeout_ms);

void wf_fdproxy_get_stats(wf_fdproxy_t *p, struct wf_fdproxy_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_FDPROXY_H */
