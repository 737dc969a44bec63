# `make run`: build everything and boot the default guest.  For now that is
# the built-in test guest (firmware/testguest) on 2 vCPUs; the run ends
# with status 0 once it prints its verdict.  Override with
#   make run RUN_KERNEL=path/to/bzImage RUN_ARGS='--append "console=ttyS0"'
# `make run-linux` boots the small Linux kernel with the busybox initramfs
# (built on first use from Debian's linux-source-6.1: minutes).  On the
# emulating kvm_pvm backend it gets as far as `Run /init as init process`
# (guest userspace cannot run there, see shared/PLATFORM.md); Ctrl-A x quits.
RUN_KERNEL ?= $(BUILD)/firmware/testguest.bzImage
RUN_ARGS   ?= --cpus 2 --append "ct.cpus=2" --expect "calf-test: PASS" --timeout 60

run: all
	$(BUILD)/calf run --kernel $(RUN_KERNEL) $(RUN_ARGS)

LINUX_APPEND := console=ttyS0 rdinit=/init panic=-1
ifneq ($(wildcard /sys/module/kvm_pvm),)
LINUX_APPEND += clearcpuid=154,308,151,156,293,304,153,129,147,148,137,140,150,157,158 \
    nofsgsbase tsc_early_khz=$(shell awk '/^cpu MHz/ { printf "%d", $$4 * 1000; exit }' /proc/cpuinfo)
endif

run-linux: all linux-guest
	$(BUILD)/calf run --kernel $(LINUX_KERNEL) --initrd $(LINUX_INITRD) \
	    -m 256M --append "$(LINUX_APPEND)"

.PHONY: run-linux
