/*
 * ethtool.c: TX checksum offload of a kernel interface, through the legacy
 * ethtool ioctl in the interface's network namespace (what NSM's VPP
 * forwarder does to the veth pairs it creates). With TX checksum off, the
 * kernel also drops TSO, so the stack behind that interface hands over
 * complete, MTU-sized frames; needed where Weft cannot see the kernel's
 * checksum metadata (AF_XDP).
 */
#include <errno.h>
#include <stdio.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft_kernel.h"

struct wf_csum_req {
	const char *ifname;
	int enable; /* -1: read only */
	int was;
};

static int
wf_csum_cb(void *arg)
{
	struct wf_csum_req *r = arg;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", r->ifname);
	struct ethtool_value v = { .cmd = ETHTOOL_GTXCSUM };
	ifr.ifr_data = (void *)&v;
	int rc = 0;
	if (ioctl(fd, SIOCETHTOOL, &ifr) != 0) {
		rc = -errno;
		wf_set_error("%s: cannot read TX checksum offload: %s", r->ifname, strerror(-rc));
	} else {
		r->was = v.data ? 1 : 0;
		if (r->enable >= 0 && (v.data ? 1 : 0) != r->enable) {
			v.cmd = ETHTOOL_STXCSUM;
			v.data = (uint32_t)r->enable;
			if (ioctl(fd, SIOCETHTOOL, &ifr) != 0) {
				rc = -errno;
				wf_set_error("%s: cannot turn TX checksum offload %s: %s", r->ifname,
					     r->enable ? "on" : "off", strerror(-rc));
			}
		}
	}
	close(fd);
	return rc;
}

int
wf_ethtool_tx_csum(const char *netns_path, const char *ifname, int enable)
{
	if (ifname == NULL || strlen(ifname) >= IFNAMSIZ || enable < -1 || enable > 1)
		return -EINVAL;
	struct wf_csum_req r = { .ifname = ifname, .enable = enable, .was = 0 };
	int rc = wf_in_netns(netns_path, wf_csum_cb, &r);
	return rc < 0 ? rc : r.was;
}
