"""The demo sweep trained four ways, in one command: wall time, and the fits side by side.

The demo (scaler/sweeps/demo.toml: 96 IsoFLOP runs, 4 sizes x 4 budgets x 3 tiers x 2 seeds, 2
workers) is trained into a fresh store, with a fresh compilation cache, as

- cosine:          independent cosine runs, one at a time per worker (the demo before issue 13);
- cosine-stack3:   the same runs, the three tiers of each (size, budget) stacked (`stack = 3`);
- branches:        WSD runs, each (size, tier, seed) one trunk with the smaller budgets as branches
                   forked at their cooldown starts (`schedule = "wsd-branches"`, 20% cooldown);
- branches-stack3: the same, the three tiers' families stacked (trunks, then branches).

Output: one line per variant with its wall time and the ratio to the cosine baseline's (same
command), then, per tier, what the fit of each store says (the allocation exponent a of
N* ~ C^a with its 95% bootstrap interval, kappa, the fitted loss at the largest budget), and how
far each WSD run's final held-out loss lies from the cosine run of the same (N, D, tier).

    python benchmarks/demo_sweep.py                        # all four, about an hour on 2 cores
    python benchmarks/demo_sweep.py --variants cosine branches
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "scaler" / "sweeps" / "demo.toml"
VARIANTS = ("cosine", "cosine-stack3", "branches", "branches-stack3")


def variant_spec(name: str, store: Path) -> str:
    text = SPEC.read_text().replace('store = "store/demo-sweep"', f'store = "{store}"')
    text = re.sub(r"^(schedule|cooldown_fraction|stack) = .*$", "", text, flags=re.M)  # set below
    if name.startswith("branches"):
        text = text.replace("[design.isoflop]\n", '[design.isoflop]\nschedule = "wsd-branches"\ncooldown_fraction = 0.2\n')
    else:
        text = text.replace("[train]\n", '[train]\nschedule = "cosine"\n')
    if name.endswith("stack3"):
        text = "stack = 3\n" + text
    return text


def scaler(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("scaler")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, check=True)


def run_variant(name: str, folder: Path) -> dict:
    spec = folder / f"{name}.toml"
    spec.write_text(variant_spec(name, folder / f"store-{name}"))
    env = {**os.environ, "SCALER_CACHE": str(folder / f"cache-{name}")}
    t0 = time.perf_counter()
    scaler("run", str(spec), "--workers", "2", env=env)
    wall_s = time.perf_counter() - t0
    plan = json.loads(scaler("plan", str(spec), "--json", "--force", env=env).stdout)
    fit = json.loads(scaler("fit", str(spec), "--json", env=env).stdout)
    losses = {}
    for run in plan["runs"]:
        status = json.loads((folder / f"store-{name}" / "runs" / run["run_id"] / "status.json").read_text())
        losses[(run["n_params"], run["tokens"], run["mix"], run.get("seed"))] = status["final"]["eval_heldout_loss"]
    return {"wall_s": wall_s, "trained_flops": plan["trained_flops"], "total_flops": plan["total_flops"],
            "fit": fit, "losses": losses}


def interval(lo_hi: list[float] | None, digits: int = 3) -> str:
    return f"[{lo_hi[0]:.{digits}f}, {lo_hi[1]:.{digits}f}]" if lo_hi else "[?]"


def print_fits(results: dict[str, dict]) -> None:
    print("\n# the quality law (what the demo's verdict uses), 95% bootstrap intervals: irreducible loss E,")
    print("# exponents alpha (N) and beta (D), allocation exponent a (N* ~ C^a), kappa of each tier against raw")
    for name, result in results.items():
        law = result["fit"]["quality"]
        derived, intervals = law["derived"], law["intervals"]
        cells = [f"{key}={derived[key]:.3f} {interval(intervals.get(key))}"
                 for key in ("E", "alpha", "beta", "a_exponent", *sorted(k for k in derived if k.startswith("kappa_")
                                                                         and k != "kappa_raw"))]
        print(f"variant={name:<16} " + " ".join(cells))
    print("\n# per tier, IsoFLOP approach 2: allocation exponent a, and the minimum loss at the largest budget")
    for tier in sorted(next(iter(results.values()))["fit"]["groups"]):
        for name, result in results.items():
            isoflop = result["fit"]["groups"][tier]["isoflop"]
            if "error" in isoflop:
                print(f"tier={tier:<6} variant={name:<16} isoflop: {isoflop['error']}")
                continue
            top = isoflop["budgets"][-1]
            print(f"tier={tier:<6} variant={name:<16} a_isoflop={isoflop['a']:.3f} {interval(isoflop.get('a_interval'))} "
                  f"loss_opt@{top['budget']:.2g}={top['loss_opt']:.4f} {interval(top.get('loss_opt_interval'), 4)}")


def print_loss_gaps(results: dict[str, dict]) -> None:
    base = results["cosine"]["losses"]  # main() always trains the baseline first
    print("\n# final held-out loss of each run against the cosine run of the same (N, D, tier), nats")
    for name, result in results.items():
        if name == "cosine":
            continue
        gaps = [result["losses"][key] - base[key] for key in base]
        print(f"variant={name:<16} runs={len(gaps)} mean_gap={statistics.mean(gaps):+.4f} "
              f"sd_gap={statistics.stdev(gaps):.4f} max_abs_gap={max(map(abs, gaps)):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--keep", type=Path, default=None, help="keep the stores in this folder")
    args = parser.parse_args()
    variants = ["cosine"] + [v for v in args.variants if v != "cosine"]  # the baseline first
    with tempfile.TemporaryDirectory(prefix="demo-sweep-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = {}
        for name in variants:
            print(f"# training the demo sweep as {name} ...", file=sys.stderr, flush=True)
            results[name] = run_variant(name, folder.resolve())
            r = results[name]
            print(f"variant={name} runs={len(r['losses'])} trained_flops={r['trained_flops']:.3g} "
                  f"of={r['total_flops']:.3g} wall_s={r['wall_s']:.0f} "
                  f"speedup={results['cosine']['wall_s'] / r['wall_s']:.2f}", flush=True)
        print_fits(results)
        print_loss_gaps(results)


if __name__ == "__main__":
    main()
