/*
 * Privilege drop after attach. See privdrop.h for what is dropped and why.
 * libcap is not a dependency: the three syscalls involved are called
 * directly.
 */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "privdrop.h"

static int last_cap(void)
{
	FILE *file = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int last = 63;

	if (file) {
		if (fscanf(file, "%d", &last) != 1)
			last = 63;
		fclose(file);
	}
	return last;
}

/* Needs CAP_SETPCAP, so it comes before the capability sets are cleared */
static int drop_bounding_set(void)
{
	int cap, last = last_cap();

	for (cap = 0; cap <= last; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL)
			return -errno;
	return 0;
}

static int switch_user(const char *user, char *err, size_t err_len)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(user);
	if (!pw) {
		snprintf(err, err_len, "unknown user '%s'", user);
		return errno ? -errno : -ENOENT;
	}
	if (setgroups(0, NULL) || setresgid(pw->pw_gid, pw->pw_gid,
					    pw->pw_gid) ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid)) {
		snprintf(err, err_len, "cannot switch to user '%s': %s", user,
			 strerror(errno));
		return -errno;
	}
	return 0;
}

static int clear_capabilities(void)
{
	struct __user_cap_header_struct header = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[2] = { { 0 } };

	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (syscall(SYS_capset, &header, data))
		return -errno;
	return 0;
}

int privdrop_after_attach(const char *user, char *err, size_t err_len)
{
	int ret;

	ret = drop_bounding_set();
	if (ret && ret != -EPERM) {
		snprintf(err, err_len, "cannot drop the bounding set: %s",
			 strerror(-ret));
		return ret;
	}
	if (user) {
		ret = switch_user(user, err, err_len);
		if (ret)
			return ret;
	}
	ret = clear_capabilities();
	if (!ret && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		ret = -errno;
	if (ret)
		snprintf(err, err_len, "cannot drop capabilities: %s",
			 strerror(-ret));
	return ret;
}
