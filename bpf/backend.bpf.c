/*
 * The backend table and the function stack.
 *
 * A backend's stack of executing functions is kept from entry and return
 * probes on the PL/pgSQL and SQL-language call handlers. Errors unwind with
 * longjmp past return probes, so the stack is also cut back, by stack
 * pointer, wherever control lands after an error: where PL/pgSQL rolls back
 * the subtransaction of an EXCEPTION block, and at transaction abort.
 * Also the exit of a backend, which ends its entry here.
 */
#define PGV_DEFINE_MAPS
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline int pgv_push(struct pt_regs *ctx, __u32 fn_oid,
				    __u32 trigger)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pgv_backend *backend = pgv_backend_get(pid);
	__u64 sp = pgv_ctx_sp(ctx);
	__u32 kept;

	if (!backend)
		return 0;
	/* every kept frame must lie above a new call's entry */
	pgv_stack_unwind(backend, sp + 1);
	kept = backend->kept;
	if (kept < PGV_STACK_MAX) {
		backend->frames[kept & (PGV_STACK_MAX - 1)].fn_oid = fn_oid;
		backend->frames[kept & (PGV_STACK_MAX - 1)].sp = sp;
		backend->frames[kept & (PGV_STACK_MAX - 1)].trigger = trigger;
		backend->kept = kept + 1;
	} else {
		pgv_count_drop(PGV_DROP_STACK_OVERFLOW);
	}
	backend->depth += 1;
	return 0;
}

static __always_inline int pgv_pop(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pgv_backend *backend = bpf_map_lookup_elem(&backends, &pid);
	__u32 kept;

	if (!backend)
		return 0;
	kept = backend->kept;
	/* at return the stack pointer is above the entry's */
	pgv_stack_unwind(backend, pgv_ctx_sp(ctx));
	if (backend->kept == kept && backend->depth > kept)
		backend->depth -= 1;
	return 0;
}

static __always_inline int pgv_unwind_here(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pgv_backend *backend = bpf_map_lookup_elem(&backends, &pid);

	if (backend)
		pgv_stack_unwind(backend, pgv_ctx_sp(ctx));
	return 0;
}

static __always_inline __u32 plpgsql_fn_oid(void *ctx, const void *function)
{
	struct pg_layout *layout = pgv_layout(ctx);
	if (!layout || !function)
		return 0;
	return pgv_read_u32(function + layout->plf_fn_oid);
}

/* plpgsql_exec_function(PLpgSQL_function *func, ...); DO blocks have OID 0 */
SEC("uprobe")
int BPF_KPROBE(plpgsql_function_entry, const void *function)
{
	if (pgv_foreign())
		return 0;
	return pgv_push(ctx, plpgsql_fn_oid(ctx, function), 0);
}

/* plpgsql_exec_trigger(PLpgSQL_function *func, TriggerData *trigdata) */
SEC("uprobe")
int BPF_KPROBE(plpgsql_trigger_entry, const void *function)
{
	if (pgv_foreign())
		return 0;
	return pgv_push(ctx, plpgsql_fn_oid(ctx, function), 1);
}

/* fmgr_sql(FunctionCallInfo fcinfo): fcinfo->flinfo->fn_oid */
SEC("uprobe")
int BPF_KPROBE(sql_function_entry, const void *fcinfo)
{
	struct pg_layout *layout;
	__u64 flinfo;

	if (pgv_foreign())
		return 0;
	layout = pgv_layout(ctx);
	if (!layout || !fcinfo)
		return 0;
	flinfo = pgv_read_ptr(fcinfo + layout->fcinfo_flinfo);
	if (!flinfo)
		return 0;
	return pgv_push(ctx, pgv_read_u32((void *)flinfo +
					  layout->flinfo_fn_oid), 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(function_return)
{
	if (pgv_foreign())
		return 0;
	return pgv_pop(ctx);
}

/* RollbackAndReleaseCurrentSubTransaction: an EXCEPTION block caught */
SEC("uprobe")
int BPF_KPROBE(subxact_rollback)
{
	if (pgv_foreign())
		return 0;
	return pgv_unwind_here(ctx);
}

/* a BTF tracepoint: needs no tracefs mount, unlike the classic kind */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(backend_exit, struct task_struct *task)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	struct pgv_backend *backend;
	struct pgv_exit_event *record;

	if ((__u32)pid_tgid != pid)
		return 0;	/* a thread, not the process */
	backend = bpf_map_lookup_elem(&backends, &pid);
	if (!backend)
		return 0;
	record = pgv_scratch(0);
	if (record) {
		pgv_fill_header(&record->hdr, PGV_EV_EXIT, backend);
		pgv_send(record, sizeof(*record));
	}
	bpf_map_delete_elem(&backends, &pid);
	return 0;
}
