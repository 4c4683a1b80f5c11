"""Where a sweep stands: runs per state, time spent, estimated time left, and the runs a changed
data build left behind (`scaler status`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from scaler.config import canonical_json
from scaler.errors import StoreError
from scaler.store import CORRUPT, Store
from scaler.sweep.plan import make_plan
from scaler.sweep.spec import SweepRun, SweepSpec

STATES = ("done", "running", "stopped", "pending", "failed", "diverged", "corrupt")
FINAL_STATES = ("done", "diverged")


@dataclass
class SweepStatus:
    counts: dict[str, int]  # state -> runs; "stopped": running in status.json, but no worker holds it
    spent_s: float  # training seconds spent so far, finished and running runs together
    left_s: float | None  # estimated seconds to finish the runs not done (None: no estimate)
    left_runs: int
    failed: list[dict[str, Any]] = field(default_factory=list)  # run_id, attempts, error
    corrupt: list[dict[str, Any]] = field(default_factory=list)  # run_id, file, error: `scaler run` sets them aside
    left_behind: list[dict[str, Any]] = field(default_factory=list)  # `left_behind`: run_id, now (its run now), changed

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "spent_s": self.spent_s, "left_s": self.left_s, "left_runs": self.left_runs,
                "failed": self.failed, "corrupt": self.corrupt, "left_behind": self.left_behind}


def _spent_s(status: dict[str, Any], now_s: float) -> float:
    """Seconds one run has trained: its recorded elapsed time, or start to finish, plus the
    time since it started when it is running now."""
    spent = 0.0
    if "elapsed_s" in status:
        spent += status["elapsed_s"]
    elif status.get("finished_at") and status.get("started_at"):
        spent += status["finished_at"] - status["started_at"]
    if status["state"] == "running" and status.get("started_at"):
        spent += max(0.0, now_s - status["started_at"])
    return spent


def _without_data_keys(identity: dict[str, Any]) -> str:
    data = {k: v for k, v in identity.get("data", {}).items() if k not in ("content", "build_id")}
    return canonical_json({**identity, "data": data})


def left_behind(runs: list[SweepRun], store: Store) -> list[dict[str, Any]]:
    """The store's runs that are one of `runs` in everything but their data's content hashes (or,
    keyed before content hashes, their build id): trained on an earlier build of the data whose
    contents changed, so they no longer count. Each: run_id, now (the sweep's run in its place),
    changed (the parts of the data whose hashes differ, or "build <id>" for a run keyed on its build)."""
    current = {_without_data_keys(r.config.identity()): r for r in runs}
    ids = {r.run_id for r in runs}
    out = []
    for run_id in store.run_ids():
        if run_id in ids:
            continue
        try:
            identity = store.read_config(run_id)
        except StoreError:
            continue  # a damaged run is `problems`' business
        now = current.get(_without_data_keys(identity))
        if now is None:
            continue
        old, new = identity.get("data", {}).get("content") or {}, now.config.data.content
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) if old else \
            [f"build {identity.get('data', {}).get('build_id')} (keyed on the build, before content hashes)"]
        out.append({"run_id": run_id, "now": now.run_id, "changed": changed})
    return out


def sweep_status(spec: SweepSpec, runs: list[SweepRun], store: Store | None = None) -> SweepStatus:
    """The state of each of the spec's runs in its store, and the time accounting."""
    store = store or Store(spec.store_root)
    corrupt = [{"run_id": r.run_id, "file": name, "error": error}
               for r in runs for name, error in store.problems(r.run_id)]
    damaged = {c["run_id"] for c in corrupt}
    statuses = {r.run_id: {"state": CORRUPT} if r.run_id in damaged else store.read_status(r.run_id) for r in runs}
    plan = make_plan(spec, runs, states={k: v["state"] for k, v in statuses.items()})
    counts = {state: 0 for state in STATES}
    spent_s, now_s, failed = 0.0, time.time(), []
    for run_id, status in statuses.items():
        state = status["state"]
        if state == "running" and not store.claim_is_live(run_id):
            state = "stopped"  # killed (no claim, or its process on this host is gone); `scaler run` resumes it
        counts[state] = counts.get(state, 0) + 1
        spent_s += _spent_s(status, now_s)
        if state == "failed":
            failed.append({"run_id": run_id, "attempts": status.get("attempts", 0), "error": status.get("error", "?")})
    left = [row.est_seconds for row in plan.rows if row.state not in FINAL_STATES]
    return SweepStatus(counts, spent_s, None if None in left else float(sum(left)), len(left), failed, corrupt,
                       left_behind(runs, store))
