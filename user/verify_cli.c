/*
 * 'pgvigil verify' and 'pgvigil checkpoint': the command-line boundary of
 * hash integrity. Options are parsed here, errors logged once, and the
 * progress bar drawn; the work is done by verify.c, verifier.c and
 * checkpoint.c.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "feed.h"
#include "log.h"
#include "policy.h"
#include "verifier.h"
#include "verify.h"

struct verify_args {
	const char *policy_path;
	int threads;
	long long range_size;
	bool follow;
};

struct progress {
	struct timespec start;
	bool drawn;
};

static void verify_usage(FILE *out)
{
	fprintf(out,
		"usage: pgvigil verify --policy FILE [--threads N] [--range-size N]\n"
		"       pgvigil verify --policy FILE --follow\n\n"
		"Verify the hash chain of the ledger (scheme pgvigil.postings.v1):\n"
		"each event's hash, the links between events, missing or duplicate\n"
		"seqs, posting sets that do not balance, and the signed checkpoints\n"
		"of hash_integrity.checkpoint_file. Findings are violation records\n"
		"on stdout. After a clean run the head is appended to the\n"
		"checkpoint file.\n\n"
		"  --policy FILE     the policy (database.dsn, hash_integrity)\n"
		"  --threads N       worker threads (default: the number of cores)\n"
		"  --range-size N    events per work unit (default: chosen)\n"
		"  --follow          continuous mode: sweep, then verify new events\n"
		"                    each time a line arrives on stdin, until EOF\n\n"
		"exit status: 0 clean, 1 findings, 2 error\n");
}

static double seconds_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) +
	       (now.tv_nsec - start->tv_nsec) / 1e9;
}

static void draw_progress(void *arg, uint64_t events, int64_t span)
{
	struct progress *p = arg;
	double elapsed = seconds_since(&p->start), rate, fraction;
	char bar[31];
	int filled, i;

	if (span <= 0)
		return;
	fraction = (double)events / span;
	fraction = fraction > 1 ? 1 : fraction;
	rate = elapsed > 0 ? events / elapsed : 0;
	filled = fraction * 30;
	for (i = 0; i < 30; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[30] = 0;
	fprintf(stderr, "\r[%s] %3.0f%%  %.0f events/s  %.0f s left ", bar,
		fraction * 100, rate,
		rate > 0 ? (span - (double)events) / rate : 0);
	p->drawn = true;
}

static int parse_verify_args(int argc, char **argv, struct verify_args *a)
{
	static const struct option options[] = {
		{ "policy", required_argument, NULL, 'p' },
		{ "threads", required_argument, NULL, 't' },
		{ "range-size", required_argument, NULL, 'r' },
		{ "follow", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	a->threads = sysconf(_SC_NPROCESSORS_ONLN);
	a->threads = a->threads < 1 ? 1 : a->threads;
	while ((c = getopt_long(argc, argv, "p:t:r:fh", options, NULL)) != -1) {
		switch (c) {
		case 'p':
			a->policy_path = optarg;
			break;
		case 't':
			a->threads = strtol(optarg, &end, 10);
			if (*end || a->threads < 1 || a->threads > 256) {
				fprintf(stderr, "pgvigil: bad --threads '%s' "
					"(1 to 256)\n", optarg);
				return -EINVAL;
			}
			break;
		case 'r':
			a->range_size = strtoll(optarg, &end, 10);
			if (*end || a->range_size < 1) {
				fprintf(stderr, "pgvigil: bad --range-size '%s' "
					"(a positive number)\n", optarg);
				return -EINVAL;
			}
			break;
		case 'f':
			a->follow = true;
			break;
		case 'h':
			verify_usage(stdout);
			return 1;
		default:
			return -EINVAL;
		}
	}
	return a->policy_path && optind == argc ? 0 : -EINVAL;
}

/* The key and the checkpoints, when the policy names a checkpoint file. */
static int open_checkpoints(const struct policy *policy, EVP_PKEY **key,
			    struct checkpoint_set *set)
{
	const struct policy_hash *hash = &policy->hash;
	char err[300];
	int ret;

	memset(set, 0, sizeof(*set));
	if (!hash->checkpoint_file)
		return 0;
	if (!hash->checkpoint_key) {
		log_error("'hash_integrity.checkpoint_file' needs "
			  "'hash_integrity.checkpoint_key'");
		return -EINVAL;
	}
	ret = checkpoint_key_load(hash->checkpoint_key, false, key, err,
				  sizeof(err));
	if (!ret)
		ret = checkpoint_load(hash->checkpoint_file, *key, set, err,
				      sizeof(err));
	if (ret)
		log_error("%s", err);
	else if (set->bad_lines)
		log_warn("'%s': %zu lines with a bad signature or format, "
			 "ignored (first: line %d)", hash->checkpoint_file,
			 set->bad_lines, set->first_bad_line);
	return ret;
}

/* A clean run moves the signed head forward. */
static int advance_checkpoint(const struct policy *policy, EVP_PKEY *key,
			      const struct checkpoint_set *set,
			      const struct verify_result *result)
{
	const struct checkpoint *last = checkpoint_last(set);
	char err[300];
	int ret;

	if (!key || !result->has_head || result->findings ||
	    (last && last->seq >= result->head.seq))
		return 0;
	ret = checkpoint_append(policy->hash.checkpoint_file, key,
				result->head.seq, result->head.hash, err,
				sizeof(err));
	if (ret)
		log_error("%s", err);
	return ret;
}

static int verify_once(const struct verify_args *a, const struct policy *policy,
		       struct feed *feed)
{
	struct verify_options opts = {
		.policy = policy, .feed = feed, .threads = a->threads,
		.range_size = a->range_size, .from_seq = 1, .report_gaps = true,
	};
	struct progress progress = { 0 };
	struct checkpoint_set set;
	struct verify_result result;
	EVP_PKEY *key = NULL;
	char err[300];
	int ret;

	ret = open_checkpoints(policy, &key, &set);
	if (ret)
		return EXIT_ERROR;
	opts.checkpoints = &set;
	clock_gettime(CLOCK_MONOTONIC, &progress.start);
	if (isatty(STDERR_FILENO)) {
		opts.progress = draw_progress;
		opts.progress_arg = &progress;
	}
	ret = verify_run(&opts, &result, err, sizeof(err));
	if (progress.drawn)
		fprintf(stderr, "\r%*s\r", 79, "");
	if (ret)
		log_error("%s", err);
	else
		log_info("verified %llu events and %llu postings in %.2f s with "
			 "%d threads: %llu findings",
			 (unsigned long long)result.events,
			 (unsigned long long)result.postings,
			 seconds_since(&progress.start), a->threads,
			 (unsigned long long)result.findings);
	if (!ret)
		ret = advance_checkpoint(policy, key, &set, &result);
	checkpoint_set_free(&set);
	EVP_PKEY_free(key);
	if (ret)
		return EXIT_ERROR;
	return result.findings ? EXIT_FINDINGS : EXIT_OK;
}

static void print_stats(const struct verifier_stats *s)
{
	char fields[300];

	snprintf(fields, sizeof(fields),
		 "\"head_seq\":%lld,\"events\":%llu,\"findings\":%llu,"
		 "\"incremental_runs\":%llu,\"sweeps\":%llu,\"errors\":%llu,"
		 "\"checkpoints\":%llu", (long long)s->head_seq,
		 (unsigned long long)s->events_verified,
		 (unsigned long long)s->findings,
		 (unsigned long long)s->incremental_runs,
		 (unsigned long long)s->sweeps, (unsigned long long)s->errors,
		 (unsigned long long)s->checkpoints);
	log_event("verifier", fields);
}

/* Kick on each stdin line; report the counters whenever they change. */
static int follow(const struct verify_args *a, const struct policy *policy,
		  struct feed *feed)
{
	struct verifier_stats now, shown = { 0 };
	struct verifier *verifier;
	struct pollfd in = { STDIN_FILENO, POLLIN, 0 };
	char err[300], line[256];
	bool open_input = true;

	if (verifier_start(policy, feed, a->threads, &verifier, err,
			   sizeof(err))) {
		log_error("%s", err);
		return EXIT_ERROR;
	}
	while (open_input) {
		if (poll(&in, 1, 50) > 0) {
			if (!fgets(line, sizeof(line), stdin))
				open_input = false;
			else
				verifier_kick(verifier);
		}
		verifier_get_stats(verifier, &now);
		if (memcmp(&now, &shown, sizeof(now)))
			print_stats(&now);
		shown = now;
	}
	verifier_stop(verifier);
	return shown.findings ? EXIT_FINDINGS : EXIT_OK;
}

int cmd_verify(int argc, char **argv)
{
	struct verify_args args = { 0 };
	struct policy *policy;
	struct feed *feed;
	char err[300];
	int ret;

	ret = parse_verify_args(argc, argv, &args);
	if (ret) {
		if (ret < 0)
			verify_usage(stderr);
		return ret < 0 ? EXIT_ERROR : EXIT_OK;
	}
	if (policy_load(args.policy_path, &policy, err, sizeof(err))) {
		log_error("%s", err);
		return EXIT_ERROR;
	}
	if (feed_open(NULL, FEED_SYNC_NEVER, true, &feed, err, sizeof(err))) {
		log_error("%s", err);
		policy_free(policy);
		return EXIT_ERROR;
	}
	ret = args.follow ? follow(&args, policy, feed)
			  : verify_once(&args, policy, feed);
	feed_close(feed);
	policy_free(policy);
	return ret;
}

/* ---- pgvigil checkpoint verify ---- */

static void checkpoint_usage(FILE *out)
{
	fprintf(out,
		"usage: pgvigil checkpoint verify FILE (--key PUBKEY | --policy FILE)\n\n"
		"Check the Ed25519 signature of every line of a checkpoint file,\n"
		"with a public key (PEM) or the private key the policy names.\n\n"
		"exit status: 0 all lines valid, 1 a bad line, 2 error\n");
}

static int load_verify_key(const char *key_path, const char *policy_path,
			   EVP_PKEY **key)
{
	struct policy *policy;
	char err[300];
	int ret;

	if (!key_path && policy_path) {
		if (policy_load(policy_path, &policy, err, sizeof(err))) {
			log_error("%s", err);
			return -EINVAL;
		}
		ret = policy->hash.checkpoint_key
			      ? checkpoint_key_load(policy->hash.checkpoint_key,
						    true, key, err, sizeof(err))
			      : -EINVAL;
		if (!policy->hash.checkpoint_key)
			snprintf(err, sizeof(err), "'%s' names no "
				 "'hash_integrity.checkpoint_key'", policy_path);
		policy_free(policy);
	} else {
		ret = checkpoint_key_load(key_path, true, key, err, sizeof(err));
	}
	if (ret)
		log_error("%s", err);
	return ret;
}

static int checkpoint_check(const char *file, EVP_PKEY *key)
{
	struct checkpoint_set set;
	char err[300];
	int ret;

	if (access(file, R_OK)) {
		log_error("cannot read checkpoint file '%s': %s", file,
			  strerror(errno));
		return EXIT_ERROR;
	}
	if (checkpoint_load(file, key, &set, err, sizeof(err))) {
		log_error("%s", err);
		return EXIT_ERROR;
	}
	printf("%s: %zu lines, %zu valid, %zu bad", file, set.lines, set.count,
	       set.bad_lines);
	if (set.bad_lines)
		printf(" (first bad: line %d)", set.first_bad_line);
	if (set.count)
		printf(", last seq %lld", (long long)checkpoint_last(&set)->seq);
	printf("\n");
	ret = set.bad_lines ? EXIT_FINDINGS : EXIT_OK;
	checkpoint_set_free(&set);
	return ret;
}

int cmd_checkpoint(int argc, char **argv)
{
	static const struct option options[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "policy", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_path = NULL, *policy_path = NULL;
	EVP_PKEY *key = NULL;
	int c, ret;

	while ((c = getopt_long(argc, argv, "k:p:h", options, NULL)) != -1) {
		if (c == 'h') {
			checkpoint_usage(stdout);
			return EXIT_OK;
		}
		if (c != 'k' && c != 'p') {
			checkpoint_usage(stderr);
			return EXIT_ERROR;
		}
		*(c == 'k' ? &key_path : &policy_path) = optarg;
	}
	if (argc - optind != 2 || strcmp(argv[optind], "verify") ||
	    (!key_path && !policy_path)) {
		checkpoint_usage(stderr);
		return EXIT_ERROR;
	}
	if (load_verify_key(key_path, policy_path, &key))
		return EXIT_ERROR;
	ret = checkpoint_check(argv[optind + 1], key);
	EVP_PKEY_free(key);
	return ret;
}
