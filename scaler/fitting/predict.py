"""Prediction intervals that hold at held-out scale (docs/design.md §5.7).

A predicted loss is off for four reasons, and the interval holds all four (on log loss):

1. parameter uncertainty: the bootstrap spread of the prediction at the point (`sd_boot`);
2. run-to-run scatter (`sigma_run`, a robust sd of the in-sample log residuals, seed noise included);
3. misspecification, which grows with the reach beyond the fitted runs and which the bootstrap cannot
   see: `growth`, the sd of log loss at a reach of one fitted span (`FittedRange.reach`: the largest
   over N, D and C of log10(v / v_max) / log10(v_max / v_min));
4. under `--law auto`, the candidate laws' disagreement (`sd_laws`, added at 1.96 sd).

The model is fitted to forward-chained backtests (`rolling_backtests`): the law refitted below the
30th-80th percentiles of compute and of model size, each held-out run's residual r kept with its
reach beyond its cut's runs. Each residual's scale is tau^2 = sigma_run^2 + (growth reach)^2,
`growth` their weighted maximum likelihood, and the 95% multiplier m(reach) the split-conformal
quantile of the scores |r| / tau, weighted towards backtests at a comparable reach (a Gaussian
kernel of LOCAL_BANDWIDTH spans, never below LOCAL_FLOOR) and towards cuts that fitted most of the
runs (weight: that share squared). At a point:

    half = max(m(reach) tau(reach), 1.96 sd_boot), then sqrt(half^2 + (1.96 sd_laws)^2)
    log L = log L_hat +- half

The backtest residuals already hold their refits' parameter error, so the bootstrap's spread is a
floor, not a term added again. A table with fewer than MIN_CALIBRATION runs or backtest residuals
cannot estimate a 95th percentile: its multiplier is the largest score, at least
SMALL_TABLE_MULTIPLIER, its interval adds sd_boot in quadrature, and the model says why
(`reason`). Each point says which term dominates its width and what would shrink it (`width`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scaler.fitting.compute import Compute
from scaler.fitting.inputs import FitData, json_safe

__all__ = ["Backtests", "ErrorModel", "FittedRange", "rolling_backtests", "error_model", "predict_points", "robust_sd",
           "seed_noise", "locality", "ranking_lines", "error_model_text", "SHRINK", "MIN_CALIBRATION",
           "EXTRAPOLATION_WARN", "EXTRAPOLATION_REFUSE", "sample_array"]

CUT_QUANTILES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # of the runs' compute and of their sizes: fit below, score above
MIN_RUNS_PER_PARAM = 3  # a backtest cut is used when its fit side has this many runs per law parameter
MIN_CALIBRATION = 20  # runs, and backtest residuals, needed to calibrate the multiplier
SMALL_TABLE_MULTIPLIER = 3.0  # the least multiplier of an uncalibrated (small) table
LOCAL_BANDWIDTH = 0.25  # relative reach (fitted spans): the kernel that weighs backtests at a comparable distance
MIN_SPAN = 0.5  # decades: the least compute span a fit is credited with
LOCAL_FLOOR = 0.1  # ... never below this weight, so every backtest counts a little
EXTRAPOLATION_WARN = 100.0  # compute over the largest fitted run's beyond which predictions warn
EXTRAPOLATION_REFUSE = 1e4  # ... beyond which a recommendation refuses unless forced
Z95 = 1.959963984540054


@dataclass(frozen=True)
class FittedRange:
    """The largest (and smallest) parameters, tokens and compute among the fitted runs."""

    n_max: float
    d_max: float
    flops_max: float
    flops_min: float = 0.0
    n_min: float = 0.0  # 0: unknown (an entry written before the smallest values were saved)
    d_min: float = 0.0

    @classmethod
    def of(cls, data: FitData) -> FittedRange:
        cols = data.columns
        return cls(float(np.max(cols["N"])), float(np.max(cols["D"])), float(np.max(cols["C"])),
                   float(np.min(cols["C"])), float(np.min(cols["N"])), float(np.min(cols["D"])))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None, largest_run_flops: float) -> FittedRange:
        """As a fit entry saves it (`fitted_range`); an entry written before ranges were saved knows
        only its largest compute."""
        if not raw:
            return cls(math.inf, math.inf, float(largest_run_flops))
        return cls(float(raw["n_max"]), float(raw["d_max"]), float(raw["flops_max"]), float(raw.get("flops_min") or 0.0),
                   float(raw.get("n_min") or 0.0), float(raw.get("d_min") or 0.0))

    def span_text(self, convention: str) -> str:
        """"the fitted runs span C = a to b FLOPs (convention)", for warnings and notes."""
        span = f"{self.flops_min:.3g} to {self.flops_max:.3g}" if self.flops_min else f"up to {self.flops_max:.3g}"
        return f"the fitted runs span C = {span} FLOPs ({convention})"

    def distance(self, n: Any, d: Any, flops: Any) -> np.ndarray:
        """x = max(N / N_max, D / D_max, C / C_max, 1): how far beyond the fitted runs a point is."""
        ratios = [np.asarray(n, float) / self.n_max, np.asarray(d, float) / self.d_max,
                  np.asarray(flops, float) / self.flops_max]
        return np.maximum(np.maximum.reduce(ratios), 1.0)

    def reach(self, n: Any, d: Any, flops: Any) -> np.ndarray:
        """How far beyond the fitted runs a point is in units of their own span, the largest over
        N, D and C: log10(v / v_max) / span_v, span_v = log10(v_max / v_min) (at least MIN_SPAN
        decades; 1 decade where the smallest value is unknown, which makes it log10 x). A power law's
        exponents are pinned by the span they are fitted on, so a fit over three decades predicts
        one decade beyond it about as well as a fit over one decade predicts a third of a decade."""
        out = np.zeros(np.shape(np.asarray(n, float)))
        for value, top, bottom in ((n, self.n_max, self.n_min), (d, self.d_max, self.d_min),
                                   (flops, self.flops_max, self.flops_min)):
            span = max(MIN_SPAN, math.log10(top / bottom)) if bottom > 0 and math.isfinite(top) else 1.0
            out = np.maximum(out, np.log10(np.maximum(np.asarray(value, float) / top, 1.0)) / span)
        return out


@dataclass
class ErrorModel:
    """The prediction intervals' model (module docstring). Every method takes a point's relative
    reach (`FittedRange.reach`): how far beyond the fitted runs it is, in fitted spans."""

    sigma_run: float  # robust sd of in-sample log residuals
    growth: float  # misspecification sd of log loss at a reach of one fitted span
    multiplier: float  # the 95% multiplier over every backtest residual (each point uses multiplier_at)
    calibrated: bool
    n_residuals: int  # backtest residuals the model was estimated from
    backtests: list[dict[str, Any]] = field(default_factory=list)  # one summary per cut
    residuals: dict[str, list[float]] = field(default_factory=dict)  # {"distance", "reach", "residual", "weight"} pooled
    reason: str = ""  # why the multiplier is not calibrated (empty when it is)

    def sigma(self, reach: Any) -> np.ndarray:
        """tau: the scale of a residual (log loss) at a relative reach."""
        return np.sqrt(self.sigma_run**2 + (self.growth * np.asarray(reach, float)) ** 2)

    def residual_reach(self) -> np.ndarray:
        """The backtest residuals' reach (a file written before reaches were kept: log10 x)."""
        if self.residuals.get("reach") is not None:
            return np.asarray(self.residuals["reach"], float)
        return np.log10(np.maximum(np.asarray(self.residuals.get("distance", []), float), 1.0))

    def multiplier_at(self, reach: Any) -> np.ndarray:
        """The conformal 95% multiplier at each reach: the weighted quantile of the backtests'
        scores |r| / tau, weighted towards comparable reaches and mature cuts."""
        shape = np.shape(np.asarray(reach, float))
        targets = np.atleast_1d(np.asarray(reach, float)).ravel()
        r = np.asarray(self.residuals.get("residual", []), float)
        if not self.calibrated or not len(r):
            return np.full(shape, self.multiplier)
        ri = self.residual_reach()
        maturity = np.asarray(self.residuals.get("weight") or np.ones(len(r)), float)
        scores = np.abs(r) / self.sigma(ri)
        return np.array([_weighted_quantile(scores, maturity * locality(ri, t)) for t in targets]).reshape(shape)

    def half_width(self, sd_boot: Any, reach: Any, sd_laws: Any = 0.0) -> np.ndarray:
        """The interval's half width on log loss (module docstring); `sd_laws`, the candidate
        laws' disagreement (sd of their log predictions), is added in quadrature at 1.96 sd."""
        sd_boot = np.asarray(sd_boot, float)
        tau = self.sigma(reach)
        if self.calibrated:
            half = np.maximum(self.multiplier_at(reach) * tau, Z95 * sd_boot)
        else:
            half = self.multiplier * np.sqrt(sd_boot**2 + tau**2)
        return np.sqrt(half**2 + (Z95 * np.asarray(sd_laws, float)) ** 2)

    def interval(self, loss: Any, sd_boot: Any, reach: Any, sd_laws: Any = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The 95% prediction interval of predicted `loss` whose bootstrap spread of log loss is
        `sd_boot`, at relative `reach`: loss x exp(+-half_width)."""
        half = self.half_width(sd_boot, reach, sd_laws)
        loss = np.asarray(loss, float)
        return loss * np.exp(-half), loss * np.exp(half)

    def width_terms(self, sd_boot: float, reach: float, sd_laws: float = 0.0) -> dict[str, Any]:
        """The sources of a point's width as shares of its variance, the largest named, and what
        would shrink it."""
        parts = {"run_scatter": self.sigma_run**2, "misspecification": (self.growth * float(reach)) ** 2,
                 "parameters": float(sd_boot) ** 2, "law_disagreement": float(sd_laws) ** 2}
        total = sum(parts.values()) or 1.0
        shares = {k: v / total for k, v in parts.items()}
        dominant = max(shares, key=lambda k: shares[k])
        return {"shares": shares, "dominant": dominant, "shrink": SHRINK[dominant]}

    def to_json(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ErrorModel:
        return cls(float(raw["sigma_run"]), float(raw["growth"]), float(raw["multiplier"]),
                   bool(raw["calibrated"]), int(raw["n_residuals"]), list(raw.get("backtests", [])),
                   dict(raw.get("residuals", {})), str(raw.get("reason", "")))


SHRINK = {  # what narrows an interval, by the term that dominates its width
    "run_scatter": "more seeds per configuration, or longer final evaluations (train.final_eval_tokens)",
    "misspecification": "larger runs nearer the target (the error grows with the distance beyond the largest run)",
    "parameters": "more configurations inside the fitted range (sizes and token counts)",
    "law_disagreement": "runs where the candidate laws part ways (larger models or budgets nearer the target)",
}


def locality(reach: np.ndarray, target: float) -> np.ndarray:
    """Kernel weights of backtest residuals at relative reach `reach` for a point at `target`."""
    gap = (np.asarray(reach, float) - float(target)) / LOCAL_BANDWIDTH
    return LOCAL_FLOOR + (1.0 - LOCAL_FLOOR) * np.exp(-0.5 * gap**2)


def _weighted_quantile(scores: np.ndarray, weights: np.ndarray, level: float = 0.95) -> float:
    """The split-conformal quantile of weighted scores: level (1 + 1/n_eff), the largest score
    past 1."""
    n_eff = weights.sum() ** 2 / np.sum(weights**2)
    q = min(1.0, level * (1.0 + 1.0 / n_eff))
    order = np.argsort(scores)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return float(scores[order][min(int(np.searchsorted(cumulative, q - 1e-12)), len(scores) - 1)])


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


@dataclass
class Backtests:
    """Forward-chained backtests of one law: each held-out run's log residual, its distance from its
    cut's fit side, the cut (an index into `summaries`), its row in the data, and its cut's share of
    the runs fitted, squared (the weight of a mature cut)."""

    summaries: list[dict[str, Any]]
    residual: np.ndarray
    distance: np.ndarray
    cut: np.ndarray
    row: np.ndarray
    weight: np.ndarray
    reach: np.ndarray  # each residual's reach beyond its fit side, in that side's spans (FittedRange.reach)

    def to_json(self) -> dict[str, list[float]]:
        return {"distance": self.distance.tolist(), "reach": self.reach.tolist(), "residual": self.residual.tolist(),
                "weight": self.weight.tolist(), "cut": self.cut.tolist(), "row": self.row.tolist()}

    @classmethod
    def from_json(cls, summaries: list[dict[str, Any]], raw: Mapping[str, Any]) -> Backtests:
        r = np.asarray(raw.get("residual", []), float)
        take = lambda k, fill: np.asarray(raw.get(k) or np.full(len(r), fill), float)  # noqa: E731
        return cls(list(summaries), r, take("distance", 1.0), take("cut", 0).astype(int), take("row", -1).astype(int),
                   take("weight", 1.0), np.asarray(raw["reach"], float) if raw.get("reach") is not None
                   else np.log10(np.maximum(take("distance", 1.0), 1.0)))


def rolling_backtests(law: Any, data: FitData, fit_kwargs: Mapping[str, Any] | None = None) -> Backtests:
    """Refit `law` below compute cuts and model-size cuts and score the runs above each.

    A cut is used when its fit side has MIN_RUNS_PER_PARAM runs per law parameter (a fit on fewer
    says more about too few runs than about extrapolation) and it holds out at least one run; the refit starts from the law's whole grid (never from the full fit's optimum,
    which has seen the held-out runs) and weighs the held-out rows 0 (one compiled solver for every
    cut). Residuals are r = log L_obs - log L_pred, pooled over the cuts.
    """
    from scaler.fitting.fitter import estimate  # lazy: JAX

    kwargs = dict(fit_kwargs or {})
    cols = _law_inputs(law, data)
    flops, n_params = data.columns["C"], data.columns["N"]
    cuts = [("compute", float(np.quantile(flops, q, method="lower"))) for q in CUT_QUANTILES]
    cuts += [("size", float(np.quantile(n_params, q, method="lower"))) for q in CUT_QUANTILES]
    summaries: list[dict[str, Any]] = []
    parts: list[tuple[np.ndarray, ...]] = []
    seen: set[bytes] = set()
    starts = law.start_grid()  # not the full fit's optimum: it has seen the held-out runs
    for axis, cut in cuts:
        fit_side = (flops <= cut) if axis == "compute" else (n_params <= cut)
        key = fit_side.tobytes()
        if key in seen or fit_side.sum() < MIN_RUNS_PER_PARAM * law.n_params or fit_side.all():
            continue
        seen.add(key)
        try:  # the held-out rows weigh 0: the full table's shape, so the solver compiled for it is reused
            result = estimate(law, cols, data.loss, starts=starts, weights=fit_side.astype(np.float64), **kwargs)
        except ValueError:
            continue
        held = ~fit_side
        predicted = law.predict(result.theta, {k: v[held] for k, v in cols.items()})
        r = np.log(data.loss[held]) - np.log(predicted)
        side = data.subset(fit_side)
        side_range = FittedRange.of(side)
        x = side_range.distance(n_params[held], data.columns["D"][held], flops[held])
        reach = side_range.reach(n_params[held], data.columns["D"][held], flops[held])
        ok = np.isfinite(r)
        index = len(summaries)
        parts.append((r[ok], x[ok], np.full(int(ok.sum()), index), np.flatnonzero(held)[ok],
                      np.full(int(ok.sum()), fit_side.mean() ** 2), reach[ok]))
        summaries.append({"axis": axis, "cut": cut, "n_fit": int(fit_side.sum()), "n_heldout": int(held.sum()),
                          "mean_abs_error_pct": float(100 * np.mean(np.abs(np.expm1(-r[ok])))) if ok.any() else None,
                          "bias_pct": float(100 * np.mean(np.expm1(-r[ok]))) if ok.any() else None,
                          "max_distance": float(np.max(x)), "max_reach": float(np.max(reach)),
                          "converged": bool(result.converged)})
    if not parts:
        empty = np.zeros(0)
        return Backtests(summaries, empty, empty, empty.astype(int), empty.astype(int), empty, empty)
    r, x, cut_index, rows, weight, reach = (np.concatenate(p) for p in zip(*parts, strict=True))
    return Backtests(summaries, r, x, cut_index.astype(int), rows.astype(int), weight, reach)


def error_model(law: Any, data: FitData, theta: np.ndarray, fit_kwargs: Mapping[str, Any] | None = None,
                backtests: Backtests | None = None) -> ErrorModel:
    """The residual model of the module docstring, from `data`'s in-sample residuals at `theta`
    and rolling backtests of `law` (run here unless given)."""
    in_sample = np.log(data.loss) - np.log(law.predict(theta, _law_inputs(law, data)))
    sigma_run = robust_sd(in_sample)
    if not math.isfinite(sigma_run) or sigma_run <= 0:
        sigma_run = float(np.std(in_sample)) or 1e-6
    bt = backtests if backtests is not None else rolling_backtests(law, data, fit_kwargs)
    r = bt.residual
    growth = _growth(r, bt.reach, sigma_run, bt.weight)
    model = ErrorModel(sigma_run, growth, SMALL_TABLE_MULTIPLIER, False, int(len(r)), bt.summaries, bt.to_json())
    scores = np.abs(r) / model.sigma(bt.reach)
    if data.n_points >= MIN_CALIBRATION and len(r) >= MIN_CALIBRATION:
        model.multiplier = _weighted_quantile(scores, bt.weight)
        model.calibrated = True
    else:
        model.multiplier = max(SMALL_TABLE_MULTIPLIER, float(np.max(scores))) if len(r) else SMALL_TABLE_MULTIPLIER
        model.reason = (f"a small table ({data.n_points} runs, {len(r)} backtest residuals; a 95th percentile needs "
                        f"{MIN_CALIBRATION} of each): the multiplier is the largest backtest score, at least "
                        f"{SMALL_TABLE_MULTIPLIER:g}, and the interval adds the bootstrap's spread")
    return model


def _growth(r: np.ndarray, lx: np.ndarray, sigma_run: float, weights: np.ndarray | None = None) -> float:
    """Weighted maximum-likelihood k in r ~ N(0, sigma_run^2 + (k lx)^2), over a log-spaced grid
    then refined (each residual weighted as its cut: `Backtests.weight`)."""
    if len(r) == 0 or not np.any(lx > 0):
        return 0.0
    w = np.ones(len(r)) if weights is None else np.asarray(weights, float)

    def nll(k: np.ndarray) -> np.ndarray:
        var = sigma_run**2 + (k[:, None] * lx[None, :]) ** 2
        return np.sum(w[None, :] * (0.5 * np.log(var) + 0.5 * r[None, :] ** 2 / var), axis=1)

    grid = np.concatenate([[0.0], np.geomspace(1e-5, 1.0, 400)])
    best = int(np.argmin(nll(grid)))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    fine = np.linspace(lo, hi, 201)
    return float(fine[int(np.argmin(nll(fine)))])


def predict_points(law: Any, theta: np.ndarray, samples: np.ndarray | None, points: Mapping[str, Any],
                   compute: Compute, fitted: FittedRange, errors: ErrorModel | None, level: float = 0.95,
                   ensemble: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Predicted loss, interval and extrapolation for every row of `points` (the law's columns:
    N, D and any others). The interval is at 95% (the error model's multiplier, widened by the
    disagreement of the `ensemble` of candidate laws `--law auto` kept); without an error model it
    is the bootstrap's alone. Rows keep their input order."""
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
    reach = fitted.reach(n, d, flops)
    sd_laws = law_disagreement(ensemble, points) if ensemble else np.zeros_like(point)
    if errors is not None:
        lo, hi = errors.interval(point, sd_boot, reach, sd_laws)
    elif log_samples is not None:
        from scaler.fitting.stats import percentile_interval

        lo, hi = (np.exp(v) for v in percentile_interval(log_samples, level))
    else:
        lo = hi = point
    out = []
    for i in range(len(point)):
        row = {"n": float(n[i]), "d": float(d[i]), "flops": float(flops[i]), "loss": float(point[i]),
               "interval": [float(lo[i]), float(hi[i])], "extrapolation": float(flops[i] / fitted.flops_max),
               "distance": float(distance[i]), "reach": float(reach[i])}
        if errors is not None:
            row["width"] = errors.width_terms(float(sd_boot[i]), float(reach[i]), float(sd_laws[i]))
        out.append(row)
    return out


def law_disagreement(ensemble: Sequence[Mapping[str, Any]], points: Mapping[str, Any]) -> np.ndarray:
    """The weighted sd of the candidate laws' log predictions at `points` (`fit_auto`'s ensemble:
    law spec, theta and backtest weight of each law it did not refuse)."""
    from scaler.fitting import laws

    logs, weights = [], []
    for member in ensemble:
        law = laws.law_from_spec(member["spec"])
        cols = {c: np.asarray(points[c], dtype=np.float64) for c in law.columns if c in points}
        if len(cols) < len(law.columns):
            continue
        logs.append(np.log(law.predict(np.asarray(member["theta"], float), cols)))
        weights.append(float(member["weight"]))
    if len(logs) < 2:
        return np.zeros(len(np.asarray(points["N"])))
    w = np.asarray(weights) / np.sum(weights)
    stacked = np.stack(logs)
    mean = w @ stacked
    return np.sqrt(w @ (stacked - mean) ** 2)


def sample_array(raw: Sequence[Sequence[float]] | None, n_params: int) -> np.ndarray:
    """Bootstrap samples as saved in fit.json, finite rows only."""
    s = np.asarray(raw if raw else np.zeros((0, n_params)), dtype=np.float64).reshape(-1, n_params)
    return s[np.isfinite(s).all(axis=1)]


def ranking_lines(rankings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each ranking in words: the order, its bootstrap probability, the observed order's stability."""
    out = []
    for r in rankings:
        pairs = ", ".join(f"{p['better']} < {p['worse']} in {p['probability']:.0%}" for p in r["pairs"])
        out.append(f"order at N {r['n']:.3g}, D {r['d']:.3g}: {' < '.join(r['order'])} (loss, best first) in "
                   f"{r['probability']:.0%} of {r['n_samples']} bootstrap samples ({pairs})")
        observed = r.get("observed_order")
        if observed:
            out.append(f"  observed: the best runs rank {' < '.join(observed['order'])} at every budget from "
                       f"{observed['stable_from_flops']:.3g} FLOPs up to the largest ({observed['largest_flops']:.3g}): "
                       f"the order held over the last {observed['ratio']:.3g}x of compute"
                       + ("" if observed["changed_below"] is None
                          else f" (it differed at {observed['changed_below']:.3g} FLOPs)"))
    return out


def error_model_text(model: Mapping[str, Any]) -> str:
    """The prediction intervals' error model in one sentence (the CLI and the report)."""
    n_res = int(model.get("n_residuals") or 0)
    calib = (f"calibrated on {n_res} backtest residuals" if model.get("calibrated")
             else f"not calibrated: {model.get('reason') or f'{n_res} backtest residuals'}")
    return (f"run scatter {100 * model['sigma_run']:.2f}% (robust sd of the fitted runs' log residuals), "
            f"misspecification {100 * (model.get('growth') or 0):.2f}% at a reach of one fitted span beyond the "
            f"largest runs, conformal 95% multiplier {model.get('multiplier', 0):.2f} over all backtests, {calib}")
