#!/bin/bash
# A PCI function's interrupt state is saved after the function quiesced
# (tests/unit/pci-state-irq.c).
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/pci-state-irq" ] || skip_all "$CALF_BUILD/tests/pci-state-irq not built (make test builds it)"
# (not exec: the EXIT trap removes $TMP)
"$CALF_BUILD/tests/pci-state-irq"
