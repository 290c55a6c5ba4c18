/*
 * The utility path. ProcessUtility gives the statement and its node tag;
 * the relations a command acts on come from probes deeper in, where the
 * server has already resolved names to OIDs (so search_path, quoting and
 * renames cannot hide the target): ExecuteTruncateGuts (its relids list),
 * heap_drop_with_catalog, AlterTable (the context's relid and the
 * subcommand types), RenameRelationInternal and
 * AlterRelationNamespaceInternal.
 */
#include "common.bpf.h"

/*
 * standard_ProcessUtility(PlannedStmt *pstmt, const char *queryString, ...),
 * which ProcessUtility and every hook in front of it end in (see loader.c)
 */
SEC("uprobe")
int BPF_KPROBE(process_utility, const void *plannedstmt, const char *source)
{
	struct pg_layout *layout;
	struct pgv_windows *w;
	struct pgv_utility_event *record;
	const void *stmt = NULL;
	bool have_ps;
	__u32 captured;

	if (pgv_foreign())
		return 0;
	layout = pgv_layout(ctx);
	w = pgv_windows();
	if (!layout || !w || !plannedstmt)
		return 0;
	record = pgv_record_begin(ctx, layout, PGV_EV_UTILITY);
	if (!record)
		return 0;
	have_ps = pgv_window_read(w->ps, PGV_WIN_PS, layout->ps_size,
				  plannedstmt);
	if (have_ps)
		stmt = (void *)pgv_get_u64(w->ps, PGV_WIN_PS,
					   layout->ps_utility_stmt);
	else
		record->hdr.flags |= PGV_F_READ_FAILED;
	record->node_tag = stmt ? pgv_read_u32(stmt) : 0;
	captured = pgv_read_text(record->text, source, have_ps ? w->ps : NULL,
				 layout, &record->text_len, &record->hdr.flags);
	record->text_captured = captured;
	if (captured >= PGV_TEXT_MAX)
		captured = PGV_TEXT_MAX - 1;
	pgv_send(record, PGV_UTIL_FIXED + captured + 1);
	return 0;
}

static __always_inline struct pgv_target_event *
target_begin(struct pt_regs *ctx, __u32 kind)
{
	struct pgv_target_event *record;

	record = pgv_record_begin(ctx, NULL, PGV_EV_TARGET);
	if (!record)
		return NULL;
	record->kind = kind;
	record->n_relids = 0;
	record->n_alter_cmds = 0;
	return record;
}

static __always_inline int target_one(struct pt_regs *ctx, __u32 kind,
				      __u32 relid)
{
	struct pgv_target_event *record = target_begin(ctx, kind);

	if (!record)
		return 0;
	record->relids[0] = relid;
	record->n_relids = 1;
	pgv_send(record, sizeof(*record));
	return 0;
}

/* ExecuteTruncateGuts(List *explicit_rels, List *relids, ...) */
SEC("uprobe")
int BPF_KPROBE(truncate_guts, const void *explicit_rels, const void *relids)
{
	struct pg_layout *layout;
	struct pgv_target_event *record;
	const void *cells;
	int n = 0, i;

	if (pgv_foreign())
		return 0;
	layout = pgv_layout(ctx);
	if (!layout || !relids)
		return 0;
	record = target_begin(ctx, PGV_TARGET_TRUNCATE);
	if (!record)
		return 0;
	bpf_probe_read_user(&n, sizeof(n), relids + layout->list_length);
	cells = (void *)pgv_read_ptr(relids + layout->list_elements);
	if (n > PGV_TARGETS_MAX) {
		record->hdr.flags |= PGV_F_RELS_TRUNCATED;
		n = PGV_TARGETS_MAX;
	}
	for (i = 0; i < PGV_TARGETS_MAX; i++) {
		if (i >= n)
			break;
		record->relids[i] = pgv_read_u32(cells + i * 8);
		record->n_relids = i + 1;
	}
	pgv_send(record, sizeof(*record));
	return 0;
}

/* heap_drop_with_catalog(Oid relid) */
SEC("uprobe")
int BPF_KPROBE(heap_drop, __u32 relid)
{
	if (pgv_foreign())
		return 0;
	return target_one(ctx, PGV_TARGET_DROP, relid);
}

/* RenameRelationInternal(Oid myrelid, const char *newrelname, ...) */
SEC("uprobe")
int BPF_KPROBE(rename_relation, __u32 relid)
{
	if (pgv_foreign())
		return 0;
	return target_one(ctx, PGV_TARGET_RENAME, relid);
}

/*
 * AlterRelationNamespaceInternal(Relation classRel, Oid relOid, ...): ALTER
 * TABLE ... SET SCHEMA, a rename by another name
 */
SEC("uprobe")
int BPF_KPROBE(set_schema, const void *class_rel, __u32 relid)
{
	if (pgv_foreign())
		return 0;
	return target_one(ctx, PGV_TARGET_RENAME, relid);
}

/*
 * AlterTable(AlterTableStmt *stmt, LOCKMODE lockmode,
 *            AlterTableUtilityContext *context)
 */
SEC("uprobe")
int BPF_KPROBE(alter_table, const void *stmt, int lockmode,
	       const void *context)
{
	struct pg_layout *layout;
	struct pgv_target_event *record;
	const void *cmds, *cells;
	int n = 0, i;

	if (pgv_foreign())
		return 0;
	layout = pgv_layout(ctx);
	if (!layout || !stmt || !context)
		return 0;
	record = target_begin(ctx, PGV_TARGET_ALTER);
	if (!record)
		return 0;
	record->relids[0] = pgv_read_u32(context + layout->atctx_relid);
	record->n_relids = 1;
	cmds = (void *)pgv_read_ptr(stmt + layout->atstmt_cmds);
	if (cmds) {
		bpf_probe_read_user(&n, sizeof(n), cmds + layout->list_length);
		cells = (void *)pgv_read_ptr(cmds + layout->list_elements);
	}
	if (n > PGV_ALTER_CMDS_MAX) {
		record->hdr.flags |= PGV_F_RELS_TRUNCATED;
		n = PGV_ALTER_CMDS_MAX;
	}
	for (i = 0; i < PGV_ALTER_CMDS_MAX; i++) {
		const void *cmd;

		if (i >= n)
			break;
		cmd = (void *)pgv_read_ptr(cells + i * 8);
		record->alter_cmds[i] = cmd ?
			pgv_read_u32(cmd + layout->atcmd_subtype) : ~0u;
		record->n_alter_cmds = i + 1;
	}
	pgv_send(record, sizeof(*record));
	return 0;
}
