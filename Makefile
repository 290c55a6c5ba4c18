# pgvigil — make builds everything; make test runs unit and integration
# tests; make demo runs the live demo; make deps installs what a fresh
# Debian 12 machine lacks.

CC ?= cc
CLANG ?= clang
BPFTOOL ?= bpftool
ARCH := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
PG_MAJOR ?= 15

BUILD := build
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-missing-field-initializers \
	  -Iinclude -I$(BUILD) -Iuser -MMD -MP -D_GNU_SOURCE \
	  -I/usr/include/postgresql -DPGV_SOURCE_DIR='"$(CURDIR)"'
LDLIBS := -lbpf -lelf -lz -lpq -lpg_query -lyaml -ljson-c -lssl -lcrypto \
	  -lmicrohttpd -lgnutls -lpthread
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -D__BPF__ \
	      -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	      -Iinclude -Ivmlinux/$(ARCH) -I/usr/include/$(shell uname -m)-linux-gnu -MMD -MP

BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.o,$(BPF_SRCS))
USER_SRCS := $(wildcard user/*.c)
USER_OBJS := $(patsubst user/%.c,$(BUILD)/user/%.o,$(USER_SRCS))
LIB_OBJS := $(filter-out $(BUILD)/user/main.o,$(USER_OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

DEPS := clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libssl-dev \
	libcmocka-dev libpq-dev libpg-query-dev libyaml-dev libjson-c-dev \
	libmicrohttpd-dev libgnutls28-dev libkrb5-dev libprotobuf-c-dev postgresql-15 postgresql-contrib \
	postgresql-server-dev-15 postgresql-15-pgaudit prometheus jq \
	make gcc pkg-config

.PHONY: all deps test unit integration demo clean bench bench-toggle bench-verify bench-wire fuzz \
	microbench

all: pgvigil

$(BUILD)/bpf/%.o: bpf/%.bpf.c | $(BUILD)/bpf
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/pgvigil.bpf.o: $(BPF_OBJS)
	$(BPFTOOL) gen object $@ $^

$(BUILD)/pgvigil.skel.h: $(BUILD)/pgvigil.bpf.o
	$(BPFTOOL) gen skeleton $< name pgvigil_bpf > $@

$(BUILD)/user/%.o: user/%.c | $(BUILD)/user $(BUILD)/pgvigil.skel.h
	$(CC) $(CFLAGS) -c $< -o $@

pgvigil: $(USER_OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB_OBJS) $(LDLIBS) -lcmocka

$(BUILD)/bpf $(BUILD)/user $(BUILD)/tests:
	mkdir -p $@

deps:
	tools/install-deps $(DEPS)

unit: pgvigil $(UNIT_BINS)
	tests/run-unit $(UNIT_BINS)

integration: pgvigil
	tests/integration/run

test: pgvigil unit fuzz-replay
	tests/integration/run

demo: deps
	$(MAKE) pgvigil
	tools/demo

bench: pgvigil $(BUILD)/pgv-microbench
	$(BUILD)/pgv-microbench
	tools/bench

# The user-space path alone, on synthetic records (tools/microbench/): the
# monitor and what it calls, with a fixed catalog instead of catalog.o.
MICROBENCH_OBJS := $(filter-out $(BUILD)/user/catalog.o $(BUILD)/user/main.o \
		   $(BUILD)/user/daemon.o $(BUILD)/user/demo.o,$(LIB_OBJS))

$(BUILD)/pgv-microbench: tools/microbench/microbench.c \
			 tools/microbench/catalog_fixed.c $(MICROBENCH_OBJS)
	$(CC) $(CFLAGS) -Itools/microbench -o $@ $(filter %.c %.o,$^) $(LDLIBS)

microbench: $(BUILD)/pgv-microbench
	$(BUILD)/pgv-microbench

# not part of 'make test': builds a 1,000,000-event ledger (minutes)
bench-toggle: pgvigil
	tools/bench-toggle

bench-verify: pgvigil
	tools/bench-verify

bench-wire: pgvigil
	tools/bench-wire

clean:
	rm -rf $(BUILD) pgvigil

# Fuzzing: tests/fuzz/fuzz_<module>.c is a libFuzzer target for
# user/<module>.c, built with clang's sanitizers apart from the main build.
# 'make test' replays its committed corpus tests/fuzz/corpus/<module>/;
# 'make fuzz' explores for FUZZ_TIME seconds, keeping new inputs under
# build/ (copy the worth-keeping ones into the corpus by hand).
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_CFLAGS := -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined \
	       -Wall -Wextra -Werror -Wno-missing-field-initializers \
	       -Iinclude -Iuser -Itests/fuzz -D_GNU_SOURCE
FUZZ_LIBS := -lz -ljson-c -lssl -lcrypto
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))

.PHONY: fuzz-replay fuzz-corpus

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c user/%.c user/%.h \
		      $(wildcard tests/fuzz/*.h) | $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< user/$*.c $(FUZZ_LIBS)

$(BUILD)/fuzz:
	mkdir -p $@

fuzz-replay: $(FUZZ_BINS)
	@for bin in $(FUZZ_BINS); do \
		corpus=tests/fuzz/corpus/$${bin##*/fuzz_}; \
		$$bin -runs=0 $$corpus 2>&1 | tail -n 1 || exit 1; \
	done

fuzz: $(FUZZ_BINS)
	@for bin in $(FUZZ_BINS); do \
		name=$${bin##*/fuzz_}; mkdir -p $(BUILD)/fuzz/found-$$name; \
		$$bin -max_total_time=$(FUZZ_TIME) -max_len=65536 \
			$(BUILD)/fuzz/found-$$name tests/fuzz/corpus/$$name \
			|| exit 1; \
	done

# Rewrites the dump reader's seed corpus (after a format change).
fuzz-corpus: $(LIB_OBJS) | $(BUILD)/fuzz
	$(CC) $(CFLAGS) -Itests/fuzz -o $(BUILD)/fuzz/make_corpus \
		tests/fuzz/make_corpus.c $(LIB_OBJS) $(LDLIBS)
	rm -rf $(BUILD)/fuzz/seed && mkdir -p $(BUILD)/fuzz/seed
	$(BUILD)/fuzz/make_corpus $(BUILD)/fuzz/seed
	cp $$(ls $(BUILD)/fuzz/seed/*.pgvd | head -n 1) \
		tests/fuzz/corpus/dumpfile/masked.pgvd
	cp $$(ls $(BUILD)/fuzz/seed/*.pgvd | tail -n 1) \
		tests/fuzz/corpus/dumpfile/encrypted.pgvd

-include $(wildcard $(BUILD)/bpf/*.d $(BUILD)/user/*.d $(BUILD)/tests/*.d)
