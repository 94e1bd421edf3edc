/*
 * weft_test.h: hooks for Weft's own tests and benchmarks, apart from the
 * product API in weft.h. Nothing here is used by weftd.
 */
#ifndef WEFT_TEST_H
#define WEFT_TEST_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Inject one frame into a test port's RX with the offload metadata a kernel
 * interface would have attached: a partial TCP/UDP checksum at l4_offset
 * (l4_proto 6 or 17; 0: none) and, with gso_size > 0, a TCP/UDP super-frame
 * to be cut into gso_size-byte segments. The frame may be longer than one
 * mbuf (it is chained).
 */
struct wf_test_offload {
	uint16_t l2_len, l3_len, l4_len;
	uint8_t l4_proto;
	uint8_t ipv6;
	uint16_t gso_size;
};
int wf_testport_inject_offload(wf_dataplane_t *dp, uint16_t port, const uint8_t *frame, uint32_t len,
			       const struct wf_test_offload *ol);

#ifdef __cplusplus
}
#endif
#endif
