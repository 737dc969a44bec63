#!/bin/bash
# virtio-net with user-mode networking (libslirp) on the real bus without
# a VM (tests/unit/virtio-net.c): this program is the guest, sockets on
# 127.0.0.1 the outside.  ARP, UDP both ways (to 10.0.2.2 and through
# hostfwd), checksum offload, mergeable buffers, a ring too small for a
# frame, restrict=on, bad frames, a receive ring never refilled, hostile
# chains, a tap (root: no DATA_VALID on its frames, a checksum folding to
# 0 sent as 0xffff, the tap deleted under the device), the --net parser,
# and a stress run of 3000 datagrams each way at once checked against
# what was sent.
. "$(dirname "$0")/tap.sh"
[ -x "$CALF_BUILD/tests/virtio-net" ] || skip_all "$CALF_BUILD/tests/virtio-net not built (make test builds it)"
"$CALF_BUILD/tests/virtio-net"
