#!/bin/bash
# Host key -> scan code set 2 -> i8042 translation to set 1, for every key
# of a 104-key keyboard (tests/unit/kbd-keymap.c).
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/kbd-keymap" ] || skip_all "$CALF_BUILD/tests/kbd-keymap not built (make test builds it)"
# (not exec: the EXIT trap removes $TMP; the program's TAP and exit status
# are the test's)
"$CALF_BUILD/tests/kbd-keymap"
