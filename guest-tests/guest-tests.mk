# The Linux guest: a small kernel built once from Debian's linux-source-6.1
# (guest-tests/linux/kernel.config) and a busybox initramfs.  Its boot is
# slow on the emulating KVM backend (shared/PLATFORM.md), so its cases run
# in `make test-slow`, not in `make test`.
LINUX_DIR := $(BUILD)/linux
LINUX_KERNEL := $(LINUX_DIR)/vmlinux
LINUX_INITRD := $(LINUX_DIR)/initramfs.cpio

$(LINUX_KERNEL): guest-tests/linux/kernel.config guest-tests/linux/build-kernel.sh
	guest-tests/linux/build-kernel.sh $(LINUX_DIR)

$(LINUX_INITRD): guest-tests/linux/make-initramfs.sh
	@mkdir -p $(dir $@)
	guest-tests/linux/make-initramfs.sh $@

linux-guest: $(LINUX_KERNEL) $(LINUX_INITRD)

test-slow: all linux-guest
	CALF_BUILD=$(abspath $(BUILD)) prove -v guest-tests/slow/*.t

.PHONY: linux-guest test-slow
