# The freestanding test guest: build/firmware/testguest.bzImage (Linux boot
# protocol, 64-bit entry) and build/firmware/testguest.elf (ELF with a PVH
# note: qemu-system-x86_64 -kernel boots the same guest).

FW_DIR  := $(BUILD)/firmware
FW_SRCS := $(wildcard firmware/testguest/*.c firmware/testguest/*.S)
FW_OBJS := $(patsubst firmware/testguest/%,$(FW_DIR)/obj/%.o,$(filter-out %/setup.S,$(FW_SRCS)))
FW_CC   ?= gcc
# No SSE/x87 (the emulating backend and a bare CPU state), no red zone,
# no PIC: the guest runs at the address it is linked at.
FW_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -ffreestanding -fno-pic \
             -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
             -mno-red-zone -mgeneral-regs-only -mcmodel=small -fno-builtin \
             -fcf-protection=none -nostdinc -isystem $(shell $(FW_CC) -print-file-name=include)
FW_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack \
              -Wl,--no-warn-rwx-segments

$(FW_DIR)/obj/%.c.o: firmware/testguest/%.c $(wildcard firmware/testguest/*.h)
	@mkdir -p $(dir $@)
	$(FW_CC) $(FW_CFLAGS) -c $< -o $@

$(FW_DIR)/obj/%.S.o: firmware/testguest/%.S
	@mkdir -p $(dir $@)
	$(FW_CC) $(FW_CFLAGS) -c $< -o $@

$(FW_DIR)/%.lds: firmware/testguest/guest.ld
	@mkdir -p $(dir $@)
	$(FW_CC) -E -P -x c $(if $(filter bz,$*),-DBZIMAGE) $< -o $@

$(FW_DIR)/testguest.elf: $(FW_OBJS) $(FW_DIR)/elf.lds
	$(FW_CC) $(FW_LDFLAGS) -T $(FW_DIR)/elf.lds -o $@ $(FW_OBJS)

$(FW_DIR)/testguest-bz.elf: $(FW_OBJS) $(FW_DIR)/obj/setup.S.o $(FW_DIR)/bz.lds
	$(FW_CC) $(FW_LDFLAGS) -T $(FW_DIR)/bz.lds -o $@ $(FW_OBJS) $(FW_DIR)/obj/setup.S.o

$(FW_DIR)/testguest.bzImage: $(FW_DIR)/testguest-bz.elf
	objcopy -O binary $< $@
	truncate -s %16 $@ # syssize counts whole 16-byte units

FIRMWARE := $(FW_DIR)/testguest.bzImage $(FW_DIR)/testguest.elf
EXTRA_ALL += $(FIRMWARE)
EXTRA_TEST += $(FIRMWARE)
