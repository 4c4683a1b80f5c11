"""Orbax checkpoints of a run: parameters, optimizer state, and the position in the data.

The data sampler is a pure function of (seed, step), so the step is the whole data position; it
is saved beside the arrays. The run loop writes the metrics rows up to a step before it saves
that step's checkpoint, so a checkpoint only counts once its rows are durable (scaler/train/loop.py
`resume_point`). Orbax writes each step to a temporary folder and renames it when complete: a
killed save leaves the previous checkpoint intact.
"""

from __future__ import annotations

from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 2):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(directory, options=options)

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
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.manager.save(step, args=args)
        self.manager.wait_until_finished()

    def restore(self, step: int, like_state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Arrays shaped like `like_state`, and the saved metadata."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        restored = self.manager.restore(step, args=args)
        return restored.state, restored.meta

    def close(self) -> None:
        self.manager.close()
