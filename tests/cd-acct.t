#!/bin/bash
# The ATAPI CD's request accounting, errors and UNIT ATTENTION against
# QEMU 7.2's, on the real bus without a VM (tests/unit/cd-acct.c).
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/cd-acct" ] || skip_all "$CALF_BUILD/tests/cd-acct not built (make test builds it)"
"$CALF_BUILD/tests/cd-acct"
