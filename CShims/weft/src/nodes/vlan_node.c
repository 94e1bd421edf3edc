/*
 * vlan_node.c: per-packet 802.1Q work. Pop is done while classifying an
 * uplink frame (uplink_node.c); push is done on the way to a VLAN side.
 */
#include <rte_ether.h>

#include "wf_internal.h"

/* Insert an 802.1Q tag after the MAC addresses. 0, or -1 with *why set. */
int
wf_vlan_push(struct rte_mbuf *m, uint16_t tci, enum wf_drop_reason *why)
{
	/*
	 * A frame without a whole Ethernet header in its first segment has no
	 * MAC addresses to move: found by fuzz/fuzz_uplink (regression
	 * fuzz/regressions/uplink/vlan-push-runt), where a pod's 0-byte frame
	 * toward a VLAN side had "its" MAC addresses moved from past its end and
	 * went out as 4 of those bytes (what an earlier frame left in the
	 * buffer, leaked onto the uplink), the tag written past its end.
	 */
	if (unlikely(rte_pktmbuf_data_len(m) < sizeof(struct rte_ether_hdr))) {
		*why = WF_DROP_RUNT;
		return -1;
	}
	if (unlikely(rte_pktmbuf_headroom(m) < sizeof(struct rte_vlan_hdr) ||
		     !RTE_MBUF_DIRECT(m) || rte_mbuf_refcnt_read(m) != 1)) {
		*why = WF_DROP_NO_HEADROOM;
		return -1;
	}
	uint8_t *p = (uint8_t *)rte_pktmbuf_prepend(m, sizeof(struct rte_vlan_hdr));
	/* The MAC addresses move 4 bytes to the front; TPID and TCI fill the gap
	 * before the original ethertype. */
	memmove(p, p + sizeof(struct rte_vlan_hdr), 2 * RTE_ETHER_ADDR_LEN);
	uint16_t tag[2] = { rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN), rte_cpu_to_be_16(tci) };
	memcpy(p + 2 * RTE_ETHER_ADDR_LEN, tag, sizeof(tag));
	if (unlikely(m->ol_flags & WF_OL_PENDING))
		m->l2_len += sizeof(struct rte_vlan_hdr); /* a partial checksum moved with the payload */
	return 0;
}
