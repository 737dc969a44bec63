#!/bin/bash
# virtio-blk end to end: the test guest drives calf's virtio-pci device
# (firmware/testguest/virtio-blk.c: patterns written and read back, flush,
# write-zeroes, discard, GET_ID, read-only refusal, BAR sizing and move,
# the PCI_CFG window, the MP table's INTx entry; the same through the
# legacy interface of the transitional device);
# the host then checks the image with qemu-img check and the data with
# qemu-io.  Throw-away VMs (,snapshot) leave their base untouched, two at
# once share one base, and a second writer on an image is refused.
# A hostile guest breaks the queue rules, writes features out of turn,
# exceeds size_max and seg_max, and fills the ring with the largest
# requests the device takes: a reset, --timeout, Ctrl-A x and calf's exit
# must still come at once (the times are printed).
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd qemu-img qemu-io sha256sum

# The guest passed: status 1 (it wrote 0 to the debug-exit port), its
# verdict on the console, and no sanitizer report (whose exit status is 1
# too) on stderr.
passed() {
    [ "$status" = 1 ] && has "$1" "calf-test: PASS" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

# The guest's writes (see virtio-blk.c): 0x5a at [1M, 1M+32K) but zeros
# at [1M+8K, 1M+12K); 0x5a at [2M-4K, 2M+92K), of which it then
# discarded [2M, 2M+64K): with discard=ignore (the default) that range
# keeps its 0x5a, with unmap it reads zeros; "any": either.
guest_data_ok() {  # guest_data_ok IMAGE FORMAT [ignore|unmap|any]
    local range=()
    case ${3:-ignore} in
    ignore) range=(-c 'read -P 0x5a 2M 64K') ;;
    unmap) range=(-c 'read -P 0 2M 64K') ;;
    esac
    qemu-io -f "$2" -c 'read -P 0x5a 1M 8K' -c 'read -P 0 1056768 4K' \
        -c 'read -P 0x5a 1060864 20K' -c 'read -P 0x5a 2093056 4K' "${range[@]}" \
        -c 'read -P 0x5a 2162688 28K' "$1" >"$TMP/io.out" 2>&1 &&
        ! grep -q "Pattern verification failed" "$TMP/io.out"
}

# unmapped IMAGE FORMAT: qemu-img map shows no data in the discarded
# range [2M, 2M+64K) (prints the entries that have some)
unmapped() {
    qemu-img map -f "$2" --output=json "$1" >"$TMP/map.json" &&
        perl -MJSON::PP -0777 -ne '
            my ($s, $e, $n, $bad) = (2 << 20, (2 << 20) + 65536, 0, 0);
            for my $m (@{decode_json($_)}) {
                my ($a, $b) = ($m->{start}, $m->{start} + $m->{length});
                next if $b <= $s || $a >= $e;
                $n += ($b < $e ? $b : $e) - ($a > $s ? $a : $s);
                if ($m->{data}) { print "data at [$a, $b)\n"; $bad = 1 }
            }
            exit($bad || $n != $e - $s)' "$TMP/map.json"
}

untouched_ok() {  # untouched_ok IMAGE FORMAT: the guest's ranges are still zero
    qemu-io -f "$2" -c 'read -P 0 1M 32K' -c 'read -P 0 2093056 96K' "$1" >"$TMP/io.out" 2>&1 &&
        ! grep -q "Pattern verification failed" "$TMP/io.out"
}

# ---- a qcow2 disk ----
qemu-img create -q -f qcow2 "$TMP/a.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4K' "$TMP/a.qcow2" >/dev/null
boot qcow2 --kernel "$GUEST" --disk "$TMP/a.qcow2,format=qcow2,serial=calf-disk-0" \
    --append "ct.virtio=1" --timeout 60
passed qcow2; r=$?; is $r 0 "qcow2 disk: the guest's virtio-blk checks pass (status $status)"; [ $r = 0 ] || show qcow2
ok "the guest reads what the host wrote at sector 0" has qcow2 "sector 0 byte 0x11"
ok "GET_ID returns serial=calf-disk-0" has qcow2 "serial 'calf-disk-0'"
ok "the device sits at slot 2, after the host bridge and the PIIX3 ISA bridge" has qcow2 "virtio-blk 2: ok"
ok "by default the device is transitional (1af4:1001), as QEMU's" has qcow2 "virtio-blk 2: 1af4:1001 (transitional)"
ok "VIRTIO_PCI_CAP_PCI_CFG: common and device configuration read and written through configuration space match the BAR" has qcow2 "PCI_CFG window agrees with the BAR"
has qcow2 "MP table sends INTA of the slot to I/O APIC pin 18, as Interrupt Line says"
is $? 0 "the MP table has the PCI interrupt entry for slot 2 (INTA -> I/O APIC pin 18), as Interrupt Line and _PRT"
qemu-img check -q "$TMP/a.qcow2"; is $? 0 "qemu-img check: the image is clean"
guest_data_ok "$TMP/a.qcow2" qcow2; is $? 0 "qemu-io finds the guest's pattern and its zeroed range; the discard (ignored by default) left its data"

# ---- the legacy interface (I/O BAR 0, no VERSION_1, legacy ring layout) ----
qemu-img create -q -f qcow2 "$TMP/leg.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4K' "$TMP/leg.qcow2" >/dev/null
boot legacy --kernel "$GUEST" --cpus 2 --disk "$TMP/leg.qcow2,serial=legacy-0" \
    --append "ct.virtio=1 ct.vlegacy=1" --timeout 60
passed legacy; r=$?; is $r 0 "legacy driver (2 queues offered, queue 0 used): the guest's checks pass (status $status)"; [ $r = 0 ] || show legacy
has legacy "legacy interface at I/O 0xc000" && has legacy "sector 0 byte 0x11" && has legacy "serial 'legacy-0'"
is $? 0 "through I/O BAR 0: reads the host's data and GET_ID"
qemu-img check -q "$TMP/leg.qcow2"; is $? 0 "qemu-img check: clean after the legacy driver"
guest_data_ok "$TMP/leg.qcow2" qcow2; is $? 0 "qemu-io finds the legacy driver's pattern and zeroed range"
qemu-img create -q -f qcow2 "$TMP/legm.qcow2" 64M
boot legmsix --kernel "$GUEST" --disk "$TMP/legm.qcow2" --append "ct.virtio=1 ct.vlegacy=1 ct.vmsix=1" --timeout 60
passed legmsix && has legmsix "legacy MSI-X: completion on vector 0, configuration at 0x18"
r=$?; is $r 0 "legacy driver with MSI-X: vectors through the legacy registers, configuration at 0x18 (status $status)"; [ $r = 0 ] || show legmsix
guest_data_ok "$TMP/legm.qcow2" qcow2; is $? 0 "and its data is in the image"

# ---- disable-legacy: modern only ----
qemu-img create -q -f qcow2 "$TMP/mod.qcow2" 64M
boot modern --kernel "$GUEST" --disk "$TMP/mod.qcow2,disable-legacy" --append "ct.virtio=1" --timeout 60
passed modern && has modern "virtio-blk 2: 1af4:1042 (modern only)"
r=$?; is $r 0 "disable-legacy: a modern-only 1af4:1042 function passes the checks (status $status)"; [ $r = 0 ] || show modern
guest_data_ok "$TMP/mod.qcow2" qcow2; is $? 0 "and its data is in the image"
boot modleg --kernel "$GUEST" --disk "$TMP/mod.qcow2,disable-legacy=on" --append "ct.virtio=1 ct.vlegacy=1" --timeout 60
ok "disable-legacy=on: no legacy interface for a legacy driver (status $status)" has modleg "the device is not transitional"

# ---- completion interrupts: INTx through the I/O APIC, then MSI-X ----
# With irqfds (calf's default where KVM has them) and with KVM_SIGNAL_MSI.
for mode in irqfd signal; do
    if [ $mode = signal ]; then export CALF_NO_IRQFD=1; fi
    boot msix --kernel "$GUEST" --disk "$TMP/a.qcow2" --append "ct.virtio=1 ct.vmsix=1" --timeout 60
    unset CALF_NO_IRQFD
    passed msix; r=$?; is $r 0 "MSI-X ($mode): the guest takes its completion interrupts on vector 0 (status $status)"; [ $r = 0 ] || show msix
    ok "INTx ($mode): one level-triggered interrupt on the pin of the Interrupt Line register" has msix "INTx completion through the I/O APIC ok"
    ok "MSI-X ($mode): a masked vector stays pending in the PBA and fires on unmask" has msix "MSI-X completion, masking and PBA ok"
    ok "MSI-X ($mode): a rewritten table entry moves the interrupt (the route follows)" has msix "MSI-X entry rewritten: the interrupt follows it"
done
# Which path the interrupts took: KVM_IRQFD and no KVM_SIGNAL_MSI ioctl
# from the I/O thread while the vector is unmasked (the one held back
# while masked goes out when the vCPU unmasks it: at most that one).
if command -v strace >/dev/null; then
    strace -f -e trace=ioctl -o "$TMP/strace.out" "$CALF" run --kernel "$GUEST" --disk "$TMP/a.qcow2" \
        --append "ct.virtio=1 ct.vmsix=1" --timeout 60 >"$TMP/st.out" 2>&1 </dev/null
    n=$(grep -c KVM_SIGNAL_MSI "$TMP/strace.out")
    grep -q "KVM_IRQFD" "$TMP/strace.out" && grep -q "KVM_SET_GSI_ROUTING" "$TMP/strace.out" && [ "$n" -le 1 ] &&
        grep -q "MSI-X completion, masking and PBA ok" "$TMP/st.out"
    is $? 0 "MSI-X completions go through an irqfd with an MSI route ($n KVM_SIGNAL_MSI calls)"
else
    skip "strace not installed, the irqfd path is not told apart from KVM_SIGNAL_MSI" \
        "MSI-X completions go through an irqfd with an MSI route"
fi

# ---- a raw disk, with discard=unmap and cache=unsafe ----
truncate -s 16M "$TMP/b.raw"
boot raw --kernel "$GUEST" --disk "$TMP/b.raw,format=raw,discard=unmap,cache=unsafe" \
    --append "ct.virtio=1" --timeout 60
passed raw; r=$?; is $r 0 "raw disk (discard=unmap, cache=unsafe): checks pass (status $status)"; [ $r = 0 ] || show raw
# a raw discard punches a hole where the file system can (advisory)
truncate -s 8K "$TMP/punch"
if fallocate -p -o 0 -l 4K "$TMP/punch" 2>/dev/null; then
    guest_data_ok "$TMP/b.raw" raw unmap; is $? 0 "qemu-io finds the guest's data in the raw file, zeros where it discarded"
    ok "qemu-img map: the discarded range is a hole in the raw file" unmapped "$TMP/b.raw" raw
else
    guest_data_ok "$TMP/b.raw" raw any; is $? 0 "qemu-io finds the guest's data in the raw file"
    skip "the file system of $TMP cannot punch holes" "qemu-img map: the discarded range is a hole in the raw file"
fi

# ---- a qcow2 disk with discard=unmap ----
qemu-img create -q -f qcow2 "$TMP/u.qcow2" 64M
boot unmap --kernel "$GUEST" --disk "$TMP/u.qcow2,discard=unmap" --append "ct.virtio=1" --timeout 60
passed unmap; r=$?; is $r 0 "qcow2 disk with discard=unmap: checks pass (status $status)"; [ $r = 0 ] || show unmap
guest_data_ok "$TMP/u.qcow2" qcow2 unmap; is $? 0 "qemu-io: the discarded range reads zeros, the data around it is intact"
ok "qemu-img map: the discarded clusters hold no data" unmapped "$TMP/u.qcow2" qcow2
qemu-img check -q "$TMP/u.qcow2"; is $? 0 "qemu-img check: clean after the discard"

# ---- a qcow (version 1) disk ----
qemu-img create -q -f qcow "$TMP/v1.qcow" 64M
boot qcow1 --kernel "$GUEST" --disk "$TMP/v1.qcow,format=qcow" --append "ct.virtio=1" --timeout 60
passed qcow1; r=$?; is $r 0 "qcow (v1) disk: checks pass (status $status)"; [ $r = 0 ] || show qcow1
guest_data_ok "$TMP/v1.qcow" qcow; is $? 0 "qemu-io finds the guest's data in the qcow image"

# ---- cache=none (O_DIRECT) ----
truncate -s 16M "$TMP/n.raw"
boot nocache --kernel "$GUEST" --disk "$TMP/n.raw,cache=none" --append "ct.virtio=1" --timeout 60
passed nocache; r=$?; is $r 0 "raw with cache=none (format probed): checks pass (status $status)"; [ $r = 0 ] || show nocache
guest_data_ok "$TMP/n.raw" raw; is $? 0 "and the data is in the file"
qemu-img create -q -f qcow2 "$TMP/n.qcow2" 64M
boot nocache2 --kernel "$GUEST" --disk "$TMP/n.qcow2,cache=none" --append "ct.virtio=1" --timeout 60
passed nocache2; r=$?; is $r 0 "qcow2 with cache=none: checks pass (status $status)"; [ $r = 0 ] || show nocache2
guest_data_ok "$TMP/n.qcow2" qcow2; is $? 0 "and qemu-io finds the data in the qcow2 image"
qemu-img check -q "$TMP/n.qcow2"; is $? 0 "qemu-img check: the cache=none qcow2 image is clean"

# ---- two disks, one read-only ----
truncate -s 8M "$TMP/ro.raw"
qemu-io -f raw -c 'write -P 0x22 0 1M' "$TMP/ro.raw" >/dev/null
sum_ro=$(sha256sum <"$TMP/ro.raw")
qemu-img create -q -f qcow2 "$TMP/c.qcow2" 64M
boot two --kernel "$GUEST" --cpus 2 --disk "$TMP/c.qcow2" --disk "$TMP/ro.raw,format=raw,readonly" \
    --append "ct.virtio=2 ct.cpus=2" --timeout 60
passed two; r=$?; is $r 0 "two disks (2 vCPUs: 2 queues each), the second read-only: checks pass (status $status)"; [ $r = 0 ] || show two
ok "the read-only disk answers a write with an I/O error" has two "read-only disk refused a write"
ok "VIRTIO_BLK_F_MQ: both disks serve a read on queue 1 of 2 (one I/O thread per queue)" [ "$(grep -c "queue 1 of 2 served" "$TMP/two.out")" = 2 ]
ok "the read-only disk offers VIRTIO_BLK_F_RO and reads" has two "sector 0 byte 0x22, read-only"
ok "the read-only image is unchanged" [ "$(sha256sum <"$TMP/ro.raw")" = "$sum_ro" ]

# ---- throw-away VMs ----
qemu-img create -q -f qcow2 "$TMP/base.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4K' "$TMP/base.qcow2" >/dev/null
sum_base=$(sha256sum <"$TMP/base.qcow2")
export TMPDIR=$TMP/overlays
mkdir -p "$TMPDIR"
boot snap --kernel "$GUEST" --disk "$TMP/base.qcow2,snapshot" --append "ct.virtio=1" --timeout 60
passed snap; r=$?; is $r 0 "snapshot: the guest writes and reads back through the overlay (status $status)"; [ $r = 0 ] || show snap
ok "the overlay reads the base's data" has snap "sector 0 byte 0x11"
ok "the base image's checksum is unchanged" [ "$(sha256sum <"$TMP/base.qcow2")" = "$sum_base" ]
untouched_ok "$TMP/base.qcow2" qcow2; is $? 0 "none of the guest's writes reached the base"
ok "no overlay file is left behind" [ -z "$(ls -A "$TMPDIR")" ]

"$CALF" run --kernel "$GUEST" --disk "$TMP/base.qcow2,snapshot" --append "ct.virtio=1" \
    --timeout 60 >"$TMP/d1.out" 2>"$TMP/d1.err" </dev/null &
p1=$!
"$CALF" run --kernel "$GUEST" --disk "$TMP/base.qcow2,snapshot" --append "ct.virtio=1" \
    --timeout 60 >"$TMP/d2.out" 2>"$TMP/d2.err" </dev/null &
p2=$!
wait $p1; s1=$?
wait $p2; s2=$?
status=$s1; passed d1; r1=$?; status=$s2; passed d2
r2=$?
is $(( r1 || r2 )) 0 "two disposable VMs on one base at the same time both pass ($s1, $s2)"
[ $r1 = 0 ] && [ $r2 = 0 ] || { show d1; show d2; }
ok "the base is still unchanged" [ "$(sha256sum <"$TMP/base.qcow2")" = "$sum_base" ]

truncate -s 8M "$TMP/base.raw"
sum_raw=$(sha256sum <"$TMP/base.raw")
boot snapraw --kernel "$GUEST" --disk "$TMP/base.raw,format=raw,snapshot" --append "ct.virtio=1" --timeout 60
passed snapraw; r=$?; is $r 0 "snapshot over a raw base passes (status $status)"; [ $r = 0 ] || show snapraw
ok "the raw base is unchanged" [ "$(sha256sum <"$TMP/base.raw")" = "$sum_raw" ]
unset TMPDIR

# ---- image locking ----
qemu-img create -q -f qcow2 "$TMP/l.qcow2" 64M
"$CALF" run --kernel "$GUEST" --disk "$TMP/l.qcow2" --append "ct.virtio=1 ct.hang=1" \
    --timeout 60 >"$TMP/w1.out" 2>"$TMP/w1.err" </dev/null &
p1=$!
# the first VM holds the image once its guest has run (generous: a loaded
# machine can take many seconds to get there)
for _ in $(seq 600); do grep -q "calf-test: PASS" "$TMP/w1.out" && break; sleep 0.1; done
boot w2 --kernel "$GUEST" --disk "$TMP/l.qcow2" --append "ct.virtio=1" --timeout 60
is "$status" 2 "a second writable VM on an image in use is refused with status 2 (got $status)"
grep -qi "lock" "$TMP/w2.err"; is $? 0 "it says the image is locked: $(head -1 "$TMP/w2.err" | cut -c1-140)"
boot w3 --kernel "$GUEST" --disk "$TMP/l.qcow2,snapshot" --append "ct.virtio=1" --timeout 60
is "$status" 2 "a throw-away VM over an image open for writing is refused too (got $status)"
if [ -x "$CALF_BUILD/calf-io" ]; then
    "$CALF_BUILD/calf-io" -c "write -P 0x33 0 512" "$TMP/l.qcow2" >"$TMP/cio.out" 2>&1
    is $(( $? == 0 )) 0 "calf-io writing to the image of a running VM is refused: $(head -1 "$TMP/cio.out" | cut -c1-100)"
fi
qemu-io -c "write -P 0x33 0 512" "$TMP/l.qcow2" >"$TMP/qio.out" 2>&1
is $(( $? == 0 )) 0 "so is qemu-io (QEMU's lock protocol): $(head -1 "$TMP/qio.out" | cut -c1-100)"
kill -TERM $p1; wait $p1
qemu-img check -q "$TMP/l.qcow2"; is $? 0 "the first VM's image is clean after SIGTERM"

# ---- a hostile guest ----
# Its first disk holds 254 MiB of compressed clusters (a small file): a
# full ring of 254 MiB reads of them takes minutes to serve here, so a
# reset or an exit that waited for the ring would show.
qemu-img create -q -f qcow2 "$TMP/h.qcow2" 256M
qemu-io -f qcow2 -c 'write -c -P 0x5a 0 254M' "$TMP/h.qcow2" >/dev/null
truncate -s 8M "$TMP/h.raw"
boot hostile --kernel "$GUEST" --disk "$TMP/h.qcow2" --disk "$TMP/h.raw,format=raw" \
    --append "ct.virtio=2 ct.vhostile=1" --timeout 60 --report "$TMP/hostile.json"
passed hostile; r=$?; is $r 0 "hostile chains on disk 1, then both disks work (status $status)"; [ $r = 0 ] || show hostile
ok "the guest reads the host's data in sector 0 of disk 1, which its reads after each reset must match" has hostile "sector 0 byte 0x5a"
for what in "a buffer outside guest RAM" "a loop in a chain" "a buffer of 4 GiB - 512" \
            "a next index past the queue" "an avail index 1000 ahead" "a queue size of 15" \
            "bus mastering turned off" "an indirect table outside guest RAM" \
            "an indirect table of 24 bytes" "an indirect descriptor in an indirect table" \
            "a loop in an indirect table" "an indirect descriptor with NEXT set"; do
    has hostile "NEEDS_RESET on $what, then served again"
    is $? 0 "$what: the device asks for a reset, calf keeps running and serves again"
done
for what in "an unoffered bit: FEATURES_OK refused" \
            "driver_feature written after FEATURES_OK: ignored" \
            "legacy guest features written after FEATURES_OK: ignored" \
            "legacy guest features written after DRIVER_OK: ignored" \
            "driver_feature written after a legacy DRIVER_OK: ignored" \
            "legacy guest features: unoffered bits masked" \
            "an unoffered bit through the modern block, then a legacy DRIVER_OK: dropped"; do
    ok "virtio-pci features: $what" has hostile "features: $what: ok"
done
has hostile "size_max 1048576, seg_max 254" && has hostile "size_max and seg_max enforced"
is $? 0 "configuration space says size_max 1 MiB and seg_max 254; a request past either is an I/O error, one at either is served"
# TSC cycles the guest counted -> microseconds (its TSC runs at the host's)
KHZ=$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)
cycles=$(tr -d '\r' <"$TMP/hostile.out" | sed -n 's/.*MiB queued, [0-9]* served; the reset took \([0-9]*\) TSC cycles.*/\1/p')
if [ -n "$cycles" ]; then
    us=$(( cycles * 1000 / ${KHZ:-1000000} ))
    echo "# a device reset with 256 requests of 254 MiB queued took $us us ($cycles TSC cycles)"
    is $(( us >= 150000 )) 0 "a device reset with a full ring of 254 MiB reads waits for one bounded piece, not a request or the ring ($us us)"
else
    fail "a device reset with a full ring: the guest reported no time"
fi
ok "and the device serves again after it" has hostile "served again after the reset with a full ring"
# The same through the legacy block: QUEUE_PFN 0 resets the device (as
# in QEMU) and must not wait, under the bus lock, for the ring.
cycles=$(tr -d '\r' <"$TMP/hostile.out" | sed -n 's/.*MiB queued, [0-9]* served; a legacy QUEUE_PFN 0 took \([0-9]*\) TSC cycles.*/\1/p')
if [ -n "$cycles" ]; then
    us=$(( cycles * 1000 / ${KHZ:-1000000} ))
    echo "# a legacy QUEUE_PFN 0 with 256 requests of 254 MiB queued took $us us ($cycles TSC cycles)"
    is $(( us >= 150000 )) 0 "a legacy QUEUE_PFN 0 with a full ring of 254 MiB reads resets the device and waits for one bounded piece, not the ring ($us us)"
else
    fail "a legacy QUEUE_PFN 0 with a full ring: the guest reported no time"
fi
ok "and the device serves again after it" has hostile "served again after a legacy QUEUE_PFN 0 with a full ring"
qemu-img check -q "$TMP/h.qcow2"; is $? 0 "the image is clean after the hostile guest"
# calf's own memory (its RSS less guest RAM) after rings of 254 MiB
# requests: pieces of 1 MiB, so a few MiB, never the requests' size
rss=$(sed -n 's/.*"vmm_rss_kib": \(-\?[0-9]*\).*/\1/p' "$TMP/hostile.json" 2>/dev/null)
echo "# hostile: calf's own memory at exit: ${rss:-?} KiB"
[ -n "$rss" ] && [ "$rss" -lt 65536 ]
is $? 0 "calf's own memory after the hostile rings stays under 64 MiB (${rss:-?} KiB)"

# A full ring left behind: calf must end on --timeout, on a machine reset
# and exit, and on Ctrl-A x as soon as one bounded piece of I/O is done.
t0=$(date +%s%N)
boot flood --kernel "$GUEST" --disk "$TMP/h.qcow2" --append "ct.virtio=1 ct.vflood=1 ct.hang=1" --timeout 3
ms=$(( ($(date +%s%N) - t0) / 1000000 - 3000 ))
echo "# calf ended $ms ms after its --timeout"
has flood "256 requests of 254 MiB queued" && [ "$status" = 124 ] && [ $ms -lt 1000 ] &&
    ! grep -qE "Sanitizer|runtime error" "$TMP/flood.err"
r=$?; is $r 0 "--timeout with 256 requests of 254 MiB queued: calf ends at once (status $status, $ms ms late)"; [ $r = 0 ] || show flood
t0=$(date +%s%N)
boot floodreset --kernel "$GUEST" --disk "$TMP/h.qcow2" --append "ct.virtio=1 ct.vflood=1 ct.reset=1" --timeout 60
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
passed floodreset && [ "$(grep -c "256 requests of 254 MiB queued" "$TMP/floodreset.out")" = 2 ] &&
    has floodreset "reset: second boot" && [ $ms -lt 10000 ]
r=$?; is $r 0 "a machine reset with a full ring, a second boot, then its exit with one: $ms ms in all (status $status)"; [ $r = 0 ] || show floodreset
if command -v script >/dev/null && command -v mkfifo >/dev/null; then
    mkfifo "$TMP/tty.in"
    script -qec "'$CALF' run --kernel '$GUEST' --disk '$TMP/h.qcow2' --append 'ct.virtio=1 ct.vflood=1 ct.hang=1' --timeout 60" \
        /dev/null <"$TMP/tty.in" >"$TMP/tty.out" 2>"$TMP/tty.err" &
    pid=$!
    exec 3>"$TMP/tty.in"
    for _ in $(seq 600); do grep -q "calf-test: PASS" "$TMP/tty.out" && break; sleep 0.1; done
    t0=$(date +%s%N)
    printf '\001x' >&3
    wait $pid
    status=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    exec 3>&-
    echo "# calf ended $ms ms after Ctrl-A x"
    has tty "256 requests of 254 MiB queued" && [ "$status" = 0 ] && [ $ms -lt 1000 ]
    r=$?; is $r 0 "Ctrl-A x with 256 requests of 254 MiB queued: calf ends at once (status $status, $ms ms)"; [ $r = 0 ] || show tty
else
    skip "script(1) or mkfifo missing" "Ctrl-A x with a full ring"
fi

# ---- the same guest driver against QEMU's virtio-blk-pci ----
# Shows the guest's checks encode virtio, not calf's own reading of it
# (QEMU: i440FX + SeaBIOS, the structures in a 64-bit BAR 4).
if QEMU=$(command -v qemu-system-x86_64); then
    qemu-img create -q -f qcow2 "$TMP/q.qcow2" 64M
    qemu-io -f qcow2 -c 'write -P 0x11 0 4K' "$TMP/q.qcow2" >/dev/null
    t0=$(date +%s%N)
    timeout 120 "$QEMU" -enable-kvm -M pc -m 256 -nodefaults -no-user-config -nographic \
        -no-reboot -serial stdio -monitor none -device isa-debug-exit,iobase=0x501,iosize=2 \
        -kernel "$GUEST_ELF" -append "ct.virtio=1 ct.vmsix=1" \
        -drive "file=$TMP/q.qcow2,if=none,id=d0,format=qcow2" \
        -device virtio-blk-pci,drive=d0,disable-legacy=on,serial=qemu-disk \
        >"$TMP/qemu.out" 2>"$TMP/qemu.err" </dev/null
    status=$?
    echo "# qemu: status $status after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    passed qemu; r=$?; is $r 0 "QEMU's virtio-blk-pci passes the same guest checks (status $status)"; [ $r = 0 ] || show qemu
    guest_data_ok "$TMP/q.qcow2" qcow2; is $? 0 "and leaves the same data in its image"
    has qemu "INTx completion through the I/O APIC ok" && has qemu "MSI-X completion, masking and PBA ok"
    is $? 0 "QEMU's device passes the INTx and MSI-X checks too"
    ok "and the rewritten-entry check" has qemu "MSI-X entry rewritten: the interrupt follows it"
    ok "and the PCI_CFG window check" has qemu "PCI_CFG window agrees with the BAR"
    # QEMU's default virtio-blk-pci is transitional: the guest's legacy
    # driver against it, as against calf's.
    qemu-img create -q -f qcow2 "$TMP/ql.qcow2" 64M
    timeout 120 "$QEMU" -enable-kvm -M pc -m 256 -nodefaults -no-user-config -nographic \
        -no-reboot -serial stdio -monitor none -device isa-debug-exit,iobase=0x501,iosize=2 \
        -kernel "$GUEST_ELF" -append "ct.virtio=1 ct.vlegacy=1 ct.vmsix=1" \
        -drive "file=$TMP/ql.qcow2,if=none,id=d0,format=qcow2" \
        -device virtio-blk-pci,drive=d0,serial=qemu-disk \
        >"$TMP/qemul.out" 2>"$TMP/qemul.err" </dev/null
    status=$?
    passed qemul && has qemul "1af4:1001 (transitional)" && has qemul "legacy MSI-X: completion on vector 0"; r=$?
    is $r 0 "QEMU's transitional virtio-blk-pci passes the guest's legacy driver checks (status $status)"; [ $r = 0 ] || show qemul
    guest_data_ok "$TMP/ql.qcow2" qcow2; is $? 0 "and leaves the same data in its image"
else
    echo "# qemu-system-x86_64 not installed: no cross-check of the guest driver"
fi

# ---- bad options ----
boot badopt --kernel "$GUEST" --disk "$TMP/a.qcow2,cache=sometimes" --timeout 60
is "$status" 2 "an unknown --disk option is a setup error (status $status)"
ok "naming the option" has_err badopt "bad option 'cache=sometimes'"
truncate -s 8M "$TMP/a,b.raw"
boot comma --kernel "$GUEST" --disk "$TMP/a,,b.raw,format=raw,serial=with-comma" --append "ct.virtio=1" --timeout 60
passed comma && has comma "serial 'with-comma'"; is $? 0 "',,' stands for a comma in the file name (status $status)"
boot scsi --kernel "$GUEST" --disk "$TMP/a.qcow2,if=scsi" --timeout 60
is "$status" 2 "an interface calf does not have (if=scsi) is refused (status $status)"
ok "naming the option" has_err scsi "bad option 'if=scsi'"
boot nofile --kernel "$GUEST" --disk "$TMP/missing.qcow2" --timeout 60
is "$status" 2 "a missing image is a setup error (status $status)"
ok "naming the file" has_err nofile "missing.qcow2"
# calf run takes no passphrase: an encrypted image, or an overlay on one,
# would give the guest only I/O errors, so it is refused up front
"$CALF_BUILD/calf-img" create -q -f qcow2 --object secret,id=s0,data=calf \
    -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "$TMP/enc.qcow2" 8M
qemu-img create -q -f qcow2 -u -b "$TMP/enc.qcow2" -F qcow2 "$TMP/over-enc.qcow2" 8M
for img in enc over-enc; do
    boot $img --kernel "$GUEST" --disk "$TMP/$img.qcow2" --timeout 60
    is "$status" 2 "$img.qcow2: an encrypted chain is refused before the guest runs (status $status)"
    ok "$img.qcow2: saying it needs a key" has_err $img "is encrypted (luks) and calf run takes no key"
done
ok "over-enc.qcow2: naming the backing file that is" has_err over-enc "over-enc.qcow2: $TMP/enc.qcow2 is encrypted"

done_testing
