#!/usr/bin/env bash
# Builds .gpu/ (git-ignored): what a call to the GPU machine carries for bench/gpu_suite.sh
# and bench/gpu_published.sh. That machine has jax, flax, optax, orbax, chex and torch but no
# network and no ../shared, so this runs here, before the first device call:
#   .gpu/whl            wheels of the two packages it lacks, at the versions installed here
#                       (both pure Python; bench/gpu_env.sh installs them there)
#   .gpu/data/cifar10   the CIFAR-10 tarballs of ../shared/data (19 MB)
#
#   bash bench/gpu_prepare.sh            # then: run(carry=[".gpu"], command=...)
#
# SSL_JAX_DATA points at another copy of the data; PYTHON (default: .venv's, else python3)
# is the environment whose versions are pinned. The carried paths may total 64 MiB;
# the script fails if .gpu/ is larger.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SSL_JAX_DATA:-../shared/data}
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
[[ -f "$DATA/cifar10/cifar10-train.tar.gz" ]] || {
  echo "no CIFAR-10 at $DATA/cifar10 (set SSL_JAX_DATA)" >&2; exit 1; }

rm -rf .gpu
mkdir -p .gpu/whl .gpu/data/cifar10
pins=$("$PYTHON" -m pip freeze | grep -i -E '^(ml[-_]collections|tensorboardx)==') || true
[[ $(wc -l <<<"$pins") == 2 ]] || pins="ml_collections tensorboardX"
# shellcheck disable=SC2086  # one requirement per word
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --dest .gpu/whl $pins
install -m 644 "$DATA"/cifar10/{cifar10-train.tar.gz,cifar10-test.tar.gz,classes.txt} \
  .gpu/data/cifar10/

kib=$(du -sk .gpu | cut -f1)
ls -l .gpu/whl .gpu/data/cifar10
echo ".gpu/: ${kib} KiB"
(( kib <= 64 * 1024 )) || { echo ".gpu/ is over the 64 MiB a device call carries" >&2; exit 1; }
