#!/bin/bash
# A live disk's write tracking (devices/disk.c, tests/unit/disk-dirty.c):
# marks, takes and counts against a model on a 64 GiB disk of 1 Mi
# units, then 4 marking threads and a taking one.  In TSAN_TESTS.
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/disk-dirty" ] || skip_all "$CALF_BUILD/tests/disk-dirty not built (make test builds it)"
"$CALF_BUILD/tests/disk-dirty"
