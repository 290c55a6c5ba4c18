/*
 * BPF object lifetime and probe attachment. See loader.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "elfsym.h"
#include "loader.h"
#include "log.h"
#include "pgvigil.skel.h"

#define MAX_BINARIES PGV_MAX_LAYOUTS
#define MAX_LINKS 256

struct binary {
	dev_t dev;
	ino_t ino;
	unsigned int layout;
};

struct loader {
	struct pgvigil_bpf *skel;
	struct bpf_link *links[MAX_LINKS];
	size_t n_links;
	struct binary binaries[MAX_BINARIES * 2];	/* executables and .so */
	size_t n_binaries;
	unsigned int n_layouts;
	int ncpus;
	bool wire;		/* attach the client read probes */
};

struct probe {
	struct bpf_program *prog;
	const char *symbol;
	bool retprobe;
};

int loader_open(struct loader **out, char *err, size_t err_len)
{
	static const struct loader_options defaults = { 0 };

	return loader_open_with(out, &defaults, err, err_len);
}

int loader_open_with(struct loader **out, const struct loader_options *opts,
		     char *err, size_t err_len)
{
	struct loader *loader = calloc(1, sizeof(*loader));
	int ret;

	if (!loader)
		return -ENOMEM;
	loader->ncpus = libbpf_num_possible_cpus();
	loader->skel = pgvigil_bpf__open();
	if (!loader->skel) {
		ret = -errno;
		snprintf(err, err_len, "cannot open the BPF object: %s",
			 strerror(-ret));
		goto fail;
	}
	loader->skel->rodata->pgv_wakeup_bytes = LOADER_WAKEUP_BYTES;
	loader->skel->rodata->pgv_skip_reads = opts->skip_reads;
	ret = pgvigil_bpf__load(loader->skel);
	if (ret) {
		if (ret == -EPERM || ret == -EACCES)
			snprintf(err, err_len, "cannot load BPF programs: %s "
				 "(needs CAP_BPF, CAP_PERFMON and "
				 "CAP_SYS_RESOURCE, or root)", strerror(-ret));
		else
			snprintf(err, err_len, "cannot load BPF programs: %s",
				 strerror(-ret));
		goto fail;
	}
	loader->links[loader->n_links] =
		bpf_program__attach(loader->skel->progs.backend_exit);
	if (!loader->links[loader->n_links]) {
		ret = -errno;
		snprintf(err, err_len, "cannot attach to "
			 "'sched_process_exit': %s",
			 strerror(-ret));
		goto fail;
	}
	loader->n_links++;
	*out = loader;
	return 0;
fail:
	loader_close(loader);
	return ret;
}

void loader_set_wire(struct loader *loader, bool on)
{
	loader->wire = on;
}

static struct binary *find_binary(struct loader *loader, dev_t dev, ino_t ino)
{
	size_t i;

	for (i = 0; i < loader->n_binaries; i++)
		if (loader->binaries[i].dev == dev &&
		    loader->binaries[i].ino == ino)
			return &loader->binaries[i];
	return NULL;
}

static int add_link(struct loader *loader, struct bpf_link *link)
{
	if (!link)
		return -errno;
	if (loader->n_links == MAX_LINKS) {
		bpf_link__destroy(link);
		return -ENOSPC;
	}
	loader->links[loader->n_links++] = link;
	return 0;
}

/* Attach 'probes' in 'path', whose symbols are looked up there. */
static int attach_probes(struct loader *loader, const char *path,
			 unsigned int layout, const struct probe *probes,
			 size_t count, char *err, size_t err_len)
{
	struct elfsym_query queries[16];
	size_t i;
	int ret;

	for (i = 0; i < count; i++)
		queries[i].name = probes[i].symbol;
	ret = elfsym_resolve(path, queries, count);
	if (ret) {
		snprintf(err, err_len, "cannot read symbols of '%s': %s", path,
			 strerror(-ret));
		return ret;
	}
	for (i = 0; i < count; i++) {
		LIBBPF_OPTS(bpf_uprobe_opts, opts);

		if (!queries[i].offset) {
			snprintf(err, err_len, "no symbol '%s' in '%s'",
				 probes[i].symbol, path);
			return -ENOENT;
		}
		opts.retprobe = probes[i].retprobe;
		opts.bpf_cookie = ((uint64_t)layout << 48) | queries[i].vaddr;
		ret = add_link(loader, bpf_program__attach_uprobe_opts(
				       probes[i].prog, -1, path,
				       queries[i].offset, &opts));
		if (ret) {
			snprintf(err, err_len, "failed to attach to '%s' in "
				 "'%s': %s", probes[i].symbol, path,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int attach_usdt(struct loader *loader, const char *path, char *err,
		       size_t err_len)
{
	struct pgvigil_bpf *skel = loader->skel;
	const struct {
		struct bpf_program *prog;
		const char *name;
	} notes[] = {
		{ skel->progs.xact_commit, "transaction__commit" },
		{ skel->progs.xact_abort, "transaction__abort" },
	};
	size_t i;
	int ret;

	for (i = 0; i < sizeof(notes) / sizeof(notes[0]); i++) {
		ret = add_link(loader, bpf_program__attach_usdt(
				       notes[i].prog, -1, path, "postgresql",
				       notes[i].name, NULL));
		if (ret) {
			snprintf(err, err_len, "failed to attach to USDT "
				 "'postgresql:%s' in '%s': %s (a server built "
				 "without --enable-dtrace gives no transaction "
				 "outcomes)", notes[i].name, path,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* The client read path (bpf/wire.bpf.c says why secure_read). */
static int attach_wire(struct loader *loader, const char *path,
		       unsigned int layout, char *err, size_t err_len)
{
	struct pgvigil_bpf *skel = loader->skel;
	const struct probe probes[] = {
		{ skel->progs.wire_read_entry, "secure_read", false },
		{ skel->progs.wire_read_return, "secure_read", true },
	};

	return attach_probes(loader, path, layout, probes,
			     sizeof(probes) / sizeof(probes[0]), err, err_len);
}

static int attach_executable(struct loader *loader, const char *path,
			     unsigned int layout, char *err, size_t err_len)
{
	struct pgvigil_bpf *skel = loader->skel;
	/*
	 * standard_ProcessUtility, not ProcessUtility: the latter opens with
	 * a RIP-relative load of its hook, which x86 uprobes cannot emulate,
	 * so every hit was single-stepped out of line (a second trap); that
	 * was an eighth of all CPU time under TPC-B. Every hook passes the
	 * statement on to it, and one that does not runs nothing to report.
	 */
	const struct probe probes[] = {
		{ skel->progs.executor_start, "ExecutorStart", false },
		{ skel->progs.process_utility, "standard_ProcessUtility", false },
		{ skel->progs.truncate_guts, "ExecuteTruncateGuts", false },
		{ skel->progs.heap_drop, "heap_drop_with_catalog", false },
		{ skel->progs.rename_relation, "RenameRelationInternal", false },
		{ skel->progs.set_schema, "AlterRelationNamespaceInternal", false },
		{ skel->progs.alter_table, "AlterTable", false },
		{ skel->progs.sql_function_entry, "fmgr_sql", false },
		{ skel->progs.function_return, "fmgr_sql", true },
		{ skel->progs.subxact_rollback,
		  "RollbackAndReleaseCurrentSubTransaction", false },
	};
	int ret;

	ret = attach_probes(loader, path, layout, probes,
			    sizeof(probes) / sizeof(probes[0]), err, err_len);
	if (!ret)
		ret = attach_usdt(loader, path, err, err_len);
	if (!ret && loader->wire)
		ret = attach_wire(loader, path, layout, err, err_len);
	return ret;
}

static int attach_plpgsql(struct loader *loader, const char *path,
			  unsigned int layout, char *err, size_t err_len)
{
	struct pgvigil_bpf *skel = loader->skel;
	const struct probe probes[] = {
		{ skel->progs.plpgsql_function_entry, "plpgsql_exec_function",
		  false },
		{ skel->progs.function_return, "plpgsql_exec_function", true },
		{ skel->progs.plpgsql_trigger_entry, "plpgsql_exec_trigger",
		  false },
		{ skel->progs.function_return, "plpgsql_exec_trigger", true },
	};

	return attach_probes(loader, path, layout, probes,
			     sizeof(probes) / sizeof(probes[0]), err, err_len);
}

/*
 * plpgsql.so is loaded by backends on first use, not by the postmaster, so
 * it is found beside the executable as the server's root sees it:
 * <prefix>/bin/postgres -> <prefix>/lib/plpgsql.so (Debian, source builds)
 * or <prefix>/lib/postgresql/plpgsql.so.
 */
static int find_plpgsql(const struct pg_server *server, char *path,
			size_t len)
{
	const char *suffixes[] = { "/lib/plpgsql.so",
				   "/lib/postgresql/plpgsql.so" };
	char prefix[PATH_MAX];
	char *slash;
	size_t i;

	snprintf(prefix, sizeof(prefix), "%s", server->exe_target);
	for (i = 0; i < 2; i++) {
		slash = strrchr(prefix, '/');
		if (!slash)
			return -ENOENT;
		*slash = 0;
	}
	for (i = 0; i < 2; i++) {
		snprintf(path, len, "%s%s%s", server->root, prefix, suffixes[i]);
		if (!access(path, R_OK))
			return 0;
	}
	return -ENOENT;
}

static int set_layout(struct loader *loader, const struct pg_server *server,
		      const struct pglayout_version *version,
		      unsigned int *index, char *err, size_t err_len)
{
	struct elfsym_query globals[] = {
		{ .name = "MyProcPort" },
		{ .name = "application_name" },
	};
	struct pg_layout layout = *version->layout;
	int ret;

	ret = pglayout_check(&layout, err, err_len);
	if (ret)
		return ret;
	if (loader->n_layouts == PGV_MAX_LAYOUTS) {
		snprintf(err, err_len, "more than %d distinct server binaries",
			 PGV_MAX_LAYOUTS);
		return -ENOSPC;
	}
	ret = elfsym_resolve(server->exe, globals, 2);
	if (!ret && (!globals[0].vaddr || !globals[1].vaddr))
		ret = -ENOENT;
	if (ret) {
		snprintf(err, err_len, "cannot find 'MyProcPort' and "
			 "'application_name' in '%s': %s", server->exe,
			 strerror(-ret));
		return ret;
	}
	layout.sym_my_proc_port = globals[0].vaddr;
	layout.sym_application_name = globals[1].vaddr;
	*index = loader->n_layouts;
	ret = bpf_map_update_elem(bpf_map__fd(loader->skel->maps.layouts),
				  index, &layout, BPF_ANY);
	if (ret) {
		snprintf(err, err_len, "cannot set layout: %s", strerror(errno));
		return -errno;
	}
	loader->n_layouts++;
	return 0;
}

static int remember(struct loader *loader, dev_t dev, ino_t ino,
		    unsigned int layout)
{
	struct binary *binary;

	if (loader->n_binaries == MAX_BINARIES * 2)
		return -ENOSPC;
	binary = &loader->binaries[loader->n_binaries++];
	binary->dev = dev;
	binary->ino = ino;
	binary->layout = layout;
	return 0;
}

int loader_attach(struct loader *loader, const struct pg_server *server,
		  const struct pglayout_version *version, char *err,
		  size_t err_len)
{
	struct binary *exe = find_binary(loader, server->exe_dev,
					 server->exe_ino);
	char plpgsql[PATH_MAX + 128];
	unsigned int layout;
	struct stat st;
	int attached = 0, ret;

	if (exe) {
		layout = exe->layout;
	} else {
		ret = set_layout(loader, server, version, &layout, err, err_len);
		if (!ret)
			ret = attach_executable(loader, server->exe, layout, err,
						err_len);
		if (ret)
			return ret;
		remember(loader, server->exe_dev, server->exe_ino, layout);
		attached = 1;
	}
	if (find_plpgsql(server, plpgsql, sizeof(plpgsql))) {
		snprintf(err, err_len, "no plpgsql.so beside '%s': PL/pgSQL "
			 "function calls would not be seen", server->exe_target);
		return -ENOENT;
	}
	if (stat(plpgsql, &st))
		return -errno;
	if (find_binary(loader, st.st_dev, st.st_ino))
		return attached;
	ret = attach_plpgsql(loader, plpgsql, layout, err, err_len);
	if (ret)
		return ret;
	remember(loader, st.st_dev, st.st_ino, layout);
	return 1;
}

int loader_ignore_parent(struct loader *loader, uint32_t ppid, bool ignore)
{
	int fd = bpf_map__fd(loader->skel->maps.ignored_parents);
	uint8_t yes = 1;

	if (ignore) {
		if (bpf_map_update_elem(fd, &ppid, &yes, BPF_ANY))
			return -errno;
		/* the probes look the map up from now on */
		loader->skel->bss->pgv_ignoring = 1;
		return 0;
	}
	if (bpf_map_delete_elem(fd, &ppid) && errno != ENOENT)
		return -errno;
	return 0;
}

int loader_ringbuf_fd(const struct loader *loader)
{
	return bpf_map__fd(loader->skel->maps.events);
}

int loader_read_drops(const struct loader *loader,
		      uint64_t drops[PGV_DROP_CAUSES])
{
	uint64_t values[loader->ncpus];
	uint32_t cause;
	int cpu, fd = bpf_map__fd(loader->skel->maps.drops);

	for (cause = 0; cause < PGV_DROP_CAUSES; cause++) {
		drops[cause] = 0;
		if (bpf_map_lookup_elem(fd, &cause, values))
			return -errno;
		for (cpu = 0; cpu < loader->ncpus; cpu++)
			drops[cause] += values[cpu];
	}
	return 0;
}

size_t loader_probe_count(const struct loader *loader)
{
	return loader->n_links;
}

void loader_close(struct loader *loader)
{
	size_t i;

	if (!loader)
		return;
	for (i = loader->n_links; i > 0; i--)
		bpf_link__destroy(loader->links[i - 1]);
	pgvigil_bpf__destroy(loader->skel);
	free(loader);
}
