/*
 * neighbour.c: the underlay's next hops. Tunnels track the neighbour they
 * send to (the remote when on-link, else the gateway); this file resolves
 * them by ARP / neighbour solicitation, retries every second, re-confirms
 * learned ones after 60 s, and forgets a MAC that stopped answering. Workers
 * read a neighbour's MAC as one 64-bit word: resolution never needs a table
 * publish. What it sends goes through the inject ring to worker 0, which
 * transmits it on its own TX queue. Control calls and the underlay thread
 * (punt.c) share it under ul_lock.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_arp.h>
#include <rte_malloc.h>
#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_hash_crc.h>
#include <rte_icmp.h>
#include <rte_ip.h>

#include "wf_internal.h"

enum { NBR_INCOMPLETE = 0, NBR_REACHABLE = 1, NBR_STATIC = 2, NBR_FAILED = 3 };

#define WF_PROBE_INTERVAL_MS 1000
#define WF_REACHABLE_MS 60000 /* re-confirm a learned neighbour after this */
#define WF_MAX_UNANSWERED 3

static uint64_t
ms_to_tsc(uint64_t ms)
{
	return ms * rte_get_tsc_hz() / 1000;
}


static uint64_t
mac_word(const uint8_t *mac)
{
	uint64_t w = 0;
	for (int i = 0; i < 6; i++)
		w |= (uint64_t)mac[i] << (8 * i);
	return w;
}

static int
nbr_get(struct wf_dataplane *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip, uint32_t *idx)
{
	const size_t alen = is_v6 ? 16 : 4;
	uint32_t free_i = UINT32_MAX;
	for (uint32_t i = 0; i < WF_MAX_NEIGHBOURS; i++) {
		struct wf_nbr_ctl *n = &dp->nbr[i];
		if (n->used && n->port == port && n->is_v6 == is_v6 && memcmp(n->ip, ip, alen) == 0) {
			*idx = i;
			return 0;
		}
		if (!n->used && free_i == UINT32_MAX)
			free_i = i;
	}
	if (free_i == UINT32_MAX) {
		wf_set_error("neighbour table full (%d entries)", WF_MAX_NEIGHBOURS);
		return -ENOSPC;
	}
	struct wf_nbr_ctl *n = &dp->nbr[free_i];
	memset(n, 0, sizeof(*n));
	n->used = 1;
	n->port = port;
	n->is_v6 = is_v6;
	memcpy(n->ip, ip, alen);
	n->state = NBR_INCOMPLETE;
	n->next_probe_tsc = 0; /* probe at once */
	__atomic_store_n(&dp->nbr_mac[free_i], 0, __ATOMIC_RELAXED);
	*idx = free_i;
	return 0;
}

int
wf_nbr_track(struct wf_dataplane *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip, uint32_t *idx)
{
	pthread_mutex_lock(&dp->ul_lock);
	int rc = nbr_get(dp, port, is_v6, ip, idx);
	if (rc == 0)
		dp->nbr[*idx].users++;
	pthread_mutex_unlock(&dp->ul_lock);
	return rc;
}

void
wf_nbr_release(struct wf_dataplane *dp, uint32_t idx)
{
	pthread_mutex_lock(&dp->ul_lock);
	struct wf_nbr_ctl *n = &dp->nbr[idx];
	if (n->used && n->users > 0 && --n->users == 0 && n->state != NBR_STATIC) {
		n->used = 0;
		__atomic_store_n(&dp->nbr_mac[idx], 0, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&dp->ul_lock);
}

int
wf_neighbour_static(wf_dataplane_t *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip,
		    const uint8_t mac[6])
{
	if (dp == NULL || ip == NULL || mac == NULL || port >= WF_MAX_PORTS)
		return -EINVAL;
	uint32_t i;
	pthread_mutex_lock(&dp->ul_lock);
	int rc = nbr_get(dp, port, is_v6, ip, &i);
	if (rc == 0) {
		dp->nbr[i].state = NBR_STATIC;
		__atomic_store_n(&dp->nbr_mac[i], mac_word(mac), __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&dp->ul_lock);
	return rc;
}

int
wf_neighbour_list(wf_dataplane_t *dp, struct wf_neighbour_info *out, uint32_t cap)
{
	if (dp == NULL)
		return -EINVAL;
	uint32_t n = 0;
	uint64_t now = rte_rdtsc();
	pthread_mutex_lock(&dp->ul_lock);
	for (uint32_t i = 0; i < WF_MAX_NEIGHBOURS; i++) {
		const struct wf_nbr_ctl *e = &dp->nbr[i];
		if (!e->used)
			continue;
		if (out != NULL && n < cap) {
			struct wf_neighbour_info *o = &out[n];
			memset(o, 0, sizeof(*o));
			o->port = e->port;
			o->is_v6 = e->is_v6;
			o->state = e->state;
			memcpy(o->ip, e->ip, 16);
			uint64_t w = __atomic_load_n(&dp->nbr_mac[i], __ATOMIC_RELAXED);
			for (int b = 0; b < 6; b++)
				o->mac[b] = (uint8_t)(w >> (8 * b));
			o->users = e->users;
			o->probes = e->probes;
			o->age_ms = e->confirmed_tsc ? (now - e->confirmed_tsc) * 1000 / rte_get_tsc_hz() : 0;
		}
		n++;
	}
	pthread_mutex_unlock(&dp->ul_lock);
	return (int)n;
}

/* ---- what the underlay sends: through worker 0 --------------------------------- */

void
wf_ul_tx(struct wf_dataplane *dp, uint16_t port, struct rte_mbuf *m)
{
	m->port = port; /* worker 0 sends it there */
	if (rte_ring_enqueue(dp->inject, m) != 0)
		rte_pktmbuf_free(m);
}

struct rte_mbuf *
wf_ul_alloc(struct wf_dataplane *dp, uint32_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(dp->pool);
	if (m != NULL && rte_pktmbuf_append(m, (uint16_t)len) == NULL) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	if (m != NULL)
		memset(rte_pktmbuf_mtod(m, void *), 0, len);
	return m;
}

void
wf_ul_send_arp(struct wf_dataplane *dp, uint16_t port, const struct wf_underlay *u, uint16_t op,
	 const uint8_t *dst_mac, const uint8_t *tha, const uint8_t *tip)
{
	struct rte_mbuf *m = wf_ul_alloc(dp, 60);
	if (m == NULL)
		return;
	struct rte_ether_hdr *eh = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	memcpy(&eh->dst_addr, dst_mac, 6);
	memcpy(&eh->src_addr, u->mac, 6);
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	struct rte_arp_hdr *a = (struct rte_arp_hdr *)(eh + 1);
	a->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	a->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	a->arp_hlen = 6;
	a->arp_plen = 4;
	a->arp_opcode = rte_cpu_to_be_16(op);
	memcpy(&a->arp_data.arp_sha, u->mac, 6);
	memcpy(&a->arp_data.arp_sip, u->cfg.ip4, 4);
	memcpy(&a->arp_data.arp_tha, tha, 6);
	memcpy(&a->arp_data.arp_tip, tip, 4);
	wf_ul_tx(dp, port, m);
}

/* ICMPv6 neighbour solicitation (135) or advertisement (136). */
void
wf_ul_send_nd(struct wf_dataplane *dp, uint16_t port, const struct wf_underlay *u, uint8_t type,
	const uint8_t *dst_mac, const uint8_t *dst_ip, const uint8_t *target, uint8_t na_flags)
{
	const uint32_t icmp_len = 8 + 16 + 8;
	struct rte_mbuf *m = wf_ul_alloc(dp, 14 + 40 + icmp_len);
	if (m == NULL)
		return;
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
	memcpy(p, dst_mac, 6);
	memcpy(p + 6, u->mac, 6);
	p[12] = 0x86, p[13] = 0xdd;
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(p + 14);
	ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
	ip->payload_len = rte_cpu_to_be_16(icmp_len);
	ip->proto = IPPROTO_ICMPV6;
	ip->hop_limits = 255; /* RFC 4861: ND messages must carry 255 */
	memcpy(ip->src_addr, u->cfg.ip6, 16);
	memcpy(ip->dst_addr, dst_ip, 16);
	uint8_t *ic = p + 14 + 40;
	ic[0] = type;
	ic[4] = na_flags;
	memcpy(ic + 8, target, 16);
	ic[24] = type == 135 ? 1 : 2; /* source / target link-layer address option */
	ic[25] = 1;
	memcpy(ic + 26, u->mac, 6);
	uint16_t ck = rte_ipv6_udptcp_cksum(ip, ic);
	memcpy(ic + 2, &ck, 2);
	wf_ul_tx(dp, port, m);
}

static void
probe(struct wf_dataplane *dp, struct wf_nbr_ctl *n)
{
	const struct wf_underlay *u = dp->ul_ctl[n->port];
	if (u == NULL)
		return;
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, zero[6] = { 0 };
	if (!n->is_v6) {
		if (u->cfg.has_ip4)
			wf_ul_send_arp(dp, n->port, u, RTE_ARP_OP_REQUEST, bcast, zero, n->ip);
	} else if (u->cfg.has_ip6) {
		/* To the target's solicited-node multicast address (RFC 4291 2.7.1). */
		uint8_t sn[16] = { 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, n->ip[13], n->ip[14], n->ip[15] };
		uint8_t mac[6] = { 0x33, 0x33, 0xff, n->ip[13], n->ip[14], n->ip[15] };
		wf_ul_send_nd(dp, n->port, u, 135, mac, sn, n->ip, 0);
	}
	n->probes++;
}

/* A tracked neighbour told us its MAC (reply, advertisement, or its own request). */
void
wf_nbr_learn(struct wf_dataplane *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip, const uint8_t *mac)
{
	const size_t alen = is_v6 ? 16 : 4;
	for (uint32_t i = 0; i < WF_MAX_NEIGHBOURS; i++) {
		struct wf_nbr_ctl *n = &dp->nbr[i];
		if (!n->used || n->port != port || n->is_v6 != is_v6 || memcmp(n->ip, ip, alen) != 0)
			continue;
		if (n->state == NBR_STATIC)
			return;
		n->state = NBR_REACHABLE;
		n->confirmed_tsc = rte_rdtsc();
		n->probes = 0;
		n->next_probe_tsc = n->confirmed_tsc + ms_to_tsc(WF_REACHABLE_MS);
		__atomic_store_n(&dp->nbr_mac[i], mac_word(mac), __ATOMIC_RELAXED);
		return;
	}
}


/* Probe incomplete neighbours every second; re-confirm learned ones, and
 * forget the MAC of one that stopped answering. Caller holds ul_lock. */
void
wf_nbr_timers(struct wf_dataplane *dp)
{
	uint64_t now = rte_rdtsc();
	for (uint32_t i = 0; i < WF_MAX_NEIGHBOURS; i++) {
		struct wf_nbr_ctl *e = &dp->nbr[i];
		if (!e->used || e->state == NBR_STATIC || now < e->next_probe_tsc)
			continue;
		if (e->state == NBR_REACHABLE && e->probes >= WF_MAX_UNANSWERED) {
			e->state = NBR_FAILED;
			__atomic_store_n(&dp->nbr_mac[i], 0, __ATOMIC_RELAXED);
		}
		probe(dp, e);
		e->next_probe_tsc = now + ms_to_tsc(WF_PROBE_INTERVAL_MS);
	}
}
