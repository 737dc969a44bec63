# The firmware-boot test disk's first sectors: a boot sector and a second
# stage (firmware/bootsector/boot.S), build/firmware/bootsector.bin.
# guest-tests/firmware*.t write it to sector 0 of a disk image.
BOOTSECTOR := $(BUILD)/firmware/bootsector.bin

$(BUILD)/firmware/bootsector.o: firmware/bootsector/boot.S
	@mkdir -p $(dir $@)
	$(FW_CC) -m32 -c $< -o $@

$(BUILD)/firmware/bootsector.elf: $(BUILD)/firmware/bootsector.o firmware/bootsector/bootsector.ld
	ld -m elf_i386 -nostdlib -T firmware/bootsector/bootsector.ld -o $@ $<

$(BOOTSECTOR): $(BUILD)/firmware/bootsector.elf
	objcopy -O binary $< $@

EXTRA_ALL += $(BOOTSECTOR)
EXTRA_TEST += $(BOOTSECTOR)
