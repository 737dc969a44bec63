# Shared pieces of the block-engine tests (tests/qcow2-*.t, interop.t,
# blk-*.t): $B the build directory, $T a temporary directory removed at
# exit (a test that needs more cleanup sets its own trap and removes $T
# there), TAP counting with ok/notok, and finish for the exit status.
# Usage: . "$(dirname "$0")/blk-lib.sh" qemu-img   (the peer it needs)

B=${CALF_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
failed=0
ok() { n=$((n+1)); echo "ok $n - $*"; }
notok() { n=$((n+1)); failed=$((failed+1)); echo "not ok $n - $*"; }
finish() { exit $(( failed > 0 )); }

for peer in "$@"; do
  if ! command -v "$peer" >/dev/null; then echo "1..0 # skip $peer is not installed"; exit 0; fi
done

# No corruption: qemu-img check finds none, leaks allowed.  An image with
# lazy refcounts is dirty after a crash and its refcounts may be stale, as
# in QEMU (iotest 039): then calf-img check -r all must make it clean.
# Sets $why.
consistent() {
  local j; j=$(qemu-img check --output=json "$1" 2>&1)
  if ! grep -q '"corruptions"\|"check-errors": [1-9]' <<<"$j"; then why="leaks allowed"; return 0; fi
  if qemu-img info -U --output=json "$1" | grep -q '"dirty-flag": true' &&
     "$B/calf-img" check -r all "$1" >/dev/null 2>&1 && qemu-img check "$1" >/dev/null 2>&1; then
    why="dirty image, stale refcounts repaired"; return 0
  fi
  why=$(tr -d '\n' <<<"$j" | cut -c1-300); return 1
}
