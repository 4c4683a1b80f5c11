"""Run trackers: each metrics row, the config and the final evaluation also go to TensorBoard,
Weights & Biases or a JSON-lines file, to watch runs while they train (`[train] trackers`).

The store stays the source of truth. A tracker that cannot start or write warns once on stderr
and is off for the rest of that run; it never fails a run. Each writes under the run's
`trackers/` folder (`Store.tracker_dir`): `tensorboard/` (event files: `tensorboard --logdir
STORE/runs`), `wandb/` (offline unless you are logged in to W&B or set WANDB_MODE; project
WANDB_PROJECT or "scaler", W&B run id = scaler run id) and `metrics.jsonl`. A resumed run
writes the rows after its checkpoint again: TensorBoard purges its events after that step
(purge_step), W&B resumes the run by id, the JSON-lines file gets a new "start" line.
The libraries are optional: `pip install 'scaler[trackers]'`."""

from __future__ import annotations

import json
import math
import netrc
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, get_args

from scaler.config import TrackerName

TRACKERS: tuple[str, ...] = get_args(TrackerName)  # the names [train] trackers accepts, in one place


class Tracker(Protocol):
    def log(self, row: Mapping[str, Any], step: int) -> None: ...

    def finish(self, state: str, final: Mapping[str, Any]) -> None: ...


def _scalars(row: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))}


class TensorBoardTracker:
    """Event files through tensorboardX; scalar tags are the metrics columns (train_loss, ...)."""

    def __init__(self, folder: str, run_id: str, name: str, config: Mapping[str, Any], start_step: int) -> None:
        from tensorboardX import SummaryWriter

        # a resumed run logs again from start_step + 1: TensorBoard drops the older events from there on
        self.writer = SummaryWriter(logdir=folder, purge_step=start_step + 1 if start_step else None, flush_secs=10)
        self.writer.add_text("config", f"run {run_id} {name}\n\n    " + json.dumps(config, indent=1).replace(
            "\n", "\n    "), global_step=start_step)

    def log(self, row: Mapping[str, Any], step: int) -> None:
        for tag, value in _scalars(row).items():
            self.writer.add_scalar(tag, value, step)

    def finish(self, state: str, final: Mapping[str, Any]) -> None:
        self.writer.add_text("final", f"{state}: " + json.dumps(dict(final), default=str))
        self.writer.close()


def wandb_mode() -> str | None:
    """None when WANDB_MODE is set (W&B reads it), "online" when an API key is known, else "offline"."""
    if os.environ.get("WANDB_MODE"):
        return None
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        return "online" if netrc.netrc().authenticators("api.wandb.ai") else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


class WandbTracker:
    """One W&B run per scaler run (several at once in a stack: reinit="create_new")."""

    def __init__(self, folder: str, run_id: str, name: str, config: Mapping[str, Any], start_step: int) -> None:
        import wandb

        os.makedirs(folder, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "scaler"), id=run_id, name=name or run_id,
                              dir=folder, config=dict(config), resume="allow", mode=wandb_mode(),
                              reinit="create_new", settings=wandb.Settings(silent=True))

    def log(self, row: Mapping[str, Any], step: int) -> None:
        self.run.log(_scalars(row), step=step)

    def finish(self, state: str, final: Mapping[str, Any]) -> None:
        self.run.summary.update({"state": state, **dict(final)})
        self.run.finish(exit_code=0 if state == "done" else 1)


class JsonlTracker:
    """metrics.jsonl: a "start" line (config, step), a "row" line per metrics row, then the state's line."""

    def __init__(self, folder: str, run_id: str, name: str, config: Mapping[str, Any], start_step: int) -> None:
        os.makedirs(folder, exist_ok=True)
        self.file = open(os.path.join(folder, "metrics.jsonl"), "a", encoding="utf-8")
        self._write({"event": "start", "run_id": run_id, "name": name, "step": start_step, "config": dict(config)})

    def _write(self, obj: Mapping[str, Any]) -> None:
        self.file.write(json.dumps(obj, default=str, allow_nan=True) + "\n")
        self.file.flush()

    def log(self, row: Mapping[str, Any], step: int) -> None:
        self._write({"event": "row", **row, "step": step})

    def finish(self, state: str, final: Mapping[str, Any]) -> None:
        self._write({"event": state, "final": dict(final)})
        self.file.close()


OPENERS: dict[str, Callable[..., Tracker]] = {
    "tensorboard": TensorBoardTracker, "wandb": WandbTracker, "jsonl": JsonlTracker,
}


class RunTrackers:
    """The trackers of one run. Every call is guarded: the first error of a tracker warns on stderr
    (naming the run, the tracker and the error) and turns that tracker off; rows still reach the store."""

    def __init__(self, names: list[str], folder: str, run_id: str, name: str, config: Mapping[str, Any],
                 start_step: int) -> None:
        self.run_id = run_id
        self.open: dict[str, Tracker] = {}
        for tracker in dict.fromkeys(names):
            where = folder if tracker == "jsonl" else f"{folder}/{tracker}"
            opened = self._guard(tracker, "start", lambda t=tracker, w=where: OPENERS[t](w, run_id, name, config,
                                                                                       start_step))
            if opened is not None:
                self.open[tracker] = opened

    def _guard(self, tracker: str, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as err:  # a tracker never fails a run
            why = (f"{err.name or tracker} is not installed (pip install 'scaler[trackers]')"
                   if isinstance(err, ImportError) else f"{type(err).__name__}: {err}")
            print(f"warning: run {self.run_id}: the {tracker} tracker could not {what}: {why}; it is off for this "
                  "run (the store keeps every row)", file=sys.stderr)
            self.open.pop(tracker, None)
            return None

    def log(self, row: Mapping[str, Any]) -> None:
        step = int(row["step"])
        clean = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        for tracker, t in list(self.open.items()):
            self._guard(tracker, f"log step {step}", lambda t=t: t.log(clean, step))

    def finish(self, state: str, final: Mapping[str, Any]) -> None:
        for tracker, t in list(self.open.items()):
            self._guard(tracker, "finish", lambda t=t: t.finish(state, final))
        self.open = {}


def open_trackers(names: list[str], folder: str, run_id: str, name: str, config: Mapping[str, Any],
                  start_step: int) -> RunTrackers | None:
    """The run's trackers, or None when it has none."""
    return RunTrackers(names, folder, run_id, name, config, start_step) if names else None
