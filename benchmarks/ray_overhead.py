"""What the Ray engine costs before a run starts training, against calling `execute_run` here.

One command: start a local Ray head on 127.0.0.1 (`scaler.sweep.cluster.local_ray_head`, as
tests/test_cluster.py does), then for the same tiny run config (a new seed each time, so no run is
skipped as done) measure, `--repeats` times each, alternating:

- local: `execute_run(config, store)` called in this process;
- ray:   `run_on_ray([config], store, {"cpus": 1}, address=head)`: connect, submit one task, wait,
         disconnect.

submit_to_start = the run's `started_at` in status.json (written by `train_run` as the run starts,
before anything is compiled) minus the wall time just before the call; total = the call's wall time.
Both engines use one XLA CPU device (SCALER_CPU_DEVICES=1), so the totals compare like with like.
The first local call also pays for importing JAX in this process; Ray starts fresh worker
processes for every call (a new job), which import JAX each time. Medians are printed on one line:

    local_submit_to_start_s=<m> ray_submit_to_start_s=<m> overhead_s=<ray-local> ray_total_s=<m> local_total_s=<m>

    python benchmarks/ray_overhead.py                 # ~1 min on 2 cores
    python benchmarks/ray_overhead.py --repeats 5 --steps 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from scaler.config import parse_run_config
from scaler.store import Store
from scaler.sweep.cluster import local_ray_head, run_id_for, run_on_ray
from scaler.sweep.runners import execute_run


def tiny_run(seed: int, steps: int) -> dict:
    """The tests' tiny model (~30k parameters) on the in-memory stdlib source."""
    raw = {
        "name": "ray-overhead",
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 96, "vocab_size": 257, "seq_len": 32},
        "train": {"tokens": steps * 8 * 32, "batch_size": 8, "lr": 1e-2, "eval_tokens": 512, "seed": seed},
    }
    return parse_run_config(raw).model_dump(mode="json")


def measure(call: Callable[[dict, str], object], config: dict, root: str) -> tuple[float, float]:
    """(submit_to_start_s, total_s) of one call that trains `config` into the store at `root`."""
    t0 = time.time()
    call(config, root)
    total = time.time() - t0
    status = Store(root).read_status(run_id_for(config))
    if status["state"] != "done":
        raise SystemExit(f"CHECK FAILED: run ended {status['state']}: {status.get('error')}")
    return status["started_at"] - t0, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    args = parser.parse_args()
    os.environ["SCALER_CPU_DEVICES"] = "1"  # this process's XLA devices (the Ray workers get cpus=1)
    if "--xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        print("note: XLA_FLAGS sets a device count; the local engine uses it", file=sys.stderr)

    samples: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as root, local_ray_head(num_cpus=2) as address:
        engines = {
            "local": lambda config, store: execute_run(config, store),
            "ray": lambda config, store: run_on_ray([config], store, {"cpus": 1}, address=address),
        }
        for i in range(args.repeats):
            for offset, (name, call) in enumerate(engines.items()):
                start, total = measure(call, tiny_run(1000 * offset + i, args.steps), root)
                samples[name].append((start, total))
                print(f"{name} #{i}: submit_to_start_s={start:.3f} total_s={total:.3f}", file=sys.stderr)

    def median(name: str, column: int) -> float:
        return statistics.median(s[column] for s in samples[name])

    local_start, ray_start = median("local", 0), median("ray", 0)
    print(f"local_submit_to_start_s={local_start:.3f} ray_submit_to_start_s={ray_start:.3f} "
          f"overhead_s={ray_start - local_start:.3f} ray_total_s={median('ray', 1):.3f} "
          f"local_total_s={median('local', 1):.3f}")


if __name__ == "__main__":
    main()
