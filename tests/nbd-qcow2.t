#!/bin/bash
# A qcow2 image *inside* an NBD export: qemu-nbd and calf-nbd serve the
# qcow2 file as raw bytes (-f raw) and calf opens the qcow2 format on the
# client side, its host file the nbd node, in the three ways QEMU takes:
#   json:{"driver":"qcow2","file":{"driver":"nbd",...}}
#   --image-opts driver=qcow2,file.driver=nbd,file.server.*=...
#   -f qcow2 nbd+unix:///?socket=...
# calf-io reads what qemu-io wrote and writes new data, calf-img convert
# reads the whole disk; qemu-img compare and check judge the file after.
# An export has a fixed size: a write that needs the qcow2 file to grow
# fails with QEMU's error (EINVAL; resizing the export: "Cannot resize NBD nodes"),
# leaving the image clean; one into a metadata-preallocated image works.
. "$(dirname "$0")/nbd-lib.sh"
need_qemu qemu-img qemu-io qemu-nbd
[ -x "$CALF_NBD" ] || skip_all "calf-nbd is not built"
plan 44
cd "$TMP" || exit 1
S=$TMP/s

fresh() {  # the image, and what qemu-io wrote into it
    rm -f img.qcow2
    qemu-img create -q -f qcow2 -o preallocation=metadata img.qcow2 8M
    qemu-io -f qcow2 -c "write -P 0x11 0 1M" -c "write -P 0x22 3M 512k" img.qcow2 >/dev/null
    cp img.qcow2 want.qcow2
}
json() { echo "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$S\"}}}"; }
iopts="driver=qcow2,file.driver=nbd,file.server.type=unix,file.server.path=$S"

for srv in qemu-nbd calf-nbd; do
    server=(qemu-nbd)
    [ $srv = calf-nbd ] && server=("$CALF_NBD")
    n=0
    for form in json image-opts filename; do
        fresh
        serve "$S" "${server[@]}" -k "$S" -t -f raw img.qcow2
        pat=$((0x40 + n)); n=$((n + 1))
        cmds=(-c "read -P 0x11 0 1M" -c "read -P 0x22 3M 512k" -c "read -P 0 5M 1M"
              -c "write -P $pat 512k 1M" -c "write -z 3M 64k" -c "read -P $pat 512k 1M")
        case $form in
        json) out=$("$CALF_IO" "${cmds[@]}" "$(json)" 2>&1) ;;
        image-opts) out=$("$CALF_IO" "${cmds[@]}" --image-opts "$iopts" 2>&1) ;;
        filename) out=$("$CALF_IO" -f qcow2 "${cmds[@]}" "nbd+unix:///?socket=$S" 2>&1) ;;
        esac
        is "$?/$(grep -ci 'fail\|error' <<<"$out")" "0/0" \
            "$srv, $form: calf-io reads qemu-io's data and writes through the qcow2 over NBD"
        [ $form = json ] && is "$("$CALF_IMG" info "$(json)" 2>&1 | sed -n 2p)" \
            "file format: qcow2" "$srv: calf-img info sees the qcow2 over NBD"
        "$CALF_IMG" convert -O raw "$(json)" conv.raw
        is "$?" 0 "$srv, $form: calf-img convert reads the qcow2 over NBD"
        stop_server
        qemu-io -f qcow2 -c "write -P $pat 512k 1M" -c "write -z 3M 64k" want.qcow2 >/dev/null
        is "$(qemu-img compare img.qcow2 want.qcow2 2>&1)" "Images are identical." \
            "$srv, $form: qemu-img compare: the served file holds calf-io's writes"
        is "$(qemu-img compare -f raw -F qcow2 conv.raw want.qcow2 2>&1)" "Images are identical." \
            "$srv, $form: calf-img convert read what the image holds"
        ok "$srv, $form: qemu-img check finds the image clean" qemu-img check -q img.qcow2
    done

    # the export cannot grow: a new cluster past the file's end fails as in QEMU
    rm -f small.qcow2
    qemu-img create -q -f qcow2 small.qcow2 16M
    qemu-io -f qcow2 -c "write -P 0x33 0 64k" small.qcow2 >/dev/null
    size=$(stat -c %s small.qcow2)
    serve "$S" "${server[@]}" -k "$S" -t -f raw small.qcow2
    want=$(qemu-io -f qcow2 -c "write -P 0x44 1M 64k" "nbd+unix:///?socket=$S" 2>&1); wrc=$?
    got=$("$CALF_IO" -f qcow2 -c "write -P 0x44 1M 64k" "nbd+unix:///?socket=$S" 2>&1); grc=$?
    is "$grc: $got" "$wrc: $want" "$srv: a write needing the export to grow fails as qemu-io's"
    got=$("$CALF_IO" -f qcow2 -c "write -P 0x55 4k 4k" -c "read -P 0x55 4k 4k" \
        -c "read -P 0 1M 64k" "nbd+unix:///?socket=$S" 2>&1)
    is "$?/$(grep -ci 'fail\|error' <<<"$got")" "0/0" \
        "$srv: writes into allocated clusters still work after it"
    want=$(qemu-img resize -f raw "nbd+unix:///?socket=$S" 32M 2>&1); wrc=$?
    got=$("$CALF_IMG" resize -f raw "nbd+unix:///?socket=$S" 32M 2>&1); grc=$?
    is "$grc: $got" "$wrc: ${want/qemu-img/calf-img}" "$srv: calf-img resize of the export fails as qemu-img's"
    stop_server
    is "$(stat -c %s small.qcow2)" "$size" "$srv: the served file did not grow"
    ok "$srv: qemu-img check: the image stays clean" qemu-img check -q small.qcow2
    out=$(qemu-io -f qcow2 -c "read -P 0x33 0 4k" -c "read -P 0x55 4k 4k" -c "read -P 0 1M 64k" \
        small.qcow2 2>&1)
    is "$(grep -ci 'fail\|error' <<<"$out")" 0 "$srv: qemu-io reads the writes that succeeded"
done
done_testing
