#!/bin/bash
# calf-img rebase against qemu-img rebase on copies of the same images:
# safe mode onto another backing file (differences copied into the
# overlay), -b "" (detach: standalone with identical content), -u (link
# only), -p progress and qemu-img's messages.  After every calf rebase
# qemu-img check is clean and the guest view matches qemu-img's result.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
driver_check qcow2

clean() { ok "$1: qemu-img check clean" qemu-img check -q "$2"; }
same_view() { ok "$1: same guest view as qemu-img" qemu-img compare -q "$2" "$3"; }
backing() { qemu-img info -U "$1" | grep '^backing file' | sed 's/ (actual path: .*)//'; }

mkimgs() { # OPTS
    rm -f "$QDIR"/* "$CDIR"/*
    in_both qemu-img create -q -f qcow2 -o "$1" base.qcow2 32M
    in_both qemu-io -c 'write -P 1 0 4M' -c 'write -P 8 20M 1M' base.qcow2
    in_both qemu-img create -q -f qcow2 -o "$1" base2.qcow2 48M
    in_both qemu-io -c 'write -P 1 0 2M' -c 'write -P 6 2M 512' -c 'write -P 7 36M 1M' \
        -c 'write -z 3M 64k' base2.qcow2
    in_both qemu-img create -q -f raw base3.raw 8M
    in_both qemu-io -f raw -c 'write -P 1 0 1M' base3.raw
    in_both qemu-img create -q -f qcow2 -o "$1" -b base.qcow2 -F qcow2 top.qcow2 64M
    in_both qemu-io -c 'write -P 3 1536k 1M' -c 'write -c -P 4 8M 64k' -c 'write -z 20M 64k' \
        -c 'write -P 5 2100k 4k' top.qcow2
}

for opts in "compat=1.1" "compat=0.10" "cluster_size=4k" "extended_l2=on"; do
    for args in "-b base2.qcow2 -F qcow2" "-b base3.raw -F raw" "-b ''" "-u -b base2.qcow2 -F qcow2"; do
        d="[$opts] rebase $args"
        mkimgs "$opts"
        qemu-img convert -O raw "$CDIR/top.qcow2" "$TMP/before.raw"
        (cd "$QDIR" && eval qemu-img rebase -q "$args" top.qcow2)
        out=$(cd "$CDIR" && eval '"$CALF_IMG"' rebase "$args" top.qcow2 2>&1)
        is "$out" "" "$d: no output"
        clean "$d" "$CDIR/top.qcow2"
        same_view "$d" "$CDIR/top.qcow2" "$QDIR/top.qcow2"
        is "$(backing "$CDIR/top.qcow2")" "$(backing "$QDIR/top.qcow2")" "$d: same backing link"
        case $args in
        -u*) ;;
        *) ok "$d: content unchanged" qemu-img compare -q "$CDIR/top.qcow2" "$TMP/before.raw" ;;
        esac
    done
done
# detach: standalone, identical content
mkimgs compat=1.1
qemu-img convert -O raw "$CDIR/top.qcow2" "$TMP/before.raw"
"$CALF_IMG" rebase -b "" "$CDIR/top.qcow2"
is "$(backing "$CDIR/top.qcow2")" "" "detach: no backing file left"
ok "detach: identical content" qemu-img compare -q "$CDIR/top.qcow2" "$TMP/before.raw"
ok "detach: data reads back through qemu-io" qemu-io -c 'read -P 1 0 1M' -c 'read -P 3 1536k 512k' \
    -c 'read -P 5 2100k 4k' -c 'read -P 8 20544k 64k' -c 'read -P 0 20M 64k' "$CDIR/top.qcow2"

# progress
mkimgs compat=1.1
out=$(cd "$CDIR" && "$CALF_IMG" rebase -p -b base2.qcow2 -F qcow2 top.qcow2 | od -An -c | tr -d ' \n')
case $out in "(0.00/100%)\r"*"(100.00/100%)\r\n") pass "rebase -p progress" ;;
*) fail "rebase -p progress" "$out" ;; esac

# messages
mkimgs compat=1.1
same_img "no -b" rebase top.qcow2
same_img "no backing format" rebase -b base2.qcow2 top.qcow2
same_img "-u without backing format" rebase -u -b base2.qcow2 top.qcow2
same_img "new backing file missing" rebase -b nonexist.qcow2 -F qcow2 top.qcow2
same_img "missing image" rebase -b base.qcow2 -F qcow2 nonexist.qcow2
same_img "-u with a missing new backing file" rebase -u -b nonexist.qcow2 -F qcow2 top.qcow2
is "$(backing "$CDIR/top.qcow2")" "$(backing "$QDIR/top.qcow2")" "-u onto a missing file: same link"

done_testing
