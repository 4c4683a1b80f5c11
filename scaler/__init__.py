"""scaler: scaling-law and data-mix experiment planner.

The Python API, the same path the CLI takes (docs/guide.md, "Python API"; the README's notebook example):

    import scaler

    store = scaler.Store("store/demo-sweep")           # one folder per run (local path or fsspec URL)
    runs = scaler.load_runs(store)                      # polars: one row per run
    data = scaler.from_store(store.root)                # fit inputs: N, D, C (flops_v1), loss, tiers
    fit = scaler.fit_sweep(data, reference="raw")       # per tier: law, IsoFLOP, backtest; the quality law
    rec = scaler.recommend(fit, "data/demo", budget_flops=1e14)
    print("\\n".join(rec.lines()))

Names:
- the store: `Store`, `load_runs`, `load_curves`;
- fit inputs: `from_store` (a store's finished runs), `load_table` (a CSV from anywhere), `FitData`;
- fitting: `fit` (one law over a table), `fit_sweep` (per data option, plus the quality law),
  `fit_store` (fit_sweep cached in the store's fit.json), `laws` (the law factories);
- predicting: `predict` (a fit and planned (N, D) -> loss, 95% interval, extrapolation, rankings);
- deciding: `recommend` (a fit and a data build -> allocation and verdict), `to_flops`;
- reporting: `build_report` (figures, Markdown and HTML; matplotlib loads when it runs).

The store- and build-facing steps (`from_store`, `fit_store`, `recommend`, `build_report`) are
`scaler.session`'s; the layers below take tables, options and frames (docs/design.md §1).
Importing scaler changes no environment variable and no JAX setting, and does not import JAX;
`laws` loads on first use. Note that `scaler.fit` and `scaler.recommend` are
the functions above; their modules are reached with `from scaler.fit import pipeline` and
`from scaler.recommend import ...`.
"""

from __future__ import annotations

from typing import Any

# The subpackage `scaler.fit` and the module `scaler.recommend` are imported before the functions of
# the same names are bound below, so that no later submodule import rebinds `scaler.fit` or
# `scaler.recommend` to a module.
import scaler.fit as _fit_package  # noqa: F401
import scaler.recommend as _recommend_module  # noqa: F401
from scaler.errors import ConfigError, StoreError
from scaler.fit.data import FitData, FitDataError, load_table
from scaler.fit.pipeline import fit, fit_sweep
from scaler.fit.result import predict
from scaler.recommend import Recommendation, to_flops
from scaler.session import build_report, fit_store, from_store, recommend
from scaler.store import Store, load_curves, load_runs

__all__ = [
    "ConfigError", "FitData", "FitDataError", "Recommendation", "Store", "StoreError", "build_report", "fit",
    "fit_store", "fit_sweep", "from_store", "laws", "load_curves", "load_runs", "load_table", "predict", "recommend",
    "to_flops",
]


def __getattr__(name: str) -> Any:
    """`laws` (imports JAX) loads on first use."""
    if name == "laws":
        from scaler.fit import laws

        return laws
    raise AttributeError(f"module 'scaler' has no attribute {name!r}")
