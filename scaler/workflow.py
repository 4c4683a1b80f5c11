"""A sweep spec's workflow as functions, for a notebook and the CLI alike (docs/design.md §1, §6).

What each command does to a sweep, without the command line: the store's states and repair of
corrupt runs (`states`, `repair`), training what is not done with an engine (`to_train`, `train_sweep`), the
sweep's fit over its own runs (`sweep_fit`, `sweep_run_ids`), its recommendation and report
(`sweep_recommendation`, `sweep_report`), one advance step (`advance`), designs simulated on a
prior law (`design`; `design_runs`, `prior_quality`), and the pools and throughput those use
(`tier_pools`, `throughput_estimate`). Progress and warnings go to the callbacks given (the CLI's
bars and notes); errors are `ConfigError`s naming the spec's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaler.errors import ConfigError

__all__ = ["states", "repair", "set_aside", "to_train", "SweepOutcome", "train_sweep", "sweep_run_ids", "sweep_fit",
           "sweep_recommendation", "next_run", "task_recommendation", "report_recommendations", "sweep_report", "load_spec", "advance", "design", "prior_quality",
           "design_runs", "tier_pools", "throughput_estimate"]

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def states(store_root: str, runs: Sequence[Any]) -> dict[str, str]:
    """Each run's state in the store; "corrupt" for a run with an unreadable file."""
    from scaler.store import Store

    store = Store(store_root)
    return {r.run_id: store.state_of(r.run_id) for r in runs}


def set_aside(store: Any, run: Any) -> tuple[str, str]:
    """Move a corrupt run's unreadable files aside (never deleted), put back its config from the
    spec; return the state it resumes from (a done run whose rows are intact stays done, a run whose
    metrics were lost trains again, from its checkpoints only when their rows survive) and what was done."""
    from scaler.config import run_id_of

    problems = "; ".join(error for _, error in store.problems(run.run_id))
    moved = store.set_aside(run.run_id)
    identity = run.config.identity()
    if run_id_of(identity) == run.run_id:
        store.write_config(run.run_id, identity)  # config.json from the spec, if it was the damaged file
    if any(path.rsplit("/", 1)[-1].startswith("metrics.parquet") for path in moved):
        store.write_status(run.run_id, "pending", reset_reason="metrics set aside")
    return store.read_status(run.run_id)["state"], f"run {run.run_id}: {problems}; moved aside to {', '.join(moved)}; queued again"


def repair(store_root: str, runs: Sequence[Any], run_states: dict[str, str], warn: Say = _quiet) -> dict[str, str]:
    """The states after repair: corrupt runs set aside (`set_aside`, each said to `warn`), the dead
    claims of finished runs removed (a worker killed between finishing and releasing)."""
    from scaler.store import Store

    store, out = Store(store_root), dict(run_states)
    for r in runs:
        if out[r.run_id] == "corrupt":
            out[r.run_id], message = set_aside(store, r)
            warn(message)
        if out[r.run_id] in ("done", "diverged"):
            store.remove_dead_claim(r.run_id)
    return out


def to_train(spec: Any, runs: Sequence[Any], max_runs: int | None = None, warn: Say = _quiet
             ) -> tuple[list[Any], int]:
    """The runs of `runs` to train now (at most `max_runs`; not done, not diverged), after repair,
    and how many are done already."""
    run_states = repair(spec.store_root, runs, states(spec.store_root, runs), warn)
    left = [r for r in runs if run_states[r.run_id] not in ("done", "diverged")]
    return left[:max_runs], len(runs) - len(left)


@dataclass
class SweepOutcome:
    """Each trained run's outcome ({"run_id", "state", "error"}), in the order given."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o["state"]] = out.get(o["state"], 0) + 1
        return out

    def failed(self) -> list[dict[str, Any]]:
        return [o for o in self.outcomes if o["state"] == "failed"]

    def store_errors(self) -> list[str]:
        """Why the store cannot be written (a full disk, read-only), when that is why runs failed."""
        return sorted({o["error"].removeprefix("StoreError: ") for o in self.failed()
                       if o["error"].startswith("StoreError: ")})


def train_sweep(spec: Any, todo: Sequence[Any], engine: Any, runner: str = "local", workers: int = 1,
                stack_size: Any = None, *, note: Say = _quiet, on_step: Callable[[dict[str, Any]], None] | None = None,
                on_outcome: Callable[[dict[str, Any]], None] | None = None) -> SweepOutcome:
    """Train `todo` (`to_train`) into the spec's store with `engine` (`scaler.sweep.engines.make_runner`):
    interrupted runs resume, failed ones are retried (`spec.retries`), a run claimed by a live
    worker elsewhere is skipped; stacks and WSD families as the spec says (`stack_size` overrides)."""
    from scaler.sweep.plan import stacked_together, sweep_stacks

    if not todo:
        return SweepOutcome()
    stacks = sweep_stacks(spec, list(todo), stack_size, runner, workers)
    together = stacked_together(spec, list(todo), stacks)  # per task, the runs of one vmapped step
    if spec.branches():
        note(f"{len(todo)} runs in {sum(map(len, together))} families of WSD branches, {len(stacks)} tasks "
             f"(up to {max(map(len, together))} families stacked)")
    elif any(len(group) > 1 for group in stacks):
        note(f"{len(todo)} runs in {len(stacks)} stacks (up to {max(map(len, stacks))} runs trained together)")
    configs = [r.config.model_dump(mode="json") for r in todo]
    return SweepOutcome(engine.run(configs, spec.store_root, spec.retries, on_outcome=on_outcome, on_step=on_step,
                                   stacks=stacks))


def sweep_run_ids(spec: Any) -> set[str]:
    """The sweep's own runs and those of its finished `scaler advance` steps, not the whole store's."""
    from scaler.advance_step import advanced_run_ids
    from scaler.store import Store
    from scaler.sweep.spec import expand

    return {r.run_id for r in expand(spec)} | advanced_run_ids(Store(spec.store_root))


def sweep_fit(spec: Any, n_bootstrap: int | None = None, *, eval_set: str | None = None, law: str | None = None,
              seed: int | None = None, reference: str | None = None, refit: bool = False, objective: Any = None,
              run_ids: set[str] | None = None, horizon: float | None = None) -> dict[str, Any]:
    """The sweep's fit under its [fit] settings (each overridden when given; `objective` an
    `Objective`), from the store's fit.json when the key matches; of `run_ids`, else of the sweep's
    runs and its advance steps'."""
    from scaler.fitting.pipeline import Objective
    from scaler.session import fit_store

    s = spec.fit
    return fit_store(spec.store_root, eval_set or s.eval_set, law or s.law,
                     s.bootstrap if n_bootstrap is None else n_bootstrap, s.seed if seed is None else seed,
                     reference or s.reference, refit=refit,
                     objective=objective or Objective(s.objective, s.delta, s.asymmetry),
                     run_ids=run_ids if run_ids is not None else sweep_run_ids(spec),
                     horizon=s.horizon if horizon is None else horizon)


def sweep_recommendation(spec: Any, fit_json: Mapping[str, Any], budget_flops: float,
                         raw_tokens: float | None = None, **options: Any):
    """`scaler.session.recommend` for the sweep (`spec` None: a fit of runs trained anywhere):
    its data build's costs and, for scarce data, the pools cut from its raw pool."""
    from scaler.session import recommend

    pools = None
    if spec is not None and spec.data.raw_pool_tokens is not None and raw_tokens is None:
        from scaler.sweep.spec import raw_pool_caps

        pools = raw_pool_caps(spec.data)  # the sweep's scarce data: its raw pool and what each tier keeps
    return recommend(fit_json, spec.data.dir if spec is not None else None, budget_flops,
                     raw_tokens=raw_tokens, pools=pools, **options)


def next_run(recommendation: Any) -> dict[str, Any] | None:
    """The top-ranked next experiment of a recommendation, for the report's iso-loss figure."""
    if recommendation is None or not recommendation.experiments:
        return None
    top = min(recommendation.experiments, key=lambda e: e.rank)
    return {"n": top.n_params, "d": top.tokens, "flops": top.flops, "group": top.tier}


TASK_EVAL_SET = "humaneval_solution"  # the code task: HumanEval's solutions given their prompts


def task_recommendation(spec: Any, fit_json: Mapping[str, Any], target_flops: float, n_bootstrap: int | None = None
                        ) -> Any:
    """The recommendation on the code task's loss (TASK_EVAL_SET) at `target_flops`, when the sweep
    records it and the held-out fit is not already of it; None otherwise."""
    if TASK_EVAL_SET not in spec.data.eval_sets or (fit_json.get("key") or {}).get("eval_set") == TASK_EVAL_SET:
        return None
    task_fit = sweep_fit(spec, n_bootstrap, eval_set=TASK_EVAL_SET)
    if not task_fit.get("largest_run_flops"):
        return None
    return sweep_recommendation(spec, task_fit, target_flops)


def report_recommendations(spec: Any, fit_json: Mapping[str, Any], target_flops: float,
                           n_bootstrap: int | None = None) -> tuple[Any, Any]:
    """(the recommendation at `target_flops`, the code task's) for the sweep's report; None where
    the sweep has no data build, or its runs do not record the code task."""
    recommendation = sweep_recommendation(spec, fit_json, target_flops) if spec.data.dir else None
    task = task_recommendation(spec, fit_json, target_flops, n_bootstrap) if recommendation else None
    return recommendation, task


def sweep_report(spec_file: Path, spec: Any, out: Path, budget_multiple: float, fit_json: Mapping[str, Any],
                 n_bootstrap: int | None = None, recommendations: tuple[Any, Any] | None = None) -> dict[str, Path]:
    """The sweep's report (`scaler.session.build_report`): its runs, fit, data build, advance
    steps, the recommendation for `budget_multiple` x the largest fitted run and, when the runs
    record the code task, the same recommendation on it (`report_recommendations`, unless given)."""
    from scaler.advance_step import read_steps
    from scaler.data.folder import read_report
    from scaler.session import build_report
    from scaler.store import Store

    has_report = spec.data.dir and (Path(spec.data.dir) / "report.json").exists()
    data_report = read_report(spec.data.dir).model_dump(mode="json") if has_report else None
    target = budget_multiple * fit_json["largest_run_flops"]
    recommendation, task = recommendations or report_recommendations(spec, fit_json, target, n_bootstrap)
    return build_report(spec.store_root, fit_json, data_report, out, title=f"scaler report: sweep {spec.name}",
                        recommendation=recommendation.to_json() if recommendation else None,
                        spec_text=Path(spec_file).read_text(), target_flops=target,
                        next_run=next_run(recommendation), advance_steps=read_steps(Store(spec.store_root)),
                        task_recommendation=task.to_json() if task else None)


def load_spec(spec: Any) -> Any:
    """A sweep spec: loaded from its TOML file when given a path, else as given."""
    if isinstance(spec, (str, Path)):
        from scaler.sweep.spec import load_sweep_spec

        return load_sweep_spec(Path(spec))
    return spec


def advance(spec: Any, train: Callable[[Sequence[Any]], None] | None = None, *, reach: Sequence[float] = (4.0, 8.0),
            pairs: int = 1, budget_hours: float | None = None, target_flops: float | None = None,
            runner: str = "local", workers: int = 2, progress: Say = _quiet) -> dict[str, Any]:
    """One advance step of a sweep (`scaler advance`; the spec or its TOML file): predict the next
    runs beyond it, record the predictions (`<store>/advance-<k>.json`), train them, refit and
    score every prediction (`scaler.advance_step.advance_step`). `train` trains a list of runs
    (default: `to_train` and `train_sweep` with `runner`)."""
    from scaler.advance_step import advance_step, check_options
    from scaler.store import Store
    from scaler.sweep.spec import expand, extra_run

    spec = load_spec(spec)
    check_options(reach, pairs, budget_hours)
    if spec.data.dir is None or len({t for m in spec.all_mixes() for t in m}) < 2:
        raise ConfigError(f"sweep {spec.name}: advance compares raw with cleaned data: the sweep needs data.dir and "
                          "mixes over two tiers or more")
    return advance_step(
        Store(spec.store_root), {r.run_id for r in expand(spec)}, fit=lambda ids: sweep_fit(spec, run_ids=ids),
        recommend=lambda fit, flops, ladder: sweep_recommendation(spec, fit, flops, experiment_flops=ladder),
        train=train or _trainer(spec, runner, workers, progress),
        make_run=lambda n, c, tier: extra_run(spec, n, c, tier, prefix="/advance"),
        pools=tier_pools(spec), target_flops=target_flops, eval_set=spec.fit.eval_set, reach=reach, pairs=pairs,
        budget_hours=budget_hours, workers=workers, seconds_of=throughput_estimate(spec.store_root), progress=progress)


def _trainer(spec: Any, runner: str, workers: int, note: Say) -> Callable[[Sequence[Any]], None]:
    """Train a list of the spec's runs with `runner` (`to_train`, then `train_sweep`)."""
    from scaler.sweep.engines import make_runner

    def train(runs: Sequence[Any]) -> None:
        engine = make_runner(runner, workers=workers, resources=spec.resources.model_dump())
        todo, _ = to_train(spec, runs, warn=note)
        train_sweep(spec, todo, engine, runner, workers, 1, note=note)

    return train


def design(specs: Sequence[Any], prior: Mapping[str, Any], *, budget_flops: float | None = None, n_sims: int = 20,
           n_bootstrap: int = 100, noise_sd: float | None = None, seed: int = 0, prior_source: str = "the prior",
           progress: Say = _quiet) -> dict[str, Any]:
    """Before any run (`scaler design`): simulate each design (a sweep spec or its TOML file) on the
    prior's quality law and seed noise (`scaler.simulate.simulate`: synthetic results, fitted,
    repeated) and give the expected intervals of kappa and the allocation exponent and the verdict's
    expected probability at `budget_flops` (default: 100x the first design's largest run)."""
    from scaler.simulate import simulate

    prior_entry = prior_quality(prior, prior_source)
    loaded = [load_spec(s) for s in specs]
    names = [Path(s).stem if isinstance(s, (str, Path)) else spec.name for s, spec in zip(specs, loaded, strict=True)]
    designs = [design_runs(spec, name, prior_entry) for spec, name in zip(loaded, names, strict=True)]
    target = budget_flops or 100.0 * float(np.max(designs[0].columns["C"]))
    results = []
    for spec, d in zip(loaded, designs, strict=True):
        progress(f"design {d.name}: {len(d.groups)} runs, {d.trained_flops:.3g} FLOPs trained; {n_sims} synthetic sweeps")
        results.append(simulate(d, prior_entry, _recommend_at(spec, target), n_sims=n_sims, n_bootstrap=n_bootstrap,
                                noise_sd=noise_sd, seed=seed))
    return {"target_flops": target, "designs": results}


def _recommend_at(spec: Any, target_flops: float) -> Callable[[Mapping[str, Any]], Any]:
    return lambda entry: sweep_recommendation(spec, entry, target_flops, crossover_budgets=0)


def prior_quality(fit_json: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The quality law of a prior fit (`source` names it): a sweep fit's `quality`, or one quality law's entry."""
    entry = fit_json.get("quality") if "quality" in fit_json else fit_json
    if not isinstance(entry, Mapping) or "error" in entry or (entry.get("spec") or {}).get("family") != "quality":
        raise ConfigError(f"{source}: the prior has no fitted quality law (a sweep fit over two tiers or more)")
    return dict(entry)


def design_runs(spec: Any, name: str, prior: Mapping[str, Any]):
    """A spec's runs as the prior's law reads them (`scaler.simulate.DesignRuns`): N, D, C (the
    prior's convention), weights, pools, and the FLOPs they train (WSD branches share trunks)."""
    from scaler.config import mix_label
    from scaler.simulate import DesignRuns
    from scaler.fitting.compute import Compute
    from scaler.fitting.laws import law_from_spec
    from scaler.model.family import count_params
    from scaler.sweep.plan import make_plan, sweep_stacks
    from scaler.sweep.spec import expand

    if spec.data.dir is None:
        raise ConfigError(f"design {name}: the quality law needs data tiers (data.dir and mixes)")
    runs = expand(spec)
    tiers = list(law_from_spec(prior["spec"]).spec["tiers"])
    unknown = sorted({t for r in runs for t in r.mix} - set(tiers))
    if unknown:
        raise ConfigError(f"design {name}: tier {unknown[0]!r} has no kappa in the prior (its tiers: {', '.join(tiers)})")
    pools = tier_pools(spec)
    n = np.array([count_params(r.config.model) for r in runs], dtype=np.float64)
    d = np.array([r.config.train.tokens for r in runs], dtype=np.float64)
    columns = {"N": n, "D": d, "C": Compute.from_json(prior.get("compute")).flops(n, d),
               **{f"w_{t}": np.array([r.mix.get(t, 0.0) for r in runs]) for t in tiers},
               **{f"U_{t}": np.full(len(runs), pools[t]) for t in tiers}}
    plan = make_plan(spec, runs, stacks=sweep_stacks(spec, runs, None))  # WSD branches share their trunks
    return DesignRuns(name, columns, np.array([mix_label(r.mix) for r in runs]), plan.trained_flops or plan.total_flops)


def tier_pools(spec: Any) -> dict[str, float]:
    """Each tier's pool (tokens) as the sweep's runs read it: cut from its raw pool, capped, or whole."""
    from scaler.data.folder import read_token_meta
    from scaler.sweep.spec import tier_caps

    pools = {t: float(c.tokens) for t, c in read_token_meta(spec.data.dir, spec.data.tokenizer).tiers.items()}
    return {t: min(whole, float(tier_caps(spec.data).get(t, whole))) for t, whole in pools.items()}


def throughput_estimate(store_root: str) -> Callable[[Any], float | None]:
    """seconds(run): its tokens at the median throughput its size reached in the sweep's own runs
    (the nearest size measured; None before any run finished)."""
    import polars as pl

    from scaler.model.family import count_params
    from scaler.store import load_curves, load_runs

    try:
        curves = load_curves(store_root).join(load_runs(store_root).select("run_id", "n_params"), on="run_id")
        by_size = curves.group_by("n_params").agg(pl.col("tokens_per_s").median()).sort("n_params")
    except Exception:  # noqa: BLE001 - no runs, or none with throughput rows: no estimate
        return lambda run: None
    sizes, rates = by_size["n_params"].to_numpy(), by_size["tokens_per_s"].to_numpy()

    def seconds(run: Any) -> float | None:
        if not len(sizes):
            return None
        nearest = int(np.argmin(np.abs(np.log(sizes / count_params(run.config.model)))))
        return float(run.config.train.tokens / rates[nearest]) if rates[nearest] > 0 else None

    return seconds
