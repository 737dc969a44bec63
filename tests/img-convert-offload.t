#!/bin/bash
# calf-img convert -C (copy offloading) against qemu-img convert -C: the
# refusals (with -c, -S, --salvage), the guest view and the allocation map
# of each target; and reflinks: on a filesystem that shares blocks (an XFS
# made on a loop device, where the machine allows one), data a source file
# holds as it is lands in a raw target, or in the new clusters of a qcow2
# one, as shared blocks, with or without -C, and the target reads as the
# source (qemu-img check clean).
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
cd "$TMP" || exit 1

qemu-img create -q -f qcow2 src.qcow2 16M
qemu-io -c 'write -P 1 0 1M' -c 'write -z 4M 1M' -c 'write -P 7 6M 300k' -c 'write -P 0 8M 64k' \
    -c 'write -P 9 12345678 5000' src.qcow2 >/dev/null
qemu-img convert -O raw src.qcow2 src.raw
qemu-img create -q -f qcow2 -o cluster_size=512 small.qcow2 2M
for k in 7 3 11 5 64 1; do
    qemu-io -c "write -P $k $((k * 1024)) 1536" small.qcow2 >/dev/null
done

# the refusals, word for word
cp src.qcow2 "$QDIR/" && cp src.qcow2 "$CDIR/"
for args in "-C -c" "-C -S 4k" "-C --salvage"; do
    same_img "convert $args refused as qemu-img refuses it" convert $args -O qcow2 src.qcow2 out
done

# conv DESC SRC OUTFMT: -C by both tools, same guest view and map
conv() {
    convert_like_qemu "$1" "$3" -C "$2" || return
    if [ "$3" = raw ]; then
        is "$(qemu-img map --output=json -f raw c.out)" "$(qemu-img map --output=json -f raw q.out)" \
            "$1: the same blocks allocated as by qemu-img -C"
    else
        ok "$1: qemu-img check" qemu-img check -q c.out
    fi
}
conv "-C qcow2 -> raw" src.qcow2 raw
conv "-C raw -> raw" src.raw raw
conv "-C 512-byte clusters -> raw" small.qcow2 raw
conv "-C qcow2 -> qcow2" src.qcow2 qcow2

# Reflinks on XFS
why=""
if [ "$(id -u)" != 0 ]; then why="not root (mounting a loop device)"
elif ! command -v mkfs.xfs >/dev/null; then why="mkfs.xfs is not installed (xfsprogs)"
elif ! command -v filefrag >/dev/null; then why="filefrag is not installed (e2fsprogs)"
fi
mnt=$TMP/xfs
if [ -z "$why" ]; then
    truncate -s 320M xfs.img
    mkdir -p "$mnt"
    if ! mkfs.xfs -q -m reflink=1 xfs.img 2>xfs.err || ! mount -o loop xfs.img "$mnt" 2>>xfs.err; then
        why="cannot make and mount an XFS on a loop device here: $(head -1 xfs.err)"
    fi
fi
if [ -n "$why" ]; then
    for what in "convert to raw on XFS: reflinks" "convert -C to raw on XFS: reflinks" \
                "convert to qcow2 on XFS: reflinks"; do
        skip "$what" "$what: $why"
    done
else
    trap 'umount "$mnt" 2>/dev/null; rm -rf "$TMP"' EXIT
    cp src.qcow2 small.qcow2 "$mnt/"
    for C in "" -C; do
        for s in src small; do
            rm -f "$mnt/out"
            "$CALF_IMG" convert $C -O raw "$mnt/$s.qcow2" "$mnt/out"
            ok "convert ${C:-without -C}, $s.qcow2 to raw on XFS: reads as the source" \
                qemu-img compare -f qcow2 -F raw "$mnt/$s.qcow2" "$mnt/out"
            # filefrag marks extents whose blocks another file shares.
            # 512-byte clusters lie across the filesystem's 4 KiB blocks:
            # those are written, not shared.
            [ $s = small ] && continue
            ok "convert ${C:-without -C}, $s.qcow2 to raw on XFS: its data blocks are the source's (reflinks)" \
                sh -c "filefrag -v '$mnt/out' | grep -q shared"
        done
    done
    # a new qcow2 target: its new clusters share the source's blocks
    qemu-img convert -O raw src.qcow2 "$mnt/src.raw"
    for src in "-f qcow2 $mnt/src.qcow2" "-f raw $mnt/src.raw"; do
        rm -f "$mnt/out.qcow2"
        "$CALF_IMG" convert -O qcow2 $src "$mnt/out.qcow2"
        ok "convert ${src%% /*} to a new qcow2 on XFS: reads as the source" \
            qemu-img compare -F qcow2 $src "$mnt/out.qcow2"
        ok "convert ${src%% /*} to a new qcow2 on XFS: qemu-img check" qemu-img check -q "$mnt/out.qcow2"
        ok "convert ${src%% /*} to a new qcow2 on XFS: its clusters are the source's blocks (reflinks)" \
            sh -c "filefrag -v '$mnt/out.qcow2' | grep -q shared"
    done
    # -n into clusters already there: written over, not shared
    qemu-img create -q -f qcow2 "$mnt/old.qcow2" 16M
    qemu-io -c 'write -P 0x55 0 16M' "$mnt/old.qcow2" >/dev/null
    "$CALF_IMG" convert -n -O qcow2 "$mnt/src.qcow2" "$mnt/old.qcow2"
    ok "convert -n over allocated qcow2 clusters on XFS: reads as the source" \
        qemu-img compare "$mnt/src.qcow2" "$mnt/old.qcow2"
    ok "convert -n over allocated qcow2 clusters on XFS: qemu-img check" qemu-img check -q "$mnt/old.qcow2"
    umount "$mnt"
fi

done_testing
