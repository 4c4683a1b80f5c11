"""The sweep report: `render_report(store, fit_json, ...)` (a store's runs and curves already read,
`StoreRuns`, or None) and `build_report_from_fit(fit_json, out_dir, title)` (a fit JSON alone), both
in `scaler.report.render`; the figures in `scaler.report.figures`. `scaler.session.build_report`
reads a store and calls `render_report`. Loaded on first use (matplotlib)."""

from __future__ import annotations

from typing import Any

__all__ = ["StoreRuns", "render_report", "build_report_from_fit"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from scaler.report import render

        return getattr(render, name)
    raise AttributeError(f"module 'scaler.report' has no attribute {name!r}")
