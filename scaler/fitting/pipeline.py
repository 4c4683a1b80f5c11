"""From fit inputs to a fit: which law, the per-group fits, the quality law, and the key of a cached fit.

The CLI and the Python API (`scaler.fit`, `scaler.fit_sweep`) both call these, so a notebook gets
exactly what `scaler fit` prints. JAX is imported by the fitter only when a fit runs; nothing here
reads a store or touches the training stack (docs/design.md §1): `scaler.session.fit_store` caches
a store's fit in its fit.json under `fit_key`, which names everything its numbers depend on (the
law, the reference tier, the eval set, the bootstrap count and seed, the objective, the horizon and
the runs: their ids and final losses). A saved fit is reused only when its key matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaler.config import ConfigError
from scaler.errors import ParameterError
from scaler.fitting.backtest import order_stability
from scaler.fitting.choose import DEFAULT_HORIZON, candidate_laws, choose, ensemble
from scaler.fitting.compute import Compute
from scaler.fitting.inputs import FitData, json_safe
from scaler.fitting.result import LawFit, SweepFit
from scaler.fitting.stats import percentile_interval

FIT_FILE = "fit.json"


def fit_file(eval_set: str) -> str:
    """The store file a sweep's fit of `eval_set` is cached in: fit.json for heldout, else
    fit-<eval_set>.json (so the held-out and the code-task fits are both kept)."""
    return FIT_FILE if eval_set == "heldout" else f"fit-{eval_set}.json"
FIT_SCHEMA = 8  # bump when fit.json's layout or its bootstrap draws change: files of another schema are refitted
LAW_NAMES = ("chinchilla", "chinchilla_group_e", "kaplan", "overtrain", "broken", "data_constrained", "quality",
             "mixing", "auto")
ALLOCATION_MULTIPLES = (1.0, 10.0, 100.0)  # allocations reported at these multiples of the largest run


@dataclass(frozen=True)
class Objective:
    """What the fitter minimises: "huber" (sum of Huber_delta on log losses, Hoffmann et al. 2022)
    or "asymmetric" (the peer `chinchilla` toolkit's lower-envelope estimator on raw losses:
    predictions above an observation cost `asymmetry` times more)."""

    name: str = "huber"
    delta: float = 1e-3
    asymmetry: float = 10.0

    def __post_init__(self) -> None:
        if self.name not in ("huber", "asymmetric"):
            raise ParameterError(f"{{objective}} {self.name!r}: expected huber or asymmetric", "objective")
        if not self.delta > 0:
            raise ParameterError(f"{{delta}} {self.delta}: expected a positive number", "delta")
        if not self.asymmetry > 0:
            raise ParameterError(f"{{asymmetry}} {self.asymmetry}: expected a positive number", "asymmetry")

    def kwargs(self) -> dict[str, Any]:
        return {"objective": self.name, "delta": self.delta, "asymmetry": self.asymmetry}

    def text(self) -> str:
        if self.name == "huber":
            return f"sum of Huber (delta {self.delta:g}) on log losses"
        return f"asymmetric (x{self.asymmetry:g} above the observations, smoothed within {self.delta:g}) on losses"


def tiers_of(data: FitData) -> list[str]:
    """The tiers (or domains) the runs mix, from their `w_<tier>` columns, sorted by name."""
    return sorted(k.removeprefix("w_") for k in data.columns if k.startswith("w_"))


def with_group_weights(data: FitData) -> FitData:
    """`data` with one-hot `w_<group>` columns from its group labels (a table's --group column),
    unless it already carries mix weights: the quality and per-group laws read them."""
    if tiers_of(data) or data.groups is None:
        return data
    columns = dict(data.columns)
    for label in sorted(set(data.groups.tolist())):
        columns[f"w_{label}"] = (data.groups == label).astype(np.float64)
    return dataclasses.replace(data, columns=columns)


def make_law(name: str, data: FitData, reference: str = "raw", repetition: str = "shared"):
    """The law object for `name` over `data`'s columns; `reference` is the quality law's tier with
    kappa = 1 (never "whichever tier is listed first"), `repetition` its R_D* ("shared" or
    "per_tier", when the runs repeat data)."""
    from scaler.fitting import laws

    if name not in LAW_NAMES or name == "auto":
        raise ParameterError(f"{{law}}: unknown law {name!r}; expected one of {', '.join(LAW_NAMES)}", "law")
    if name == "data_constrained" and "U" not in data.columns:
        raise ParameterError("{law} data_constrained needs unique tokens: {unique} COL (or runs that record them)", "law",
                             "unique")
    if name not in ("quality", "mixing", "chinchilla_group_e"):
        return laws.LAWS[name]()
    tiers = tiers_of(data)
    if len(tiers) < 2:
        raise ParameterError(f"{{law}} {name} needs runs over at least two tiers or groups (w_<tier> columns, or "
                             "{group} COL for a table)", "law", "group")
    if name == "mixing":
        return laws.mixing(tiers)
    if name == "chinchilla_group_e":
        return laws.chinchilla_group_e(tiers)
    if reference not in tiers:
        raise ParameterError(f"{{reference}} {reference!r}: not among the runs' tiers ({', '.join(tiers)})", "reference")
    pools = repeats_data(data)
    return laws.quality(tiers, reference=reference, pools=pools, repetition=repetition if pools else "shared")


def repeats_data(data: FitData) -> bool:
    """Whether some run reads a tier's pool more than once (every tier's pool `U_<tier>` known):
    then the quality law fits the repetition R_D* too (Muennighoff et al. 2023) instead of
    treating repeated tokens as new."""
    tiers = tiers_of(data)
    if not tiers or any(f"U_{t}" not in data.columns for t in tiers):
        return False
    epochs = [data.columns[f"w_{t}"] * data.columns["D"] / data.columns[f"U_{t}"] for t in tiers]
    return bool(np.max(epochs) > 1.0)


def fit(data: FitData, law: str = "chinchilla", n_bootstrap: int = 1000, seed: int = 0,
        reference: str = "raw", objective: Objective = Objective(), backtests: bool = True,
        with_data: bool = False, horizon: float = DEFAULT_HORIZON) -> LawFit:
    """One law over all of `data` (`law_json`'s entry, read as a `LawFit`)."""
    return LawFit.from_json(law_json(data, law, n_bootstrap, seed, reference, objective, backtests, with_data, horizon))


def law_json(data: FitData, law: str = "chinchilla", n_bootstrap: int = 1000, seed: int = 0,
             reference: str = "raw", objective: Objective = Objective(), backtests: bool = True,
             with_data: bool = False, horizon: float = DEFAULT_HORIZON, repetition: str = "shared") -> dict[str, Any]:
    """One law over all of `data`, as its JSON entry (`repetition`: the quality law's R_D*, see
    make_law): the fit, bootstrap percentile intervals (`n_bootstrap` resamples of the
    configurations, seeds kept together; 0 for none), the compute-optimal
    allocation at 1x, 10x and 100x the largest run's compute under the data's convention, the
    error model of the prediction intervals (rolling backtests; `backtests=False` skips it), the
    seed noise and the runs left out (and, `with_data`, the fitted rows). `law="auto"` fits every
    candidate form and keeps the one its backtests favour at `horizon` (`_auto_json`). JSON-safe; `bootstrap_theta` keeps the resampled
    parameters so a prediction or recommendation reuses them instead of refitting."""
    from scaler.fitting.fitter import bootstrap, estimate
    from scaler.fitting.predict import FittedRange, error_model, seed_noise

    if n_bootstrap < 0 or n_bootstrap == 1:
        raise ParameterError(f"{{n_bootstrap}} {n_bootstrap}: expected 0 (none) or 2 or more resamples", "n_bootstrap")
    if not (math.isfinite(horizon) and horizon >= 1):
        raise ConfigError(f"horizon = {horizon}: expected an extrapolation factor of 1 or more")
    if law == "auto":
        return _auto_json(data, n_bootstrap, seed, objective, with_data, horizon)
    if law in ("quality", "chinchilla_group_e", "mixing"):
        data = with_group_weights(data)
    law_object = make_law(law, data, reference, repetition)
    fitted = FittedRange.of(data)
    result = estimate(law_object, data.columns, data.loss, **objective.kwargs())
    if n_bootstrap:
        result = bootstrap(law_object, data.columns, data.loss, result, n=n_bootstrap, seed=seed,
                           clusters=data.clusters, **objective.kwargs())
    out: dict[str, Any] = {"law": law_object.name, "source": data.source, "dropped": data.dropped,
                           "excluded": data.excluded, "compute": data.compute.to_json(),
                           "flops_convention": data.compute.convention, "largest_run_flops": fitted.flops_max,
                           "fitted_range": dataclasses.asdict(fitted), "objective_text": objective.text(),
                           "seed_noise": seed_noise(data), **result.to_json()}
    samples = None if result.bootstrap_theta is None else np.asarray(result.bootstrap_theta)
    out["allocations"], out["allocation_exponents"] = _allocations(law_object, result.theta, samples, data.compute,
                                                                   fitted.flops_max)
    if samples is not None:
        out["bootstrap_theta"] = samples.tolist()
    if backtests:
        out["error_model"] = error_model(law_object, data, result.theta, objective.kwargs()).to_json()
    if with_data:
        out["data"] = data.to_json()
    return json_safe(out)


def _allocations(law: Any, theta: np.ndarray, samples: np.ndarray | None, compute: Compute, largest: float
                 ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The compute-optimal (N, D) at ALLOCATION_MULTIPLES x the largest run, under `compute`, with
    bootstrap intervals; and the local exponents a = dlog N_opt / dlog C, b = dlog D_opt / dlog C
    between the first and the last of those budgets."""
    from scaler.fitting.compute import allocate

    rows: list[dict[str, Any]] = []
    logs: list[tuple[np.ndarray, np.ndarray]] = []
    for multiple in ALLOCATION_MULTIPLES:
        budget = multiple * largest
        point = allocate(law, theta, budget, compute)
        if point is None:
            return [], None
        row = {"flops": budget, "multiple": multiple, "convention": compute.convention,
               "n_opt": float(point[0][0]), "d_opt": float(point[1][0])}
        if samples is not None and len(samples):
            n_s, d_s, _ = allocate(law, samples, budget, compute)  # type: ignore[misc]
            row["n_opt_interval"] = list(percentile_interval(n_s))
            row["d_opt_interval"] = list(percentile_interval(d_s))
            logs.append((np.log(np.r_[point[0], n_s]), np.log(np.r_[point[1], d_s])))
        else:
            logs.append((np.log(point[0]), np.log(point[1])))
        rows.append(row)
    span = math.log(ALLOCATION_MULTIPLES[-1] / ALLOCATION_MULTIPLES[0])
    a = (logs[-1][0] - logs[0][0]) / span
    b = (logs[-1][1] - logs[0][1]) / span
    exponents: dict[str, Any] = {"a": float(a[0]), "b": float(b[0]), "between_flops": [rows[0]["flops"], rows[-1]["flops"]],
                                 "convention": compute.convention}
    if len(a) > 1:
        exponents["a_interval"], exponents["b_interval"] = list(percentile_interval(a[1:])), list(percentile_interval(b[1:]))
    return rows, exponents


def _auto_json(data: FitData, n_bootstrap: int = 1000, seed: int = 0, objective: Objective = Objective(),
               with_data: bool = False, horizon: float = DEFAULT_HORIZON) -> dict[str, Any]:
    """Fit every candidate form (`choose.candidate_laws`), backtest each, and keep the one
    `choose.choose` picks: refused when the runs do not identify it, scored at `horizon`, the
    simplest within one standard error of the best. The result is the chosen law's fit (bootstrap
    and error model included) with `candidates` (one row per form: score, its standard error, the
    gap to the best, refusal or error), `chosen_by` (the reason in words) and `ensemble` (every
    law `choose.ensemble` keeps: their disagreement widens the prediction intervals,
    `predict.law_disagreement`)."""
    names = candidate_laws(data, len(tiers_of(with_group_weights(data))))
    fits: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    for name in names:
        try:
            fits[name] = law_json(data, name, 0, seed, objective=objective)
        except (ValueError, ConfigError) as err:
            failed.append({"law": name, "error": str(err)})
    try:
        best, rows, reason = choose(fits, data, horizon)
    except ValueError as err:
        raise ConfigError(f"law auto: {err}" + "".join(f"; {f['law']}: {f['error']}" for f in failed)) from None
    chosen = law_json(data, best, n_bootstrap, seed, objective=objective, with_data=with_data, backtests=False)
    chosen["error_model"] = fits[best]["error_model"]  # the same full-data fit: its backtests stand
    chosen["ensemble"] = ensemble(rows, fits)
    chosen["candidates"] = rows + failed
    chosen["chosen_by"] = reason
    chosen["horizon"] = horizon
    return json_safe(chosen)


def _group_fit(part: FitData, law: str, n_bootstrap: int, seed: int, objective: Objective,
               horizon: float = DEFAULT_HORIZON) -> dict[str, Any]:
    """The parametric fit, IsoFLOP approach 2 and a backtest of one data option; a method that
    cannot run on these points records its error instead of failing the others."""
    from scaler.fitting.backtest import backtest
    from scaler.fitting.isoflop import approach2

    entry: dict[str, Any] = {}
    for key, compute in (
        ("parametric", lambda: law_json(part, law, n_bootstrap, seed, objective=objective, horizon=horizon)),
        ("isoflop", lambda: approach2(part.frame(), seed=seed).to_json()),
        ("backtest", lambda: backtest(make_law(entry["parametric"].get("spec", {}).get("family", law), part),
                                      part.frame(), **objective.kwargs()).to_json()),
    ):
        try:
            entry[key] = compute()
        except (ValueError, ConfigError) as err:
            entry[key] = {"error": str(err)}
    exponents = entry["parametric"].get("allocation_exponents")  # laws in N and D only
    if exponents and "error" not in entry["isoflop"]:
        iso = entry["isoflop"]
        entry["compare"] = [
            {"method": f"parametric ({exponents['convention']}, local between 1x and 100x the largest run)",
             "a": exponents["a"], "a_interval": exponents.get("a_interval"),
             "b": exponents["b"], "b_interval": exponents.get("b_interval")},
            {"method": "isoflop approach 2", "a": iso["a"], "a_interval": iso["a_interval"],
             "b": iso["b"], "b_interval": iso["b_interval"]},
        ]
    return entry


def fit_sweep(data: FitData, law: str = "chinchilla", n_bootstrap: int = 1000, seed: int = 0,
              reference: str = "raw", objective: Objective = Objective(), horizon: float = DEFAULT_HORIZON
              ) -> SweepFit:
    """Per data option and across options (`sweep_json`, read as a `SweepFit`)."""
    return SweepFit.from_json(sweep_json(data, law, n_bootstrap, seed, reference, objective, horizon))


def sweep_json(data: FitData, law: str = "chinchilla", n_bootstrap: int = 1000, seed: int = 0,
               reference: str = "raw", objective: Objective = Objective(), horizon: float = DEFAULT_HORIZON
               ) -> dict[str, Any]:
    """Per data option (tier or mix: `data.groups`), the parametric fit of `law`, IsoFLOP
    approach 2 and a backtest; across options, the quality law (effective-data multipliers
    kappa_t against `reference`) when the runs span two tiers or groups or more. Groups whose
    every fit failed are counted in `failed_groups`."""
    groups = data.groups if data.groups is not None else np.asarray(["all"] * data.n_points)
    out: dict[str, Any] = {"source": data.source, "n_points": data.n_points, "excluded": data.excluded,
                           "compute": data.compute.to_json(), "flops_convention": data.compute.convention,
                           "largest_run_flops": float(np.max(data.columns["C"])), "data": data.to_json(),
                           "bits_per_nat": data.bits_per_nat, "groups": {}}
    for label in sorted(set(groups.tolist())):
        out["groups"][label] = _group_fit(data.subset(groups == label), law, n_bootstrap, seed, objective, horizon)
    out["failed_groups"] = sorted(g for g, e in out["groups"].items() if "error" in e["parametric"])
    if len(out["groups"]) >= 2:
        out["order"] = order_stability(data.columns["C"], data.loss, groups)
    if len(tiers_of(with_group_weights(data))) >= 2 and law != "mixing":
        try:
            repetition = _repetition(with_group_weights(data), reference)
            if repetition:
                out["repetition"] = repetition
            out["quality"] = law_json(data, "quality", n_bootstrap, seed, reference, objective,
                                      repetition=repetition["verdict"] if repetition else "shared")
        except (ValueError, ConfigError) as err:
            out["quality"] = {"error": str(err)}
    return json_safe(out)


def _repetition(data: FitData, reference: str) -> dict[str, Any] | None:
    """Shared against per-tier R_D* (scaler/fitting/repetition.py) when the runs repeat data; None otherwise."""
    from scaler.fitting.repetition import repetition_test

    tiers = tiers_of(data)
    if not repeats_data(data) or reference not in tiers:
        return None
    return repetition_test(data, tiers, reference)


def fit_key(data: FitData, law: str, eval_set: str, n_bootstrap: int, seed: int, reference: str,
            objective: Objective = Objective(), horizon: float = DEFAULT_HORIZON) -> dict[str, Any]:
    """Everything a store's fit depends on. The runs enter as a hash of their sorted (id, loss)
    pairs, so a new, removed or retrained run changes the key."""
    ids = data.run_ids if data.run_ids is not None else np.arange(data.n_points).astype(str)
    pairs = sorted(f"{run_id}:{loss!r}" for run_id, loss in zip(ids.tolist(), data.loss.tolist(), strict=True))
    runs_sha256 = hashlib.sha256("\n".join(pairs).encode()).hexdigest()
    return {"schema": FIT_SCHEMA, "law": law, "reference": reference, "eval_set": eval_set,
            "bootstrap": n_bootstrap, "seed": seed, "objective": dataclasses.asdict(objective),
            "horizon": horizon, "n_runs": data.n_points, "excluded": data.excluded, "runs_sha256": runs_sha256}
