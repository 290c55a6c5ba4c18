/*
 * Transaction boundaries, from the server's own USDT probes
 * (postgresql:transaction__start, __commit, __abort), which fire for
 * top-level transactions only. An abort also marks where an error has
 * landed, so the function stack is cut back there.
 */
#include "common.bpf.h"
#include <bpf/usdt.bpf.h>

static __always_inline int xact_event(struct pt_regs *ctx, __u32 kind,
				      long xid)
{
	struct pgv_xact_event *record;

	record = pgv_record_begin(ctx, NULL, PGV_EV_XACT);
	if (!record)
		return 0;
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
