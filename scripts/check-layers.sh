#!/bin/bash
# check-layers.sh RULE: prints every line of the tree that breaks RULE,
# and exits 1 if there is any (0 when the tree keeps it).  The layers run
# one way, vmm -> devices -> block (docs/ARCHITECTURE.md):
#   devices-up    a file under devices/ includes a vmm/ header
#   block-up      a file under block/ includes a vmm/ or devices/ header,
#                 or KVM's
#   machine-only  a file under vmm/ other than vmm/machine.c creates a
#                 device (calls a devices/ constructor)
#   c-includes    a source file includes a .c file instead of linking it
# Run from anywhere; it reads the tree it sits in.
cd "$(dirname "$0")/.." || exit 2

# The constructors declared in devices/ headers: every "int NAME_create("
# or "int NAME_add(" or "int NAME_init(".
device_ctors() {
    grep -rhoE '^int [a-z0-9_]+_(create|add|init)\(' devices --include='*.h' |
        sed -E 's/^int //; s/\($//' | sort -u
}

rule() {
    case $1 in
    devices-up)
        grep -rnE '#include +"vmm/' devices ;;
    block-up)
        grep -rnE '#include +("vmm/|"devices/|<linux/kvm\.h>)' block ;;
    machine-only)
        local re
        re=$(device_ctors | paste -sd'|')
        [ -n "$re" ] || { echo "no device constructors found in devices/*.h"; return 0; }
        grep -nE "\\b($re) *\\(" vmm/*.c | grep -v '^vmm/machine\.c:' ;;
    c-includes)
        grep -rnE '#include +"[^"]*\.c"' block devices vmm tests/unit tests/fuzz ;;
    *)
        echo "check-layers.sh: unknown rule '$1'"; return 0 ;;
    esac
}

out=$(rule "$1")
[ -z "$out" ] && exit 0
printf '%s\n' "$out"
exit 1
