# The boot sector of guest-tests/vga-bios.t (firmware/vgaboot/boot.S):
# build/firmware/vgaboot.bin, a VBE client of the VGA BIOS.
VGABOOT := $(BUILD)/firmware/vgaboot.bin

$(BUILD)/firmware/vgaboot.o: firmware/vgaboot/boot.S
	@mkdir -p $(dir $@)
	$(FW_CC) -m32 -c $< -o $@

$(VGABOOT): $(BUILD)/firmware/vgaboot.o
	ld -m elf_i386 -nostdlib -Ttext=0x7c00 -e _start -o $(BUILD)/firmware/vgaboot.elf $<
	objcopy -O binary -j .text $(BUILD)/firmware/vgaboot.elf $@

EXTRA_ALL += $(VGABOOT)
EXTRA_TEST += $(VGABOOT)
