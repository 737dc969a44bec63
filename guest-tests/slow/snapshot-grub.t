#!/bin/bash
# Save and restore under SeaBIOS and GRUB (docs/VMSTATE.md): the
# firmware-grub.t image with a GRUB menu on the serial console.  The run
# is saved (--savevm) when the menu shows, into the qcow2 overlay it
# boots from; the restore (--loadvm) starts at the menu, without the
# firmware, counts down, boots the entry, and GRUB hashes a file on the
# disk through SeaBIOS's driver as it was left at the save.  Twice: the
# disk on virtio-blk (as firmware-grub.t), then on IDE with the std VGA
# (so the VGA BIOS, VBE and IDE registers are in the state).  Slow: the
# emulating backend takes minutes to reach the menu.
. "$(dirname "$0")/../lib.sh"
need_kvm
[ -e /usr/share/seabios/bios-256k.bin ] ||
    skip_all "seabios not installed"
[ -d /usr/lib/grub/i386-pc ] ||
    skip_all "grub-pc-bin not installed"
need_cmd grub-mkrescue xorriso mformat qemu-img sha256sum

mkdir -p "$TMP/iso/boot/grub"
head -c 200000 /dev/urandom >"$TMP/iso/data.bin"
want=$(sha256sum <"$TMP/iso/data.bin" | cut -d' ' -f1)
cat >"$TMP/iso/boot/grub/grub.cfg" <<'EOF2'
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=1
menuentry "calf hash" {
echo "grub: hashing"
sha256sum /data.bin
echo "grub: done"
outb 0x501 0x00
}
EOF2
grub-mkrescue -o "$TMP/grub.img" "$TMP/iso" --modules="hashsum iorw serial" \
    >"$TMP/mkrescue.log" 2>&1
r=$?; is $r 0 "grub-mkrescue builds the image"
[ $r = 0 ] || { sed 's/^/#   /' "$TMP/mkrescue.log"; done_testing; exit; }
base_sum=$(sha256sum <"$TMP/grub.img")

# variant NAME DISK-SUFFIX [ARGS...]
variant() {
    local v=$1 suffix=$2
    shift 2
    qemu-img create -q -f qcow2 -b "$TMP/grub.img" -F raw "$TMP/$v.qcow2"
    boot "$v-save" --disk "$TMP/$v.qcow2$suffix" "$@" --expect "calf hash" \
        --savevm menu --timeout 900
    is "$status" 0 "$v: saved when the GRUB menu shows (status $status)"
    [ "$status" = 0 ] || show "$v-save"
    ok "$v: before GRUB booted the entry" bash -c "! grep -q 'grub: hashing' '$TMP/$v-save.out'"
    ok "$v: qemu-img snapshot -l lists it with its VM state" \
        bash -c "qemu-img snapshot -l '$TMP/$v.qcow2' | grep -q ' menu .* 258 MiB'"
    boot "$v-load" --disk "$TMP/$v.qcow2$suffix" "$@" --loadvm menu --timeout 900
    [ "$status" = 1 ] && has "$v-load" "grub: done"; r=$?
    is $r 0 "$v: restored, GRUB boots the entry and ends the VM (status $status)"
    [ $r = 0 ] || show "$v-load"
    has "$v-load" "$want  /data.bin"; r=$?
    is $r 0 "$v: GRUB's sha256sum of /data.bin after the restore is the host's"
    ok "$v: the restore started at the menu, not from the firmware" \
        bash -c "! grep -q 'SeaBIOS' '$TMP/$v-load.out' && grep -q 'executed automatically' '$TMP/$v-load.out'"
    qemu-img check -q "$TMP/$v.qcow2"; is $? 0 "$v: qemu-img check: clean"
}

variant virtio ""
variant ide ",if=ide" --vga std
ok "the raw base is untouched" [ "$(sha256sum <"$TMP/grub.img")" = "$base_sum" ]

done_testing
