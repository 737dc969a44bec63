#!/bin/bash
# Random write/zero/discard sequences (fixed seeds) applied by qemu-io to
# raw and qcow2 images; calf-img map and compare and calf-io map/alloc must
# then print what qemu-img and qemu-io print.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io python3

gen() { # gen SEED SIZE: one qemu-io command per line
    python3 - "$1" "$2" <<'PY'
import random, sys
r = random.Random(int(sys.argv[1])); size = int(sys.argv[2])
for _ in range(r.randint(1, 25)):
    kind = r.choice(['write', 'write', 'zero', 'zerou', 'discard'])
    unit = r.choice([512, 4096, 65536])
    off = r.randrange(0, size // unit) * unit
    ln = min(r.randint(1, 4) * unit, size - off)
    if kind == 'write':
        print('write -P %d %d %d' % (r.randint(0, 255), off, ln))
    elif kind == 'zero':
        print('write -z %d %d' % (off, ln))
    elif kind == 'zerou':
        print('write -z -u %d %d' % (off, ln))
    else:
        print('discard %d %d' % (off, ln))
PY
}

# make_image SPEC: a.img (and its backing b.img) in $TMP/r; prints the format
make_image() {
    local fmt=${1%%:*} opts=${1#*:}
    cd "$TMP/r" || return 1
    if [ "$fmt" = overlay ]; then
        qemu-img create -q -f qcow2 b.img 4M && qemu-io -c 'write -P 9 0 4M' b.img >/dev/null &&
            qemu-img create -q -f qcow2 -b b.img -F qcow2 a.img 6M && echo qcow2
    else
        qemu-img create -q -f "$fmt" $opts a.img 4M && echo "$fmt"
    fi
}

specs=("raw:" "qcow2:" "qcow2:-o cluster_size=4k" "qcow2:-o extended_l2=on"
       "qcow2:-o compat=0.10,cluster_size=512" "overlay:")
driver_check qcow2
for spec in "${specs[@]}"; do
    for seed in 1 2 3 4 5 6 7 8; do
        rm -rf "$TMP/r" && mkdir -p "$TMP/r" && cd "$TMP/r" || exit 1
        fmt=$(make_image "$spec") || { fail "$spec seed $seed: setup"; continue; }
        size=$(qemu-img info --output=json a.img | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
        args=()
        while read -r c; do args+=(-c "$c"); done < <(gen "$seed" "$size")
        qemu-io -f "$fmt" "${args[@]}" a.img >/dev/null 2>&1
        cp --sparse=always a.img c.img
        qemu-io -f "$fmt" -c "write -P 77 $((seed * 4096 % size)) 512" c.img >/dev/null 2>&1
        want="" got=""
        for o in "" --output=json; do
            want+=$(qemu-img map $o a.img 2>&1)$'\n'
            got+=$("$CALF_IMG" map $o a.img 2>&1)$'\n'
        done
        for p in "a.img c.img" "-s a.img c.img" "a.img a.img" "-s a.img a.img"; do
            want+=$(qemu-img compare $p 2>&1; echo "exit $?")$'\n'
            got+=$("$CALF_IMG" compare $p 2>&1; echo "exit $?")$'\n'
        done
        want+=$(qemu-io -f "$fmt" -c map -c 'alloc 0 1M' a.img 2>&1)
        got+=$("$CALF_IO" -f "$fmt" -c map -c 'alloc 0 1M' a.img 2>&1)
        is "$got" "$want" "$spec seed $seed: map, compare, calf-io map"
        cd "$TMP" || exit 1
    done
done
done_testing
