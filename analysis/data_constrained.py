"""Data-constrained scaling (Muennighoff et al. 2023, arXiv:2305.16264) on their 182 runs.

Data: anchors/datablations/muennighoff2023_fit182.csv (the authors' notebook outputs). The base
Chinchilla law is fixed to their C4 refit; R_D* and R_N* are refitted (as logs) and bootstrapped.
U_N = min(N, the base law's compute-optimal N for U_D tokens) (see scaler.fitting.laws).
Run: python analysis/data_constrained.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.fitting.fitter import bootstrap, estimate, objective  # noqa: E402
from scaler.fitting.laws import data_constrained  # noqa: E402

CSV = Path(__file__).resolve().parents[1] / "anchors" / "datablations" / "muennighoff2023_fit182.csv"
BASE = (6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596)
PUB = {"R_D_star": 15.387756, "R_N_star": 5.309743, "objective": 0.0158259}


def main() -> None:
    df = pl.read_csv(CSV)
    data = {"N": df["N_params"].to_numpy().astype(float), "D": df["D_tokens"].to_numpy().astype(float),
            "U": df["U_unique_tokens"].to_numpy().astype(float)}
    loss = df["val_loss"].to_numpy()
    law = data_constrained(base=BASE)
    at_pub = objective(law, np.log([PUB["R_D_star"], PUB["R_N_star"]]), data, loss)
    r = estimate(law, data, loss)
    rb = bootstrap(law, data, loss, r, n=1000, seed=0)
    print(f"Muennighoff et al. 2023, {r.n_points} runs, base fixed (a, b, e, alpha=beta) = {BASE[:4]}")
    print(f"objective at published R*: ours {at_pub:.7f}  published {PUB['objective']}")
    print(f"refit objective {r.objective:.7f} ({r.stopped}, |grad|={r.grad_norm:.1e})")
    print(f"{'param':9s} {'ours':>9s} {'95% CI':>22s} {'published':>10s}")
    for k in ("R_D_star", "R_N_star"):
        lo, hi = rb.intervals[k]
        print(f"{k:9s} {r.derived[k]:9.3f} {f'[{lo:.2f}, {hi:.2f}]':>22s} {PUB[k]:10.4f}")
    print(f"Hessian eigenvalues (unit-free): {['%.2e' % x for x in r.hessian_eigenvalues]}")
    print(f"flat directions (rel. curvature < 1e-6): {r.flat_directions or 'none'}")
    print(f"bootstrap: {rb.n_bootstrap} refits, {rb.bootstrap_converged:.1%} converged")


if __name__ == "__main__":
    main()
