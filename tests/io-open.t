#!/bin/bash
# calf-io's open, close, reopen, sigraise, -s, -C and read/write -b
# against qemu-io: the same output and exit status, and the bytes each
# leaves behind read back by the other tool (or compared as files).
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
plan 42

# fresh IMG SIZE ARGS...: the same new image (qemu-img create ARGS IMG
# SIZE) in both dirs
fresh() {
    local img=$1 size=$2; shift 2
    rm -f "$QDIR/$img" "$CDIR/$img"
    (cd "$QDIR" && qemu-img create -q "$@" "$img" "$size") &&
        (cd "$CDIR" && qemu-img create -q "$@" "$img" "$size")
}

# twin_qemu DESC IMG ARGS...: qemu-io ARGS on both dirs' IMG (what each
# tool left behind, read by QEMU) must print the same
twin_qemu() {
    local desc=$1; shift
    is "$(run_capture "$CDIR" qemu-io "$@")" "$(run_capture "$QDIR" qemu-io "$@")" "$desc"
}

help_all=()
for c in abort aio_flush aio_read aio_write alloc close discard flush help info length map open \
    quit read readv reopen sigraise sleep truncate write writev; do help_all+=(-c "help $c"); done
same_io "help texts of every command" "${help_all[@]}"

# ---- open and close ----
fresh t.qcow2 1M -f qcow2
same_io "open -o driver=qcow2, write, close, read without a file" \
    -c 'open -o driver=qcow2 t.qcow2' -c 'write -P 0x11 4k 64k' -c 'close' -c 'read 0 512'
twin_qemu "what open wrote reads back in qemu-io" -f qcow2 -c 'read -P 0x11 4k 64k' \
    -c 'read -P 0 0 4k' t.qcow2
same_io "open twice, then open after close" -c 'open -r t.qcow2' -c 'open t.qcow2' \
    -c 'close' -c 'open -r -o driver=qcow2 t.qcow2' -c 'read -P 0x11 4k 4k'
same_io "open of a missing file, of none" -c 'open nothing.qcow2' -c 'open -r'
same_io "--image-opts and -f are refused together" -f qcow2 --image-opts -c 'read 0 1' \
    driver=qcow2,file.filename=t.qcow2
same_io "open -U read-write is refused" -c 'open -U t.qcow2'
same_io "open -C -r is refused" -c 'open -C -r t.qcow2'
same_io "native AIO (-k, -i native) wants -n" -c 'open -i native nothing.qcow2' \
    -c 'open -k t.qcow2' -c 'open -k -i threads t.qcow2' -c 'open -o file.aio=native t.qcow2' \
    -c 'open -n -k t.qcow2' -c 'reopen -c writeback' -c 'read -P 0x11 4k 4k'
same_io "open with bad -t, -d, -i" -c 'open -t bogus t.qcow2' -c 'open -d bogus t.qcow2' \
    -c 'open -i bogus t.qcow2' -c 'open -x t.qcow2'
mkdir -p "$QDIR/dir" "$CDIR/dir"
for drv in file host_device host_cdrom; do
    same_io "open -o driver=$drv of a directory and /dev/null" \
        -c "open -r -o driver=$drv,filename=dir" \
        -c "open -r -o driver=$drv,filename=/dev/null,locking=off" \
        -c "open -o driver=$drv,filename=dir"
done

# ---- -s: a throw-away overlay ----
fresh s.raw 1M -f raw
qemu-io -f raw -c 'write -P 0x22 0 1M' "$QDIR/s.raw" >/dev/null
cp "$QDIR/s.raw" "$CDIR/s.raw"
same_io "-s: writes are seen, then forgotten" -f raw -s -c 'write -P 0x33 0 64k' \
    -c 'read -P 0x33 0 64k' -c 'read -P 0x22 64k 64k' s.raw
ok "-s leaves the file as it was" cmp "$QDIR/s.raw" "$CDIR/s.raw"
same_io "-s -r is read-only" -f raw -s -r -c 'write 0 4k' -c 'read -P 0x22 0 4k' s.raw
same_io "open -s" -c 'open -s -o driver=raw s.raw' -c 'write -P 0x44 0 4k' -c 'read -P 0x44 0 4k'
ok "open -s leaves the file as it was" cmp "$QDIR/s.raw" "$CDIR/s.raw"

# ---- -C: copy-on-read ----
for d in "$QDIR" "$CDIR"; do
    rm -f "$d/base.qcow2" "$d/top.qcow2"
    qemu-img create -q -f qcow2 -o cluster_size=4k "$d/base.qcow2" 1M
    qemu-io -f qcow2 -c 'write -P 0x55 0 20k' -c 'write -z 512k 64k' "$d/base.qcow2" >/dev/null
    qemu-img create -q -f qcow2 -o cluster_size=64k -b base.qcow2 -F qcow2 "$d/top.qcow2"
done
same_io "-C reads copy the backing data up" -f qcow2 -C -c 'read -P 0x55 1k 2k' \
    -c 'read 500k 40k' -c 'readv -P 0 900k 1k 1k' top.qcow2
is "$(qemu-img map --output=json "$CDIR/top.qcow2" | sed 's/"offset": [0-9]*/"offset": X/')" \
   "$(qemu-img map --output=json "$QDIR/top.qcow2" | sed 's/"offset": [0-9]*/"offset": X/')" \
   "-C left the same clusters in the top image"
for d in "$QDIR" "$CDIR"; do qemu-img rebase -u -b '' "$d/top.qcow2"; done
twin_qemu "the copied clusters hold the backing data" -f qcow2 -c 'read -P 0x55 0 20k' \
    -c 'read -P 0 20k 44k' -c 'read -P 0 512k 64k' top.qcow2
same_io "-C with -r is refused" -f qcow2 -C -r top.qcow2
# the same through QEMU's copy-on-read filter driver
for d in "$QDIR" "$CDIR"; do
    rm -f "$d/top.qcow2"
    qemu-img create -q -f qcow2 -o cluster_size=64k -b base.qcow2 -F qcow2 "$d/top.qcow2"
done
same_io "open -o driver=copy-on-read: reads copy up, read-only is refused" \
    -c 'open -o driver=copy-on-read,file.driver=qcow2 top.qcow2' -c 'read -P 0x55 1k 2k' \
    -c 'read 0 0' -c 'close' -c 'open -r -o driver=copy-on-read,file.driver=qcow2 top.qcow2'
is "$(qemu-img map --output=json "$CDIR/top.qcow2" | sed 's/"offset": [0-9]*/"offset": X/')" \
   "$(qemu-img map --output=json "$QDIR/top.qcow2" | sed 's/"offset": [0-9]*/"offset": X/')" \
   "the copy-on-read filter left the same clusters in the top image"

# ---- reopen ----
fresh r.qcow2 1M -f qcow2 -o compat=1.1
same_io "reopen -w makes a read-only image writable" -f qcow2 -r -c 'reopen -w' \
    -c 'write -P 0x66 0 64k' -c 'reopen -r' -c 'write 0 64k' -c 'read -P 0x66 0 64k' r.qcow2
twin_qemu "what the reopened image wrote reads back" -f qcow2 -c 'read -P 0x66 0 64k' r.qcow2
same_io "reopen keeps node names and drivers" -c 'open -o node-name=foo r.qcow2' \
    -c 'reopen -o node-name=foo' -c 'reopen -o node-name=bar' -c 'reopen -o driver=raw' \
    -c 'reopen -o driver=qcow2,file.driver=file' -c 'reopen -o file.driver=qcow2' \
    -c 'reopen -o file.node-name=x'
same_io "reopen option conflicts and bad values" -f qcow2 -c 'reopen -r -o read-only=on' \
    -c 'reopen -c none -o cache.direct=on' -c 'reopen -r -w' -c 'reopen -o read-only=foo' \
    -c 'reopen -o cache.no-flush=bar' -c 'reopen -c bogus' -c 'reopen x' r.qcow2
same_io "reopen changes only what QEMU lets it change" -c 'open -o node-name=n0 r.qcow2' \
    -c 'reopen -o bogus=1' -c 'reopen -o file.locking=off' -c 'reopen -o force-share=on' \
    -c 'reopen -o backing.x=1' -c 'reopen -o l2-cache-size=1M,discard=unmap' \
    -c 'reopen -o read-only=on' -c 'reopen -r' -c 'write 0 4k' -c 'reopen -o read-only=off' \
    -c 'write -P 0x67 0 4k' -c 'reopen -o cache.direct=on' -c 'reopen -c writeback' \
    -c 'read -P 0x67 0 4k'
same_io "open's read-only option against -r" -c 'open -o read-only=on nothing.qcow2' \
    -c 'open -o read-only=on' -c 'open -o read-only=on r.qcow2' \
    -c 'open -r -o read-only=off r.qcow2' -c 'write -P 0x68 4k 4k' -c 'read -P 0x68 4k 4k'
# lazy refcounts switched on at runtime: a kill after a write leaves the
# image dirty, with the data there
for d in "$QDIR" "$CDIR"; do rm -f "$d/l.qcow2"; qemu-img create -q -f qcow2 "$d/l.qcow2" 1M; done
same_io "reopen -o lazy-refcounts=on, write, sigraise KILL" -f qcow2 \
    -c 'reopen -o lazy-refcounts=on' -c 'write -P 0x77 0 4k' -c "sigraise $(kill -l KILL)" l.qcow2
is "$(qemu-img info --output=json "$CDIR/l.qcow2" | grep -c '"dirty-flag": true')" 1 \
    "the killed image is marked dirty"
twin_qemu "the killed image's data is there" -f qcow2 -r -c 'read -P 0x77 0 4k' l.qcow2
# ... and, as in QEMU, the refcount of the data cluster was left to the
# dirty bit while the new L2 table's was written
is "$(qemu-img check "$CDIR/l.qcow2" 2>&1)" "$(qemu-img check "$QDIR/l.qcow2" 2>&1)" \
    "qemu-img check finds the killed image as QEMU leaves it"
same_io "sigraise TERM flushes what was printed" -c 'help close' -c 'sigraise 15' -c 'help'

# ---- read -b / write -b: the VM state area ----
fresh v.qcow2 6M -f qcow2 -o cluster_size=4k
same_io "write -b and read -b" -f qcow2 -c 'write -b -P 0x88 0 8k' -c 'read -b -P 0x88 0 8k' \
    -c 'read -b -P 0 8k 4k' -c 'write -b 1 512' -c 'read -b 0 100' -c 'read -P 0 0 6M' v.qcow2
twin_qemu "qemu-io reads calf's VM state" -f qcow2 -c 'read -b -P 0x88 0 8k' v.qcow2
same_io "write -b far out (1T: the L1 table grows)" -f qcow2 -c 'write -b -P 0x99 1T 4k' \
    -c 'read -b -P 0x99 1T 4k' v.qcow2
is "$(run_capture "$QDIR" "$CALF_IO" -f qcow2 -r -c 'read -b -P 0x99 1T 4k' \
      -c 'read -b -P 0x88 0 8k' v.qcow2)" \
   "$(run_capture "$QDIR" qemu-io -f qcow2 -r -c 'read -b -P 0x99 1T 4k' \
      -c 'read -b -P 0x88 0 8k' v.qcow2)" "calf-io reads qemu's VM state"
is "$(qemu-img check "$CDIR/v.qcow2" 2>&1 | head -2)" "$(qemu-img check "$QDIR/v.qcow2" 2>&1 | head -2)" \
    "qemu-img check: calf's VM state is clean and takes the clusters qemu's does"
for d in "$QDIR" "$CDIR"; do qemu-img snapshot -c s1 "$d/v.qcow2"; done
same_io "write -b after a snapshot" -f qcow2 -c 'write -b -P 0xaa 0 8k' v.qcow2
for d in "$QDIR" "$CDIR"; do qemu-img snapshot -a s1 "$d/v.qcow2"; done
twin_qemu "the snapshot keeps the VM state it was taken with" -f qcow2 \
    -c 'read -b -P 0x88 0 8k' v.qcow2
