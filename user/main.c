/*
 * pgvigil: command dispatch. Every subcommand lives in its own module and
 * answers --help itself.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "version.h"

static const struct cli_command commands[] = {
	{ "run", cmd_run, "attach to PostgreSQL and report violations live" },
	{ "feed", cmd_feed, "print the live violation feed of a running monitor" },
	{ "demo", cmd_demo, "run the live demo on a throwaway server (root)" },
	{ "verify", cmd_verify, "verify the ledger's hash chain" },
	{ "checkpoint", cmd_checkpoint, "check the signatures of a checkpoint file" },
	{ "dump", cmd_dump, "read, verify and request forensic dumps" },
	{ NULL, NULL, NULL },
};

static void usage(FILE *out)
{
	const struct cli_command *cmd;

	fprintf(out, "usage: pgvigil COMMAND [OPTIONS]\n\n"
		     "Runtime monitor for PostgreSQL ledgers.\n\ncommands:\n");
	for (cmd = commands; cmd->name; cmd++)
		fprintf(out, "  %-12s %s\n", cmd->name, cmd->summary);
	fprintf(out, "  %-12s %s\n", "version", "print the version");
	fprintf(out, "\n'pgvigil COMMAND --help' describes a command.\n"
		     "exit status: 0 success, 1 violations found by a one-shot "
		     "command, 2 usage or runtime error\n");
}

int main(int argc, char **argv)
{
	const struct cli_command *cmd;

	if (argc < 2) {
		usage(stderr);
		return EXIT_ERROR;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("pgvigil %s\n", PGV_VERSION);
		return EXIT_OK;
	}
	for (cmd = commands; cmd->name; cmd++)
		if (!strcmp(cmd->name, argv[1]))
			return cmd->run(argc - 1, argv + 1);
	fprintf(stderr, "pgvigil: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_ERROR;
}
