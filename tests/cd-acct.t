#!/bin/bash
# The ATAPI CD's request accounting, errors and UNIT ATTENTION against
# QEMU 7.2's, on the real bus without a VM (tests/unit/cd-acct.c): a
# qcow2 disc whose block n holds the byte n + 1, under blkdebug failing
# the reads of block 40.
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/cd-acct" ] || skip_all "$CALF_BUILD/tests/cd-acct not built (make test builds it)"
"$CALF_BUILD/calf-img" create -q -f qcow2 "$TMP/cd.qcow2" 192K || { echo "Bail out! calf-img create"; exit 1; }
cmds=()
for ((b = 0; b < 96; b++)); do cmds+=(-c "write -P $((b + 1)) $((b * 2048)) 2048"); done
"$CALF_BUILD/calf-io" "${cmds[@]}" "$TMP/cd.qcow2" >/dev/null || { echo "Bail out! calf-io write"; exit 1; }
sector=$("$CALF_BUILD/calf-img" map --output=json "$TMP/cd.qcow2" |
    python3 -c 'import json, sys; m = json.load(sys.stdin)[0]
print((m["offset"] + 40 * 2048) // 512)')
printf '[inject-error]\nevent = "read_aio"\niotype = "read"\nerrno = "5"\nsector = "%s"\n' \
    "$sector" >"$TMP/cd.conf"
truncate -s 192K "$TMP/other.iso"
"$CALF_BUILD/tests/cd-acct" "$TMP/cd.qcow2" "$TMP/cd.conf" "$TMP/other.iso"
