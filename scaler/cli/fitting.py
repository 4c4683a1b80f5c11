"""`scaler fit` (a sweep's store or a table) and `scaler predict` (planned runs, with intervals)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scaler.cli.common import (EVAL_SET_HELP, TASK_TABLE_HELP, _console, _table_column, _task_curve, _task_loss, _eval_set, _json_text, _no_eval_set_with_fit, _note, _objective,
                               _print_fit, _print_json, _print_sweep_fit, _read_fit_json, _say, _sweep_fit, _user_errors,
                               _warn)
from scaler.cli.main import app
from scaler.config import ConfigError
from scaler.fitting.predict import EXTRAPOLATION_WARN
from scaler.store import check_writable_folder


def _check_output_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise ConfigError(f"{option} {path}: a folder; expected a file name")
    check_writable_folder(str(path.parent), option)


def _write_json_file(path: Path, obj: Any) -> None:
    """Atomically, like the store's files."""
    from scaler.store import atomic_write_bytes, filesystem

    fs, fs_path = filesystem(str(path), "--out")
    atomic_write_bytes(fs, fs_path, (_json_text(obj) + "\n").encode())


def _all_failed(result: dict[str, Any]) -> bool:
    """A fit in which no law could be fitted: every group failed (or the one law did)."""
    if "groups" in result:
        return bool(result["groups"]) and len(result.get("failed_groups", [])) == len(result["groups"])
    return "error" in result


GROUP_LAWS = ("quality", "chinchilla_group_e", "mixing")  # laws fitted across a table's groups at once


@app.command()
def fit(
    spec_file: Annotated[Path | None, typer.Argument(help="a sweep spec: fit its store (writes fit.json there)")] = None,
    table: Annotated[Path | None, typer.Option(help="a CSV of runs exported from anywhere")] = None,
    n: Annotated[str | None, typer.Option(help="--table: the parameters column")] = None,
    d: Annotated[str | None, typer.Option(help="--table: the training tokens column")] = None,
    loss: Annotated[str | None, typer.Option(help="--table: the loss column (nats)")] = None,
    unique: Annotated[str | None, typer.Option(help="--table: the unique tokens column")] = None,
    group: Annotated[str | None, typer.Option(help="--table: a group column (dataset, tier, mix): each group is fitted, side by side; quality and chinchilla_group_e fit across the groups")] = None,
    flops: Annotated[str | None, typer.Option(help="--table: a training FLOPs column (D = C / 6N without --d; tables are fitted under C = 6ND)")] = None,
    law: Annotated[str | None, typer.Option(help="chinchilla | chinchilla_group_e | kaplan | overtrain | broken | data_constrained | quality | mixing | auto (default: the spec's fit.law, else chinchilla)")] = None,
    reference: Annotated[str | None, typer.Option(help="quality law: the tier or group with kappa = 1 (default: the spec's fit.reference, else raw)")] = None,
    objective: Annotated[str | None, typer.Option(help="huber (default) | asymmetric (the chinchilla toolkit's lower-envelope estimator)")] = None,
    delta: Annotated[float | None, typer.Option(help="the Huber threshold (default 1e-3)")] = None,
    asymmetry: Annotated[float | None, typer.Option(help="asymmetric: weight of predictions above a run (default 10)")] = None,
    drop_top_loss: Annotated[int, typer.Option(help="drop the K highest-loss rows")] = 0,
    drop_nan: Annotated[bool, typer.Option(help="drop rows with NaN values (counted) instead of refusing")] = False,
    bootstrap: Annotated[int | None, typer.Option(help="bootstrap resamples for intervals (0: none; default 1000)")] = None,
    seed: Annotated[int | None, typer.Option(help="bootstrap seed (default 0)")] = None,
    horizon: Annotated[float | None, typer.Option(help="--law auto: the extrapolation (compute over the largest fitted run's) the laws' backtests are scored at (default 10)")] = None,
    eval_set: Annotated[str | None, typer.Option(help="SPEC: which eval set's final loss to fit (default heldout)")] = None,
    refit: Annotated[bool, typer.Option(help="SPEC: refit even if the store's fit.json matches")] = False,
    out: Annotated[Path | None, typer.Option(help="also write the fit as JSON to this file")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the fit as JSON only")] = False,
) -> None:
    """Fit a scaling law (4,500 starts) with bootstrap intervals and backtested prediction intervals."""
    from scaler.fitting.choose import DEFAULT_HORIZON
    from scaler.fitting.inputs import load_table
    from scaler.fitting.pipeline import fit as fit_law, fit_sweep

    with _user_errors(ValueError):  # a law that cannot be fitted to these rows is one line too
        if json_out and spec_file is not None and spec_file.suffix == ".json":  # the old `--json FILE`
            raise ConfigError(f"{spec_file}: --json takes no file: it prints the fit as JSON only, on stdout; "
                              f"write it to a file with --out {spec_file}")
        if (spec_file is None) == (table is None):
            raise ConfigError("give a sweep spec, or --table FILE.csv with --n, --loss and --d or --flops")
        if out is not None:
            _check_output_file(out, "--out")
        if spec_file is not None:
            from scaler.sweep.spec import load_sweep_spec

            spec = load_sweep_spec(spec_file)
            check_writable_folder(spec.store_root, "store")
            result = _sweep_fit(spec, bootstrap, eval_set=eval_set, law=law, seed=seed, reference=reference,
                                refit=refit, objective=objective, delta=delta, asymmetry=asymmetry, horizon=horizon)
            if not json_out:
                _note(f"fit.json: {spec.store_root}/fit.json")
        else:
            if not (n and loss):
                raise ConfigError("--table needs --n COL and --loss COL (and --d COL or --flops COL)")
            goal = _objective(objective, delta, asymmetry)
            data = load_table(table, n=n, loss=loss, d=d, flops=flops, unique=unique, group=group,
                              drop_top=drop_top_loss, drop_nan=drop_nan)
            n_boot, name = 1000 if bootstrap is None else bootstrap, law or "chinchilla"
            reach = DEFAULT_HORIZON if horizon is None else horizon
            if group and name not in GROUP_LAWS:
                result = fit_sweep(data, name, n_boot, seed or 0, reference or "raw", goal, reach)
            else:
                result = fit_law(data, name, n_boot, seed or 0, reference or "raw", goal, with_data=True, horizon=reach)
        if out is not None:
            _write_json_file(out, result)
    if json_out:
        _print_json(result)
    elif "groups" in result:
        _print_sweep_fit(result)
    else:
        _print_fit(result)
    if out is not None and not json_out:
        _note(f"wrote {out}")
    if _all_failed(result):
        _warn("no law could be fitted", "error")
        raise typer.Exit(1)


def _fit_source(source: Path, eval_set: str | None = None) -> dict[str, Any]:
    """A fit JSON, or a sweep spec (TOML) whose store is fitted on `eval_set` (or its fit reused)."""
    if source.suffix == ".toml":
        from scaler.sweep.spec import load_sweep_spec

        spec = load_sweep_spec(source)
        return _sweep_fit(spec, eval_set=_eval_set(spec, eval_set))
    _no_eval_set_with_fit(eval_set)
    return _read_fit_json(source)


def _points(at: Path | None, n: str | None, d: str | None, flops: str | None, group: str | None,
            params: float | None, tokens: float | None, tier: str | None, unique: str | None = None
            ) -> dict[str, Any]:
    """The points to predict: columns of a CSV (--at) or one run (--params, --tokens)."""
    if at is None:
        if params is None or tokens is None:
            raise ConfigError("give --at POINTS.csv with --n COL and --d COL (or --flops COL), or --params N --tokens D")
        return {"n": [params], "d": [tokens], "flops": None, "groups": [tier], "unique": None}
    if not at.is_file():
        raise ConfigError(f"--at {at}: file not found")
    if not n or (d is None) == (flops is None):
        raise ConfigError(f"--at {at}: give --n COL and one of --d COL or --flops COL")
    try:
        numbers = {key: [float(v) for v in _table_column(at, col, f"--{key}")] for key, col in
                   (("n", n), ("d", d), ("flops", flops), ("unique", unique)) if col}
    except (TypeError, ValueError):
        raise ConfigError(f"--at {at}: --n, --d and --flops must name numeric columns with no empty cells") from None
    groups = [None if v is None else str(v) for v in _table_column(at, group, "--group")] if group else None
    return {"n": numbers["n"], "d": numbers.get("d"), "flops": numbers.get("flops"),
            "groups": groups or [tier] * len(numbers["n"]), "unique": numbers.get("unique")}


@app.command()
def predict(
    source: Annotated[Path, typer.Argument(help="a fit JSON (a store's fit.json or `scaler fit --out`), or a sweep spec")],
    at: Annotated[Path | None, typer.Option(help="a CSV of points to predict")] = None,
    n: Annotated[str | None, typer.Option(help="--at: the parameters column")] = None,
    d: Annotated[str | None, typer.Option(help="--at: the training tokens column")] = None,
    flops: Annotated[str | None, typer.Option(help="--at: a training FLOPs column (D from the fit's convention)")] = None,
    group: Annotated[str | None, typer.Option(help="--at: the group (tier, dataset) column")] = None,
    unique: Annotated[str | None, typer.Option(help="--at: the unique tokens column (data_constrained law)")] = None,
    params: Annotated[float | None, typer.Option(help="one point: parameters N")] = None,
    tokens: Annotated[float | None, typer.Option(help="one point: training tokens D")] = None,
    tier: Annotated[str | None, typer.Option(help="the group or tier of every point (when the fit has several)")] = None,
    eval_set: Annotated[str | None, typer.Option(help=EVAL_SET_HELP)] = None,
    task_table: Annotated[Path | None, typer.Option(help=TASK_TABLE_HELP)] = None,
    task_loss: Annotated[str, typer.Option(help="--task-table: the task loss column")] = "bpb",
    pass_at_k: Annotated[str, typer.Option(help="--task-table: the pass@k column (a fraction)")] = "pass@1",
    task_loss_unit: Annotated[str, typer.Option(help="--task-table: bpb (bits per byte) | nats (per token)")] = "bpb",
    out: Annotated[Path | None, typer.Option(help="also write the predictions as JSON to this file")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the predictions as JSON only")] = False,
) -> None:
    """Predicted loss of planned runs, with a 95% prediction interval and how far each extrapolates."""
    from scaler.fitting.predict import SHRINK, ranking_lines
    from scaler.fitting.result import PredictError, predict as predict_loss

    with _user_errors(PredictError):
        if out is not None:
            _check_output_file(out, "--out")
        points = _points(at, n, d, flops, group, params, tokens, tier, unique)
        fit_json = _fit_source(source, eval_set)
        result = predict_loss(fit_json, points["n"], d=points["d"], flops=points["flops"], groups=points["groups"],
                              unique=points["unique"])
        curve = _task_curve(task_table, task_loss, pass_at_k, task_loss_unit)
        if curve is not None:
            result["task_curve"] = curve.to_json()
            for p in result["points"]:
                p["task"] = curve.predict(_task_loss(curve, fit_json, p["loss"]),
                                          [_task_loss(curve, fit_json, v) for v in p["interval"]])
        if out is not None:
            _write_json_file(out, result)
    rows = result["points"]
    far = [p for p in rows if p["extrapolation"] > EXTRAPOLATION_WARN]
    for label in dict.fromkeys(p["group"] for p in far):
        mine = [p for p in far if p["group"] == label]
        _warn(f"{len(mine)} point{'s' if len(mine) > 1 else ''}{'' if label is None else f' of {label}'} "
              f"extrapolate{'' if len(mine) > 1 else 's'} more than {EXTRAPOLATION_WARN:g}x (up to "
              f"{max(p['extrapolation'] for p in mine):.3g}x) beyond the largest fitted run; "
              f"{_fitted_range_text(fit_json, label)}", "extrapolation")
    if json_out:
        _print_json(result)
        return
    table = Table("N", "D", "group", "C (FLOPs)", "loss", "95% interval", "extrapolation", "width mostly from", "law",
                  title=f"predictions from {source}")
    for p in rows:
        width = p.get("width")
        table.add_row(f"{p['n']:.4g}", f"{p['d']:.4g}", str(p["group"] or "-"), f"{p['flops']:.3g} ({p['convention']})",
                      f"{p['loss']:.4f}", f"[{p['interval'][0]:.4f}, {p['interval'][1]:.4f}]",
                      f"{p['extrapolation']:.3g}x",
                      "-" if not width else f"{width['dominant'].replace('_', ' ')} ({width['shares'][width['dominant']]:.0%})",
                      p["law"])
    _console().print(table)
    if "task_curve" in result:
        _say(f"task curve: {curve.text()}")
        for p in rows:
            t = p["task"]
            _say(f"  N {p['n']:.4g}, D {p['d']:.4g}: {t['metric']} {t['value']:.3f} [{t['interval'][0]:.3f}, "
                 f"{t['interval'][1]:.3f}] at {t['loss']:.4f} {t['loss_unit']}" + (f" ({t['note']})" if t["note"] else ""))
    for line in ranking_lines(result["rankings"]):
        _say(line)
    dominant = {p["width"]["dominant"] for p in rows if p.get("width")}
    for term in sorted(dominant):
        _note(f"where the width is mostly {term.replace('_', ' ')}, what would shrink it: {SHRINK[term]}")
    if out is not None:
        _note(f"wrote {out}")


def _fitted_range_text(fit_json: dict[str, Any], group: str | None) -> str:
    from scaler.fitting.result import SweepFit

    law, _ = SweepFit.from_json(fit_json).law_for(group)
    return law.fitted_range.span_text(law.entry.get("flops_convention", "6ND"))
