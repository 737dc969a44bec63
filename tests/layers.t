#!/bin/bash
# The layers run one way, vmm -> devices -> block, and only vmm/machine.c
# builds the machine (docs/ARCHITECTURE.md).  scripts/check-layers.sh
# prints the lines that break each rule; any such line fails here.
. "$(dirname "$0")/tap.sh"

plan 4
ok "no file under devices/ includes a vmm/ header" scripts/check-layers.sh devices-up
ok "no file under block/ includes a vmm/, devices/ or KVM header" scripts/check-layers.sh block-up
ok "only vmm/machine.c creates devices" scripts/check-layers.sh machine-only
ok "no source includes a .c file (the layers are libraries)" scripts/check-layers.sh c-includes
