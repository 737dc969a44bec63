# tests/unit/dev-hostile.c drives device models (RTC, fw_cfg) on the real
# bus without a VM: it links their objects besides the block library.
$(BUILD)/tests/dev-hostile: $(OBJ)/vmm/bus.o $(OBJ)/devices/rtc.o $(OBJ)/devices/fw-cfg.o

# tests/unit/pci-teardown.c drives the PCI core's teardown (vmm/pci.c,
# which also builds the machine, so it links every VMM object but main;
# the block library after them, which they use).
$(BUILD)/tests/pci-teardown: $(OBJ)/tests/unit/pci-teardown.o \
        $(filter-out $(OBJ)/vmm/main.o,$(call obj,$(VMM_SRCS))) $(BUILD)/libcalfblock.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
