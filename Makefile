# calf — one build for the VMM (build/calf) and the image tools
# (build/calf-img, build/calf-io).  `make test` runs every test under prove,
# `make run` boots the default guest.  Missing Debian packages are installed
# by scripts/setup-deps.sh before anything is compiled.

CC      ?= gcc
BUILD   ?= build
OBJ     := $(BUILD)/obj
PKGS    := zlib libzstd libcrypto
SANITIZE ?=

ifeq ($(filter clean distclean,$(MAKECMDGOALS)),)
SETUP_KIND := build
ifneq ($(filter test check,$(MAKECMDGOALS)),)
SETUP_KIND := test
endif
ifneq ($(filter run run-linux,$(MAKECMDGOALS)),)
SETUP_KIND := linux
endif
ifneq ($(filter bench,$(MAKECMDGOALS)),)
SETUP_KIND := bench
endif
ifneq ($(filter test-slow test-slow-guests soak test-tsan test-iotests,$(MAKECMDGOALS)),)
SETUP_KIND := test
endif
$(shell scripts/setup-deps.sh $(SETUP_KIND) >&2)
ifneq ($(.SHELLSTATUS),0)
$(error package setup failed; see the message above)
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
# libcrypto's headers only: block/ossl.c loads the library when an
# encrypted image first needs it
PKG_LIBS   := $(shell pkg-config --libs $(filter-out libcrypto,$(PKGS)))
# SDL2 (calf run --display sdl) is optional: without its headers the build
# goes on and --display sdl says so; the library is dlopened at run time.
SDL_LIBS   := $(shell pkg-config --libs sdl2 2>/dev/null)
SDL_CFLAGS := $(if $(SDL_LIBS),$(shell pkg-config --cflags sdl2) -DCALF_HAVE_SDL2)
# libslirp (--net user, devices/net/slirp.c): linked only where the
# devices are (calf, the device tests and fuzzers), not the image tools.
SLIRP_CFLAGS := $(shell pkg-config --cflags slirp)
SLIRP_LIBS   := $(shell pkg-config --libs slirp)
endif

CFLAGS  := -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE \
           -D_FILE_OFFSET_BITS=64 -I. $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(EXTRA_LDFLAGS)
LIBS    := $(PKG_LIBS) -lpthread -lm -ldl
ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
# ThreadSanitizer (`make test-tsan`): the same code, every data race a
# report that fails the test that ran it
# (the fences that order guest-visible virtqueue updates are invisible to
# it: -Wno-tsan, as it cannot see the guest either)
ifeq ($(SANITIZE),thread)
CFLAGS  += -fsanitize=thread -fno-omit-frame-pointer -Wno-tsan
LDFLAGS += -fsanitize=thread
endif

BLOCK_SRCS := $(sort $(wildcard block/*.c))
IMG_SRCS   := $(sort $(wildcard block/img/*.c))
IO_SRCS    := $(sort $(wildcard block/io/*.c))
NBD_SRCS   := $(sort $(wildcard block/nbd/*.c))
DEV_SRCS   := $(sort $(wildcard devices/*.c devices/*/*.c))
VMM_SRCS   := $(sort $(wildcard vmm/*.c))
UNIT_SRCS  := $(sort $(wildcard tests/unit/*.c))

obj = $(patsubst %.c,$(OBJ)/%.o,$(1))
BLOCK_OBJS := $(call obj,$(BLOCK_SRCS))
DEV_OBJS   := $(call obj,$(DEV_SRCS))
# The layers as libraries, linked in this order: vmm -> devices -> block.
LAYER_LIBS := $(BUILD)/libcalfdevices.a $(BUILD)/libcalfblock.a

PROGS := $(BUILD)/calf-img $(BUILD)/calf-io $(BUILD)/calf-nbd
ifneq ($(VMM_SRCS),)
PROGS += $(BUILD)/calf
endif
UNIT_PROGS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

# Things the fragments below add to what `make` and `make test` build.
EXTRA_ALL  :=
EXTRA_TEST :=

all: $(PROGS) extra-all

# Rebuild everything when the flags change (e.g. SANITIZE=1).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@

$(OBJ)/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libcalfblock.a: $(BLOCK_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libcalfdevices.a: $(DEV_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/calf-img: $(call obj,$(IMG_SRCS)) $(BUILD)/libcalfblock.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/calf-io: $(call obj,$(IO_SRCS)) $(OBJ)/block/img/object.o $(BUILD)/libcalfblock.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/calf-nbd: $(call obj,$(NBD_SRCS)) $(OBJ)/block/img/object.o $(BUILD)/libcalfblock.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(OBJ)/vmm/display-sdl.o: CFLAGS += $(SDL_CFLAGS)

$(OBJ)/devices/net/slirp.o: CFLAGS += $(SLIRP_CFLAGS)

$(BUILD)/calf: $(call obj,$(VMM_SRCS)) $(LAYER_LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(SLIRP_LIBS)

# Unit tests link the layers' libraries (only what they use comes in).
$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(LAYER_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(SLIRP_LIBS)

# Fragments owned by their folders (firmware images, guest tests, fuzzing).
-include $(sort $(wildcard */*.mk))

extra-all: $(EXTRA_ALL)

# The Linux guest tests come first and last: linux.t builds the kernel
# (minutes, once) while the other prove job works through the rest, and
# linux-virtio.t, which needs that kernel too, starts when it is there.
LINUX_TESTS  := guest-tests/linux.t guest-tests/linux-virtio.t
TEST_SCRIPTS = guest-tests/linux.t \
    $(filter-out $(LINUX_TESTS),$(sort $(wildcard tests/*.t guest-tests/*.t))) \
    guest-tests/linux-virtio.t
PROVE_JOBS ?= 2

# A sanitizer report must never pass for a guest's own status 1 (the
# debug-exit "pass" code): sanitizers exit with 86.
SAN_ENV := ASAN_OPTIONS=exitcode=86 UBSAN_OPTIONS=halt_on_error=1:exitcode=86:print_stacktrace=1

test-progs: all $(UNIT_PROGS) $(EXTRA_TEST)

test: test-progs
	$(SAN_ENV) CALF_BUILD=$(abspath $(BUILD)) prove -j$(PROVE_JOBS) $(TEST_SCRIPTS)

# The tests whose code runs on several threads at once (the block layer's
# stress, race and thread tests; the VMM's I/O threads behind virtio-blk
# and IDE, and both at once in disk-stress; calf-nbd's connection threads
# and the nbd driver's reader thread), built with ThreadSanitizer in
# build-tsan.  A report makes the program exit with 66, which fails its
# test.
TSAN_TESTS := tests/blk-stress.t tests/blk-race.t tests/blk-vfd.t tests/qcow2-threads.t \
              tests/img-bench.t \
              guest-tests/virtio-blk.t guest-tests/ide.t guest-tests/disk-stress.t \
              guest-tests/hostile.t tests/pci-teardown.t \
              tests/nbd-stress.t tests/nbd-hostile.t tests/nbd-server.t tests/nbd-client.t \
              tests/nbd-races.t \
              tests/nbd-reconnect.t tests/nbd-qcow2.t tests/nbd-options.t \
              guest-tests/nbd.t guest-tests/qmp-stress.t guest-tests/qmp-hostile.t \
              tests/virtio-rng.t tests/virtio-net.t guest-tests/virtio-net.t tests/disk-dirty.t \
              guest-tests/snapshot.t tests/disk-stats.t guest-tests/qmp-block.t \
              guest-tests/qmp-snapstress.t \
              guest-tests/qmp-savevm.t
test-tsan:
	$(MAKE) BUILD=build-tsan SANITIZE=thread test-progs
	TSAN_OPTIONS="exitcode=66 halt_on_error=1 second_deadlock_stack=1" \
	    CALF_BUILD=$(abspath build-tsan) prove -j$(PROVE_JOBS) $(TSAN_TESTS)

# The block stress soak: every layout of tests/blk-stress.t SOAK_RUNS
# times with new seeds (24 layouts x 50 = 1200 runs), part of test-slow.
SOAK_RUNS ?= 50
soak: test-progs
	BLK_STRESS_RUNS=$(SOAK_RUNS) BLK_STRESS_OPS=$${BLK_STRESS_OPS:-400} \
	    CALF_BUILD=$(abspath $(BUILD)) prove -v tests/blk-stress.t
test-slow: soak test-iotests test-slow-guests

# Guest tests too slow for make test (Linux SMP and Linux under other
# disks, snapshots of Linux and GRUB, GRUB over NBD): minutes each here.
test-slow-guests: test-progs
	$(SAN_ENV) CALF_BUILD=$(abspath $(BUILD)) prove -j$(PROVE_JOBS) \
	    $(sort $(wildcard guest-tests/slow/*.t))

# QEMU 7.2's own iotests (the bash ones for qcow2 that start no QEMU),
# with calf-img and calf-io linked in as qemu-img and qemu-io, beside the
# real qemu-img on the same list; fetches the suite the first time.
test-iotests: all
	CALF_BUILD=$(abspath $(BUILD)) scripts/iotests.sh

bench: all
	CALF_BUILD=$(abspath $(BUILD)) bench/run

clean:
	rm -rf $(BUILD)

FORCE:
# Keep intermediate objects (unit-test .o files) so nothing rebuilds twice.
.SECONDARY:
.PHONY: all extra-all test test-progs test-tsan soak test-iotests test-slow test-slow-guests bench clean run FORCE

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
