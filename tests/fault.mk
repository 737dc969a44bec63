# blk-fault injects I/O errors by wrapping the libc calls the block layer
# makes on the image file (tests/unit/blk-fault.c).
$(BUILD)/tests/blk-fault: LDFLAGS += -Wl,--wrap=pread64,--wrap=pwrite64,--wrap=pwritev64,--wrap=fdatasync
