#!/usr/bin/env bash
# One GPU benchmark for a machine with an NVIDIA GPU and JAX (no network needed): checks the device,
# measures the bf16 matmul rate, trains solo runs of ~10M, 50M and 150M parameters (bf16, sequence
# 1024) and stacks of K = 1, 8, 32 runs of ~2M parameters, and prints one table (tokens/s, MFU
# against the measured matmul rate, the stacked speed-up). Needs only jax, flax, optax, numpy and
# this repository (benchmarks/gpu_bench.py says what it measures). Under 8 minutes.
#
#   bash benchmarks/gpu.sh                 # from anywhere; PYTHON=... picks the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/# nvidia-smi: /'
fi
"$PYTHON" -c "import jax, flax, optax, numpy; print('# jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
exec timeout 480 "$PYTHON" -u benchmarks/gpu_bench.py "$@"
