/*
 * Finding running PostgreSQL servers. A postmaster is recognised by its
 * data directory: it runs with the data directory as its working directory
 * and its pid is the first line of postmaster.pid there. Everything is read
 * through /proc/PID/, so a server in a container, or one whose binary was
 * replaced on disk by an upgrade, is found as it runs.
 */
#ifndef USER_DISCOVER_H
#define USER_DISCOVER_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

struct pg_server {
	pid_t pid;			/* the postmaster */
	unsigned int major;		/* from PG_VERSION, 0 if unreadable */
	dev_t exe_dev;			/* the executable it runs */
	ino_t exe_ino;
	char exe[64];			/* "/proc/PID/exe" */
	char exe_target[PATH_MAX];	/* where that link points */
	char datadir[PATH_MAX];		/* as the postmaster sees it */
	char root[64];			/* "/proc/PID/root" */
};

/*
 * Every running postmaster. Returns the count (>= 0) and an array the
 * caller frees, or a negative errno.
 */
int discover_all(struct pg_server **servers);

/*
 * The postmaster 'pid'. Returns 0, -ESRCH when there is no such process,
 * or -ENOTSUP when it is not a postmaster (a message goes into why).
 */
int discover_one(pid_t pid, struct pg_server *server, char *why,
		 size_t why_len);

#endif /* USER_DISCOVER_H */
