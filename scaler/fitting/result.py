"""Fit results, read once (docs/design.md §5): the one reader of every fit JSON scaler writes.

- `LawFit`: one law fitted to one table (what `scaler.fit` returns): the law rebuilt from its
  spec (an older entry without one: from its name), `theta` and `params`, bootstrap `samples`,
  compute convention, fitted range and error model (its backtests); `predict`, `loss` and
  `allocate` through the law's own formula.
- `SweepFit`: a sweep's fit (what `scaler.fit_sweep` returns, a store's fit.json: per group a
  parametric `LawFit`, and the quality law across tiers) or one law's entry, read as one group
  "all": `group(label)`, `quality`, `law_for(group)` (what predicts a group's runs),
  `decision_law()` (what recommend decides with), `sweep_json()` (the report's shape).
- `predict(fit, n, d)`: predicted losses with 95% intervals and rankings (`scaler predict`).

Both are read-only mappings over their JSON (`fit["theta"]` is the file's key), with `to_json`
and `from_json`: what is written is exactly what is read back.

Anything a fit cannot answer is a `PredictError` whose message says what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaler.errors import ParameterError
from scaler.fitting.compute import Compute, allocate
from scaler.fitting.predict import ErrorModel, FittedRange, predict_points, sample_array

__all__ = ["PredictError", "LawFit", "SweepFit", "predict", "rank_groups"]


class PredictError(ParameterError):
    """A fit that cannot answer what is asked (not a fit, a failed or unknown group, a missing
    column); the message says what is missing."""


class _JsonView(Mapping[str, Any]):
    """A read-only mapping over `self._json`, the JSON as written (`to_json`)."""

    _json: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self._json[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._json)

    def __len__(self) -> int:
        return len(self._json)

    def to_json(self) -> dict[str, Any]:
        return dict(self._json)


@dataclass(frozen=True, eq=False)
class LawFit(_JsonView):
    """One fitted law: its JSON entry (`entry`, every key kept) and what is computed from it."""

    entry: Mapping[str, Any]
    law: Any
    theta: np.ndarray

    @property
    def _json(self) -> Mapping[str, Any]:  # type: ignore[override]
        return self.entry

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> LawFit:
        """The entry's law and theta, checked: a failed fit, a spec that does not rebuild or a theta
        of the wrong length is a PredictError."""
        from scaler.fitting import laws

        if not isinstance(entry, Mapping):
            raise PredictError("not a fit entry: expected the JSON of `scaler fit`")
        if "error" in entry:
            raise PredictError(f"the fit failed: {entry['error']}")
        try:
            law = laws.law_from_spec(entry.get("spec") or {"family": entry.get("law")})
            theta = np.asarray(entry["theta"], dtype=np.float64)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise PredictError(f"not a usable fit entry ({type(err).__name__}: {err}): expected the JSON of "
                               "`scaler fit`") from None
        if theta.shape != (law.n_params,) or not np.isfinite(theta).all():
            raise PredictError(f"the {law.name} fit has {theta.size} usable parameters; the law has {law.n_params}")
        return cls(entry, law, theta)

    @property
    def name(self) -> str:
        return str(self.law.name)

    @property
    def params(self) -> dict[str, float]:
        """The point estimate by parameter name (the law's own parametrisation, e.g. log A)."""
        return dict(zip(self.law.param_names, self.theta.tolist(), strict=True))

    @property
    def samples(self) -> np.ndarray:
        """The bootstrap draws (S, P), finite rows only (none: 0 rows)."""
        return sample_array(self.entry.get("bootstrap_theta"), self.law.n_params)

    @property
    def compute(self) -> Compute:
        """The fit's compute convention (an entry that records none: 6ND)."""
        return Compute.from_json(self.entry.get("compute"))

    @property
    def largest_run_flops(self) -> float:
        try:
            return float(self.entry["largest_run_flops"])
        except (KeyError, TypeError, ValueError):
            raise PredictError(f"the {self.law.name} fit records no largest run's compute (largest_run_flops)") from None

    @property
    def fitted_range(self) -> FittedRange:
        return FittedRange.from_json(self.entry.get("fitted_range"), self.largest_run_flops)

    @property
    def errors(self) -> ErrorModel | None:
        raw = self.entry.get("error_model")
        return ErrorModel.from_json(raw) if raw else None

    def mix(self, group: str | None) -> dict[str, float]:
        """The mix columns of a run on `group` alone (one-hot w_<group>) for a law over groups;
        {} for a law of N and D."""
        weights = [c for c in self.law.columns if c.startswith("w_")]
        if not weights:
            return {}
        names = [w.removeprefix("w_") for w in weights]
        if group not in names:
            raise PredictError(f"the {self.law.name} law predicts runs on one of {', '.join(names)}: "
                               f"give the tier or group (got {group!r})")
        return {w: float(w == f"w_{group}") for w in weights}

    def columns(self, n: np.ndarray, d: np.ndarray, group: str | None = None, unique: Any = None,
                constants: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """The law's columns for runs of `n` parameters and `d` tokens on `group`."""
        if "N" not in self.law.columns or "D" not in self.law.columns:
            raise PredictError(f"the {self.law.name} law is not a law in parameters and tokens: it predicts no run's loss")
        n, d = np.atleast_1d(np.asarray(n, np.float64)), np.atleast_1d(np.asarray(d, np.float64))
        cols = {"N": n, "D": d, **{k: np.full(len(n), v) for k, v in self.mix(group).items()}}
        if unique is not None:
            cols["U"] = np.broadcast_to(np.asarray(unique, np.float64), n.shape)
        cols.update({k: np.full(len(n), float(v)) for k, v in (constants or {}).items()})
        missing = [c for c in self.law.columns if c not in cols]
        if missing:
            hint = " (give {unique} COL)" if missing == ["U"] else ""
            raise PredictError(f"the {self.law.name} law needs columns {missing} for a prediction{hint}", "unique")
        return cols

    def loss(self, n: Any, d: Any, group: str | None = None, **columns: Any) -> np.ndarray:
        """The point estimate's loss of runs (n, d) on `group`, through the law's formula."""
        return self.law.predict(self.theta, self.columns(n, d, group, **columns))

    def predict(self, n: Any, d: Any = None, flops: Any = None, groups: Sequence[str | None] | None = None,
                **columns: Any) -> dict[str, Any]:
        """`predict` on this fit: {"points": [...], "rankings": [...]}."""
        return predict(self, n, d, flops, groups, **columns)

    def predict_points(self, n: Any, d: Any, group: str | None = None, **columns: Any) -> list[dict[str, Any]]:
        """Every run's predicted loss, 95% interval, extrapolation and width terms
        (`scaler.fitting.predict.predict_points`), in input order."""
        cols = self.columns(n, d, group, **columns)
        if not (np.all(cols["N"] > 0) and np.all(cols["D"] > 0) and np.isfinite(cols["N"]).all()
                and np.isfinite(cols["D"]).all()):
            raise PredictError("parameters and tokens must be positive finite numbers")
        return predict_points(self.law, self.theta, self.samples, cols, self.compute, self.fitted_range, self.errors,
                              ensemble=self.entry.get("ensemble"))

    def allocate(self, budget_flops: float, group: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The compute-optimal (N, D, loss) for `budget_flops` under the fit's convention, for the
        point estimate and every bootstrap draw (row 0: the point estimate)."""
        thetas = np.vstack([self.theta, self.samples])
        return allocate(self.law, thetas, budget_flops, self.compute, self.mix(group) or None)


@dataclass(frozen=True, eq=False)
class SweepFit(_JsonView):
    """Any fit JSON scaler writes: a sweep's (groups of parametric fits, the quality law) or one
    law's entry. `raw` is the JSON as read; nothing is dropped."""

    raw: Mapping[str, Any]

    @property
    def _json(self) -> Mapping[str, Any]:  # type: ignore[override]
        return self.raw

    @classmethod
    def from_json(cls, raw: Any) -> SweepFit:
        if isinstance(raw, SweepFit):
            return raw
        if isinstance(raw, LawFit):
            return cls(raw.entry)
        if isinstance(raw, Mapping) and "spec" in raw and "groups" not in raw:
            return cls(raw)
        groups = raw.get("groups") if isinstance(raw, Mapping) else None
        if not isinstance(groups, Mapping) or not all(
                isinstance(e, Mapping) and isinstance(e.get("parametric"), Mapping) for e in groups.values()):
            raise PredictError("not a fit: expected the JSON of `scaler fit` (a store's fit.json: groups with "
                               "parametric fits; or one law's entry, --out FILE)")
        return cls(raw)

    @property
    def single_law(self) -> bool:
        return "spec" in self.raw and "groups" not in self.raw

    @property
    def group_names(self) -> list[str]:
        return ["all"] if self.single_law else sorted(self.raw.get("groups") or {})

    def group(self, label: str) -> LawFit:
        """The parametric fit of one group (one law's entry: its only group, "all")."""
        if self.single_law and label == "all":
            return LawFit.from_json(self.raw)
        groups = self.raw.get("groups") or {}
        if label not in groups:
            raise PredictError(f"group {label!r} is not in the fit (groups: {', '.join(sorted(groups))})")
        return LawFit.from_json(groups[label]["parametric"])

    @property
    def quality(self) -> LawFit | None:
        """The quality law across tiers, when the fit has a usable one."""
        entry = self.raw if self.single_law else self.raw.get("quality")
        if not isinstance(entry, Mapping) or "error" in entry or (entry.get("spec") or {}).get("family") != "quality":
            return None
        return LawFit.from_json(entry)

    def sweep_json(self) -> dict[str, Any]:
        """The sweep fit's shape: a sweep fit as is; one law's entry as {"groups": {"all":
        {"parametric": entry}}, ...} with its source, point count, exclusions, compute and data at
        the top, "single_law": True, and for a quality law the entry as "quality" too."""
        if not self.single_law:
            return dict(self.raw)
        entry = {k: v for k, v in self.raw.items() if k != "data"}
        data = self.raw.get("data") or {}
        out: dict[str, Any] = {
            "source": self.raw.get("source"), "n_points": self.raw.get("n_points") or len(data.get("loss") or []),
            "excluded": self.raw.get("excluded") or {}, "compute": self.raw.get("compute"),
            "flops_convention": self.raw.get("flops_convention"), "largest_run_flops": self.raw.get("largest_run_flops"),
            "data": data, "groups": {"all": {"parametric": entry}}, "failed_groups": [], "single_law": True,
        }
        if (self.raw.get("spec") or {}).get("family") == "quality":
            out["quality"] = entry
        return out

    def compute(self) -> Compute | None:
        """The convention the fit records (its top-level "compute", else its first usable group's);
        None when it records none (a fit written before conventions were)."""
        raw = self.raw.get("compute")
        for e in (self.raw.get("groups") or {}).values():
            if raw:
                break
            par = e.get("parametric") if isinstance(e, Mapping) else None
            if isinstance(par, Mapping) and "error" not in par:
                raw = par.get("compute")
        try:
            return Compute.from_json(raw) if raw else None
        except (TypeError, ValueError):
            return None

    def law_for(self, group: str | None) -> tuple[LawFit, dict[str, float]]:
        """The fitted law that predicts a run of `group` and the mix columns it needs: one law's
        entry predicts every run (a law over groups reads `group` as the run's tier); a sweep fit
        predicts a group with that group's parametric law, or with the quality law when `group` is
        one of its tiers but not a fitted group."""
        if self.single_law:
            fit = LawFit.from_json(self.raw)
            return fit, fit.mix(group)
        groups = self.raw["groups"]
        if group is None and len(groups) == 1:
            group = next(iter(groups))
        if group in groups and "error" not in groups[group]["parametric"]:
            return LawFit.from_json(groups[group]["parametric"]), {}
        quality = self.raw.get("quality")
        if isinstance(quality, Mapping) and "error" not in quality and group is not None:
            fit = LawFit.from_json(quality)
            if group in fit.law.spec.get("tiers", ()):
                return fit, fit.mix(group)
        known = sorted(groups)
        if group is None:
            raise PredictError(f"the fit has several groups ({', '.join(known)}): say which ({{groups}})", "groups")
        failed = groups.get(group, {}).get("parametric", {}).get("error")
        if failed:
            raise PredictError(f"group {group!r}: its fit failed ({failed})")
        raise PredictError(f"group {group!r} is not in the fit (groups: {', '.join(known)})")

    def predict(self, n: Any, d: Any = None, flops: Any = None, groups: Sequence[str | None] | None = None,
                **columns: Any) -> dict[str, Any]:
        """`predict` on this fit."""
        return predict(self.raw, n, d, flops, groups, **columns)

    def loss(self, n: Any, d: Any, group: str | None = None, **columns: Any) -> np.ndarray:
        """The point estimate's loss of runs (n, d) on `group`, through its law's formula."""
        law, _ = self.law_for(group)
        return law.loss(n, d, group, **columns)

    def allocate(self, budget_flops: float, group: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """`LawFit.allocate` with the law that predicts `group`'s runs (`law_for`)."""
        law, _ = self.law_for(group)
        return law.allocate(budget_flops, group)

    def decision_law(self) -> tuple[Mapping[str, Any], str | None]:
        """The entry a recommendation decides with, and for a store with runs on one tier that tier:
        one law's entry; else the quality law; else the one group's parametric fit."""
        if self.single_law or ("error" in self.raw and "groups" not in self.raw):
            return self.raw, None
        if self.raw.get("quality") is not None:
            return self.raw["quality"], None
        groups = self.raw.get("groups", {})
        if len(groups) != 1:
            raise ValueError("the fit has no quality law: recommend needs runs on two tiers or more, or on one")
        (tier, group), = groups.items()
        return group["parametric"], tier


def predict(fit: Mapping[str, Any], n: Any, d: Any = None, flops: Any = None,
            groups: Sequence[str | None] | None = None, unique: Any = None,
            constants: Mapping[str, float] | None = None) -> dict[str, Any]:
    """`{"points": [{"n", "d", "group", "loss", "interval", "extrapolation", "width", ...}],
    "rankings": [...]}` for every (n, d) (or (n, flops): D from the FLOPs in the fit's convention),
    in input order; a ranking of the groups (`rank_groups`) wherever one (n, d) is asked for two
    groups or more. `n`, `d`, `flops` and `unique` are numbers or one per point; `unique` is the
    unique tokens U of the data-constrained law, `constants` columns with one value for every point
    (a quality law's tier pools U_<tier>)."""
    fit = SweepFit.from_json(fit)
    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    labels = list(groups) if groups is not None else [None] * len(n)
    if (d is None) == (flops is None):
        raise PredictError("give tokens (D) or FLOPs for every point, not both")
    d, flops, unique = (None if v is None else np.broadcast_to(np.asarray(v, np.float64), n.shape)
                        for v in (d, flops, unique))  # one number, or one per point
    if len(labels) != len(n):
        raise PredictError(f"{len(labels)} group labels for {len(n)} points")
    out: list[dict[str, Any] | None] = [None] * len(n)
    for label in dict.fromkeys(labels):
        rows = np.array([i for i, g in enumerate(labels) if g == label])
        law, _ = fit.law_for(label)
        d_rows = d[rows] if d is not None else law.compute.tokens(n[rows], flops[rows])
        predicted = law.predict_points(n[rows], d_rows, label, unique=None if unique is None else unique[rows],
                                       constants=constants)
        for i, p in zip(rows, predicted, strict=True):
            out[i] = {"group": label, "law": law.law.name, "convention": law.compute.convention, **p}
    return {"points": out, "rankings": _rankings(fit, out, constants)}


def _rankings(fit: SweepFit, points: Sequence[Mapping[str, Any] | None],
              constants: Mapping[str, float] | None) -> list[dict[str, Any]]:
    """A ranking (`rank_groups`) for every (N, D) predicted for two groups or more; the fit's
    observed order stability (`order`) rides along with each."""
    at: dict[tuple[float, float], list[str]] = {}
    for p in points:
        if p is not None and p["group"] is not None:
            at.setdefault((p["n"], p["d"]), []).append(p["group"])
    out = []
    for (n, d), labels in at.items():
        labels = list(dict.fromkeys(labels))
        if len(labels) >= 2:
            ranking = rank_groups(fit.raw, n, d, labels, constants)
            ranking["observed_order"] = fit.raw.get("order")
            out.append(ranking)
    return out


def rank_groups(fit: Mapping[str, Any], n: float, d: float, groups: Sequence[str],
                constants: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The predicted order of `groups` (tiers, datasets, mixes) for a run of `n` parameters and
    `d` tokens, best (lowest loss) first, with the bootstrap probability of that whole order and of
    each adjacent pair. A law over groups (the quality law) draws every group from one parameter
    sample; separate per-group fits pair their independent samples by index."""
    from scaler.fitting.stats import order_probability

    if len(set(groups)) < 2:
        raise PredictError("a ranking needs two groups or more")
    fit = SweepFit.from_json(fit)
    points, columns = [], []
    for label in groups:
        law, _ = fit.law_for(label)
        cols = law.columns(np.array([float(n)]), np.array([float(d)]), label, constants=constants)
        points.append(float(law.law.predict(law.theta, cols)[0]))
        columns.append(np.array([float(law.law.predict(s, cols)[0]) for s in law.samples]))
    size = min(len(c) for c in columns)
    order, probability, pairs = order_probability(points, np.column_stack([c[:size] for c in columns]))
    ranked = [groups[i] for i in order]
    return {"n": float(n), "d": float(d), "order": ranked, "losses": {g: points[i] for i, g in enumerate(groups)},
            "probability": probability, "n_samples": size,
            "pairs": [{"better": a, "worse": b, "probability": p} for a, b, p in zip(ranked[:-1], ranked[1:], pairs, strict=True)]}
