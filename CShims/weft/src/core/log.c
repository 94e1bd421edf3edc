/*
 * log.c: keep the last error line DPDK (or the core) logged, so a failed
 * control call can tell Swift why it failed. DPDK reports most causes only
 * through its log (e.g. "memif: Failed to bind socket"), never through the
 * return code. Log lines still go to stderr as usual.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <rte_log.h>

#include "wf_internal.h"

static pthread_mutex_t wf_err_lock = PTHREAD_MUTEX_INITIALIZER;
static char wf_err_buf[512];

static void
wf_store_error(const char *msg, size_t len)
{
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	if (len == 0)
		return;
	if (len >= sizeof(wf_err_buf))
		len = sizeof(wf_err_buf) - 1;
	pthread_mutex_lock(&wf_err_lock);
	memcpy(wf_err_buf, msg, len);
	wf_err_buf[len] = '\0';
	pthread_mutex_unlock(&wf_err_lock);
}

static ssize_t
wf_log_write(void *cookie, const char *buf, size_t size)
{
	(void)cookie;
	/* Keep what looks like a failure. Level is only valid inside rte_log. */
	int level = rte_log_cur_msg_loglevel();
	if (level > 0 && level <= (int)RTE_LOG_ERR)
		wf_store_error(buf, size);
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

void
wf_set_error(const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	wf_store_error(tmp, strlen(tmp));
}

void
wf_last_error(char *buf, size_t len)
{
	if (len == 0)
		return;
	pthread_mutex_lock(&wf_err_lock);
	snprintf(buf, len, "%s", wf_err_buf);
	pthread_mutex_unlock(&wf_err_lock);
}

void
wf_clear_last_error(void)
{
	pthread_mutex_lock(&wf_err_lock);
	wf_err_buf[0] = '\0';
	pthread_mutex_unlock(&wf_err_lock);
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
