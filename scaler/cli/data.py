"""`scaler data build` and `scaler data inspect`: cleaned, tokenized tiers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from scaler.cli.common import _build_with_progress, _console, _mb, _user_errors
from scaler.cli.main import data_app
from scaler.config import ConfigError


@data_app.command("build")
def data_build(
    spec: Annotated[Path | None, typer.Argument(help="a TOML file with a [data.build] table (a sweep spec)")] = None,
    source: Annotated[list[str] | None, typer.Option(help="stdlib, site-packages, dir:PATH, jsonl:PATH, parquet:PATH")] = None,
    tiers: Annotated[str | None, typer.Option(help="comma-separated tiers to build (and those they build on)")] = None,
    tokenizer: Annotated[list[str] | None, typer.Option(help="bytes or bpe-N (repeatable)")] = None,
    heldout_fraction: Annotated[float | None, typer.Option(help="share of the bytes held out for evaluation (default 0.05)")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: the spec's data.dir)")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even if an identical build is there")] = False,
) -> None:
    """Read sources, clean them into tiers, tokenize, and write shards, eval sets and a report."""
    from scaler.data.build import BuildSpec, load_build_spec, parse_build_spec

    with _user_errors(FileNotFoundError):
        build_spec, spec_dir = load_build_spec(spec) if spec else (BuildSpec(), None)
        overrides = {"sources": source, "tokenizers": tokenizer}
        raw = {**build_spec.model_dump(), **{k: v for k, v in overrides.items() if v}}
        build_spec = parse_build_spec(raw, "command line")
        if tiers:
            build_spec = build_spec.select([t.strip() for t in tiers.split(",") if t.strip()])
        out_dir = out or (Path(spec_dir) if spec_dir else None)
        if out_dir is None:
            raise ConfigError("--out: name the output folder (or set data.dir in the spec)")
        report = _build_with_progress(build_spec, out_dir, force, heldout_fraction=heldout_fraction)
    _print_tiers(report)


def _print_tiers(report: dict[str, Any]) -> None:
    tokenizers = list(report["tokenizers"])
    table = Table("tier", "built from", "docs", "MB", "yield", *[f"{t} tokens" for t in tokenizers],
                  title="tiers (training split; yield = share of raw tokens)")
    for name, tier in report["tiers"].items():
        own = tier["steps"][len(report["tiers"][tier["base"]]["steps"]):] if tier["base"] else tier["steps"]
        built_from = " + ".join(([tier["base"]] if tier["base"] else []) + own) or "sources"
        label = Text.assemble(name, (" (synthetic)", "yellow")) if tier["synthetic"] else name
        tokens = [f"{tier[f'{t}_train_tokens']:,}" for t in tokenizers]
        yield_ = tier[f"{tokenizers[0]}_yield"] if tokenizers else tier["yield_bytes"]
        table.add_row(label, built_from, f"{tier['train_documents']:,}", _mb(tier["train_bytes"]), f"{yield_:.1%}",
                      *tokens)
    _console().print(table)


@data_app.command("inspect")
def data_inspect(
    data_dir: Annotated[Path, typer.Argument(help="a folder written by `scaler data build`")],
    examples: Annotated[int, typer.Option(help="removed examples shown per reason")] = 2,
) -> None:
    """Print a build's report: sources, steps with removal reasons and costs, tiers, examples."""
    from scaler.data.folder import read_report

    with _user_errors():
        report = read_report(data_dir).model_dump(mode="json")
    console = _console()
    sources = Table("source", "status", "files", "MB", title=f"build {report['build_id']}: sources")
    for name, statuses in report["sources"].items():
        for status, entry in statuses.items():
            sources.add_row(name, status, f"{entry['files']:,}", _mb(entry["bytes"]))
    console.print(sources)
    steps = Table("tier", "step", "docs in → out", "MB removed", "seconds", "FLOPs", title="cleaning steps")
    reasons = Table("step", "reason", "docs", "MB", title="removal reasons")
    for step in report["steps"]:
        steps.add_row(step["tier"], step["step"], f"{step['documents_in']:,} → {step['documents_out']:,}",
                      _mb(step["bytes_in"] - step["bytes_out"]), f"{step['seconds']:.1f}",
                      f"{step['flops']:.3g}" if step["flops"] else "-")
        for reason, entry in step["removed"].items():
            reasons.add_row(step["step"], reason, f"{entry['documents']:,}", _mb(entry["bytes"]))
    console.print(steps)
    console.print(reasons)
    _print_tiers(report)
    for step in report["steps"]:
        for reason, cases in step["examples"].items():
            for case in cases[:examples]:
                console.print(Text.assemble((step["step"], "bold"), f" {reason}: {case['path']} ({case['detail']})"))
                snippet = case["snippet"].replace("\n", " | ")[:160]
                console.print(f"    {snippet}", soft_wrap=False, overflow="ellipsis")
