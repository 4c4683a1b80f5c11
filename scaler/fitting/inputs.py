"""Fit inputs: runs from a sweep's store or from any CSV, checked before anything is fitted.

A `FitData` holds one row per run: N (parameters), D (training tokens), C (training FLOPs, in
the convention `compute` names: flops_v1 for a store's runs, 6ND for a table), loss (nats), and
where known U (unique tokens), a group label (tier, mix, ...) and per-tier mix weights `w_<tier>`.
Runs with the same configuration (equal N, D, group and columns; they differ only in seed) share a
`clusters` label: they are repeated measurements, resampled together by the bootstrap. Runs that
were not used (diverged, failed, unfinished) are listed in `excluded`, never dropped silently.
Bad input is an error that says what is wrong and where: a missing column, too few points, a
single model size, non-positive losses, NaN rows (dropped only on request, and then counted).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scaler.config import ModelShape, mix_label
from scaler.errors import ParameterError
from scaler.fitting.compute import FLOPS_V1, SIX_ND, Compute, family_of_shapes

MIN_POINTS = 6  # five parameters and one more


class FitDataError(ParameterError):
    """Input that cannot be fitted; the message names the file and column (a column argument as
    a `{parameter}` field: `ParameterError`)."""


@dataclass
class FitData:
    source: str
    columns: dict[str, np.ndarray]  # "N", "D", optional "U", "C", "w_<tier>", "U_<tier>"
    loss: np.ndarray
    groups: np.ndarray | None = None  # a label per row (tier, mix, ...)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows dropped
    run_ids: np.ndarray | None = None  # the store's run id per row (None for a table)
    clusters: np.ndarray | None = None  # a label per row; rows sharing one differ only in seed
    compute: Compute = field(default_factory=Compute)  # the convention of C (6ND unless told)
    excluded: dict[str, list[str]] = field(default_factory=dict)  # state -> run ids not fitted
    bits_per_nat: float | None = None  # bits per byte of the eval set per nat of its loss (None: unknown, a table)

    @property
    def n_points(self) -> int:
        return len(self.loss)

    def frame(self) -> pl.DataFrame:
        data = {**self.columns, "loss": self.loss}
        if self.groups is not None:
            data["group"] = self.groups
        return pl.DataFrame(data)

    def to_json(self) -> dict[str, Any]:
        """The fitted rows, column-wise (fit.json keeps them: reports and predictions against
        observations need no store)."""
        out: dict[str, Any] = {k: v.tolist() for k, v in self.columns.items()}
        out["loss"] = self.loss.tolist()
        for name, values in (("group", self.groups), ("run_id", self.run_ids), ("cluster", self.clusters)):
            if values is not None:
                out[name] = [str(v) for v in values.tolist()]
        return out

    def subset(self, mask: np.ndarray) -> FitData:
        take = lambda x: None if x is None else x[mask]  # noqa: E731
        return FitData(self.source, {k: v[mask] for k, v in self.columns.items()}, self.loss[mask],
                       take(self.groups), dict(self.dropped), take(self.run_ids), take(self.clusters),
                       self.compute, dict(self.excluded), self.bits_per_nat)


def json_safe(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, recursively (for fit.json)."""
    if isinstance(x, Mapping):  # a dict, or a fit result (`scaler.fitting.result`: a mapping over its JSON)
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, np.floating | float):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _column(frame: pl.DataFrame, name: str, option: str, source: str) -> np.ndarray:
    if name not in frame.columns:
        raise FitDataError(f"{source}: {{{option}}} {name!r}: no such column (columns: {frame.columns})", option)
    try:
        return frame[name].cast(pl.Float64).to_numpy()
    except pl.exceptions.InvalidOperationError:
        raise FitDataError(f"{source}: {{{option}}} {name!r}: not numeric", option) from None


def check(data: FitData, drop_nan: bool = False) -> FitData:
    """Refuse what cannot be fitted; drop NaN rows only when asked (and count them)."""
    values = np.column_stack([data.loss, *data.columns.values()])
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        if not drop_nan:
            rows = np.flatnonzero(bad)[:5].tolist()
            raise FitDataError(f"{data.source}: {int(bad.sum())} rows have NaN or infinite values (rows {rows}...); "
                               "pass {drop_nan} to drop them", "drop_nan")
        data = data.subset(~bad)
        data.dropped["nan"] = int(bad.sum())
    if (data.loss <= 0).any():
        raise FitDataError(f"{data.source}: losses must be positive (found {int((data.loss <= 0).sum())} <= 0)")
    for name in ("N", "D", "U"):
        if name in data.columns and (data.columns[name] <= 0).any():
            raise FitDataError(f"{data.source}: {name} must be positive in every row")
    if data.n_points < MIN_POINTS:
        raise FitDataError(f"{data.source}: {data.n_points} points; a fit needs at least {MIN_POINTS}")
    if len(np.unique(data.columns["N"])) < 2:
        raise FitDataError(f"{data.source}: a single model size; N and D cannot be told apart")
    return data


def drop_top_loss(data: FitData, k: int) -> FitData:
    """Drop the k highest-loss rows (Epoch's Chinchilla refit drops 5)."""
    if k < 0:
        raise FitDataError(f"{data.source}: {{drop_top}} {k}: expected 0 or more rows", "drop_top")
    if k >= data.n_points:
        raise FitDataError(f"{data.source}: {{drop_top}} {k}: the table has only {data.n_points} rows", "drop_top")
    if k == 0:
        return data
    keep = np.ones(data.n_points, bool)
    keep[np.argsort(data.loss)[-k:]] = False
    out = data.subset(keep)
    out.dropped["top_loss"] = k
    return out


def repeat_clusters(data: FitData) -> np.ndarray:
    """A label per row, shared by rows whose every column (N, D, U, mix weights, pools) and group are
    equal: the same configuration, differing only in seed (or not at all). Labels rank the
    configurations by their values, so they do not depend on the rows' order (a store lists its
    runs by id, and ids change with a data build)."""
    keys = [data.columns[k] for k in sorted(data.columns) if k != "C"]
    groups = data.groups if data.groups is not None else np.full(data.n_points, "")
    rows = [tuple(row) for row in zip(*(np.round(k, 9).tolist() for k in keys), groups.tolist(), strict=True)]
    rank = {row: i for i, row in enumerate(sorted(set(rows), key=repr))}
    return np.array([f"c{rank[row]:06d}" for row in rows])


def with_clusters(data: FitData) -> FitData:
    data.clusters = repeat_clusters(data)
    return data


def load_table(
    path: str | Path,
    n: str,
    loss: str,
    d: str | None = None,
    flops: str | None = None,
    unique: str | None = None,
    group: str | None = None,
    drop_top: int = 0,
    drop_nan: bool = False,
) -> FitData:
    """Runs exported from anywhere, under the 6ND convention: with `flops` and no `d`, D = C / (6 N);
    C = 6 N D in every row (a table's own FLOPs column only derives D)."""
    path = Path(path)
    if not path.exists():
        raise FitDataError(f"{path}: file not found")
    if path.is_dir():
        raise FitDataError(f"{path}: a folder; expected a CSV file")
    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except Exception as err:  # noqa: BLE001 - polars raises several kinds for a bad file
        raise FitDataError(f"{path}: not a readable CSV: {err}") from None
    source = str(path)
    if d is None and flops is None:
        raise FitDataError(f"{source}: give {{d}} COL, or {{flops}} COL to derive D = C / (6 N)", "d", "flops")
    columns = {"N": _column(frame, n, "n", source)}
    if flops:
        columns["C"] = _column(frame, flops, "flops", source)
    with np.errstate(all="ignore"):  # a zero, inf x 0 or an overflow gives NaN or inf: refused by check()
        columns["D"] = _column(frame, d, "d", source) if d else columns["C"] / (6 * columns["N"])
        columns["C"] = 6 * columns["N"] * columns["D"]  # the table's convention is 6ND, named in the fit
    if unique:
        columns["U"] = _column(frame, unique, "unique", source)
    if group and group not in frame.columns:
        raise FitDataError(f"{source}: {{group}} {group!r}: no such column (columns: {frame.columns})", "group")
    groups = frame[group].cast(pl.Utf8).to_numpy() if group else None
    data = FitData(source, columns, _column(frame, loss, "loss", source), groups, compute=Compute(SIX_ND))
    return with_clusters(drop_top_loss(check(data, drop_nan), drop_top))


def from_runs(runs: pl.DataFrame, store_root: str, eval_set: str = "heldout", drop_nan: bool = False,
              run_ids: Collection[str] | None = None) -> FitData:
    """The finished runs of a store's runs table (`scaler.store.load_runs`; `store_root` names it in
    messages): N = n_params, D = tokens, C = flops (flops_v1), the final loss on `eval_set`, the mix
    as group and `w_<tier>` weights, and per-tier pools `U_<tier>`. `run_ids` (a sweep's runs, e.g.
    its current expansion) keeps only those: runs of an earlier data build or spec that share the
    store are listed in `excluded` as "outside the sweep". `scaler.session.from_store` reads the store."""
    if runs.is_empty():
        raise FitDataError(f"{store_root}: no runs in the store")
    excluded: dict[str, list[str]] = {}
    if run_ids is not None:
        inside = pl.col("run_id").is_in(list(run_ids))
        outside = sorted(runs.filter(~inside)["run_id"].to_list())
        runs = runs.filter(inside)
        if outside:
            excluded["outside the sweep"] = outside
        if runs.is_empty():
            raise FitDataError(f"{store_root}: none of the sweep's runs is in the store")
    excluded.update({state: sorted(runs.filter(pl.col("state") == state)["run_id"].to_list())
                     for state in sorted(set(runs["state"].to_list()) - {"done"})})
    runs = runs.filter(pl.col("state") == "done")
    if runs.is_empty():
        counts = ", ".join(f"{len(ids)} {state}" for state, ids in excluded.items())
        raise FitDataError(f"{store_root}: no finished run to fit ({counts})")
    loss_col = f"final_eval_{eval_set}_loss"
    if loss_col not in runs.columns:
        raise FitDataError(f"{store_root}: no finished run has an eval set {eval_set!r}")
    tiers = sorted(c.removeprefix("data_mix_") for c in runs.columns if c.startswith("data_mix_"))
    columns = {
        "N": runs["n_params"].cast(pl.Float64).to_numpy(),
        "D": runs["train_tokens"].cast(pl.Float64).to_numpy(),
        "C": runs["flops"].cast(pl.Float64).to_numpy(),
    }
    for tier in tiers:
        columns[f"w_{tier}"] = runs[f"data_mix_{tier}"].fill_null(0.0).cast(pl.Float64).to_numpy()
        pool = runs[f"unique_tokens_{tier}"] if f"unique_tokens_{tier}" in runs.columns else None
        if pool is not None and pool.drop_nulls().len():  # a tier's pool; runs without the tier share its size
            columns[f"U_{tier}"] = pool.fill_null(pool.max()).cast(pl.Float64).to_numpy()
    if "unique_tokens" in runs.columns:
        columns["U"] = runs["unique_tokens"].cast(pl.Float64).to_numpy()
    labels = [mix_label(dict(zip(tiers, row, strict=True))) for row in zip(*(columns[f"w_{t}"] for t in tiers), strict=True)
              ] if tiers else ["stdlib"] * len(runs)
    compute = _store_compute(runs)
    if compute.convention == SIX_ND:  # no shapes to count attention with: every figure under 6ND, C included
        columns["C"] = 6.0 * columns["N"] * columns["D"]
    data = FitData(f"{store_root} ({eval_set})", columns, runs[loss_col].cast(pl.Float64).to_numpy(),
                   np.asarray(labels), run_ids=runs["run_id"].to_numpy(), compute=compute, excluded=excluded,
                   bits_per_nat=_bits_per_nat(runs, eval_set))
    return with_clusters(check(data, drop_nan))


def _bits_per_nat(runs: pl.DataFrame, eval_set: str) -> float | None:
    """bits per byte per nat of loss on `eval_set` (1 / (ln 2 x its bytes per token)), the median
    over the runs that record both (one build: the same for all); None when none does."""
    bpb_col, loss_col = f"final_eval_{eval_set}_bpb", f"final_eval_{eval_set}_loss"
    if bpb_col not in runs.columns:
        return None
    ratio = (runs[bpb_col].cast(pl.Float64) / runs[loss_col].cast(pl.Float64)).drop_nulls().drop_nans()
    return float(ratio.median()) if ratio.len() else None


def _store_compute(runs: pl.DataFrame) -> Compute:
    """flops_v1 over the model family the runs' shapes come from (scaler.fitting.compute); runs that
    record no model shape (written by other tools) are counted under 6ND."""
    needed = [f"model_{k}" for k in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size", "seq_len")]
    if any(c not in runs.columns or runs[c].null_count() for c in needed):
        return Compute(SIX_ND)
    shapes = [ModelShape(d_model=int(r["model_d_model"]), n_layers=int(r["model_n_layers"]),
                         n_heads=int(r["model_n_heads"]), d_ff=int(r["model_d_ff"]),
                         vocab_size=int(r["model_vocab_size"]), seq_len=int(r["model_seq_len"]))
              for r in runs.select("model_d_model", "model_n_layers", "model_n_heads", "model_d_ff",
                                   "model_vocab_size", "model_seq_len").iter_rows(named=True)]
    family, exact = family_of_shapes(shapes)
    return Compute(FLOPS_V1, family, exact)
