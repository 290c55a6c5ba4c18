/*
 * ELF symbol lookup with libelf. A probe is attached at a file offset, and
 * a global is read at its link-time address plus the load bias, so both are
 * returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <string.h>
#include <unistd.h>

#include "elfsym.h"

static void match_symbols(Elf *elf, Elf_Scn *scn, GElf_Shdr *shdr,
			  struct elfsym_query *queries, size_t count)
{
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t n, i, q;
	GElf_Sym sym;

	if (!data || !shdr->sh_entsize)
		return;
	n = shdr->sh_size / shdr->sh_entsize;
	for (i = 0; i < n; i++) {
		const char *name;

		if (!gelf_getsym(data, i, &sym) || !sym.st_value)
			continue;
		name = elf_strptr(elf, shdr->sh_link, sym.st_name);
		if (!name)
			continue;
		for (q = 0; q < count; q++)
			if (!queries[q].vaddr && !strcmp(name, queries[q].name))
				queries[q].vaddr = sym.st_value;
	}
}

static uint64_t vaddr_to_offset(Elf *elf, uint64_t vaddr)
{
	size_t phnum, i;
	GElf_Phdr phdr;

	if (elf_getphdrnum(elf, &phnum))
		return 0;
	for (i = 0; i < phnum; i++) {
		if (!gelf_getphdr(elf, i, &phdr) || phdr.p_type != PT_LOAD)
			continue;
		if (vaddr >= phdr.p_vaddr && vaddr < phdr.p_vaddr + phdr.p_memsz)
			return vaddr - phdr.p_vaddr + phdr.p_offset;
	}
	return 0;
}

int elfsym_resolve(const char *path, struct elfsym_query *queries,
		   size_t count)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr shdr;
	size_t q;
	Elf *elf;
	int fd;

	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	elf = elf_begin(fd, ELF_C_READ, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		if (elf)
			elf_end(elf);
		close(fd);
		return -ENOEXEC;
	}
	for (q = 0; q < count; q++)
		queries[q].vaddr = queries[q].offset = 0;
	while ((scn = elf_nextscn(elf, scn))) {
		if (!gelf_getshdr(scn, &shdr))
			continue;
		if (shdr.sh_type == SHT_SYMTAB || shdr.sh_type == SHT_DYNSYM)
			match_symbols(elf, scn, &shdr, queries, count);
	}
	for (q = 0; q < count; q++)
		if (queries[q].vaddr)
			queries[q].offset = vaddr_to_offset(elf, queries[q].vaddr);
	elf_end(elf);
	close(fd);
	return 0;
}
