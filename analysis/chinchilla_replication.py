"""Replicate the Chinchilla parametric fit (Hoffmann et al. 2022, Approach 3) on Epoch's extraction.

Data: anchors/chinchilla/svg_extracted_data.csv (Besiroglu et al. 2024, arXiv:2404.10102),
N = Model Size, D = Training FLOP / (6 N), the 5 highest-loss rows dropped (240 rows).
Published values: docs/design.md §8 / Besiroglu et al. 2024. Run: python analysis/chinchilla_replication.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.fitting.fitter import bootstrap, estimate  # noqa: E402
from scaler.fitting.laws import chinchilla  # noqa: E402

CSV = Path(__file__).resolve().parents[1] / "anchors" / "chinchilla" / "svg_extracted_data.csv"
PUBLISHED = {"E": (1.8172, 0.0257), "A": (477.8, None), "B": (2143.0, None), "alpha": (0.3473, 0.0154),
             "beta": (0.3672, 0.0206)}


def main() -> None:
    df = pl.read_csv(CSV).sort("loss").head(240)
    n = df["Model Size"].to_numpy()
    data = {"N": n, "D": df["Training FLOP"].to_numpy() / (6 * n)}
    loss = df["loss"].to_numpy()
    law = chinchilla()
    r = estimate(law, data, loss)
    rb = bootstrap(law, data, loss, r, n=1000, seed=0, budgets=[5.76e23])
    print(f"Chinchilla refit, {r.n_points} rows (Epoch extraction of Hoffmann et al. 2022 Fig. 4)")
    print(f"objective (sum Huber, delta=1e-3): ours {r.objective:.6e}  published 1.01827e-03")
    print(f"converged={r.converged} ({r.stopped}, |grad|={r.grad_norm:.1e}, {r.iterations} iterations)")
    print(f"{'param':8s} {'ours':>10s} {'95% CI':>24s} {'SE':>8s} {'published':>10s} {'pub SE':>8s}")
    for k, (pv, pse) in PUBLISHED.items():
        lo, hi = rb.intervals[k]
        print(f"{k:8s} {r.derived[k]:10.4f} {f'[{lo:.4f}, {hi:.4f}]':>24s} {rb.standard_errors[k]:8.4f} "
              f"{pv:10.4f} {pse if pse is not None else '-':>8}")
    for k in ("a_exponent", "b_exponent", "N_opt@5.76e+23", "D_opt@5.76e+23"):
        lo, hi = rb.intervals[k]
        print(f"{k:15s} {rb.derived[k]:.4g}  95% CI [{lo:.4g}, {hi:.4g}]")
    print(f"bootstrap: {rb.n_bootstrap} refits, {rb.bootstrap_converged:.1%} converged")
    print(f"flat directions: {r.flat_directions or 'none'}")


if __name__ == "__main__":
    main()
