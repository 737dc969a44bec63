# tests/unit/dev-hostile.c drives device models (RTC, fw_cfg) on the real
# bus without a VM: it links their objects besides the block library.
$(BUILD)/tests/dev-hostile: $(OBJ)/vmm/bus.o $(OBJ)/devices/rtc.o $(OBJ)/devices/fw-cfg.o
