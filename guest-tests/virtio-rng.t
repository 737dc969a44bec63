#!/bin/bash
# virtio-rng end to end (devices/virtio/rng.c).  The test guest
# (firmware/testguest/virtio-rng.c, ct.vrng=LEN) finds the function,
# sets it up through the modern interface and reads LEN random bytes
# twice: both requests come back full and differ; under --rng
# max-bytes=16,period=60000 the first gets 16 bytes and the second waits
# for the next period; --rng off takes the function away and
# disable-legacy makes it 1af4:1044.  Then the small Linux kernel
# (CONFIG_HW_RANDOM_VIRTIO): with virtio-rng its crng is ready during
# the boot ("random: crng init done" after the driver enables the
# function); with --rng off it is not, up to the end of the boot (the
# times go into the output).
. "$(dirname "$0")/lib.sh"
need_kvm

passed() {
    [ "$status" = 1 ] && has "$1" "calf-test: PASS" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}
first_len() { sed -n 's/.*virtio-rng: first request: \([0-9]*\) of.*/\1/p' "$TMP/$1.out" | tr -d '\r'; }

boot dflt --kernel "$GUEST" --append "ct.vrng=64" --timeout 60
passed dflt && has dflt "virtio-rng 0x1005 at slot" && [ "$(first_len dflt)" = 64 ]
is $? 0 "the test guest reads 64 random bytes from the default virtio-rng" || show dflt
diff=$(sed -n 's/.*second request: 64 bytes, \([0-9]*\) differ.*/\1/p' "$TMP/dflt.out" | tr -d '\r')
[ "${diff:-0}" -ge 32 ]
is $? 0 "a second request gets other bytes (${diff:-?} of 64 differ)"
grep -a "first request" "$TMP/dflt.out" | tr -d '\r' | sed 's/^/# /'

boot lim --kernel "$GUEST" --append "ct.vrng=64" --rng max-bytes=16,period=60000 --timeout 60
passed lim && [ "$(first_len lim)" = 16 ] && has lim "second request: waiting"
is $? 0 "max-bytes=16,period=60000: 16 of 64 bytes, then the next request waits" || show lim

boot off --kernel "$GUEST" --append "ct.vrng=64" --rng off --timeout 60
[ "$status" = 3 ] && has off "no virtio-rng function"
is $? 0 "--rng off: the guest finds no virtio-rng (status $status)" || show off

boot modern --kernel "$GUEST" --append "ct.vrng=4096" --rng on,disable-legacy --timeout 60
passed modern && has modern "virtio-rng 0x1044 at slot" && [ "$(first_len modern)" = 4096 ]
is $? 0 "--rng on,disable-legacy: 4096 bytes from 1af4:1044" || show modern

boot bad --kernel "$GUEST" --rng max-bytes=0 --timeout 60
[ "$status" = 2 ] && has_err bad "calf: --rng: bad max-bytes '0'"
is $? 0 "--rng max-bytes=0 is refused with one message (status $status)" || show bad

# The small Linux kernel, without a root filesystem: the boot ends in a
# panic (--no-reboot), and "random: crng init done" must come before
# it with virtio-rng, and not with --rng off.
need_linux
crng_at() { tr -d '\r' <"$TMP/$1.out" | sed -n 's/^\[ *\([0-9.]*\)\] random: crng init done.*/\1/p' | head -1; }
panic_at() { tr -d '\r' <"$TMP/$1.out" | sed -n 's/^\[ *\([0-9.]*\)\] Kernel panic.*/\1/p' | head -1; }
boot lrng --kernel "$LINUX_KERNEL" -m 256M --append "$LINUX_APPEND" --no-reboot \
    --expect "Kernel panic" --timeout 900
lrng_status=$status
boot lnorng --kernel "$LINUX_KERNEL" -m 256M --rng off --append "$LINUX_APPEND" --no-reboot \
    --expect "Kernel panic" --timeout 900
echo "# with virtio-rng: crng init done at $(crng_at lrng) s, boot ended at $(panic_at lrng) s (guest time)"
echo "# with --rng off:  crng init done at $(crng_at lnorng) s, boot ended at $(panic_at lnorng) s"
tr -d '\r' <"$TMP/lrng.out" | grep -E "virtio-pci|random:" | sed 's/^/#   /'
[ "$lrng_status" = 0 ] && [ -n "$(crng_at lrng)" ] && [ -n "$(panic_at lrng)" ] &&
    tr -d '\r' <"$TMP/lrng.out" | grep -q "virtio-pci 0000:00:02.0: enabling device"
is $? 0 "Linux enables the virtio-rng function and its crng is ready during the boot" || show lrng
[ -n "$(panic_at lnorng)" ] && [ -z "$(crng_at lnorng)" ]
is $? 0 "without it (--rng off) the crng is still not ready when the boot ends" || show lnorng
done_testing
