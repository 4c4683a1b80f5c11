"""From fit inputs to a fit: which law, the per-group fits, the quality law, and a store's fit.json.

The CLI and the Python API (`scaler.fit`, `scaler.fit_sweep`, `scaler.fit_store`) both call these,
so a notebook gets exactly what `scaler fit` prints. JAX is imported by the fitter only when a fit
runs, and nothing here touches the training stack (docs/design.md §1).

fit.json is written through `Store` (atomically, on a local disk or an fsspec URL) with a `key`
that names everything its numbers depend on: the law, the reference tier, the eval set, the
bootstrap count and seed, and the runs (their ids and final losses). A saved fit is reused only
when its key matches; any change refits.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from scaler.config import ConfigError
from scaler.fit.data import FitData, from_store, json_safe
from scaler.store import Store, StoreError

FIT_FILE = "fit.json"
FIT_SCHEMA = 3  # bump when fit.json's layout changes: files of another schema are refitted
LAW_NAMES = ("chinchilla", "data_constrained", "quality", "mixing")
ALLOCATION_MULTIPLES = (1.0, 10.0, 100.0)  # allocations reported at these multiples of the largest run


def tiers_of(data: FitData) -> list[str]:
    """The tiers (or domains) the runs mix, from their `w_<tier>` columns, sorted by name."""
    return sorted(k.removeprefix("w_") for k in data.columns if k.startswith("w_"))


def law_for(name: str, data: FitData, reference: str = "raw"):
    """The law object for `name` over `data`'s columns; `reference` is the quality law's tier with
    kappa = 1 (never "whichever tier is listed first")."""
    from scaler.fit import laws

    if name not in LAW_NAMES:
        raise ConfigError(f"--law: unknown law {name!r}; expected one of {', '.join(LAW_NAMES)}")
    if name == "data_constrained" and "U" not in data.columns:
        raise ConfigError("--law data_constrained needs unique tokens: --unique COL (or runs that record them)")
    if name not in ("quality", "mixing"):
        return laws.LAWS[name]()
    tiers = tiers_of(data)
    if len(tiers) < 2:
        raise ConfigError(f"--law {name} needs runs over at least two tiers or domains (w_<tier> columns)")
    if name == "mixing":
        return laws.mixing(tiers)
    if reference not in tiers:
        raise ConfigError(f"--reference {reference!r}: not among the runs' tiers ({', '.join(tiers)})")
    return laws.quality(tiers, reference=reference)


def fit(data: FitData, law: str = "chinchilla", n_bootstrap: int = 1000, seed: int = 0,
        reference: str = "raw") -> dict[str, Any]:
    """One law over all of `data`: the fit, bootstrap percentile intervals (`n_bootstrap`
    resamples of the rows; 0 for none), and the compute-optimal allocation at 1x, 10x and 100x
    the largest run's compute. JSON-safe; `bootstrap_theta` keeps the resampled parameters so a
    recommendation can reuse them instead of refitting."""
    from scaler.fit.fitter import bootstrap, fit as fit_law

    if n_bootstrap < 0:
        raise ConfigError(f"--bootstrap {n_bootstrap}: expected 0 or more resamples")
    law_object = law_for(law, data, reference)
    largest_flops = float(np.max(data.columns["C"]))
    budgets = [m * largest_flops for m in ALLOCATION_MULTIPLES]
    result = fit_law(law_object, data.columns, data.loss)
    if n_bootstrap:
        result = bootstrap(law_object, data.columns, data.loss, result, n=n_bootstrap, seed=seed, budgets=budgets)
    out: dict[str, Any] = {"law": law_object.name, "source": data.source, "dropped": data.dropped,
                           "largest_run_flops": largest_flops, **result.to_json()}
    out["allocations"] = []
    for budget in budgets:
        allocation = law_object.allocation(result.theta, budget)
        if allocation is not None:
            n_opt, d_opt = allocation
            out["allocations"].append({"flops": budget, "n_opt": n_opt, "d_opt": d_opt})
    if result.bootstrap_theta is not None:
        out["bootstrap_theta"] = np.asarray(result.bootstrap_theta).tolist()
    return json_safe(out)


def _group_fit(part: FitData, law: str, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """The parametric fit, IsoFLOP approach 2 and a backtest of one data option; a method that
    cannot run on these points records its error instead of failing the others."""
    from scaler.fit.backtest import backtest
    from scaler.fit.isoflop import approach2

    entry: dict[str, Any] = {}
    for key, compute in (
        ("parametric", lambda: fit(part, law, n_bootstrap, seed)),
        ("isoflop", lambda: approach2(part.frame(), seed=seed).to_json()),
        ("backtest", lambda: backtest(law_for(law, part), part.frame()).to_json()),
    ):
        try:
            entry[key] = compute()
        except (ValueError, ConfigError) as err:
            entry[key] = {"error": str(err)}
    has_allocation = "a_exponent" in entry["parametric"].get("derived", {})  # laws in N and D only
    if has_allocation and "error" not in entry["isoflop"]:
        derived, intervals = entry["parametric"]["derived"], entry["parametric"].get("intervals", {})
        iso = entry["isoflop"]
        entry["compare"] = [
            {"method": "parametric", "a": derived["a_exponent"], "a_interval": intervals.get("a_exponent"),
             "b": derived["b_exponent"], "b_interval": intervals.get("b_exponent")},
            {"method": "isoflop approach 2", "a": iso["a"], "a_interval": iso["a_interval"],
             "b": iso["b"], "b_interval": iso["b_interval"]},
        ]
    return entry


def fit_sweep(data: FitData, law: str = "chinchilla", n_bootstrap: int = 1000, seed: int = 0,
              reference: str = "raw") -> dict[str, Any]:
    """Per data option (tier or mix: `data.groups`), the parametric fit of `law`, IsoFLOP
    approach 2 and a backtest; across options, the quality law (effective-data multipliers
    kappa_t against `reference`) when the runs span two tiers or more."""
    groups = data.groups if data.groups is not None else np.asarray(["all"] * data.n_points)
    out: dict[str, Any] = {"source": data.source, "n_points": data.n_points,
                           "largest_run_flops": float(np.max(data.columns["C"])), "groups": {}}
    for label in sorted(set(groups.tolist())):
        out["groups"][label] = _group_fit(data.subset(groups == label), law, n_bootstrap, seed)
    if len(tiers_of(data)) >= 2:
        try:
            out["quality"] = fit(data, "quality", n_bootstrap, seed, reference)
        except (ValueError, ConfigError) as err:
            out["quality"] = {"error": str(err)}
    return json_safe(out)


def fit_key(data: FitData, law: str, eval_set: str, n_bootstrap: int, seed: int, reference: str) -> dict[str, Any]:
    """Everything a store's fit depends on. The runs enter as a hash of their sorted (id, loss)
    pairs, so a new, removed or retrained run changes the key."""
    ids = data.run_ids if data.run_ids is not None else np.arange(data.n_points).astype(str)
    pairs = sorted(f"{run_id}:{loss!r}" for run_id, loss in zip(ids.tolist(), data.loss.tolist(), strict=True))
    runs_sha256 = hashlib.sha256("\n".join(pairs).encode()).hexdigest()
    return {"schema": FIT_SCHEMA, "law": law, "reference": reference, "eval_set": eval_set,
            "bootstrap": n_bootstrap, "seed": seed, "n_runs": data.n_points, "runs_sha256": runs_sha256}


def fit_store(store: Store | str, eval_set: str = "heldout", law: str = "chinchilla", n_bootstrap: int = 1000,
              seed: int = 0, reference: str = "raw", refit: bool = False) -> dict[str, Any]:
    """`fit_sweep` over a store's finished runs, cached in the store's fit.json: the saved fit is
    returned when its key matches (same law, reference, eval set, bootstrap, seed and runs), else
    the runs are refitted and fit.json is replaced atomically."""
    store = store if isinstance(store, Store) else Store(str(store))
    data = from_store(store.root, eval_set)
    key = fit_key(data, law, eval_set, n_bootstrap, seed, reference)
    try:
        saved = None if refit else store.read_sweep_json(FIT_FILE)
    except StoreError:
        saved = None  # an unreadable fit.json is refitted and replaced
    if isinstance(saved, dict) and saved.get("key") == key:
        return saved
    out = {"key": key, **fit_sweep(data, law, n_bootstrap, seed, reference)}
    store.write_sweep_json(FIT_FILE, out)
    return out
