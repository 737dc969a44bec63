# blk-fault injects I/O errors by wrapping the libc calls the block layer
# makes on the image file (tests/unit/blk-fault.c).  "private": the
# library it links must not inherit the flag, or the flags stamp would
# rebuild everything.
$(BUILD)/tests/blk-fault: private LDFLAGS += -Wl,--wrap=pread64,--wrap=pwrite64,--wrap=pwritev64,--wrap=fdatasync
$(BUILD)/tests/luks-fault: private LDFLAGS += -Wl,--wrap=pwrite64,--wrap=pwritev64,--wrap=fdatasync
# blk-race holds chosen libc calls of chosen threads (tests/unit/blk-race.c).
$(BUILD)/tests/blk-race: private LDFLAGS += -Wl,--wrap=pread64,--wrap=pwrite64,--wrap=pwritev64,--wrap=fallocate64,--wrap=ftruncate64,--wrap=fstat64
# blk-syncfail fails one fdatasync (tests/unit/blk-syncfail.c).
$(BUILD)/tests/blk-syncfail: private LDFLAGS += -Wl,--wrap=fdatasync
# blk-vfd holds a thread before a virtual fd's lock (tests/unit/blk-vfd.c).
$(BUILD)/tests/blk-vfd: private LDFLAGS += -Wl,--wrap=pthread_rwlock_rdlock
# nbd-evil holds the nbd driver's reader thread inside a read's data
# (tests/unit/nbd-evil.c).
$(BUILD)/tests/nbd-evil: private LDFLAGS += -Wl,--wrap=recv
# nbd-races holds the thread that starts the nbd driver's reader thread
# (tests/unit/nbd-races.c).
$(BUILD)/tests/nbd-races: private LDFLAGS += -Wl,--wrap=pthread_create
