/*
 * Unit tests of the privilege drop, each in a forked child so the test
 * process keeps its own capabilities.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "privdrop.h"

static int cap_line(const char *name, unsigned long long *value)
{
	FILE *file = fopen("/proc/self/status", "r");
	char line[256];
	int found = 0;

	while (file && fgets(line, sizeof(line), file))
		if (!strncmp(line, name, strlen(name)))
			found = sscanf(line + strlen(name), "%llx", value);
	if (file)
		fclose(file);
	return found == 1 ? 0 : -1;
}

/* exit status: 0 when every check held in the child */
static int child_checks(const char *user)
{
	unsigned long long eff = 1, prm = 1, bnd = 1;
	char err[256];

	if (privdrop_after_attach(user, err, sizeof(err)))
		return 10;
	if (cap_line("CapEff:", &eff) || cap_line("CapPrm:", &prm) ||
	    cap_line("CapBnd:", &bnd))
		return 11;
	if (eff || prm || bnd)
		return 12;
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return 13;
	/* a raw socket needs CAP_NET_RAW, which is gone */
	if (socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) >= 0)
		return 14;
	if (user && getuid() == 0)
		return 15;
	return 0;
}

static int run_child(const char *user)
{
	int status = -1;
	pid_t pid = fork();

	if (pid == 0)
		_exit(child_checks(user));
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void privdrop_after_attach__as_root__no_capabilities_left(void **state)
{
	(void)state;
	if (getuid() != 0)
		skip();
	assert_int_equal(run_child(NULL), 0);
}

static void privdrop_after_attach__with_user__switches_uid(void **state)
{
	(void)state;
	if (getuid() != 0)
		skip();
	assert_int_equal(run_child("nobody"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(privdrop_after_attach__as_root__no_capabilities_left),
		cmocka_unit_test(privdrop_after_attach__with_user__switches_uid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
