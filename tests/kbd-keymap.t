#!/bin/bash
# Host key -> scan code set 2 -> i8042 translation to set 1, for every key
# of a 104-key keyboard (tests/unit/kbd-keymap.c).
B=${CALF_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
[ -x "$B/tests/kbd-keymap" ] || { echo "1..0 # SKIP $B/tests/kbd-keymap not built (make test builds it)"; exit 0; }
exec "$B/tests/kbd-keymap"
