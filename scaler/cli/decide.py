"""`scaler recommend` (a budget: size or cleaner data) and `scaler report` (figures, Markdown, HTML)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaler import workflow
from scaler.cli.common import (EVAL_SET_HELP, TASK_TABLE_HELP, _eval_set, _task_curve, _task_loss, _no_eval_set_with_fit, _print_json, _read_fit_json, _say,
                               _sweep_fit, _user_errors, _warn)
from scaler.cli.main import app
from scaler.config import ConfigError
from scaler.fitting.predict import EXTRAPOLATION_REFUSE, EXTRAPOLATION_WARN
from scaler.store import check_writable_folder


def _tier_values(pairs: list[str] | None, option: str) -> dict[str, float] | None:
    """`--yield clean=0.4 --yield dedup=0.8` as {tier: value}."""
    if not pairs:
        return None
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{option} {pair!r}: expected GROUP=NUMBER") from None
        if not sep or not name.strip():
            raise ConfigError(f"{option} {pair!r}: expected GROUP=NUMBER")
    return out


@app.command()
def recommend(
    spec_file: Annotated[Path | None, typer.Argument(help="a sweep spec whose runs are done (or give --fit)")] = None,
    budget: Annotated[float, typer.Option(help="the budget, in --unit")] = ...,
    unit: Annotated[str, typer.Option(help="flops | gpu-hours | usd")] = "flops",
    fit_file: Annotated[Path | None, typer.Option("--fit", help="a fit JSON (`scaler fit --table ... --out`) of runs trained anywhere, instead of a spec")] = None,
    yields: Annotated[list[str] | None, typer.Option("--yield", help="GROUP=FRACTION: tokens kept per raw token (repeatable; default 1, or the build's)")] = None,
    cleaning_costs: Annotated[list[str] | None, typer.Option("--cleaning-cost", help="GROUP=FLOPS_PER_RAW_TOKEN: the cost of producing the tier (repeatable; default 0, or the build's)")] = None,
    raw_tokens: Annotated[float | None, typer.Option(help="raw token pool U (default: the build's raw tier; needed with --fit)")] = None,
    peak_flops: Annotated[float | None, typer.Option(help="FLOP/s of one device (gpu-hours, usd)")] = None,
    mfu: Annotated[float | None, typer.Option(help="model FLOPs utilisation there")] = None,
    usd_per_hour: Annotated[float | None, typer.Option(help="price of one device hour (usd)")] = None,
    bootstrap: Annotated[int | None, typer.Option(help="bootstrap resamples for the verdict's probability (default: the spec's fit.bootstrap)")] = None,
    force: Annotated[bool, typer.Option(help=f"answer even beyond {EXTRAPOLATION_REFUSE:g}x the largest fitted run")] = False,
    eval_set: Annotated[str | None, typer.Option(help=EVAL_SET_HELP)] = None,
    task_table: Annotated[Path | None, typer.Option(help=TASK_TABLE_HELP)] = None,
    task_loss: Annotated[str, typer.Option(help="--task-table: the task loss column")] = "bpb",
    pass_at_k: Annotated[str, typer.Option(help="--task-table: the pass@k column (a fraction)")] = "pass@1",
    task_loss_unit: Annotated[str, typer.Option(help="--task-table: bpb (bits per byte) | nats (per token)")] = "bpb",
    json_out: Annotated[bool, typer.Option("--json", help="print the recommendation as JSON only")] = False,
) -> None:
    """For a budget: the best N, D and tier, whether to spend it on model size or on cleaner data,
    the crossover budget and how far the answer extrapolates."""
    from scaler.decision import to_flops
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        if (spec_file is None) == (fit_file is None):
            raise ConfigError("give a sweep spec, or --fit FIT.json (with --raw-tokens U) for runs trained anywhere")
        flops = to_flops(budget, unit, peak_flops=peak_flops, mfu=mfu, usd_per_hour=usd_per_hour)
        options = {"yields": _tier_values(yields, "--yield"),
                   "cleaning_costs": _tier_values(cleaning_costs, "--cleaning-cost"), "force": force}
        spec = None
        if spec_file is not None:
            spec = load_sweep_spec(spec_file)
            fit = _sweep_fit(spec, bootstrap, eval_set=_eval_set(spec, eval_set))
        else:
            _no_eval_set_with_fit(eval_set)
            fit = _read_fit_json(fit_file)  # type: ignore[arg-type]
        result = workflow.sweep_recommendation(spec, fit, flops, raw_tokens, **options)
        curve = _task_curve(task_table, task_loss, pass_at_k, task_loss_unit)
        task = None if curve is None else {"curve": curve.to_json(), "options": {
            o.name: curve.predict(_task_loss(curve, fit, o.loss),
                                  [_task_loss(curve, fit, v) for v in (o.loss_prediction_interval or o.loss_interval)])
            for o in result.options if o.feasible}}
    if result.extrapolation and result.extrapolation > EXTRAPOLATION_WARN:
        _warn(f"the budget is {result.extrapolation:.3g}x the largest fitted run: the answer extrapolates far "
              "beyond the evidence (see the note below)", "extrapolation")
    if json_out:
        _print_json({**result.to_json(), **({"task": task} if task else {})})
        return
    for line in result.lines():
        _say(line)
    if task:
        _say(f"task curve: {curve.text()}")
        for name, t in task["options"].items():
            _say(f"  {name}: {t['metric']} {t['value']:.3f} [{t['interval'][0]:.3f}, {t['interval'][1]:.3f}] (95%, the "
                 f"run's prediction interval through the curve's draws) at {t['loss']:.4f} {t['loss_unit']}"
                 + (f"; {t['note']}" if t["note"] else ""))


@app.command()
def report(
    spec_file: Annotated[Path | None, typer.Argument(help="a sweep spec whose runs are done (or give --fit)")] = None,
    fit_file: Annotated[Path | None, typer.Option("--fit", help="a fit JSON (`scaler fit --table ... --out`): a report of runs trained anywhere")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default reports/<sweep name>, or reports/<fit file name>)")] = None,
    budget_multiple: Annotated[float, typer.Option(help="recommend (and state the extrapolation) for this multiple of the largest run")] = 100.0,
    bootstrap: Annotated[int | None, typer.Option(help="bootstrap resamples (default: the spec's fit.bootstrap)")] = None,
    eval_set: Annotated[str | None, typer.Option(help=EVAL_SET_HELP)] = None,
) -> None:
    """Figures, a Markdown report and a self-contained HTML page for a fitted sweep or a fit JSON."""
    from scaler.report.render import build_report_from_fit
    from scaler.sweep.spec import load_sweep_spec

    with _user_errors(ValueError):
        if (spec_file is None) == (fit_file is None):
            raise ConfigError("give a sweep spec, or --fit FIT.json")
        if not budget_multiple > 0:
            raise ConfigError(f"--budget-multiple {budget_multiple}: expected a positive multiple")
        if spec_file is not None:
            spec = load_sweep_spec(spec_file)
            out_dir = out or Path("reports") / spec.name
            check_writable_folder(str(out_dir), "--out")
            fit = _sweep_fit(spec, bootstrap, eval_set=_eval_set(spec, eval_set))
            paths = workflow.sweep_report(spec_file, spec, out_dir, budget_multiple, fit, bootstrap)
        else:
            _no_eval_set_with_fit(eval_set)
            fit_json = _read_fit_json(fit_file)  # type: ignore[arg-type]
            if not fit_json.get("largest_run_flops"):
                raise ConfigError(f"--fit {fit_file}: the fit failed or predates scaler's fit.json schema 4 "
                                  f"({fit_json.get('error', 'no largest_run_flops')}); refit it")
            out_dir = out or Path("reports") / fit_file.stem  # type: ignore[union-attr]
            check_writable_folder(str(out_dir), "--out")
            paths = build_report_from_fit(fit_json, out_dir, f"scaler report: {fit_file}",
                                          target_flops=budget_multiple * fit_json["largest_run_flops"])
    for name, path in paths.items():
        _say(f"{name}: {path}")
