/*
 * fuzz_memif: Weft's memif data path (wf_memif_rx and wf_memif_tx, static in
 * ports/memif.c, which this file includes) against a peer that writes
 * anything it can into the memory it shares with Weft: ring indices,
 * descriptors (region, offset, length, flags) and buffer bytes, in any order
 * between Weft's bursts. A pod is hostile; this is what it controls.
 *
 * Shared memory as the control channel leaves it (memif_ctl.c): region 0
 * holds both rings (RX first). When Weft is the client, region 0 also holds
 * Weft's own buffers (RX ring's, then TX ring's). When Weft is the server the
 * peer's regions (0, and 1 and 2 when the input asks) hold whatever its
 * descriptors point at: anywhere, the rings themselves included. Every
 * region is the start of an arena allocated once, the rest of it poisoned: a
 * read or write outside the region is ASan's to report.
 *
 * Input: a mode byte (bit 0: Weft is the client; bit 1: IP mode), the ring
 * size (log2, 1..8), the first index (u16: rings start anywhere, to wrap),
 * the buffer size (client) or the sizes of the regions (server), then
 * operations until the input ends (at most 256):
 *   0  the peer writes a descriptor of the RX or TX ring
 *   1  the peer moves the RX ring's producer index (by a step, or anywhere)
 *   2  an RX burst (1..64 frames asked)
 *   3  a TX burst of 1..6 frames (lengths and first-segment lengths given)
 *   4  the peer moves the TX ring's consumer index (posts buffers / frees slots)
 *   5  the peer writes bytes into a region
 *   6  arm then disarm the RX queue (a worker going to sleep and back)
 *   7  mbufs held elsewhere: only 0..15 left in the RX pool for a while
 *
 * Invariants:
 *  - RX: what Weft returns is exactly what a model of the protocol reads
 *    from a snapshot of the shared memory (frame by frame, byte for byte:
 *    chains, runts dropped, a frame not yet whole left in the ring); the
 *    consumer index moves to where the model stops; a broken rule (index
 *    jump, descriptor outside its region, chain too long or endless) sets
 *    the fault the model expects and counts one peer-bad-desc drop; after a
 *    fault nothing more is read. A burst that ran out of mbufs is checked
 *    for its frames' integrity only (the model does not follow the pool).
 *  - TX: as many frames taken as the ring's free slots and their rooms allow,
 *    the fault a broken rule must set (index jump, a descriptor outside its
 *    region); a refused frame publishes nothing; the producer index moves by the
 *    descriptors used; each accepted frame is in the ring whole (lengths,
 *    NEXT flags, bytes) when the buffers it went into do not overlap each
 *    other or the rings (a peer may make them overlap: then only the index
 *    and the lengths are checked); after a fault nothing more is sent.
 *  - Every returned mbuf passes rte_mbuf_check; every mbuf is back in its
 *    pool after the input.
 */
#include <inttypes.h>

#pragma clang diagnostic ignored "-Wunused-function"
#include "common.h"

#include "ports/memif.c"

#define MZ_MAX_LOG2 8
#define MZ_MAX_REGIONS 3
#define MZ_MAX_OPS 256
#define MZ_RX_POOL 96

static struct rte_mempool *mz_pool;

struct mz_rd {
	const uint8_t *p;
	size_t n;
};

static uint32_t
mz_u8(struct mz_rd *r)
{
	if (r->n == 0)
		return 0;
	r->n--;
	return *r->p++;
}

static uint32_t
mz_u16(struct mz_rd *r)
{
	uint32_t a = mz_u8(r);
	return a | mz_u8(r) << 8;
}

static uint32_t
mz_u32(struct mz_rd *r)
{
	uint32_t a = mz_u16(r);
	return a | mz_u16(r) << 16;
}

/* The shared memory of one input. */
static struct {
	bool client, ip;
	uint8_t log2;
	uint16_t size;
	uint32_t buf_size; /* client: Weft's own buffers */
	struct wf_memif_region regions[MZ_MAX_REGIONS];
	uint16_t n_regions;
	struct memif_ring *rx_ring, *tx_ring;
	struct wf_memif_ring rx, tx;
	struct wf_memif_rxq rxq;
	struct wf_memif_txq txq;
	struct wf_if_counters ic;
	uint64_t wdrops[WF_DROP_MAX];
	struct rte_mbuf *held[MZ_RX_POOL];
	unsigned n_held;
} mz;

/* The regions' memory: arenas of the largest size an input can ask for,
 * allocated once (a fresh heap block per input costs page faults and zeroing
 * of up to a megabyte); each input's region is the start of its arena, the
 * rest poisoned for ASan. The model's copies likewise. */
static uint8_t *mz_arena[MZ_MAX_REGIONS], *mz_copy[MZ_MAX_REGIONS];
static uint64_t mz_arena_size[MZ_MAX_REGIONS];
/* TX frames' bytes: a pattern, each frame from its own offset in it. */
#define MZ_TX_MAX 9100
static uint8_t mz_pattern[MZ_TX_MAX + 256];

/* What the model expects of an RX burst. */
#define MZ_FRAME_BYTES (WF_MEMIF_MAX_FRAME + 2048)
static struct {
	uint16_t n, last;
	uint32_t fault, runts, bad;
	bool unfinished; /* the model stopped at a chain whose end is not published yet */
	uint32_t len[WF_MAX_BURST];
	uint8_t *data[WF_MAX_BURST];
} mz_model;

static void
mz_release(void)
{
	for (unsigned i = 0; i < mz.n_held; i++)
		rte_pktmbuf_free(mz.held[i]);
	mz.n_held = 0;
}

static const uint8_t *
mz_translate(const uint8_t *p)
{
	for (uint16_t i = 0; i < mz.n_regions; i++)
		if (p >= mz.regions[i].base && p < mz.regions[i].base + mz.regions[i].size)
			return mz_copy[i] + (p - mz.regions[i].base);
	fz_fail("a pointer outside every region");
}

/*
 * The protocol read from a snapshot: memif.h's rules for the consumer of a
 * ring, written from the protocol, not from memif.c. Frames considered: at
 * most what the ring holds, what was asked and what the pool could give.
 */
static void
mz_model_rx(uint16_t asked)
{
	for (uint16_t i = 0; i < mz.n_regions; i++)
		memcpy(mz_copy[i], mz.regions[i].base, mz.regions[i].size);
	struct wf_memif_ring *r = &mz.rx;
	struct memif_ring *ring = (struct memif_ring *)mz_translate((const uint8_t *)r->ring);
	mz_model.n = 0, mz_model.fault = WF_MEMIF_OK, mz_model.runts = 0, mz_model.bad = 0, mz_model.unfinished = false;
	uint16_t cur = r->last;
	mz_model.last = cur;
	if (mz.rxq.fault != WF_MEMIF_OK) {
		mz_model.fault = mz.rxq.fault;
		return;
	}
	const uint16_t end = r->client ? ring->tail : ring->head;
	uint16_t avail = (uint16_t)(end - cur);
	if (avail == 0)
		return;
	if (avail > mz.size) {
		mz_model.fault = WF_MEMIF_BAD_INDEX;
		mz_model.bad = 1;
		return;
	}
	unsigned frames = avail < asked ? avail : asked;
	unsigned free_mbufs = rte_mempool_avail_count(mz_pool);
	if (frames > free_mbufs)
		frames = free_mbufs;
	for (unsigned taken = 0; taken < frames && avail > 0; taken++) {
		uint16_t used = 0;
		uint32_t total = 0;
		bool complete = false, bad = false;
		uint8_t *out = mz_model.data[mz_model.n];
		while (used < avail) {
			struct memif_desc *d = &ring->desc[(uint16_t)(cur + used) & r->mask];
			const uint16_t flags = d->flags;
			const uint32_t len = d->length;
			const uint8_t *src;
			used++;
			if (r->client) {
				if (len > r->buf_size) {
					bad = true;
					break;
				}
				src = mz_translate(r->own_base) + (size_t)((uint16_t)(cur + used - 1) & r->mask) * r->buf_size;
			} else {
				if (d->region >= mz.n_regions || (uint64_t)d->offset + len > mz.regions[d->region].size) {
					bad = true;
					break;
				}
				src = mz_copy[d->region] + d->offset;
			}
			total += len;
			if (total > WF_MEMIF_MAX_FRAME || used > WF_MEMIF_MAX_CHAIN) {
				bad = true;
				break;
			}
			memcpy(out + total - len, src, len);
			if (!(flags & MEMIF_DESC_FLAG_NEXT)) {
				complete = true;
				break;
			}
		}
		if (bad) {
			mz_model.fault = used > WF_MEMIF_MAX_CHAIN || total > WF_MEMIF_MAX_FRAME ? WF_MEMIF_BAD_CHAIN
												  : WF_MEMIF_BAD_DESC;
			mz_model.bad = 1;
			break;
		}
		if (!complete) {
			if (used == mz.size) {
				mz_model.fault = WF_MEMIF_BAD_CHAIN;
				mz_model.bad = 1;
			} else {
				mz_model.unfinished = true;
			}
			break;
		}
		/* The consumer clears a chain's NEXT flags before the slots go back
		 * (memif.c): a later buffer may be those very bytes. */
		if (used > 1 && !r->client)
			for (uint16_t j = 0; j + 1 < used; j++)
				ring->desc[(uint16_t)(cur + j) & r->mask].flags = 0;
		cur = (uint16_t)(cur + used);
		avail = (uint16_t)(avail - used);
		if (total < RTE_ETHER_HDR_LEN && !r->ip_mode) {
			mz_model.runts++;
			continue;
		}
		mz_model.len[mz_model.n++] = total;
	}
	mz_model.last = cur;
}

static void
mz_rx(uint16_t asked)
{
	mz_model_rx(asked);
	struct wf_if_counters before = mz.ic;
	const uint16_t last_before = mz.rx.last;
	const uint64_t failures_before = fz_dequeue_failures;
	struct rte_mbuf *pkts[WF_MAX_BURST];
	const uint16_t k = wf_memif_rx(&mz.rxq, pkts, asked);
	FZ_CHECK(k <= asked, "RX returned %u frames for %u asked", k, asked);
	const uint64_t no_mbuf = mz.ic.drops[WF_DROP_NO_MBUF] - before.drops[WF_DROP_NO_MBUF];
	/* The pool ran dry (a frame dropped, or a chain left for later): the model does not follow the pool. */
	const bool dry = no_mbuf > 0 || fz_dequeue_failures != failures_before;
	for (uint16_t i = 0; i < k; i++) {
		const char *why = NULL;
		FZ_CHECK(rte_mbuf_check(pkts[i], 1, &why) == 0, "RX frame %u: %s", i, why);
		FZ_CHECK(pkts[i]->pkt_len <= WF_MEMIF_MAX_FRAME, "RX frame of %u bytes", pkts[i]->pkt_len);
		FZ_CHECK(mz.ip || pkts[i]->pkt_len >= RTE_ETHER_HDR_LEN, "a runt of %u bytes returned", pkts[i]->pkt_len);
		FZ_CHECK(pkts[i]->port == mz.rxq.b.port, "RX frame on port %u", pkts[i]->port);
	}
	/* Dry or not, the consumer never passes a chain that is not whole yet: half a
	 * chain consumed makes its rest a frame of its own. (A frame dropped for want of
	 * mbufs is skipped without reading its descriptors' regions, so a dry burst may
	 * pass a descriptor the model stopped at as broken.) */
	if (mz_model.unfinished || !dry)
		FZ_CHECK((uint16_t)(mz.rx.last - last_before) <= (uint16_t)(mz_model.last - last_before),
		 "consumer moved %u slots, past the model's %u", (uint16_t)(mz.rx.last - last_before),
		 (uint16_t)(mz_model.last - last_before));
	if (!dry) {
		FZ_CHECK(mz.rxq.fault == mz_model.fault, "fault %u, the model's %u", mz.rxq.fault, mz_model.fault);
		FZ_CHECK(mz.rx.last == mz_model.last, "consumer at %u, the model's at %u", mz.rx.last, mz_model.last);
		FZ_CHECK(k == mz_model.n, "RX returned %u frames, the model %u", k, mz_model.n);
		for (uint16_t i = 0; i < k; i++) {
			FZ_CHECK(pkts[i]->pkt_len == mz_model.len[i], "RX frame %u: %u bytes, the model's %u", i,
				 pkts[i]->pkt_len, mz_model.len[i]);
			uint32_t off = 0;
			for (const struct rte_mbuf *s = pkts[i]; s != NULL; s = s->next) {
				FZ_CHECK(memcmp(rte_pktmbuf_mtod(s, const uint8_t *), mz_model.data[i] + off, s->data_len) == 0,
					 "RX frame %u differs from the ring's bytes at %u", i, off);
				off += s->data_len;
			}
		}
		FZ_CHECK(mz.ic.drops[WF_DROP_RUNT] - before.drops[WF_DROP_RUNT] == mz_model.runts, "runts counted %" PRIu64
			 ", the model's %u", mz.ic.drops[WF_DROP_RUNT] - before.drops[WF_DROP_RUNT], mz_model.runts);
		FZ_CHECK(mz.ic.drops[WF_DROP_PEER_BAD_DESC] - before.drops[WF_DROP_PEER_BAD_DESC] == mz_model.bad,
			 "peer-bad-desc drops %" PRIu64 ", the model's %u",
			 mz.ic.drops[WF_DROP_PEER_BAD_DESC] - before.drops[WF_DROP_PEER_BAD_DESC], mz_model.bad);
	}
	/* The consumer gave the slots back: the server's tail, the client's posted buffers. */
	if (mz.rx.last != last_before) {
		if (mz.client)
			FZ_CHECK(mz.rx_ring->head == (uint16_t)(mz.rx.last + mz.size), "client RX: %u posted, consumer at %u",
				 mz.rx_ring->head, mz.rx.last);
		else
			FZ_CHECK(mz.rx_ring->tail == mz.rx.last, "server RX: tail %u, consumer at %u", mz.rx_ring->tail,
				 mz.rx.last);
	}
	FZ_CHECK(mz.ic.rx_packets - before.rx_packets == mz.ic.drops[WF_DROP_RUNT] - before.drops[WF_DROP_RUNT] +
			 mz.ic.drops[WF_DROP_PEER_BAD_DESC] - before.drops[WF_DROP_PEER_BAD_DESC] + no_mbuf,
		 "RX counted %" PRIu64 " frames that are not drops", mz.ic.rx_packets - before.rx_packets);
	rte_pktmbuf_free_bulk(pkts, k);
}

/* The buffer a TX descriptor points at, and its room, as the peer left it (NULL: none). */
static uint8_t *
mz_tx_buffer(const struct memif_desc *d, uint16_t slot, uint32_t *cap)
{
	if (mz.client) {
		*cap = mz.buf_size;
		return mz.tx.own_base + (size_t)(slot & mz.tx.mask) * mz.buf_size;
	}
	if (d->region >= mz.n_regions || (uint64_t)d->offset + d->length > mz.regions[d->region].size || d->length == 0)
		return NULL;
	*cap = d->length;
	return mz.regions[d->region].base + d->offset;
}

static bool
mz_overlap(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
	return a < b + bl && b < a + al;
}

static void
mz_tx(struct mz_rd *in)
{
	const unsigned n = 1 + mz_u8(in) % 6;
	struct rte_mbuf *pkts[8];
	const uint8_t *data[6];
	uint32_t len[6];
	for (unsigned i = 0; i < n; i++) {
		len[i] = 1 + mz_u16(in) % MZ_TX_MAX;
		const uint32_t first = mz_u16(in) % 2049;
		data[i] = mz_pattern + mz_u8(in);
		pkts[i] = fz_frame(data[i], len[i], first);
	}
	/* The slots Weft may fill, as the peer left them. */
	const uint16_t start = mz.tx.last;
	const uint16_t prod_before = mz.client ? mz.tx_ring->head : mz.tx_ring->tail;
	uint16_t room = mz.client ? (uint16_t)(mz.size - (uint16_t)(start - mz.tx_ring->tail))
				  : (uint16_t)(mz.tx_ring->head - start);
	bool distinct = true;
	const uint32_t rings = (uint32_t)(2 * memif_ring_bytes(mz.log2));
	const bool jump = room > mz.size;
	if (jump)
		room = 0;
	struct { uint8_t *p; uint32_t cap; } buf[1 << MZ_MAX_LOG2];
	for (uint16_t i = 0; i < room; i++) {
		buf[i].p = mz_tx_buffer(&mz.tx_ring->desc[(uint16_t)(start + i) & mz.tx.mask], (uint16_t)(start + i), &buf[i].cap);
		if (buf[i].p == NULL)
			continue;
		if (mz_overlap(buf[i].p, buf[i].cap, mz.regions[0].base, rings))
			distinct = false;
		for (uint16_t j = 0; j < i; j++)
			if (buf[j].p != NULL && mz_overlap(buf[i].p, buf[i].cap, buf[j].p, buf[j].cap))
				distinct = false;
	}
	/* What the ring lets through: frames whole and in order, each into as many
	 * slots as its bytes need (each slot's room as the peer left it), up to the
	 * first slot the peer made invalid (a fault) or the last free one (full). */
	uint32_t want_fault = jump ? WF_MEMIF_BAD_INDEX : WF_MEMIF_OK;
	unsigned want_k = 0;
	for (uint16_t sl = 0; !jump && want_k < n;) {
		uint32_t left = len[want_k];
		bool ok = true;
		while (left > 0) {
			if (sl == room) {
				ok = false;
				break;
			}
			if (buf[sl].p == NULL) {
				want_fault = WF_MEMIF_BAD_DESC;
				ok = false;
				break;
			}
			left -= left < buf[sl].cap ? left : buf[sl].cap;
			sl++;
		}
		if (!ok)
			break;
		want_k++;
	}
	const uint32_t fault_before = mz.txq.fault;
	const uint16_t k = wf_memif_tx(&mz.txq, pkts, (uint16_t)n);
	if (fault_before == WF_MEMIF_OK && distinct) {
		FZ_CHECK(k == want_k, "TX took %u frames, the ring had room for %u", k, want_k);
		FZ_CHECK(mz.txq.fault == want_fault, "TX fault %u, expected %u", mz.txq.fault, want_fault);
	}
	FZ_CHECK(k <= n, "TX took %u of %u", k, n);
	for (unsigned i = k; i < n; i++)
		rte_pktmbuf_free(pkts[i]);
	if (fault_before != WF_MEMIF_OK)
		FZ_CHECK(k == 0 && mz.tx.last == start, "TX after a fault: took %u", k);
	if (k < n)
		FZ_CHECK(mz.txq.tb.short_reason == (mz.txq.fault != WF_MEMIF_OK ? WF_DROP_PEER_BAD_DESC : WF_DROP_TX_FULL),
			 "TX took %u of %u, reason %u (fault %u)", k, n, mz.txq.tb.short_reason, mz.txq.fault);
	const uint16_t used = (uint16_t)(mz.tx.last - start);
	FZ_CHECK(used <= room, "TX used %u slots, %u were free", used, room);
	/* Published last, after every write: the index is Weft's. When nothing was
	 * published, a buffer the peer laid over the ring header may have changed it. */
	const uint16_t prod = mz.client ? mz.tx_ring->head : mz.tx_ring->tail;
	if (used || distinct)
		FZ_CHECK(prod == (used ? mz.tx.last : prod_before), "TX producer index %u, Weft's %u (before %u)", prod,
			 mz.tx.last, prod_before);
	FZ_CHECK((k == 0) == (used == 0), "TX took %u frames in %u slots", k, used);
	if (!distinct)
		return;
	/* Each accepted frame, whole, in order, from the ring. */
	uint16_t slot = start;
	for (unsigned i = 0; i < k; i++) {
		uint32_t off = 0;
		for (;;) {
			FZ_CHECK(slot != mz.tx.last, "TX frame %u runs past the published slots", i);
			const struct memif_desc *d = &mz.tx_ring->desc[slot & mz.tx.mask];
			const uint16_t s = (uint16_t)(slot - start);
			FZ_CHECK(buf[s].p != NULL && d->length <= buf[s].cap && off + d->length <= len[i],
				 "TX frame %u: descriptor %u has %u bytes (room %u, %u of %u written)", i, slot, d->length,
				 buf[s].cap, off, len[i]);
			FZ_CHECK(memcmp(buf[s].p, data[i] + off, d->length) == 0, "TX frame %u differs at %u", i, off);
			off += d->length;
			slot++;
			if (!(d->flags & MEMIF_DESC_FLAG_NEXT))
				break;
		}
		FZ_CHECK(off == len[i], "TX frame %u: %u bytes in the ring, %u sent", i, off, len[i]);
	}
	FZ_CHECK(slot == mz.tx.last, "TX published %u slots, the frames use %u", used, (uint16_t)(slot - start));
}

static struct memif_desc *
mz_desc(bool rx, uint16_t i)
{
	return &(rx ? mz.rx_ring : mz.tx_ring)->desc[i & (mz.size - 1)];
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_eal("fuzz_memif");
	mz_pool = rte_pktmbuf_pool_create("mz_rx", MZ_RX_POOL, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
	FZ_CHECK(mz_pool != NULL, "RX pool");
	for (unsigned i = 0; i < WF_MAX_BURST; i++) {
		mz_model.data[i] = malloc(MZ_FRAME_BYTES);
		FZ_CHECK(mz_model.data[i] != NULL, "model buffers");
	}
	/* Region 0: both rings and, for a client, its buffers (or the peer's 4 x 65535 bytes). */
	const uint64_t own = 2 * (uint64_t)(1u << MZ_MAX_LOG2) * 2048, peer = 4 * 65535u;
	mz_arena_size[0] = 2 * memif_ring_bytes(MZ_MAX_LOG2) + (own > peer ? own : peer);
	mz_arena_size[1] = mz_arena_size[2] = 1 + 65535u * 2;
	for (unsigned i = 0; i < MZ_MAX_REGIONS; i++) {
		mz_arena[i] = malloc(mz_arena_size[i]);
		mz_copy[i] = malloc(mz_arena_size[i]);
		FZ_CHECK(mz_arena[i] != NULL && mz_copy[i] != NULL, "regions");
	}
	for (unsigned j = 0; j < sizeof(mz_pattern); j++)
		mz_pattern[j] = (uint8_t)(j * 31 + (j >> 8));
	fz_pools_baseline();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mz_rd in = { data, size };
	const uint32_t mode = mz_u8(&in);
	memset(&mz, 0, sizeof(mz));
	mz.client = mode & 1;
	mz.ip = mode & 2;
	mz.log2 = (uint8_t)(1 + mz_u8(&in) % MZ_MAX_LOG2);
	mz.size = (uint16_t)(1u << mz.log2);
	const uint16_t first = (uint16_t)mz_u16(&in);
	const uint64_t ring_bytes = memif_ring_bytes(mz.log2);
	uint64_t r0 = 2 * ring_bytes;
	if (mz.client) {
		mz.buf_size = 64u << (mz_u8(&in) % 6);
		r0 += 2 * (uint64_t)mz.size * mz.buf_size;
		mz.n_regions = 1;
	} else {
		mz.n_regions = (uint16_t)(1 + mz_u8(&in) % MZ_MAX_REGIONS);
		r0 += mz_u16(&in) * 4u; /* the peer's buffers after its rings */
	}
	for (uint16_t i = 0; i < mz.n_regions; i++) {
		const uint64_t sz = i == 0 ? r0 : 1 + mz_u16(&in) * 2u;
		FZ_CHECK(sz <= mz_arena_size[i], "region %u: %" PRIu64 " bytes", i, sz);
		mz.regions[i].size = sz;
		mz.regions[i].base = mz_arena[i];
		/* Only the region's own bytes are addressable: the rest of the arena is ASan's. */
		ASAN_UNPOISON_MEMORY_REGION(mz_arena[i], sz);
		ASAN_POISON_MEMORY_REGION(mz_arena[i] + sz, mz_arena_size[i] - sz);
		memset(mz.regions[i].base, 0x5a + i, sz);
	}
	/* The rings as a connection starts them (memif_ctl.c): indices at `first`. */
	mz.rx_ring = (struct memif_ring *)mz.regions[0].base;
	mz.tx_ring = (struct memif_ring *)(mz.regions[0].base + ring_bytes);
	memset(mz.rx_ring, 0, 2 * ring_bytes);
	mz.rx_ring->cookie = mz.tx_ring->cookie = MEMIF_COOKIE;
	mz.rx_ring->head = mz.rx_ring->tail = mz.tx_ring->head = mz.tx_ring->tail = first;
	mz.rx_ring->flags = MEMIF_RING_FLAG_MASK_INT;
	struct wf_memif_ring *rings[2] = { &mz.rx, &mz.tx };
	for (int i = 0; i < 2; i++) {
		struct wf_memif_ring *r = rings[i];
		r->ring = i == 0 ? mz.rx_ring : mz.tx_ring;
		r->mask = (uint16_t)(mz.size - 1);
		r->last = first;
		r->int_fd = -1;
		r->we_produce = i == 1;
		r->client = mz.client;
		r->regions = mz.regions;
		r->n_regions = mz.n_regions;
		r->ip_mode = mz.ip;
		if (mz.client) {
			r->buf_size = mz.buf_size;
			r->own_off = (uint32_t)(2 * ring_bytes + (uint64_t)i * mz.size * mz.buf_size);
			r->own_base = mz.regions[0].base + r->own_off;
		}
	}
	if (mz.client) {
		/* The client posts its RX buffers at the start. */
		for (uint16_t s = 0; s < mz.size; s++) {
			struct memif_desc *d = mz_desc(true, (uint16_t)(first + s));
			d->region = 0;
			d->offset = mz.rx.own_off + (uint32_t)((uint16_t)(first + s) & mz.rx.mask) * mz.buf_size;
			d->length = mz.buf_size;
		}
		mz.rx.post = (uint16_t)(first + mz.size);
		mz.rx_ring->head = mz.rx.post;
	}
	mz.rxq.b.ic = &mz.ic;
	mz.rxq.b.wdrops = mz.wdrops;
	mz.rxq.b.port = 7;
	mz.rxq.r = &mz.rx;
	mz.rxq.pool = mz_pool;
	mz.rxq.up = 1;
	mz.txq.r = &mz.tx;
	mz.txq.up = 1;

	for (unsigned op = 0; op < MZ_MAX_OPS && in.n > 0; op++) {
		const uint32_t c = mz_u8(&in);
		switch (c & 7) {
		case 0: {
			struct memif_desc *d = mz_desc(!(c & 8), (uint16_t)mz_u8(&in));
			d->flags = (uint16_t)(mz_u8(&in) & 3);
			d->region = (uint16_t)(c & 16 ? mz_u16(&in) : mz_u8(&in) % (MZ_MAX_REGIONS + 1));
			d->offset = c & 32 ? mz_u32(&in) : mz_u16(&in);
			d->length = c & 64 ? mz_u32(&in) : mz_u16(&in) % 4096;
			break;
		}
		case 1: {
			volatile uint16_t *idx = mz.client ? &mz.rx_ring->tail : &mz.rx_ring->head;
			*idx = (uint16_t)(c & 8 ? mz_u16(&in) : *idx + mz_u8(&in) % (mz.size + 1));
			break;
		}
		case 2:
			mz_rx((uint16_t)(1 + mz_u8(&in) % 64));
			break;
		case 3:
			mz_tx(&in);
			break;
		case 4: {
			volatile uint16_t *idx = mz.client ? &mz.tx_ring->tail : &mz.tx_ring->head;
			*idx = (uint16_t)(c & 8 ? mz_u16(&in) : *idx + mz_u8(&in) % (mz.size + 1));
			break;
		}
		case 5: {
			const uint16_t reg = (uint16_t)(mz_u8(&in) % mz.n_regions);
			const uint32_t off = mz_u16(&in), n = mz_u8(&in);
			for (uint32_t j = 0; j < n && off + j < mz.regions[reg].size; j++)
				mz.regions[reg].base[off + j] = (uint8_t)mz_u8(&in);
			break;
		}
		case 6: {
			const uint16_t end = mz.client ? mz.rx_ring->tail : mz.rx_ring->head;
			const int fd = wf_memif_arm(&mz.rxq.b);
			FZ_CHECK(fd == (end != mz.rx.last ? -EAGAIN : -1), "arm returned %d with %u waiting", fd,
				 (uint16_t)(end - mz.rx.last));
			FZ_CHECK((mz.rx_ring->flags & MEMIF_RING_FLAG_MASK_INT) == (end != mz.rx.last),
				 "arm left the ring's flags at %u", mz.rx_ring->flags);
			wf_memif_disarm(&mz.rxq.b);
			FZ_CHECK(mz.rx_ring->flags == MEMIF_RING_FLAG_MASK_INT, "polling again with flags %u", mz.rx_ring->flags);
			break;
		}
		case 7: {
			mz_release();
			const unsigned keep = mz_u8(&in) % 16, avail = rte_mempool_avail_count(mz_pool);
			while (mz.n_held + keep < avail)
				FZ_CHECK((mz.held[mz.n_held++] = rte_pktmbuf_alloc(mz_pool)) != NULL, "RX pool");
			break;
		}
		}
	}
	mz_release();
	FZ_CHECK(rte_mempool_in_use_count(mz_pool) == 0, "RX pool: %u mbufs in use after the input",
		 rte_mempool_in_use_count(mz_pool));
	fz_pools_check();
	return 0;
}
