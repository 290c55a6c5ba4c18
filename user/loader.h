/*
 * Loading the BPF programs and attaching them to servers. Probes attach to
 * the inode a postmaster actually runs (through /proc/PID/exe, and
 * plpgsql.so through /proc/PID/root), once per distinct binary: backends are
 * forked from the postmaster and share its probes, and servers that run the
 * same binary share one set. Used from the daemon's main thread only.
 */
#ifndef USER_LOADER_H
#define USER_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "discover.h"
#include "pglayout.h"
#include "pgvigil/events.h"

struct loader;

/*
 * Open and load the BPF object. Returns 0, or a negative errno with a
 * message in err that names a missing privilege when that is the cause.
 */
int loader_open(struct loader **out, char *err, size_t err_len);

struct loader_options {
	bool skip_reads;	/* see pgv_skip_reads in bpf/common.bpf.h */
};

/* loader_open with settings the BPF programs take before load. */
int loader_open_with(struct loader **out, const struct loader_options *opts,
		     char *err, size_t err_len);

/*
 * Capture what backends read from their clients (secure_read) in binaries
 * attached from now on. Off by default; set before the first loader_attach.
 */
void loader_set_wire(struct loader *loader, bool on);

/*
 * Attach every probe to the binaries of 'server' unless already attached.
 * Returns 1 when new probes were attached, 0 when the binary was already
 * covered, or a negative errno with a message in err.
 */
int loader_attach(struct loader *loader, const struct pg_server *server,
		  const struct pglayout_version *version, char *err,
		  size_t err_len);

/*
 * Have the probes pass over the backends of postmaster 'ppid' (a server
 * this monitor does not watch, running a binary it probes), or stop doing
 * so. Works after privileges are dropped: it writes a map through its fd.
 */
int loader_ignore_parent(struct loader *loader, uint32_t ppid, bool ignore);

/* File descriptor of the ring buffer map. */
/*
 * The probes wake the reader once this many bytes wait in the ring buffer
 * (a sixteenth of it), not for every record: the reader must also consume
 * on a timer, at least every LOADER_CONSUME_MS, for records that stay below.
 */
#define LOADER_WAKEUP_BYTES	(1 << 20)
#define LOADER_CONSUME_MS	50

int loader_ringbuf_fd(const struct loader *loader);

/* Sum of the per-CPU drop counters, by cause. */
int loader_read_drops(const struct loader *loader,
		      uint64_t drops[PGV_DROP_CAUSES]);

/* Probes attached so far. */
size_t loader_probe_count(const struct loader *loader);

void loader_close(struct loader *loader);

#endif /* USER_LOADER_H */
