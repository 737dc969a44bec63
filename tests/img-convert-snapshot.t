#!/bin/bash
# calf-img convert -l (from an internal snapshot) against qemu-img convert
# -l: the -l NAME/ID short form and snapshot.id=,snapshot.name= long form,
# raw, qcow2 and compressed qcow2 targets, v2 and v3 sources, a source on
# a backing file, a snapshot smaller than the active image; the target
# equals qemu-img's, the source is left untouched (read-only, the
# snapshot is not applied), and errors and exit codes are qemu-img's.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
cd "$TMP" || exit 1

# base <- src: s1 at 10M, then new data, a grow to 20M, s2, more data
qemu-img create -q -f qcow2 base.qcow2 20M
qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x12 15M 1M' base.qcow2 >/dev/null
mk_src() { # name compat
    qemu-img create -q -f qcow2 -o compat="$2" -b base.qcow2 -F qcow2 "$1" 10M
    qemu-io -c 'write -P 1 1M 1M' -c 'write -z 2M 64k' -c 'write -c -P 5 4M 64k' \
        -c 'write -P 6 9M 100k' "$1" >/dev/null
    qemu-img snapshot -c s1 "$1"
    qemu-io -c 'write -P 2 512k 1M' -c 'discard 4M 64k' "$1" >/dev/null
    qemu-img resize -q "$1" 20M 2>/dev/null # v2: refused with snapshots
    qemu-io -c 'write -P 3 17M 64k' "$1" >/dev/null
    qemu-img snapshot -c 2 "$1"   # a name that is also an id
    qemu-io -c 'write -P 4 0 4M' -c 'write -P 4 17M 64k' "$1" >/dev/null
}
mk_src v3.qcow2 1.1
mk_src v2.qcow2 0.10
sums() { md5sum v3.qcow2 v2.qcow2; }
before=$(sums)

for src in v3.qcow2 v2.qcow2; do
    for l in s1 1 2 snapshot.id=1 snapshot.name=s1 snapshot.name=2 snapshot.id=2,snapshot.name=2; do
        for of in raw qcow2 qcow2-c; do
            fmt=${of%-c}; args=()
            [ "$of" = qcow2-c ] && args=(-c)
            rm -f c.out q.out
            d="$src -l $l -O $of"
            if ! out=$("$CALF_IMG" convert -l "$l" -O "$fmt" "${args[@]}" "$src" c.out 2>&1); then
                fail "$d: calf convert" "$out"; continue
            fi
            qemu-img convert -l "$l" -O "$fmt" "${args[@]}" "$src" q.out
            if [ "$fmt" = raw ]; then
                ok "$d: same bytes as qemu-img" cmp c.out q.out
            else
                ok "$d: same content as qemu-img" qemu-img compare -s c.out q.out
                ok "$d: qemu-img check" qemu-img check -q c.out
            fi
        done
    done
done
is "$(sums)" "$before" "the sources are not modified"
# the snapshot, not the active state, was read: 1M..2M holds 1 in s1, 4 now
"$CALF_IMG" convert -l s1 -O raw v3.qcow2 s1.raw
ok "s1 content, not the active image's" qemu-io -f raw -c 'read -P 1 1M 1M' \
    -c 'read -P 0 2M 64k' -c 'read -P 0x11 2112k 960k' -c 'read -P 0 16M 4M' s1.raw

# errors, as qemu-img prints them
for d in "$QDIR" "$CDIR"; do cp v3.qcow2 "$d/a.qcow2"; cp base.qcow2 "$d/"; done
qemu-img create -q -f raw "$QDIR/r.raw" 1M; cp "$QDIR/r.raw" "$CDIR/r.raw"
for l in nosuch snapshot.name=nosuch snapshot.id=9 snapshot.id=1,snapshot.name=2 \
         snapshot.foo=1 snapshot.id=1,foo=2 '' snapshot.name=; do
    same_img "-l '$l'" convert -l "$l" -O raw a.qcow2 o.raw
    same_img "-l '$l': no target left behind" ls
done
same_img "-l on a raw source" convert -l s1 -O raw r.raw o.raw
same_img "-l with two sources" convert -l s1 -O raw a.qcow2 a.qcow2 o.raw
same_img "-s is not an option of convert any more" convert -s s1 -O raw a.qcow2 o.raw
done_testing
