# The El Torito no-emulation boot image for the CD boot test
# (firmware/cdboot/cdboot.S): build/firmware/cdboot.bin, 2048 bytes.
CDBOOT := $(BUILD)/firmware/cdboot.bin

$(BUILD)/firmware/cdboot.o: firmware/cdboot/cdboot.S
	@mkdir -p $(dir $@)
	$(FW_CC) -m32 -c $< -o $@

$(BUILD)/firmware/cdboot.elf: $(BUILD)/firmware/cdboot.o firmware/cdboot/cdboot.ld
	ld -m elf_i386 -nostdlib -T firmware/cdboot/cdboot.ld -o $@ $<

$(CDBOOT): $(BUILD)/firmware/cdboot.elf
	objcopy -O binary $< $@
	@test $$(stat -c %s $@) -le 2048 || { echo "cdboot.bin is over 2048 bytes" >&2; rm -f $@; exit 1; }
	truncate -s 2048 $@

EXTRA_ALL += $(CDBOOT)
EXTRA_TEST += $(CDBOOT)
