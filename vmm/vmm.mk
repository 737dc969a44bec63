# `make run`: build everything and boot the default guest: the small Linux
# kernel (guest-tests/linux/kernel.config, built on first use from Debian's
# linux-source-6.1 — a few minutes — then cached) with a busybox initramfs,
# on the serial console.  On hardware KVM it ends at a busybox shell
# (`exit` or `poweroff -f` ends the VM, Ctrl-A x quits at any time).  On
# the emulating kvm_pvm backend guest userspace cannot run (see
# docs/ARCHITECTURE.md section 8): the kernel boots up to `Run /init as init
# process`, /init dies at its first system call, the kernel panics, and
# the run ends there (--no-reboot).
# `make run-testguest` boots the built-in test guest (firmware/testguest)
# on 2 vCPUs instead; it ends with status 0 once it prints its verdict.
# Override either with RUN_ARGS, e.g. make run RUN_ARGS='--cpus 2 -m 512M'.
LINUX_APPEND = $(shell guest-tests/linux/cmdline.sh console=ttyS0 panic=-1 rdinit=/init calf.shell)
RUN_ARGS ?= -m 256M

run: all linux-guest
	@[ ! -e /sys/module/kvm_pvm ] || echo "calf: kvm_pvm (software KVM): Linux boots to /init, then its userspace cannot run (docs/ARCHITECTURE.md)"
	$(BUILD)/calf run --kernel $(LINUX_KERNEL) --initrd $(LINUX_INITRD) \
	    --append "$(LINUX_APPEND)" --no-reboot $(RUN_ARGS)

run-linux: run

run-testguest: all
	$(BUILD)/calf run --kernel $(BUILD)/firmware/testguest.bzImage --cpus 2 \
	    --append "ct.cpus=2" --expect "calf-test: PASS" --timeout 60

.PHONY: run run-linux run-testguest
