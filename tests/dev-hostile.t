#!/bin/bash
# The CMOS/RTC and fw_cfg models against a hostile guest, on the real bus
# without a VM (tests/unit/dev-hostile.c): the RTC clock clamped to
# 1900..9999, fw_cfg DMA bounded to 16 MiB a request and to guest RAM.
B=${CALF_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
[ -x "$B/tests/dev-hostile" ] || { echo "1..0 # SKIP $B/tests/dev-hostile not built (make test builds it)"; exit 0; }
exec "$B/tests/dev-hostile"
