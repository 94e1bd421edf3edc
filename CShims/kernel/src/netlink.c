/*
 * netlink.c: the kernel operations Weft needs, over rtnetlink with libmnl (no
 * shelling out to ip): links, veth pairs, addresses, routes and neighbours in
 * any network namespace (NSM pods), and cleaning up what a previous weftd left
 * behind after kill -9. No DPDK here.
 */
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <linux/fib_rules.h>

#include "weft_kernel.h"

int
wf_netlink_link_delete(const char *ifname)
{
	if (ifname == NULL || strlen(ifname) >= IFNAMSIZ)
		return -EINVAL;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_DELLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = (uint32_t)time(NULL);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);

	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	if (nl == NULL)
		return -errno;
	int rc = 0;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		rc = -errno;
		goto out;
	}
	unsigned portid = mnl_socket_get_portid(nl);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		rc = -errno;
		goto out;
	}
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0) {
		rc = -errno;
		goto out;
	}
	rc = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, NULL, NULL);
	rc = rc < 0 ? -errno : 0;
out:
	mnl_socket_close(nl);
	return rc;
}

/* ---- rtnetlink inside any network namespace ------------------------------ */

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/veth.h>
#include <linux/net_namespace.h>


struct wf_nl {
	struct mnl_socket *sock;
	unsigned portid;
	uint32_t seq;
};

/* Run fn(arg) with the calling thread inside the namespace at path. */
int
wf_in_netns(const char *path, int (*fn)(void *), void *arg)
{
	if (path == NULL || path[0] == '\0')
		return fn(arg);
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	int target = open(path, O_RDONLY | O_CLOEXEC);
	if (target < 0) {
		int rc = -errno;
		close(self);
		wf_set_error("cannot open network namespace %s: %s", path, strerror(-rc));
		return rc;
	}
	int rc;
	if (setns(target, CLONE_NEWNET) < 0) {
		rc = -errno;
		wf_set_error("%s is not a network namespace (setns: %s)", path, strerror(-rc));
	} else {
		rc = fn(arg);
		if (setns(self, CLONE_NEWNET) < 0) {
			/* Cannot happen for our own namespace; never leave the thread elsewhere. */
			wf_set_error("setns back to our namespace failed: %s", strerror(errno));
			abort();
		}
	}
	close(target);
	close(self);
	return rc;
}

static int
open_sock(void *arg)
{
	struct wf_nl *nl = arg;
	nl->sock = mnl_socket_open(NETLINK_ROUTE);
	if (nl->sock == NULL)
		return -errno;
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		int rc = -errno;
		mnl_socket_close(nl->sock);
		nl->sock = NULL;
		return rc;
	}
	return 0;
}

int
wf_nl_open(const char *netns_path, wf_nl_t **out)
{
	struct wf_nl *nl = calloc(1, sizeof(*nl));
	if (nl == NULL)
		return -ENOMEM;
	int rc = wf_in_netns(netns_path, open_sock, nl);
	if (rc < 0) {
		free(nl);
		return rc;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (uint32_t)time(NULL);
	*out = nl;
	return 0;
}

void
wf_nl_close(wf_nl_t *nl)
{
	if (nl == NULL)
		return;
	mnl_socket_close(nl->sock);
	free(nl);
}

int
wf_netns_inode(const char *netns_path, uint64_t *dev, uint64_t *ino)
{
	struct stat st;
	if (stat(netns_path, &st) < 0)
		return -errno;
	*dev = (uint64_t)st.st_dev;
	*ino = (uint64_t)st.st_ino;
	return 0;
}

/* Send one request and wait for its ack; cb sees any data replies. */
static int
transact(struct wf_nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data, const char *what)
{
	nlh->nlmsg_seq = ++nl->seq;
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		int rc = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, nl->portid, cb, data);
		if (rc < 0) {
			rc = -errno;
			wf_set_error("netlink %s: %s", what, strerror(-rc));
			return rc;
		}
		if (rc == MNL_CB_STOP)
			return 0;
	}
}

/* A namespace's fd for IFLA_NET_NS_FD, or -errno with the reason set. */
static int
open_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		wf_set_error("cannot open network namespace %s: %s", path, strerror(-rc));
		return rc;
	}
	return fd;
}

static struct nlmsghdr *
link_msg(char *buf, uint16_t type, uint16_t flags, int32_t index)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = index;
	return nlh;
}

int
wf_nl_veth_add(wf_nl_t *nl, const char *name, const char *peer, const char *peer_netns_path, uint32_t mtu,
	       const uint8_t *peer_mac, size_t peer_mac_len)
{
	if (name == NULL || peer == NULL || strlen(name) >= IFNAMSIZ || strlen(peer) >= IFNAMSIZ)
		return -EINVAL;
	if (peer_mac != NULL && peer_mac_len != 6) {
		wf_set_error("veth add: a MAC address is 6 bytes, not %zu", peer_mac_len);
		return -EINVAL;
	}
	int nsfd = -1;
	if (peer_netns_path != NULL && peer_netns_path[0] != '\0' && (nsfd = open_netns(peer_netns_path)) < 0)
		return nsfd;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	struct nlattr *linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	struct nlattr *infodata = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	struct nlattr *peerinfo = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
	memset(pifm, 0, sizeof(*pifm));
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	if (peer_mac)
		mnl_attr_put(nlh, IFLA_ADDRESS, 6, peer_mac);
	if (nsfd >= 0)
		mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)nsfd);
	mnl_attr_nest_end(nlh, peerinfo);
	mnl_attr_nest_end(nlh, infodata);
	mnl_attr_nest_end(nlh, linkinfo);
	int rc = transact(nl, nlh, NULL, NULL, "veth add");
	if (rc == -EEXIST)
		wf_set_error("cannot create veth %s/%s: an interface of that name exists", name, peer);
	if (nsfd >= 0)
		close(nsfd);
	return rc;
}

static int
link_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);
	if (mnl_attr_type_valid(attr, IFLA_MAX) < 0)
		return MNL_CB_OK;
	tb[type] = attr;
	return MNL_CB_OK;
}

static void
parse_link(const struct nlmsghdr *nlh, struct wf_nl_link *l)
{
	const struct nlattr *tb[IFLA_MAX + 1] = {0};
	struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	memset(l, 0, sizeof(*l));
	l->index = ifm->ifi_index;
	l->up = (ifm->ifi_flags & IFF_UP) != 0;
	mnl_attr_parse(nlh, sizeof(*ifm), link_attr_cb, tb);
	if (tb[IFLA_IFNAME])
		snprintf(l->name, sizeof(l->name), "%s", mnl_attr_get_str(tb[IFLA_IFNAME]));
	if (tb[IFLA_IFALIAS])
		snprintf(l->alias, sizeof(l->alias), "%s", mnl_attr_get_str(tb[IFLA_IFALIAS]));
	if (tb[IFLA_MTU])
		l->mtu = mnl_attr_get_u32(tb[IFLA_MTU]);
	if (tb[IFLA_ADDRESS] && mnl_attr_get_payload_len(tb[IFLA_ADDRESS]) == 6)
		memcpy(l->mac, mnl_attr_get_payload(tb[IFLA_ADDRESS]), 6);
}

struct link_list {
	struct wf_nl_link *out;
	int max, n;
};

static int
link_list_cb(const struct nlmsghdr *nlh, void *data)
{
	struct link_list *ll = data;
	if (nlh->nlmsg_type != RTM_NEWLINK || ll->n >= ll->max)
		return MNL_CB_OK;
	parse_link(nlh, &ll->out[ll->n++]);
	return MNL_CB_OK;
}

int
wf_nl_link_list(wf_nl_t *nl, struct wf_nl_link *out, int max)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	struct link_list ll = {.out = out, .max = max};
	int rc = transact(nl, nlh, link_list_cb, &ll, "link dump");
	return rc < 0 ? rc : ll.n;
}

int
wf_nl_link_get(wf_nl_t *nl, int32_t index, struct wf_nl_link *out)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, RTM_GETLINK, 0, index);
	struct link_list ll = {.out = out, .max = 1};
	int rc = transact(nl, nlh, link_list_cb, &ll, "link get");
	if (rc < 0)
		return rc;
	return ll.n == 1 ? 0 : -ENODEV;
}

int
wf_nl_link_index(wf_nl_t *nl, const char *name)
{
	if (name == NULL || strlen(name) >= IFNAMSIZ)
		return -EINVAL;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, RTM_GETLINK, 0, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	struct wf_nl_link l;
	struct link_list ll = {.out = &l, .max = 1};
	nlh->nlmsg_seq = ++nl->seq;
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	char rbuf[MNL_SOCKET_BUFFER_SIZE];
	ssize_t n = mnl_socket_recvfrom(nl->sock, rbuf, sizeof(rbuf));
	if (n < 0)
		return -errno;
	int rc = mnl_cb_run(rbuf, (size_t)n, nlh->nlmsg_seq, nl->portid, link_list_cb, &ll);
	if (rc < 0)
		return errno == ENODEV ? -ENODEV : -errno;
	/* A GETLINK with ACK answers the link, then the ack: drain it. */
	if (rc != MNL_CB_STOP) {
		n = mnl_socket_recvfrom(nl->sock, rbuf, sizeof(rbuf));
		if (n >= 0)
			mnl_cb_run(rbuf, (size_t)n, nlh->nlmsg_seq, nl->portid, NULL, NULL);
	}
	return ll.n == 1 ? l.index : -ENODEV;
}

int
wf_nl_link_set(wf_nl_t *nl, int32_t index, const char *alias, uint32_t mtu, int up)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, index);
	struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	if (up >= 0) {
		ifm->ifi_change = IFF_UP;
		ifm->ifi_flags = up ? IFF_UP : 0;
	}
	if (alias != NULL)
		mnl_attr_put_strz(nlh, IFLA_IFALIAS, alias);
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	return transact(nl, nlh, NULL, NULL, "link set");
}

int
wf_nl_link_move(wf_nl_t *nl, int32_t index, const char *netns_path, const char *name)
{
	if ((netns_path == NULL) == (name == NULL))
		return -EINVAL;
	if (name != NULL && (name[0] == '\0' || strlen(name) >= IFNAMSIZ))
		return -EINVAL;
	int nsfd = -1;
	if (netns_path != NULL && (nsfd = open_netns(netns_path)) < 0)
		return nsfd;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, index);
	if (nsfd >= 0)
		mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)nsfd);
	else
		mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	int rc = transact(nl, nlh, NULL, NULL, nsfd >= 0 ? "link move" : "link rename");
	if (nsfd >= 0)
		close(nsfd);
	return rc;
}

int
wf_nl_link_del(wf_nl_t *nl, int32_t index)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, RTM_DELLINK, 0, index);
	return transact(nl, nlh, NULL, NULL, "link delete");
}

static size_t
addr_len(int family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

/* An address of `family` given with its length: it must be exactly that long. */
static int
check_addr(int family, const uint8_t *a, size_t a_len, const char *what)
{
	size_t len = addr_len(family);
	if (len == 0) {
		wf_set_error("%s: address family %d is neither IPv4 nor IPv6", what, family);
		return -EINVAL;
	}
	if (a == NULL || a_len != len) {
		wf_set_error("%s: an %s address is %zu bytes, not %zu", what, family == AF_INET ? "IPv4" : "IPv6", len,
			     a == NULL ? (size_t)0 : a_len);
		return -EINVAL;
	}
	return 0;
}

int
wf_nl_addr_add(wf_nl_t *nl, int32_t index, int family, const uint8_t *addr, size_t addr_len_given, uint8_t plen)
{
	int rc = check_addr(family, addr, addr_len_given, "address add");
	if (rc)
		return rc;
	size_t len = addr_len(family);
	if (plen > len * 8)
		return -EINVAL;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)family;
	ifa->ifa_prefixlen = plen;
	ifa->ifa_index = (uint32_t)index;
	mnl_attr_put(nlh, IFA_LOCAL, len, addr);
	mnl_attr_put(nlh, IFA_ADDRESS, len, addr);
	if (family == AF_INET6)
		mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
	return transact(nl, nlh, NULL, NULL, "address add");
}

int
wf_nl_route_add(wf_nl_t *nl, int32_t index, int family, const uint8_t *dst, size_t dst_len, uint8_t plen,
		const uint8_t *gateway, size_t gateway_len)
{
	int rc = check_addr(family, dst, dst_len, "route add");
	if (rc == 0 && gateway != NULL)
		rc = check_addr(family, gateway, gateway_len, "route add (gateway)");
	if (rc)
		return rc;
	size_t len = addr_len(family);
	if (plen > len * 8)
		return -EINVAL;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_dst_len = plen;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_DST, len, dst);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
	if (gateway)
		mnl_attr_put(nlh, RTA_GATEWAY, len, gateway);
	return transact(nl, nlh, NULL, NULL, "route add");
}

int
wf_nl_addr_del(wf_nl_t *nl, int32_t index, int family, const uint8_t *addr, size_t addr_len_given, uint8_t plen)
{
	int rc = check_addr(family, addr, addr_len_given, "address del");
	if (rc)
		return rc;
	size_t len = addr_len(family);
	if (plen > len * 8)
		return -EINVAL;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_DELADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)family;
	ifa->ifa_prefixlen = plen;
	ifa->ifa_index = (uint32_t)index;
	mnl_attr_put(nlh, IFA_LOCAL, len, addr);
	mnl_attr_put(nlh, IFA_ADDRESS, len, addr);
	return transact(nl, nlh, NULL, NULL, "address del");
}

int
wf_nl_route(wf_nl_t *nl, int add, int32_t index, int family, const uint8_t *dst, size_t dst_len, uint8_t plen,
	    const uint8_t *gateway, size_t gateway_len, uint32_t table, int onlink)
{
	const char *what = add ? "route add" : "route del";
	int rc = check_addr(family, dst, dst_len, what);
	if (rc == 0 && gateway != NULL)
		rc = check_addr(family, gateway, gateway_len, what);
	if (rc)
		return rc;
	size_t len = addr_len(family);
	if (plen > len * 8 || table == 0)
		return -EINVAL;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_dst_len = plen;
	rtm->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = add ? (gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK) : RT_SCOPE_NOWHERE;
	rtm->rtm_type = RTN_UNICAST;
	if (gateway && onlink)
		rtm->rtm_flags |= RTNH_F_ONLINK;
	mnl_attr_put(nlh, RTA_DST, len, dst);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
	mnl_attr_put_u32(nlh, RTA_TABLE, table);
	if (gateway)
		mnl_attr_put(nlh, RTA_GATEWAY, len, gateway);
	return transact(nl, nlh, NULL, NULL, what);
}

int
wf_nl_rule(wf_nl_t *nl, int add, const struct wf_nl_rule *r)
{
	const char *what = add ? "rule add" : "rule del";
	if (r == NULL || (r->family != AF_INET && r->family != AF_INET6) || r->table == 0) {
		wf_set_error("%s: a rule needs a family and a table", what);
		return -EINVAL;
	}
	size_t len = addr_len(r->family);
	if (r->src != NULL) {
		int rc = check_addr(r->family, r->src, r->src_len, what);
		if (rc)
			return rc;
		if (r->src_plen > len * 8)
			return -EINVAL;
	}
	if (r->sport_lo > r->sport_hi || r->dport_lo > r->dport_hi) {
		wf_set_error("%s: a port range's start is after its end", what);
		return -EINVAL;
	}
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
	struct fib_rule_hdr *frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));
	frh->family = (uint8_t)r->family;
	frh->action = FR_ACT_TO_TBL;
	frh->table = r->table < 256 ? (uint8_t)r->table : RT_TABLE_UNSPEC;
	if (r->src != NULL) {
		frh->src_len = r->src_plen;
		mnl_attr_put(nlh, FRA_SRC, len, r->src);
	}
	mnl_attr_put_u32(nlh, FRA_TABLE, r->table);
	if (r->priority)
		mnl_attr_put_u32(nlh, FRA_PRIORITY, r->priority);
	if (r->ipproto)
		mnl_attr_put_u8(nlh, FRA_IP_PROTO, r->ipproto);
	if (r->sport_hi) {
		struct fib_rule_port_range pr = {.start = r->sport_lo, .end = r->sport_hi};
		mnl_attr_put(nlh, FRA_SPORT_RANGE, sizeof(pr), &pr);
	}
	if (r->dport_hi) {
		struct fib_rule_port_range pr = {.start = r->dport_lo, .end = r->dport_hi};
		mnl_attr_put(nlh, FRA_DPORT_RANGE, sizeof(pr), &pr);
	}
	return transact(nl, nlh, NULL, NULL, what);
}

int
wf_nl_neigh_add(wf_nl_t *nl, int32_t index, int family, const uint8_t *ip, size_t ip_len, const uint8_t *mac,
		size_t mac_len)
{
	int rc = check_addr(family, ip, ip_len, "neighbour add");
	if (rc)
		return rc;
	if (mac == NULL || mac_len != 6) {
		wf_set_error("neighbour add: a MAC address is 6 bytes, not %zu", mac == NULL ? (size_t)0 : mac_len);
		return -EINVAL;
	}
	size_t len = addr_len(family);
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof(*nd));
	nd->ndm_family = (uint8_t)family;
	nd->ndm_ifindex = index;
	nd->ndm_state = NUD_PERMANENT;
	mnl_attr_put(nlh, NDA_DST, len, ip);
	mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
	return transact(nl, nlh, NULL, NULL, "neighbour add");
}

struct sysctl_arg {
	const char *key, *value;
};

static int
write_sysctl(void *p)
{
	struct sysctl_arg *a = p;
	char path[256];
	snprintf(path, sizeof(path), "/proc/sys/%s", a->key);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, a->value, strlen(a->value));
	int rc = n < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int
wf_netns_sysctl(const char *netns_path, const char *key, const char *value)
{
	struct sysctl_arg a = {key, value};
	return wf_in_netns(netns_path, write_sysctl, &a);
}

/* ---- the other end of a veth ------------------------------------------------ */

struct veth_info {
	bool veth;
	int32_t peer;  /* IFLA_LINK */
	int32_t nsid;  /* IFLA_LINK_NETNSID; -1: same namespace */
};

static int
veth_info_cb(const struct nlmsghdr *nlh, void *data)
{
	struct veth_info *vi = data;
	if (nlh->nlmsg_type != RTM_NEWLINK)
		return MNL_CB_OK;
	const struct nlattr *tb[IFLA_MAX + 1] = {0};
	struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	mnl_attr_parse(nlh, sizeof(*ifm), link_attr_cb, tb);
	if (tb[IFLA_LINK])
		vi->peer = (int32_t)mnl_attr_get_u32(tb[IFLA_LINK]);
	if (tb[IFLA_LINK_NETNSID])
		vi->nsid = (int32_t)mnl_attr_get_u32(tb[IFLA_LINK_NETNSID]);
	if (tb[IFLA_LINKINFO]) {
		const struct nlattr *attr;
		mnl_attr_for_each_nested(attr, tb[IFLA_LINKINFO]) {
			if (mnl_attr_get_type(attr) == IFLA_INFO_KIND &&
			    strcmp(mnl_attr_get_str(attr), "veth") == 0)
				vi->veth = true;
		}
	}
	return MNL_CB_OK;
}

static int
nsid_cb(const struct nlmsghdr *nlh, void *data)
{
	int32_t *nsid = data;
	if (nlh->nlmsg_type != RTM_NEWNSID)
		return MNL_CB_OK;
	const struct nlattr *attr;
	mnl_attr_for_each(attr, nlh, sizeof(struct rtgenmsg)) {
		if (mnl_attr_get_type(attr) == NETNSA_NSID)
			*nsid = (int32_t)mnl_attr_get_u32(attr);
	}
	return MNL_CB_OK;
}

/* The id the namespace of nl gives the namespace open at fd (-1: none). */
static int32_t
nsid_of(struct wf_nl *nl, int fd)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETNSID;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	struct rtgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->rtgen_family = AF_UNSPEC;
	mnl_attr_put_u32(nlh, NETNSA_FD, (uint32_t)fd);
	int32_t nsid = -1;
	if (transact(nl, nlh, nsid_cb, &nsid, "get nsid") < 0)
		return -1;
	return nsid;
}

/* Among the namespaces this host names (/var/run/netns, /proc/<pid>/ns/net), the one with id nsid. */
static int
find_netns(struct wf_nl *nl, int32_t nsid, char *path, size_t len)
{
	const char *dirs[2] = { "/var/run/netns", "/proc" };
	for (int d = 0; d < 2; d++) {
		DIR *dir = opendir(dirs[d]);
		if (dir == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(dir)) != NULL) {
			char p[WF_NETNS_LEN];
			if (d == 0) {
				if (e->d_name[0] == '.')
					continue;
				snprintf(p, sizeof(p), "/var/run/netns/%s", e->d_name);
			} else {
				if (e->d_name[0] < '0' || e->d_name[0] > '9')
					continue;
				snprintf(p, sizeof(p), "/proc/%s/ns/net", e->d_name);
			}
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			int32_t id = nsid_of(nl, fd);
			close(fd);
			if (id == nsid) {
				snprintf(path, len, "%s", p);
				closedir(dir);
				return 0;
			}
		}
		closedir(dir);
	}
	return -ENOENT;
}

int
wf_nl_veth_peer(const char *netns, int32_t ifindex, char *peer_ns, size_t peer_ns_len, char peer[16])
{
	wf_nl_t *nl;
	int rc = wf_nl_open(netns, &nl);
	if (rc < 0)
		return rc;
	struct veth_info vi = { .veth = false, .peer = 0, .nsid = -1 };
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, RTM_GETLINK, 0, ifindex);
	rc = transact(nl, nlh, veth_info_cb, &vi, "link get");
	if (rc == 0 && (!vi.veth || vi.peer <= 0))
		rc = -ENOENT;
	peer_ns[0] = '\0';
	if (rc == 0 && vi.nsid >= 0) {
		rc = find_netns(nl, vi.nsid, peer_ns, peer_ns_len);
		if (rc != 0)
			wf_set_error("the veth peer of interface %d is in a namespace this host does not name (nsid %d)",
				     ifindex, vi.nsid);
	} else if (rc == 0 && netns != NULL) {
		snprintf(peer_ns, peer_ns_len, "%s", netns);
	}
	wf_nl_close(nl);
	if (rc != 0)
		return rc == -ENOENT && peer_ns[0] == '\0' && !vi.veth ? -ENOENT : (rc == -ENOENT ? -ESRCH : rc);
	if ((rc = wf_nl_open(peer_ns[0] ? peer_ns : NULL, &nl)) < 0)
		return rc;
	struct wf_nl_link l;
	rc = wf_nl_link_get(nl, vi.peer, &l);
	wf_nl_close(nl);
	if (rc == 0)
		snprintf(peer, 16, "%s", l.name);
	return rc;
}

/* ---- SR-IOV: a VF's settings through its PF -------------------------------- */

int
wf_vf_msg(void *buf, size_t len, uint32_t seq, int32_t pf_index, const struct wf_vf_settings *s)
{
	if (s == NULL || len < MNL_SOCKET_BUFFER_SIZE || pf_index <= 0) {
		wf_set_error("VF settings: bad arguments");
		return -EINVAL;
	}
	if (!s->set_mac && s->vlan < 0 && s->spoofchk < 0 && s->trust < 0) {
		wf_set_error("VF %u: no setting asked for", s->vf);
		return -EINVAL;
	}
	if (s->vlan < -1 || s->vlan > 4094 || s->spoofchk < -1 || s->spoofchk > 1 || s->trust < -1 || s->trust > 1) {
		wf_set_error("VF %u: VLAN %d, spoofchk %d, trust %d out of range", s->vf, s->vlan, s->spoofchk, s->trust);
		return -EINVAL;
	}
	struct nlmsghdr *nlh = link_msg(buf, RTM_SETLINK, 0, pf_index);
	nlh->nlmsg_seq = seq;
	struct nlattr *list = mnl_attr_nest_start(nlh, IFLA_VFINFO_LIST);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_VF_INFO);
	if (s->set_mac) {
		struct ifla_vf_mac m;
		memset(&m, 0, sizeof(m));
		m.vf = s->vf;
		memcpy(m.mac, s->mac, 6);
		mnl_attr_put(nlh, IFLA_VF_MAC, sizeof(m), &m);
	}
	if (s->vlan >= 0) {
		struct ifla_vf_vlan v = { .vf = s->vf, .vlan = (uint32_t)s->vlan, .qos = 0 };
		mnl_attr_put(nlh, IFLA_VF_VLAN, sizeof(v), &v);
	}
	if (s->spoofchk >= 0) {
		struct ifla_vf_spoofchk c = { .vf = s->vf, .setting = (uint32_t)s->spoofchk };
		mnl_attr_put(nlh, IFLA_VF_SPOOFCHK, sizeof(c), &c);
	}
	if (s->trust >= 0) {
		struct ifla_vf_trust t = { .vf = s->vf, .setting = (uint32_t)s->trust };
		mnl_attr_put(nlh, IFLA_VF_TRUST, sizeof(t), &t);
	}
	mnl_attr_nest_end(nlh, info);
	mnl_attr_nest_end(nlh, list);
	return (int)nlh->nlmsg_len;
}

int
wf_nl_vf_set(wf_nl_t *nl, int32_t pf_index, const struct wf_vf_settings *s)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int rc = wf_vf_msg(buf, sizeof(buf), 0, pf_index, s);
	if (rc < 0)
		return rc;
	rc = transact(nl, (struct nlmsghdr *)buf, NULL, NULL, "VF settings");
	if (rc == -EOPNOTSUPP)
		wf_set_error("interface %d takes no SR-IOV VF settings (not a PF: EOPNOTSUPP)", pf_index);
	else if (rc < 0)
		wf_set_error("VF %u settings on interface %d: %s", s->vf, pf_index, strerror(-rc));
	return rc;
}
