"""Do scaler's predictions hold on tables it was never tuned to? Fit below a compute cut, predict above.

Every public table the repository has, and synthetic tables drawn from several true forms, each
fitted on its runs up to a compute cut and scored on its runs at 3x-30x the largest fitted
compute (the Chinchilla size split: N <= 1B fitted, N > 2B scored). Per table and method:

    mean_err_pct   mean |predicted - observed| / observed, in %
    coverage       share of held-out losses inside their 95% interval
    halfwidth_pct  median half-width of the 95% interval, % of the predicted loss
    winkler_pct    the 95% interval score (Winkler 1972): width + (2 / 0.05) x the miss, mean, % of the loss
    rank_acc       groups only: share of held-out (N, D) points, among those whose true gap between the
                   groups exceeds twice the noise, at which the predicted order of the groups is the true one

Methods, all in this one command (the same machine, the same rows):
    scaler         `fit(data, "auto")` (groups: per-group auto, or the quality law) and `predict`: the
                   law chosen by forward-chained backtests, intervals from their errors (docs/design.md §5.7)
    chinchilla     the plain recipe of Hoffmann et al. and Epoch (Besiroglu et al. 2024): Chinchilla's
                   law, sum of Huber (delta 1e-3) on log losses, bootstrap percentile intervals
    asymmetric     the `chinchilla` toolkit's estimator (kyo-takano/chinchilla, asymmetric MAE, w = 10) as
                   scaler reimplements it (`--objective asymmetric`), with bootstrap intervals; the toolkit
                   itself is run too where it is installed (it is not a dependency)

No rule or threshold inside scaler sees the scored rows: each fit gets the fitted part only.

    python benchmarks/heldout_scale.py [--bootstrap 100] [--tables chinchilla,kaplan,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from scaler.fitting.compute import SIX_ND, Compute
from scaler.fitting.inputs import FitData, load_table, with_clusters
from scaler.fitting.pipeline import Objective, fit
from scaler.fitting.result import predict
from scaler.fitting.stats import percentile_interval

ROOT = Path(__file__).resolve().parents[1] / "anchors"
CHINCHILLA_CSV = ROOT / "chinchilla" / "svg_extracted_data.csv"
DATABLATIONS = {"datablations-182": ROOT / "datablations" / "muennighoff2023_fit182.csv",
                "datablations-296": ROOT / "datablations" / "muennighoff2023_all296.csv"}
REACH = (3.0, 30.0)  # held-out runs scored: this far beyond the largest fitted compute


@dataclasses.dataclass
class Table:
    """A fitted part and a scored part: the law's columns and losses of each; `truth` (synthetic
    tables) gives the noise-free loss for the ranking's noise rule."""

    name: str
    kind: str  # "real" | "synthetic"
    fit: FitData
    test: dict[str, np.ndarray]  # N, D (, U), group (optional), loss
    noise: float = 0.0  # sd of the log-normal noise (synthetic)
    true_loss: np.ndarray | None = None  # noise-free held-out losses (synthetic)


# -- real tables ---------------------------------------------------------------------------------


def _split(data: FitData, fit_mask: np.ndarray, name: str, test_mask: np.ndarray | None = None) -> Table:
    c = data.columns["C"]
    if test_mask is None:
        c_max = c[fit_mask].max()
        test_mask = (c >= REACH[0] * c_max) & (c <= REACH[1] * c_max)
    test = {k: v[test_mask] for k, v in data.columns.items() if k in ("N", "D", "U")}
    test["loss"] = data.loss[test_mask]
    return Table(name, "real", with_clusters(data.subset(fit_mask)), test)


def chinchilla_tables() -> list[Table]:
    data = load_table(CHINCHILLA_CSV, n="Model Size", flops="Training FLOP", loss="loss", drop_top=5)
    n = data.columns["N"]
    return [_split(data, data.columns["C"] <= 1e20, "chinchilla-compute"),
            _split(data, n <= 1e9, "chinchilla-size", test_mask=n > 2e9)]


def datablations_tables() -> list[Table]:
    out = []
    for name, path in DATABLATIONS.items():
        data = load_table(path, n="N_params", d="D_tokens", loss="val_loss", unique="U_unique_tokens")
        out.append(_split(data, data.columns["C"] <= 1e20, name))
    return out


# -- synthetic tables ------------------------------------------------------------------------------


def _chinchilla(n, d, e=1.69, a=406.4, b=410.7, alpha=0.34, beta=0.28):
    return e + a / n**alpha + b / d**beta


TRUTHS: dict[str, Callable[..., np.ndarray]] = {
    "chinchilla": lambda n, d: _chinchilla(n, d),
    "kaplan": lambda n, d: ((6.4e13 / n) ** (0.076 / 0.103) + 1.8e13 / d) ** 0.103,
    # the N exponent flattens by 0.08 past N_b = 3e7, inside the fitted range
    "bent": lambda n, d: 1.8 + 400.0 * n**-0.34 * (1.0 + n / 3e7) ** 0.08 + 410.0 * d**-0.28,
    # Gadre et al. 2024 with eta != c (not nested in Chinchilla): L = E + (a M^eta + b M^-eta) C^-c
    "overtrain": lambda n, d: 1.7 + (600.0 * (d / n) ** 0.12 + 1230.0 * (d / n) ** -0.12) * (6 * n * d) ** -0.16,
}
GROUP_TRUTHS: dict[str, dict[str, Callable[..., np.ndarray]]] = {
    # a data-quality multiplier: the clean tier's tokens are worth 1.8 raw ones
    "quality": {"raw": lambda n, d: _chinchilla(n, d), "clean": lambda n, d: _chinchilla(n, 1.8 * d)},
    # crossing curves: "early" is better at small N, "late" (lower E, larger A) better past N ~ 2e8
    "crossing": {"early": lambda n, d: _chinchilla(n, d, e=1.95, a=200.0, alpha=0.4),
                 "late": lambda n, d: _chinchilla(n, d, e=1.75, a=600.0, alpha=0.4)},
}


def _grid(sizes: np.ndarray, tpp: np.ndarray, seeds: int = 1) -> tuple[np.ndarray, np.ndarray]:
    n = np.repeat(sizes, len(tpp) * seeds)
    d = n * np.tile(np.repeat(tpp, seeds), len(sizes))
    return n, d


def _test_points(c_max: float, n_budgets: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """IsoFLOP-style points at 3x-30x c_max, 5 to 80 tokens per parameter (6ND)."""
    c = np.repeat(c_max * np.geomspace(*REACH, n_budgets), 4)
    tpp = np.tile(np.geomspace(5, 80, 4), n_budgets)
    n = np.sqrt(c / (6 * tpp))
    return n, c / (6 * n)


def synthetic_table(kind: str, seed: int = 0, noise: float = 0.005, sizes: np.ndarray | None = None,
                    tpp: np.ndarray | None = None, seeds: int = 1, name: str | None = None) -> Table:
    rng = np.random.default_rng(seed)
    sizes = np.geomspace(3e6, 3e8, 9) if sizes is None else sizes
    tpp = np.geomspace(5, 80, 5) if tpp is None else tpp
    n, d = _grid(sizes, tpp, seeds)
    c = 6 * n * d
    keep = c <= np.quantile(c, 0.85)
    n, d = n[keep], d[keep]
    truths = GROUP_TRUTHS.get(kind) or {"": TRUTHS[kind]}
    cols, losses, groups = [], [], []
    n_t, d_t = _test_points(float((6 * n * d).max()))
    test_n, test_d, test_g, true = [], [], [], []
    for label, truth in truths.items():
        cols.append((n, d))
        losses.append(truth(n, d) * np.exp(rng.normal(0, noise, len(n))))
        groups += [label] * len(n)
        test_n.append(n_t)
        test_d.append(d_t)
        test_g += [label] * len(n_t)
        true.append(truth(n_t, d_t))
    n_all, d_all = np.concatenate([x for x, _ in cols]), np.concatenate([y for _, y in cols])
    grouped = len(truths) > 1
    data = with_clusters(FitData(f"synthetic-{kind}", {"N": n_all, "D": d_all, "C": 6 * n_all * d_all},
                                 np.concatenate(losses), np.array(groups) if grouped else None,
                                 compute=Compute(SIX_ND)))
    true_loss = np.concatenate(true)
    test = {"N": np.concatenate(test_n), "D": np.concatenate(test_d),
            "loss": true_loss * np.exp(rng.normal(0, noise, len(true_loss)))}
    if grouped:
        test["group"] = np.array(test_g)
    return Table(name or f"synthetic-{kind}", "synthetic", data, test, noise, true_loss)


def synthetic_tables() -> list[Table]:
    tables = [synthetic_table(kind, seed=i) for i, kind in enumerate(("chinchilla", "kaplan", "bent", "overtrain"))]
    tables += [synthetic_table(kind, seed=10 + i) for i, kind in enumerate(GROUP_TRUTHS)]
    # noise like the demo's (about 1% seed to seed), few runs: 4 budgets' worth of sizes, 2 seeds each
    tables.append(synthetic_table("chinchilla", seed=20, noise=0.01, sizes=np.geomspace(1e6, 3e7, 5),
                                  tpp=np.geomspace(10, 80, 4), seeds=2, name="synthetic-demo-noise"))
    return tables


# -- methods ---------------------------------------------------------------------------------------


def scaler_method(table: Table, n_bootstrap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scaler as a user runs it: `--law auto`, per group when the table has groups (the quality law
    across groups when the groups differ only in data)."""
    groups = table.test.get("group")
    if groups is None:
        return _predict(fit(table.fit, "auto", n_bootstrap, 0), table.test)
    law = "quality" if table.name.endswith("quality") else "auto"
    if law == "quality":
        fitted = fit(table.fit, "quality", n_bootstrap, 0, reference="raw")
        return _predict(fitted, table.test)
    out = [np.zeros(len(groups)) for _ in range(3)]
    for label in np.unique(groups):
        mask = groups == label
        part = with_clusters(table.fit.subset(table.fit.groups == label))
        part.groups = None
        sub = {k: v[mask] for k, v in table.test.items() if k != "group"}
        for arr, values in zip(out, _predict(fit(part, law, n_bootstrap, 0), sub), strict=True):
            arr[mask] = values
    return out[0], out[1], out[2]


def _predict(fitted: dict, test: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = predict(fitted, test["N"], d=test["D"], unique=test.get("U"),
                     groups=list(test["group"]) if "group" in test else None)["points"]
    loss = np.array([p["loss"] for p in points])
    lo, hi = np.array([p["interval"] for p in points]).T
    return loss, lo, hi


def baseline_method(objective: Objective) -> Callable[[Table, int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Chinchilla's law per group, fitted with `objective`, bootstrap percentile intervals."""
    from scaler.fitting import laws

    def run(table: Table, n_bootstrap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        groups = table.test.get("group")
        labels = [None] if groups is None else list(np.unique(groups))
        loss, lo, hi = (np.zeros(len(table.test["loss"])) for _ in range(3))
        for label in labels:
            mask = np.ones(len(loss), bool) if label is None else groups == label
            part = table.fit if label is None else with_clusters(table.fit.subset(table.fit.groups == label))
            part.groups = None
            fitted = fit(part, "chinchilla", n_bootstrap, 0, objective=objective, backtests=False)
            cols = {"N": table.test["N"][mask], "D": table.test["D"][mask]}
            law = laws.chinchilla()
            loss[mask] = law.predict(np.asarray(fitted["theta"]), cols)
            spread = np.array([law.predict(s, cols) for s in np.asarray(fitted["bootstrap_theta"])])
            lo[mask], hi[mask] = percentile_interval(spread)
        return loss, lo, hi

    return run


def toolkit_available() -> bool:
    return importlib.util.find_spec("chinchilla") is not None


# -- scores ----------------------------------------------------------------------------------------


def scores(table: Table, loss: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, float]:
    y = table.test["loss"]
    alpha = 0.05
    winkler = (hi - lo) + (2 / alpha) * (np.maximum(lo - y, 0) + np.maximum(y - hi, 0))
    out = {"mean_err_pct": 100 * float(np.mean(np.abs(loss - y) / y)),
           "coverage": float(np.mean((y >= lo) & (y <= hi))),
           "halfwidth_pct": 100 * float(np.median((hi - lo) / 2 / loss)),
           "winkler_pct": 100 * float(np.mean(winkler / y)),
           "rank_acc": ranking_accuracy(table, loss)}
    return out


def ranking_accuracy(table: Table, loss: np.ndarray) -> float:
    """Share of held-out points (same N, D in every group) whose predicted order of groups is the
    true one, among the points whose true losses differ by more than twice the noise (in loss)."""
    groups = table.test.get("group")
    if groups is None or table.true_loss is None:
        return float("nan")
    labels = list(np.unique(groups))
    pred = np.stack([loss[groups == g] for g in labels])
    true = np.stack([table.true_loss[groups == g] for g in labels])
    gaps = np.sort(true, axis=0)
    clear = np.all(np.diff(gaps, axis=0) > 2 * table.noise * gaps[:-1], axis=0)
    if not clear.any():
        return float("nan")
    right = np.all(np.argsort(pred, axis=0) == np.argsort(true, axis=0), axis=0)
    return float(np.mean(right[clear]))


def line(table: Table, method: str, result: dict[str, float], seconds: float) -> str:
    reach = table.test["N"] * table.test["D"] * 6 / table.fit.columns["C"].max()
    cells = " ".join(f"{k}={v:.3g}" for k, v in result.items() if not (k == "rank_acc" and math.isnan(v)))
    return (f"{table.name:24s} {method:11s} {cells} n_fit={table.fit.n_points} n_test={len(table.test['loss'])} "
            f"reach={reach.min():.3g}-{reach.max():.3g}x ({seconds:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--tables", default="", help="comma-separated table names (default: all)")
    parser.add_argument("--methods", default="scaler,chinchilla,asymmetric")
    args = parser.parse_args()
    tables = chinchilla_tables() + datablations_tables() + synthetic_tables()
    if args.tables:
        tables = [t for t in tables if t.name in args.tables.split(",")]
    methods = {"scaler": scaler_method, "chinchilla": baseline_method(Objective()),
               "asymmetric": baseline_method(Objective("asymmetric"))}
    if not toolkit_available():
        print("the chinchilla toolkit is not installed: its estimator runs as scaler's reimplementation "
              "(method asymmetric)", file=sys.stderr)
    rows = []
    for table in tables:
        for name in args.methods.split(","):
            t0 = time.perf_counter()
            result = scores(table, *methods[name](table, args.bootstrap))
            print(line(table, name, result, time.perf_counter() - t0), flush=True)
            rows.append({"table": table.name, "kind": table.kind, "method": name, **result})
    frame = pl.DataFrame(rows)
    summary = frame.group_by("method", "kind").agg(pl.col("mean_err_pct").mean(), pl.col("coverage").min(),
                                                   pl.col("halfwidth_pct").max(), pl.col("winkler_pct").mean())
    print("summary (mean error, worst coverage, widest median half-width, mean Winkler):")
    print(summary.sort("kind", "method"))


if __name__ == "__main__":
    main()
