#!/bin/bash
# Checks that a kernel-source refactor changes no machine code: compiles every
# kernel set (scripts/nvrtc_usage.py: NVRTC, the options of kernels.rs) from
# the working tree and from git revision REV (default HEAD), disassembles both
# with nvdisasm and compares them. No GPU needed; NVRTC and nvdisasm come
# from PyPI (nvidia-cuda-nvrtc, nvidia-cuda-nvdisasm):
#   LD_LIBRARY_PATH=<nvrtc lib dir> scripts/sass_same.sh [REV] [NVDISASM]
# Exit status 0 when every set's SASS is identical.
set -u
REV=${1:-HEAD}
DIS=${2:-nvdisasm}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$TMP/rev" >/dev/null 2>&1; rm -rf "$TMP"' EXIT
git -C "$ROOT" worktree add -q --detach "$TMP/rev" "$REV" || exit 2
rc=0
for s in BASE TF32 TF32_WIDE WGMMA F32 TF32X3; do
  for side in rev tree; do
    r=$ROOT; [ $side = rev ] && r=$TMP/rev
    if ! python3 "$r/scripts/nvrtc_usage.py" --define REEF_SET_$s=1 --sass "$DIS" \
        --sass-out "$TMP/$s.$side.sass" > "$TMP/$s.$side.log" 2>&1; then
      echo "$s: compile failed ($side)"; tail -5 "$TMP/$s.$side.log"; exit 2
    fi
  done
  if cmp -s "$TMP/$s.rev.sass" "$TMP/$s.tree.sass"; then
    echo "$s: identical ($(wc -l < "$TMP/$s.tree.sass") SASS lines)"
  else
    echo "$s: DIFFERS"; rc=1
  fi
done
exit $rc
