/*
 * 'pgvigil demo': runs tools/demo from the source tree the binary was built
 * in (the demo needs the reference ledger and the test library beside it).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cmd_demo(int argc, char **argv)
{
	const char *script = PGV_SOURCE_DIR "/tools/demo";

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: pgvigil demo\n\n"
		       "Start a throwaway PostgreSQL 15 cluster with the reference\n"
		       "ledger, attach, run a workload that mixes legal postings\n"
		       "with violations and show the live feed; then clean up.\n"
		       "Runs '%s' (the same as 'make demo'); needs root.\n",
		       script);
		return EXIT_OK;
	}
	if (argc > 1) {
		fprintf(stderr, "pgvigil: demo takes no arguments\n");
		return EXIT_ERROR;
	}
	execl(script, script, (char *)NULL);
	fprintf(stderr, "pgvigil: cannot run '%s': %s\n", script,
		strerror(errno));
	return EXIT_ERROR;
}
