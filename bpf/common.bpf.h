/*
 * State and helpers shared by every probe family: the ring buffer, the
 * per-backend table (sequence numbers and the function stack), the layouts,
 * the per-CPU drop counters, and the record header.
 *
 * Maps are defined once, in backend.bpf.c, and declared extern elsewhere;
 * bpftool's static linker joins the families into one object.
 */
#ifndef PGVIGIL_BPF_COMMON_H
#define PGVIGIL_BPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "pgvigil/events.h"

#ifdef PGV_DEFINE_MAPS
#define PGV_MAP
#else
#define PGV_MAP extern
#endif

struct pgv_frame {
	__u32 fn_oid;
	__u32 trigger;		/* called as a trigger */
	__u64 sp;		/* stack pointer at the function's entry */
};

struct pgv_backend {
	__u64 seq;
	__u64 app_ptr;		/* application_name as last reported */
	__u32 depth;		/* frames on the stack, kept or not */
	__u32 kept;		/* frames in frames[] */
	__u32 session_sent;
	__u32 wire_reads;	/* client reads seen, saturating */
	__u32 sent_in_xact;	/* a record since the last transaction end */
	__u32 known;		/* uid, cgroup_id and comm below are set */
	__u64 wire_buf;		/* secure_read's buffer, entry to return */
	__u64 wire_port;	/* and its Port */
	/*
	 * Taken at the backend's first record: a backend keeps its user, its
	 * cgroup and its command name (PostgreSQL sets its process title in
	 * argv, not in comm), and three helper calls a record are saved.
	 */
	__u32 uid;
	__u32 pad;
	__u64 cgroup_id;
	char comm[PGV_COMM_LEN];
	struct pgv_frame frames[PGV_STACK_MAX];
};

union pgv_scratch {
	struct pgv_exec_event exec;
	struct pgv_utility_event utility;
	struct pgv_session_event session;
	struct pgv_target_event target;
	struct pgv_wire_event wire;
};

/*
 * Wake the reader only once this many bytes wait in the ring buffer (0: for
 * every record). A wake-up is an irq_work, and raising one writes the APIC,
 * which under a hypervisor traps: with a wake-up per record that write was a
 * third of all CPU time under select-only pgbench. The reader polls on a
 * short timeout to collect what stays below the threshold. Set before load.
 */
#ifdef PGV_DEFINE_MAPS
const volatile __u64 pgv_wakeup_bytes = 0;
#else
extern const volatile __u64 pgv_wakeup_bytes;
#endif

/*
 * Skip what no rule can use: a SELECT that writes no relation, and the
 * boundaries of a transaction that sent nothing else. The monitor ignores
 * both; sending them was most of the cost under read-only load. Off by
 * default, since a record of every statement (statement counts, a flight
 * recorder) needs them. Set before load.
 */
#ifdef PGV_DEFINE_MAPS
const volatile __u32 pgv_skip_reads = 0;
#else
extern const volatile __u32 pgv_skip_reads;
#endif

PGV_MAP struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

PGV_MAP struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pgv_backend);
} backends SEC(".maps");

PGV_MAP struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PGV_MAX_LAYOUTS);
	__type(key, __u32);
	__type(value, struct pg_layout);
} layouts SEC(".maps");

/*
 * Postmasters whose backends the probes pass over: servers this monitor
 * does not watch that run the same binary (uprobes sit on the binary, so
 * they fire in every server that maps it). User space adds a parent once
 * it has seen one of its records and refused it; a parent not listed is
 * reported, so a restarted server can still be adopted from its first
 * statement.
 */
PGV_MAP struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} ignored_parents SEC(".maps");

/*
 * Set by user space (through the mmap'ed .bss) with the first parent it
 * puts in ignored_parents. Until then the probes skip the lookup: a lone
 * server on a host, the common case, pays a load instead of a hash lookup
 * (about 90 ns a hit under bpf_stats).
 */
#ifdef PGV_DEFINE_MAPS
volatile __u32 pgv_ignoring = 0;
#else
extern volatile __u32 pgv_ignoring;
#endif

/* [0] builds the record being sent, [1] a session record sent before it */
PGV_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, union pgv_scratch);
} scratch SEC(".maps");

/* One-piece copies of server structs (see PGV_WIN_QD in layout.h). */
struct pgv_windows {
	__u8 qd[PGV_WIN_QD];
	__u8 ps[PGV_WIN_PS];
	__u8 rte[PGV_WIN_RTE];
	__u8 results[PGV_WIN_LIST];
	__u8 rtable[PGV_WIN_LIST];
	__u8 bms[PGV_WIN_BMS];
};

PGV_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pgv_windows);
} windows SEC(".maps");

PGV_MAP struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PGV_DROP_CAUSES);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/*
 * A probe's cookie names the layout (high 16 bits) and the link-time address
 * of the probed function (low 48 bits), so that a probe can find the load
 * address of the binary it fired in without asking user space.
 */
#define PGV_COOKIE_LAYOUT(c)	((__u32)((c) >> 48))
#define PGV_COOKIE_VADDR(c)	((c) & ((1ULL << 48) - 1))

/*
 * A register saved in the probe's context, loaded straight from it: ctx
 * plus a constant, in one instruction. Written in C (PT_REGS_SP), the
 * compiler moved the addition into a branch of its own and the verifier
 * refuses a load through a modified context pointer; the _CORE variants
 * spend a helper call on each read.
 */
#define PGV_CTX_REG(ctx, reg)						\
	({								\
		__u64 __value;						\
		asm volatile("%[v] = *(u64 *)(%[c] + %[o])"		\
			     : [v] "=r"(__value)			\
			     : [c] "r"(ctx),				\
			       [o] "i"(__builtin_offsetof(struct pt_regs, reg))); \
		__value;						\
	})
#define pgv_ctx_sp(ctx) PGV_CTX_REG(ctx, sp)
#define pgv_ctx_ip(ctx) PGV_CTX_REG(ctx, ip)

static __always_inline void pgv_count_drop(__u32 cause)
{
	__u64 *count = bpf_map_lookup_elem(&drops, &cause);

	if (count)
		*count += 1;
}

/*
 * Is the current process a backend of a server this monitor does not
 * watch? The first test of every probe on the server: a few loads and a
 * lookup, where the rest of a probe reads server memory and sends.
 */
static __always_inline bool pgv_foreign(void)
{
	struct task_struct *task;
	__u32 ppid;

	if (!pgv_ignoring)
		return false;
	task = bpf_get_current_task_btf();
	ppid = task->real_parent->tgid;
	return bpf_map_lookup_elem(&ignored_parents, &ppid) != NULL;
}

static __always_inline struct pg_layout *pgv_layout(void *ctx)
{
	__u32 idx = PGV_COOKIE_LAYOUT(bpf_get_attach_cookie(ctx));
	struct pg_layout *layout = bpf_map_lookup_elem(&layouts, &idx);

	if (!layout || !layout->major) {
		pgv_count_drop(PGV_DROP_NO_LAYOUT);
		return NULL;
	}
	return layout;
}

static __always_inline struct pgv_backend *pgv_backend_get(__u32 pid)
{
	struct pgv_backend *backend = bpf_map_lookup_elem(&backends, &pid);
	static const struct pgv_backend empty;

	if (backend)
		return backend;
	if (bpf_map_update_elem(&backends, &pid, &empty, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&backends, &pid)) {
		pgv_count_drop(PGV_DROP_NO_BACKEND);
		return NULL;
	}
	return bpf_map_lookup_elem(&backends, &pid);
}

/*
 * Forget the frames that the stack has unwound past: a frame whose entry
 * stack pointer lies below 'sp' belongs to a call that has returned, or that
 * a longjmp (an error caught by a PL/pgSQL EXCEPTION block, or the abort of
 * the transaction) skipped, since return probes never fire for those.
 * Frames beyond those kept are deeper than every kept one, so popping a kept
 * frame pops all of them too.
 */
static __always_inline void pgv_stack_unwind(struct pgv_backend *backend,
					     __u64 sp)
{
	__u32 kept = backend->kept;
	int i;

	if (!kept)
		return;	/* outside any function: most statements */
	for (i = PGV_STACK_MAX - 1; i >= 0; i--) {
		if ((__u32)i >= kept)
			continue;
		if (backend->frames[i].sp >= sp)
			break;
		kept = i;
	}
	if (kept != backend->kept) {
		backend->kept = kept;
		backend->depth = kept;
	}
}

static __always_inline void pgv_fill_header(struct pgv_header *hdr, __u16 type,
					    struct pgv_backend *backend)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 kept = backend->kept;
	int i;

	hdr->type = type;
	hdr->flags = 0;
	hdr->pid = bpf_get_current_pid_tgid() >> 32;
	hdr->ppid = task->real_parent->tgid;	/* a load, not a helper call */
	if (!backend->known) {
		backend->uid = (__u32)bpf_get_current_uid_gid();
		backend->cgroup_id = bpf_get_current_cgroup_id();
		bpf_get_current_comm(backend->comm, sizeof(backend->comm));
		backend->known = 1;
	}
	hdr->uid = backend->uid;
	hdr->seq = ++backend->seq;
	backend->sent_in_xact = 1;
	hdr->time_ns = bpf_ktime_get_ns();
	hdr->cgroup_id = backend->cgroup_id;
	__builtin_memcpy(hdr->comm, backend->comm, sizeof(hdr->comm));
	hdr->depth = backend->depth;
	hdr->stack_len = kept < PGV_STACK_MAX ? kept : PGV_STACK_MAX;
	if (backend->depth > kept)
		hdr->flags |= PGV_F_STACK_TRUNCATED;
	hdr->trigger_mask = 0;
	if (!kept) {
		__builtin_memset(hdr->stack, 0, sizeof(hdr->stack));
		return;
	}
	for (i = 0; i < PGV_STACK_MAX; i++) {
		hdr->stack[i] = (__u32)i < kept ? backend->frames[i].fn_oid : 0;
		if ((__u32)i < kept && backend->frames[i].trigger)
			hdr->trigger_mask |= 1u << i;
	}
}

/*
 * Send the first 'size' bytes of a record held in a scratch slot. The
 * barrier keeps the compiler from folding the bound into an earlier,
 * narrower check that the verifier cannot follow.
 */
static __always_inline void pgv_send(void *record, __u64 size)
{
	__u64 flags = 0, waiting;

	asm volatile("" : "+r"(size));
	if (size > sizeof(union pgv_scratch))
		size = sizeof(union pgv_scratch);
	/*
	 * Wake once, on crossing the threshold: forcing a wake-up for every
	 * record above it re-raised the irq_work until the reader ran, which
	 * on two busy CPUs cost as much as waking for every record.
	 */
	if (pgv_wakeup_bytes) {
		waiting = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
		flags = waiting < pgv_wakeup_bytes &&
			waiting + size >= pgv_wakeup_bytes
				? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	}
	if (bpf_ringbuf_output(&events, record, size, flags))
		pgv_count_drop(PGV_DROP_RINGBUF_FULL);
}

static __always_inline void *pgv_scratch(__u32 slot)
{
	return bpf_map_lookup_elem(&scratch, &slot);
}

static __always_inline __u64 pgv_read_ptr(const void *addr)
{
	__u64 value = 0;

	bpf_probe_read_user(&value, sizeof(value), addr);
	return value;
}

static __always_inline __u32 pgv_read_u32(const void *addr)
{
	__u32 value = 0;

	bpf_probe_read_user(&value, sizeof(value), addr);
	return value;
}

static __always_inline struct pgv_windows *pgv_windows(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&windows, &zero);
}

/*
 * Bound 'var' by the constant 'limit' in assembly, in the very register
 * the verifier sees: compiled from C, the comparison was made on a copy
 * and the verifier could not see the value bounded.
 */
#define pgv_clamp(var, limit)						\
	asm volatile("if %[n] <= %[cap] goto +1; %[n] = %[cap]"		\
		     : [n] "+r"(var) : [cap] "i"(limit))

/*
 * Copy the first 'size' bytes of a server struct into 'window', at most
 * 'limit' (a constant: the window's size). False when the read failed;
 * the window then holds zeros.
 */
#define pgv_window_read(window, limit, size, src)			\
	({								\
		__u64 __size = (size);					\
		pgv_clamp(__size, limit);				\
		!bpf_probe_read_user(window, __size, src);		\
	})

/*
 * A field of a struct copied into a window. The offsets come from the
 * layout, checked against the windows in user space (pglayout_check); the
 * bounds here are for the verifier, and read an impossible field as 0.
 */
#define PGV_WINDOW_GET(name, type)					\
static __always_inline type name(const __u8 *window, __u32 cap,		\
				 __u32 offset)				\
{									\
	asm volatile("" : "+r"(offset));				\
	if (offset > cap - sizeof(type))				\
		return 0;						\
	return *(const type *)(window + offset);			\
}
PGV_WINDOW_GET(pgv_get_u64, __u64)
PGV_WINDOW_GET(pgv_get_u32, __u32)
PGV_WINDOW_GET(pgv_get_u8, __u8)

#define PGV_MEASURE_CHUNKS 64	/* measure up to 256 KiB */

/*
 * The length of a statement longer than the capture, counted in chunks
 * through the second scratch slot; a text longer than the bound reports the
 * bound, which is still more than was captured.
 */
static __always_inline __u32 pgv_measure_text(const char *source)
{
	char *tmp = pgv_scratch(1);
	__u32 total = 0;
	long n;
	int i;

	if (!tmp)
		return PGV_TEXT_MAX;
	for (i = 0; i < PGV_MEASURE_CHUNKS; i++) {
		n = bpf_probe_read_user_str(tmp, PGV_TEXT_MAX, source + total);
		if (n <= 0)
			break;
		total += n - 1;
		if (n < PGV_TEXT_MAX)
			break;
	}
	return total;
}

/*
 * Copy a statement into text[], cut to PlannedStmt's stmt_location and
 * stmt_len (a query string can hold several statements), taken from the
 * PlannedStmt's window ('ps', NULL when there is none). Returns the bytes
 * captured; *full gets the statement's full length, measured further than
 * the capture when it is longer.
 */
static __always_inline __u32 pgv_read_text(char *text, const char *source,
					   const __u8 *ps,
					   const struct pg_layout *layout,
					   __u32 *full, __u16 *flags)
{
	int location = 0, len = 0;
	long copied;

	if (ps) {
		location = (int)pgv_get_u32(ps, PGV_WIN_PS,
					    layout->ps_stmt_location);
		len = (int)pgv_get_u32(ps, PGV_WIN_PS, layout->ps_stmt_len);
	}
	if (location < 0 || location > (1 << 30))
		location = 0;
	if (len < 0)
		len = 0;
	if (!source) {
		/* some internal statements come without text: not a failure */
		text[0] = 0;
		*full = 0;
		return 0;
	}
	source += location;
	copied = bpf_probe_read_user_str(text, PGV_TEXT_MAX, source);
	if (copied <= 0) {
		*flags |= PGV_F_READ_FAILED;
		pgv_count_drop(PGV_DROP_READ_FAILED);
		text[0] = 0;
		*full = 0;
		return 0;
	}
	copied -= 1;	/* the terminator */
	if (len && (__u32)len < (__u32)copied) {
		copied = len;
		text[copied & (PGV_TEXT_MAX - 1)] = 0;
	}
	*full = copied;
	/*
	 * The buffer is full: the statement may go on. stmt_len 0 means "to
	 * the end of the string", so measure; one of exactly the buffer's
	 * length is whole.
	 */
	if (copied == PGV_TEXT_MAX - 1 && (!len || len > copied)) {
		*full = len ? len : pgv_measure_text(source);
		if (*full > copied)
			*flags |= PGV_F_TEXT_TRUNCATED;
	}
	return copied;
}


/*
 * Send the backend's session context the first time the backend is seen,
 * and again whenever application_name changes (a SET replaces the string,
 * so its address changes). Read from MyProcPort and the GUC variable: the
 * binary's load address is the probed function's runtime address less its
 * link-time address, carried in the cookie.
 */
static __always_inline void pgv_session_check(struct pt_regs *ctx,
					      const struct pg_layout *layout,
					      struct pgv_backend *backend)
{
	__u64 bias = pgv_ctx_ip(ctx) - PGV_COOKIE_VADDR(bpf_get_attach_cookie(ctx));
	struct pgv_session_event *record;
	__u64 port, app;

	app = pgv_read_ptr((void *)(bias + layout->sym_application_name));
	if (backend->session_sent && app == backend->app_ptr)
		return;
	record = pgv_scratch(1);
	if (!record)
		return;
	pgv_fill_header(&record->hdr, PGV_EV_SESSION, backend);
	record->user[0] = 0;
	record->database[0] = 0;
	record->application[0] = 0;
	record->client_addr_len = 0;
	port = pgv_read_ptr((void *)(bias + layout->sym_my_proc_port));
	if (port) {
		bpf_probe_read_user_str(record->user, sizeof(record->user),
			(void *)pgv_read_ptr((void *)port + layout->port_user_name));
		bpf_probe_read_user_str(record->database, sizeof(record->database),
			(void *)pgv_read_ptr((void *)port +
					     layout->port_database_name));
		bpf_probe_read_user(record->client_addr,
				    sizeof(record->client_addr),
				    (void *)port + layout->port_raddr);
		record->client_addr_len =
			pgv_read_u32((void *)port + layout->port_raddr_len);
	}
	if (app)
		bpf_probe_read_user_str(record->application,
					sizeof(record->application), (void *)app);
	backend->session_sent = 1;
	backend->app_ptr = app;
	pgv_send(record, sizeof(*record));
}

/* The backend behind this probe, with its stack cut back to here. */
static __always_inline struct pgv_backend *pgv_backend_here(struct pt_regs *ctx)
{
	struct pgv_backend *backend;

	backend = pgv_backend_get(bpf_get_current_pid_tgid() >> 32);
	if (backend)
		pgv_stack_unwind(backend, pgv_ctx_sp(ctx));
	return backend;
}

/*
 * Start a record of 'type' in the first scratch slot for the backend behind
 * this probe: its stack cut back to here, its session context sent first
 * when 'layout' is given (executable probes only: the cookie of a USDT
 * probe is libbpf's). Returns the record, header filled, or NULL.
 */
static __always_inline void *pgv_record_begin(struct pt_regs *ctx,
					      const struct pg_layout *layout,
					      __u16 type)
{
	struct pgv_backend *backend = pgv_backend_here(ctx);
	struct pgv_header *hdr;

	if (!backend)
		return NULL;
	if (layout)
		pgv_session_check(ctx, layout, backend);
	hdr = pgv_scratch(0);
	if (!hdr)
		return NULL;
	pgv_fill_header(hdr, type, backend);
	return hdr;
}

#endif /* PGVIGIL_BPF_COMMON_H */
