#!/bin/bash
# The drives' request accounting (query-blockstats) and BLOCK_IO_ERROR
# ring under several counting threads and a concurrent reader, checked
# exactly against a model (tests/unit/disk-stats.c).  In TSAN_TESTS.
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/disk-stats" ] || skip_all "$CALF_BUILD/tests/disk-stats not built (make test builds it)"
"$CALF_BUILD/tests/disk-stats"
