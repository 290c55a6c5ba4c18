/*
 * The microbenchmark's catalog: user/catalog.h answered from fixed tables
 * (pgbench's), with no server. See catalog_fixed.c.
 */
#ifndef TOOLS_MICROBENCH_CATALOG_FIXED_H
#define TOOLS_MICROBENCH_CATALOG_FIXED_H

#include "catalog.h"

#define MICROBENCH_ACCOUNTS	16400
#define MICROBENCH_TELLERS	16401
#define MICROBENCH_BRANCHES	16402
#define MICROBENCH_HISTORY	16403

/*
 * Bind pgbench's balance columns (every TPC-B transaction then violates
 * the monetary invariant three times) or nothing. Returns 0 or -ENOMEM.
 */
int microbench_catalog_bind(struct catalog *catalog, bool bind_balances);

#endif /* TOOLS_MICROBENCH_CATALOG_FIXED_H */
