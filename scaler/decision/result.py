"""What a recommendation returns (docs/design.md §5.9): the tier options it weighs (`TierOption`),
each option's answer (`OptionResult`: best N, D, loss and its intervals), the next experiments
(`Experiment`) and the `Recommendation` itself, with `lines()` (the text `scaler recommend`
prints), `to_json()` (its --json and the report's input) and the ranking of the tiers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scaler.fitting.compute import SIX_ND
from scaler.fitting.inputs import json_safe


SPEND = {"size": "model size", "cleaning": "cleaning"}


@dataclass
class TierOption:
    """One way to spend the data side of a budget.

    kappa: effective-data multiplier (raw = 1); used when the law does not fit one for `name`
    (a quality law's log_kappa_<name> wins, per bootstrap sample). yield_fraction: tokens kept /
    raw tokens. cleaning_flops_per_raw_token: the cost of producing the tier, charged on the whole
    raw pool (raw tier = 0).
    """

    name: str
    kappa: float = 1.0
    yield_fraction: float = 1.0
    cleaning_flops_per_raw_token: float = 0.0


@dataclass
class OptionResult:
    name: str
    kappa: float
    yield_fraction: float
    cleaning_flops: float
    training_flops: float
    pool_tokens: float
    feasible: bool
    reason: str = ""
    n_params: float = float("nan")
    tokens: float = float("nan")
    epochs: float = float("nan")
    loss: float = float("nan")
    loss_interval: tuple[float, float] = (float("nan"), float("nan"))  # bootstrap: the best each sample can do
    n_params_interval: tuple[float, float] = (float("nan"), float("nan"))
    win_share: float = 0.0  # share of bootstrap samples in which this option is the best
    # 95% prediction interval of the loss of the run (n_params, tokens), misspecification included
    # (the fit's error model); None without one
    loss_prediction_interval: tuple[float, float] | None = None
    # what that interval's width is made of (ErrorModel.width_terms: shares, dominant, shrink)
    interval_width: dict[str, Any] | None = None


@dataclass
class Experiment:
    tier: str
    n_params: float
    tokens: float
    flops: float
    epochs: float
    predicted_loss: float
    loss_interval: tuple[float, float]
    gap_spread: float  # 95% width of the predicted (raw - cleaned) gap at this compute
    rank: int = 0
    # what the pair at this compute would teach about the verdict's gap at the target budget
    # (linearised, module docstring): its sd now and after the pair, and the variance removed per FLOP
    gap_sd: float | None = None
    gap_sd_after: float | None = None
    information_per_flop: float | None = None


@dataclass
class Recommendation:
    budget_flops: float
    raw_tokens: float
    law: str
    r_star: float
    r_star_source: str
    n_samples: int
    options: list[OptionResult]
    raw_option: str
    best_clean: str | None
    verdict: str  # "size" | "cleaning"
    winner: str
    gap: float  # raw best loss - best cleaned loss (> 0: cleaning predicted better)
    gap_interval: tuple[float, float]
    probability: float  # share of samples whose best option is `winner`
    probability_kind: float  # share of samples in which the same kind of choice wins
    flops_convention: str = SIX_ND  # the convention of every FLOP figure (scaler.fitting.compute)
    extrapolation: float | None = None  # budget / the largest fitted run's compute; None if unknown
    # {"flops", "interval", "share_crossing", "direction", "range", "throughout", "curves"} (module
    # docstring; "curves": per tier the best loss on the budget grid with its interval, and the share
    # of samples in which cleaning wins, for the report's crossover figure);
    # None without a cleaned tier
    crossover: dict[str, Any] | None = None
    seed_noise_nats: float | None = None  # sd of one run's loss between seeds, when the fit measured it
    experiments: list[Experiment] = field(default_factory=list)
    toml: str = ""
    toml_grid: str = ""
    notes: list[str] = field(default_factory=list)
    settle: str = ""  # whether the verdict is settled (>= SETTLED of samples) and, if not, what would settle it
    # the feasible tiers ordered by predicted loss at this budget (each at its best N), best first, with the
    # share of bootstrap samples that order them all the same way and each adjacent pair's share
    ranking: dict[str, Any] | None = None
    eval_set: str = "heldout"  # the eval set whose loss the law predicts (humaneval_solution: the code task)

    @property
    def verdict_text(self) -> str:
        return f"spend on cleaning (tier {self.winner})" if self.verdict == "cleaning" else "spend on model size"

    def option(self, name: str) -> OptionResult:
        return next(o for o in self.options if o.name == name)

    def to_json(self) -> dict[str, Any]:
        out = json_safe(asdict(self))
        out["verdict_text"] = self.verdict_text
        return out

    def lines(self) -> list[str]:
        """Plain-language summary for the CLI and the report."""
        reach = "" if self.extrapolation is None else f", {self.extrapolation:.3g}x the largest fitted run"
        out = [f"loss on {self.eval_set} (nats per token); "
               f"budget {self.budget_flops:.3g} FLOPs ({self.flops_convention}){reach}, raw pool "
               f"{self.raw_tokens:.3g} tokens, law {self.law} ({self.n_samples} bootstrap samples; repetition "
               f"R_D* = {self.r_star:.3g}, {self.r_star_source})"]
        for o in self.options:
            head = (f"  {o.name}: kappa {o.kappa:.3g}, yield {o.yield_fraction:.1%}, "
                    f"cleaning {o.cleaning_flops:.3g} FLOPs ({o.cleaning_flops / self.budget_flops:.1%} of budget)")
            if not o.feasible:
                out.append(head + f" -- infeasible: {o.reason}")
                continue
            predicted = "" if o.loss_prediction_interval is None else (
                f", 95% prediction interval of that run [{o.loss_prediction_interval[0]:.4f}, "
                f"{o.loss_prediction_interval[1]:.4f}] (misspecification included)")
            out.append(head + f"; best N {o.n_params:.3g}, D {o.tokens:.3g} ({o.epochs:.2f} epochs of {o.pool_tokens:.3g}), "
                       f"loss {o.loss:.4f} [{o.loss_interval[0]:.4f}, {o.loss_interval[1]:.4f}] (bootstrap)"
                       f"{predicted}, "
                       f"best in {o.win_share:.0%} of samples")
        if self.best_clean is None:
            out.append(f"verdict: {self.verdict_text} (no feasible cleaned tier)")
        else:
            out.append(f"verdict: {self.verdict_text}: predicted loss {self.option(self.raw_option).loss:.4f} "
                       f"({self.raw_option}) vs {self.option(self.best_clean).loss:.4f} ({self.best_clean}), "
                       f"gap {self.gap:+.4f} nats [{self.gap_interval[0]:+.4f}, {self.gap_interval[1]:+.4f}] "
                       f"(positive favours cleaning)")
            out.append(f"probability the verdict holds: {self.probability:.0%} of bootstrap samples pick "
                       f"{self.winner}; {self.probability_kind:.0%} pick the same kind of spend")
        if self.settle:
            out.append(self.settle)
        if self.ranking is not None:
            pairs = ", ".join(f"{p['better']} < {p['worse']} in {p['probability']:.0%}" for p in self.ranking["pairs"])
            out.append(f"predicted order at this budget: {' < '.join(self.ranking['order'])} (loss, best first) in "
                       f"{self.ranking['probability']:.0%} of bootstrap samples ({pairs})")
        width = self.option(self.winner).interval_width
        if width is not None:
            out.append(f"{self.winner}'s 95% prediction interval is mostly {width['dominant'].replace('_', ' ')} "
                       f"({width['shares'][width['dominant']]:.0%} of its variance); what would shrink it: {width['shrink']}")
        if self.crossover is not None:
            out.append(self._crossover_line())
        if self.experiments:
            informed = self.experiments[0].information_per_flop is not None
            out.append("next experiments (ranked by " + ("the gap variance each pair would remove per FLOP" if informed
                       else "the bootstrap spread of the predicted gap") + "):")
            for e in self.experiments[:6]:
                what = (f"gap sd {e.gap_sd:.4f} -> {e.gap_sd_after:.4f} nats" if informed
                        else f"gap spread {e.gap_spread:.4f}")
                out.append(f"  #{e.rank} {e.tier}: N {e.n_params:.3g}, D {e.tokens:.3g} ({e.flops:.3g} FLOPs, "
                           f"{e.epochs:.2f} epochs), predicted loss {e.predicted_loss:.4f}, {what}")
        out.extend(f"note: {n}" for n in self.notes)
        return out

    def _crossover_line(self) -> str:
        x = self.crossover or {}
        lo, hi = x["range"]
        span = f"between {lo:.3g} and {hi:.3g} FLOPs"
        if x["flops"] is not None:
            before, after = x["direction"].split("->")
            line = (f"crossover: the verdict turns from {SPEND[before]} to {SPEND[after]} at a budget of about "
                    f"{x['flops']:.3g} FLOPs (searched {span})")
        else:
            line = f"no crossover {span}: the verdict is {SPEND[x['throughout']]} throughout"
        if self.n_samples and x["direction"] is not None and x["share_crossing"] > 0:
            before, after = x["direction"].split("->")
            line += (f"; {x['share_crossing']:.0%} of bootstrap samples turn from {SPEND[before]} to {SPEND[after]} "
                     f"in this range, 95% of them between {x['interval'][0]:.3g} and {x['interval'][1]:.3g} FLOPs")
        elif self.n_samples:
            line += "; no bootstrap sample's verdict flips in this range"
        return line
