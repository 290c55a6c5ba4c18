/*
 * Symbol lookup in an ELF file (an executable or shared object): link-time
 * address and file offset of a named function or variable, from .symtab or
 * .dynsym, with libelf.
 */
#ifndef USER_ELFSYM_H
#define USER_ELFSYM_H

#include <stddef.h>
#include <stdint.h>

struct elfsym_query {
	const char *name;
	uint64_t vaddr;		/* out: st_value; 0 if not found */
	uint64_t offset;	/* out: file offset of vaddr; 0 if not found */
};

/*
 * Resolve every query in 'queries' in the ELF file at 'path'. Unfound
 * symbols are left at 0. Returns 0, or a negative errno if the file cannot
 * be read as ELF.
 */
int elfsym_resolve(const char *path, struct elfsym_query *queries,
		   size_t count);

#endif /* USER_ELFSYM_H */
