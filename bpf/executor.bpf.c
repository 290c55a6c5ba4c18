/*
 * ExecutorStart: every planned statement, nested ones included (functions,
 * triggers, dynamic SQL, the extended protocol). Captures the command, the
 * result relations with the column sets the statement writes and the
 * permissions it needs, and the statement text.
 */
#include "common.bpf.h"

/*
 * A column set into words[], which the caller has zeroed. One read takes
 * the header and the first words, which is all a table of up to 249
 * columns needs; the words of a wider set come in a second read. A set
 * near the end of mapped memory (the first read runs past its allocation)
 * is read in two steps instead.
 */
static __always_inline void read_colset(__u64 *words, const void *bms,
					__u8 *window,
					const struct pg_layout *layout,
					__u16 *flags)
{
	__u64 nwords, rest, i;

	if (!bms)
		return;
	if (!pgv_window_read(window, PGV_WIN_BMS,
			     layout->bms_words + 8 * PGV_BMS_HEAD_WORDS, bms)) {
		nwords = pgv_read_u32(bms + layout->bms_nwords);
		if (nwords > PGV_COLSET_WORDS) {
			*flags |= PGV_F_COLS_TRUNCATED;
			nwords = PGV_COLSET_WORDS;
		}
		nwords *= 8;
		pgv_clamp(nwords, 8 * PGV_COLSET_WORDS);
		if (bpf_probe_read_user(words, nwords, bms + layout->bms_words))
			*flags |= PGV_F_READ_FAILED;
		return;
	}
	nwords = pgv_get_u32(window, PGV_WIN_BMS, layout->bms_nwords);
	if (nwords > PGV_COLSET_WORDS) {
		*flags |= PGV_F_COLS_TRUNCATED;
		nwords = PGV_COLSET_WORDS;
	}
	for (i = 0; i < PGV_BMS_HEAD_WORDS; i++) {
		if (i >= nwords)
			break;
		words[i] = pgv_get_u64(window, PGV_WIN_BMS,
				       layout->bms_words + i * 8);
	}
	if (nwords <= PGV_BMS_HEAD_WORDS)
		return;
	rest = (nwords - PGV_BMS_HEAD_WORDS) * 8;
	pgv_clamp(rest, 8 * (PGV_COLSET_WORDS - PGV_BMS_HEAD_WORDS));
	if (bpf_probe_read_user(&words[PGV_BMS_HEAD_WORDS], rest,
				bms + layout->bms_words + 8 * PGV_BMS_HEAD_WORDS))
		*flags |= PGV_F_READ_FAILED;
}

/* A result relation from the RangeTblEntry copied into w->rte. */
static __always_inline void read_result_rel(struct pgv_result_rel *rel,
					    struct pgv_windows *w,
					    const struct pg_layout *layout,
					    __u16 *flags)
{
	__builtin_memset(rel, 0, sizeof(*rel));
	rel->relid = pgv_get_u32(w->rte, PGV_WIN_RTE, layout->rte_relid);
	rel->required_perms = pgv_get_u32(w->rte, PGV_WIN_RTE,
					  layout->rte_required_perms);
	rel->relkind = pgv_get_u8(w->rte, PGV_WIN_RTE, layout->rte_relkind);
	rel->rtekind = pgv_get_u32(w->rte, PGV_WIN_RTE, layout->rte_rtekind);
	read_colset(rel->updated_cols,
		    (void *)pgv_get_u64(w->rte, PGV_WIN_RTE,
					layout->rte_updated_cols),
		    w->bms, layout, flags);
	read_colset(rel->inserted_cols,
		    (void *)pgv_get_u64(w->rte, PGV_WIN_RTE,
					layout->rte_inserted_cols),
		    w->bms, layout, flags);
}

/*
 * Copy a List's header with the cells that follow it inline (a short list
 * keeps its cells in the same allocation). Returns how many cells the
 * window holds: none when they live elsewhere, or when the long read ran
 * past mapped memory and only the header could be read.
 */
static __always_inline __u32 read_list(__u8 *window, const void *list,
				       const struct pg_layout *layout,
				       __u16 *flags)
{
	__u32 head = layout->list_initial_elements;
	__u64 elements;

	if (!pgv_window_read(window, PGV_WIN_LIST, PGV_WIN_LIST, list)) {
		if (!pgv_window_read(window, PGV_WIN_LIST, head, list))
			*flags |= PGV_F_READ_FAILED;
		return 0;
	}
	elements = pgv_get_u64(window, PGV_WIN_LIST, layout->list_elements);
	if (elements != (__u64)list + head || head > PGV_WIN_LIST)
		return 0;
	return (PGV_WIN_LIST - head) / 8;
}

/* Cell i of a List read by read_list, which said 'inline' cells are in. */
static __always_inline __u64 list_cell(const __u8 *window, __u32 inline_cells,
				       const struct pg_layout *layout, __u32 i)
{
	__u64 elements;

	if (i < inline_cells)
		return pgv_get_u64(window, PGV_WIN_LIST,
				   layout->list_initial_elements + i * 8);
	elements = pgv_get_u64(window, PGV_WIN_LIST, layout->list_elements);
	return pgv_read_ptr((void *)(elements + (__u64)i * 8));
}

struct scan_state {
	struct pgv_exec_event *record;
	struct pgv_windows *w;
	const struct pg_layout *layout;
	int n;
	int rt_len;
	__u32 results_inline;
	__u32 rtable_inline;
	__u32 kept;
};

/* One entry of resultRelations; bpf_loop keeps the verifier's work flat. */
static long scan_one(__u32 i, void *arg)
{
	struct scan_state *st = arg;
	struct pgv_exec_event *record = st->record;
	struct pgv_windows *w = st->w;
	const void *rte = NULL;
	int rti;

	if ((int)i >= st->n)
		return 1;
	/* an int cell: the low half of the 8-byte ListCell */
	rti = (int)list_cell(w->results, st->results_inline, st->layout, i);
	if (rti >= 1 && rti <= st->rt_len)
		rte = (void *)list_cell(w->rtable, st->rtable_inline, st->layout,
					rti - 1);
	if (!rte || !pgv_window_read(w->rte, PGV_WIN_RTE,
				     st->layout->rte_size, rte)) {
		record->hdr.flags |= PGV_F_READ_FAILED;
		return 0;
	}
	if (!pgv_get_u32(w->rte, PGV_WIN_RTE, st->layout->rte_required_perms))
		return 0;
	if (st->kept >= PGV_RESULT_RELS_MAX) {
		record->hdr.flags |= PGV_F_RELS_TRUNCATED;
		return 1;
	}
	read_result_rel(&record->rels[st->kept & (PGV_RESULT_RELS_MAX - 1)],
			w, st->layout, &record->hdr.flags);
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
					     struct pgv_windows *w,
					     const struct pg_layout *layout)
{
	struct scan_state st = { .record = record, .w = w, .layout = layout };
	const void *results, *rtable;

	record->n_result_rels = 0;
	results = (void *)pgv_get_u64(w->ps, PGV_WIN_PS,
				      layout->ps_result_relations);
	rtable = (void *)pgv_get_u64(w->ps, PGV_WIN_PS, layout->ps_rtable);
	if (!results || !rtable)
		return;
	st.results_inline = read_list(w->results, results, layout,
				      &record->hdr.flags);
	st.rtable_inline = read_list(w->rtable, rtable, layout,
				     &record->hdr.flags);
	st.n = (int)pgv_get_u32(w->results, PGV_WIN_LIST, layout->list_length);
	st.rt_len = (int)pgv_get_u32(w->rtable, PGV_WIN_LIST,
				     layout->list_length);
	if (st.n > PGV_RESULT_SCAN_MAX) {
		record->hdr.flags |= PGV_F_RELS_TRUNCATED;
		st.n = PGV_RESULT_SCAN_MAX;
	}
	if (st.n > 0)
		bpf_loop(st.n, scan_one, &st, 0);
	record->n_result_rels = st.kept;
}

SEC("uprobe")
int BPF_KPROBE(executor_start, const void *query_desc)
{
	struct pg_layout *layout;
	struct pgv_windows *w;
	struct pgv_exec_event *record;
	const void *plannedstmt;
	const char *source;
	bool have_qd, have_ps = false;
	__u32 captured, operation;
	__u64 kept;
	__u8 cte = 0;
	char *text;

	if (pgv_foreign())
		return 0;
	layout = pgv_layout(ctx);
	w = pgv_windows();
	if (!layout || !w || !query_desc)
		return 0;
	/* the QueryDesc and its PlannedStmt, a read each */
	have_qd = pgv_window_read(w->qd, PGV_WIN_QD, layout->qd_size,
				  query_desc);
	operation = pgv_get_u32(w->qd, PGV_WIN_QD, layout->qd_operation);
	plannedstmt = (void *)pgv_get_u64(w->qd, PGV_WIN_QD,
					  layout->qd_plannedstmt);
	source = (void *)pgv_get_u64(w->qd, PGV_WIN_QD, layout->qd_source_text);
	if (plannedstmt)
		have_ps = pgv_window_read(w->ps, PGV_WIN_PS, layout->ps_size,
					  plannedstmt);
	if (have_ps)
		cte = pgv_get_u8(w->ps, PGV_WIN_PS, layout->ps_has_modifying_cte);
	/* a SELECT that writes nothing: no result relation, no modifying CTE */
	if (pgv_skip_reads && have_ps && operation == 1 && !cte &&
	    !pgv_get_u64(w->ps, PGV_WIN_PS, layout->ps_result_relations)) {
		pgv_backend_here(ctx);	/* the stack repair still applies */
		return 0;
	}
	record = pgv_record_begin(ctx, layout, PGV_EV_EXEC);
	if (!record)
		return 0;
	record->operation = operation;
	record->has_modifying_cte = cte;
	if (have_ps) {
		read_result_rels(record, w, layout);
	} else {
		record->n_result_rels = 0;
		record->hdr.flags |= PGV_F_READ_FAILED;
	}
	if (!have_qd)
		record->hdr.flags |= PGV_F_READ_FAILED;
	/* packed: the text right after the relations kept */
	kept = record->n_result_rels;
	pgv_clamp(kept, PGV_RESULT_RELS_MAX);
	text = (char *)&record->rels[kept];
	captured = pgv_read_text(text, source, have_ps ? w->ps : NULL, layout,
				 &record->text_len, &record->hdr.flags);
	record->text_captured = captured;
	if (captured >= PGV_TEXT_MAX)
		captured = PGV_TEXT_MAX - 1;
	pgv_send(record, PGV_EXEC_PACKED(kept, captured));
	return 0;
}
