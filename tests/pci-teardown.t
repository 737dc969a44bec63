#!/bin/bash
# pci_destroy() stops every function's threads before it frees any
# function, so a last INTx never reads a freed router's configuration
# space (tests/unit/pci-teardown.c).
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/pci-teardown" ] || skip_all "$CALF_BUILD/tests/pci-teardown not built (make test builds it)"
# (not exec: the EXIT trap removes $TMP; the program's TAP and exit status
# are the test's)
"$CALF_BUILD/tests/pci-teardown"
