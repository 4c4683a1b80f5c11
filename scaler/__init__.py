"""scaler: scaling-law and data-mix experiment planner.

The Python API, the same path the CLI takes (docs/guide.md, "Python API"; the README's notebook example):

    import scaler

    data = scaler.from_store("store/demo-sweep")        # fit inputs: N, D, C (flops_v1), loss, tiers
    fit = scaler.fit_sweep(data, reference="raw")       # a SweepFit: per tier law, IsoFLOP, backtest; the quality law
    fit.predict(4e5, d=4e7, groups=["dedup"])           # loss, 95% interval, extrapolation
    rec = scaler.recommend(fit, "data/demo", budget_flops=1e14)
    print("\\n".join(rec.lines()))

Names, one per idea:
- the store: `Store`, `load_runs`, `load_curves`;
- fit inputs: `from_store` (a store's finished runs), `load_table` (a CSV from anywhere), `FitData`;
- fitting: `fit` (one law over a table -> `LawFit`), `fit_sweep` (per data option, plus the quality
  law -> `SweepFit`), `fit_store` (fit_sweep cached in the store's fit.json), `laws` (the law factories);
- predicting: `predict(fit, n, d)`, or the fit's own `.predict`, `.loss`, `.allocate`;
- deciding: `recommend` (a fit and a data build -> `Recommendation`), `to_flops`;
- reporting: `build_report` (figures, Markdown and HTML; matplotlib loads when it runs);
- the loop: `advance` (one step of `scaler advance`), `design` (`scaler design`: designs
  simulated on a prior fit).

The layers below (`scaler.fitting`, `scaler.decision`, `scaler.report`) take tables, options and
frames; `scaler.session` and `scaler.workflow` open stores, builds and specs (docs/design.md §1).
Importing scaler changes no environment variable and no JAX setting, and does not import JAX;
`laws` loads on first use.
"""

from __future__ import annotations

from typing import Any

from scaler.decision import Recommendation, to_flops
from scaler.errors import ConfigError, StoreError
from scaler.fitting.inputs import FitData, FitDataError, load_table
from scaler.fitting.pipeline import fit, fit_sweep
from scaler.fitting.result import LawFit, SweepFit, predict
from scaler.session import build_report, fit_store, from_store, recommend
from scaler.store import Store, load_curves, load_runs
from scaler.workflow import advance, design

__all__ = [
    "ConfigError", "FitData", "FitDataError", "LawFit", "Recommendation", "Store", "StoreError", "SweepFit", "advance",
    "build_report", "design", "fit", "fit_store", "fit_sweep", "from_store", "laws", "load_curves", "load_runs",
    "load_table", "predict", "recommend", "to_flops",
]


def __getattr__(name: str) -> Any:
    """`laws` (imports JAX) loads on first use."""
    if name == "laws":
        from scaler.fitting import laws

        return laws
    raise AttributeError(f"module 'scaler' has no attribute {name!r}")
