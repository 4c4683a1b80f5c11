"""Expand and plan a 10,000-run sweep spec: the time from TOML to the plan table's rows.

The spec: an IsoFLOP design (5 budgets x 10 sizes, 1e16 to 1e18 FLOPs, GPU-sized shapes), 100
random Dirichlet mixes over four tiers, 2 seeds: 10,000 runs, each resolved (defaults filled,
run id hashed) and planned (FLOPs, epochs per tier, seconds at a peak FLOP rate). Timed in this
process, best of 3 after one warm-up; the baseline is the goal, 1 second.

    python benchmarks/plan_scale.py
    -> runs=10000 parse_s=<t> expand_s=<t> plan_s=<t> total_s=<t> goal_s=1.0 ratio=<goal/total>
"""

from __future__ import annotations

import time
import tomllib

from scaler.sweep.plan import make_plan
from scaler.sweep.spec import expand, parse_sweep_spec

SPEC = """
name = "scale"
[data]
dir = "data/not-built-yet"
eval_sets = ["heldout", "humaneval"]
[model]
seq_len = 1024
[train]
batch_size = 256
[design.isoflop]
budgets = [1e16, 3e16, 1e17, 3e17, 1e18]
points = 10
span = 30
[design.random_mixes]
count = 100
tiers = ["raw", "filtered", "dedup", "clean"]
seed = 0
[design]
seeds = [0, 1]
"""


def timed() -> tuple[int, float, float, float]:
    t0 = time.perf_counter()
    spec = parse_sweep_spec(tomllib.loads(SPEC), "scale.toml")
    t1 = time.perf_counter()
    runs = expand(spec)
    t2 = time.perf_counter()
    make_plan(spec, runs, peak_flops=989e12, mfu=0.4, usd_per_hour=2.5)
    t3 = time.perf_counter()
    return len(runs), t1 - t0, t2 - t1, t3 - t2


def main() -> None:
    timed()  # warm-up: imports, caches of the family's shapes
    n, parse_s, expand_s, plan_s = min((timed() for _ in range(3)), key=lambda t: sum(t[1:]))
    total = parse_s + expand_s + plan_s
    print(f"runs={n} parse_s={parse_s:.3f} expand_s={expand_s:.3f} plan_s={plan_s:.3f} total_s={total:.3f} "
          f"goal_s=1.0 ratio={1.0 / total:.2f}")


if __name__ == "__main__":
    main()
