/*
 * Subcommands. Each takes the arguments after its name (argv[0] is the
 * subcommand) and returns the process exit status: 0 success, 1 violations
 * found by a one-shot command, 2 usage or runtime error.
 */
#ifndef USER_CLI_H
#define USER_CLI_H

enum { EXIT_OK = 0, EXIT_FINDINGS = 1, EXIT_ERROR = 2 };

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

int cmd_run(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_feed(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_dump(int argc, char **argv);

#endif /* USER_CLI_H */
