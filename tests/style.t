#!/bin/bash
# The mechanical part of the coding style: no tabs in C or shell, no
# trailing blanks or CRs, a final newline, and the column limits (80 in
# vmm/ and devices/, 100 in block/, tests/unit and tests/fuzz).
# scripts/check-style.sh names each line that breaks a rule; any such
# line fails here, with that list as the diagnostics.
. "$(dirname "$0")/tap.sh"

plan 1
ok "the tracked sources keep the style (scripts/check-style.sh)" scripts/check-style.sh
