"""The sweep report: `render_report(store, fit_json, ...)` (a store's runs and curves already read,
`StoreRuns`, or None) and `build_report_from_fit(fit_json, out_dir, title)` (a fit JSON alone), both
in `scaler.report.render`. `scaler.session.build_report` reads a store and calls `render_report`.

The modules, one idea each: `frames` (runs frames, fitted laws, predictions, allocations and the
other arrays the report shows; no matplotlib), `figures` (the nine figures, drawn from frames),
`text` (numbers, blocks, the Markdown and HTML writers), `answer` (the recommendation and the
advance steps), `sections` (runs, error model, data build, caveats), `parameters` (the fitted
parameters' tables), `render` (the figures and sections assembled, both documents written).
Loaded on first use (matplotlib). Details: docs/design.md §5.9 (the report).
"""

from __future__ import annotations

from typing import Any

__all__ = ["StoreRuns", "render_report", "build_report_from_fit"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from scaler.report import render

        return getattr(render, name)
    raise AttributeError(f"module 'scaler.report' has no attribute {name!r}")
