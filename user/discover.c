/*
 * Postmaster discovery through /proc.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "discover.h"

static int read_first_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	int ret = 0;

	if (!f)
		return -errno;
	if (!fgets(buf, len, f))
		ret = -EIO;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return ret;
}

int discover_one(pid_t pid, struct pg_server *server, char *why,
		 size_t why_len)
{
	char path[128], line[64];
	struct stat st;
	ssize_t n;

	memset(server, 0, sizeof(*server));
	server->pid = pid;
	snprintf(server->exe, sizeof(server->exe), "/proc/%d/exe", pid);
	snprintf(server->root, sizeof(server->root), "/proc/%d/root", pid);
	if (stat(server->exe, &st)) {
		snprintf(why, why_len, "no process %d: %s", pid, strerror(errno));
		return -ESRCH;
	}
	server->exe_dev = st.st_dev;
	server->exe_ino = st.st_ino;
	n = readlink(server->exe, server->exe_target,
		     sizeof(server->exe_target) - 1);
	if (n > 0)
		server->exe_target[n] = 0;
	/* replaced on disk (an upgrade): the link still opens the old inode */
	n = strlen(server->exe_target);
	if (n > 10 && !strcmp(server->exe_target + n - 10, " (deleted)"))
		server->exe_target[n - 10] = 0;
	snprintf(path, sizeof(path), "/proc/%d/cwd/postmaster.pid", pid);
	if (read_first_line(path, line, sizeof(line)) || atoi(line) != pid) {
		snprintf(why, why_len, "process %d is not a PostgreSQL "
			 "postmaster (no postmaster.pid naming it in its "
			 "working directory)", pid);
		return -ENOTSUP;
	}
	snprintf(path, sizeof(path), "/proc/%d/cwd", pid);
	n = readlink(path, server->datadir, sizeof(server->datadir) - 1);
	if (n > 0)
		server->datadir[n] = 0;
	snprintf(path, sizeof(path), "/proc/%d/cwd/PG_VERSION", pid);
	if (!read_first_line(path, line, sizeof(line)))
		server->major = strtoul(line, NULL, 10);
	return 0;
}

int discover_all(struct pg_server **servers)
{
	struct pg_server *found = NULL, *grown, server;
	DIR *dir = opendir("/proc");
	struct dirent *entry;
	int count = 0;
	char why[256];

	*servers = NULL;
	if (!dir)
		return -errno;
	while ((entry = readdir(dir))) {
		if (!isdigit((unsigned char)entry->d_name[0]))
			continue;
		if (discover_one(atoi(entry->d_name), &server, why, sizeof(why)))
			continue;
		grown = realloc(found, (count + 1) * sizeof(*found));
		if (!grown) {
			free(found);
			closedir(dir);
			return -ENOMEM;
		}
		found = grown;
		found[count++] = server;
	}
	closedir(dir);
	*servers = found;
	return count;
}
