"""`scaler mix`: the recommended data mixture for a budget, from a mixture sweep or a table of runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from scaler import workflow
from scaler.cli.common import _note, _print_json, _say, _user_errors, _warn
from scaler.cli.main import app
from scaler.config import ConfigError
from scaler.fitting.predict import EXTRAPOLATION_REFUSE, EXTRAPOLATION_WARN

LAW_CHOICES = ("auto", "ye", "regmix", "quality")


def _pairs(values: list[str] | None, option: str, expected: str) -> dict[str, str]:
    """`--weight raw=w_raw --weight clean=w_clean` as {tier: text}; a malformed pair is a ConfigError."""
    out: dict[str, str] = {}
    for pair in values or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{option} {pair!r}: expected {expected}")
        if name.strip() in out:
            raise ConfigError(f"{option} {pair!r}: tier {name.strip()!r} given twice")
        out[name.strip()] = value.strip()
    return out


def _numbers(values: list[str] | None, option: str, expected: str, none_ok: bool = False) -> dict[str, float | None]:
    """`--pool raw=4e7` or `--epoch-cap clean=none` as {tier: number (None for 'none' where allowed)}."""
    out: dict[str, float | None] = {}
    for tier, text in _pairs(values, option, expected).items():
        if none_ok and text.lower() == "none":
            out[tier] = None
            continue
        try:
            out[tier] = float(text)
        except ValueError:
            raise ConfigError(f"{option} {tier}={text}: expected {expected}") from None
    return out


def _table_runs(table: Path, n: str | None, d: str | None, loss: str | None, weights: list[str] | None,
                pools: list[str] | None):
    from scaler.fitting.mixture import load_mixture_table

    missing = [flag for flag, value in (("--n", n), ("--d", d), ("--loss", loss)) if not value]
    if missing:
        raise ConfigError(f"--table {table}: also give {', '.join(missing)} (the columns of N, D and the loss)")
    weight = _pairs(weights, "--weight", "TIER=COLUMN")
    pool = _numbers(pools, "--pool", "TIER=TOKENS (a positive number)")
    return load_mixture_table(table, n=n, d=d, loss=loss, weight=weight, pool=pool), None  # type: ignore[arg-type]


def _sweep_runs(spec_file: Path):
    """The sweep's finished runs, each tier's pool as the sweep reads it, and the spec's reference tier."""
    from scaler.fitting.mixture import with_pools
    from scaler.session import from_store
    from scaler.sweep.spec import load_sweep_spec

    spec = load_sweep_spec(spec_file)
    data = from_store(spec.store_root, spec.fit.eval_set, run_ids=workflow.sweep_run_ids(spec))
    if spec.data.dir is not None:
        data = with_pools(data, workflow.tier_pools(spec))
    return data, spec.fit.reference


@app.command()
def mix(
    spec_file: Annotated[Path | None, typer.Argument(help="a mixture sweep spec whose runs are done (or give --table)")] = None,
    table: Annotated[Path | None, typer.Option("--table", help="a CSV of runs trained anywhere (C = 6ND)")] = None,
    n: Annotated[str | None, typer.Option("--n", help="--table: the column of parameters N")] = None,
    d: Annotated[str | None, typer.Option("--d", help="--table: the column of training tokens D")] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="--table: the column of the final loss (nats)")] = None,
    weights: Annotated[list[str] | None, typer.Option("--weight", help="--table: TIER=COLUMN, a tier's mix weight (repeatable; the weights sum to 1)")] = None,
    pools: Annotated[list[str] | None, typer.Option("--pool", help="--table: TIER=TOKENS, a tier's pool of unique tokens (repeatable)")] = None,
    budget: Annotated[float, typer.Option(help="the budget in FLOPs, under the runs' convention (6ND for a table)")] = ...,
    epoch_caps: Annotated[list[str] | None, typer.Option("--epoch-cap", help="TIER=EPOCHS or TIER=none: the most epochs of a tier's pool the run may read (repeatable; default 4)")] = None,
    law: Annotated[str, typer.Option(help="auto (chosen by held-out error over mixes) | ye | regmix | quality")] = "auto",
    folds: Annotated[int, typer.Option(help="cross-validation folds over distinct mixes")] = 5,
    bootstrap: Annotated[int, typer.Option(help="cluster-bootstrap refits for the intervals (a cluster: one mix)")] = 200,
    seed: Annotated[int, typer.Option(help="seed of the folds, the bootstrap and the run-noise draws")] = 0,
    force: Annotated[bool, typer.Option(help=f"answer even beyond {EXTRAPOLATION_REFUSE:g}x the largest fitted run")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the recommendation as JSON only")] = False,
) -> None:
    """For a budget: the mix of tiers and the model size that minimise the fitted mixture law's
    loss (each tier's epochs capped and charged by repetition), its interval, the probability it
    beats the best single tier, and the next mixes worth running."""
    from scaler.decision.mixture import recommend_mixture

    with _user_errors(ValueError):
        if (spec_file is None) == (table is None):
            raise ConfigError("give a mixture sweep spec, or --table CSV with --n, --d, --loss, --weight and --pool")
        if law not in LAW_CHOICES:
            raise ConfigError(f"--law {law}: expected one of {', '.join(LAW_CHOICES)}")
        if not (math.isfinite(budget) and budget > 0):
            raise ConfigError(f"--budget {budget}: expected a positive number of FLOPs")
        caps = _numbers(epoch_caps, "--epoch-cap", "TIER=EPOCHS (a positive number) or TIER=none", none_ok=True)
        data, reference = _sweep_runs(spec_file) if spec_file is not None else _table_runs(table, n, d, loss, weights, pools)  # type: ignore[arg-type]
        result = recommend_mixture(data, budget, epoch_cap=caps, n_bootstrap=bootstrap, seed=seed, folds=folds,
                                   reference=reference, laws=None if law == "auto" else (law,), force=force,
                                   progress=_note)
    if result.extrapolation > EXTRAPOLATION_WARN:
        _warn(f"the budget is {result.extrapolation:.3g}x the largest fitted run: the answer extrapolates far beyond "
              "the evidence", "extrapolation")
    if json_out:
        _print_json(result.to_json())
        return
    for line in result.lines():
        _say(line)
