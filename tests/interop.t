#!/bin/bash
# Interop both ways over a matrix of qcow2 options and backing chains:
#  - calf-img create makes byte-identical empty images to qemu-img create;
#  - qemu-io writes, calf-io reads (every pattern verified) and calf-img
#    map/info print what qemu-img prints;
#  - calf-io writes the same script, qemu-io verifies every pattern,
#    qemu-img check finds no errors and no leaks, and qemu-img compare
#    says calf's image and qemu's image hold the same guest data.
. "$(dirname "$0")/lib.sh"
need_cmd qemu-io

configs=(
  "compat=1.1"
  "compat=0.10"
  "compat=1.1,cluster_size=512"
  "compat=0.10,cluster_size=512"
  "compat=1.1,cluster_size=4k"
  "compat=1.1,cluster_size=2M"
  "compat=1.1,refcount_bits=1"
  "compat=1.1,refcount_bits=64"
  "compat=1.1,extended_l2=on"
  "compat=1.1,extended_l2=on,cluster_size=2M"
  "compat=1.1,lazy_refcounts=on"
  "compat=1.1,cluster_size=4k,refcount_bits=64,lazy_refcounts=on"
)
# backing: none | raw | qcow2 chain of depth 3 (raw <- qcow2 <- qcow2)
backings=(none raw chain)
plan $(( ${#configs[@]} * ${#backings[@]} * 6 ))

W=(-c "write -P 0x11 0 64k" -c "write -P 0x22 100k 4k" -c "write -P 0x33 1M 3M"
   -c "write -z 1536k 512k" -c "write -P 0x44 5000 1000" -c "write -P 0x55 8M 192k"
   -c "write -z -u 8M 64k" -c "discard 6M 1M" -c "write -P 0x66 63M 1M"
   -c "write -P 0x77 40M 64k" -c "discard 40M 64k" -c "write -P 0x78 40M 4k")
R=(-c "read -P 0x11 0 5000" -c "read -P 0x44 5000 1000" -c "read -P 0x11 6000 59536"
   -c "read -P 0x22 100k 4k" -c "read -P 0x33 1M 512k" -c "read -P 0 1536k 512k"
   -c "read -P 0x33 2M 2M" -c "read -P 0 8M 64k" -c "read -P 0x55 8256k 128k"
   -c "read -P 0x66 63M 1M" -c "read -P 0x78 40M 4k")

make_backing() { # kind -> prints "-b file -F fmt" args into BOPT
  BOPT=()
  case $1 in
    raw)
      head -c 48M /dev/urandom > "$TMP/base.raw"
      BOPT=(-b "$TMP/base.raw" -F raw) ;;
    chain)
      head -c 48M /dev/urandom > "$TMP/base.raw"
      qemu-img create -q -f qcow2 -b "$TMP/base.raw" -F raw "$TMP/mid1.qcow2" 56M
      qemu-io -c "write -P 0xa1 10M 2M" -c "write -z 20M 1M" "$TMP/mid1.qcow2" >/dev/null
      qemu-img create -q -f qcow2 -o cluster_size=4k -b "$TMP/mid1.qcow2" -F qcow2 "$TMP/mid2.qcow2"
      qemu-io -c "write -P 0xa2 11M 2M" -c "write -P 0xa3 50M 100k" "$TMP/mid2.qcow2" >/dev/null
      BOPT=(-b "$TMP/mid2.qcow2" -F qcow2) ;;
  esac
}

filter_map() { sed -e 's/"offset": [0-9]*/"offset": X/'; }

for cfg in "${configs[@]}"; do
  for bk in "${backings[@]}"; do
    name="$cfg, backing $bk"
    make_backing $bk
    qemu-img create -q -f qcow2 -o "$cfg" "${BOPT[@]}" "$TMP/q.qcow2" 64M
    "$CALF_BUILD/calf-img" create -q -f qcow2 -o "$cfg" "${BOPT[@]}" "$TMP/c.qcow2" 64M
    if cmp -s "$TMP/q.qcow2" "$TMP/c.qcow2"; then pass "$name: calf-img create is byte-identical to qemu-img's"
    else fail "$name: calf-img create differs from qemu-img's: $(cmp "$TMP/q.qcow2" "$TMP/c.qcow2")"; fi
    sums=$(md5sum "$TMP"/base.raw "$TMP"/mid*.qcow2 2>/dev/null)

    # qemu writes, calf reads
    qemu-io "${W[@]}" "$TMP/q.qcow2" >/dev/null
    if out=$("$CALF_BUILD/calf-io" "${R[@]}" "$TMP/q.qcow2" 2>&1) && ! grep -q -i "fail\|error" <<<"$out"; then
      pass "$name: calf-io verifies every pattern qemu-io wrote"
    else fail "$name: calf-io read: $(grep -i "fail\|error" <<<"$out" | head -3)"; fi
    if diff <(qemu-img map --output=json "$TMP/q.qcow2" | filter_map) \
            <("$CALF_BUILD/calf-img" map --output=json "$TMP/q.qcow2" | filter_map) >"$TMP/d" 2>&1 &&
       diff <(qemu-img info --output=json "$TMP/q.qcow2") \
            <("$CALF_BUILD/calf-img" info --output=json "$TMP/q.qcow2") >>"$TMP/d" 2>&1; then
      pass "$name: calf-img map and info print what qemu-img prints"
    else fail "$name: map/info differ: $(head -6 "$TMP/d" | tr '\n' ' ')"; fi

    # calf writes, qemu reads
    "$CALF_BUILD/calf-io" "${W[@]}" "$TMP/c.qcow2" >"$TMP/w" 2>&1 || echo "# calf-io write: $(tail -2 "$TMP/w")"
    if out=$(qemu-io -r "${R[@]}" "$TMP/c.qcow2" 2>&1) && ! grep -q -i "fail\|error" <<<"$out"; then
      pass "$name: qemu-io verifies every pattern calf-io wrote"
    else fail "$name: qemu-io read: $(grep -i "fail\|error" <<<"$out" | head -3)"; fi
    if chk=$(qemu-img check "$TMP/c.qcow2" 2>&1); then pass "$name: qemu-img check: no errors, no leaks"
    else fail "$name: qemu-img check: $(echo "$chk" | head -4 | tr '\n' ' ')"; fi
    if out=$(qemu-img compare "$TMP/q.qcow2" "$TMP/c.qcow2" 2>&1); then
      pass "$name: calf's image and qemu's image hold the same data"
    else fail "$name: qemu-img compare: $out"; fi
    if [ "$sums" != "$(md5sum "$TMP"/base.raw "$TMP"/mid*.qcow2 2>/dev/null)" ]; then
      echo "# backing files were modified!"; t_fail=$((t_fail + 1))
    fi
    rm -f "$TMP"/*.qcow2 "$TMP"/*.raw
  done
done
done_testing
