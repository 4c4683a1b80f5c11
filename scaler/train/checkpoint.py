"""Orbax checkpoints of a run: parameters, optimizer state, and the position in the data.

The data sampler is a pure function of (seed, step), so the step is the whole data position; it
is saved beside the arrays. The run loop writes the metrics rows up to a step before it saves
that step's checkpoint, so a checkpoint only counts once its rows are durable (scaler/train/loop.py
`resume_point`). Orbax writes each step to a temporary folder and renames it when complete: a
killed save leaves the previous checkpoint intact. Each step keeps a sha256 of its arrays in its
metadata; a restore that orbax cannot read or whose arrays differ from it is CheckpointCorrupt, and
the run loop sets the step aside and falls back to the previous one (or a fresh start).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import fsspec
import fsspec.implementations.local
import jax
import numpy as np
import orbax.checkpoint as ocp

from scaler.errors import StoreError


class CheckpointCorrupt(Exception):
    """A saved step that cannot be restored, or whose arrays do not match the digest saved with them."""


def state_digest(state: Any) -> str:
    """sha256 over every array of `state` (tree order, with its shape and dtype): what a restore must
    give back bit for bit."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = directory
        self.options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(directory, options=self.options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """The saved steps, oldest first."""
        return sorted(self.manager.all_steps())

    def discard_after(self, step: int) -> None:
        """Delete every checkpoint later than `step` (a run resuming from `step` saves them again)."""
        for later in self.all_steps():
            if later > step:
                self.manager.delete(later)

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Save the arrays, with `meta` and the arrays' digest beside them."""
        meta = {**meta, "state_sha256": state_digest(state)}
        self._check_room(step, state)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        try:
            self.manager.save(step, args=args)
            self.manager.wait_until_finished()
        except Exception as err:  # a full disk or an unwritable folder: no half-written step is left
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # orbax's abandoned writes would log tracebacks
            self._remove_unfinished(step)
            cause = err.strerror if isinstance(err, OSError) and err.strerror else f"{type(err).__name__}: {err}"
            raise StoreError(f"{self.directory}/{step}: cannot save the checkpoint ({cause})") from err

    def _check_room(self, step: int, state: dict[str, Any]) -> None:
        """On a local disk, refuse a save that cannot fit before orbax starts it (orbax's own
        failure on a full disk leaves threads that print tracebacks): the arrays' bytes plus 1 MiB."""
        fs, path = fsspec.core.url_to_fs(self.directory)
        if not isinstance(fs, fsspec.implementations.local.LocalFileSystem):
            return
        existing = next(p for p in [path, *map(str, Path(path).parents)] if os.path.isdir(p))
        need = sum(int(np.asarray(leaf).nbytes) for leaf in jax.tree.leaves(state)) + (1 << 20)
        free = shutil.disk_usage(existing).free
        if free < need:
            raise StoreError(f"{self.directory}/{step}: cannot save the checkpoint (No space left on device: "
                             f"{need:,} bytes needed, {free:,} free)")

    def _remove_unfinished(self, step: int) -> None:
        """Delete what a failed save left: orbax's temporary folder of `step`."""
        fs, path = fsspec.core.url_to_fs(self.directory)
        for leftover in fs.glob(f"{path.rstrip('/')}/{step}.orbax-checkpoint-tmp*"):
            try:
                fs.rm(leftover, recursive=True)
            except OSError:
                pass

    def restore(self, step: int, like_state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Arrays shaped like `like_state`, and the saved metadata, verified: CheckpointCorrupt when
        orbax cannot read the step or the arrays differ from the digest saved with them (garbage is
        never handed back). A step saved before digests were kept is trusted as orbax reads it."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        try:
            restored = self.manager.restore(step, args=args)
            state, meta = restored.state, dict(restored.meta)
        except Exception as err:  # noqa: BLE001 - orbax and tensorstore raise many kinds on damaged files
            raise CheckpointCorrupt(f"checkpoint {step}: cannot be read ({type(err).__name__}: {err})") from None
        saved = meta.pop("state_sha256", None)
        if saved is not None and saved != state_digest(state):
            raise CheckpointCorrupt(f"checkpoint {step}: its arrays do not match the digest saved with them")
        return state, meta

    def set_aside(self, step: int) -> str:
        """Move a damaged step out of the checkpoint folder (beside it, `ckpt-corrupt/<step>-<unix
        time>`; never deleted) and forget it; the new path."""
        fs, path = fsspec.core.url_to_fs(self.directory)
        target = f"{path.rstrip('/')}-corrupt/{step}-{int(time.time())}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(f"{path.rstrip('/')}/{step}", target, recursive=True)
        self.manager.close()
        self.manager = ocp.CheckpointManager(self.directory, options=self.options)
        return target

    def close(self) -> None:
        self.manager.close()
