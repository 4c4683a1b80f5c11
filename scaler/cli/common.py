"""What several commands share: the output rules (stdout results, stderr progress, one-line
errors), progress bars, JSON, the sweep's fit and training with bars, fit printing."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from scaler import workflow
from scaler.config import ConfigError
from scaler.errors import ParameterError
from scaler.store import StoreError


UNWRAPPED_WIDTH = 10_000  # a pipe or a CI log gets each line whole


def _console(stderr: bool = False) -> Console:
    """stdout (results) or stderr (progress, warnings, errors); markup is never parsed, and a
    stream that is not a terminal is not wrapped."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(stderr=stderr, markup=False, highlight=False, width=None if tty else UNWRAPPED_WIDTH,
                   soft_wrap=not tty)


def _say(*parts: Any, stderr: bool = False) -> None:
    """One line of text or (text, style) parts."""
    _console(stderr).print(Text.assemble(*parts))


def _note(message: str) -> None:
    """Progress for people: stderr."""
    _say(message, stderr=True)


def _warn(message: str, label: str = "warning") -> None:
    _say((f"{label}: ", "yellow"), message, stderr=True)


def _heading(title: str) -> None:
    console = _console()
    if console.is_terminal:
        console.rule(Text(title, style="bold"))
    else:
        console.print(f"== {title} ==")


def _json_text(obj: Any) -> str:
    """The one JSON style of every `--json` and `--out`: indented, NaN as null."""
    from scaler.fitting.inputs import json_safe

    return json.dumps(json_safe(obj), indent=1)


def _print_json(obj: Any) -> None:
    """`--json`: the JSON and nothing else on stdout."""
    print(_json_text(obj))


def _progress(*columns: Any) -> Progress:
    """Progress bars on stderr; on a stream that is not a terminal they leave nothing behind (an
    error is then the only line a failed command prints)."""
    console = _console(stderr=True)
    return Progress(*columns, console=console, transient=not console.is_terminal)


@contextlib.contextmanager
def _user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Bad input (ConfigError, StoreError, or the other kinds named) becomes one line `error: ...`
    on stderr and exit code 2; a library's parameter names become this command's flags (`_flag`)."""
    try:
        yield
    except (ConfigError, StoreError, *kinds) as err:
        text = err.render({p: _flag(p) for p in err.parameters}) if isinstance(err, ParameterError) else str(err)
        _say(("error: ", "red"), " ".join(text.split()), stderr=True)  # one line, whatever a library wrote
        raise typer.Exit(2) from None


FLAGS = {"n_bootstrap": "--bootstrap", "drop_top": "--drop-top-loss", "groups": "--group COL or --tier T",
         "n_sims": "--sims", "noise_sd": "--noise"}  # a library parameter -> the flag that sets it, where not --<name>


def _flag(parameter: str) -> str:
    """The flag that sets a library parameter: FLAGS's, else --<parameter> with dashes."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


TRACKER_HELP = "also log every metrics row to this tracker: tensorboard | wandb | jsonl (repeat for several)"


def _trackers(configured: list[str], names: list[str]) -> list[str]:
    """The configured trackers ([train] trackers) and the --tracker values, checked (scaler/train/trackers.py)."""
    from scaler.train.trackers import TRACKERS

    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"--tracker {name}: expected one of {', '.join(TRACKERS)}")
    return list(dict.fromkeys([*configured, *names]))


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.1f}"


class _Bars:
    """One rich progress bar per named long step."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.progress.add_task(what, total=total)
        self.progress.update(self.tasks[what], completed=done, total=total)


def _build_with_progress(build_spec, out_dir: Path, force: bool = False, rebuild_hint: str = "--force rebuilds it",
                         heldout_fraction: float | None = None) -> dict[str, Any]:
    from scaler.sweep.data_build import build_data

    columns = (TextColumn("{task.description:<24}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with _progress(*columns) as bar:
        report = build_data(build_spec, out_dir, force=force, progress=_Bars(bar), heldout_fraction=heldout_fraction)
    if report.get("skipped"):
        _note(f"{out_dir}: build {report['build_id']} is up to date ({rebuild_hint})")
    else:
        _note(f"built {report['build_id']} into {out_dir}: {_mb(report['bytes_read'])} MB in "
              f"{report['seconds']:.1f} s ({report['mb_per_s']:.2f} MB/s)")
    for note in report.get("notes", []):
        _warn(note, "note")
    return report


def _train(spec, runs, engine, runner: str, workers: int, stack_size, max_runs: int | None) -> None:
    """`workflow.to_train` and `train_sweep` with progress bars; exits 1 when a run failed, 2 when
    the store cannot be written, 130 on Ctrl-C (the current run is back to pending)."""
    todo, n_done = workflow.to_train(spec, runs, max_runs, warn=lambda m: _warn(m, "corrupt"))
    _note(f"sweep {spec.name}: {len(runs)} runs, {n_done} done, {len(todo)} to run now ({runner}); "
          f"store {spec.store_root}")
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    names = {r.run_id: r.config.name for r in todo}
    result = workflow.SweepOutcome()
    try:
        if todo:
            with _user_errors(ValueError, ConnectionError), _progress(*columns) as bar:
                sweep_task = bar.add_task("runs", total=len(todo), info="")
                run_task = bar.add_task("current run", total=None, info="")

                def on_step(row: dict[str, Any]) -> None:
                    bar.update(run_task, description=names.get(row["run_id"], row["run_id"])[-48:],
                               completed=row["step"], total=row["steps"],
                               info=f"loss {row['train_loss']:.3f}  {row['tokens_per_s']:,.0f} tok/s")

                def on_outcome(outcome: dict[str, Any]) -> None:
                    bar.advance(sweep_task)
                    bar.update(sweep_task, info=f"last: {outcome['run_id']} {outcome['state']}")

                result = workflow.train_sweep(spec, todo, engine, runner, workers, stack_size, note=_note,
                                              on_step=on_step, on_outcome=on_outcome)
    except KeyboardInterrupt:
        _warn("the current run is back to pending; run the same command to resume", "interrupted")
        raise typer.Exit(130) from None
    counts = result.counts()
    _say("outcomes: " + (", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "nothing to run"))
    for outcome in result.failed():
        _say(("failed ", "red"), f"{outcome['run_id']}: {outcome['error']}")
    if result.store_errors():  # the store cannot be written (full disk, read-only): the runs were not the problem
        _say(("error: ", "red"), f"the store cannot be written: {result.store_errors()[0]}", stderr=True)
        raise typer.Exit(2)
    if counts.get("failed"):
        raise typer.Exit(1)


def _interval_text(lo_hi: Any, fmt: str = ".4g") -> str:
    if not lo_hi or None in lo_hi:
        return ""
    return f" [{lo_hi[0]:{fmt}}, {lo_hi[1]:{fmt}}]"


def _print_excluded(excluded: dict[str, list[str]] | None) -> None:
    """Runs that are not in the fit, by state and id: never dropped without a word."""
    for state, ids in (excluded or {}).items():
        if ids:
            shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
            runs = f"{len(ids)} run{'s' if len(ids) != 1 else ''}"
            what = (f"{runs} of the store outside the sweep (another data build or spec version)"
                    if state == "outside the sweep" else f"{len(ids)} {state} run{'s' if len(ids) != 1 else ''}")
            _warn(f"{what} not in the fit: {shown}", "left out")


def _print_fit(out: dict[str, Any]) -> None:
    from scaler.fitting.choose import CANDIDATE_COLUMNS, candidate_rows
    from scaler.fitting.predict import error_model_text

    console = _console()
    table = Table("parameter", "value", "95% interval",
                  title=f"{out['law']} fit of {out['source']} ({out['n_points']} points)")
    intervals = out.get("intervals", {})
    for name, value in {**out.get("params", {}), **out.get("derived", {})}.items():
        lo_hi = intervals.get(name)
        shown = "-" if value is None else f"{value:.5g}"
        table.add_row(name, shown, f"[{lo_hi[0]:.5g}, {lo_hi[1]:.5g}]" if lo_hi and None not in lo_hi else "-")
    console.print(table)
    if out.get("spec", {}).get("reference"):
        console.print(f"reference tier (kappa = 1): {out['spec']['reference']}")
    console.print(f"objective {out['objective']:.6g} ({out.get('objective_text', 'sum of Huber on log losses')}); "
                  f"converged: {out['converged']} ({out.get('stopped', '')}, gradient norm "
                  f"{out.get('grad_norm') if out.get('grad_norm') is not None else float('nan'):.2g})")
    if out.get("flat_directions"):
        _say(("not identified: ", "yellow"), "; ".join(out["flat_directions"]))
    for row in out.get("allocations", []):
        console.print(f"at C = {row['flops']:.3g} FLOPs ({row.get('convention', '6ND')}, {row.get('multiple', 1):g}x the "
                      f"largest run): N_opt = {row['n_opt']:.4g}{_interval_text(row.get('n_opt_interval'))}, "
                      f"D_opt = {row['d_opt']:.4g}{_interval_text(row.get('d_opt_interval'))}")
    model = out.get("error_model")
    if model:
        intervals = error_model_text(model)  # a result line (stdout), like the fit above it
        console.print(f"prediction intervals: {intervals}")
    noise = out.get("seed_noise")
    if noise:
        console.print(f"seed noise: {noise['sd_nats']:.4f} nats ({100 * noise['sd_log']:.2f}%), the spread of "
                      f"{noise['n_runs']} runs of {noise['n_configs']} configurations trained more than once")
    if out.get("candidates"):
        table = Table(*CANDIDATE_COLUMNS, title=f"candidate laws (--law auto, horizon {out.get('horizon', 10):g}x)")
        for row in candidate_rows(out["candidates"], out["law"]):
            table.add_row(*row)
        console.print(table)
        console.print(f"chosen: {out.get('chosen_by', '')}")
    _print_compute(out.get("compute"))
    _print_excluded(out.get("excluded"))


def _print_compute(compute: dict[str, Any] | None) -> None:
    """A warning when the FLOPs per token of new sizes come from a family the runs do not all follow."""
    if compute and compute.get("family") and not compute.get("family_exact", True):
        family = compute["family"]
        _warn(f"the runs' shapes are not all from one model family: FLOPs per token of other sizes follow the "
              f"nearest ({family['aspect_ratio']} wide per layer, head width {family['head_dim']}), under "
              f"{compute['convention']}", "compute")


def _print_sweep_fit(out: dict[str, Any]) -> None:
    _print_compute(out.get("compute"))
    _print_excluded(out.get("excluded"))
    for label, entry in out["groups"].items():
        _heading(label)
        if "error" in entry["parametric"]:
            _say(("parametric fit: ", "red"), entry["parametric"]["error"])
        else:
            _print_fit({**entry["parametric"], "excluded": None, "compute": None})
        iso = entry["isoflop"]
        if "error" in iso:
            _say(("IsoFLOP approach 2: ", "yellow"), iso["error"])
        else:
            (a_lo, a_hi), (b_lo, b_hi) = iso["a_interval"], iso["b_interval"]
            exponents = entry["parametric"].get("allocation_exponents")
            parametric = (f"; parametric ({exponents['convention']}): N_opt ~ C^{exponents['a']:.3f}"
                          f"{_interval_text(exponents.get('a_interval'), '.3f')}" if exponents else "")
            _say(f"IsoFLOP approach 2 ({iso['n_good']} budgets): N_opt ~ C^{iso['a']:.3f} [{a_lo:.3f}, {a_hi:.3f}], "
                 f"D_opt ~ C^{iso['b']:.3f} [{b_lo:.3f}, {b_hi:.3f}]{parametric}")
            for flagged in iso.get("flagged", []):
                _say(("  budget not fitted: ", "yellow"), f"{flagged:.3g}" if isinstance(flagged, float) else str(flagged))
        backtest = entry["backtest"]
        _say(f"backtest: {backtest.get('verdict', backtest.get('error'))}")
    if "quality" in out:
        _heading("quality law (all tiers)")
        if "error" in out["quality"]:
            _say(("quality fit: ", "red"), out["quality"]["error"])
        else:
            _print_fit({**out["quality"], "excluded": None, "compute": None})
    if "repetition" in out:
        _print_repetition(out["repetition"])


def _print_repetition(rep: dict[str, Any]) -> None:
    """The per-tier R_D* test (scaler/fitting/repetition.py): both fits' values and the verdict."""
    per_tier = ", ".join(f"{t} {r:.3g}" for t, r in rep.get("per_tier", {}).items())
    _say(f"repetition R_D* (least squares): shared {rep['shared']['R_D_star']:.3g}"
         + (f"; per tier {per_tier}" if per_tier else ""))
    _say(rep["note"])


def _objective(name: str | None, delta: float | None, asymmetry: float | None, base: Any = None):
    from scaler.fitting.pipeline import Objective

    default = base or Objective()
    return Objective(name or default.name, default.delta if delta is None else delta,
                     default.asymmetry if asymmetry is None else asymmetry)


def _sweep_fit(spec, n_bootstrap: int | None = None, *, objective: str | None = None, delta: float | None = None,
               asymmetry: float | None = None, **overrides: Any) -> dict[str, Any]:
    """`workflow.sweep_fit` with the --objective, --delta and --asymmetry flags over the spec's [fit]."""
    from scaler.fitting.pipeline import Objective

    s = spec.fit
    goal = _objective(objective, delta, asymmetry, Objective(s.objective, s.delta, s.asymmetry))
    return workflow.sweep_fit(spec, n_bootstrap, objective=goal, **overrides)


EVAL_SET_HELP = ("SPEC: the eval set whose loss the law predicts (default: the spec's fit.eval_set; "
                 "humaneval_solution: the code task)")


def _eval_set(spec, name: str | None) -> str | None:
    """--eval-set, checked against the sweep's data.eval_sets (its runs record only those)."""
    if name is not None and name not in spec.data.eval_sets:
        raise ConfigError(f"--eval-set {name!r}: the sweep's runs record only data.eval_sets {spec.data.eval_sets}")
    return name


def _no_eval_set_with_fit(name: str | None) -> None:
    if name is not None:
        raise ConfigError("--eval-set needs a sweep spec; a --fit JSON was fitted on one eval set already")


TASK_TABLE_HELP = ("a CSV of (task loss, pass@k) pairs you measured (e.g. checkpoints' HumanEval solution bits per "
                   "byte and pass@1): fits the OLMo ladder's sigmoid and maps predicted losses to pass@k")


def _task_curve(table: Path | None, loss_col: str, metric_col: str, unit: str):
    """The loss -> pass@k sigmoid of --task-table (scaler.fitting.task), or None without one."""
    if table is None:
        return None
    from scaler.fitting.task import fit_task_curve

    if unit not in ("bpb", "nats"):
        raise ConfigError(f"--task-loss-unit {unit!r}: expected bpb (bits per byte) or nats (per token)")
    return fit_task_curve(_table_column(table, loss_col, "--task-loss"), _table_column(table, metric_col, "--pass-at-k"),
                          loss_unit=unit, metric=metric_col, source=str(table))


def _task_loss(curve, fit_json: dict[str, Any], nats: float) -> float:
    """A predicted loss (nats per token) in the curve's unit: bits per byte through the fit's
    bits_per_nat (recorded by a fit of a store's runs)."""
    if curve.loss_unit == "nats":
        return nats
    ratio = fit_json.get("bits_per_nat")
    if not ratio:
        raise ConfigError("--task-table: the fit does not record its eval set's bytes per token (a fit of a table); "
                          "give the table's losses in nats per token with --task-loss-unit nats")
    return nats * float(ratio)


def _table_column(path: Path, name: str, option: str) -> list[Any]:
    import polars as pl

    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except Exception as err:  # noqa: BLE001 - polars raises several kinds for a bad file
        raise ConfigError(f"{path}: not a readable CSV: {err}") from None
    if name not in frame.columns:
        raise ConfigError(f"{path}: {option} {name!r}: no such column (columns: {', '.join(frame.columns)})")
    return frame[name].to_list()


def _read_fit_json(path: Path) -> dict[str, Any]:
    from scaler.fitting.result import PredictError, SweepFit

    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a readable fit JSON ({err})") from None
    try:
        return dict(SweepFit.from_json(raw).raw)
    except PredictError as err:
        raise ConfigError(f"{path}: {err}") from None


def _advance(spec, budget_hours: float | None, reach: list[float], pairs: int, target_flops: float | None,
             runner: str = "local", workers: int = 2) -> dict[str, Any]:
    """One advance step of `spec` (`workflow.advance`), its runs trained with `runner` under the CLI's bars."""
    from scaler.sweep.engines import make_runner

    engine = make_runner(runner, workers=workers, resources=spec.resources.model_dump())
    return workflow.advance(spec, lambda runs: _train(spec, runs, engine, runner, workers, 1, None), reach=reach,
                            pairs=pairs, budget_hours=budget_hours, target_flops=target_flops, runner=runner,
                            workers=workers, progress=_note)
