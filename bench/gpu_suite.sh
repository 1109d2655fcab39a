#!/usr/bin/env bash
# The GPU benchmarks of issue #7 in one call, each under its own time limit so that one that
# hangs or fails leaves the others their time; everything goes to $OUT/suite.log and the
# result tables to $OUT/BENCH.md (both also on stdout).
#
#   OUT=/tmp/gpu bash bench/gpu_suite.sh
#
# In order of priority:
#   ceilings  the machine's bf16 ceiling, a jitted 8192^3 bfloat16 matmul (median of 10), and
#             the time of RankMe (an SVD) on SimCLR's [2048, 512] features and [2048, 128]
#             embeddings at B = 1024, which every step computed before 963f8e9
#   simclr    bench/step_throughput.py, SimCLR ResNet-18 (CIFAR stem, 32x32), bf16, B = 1024,
#             next to the PyTorch reference on the same GPU, then 5 steps of each profiled
#             (the kernels' time, summed by bench/profile_summary.py)
#   mae       the same script without a reference: MAE ViT-B/16 at 224x224, bf16, B = 256,
#             profiled too
#   input     bench/step_input_ratio.py: SimCLR ResNet-18 fed by the real CIFAR-10 pipeline
#             against a resident batch, B = 1024, bf16 (needs CIFAR-10 in $SSL_JAX_CIFAR10)
#   byol      as simclr, BYOL
#   r50       only when ONLY names it: SimCLR ResNet-50 (ImageNet stem), 224x224, bf16,
#             B = 256, next to the PyTorch reference (random images: no ImageNet needed)
#   remat     only when ONLY names it: mae again with config.model.remat=True, for its peak
#             device memory and step time next to mae's
#   vits vitb only when ONLY names them: SimCLR ViT-S/16 and ViT-B/16 at 224x224, bf16,
#             B = 256, next to the PyTorch reference (scaled_dot_product_attention)
#   convs     only when ONLY names it: bench/conv_layers.py, each convolution of ResNet-18
#             (CIFAR stem) alone, XLA against cuDNN through PyTorch, bf16, the 2048 images of
#             a B = 1024 SimCLR step
# Before the first device call, `bash bench/gpu_prepare.sh` builds .gpu/ (wheels, CIFAR-10),
# which the call carries; bench/gpu_env.sh sets up the Python packages from it there.
# ONLY="simclr mae" runs just those.
# The limits add up to 600 s, one device call's most; on the H200 (2026-11-30) simclr took
# 118 s, input 89 s, and the whole set should take about 9 minutes.
set -u
OUT=${OUT:-/tmp/ssl_jax_gpu_suite}
mkdir -p "$OUT"
CIFAR10=${SSL_JAX_CIFAR10:-.gpu/data/cifar10}
# A compile on the H200 took ~50 s (mostly autotuning); the persistent cache lets `input`
# load the step `simclr` compiled (its "first step (compile)" is then a cache load).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/ssl_jax_suite_jax_cache}
exec > >(tee -a "$OUT/suite.log") 2>&1

source bench/gpu_env.sh

bench() {  # bench NAME SECONDS COMMAND...
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  [[ " ${ONLY:-ceilings simclr mae input byol} " == *" $name "* ]] || return 0
  echo; echo "=== $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - start)) s"
}

bench ceilings 30 python3 -c "
import time, jax, jax.numpy as jnp, numpy as np
from ssl_jax import diagnostics

def median_seconds(f, *args):
    f(*args).block_until_ready()
    times = []
    for _ in range(10):
        t = time.perf_counter(); f(*args).block_until_ready(); times.append(time.perf_counter() - t)
    return np.median(times)

n = 8192
a, b = (jax.random.normal(k, (n, n), jnp.bfloat16) for k in jax.random.split(jax.random.key(0)))
print(f'bf16 {n}^3 matmul: {2 * n**3 / median_seconds(jax.jit(jnp.matmul), a, b) / 1e12:.0f} '
      'TFLOP/s (median of 10)')
for d in (512, 128):  # RankMe of SimCLR's features and embeddings at B = 1024 (2B rows).
    z = jax.random.normal(jax.random.key(d), (2048, d))
    print(f'RankMe (SVD) of [2048, {d}]: '
          f'{1e3 * median_seconds(jax.jit(diagnostics.rankme), z):.2f} ms (median of 10)')"

STEP=(python3 bench/step_throughput.py --append "$OUT/BENCH.md")
BF16=--config.model.dtype=bfloat16
bench simclr 150 "${STEP[@]}" --config configs/simclr_cifar10.py $BF16 --config.input.batch_size=1024 \
  --blocks 3 --steps 20 --saves 2 --profile_dir /tmp/ssl_jax_suite_profile_simclr
MAE224=(--config configs/mae_cifar10.py $BF16 --config.model.name=vit_b --config.model.patch_size=16
        --config.input.image_size=224 --config.method.view.out_size=224
        --config.input.batch_size=256 --noreference --blocks 2 --steps 5 --saves 1)
bench mae 170 "${STEP[@]}" "${MAE224[@]}" --profile_dir /tmp/ssl_jax_suite_profile_mae
bench remat 170 "${STEP[@]}" "${MAE224[@]}" --config.model.remat=True
bench input 100 python3 bench/step_input_ratio.py --config configs/simclr_cifar10.py \
  --config.input.data_dir="$CIFAR10" --config.input.batch_size=1024 \
  $BF16 --blocks 3 --steps 20
bench byol 150 "${STEP[@]}" --config configs/byol_cifar10.py $BF16 --config.input.batch_size=1024 \
  --blocks 3 --steps 20 --saves 2
bench r50 200 "${STEP[@]}" --config configs/simclr_imagenet.py $BF16 --config.input.dataset=npz \
  --config.input.host_crop=False --config.input.batch_size=256 --blocks 3 --steps 10 --saves 1
VIT224=(--config configs/simclr_cifar10.py $BF16 --config.model.patch_size=16
        --config.input.image_size=224 --config.method.view.out_size=224
        --config.input.batch_size=256 --blocks 3 --steps 10 --saves 1)
bench vits 200 "${STEP[@]}" "${VIT224[@]}" --config.model.name=vit_s
bench vitb 200 "${STEP[@]}" "${VIT224[@]}" --config.model.name=vit_b
bench convs 120 python3 bench/conv_layers.py --batch 2048 --dtype bfloat16 --reps 10
echo; echo "=== tables"; cat "$OUT/BENCH.md"
