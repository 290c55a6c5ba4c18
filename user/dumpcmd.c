/*
 * 'pgvigil dump': read forensic dumps (show, verify) and ask a running
 * daemon for new ones. The request is a SIGUSR1 to the daemon named by its
 * pid file, sent with sigqueue(3) so its value carries the backend pid
 * (0: every backend); the daemon writes the dump at its next tick, and
 * with --directory this command waits for the file and prints its path.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "dumpfile.h"

#define DEFAULT_PID_FILE "/run/pgvigil/pgvigil.pid"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pgvigil dump show FILE [--json] [--key-file F]\n"
		"       pgvigil dump verify FILE [--key-file F] [--seal HEX]\n"
		"       pgvigil dump (--pid PID | --all) [--pid-file F]\n"
		"                    [--directory D] [--wait SECONDS]\n\n"
		"show prints a dump as text, or as JSON lines with --json.\n"
		"verify checks the chain, the seal and, with the key, the\n"
		"authentication, and names the position of any damage;\n"
		"--seal compares with a seal hash recorded elsewhere.\n"
		"exit status: 0 intact, 1 damaged, 2 error.\n"
		"--pid/--all ask the running daemon (pid file, default "
		DEFAULT_PID_FILE ") for a dump;\n"
		"with --directory, wait for it and print its path.\n");
}

struct read_opts {
	const char *file;
	const char *key_file;
	const char *seal;
	bool json;
};

static int load_key(const char *path, struct dumpfile_key *key)
{
	int err = dumpfile_key_load(path, key);

	if (err == -EPERM)
		fprintf(stderr, "pgvigil dump: key file '%s' is readable by "
				"group or others\n", path);
	else if (err)
		fprintf(stderr, "pgvigil dump: cannot load key file '%s': %s\n",
			path, strerror(-err));
	return err;
}

/* The session's context on one line. */
static void show_session(struct json_object *frame)
{
	struct json_object *session, *v;
	size_t i;

	printf("\nbackend %s", json_object_get_string(
		       json_object_object_get(frame, "pid")));
	if (json_object_object_get_ex(frame, "session", &session) &&
	    session) {
		json_object_object_foreach(session, key, val)
			printf(" %s=%s", key, json_object_get_string(val));
	}
	printf("\n  records %s, dropped %s",
	       json_object_get_string(json_object_object_get(frame, "records")),
	       json_object_get_string(
		       json_object_object_get(frame, "records_dropped")));
	if (json_object_object_get_ex(frame, "complete", &v))
		printf(", collected until %s", json_object_get_string(v));
	printf("\n");
	if (!json_object_object_get_ex(frame, "violations", &v))
		return;
	for (i = 0; i < json_object_array_length(v); i++)
		printf("  VIOLATION %s\n", json_object_to_json_string_ext(
			       json_object_array_get_idx(v, i),
			       JSON_C_TO_STRING_PLAIN));
}

static const char *field(struct json_object *obj, const char *name)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, name, &v) || !v)
		return "";
	return json_object_get_string(v);
}

/* time, command, statement, then where it ran, if known */
static void show_statement(struct json_object *record)
{
	static const char *const names[] = { "time", "command", "statement" };
	struct json_object *v;
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (*field(record, names[i]))
			printf("%s ", field(record, names[i]));
	if (json_object_object_get_ex(record, "relation", &v))
		printf("[relation %s] ", json_object_get_string(v));
	if (json_object_object_get_ex(record, "relations", &v))
		printf("[relations %s] ", json_object_to_json_string_ext(v,
			       JSON_C_TO_STRING_PLAIN));
	if (json_object_object_get_ex(record, "function_stack", &v))
		printf("[stack %s]", json_object_to_json_string_ext(v,
			       JSON_C_TO_STRING_PLAIN));
	printf("\n");
}

static void show_records(struct json_object *frame)
{
	struct json_object *list = json_object_object_get(frame, "records");
	struct json_object *item, *record;
	size_t i;

	for (i = 0; i < json_object_array_length(list); i++) {
		item = json_object_array_get_idx(list, i);
		record = json_object_object_get(item, "record");
		printf("  [xact %s] ", field(item, "xact"));
		if (!strcmp(field(record, "event"), "xact_end"))
			printf("-- transaction %s\n", field(record, "outcome"));
		else
			show_statement(record);
	}
}

static int show_frame(void *arg, uint32_t index, struct json_object *frame)
{
	const struct read_opts *opts = arg;
	const char *kind = field(frame, "kind");

	(void)index;
	if (opts->json)
		printf("%s\n", json_object_to_json_string_ext(frame,
						JSON_C_TO_STRING_PLAIN));
	else if (!strcmp(kind, "dump"))
		printf("dump: reason %s, created %s, host %s, statements %s, "
		       "policy %s\ncounters: %s\n", field(frame, "reason"),
		       field(frame, "created"), field(frame, "host"),
		       field(frame, "statements"),
		       json_object_to_json_string_ext(json_object_object_get(
				frame, "policy"), JSON_C_TO_STRING_PLAIN),
		       field(frame, "counters"));
	else if (!strcmp(kind, "session"))
		show_session(frame);
	else if (!strcmp(kind, "records"))
		show_records(frame);
	else if (!strcmp(kind, "truncated"))
		printf("(dump truncated at the frame limit)\n");
	return 0;
}

/* Say what the read found; returns the exit status. */
static int report(const struct read_opts *opts, int err,
		  const struct dumpfile_info *info)
{
	char seal[2 * DUMPFILE_HASH_LEN + 1], where[32];

	if (err == -EBADMSG) {
		if (info->damage_frame >= 0)
			snprintf(where, sizeof(where), "frame %d",
				 info->damage_frame);
		else
			strcpy(where, info->damage_frame == -1 ? "header"
							       : "seal");
		printf("damaged at byte %llu (%s): %s\n",
		       (unsigned long long)info->damage_offset, where,
		       info->message);
		return EXIT_FINDINGS;
	}
	if (err) {
		fprintf(stderr, "pgvigil dump: '%s': %s\n", opts->file,
			info->message[0] ? info->message : strerror(-err));
		return EXIT_ERROR;
	}
	dumpfile_hex(info->seal_hash, DUMPFILE_HASH_LEN, seal);
	if (opts->seal && strcasecmp(opts->seal, seal)) {
		printf("damaged: seal %s differs from the recorded %s\n", seal,
		       opts->seal);
		return EXIT_FINDINGS;
	}
	if (!opts->json)
		printf("intact: %u frames, seal %s, %s\n", info->frames, seal,
		       info->authenticated ? "authenticated" :
		       info->flags & DUMPFILE_F_ENCRYPTED ?
		       "not authenticated (no key)" : "not encrypted");
	return EXIT_OK;
}

static int read_dump(const struct read_opts *opts, bool show)
{
	struct dumpfile_key key, *keyp = NULL;
	struct dumpfile_info info;
	int err;

	if (opts->key_file) {
		if (load_key(opts->key_file, &key))
			return EXIT_ERROR;
		keyp = &key;
	}
	err = dumpfile_read_file(opts->file, keyp, show ? show_frame : NULL,
				 (void *)opts, &info);
	if (keyp)
		dumpfile_key_clear(keyp);
	return report(opts, err, &info);
}

static int cmd_read(int argc, char **argv, bool show)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "seal", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct read_opts opts = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c == 'j' && show)
			opts.json = true;
		else if (c == 'k')
			opts.key_file = optarg;
		else if (c == 's' && !show)
			opts.seal = optarg;
		else {
			usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? EXIT_OK : EXIT_ERROR;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_ERROR;
	}
	opts.file = argv[optind];
	return read_dump(&opts, show);
}

/*
 * The daemon's pid from its pid file, checked to be a pgvigil process:
 * SIGUSR1 kills a process that does not handle it, so a stale pid file
 * must not aim it at whatever reused the pid.
 */
static int daemon_pid(const char *pid_file, pid_t *pid)
{
	char path[64], comm[32] = "";
	FILE *f = fopen(pid_file, "r");
	long value = 0;
	int ok;

	if (!f)
		return -errno;
	ok = fscanf(f, "%ld", &value) == 1 && value > 1;
	fclose(f);
	if (!ok)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%ld/comm", value);
	f = fopen(path, "r");
	if (!f)
		return -ESRCH;
	ok = fgets(comm, sizeof(comm), f) && !strcmp(comm, "pgvigil\n");
	fclose(f);
	if (!ok)
		return -ESRCH;
	*pid = (pid_t)value;
	return 0;
}

/* A dump in 'dir' for 'who' made at or after 'since'. */
static bool find_dump(const char *dir, const char *who, time_t since,
		      char *path, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *ent;
	struct stat st;
	bool found = false;

	if (!d)
		return false;
	while (!found && (ent = readdir(d))) {
		if (!strstr(ent->d_name, who) ||
		    !strstr(ent->d_name, ".pgvd") ||
		    strstr(ent->d_name, ".tmp"))
			continue;
		snprintf(path, len, "%s/%s", dir, ent->d_name);
		found = !stat(path, &st) && st.st_mtime >= since;
	}
	closedir(d);
	return found;
}

static int request_dump(const char *pid_file, long target, const char *dir,
			int wait_s)
{
	union sigval value = { .sival_int = (int)target };
	char who[32], path[4096];
	time_t since = time(NULL);
	pid_t pid = 0;
	int err, i;

	err = daemon_pid(pid_file, &pid);
	if (err) {
		fprintf(stderr, "pgvigil dump: no running daemon in pid file "
				"'%s': %s\n", pid_file, strerror(-err));
		return EXIT_ERROR;
	}
	if (sigqueue(pid, SIGUSR1, value) < 0) {
		fprintf(stderr, "pgvigil dump: cannot signal daemon %d: %s\n",
			(int)pid, strerror(errno));
		return EXIT_ERROR;
	}
	if (!dir) {
		printf("requested a dump of %s from daemon %d\n",
		       target ? "one backend" : "every backend", (int)pid);
		return EXIT_OK;
	}
	if (target)
		snprintf(who, sizeof(who), "-request-%ld-", target);
	else
		strcpy(who, "-signal-all-");
	for (i = 0; i < wait_s * 10; i++) {
		if (find_dump(dir, who, since, path, sizeof(path))) {
			printf("%s\n", path);
			return EXIT_OK;
		}
		usleep(100000);
	}
	fprintf(stderr, "pgvigil dump: no dump appeared in '%s' within %d s "
			"(unknown backend?)\n", dir, wait_s);
	return EXIT_ERROR;
}

static int cmd_request(int argc, char **argv)
{
	static const struct option options[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "all", no_argument, NULL, 'a' },
		{ "pid-file", required_argument, NULL, 'f' },
		{ "directory", required_argument, NULL, 'd' },
		{ "wait", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pid_file = DEFAULT_PID_FILE, *dir = NULL;
	long target = -1;
	int c, wait_s = 5;
	char *end;

	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c == 'p') {
			target = strtol(optarg, &end, 10);
			if (*end || target <= 0 || target > 0x7fffffff)
				target = -2;
		} else if (c == 'a') {
			target = 0;
		} else if (c == 'f') {
			pid_file = optarg;
		} else if (c == 'd') {
			dir = optarg;
		} else if (c == 'w') {
			wait_s = atoi(optarg);
		} else {
			usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? EXIT_OK : EXIT_ERROR;
		}
	}
	if (target < 0 || optind != argc || wait_s < 0) {
		usage(stderr);
		return EXIT_ERROR;
	}
	return request_dump(pid_file, target, dir, wait_s);
}

int cmd_dump(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "show"))
		return cmd_read(argc - 1, argv + 1, true);
	if (argc >= 2 && !strcmp(argv[1], "verify"))
		return cmd_read(argc - 1, argv + 1, false);
	return cmd_request(argc, argv);
}
