/*
 * Transaction ends, from the server's own USDT probes
 * (postgresql:transaction__commit and __abort), which fire for top-level
 * transactions only. The start is not probed: nothing needs it, and each
 * probe hit is a trap in the server's hot path. An abort also marks where
 * an error has landed, so the function stack is cut back there.
 *
 * The probes' argument (the local transaction id) is not read: nothing
 * uses it, and bpf_usdt_arg cost about 300 ns a call, more than the rest
 * of the program. usdt.bpf.h stays for the maps libbpf's USDT attach needs.
 */
#include "common.bpf.h"
#include <bpf/usdt.bpf.h>

/*
 * With pgv_skip_reads: the monitor needs an end only for a transaction
 * that sent something it may hold or act on. The stack
 * is cut back here all the same: an abort marks where an error landed.
 */
static __always_inline bool xact_needed(struct pt_regs *ctx, __u32 kind)
{
	struct pgv_backend *backend = pgv_backend_here(ctx);

	return backend && backend->sent_in_xact;
}

/* After the end's own record, which counts as sent: the next starts clean. */
static __always_inline void xact_ended(void)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pgv_backend *backend = bpf_map_lookup_elem(&backends, &pid);

	if (backend)
		backend->sent_in_xact = 0;
}

static __always_inline int xact_event(struct pt_regs *ctx, __u32 kind)
{
	struct pgv_xact_event *record;

	if (pgv_skip_reads && !xact_needed(ctx, kind))
		return 0;
	record = pgv_record_begin(ctx, NULL, PGV_EV_XACT);
	if (!record)
		return 0;
	if (pgv_skip_reads && kind != PGV_XACT_START)
		xact_ended();
	record->kind = kind;
	record->pad = 0;
	pgv_send(record, sizeof(*record));
	return 0;
}

SEC("usdt")
int xact_commit(struct pt_regs *ctx)
{
	if (pgv_foreign())
		return 0;
	return xact_event(ctx, PGV_XACT_COMMIT);
}

SEC("usdt")
int xact_abort(struct pt_regs *ctx)
{
	if (pgv_foreign())
		return 0;
	return xact_event(ctx, PGV_XACT_ABORT);
}
