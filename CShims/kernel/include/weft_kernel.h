/*
 * weft_kernel.h: the kernel plumbing Weft does itself, without DPDK: rtnetlink
 * (libmnl) and ethtool in any network namespace, and the error reporting
 * every Weft C call shares.
 *
 * Threads: every call here may be made from any thread, workers running or
 * not: nothing here touches the dataplane. A thread that enters a namespace
 * (wf_in_netns) leaves it before the call returns.
 *
 * Errors: calls return 0 (or a count) or -errno. After a failure,
 * wf_last_error() gives the reason the failing call recorded. The buffer is
 * per thread: a call on one thread never overwrites the reason of a call on
 * another (the NSM path's netlink and the dataplane's own calls may run at the
 * same time).
 */
#ifndef WEFT_KERNEL_H
#define WEFT_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Errors (per thread) --------------------------------------------------- */

/* The last error recorded on the calling thread ("" when none). */
void wf_last_error(char *buf, size_t len);
void wf_clear_last_error(void);
/* Record the reason of a failure on the calling thread. */
void wf_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Record a raw line (trailing newlines and spaces trimmed). */
void wf_error_put(const char *msg, size_t len);

/* ---- Namespaces ---------------------------------------------------------------- */

#define WF_NETNS_LEN 128

/* Run fn(arg) with the calling thread inside the namespace at path (NULL or
 * "": the thread's own), then return the thread to its own namespace. */
int wf_in_netns(const char *path, int (*fn)(void *), void *arg);
/* Inode of a namespace file (to tell whether two paths name the same netns). */
int wf_netns_inode(const char *netns_path, uint64_t *dev, uint64_t *ino);
/* Run a sysctl write (e.g. "net/ipv6/conf/nsm-1/disable_ipv6" = "0") inside
 * the namespace at netns_path. */
int wf_netns_sysctl(const char *netns_path, const char *key, const char *value);

/* ---- rtnetlink ------------------------------------------------------------------ */

/* Delete a kernel link by name in the current netns. -ENODEV if absent. */
int wf_netlink_link_delete(const char *ifname);

/*
 * A wf_nl_t is a netlink socket bound in the namespace named by a path
 * (/proc/<pid>/ns/net, /var/run/netns/<name>, or NULL for weftd's own); the
 * calling thread enters that namespace only for the socket() call. One
 * wf_nl_t is used by one thread at a time; the kernel's refusal is left in
 * wf_last_error().
 */
typedef struct wf_nl wf_nl_t;

struct wf_nl_link {
	int32_t index;
	uint32_t mtu;
	uint8_t up;
	uint8_t mac[6];
	char name[16];
	char alias[128];
};

int wf_nl_open(const char *netns_path, wf_nl_t **out);
void wf_nl_close(wf_nl_t *nl);

/* A veth pair: `name` in nl's namespace, `peer` created directly inside the
 * namespace at peer_netns_path (NULL: the same namespace), with the MAC
 * peer_mac (NULL: the kernel picks one; else peer_mac_len must be 6). */
int wf_nl_veth_add(wf_nl_t *nl, const char *name, const char *peer, const char *peer_netns_path, uint32_t mtu,
		   const uint8_t *peer_mac, size_t peer_mac_len);
/* Link index by name (> 0), or -ENODEV. */
int wf_nl_link_index(wf_nl_t *nl, const char *name);
int wf_nl_link_get(wf_nl_t *nl, int32_t index, struct wf_nl_link *out);
/* Up to max links of the namespace; returns how many were written. */
int wf_nl_link_list(wf_nl_t *nl, struct wf_nl_link *out, int max);
/* Change a link: alias (NULL keep), mtu (0 keep), up (-1 keep, 0 down, 1 up). */
int wf_nl_link_set(wf_nl_t *nl, int32_t index, const char *alias, uint32_t mtu, int up);
int wf_nl_link_del(wf_nl_t *nl, int32_t index);
/* Move a link of this socket's namespace into the namespace at netns_path
 * (keeping its name), or, with netns_path NULL, rename it to name (the link must
 * be down). -EEXIST: the name is taken there. */
int wf_nl_link_move(wf_nl_t *nl, int32_t index, const char *netns_path, const char *name);
/* Addresses, routes and neighbours; family AF_INET or AF_INET6, addresses in
 * network byte order; every address's length is given and checked (4 or 16
 * for its family, 6 for a MAC): -EINVAL otherwise, nothing read past it.
 * NLM_F_REPLACE: repeating is harmless. */
int wf_nl_addr_add(wf_nl_t *nl, int32_t index, int family, const uint8_t *addr, size_t addr_len, uint8_t plen);
int wf_nl_route_add(wf_nl_t *nl, int32_t index, int family, const uint8_t *dst, size_t dst_len, uint8_t plen,
		    const uint8_t *gateway, size_t gateway_len);
int wf_nl_neigh_add(wf_nl_t *nl, int32_t index, int family, const uint8_t *ip, size_t ip_len, const uint8_t *mac,
		    size_t mac_len);
/* Remove an address (-EADDRNOTAVAIL when it is not there). */
int wf_nl_addr_del(wf_nl_t *nl, int32_t index, int family, const uint8_t *addr, size_t addr_len, uint8_t plen);
/* A route in routing table `table` (RT_TABLE_MAIN = 254); add replaces. onlink:
 * the gateway is on the link whatever the addresses (RTNH_F_ONLINK, as NSM's
 * kernel forwarders install next hops). del: -ESRCH when it is not there. */
int wf_nl_route(wf_nl_t *nl, int add, int32_t index, int family, const uint8_t *dst, size_t dst_len, uint8_t plen,
		const uint8_t *gateway, size_t gateway_len, uint32_t table, int onlink);
/* A policy rule: from src/src_plen (src NULL: any), IP protocol (0: any), source
 * and destination port ranges (0-0: any), looked up in `table`; priority 0: the
 * kernel's choice. del removes the rule that matches all of these. */
struct wf_nl_rule {
	int family;
	const uint8_t *src;
	size_t src_len;
	uint8_t src_plen;
	uint8_t ipproto;
	uint16_t sport_lo, sport_hi, dport_lo, dport_hi;
	uint32_t table;
	uint32_t priority;
};
int wf_nl_rule(wf_nl_t *nl, int add, const struct wf_nl_rule *r);

/* The other end of a veth: its namespace's path ("" when it is the same as
 * netns) and its name; -ENOENT when ifindex is not a veth. */
int wf_nl_veth_peer(const char *netns, int32_t ifindex, char *peer_ns, size_t peer_ns_len, char peer[16]);

/*
 * A PF's settings for one of its SR-IOV VFs, as `ip link set PF vf N mac M
 * vlan V spoofchk on|off trust on|off` sets them: RTM_SETLINK on the PF with
 * IFLA_VFINFO_LIST > IFLA_VF_INFO > IFLA_VF_MAC, IFLA_VF_VLAN,
 * IFLA_VF_SPOOFCHK, IFLA_VF_TRUST (each only when asked for).
 * wf_vf_msg builds the message (the bytes are tested) into buf; wf_nl_vf_set
 * sends it for the PF `pf_index` and waits for the kernel's answer (a PF
 * without SR-IOV: -EOPNOTSUPP, with wf_last_error saying so).
 */
struct wf_vf_settings {
	uint32_t vf;       /* the VF number (the PF's virtfnN) */
	uint8_t set_mac;   /* 1: mac below; all zeros clears it */
	uint8_t mac[6];
	int32_t vlan;      /* -1: unchanged; 0: none; 1..4094 */
	int8_t spoofchk;   /* -1: unchanged; 0 off; 1 on */
	int8_t trust;      /* -1: unchanged; 0 off; 1 on */
};
int wf_vf_msg(void *buf, size_t len, uint32_t seq, int32_t pf_index, const struct wf_vf_settings *s);
int wf_nl_vf_set(wf_nl_t *nl, int32_t pf_index, const struct wf_vf_settings *s);

/* ---- ethtool ---------------------------------------------------------------------- */

/* TX checksum offload of a kernel interface in a namespace (NULL: weftd's):
 * enable 0/1 sets it, -1 only reads. Returns the state before (0/1) or -errno. */
int wf_ethtool_tx_csum(const char *netns_path, const char *ifname, int enable);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_KERNEL_H */
