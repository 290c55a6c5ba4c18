/*
 * Transaction boundaries, from the server's own USDT probes
 * (postgresql:transaction__start, __commit, __abort), which fire for
 * top-level transactions only. An abort also marks where an error has
 * landed, so the function stack is cut back there.
 */
#include "common.bpf.h"
#include <bpf/usdt.bpf.h>

/*
 * With pgv_skip_reads: the monitor ignores starts, and needs an end only
 * for a transaction that sent something it may hold or act on.
 */
static __always_inline bool xact_needed(struct pgv_backend *backend,
					__u32 kind)
{
	return kind != PGV_XACT_START && backend->sent_in_xact;
}

static __always_inline int xact_event(struct pt_regs *ctx, __u32 kind,
				      long xid)
{
	struct pgv_xact_event *record;
	struct pgv_backend *backend;

	backend = pgv_backend_here(ctx);
	if (!backend)
		return 0;
	if (pgv_skip_reads && !xact_needed(backend, kind))
		return 0;
	record = pgv_scratch(0);
	if (!record)
		return 0;
	pgv_fill_header(&record->hdr, PGV_EV_XACT, backend);
	if (kind != PGV_XACT_START)
		backend->sent_in_xact = 0;
	record->kind = kind;
	record->local_xid = (__u32)xid;
	pgv_send(record, sizeof(*record));
	return 0;
}

SEC("usdt")
int BPF_USDT(xact_start, long xid)
{
	return xact_event(ctx, PGV_XACT_START, xid);
}

SEC("usdt")
int BPF_USDT(xact_commit, long xid)
{
	return xact_event(ctx, PGV_XACT_COMMIT, xid);
}

SEC("usdt")
int BPF_USDT(xact_abort, long xid)
{
	return xact_event(ctx, PGV_XACT_ABORT, xid);
}
