#!/bin/bash
# A real boot loader through calf's firmware boot: grub-mkrescue (Debian's
# grub-pc-bin, xorriso, mtools) builds a hybrid image whose grub.cfg talks
# on the serial console, prints the SHA-256 of a file on the image
# (hashsum module) and ends the VM through the debug-exit port (iorw
# module).  SeaBIOS boots it as a virtio-blk disk: a qcow2 overlay over
# the raw image, so every sector GRUB reads comes through calf's qcow2
# engine and its backing chain.  The printed hash must be the host's.
# Slow on the emulating backend (QEMU needs about 50 s for the same).
. "$(dirname "$0")/lib.sh"
need_kvm
[ -e /usr/share/seabios/bios-256k.bin ] ||
    skip_all "seabios not installed"
[ -d /usr/lib/grub/i386-pc ] ||
    skip_all "grub-pc-bin not installed"
need_cmd grub-mkrescue xorriso mformat qemu-img sha256sum

mkdir -p "$TMP/iso/boot/grub"
head -c 200000 /dev/urandom >"$TMP/iso/data.bin"
want=$(sha256sum <"$TMP/iso/data.bin" | cut -d' ' -f1)
cat >"$TMP/iso/boot/grub/grub.cfg" <<'EOF'
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
echo "grub: hashing"
sha256sum /data.bin
echo "grub: done"
outb 0x501 0x00
EOF
grub-mkrescue -o "$TMP/grub.img" "$TMP/iso" --modules="hashsum iorw serial" \
    >"$TMP/mkrescue.log" 2>&1
r=$?; is $r 0 "grub-mkrescue builds the image"
[ $r = 0 ] || { sed 's/^/#   /' "$TMP/mkrescue.log"; done_testing; exit; }
qemu-img create -q -f qcow2 -b "$TMP/grub.img" -F raw "$TMP/overlay.qcow2"
base_sum=$(sha256sum <"$TMP/grub.img")

boot grub --disk "$TMP/overlay.qcow2" --timeout 600
[ "$status" = 1 ] && has grub "grub: done"; r=$?
is $r 0 "SeaBIOS boots GRUB from a virtio-blk qcow2 overlay over a raw base; GRUB ends the VM (status $status)"
[ $r = 0 ] || show grub
has grub "$want  /data.bin"; r=$?; is $r 0 "GRUB's sha256sum of /data.bin is the host's ($want)"; [ $r = 0 ] || show grub
ok "the raw base is untouched" [ "$(sha256sum <"$TMP/grub.img")" = "$base_sum" ]
qemu-img check -q "$TMP/overlay.qcow2"; is $? 0 "qemu-img check: the overlay is clean"

done_testing
