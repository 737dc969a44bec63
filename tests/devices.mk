# Unit tests that drive device models (tests/unit/dev-hostile.c,
# pci-teardown.c, png-check.c) need nothing beyond the layers' libraries
# (the generic rule in the Makefile).  kbd-keymap also checks the VMM's
# host-key table, which is not in a library.
$(BUILD)/tests/kbd-keymap: $(OBJ)/vmm/display-keymap.o
