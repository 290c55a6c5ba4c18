/*
 * Continuous verification; the threading is described in verifier.h.
 * Everything under 'lock' is shared with kicking and reading threads; the
 * head, the key and the checkpoint bookkeeping belong to the control thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "log.h"
#include "policy.h"
#include "metrics.h"
#include "verifier.h"
#include "verify.h"

struct verifier {
	const struct policy *policy;
	struct feed *feed;
	int threads;
	pthread_t thread;
	/* control thread only */
	bool has_head;
	struct verify_anchor head;
	EVP_PKEY *key;
	time_t last_checkpoint;
	/* shared, under lock */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool kicked;
	bool stopping;
	struct verifier_stats stats;
	char error[256];
};

static void note_run(struct verifier *v, const struct verify_result *result,
		     int ret, const char *err, bool sweep)
{
	pthread_mutex_lock(&v->lock);
	v->stats.events_verified += result->events;
	metrics_add(METRIC_VERIFY_ROWS, result->events);
	v->stats.postings_verified += result->postings;
	v->stats.findings += result->findings;
	v->stats.errors += ret != 0;
	if (sweep)
		v->stats.sweeps++;
	else
		v->stats.incremental_runs++;
	v->stats.head_seq = v->has_head ? v->head.seq : 0;
	if (ret)
		snprintf(v->error, sizeof(v->error), "%s", err);
	pthread_mutex_unlock(&v->lock);
}

/* Sign the new head; rate-limited so that a busy ledger does not flood the file. */
static void checkpoint_head(struct verifier *v)
{
	const char *path = v->policy->hash.checkpoint_file;
	char err[256];
	time_t now = time(NULL);

	if (!path || !v->key || !v->has_head || now == v->last_checkpoint)
		return;
	if (checkpoint_append(path, v->key, v->head.seq, v->head.hash, err,
			      sizeof(err))) {
		log_debug("verifier: %s", err);
		return;
	}
	v->last_checkpoint = now;
	pthread_mutex_lock(&v->lock);
	v->stats.checkpoints++;
	pthread_mutex_unlock(&v->lock);
}

static int load_checkpoints(struct verifier *v, struct checkpoint_set *set,
			    char *err, size_t err_len)
{
	memset(set, 0, sizeof(*set));
	if (!v->policy->hash.checkpoint_file || !v->key)
		return 0;
	return checkpoint_load(v->policy->hash.checkpoint_file, v->key, set,
			       err, err_len);
}

static void sweep(struct verifier *v)
{
	struct verify_options opts = {
		.policy = v->policy, .feed = v->feed, .threads = v->threads,
		.from_seq = 1, .report_gaps = true,
	};
	struct verify_result result = { 0 };
	struct checkpoint_set checkpoints;
	char err[256] = "";
	int ret;

	ret = load_checkpoints(v, &checkpoints, err, sizeof(err));
	opts.checkpoints = &checkpoints;
	if (!ret)
		ret = verify_run(&opts, &result, err, sizeof(err));
	checkpoint_set_free(&checkpoints);
	/* gaps were reported: carry on from the last event, not the gap */
	if (!ret && result.has_last) {
		v->has_head = true;
		v->head = result.last;
	}
	note_run(v, &result, ret, err, true);
	if (!ret && !result.findings)
		checkpoint_head(v);
}

static void incremental(struct verifier *v)
{
	struct verify_options opts = {
		.policy = v->policy, .feed = v->feed, .threads = 1,
		.from_seq = v->has_head ? v->head.seq + 1 : 1,
		.anchor = v->has_head ? &v->head : NULL,
	};
	struct verify_result result = { 0 };
	char err[256] = "";
	int ret;

	ret = verify_run(&opts, &result, err, sizeof(err));
	if (!ret && result.has_last) {
		v->has_head = true;
		v->head = result.last;
	}
	note_run(v, &result, ret, err, false);
	if (!ret && !result.findings && result.events)
		checkpoint_head(v);
}

static struct timespec after_seconds(int seconds)
{
	struct timespec at;

	clock_gettime(CLOCK_REALTIME, &at);
	at.tv_sec += seconds;
	return at;
}

static bool due(const struct timespec *at)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return now.tv_sec > at->tv_sec ||
	       (now.tv_sec == at->tv_sec && now.tv_nsec >= at->tv_nsec);
}

static void *verifier_main(void *arg)
{
	struct verifier *v = arg;
	int interval = v->policy->hash.sweep_interval_s;
	struct timespec next_sweep;
	bool do_sweep = true, do_kick;

	pthread_mutex_lock(&v->lock);
	while (!v->stopping) {
		do_kick = v->kicked;
		v->kicked = false;
		pthread_mutex_unlock(&v->lock);
		if (do_sweep)
			sweep(v);
		else if (do_kick)
			incremental(v);
		if (do_sweep)
			next_sweep = after_seconds(interval);
		pthread_mutex_lock(&v->lock);
		if (do_sweep)
			v->kicked |= do_kick;
		while (!v->kicked && !v->stopping &&
		       (!interval || !due(&next_sweep)))
			if (interval)
				pthread_cond_timedwait(&v->wake, &v->lock,
						       &next_sweep);
			else
				pthread_cond_wait(&v->wake, &v->lock);
		do_sweep = interval && due(&next_sweep);
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

static int load_key(struct verifier *v, char *err, size_t err_len)
{
	const struct policy_hash *hash = &v->policy->hash;

	if (!hash->checkpoint_file)
		return 0;
	if (!hash->checkpoint_key) {
		snprintf(err, err_len, "'hash_integrity.checkpoint_file' needs "
			 "'hash_integrity.checkpoint_key'");
		return -EINVAL;
	}
	return checkpoint_key_load(hash->checkpoint_key, false, &v->key, err,
				   err_len);
}

int verifier_start(const struct policy *policy, struct feed *feed, int threads,
		   struct verifier **out, char *err, size_t err_len)
{
	struct verifier *v = calloc(1, sizeof(*v));
	int ret;

	if (!v)
		return -ENOMEM;
	v->policy = policy;
	v->feed = feed;
	v->threads = threads < 1 ? 1 : threads;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->wake, NULL);
	ret = load_key(v, err, err_len);
	if (!ret && pthread_create(&v->thread, NULL, verifier_main, v)) {
		snprintf(err, err_len, "cannot start the verifier thread");
		ret = -EAGAIN;
	}
	if (ret) {
		EVP_PKEY_free(v->key);
		free(v);
		return ret;
	}
	*out = v;
	return 0;
}

void verifier_kick(struct verifier *v)
{
	pthread_mutex_lock(&v->lock);
	v->kicked = true;
	pthread_cond_signal(&v->wake);
	pthread_mutex_unlock(&v->lock);
}

void verifier_get_stats(struct verifier *v, struct verifier_stats *out)
{
	pthread_mutex_lock(&v->lock);
	*out = v->stats;
	pthread_mutex_unlock(&v->lock);
}

void verifier_last_error(struct verifier *v, char *buf, size_t len)
{
	pthread_mutex_lock(&v->lock);
	snprintf(buf, len, "%s", v->error);
	pthread_mutex_unlock(&v->lock);
}

void verifier_stop(struct verifier *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	v->stopping = true;
	pthread_cond_signal(&v->wake);
	pthread_mutex_unlock(&v->lock);
	pthread_join(v->thread, NULL);
	EVP_PKEY_free(v->key);
	pthread_mutex_destroy(&v->lock);
	pthread_cond_destroy(&v->wake);
	free(v);
}
