# `make fuzz`: the libFuzzer harness tests/fuzz/fuzz-qcow2-open.c, built
# with clang -fsanitize=fuzzer,address,undefined straight from block/*.c
# (not libcalfblock.a, which is built by $(CC) without instrumentation),
# run for FUZZ_SECONDS over a seed corpus of small images made by qemu-img.
# Needs clang with libFuzzer (Debian: clang); crashes land in fuzz-out/.
#   make fuzz FUZZ_SECONDS=600 FUZZ_JOBS=4
# Reproduce a crash: build/fuzz/fuzz-qcow2-open fuzz-out/crash-...
# or without clang: build/tests/fuzz-replay -v fuzz-out/crash-...
# `make fuzz` runs the device harnesses too (below), FUZZ_SECONDS each;
# one alone: make fuzz-dev-ide.  A device crash lands in
# fuzz-out/NAME-crash-...: build/tests/fuzz-NAME -v FILE replays it, and
# a copy in tests/fuzz/regress-NAME/ keeps tests/fuzz-devices.t on it.

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

# (the program itself is linked further down, with the device harnesses)

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

# ---- device harnesses ----
# tests/fuzz/fuzz-{fwcfg,vga,pci,ide,virtio}.c (virtio also as vrng and
# vnet) drive device models on the
# real bus against fake guest RAM (tests/fuzz/fuzz-dev.h).  Each is built
# twice: with clang and libFuzzer for `make fuzz` ($(FUZZ_DIR)/fuzz-NAME),
# and with $(CC) and tests/fuzz/replay-main.c for `make test`
# ($(BUILD)/tests/fuzz-NAME FILE|DIR..., replaying corpora; see
# tests/fuzz-devices.t).  The sources in DEVFUZZ_HOOKED are compiled for
# them with the calls DEVFUZZ_HOOK_<source> names renamed, so that a
# harness can wait for the devices' threads (tests/fuzz/fuzz-hooks.c); the
# sources are the VMM's, unchanged.
DEVFUZZ_NAMES  := fwcfg vga pci ide virtio vrng vnet vmstate
DEVFUZZ_HOOKED := devices/ide/ide.c devices/virtio/blk.c devices/virtio/rng.c \
                  devices/virtio/net.c
DEVFUZZ_HOOK_devices/ide/ide.c    := -Dbus_register_pio=fuzz_bus_register_pio
DEVFUZZ_HOOK_devices/virtio/blk.c := -Dread=fuzz_vblk_read -Dvirtq_unlock=fuzz_virtq_unlock \
                                     -Dvirtio_pci_create=fuzz_virtio_pci_create
DEVFUZZ_HOOK_devices/virtio/rng.c := $(DEVFUZZ_HOOK_devices/virtio/blk.c)
DEVFUZZ_HOOK_devices/virtio/net.c := $(DEVFUZZ_HOOK_devices/virtio/blk.c)
# fuzz-vrng and fuzz-vnet are fuzz-virtio.c built for virtio-rng
# (-DFZ_VIRTIO_RNG) and virtio-net (-DFZ_VIRTIO_NET)
$(OBJ)/tests/fuzz/fuzz-vrng.o: tests/fuzz/fuzz-virtio.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFZ_VIRTIO_RNG -MMD -MP -c $< -o $@
$(OBJ)/tests/fuzz/fuzz-vnet.o: tests/fuzz/fuzz-virtio.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFZ_VIRTIO_NET -MMD -MP -c $< -o $@
DEVFUZZ_SRCS  := $(filter-out $(DEVFUZZ_HOOKED),$(DEV_SRCS)) tests/fuzz/fuzz-hooks.c
DEVFUZZ_HDRS  := tests/fuzz/fuzz-dev.h tests/fuzz/fuzz-hooks.h \
                 $(wildcard devices/*.h devices/*/*.h)

# the replay programs, with the build's compiler and flags
# (the hooked objects first: the libraries' own ide.o and virtio/blk.o are
# then never pulled in)
DEVFUZZ_OBJS := $(OBJ)/tests/fuzz/fuzz-hooks.o \
                $(patsubst %.c,$(OBJ)/tests/fuzz/hooked/%.o,$(DEVFUZZ_HOOKED))
$(OBJ)/tests/fuzz/hooked/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEVFUZZ_HOOK_$*.c) -MMD -MP -c $< -o $@
DEVFUZZ_REPLAY := $(addprefix $(BUILD)/tests/fuzz-,$(DEVFUZZ_NAMES))
$(DEVFUZZ_REPLAY): $(BUILD)/tests/fuzz-%: $(OBJ)/tests/fuzz/fuzz-%.o \
                   $(OBJ)/tests/fuzz/replay-main.o $(DEVFUZZ_OBJS) $(LAYER_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(SLIRP_LIBS)
EXTRA_TEST += $(DEVFUZZ_REPLAY)

# the libFuzzer programs: the layers' libraries built again with every
# object instrumented ($(FUZZ_DIR)/libcalf*.a), each harness linked with
# them and libFuzzer's main
FUZZ_OBJ        := $(FUZZ_DIR)/obj
FUZZ_OBJ_CFLAGS := $(filter-out -fsanitize=fuzzer%,$(FUZZ_CFLAGS)) \
                   -fsanitize=fuzzer-no-link,address,undefined
$(FUZZ_OBJ)/hooked/%.o: %.c $(DEVFUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) $(DEVFUZZ_HOOK_$*.c) -c $< -o $@
$(FUZZ_OBJ)/tests/fuzz/fuzz-vrng.o: tests/fuzz/fuzz-virtio.c $(DEVFUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -DFZ_VIRTIO_RNG -c $< -o $@
$(FUZZ_OBJ)/tests/fuzz/fuzz-vnet.o: tests/fuzz/fuzz-virtio.c $(DEVFUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -DFZ_VIRTIO_NET -c $< -o $@
$(FUZZ_OBJ)/devices/net/slirp.o: FUZZ_OBJ_CFLAGS += $(SLIRP_CFLAGS)
$(FUZZ_OBJ)/%.o: %.c $(DEVFUZZ_HDRS) $(wildcard block/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -c $< -o $@
FUZZ_LIBS := $(FUZZ_DIR)/libcalfdevices.a $(FUZZ_DIR)/libcalfblock.a
$(FUZZ_DIR)/libcalfblock.a: $(patsubst %.c,$(FUZZ_OBJ)/%.o,$(BLOCK_SRCS))
$(FUZZ_DIR)/libcalfdevices.a: $(patsubst %.c,$(FUZZ_OBJ)/%.o,$(filter devices/%,$(DEVFUZZ_SRCS)))
$(FUZZ_LIBS):
	@rm -f $@
	ar rcs $@ $^
need-fuzz-cc:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { \
	  echo "make fuzz: '$(FUZZ_CC)' not found: the fuzz harnesses need clang with libFuzzer" \
	       "(Debian: apt-get install clang), or set FUZZ_CC" >&2; exit 1; }
.PHONY: need-fuzz-cc
$(FUZZ_DIR)/fuzz-qcow2-open: $(FUZZ_OBJ)/tests/fuzz/fuzz-qcow2-open.o $(FUZZ_DIR)/libcalfblock.a \
                             | need-fuzz-cc
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread -ldl
# (the hooked objects before the libraries, as for the replay programs)
DEVFUZZ_FUZZ_OBJS := $(FUZZ_OBJ)/tests/fuzz/fuzz-hooks.o \
                     $(patsubst %.c,$(FUZZ_OBJ)/hooked/%.o,$(DEVFUZZ_HOOKED))
DEVFUZZ_FUZZERS := $(addprefix $(FUZZ_DIR)/fuzz-,$(DEVFUZZ_NAMES))
$(DEVFUZZ_FUZZERS): $(FUZZ_DIR)/fuzz-%: $(FUZZ_OBJ)/tests/fuzz/fuzz-%.o $(DEVFUZZ_FUZZ_OBJS) \
                    $(FUZZ_LIBS) | need-fuzz-cc
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $^ $(PKG_LIBS) $(SLIRP_LIBS) -lpthread -lm -ldl

fuzz-build: $(DEVFUZZ_FUZZERS)

# One run per harness, FUZZ_SECONDS each, from its committed corpus
# (tests/fuzz/corpus-NAME, read only) into $(FUZZ_DIR)/corpus-NAME.
# DEVFUZZ_OPTS: small inputs (a program of a few hundred operations);
# every input is a fresh machine, so a slow one is a finding.
DEVFUZZ_OPTS ?= -max_len=4096 -timeout=30 -rss_limit_mb=2048 -close_fd_mask=2
DEVFUZZ_RUNS := $(addprefix fuzz-dev-,$(DEVFUZZ_NAMES))
$(DEVFUZZ_RUNS): fuzz-dev-%: $(FUZZ_DIR)/fuzz-%
	@mkdir -p $(FUZZ_DIR)/corpus-$* $(FUZZ_DIR)/tmp fuzz-out
	cd $(FUZZ_DIR) && TMPDIR=$(abspath $(FUZZ_DIR))/tmp ./fuzz-$* $(DEVFUZZ_OPTS) \
	  -max_total_time=$(FUZZ_SECONDS) \
	  $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	  -artifact_prefix=$(abspath fuzz-out)/$*- corpus-$* $(abspath tests/fuzz/corpus-$*)
fuzz: $(DEVFUZZ_RUNS)
.PHONY: $(DEVFUZZ_RUNS)

# The qcow2 harness without libFuzzer, for `make test` (tests/fuzz-smoke.t):
# tests/unit/fuzz-replay.c drives LLVMFuzzerTestOneInput() of the harness.
$(BUILD)/tests/fuzz-replay: $(OBJ)/tests/unit/fuzz-replay.o $(OBJ)/tests/fuzz/fuzz-qcow2-open.o \
                           $(LAYER_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# ---- the NBD server harness ----
# tests/fuzz/fuzz-nbd.c feeds a client's bytes to nbd_serve()
# (block/nbd-server.c): $(FUZZ_DIR)/fuzz-nbd under libFuzzer for `make
# fuzz` (one alone: make fuzz-nbd), $(BUILD)/tests/fuzz-nbd with
# tests/fuzz/replay-main.c for `make test` (tests/fuzz-nbd.t replays the
# corpus tests/fuzz/corpus-nbd, made by tests/fuzz/make-nbd-seeds.py).
$(BUILD)/tests/fuzz-nbd: $(OBJ)/tests/fuzz/fuzz-nbd.o $(OBJ)/tests/fuzz/replay-main.o \
                         $(BUILD)/libcalfblock.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
EXTRA_TEST += $(BUILD)/tests/fuzz-nbd
$(FUZZ_DIR)/fuzz-nbd: $(FUZZ_OBJ)/tests/fuzz/fuzz-nbd.o $(FUZZ_DIR)/libcalfblock.a | need-fuzz-cc
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread -ldl
fuzz-build: $(FUZZ_DIR)/fuzz-nbd
NBDFUZZ_OPTS ?= -max_len=200000 -timeout=30 -rss_limit_mb=2048 -close_fd_mask=2
fuzz-nbd: $(FUZZ_DIR)/fuzz-nbd
	@mkdir -p $(FUZZ_DIR)/corpus-nbd $(FUZZ_DIR)/tmp fuzz-out
	cd $(FUZZ_DIR) && TMPDIR=$(abspath $(FUZZ_DIR))/tmp ./fuzz-nbd $(NBDFUZZ_OPTS) \
	  -max_total_time=$(FUZZ_SECONDS) \
	  $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	  -artifact_prefix=$(abspath fuzz-out)/nbd- corpus-nbd $(abspath tests/fuzz/corpus-nbd)
fuzz: fuzz-nbd
.PHONY: fuzz-nbd

# the client side: tests/fuzz/fuzz-nbd-client.c plays a server whose
# bytes are the input to calf's nbd driver (corpus tests/fuzz/corpus-nbd-client)
$(BUILD)/tests/fuzz-nbd-client: $(OBJ)/tests/fuzz/fuzz-nbd-client.o $(OBJ)/tests/fuzz/replay-main.o \
                                $(BUILD)/libcalfblock.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
EXTRA_TEST += $(BUILD)/tests/fuzz-nbd-client
$(FUZZ_DIR)/fuzz-nbd-client: $(FUZZ_OBJ)/tests/fuzz/fuzz-nbd-client.o $(FUZZ_DIR)/libcalfblock.a \
                             | need-fuzz-cc
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread -ldl
fuzz-build: $(FUZZ_DIR)/fuzz-nbd-client
fuzz-nbd-client: $(FUZZ_DIR)/fuzz-nbd-client
	@mkdir -p $(FUZZ_DIR)/corpus-nbd-client $(FUZZ_DIR)/tmp fuzz-out
	cd $(FUZZ_DIR) && TMPDIR=$(abspath $(FUZZ_DIR))/tmp ./fuzz-nbd-client $(NBDFUZZ_OPTS) \
	  -max_total_time=$(FUZZ_SECONDS) \
	  $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	  -artifact_prefix=$(abspath fuzz-out)/nbd-client- corpus-nbd-client \
	  $(abspath tests/fuzz/corpus-nbd-client)
fuzz: fuzz-nbd-client
.PHONY: fuzz-nbd-client
# calf-nbd -L's client: tests/fuzz/fuzz-nbd-list.c plays a server whose
# bytes are the input to nbd_list_exports() (block/nbd-list.c; corpus
# tests/fuzz/corpus-nbd-list from tests/fuzz/make-nbd-list-seeds.py)
$(BUILD)/tests/fuzz-nbd-list: $(OBJ)/tests/fuzz/fuzz-nbd-list.o $(OBJ)/tests/fuzz/replay-main.o \
                              $(BUILD)/libcalfblock.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
EXTRA_TEST += $(BUILD)/tests/fuzz-nbd-list
$(FUZZ_DIR)/fuzz-nbd-list: $(FUZZ_OBJ)/tests/fuzz/fuzz-nbd-list.o $(FUZZ_DIR)/libcalfblock.a \
                           | need-fuzz-cc
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread -ldl
fuzz-build: $(FUZZ_DIR)/fuzz-nbd-list
fuzz-nbd-list: $(FUZZ_DIR)/fuzz-nbd-list
	@mkdir -p $(FUZZ_DIR)/corpus-nbd-list $(FUZZ_DIR)/tmp fuzz-out
	cd $(FUZZ_DIR) && TMPDIR=$(abspath $(FUZZ_DIR))/tmp ./fuzz-nbd-list $(NBDFUZZ_OPTS) \
	  -max_total_time=$(FUZZ_SECONDS) \
	  $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	  -artifact_prefix=$(abspath fuzz-out)/nbd-list- corpus-nbd-list \
	  $(abspath tests/fuzz/corpus-nbd-list)
fuzz: fuzz-nbd-list
.PHONY: fuzz-nbd-list
# ---- the QMP JSON reader ----
# tests/fuzz/fuzz-qmp-json.c on vmm/qmp-json.c alone (no VM): `make fuzz`
# runs it from tests/fuzz/corpus-qmp-json; the replay program
# $(BUILD)/tests/fuzz-qmp-json keeps tests/fuzz-qmp-json.t on the corpus
# and on tests/fuzz/regress-qmp-json.
QMPFUZZ_OPTS ?= -max_len=65536 -timeout=30 -rss_limit_mb=2048 -close_fd_mask=2
$(BUILD)/tests/fuzz-qmp-json: $(OBJ)/tests/fuzz/fuzz-qmp-json.o $(OBJ)/tests/fuzz/replay-main.o \
                              $(OBJ)/vmm/qmp-json.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
EXTRA_TEST += $(BUILD)/tests/fuzz-qmp-json
$(FUZZ_OBJ)/vmm/qmp-json.o: vmm/qmp-json.c vmm/qmp-json.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -c $< -o $@
$(FUZZ_DIR)/fuzz-qmp-json: $(FUZZ_OBJ)/tests/fuzz/fuzz-qmp-json.o $(FUZZ_OBJ)/vmm/qmp-json.o \
                           | need-fuzz-cc
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $^ -lm
fuzz-build: $(FUZZ_DIR)/fuzz-qmp-json
fuzz-qmp-json: $(FUZZ_DIR)/fuzz-qmp-json
	@mkdir -p $(FUZZ_DIR)/corpus-qmp-json fuzz-out
	cd $(FUZZ_DIR) && ./fuzz-qmp-json $(QMPFUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) \
	  $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) \
	  -artifact_prefix=$(abspath fuzz-out)/qmp-json- corpus-qmp-json \
	  $(abspath tests/fuzz/corpus-qmp-json)
fuzz: fuzz-qmp-json
.PHONY: fuzz-qmp-json
