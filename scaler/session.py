"""What a notebook or the CLI does with a store and a data build (docs/design.md §1, §6).

The layers below take tables, options and frames: fit takes `FitData`, recommend a build's
report as a dict, report a store's runs already read. This module is the one that opens them:

- `from_store`: a store's finished runs as fit inputs (`scaler.fitting.inputs.from_runs`);
- `fit_store`: `fit_sweep` over them, cached in the store's fit.json under `fit_key`;
- `recommend`: a fit and, optionally, a data build folder -> `Recommendation`;
- `recommend_from_store`: fit the store's runs, then `recommend` (nothing written);
- `store_runs`, `build_report`: a store's runs and curves -> figures, report.md and index.html.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from scaler.errors import StoreError
from scaler.fitting.choose import DEFAULT_HORIZON
from scaler.fitting.inputs import FitData, from_runs
from scaler.fitting.pipeline import Objective, fit, fit_file, fit_key, sweep_json, tiers_of
from scaler.fitting.result import LawFit, SweepFit
from scaler.store import Store, load_curves, load_runs

__all__ = ["from_store", "fit_store", "recommend", "recommend_from_store", "store_runs", "build_report"]


def from_store(store_root: str | Store, eval_set: str = "heldout", drop_nan: bool = False,
               run_ids: Collection[str] | None = None) -> FitData:
    """The store's finished runs as fit inputs (`scaler.fitting.inputs.from_runs` says which columns)."""
    root = store_root.root if isinstance(store_root, Store) else str(store_root)
    return from_runs(load_runs(root), root, eval_set, drop_nan, run_ids)


def fit_store(store: Store | str, eval_set: str = "heldout", law: str = "chinchilla", n_bootstrap: int = 1000,
              seed: int = 0, reference: str = "raw", refit: bool = False, objective: Objective = Objective(),
              run_ids: Collection[str] | None = None, horizon: float = DEFAULT_HORIZON) -> SweepFit:
    """`fit_sweep` over a store's finished runs (only `run_ids` when given: a sweep's own runs),
    cached in the store's fit.json (`fit_file`: fit-<eval_set>.json for other eval sets): the saved fit is returned when its key matches (same law,
    reference, eval set, bootstrap, seed, objective, horizon and runs), else the runs are refitted
    and fit.json is replaced atomically (`Store.write_sweep_json`)."""
    store = store if isinstance(store, Store) else Store(str(store))
    data = from_store(store, eval_set, run_ids=run_ids)
    key = fit_key(data, law, eval_set, n_bootstrap, seed, reference, objective, horizon)
    try:
        saved = None if refit else store.read_sweep_json(fit_file(eval_set))
    except StoreError:
        saved = None  # an unreadable fit.json is refitted and replaced
    if isinstance(saved, dict) and saved.get("key") == key:
        return SweepFit.from_json(saved)
    out = {"key": key, **sweep_json(data, law, n_bootstrap, seed, reference, objective, horizon)}
    store.write_sweep_json(fit_file(eval_set), out)
    return SweepFit.from_json(out)


def recommend(fit: SweepFit | LawFit | Mapping[str, Any], data_dir: str | Path | None = None,
              budget_flops: float | None = None, **options: Any):
    """The `Recommendation` from a fit (`fit_sweep`'s or `fit_store`'s `SweepFit`, one law's
    `LawFit`, or their JSON) with the tier options of the data build in `data_dir` (its
    report.json: yields and cleaning costs), or without a build (`raw_tokens` then required).
    `options` are `scaler.decision.recommend_from_fit`'s keywords."""
    from scaler.data.folder import read_report
    from scaler.decision import recommend_from_fit

    report = read_report(data_dir).model_dump(mode="json") if data_dir is not None else None
    source = str(Path(data_dir) / "report.json") if data_dir is not None else "the data build's report.json"
    return recommend_from_fit(fit, report, budget_flops, data_source=source, **options)


def recommend_from_store(store_root: str | Path, data_dir: str | Path | None, budget_flops: float,
                         eval_set: str = "heldout", n_bootstrap: int = 1000, seed: int = 0, reference: str = "raw",
                         **options: Any):
    """Fit the quality law on the store's runs (kappa = 1 for `reference`; Chinchilla when the runs
    cover one tier), bootstrap it, and `recommend`. Nothing is written to the store."""
    data = from_store(str(store_root), eval_set=eval_set)
    tiers = tiers_of(data)
    if len(tiers) >= 2:
        fitted: Mapping[str, Any] = fit(data, "quality", n_bootstrap, seed, reference)
    else:
        fitted = {"groups": {tiers[0] if tiers else "stdlib": {"parametric": fit(data, "chinchilla", n_bootstrap, seed)}}}
    return recommend(fitted, data_dir, budget_flops, **options)


def store_runs(store_root: str | Store):
    """The store's runs and loss curves for a report (`scaler.report.render.StoreRuns`); a store
    that cannot be read gives empty frames and the reason, so the report still builds and says it."""
    import polars as pl

    from scaler.report.render import StoreRuns

    root = store_root.root if isinstance(store_root, Store) else str(store_root)
    try:
        return StoreRuns(root, load_runs(root), load_curves(root))
    except Exception as err:  # noqa: BLE001 - a broken store should still give a report
        return StoreRuns(root, pl.DataFrame(), pl.DataFrame(), f"{type(err).__name__}: {err}")


def build_report(store_root: str | Store | None, fit: SweepFit | LawFit | Mapping[str, Any] | None,
                 data_report: Mapping | None, out_dir: str | Path, title: str, recommendation: Any = None,
                 spec_text: str | None = None, **options: Any) -> dict[str, Path]:
    """`scaler.report.render.render_report` of a fit (as `recommend` takes it) over the store's
    runs (None: the fit's own rows). `recommendation`: a `Recommendation` or its JSON.
    `options`: render_report's keywords (target_flops, next_run, advance_steps)."""
    from scaler.report.render import render_report

    if hasattr(recommendation, "to_json"):
        recommendation = recommendation.to_json()
    store = store_runs(store_root) if store_root is not None else None
    return render_report(store, dict(fit) if fit else None, dict(data_report) if data_report else None,
                         Path(out_dir), title, recommendation, spec_text, **options)
