"""benchmarks/gpu_bench.py (run by benchmarks/gpu.sh on a GPU machine) works with nothing beyond
jax, flax, optax and numpy, and counts FLOPs as scaler does. Its `--smoke` mode runs here on the
CPU with pydantic and polars made unimportable, as they are on the GPU image."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from scaler.config import ModelShape, count_params, flops_per_token

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = '''import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pydantic", "polars", "pydantic_core"):
            raise ImportError(f"{name} is not installed on the GPU image")
        return None
sys.meta_path.insert(0, _Absent())
'''


def bench_module():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_smoke_run_needs_only_jax_flax_optax_numpy(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--smoke"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cases = [line for line in done.stdout.splitlines() if line.startswith("case=")]
    pattern = r"case=(solo|stack) params=\d+ k=\d+ tok_s=\d+ mfu=[\d.]+ speedup=[\d.]+"
    assert len(cases) == 3 and all(re.fullmatch(pattern, line) for line in cases), done.stdout
    blocked = subprocess.run([sys.executable, "-c", "import pydantic"], capture_output=True, env=env)
    assert blocked.returncode != 0  # the blocker works, so the smoke run above did without pydantic


def test_the_benchmark_counts_as_scaler_does() -> None:
    bench = bench_module()
    for shape in [*bench.SOLO.values(), bench.STACKED, *bench.SMOKE_SOLO.values()]:
        model_shape = ModelShape(**{f.name: getattr(shape, f.name) for f in bench.dataclasses.fields(shape)})
        assert shape.head_dim == model_shape.head_dim
        assert bench.flops_per_token(shape, count_params(model_shape)) == flops_per_token(model_shape)
    sizes = {name: count_params(ModelShape(**bench.dataclasses.asdict(s))) for name, s in bench.SOLO.items()}
    assert 8e6 < sizes["10M"] < 13e6 and 35e6 < sizes["50M"] < 60e6 and 120e6 < sizes["150M"] < 170e6
    assert 1.5e6 < count_params(ModelShape(**bench.dataclasses.asdict(bench.STACKED))) < 3e6
