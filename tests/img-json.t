#!/bin/bash
# File names and option trees as QEMU takes them (issue 16): json:{...}
# names (single quotes, nested or dotted keys, "backing": null), the
# file: prefix, --image-opts with backing.* options, json: backing file
# names stored in an image, and the null-co driver.  Data written
# through one form is read back through another by QEMU's own tools;
# what the tools print is compared with qemu-img and qemu-io.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img qemu-io
need_cmd python3
plan 35

in_both qemu-img create -f qcow2 base.qcow2 4M
in_both qemu-io -c "write -P 0x42 0 64k" -c "write -P 0x43 1M 64k" base.qcow2
in_both qemu-img create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 4M

# --- json: names ---
J="json:{'driver': 'qcow2', 'file': {'driver': 'file', 'filename': 'top.qcow2'}}"
out=$(cd "$CDIR" && "$CALF_IO" -c "write -P 0x51 64k 64k" "$J" 2>&1)
is "$(echo "$out" | filter_io)" "wrote 65536/65536 bytes at offset 65536
64 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)" "calf-io writes through a json: name"
ok "qemu-io reads calf's write and the backing data" \
    qemu-io -c "read -P 0x51 64k 64k" -c "read -P 0x42 0 64k" "$CDIR/top.qcow2"
in_both qemu-io -c "write -P 0x51 64k 64k" top.qcow2 # keep the two directories alike

same_io "json: name with backing null reads zeros where the top has nothing" \
    -c "read -P 0 0 64k" -c "read -P 0x51 64k 64k" \
    "json:{'driver':'qcow2','file':{'driver':'file','filename':'top.qcow2'},'backing':null}"
same_io "dotted and nested keys mean the same" \
    -c "read -P 0x42 0 64k" 'json:{"driver":"qcow2","file.filename":"top.qcow2"}'
same_img "info of a reconstructable json: name shows the file" \
    info "json:{'driver':'qcow2','file':{'driver':'file','filename':'top.qcow2'}}"
same_img "info --backing-chain of a json: name" \
    info --backing-chain 'json:{"driver":"qcow2","file":{"filename":"top.qcow2"}}'
same_img "an option the format does not take: QEMU's error" \
    info 'json:{"driver":"qcow2","file.filename":"top.qcow2","bogus":1}'
same_img "an option the file does not take: QEMU's error" \
    info 'json:{"driver":"qcow2","file.filename":"top.qcow2","file.bogus":1}'
same_img "no driver, no file" info 'json:{}'
same_img "a driver and no file" info 'json:{"driver":"qcow2"}'
same_img "unterminated JSON" info 'json:{"driver":"qcow2"'
same_img "JSON that is not an object" info 'json:[1]'
same_img "an empty json: name" info json:

deep=$(printf '{"a":%.0s' {1..40})1$(printf '}%.0s' {1..40})
out=$(cd "$CDIR" && "$CALF_IMG" info "json:$deep" 2>&1); rc=$?
is "$rc:$(echo "$out" | wc -l):${out##*: }" "1:1:JSON parse error, too deeply nested" \
    "hostile nesting: one clear error"

# options QEMU takes for any node
same_io "read-only=on refuses a writable open" -c "write 0 512" \
    'json:{"driver":"qcow2","file.filename":"top.qcow2","read-only":true}'
same_io "force-share needs a read-only open" -c "read 0 512" \
    'json:{"driver":"qcow2","file.filename":"top.qcow2","force-share":true}'
same_io "cache, discard and detect-zeroes options are taken" -c "write -P 0x71 2M 4k" --image-opts \
    "driver=qcow2,file.filename=top.qcow2,cache.direct=on,cache.no-flush=on,discard=unmap,detect-zeroes=on"
ok "qemu-io reads what calf wrote with cache.direct=on" \
    qemu-io -c "read -P 0x71 2M 4k" "$CDIR/top.qcow2"
same_io "a detect-zeroes value QEMU does not know" -c "read 0 512" --image-opts \
    "driver=qcow2,file.filename=top.qcow2,detect-zeroes=bogus"

# a json: backing file name stored in an image: not relative to the
# image's directory (as QEMU, the names in it are the process's)
in_both mkdir sub
in_both qemu-img create -f qcow2 -b 'json:{"driver":"qcow2","file":{"filename":"base.qcow2"}}' \
    -F qcow2 sub/jtop.qcow2
same_img "create -b json:{...}: the Formatting line doubles its commas" \
    create -f qcow2 -b "json:{'driver':'qcow2','file.filename':'base.qcow2'}" -F qcow2 j2.qcow2
same_io "reads through a json: backing file name" \
    -c "read -P 0x43 1M 64k" sub/jtop.qcow2
same_img "info --backing-chain follows a json: backing file name" info --backing-chain sub/jtop.qcow2

# --- --image-opts: the backing node's own options ---
same_io "--image-opts with backing.driver and backing.file.filename" --image-opts \
    -c "read -P 0x42 0 64k" -c "read -P 0x51 64k 64k" \
    "driver=qcow2,file.driver=file,file.filename=top.qcow2,backing.driver=qcow2,backing.file.filename=base.qcow2,backing.node-name=b0"
same_img "info --backing-chain --image-opts names the backing files" \
    info --backing-chain --image-opts "driver=qcow2,file.driver=file,file.filename=top.qcow2"

# --- the file: prefix ---
in_both qemu-img create -f qcow2 file:image:base.qcow2 1M
out=$(cd "$CDIR" && "$CALF_IMG" create -f qcow2 -b ./image:base.qcow2 -F qcow2 file:image:top.qcow2 2>&1 &&
      "$CALF_IO" -c "write -P 0x61 0 4k" file:image:top.qcow2 2>&1)
ok "qemu-io reads what calf wrote to file:image:top.qcow2" \
    qemu-io -c "read -P 0x61 0 4k" "file:$CDIR/image:top.qcow2"
in_both qemu-img create -f qcow2 -b ./image:base.qcow2 -F qcow2 file:image:top.qcow2
same_img "info of file:NAME with a colon: ./NAME, as QEMU names it" info file:image:top.qcow2
same_img "without file:, NAME: is a protocol calf does not have either" info image:base.qcow2
same_img "create makes no json: file" create -f qcow2 "json:{'driver':'file','filename':'x.qcow2'}" 1M
same_img "nor does convert" convert -O qcow2 base.qcow2 "json:{'driver':'file','filename':'x.qcow2'}"

# --- null-co ---
same_img "convert -S 0 from null-co" \
    convert -O qcow2 -S 0 "json:{'driver': 'null-co', 'size': 1048576, 'read-zeroes': true}" n.qcow2
same_img "the target holds the null-co data written out" map --output=json n.qcow2
same_io "info of a protocol driver: two names, then the error" \
    -c info -c length "json:{'driver': 'null-co', 'size': 1048576}"

# --- rebase -u -F of a protocol driver name ---
same_img "rebase -u -F host_device" rebase -u -b /some/backing/file -F host_device top.qcow2
same_img "the image names it as its backing format" info top.qcow2

# --- a header rewrite keeps QEMU's order of extensions (iotest 031) ---
# an extension QEMU does not know, after the feature table qemu-img wrote
in_both qemu-img create -f qcow2 ext.qcow2 1M
for d in "$CDIR" "$QDIR"; do
    python3 - "$d/ext.qcow2" <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    h = bytearray(f.read(4096))
    p = struct.unpack('>I', h[100:104])[0]
    while struct.unpack('>I', h[p:p + 4])[0]:
        p += 8 + ((struct.unpack('>I', h[p + 4:p + 8])[0] + 7) & ~7)
    data = b'This is a test header extension'
    f.seek(p)
    f.write(struct.pack('>II', 0x12345678, len(data)) + data + bytes(9))
PY
done
(cd "$CDIR" && "$CALF_IMG" rebase -u -b b.raw -F raw ext.qcow2)
(cd "$QDIR" && qemu-img rebase -u -b b.raw -F raw ext.qcow2)
ok "the rewritten header is QEMU's, byte for byte" cmp "$CDIR/ext.qcow2" "$QDIR/ext.qcow2"
