#!/bin/bash
# Picks what a device fuzzing run found for the committed corpus: the
# run's corpus merged (libFuzzer -merge=1: a minimal set with the same
# coverage), then the N inputs of that set that reach the most coverage
# features each on their own, copied to tests/fuzz/corpus-NAME/found-*
# (the hand-made seed-* files stay).  Small on purpose: make fuzz goes
# on from the whole run's corpus in build/fuzz/corpus-NAME.
#   tests/fuzz/pick-corpus.sh NAME [N] [FUZZ_DIR]
set -e
name=$1; n=${2:-24}; fz=$(cd "${3:-build/fuzz}" && pwd)
S=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export TMPDIR=$T
mkdir -p "$T/merged" "$T/one"
"$fz/fuzz-$name" -merge=1 -close_fd_mask=3 "$T/merged" "$S/corpus-$name" "$fz/corpus-$name" >/dev/null 2>&1
for f in "$T"/merged/*; do
    rm -f "$T"/one/*; cp "$f" "$T/one/"
    ft=$("$fz/fuzz-$name" -runs=0 -close_fd_mask=3 "$T/one" 2>&1 | sed -n 's/.*INITED.* ft: \([0-9]*\).*/\1/p')
    echo "${ft:-0} $f"
done | sort -rn | head -n "$n" | while read -r ft f; do
    cp "$f" "$S/corpus-$name/found-$(basename "$f" | cut -c1-16)"
done
echo "$name: $(ls "$T/merged" | wc -l) in the merged set, $(ls "$S/corpus-$name" | wc -l) committed"
