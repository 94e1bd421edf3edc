/*
 * trace.c: the packet trace (VPP's `trace add` / `show trace`).
 *
 * While a trace is armed, a worker forwards each frame it traces on its own
 * (a burst of one, between the untraced frames before and after it, order
 * kept) and writes down what happened: the frame as received, what the table
 * holds for its port, then, by comparing the worker's own counters before
 * and after, the connections that counted it, bridge learning and flooding,
 * every drop by reason and a punt; every frame sent meanwhile (the frame, its
 * copies, its segments) is recorded by wf_port_tx with its headers as they
 * left. Nothing in the stages is changed for tracing, so what a trace shows
 * is what the stages do.
 *
 * Cost when off: `w->hooks` is tested once per RX burst (worker.c) and
 * `w->tx_hooks` once per TX call (wf_port_tx); capture.c shares both. Traced frames are slow
 * (formatting, counter copies): a trace is for a few frames at a time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>

#include "wf_internal.h"

struct wf_trace_frame {
	volatile uint32_t ready; /* written completely (release) */
	struct wf_trace_info info;
};

struct wf_trace {
	uint16_t port;             /* WF_PORT_NONE: any */
	volatile int32_t left;     /* frames still to trace */
	volatile uint32_t claimed; /* slots handed out */
	bool armed;
	/* Per worker: the cross-connect counters before a traced frame. */
	struct wf_xc_counters *xcc_before[WF_MAX_WORKERS];
	struct wf_trace_frame frames[WF_TRACE_MAX];
};

/* ---- writing lines ------------------------------------------------------------ */

static void __attribute__((format(printf, 3, 4)))
tline(struct wf_trace_info *in, uint64_t tsc, const char *fmt, ...)
{
	if (in->n_lines >= WF_TRACE_LINES)
		return;
	char *o = in->lines[in->n_lines++];
	int k = snprintf(o, WF_TRACE_LINE_LEN, "+%-8" PRIu64 " ", tsc >= in->rx_tsc ? tsc - in->rx_tsc : 0);
	if (k < 0 || k >= WF_TRACE_LINE_LEN)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o + k, WF_TRACE_LINE_LEN - (size_t)k, fmt, ap);
	va_end(ap);
}

/* Append to a buffer, never past its end. */
struct sbuf {
	char *p;
	size_t cap, len;
};

static void __attribute__((format(printf, 2, 3)))
sb(struct sbuf *b, const char *fmt, ...)
{
	if (b->len >= b->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (k > 0)
		b->len += (size_t)k < b->cap - b->len ? (size_t)k : b->cap - b->len - 1;
}

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* The headers of a frame, as tcpdump would put them on one line. depth 1: a
 * VXLAN frame's inner frame. */
static void
fmt_eth(struct sbuf *b, const uint8_t *p, uint32_t len, int depth)
{
	if (len < 14) {
		sb(b, "runt (%u bytes)", len);
		return;
	}
	sb(b, "%02x:%02x:%02x:%02x:%02x:%02x > %02x:%02x:%02x:%02x:%02x:%02x", p[6], p[7], p[8], p[9], p[10], p[11], p[0],
	   p[1], p[2], p[3], p[4], p[5]);
	uint32_t off = 12;
	uint16_t type = be16(p + off);
	while ((type == 0x8100 || type == 0x88a8) && off + 6 <= len) {
		sb(b, " %s %u", type == 0x88a8 ? "802.1ad" : "vlan", be16(p + off + 2) & 0xfff);
		off += 4;
		type = be16(p + off);
	}
	off += 2;
	const uint8_t *l3 = p + off;
	uint32_t l3len = len - off;
	char a[INET6_ADDRSTRLEN], c[INET6_ADDRSTRLEN];
	uint8_t proto;
	const uint8_t *l4;
	uint32_t l4len;
	if (type == 0x0806 && l3len >= 28) {
		inet_ntop(AF_INET, l3 + 14, a, sizeof(a));
		inet_ntop(AF_INET, l3 + 24, c, sizeof(c));
		const uint16_t op = be16(l3 + 6);
		const uint8_t *sha = l3 + 8;
		if (op == 1)
			sb(b, ", ARP who-has %s tell %s", c, a);
		else if (op == 2)
			sb(b, ", ARP reply %s is-at %02x:%02x:%02x:%02x:%02x:%02x", a, sha[0], sha[1], sha[2], sha[3], sha[4], sha[5]);
		else
			sb(b, ", ARP op %u %s > %s", op, a, c);
		return;
	} else if (type == 0x0800 && l3len >= 20) {
		const uint32_t ihl = (l3[0] & 0xf) * 4u;
		inet_ntop(AF_INET, l3 + 12, a, sizeof(a));
		inet_ntop(AF_INET, l3 + 16, c, sizeof(c));
		const uint16_t fo = be16(l3 + 6);
		sb(b, ", IPv4 %s > %s ttl %u len %u", a, c, l3[8], be16(l3 + 2));
		if (fo & 0x3fff)
			sb(b, " frag off %u%s", (fo & 0x1fff) * 8u, fo & 0x2000 ? " +" : "");
		if ((fo & 0x1fff) != 0 || ihl < 20 || ihl > l3len)
			return;
		proto = l3[9];
		l4 = l3 + ihl;
		l4len = l3len - ihl;
	} else if (type == 0x86dd && l3len >= 40) {
		inet_ntop(AF_INET6, l3 + 8, a, sizeof(a));
		inet_ntop(AF_INET6, l3 + 24, c, sizeof(c));
		sb(b, ", IPv6 %s > %s hlim %u len %u", a, c, l3[7], be16(l3 + 4));
		proto = l3[6];
		l4 = l3 + 40;
		l4len = l3len - 40;
		if (proto == 44) {
			sb(b, " fragment");
			return;
		}
	} else {
		sb(b, ", ethertype 0x%04x", type);
		return;
	}
	if ((proto == 6 && l4len >= 20) || (proto == 17 && l4len >= 8)) {
		const uint16_t sp = be16(l4), dp = be16(l4 + 2);
		if (proto == 6) {
			const uint8_t f = l4[13];
			sb(b, ", TCP %u > %u [%s%s%s%s%s%s]", sp, dp, f & 2 ? "S" : "", f & 1 ? "F" : "", f & 4 ? "R" : "",
			   f & 8 ? "P" : "", f & 16 ? "." : "", f & 32 ? "U" : "");
			return;
		}
		sb(b, ", UDP %u > %u len %u", sp, dp, be16(l4 + 4));
		if ((dp == 4789 || dp == 8472) && l4len >= 16 && (l4[8] & 0x08) && depth == 0) {
			sb(b, ", VXLAN vni %u: ", (uint32_t)l4[12] << 16 | (uint32_t)l4[13] << 8 | l4[14]);
			fmt_eth(b, l4 + 16, l4len - 16, depth + 1);
		}
	} else if ((proto == 1 || proto == 58) && l4len >= 4) {
		const uint8_t ty = l4[0];
		const char *name = NULL;
		if (proto == 1)
			name = ty == 8 ? "echo request" : ty == 0 ? "echo reply" : ty == 3 ? "unreachable" : NULL;
		else
			name = ty == 128   ? "echo request"
			       : ty == 129 ? "echo reply"
			       : ty == 133 ? "router solicitation"
			       : ty == 134 ? "router advertisement"
			       : ty == 135 ? "neighbour solicitation"
			       : ty == 136 ? "neighbour advertisement"
			       : ty == 143 ? "MLDv2 report"
				       : NULL;
		if (name != NULL)
			sb(b, ", %s %s", proto == 1 ? "ICMP" : "ICMPv6", name);
		else
			sb(b, ", %s type %u code %u", proto == 1 ? "ICMP" : "ICMPv6", ty, l4[1]);
	} else {
		sb(b, ", protocol %u", proto);
	}
}

/* What the frame carries besides its bytes: segments, offloads still to do. */
static void
fmt_meta(struct sbuf *b, const struct rte_mbuf *m)
{
	if (m->nb_segs > 1)
		sb(b, " (%u segments)", m->nb_segs);
	const uint64_t l4 = m->ol_flags & RTE_MBUF_F_TX_L4_MASK;
	if (l4 != 0)
		sb(b, " [L4 checksum pending]");
	if (m->ol_flags & (RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_UDP_SEG))
		sb(b, " [GSO mss %u]", m->tso_segsz);
	if (m->ol_flags & RTE_MBUF_F_TX_IP_CKSUM)
		sb(b, " [IPv4 checksum by the NIC]");
}

static void
fmt_frame(char *out, size_t cap, const char *prefix, const struct rte_mbuf *m)
{
	uint8_t copy[256];
	const uint32_t len = rte_pktmbuf_pkt_len(m);
	const uint32_t take = len < sizeof(copy) ? len : sizeof(copy);
	const uint8_t *p = rte_pktmbuf_read(m, 0, take, copy);
	struct sbuf b = { out, cap, 0 };
	out[0] = 0;
	sb(&b, "%s%u bytes", prefix, len);
	fmt_meta(&b, m);
	sb(&b, ": ");
	if (p != NULL)
		fmt_eth(&b, p, take, 0);
}

static void
frame_line(struct wf_trace_info *in, uint64_t tsc, const char *prefix, const struct rte_mbuf *m)
{
	char buf[WF_TRACE_LINE_LEN];
	fmt_frame(buf, sizeof(buf), prefix, m);
	tline(in, tsc, "%s", buf);
}

/* ---- the worker's side -------------------------------------------------------- */

static const char *
action_name(uint8_t a)
{
	switch (a) {
	case WF_ACT_FWD: return "forward as is";
	case WF_ACT_VLAN_PUSH: return "push an 802.1Q tag";
	case WF_ACT_VXLAN_ENCAP: return "VXLAN encapsulation";
	case WF_ACT_REPLICATE: return "replicate to the group's members";
	case WF_ACT_BRIDGE: return "bridge (learn, then forward or flood)";
	default: return "?";
	}
}

struct mac_stats {
	uint64_t learned, moves, flooded, limit;
};

static void
trace_one(struct wf_worker *w, const struct wf_table *t, uint16_t port, uint16_t queue, struct rte_mbuf *m,
	  struct wf_trace_frame *fr)
{
	struct wf_trace_info *in = &fr->info;
	in->worker = w->idx;
	in->rx_tsc = rte_rdtsc();
	char pre[48];
	snprintf(pre, sizeof(pre), "rx {port:%u} queue %u, ", port, queue);
	frame_line(in, in->rx_tsc, pre, m);

	/* What the table holds for the port. */
	if (t->vlan[port] != NULL || t->ul[port] != NULL) {
		tline(in, rte_rdtsc(), "uplink {port:%u}: classify by %s%s", port, t->vlan[port] != NULL ? "802.1Q id" : "",
		      t->ul[port] != NULL ? (t->vlan[port] != NULL ? " and VXLAN (VNI, source)" : "VXLAN (VNI, source)") : "");
	} else {
		const struct wf_fwd *f = &t->fwd[port];
		if (f->out_port == WF_PORT_NONE)
			tline(in, rte_rdtsc(), "lookup {port:%u}: no connection", port);
		else if (f->action >= WF_ACT_REPLICATE)
			tline(in, rte_rdtsc(), "lookup {port:%u}: {xcd:%u:%u}: %s", port, f->xc_slot, f->dir, action_name(f->action));
		else if (f->action == WF_ACT_VLAN_PUSH)
			tline(in, rte_rdtsc(), "lookup {port:%u}: {xcd:%u:%u}: %s %u, out {port:%u}", port, f->xc_slot, f->dir,
			      action_name(f->action), f->vlan_tci & 0xfff, f->out_port);
		else
			tline(in, rte_rdtsc(), "lookup {port:%u}: {xcd:%u:%u}: %s, out {port:%u}", port, f->xc_slot, f->dir,
			      action_name(f->action), f->out_port);
	}

	/* The worker's counters before. */
	uint64_t drops[WF_DROP_MAX];
	memcpy(drops, w->drops, sizeof(drops));
	const uint64_t punted = w->punted;
	const uint32_t nxc = w->dp->cfg.max_xconnects;
	struct wf_xc_counters *xb = w->dp->trace->xcc_before[w->idx];
	if (xb != NULL)
		memcpy(xb, w->xcc, sizeof(*xb) * nxc);
	static __thread struct mac_stats mb[WF_MAX_P2MP];
	for (uint32_t g = 0; g < WF_MAX_P2MP; g++)
		if (w->mac[g] != NULL)
			mb[g] = (struct mac_stats){ w->mac[g]->learned, w->mac[g]->moves, w->mac[g]->flooded, w->mac[g]->limit_drops };

	const uint32_t before_lines = in->n_lines;
	w->trace_cur = fr;
	__atomic_fetch_or(&w->tx_hooks, WF_TXHOOK_TRACE, __ATOMIC_RELAXED);
	wf_dispatch_rx(w, t, port, &m, 1);
	__atomic_fetch_and(&w->tx_hooks, (uint8_t)~WF_TXHOOK_TRACE, __ATOMIC_RELAXED);
	w->trace_cur = NULL;
	const uint32_t sent_lines = in->n_lines - before_lines;
	const uint64_t now = rte_rdtsc();

	/* What changed. */
	if (xb != NULL) {
		for (uint32_t s = 0; s < nxc; s++) {
			for (int d = 0; d < 2; d++) {
				const uint64_t p = w->xcc[s].packets[d] - xb[s].packets[d];
				const uint64_t dr = w->xcc[s].drops[d] - xb[s].drops[d];
				if (p || dr)
					tline(in, now, "{xcd:%u:%d}: %" PRIu64 " counted, %" PRIu64 " bytes, %" PRIu64 " dropped", s, d, p,
					      w->xcc[s].bytes[d] - xb[s].bytes[d], dr);
			}
		}
	}
	for (uint32_t g = 0; g < WF_MAX_P2MP; g++) {
		const struct wf_mac_tbl *mt = w->mac[g];
		if (mt == NULL)
			continue;
		if (mt->learned != mb[g].learned)
			tline(in, now, "bridge {grp:%u}: source MAC learned", g);
		if (mt->moves != mb[g].moves)
			tline(in, now, "bridge {grp:%u}: source MAC moved to this member", g);
		if (mt->limit_drops != mb[g].limit)
			tline(in, now, "bridge {grp:%u}: source MAC not learned: mac_limit reached", g);
		if (mt->flooded != mb[g].flooded)
			tline(in, now, "bridge {grp:%u}: destination unknown, broadcast or multicast: flooded", g);
	}
	bool dropped = false;
	for (uint32_t r = 0; r < WF_DROP_MAX; r++) {
		if (w->drops[r] != drops[r]) {
			dropped = true;
			tline(in, now, "drop %s (%s): %s", wf_drop_reason_name(r), wf_drop_reason_stage(r),
			      wf_drop_reason_description(r));
		}
	}
	if (w->punted != punted)
		tline(in, now, "punted to the underlay thread: the control plane answers it (ARP, ND, echo); not forwarded");
	else if (sent_lines == 0 && !dropped)
		tline(in, now, "nothing sent and no drop counted");
	__atomic_store_n(&fr->ready, 1, __ATOMIC_RELEASE);
}

static struct wf_trace_frame *
claim(struct wf_trace *tr)
{
	if (__atomic_sub_fetch(&tr->left, 1, __ATOMIC_RELAXED) < 0)
		return NULL;
	const uint32_t slot = __atomic_fetch_add(&tr->claimed, 1, __ATOMIC_RELAXED);
	if (slot >= WF_TRACE_MAX)
		return NULL;
	struct wf_trace_frame *fr = &tr->frames[slot];
	memset(&fr->info, 0, sizeof(fr->info));
	fr->info.id = slot;
	return fr;
}

void
wf_trace_burst(struct wf_worker *w, const struct wf_table *t, uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
	       uint16_t n)
{
	struct wf_trace *tr = w->dp->trace;
	uint16_t start = 0;
	if (tr != NULL && (tr->port == WF_PORT_NONE || tr->port == port)) {
		for (uint16_t i = 0; i < n && __atomic_load_n(&tr->left, __ATOMIC_RELAXED) > 0; i++) {
			struct wf_trace_frame *fr = claim(tr);
			if (fr == NULL)
				break;
			if (i > start)
				wf_dispatch_rx(w, t, port, pkts + start, i - start);
			trace_one(w, t, port, queue, pkts[i], fr);
			start = i + 1;
		}
	}
	if (start < n)
		wf_dispatch_rx(w, t, port, pkts + start, n - start);
}

/* Called by wf_port_tx while a traced frame is being forwarded: before the
 * driver owns the frames. */
void
wf_trace_tx(const struct wf_worker *w, uint16_t port, struct rte_mbuf *const *pkts, uint16_t n)
{
	struct wf_trace_info *in = &w->trace_cur->info;
	const uint64_t now = rte_rdtsc();
	for (uint16_t i = 0; i < n; i++) {
		char pre[48];
		snprintf(pre, sizeof(pre), "tx {port:%u} queue %u, ", port, w->txq);
		frame_line(in, now, pre, pkts[i]);
	}
}

/* ---- the control side --------------------------------------------------------- */

static void
set_hooks(struct wf_dataplane *dp, uint8_t on)
{
	for (uint32_t i = 0; i < WF_MAX_WORKERS; i++) {
		if (on)
			__atomic_fetch_or(&dp->workers[i].hooks, WF_HOOK_TRACE, __ATOMIC_RELEASE);
		else
			__atomic_fetch_and(&dp->workers[i].hooks, (uint8_t)~WF_HOOK_TRACE, __ATOMIC_RELEASE);
	}
}

int
wf_trace_start(wf_dataplane_t *dp, uint16_t port, uint32_t count)
{
	if (dp == NULL || count == 0 || count > WF_TRACE_MAX || (port != WF_PORT_NONE && port >= WF_MAX_PORTS)) {
		wf_set_error("trace: count must be 1..%d", WF_TRACE_MAX);
		return -EINVAL;
	}
	if (dp->trace == NULL) {
		struct wf_trace *tr = calloc(1, sizeof(*tr));
		if (tr == NULL)
			return -ENOMEM;
		for (uint32_t i = 0; i < WF_MAX_WORKERS; i++) {
			tr->xcc_before[i] = calloc(dp->cfg.max_xconnects ? dp->cfg.max_xconnects : 1, sizeof(struct wf_xc_counters));
			if (tr->xcc_before[i] == NULL) {
				for (uint32_t k = 0; k < i; k++)
					free(tr->xcc_before[k]);
				free(tr);
				return -ENOMEM;
			}
		}
		tr->left = 0;
		__atomic_store_n(&dp->trace, tr, __ATOMIC_RELEASE);
	}
	struct wf_trace *tr = dp->trace;
	/* Workers see the filter before they see frames to trace. */
	__atomic_store_n(&tr->left, 0, __ATOMIC_RELEASE);
	tr->port = port;
	const uint32_t kept = __atomic_load_n(&tr->claimed, __ATOMIC_ACQUIRE);
	const uint32_t room = kept >= WF_TRACE_MAX ? 0 : WF_TRACE_MAX - kept;
	__atomic_store_n(&tr->left, (int32_t)(count < room ? count : room), __ATOMIC_RELEASE);
	tr->armed = true;
	set_hooks(dp, 1);
	return 0;
}

int
wf_trace_stop(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return -EINVAL;
	if (dp->trace == NULL)
		return 0;
	__atomic_store_n(&dp->trace->left, 0, __ATOMIC_RELEASE);
	dp->trace->armed = false;
	set_hooks(dp, 0);
	return 0;
}

int
wf_trace_clear(wf_dataplane_t *dp)
{
	if (dp == NULL)
		return -EINVAL;
	if (dp->trace == NULL)
		return 0;
	wf_trace_stop(dp);
	/* No worker is inside a traced frame after every one passed a quiescent state. */
	if (dp->started && dp->cfg.n_workers > 0)
		rte_rcu_qsbr_synchronize(dp->qs, RTE_QSBR_THRID_INVALID);
	__atomic_store_n(&dp->trace->claimed, 0, __ATOMIC_RELEASE);
	for (uint32_t i = 0; i < WF_TRACE_MAX; i++)
		dp->trace->frames[i].ready = 0;
	return 0;
}

uint32_t
wf_trace_count(wf_dataplane_t *dp)
{
	if (dp == NULL || dp->trace == NULL)
		return 0;
	uint32_t n = __atomic_load_n(&dp->trace->claimed, __ATOMIC_ACQUIRE);
	if (n > WF_TRACE_MAX)
		n = WF_TRACE_MAX;
	/* The complete ones, in order: a slot still being written ends the list. */
	uint32_t k = 0;
	while (k < n && __atomic_load_n(&dp->trace->frames[k].ready, __ATOMIC_ACQUIRE))
		k++;
	return k;
}

int
wf_trace_get(wf_dataplane_t *dp, uint32_t i, struct wf_trace_info *out)
{
	if (dp == NULL || out == NULL || dp->trace == NULL || i >= WF_TRACE_MAX ||
	    !__atomic_load_n(&dp->trace->frames[i].ready, __ATOMIC_ACQUIRE))
		return -ENOENT;
	*out = dp->trace->frames[i].info;
	return 0;
}

int
wf_trace_state(wf_dataplane_t *dp, uint32_t *armed, uint32_t *left)
{
	if (dp == NULL)
		return -EINVAL;
	const struct wf_trace *tr = dp->trace;
	if (armed != NULL)
		*armed = tr != NULL && tr->armed;
	if (left != NULL) {
		const int32_t l = tr == NULL ? 0 : __atomic_load_n(&tr->left, __ATOMIC_ACQUIRE);
		*left = l > 0 ? (uint32_t)l : 0;
	}
	return 0;
}

void
wf_trace_free(struct wf_dataplane *dp)
{
	if (dp->trace == NULL)
		return;
	for (uint32_t i = 0; i < WF_MAX_WORKERS; i++)
		free(dp->trace->xcc_before[i]);
	free(dp->trace);
	dp->trace = NULL;
}
