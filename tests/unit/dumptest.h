/*
 * Helpers shared by the tests of the flight recorder and the dump files:
 * a scratch dump directory removed after each test, and a stand-in masker.
 * Header-only: each test program is one file.
 */
#ifndef TESTS_UNIT_DUMPTEST_H
#define TESTS_UNIT_DUMPTEST_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

#define DUMPTEST_UNUSED __attribute__((unused))

/* The test's dump directory, made by the test itself. */
static char dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* cmocka teardown: the test's dump directory and everything in it. */
static DUMPTEST_UNUSED int remove_dir(void **state)
{
	(void)state;
	if (dir[0])
		nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	dir[0] = 0;
	return 0;
}

/* Stands in for the statement masker: every digit becomes '?'. */
static DUMPTEST_UNUSED const char *mask_digits(const char *sql, char *buf,
					       size_t len)
{
	size_t i;

	for (i = 0; sql[i] && i + 1 < len; i++)
		buf[i] = sql[i] >= '0' && sql[i] <= '9' ? '?' : sql[i];
	buf[i] = 0;
	return buf;
}

#endif /* TESTS_UNIT_DUMPTEST_H */
