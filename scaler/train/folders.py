"""What the trainer needs of a results store: a run's folder, and nothing else.

The train layer never imports scaler/store.py: it writes a run's config.json, status.json,
metrics, run_info.json, heartbeat, checkpoints and trackers' files through a `RunFolders`, the methods below and
no others, which `scaler.store.Store` has with the same signatures (tests/test_train.py checks
it). Whoever opens the store (a sweep worker, the CLI, `scaler.sweep.data_build`) hands it in; where the
trainer is given a path instead (a finished run folder, a reference's store), it is also handed
an `OpenFolders`, which makes the folders of a store root (`scaler.store.Store` itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import polars as pl


@runtime_checkable
class RunFolders(Protocol):
    """The run folders of one store, as the trainer uses them (scaler.store.Store implements it)."""

    def run_dir(self, run_id: str) -> str: ...

    def ckpt_dir(self, run_id: str) -> str: ...

    def tracker_dir(self, run_id: str) -> str: ...

    def write_config(self, run_id: str, config: Mapping[str, Any]) -> None: ...

    def read_config(self, run_id: str) -> dict[str, Any]: ...

    def read_status(self, run_id: str) -> dict[str, Any]: ...

    def write_status(self, run_id: str, state: str, **fields: Any) -> dict[str, Any]: ...

    def heartbeat(self, run_id: str) -> None: ...

    def write_json(self, run_id: str, name: str, obj: Any) -> None: ...

    def write_metrics(self, run_id: str, metrics: pl.DataFrame) -> None: ...

    def read_metrics(self, run_id: str) -> pl.DataFrame: ...


OpenFolders = Callable[[str], RunFolders]  # a store root (a folder or an fsspec URL) -> its run folders
