/*
 * error.c: the reason of the last failed call, one buffer per thread. A
 * control call that fails records why (the core's own words, or the line
 * DPDK logged: see the core's log.c); the Swift wrapper reads it right after
 * the call on the same thread. Per thread, so that a netlink call on the NSM
 * path never overwrites the reason of a dataplane call on another thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "weft_kernel.h"

static __thread char wf_err_buf[512];

void
wf_error_put(const char *msg, size_t len)
{
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	if (len == 0)
		return;
	if (len >= sizeof(wf_err_buf))
		len = sizeof(wf_err_buf) - 1;
	memcpy(wf_err_buf, msg, len);
	wf_err_buf[len] = '\0';
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
	wf_error_put(tmp, strlen(tmp));
}

void
wf_last_error(char *buf, size_t len)
{
	if (len == 0)
		return;
	snprintf(buf, len, "%s", wf_err_buf);
}

void
wf_clear_last_error(void)
{
	wf_err_buf[0] = '\0';
}
