# `make fuzz`: the libFuzzer harness tests/fuzz/fuzz-qcow2-open.c, built
# with clang -fsanitize=fuzzer,address,undefined straight from block/*.c
# (not libcalfblock.a, which is built by $(CC) without instrumentation),
# run for FUZZ_SECONDS over a seed corpus of small images made by qemu-img.
# Needs clang with libFuzzer (Debian: clang); crashes land in fuzz-out/.
#   make fuzz FUZZ_SECONDS=600 FUZZ_JOBS=4
# Reproduce a crash: build/fuzz/fuzz-qcow2-open fuzz-out/crash-...
# or without clang: build/tests/fuzz-replay -v fuzz-out/crash-...

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
                -I. $(PKG_CFLAGS) -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
# -max_len fits a LUKS header region with the key material of one slot
# (aes-256-xts: 4 KiB + 256000 bytes).
# -close_fd_mask=3 silences what the block layer prints (check reports);
# sanitizer and crash reports still come through.
FUZZ_OPTS    ?= -max_len=262144 -timeout=60 -rss_limit_mb=2048 -close_fd_mask=3

$(FUZZ_DIR)/fuzz-qcow2-open: tests/fuzz/fuzz-qcow2-open.c $(BLOCK_SRCS) $(wildcard block/*.h)
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { \
	  echo "make fuzz: '$(FUZZ_CC)' not found: the fuzz harness needs clang with libFuzzer" \
	       "(Debian: apt-get install clang), or set FUZZ_CC" >&2; exit 1; }
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz-qcow2-open.c $(BLOCK_SRCS) $(PKG_LIBS) -lpthread -ldl

$(FUZZ_DIR)/corpus/.stamp: tests/fuzz/make-corpus.sh
	rm -rf $(FUZZ_DIR)/corpus
	tests/fuzz/make-corpus.sh $(FUZZ_DIR)/corpus
	@touch $@

fuzz-build: $(FUZZ_DIR)/fuzz-qcow2-open $(FUZZ_DIR)/corpus/.stamp

# New interesting inputs go to $(FUZZ_DIR)/corpus-new (kept between runs); with
# FUZZ_JOBS > 1 the job logs go to $(FUZZ_DIR)/fuzz-N.log; the harness keeps its
# scratch image under $(FUZZ_DIR)/tmp.
fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/corpus-new $(FUZZ_DIR)/tmp fuzz-out
	cd $(FUZZ_DIR) && TMPDIR=$(abspath $(FUZZ_DIR))/tmp ./fuzz-qcow2-open $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) \
	  $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	  -artifact_prefix=$(abspath fuzz-out)/ corpus-new corpus

.PHONY: fuzz fuzz-build
