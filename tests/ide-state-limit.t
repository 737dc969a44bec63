#!/bin/bash
# A loaded ATAPI byte count limit that offers no chunk is refused
# (tests/unit/ide-state-limit.c).
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/ide-state-limit" ] || skip_all "$CALF_BUILD/tests/ide-state-limit not built (make test builds it)"
# (not exec: the EXIT trap removes $TMP)
"$CALF_BUILD/tests/ide-state-limit"
