/*
 * netlink.c: the few kernel operations the core needs, over rtnetlink with
 * libmnl (no shelling out to ip). Used to clean up kernel interfaces a
 * previous weftd run created and left behind after kill -9.
 */
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>

#include "weft.h"

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
