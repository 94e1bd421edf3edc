/*
 * eal.c: EAL lifecycle driven from Swift. Never calls rte_exit: every
 * failure comes back as -errno with the reason in wf_last_error().
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_vfio.h>
#include <rte_errno.h>
#include <rte_lcore.h>

#include "wf_internal.h"

static int wf_eal_state; /* 0: down, 1: up, -1: failed (EAL cannot retry) */

int
wf_eal_init(int argc, const char *const *argv)
{
	if (wf_eal_state == 1)
		return -EALREADY;
	if (wf_eal_state == -1) {
		wf_set_error("EAL initialisation already failed in this process");
		return -EALREADY;
	}
	if (argc < 1 || argv == NULL)
		return -EINVAL;
	wf_log_capture_init();
	/* rte_eal_init may permute argv: give it a private copy. */
	char **copy = calloc((size_t)argc + 1, sizeof(char *));
	if (copy == NULL)
		return -ENOMEM;
	for (int i = 0; i < argc; i++)
		copy[i] = (char *)argv[i];
	int rc = rte_eal_init(argc, copy);
	free(copy);
	if (rc < 0) {
		int err = rte_errno ? rte_errno : EINVAL;
		wf_eal_state = -1;
		return -err;
	}
	wf_eal_state = 1;
	return 0;
}

int
wf_eal_cleanup(void)
{
	if (wf_eal_state != 1)
		return 0;
	wf_eal_state = 0;
	int rc = rte_eal_cleanup();
	return rc < 0 ? -rte_errno : 0;
}

int
wf_eal_vfio_enabled(void)
{
	return wf_eal_state == 1 && rte_vfio_is_enabled("vfio") ? 1 : 0;
}

int
wf_lcore_id(void)
{
	unsigned id = rte_lcore_id();
	return id == LCORE_ID_ANY ? -1 : (int)id;
}

uint32_t
wf_lcore_count(void)
{
	return rte_lcore_count();
}

uint64_t
wf_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

int
wf_confine_control_threads(void)
{
	if (wf_eal_state != 1)
		return -ENODEV;
	rte_cpuset_t main_set = rte_lcore_cpuset(rte_get_main_lcore());
	/* The workers' CPUs: never for control threads. */
	rte_cpuset_t workers;
	CPU_ZERO(&workers);
	unsigned lc;
	RTE_LCORE_FOREACH_WORKER(lc) {
		rte_cpuset_t s = rte_lcore_cpuset(lc);
		CPU_OR(&workers, &workers, &s);
	}
	DIR *d = opendir("/proc/self/task");
	if (d == NULL)
		return -errno;
	int moved = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid <= 0)
			continue;
		cpu_set_t cur;
		if (sched_getaffinity(tid, sizeof(cur), &cur) != 0)
			continue;
		/* A worker lcore thread runs on exactly its worker CPUs: leave it. */
		cpu_set_t inter;
		CPU_AND(&inter, &cur, &workers);
		cpu_set_t outside;
		CPU_XOR(&outside, &cur, &inter);
		if (CPU_COUNT(&inter) > 0 && CPU_COUNT(&outside) == 0)
			continue;
		if (CPU_COUNT(&inter) == 0)
			continue; /* already off the workers' CPUs */
		if (sched_setaffinity(tid, sizeof(main_set), &main_set) == 0)
			moved++;
	}
	closedir(d);
	return moved;
}
