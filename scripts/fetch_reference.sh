#!/usr/bin/env bash
# Local copy of a reference implementation, for `make bench-calib` and `make bench-parity` only: it
# lands in build/ (git-ignored) and none of it is committed.
# Usage: scripts/fetch_reference.sh brecq|qdrop [DEST]   (DEST default: build/NAME)
# Source: $BRECQ_GIT / $QDROP_GIT (URL or path of any full clone or mirror) when set, else GitHub.
# Idempotent: does nothing when DEST already holds the pinned commit with the adaptations below.
set -euo pipefail

die() { echo "fetch_reference: $*" >&2; exit 1; }

NAME=${1:-}
case $NAME in
brecq)
    COMMIT=e455d62e93c70351961f8991c913b59435bd165f   # "Update README.md", BRECQ master head
    STAMP="$COMMIT cpu-adapt-1"                         # bump the suffix when the adaptations change
    UPSTREAM=https://github.com/yhhhli/BRECQ
    SRC=${BRECQ_GIT:-$UPSTREAM};;
qdrop)
    COMMIT=ef37616cbb8ae85239a97a12663a284e032282c1   # "update readme", QDrop master head
    STAMP="$COMMIT cpu-adapt-2"
    UPSTREAM=https://github.com/wimh966/QDrop
    SRC=${QDROP_GIT:-$UPSTREAM};;
*)
    die "name the reference: brecq or qdrop (got '${NAME}')";;
esac
DEST=${2:-build/$NAME}
VAR=$(echo "$NAME" | tr a-z A-Z)_GIT

if [[ -f $DEST/REFERENCE_COMMIT && "$(cat "$DEST/REFERENCE_COMMIT")" == "$STAMP" ]]; then
    exit 0
fi
if [[ -e $DEST ]]; then
    die "$DEST exists but is not $NAME at $COMMIT (no matching $DEST/REFERENCE_COMMIT): remove it or pass another DEST"
fi

# Build in a scratch directory next to DEST and rename at the end: an interrupted run leaves no half copy.
mkdir -p "$(dirname "$DEST")"
WORK=$(mktemp -d "$(dirname "$DEST")/.$NAME-fetch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

git clone --quiet --bare "$SRC" "$WORK/src.git" 2>"$WORK/clone.log" || die "cannot clone $NAME from $SRC
($(tail -n 1 "$WORK/clone.log")): set $VAR to a clone or mirror of $UPSTREAM, e.g.
  git clone $UPSTREAM /path/$NAME && $VAR=/path/$NAME scripts/fetch_reference.sh $NAME $DEST"
git --git-dir="$WORK/src.git" cat-file -e "$COMMIT^{commit}" 2>/dev/null \
    || die "$SRC does not contain commit $COMMIT (shallow or outdated clone?): fetch it there, or point $VAR at a full clone of $UPSTREAM"
mkdir "$WORK/tree"
git --git-dir="$WORK/src.git" archive "$COMMIT" | tar -x -C "$WORK/tree"

# Runtime adaptations for a CPU-only torch, on the copy only; the optimization logic is untouched.
if [[ $NAME == brecq ]]; then
    # Not needed (checked): `import linklink` (only torch.distributed, importable on CPU builds;
    # allreduce runs only with multi_gpu=True) and torch.cuda.empty_cache() (a no-op when CUDA is
    # not initialized).
    # 1. block_recon.py moves every sampled mini-batch to a hard-coded 'cuda' device, which a CPU
    #    torch refuses ("Torch not compiled with CUDA enabled"). Use the device the cached data
    #    already lives on (save_inp_oup_data keeps it on the model's device), so .to(device) stays
    #    the no-op it is on a GPU.
    sed -i "s/^    device = 'cuda'$/    device = cached_inps.device/" "$WORK/tree/quant/block_recon.py"
    grep -q "^    device = cached_inps.device$" "$WORK/tree/quant/block_recon.py" \
        || die "adaptation 1 did not apply to quant/block_recon.py: the pinned source changed; update this script"
else
    # QDrop's recon.py and model code already follow the model's device; only main_imagenet.py
    # calls .cuda(), and scripts/reference_ptq.py replaces that driver.
    # 1. solver/imagenet_utils.py (imported by recon.py for its data-saver hook) imports yaml and
    #    easydict at the top for its config parser alone, which the driver does not use: import them
    #    inside parse_config, so the venv needs neither.
    UTILS=$WORK/tree/qdrop/solver/imagenet_utils.py
    sed -i -e '/^import yaml$/d' -e '/^from easydict import EasyDict$/d' \
        -e 's/^def parse_config(config_file):$/def parse_config(config_file):\n    import yaml\n    from easydict import EasyDict/' "$UTILS"
    grep -q "^    from easydict import EasyDict$" "$UTILS" && ! grep -q "^import yaml$" "$UTILS" \
        || die "adaptation 1 did not apply to qdrop/solver/imagenet_utils.py: the pinned source changed; update this script"
    # 2. quantization/observer.py imports scipy at the top for the golden-section observers alone
    #    (MSEObserver, the one the configs use, does not call it): import it on first call.
    OBSERVER=$WORK/tree/qdrop/quantization/observer.py
    python3 - "$OBSERVER" <<'PY' || die "adaptation 2 did not apply to qdrop/quantization/observer.py: the pinned source changed; update this script"
import sys
path = sys.argv[1]
text = open(path).read()
top = "from scipy.optimize import minimize_scalar\n"
assert text.count(top) == 1
open(path, "w").write(text.replace(top, (
    "def minimize_scalar(*args, **kwargs):  # pyioso: scipy imported on first use\n"
    "    from scipy.optimize import minimize_scalar as scipy_minimize_scalar\n"
    "    return scipy_minimize_scalar(*args, **kwargs)\n")))
PY
fi

echo "$STAMP" >"$WORK/tree/REFERENCE_COMMIT"
mv -T "$WORK/tree" "$DEST"
echo "fetch_reference: $NAME $COMMIT from $SRC in $DEST"
