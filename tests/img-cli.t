#!/bin/bash
# calf-img's command line: global options, unknown and not yet supported
# commands, exit codes.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img

same_img "no arguments"
same_img "unknown command" foo
same_img "unknown global option" -x info
is "$("$CALF_IMG" -V; echo "exit $?")" "$(printf 'calf-img version 0.1\nexit 0')" "-V"
is "$("$CALF_IMG" --version; echo "exit $?")" "$(printf 'calf-img version 0.1\nexit 0')" "--version"
ok "-h prints the usage and exits 0" bash -c "'$CALF_IMG' -h | grep -q '^usage: calf-img'"
ok "--help lists create" bash -c "'$CALF_IMG' --help | grep -q '^  create '"
ok "create -h prints the usage" bash -c "'$CALF_IMG' create -h | grep -q '^usage: calf-img'"
# Commands other issues fill in: either they work (and want a file
# here) or they say so; never "Command not found".
for c in check convert resize snapshot commit rebase amend measure bench; do
    out=$("$CALF_IMG" $c 2>&1); rc=$?
    if [ $rc -ne 0 ] && ! grep -q "Command not found" <<<"$out"; then
        pass "$c is known ($rc)"
    else
        fail "$c is known" "$out (exit $rc)"
    fi
done
# -o lists qemu-img refuses before parsing them (empty, leading comma,
# a dangling trailing one)
for o in "" , a=b, ,a; do
    same_img "create -o '$o'" create -f qcow2 -o "$o" x.qcow2 1M
    same_img "convert -o '$o'" convert -o "$o" x.raw y.raw
done
done_testing
