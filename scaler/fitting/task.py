"""From the code task's loss to pass@k: the second step of the OLMo ladder (Bhagia et al. 2024).

Step one is a scaling law for the loss of the correct answer (here `humaneval_solution`: the bits
per byte of HumanEval's canonical solutions given their prompts). Step two maps that loss to the
task's score with a sigmoid fitted on a user's table of (task loss, pass@k) pairs, e.g. of
checkpoints whose pass@k they measured:

    pass@k(L) = b + a / (1 + exp(k (L - L0)))      a >= 0, b >= 0, a + b <= 1, k > 0

(pass@k falls from a + b towards b as the loss L rises; L0 is the midpoint). At CPU scale pass@k
is zero, so scaler never fits this from its own runs: only from a table, and not otherwise.

The fit is least squares on pass@k (`scipy.optimize.least_squares`, bounded, from a few starts);
its uncertainty is a bootstrap over the table's pairs (each refit from the full-table optimum).
`TaskCurve.predict(loss, interval)` maps a predicted loss and its interval: the point through the
fitted curve, the interval from the 2.5th percentile over curve draws at the interval's upper
loss to the 97.5th at its lower loss (the curve falls), so both the law's and the curve's
uncertainty widen it; each side's distance from the point is scaled by sqrt(n / (n - 4)) (the
pairs bootstrap's variance of a 4-parameter least-squares fit is low by (n - 4) / n; without it 14
pairs covered the true curve 16 times in 20), and clipped to [0, 1]. A loss outside the table's
range is an extrapolation of the curve, and the prediction says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from scaler.errors import ParameterError

__all__ = ["MIN_PAIRS", "TaskCurve", "fit_task_curve", "sigmoid"]

MIN_PAIRS = 5  # four parameters: fewer pairs cannot pin the curve


def sigmoid(theta: np.ndarray, loss: Any) -> Any:
    """pass@k at `loss` for theta = (a, b, k, L0)."""
    a, b, k, l0 = theta
    return b + a / (1.0 + np.exp(np.clip(k * (np.asarray(loss, np.float64) - l0), -60.0, 60.0)))


def _starts(loss: np.ndarray, score: np.ndarray) -> list[np.ndarray]:
    """Midpoints across the losses, two steepnesses, the span and floor of the scores."""
    span = max(float(np.ptp(loss)), 1e-6)
    return [np.array([max(float(score.max() - score.min()), 0.05), float(max(score.min(), 0.0)), k, l0])
            for l0 in np.quantile(loss, [0.25, 0.5, 0.75]) for k in (2.0 / span, 10.0 / span)]


def _fit(loss: np.ndarray, score: np.ndarray, starts: list[np.ndarray]) -> np.ndarray:
    """The least-squares theta, the best over `starts`."""
    best, best_cost = None, math.inf
    for start in starts:
        fit = least_squares(lambda t: sigmoid(t, loss) - score, start,
                            bounds=([0.0, 0.0, 1e-6, -np.inf], [1.0, 1.0, np.inf, np.inf]))
        theta = fit.x
        cost = float(fit.cost) + (1e3 * (theta[0] + theta[1] - 1.0) ** 2 if theta[0] + theta[1] > 1.0 else 0.0)
        if cost < best_cost:
            best, best_cost = theta, cost
    assert best is not None
    return best


@dataclass(frozen=True)
class TaskCurve:
    """A fitted loss -> pass@k sigmoid (module docstring) and its bootstrap draws."""

    theta: np.ndarray  # (a, b, k, L0)
    draws: np.ndarray  # (n, 4)
    loss_range: tuple[float, float]  # the table's losses
    rmse: float  # of pass@k on the table
    n_pairs: int
    loss_unit: str  # "bpb" (bits per byte) or "nats" (per token)
    metric: str  # the table's pass@k column

    def predict(self, loss: float, interval: Sequence[float] | None = None) -> dict[str, Any]:
        """pass@k at a predicted loss (nats or bpb, as `loss_unit`) with its 95% interval and
        whether the loss lies outside the table's range."""
        lo_loss, hi_loss = (loss, loss) if interval is None else (float(interval[0]), float(interval[1]))
        point = float(sigmoid(self.theta, loss))
        lower, upper = float(sigmoid(self.theta, hi_loss)), float(sigmoid(self.theta, lo_loss))
        if len(self.draws):
            scale = math.sqrt(self.n_pairs / max(self.n_pairs - 4, 1))  # small-sample: 4 parameters
            lower = point - scale * (point - float(np.percentile([sigmoid(t, hi_loss) for t in self.draws], 2.5)))
            upper = point + scale * (float(np.percentile([sigmoid(t, lo_loss) for t in self.draws], 97.5)) - point)
        lo, hi = self.loss_range
        outside = loss < lo or loss > hi
        note = (f"the loss {loss:.4g} {self.loss_unit} is outside the table's {lo:.4g}-{hi:.4g}: the curve extrapolates"
                if outside else "")
        lower, upper = max(0.0, min(lower, point)), min(1.0, max(upper, point))
        return {"metric": self.metric, "value": point, "interval": [lower, upper],
                "loss": loss, "loss_unit": self.loss_unit, "outside_table": outside, "note": note}

    def to_json(self) -> dict[str, Any]:
        a, b, k, l0 = (float(x) for x in self.theta)
        return {"form": "b + a / (1 + exp(k (L - L0)))", "a": a, "b": b, "k": k, "L0": l0,
                "loss_range": list(self.loss_range), "rmse": self.rmse, "n_pairs": self.n_pairs,
                "n_bootstrap": len(self.draws), "loss_unit": self.loss_unit, "metric": self.metric}

    def text(self) -> str:
        j = self.to_json()
        return (f"{self.metric} = {j['b']:.3g} + {j['a']:.3g} / (1 + exp({j['k']:.3g} (L - {j['L0']:.4g}))), L in "
                f"{self.loss_unit}, fitted on {self.n_pairs} pairs (L {j['loss_range'][0]:.4g}-{j['loss_range'][1]:.4g}), "
                f"rmse {self.rmse:.3g}")


def fit_task_curve(loss: Sequence[float], score: Sequence[float], *, loss_unit: str = "bpb", metric: str = "pass@k",
                   n_bootstrap: int = 200, seed: int = 0, source: str = "the task table") -> TaskCurve:
    """The sigmoid through (loss, pass@k) pairs (module docstring); `source` names them in errors."""
    x, y = np.asarray(loss, np.float64), np.asarray(score, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ParameterError(f"{source}: expected one loss and one {metric} per row")
    if len(x) < MIN_PAIRS:
        raise ParameterError(f"{source}: {len(x)} pairs; the loss -> {metric} sigmoid needs {MIN_PAIRS} or more")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ParameterError(f"{source}: losses and {metric} must be finite numbers")
    if ((y < 0) | (y > 1)).any():
        raise ParameterError(f"{source}: {metric} must be a fraction in [0, 1] (got {y.min():g}-{y.max():g})")
    if np.ptp(x) <= 0:
        raise ParameterError(f"{source}: every loss is {x[0]:g}; the curve needs losses that differ")
    theta = _fit(x, y, _starts(x, y))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):  # each refit starts from the full-table optimum
        pick = rng.integers(0, len(x), len(x))
        if np.ptp(x[pick]) > 0:
            draws.append(_fit(x[pick], y[pick], [theta]))
    rmse = float(np.sqrt(np.mean((sigmoid(theta, x) - y) ** 2)))
    return TaskCurve(theta, np.asarray(draws).reshape(-1, 4), (float(x.min()), float(x.max())), rmse, len(x),
                     loss_unit, metric)
