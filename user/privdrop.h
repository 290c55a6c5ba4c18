/*
 * Dropping privileges once the probes are attached. 'pgvigil run' starts
 * with CAP_BPF, CAP_PERFMON (load programs, attach uprobes), CAP_SYS_RESOURCE
 * (memlock on older kernels) and CAP_SYS_PTRACE / CAP_DAC_READ_SEARCH (open
 * /proc/PID/exe and map_files of a postmaster owned by 'postgres'). None of
 * them is needed to read the ring buffer or the maps through the file
 * descriptors already open, to talk to the server over libpq, or to serve
 * HTTP on a port above 1024. So after attaching, the daemon drops them all,
 * for good: a compromise of the HTTP or JSON code then yields an
 * unprivileged process.
 *
 * The cost: a postmaster started after the drop cannot be attached to
 * until pgvigil restarts (the unit restarts it; the feed resumes by id).
 * Single call from the main thread, before the HTTP server and the other
 * threads start (capabilities are per thread on Linux).
 */
#ifndef USER_PRIVDROP_H
#define USER_PRIVDROP_H

#include <stddef.h>

/*
 * Empty the bounding set, switch to 'user' (its uid, gid and no
 * supplementary groups) when not NULL, clear the permitted, effective,
 * inheritable and ambient sets, and set no_new_privs so no exec can
 * regain anything. Files already open stay usable: open the journal
 * first, and give 'user' write access to its directory for rotation.
 * Returns 0 or a negative errno with a message in err.
 */
int privdrop_after_attach(const char *user, char *err, size_t err_len);

#endif /* USER_PRIVDROP_H */
