#!/bin/bash
# calf-img convert -C (copy offloading) against qemu-img convert -C: the
# refusals (with -c, -S, --salvage), the guest view and the allocation map
# of each target; and reflinks: on a filesystem that shares blocks (an XFS
# made on a loop device, where the machine allows one), data a source file
# holds as it is lands in a raw target, or in the new clusters of a qcow2
# one, as shared blocks, with or without -C, and the target reads as the
# source (qemu-img check clean).  On ext4, where convert allocates each
# long run of the target before writing it (BLK_O_FILL), the target's
# data is never left to delayed allocation, and it has the same blocks
# as qemu-img's; where the filesystem refuses to allocate (an ext2 made
# without extents), convert writes as before.
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

# loopfs NAME MOUNT-TYPE MKFS...: makes the filesystem in NAME.img (320 MiB)
# and mounts it on $TMP/NAME; sets $why where it cannot.
mounted=""
trap 'for m in $mounted; do umount "$m" 2>/dev/null; done; rm -rf "$TMP"' EXIT
loopfs() {
    local name=$1 type=$2
    shift 2
    why=""
    if [ "$(id -u)" != 0 ]; then why="not root (mounting a loop device)"
    elif ! command -v "$1" >/dev/null; then why="$1 is not installed"
    elif ! command -v filefrag >/dev/null; then why="filefrag is not installed (e2fsprogs)"
    fi
    [ -n "$why" ] && return 1
    truncate -s 320M "$name.img"
    mkdir -p "$TMP/$name"
    if ! "$@" "$name.img" >"$name.err" 2>&1 ||
        ! mount -t "$type" -o loop "$name.img" "$TMP/$name" 2>>"$name.err"; then
        why="cannot make and mount $name on a loop device here: $(head -1 "$name.err")"
        return 1
    fi
    mounted="$mounted $TMP/$name"
}

# Reflinks on XFS
mnt=$TMP/xfs
loopfs xfs xfs mkfs.xfs -q -m reflink=1
if [ -n "$why" ]; then
    for what in "convert to raw on XFS: reflinks" "convert -C to raw on XFS: reflinks" \
                "convert to qcow2 on XFS: reflinks"; do
        skip "$why" "$what"
    done
else
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

# ext4: each long run of a new target is allocated before it is written.
# filefrag (no sync) shows a run that waits for delayed allocation as
# "delalloc"; one allocated first is "unwritten" until written back: the
# target's data, 1 MiB and 320 KiB, must be that (4 KiB blocks).
qemu-img create -q -f qcow2 fill.qcow2 16M
qemu-io -c 'write -P 1 0 1M' -c 'write -P 7 6M 320k' -c 'write -P 9 12345678 5000' \
    fill.qcow2 >/dev/null
unwritten_blocks() { filefrag -v "$1" | awk '/unwritten/ { n += $6 } END { print n + 0 }'; }
# fill_checks DIR FS-DESC FILLED: raw and qcow2 targets in DIR
fill_checks() {
    local d=$1 fs=$2 filled=$3 n desc
    cp fill.qcow2 "$d/"
    for of in raw qcow2; do
        rm -f "$d/c.out" "$d/q.out"
        "$CALF_IMG" convert -O $of "$d/fill.qcow2" "$d/c.out"
        # at once, before anything can write it back
        n=$(unwritten_blocks "$d/c.out")
        local frag=$(filefrag -v "$d/c.out")
        qemu-img convert -O $of "$d/fill.qcow2" "$d/q.out"
        ok "convert to $of on $fs: reads as the source" \
            qemu-img compare -F $of "$d/fill.qcow2" "$d/c.out"
        if [ $of = raw ]; then
            # qemu-img writes the first block itself (its alignment probe)
            is "$(qemu-img map --output=json -f raw "$d/c.out" | sed 1d)" \
                "$(qemu-img map --output=json -f raw "$d/q.out" | sed 1d)" \
                "convert to raw on $fs: the same blocks allocated as by qemu-img"
        else
            ok "convert to qcow2 on $fs: qemu-img check" qemu-img check -q "$d/c.out"
        fi
        [ "$filled" = yes ] || continue
        desc="convert to $of on $fs: its long runs allocated before they were written"
        if [ "$n" -ge $(((1024 + 320) / 4)) ]; then
            pass "$desc"
        elif ! grep -q delalloc <<<"$frag"; then
            # written back already: filled or not, the extents look the same
            skip "the file was written back before filefrag could look" "$desc"
        else
            fail "$desc" "$n unwritten blocks: $frag"
        fi
    done
}
if loopfs ext4 ext4 mkfs.ext4 -q -F -b 4096; then
    fill_checks "$TMP/ext4" ext4 yes
else
    skip "$why" "convert on ext4"
fi
# an ext2 without extents, mounted by the ext4 driver: fallocate is refused
if loopfs ext2 ext4 mkfs.ext2 -q -F -b 4096; then
    fill_checks "$TMP/ext2" "ext2 (no fallocate)" no
else
    skip "$why" "convert on ext2"
fi

done_testing
