/*
 * ExecutorStart: every planned statement, nested ones included (functions,
 * triggers, dynamic SQL, the extended protocol). Captures the command, the
 * result relations with the column sets the statement writes and the
 * permissions it needs, and the statement text.
 */
#include "common.bpf.h"

static __always_inline void read_colset(__u64 *words, const void *bms,
					const struct pg_layout *layout,
					__u16 *flags)
{
	int nwords = 0, i;

	if (!bms)
		return;
	bpf_probe_read_user(&nwords, sizeof(nwords), bms + layout->bms_nwords);
	if (nwords > PGV_COLSET_WORDS) {
		*flags |= PGV_F_COLS_TRUNCATED;
		nwords = PGV_COLSET_WORDS;
	}
	for (i = 0; i < PGV_COLSET_WORDS; i++) {
		if (i >= nwords)
			break;
		bpf_probe_read_user(&words[i], sizeof(__u64),
				    bms + layout->bms_words + i * 8);
	}
}

static __always_inline void read_result_rel(struct pgv_result_rel *rel,
					    const void *rte,
					    const struct pg_layout *layout,
					    __u16 *flags)
{
	int rtekind = 0;
	char relkind = 0;

	__builtin_memset(rel, 0, sizeof(*rel));
	if (!rte)
		return;
	rel->relid = pgv_read_u32(rte + layout->rte_relid);
	rel->required_perms = pgv_read_u32(rte + layout->rte_required_perms);
	bpf_probe_read_user(&relkind, 1, rte + layout->rte_relkind);
	bpf_probe_read_user(&rtekind, sizeof(rtekind),
			    rte + layout->rte_rtekind);
	rel->relkind = relkind;
	rel->rtekind = rtekind;
	read_colset(rel->updated_cols,
		    (void *)pgv_read_ptr(rte + layout->rte_updated_cols),
		    layout, flags);
	read_colset(rel->inserted_cols,
		    (void *)pgv_read_ptr(rte + layout->rte_inserted_cols),
		    layout, flags);
}

struct scan_state {
	struct pgv_exec_event *record;
	const struct pg_layout *layout;
	const void *cells;
	const void *rt_cells;
	int n;
	int rt_len;
	__u32 kept;
};

/* One entry of resultRelations; bpf_loop keeps the verifier's work flat. */
static long scan_one(__u32 i, void *arg)
{
	struct scan_state *st = arg;
	struct pgv_exec_event *record = st->record;
	const void *rte = NULL;
	int rti = 0;

	if ((int)i >= st->n)
		return 1;
	bpf_probe_read_user(&rti, sizeof(rti), st->cells + i * 8);
	if (rti >= 1 && rti <= st->rt_len)
		rte = (void *)pgv_read_ptr(st->rt_cells + (rti - 1) * 8);
	if (!rte) {
		record->hdr.flags |= PGV_F_READ_FAILED;
		return 0;
	}
	if (!pgv_read_u32(rte + st->layout->rte_required_perms))
		return 0;
	if (st->kept >= PGV_RESULT_RELS_MAX) {
		record->hdr.flags |= PGV_F_RELS_TRUNCATED;
		return 1;
	}
	read_result_rel(&record->rels[st->kept & (PGV_RESULT_RELS_MAX - 1)],
			rte, st->layout, &record->hdr.flags);
	st->kept++;
	return 0;
}

/*
 * resultRelations is a List of 1-based range table indexes. Partitions and
 * inheritance children reached through a parent come first and carry no
 * permissions; the relations the statement names (the parent among them)
 * carry the permissions it needs. Only those are kept, so a statement on a
 * table with hundreds of partitions still shows its target; more named
 * targets than kept are flagged, and user space reports that.
 */
static __always_inline void read_result_rels(struct pgv_exec_event *record,
					     const void *plannedstmt,
					     const struct pg_layout *layout)
{
	struct scan_state st = { .record = record, .layout = layout };
	const void *results, *rtable;

	record->n_result_rels = 0;
	results = (void *)pgv_read_ptr(plannedstmt + layout->ps_result_relations);
	rtable = (void *)pgv_read_ptr(plannedstmt + layout->ps_rtable);
	if (!results || !rtable)
		return;
	bpf_probe_read_user(&st.n, sizeof(st.n), results + layout->list_length);
	bpf_probe_read_user(&st.rt_len, sizeof(st.rt_len),
			    rtable + layout->list_length);
	st.cells = (void *)pgv_read_ptr(results + layout->list_elements);
	st.rt_cells = (void *)pgv_read_ptr(rtable + layout->list_elements);
	if (st.n > PGV_RESULT_SCAN_MAX) {
		record->hdr.flags |= PGV_F_RELS_TRUNCATED;
		st.n = PGV_RESULT_SCAN_MAX;
	}
	if (st.n > 0)
		bpf_loop(st.n, scan_one, &st, 0);
	record->n_result_rels = st.kept;
}

/* A SELECT that writes nothing: no result relation, no modifying CTE. */
static __always_inline bool plain_read(const void *query_desc,
				       const struct pg_layout *layout)
{
	const void *plannedstmt;
	__u8 cte = 1;

	if (pgv_read_u32(query_desc + layout->qd_operation) != 1)
		return false;
	plannedstmt = (void *)pgv_read_ptr(query_desc + layout->qd_plannedstmt);
	if (!plannedstmt)
		return false;
	bpf_probe_read_user(&cte, 1, plannedstmt + layout->ps_has_modifying_cte);
	return !cte && !pgv_read_ptr(plannedstmt + layout->ps_result_relations);
}

SEC("uprobe")
int BPF_KPROBE(executor_start, const void *query_desc)
{
	struct pg_layout *layout = pgv_layout(ctx);
	struct pgv_exec_event *record;
	const void *plannedstmt;
	const char *source;
	__u32 captured;
	__u8 cte = 0;

	if (!layout || !query_desc)
		return 0;
	if (pgv_skip_reads && plain_read(query_desc, layout)) {
		pgv_backend_here(ctx);	/* the stack repair still applies */
		return 0;
	}
	record = pgv_record_begin(ctx, layout, PGV_EV_EXEC);
	if (!record)
		return 0;
	record->operation = pgv_read_u32(query_desc + layout->qd_operation);
	plannedstmt = (void *)pgv_read_ptr(query_desc + layout->qd_plannedstmt);
	source = (void *)pgv_read_ptr(query_desc + layout->qd_source_text);
	record->has_modifying_cte = 0;
	if (plannedstmt) {
		bpf_probe_read_user(&cte, 1,
				    plannedstmt + layout->ps_has_modifying_cte);
		record->has_modifying_cte = cte;
		read_result_rels(record, plannedstmt, layout);
	} else {
		record->n_result_rels = 0;
		record->hdr.flags |= PGV_F_READ_FAILED;
	}
	captured = pgv_read_text(record->text, source, plannedstmt, layout,
				 &record->text_len, &record->hdr.flags);
	record->text_captured = captured;
	if (captured >= PGV_TEXT_MAX)
		captured = PGV_TEXT_MAX - 1;
	pgv_send(record, PGV_EXEC_FIXED + captured + 1);
	return 0;
}
