/*
 * memif.c: memif interfaces, Weft's own driver: the data path (this part)
 * and the control channel (memif_ctl.c). No DPDK port, no EAL interrupt
 * thread: a pod that connects and closes, sends garbage or points
 * descriptors anywhere costs itself its connection, never the node.
 *
 * Data path. A worker reads a ring only while the interface's queue is up
 * (set by the events thread after the regions are mapped and checked). Every
 * value a peer can write is read once and checked before it is used: ring
 * indices may not move by more than the ring holds, a descriptor must lie
 * inside its region, a frame may not chain over more than
 * WF_MEMIF_MAX_CHAIN descriptors or WF_MEMIF_MAX_FRAME bytes. A peer that
 * breaks a rule gets nothing more from this ring: the worker records the
 * fault, the events thread disconnects the peer with the reason and counts
 * it, and the interface waits for a good peer.
 *
 * Frames are copied between the shared buffers and mbufs in both directions
 * (a peer's memory never reaches another interface). Frames longer than one
 * buffer are chained (MEMIF_DESC_FLAG_NEXT) both ways; a chain is published
 * only whole, and flags are always written (never left from an earlier use
 * of the slot). The receiver of a ring keeps MEMIF_RING_FLAG_MASK_INT set
 * while it polls; a producer signals the ring's eventfd when the receiver
 * asked for interrupts.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <rte_memcpy.h>

#include "ports/memif.h"

static inline void
wf_memif_fault(volatile uint32_t *fault, enum wf_memif_fault f)
{
	if (*fault == WF_MEMIF_OK)
		__atomic_store_n(fault, f, __ATOMIC_RELEASE);
}

/* Copy `len` bytes from shared memory to the tail of an mbuf (chain). */
static inline int
wf_memif_copy_in(struct rte_mbuf *m, struct rte_mempool *pool, const uint8_t *src, uint32_t len)
{
	if (likely(m->nb_segs == 1 && len <= rte_pktmbuf_tailroom(m))) {
		/* The usual frame: one buffer into one mbuf. */
		rte_memcpy(rte_pktmbuf_mtod_offset(m, uint8_t *, m->data_len), src, len);
		m->data_len = (uint16_t)(m->data_len + len);
		m->pkt_len += len;
		return 0;
	}
	return wf_mbuf_put(m, pool, src, len);
}

static uint16_t
wf_memif_rx(void *arg, struct rte_mbuf **pkts, uint16_t n)
{
	struct wf_memif_rxq *q = arg;
	if (!__atomic_load_n(&q->up, __ATOMIC_ACQUIRE) || unlikely(q->fault != WF_MEMIF_OK))
		return 0;
	struct wf_memif_ring *r = q->r;
	struct memif_ring *ring = r->ring;
	const uint16_t size = (uint16_t)(r->mask + 1);
	uint16_t cur = r->last;
	/* The producer's index: the client's head on C2S, the server's tail on S2C. */
	const uint16_t end = r->client ? __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE)
				       : __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
	uint16_t avail = (uint16_t)(end - cur);
	if (avail == 0)
		return 0;
	if (unlikely(avail > size)) {
		wf_memif_fault(&q->fault, WF_MEMIF_BAD_INDEX);
		wf_rxq_drop(&q->b, WF_DROP_PEER_BAD_DESC, 0);
		return 0;
	}
	/* One mbuf per frame, taken from the pool in one go (frames are at most avail). */
	struct rte_mbuf *mb[WF_MAX_BURST];
	uint16_t nb = avail < n ? avail : n;
	if (unlikely(rte_pktmbuf_alloc_bulk(q->pool, mb, nb) != 0)) {
		for (nb = 0; nb < (avail < n ? avail : n); nb++)
			if ((mb[nb] = rte_pktmbuf_alloc(q->pool)) == NULL)
				break; /* frames stay in the ring until there are mbufs */
	}
	uint16_t k = 0, taken = 0;
	while (taken < nb && avail > 0) {
		struct rte_mbuf *m = mb[taken++];
		uint16_t used = 0;
		uint32_t total = 0;
		bool complete = false, bad = false;
		while (used < avail) {
			const volatile struct memif_desc *d = &ring->desc[(uint16_t)(cur + used) & r->mask];
			const uint16_t flags = d->flags;
			const uint32_t len = d->length;
			const uint8_t *src;
			used++;
			if (r->client) {
				/* Our own buffer for this slot, whatever the descriptor says. */
				if (len > r->buf_size) {
					bad = true;
					break;
				}
				src = r->own_base + (size_t)((uint16_t)(cur + used - 1) & r->mask) * r->buf_size;
			} else {
				const uint16_t region = d->region;
				const uint32_t off = d->offset;
				if (region >= r->n_regions || (uint64_t)off + len > r->regions[region].size) {
					bad = true;
					break;
				}
				src = r->regions[region].base + off;
			}
			total += len;
			if (total > WF_MEMIF_MAX_FRAME || used > WF_MEMIF_MAX_CHAIN) {
				bad = true;
				break;
			}
			if (len > 0 && unlikely(wf_memif_copy_in(m, q->pool, src, len) != 0)) {
				/* Pool exhausted mid-frame: the frame is dropped whole once all of
				 * it is in the ring. A chain whose end is not published yet stays
				 * for a later poll: consuming half of it made its rest look like a
				 * frame of its own (found by review of fuzz_memif's model). */
				rte_pktmbuf_free(m);
				m = NULL;
				uint16_t u = used, fl = flags;
				while ((fl & MEMIF_DESC_FLAG_NEXT) && u < avail) {
					if (u >= WF_MEMIF_MAX_CHAIN) {
						bad = true;
						break;
					}
					fl = ring->desc[(uint16_t)(cur + u) & r->mask].flags;
					u++;
				}
				used = bad ? (uint16_t)(WF_MEMIF_MAX_CHAIN + 1) : u;
				if (!bad && !(fl & MEMIF_DESC_FLAG_NEXT)) {
					wf_rxq_drop(&q->b, WF_DROP_NO_MBUF, total);
					complete = true;
				}
				break;
			}
			if (!(flags & MEMIF_DESC_FLAG_NEXT)) {
				complete = true;
				break;
			}
		}
		if (unlikely(bad)) {
			rte_pktmbuf_free(m);
			wf_memif_fault(&q->fault, used > WF_MEMIF_MAX_CHAIN || total > WF_MEMIF_MAX_FRAME
							  ? WF_MEMIF_BAD_CHAIN : WF_MEMIF_BAD_DESC);
			wf_rxq_drop(&q->b, WF_DROP_PEER_BAD_DESC, total);
			avail = 0;
			break;
		}
		if (!complete) {
			rte_pktmbuf_free(m);
			if (used == size) {
				/* A chain as long as the ring can never be completed. */
				wf_memif_fault(&q->fault, WF_MEMIF_BAD_CHAIN);
				wf_rxq_drop(&q->b, WF_DROP_PEER_BAD_DESC, total);
			}
			/* Otherwise the rest of the chain is not published yet. */
			break;
		}
		if (unlikely(used > 1) && !r->client)
			/* A chain's NEXT flags cleared before its slots go back: a producer
			 * that leaves the first flag of a slot as it was (DPDK 22.11's TX)
			 * never chains a later small frame onto the next. */
			for (uint16_t j = 0; j + 1 < used; j++)
				ring->desc[(uint16_t)(cur + j) & r->mask].flags = 0;
		cur = (uint16_t)(cur + used);
		avail = (uint16_t)(avail - used);
		if (m == NULL)
			continue;
		if (unlikely(total < RTE_ETHER_HDR_LEN && !r->ip_mode)) {
			wf_rxq_drop(&q->b, WF_DROP_RUNT, total);
			rte_pktmbuf_free(m);
			continue;
		}
		m->port = q->b.port;
		pkts[k++] = m;
	}
	if (cur != r->last) {
		if (r->client) {
			/* Post the consumed slots again: our buffers, full size, no flags. */
			uint16_t post = r->post;
			const uint16_t want = (uint16_t)(cur + size);
			for (; post != want; post++) {
				volatile struct memif_desc *d = &ring->desc[post & r->mask];
				d->region = 0;
				d->offset = r->own_off + (uint32_t)(post & r->mask) * r->buf_size;
				d->length = r->buf_size;
				d->flags = 0;
			}
			r->post = post;
			__atomic_store_n(&ring->head, post, __ATOMIC_RELEASE);
		} else {
			__atomic_store_n(&ring->tail, cur, __ATOMIC_RELEASE);
		}
		r->last = cur;
	}
	if (taken < nb)
		rte_pktmbuf_free_bulk(mb + taken, nb - taken);
	return k;
}

/* The shared buffer of one descriptor we are about to fill, or NULL when the peer made it invalid. */
static inline uint8_t *
wf_memif_tx_buf(struct wf_memif_ring *r, volatile struct memif_desc *d, uint16_t slot, uint32_t *cap)
{
	if (r->client) {
		d->region = 0;
		d->offset = r->own_off + (uint32_t)(slot & r->mask) * r->buf_size;
		*cap = r->buf_size;
		return r->own_base + (size_t)(slot & r->mask) * r->buf_size;
	}
	const uint16_t region = d->region;
	const uint32_t off = d->offset, len = d->length;
	if (region >= r->n_regions || (uint64_t)off + len > r->regions[region].size || len == 0)
		return NULL;
	*cap = len;
	return r->regions[region].base + off;
}

static uint16_t
wf_memif_tx(void *arg, struct rte_mbuf **pkts, uint16_t n)
{
	struct wf_memif_txq *q = arg;
	if (!__atomic_load_n(&q->up, __ATOMIC_ACQUIRE) || unlikely(q->fault != WF_MEMIF_OK)) {
		q->tb.short_reason = q->fault != WF_MEMIF_OK ? WF_DROP_PEER_BAD_DESC : WF_DROP_LINK_DOWN;
		return 0;
	}
	struct wf_memif_ring *r = q->r;
	if (r->shared)
		rte_spinlock_lock(&r->lock);
	struct memif_ring *ring = r->ring;
	const uint16_t size = (uint16_t)(r->mask + 1);
	uint16_t slot = r->last, free;
	if (r->client) {
		/* C2S: we produce at head; the server has consumed up to tail. */
		uint16_t used = (uint16_t)(slot - __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE));
		free = used > size ? 0 : (uint16_t)(size - used);
		if (used > size)
			wf_memif_fault(&q->fault, WF_MEMIF_BAD_INDEX);
	} else {
		/* S2C: the client has posted buffers up to head; we fill from tail. */
		free = (uint16_t)(__atomic_load_n(&ring->head, __ATOMIC_ACQUIRE) - slot);
		if (free > size) {
			wf_memif_fault(&q->fault, WF_MEMIF_BAD_INDEX);
			free = 0;
		}
	}
	uint16_t k = 0;
	for (; k < n; k++) {
		struct rte_mbuf *m = pkts[k];
		const uint16_t first = slot;
		uint16_t left_slots = free;
		const struct rte_mbuf *seg = m;
		uint32_t seg_off = 0;
		bool ok = true;
		for (;;) {
			if (left_slots == 0) {
				ok = false;
				break;
			}
			volatile struct memif_desc *d = &ring->desc[slot & r->mask];
			uint32_t cap;
			uint8_t *dst = wf_memif_tx_buf(r, d, slot, &cap);
			if (unlikely(dst == NULL)) {
				wf_memif_fault(&q->fault, WF_MEMIF_BAD_DESC);
				ok = false;
				break;
			}
			uint32_t put = 0;
			if (likely(seg == m && seg_off == 0 && m->nb_segs == 1 && m->data_len <= cap)) {
				/* The usual frame: one mbuf into one buffer. Only as the frame's
				 * first buffer: after a smaller one took its start, the rest is
				 * copied from where that left off (fuzz_memif: a 1,400-byte frame
				 * sent as 4 + 1,400 bytes, its start twice). */
				rte_memcpy(dst, rte_pktmbuf_mtod(m, const uint8_t *), m->data_len);
				put = m->data_len;
				seg = NULL;
			}
			while (seg != NULL && put < cap) {
				uint32_t chunk = seg->data_len - seg_off;
				if (chunk > cap - put)
					chunk = cap - put;
				rte_memcpy(dst + put, rte_pktmbuf_mtod_offset(seg, const uint8_t *, seg_off), chunk);
				put += chunk;
				seg_off += chunk;
				if (seg_off == seg->data_len) {
					seg = seg->next;
					seg_off = 0;
				}
			}
			d->length = put;
			slot++;
			left_slots--;
			if (seg == NULL) {
				d->flags = 0;
				break;
			}
			d->flags = MEMIF_DESC_FLAG_NEXT;
		}
		if (!ok) {
			slot = first; /* the frame is not published, nothing of it */
			q->tb.short_reason = q->fault != WF_MEMIF_OK ? WF_DROP_PEER_BAD_DESC : WF_DROP_TX_FULL;
			break;
		}
		free = left_slots;
	}
	if (slot != r->last) {
		__atomic_store_n(r->client ? &ring->head : &ring->tail, slot, __ATOMIC_RELEASE);
		r->last = slot;
		/* The receiver asked for interrupts: the one syscall of this path. */
		if (!(ring->flags & MEMIF_RING_FLAG_MASK_INT) && r->int_fd >= 0) {
			uint64_t one = 1;
			(void)!write(r->int_fd, &one, sizeof(one));
		}
	}
	if (r->shared)
		rte_spinlock_unlock(&r->lock);
	rte_pktmbuf_free_bulk(pkts, k);
	return k;
}

/*
 * Sleep: ask the producer to signal the ring's eventfd (MASK_INT clear), then
 * look once more so that a frame published meanwhile is not slept on. Without
 * a peer there is nothing to wait on: the events thread wakes the queue when
 * one connects.
 */
static int
wf_memif_arm(struct wf_rxq_base *b)
{
	struct wf_memif_rxq *q = (struct wf_memif_rxq *)b;
	if (!__atomic_load_n(&q->up, __ATOMIC_ACQUIRE) || q->r == NULL)
		return -1;
	struct wf_memif_ring *r = q->r;
	struct memif_ring *ring = r->ring;
	ring->flags = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	const uint16_t end = r->client ? __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE)
				       : __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
	if (end != r->last) {
		ring->flags = MEMIF_RING_FLAG_MASK_INT;
		return -EAGAIN;
	}
	return r->int_fd;
}

static void
wf_memif_disarm(struct wf_rxq_base *b)
{
	struct wf_memif_rxq *q = (struct wf_memif_rxq *)b;
	if (__atomic_load_n(&q->up, __ATOMIC_ACQUIRE) && q->r != NULL)
		q->r->ring->flags = MEMIF_RING_FLAG_MASK_INT; /* polling again */
}

int (*wf_memif_arm_fn)(struct wf_rxq_base *) = wf_memif_arm;
void (*wf_memif_disarm_fn)(struct wf_rxq_base *) = wf_memif_disarm;
wf_burst_fn wf_memif_rx_fn = wf_memif_rx;
wf_burst_fn wf_memif_tx_fn = wf_memif_tx;
