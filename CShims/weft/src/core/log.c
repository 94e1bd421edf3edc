/*
 * log.c: keep the last error line DPDK logged as the calling thread's error
 * (weft_kernel.h: wf_last_error), so a failed control call can tell Swift why
 * it failed. DPDK reports most causes only through its log (e.g. "memif:
 * Failed to bind socket"), never through the return code. Log lines still go
 * to stderr as usual.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <rte_log.h>

#include "wf_internal.h"

static ssize_t
wf_log_write(void *cookie, const char *buf, size_t size)
{
	(void)cookie;
	/* Keep what looks like a failure. Level is only valid inside rte_log. */
	int level = rte_log_cur_msg_loglevel();
	if (level > 0 && level <= (int)RTE_LOG_ERR)
		wf_error_put(buf, size);
	fwrite(buf, 1, size, stderr);
	fflush(stderr);
	return (ssize_t)size;
}

int
wf_log_capture_init(void)
{
	static FILE *f;
	if (f != NULL)
		return 0;
	cookie_io_functions_t io = { .write = wf_log_write };
	f = fopencookie(NULL, "w", io);
	if (f == NULL)
		return -ENOMEM;
	setvbuf(f, NULL, _IOLBF, 0);
	return rte_openlog_stream(f);
}

static const char *const wf_drop_names[] = {
#define WF_X_NAME(e, s, d) s,
	WF_DROP_REASONS(WF_X_NAME)
#undef WF_X_NAME
};
static const char *const wf_drop_descs[] = {
#define WF_X_DESC(e, s, d) d,
	WF_DROP_REASONS(WF_X_DESC)
#undef WF_X_DESC
};

const char *
wf_drop_reason_name(uint32_t r)
{
	return r < WF_DROP_MAX ? wf_drop_names[r] : NULL;
}

const char *
wf_drop_reason_description(uint32_t r)
{
	return r < WF_DROP_MAX ? wf_drop_descs[r] : NULL;
}

/* Each reason's stage: every entry of a stage's list expands to its name. */
#define WF_X_STAGE_ENTRY(e, s, d) WF_CUR_STAGE,
static const char *const wf_drop_stage_of[] = {
#define WF_CUR_STAGE "xconnect"
	WF_DROPS_XCONNECT(WF_X_STAGE_ENTRY)
#undef WF_CUR_STAGE
#define WF_CUR_STAGE "egress"
	WF_DROPS_EGRESS(WF_X_STAGE_ENTRY)
#undef WF_CUR_STAGE
#define WF_CUR_STAGE "uplink"
	WF_DROPS_UPLINK(WF_X_STAGE_ENTRY)
#undef WF_CUR_STAGE
#define WF_CUR_STAGE "vxlan"
	WF_DROPS_VXLAN(WF_X_STAGE_ENTRY)
#undef WF_CUR_STAGE
#define WF_CUR_STAGE "p2mp"
	WF_DROPS_P2MP(WF_X_STAGE_ENTRY)
#undef WF_CUR_STAGE
#define WF_CUR_STAGE "offload"
	WF_DROPS_OFFLOAD(WF_X_STAGE_ENTRY)
#undef WF_CUR_STAGE
#define WF_CUR_STAGE "driver"
	WF_DROPS_DRIVER(WF_X_STAGE_ENTRY)
#undef WF_CUR_STAGE
};
_Static_assert(sizeof(wf_drop_stage_of) / sizeof(wf_drop_stage_of[0]) == WF_DROP_MAX, "a stage for every drop reason");

const char *
wf_drop_reason_stage(uint32_t r)
{
	return r < WF_DROP_MAX ? wf_drop_stage_of[r] : NULL;
}
