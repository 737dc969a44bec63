#!/bin/bash
# SeaBIOS -> GRUB booting a qcow2 overlay whose backing file is an NBD
# export, the way a runner boots a base image that lives on another
# machine: grub-mkrescue builds a hybrid image (as guest-tests/
# firmware-grub.t) holding a random file and a GRUB environment block;
# calf-nbd serves it read-only in one case, qemu-nbd in the other (both
# VMs run at once).  GRUB prints the SHA-256 of the file, which must be
# the host's, and writes the environment block (save_env): that write
# lands in the local overlay, the export stays unchanged (qemu-img
# compare reads the export through NBD against the original image).
. "$(dirname "$0")/../lib.sh"
need_kvm
[ -e /usr/share/seabios/bios-256k.bin ] ||
    skip_all "seabios not installed"
[ -d /usr/lib/grub/i386-pc ] ||
    skip_all "grub-pc-bin not installed"
need_cmd grub-mkrescue grub-editenv xorriso mformat qemu-img qemu-io qemu-nbd sha256sum
[ -x "$CALF_BUILD/calf-nbd" ] || skip_all "calf-nbd is not built"

mkdir -p "$TMP/iso/boot/grub"
head -c 200000 /dev/urandom >"$TMP/iso/data.bin"
want=$(sha256sum <"$TMP/iso/data.bin" | cut -d' ' -f1)
grub-editenv "$TMP/iso/boot/grub/grubenv" create
cat >"$TMP/iso/boot/grub/grub.cfg" <<'EOF'
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
echo "grub: hashing"
sha256sum /data.bin
set calfmark=overlay-got-this
save_env -f /boot/grub/grubenv calfmark
echo "grub: saved $?"
echo "grub: done"
outb 0x501 0x00
EOF
grub-mkrescue -o "$TMP/grub.img" "$TMP/iso" --modules="hashsum iorw serial loadenv" \
    >"$TMP/mkrescue.log" 2>&1
r=$?; is $r 0 "grub-mkrescue builds the image"
[ $r = 0 ] || { sed 's/^/#   /' "$TMP/mkrescue.log"; done_testing; exit; }
cp "$TMP/grub.img" "$TMP/orig.img"
base_sum=$(sha256sum <"$TMP/grub.img")

# the two servers, read-only, persistent (qemu-img and calf run connect in turn)
rm -f "$TMP/c.sock" "$TMP/q.sock"
"$CALF_BUILD/calf-nbd" -r -t -f raw -x base -k "$TMP/c.sock" "$TMP/grub.img" \
    >"$TMP/calf-nbd.log" 2>&1 &
CPID=$!
at_exit "kill $CPID 2>/dev/null"
qemu-nbd -r -t -f raw -x base -k "$TMP/q.sock" "$TMP/grub.img" >"$TMP/qemu-nbd.log" 2>&1 &
QPID=$!
at_exit "kill $QPID 2>/dev/null"
for _ in $(seq 100); do [ -S "$TMP/c.sock" ] && [ -S "$TMP/q.sock" ] && break; sleep 0.05; done
ok "calf-nbd and qemu-nbd listen" [ -S "$TMP/c.sock" ] && [ -S "$TMP/q.sock" ]

for s in c q; do
    qemu-img create -q -f qcow2 -b "nbd+unix:///base?socket=$TMP/$s.sock" -F raw \
        "$TMP/ov-$s.qcow2"
done
boot_bg() {  # boot_bg NAME OVERLAY: boot in the background, its pid in $!
    ${BOOT_GUARD:+timeout -s KILL "$BOOT_GUARD"} "$CALF" run --disk "$2" --timeout 600 \
        >"$TMP/$1.out" 2>"$TMP/$1.err" </dev/null &
}
boot_bg calf "$TMP/ov-c.qcow2"; P1=$!
boot_bg qemu "$TMP/ov-q.qcow2"; P2=$!
wait $P1; st_c=$?
wait $P2; st_q=$?
echo "# status: calf-nbd case $st_c, qemu-nbd case $st_q"

check() {  # check NAME SERVER STATUS
    local n=$1 srv=$2 st=$3 r
    [ "$st" = 1 ] && has "$n" "grub: done"; r=$?
    is $r 0 "SeaBIOS boots GRUB from a qcow2 overlay over $srv's export (status $st)"
    [ $r = 0 ] || show "$n"
    has "$n" "$want  /data.bin"; r=$?
    is $r 0 "$srv: GRUB's sha256sum of /data.bin is the host's"; [ $r = 0 ] || show "$n"
    has "$n" "grub: saved 0"; r=$?
    is $r 0 "$srv: GRUB's save_env succeeds"; [ $r = 0 ] || show "$n"
}
check calf calf-nbd "$st_c"
check qemu qemu-nbd "$st_q"

for s in c q; do
    srv=$([ $s = c ] && echo calf-nbd || echo qemu-nbd)
    # the guest's write is in the overlay ...
    qemu-img convert -O raw "$TMP/ov-$s.qcow2" "$TMP/guest-$s.raw"
    ok "$srv: GRUB's environment write is in the overlay" \
        grep -qa "^calfmark=overlay-got-this$" "$TMP/guest-$s.raw"  # grubenv's line
    qemu-img compare -f qcow2 -F raw "$TMP/ov-$s.qcow2" "$TMP/orig.img" >"$TMP/cmp-$s" 2>&1
    is "$?:$(grep -c "^Content mismatch at offset [0-9]*!$" "$TMP/cmp-$s")" "1:1" \
        "$srv: qemu-img compare: the overlay (over the export) differs from the base"
    ok "qemu-img check: the $srv overlay is clean" qemu-img check -q "$TMP/ov-$s.qcow2"
    # ... and the export is what it was
    is "$(qemu-img compare -f raw -F raw "nbd+unix:///base?socket=$TMP/$s.sock" \
        "$TMP/orig.img" 2>&1)" "Images are identical." \
        "$srv: qemu-img compare: the export (read through NBD) is unchanged"
done
kill $CPID $QPID 2>/dev/null
wait $CPID $QPID 2>/dev/null
ok "the served image file is untouched" [ "$(sha256sum <"$TMP/grub.img")" = "$base_sum" ]
done_testing
