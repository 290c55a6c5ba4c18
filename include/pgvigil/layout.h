/*
 * Where PostgreSQL keeps what the probes read: struct member offsets, enum
 * values and the addresses of the globals that hold session context.
 *
 * Layouts move between major versions, so nothing here is typed by hand:
 * tools/gen-pglayout writes one table row per major version from the server
 * headers (user/pglayout_table.c). User space picks the row for the server it
 * attaches to and hands it to the BPF side in the 'layouts' array map; the
 * BPF side never assumes a version. Shared by BPF and user space, so only
 * fixed-width fields, and the size is checked on both sides.
 */
#ifndef PGVIGIL_LAYOUT_H
#define PGVIGIL_LAYOUT_H

#ifdef __BPF__
/* vmlinux.h provides the fixed-width types */
#else
#include <linux/types.h>
#endif

#define PGV_MAX_LAYOUTS 16

/*
 * The probes read a struct in one piece, up to this many bytes of it, and
 * take its fields from the copy: each read of server memory is a helper
 * call, and a dozen small reads cost more than the rest of a probe. A
 * layout whose fields lie beyond these bounds is refused (pglayout_check).
 */
#define PGV_WIN_QD	128	/* QueryDesc */
#define PGV_WIN_PS	256	/* PlannedStmt */
#define PGV_WIN_RTE	512	/* RangeTblEntry */
#define PGV_WIN_LIST	128	/* a List's header and its first inline cells */
#define PGV_WIN_BMS	64	/* a Bitmapset's header and first words */
#define PGV_BMS_HEAD_WORDS 4	/* words read with the header; more, apart */

struct pg_layout {
	__u32 major;			/* PostgreSQL major version */
	__u32 flags;
	/* QueryDesc */
	__u16 qd_operation;
	__u16 qd_plannedstmt;
	__u16 qd_source_text;
	__u16 qd_params;
	/* PlannedStmt */
	__u16 ps_command_type;
	__u16 ps_has_modifying_cte;
	__u16 ps_rtable;
	__u16 ps_result_relations;
	__u16 ps_utility_stmt;
	__u16 ps_stmt_location;
	__u16 ps_stmt_len;
	/* RangeTblEntry */
	__u16 rte_rtekind;
	__u16 rte_relid;
	__u16 rte_relkind;
	__u16 rte_required_perms;
	__u16 rte_inserted_cols;
	__u16 rte_updated_cols;
	/* List and Bitmapset */
	__u16 list_length;
	__u16 list_elements;
	__u16 list_initial_elements;
	__u16 bms_nwords;
	__u16 bms_words;
	/* PLpgSQL_function and FunctionCallInfo / FmgrInfo */
	__u16 plf_fn_oid;
	__u16 fcinfo_flinfo;
	__u16 flinfo_fn_oid;
	/* Port (MyProcPort) */
	__u16 port_raddr;
	__u16 port_raddr_len;
	__u16 port_database_name;
	__u16 port_user_name;
	/* AlterTableStmt, AlterTableCmd, AlterTableUtilityContext */
	__u16 atstmt_cmds;
	__u16 atcmd_subtype;
	__u16 atctx_relid;
	/* sizeof QueryDesc, PlannedStmt, RangeTblEntry */
	__u16 qd_size;
	__u16 ps_size;
	__u16 rte_size;
	__u16 pad0[3];
	/* a column number n is member n + attr_offset of a column set */
	__u32 attr_offset;
	__u32 pad1;
	/* link-time addresses (ELF st_value) in the server executable */
	__u64 sym_my_proc_port;
	__u64 sym_application_name;
};

#ifndef __BPF__
_Static_assert(sizeof(struct pg_layout) == 112, "pg_layout size");
#endif

#endif /* PGVIGIL_LAYOUT_H */
