#!/bin/bash
# calf run --savevm / --loadvm (docs/VMSTATE.md): the test guest saved
# mid-run into its qcow2 disk and restored ends with its own PASS, and
# what it printed before the save plus what it printed after the restore
# is byte for byte what an uninterrupted run prints (ct.snap: RAM, vCPU
# and UART state all continue).  Then the image as qemu-img sees it, and
# every refusal: another -m, --cpus or disk set, a corrupt or truncated
# state, a state that is not calf's, no writable qcow2 disk, a device
# without save support.
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd qemu-img
need_cmd perl

ARGS="ct.snap=20"
img() { rm -f "$TMP/$1" && qemu-img create -f qcow2 "$TMP/$1" 64M >/dev/null; }
# straight NAME CPUS: the uninterrupted run
straight() {
    boot "$1" --kernel "$GUEST" --cpus "$2" --append "$ARGS ct.cpus=$2" --timeout 60
}
# save NAME IMG CPUS [ARGS...]
save() {
    local name=$1 image=$2 cpus=$3
    shift 3
    boot "$name" --kernel "$GUEST" --cpus "$cpus" --append "$ARGS ct.cpus=$cpus" \
        --disk "$TMP/$image" --expect "snap ready!" --savevm s1 --timeout 60 "$@"
}
# load NAME IMG CPUS [ARGS...]
load() {
    local name=$1 image=$2 cpus=$3
    shift 3
    boot "$name" --kernel "$GUEST" --cpus "$cpus" --append "$ARGS ct.cpus=$cpus" \
        --disk "$TMP/$image" --loadvm s1 --timeout 60 "$@"
}
# same SAVED LOADED STRAIGHT: the two halves make the whole
same() { cat "$TMP/$1.out" "$TMP/$2.out" | cmp - "$TMP/$3.out"; }

for cpus in 1 2; do
    img "d$cpus.qcow2"
    straight "straight$cpus" "$cpus"
    is "$status" 1 "$cpus vCPU(s): the uninterrupted run passes"
    save "save$cpus" "d$cpus.qcow2" "$cpus"
    is "$status" 0 "$cpus vCPU(s): --savevm ends the run when the text shows"
    [ "$status" = 0 ] || show "save$cpus"
    ok "$cpus vCPU(s): RAM's zero pages are holes in the image, not written (under 64 MiB allocated)" \
        bash -c "[ \$((\$(stat -c '%b * %B' '$TMP/d$cpus.qcow2'))) -lt $((64 << 20)) ]"
    ok "$cpus vCPU(s): the run stopped mid-test" \
        bash -c "! grep -q 'calf-test: PASS' '$TMP/save$cpus.out'"
    load "load$cpus" "d$cpus.qcow2" "$cpus"
    is "$status" 1 "$cpus vCPU(s): the restored guest ends with its own PASS"
    [ "$status" = 1 ] || show "load$cpus"
    ok "$cpus vCPU(s): memory checked intact after the restore" \
        has "load$cpus" "calf-test: snap: memory intact"
    ok "$cpus vCPU(s): the port read the save landed on completed once" \
        bash -c "! grep -q 'fw_cfg read lost' '$TMP/load$cpus.out'"
    ok "$cpus vCPU(s): saved + restored output is the uninterrupted run's" \
        same "save$cpus" "load$cpus" "straight$cpus"
    ok "$cpus vCPU(s): the restore says nothing on stderr" \
        bash -c "[ ! -s '$TMP/load$cpus.err' ]"
done

# the port read the save lands on is one rep insb that crosses a page:
# completing its first exit makes a second, which the save handles too
img rep.qcow2
RARGS="$ARGS ct.snaprep=1 ct.cpus=1"
boot repstraight --kernel "$GUEST" --append "$RARGS" --timeout 60
boot repsave --kernel "$GUEST" --append "$RARGS" --disk "$TMP/rep.qcow2" \
    --expect "snap ready!" --savevm s1 --timeout 60
is "$status" 0 "rep insb across a page: saved"
ok "with no I/O left pending (nothing on stderr)" bash -c "[ ! -s '$TMP/repsave.err' ]"
boot repload --kernel "$GUEST" --append "$RARGS" --disk "$TMP/rep.qcow2" \
    --loadvm s1 --timeout 60
is "$status" 1 "and restored: PASS"
ok "the same output as the uninterrupted run" same repsave repload repstraight

# a restored VM (RAM mapped from the image) saved again, then restored:
# the three pieces of output make the uninterrupted run's
img chain.qcow2
save chain1 chain.qcow2 1
boot chain2 --kernel "$GUEST" --disk "$TMP/chain.qcow2" --loadvm s1 \
    --expect "snap round 5 " --savevm s2 --timeout 60
is "$status" 0 "a restored VM saves again (s2)"
boot chain3 --kernel "$GUEST" --disk "$TMP/chain.qcow2" --loadvm s2 --timeout 60
is "$status" 1 "and s2 restores: PASS"
ok "save, restore + save, restore: the uninterrupted run's output" \
    bash -c "cat '$TMP/chain1.out' '$TMP/chain2.out' '$TMP/chain3.out' | cmp - '$TMP/straight1.out'"
ok "qemu-img check is clean with both" qemu-img check "$TMP/chain.qcow2"

# RAM read instead of mapped, and a second restore of the same snapshot
CALF_LOADVM_READ=1 load readpath d1.qcow2 1
is "$status" 1 "restored with guest RAM read, not mapped: PASS"
ok "and the same output" same save1 readpath straight1
CALF_SNAPSHOT_TIMING=1 load again d1.qcow2 1
is "$status" 1 "the snapshot restores again (a restore does not consume it)"
ok "the restore maps guest RAM from the image, read from the snapshot" \
    has_err again "guest RAM mapped from the image, state from the snapshot"
CALF_LOADVM_APPLY=1 CALF_SNAPSHOT_TIMING=1 load applied d1.qcow2 1
is "$status" 1 "restored as QEMU does (whole snapshot applied; state read before, through a read-only view): PASS"
ok "and the same output" same save1 applied straight1
ok "through the view" has_err applied "state from a read-only view of the snapshot, whole snapshot applied"
ok "qemu-img check is clean after both kinds of restore" qemu-img check "$TMP/d1.qcow2"

# disposable VMs: restored over a throw-away overlay, the base is never
# written, and one restore does not see another's
img base.qcow2
save basesave base.qcow2 1
is "$status" 0 "a base image with a saved VM"
sum=$(md5sum <"$TMP/base.qcow2")
for i in 1 2 3; do
    boot "overlay$i" --kernel "$GUEST" --append "$ARGS ct.cpus=1" \
        --disk "$TMP/base.qcow2,snapshot" --loadvm s1 --timeout 60
    is "$status" 1 "restore $i over a ,snapshot overlay: PASS"
    ok "restore $i: the same output" same basesave "overlay$i" straight1
done
is "$(md5sum <"$TMP/base.qcow2")" "$sum" "the base image was never written"
ok "qemu-img check is clean on the base" qemu-img check "$TMP/base.qcow2"
boot oversave --kernel "$GUEST" --append "$ARGS" --disk "$TMP/base.qcow2,snapshot" \
    --expect "snap ready!" --savevm s2 --timeout 60
is "$status" 2 "saving into a throw-away overlay is refused"

# ---- the image, as qemu-img sees it ----
out=$(qemu-img snapshot -l "$TMP/d1.qcow2")
ok "qemu-img snapshot -l lists s1 with its VM state size (258 MiB)" \
    grep -qE '^1 +s1 +258 MiB' <<<"$out"
ok "qemu-img check is clean with a VM state snapshot" qemu-img check "$TMP/d1.qcow2"
save resave d1.qcow2 1
is "$status" 0 "saving s1 again replaces it"
ok "one snapshot s1 afterwards" \
    bash -c "[ \"\$(qemu-img snapshot -l '$TMP/d1.qcow2' | grep -c ' s1 ')\" = 1 ]"
ok "qemu-img check is clean after the replacement" qemu-img check "$TMP/d1.qcow2"
qemu-img snapshot -d s1 "$TMP/d1.qcow2"
is $? 0 "qemu-img snapshot -d deletes it"
ok "qemu-img check is clean after the delete" qemu-img check "$TMP/d1.qcow2"
ok "no snapshot is left" bash -c "[ -z \"\$(qemu-img snapshot -l '$TMP/d1.qcow2')\" ]"
size=$(stat -c %s "$TMP/d1.qcow2")
ok "the freed VM state is reused by the next save (file stays $size bytes)" \
    bash -c "'$CALF' run --kernel '$GUEST' --append '$ARGS' --disk '$TMP/d1.qcow2' \
        --expect 'snap ready!' --savevm s1 --timeout 60 >'$TMP/reuse.out' 2>&1 &&
        [ \$(stat -c %s '$TMP/d1.qcow2') -le $((size + 1048576)) ]"
load reload d1.qcow2 1
is "$status" 1 "restored from reused clusters: PASS (RAM that was zero reads zero)"

# several disks: each gets the snapshot, the first holds the state
img m1.qcow2
img m2.qcow2
save multi m1.qcow2 1 --disk "$TMP/m2.qcow2"
is "$status" 0 "saving with two qcow2 disks"
ok "the first disk holds the VM state" \
    bash -c "qemu-img snapshot -l '$TMP/m1.qcow2' | grep -qE '^1 +s1 +258 MiB'"
ok "the second has the snapshot without VM state" \
    bash -c "qemu-img snapshot -l '$TMP/m2.qcow2' | grep -qE '^1 +s1 +0 B'"
load multiload m1.qcow2 1 --disk "$TMP/m2.qcow2"
is "$status" 1 "and both restore together: PASS"
# a save that failed part-way leaves disks from two saves: the second
# disk here keeps the first save's s1, the first has the second's
cp "$TMP/m2.qcow2" "$TMP/m2-first.qcow2"
save multi2 m1.qcow2 1 --disk "$TMP/m2.qcow2"
is "$status" 0 "saving s1 again on both"
sum=$(cat "$TMP/m1.qcow2" "$TMP/m2-first.qcow2" | md5sum)
load mixed m1.qcow2 1 --disk "$TMP/m2-first.qcow2"
is "$status" 2 "a disk whose s1 comes from another save is refused"
ok "naming it" has_err mixed "disk 1 ($TMP/m2-first.qcow2): its snapshot is not the one saved with the VM state"
is "$(cat "$TMP/m1.qcow2" "$TMP/m2-first.qcow2" | md5sum)" "$sum" "and both disks are left as they were"
load multiload2 m1.qcow2 1 --disk "$TMP/m2.qcow2"
is "$status" 1 "the matching pair restores: PASS"

# a name that several snapshots share (qemu-img allows it): --loadvm
# refuses it rather than check one and revert to another, its ID names
# one, and --savevm replaces every older one
img dup.qcow2
save dupsave dup.qcow2 1
qemu-img snapshot -c s1 "$TMP/dup.qcow2"
sum=$(md5sum <"$TMP/dup.qcow2")
load dupload dup.qcow2 1
is "$status" 2 "a name two snapshots share is refused"
ok "as ambiguous" has_err dupload "has 2 snapshots named 's1': name one by its ID"
is "$(md5sum <"$TMP/dup.qcow2")" "$sum" "and the image is left as it was"
boot dupid --kernel "$GUEST" --append "$ARGS ct.cpus=1" --disk "$TMP/dup.qcow2" \
    --loadvm 1 --timeout 60
is "$status" 1 "the one with the VM state, named by its ID, restores: PASS"
ok "the same output" same dupsave dupid straight1
save dupresave dup.qcow2 1
is "$status" 0 "saving s1 again"
ok "replaces both older ones: one s1 left" \
    bash -c "[ \"\$(qemu-img snapshot -l '$TMP/dup.qcow2' | grep -c ' s1 ')\" = 1 ]"
load dupreload dup.qcow2 1
is "$status" 1 "and it restores: PASS"
ok "qemu-img check is clean" qemu-img check "$TMP/dup.qcow2"

# ---- refusals ----
sum=$(md5sum <"$TMP/d2.qcow2")
load wrongmem d2.qcow2 2 -m 128M
is "$status" 2 "another -m is refused"
ok "naming -m" has_err wrongmem "saved with -m 256M, this run has -m 128M"
is "$(md5sum <"$TMP/d2.qcow2")" "$sum" "a refused restore leaves the image as it was"
load wrongcpus d2.qcow2 1
is "$status" 2 "another --cpus is refused"
ok "naming --cpus" has_err wrongcpus "saved with --cpus 2, this run has --cpus 1"
img extra.qcow2
load wrongdisks d2.qcow2 2 --disk "$TMP/extra.qcow2,readonly"
is "$status" 2 "another disk set is refused"
ok "naming the disks" has_err wrongdisks "saved with 1 disks, this run has 2"
boot wrongdevs --kernel "$GUEST" --cpus 2 --disk "$TMP/d2.qcow2,if=ide" --loadvm s1 --timeout 60
is "$status" 2 "another device set (the disk on IDE, not virtio) is refused"
ok "naming the device" has_err wrongdevs "device 'pci 00:01.1 8086:7010', which the saved VM did not have"
load nosnap extra.qcow2 2
is "$status" 2 "a snapshot that is not there is refused"
ok "naming it" has_err nosnap "has no snapshot 's1'"
qemu-img snapshot -c disk-only "$TMP/extra.qcow2"
boot diskonly --kernel "$GUEST" --disk "$TMP/extra.qcow2" --loadvm disk-only --timeout 60
is "$status" 2 "a snapshot without VM state is refused"
ok "saying so" has_err diskonly "holds no VM state"

# a persistent dirty bitmap: reverting is refused, as QEMU's loadvm does
cp "$TMP/d1.qcow2" "$TMP/bm.qcow2"
qemu-img bitmap --add "$TMP/bm.qcow2" b0
sum=$(md5sum <"$TMP/bm.qcow2")
load bitmap bm.qcow2 1
is "$status" 2 "a disk with a dirty bitmap is refused"
ok "naming the bitmaps" has_err bitmap "Device has active dirty bitmaps"
is "$(md5sum <"$TMP/bm.qcow2")" "$sum" "and the image is left as it was"

# corrupt and truncated states: patch the image file where the state's
# header is (the first copy of calf's magic)
img c.qcow2
save csave c.qcow2 1
is "$status" 0 "a state to damage"
hdr=$(perl -e 'local $/; open my $f, "<", $ARGV[0] or die; my $d = <$f>;
    print index($d, "CALFVMST")' "$TMP/c.qcow2")
ok "the state's header is in the image file" bash -c "[ '$hdr' -gt 0 ]"
damage() { # OFFSET PERL-STRING N: overwrites bytes of a copy, c-N.qcow2
    cp "$TMP/c.qcow2" "$TMP/c-$3.qcow2"
    perl -e 'open my $f, "+<", $ARGV[0] or die; seek $f, $ARGV[1], 0;
        print $f eval $ARGV[2]' "$TMP/c-$3.qcow2" "$1" "$2"
}
damage $((hdr + 128 + 20)) '"\xff\xfe"' sect
load corrupt c-sect.qcow2 1
is "$status" 2 "a corrupt section is refused"
ok "as corrupt" has_err corrupt "the VM state is corrupt (checksum mismatch)"
# 64 MiB more RAM than the snapshot holds, with a valid header checksum
cp "$TMP/c.qcow2" "$TMP/c-total.qcow2"
perl -MCompress::Zlib -e 'open my $f, "+<", $ARGV[0] or die; seek $f, $ARGV[1], 0;
    read $f, my $h, 128; my ($ram, $tot) = (unpack("Q<", substr($h, 64, 8)),
    unpack("Q<", substr($h, 104, 8)));
    substr($h, 64, 8) = pack("Q<", $ram + (64 << 20));
    substr($h, 104, 8) = pack("Q<", $tot + (64 << 20));
    substr($h, 92, 4) = "\0" x 4; substr($h, 92, 4) = pack("V", crc32($h));
    seek $f, $ARGV[1], 0; print $f $h' "$TMP/c-total.qcow2" "$hdr"
load truncated c-total.qcow2 1
is "$status" 2 "a state longer than its snapshot is refused"
ok "as truncated" has_err truncated "the VM state is truncated"
# header fields patched with valid checksums: FIELD=VALUE... (perl)
patch_hdr() { # NAME PERL: c-NAME.qcow2, $ram $off $tot to change
    cp "$TMP/c.qcow2" "$TMP/c-$1.qcow2"
    perl -MCompress::Zlib -e 'open my $f, "+<", $ARGV[0] or die; seek $f, $ARGV[1], 0;
        read $f, my $h, 128; my ($ram, $off, $tot) = (unpack("Q<", substr($h, 64, 8)),
        unpack("Q<", substr($h, 96, 8)), unpack("Q<", substr($h, 104, 8)));
        eval $ARGV[2]; die $@ if $@;
        substr($h, 64, 8) = pack("Q<", $ram); substr($h, 96, 8) = pack("Q<", $off);
        substr($h, 104, 8) = pack("Q<", $tot);
        substr($h, 92, 4) = "\0" x 4; substr($h, 92, 4) = pack("V", crc32($h));
        seek $f, $ARGV[1], 0; print $f $h' "$TMP/c-$1.qcow2" "$hdr" "$2"
}
# RAM at 2 MiB below 2^64: offset + size wraps to a total that fits
patch_hdr wrap '$off = 0xFFFFFFFFFFE00000; $tot = $ram - 0x200000'
load wrap c-wrap.qcow2 1
is "$status" 2 "a RAM offset whose end wraps is refused"
ok "as inconsistent" has_err wrap "the VM state's sizes are inconsistent"
# the header says 64 MiB less RAM than the machine section and this VM
patch_hdr hram '$ram -= 64 << 20; $tot -= 64 << 20'
load hram c-hram.qcow2 1
is "$status" 2 "a header whose RAM size is not this VM's is refused"
ok "naming -m" has_err hram "saved with -m 192M, this run has -m 256M"
damage "$hdr" '"QEVM\0\0\0\3"' qemu
load qemustate c-qemu.qcow2 1
is "$status" 2 "QEMU's vmstate is refused"
ok "as QEMU's" has_err qemustate "saved by QEMU, not calf"
# refused late (a vCPU record this calf does not know, with valid
# checksums: after RAM and the devices are loaded) or early, by either
# path: every disk is left byte for byte as it was, a guest write made
# since the save included
cp "$TMP/c.qcow2" "$TMP/c-cpu.qcow2"
qemu-io -c "write -P 0xa5 0 64k" "$TMP/c-cpu.qcow2" >/dev/null
perl -MCompress::Zlib -e 'open my $f, "+<", $ARGV[0] or die; my $o = $ARGV[1];
    seek $f, $o, 0; read $f, my $h, 128; read $f, my $sec, unpack("Q<", substr($h, 80, 8));
    my $i = index($sec, "\x05\x00cpu 0"); die "no cpu 0" if $i < 0;
    substr($sec, $i + 11, 4) = "ZZZZ"; substr($h, 88, 4) = pack("V", crc32($sec));
    substr($h, 92, 4) = "\0" x 4; substr($h, 92, 4) = pack("V", crc32($h));
    seek $f, $o, 0; print $f $h, $sec' "$TMP/c-cpu.qcow2" "$hdr"
cp "$TMP/c-sect.qcow2" "$TMP/c-sect2.qcow2"
qemu-io -c "write -P 0xa5 0 64k" "$TMP/c-sect2.qcow2" >/dev/null
sumcpu=$(md5sum <"$TMP/c-cpu.qcow2")
sumsect=$(md5sum <"$TMP/c-sect2.qcow2")
for how in direct apply; do
    [ $how = apply ] && export CALF_LOADVM_APPLY=1
    load "late$how" c-cpu.qcow2 1
    is "$status" 2 "$how: a vCPU record this calf does not know is refused"
    ok "$how: naming it" has_err "late$how" "cannot restore vCPU 0: unknown record"
    is "$(md5sum <"$TMP/c-cpu.qcow2")" "$sumcpu" "$how: the disk is byte for byte as it was"
    load "early$how" c-sect2.qcow2 1
    is "$status" 2 "$how: a corrupt section is refused"
    is "$(md5sum <"$TMP/c-sect2.qcow2")" "$sumsect" "$how: the disk is byte for byte as it was"
    unset CALF_LOADVM_APPLY
done
ok "the guest's write since the save is still there" \
    bash -c "qemu-io -c 'read -P 0xa5 0 64k' '$TMP/c-cpu.qcow2' >/dev/null"
# the first cluster of saved RAM with refcount 0 (a damaged image): RAM
# is read through the checks a read has, never mapped from the file
cp "$TMP/c.qcow2" "$TMP/c-ref.qcow2"
perl -e 'open my $f, "+<", $ARGV[0] or die; binmode $f; local $/;
    my $d = <$f>; my $st = index($d, "CALFVMST"); die "no state" if $st < 0;
    my $roff = unpack("Q<", substr($d, $st + 96, 8));
    my $cb = unpack("N", substr($d, 20, 4)); my $cs = 1 << $cb;
    my $span = $cs << ($cb - 3); my $size = unpack("Q>", substr($d, 24, 8));
    my $base = int(($size + $span - 1) / $span) * $span; my $g = $base + $roff;
    my $sn = unpack("Q>", substr($d, 64, 8)); my $snl1 = unpack("Q>", substr($d, $sn, 8));
    my $m = 0x00fffffffffffe00;
    my $l2 = unpack("Q>", substr($d, $snl1 + 8 * int($g / $span), 8)) & $m;
    my $host = unpack("Q>", substr($d, $l2 + 8 * (int($g / $cs) % ($cs / 8)), 8)) & $m;
    my $c = int($host / $cs); my $per = $cs / 2;
    my $rt = unpack("Q>", substr($d, 48, 8));
    my $rb = unpack("Q>", substr($d, $rt + 8 * int($c / $per), 8));
    die "refcount order" if unpack("N", substr($d, 96, 4)) != 4;
    seek $f, $rb + 2 * ($c % $per), 0; print $f "\0\0"' "$TMP/c-ref.qcow2"
CALF_SNAPSHOT_TIMING=1 load refzero c-ref.qcow2 1
is "$status" 1 "RAM with an unreferenced cluster restores: PASS"
ok "read, not mapped" has_err refzero "guest RAM read, state from the snapshot"
load intact c.qcow2 1
is "$status" 1 "the undamaged image still restores"
if command -v qemu-system-x86_64 >/dev/null; then
    out=$(timeout -s KILL 60 qemu-system-x86_64 -enable-kvm -m 256 -nographic \
        -display none -kernel "$GUEST" -drive "file=$TMP/c.qcow2,if=virtio" \
        -loadvm s1 2>&1)
    ok "QEMU refuses calf's state with its own clear error" \
        grep -q "Not a migration stream" <<<"$out"
else
    skip "qemu-system-x86_64 is not installed" "QEMU refuses calf's state"
fi

qemu-img create -f raw "$TMP/r.raw" 64M >/dev/null
boot noqcow --kernel "$GUEST" --append "$ARGS" --disk "$TMP/r.raw,format=raw" \
    --expect "snap ready!" --savevm s1 --timeout 60
is "$status" 2 "saving with no writable qcow2 disk is refused"
ok "with a clear error" has_err noqcow "no writable qcow2 disk to hold the VM state"
img ro.qcow2
boot roqcow --kernel "$GUEST" --append "$ARGS" --disk "$TMP/ro.qcow2,readonly" \
    --expect "snap ready!" --savevm s1 --timeout 60
is "$status" 2 "a read-only qcow2 disk cannot hold it either"
# IDE (a disk and a CD-ROM), the std VGA and virtio-rng in use are
# saved too: the restored guest runs its IDE checks on the restored
# controller, and the output is the uninterrupted run's
img v.qcow2
qemu-img create -q -f raw "$TMP/ide.raw" 8M
head -c 1M /dev/urandom >"$TMP/cd.iso"
IARGS="$ARGS ct.vrng=64 ct.ide"
idevga() {
    local name=$1
    shift
    boot "$name" --kernel "$GUEST" --append "$IARGS" --disk "$TMP/v.qcow2" \
        --disk "$TMP/ide.raw,format=raw,if=ide" --cdrom "$TMP/cd.iso" --vga std \
        --timeout 60 "$@"
}
idevga istraight
idevga isave --expect "snap ready!" --savevm s1
is "$status" 0 "with IDE, VGA and virtio-rng in use: saved"
[ "$status" = 0 ] || show isave
idevga iload --loadvm s1
is "$status" 1 "and restored: the IDE checks pass after the restore, PASS"
[ "$status" = 1 ] || show iload
ok "the IDE checks ran after the restore" has iload "calf-test: ide: ok"
# (but for the random bytes virtio-rng gave)
norng() { cat "$@" | grep -av 'virtio-rng: .* request'; }
norng "$TMP/isave.out" "$TMP/iload.out" >"$TMP/ihalves.txt"
norng "$TMP/istraight.out" >"$TMP/iwhole.txt"
ok "the same output as the uninterrupted run, but for the random bytes" \
    cmp "$TMP/ihalves.txt" "$TMP/iwhole.txt"
ok "which virtio-rng gave before the save" has isave "virtio-rng: second request: 64 bytes"
# a virtio disk the guest drives, with a ring full of large reads out
# when the text shows: the save waits for the requests being served,
# records the queues, and the restored guest goes on with them
for i in vio vio3; do
    rm -f "$TMP/$i.qcow2" && qemu-img create -f qcow2 "$TMP/$i.qcow2" 256M >/dev/null
done
VARGS="$ARGS ct.virtio=1 ct.vflood=1"
boot vfstraight --kernel "$GUEST" --append "$VARGS" --disk "$TMP/vio3.qcow2" --timeout 60
boot virtio --kernel "$GUEST" --append "$VARGS" \
    --disk "$TMP/vio.qcow2" --expect "snap ready!" --savevm s1 --timeout 60
is "$status" 0 "a virtio disk the guest drives, requests in flight: saved"
[ "$status" = 0 ] || show virtio
boot vfload --kernel "$GUEST" --append "$VARGS" --disk "$TMP/vio.qcow2" \
    --loadvm s1 --timeout 60
is "$status" 1 "and restored: the guest's virtio checks and PASS"
[ "$status" = 1 ] || show vfload
ok "the same output as the uninterrupted run" same virtio vfload vfstraight
# the guest's virtio-blk test first (it resets the device when done):
# configuration space, BARs and MSI-X as the guest left them come back
img vio2.qcow2
img vio4.qcow2
boot vstraight --kernel "$GUEST" --append "$ARGS ct.virtio=1" --disk "$TMP/vio4.qcow2" --timeout 60
boot vsave --kernel "$GUEST" --append "$ARGS ct.virtio=1" --disk "$TMP/vio2.qcow2" \
    --expect "snap ready!" --savevm s1 --timeout 60
is "$status" 0 "a virtio disk the guest used and reset: saved"
load vload vio2.qcow2 1
is "$status" 1 "and restored: PASS"
ok "the same output as the uninterrupted run" same vsave vload vstraight
boot noexpect --kernel "$GUEST" --disk "$TMP/v.qcow2" --savevm s1 --timeout 60
is "$status" 2 "--savevm without --expect is refused"

done_testing
