#!/bin/bash
# The CMOS/RTC and fw_cfg models against a hostile guest, on the real bus
# without a VM (tests/unit/dev-hostile.c): the RTC clock clamped to
# 1900..9999, fw_cfg DMA bounded to 16 MiB a request and to guest RAM.
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/dev-hostile" ] || skip_all "$CALF_BUILD/tests/dev-hostile not built (make test builds it)"
# (not exec: the EXIT trap removes $TMP; the program's TAP and exit status
# are the test's)
"$CALF_BUILD/tests/dev-hostile"
