"""The recommendation for a budget (docs/design.md §5.9): `decide` finds every tier's best (N,
D) over the law's bootstrap samples (`search`), the verdict (the best cleaned tier against raw:
its gap, interval and probability), the crossover, the next experiments and notes; each option
gets the 95% prediction interval of its run (the fit's error model, the `--law auto` ensemble's
disagreement included, as `scaler predict` gives it). `recommend_from_fit` reads a fit (one reader:
`scaler.fitting.result.SweepFit`), the tier options (a build's report.json as a dict, or given yields
and costs), refuses beyond EXTRAPOLATION_REFUSE x the largest fitted run unless forced, and
decides. (`scaler.recommend`, the API's, is `scaler.session.recommend`: a fit and a build folder.)"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaler.errors import ParameterError
from scaler.fitting.compute import SIX_ND, Compute
from scaler.fitting.predict import EXTRAPOLATION_REFUSE, EXTRAPOLATION_WARN, ErrorModel, FittedRange, law_disagreement
from scaler.fitting.result import SweepFit
from scaler.fitting.stats import order_probability, percentile_interval
from scaler.decision.budget import ExtrapolationRefused
from scaler.decision.crossover import CROSSOVER_BUDGETS, CROSSOVER_REACH, _crossover
from scaler.decision.experiments import _experiments, _settle, _snippets, experiment_ladder, gap_information
from scaler.decision.options import tier_options_from_report
from scaler.decision.result import OptionResult, Recommendation, TierOption
from scaler.decision.search import LawSamples, MIN_FLOPS_PER_PARAM_TOKEN, _loss_at, _optimise


def _prediction_interval(o: OptionResult, samples: LawSamples, compute: Compute, errors: ErrorModel,
                         fitted: FittedRange, ensemble: Sequence[Mapping[str, Any]] | None = None
                         ) -> tuple[tuple[float, float], dict[str, Any]]:
    """95% interval of the loss of the run (o.n_params, o.tokens) on o's tier (scaler.fitting.predict's
    error model at the run's reach beyond the fitted runs, sd_boot the samples' spread of log L at
    that run, and under `--law auto` the candidate laws' disagreement there, as `predict` adds it),
    and what its width is made of."""
    log_samples = np.log(_loss_at(o.n_params, o.tokens, o.pool_tokens, samples, o.name))
    log_samples = log_samples[np.isfinite(log_samples)]
    sd_boot = float(np.std(log_samples)) if len(log_samples) > 1 else 0.0
    sd_laws = float(law_disagreement(ensemble, {"N": [o.n_params], "D": [o.tokens]})[0]) if ensemble else 0.0
    reach = float(fitted.reach(o.n_params, o.tokens, compute.flops(o.n_params, o.tokens)))
    lo, hi = errors.interval(o.loss, sd_boot, reach, sd_laws)
    return (float(lo), float(hi)), errors.width_terms(sd_boot, reach, sd_laws)


def _fitted_span(smallest: float | None, largest: float, compute: Compute) -> str:
    return FittedRange(math.inf, math.inf, largest, smallest or 0.0).span_text(compute.convention)


def decide(theta_samples: np.ndarray, theta: np.ndarray, law: Any, tiers: list[TierOption], budget_flops: float,
              raw_tokens: float, *, raw: str | None = None, largest_run_flops: float | None = None,
              n_steps: int = 4, level: float = 0.95, compute: Compute | None = None,
              smallest_run_flops: float | None = None, seed_noise_nats: float | None = None,
              error_model: ErrorModel | None = None, fitted_range: FittedRange | None = None,
              crossover_budgets: int = CROSSOVER_BUDGETS, experiment_flops: Sequence[float] | None = None,
              ensemble: Sequence[Mapping[str, Any]] | None = None) -> Recommendation:
    """Best (N, D) per tier under `budget_flops` and the verdict size vs cleaning (module docstring).

    theta_samples: (B, P) bootstrap parameter samples of `law` (may be empty: then the
    probabilities are those of the point estimate alone); theta: (P,) the point estimate.
    raw: the reference tier ("raw" if present, else tiers[0]). compute: the FLOP convention of the
    budget and of the law's fit (None: 6ND). largest_run_flops (and smallest_run_flops, for the
    note): the fitted runs' compute, where the extrapolation is measured from and the
    next-experiment ladder and the crossover's range start (default budget / 100, no
    extrapolation figure). seed_noise_nats: one run's seed-to-seed loss sd (the fit's
    seed_noise). error_model and fitted_range (the fit's): add each option's prediction interval.
    crossover_budgets: the crossover's grid (0: no crossover). experiment_flops: the training budgets
    of the candidate next experiments (default: `n_steps` between the largest run and the budget).
    """
    compute = compute or Compute(SIX_ND)
    budget_flops, raw_tokens = float(budget_flops), float(raw_tokens)
    raw = _reference_tier(tiers, budget_flops, raw_tokens, raw)
    theta_row, ts = _point_and_samples(theta, theta_samples)
    p = LawSamples.of(law, np.vstack([theta_row, ts]), tiers)  # row 0: point estimate
    options, sample_losses = [], {}
    for t in tiers:
        option, sample_losses[t.name] = _best_run(t, p, budget_flops, raw_tokens, compute, level, len(ts),
                                                  error_model, fitted_range, ensemble)
        options.append(option)
    raw_opt, best_clean, verdict, winner = _verdict(options, raw)
    gap = raw_opt.loss - best_clean.loss if best_clean is not None else float("nan")
    odds = _odds(options, sample_losses, raw, best_clean, verdict, winner, gap, level)
    notes = odds.notes + _option_notes(options, raw_opt, best_clean, p)
    extrapolation = budget_flops / float(largest_run_flops) if largest_run_flops else None
    notes += _scale_notes(extrapolation, smallest_run_flops, largest_run_flops, compute, seed_noise_nats, gap,
                          best_clean is not None)
    c_lo = float(largest_run_flops) if largest_run_flops else budget_flops / 100.0
    crossover = None
    if len(tiers) > 1 and crossover_budgets >= 2:
        crossover, n_flips = _crossover(p, tiers, raw, raw_tokens, min(c_lo, budget_flops),
                                        CROSSOVER_REACH * budget_flops, compute, crossover_budgets, level)
        if n_flips > 1:
            notes.append(f"the point estimate's verdict flips {n_flips} times between {crossover['range'][0]:.3g} and "
                         f"{crossover['range'][1]:.3g} FLOPs; the crossover reported is the first")
    contenders = [raw] + ([best_clean.name] if best_clean is not None else [])
    ladder = list(experiment_flops) if experiment_flops is not None else experiment_ladder(c_lo, budget_flops, n_steps)
    sigma_log = error_model.sigma_run if error_model is not None else (
        seed_noise_nats / raw_opt.loss if seed_noise_nats else None)
    information = None
    if odds.gaps is not None and sigma_log:
        information = gap_information(law, theta_row[0], ts, odds.gaps, tiers, raw_tokens, sigma_log)
    exps = _experiments(p, {t.name: t for t in tiers}, contenders, raw_tokens, ladder, compute, information) \
        if len(ts) else []
    settle = _settle(verdict, odds.prob_kind, gap, odds.gap_interval, raw_opt.loss, exps, information) \
        if len(ts) and best_clean else ""
    iso, grid = _snippets(exps, contenders)
    return Recommendation(
        budget_flops=budget_flops, raw_tokens=raw_tokens, law=str(getattr(law, "name", "?")),
        r_star=float(p.r_star[0]), r_star_source=p.r_star_source, n_samples=len(ts), options=options,
        raw_option=raw, best_clean=best_clean.name if best_clean is not None else None, verdict=verdict,
        winner=winner, gap=gap, gap_interval=odds.gap_interval, probability=odds.prob, probability_kind=odds.prob_kind,
        flops_convention=compute.convention, extrapolation=extrapolation, crossover=crossover,
        seed_noise_nats=seed_noise_nats, experiments=exps, toml=iso, toml_grid=grid, notes=notes, settle=settle,
        ranking=odds.ranking)


def _reference_tier(tiers: Sequence[TierOption], budget_flops: float, raw_tokens: float, raw: str | None) -> str:
    """The reference tier's name, once the budget, the raw pool and the tiers are checked."""
    if not (math.isfinite(budget_flops) and budget_flops > 0):
        raise ValueError(f"budget_flops must be positive, got {budget_flops}")
    if not (raw_tokens > 0):
        raise ValueError(f"raw_tokens must be positive, got {raw_tokens}")
    if not tiers:
        raise ValueError("recommend needs at least one tier")
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ValueError(f"tier names must be distinct: {names}")
    raw = raw or ("raw" if "raw" in names else names[0])
    if raw not in names:
        raise ValueError(f"raw tier {raw!r} is not among the tiers {names}")
    return raw


def _point_and_samples(theta: np.ndarray, theta_samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The point estimate as one row (1, P) and the finite bootstrap samples (S, P)."""
    theta = np.asarray(theta, dtype=np.float64).reshape(1, -1)
    ts = np.asarray(theta_samples, dtype=np.float64).reshape(-1, theta.shape[1]) if np.size(theta_samples) else \
        np.zeros((0, theta.shape[1]))
    return theta, ts[np.isfinite(ts).all(axis=1)]


def _best_run(t: TierOption, p: LawSamples, budget_flops: float, raw_tokens: float, compute: Compute, level: float,
              n_samples: int, error_model: ErrorModel | None, fitted_range: FittedRange | None,
              ensemble: Sequence[Mapping[str, Any]] | None) -> tuple[OptionResult, np.ndarray]:
    """Tier t's best run under the budget left after cleaning (point estimate, bootstrap intervals,
    prediction interval) and each sample's best loss (inf where infeasible or not finite)."""
    if not (0 < t.yield_fraction <= 1.0 + 1e-9) or t.cleaning_flops_per_raw_token < 0 or t.kappa <= 0:
        raise ValueError(f"tier {t.name!r}: yield in (0, 1], cleaning cost >= 0 and kappa > 0 needed")
    cc = t.cleaning_flops_per_raw_token * raw_tokens
    ct = budget_flops - cc
    pool = t.yield_fraction * raw_tokens
    res = OptionResult(name=t.name, kappa=p.kappa_of(t.name), yield_fraction=t.yield_fraction, cleaning_flops=cc,
                       training_flops=max(ct, 0.0), pool_tokens=pool, feasible=ct >= MIN_FLOPS_PER_PARAM_TOKEN)
    if not res.feasible:
        res.reason = (f"cleaning {cc:.3g} FLOPs ({t.cleaning_flops_per_raw_token:.3g}/raw token x {raw_tokens:.3g}) "
                      f"{'exceeds' if cc > budget_flops else 'uses all of'} the budget {budget_flops:.3g}")
        return res, np.full(n_samples, np.inf)
    log_n, loss = _optimise(ct, pool, p, t.name, compute)
    res.n_params = float(np.exp(log_n[0]))
    res.tokens = float(compute.tokens(res.n_params, ct))
    res.epochs = res.tokens / pool
    res.loss = float(loss[0])
    if n_samples:
        res.loss_interval = percentile_interval(loss[1:], level)
        res.n_params_interval = percentile_interval(np.exp(log_n[1:]), level)
    else:
        res.loss_interval = (res.loss, res.loss)
        res.n_params_interval = (res.n_params, res.n_params)
    if error_model is not None and fitted_range is not None:
        res.loss_prediction_interval, res.interval_width = _prediction_interval(
            res, p.take(slice(1, None)), compute, error_model, fitted_range, ensemble)
    return res, np.where(np.isfinite(loss[1:]), loss[1:], np.inf)


def _verdict(options: Sequence[OptionResult], raw: str) -> tuple[OptionResult, OptionResult | None, str, str]:
    """The raw option, the best cleaned one, the verdict ("cleaning" or "size") and its winner."""
    cleaned = [o for o in options if o.feasible and o.name != raw]
    raw_opt = next(o for o in options if o.name == raw)
    best_clean = min(cleaned, key=lambda o: o.loss) if cleaned else None
    if not raw_opt.feasible:
        raise ValueError(f"the raw tier {raw!r} is infeasible: {raw_opt.reason}")
    if best_clean is not None and best_clean.loss < raw_opt.loss:
        return raw_opt, best_clean, "cleaning", best_clean.name
    return raw_opt, best_clean, "size", raw


@dataclass
class _Odds:
    """What the bootstrap samples say of the verdict (`_odds`)."""

    gap_interval: tuple[float, float]
    prob: float
    prob_kind: float
    ranking: dict[str, Any] | None
    gaps: np.ndarray | None  # per sample, raw's best loss minus the best cleaned tier's (None: no samples or no such tier)
    notes: list[str]


def _odds(options: Sequence[OptionResult], sample_losses: Mapping[str, np.ndarray], raw: str,
          best_clean: OptionResult | None, verdict: str, winner: str, gap: float, level: float) -> _Odds:
    """Which option wins in each bootstrap sample (each option's win_share is set): the verdict's
    probability, that of its kind of spend, the gap's interval and the predicted order."""
    order = [o.name for o in options]
    mat = np.column_stack([sample_losses[n] for n in order])  # (S, T)
    if not len(mat):
        for o in options:
            o.win_share = float(o.name == winner)
        return _Odds((gap, gap) if best_clean is not None else (float("nan"), float("nan")), 1.0, 1.0, None, None,
                     ["no bootstrap samples: probabilities are those of the point estimate alone"])
    ok = np.isfinite(mat[:, order.index(raw)])
    best = np.argmin(mat, axis=1)
    for j, o in enumerate(options):
        o.win_share = float(np.mean(best[ok] == j)) if ok.any() else 0.0
    prob = float(np.mean(best[ok] == order.index(winner))) if ok.any() else float("nan")
    prob_kind, gap_iv, gaps = prob, (float("nan"), float("nan")), None
    cleaned = [order.index(o.name) for o in options if o.feasible and o.name != raw]
    if cleaned:
        clean_wins = mat[:, cleaned].min(axis=1) < mat[:, order.index(raw)]
        prob_kind = float(np.mean(clean_wins[ok] == (verdict == "cleaning"))) if ok.any() else float("nan")
        gaps = mat[:, order.index(raw)] - mat[:, order.index(best_clean.name)]  # type: ignore[union-attr]
        gap_iv = percentile_interval(gaps[ok], level)
    notes = [f"{len(mat) - int(ok.sum())} bootstrap samples gave no finite loss and were left out"] \
        if ok.sum() < len(mat) else []
    return _Odds(gap_iv, prob, prob_kind, _ranking(options, mat[ok]), gaps, notes)


def _ranking(options: Sequence[OptionResult], mat: np.ndarray) -> dict[str, Any] | None:
    """The predicted order of the feasible options and its bootstrap probability (None: fewer than two)."""
    ranked = [j for j, o in enumerate(options) if o.feasible]
    if len(ranked) < 2:
        return None
    idx, p_order, p_pairs = order_probability([options[j].loss for j in ranked], mat[:, ranked])
    names = [options[ranked[i]].name for i in idx]
    return {"order": names, "probability": p_order,
            "pairs": [{"better": a, "worse": b, "probability": q}
                      for a, b, q in zip(names[:-1], names[1:], p_pairs, strict=True)]}


def _option_notes(options: Sequence[OptionResult], raw_opt: OptionResult, best_clean: OptionResult | None,
                  p: LawSamples) -> list[str]:
    """Infeasible options, optima at the search's edge, and whether repetition decides part of it."""
    notes = []
    for o in options:
        if not o.feasible:
            notes.append(f"tier {o.name} is infeasible at this budget: {o.reason}")
        elif o.n_params > 0.97 * o.training_flops / MIN_FLOPS_PER_PARAM_TOKEN or o.n_params < 1.5:
            notes.append(f"tier {o.name}: the optimum sits at the edge of the search range (the law has no interior "
                         "optimum here)")
    if raw_opt.epochs > 1 or (best_clean is not None and best_clean.epochs > 1):
        notes.append("some options repeat their pool (epochs > 1): the repetition model (R_D* = "
                     f"{float(p.r_star[0]):.3g}, {p.r_star_source}) decides part of the answer")
    return notes


def _scale_notes(extrapolation: float | None, smallest_run_flops: float | None, largest_run_flops: float | None,
                 compute: Compute, seed_noise_nats: float | None, gap: float, has_clean: bool) -> list[str]:
    """How far the budget is beyond the fitted runs, and whether the gap is inside the seed noise."""
    notes = []
    if largest_run_flops and extrapolation > EXTRAPOLATION_WARN:  # type: ignore[operator]
        notes.append(f"{_fitted_span(smallest_run_flops, float(largest_run_flops), compute)}; this budget is "
                     f"{extrapolation:.3g}x beyond the largest: the law is extrapolated far past its runs")
    if seed_noise_nats is not None and has_clean and abs(gap) < seed_noise_nats:
        notes.append(f"the predicted gap ({gap:+.4f} nats) is inside the seed-to-seed noise ({seed_noise_nats:.4f} "
                     "nats, the sd of one run's loss between seeds): single runs could not tell the options apart")
    return notes


def _smallest_run_flops(entry: Mapping[str, Any], fit: Mapping[str, Any]) -> float | None:
    """The smallest fitted run's compute, where the fit records it (older fits do not)."""
    for source in (entry.get("fitted_range") or {}, entry, fit):
        for key in ("flops_min", "smallest_run_flops"):
            if source.get(key):
                return float(source[key])
    return None


def recommend_from_fit(fit: Mapping[str, Any], data_report: Mapping[str, Any] | None = None, budget_flops: float | None = None,
                       raw_tokens: float | None = None, tokenizer: str | None = None,
                       cleaning_flops_per_second: float | None = None, n_steps: int = 4, *,
                       yields: Mapping[str, float] | None = None, cleaning_costs: Mapping[str, float] | None = None,
                       pools: Mapping[str, float] | None = None, experiment_flops: Sequence[float] | None = None,
                       crossover_budgets: int = CROSSOVER_BUDGETS, force: bool = False,
                       data_source: str = "the data build's report.json") -> Recommendation:
    """The recommendation from a fit: a sweep's (`scaler.fit_sweep` / `fit_store`, i.e. fit.json:
    its quality law, or the Chinchilla fit of a store with runs on one tier) or one law's entry
    (`scaler.fitting.pipeline.fit`, e.g. a quality law fitted on a table with a group column). The law's
    point estimate and bootstrap samples are used as fitted (no refit), under the fit's compute
    convention (6ND for a fit that does not record one); `budget_flops` is in that convention.

    Tier options: with `data_report` (a `data build`'s report.json as a dict, read by
    `scaler.session.recommend` from a build folder; `data_source` names it in the notes), the
    build's yields and cleaning costs (raw pool: raw's training tokens unless `raw_tokens`); without one,
    `raw_tokens` is required and every tier of the law has yield 1 and no cleaning cost unless
    `yields` (tokens kept / raw tokens) or `cleaning_costs` (FLOPs per raw token) say otherwise.
    Given yields and costs override the build's. `pools` (tokens per tier, the reference tier's
    among them: a sweep's pools cut from one raw pool, `data.raw_pool_tokens`) set the raw pool to
    the reference tier's and each yield to pool / raw pool. A budget beyond EXTRAPOLATION_REFUSE x
    the largest fitted run is refused (`ExtrapolationRefused`) unless `force`.
    """
    if isinstance(data_report, (str, Path)):
        raise TypeError(f"recommend_from_fit: data_report {str(data_report)!r}: expected the build's report.json as a "
                        "dict; for a build folder call scaler.recommend(fit, data_dir, ...) (scaler.session.recommend)")
    if budget_flops is None:
        raise ValueError("budget_flops is required")
    budget_flops = float(budget_flops)
    entry, law, names, reference, notes = _decision_law(fit)
    compute = Compute.from_json(entry.get("compute") or fit.get("compute"))
    fitted, largest, smallest = _fitted_runs(entry, fit)
    notes += _extrapolation(budget_flops, largest, smallest, compute, force)
    for what, given in (("yields", yields), ("cleaning_costs", cleaning_costs)):
        unknown = sorted(set(given or {}) - set(names))
        if unknown:
            raise ValueError(f"{what}: unknown tier(s) {', '.join(unknown)}; the law's tiers are {', '.join(names)}")
    derived = entry.get("derived", {})
    kappas = {t: float(derived.get(f"kappa_{t}") or 1.0) for t in names}
    if data_report is None:
        if raw_tokens is None:
            raise ParameterError("{raw_tokens} U is needed without a data build", "raw_tokens")
        tiers = [TierOption(t, kappa=kappas[t]) for t in names]
        source = "no data build: yields and cleaning costs as given (default yield 100%, no cleaning cost)"
    else:
        report = dict(data_report)
        tiers, facts = tier_options_from_report(report, names, tokenizer, cleaning_flops_per_second, kappas)
        skipped = sorted(set(report.get("tiers", {})) - set(names))
        if skipped:
            notes.append(f"tiers built but not in the sweep (no kappa fitted): {', '.join(skipped)}")
        raw_tokens = raw_tokens if raw_tokens is not None else facts["raw_train_tokens"]
        source = (f"cleaning costs from {data_source} (tokenizer {facts['tokenizer']}, "
                  f"{facts['raw_tokens_read']:.3g} raw tokens read)")
    raw_tokens, source = _given_pools_and_yields(tiers, float(raw_tokens), source, names, reference, pools, yields,
                                                 cleaning_costs)
    theta = np.asarray(entry["theta"], dtype=np.float64)
    samples = np.asarray(entry.get("bootstrap_theta") or np.zeros((0, law.n_params)), dtype=np.float64)
    errors = ErrorModel.from_json(entry["error_model"]) if entry.get("error_model") else None
    rec = decide(samples, theta, law, tiers, budget_flops, raw_tokens, raw=reference,
                 largest_run_flops=largest, n_steps=n_steps, compute=compute, smallest_run_flops=smallest,
                 seed_noise_nats=(entry.get("seed_noise") or {}).get("sd_nats"), error_model=errors,
                 fitted_range=fitted, experiment_flops=experiment_flops, crossover_budgets=crossover_budgets,
                 ensemble=entry.get("ensemble"))
    rec.notes = notes + rec.notes + [source]
    rec.eval_set = str((fit.get("key") or {}).get("eval_set") or "heldout")
    return rec


def _decision_law(fit: Mapping[str, Any]) -> tuple[Mapping[str, Any], Any, list[str], str, list[str]]:
    """The entry recommend decides with (`SweepFit.decision_law`), its law, its tiers (the
    reference tier first), the reference and the notes it needs (one tier only; no convergence)."""
    from scaler.fitting import laws

    notes: list[str] = []
    entry, single_tier = (fit if isinstance(fit, SweepFit) else SweepFit(fit)).decision_law()
    if single_tier is not None:
        notes.append(f"the store has runs on the {single_tier} tier only: no cleaned tier to compare")
    if "error" in entry:
        raise ValueError(f"the fit cannot be used: {entry['error']}")
    law = laws.law_from_spec(entry["spec"])
    names = list(law.spec.get("tiers") or [single_tier or "raw"])
    reference = law.spec.get("reference", names[0])
    names.sort(key=lambda t: t != reference)  # the reference tier first, as the options are listed
    if not entry.get("converged", True):
        notes.append(f"the law's fit did not converge ({entry.get('stopped')})")
    return entry, law, names, reference, notes


def _fitted_runs(entry: Mapping[str, Any], fit: Mapping[str, Any]) -> tuple[FittedRange | None, float, float | None]:
    """The fitted range (None for a fit that records none) and the largest and smallest run's compute."""
    fitted_raw = entry.get("fitted_range")
    fitted = FittedRange.from_json(fitted_raw, float(fitted_raw["flops_max"])) if fitted_raw else None
    largest = entry.get("largest_run_flops") or fit.get("largest_run_flops") or (fitted.flops_max if fitted else None)
    if not largest:
        raise ValueError("the fit records no largest run's compute (largest_run_flops)")
    return fitted, float(largest), _smallest_run_flops(entry, fit)


def _extrapolation(budget_flops: float, largest: float, smallest: float | None, compute: Compute,
                   force: bool) -> list[str]:
    """A budget beyond EXTRAPOLATION_REFUSE x the largest fitted run is refused unless forced (then noted)."""
    factor = budget_flops / largest
    if factor <= EXTRAPOLATION_REFUSE:
        return []
    if not force:
        raise ExtrapolationRefused(
            f"budget {budget_flops:.3g} {compute.label} is {factor:.3g}x the largest fitted run "
            f"({_fitted_span(smallest, largest, compute)}), beyond the {EXTRAPOLATION_REFUSE:.0e}x this "
            "recommendation trusts: pass force=True (--force) to answer anyway")
    return [f"answered beyond {EXTRAPOLATION_REFUSE:.0e}x the largest fitted run because forced"]


def _given_pools_and_yields(tiers: Sequence[TierOption], raw_tokens: float, source: str, names: Sequence[str],
                            reference: str, pools: Mapping[str, float] | None, yields: Mapping[str, float] | None,
                            cleaning_costs: Mapping[str, float] | None) -> tuple[float, str]:
    """Apply the given pools (raw pool = the reference tier's; yield = pool / raw pool), then the
    given yields and cleaning costs, to `tiers` in place; the raw pool and the source text."""
    if pools:
        missing = [t.name for t in tiers if t.name not in pools]
        if missing:
            raise ValueError(f"pools: no pool for tier {missing[0]!r}; the law's tiers are {', '.join(names)}")
        raw_tokens = float(pools[reference])
        for t in tiers:
            t.yield_fraction = float(pools[t.name]) / raw_tokens
        source += (f"; pools cut from one raw pool of {raw_tokens:.3g} tokens: "
                   + ", ".join(f"{t.name} {float(pools[t.name]):.3g}" for t in tiers))
    for t in tiers:
        t.yield_fraction = float((yields or {}).get(t.name, t.yield_fraction))
        t.cleaning_flops_per_raw_token = float((cleaning_costs or {}).get(t.name, t.cleaning_flops_per_raw_token))
    if yields or cleaning_costs:
        given = [f"{t.name} yield {t.yield_fraction:.1%}, {t.cleaning_flops_per_raw_token:.3g} FLOPs/raw token"
                 for t in tiers if t.name in (yields or {}) or t.name in (cleaning_costs or {})]
        source += f"; given: {'; '.join(given)}"
    return raw_tokens, source
