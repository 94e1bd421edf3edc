/*
 * kif.c: what Weft's two kernel-interface drivers (afpacket.c, afxdp.c)
 * share: finding the interface (index, MAC, MTU, state) in its network
 * namespace, and its link state kept from netlink link events (one
 * RTNLGRP_LINK socket per namespace, on the events thread), so that the
 * 5 ms link refresh reads memory, never the kernel, however many interfaces
 * there are.
 */
#include <errno.h>
#include <net/if_arp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wf_internal.h"
#include "weft_test.h"

/* Link monitor of one network namespace. */
struct wf_nlmon {
	uint64_t ns_dev, ns_ino;
	int fd;
	uint32_t ev_id;
	uint32_t n, cap;
	struct wf_kif **kifs;
	struct wf_nlmon *next;
	char netns[WF_NETNS_LEN];
};

struct wf_kif_query {
	const char *ifname;
	struct wf_kif *k;
};

static int
wf_kif_query_cb(void *arg)
{
	struct wf_kif_query *q = arg;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", q->ifname);
	int rc = 0;
	if (ioctl(fd, SIOCGIFINDEX, &ifr) != 0) {
		rc = -errno;
		wf_set_error("kernel interface %s: %s", q->ifname, rc == -ENODEV ? "no such interface" : strerror(-rc));
		goto out;
	}
	q->k->ifindex = ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) == 0) {
		if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
			rc = -EPROTONOSUPPORT;
			wf_set_error("kernel interface %s is not an Ethernet interface (ARP type %u)", q->ifname,
				     ifr.ifr_hwaddr.sa_family);
			goto out;
		}
		memcpy(q->k->mac, ifr.ifr_hwaddr.sa_data, 6);
	}
	if (ioctl(fd, SIOCGIFMTU, &ifr) == 0)
		q->k->mtu = (uint32_t)ifr.ifr_mtu;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0)
		q->k->link = (ifr.ifr_flags & IFF_RUNNING) ? 1 : 0;
out:
	close(fd);
	return rc;
}

int
wf_kif_lookup(struct wf_kif *k, const char *ifname, const char *netns)
{
	if (ifname == NULL || ifname[0] == '\0' || strlen(ifname) >= IFNAMSIZ) {
		wf_set_error("kernel interface name '%s' is empty or longer than %d", ifname ? ifname : "",
			     IFNAMSIZ - 1);
		return -EINVAL;
	}
	if (netns != NULL && strlen(netns) >= WF_NETNS_LEN)
		return -ENAMETOOLONG;
	snprintf(k->ifname, sizeof(k->ifname), "%s", ifname);
	snprintf(k->netns, sizeof(k->netns), "%s", netns ? netns : "");
	const char *ns = netns && netns[0] ? netns : "/proc/self/ns/net";
	struct stat st;
	if (stat(ns, &st) != 0) {
		wf_set_error("network namespace %s: %s", ns, strerror(errno));
		return -errno;
	}
	k->ns_dev = st.st_dev;
	k->ns_ino = st.st_ino;
	struct wf_kif_query q = { .ifname = ifname, .k = k };
	return wf_in_netns(netns, wf_kif_query_cb, &q);
}

/* ---- link events ------------------------------------------------------------ */

/* The link state asked of the kernel again (events lost, or possibly missed):
 * down when the interface is gone. Events lock held. */
static void
wf_kif_reread_link(struct wf_kif *k)
{
	struct wf_kif now = *k;
	const int rc = wf_kif_lookup(&now, k->ifname, k->netns[0] ? k->netns : NULL);
	__atomic_store_n(&k->link, rc == 0 ? now.link : 0, __ATOMIC_RELAXED);
}

static void
wf_nlmon_read(struct wf_dataplane *dp, void *arg, uint32_t events)
{
	(void)dp;
	(void)events;
	struct wf_nlmon *mon = arg;
	char buf[16384];
	for (;;) {
		ssize_t len = recv(mon->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (len < 0) {
			if (errno == ENOBUFS) {
				/* Events were lost: ask each interface again. */
				for (uint32_t i = 0; i < mon->n; i++)
					wf_kif_reread_link(mon->kifs[i]);
				continue;
			}
			return;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK)
				continue;
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
				continue;
			const struct ifinfomsg *ifi = NLMSG_DATA(h);
			uint8_t up = h->nlmsg_type == RTM_NEWLINK && (ifi->ifi_flags & IFF_RUNNING) ? 1 : 0;
			for (uint32_t i = 0; i < mon->n; i++)
				if (mon->kifs[i]->ifindex == ifi->ifi_index)
					__atomic_store_n(&mon->kifs[i]->link, up, __ATOMIC_RELAXED);
		}
	}
}

struct wf_nl_open_req {
	int fd;
};

static int
wf_nlmon_open_cb(void *arg)
{
	struct wf_nl_open_req *r = arg;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	r->fd = fd;
	return 0;
}

void (*wf_test_kif_before_watch)(void *arg);
void *wf_test_kif_before_watch_arg;

int
wf_kif_watch(struct wf_dataplane *dp, struct wf_kif *k)
{
	if (wf_test_kif_before_watch != NULL)
		wf_test_kif_before_watch(wf_test_kif_before_watch_arg);
	wf_ev_lock(dp);
	struct wf_nlmon *mon = dp->nlmon;
	while (mon != NULL && !(mon->ns_dev == k->ns_dev && mon->ns_ino == k->ns_ino))
		mon = mon->next;
	int rc = 0;
	if (mon == NULL) {
		mon = calloc(1, sizeof(*mon));
		if (mon == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		struct wf_nl_open_req r = { .fd = -1 };
		rc = wf_in_netns(k->netns[0] ? k->netns : NULL, wf_nlmon_open_cb, &r);
		if (rc == 0)
			rc = wf_ev_add(dp, r.fd, EPOLLIN, wf_nlmon_read, mon, &mon->ev_id);
		if (rc != 0) {
			if (r.fd >= 0)
				close(r.fd);
			free(mon);
			wf_set_error("cannot watch link events in %s: %s", k->netns[0] ? k->netns : "weftd's namespace",
				     strerror(-rc));
			goto out;
		}
		mon->fd = r.fd;
		mon->ns_dev = k->ns_dev;
		mon->ns_ino = k->ns_ino;
		snprintf(mon->netns, sizeof(mon->netns), "%s", k->netns);
		mon->next = dp->nlmon;
		dp->nlmon = mon;
	}
	if (mon->n == mon->cap) {
		uint32_t cap = mon->cap ? mon->cap * 2 : 16;
		struct wf_kif **n = realloc(mon->kifs, cap * sizeof(*n));
		if (n == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		mon->kifs = n;
		mon->cap = cap;
	}
	mon->kifs[mon->n++] = k;
	/*
	 * The link state read at lookup can be older than this registration: an
	 * event handled since (or sent before this namespace had a monitor) found
	 * no interface to apply to, and a veth's carrier comes up on its own time
	 * after both ends are set up. Lost, it left an NSM connection's pod side
	 * "down" for good: everything towards the pod dropped as link-down
	 * (NSMChaosSystemTests, seed 1 step 3). Read it again now that every later
	 * event finds the interface (the events lock is held: none is handled
	 * between this read and the registration).
	 */
	wf_kif_reread_link(k);
out:
	wf_ev_unlock(dp);
	return rc;
}

void
wf_kif_unwatch(struct wf_dataplane *dp, struct wf_kif *k)
{
	wf_ev_lock(dp);
	struct wf_nlmon **pp = &dp->nlmon;
	for (; *pp != NULL; pp = &(*pp)->next) {
		struct wf_nlmon *mon = *pp;
		for (uint32_t i = 0; i < mon->n; i++) {
			if (mon->kifs[i] != k)
				continue;
			mon->kifs[i] = mon->kifs[--mon->n];
			if (mon->n == 0) {
				wf_ev_del(dp, mon->ev_id);
				close(mon->fd);
				*pp = mon->next;
				free(mon->kifs);
				free(mon);
			}
			wf_ev_unlock(dp);
			return;
		}
	}
	wf_ev_unlock(dp);
}
