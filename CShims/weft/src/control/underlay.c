/*
 * underlay.c: what an uplink's own addresses need, off the fast path.
 * Workers punt ARP, ICMP and ICMPv6 addressed to an uplink into one ring;
 * this file answers them (ARP replies, neighbour advertisements, echo
 * replies) and resolves tunnel next hops by ARP / neighbour solicitation
 * with retries and aging. It runs on its own thread ("weft-underlay"), or
 * step by step through wf_underlay_service() in stage tests. What it sends
 * goes through the inject ring to worker 0, which transmits it on its own
 * TX queue: no port needs an extra queue, and TX queues stay single-owner.
 * Workers read a neighbour's MAC as one 64-bit word: resolution never needs
 * a table publish. Weft never sends Router Advertisements, and received
 * ones go nowhere.
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
#include "weft_test.h"

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

int
wf_underlay_init(struct wf_dataplane *dp)
{
	pthread_mutex_init(&dp->ul_lock, NULL);
	char name[RTE_RING_NAMESIZE];
	snprintf(name, sizeof(name), "wf_punt_%p", (void *)dp);
	dp->punt = rte_ring_create(name, 1024, (int)rte_socket_id(), RING_F_SC_DEQ);
	snprintf(name, sizeof(name), "wf_inj_%p", (void *)dp);
	/* Several producers (the underlay thread, control calls that probe a
	 * next hop right away); one consumer (worker 0). */
	dp->inject = rte_ring_create(name, 1024, (int)rte_socket_id(), RING_F_SC_DEQ);
	return dp->punt && dp->inject ? 0 : -ENOMEM;
}

void
wf_underlay_fini(struct wf_dataplane *dp)
{
	wf_underlay_stop(dp);
	struct rte_ring *rings[2] = { dp->punt, dp->inject };
	for (int i = 0; i < 2; i++) {
		void *m;
		if (rings[i] == NULL)
			continue;
		while (rte_ring_dequeue(rings[i], &m) == 0)
			rte_pktmbuf_free(m);
		rte_ring_free(rings[i]);
	}
	dp->punt = dp->inject = NULL;
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		free(dp->ul_ctl[p]);
		dp->ul_ctl[p] = NULL;
	}
}

/* ---- control: addresses and neighbours ----------------------------------- */

int
wf_underlay_set(wf_dataplane_t *dp, uint16_t port, const struct wf_underlay_cfg *cfg)
{
	if (dp == NULL || cfg == NULL || port >= WF_MAX_PORTS || cfg->n_vxlan_ports > 4)
		return -EINVAL;
	if (!dp->ports[port].attached)
		return -ENODEV;
	if (dp->ports[port].xc_slot != UINT32_MAX) {
		wf_set_error("%s is a plain cross-connect side; it cannot be an uplink", dp->ports[port].devname);
		return -EBUSY;
	}
	if ((cfg->has_ip4 && cfg->prefix4 > 32) || (cfg->has_ip6 && cfg->prefix6 > 128) ||
	    cfg->mtu < 576) {
		wf_set_error("underlay prefix or MTU out of range");
		return -EINVAL;
	}
	struct wf_underlay *u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	u->cfg = *cfg;
	memcpy(u->mac, dp->ports[port].mac, 6);
	pthread_mutex_lock(&dp->ul_lock);
	struct wf_underlay *old = dp->ul_ctl[port];
	if (old != NULL && dp->n_tunnels_on[port] > 0) {
		pthread_mutex_unlock(&dp->ul_lock);
		free(u);
		wf_set_error("%s carries tunnels; remove them before changing its underlay",
			     dp->ports[port].devname);
		return -EBUSY;
	}
	dp->ul_ctl[port] = u;
	pthread_mutex_unlock(&dp->ul_lock);
	wf_dirty_ul(dp, port);
	int rc = wf_table_publish_add(dp);
	if (rc != 0) {
		pthread_mutex_lock(&dp->ul_lock);
		dp->ul_ctl[port] = old;
		pthread_mutex_unlock(&dp->ul_lock);
		free(u);
		return rc;
	}
	free(old);
	return 0;
}

int
wf_underlay_clear(wf_dataplane_t *dp, uint16_t port)
{
	if (dp == NULL || port >= WF_MAX_PORTS)
		return -EINVAL;
	if (dp->n_tunnels_on[port] > dp->n_vlans_on[port]) {
		wf_set_error("%s carries VXLAN tunnels; remove them first", dp->ports[port].devname);
		return -EBUSY;
	}
	/* Tunnels removed while publishing was held still count as users of their
	 * neighbours: publish first, so the static neighbours below can go. */
	if (dp->n_retiring > 0) {
		int rc = wf_table_publish(dp);
		if (rc != 0)
			return rc;
	}
	pthread_mutex_lock(&dp->ul_lock);
	struct wf_underlay *old = dp->ul_ctl[port];
	dp->ul_ctl[port] = NULL;
	/* Static neighbours of the port go with its addresses. */
	for (uint32_t i = 0; i < WF_MAX_NEIGHBOURS; i++)
		if (dp->nbr[i].used && dp->nbr[i].port == port && dp->nbr[i].users == 0) {
			dp->nbr[i].used = 0;
			__atomic_store_n(&dp->nbr_mac[i], 0, __ATOMIC_RELAXED);
		}
	pthread_mutex_unlock(&dp->ul_lock);
	wf_dirty_ul(dp, port);
	int rc = wf_table_publish(dp);
	free(old);
	return rc;
}

/* The uplinks' underlay parts: each table has its own copy of the control
 * side's (under the underlay lock: the underlay thread learns MACs into it). */
static int
wf_ul_build(struct wf_dataplane *dp, struct wf_build *b)
{
	int rc = 0;
	pthread_mutex_lock(&dp->ul_lock);
	for (uint32_t w = 0; w < WF_MAX_PORTS / 64 && rc == 0; w++) {
		uint64_t bits = dp->dirty.all ? ~0ull : dp->dirty.ul[w];
		while (bits && rc == 0) {
			uint32_t p = w * 64 + (uint32_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			if ((rc = wf_build_retire(b, b->t->ul[p])) != 0)
				break;
			b->t->ul[p] = NULL;
			if (dp->ul_ctl[p] == NULL)
				continue;
			struct wf_underlay *u = wf_build_alloc(b, "weft_ul", sizeof(*u), false);
			if (u == NULL) {
				rc = -ENOMEM;
				break;
			}
			*u = *dp->ul_ctl[p];
			b->t->ul[p] = u;
		}
	}
	pthread_mutex_unlock(&dp->ul_lock);
	return rc;
}

static void
wf_ul_free(struct wf_table *t)
{
	for (uint32_t p = 0; p < WF_MAX_PORTS; p++) {
		rte_free(t->ul[p]);
		t->ul[p] = NULL;
	}
}

const struct wf_builder wf_ul_builder = { .name = "underlay", .build = wf_ul_build, .free = wf_ul_free };

/* Find or create a neighbour entry; caller holds ul_lock. */
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

/* ---- transmit ------------------------------------------------------------- */

static void
ul_tx(struct wf_dataplane *dp, uint16_t port, struct rte_mbuf *m)
{
	m->port = port; /* worker 0 sends it there */
	if (rte_ring_enqueue(dp->inject, m) != 0)
		rte_pktmbuf_free(m);
}

static struct rte_mbuf *
ul_alloc(struct wf_dataplane *dp, uint32_t len)
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

static void
send_arp(struct wf_dataplane *dp, uint16_t port, const struct wf_underlay *u, uint16_t op,
	 const uint8_t *dst_mac, const uint8_t *tha, const uint8_t *tip)
{
	struct rte_mbuf *m = ul_alloc(dp, 60);
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
	ul_tx(dp, port, m);
}

/* ICMPv6 neighbour solicitation (135) or advertisement (136). */
static void
send_nd(struct wf_dataplane *dp, uint16_t port, const struct wf_underlay *u, uint8_t type,
	const uint8_t *dst_mac, const uint8_t *dst_ip, const uint8_t *target, uint8_t na_flags)
{
	const uint32_t icmp_len = 8 + 16 + 8;
	struct rte_mbuf *m = ul_alloc(dp, 14 + 40 + icmp_len);
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
	ul_tx(dp, port, m);
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
			send_arp(dp, n->port, u, RTE_ARP_OP_REQUEST, bcast, zero, n->ip);
	} else if (u->cfg.has_ip6) {
		/* To the target's solicited-node multicast address (RFC 4291 2.7.1). */
		uint8_t sn[16] = { 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, n->ip[13], n->ip[14], n->ip[15] };
		uint8_t mac[6] = { 0x33, 0x33, 0xff, n->ip[13], n->ip[14], n->ip[15] };
		send_nd(dp, n->port, u, 135, mac, sn, n->ip, 0);
	}
	n->probes++;
}

/* A tracked neighbour told us its MAC (reply, advertisement, or its own request). */
static void
learn(struct wf_dataplane *dp, uint16_t port, uint8_t is_v6, const uint8_t *ip, const uint8_t *mac)
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

/* ---- punted packets ----------------------------------------------------------- */

static void
handle_arp(struct wf_dataplane *dp, uint16_t port, const struct wf_underlay *u, struct rte_mbuf *m)
{
	if (rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr) + sizeof(struct rte_arp_hdr))
		return;
	struct rte_arp_hdr *a = rte_pktmbuf_mtod_offset(m, struct rte_arp_hdr *, sizeof(struct rte_ether_hdr));
	if (a->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
	    a->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) || a->arp_hlen != 6 || a->arp_plen != 4)
		return;
	uint8_t sip[4], tip[4], sha[6];
	memcpy(sip, &a->arp_data.arp_sip, 4);
	memcpy(tip, &a->arp_data.arp_tip, 4);
	memcpy(sha, &a->arp_data.arp_sha, 6);
	learn(dp, port, 0, sip, sha);
	if (a->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) && memcmp(tip, u->cfg.ip4, 4) == 0 &&
	    !u->cfg.kernel_shared) /* shared: the kernel answers for its address */
		send_arp(dp, port, u, RTE_ARP_OP_REPLY, sha, sha, sip);
}

static void
handle_icmp4(struct wf_dataplane *dp, uint16_t port, struct rte_mbuf *m)
{
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(p + 14);
	uint32_t ihl = (ip->version_ihl & 0xf) * 4u;
	uint32_t tot = rte_be_to_cpu_16(ip->total_length);
	if (ihl < 20 || tot < ihl + 8 || 14 + tot > rte_pktmbuf_data_len(m))
		return;
	struct rte_icmp_hdr *ic = (struct rte_icmp_hdr *)(p + 14 + ihl);
	if (ic->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || ic->icmp_code != 0)
		return;
	/* Answer in place: swap addresses, echo reply, fresh checksums. */
	struct rte_mbuf *r = rte_pktmbuf_copy(m, dp->pool, 0, 14 + tot);
	if (r == NULL)
		return;
	p = rte_pktmbuf_mtod(r, uint8_t *);
	uint8_t tmp[6];
	memcpy(tmp, p, 6), memcpy(p, p + 6, 6), memcpy(p + 6, tmp, 6);
	ip = (struct rte_ipv4_hdr *)(p + 14);
	uint32_t a = ip->src_addr;
	ip->src_addr = ip->dst_addr;
	ip->dst_addr = a;
	ip->time_to_live = 64;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	ic = (struct rte_icmp_hdr *)(p + 14 + ihl);
	ic->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	ic->icmp_cksum = 0;
	ic->icmp_cksum = (uint16_t)~rte_raw_cksum(ic, tot - ihl);
	ul_tx(dp, port, r);
}

static void
handle_icmp6(struct wf_dataplane *dp, uint16_t port, const struct wf_underlay *u, struct rte_mbuf *m)
{
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
	struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(p + 14);
	uint32_t plen = rte_be_to_cpu_16(ip->payload_len);
	if (plen < 8 || 14 + 40 + plen > rte_pktmbuf_data_len(m))
		return;
	uint8_t *ic = p + 14 + 40;
	if (rte_ipv6_udptcp_cksum_verify(ip, ic) != 0)
		return;
	uint8_t type = ic[0];
	if ((type == 135 || type == 136) && (ip->hop_limits != 255 || plen < 24))
		return; /* RFC 4861 7.1.1: off-link ND is ignored */
	if (type == 135) { /* neighbour solicitation */
		if (memcmp(ic + 8, u->cfg.ip6, 16) != 0)
			return;
		static const uint8_t unspec[16] = { 0 };
		if (memcmp(ip->src_addr, unspec, 16) == 0)
			return; /* duplicate address detection: not ours to answer here */
		/* Learn from the source link-layer option when the sender is tracked. */
		for (uint32_t off = 24; off + 8 <= plen && ic[off + 1] != 0; off += ic[off + 1] * 8u)
			if (ic[off] == 1)
				learn(dp, port, 1, ip->src_addr, ic + off + 2);
		if (!u->cfg.kernel_shared)
			send_nd(dp, port, u, 136, p + 6, ip->src_addr, u->cfg.ip6, 0x60 /* S, O */);
	} else if (type == 136) { /* neighbour advertisement */
		for (uint32_t off = 24; off + 8 <= plen && ic[off + 1] != 0; off += ic[off + 1] * 8u)
			if (ic[off] == 2)
				learn(dp, port, 1, ic + 8, ic + off + 2);
	} else if (type == 128 && memcmp(ip->dst_addr, u->cfg.ip6, 16) == 0 && !u->cfg.kernel_shared) {
		/* echo request (on a shared uplink the kernel answers it) */
		struct rte_mbuf *r = rte_pktmbuf_copy(m, dp->pool, 0, 14 + 40 + plen);
		if (r == NULL)
			return;
		uint8_t *q = rte_pktmbuf_mtod(r, uint8_t *);
		uint8_t tmp[16];
		memcpy(tmp, q, 6), memcpy(q, q + 6, 6), memcpy(q + 6, tmp, 6);
		struct rte_ipv6_hdr *rip = (struct rte_ipv6_hdr *)(q + 14);
		memcpy(tmp, rip->src_addr, 16);
		memcpy(rip->src_addr, rip->dst_addr, 16);
		memcpy(rip->dst_addr, tmp, 16);
		rip->hop_limits = 64;
		uint8_t *ric = q + 14 + 40;
		ric[0] = 129;
		ric[2] = ric[3] = 0;
		uint16_t ck = rte_ipv6_udptcp_cksum(rip, ric);
		memcpy(ric + 2, &ck, 2);
		ul_tx(dp, port, r);
	}
	/* Router advertisements and anything else: consumed, never forwarded. */
}

static uint32_t
ul_service(struct wf_dataplane *dp)
{
	void *objs[32];
	unsigned n = rte_ring_dequeue_burst(dp->punt, objs, 32, NULL);
	pthread_mutex_lock(&dp->ul_lock);
	for (unsigned i = 0; i < n; i++) {
		struct rte_mbuf *m = objs[i];
		uint16_t port = m->port;
		const struct wf_underlay *u = port < WF_MAX_PORTS ? dp->ul_ctl[port] : NULL;
		if (u != NULL && rte_pktmbuf_data_len(m) >= 14) {
			uint16_t type = rte_be_to_cpu_16(*rte_pktmbuf_mtod_offset(m, uint16_t *, 12));
			if (type == RTE_ETHER_TYPE_ARP && u->cfg.has_ip4)
				handle_arp(dp, port, u, m);
			else if (type == RTE_ETHER_TYPE_IPV4 && u->cfg.has_ip4 && rte_pktmbuf_data_len(m) >= 34)
				handle_icmp4(dp, port, m);
			else if (type == RTE_ETHER_TYPE_IPV6 && u->cfg.has_ip6 && rte_pktmbuf_data_len(m) >= 62)
				handle_icmp6(dp, port, u, m);
		}
		rte_pktmbuf_free(m);
	}
	/* Timers: probe incomplete neighbours every second; re-confirm learned ones. */
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
	pthread_mutex_unlock(&dp->ul_lock);
	return n;
}

int
wf_underlay_service(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return -EINVAL;
	if (dp->ul_running) {
		wf_set_error("the underlay thread runs: it alone services the underlay while workers run");
		return -EBUSY;
	}
	return (int)ul_service(dp);
}

/*
 * Link state for the workers, every 5 ms: DPDK's memif PMD raises no link
 * events, and a peer that just connected must not lose its first frames to a
 * stale link-down. Drivers of Weft's own answer from memory (memif's
 * connection state, the kernel interfaces' state from netlink events).
 */
static void *
ul_main(void *arg)
{
	struct wf_dataplane *dp = arg;
	uint64_t next_links = 0;
	const uint64_t link_period = rte_get_tsc_hz() / 200;
	while (!__atomic_load_n(&dp->ul_stop, __ATOMIC_ACQUIRE)) {
		uint64_t now = rte_rdtsc();
		if (now >= next_links) {
			wf_link_poll(dp);
			next_links = now + link_period;
		}
		if (ul_service(dp) == 0)
			usleep(1000); /* idle: 1 ms adds at most that to an ARP/ND/echo reply */
	}
	return NULL;
}

int
wf_underlay_start(struct wf_dataplane *dp)
{
	if (dp->ul_running)
		return 0;
	dp->ul_stop = 0;
	int rc = pthread_create(&dp->ul_thread, NULL, ul_main, dp);
	if (rc != 0)
		return -rc;
	pthread_setname_np(dp->ul_thread, "weft-underlay");
	dp->ul_running = true;
	return 0;
}

void
wf_underlay_stop(struct wf_dataplane *dp)
{
	if (!dp->ul_running)
		return;
	__atomic_store_n(&dp->ul_stop, 1, __ATOMIC_RELEASE);
	pthread_join(dp->ul_thread, NULL);
	dp->ul_running = false;
}
