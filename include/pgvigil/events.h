/*
 * Records that cross the ring buffer from the BPF programs to the daemon.
 *
 * Every record starts with struct pgv_header. Fixed-width fields only, with
 * explicit padding, and the sizes are checked at compile time on both sides
 * so a change on one side cannot silently shift the other.
 */
#ifndef PGVIGIL_EVENTS_H
#define PGVIGIL_EVENTS_H

#include "pgvigil/layout.h"

#define PGV_COMM_LEN		16
#define PGV_STACK_MAX		16	/* function frames kept per backend */
#define PGV_RESULT_RELS_MAX	16	/* named result relations kept */
#define PGV_RESULT_SCAN_MAX	512	/* result relations looked at */
/*
 * 64-bit words per column set: every column a table can have (1,600, and
 * the system columns below them), so no write is ever cut from its set.
 */
#define PGV_COLSET_WORDS	26
#define PGV_TEXT_MAX		4096	/* statement bytes captured */
#define PGV_TARGETS_MAX		16	/* relations per utility target */
#define PGV_ALTER_CMDS_MAX	8	/* ALTER TABLE subcommands */
#define PGV_NAME_MAX		64	/* NAMEDATALEN */
#define PGV_APP_MAX		64
#define PGV_WIRE_CHUNK		4096	/* client bytes per wire record */
#define PGV_WIRE_CHUNKS		4	/* records per read, at most */
#define PGV_WIRE_ADDR_MAX	32	/* sockaddr_in6 and less */

enum pgv_event_type {
	PGV_EV_EXEC = 1,	/* ExecutorStart */
	PGV_EV_UTILITY,		/* ProcessUtility */
	PGV_EV_TARGET,		/* a relation a utility command acts on */
	PGV_EV_XACT,		/* transaction start, commit, abort */
	PGV_EV_SESSION,		/* session context, once per backend */
	PGV_EV_EXIT,		/* a backend exited */
	PGV_EV_WIRE,		/* bytes a backend read from its client */
};

enum pgv_target_kind {
	PGV_TARGET_TRUNCATE = 1,
	PGV_TARGET_DROP,
	PGV_TARGET_ALTER,
	PGV_TARGET_RENAME,
};

enum pgv_xact_kind {
	PGV_XACT_START = 1,
	PGV_XACT_COMMIT,
	PGV_XACT_ABORT,
};

/* header flags */
#define PGV_F_TEXT_TRUNCATED	(1u << 0)	/* text longer than captured */
#define PGV_F_STACK_TRUNCATED	(1u << 1)	/* deeper than PGV_STACK_MAX */
#define PGV_F_RELS_TRUNCATED	(1u << 2)	/* more relations than kept */
#define PGV_F_READ_FAILED	(1u << 3)	/* a server read failed */
#define PGV_F_COLS_TRUNCATED	(1u << 4)	/* a column set was wider */

/* Causes of a lost or damaged record, counted per CPU. */
enum pgv_drop_cause {
	PGV_DROP_RINGBUF_FULL = 0,	/* bpf_ringbuf_output failed */
	PGV_DROP_NO_BACKEND,		/* backend table full */
	PGV_DROP_READ_FAILED,		/* reading server memory failed */
	PGV_DROP_NO_LAYOUT,		/* probe cookie names no layout */
	PGV_DROP_STACK_OVERFLOW,	/* function stack deeper than kept */
	PGV_DROP_WIRE_TRUNCATED,	/* a client read longer than captured */
	PGV_DROP_CAUSES,
};

struct pgv_header {
	__u16 type;		/* enum pgv_event_type */
	__u16 flags;
	__u32 pid;		/* backend process id */
	__u32 ppid;		/* its parent (the postmaster) */
	__u32 uid;
	__u64 seq;		/* per-backend sequence, from 1, no gaps */
	__u64 time_ns;		/* CLOCK_MONOTONIC */
	__u64 cgroup_id;
	char comm[PGV_COMM_LEN];
	__u32 depth;		/* function frames on the stack */
	__u32 stack_len;	/* frames kept in stack[] */
	__u32 stack[PGV_STACK_MAX];	/* function OIDs, outermost first */
	__u32 trigger_mask;	/* bit i: stack[i] runs as a trigger */
	__u32 pad;
};

struct pgv_result_rel {
	__u32 relid;
	__u32 required_perms;	/* AclMode bits the statement needs */
	__u8 relkind;
	__u8 rtekind;
	__u8 pad[6];
	__u64 updated_cols[PGV_COLSET_WORDS];
	__u64 inserted_cols[PGV_COLSET_WORDS];
};

struct pgv_exec_event {
	struct pgv_header hdr;
	__u32 operation;	/* CmdType */
	__u8 has_modifying_cte;
	__u8 n_result_rels;
	__u16 pad;
	__u32 text_len;		/* full length of the statement text */
	__u32 text_captured;	/* bytes in text[] */
	struct pgv_result_rel rels[PGV_RESULT_RELS_MAX];
	char text[PGV_TEXT_MAX];	/* followed by nothing: sent cut */
};

struct pgv_utility_event {
	struct pgv_header hdr;
	__u32 node_tag;		/* NodeTag of the utility statement */
	__u32 pad;
	__u32 text_len;
	__u32 text_captured;
	char text[PGV_TEXT_MAX];
};

struct pgv_target_event {
	struct pgv_header hdr;
	__u32 kind;		/* enum pgv_target_kind */
	__u32 n_relids;
	__u32 relids[PGV_TARGETS_MAX];
	__u32 n_alter_cmds;
	__u32 alter_cmds[PGV_ALTER_CMDS_MAX];	/* AlterTableType values */
};

struct pgv_xact_event {
	struct pgv_header hdr;
	__u32 kind;		/* enum pgv_xact_kind */
	__u32 pad;
};

struct pgv_session_event {
	struct pgv_header hdr;
	char user[PGV_NAME_MAX];
	char database[PGV_NAME_MAX];
	char application[PGV_APP_MAX];
	__u8 client_addr[128];	/* struct sockaddr_storage */
	__u32 client_addr_len;
	__u32 pad;
};

struct pgv_exit_event {
	struct pgv_header hdr;
};

/*
 * One chunk of what secure_read() returned to the backend: the client's
 * protocol bytes after TLS. A read longer than one chunk is sent as several
 * records with increasing 'offset'; the bytes past the last chunk sent
 * (offset + captured < read_len) were not captured. The client address
 * rides along on the backend's first read only (client_addr_len 0 else).
 */
struct pgv_wire_event {
	struct pgv_header hdr;
	__u32 read_len;		/* bytes the read returned */
	__u32 offset;		/* of data[0] within the read */
	__u32 captured;		/* bytes in data[] */
	__u32 client_addr_len;
	__u8 client_addr[PGV_WIRE_ADDR_MAX];	/* start of a sockaddr */
	__u8 data[PGV_WIRE_CHUNK];	/* followed by nothing: sent cut */
};

/* The text must be the last member: only its used part is sent. */
#define PGV_EXEC_FIXED	 ((unsigned long)&((struct pgv_exec_event *)0)->text)

/*
 * An exec record travels packed: the members before rels[], then only the
 * n_result_rels relations kept, then the text (text_captured bytes and a
 * terminator). Most statements write one relation or none, and sending all
 * the slots copied 1.2 KiB of zeros per statement through the ring buffer.
 * struct pgv_exec_event is the unpacked form, which the probe builds in and
 * user space works on.
 */
#define PGV_EXEC_RELS	 ((unsigned long)&((struct pgv_exec_event *)0)->rels)
#define PGV_EXEC_PACKED(n, captured)					\
	(PGV_EXEC_RELS + (n) * sizeof(struct pgv_result_rel) + (captured) + 1)
#define PGV_UTIL_FIXED	 ((unsigned long)&((struct pgv_utility_event *)0)->text)
#define PGV_WIRE_FIXED	 ((unsigned long)&((struct pgv_wire_event *)0)->data)

#ifndef __BPF__
_Static_assert(sizeof(struct pgv_header) == 136, "pgv_header size");
_Static_assert(sizeof(struct pgv_result_rel) == 16 + 2 * 8 * PGV_COLSET_WORDS,
	       "pgv_result_rel size");
_Static_assert(PGV_COLSET_WORDS * 64 >= 1600 + 8, "column sets cover MaxHeapAttributeNumber");
_Static_assert(sizeof(struct pgv_exec_event) ==
		       136 + 16 + PGV_RESULT_RELS_MAX * sizeof(struct pgv_result_rel) +
		       PGV_TEXT_MAX,
	       "pgv_exec_event size");
_Static_assert(sizeof(struct pgv_session_event) == 136 + 64 * 3 + 136,
	       "pgv_session_event size");
_Static_assert(sizeof(struct pgv_wire_event) ==
		       136 + 16 + PGV_WIRE_ADDR_MAX + PGV_WIRE_CHUNK,
	       "pgv_wire_event size");
#endif

#endif /* PGVIGIL_EVENTS_H */
