#!/bin/bash
# Disk integrity under concurrency, through the VMM: the test guest
# (firmware/testguest/dstress.c, ct.dstress=1) keeps requests outstanding
# on the four queues of a virtio-blk disk at once (one calf I/O thread
# each) while IDE bus-master DMA runs on a second disk; both are qcow2
# overlays over one raw backing file.  Writes land in disjoint ranges that
# share clusters (copy on write from the backing file, gap reads beside
# them) and 4 KiB blocks (read-modify-write under cache=none), then in
# ranges overlapping the first ones once those completed.  Every sector
# names its writer (queue, request, sector); the guest checks what it
# reads back, then the host checks every sector of both images with
# qemu-img dd (the guest's last writes, and the backing file's data where
# the guest wrote nothing) and runs qemu-img check.  Once with cache=none
# and once with cache=writeback.
# The cache=none run adds a hostile request: 254 segments of 1 MiB - 512
# bytes (~254 MiB), 512-byte but never 4 KiB aligned, written and read
# back.  calf's peak RSS (GNU time's maxrss: every page it ever had,
# guest RAM included) must stay within guest RAM + 64 MiB, far below
# guest RAM + the request: calf serves it in bounded pieces, it does not
# copy it.
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd qemu-img qemu-io perl sha256sum
GNU_TIME=
if /usr/bin/time -f %M true >/dev/null 2>&1; then GNU_TIME=/usr/bin/time; fi
# A sanitizer's shadow memory is RSS too (TSan: ~1.5 GiB here): the
# memory bounds hold for a plain build only.
SANITIZED=
if ldd "$CALF" 2>/dev/null | grep -qE 'lib(a|t|ub)san'; then SANITIZED=1; fi

MEM_MIB=288     # the huge request's buffer is 32-286 MiB of guest RAM
NQ=4            # calf gives a virtio-blk disk one queue per vCPU
HSECTOR=16379
HEND=$(( HSECTOR + 254 * 2047 ))

passed() {
    [ "$status" = 1 ] && has "$1" "calf-test: PASS" && has "$1" "calf-test: dstress: ok" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

# boot_rss NAME ARGS...: as boot, under GNU time where there is one:
# $TMP/NAME.rss then holds calf's peak RSS in KiB.
boot_rss() {
    local name=$1 t0 t1
    shift
    t0=$(date +%s%N)
    if [ -n "$GNU_TIME" ]; then
        $GNU_TIME -o "$TMP/$name.rss" -f %M "$CALF" run "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    else
        "$CALF" run "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    fi
    status=$?
    t1=$(date +%s%N)
    echo "# $name: status $status after $(( (t1 - t0) / 1000000 )) ms"
}

# The backing file: 8 MiB, every 64-bit word of sector s is 0xBA << 56 | s.
perl -e 'for my $s (0 .. 16383) { print pack("Q<", 0xba << 56 | $s) x 64 }' >"$TMP/base.raw"
sum_base=$(sha256sum <"$TMP/base.raw")

# verify IMAGE KIND SECTORS: dumps the first SECTORS sectors of the qcow2
# IMAGE and checks each against what dstress.c says it must hold (KIND
# virtio, virtio+huge or ide).  Prints "backing B/NB written W/NW zero
# Z/NZ" (sectors that differ / sectors of that kind), then up to three
# differences.
verify() {
    # whole MiB blocks: qemu-img dd makes one read per block
    qemu-img dd -f qcow2 -O raw bs=1M count=$(( ($3 + 2047) / 2048 )) if="$1" of="$TMP/dump.raw" ||
        { echo "qemu-img dd failed"; return; }
    perl -e '
        use strict; use warnings;
        my ($file, $kind, $n, $nq, $hs, $he) = @ARGV;
        sub st { my ($tag, $r, $q, $i, $s) = @_; $tag << 56 | $r << 52 | $q << 48 | $i << 40 | $s }
        sub before { my $s = shift; $s < 16384 ? st(0xba, 0, 0, 0, $s) : 0 }
        sub virtio {
            my $s = shift;
            if ($kind eq "virtio+huge" && $s >= $hs && $s < $he) {
                my $k = ($s - $hs) % 2047;
                return $k % 128 == 0 || $k == 2046 ? st(0x4b, 0, 0, 0, $s) : before($s);
            }
            return before($s) if $s < 2048;
            my $rel = $s - 2048;
            if ($rel >= 20) {
                my $i = int(($rel - 20) / 44);
                return st(0xd5, 2, ($i + 2) % $nq, $i, $s) if $i < 32 && $i % 8 != 7;
            }
            my $i = int($rel / 44);
            return st(0xd5, 1, ($i + 1) % $nq, $i, $s) if $i < 32 && $rel % 44 < 37;
            return before($s);
        }
        sub ide {
            my $s = shift;
            return st(0x1d, 2, 15, 1, $s) if $s >= 4163 && $s < 4163 + 130;
            return st(0x1d, 1, 15, 0, $s) if $s >= 4099 && $s < 4099 + 130;
            return before($s);
        }
        open my $f, "<", $file or die "$file: $!";
        binmode $f;
        my (%bad, %all, @say, $buf);
        my $zero = "\0" x 512;
        for (my $s = 0; $s < $n && read($f, $buf, 512) == 512; $s++) {
            my $w = $kind eq "ide" ? ide($s) : virtio($s);
            my $what = !$w ? "zero" : $w >> 56 == 0xba ? "backing" : "written";
            $all{$what}++;
            next if $buf eq ($w ? pack("Q<", $w) x 64 : $zero);
            $bad{$what}++;
            push @say, sprintf("sector %d: %016x..., expected %016x", $s, unpack("Q<", $buf), $w) if @say < 3;
        }
        print join(" ", map { sprintf "%s %d/%d", $_, $bad{$_} // 0, $all{$_} // 0 } qw(backing written zero)), "\n";
        print "$_\n" for @say;
    ' "$TMP/dump.raw" "$2" "$3" "$NQ" "$HSECTOR" "$HEND"
    rm -f "$TMP/dump.raw"
}

# bad_of KIND: how many sectors of that kind differ in $v ("" if none checked)
bad_of() { sed -n "1s/.*$1 \([0-9]*\)\/[1-9][0-9]*.*/\1/p" <<<"$v"; }

for cache in none writeback; do
    extra= size=16448 what="virtio"
    if [ $cache = none ]; then
        extra=" ct.dhuge=1" size=$(( HEND + 64 )) what="virtio+huge"
    fi
    qemu-img create -q -f qcow2 -b "$TMP/base.raw" -F raw "$TMP/v-$cache.qcow2" 320M
    qemu-img create -q -f qcow2 -b "$TMP/base.raw" -F raw "$TMP/i-$cache.qcow2" 64M
    boot_rss $cache --kernel "$GUEST" --cpus $NQ --memory ${MEM_MIB}M \
        --disk "$TMP/v-$cache.qcow2,cache=$cache" --disk "$TMP/i-$cache.qcow2,if=ide,cache=$cache" \
        --append "ct.dstress=1 ct.dide=1$extra" --report "$TMP/$cache.json" --timeout 120
    passed $cache; r=$?
    is $r 0 "cache=$cache: the guest's own checks of $NQ virtio queues and IDE DMA at once pass (status $status)"
    [ $r = 0 ] || show $cache
    tr -d '\r' <"$TMP/$cache.out" | grep -E "dstress: (virtio-blk with|rounds checked|huge)" | sed 's/^/# /'
    has $cache "virtio-blk with $NQ queues, IDE DMA beside"
    is $? 0 "cache=$cache: the guest drove $NQ virtio-blk queues, with IDE DMA beside"

    qemu-img check -q "$TMP/v-$cache.qcow2"; is $? 0 "cache=$cache: qemu-img check: the virtio disk's overlay is clean"
    qemu-img check -q "$TMP/i-$cache.qcow2"; is $? 0 "cache=$cache: qemu-img check: the IDE disk's overlay is clean"

    v=$(verify "$TMP/v-$cache.qcow2" "$what" $size)
    echo "# virtio disk, sectors that differ/checked: $(head -1 <<<"$v")"
    [ "$(bad_of written)" = 0 ]; r=$?
    is $r 0 "cache=$cache: qemu-img dd finds every sector the virtio queues wrote last$([ $cache = none ] && echo ", and the huge request's")"
    [ "$(bad_of backing)" = 0 ]; r2=$?
    is $r2 0 "cache=$cache: the virtio disk's sectors the guest never wrote still read the backing file"
    if [ $cache = none ]; then
        ok "cache=none: the huge request's unstamped sectors past the backing file read zeros" [ "$(bad_of zero)" = 0 ]
    fi
    [ $r = 0 ] && [ $r2 = 0 ] || sed 's/^/#   /' <<<"$v"

    v=$(verify "$TMP/i-$cache.qcow2" ide 16448)
    echo "# IDE disk, sectors that differ/checked: $(head -1 <<<"$v")"
    [ "$(bad_of written)" = 0 ] && [ "$(bad_of backing)" = 0 ]; r=$?
    is $r 0 "cache=$cache: the IDE disk holds both DMA writes (the later one on top) and the backing file's data around them"
    [ $r = 0 ] || sed 's/^/#   /' <<<"$v"

    vmm=$(sed -n 's/.*"vmm_rss_kib": \(-\?[0-9]*\).*/\1/p' "$TMP/$cache.json" 2>/dev/null)
    if [ -n "$SANITIZED" ]; then
        skip "a sanitizer build's shadow memory counts as RSS" "cache=$cache: calf's peak RSS" "cache=$cache: calf's own memory at exit"
    elif [ -n "$GNU_TIME" ]; then
        peak=$(tail -1 "$TMP/$cache.rss")
        limit=$(( (MEM_MIB + 64) * 1024 ))
        echo "# cache=$cache: calf's peak RSS $(( peak / 1024 )) MiB (guest RAM $MEM_MIB MiB); at exit, less guest pages: $(( ${vmm:-0} / 1024 )) MiB"
        [ "$peak" -gt 0 ] && [ "$peak" -le $limit ]
        is $? 0 "cache=$cache: calf's peak RSS ($peak KiB) stays within guest RAM + 64 MiB ($limit KiB)"
    else
        skip "no GNU time (/usr/bin/time) to measure calf's peak RSS" "cache=$cache"
    fi
    if [ -z "$SANITIZED" ]; then
        [ -n "$vmm" ] && [ "$vmm" -ge 0 ] && [ "$vmm" -le 65536 ]
        is $? 0 "cache=$cache: calf's own memory at exit (--report vmm_rss_kib, guest pages left out) is under 64 MiB (${vmm:-none} KiB)"
    fi
    rm -f "$TMP/v-$cache.qcow2" "$TMP/i-$cache.qcow2"
done
ok "the backing file is unchanged" [ "$(sha256sum <"$TMP/base.raw")" = "$sum_base" ]

done_testing
