#!/bin/bash
# calf run with its disk over NBD: the test guest's virtio-blk checks
# (firmware/testguest/virtio-blk.c: patterns written and read back,
# flush, write-zeroes, discard) on
#  - --disk nbd+unix:///...: calf-nbd serves a qcow2 image; the guest's
#    writes land in it (qemu-io reads them from the file afterwards);
#  - a local qcow2 overlay whose backing file is the NBD export, served
#    read-only: the guest reads the base through it, its writes stay in
#    the overlay and the base never changes;
#  - a qcow2 image inside the export: calf-nbd serves the qcow2 file as
#    raw bytes and calf opens json:{"driver":"qcow2","file":{"driver":
#    "nbd",...}} (metadata-preallocated: an export cannot grow).
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd qemu-img qemu-io
[ -x "$CALF_BUILD/calf-nbd" ] || skip_all "calf-nbd is not built"

passed() {
    [ "$status" = 1 ] && has "$1" "calf-test: PASS" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}
# the guest's writes (see guest-tests/virtio-blk.t), the discarded range aside
guest_data_ok() {  # guest_data_ok IMAGE FORMAT
    qemu-io -f "$2" -r -U -c 'read -P 0x5a 1M 8K' -c 'read -P 0 1056768 4K' \
        -c 'read -P 0x5a 1060864 20K' -c 'read -P 0x5a 2093056 4K' \
        -c 'read -P 0x5a 2162688 28K' "$1" >"$TMP/io.out" 2>&1 &&
        ! grep -q "Pattern verification failed" "$TMP/io.out"
}
serve() {  # serve SOCK ARGS...: calf-nbd in the background, until it listens
    local sock=$1
    shift
    rm -f "$sock"
    "$CALF_BUILD/calf-nbd" -k "$sock" "$@" >"$TMP/nbd.log" 2>&1 &
    NBD_PID=$!
    at_exit "kill $NBD_PID 2>/dev/null"
    for _ in $(seq 100); do [ -S "$sock" ] && return 0; sleep 0.05; done
    return 1
}

# ---- the whole disk over NBD ----
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4K' "$TMP/a.qcow2" >/dev/null
serve "$TMP/s" -f qcow2 "$TMP/a.qcow2"
boot direct --kernel "$GUEST" --disk "nbd+unix:///?socket=$TMP/s,serial=calf-disk-0" \
    --append "ct.virtio=1" --timeout 120
passed direct; r=$?; is $r 0 "--disk nbd+unix://: the guest's virtio-blk checks pass (status $status)"
[ $r = 0 ] || { tail -5 "$TMP/direct.out"; tail -5 "$TMP/direct.err"; } | sed 's/^/# /'
ok "the guest reads sector 0 through NBD" has direct "sector 0 byte 0x11"
wait $NBD_PID  # without -t it ends with its client
guest_data_ok "$TMP/a.qcow2" qcow2; is $? 0 "the guest's writes are in the served image"
ok "qemu-img check: the served image is clean" qemu-img check -q "$TMP/a.qcow2"

# ---- a local overlay over a read-only export ----
qemu-img create -q -f raw "$TMP/base.raw" 64M
qemu-io -f raw -c 'write -P 0x11 0 4K' "$TMP/base.raw" >/dev/null
sum=$(sha256sum <"$TMP/base.raw")
serve "$TMP/r" -r -t -f raw "$TMP/base.raw"
qemu-img create -q -f qcow2 -b "nbd+unix:///?socket=$TMP/r" -F raw "$TMP/ov.qcow2"
boot overlay --kernel "$GUEST" --disk "$TMP/ov.qcow2,format=qcow2,serial=calf-disk-0" \
    --append "ct.virtio=1" --timeout 120
passed overlay; r=$?; is $r 0 "overlay over nbd+unix://: the guest's checks pass (status $status)"
[ $r = 0 ] || { tail -5 "$TMP/overlay.out"; tail -5 "$TMP/overlay.err"; } | sed 's/^/# /'
guest_data_ok "$TMP/ov.qcow2" qcow2; is $? 0 "the overlay (read with its NBD backing file) holds the guest's writes"
kill $NBD_PID; wait $NBD_PID 2>/dev/null
is "$(sha256sum <"$TMP/base.raw")" "$sum" "the exported base is unchanged"

# ---- a qcow2 inside the export, opened over NBD by calf ----
qemu-img create -q -f qcow2 -o preallocation=metadata "$TMP/in.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4K' "$TMP/in.qcow2" >/dev/null
serve "$TMP/q" -t -f raw "$TMP/in.qcow2"  # calf run connects twice: it probes first
j='json:{"driver":"qcow2",,"file":{"driver":"nbd",,"server":{"type":"unix",,"path":"'$TMP/q'"}}}'
boot inner --kernel "$GUEST" --disk "$j,serial=calf-disk-0" --append "ct.virtio=1" --timeout 120
passed inner; r=$?; is $r 0 "--disk json:{qcow2 over nbd}: the guest's checks pass (status $status)"
[ $r = 0 ] || { tail -5 "$TMP/inner.out"; tail -5 "$TMP/inner.err"; } | sed 's/^/# /'
ok "the guest reads sector 0 through the qcow2 over NBD" has inner "sector 0 byte 0x11"
kill $NBD_PID; wait $NBD_PID 2>/dev/null
guest_data_ok "$TMP/in.qcow2" qcow2; is $? 0 "the guest's writes are in the qcow2 file served raw"
ok "qemu-img check: that qcow2 is clean" qemu-img check -q "$TMP/in.qcow2"
done_testing
