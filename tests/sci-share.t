#!/bin/bash
# The ACPI SCI and a PCI INTx routed to the same IRQ 9 share the line:
# neither lowers it while the other holds it (tests/unit/sci-share.c).
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/sci-share" ] || skip_all "$CALF_BUILD/tests/sci-share not built (make test builds it)"
# (not exec: the EXIT trap removes $TMP; the program's TAP and exit status
# are the test's)
"$CALF_BUILD/tests/sci-share"
