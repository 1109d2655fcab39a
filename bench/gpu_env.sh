# Sourced by the bench/gpu_*.sh scripts: makes ssl_jax importable on the GPU machine.
#
# That machine has jax, flax, optax, orbax, chex and torch but no network; the Python
# packages it lacks (ml_collections, tensorboardX) are installed from the wheels in
# $SSL_JAX_WHEELS (default .gpu/whl: `bash bench/gpu_prepare.sh` builds .gpu/ here, and the
# device call carries it) when they do not import. Prints the GPU and the package versions.
# If ssl_jax fails to import with its XLA CPU flag (an XLA that does not know it), retries
# without it.
WHEELS=${SSL_JAX_WHEELS:-.gpu/whl}
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
if ! python3 -c "import ml_collections, tensorboardX" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/ssl_jax_site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/ssl_jax_site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
  --format=csv
python3 -c "import jax, jaxlib, flax, optax, orbax.checkpoint as ocp, torch, sys
print(sys.version.split()[0], 'jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'flax',
      flax.__version__, 'optax', optax.__version__, 'orbax', ocp.__version__, 'torch',
      torch.__version__)"
if ! python3 -c "import ssl_jax, jax; print(jax.devices())"; then
  echo "import ssl_jax failed with its XLA CPU flag; retrying without it"
  export SSL_JAX_KEEP_XLA_CPU_DEFAULTS=1
  python3 -c "import ssl_jax, jax; print(jax.devices())" || exit 1
fi
