#!/bin/bash
# virtio-rng on the real bus without a VM (tests/unit/virtio-rng.c):
# buffers filled with getrandom() bytes, hostile chains answered with
# NEEDS_RESET, the max-bytes/period rate limit, teardown while a request
# waits for the next period, and the --rng parser.
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/virtio-rng" ] || skip_all "$CALF_BUILD/tests/virtio-rng not built (make test builds it)"
"$CALF_BUILD/tests/virtio-rng"
