/*
 * memif.h: the memif protocol (as published by FD.io's libmemif and spoken by
 * DPDK's memif PMD and VPP; version 2.0) and Weft's memif driver's own state.
 * Written from the protocol's wire facts: 128-byte control messages over an
 * AF_UNIX SOCK_SEQPACKET socket, shared-memory regions passed as fds, rings
 * of 16-byte descriptors. Host byte order throughout (as every peer uses).
 *
 * Roles: the server listens and maps what the client creates; the client
 * creates the regions, rings and interrupt eventfds. Rings are named by
 * direction: C2S (client to server, a.k.a. S2M) and S2C (a.k.a. M2S).
 */
#ifndef WF_MEMIF_H
#define WF_MEMIF_H

#include <stdint.h>

#include <rte_spinlock.h>

#include "wf_internal.h"

#define MEMIF_COOKIE 0x3E31F20u
#define MEMIF_VERSION 0x0200u
#define MEMIF_NAME_SZ 32
#define MEMIF_SECRET_SZ 24
#define MEMIF_MSG_SZ 128
#define MEMIF_MAX_LOG2_RING 14
#define MEMIF_DESC_FLAG_NEXT 1
#define MEMIF_RING_FLAG_MASK_INT 1

enum memif_msg_type {
	MEMIF_MSG_NONE = 0,
	MEMIF_MSG_ACK = 1,
	MEMIF_MSG_HELLO = 2,
	MEMIF_MSG_INIT = 3,
	MEMIF_MSG_ADD_REGION = 4,
	MEMIF_MSG_ADD_RING = 5,
	MEMIF_MSG_CONNECT = 6,
	MEMIF_MSG_CONNECTED = 7,
	MEMIF_MSG_DISCONNECT = 8,
};

enum { MEMIF_MODE_ETHERNET = 0, MEMIF_MODE_IP = 1 };
#define MEMIF_RING_FLAG_C2S 1 /* ADD_RING flags */

/* The control message: a 16-bit type, then the type's fields, packed, in 128 bytes. */
struct __attribute__((packed)) memif_msg {
	uint16_t type;
	union __attribute__((packed)) {
		struct __attribute__((packed)) {
			uint8_t name[MEMIF_NAME_SZ];
			uint16_t min_version, max_version;
			uint16_t max_region;
			uint16_t max_s2c_ring, max_c2s_ring; /* highest index, not a count */
			uint8_t max_log2_ring_size;
		} hello;
		struct __attribute__((packed)) {
			uint16_t version;
			uint32_t id;
			uint8_t mode;
			uint8_t secret[MEMIF_SECRET_SZ];
			uint8_t name[MEMIF_NAME_SZ];
		} init;
		struct __attribute__((packed)) {
			uint16_t index;
			uint64_t size;
		} add_region;
		struct __attribute__((packed)) {
			uint16_t flags;
			uint16_t index;
			uint16_t region;
			uint32_t offset;
			uint8_t log2_ring_size;
			uint16_t private_hdr_size;
		} add_ring;
		struct __attribute__((packed)) {
			uint8_t if_name[MEMIF_NAME_SZ];
		} connect; /* and CONNECTED */
		struct __attribute__((packed)) {
			uint32_t code;
			uint8_t string[96];
		} disconnect;
		uint8_t raw[MEMIF_MSG_SZ - 2];
	};
};
_Static_assert(sizeof(struct memif_msg) == MEMIF_MSG_SZ, "memif messages are 128 bytes");

struct __attribute__((packed)) memif_desc {
	uint16_t flags;
	uint16_t region;
	uint32_t length;
	uint32_t offset;
	uint32_t metadata;
};
_Static_assert(sizeof(struct memif_desc) == 16, "memif descriptors are 16 bytes");

/* Ring header: cookie, flags, head on the first cache line; tail on the second;
 * descriptors from the third (64-byte lines, as x86 peers lay it out). */
#define MEMIF_CL 64
struct memif_ring {
	uint32_t cookie;
	uint16_t flags;
	uint16_t head;
	uint8_t pad0[MEMIF_CL - 8];
	uint16_t tail;
	uint8_t pad1[MEMIF_CL - 2];
	struct memif_desc desc[];
};
_Static_assert(sizeof(struct memif_ring) == 2 * MEMIF_CL, "memif ring header is two cache lines");

static inline uint64_t
memif_ring_bytes(uint8_t log2)
{
	return sizeof(struct memif_ring) + sizeof(struct memif_desc) * ((uint64_t)1 << log2);
}

/* ---- Weft's driver ------------------------------------------------------------ */

#define WF_MEMIF_MAX_REGIONS 16
#define WF_MEMIF_MAX_RINGS 16       /* per direction */
#define WF_MEMIF_MAX_CHAIN 64       /* descriptors in one frame */
#define WF_MEMIF_MAX_FRAME (64u << 10)

struct wf_memif_region {
	uint8_t *base;
	uint64_t size;
};

/*
 * One ring as a worker uses it. Everything a peer can write (indices,
 * descriptors, flags) is read once into locals and checked before use.
 */
struct wf_memif_ring {
	struct memif_ring *ring;
	uint16_t mask;
	uint16_t last;        /* RX: next slot to read; TX: next slot to fill (our own index) */
	int int_fd;           /* the eventfd the ring's consumer waits on */
	bool we_produce;
	bool client;          /* our own buffers: slot i is at own_base + i * buf_size */
	uint32_t buf_size;
	uint8_t *own_base;
	const struct wf_memif_region *regions;
	uint16_t n_regions;
	rte_spinlock_t lock;  /* TX rings shared by more workers than rings */
	bool shared;
	bool ip_mode;         /* IP payload: frames without an Ethernet header */
	uint16_t post;        /* client RX: the slots posted to the server (our head) */
	uint32_t own_off;     /* client: offset of this ring's first buffer in region 0 */
};

/* What a peer did wrong in the data path: reported by a worker, acted on by the events thread. */
enum wf_memif_fault {
	WF_MEMIF_OK = 0,
	WF_MEMIF_BAD_INDEX,  /* a ring index moved by more than the ring holds */
	WF_MEMIF_BAD_DESC,   /* a descriptor outside its region, or a length out of range */
	WF_MEMIF_BAD_CHAIN,  /* a frame chained over too many descriptors or bytes */
};

struct wf_memif_rxq {
	struct wf_rxq_base b;
	volatile uint8_t up;          /* rings valid; set by the events thread */
	struct wf_memif_ring *r;
	struct rte_mempool *pool;
	volatile uint32_t fault;      /* enum wf_memif_fault, from the worker */
};

struct wf_memif_txq {
	struct wf_txq_base tb;
	volatile uint8_t up;
	struct wf_memif_ring *r;
	volatile uint32_t fault;
};

#endif
