"""Prediction intervals that hold at held-out scale (docs/design.md §5, "Predictions").

A predicted loss is off for three reasons, and the interval adds all three (on log loss):

1. parameter uncertainty: the spread of the bootstrap samples' predictions at the point
   (`sd_boot`, the standard deviation of log L over the samples);
2. run-to-run scatter: how far single runs sit from the fitted law inside the fitted range
   (`sigma_run`, a robust (MAD) standard deviation of the in-sample log residuals; it includes
   seed noise);
3. misspecification, which grows with extrapolation and which the bootstrap cannot see: measured
   by rolling backtests. The law is refitted below several cuts (the 30th to 80th percentiles),
   along compute (the runs with C <= cut) and along model size (N <= cut), the two ways a budget
   extrapolates (cuts that select the same runs count once); each held-out
   run's log residual r = log L_obs - log L_pred is recorded with its extrapolation distance
   x = max(N / N_max, D / D_max, C / C_max, 1) against the fit side's largest values.

The model of the residuals is r ~ sigma(x) z with sigma(x)^2 = sigma_run^2 + (growth log10 x)^2;
`growth` (the misspecification's standard deviation per decade of extrapolation) is its maximum
likelihood estimate (Gaussian z) on the backtest residuals. The 95% multiplier is calibrated the
way split-conformal prediction does: the 95th percentile of |r| / sigma(x) over the backtest
residuals (never below 1.96), so heavy tails widen the interval. For a point at distance x:

    log L = log L_hat +- multiplier sqrt(sd_boot^2 + sigma(x)^2)

With fewer than MIN_CALIBRATION backtest residuals the multiplier is 1.96 and the model says it is
uncalibrated. The printed `extrapolation` of a point is its compute over the largest fitted run's
(C / C_max, in the fit's convention); the error model uses the distance x above, which is the
same or larger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scaler.fit.compute import Compute
from scaler.fit.data import FitData, json_safe

__all__ = ["ErrorModel", "FittedRange", "rolling_backtests", "error_model", "predict_points", "robust_sd",
           "seed_noise", "MIN_CALIBRATION", "EXTRAPOLATION_WARN", "EXTRAPOLATION_REFUSE", "predict", "law_entry",
           "PredictError"]

CUT_QUANTILES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # of the runs' compute and of their sizes: fit below, score above
MIN_CALIBRATION = 20  # backtest residuals needed to calibrate the multiplier
EXTRAPOLATION_WARN = 100.0  # compute over the largest fitted run's beyond which predictions warn
EXTRAPOLATION_REFUSE = 1e4  # ... beyond which a recommendation refuses unless forced
Z95 = 1.959963984540054


@dataclass(frozen=True)
class FittedRange:
    """The largest parameters, tokens and compute among the fitted runs (and the smallest compute)."""

    n_max: float
    d_max: float
    flops_max: float
    flops_min: float = 0.0

    @classmethod
    def of(cls, data: FitData) -> FittedRange:
        cols = data.columns
        return cls(float(np.max(cols["N"])), float(np.max(cols["D"])), float(np.max(cols["C"])),
                   float(np.min(cols["C"])))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None, largest_run_flops: float) -> FittedRange:
        """As a fit entry saves it (`fitted_range`); an entry written before ranges were saved knows
        only its largest compute."""
        if not raw:
            return cls(math.inf, math.inf, float(largest_run_flops))
        return cls(float(raw["n_max"]), float(raw["d_max"]), float(raw["flops_max"]), float(raw.get("flops_min") or 0.0))

    def span_text(self, convention: str) -> str:
        """"the fitted runs span C = a to b FLOPs (convention)", for warnings and notes."""
        span = f"{self.flops_min:.3g} to {self.flops_max:.3g}" if self.flops_min else f"up to {self.flops_max:.3g}"
        return f"the fitted runs span C = {span} FLOPs ({convention})"

    def distance(self, n: Any, d: Any, flops: Any) -> np.ndarray:
        """x = max(N / N_max, D / D_max, C / C_max, 1): how far beyond the fitted runs a point is."""
        ratios = [np.asarray(n, float) / self.n_max, np.asarray(d, float) / self.d_max,
                  np.asarray(flops, float) / self.flops_max]
        return np.maximum(np.maximum.reduce(ratios), 1.0)


@dataclass
class ErrorModel:
    sigma_run: float  # robust sd of in-sample log residuals
    growth: float  # misspecification sd of log loss per decade of extrapolation distance
    multiplier: float  # the 95% multiplier (calibrated on the backtests when `calibrated`)
    calibrated: bool
    n_residuals: int  # backtest residuals the model was estimated from
    backtests: list[dict[str, Any]] = field(default_factory=list)  # one summary per cut
    residuals: dict[str, list[float]] = field(default_factory=dict)  # {"distance": [...], "residual": [...]} pooled

    def sigma(self, distance: Any) -> np.ndarray:
        lx = np.log10(np.maximum(np.asarray(distance, float), 1.0))
        return np.sqrt(self.sigma_run**2 + (self.growth * lx) ** 2)

    def interval(self, loss: Any, sd_boot: Any, distance: Any) -> tuple[np.ndarray, np.ndarray]:
        """The 95% prediction interval of predicted `loss` whose bootstrap spread of log loss is
        `sd_boot`, at extrapolation `distance`: loss x exp(+-multiplier sqrt(sd_boot^2 + sigma(x)^2))."""
        half = self.multiplier * np.sqrt(np.asarray(sd_boot, float) ** 2 + self.sigma(distance) ** 2)
        loss = np.asarray(loss, float)
        return loss * np.exp(-half), loss * np.exp(half)

    def to_json(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ErrorModel:
        return cls(float(raw["sigma_run"]), float(raw["growth"]), float(raw["multiplier"]),
                   bool(raw["calibrated"]), int(raw["n_residuals"]), list(raw.get("backtests", [])),
                   dict(raw.get("residuals", {})))


def robust_sd(residuals: Any) -> float:
    """1.4826 x the median absolute deviation: a standard deviation that outliers do not inflate."""
    r = np.asarray(residuals, float)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return float("nan")
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def seed_noise(data: FitData) -> dict[str, Any] | None:
    """The seed-to-seed spread: runs with the same configuration (`data.clusters`) are repeats.
    Pooled within-configuration standard deviation of log loss and of loss (nats); None without
    replicated configurations."""
    if data.clusters is None:
        return None
    log_loss = np.log(data.loss)
    sq_log = sq = 0.0
    dof = configs = 0
    for label in np.unique(data.clusters):
        members = data.clusters == label
        k = int(members.sum())
        if k < 2:
            continue
        sq_log += float(np.sum((log_loss[members] - log_loss[members].mean()) ** 2))
        sq += float(np.sum((data.loss[members] - data.loss[members].mean()) ** 2))
        dof += k - 1
        configs += 1
    if not dof:
        return None
    return {"sd_log": math.sqrt(sq_log / dof), "sd_nats": math.sqrt(sq / dof), "n_configs": configs,
            "n_runs": configs + dof}


def _law_inputs(law: Any, data: FitData) -> dict[str, np.ndarray]:
    return {c: data.columns[c] for c in law.columns}


def rolling_backtests(law: Any, data: FitData, fit_kwargs: Mapping[str, Any] | None = None,
                      ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Refit `law` below compute cuts and model-size cuts and score the runs above each.

    Returns (one summary per cut, residuals r = log L_obs - log L_pred, distances x), pooled over
    the cuts. A cut is used when its fit side has more rows than the law has parameters and it
    holds out at least one run; the refit starts from the law's whole grid (never from the full
    fit's optimum, which has seen the held-out runs) and weighs the held-out rows 0 (one compiled
    solver for every cut).
    """
    from scaler.fit.fitter import fit as fit_law  # lazy: JAX

    kwargs = dict(fit_kwargs or {})
    cols = _law_inputs(law, data)
    flops, n_params = data.columns["C"], data.columns["N"]
    cuts = [("compute", float(np.quantile(flops, q, method="lower"))) for q in CUT_QUANTILES]
    cuts += [("size", float(np.quantile(n_params, q, method="lower"))) for q in CUT_QUANTILES]
    summaries: list[dict[str, Any]] = []
    residuals, distances = [], []
    seen: set[bytes] = set()
    starts = law.start_grid()  # not the full fit's optimum: it has seen the held-out runs
    for axis, cut in cuts:
        fit_side = (flops <= cut) if axis == "compute" else (n_params <= cut)
        key = fit_side.tobytes()
        if key in seen or fit_side.sum() <= law.n_params or fit_side.all():
            continue
        seen.add(key)
        try:  # the held-out rows weigh 0: the full table's shape, so the solver compiled for it is reused
            result = fit_law(law, cols, data.loss, starts=starts, weights=fit_side.astype(np.float64), **kwargs)
        except ValueError:
            continue
        held = ~fit_side
        predicted = law.predict(result.theta, {k: v[held] for k, v in cols.items()})
        r = np.log(data.loss[held]) - np.log(predicted)
        side = data.subset(fit_side)
        x = FittedRange.of(side).distance(n_params[held], data.columns["D"][held], flops[held])
        ok = np.isfinite(r)
        residuals.append(r[ok])
        distances.append(x[ok])
        summaries.append({"axis": axis, "cut": cut, "n_fit": int(fit_side.sum()), "n_heldout": int(held.sum()),
                          "mean_abs_error_pct": float(100 * np.mean(np.abs(np.expm1(-r[ok])))) if ok.any() else None,
                          "bias_pct": float(100 * np.mean(np.expm1(-r[ok]))) if ok.any() else None,
                          "max_distance": float(np.max(x)), "converged": bool(result.converged)})
    if not residuals:
        return summaries, np.zeros(0), np.ones(0)
    return summaries, np.concatenate(residuals), np.concatenate(distances)


def error_model(law: Any, data: FitData, theta: np.ndarray, fit_kwargs: Mapping[str, Any] | None = None
                ) -> ErrorModel:
    """The residual model of the module docstring, from `data`'s in-sample residuals at `theta`
    and rolling backtests of `law`."""
    in_sample = np.log(data.loss) - np.log(law.predict(theta, _law_inputs(law, data)))
    sigma_run = robust_sd(in_sample)
    if not math.isfinite(sigma_run) or sigma_run <= 0:
        sigma_run = float(np.std(in_sample)) or 1e-6
    summaries, r, x = rolling_backtests(law, data, fit_kwargs)
    growth = _growth(r, np.log10(x), sigma_run)
    model = ErrorModel(sigma_run, growth, Z95, False, int(len(r)), summaries,
                       {"distance": x.tolist(), "residual": r.tolist()})
    if len(r) >= MIN_CALIBRATION:
        z = np.abs(r) / model.sigma(x)
        model.multiplier = max(Z95, float(np.quantile(z, 0.95)))
        model.calibrated = True
    return model


def _growth(r: np.ndarray, lx: np.ndarray, sigma_run: float) -> float:
    """Maximum-likelihood k in r ~ N(0, sigma_run^2 + (k lx)^2), over a log-spaced grid then refined."""
    if len(r) == 0 or not np.any(lx > 0):
        return 0.0

    def nll(k: np.ndarray) -> np.ndarray:
        var = sigma_run**2 + (k[:, None] * lx[None, :]) ** 2
        return np.sum(0.5 * np.log(var) + 0.5 * r[None, :] ** 2 / var, axis=1)

    grid = np.concatenate([[0.0], np.geomspace(1e-5, 1.0, 400)])
    best = int(np.argmin(nll(grid)))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    fine = np.linspace(lo, hi, 201)
    return float(fine[int(np.argmin(nll(fine)))])


def predict_points(law: Any, theta: np.ndarray, samples: np.ndarray | None, points: Mapping[str, Any],
                   compute: Compute, fitted: FittedRange, errors: ErrorModel | None, level: float = 0.95
                   ) -> list[dict[str, Any]]:
    """Predicted loss, interval and extrapolation for every row of `points` (the law's columns:
    N, D and any others). The interval is at 95% (the error model's multiplier); without an error
    model it is the bootstrap's alone. Rows keep their input order."""
    cols = {c: np.asarray(points[c], dtype=np.float64) for c in law.columns}
    n, d = cols["N"], cols["D"]
    flops = compute.flops(n, d)
    point = law.predict(theta, cols)
    log_samples = None
    if samples is not None and len(samples):
        preds = np.array([law.predict(s, cols) for s in samples])
        log_samples = np.log(preds)
    sd_boot = np.nanstd(log_samples, axis=0) if log_samples is not None else np.zeros_like(point)
    distance = fitted.distance(n, d, flops)
    if errors is not None:
        lo, hi = errors.interval(point, sd_boot, distance)
    elif log_samples is not None:
        from scaler.fit.stats import percentile_interval

        lo, hi = (np.exp(v) for v in percentile_interval(log_samples, level))
    else:
        lo = hi = point
    out = []
    for i in range(len(point)):
        out.append({"n": float(n[i]), "d": float(d[i]), "flops": float(flops[i]), "loss": float(point[i]),
                    "interval": [float(lo[i]), float(hi[i])], "extrapolation": float(flops[i] / fitted.flops_max),
                    "distance": float(distance[i])})
    return out


def sample_array(raw: Sequence[Sequence[float]] | None, n_params: int) -> np.ndarray:
    """Bootstrap samples as saved in fit.json, finite rows only."""
    s = np.asarray(raw if raw else np.zeros((0, n_params)), dtype=np.float64).reshape(-1, n_params)
    return s[np.isfinite(s).all(axis=1)]


# --------------------------------------------------------------------------------------------
# From a fit.json


class PredictError(ValueError):
    """A point that this fit cannot predict; the message says what is missing."""


def law_entry(fit_json: Mapping[str, Any], group: str | None) -> tuple[dict[str, Any], dict[str, float]]:
    """The fitted law that predicts a point of `group` and the mix columns it needs.

    A single-law fit (`scaler fit --table ... --out`, a dict with "spec") predicts every point;
    a law over tiers or groups (quality, per-group E) reads `group` as the tier the run trains on.
    A sweep fit (fit.json) predicts a group with that group's parametric law, or with the quality
    law when `group` is one of its tiers but not a fitted group."""
    from scaler.fit import laws

    def one_hot(entry: Mapping[str, Any]) -> dict[str, float]:
        weights = [c for c in laws.law_from_spec(entry["spec"]).columns if c.startswith("w_")]
        if not weights:
            return {}
        names = [w.removeprefix("w_") for w in weights]
        if group not in names:
            raise PredictError(f"the {entry['law']} law predicts runs on one of {', '.join(names)}: "
                               f"give the tier or group (got {group!r})")
        return {w: float(w == f"w_{group}") for w in weights}

    if "spec" in fit_json:
        if "error" in fit_json:
            raise PredictError(f"the fit failed: {fit_json['error']}")
        return _checked(fit_json), one_hot(fit_json)
    if not isinstance(fit_json.get("groups"), Mapping) or not all(
            isinstance(e, Mapping) and isinstance(e.get("parametric"), Mapping) for e in fit_json["groups"].values()):
        raise PredictError("not a fit: expected the JSON of `scaler fit` (groups with parametric fits, or one law)")
    groups = {g: _checked(e["parametric"]) for g, e in fit_json["groups"].items() if "error" not in e["parametric"]}
    if group is None and len(fit_json.get("groups", {})) == 1:
        group = next(iter(fit_json["groups"]))
    if group in groups:
        return dict(groups[group]), {}
    quality = fit_json.get("quality")
    if isinstance(quality, Mapping) and "error" not in quality and group is not None:
        tiers = laws.law_from_spec(_checked(quality)["spec"]).spec.get("tiers", ())
        if group in tiers:
            return dict(quality), one_hot(quality)
    known = sorted(fit_json.get("groups", {}))
    if group is None:
        raise PredictError(f"the fit has several groups ({', '.join(known)}): say which (--group COL or --tier T)")
    failed = fit_json.get("groups", {}).get(group, {}).get("parametric", {}).get("error")
    if failed:
        raise PredictError(f"group {group!r}: its fit failed ({failed})")
    raise PredictError(f"group {group!r} is not in the fit (groups: {', '.join(known)})")


def _checked(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A fit entry with what a prediction reads: a law spec that rebuilds, its theta and compute."""
    from scaler.fit import laws

    try:
        law = laws.law_from_spec(entry["spec"])
        theta = np.asarray(entry["theta"], dtype=np.float64)
        float(entry["largest_run_flops"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise PredictError(f"not a usable fit entry ({type(err).__name__}: {err}): expected the JSON of `scaler fit`") from None
    if theta.shape != (law.n_params,):
        raise PredictError(f"the {law.name} fit has {theta.size} parameters; the law has {law.n_params}")
    if "N" not in law.columns or "D" not in law.columns:
        raise PredictError(f"the {law.name} law is not a law in parameters and tokens: it predicts no run's loss")
    return dict(entry)


def predict(fit_json: Mapping[str, Any], n: Any, d: Any = None, flops: Any = None,
            groups: Sequence[str | None] | None = None, unique: Any = None,
            constants: Mapping[str, float] | None = None) -> dict[str, Any]:
    """`{"points": [{"n", "d", "group", "loss", "interval", "extrapolation", ...}]}` for every
    (n, d) (or (n, flops): D = flops / flops_per_token(N) in the fit's convention), in input order.
    `unique`: the unique tokens U of each point, for the data-constrained law; `constants`: columns
    with one value for every point (a quality law's tier pools U_<tier>)."""
    from scaler.fit import laws

    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    labels = list(groups) if groups is not None else [None] * len(n)
    if (d is None) == (flops is None):
        raise PredictError("give tokens (D) or FLOPs for every point, not both")
    if len(labels) != len(n):
        raise PredictError(f"{len(labels)} group labels for {len(n)} points")
    out: list[dict[str, Any] | None] = [None] * len(n)
    for label in dict.fromkeys(labels):
        rows = np.array([i for i, g in enumerate(labels) if g == label])
        entry, mix = law_entry(fit_json, label)
        law = laws.law_from_spec(entry["spec"])
        compute = Compute.from_json(entry.get("compute"))
        n_rows = n[rows]
        d_rows = (np.asarray(d, np.float64)[rows] if d is not None
                  else compute.tokens(n_rows, np.asarray(flops, np.float64)[rows]))
        points = {"N": n_rows, "D": d_rows, **{k: np.full(len(rows), v) for k, v in mix.items()}}
        if unique is not None:
            points["U"] = np.asarray(unique, np.float64)[rows]
        points.update({k: np.full(len(rows), float(v)) for k, v in (constants or {}).items()})
        missing = [c for c in law.columns if c not in points]
        if missing:
            hint = " (give --unique COL)" if missing == ["U"] else ""
            raise PredictError(f"the {law.name} law needs columns {missing} for a prediction{hint}")
        if not (np.all(n_rows > 0) and np.all(d_rows > 0) and np.all(np.isfinite(n_rows)) and np.all(np.isfinite(d_rows))):
            raise PredictError("parameters and tokens must be positive finite numbers")
        fitted = FittedRange.from_json(entry.get("fitted_range"), entry["largest_run_flops"])
        errors = ErrorModel.from_json(entry["error_model"]) if entry.get("error_model") else None
        samples = sample_array(entry.get("bootstrap_theta"), law.n_params)
        predicted = predict_points(law, np.asarray(entry["theta"], float), samples, points, compute, fitted, errors)
        for i, p in zip(rows, predicted, strict=True):
            out[i] = {"group": label, "law": law.name, "convention": compute.convention, **p}
    return {"points": out}
