"""Process set-up for training on the CPU: one XLA host device per core.

XLA:CPU runs a small model's step as hundreds of small ops whose intra-op threads leave cores idle
(a 1M-parameter step keeps ~1.3 of 2 cores busy). With one host device per core, the trainer's
data-parallel step (`scaler.train.step`) splits each batch across them and both cores stay busy:
1.1-1.4x per step on a 2-core machine (benchmarks/train_throughput.py).

`configure_cpu` must run before JAX starts its backend; the CLI calls it at start-up. It sets
nothing if XLA_FLAGS already names a device count, or if SCALER_CPU_DEVICES says otherwise.
"""

from __future__ import annotations

import os

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def configure_cpu(host_devices: int | None = None) -> None:
    """Ask XLA for `host_devices` CPU devices (default: SCALER_CPU_DEVICES, else one per core)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if DEVICE_COUNT_FLAG in flags:
        return
    n = host_devices or int(os.environ.get("SCALER_CPU_DEVICES", "0")) or os.cpu_count() or 1
    os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_COUNT_FLAG}={n}".strip()


def configure_compilation_cache(folder: str | None = None) -> None:
    """Keep compiled steps on disk (JAX's persistent compilation cache), so the runs of a sweep
    that share a shape compile once: ~2 s saved per run of a small model on the CPU. Default folder
    $SCALER_CACHE/jax (~/.cache/scaler/jax); an existing JAX_COMPILATION_CACHE_DIR wins."""
    base = os.environ.get("SCALER_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "scaler"))
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", folder or os.path.join(base, "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
