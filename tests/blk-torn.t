#!/bin/bash
# Races a cold review of the block layer found (tests/unit/blk-torn.c):
# a read of an encrypted image (LUKS with CBC, qcow2 with AES) beside a
# read-modify-write of the same sector must never decrypt a half-written
# sector; a bitmap enabled while another thread writes must record the
# writes after it.  Both failed before their fixes (16 torn reads in 2M,
# 5 unrecorded writes in 100k).
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img
TORN=$CALF_BUILD/tests/blk-torn
[ -x "$TORN" ] || skip_all "$TORN not built (make test-progs)"
plan 4

"$CALF_IMG" create -q -f luks --object secret,id=s0,data=calf \
    -o key-secret=s0,cipher-mode=cbc,ivgen-alg=essiv,iter-time=10 "$TMP/l.luks" 1M
ok "luks (cbc-essiv): no read decrypts a sector being rewritten" \
    "$TORN" crypt "$TMP/l.luks" luks 1000000
"$CALF_IMG" create -q -f qcow2 --object secret,id=s0,data=calf \
    -o encrypt.format=aes,encrypt.key-secret=s0 "$TMP/a.qcow2" 1M
ok "qcow2 (aes): no read decrypts a sector being rewritten" \
    "$TORN" crypt "$TMP/a.qcow2" qcow2 1000000

qemu-img create -q -f qcow2 "$TMP/b.qcow2" 8M
qemu-img bitmap --add "$TMP/b.qcow2" b0
ok "a bitmap enabled beside a writer records the writes after it" \
    "$TORN" bitmap "$TMP/b.qcow2" 100000
ok "qemu-img check is clean after the bitmap race" qemu-img check -q "$TMP/b.qcow2"
