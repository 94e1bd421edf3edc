/*
 * punt.c: the underlay thread ("weft-underlay") and what it answers. Workers
 * punt ARP, ICMP and ICMPv6 addressed to an uplink into one ring; this file
 * answers them (ARP replies, neighbour advertisements, echo replies), learns
 * neighbours from them, and runs the neighbour timers (neighbour.c). Its
 * thread is its only owner while workers run; stage tests step it through
 * wf_underlay_service(). Weft never sends Router Advertisements, and
 * received ones go nowhere.
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

enum { NBR_STATIC = 2 };

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
	wf_nbr_learn(dp, port, 0, sip, sha);
	if (a->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) && memcmp(tip, u->cfg.ip4, 4) == 0 &&
	    !u->cfg.kernel_shared) /* shared: the kernel answers for its address */
		wf_ul_send_arp(dp, port, u, RTE_ARP_OP_REPLY, sha, sha, sip);
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
	wf_ul_tx(dp, port, r);
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
				wf_nbr_learn(dp, port, 1, ip->src_addr, ic + off + 2);
		if (!u->cfg.kernel_shared)
			wf_ul_send_nd(dp, port, u, 136, p + 6, ip->src_addr, u->cfg.ip6, 0x60 /* S, O */);
	} else if (type == 136) { /* neighbour advertisement */
		for (uint32_t off = 24; off + 8 <= plen && ic[off + 1] != 0; off += ic[off + 1] * 8u)
			if (ic[off] == 2)
				wf_nbr_learn(dp, port, 1, ic + 8, ic + off + 2);
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
		wf_ul_tx(dp, port, r);
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
	wf_nbr_timers(dp);
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

/* The underlay thread: punted packets and neighbour timers, nothing else. */
static void *
ul_main(void *arg)
{
	struct wf_dataplane *dp = arg;
	while (!__atomic_load_n(&dp->ul_stop, __ATOMIC_ACQUIRE)) {
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
