#!/usr/bin/env bash
# Local copy of the BRECQ reference code (github.com/yhhhli/BRECQ) for `make bench-calib` only:
# it lands in build/ (git-ignored) and none of it is committed. Usage: scripts/fetch_brecq.sh [DEST]
# Source: $BRECQ_GIT (URL or path of any full clone or mirror) when set, else GitHub.
# Idempotent: does nothing when DEST already holds the pinned commit with the adaptations below.
set -euo pipefail

COMMIT=e455d62e93c70351961f8991c913b59435bd165f   # "Update README.md", BRECQ master head
STAMP="$COMMIT cpu-adapt-1"                         # bump the suffix when the adaptations change
UPSTREAM=https://github.com/yhhhli/BRECQ
DEST=${1:-build/brecq}

die() { echo "fetch_brecq: $*" >&2; exit 1; }

if [[ -f $DEST/BRECQ_COMMIT && "$(cat "$DEST/BRECQ_COMMIT")" == "$STAMP" ]]; then
    exit 0
fi
if [[ -e $DEST ]]; then
    die "$DEST exists but is not BRECQ at $COMMIT (no matching $DEST/BRECQ_COMMIT): remove it or pass another DEST"
fi

SRC=${BRECQ_GIT:-$UPSTREAM}

# Build in a scratch directory next to DEST and rename at the end: an interrupted run leaves no half copy.
mkdir -p "$(dirname "$DEST")"
WORK=$(mktemp -d "$(dirname "$DEST")/.brecq-fetch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

git clone --quiet --bare "$SRC" "$WORK/src.git" 2>"$WORK/clone.log" || die "cannot clone BRECQ from $SRC
($(tail -n 1 "$WORK/clone.log")): set BRECQ_GIT to a clone or mirror of $UPSTREAM, e.g.
  git clone $UPSTREAM /path/BRECQ && BRECQ_GIT=/path/BRECQ scripts/fetch_brecq.sh $DEST"
git --git-dir="$WORK/src.git" cat-file -e "$COMMIT^{commit}" 2>/dev/null \
    || die "$SRC does not contain commit $COMMIT (shallow or outdated clone?): fetch it there, or point BRECQ_GIT at a full clone of $UPSTREAM"
mkdir "$WORK/tree"
git --git-dir="$WORK/src.git" archive "$COMMIT" | tar -x -C "$WORK/tree"

# Runtime adaptations for a CPU-only torch, on the copy only; the optimization logic is untouched.
# Not needed (checked): `import linklink` (only torch.distributed, importable on CPU builds; allreduce
# runs only with multi_gpu=True) and torch.cuda.empty_cache() (a no-op when CUDA is not initialized).
#
# 1. block_recon.py moves every sampled mini-batch to a hard-coded 'cuda' device, which a CPU torch
#    refuses ("Torch not compiled with CUDA enabled"). Use the device the cached data already lives on
#    (save_inp_oup_data keeps it on the model's device), so .to(device) stays the no-op it is on a GPU.
sed -i "s/^    device = 'cuda'$/    device = cached_inps.device/" "$WORK/tree/quant/block_recon.py"
grep -q "^    device = cached_inps.device$" "$WORK/tree/quant/block_recon.py" \
    || die "adaptation 1 did not apply to quant/block_recon.py: the pinned source changed; update this script"

echo "$STAMP" >"$WORK/tree/BRECQ_COMMIT"
mv -T "$WORK/tree" "$DEST"
echo "fetch_brecq: BRECQ $COMMIT from $SRC in $DEST"
