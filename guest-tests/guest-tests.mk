# The Linux guest: a small kernel built once from Debian's linux-source-6.1
# (guest-tests/linux/kernel.config) and a busybox initramfs.  `make test`
# builds the kernel from guest-tests/linux.t (while the other tests run)
# and boots it there and in linux-virtio.t; `make test-slow` adds the
# longer cases of guest-tests/slow/: ata_piix, the legacy virtio driver
# under acpi=off, and Debian's stock kernel.
LINUX_DIR := $(BUILD)/linux
LINUX_KERNEL := $(LINUX_DIR)/vmlinux
LINUX_INITRD := $(LINUX_DIR)/initramfs.cpio

# build-kernel.sh knows when the kernel is current (and keeps a cache).
$(LINUX_KERNEL): FORCE
	guest-tests/linux/build-kernel.sh $(LINUX_DIR)

$(LINUX_INITRD): guest-tests/linux/make-initramfs.sh
	@mkdir -p $(dir $@)
	guest-tests/linux/make-initramfs.sh $@

linux-guest: $(LINUX_KERNEL) $(LINUX_INITRD)

test-slow: all linux-guest
	CALF_BUILD=$(abspath $(BUILD)) prove -v guest-tests/slow/*.t

.PHONY: linux-guest test-slow
