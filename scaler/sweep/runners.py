"""Engines: run a sweep's runs locally (the default), on a Ray cluster or on SLURM.

Every engine calls `execute_stack` for each stack of runs (a stack of one by default; see
scaler/train/stacked.py), wherever it runs: claim each run in the store (scaler/store.py: an
exclusive claim file with a heartbeat), train the claimed runs together (`train_stack` resumes
from their checkpoints and returns at once for a run already done or diverged), retry failures up
to `retries` times (a divergence is a result, not a failure), and release the claims. A run claimed
by a live worker elsewhere is skipped, so any number of submitters and cluster tasks can work on
one sweep and each run trains once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

CLAIM_REFRESH_S = 10.0
STALE_AFTER_S = 120.0


@dataclass
class Outcome:
    run_id: str
    state: str  # done | diverged | failed | pending (interrupted) | claimed (held by a live worker elsewhere)
    attempts: int = 0
    final: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ClaimLost(Exception):
    """Another worker took this run over (our heartbeat had gone stale): stop training it."""


class RunClaimed(Exception):
    """A live worker holds the run: it is being trained elsewhere (or by another command here)."""

    def __init__(self, run_id: str, claim: dict[str, Any] | None):
        who = (f"{claim.get('owner')} on {claim.get('host')}, pid {claim.get('pid')}" if claim else "another worker")
        super().__init__(f"run {run_id} is being trained by {who} (its claim.json is live); "
                         "wait for it, or run the same command once it has stopped")
        self.run_id, self.claim = run_id, claim


class _ClaimKeeper:
    """Refreshes a claim's heartbeat from a background thread while the run trains; `lost` is set
    when the claim is no longer ours (or cannot be refreshed), and `check` raises ClaimLost."""

    def __init__(self, store, run_id: str, owner: str, every_s: float = CLAIM_REFRESH_S):
        self.store, self.run_id, self.owner, self.every_s = store, run_id, owner, every_s
        self.stop = threading.Event()
        self.lost = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                ours = self.store.refresh_claim(self.run_id, self.owner)
            except Exception:  # noqa: BLE001 - a store we cannot write: the claim will go stale
                ours = False
            if not ours:
                self.lost.set()
                return

    def check(self, row: dict[str, Any]) -> None:
        if self.lost.is_set():
            raise ClaimLost(f"run {self.run_id}: claim lost to another worker")

    def __enter__(self) -> _ClaimKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if not self.lost.is_set():
            self.store.release(self.run_id, self.owner)


@contextlib.contextmanager
def held_claim(store: Any, run_id: str, owner: str | None = None,
               stale_after_s: float = STALE_AFTER_S) -> Iterator[_ClaimKeeper]:
    """Hold the run's claim while the body trains it (heartbeat refreshed, released at the end):
    the claim every sweep worker and `scaler train` take, so no run is trained twice at once.
    RunClaimed when a live worker holds it."""
    owner = owner or new_owner()
    if not store.claim(run_id, owner, stale_after_s):
        raise RunClaimed(run_id, store.read_claim(run_id))
    with _ClaimKeeper(store, run_id, owner) as keeper:
        yield keeper


def execute_run(config: dict[str, Any], store_root: str, retries: int = 0, owner: str | None = None,
                stale_after_s: float = STALE_AFTER_S, progress: Callable[[dict[str, Any]], None] | None = None,
                workdir: str | None = None) -> dict[str, Any]:
    """One run: `execute_stack` of one."""
    return execute_stack([config], store_root, retries, owner, stale_after_s, progress, workdir)[0]


def execute_stack(
    configs: list[dict[str, Any]],
    store_root: str,
    retries: int = 0,
    owner: str | None = None,
    stale_after_s: float = STALE_AFTER_S,
    progress: Callable[[dict[str, Any]], None] | None = None,
    workdir: str | None = None,
) -> list[dict[str, Any]]:
    """Claim each run, train the claimed ones together (one stack, scaler/train/stacked.py, or
    families of WSD branches with their trunks and branches stacked, scaler/train/branches.py;
    resuming), retry failures, release; the outcomes as dicts (picklable), in input order.

    `configs` are RunConfigs as JSON (`RunConfig.model_dump(mode="json")`) grouped by
    `stack_groups.group_stacks` or `stack_groups.group_branch_stacks`. JAX is imported here, inside the worker, so a cluster driver never
    needs it. `workdir`: the submitter's working folder, where a relative `data.dir` is found (a
    cluster worker starts elsewhere). A run done or diverged already, or held by a live worker
    elsewhere ("claimed"), is left out of the stack.
    """
    if workdir is not None and os.path.abspath(workdir) != os.getcwd():
        previous = os.getcwd()
        os.chdir(workdir)
        try:
            return execute_stack(configs, store_root, retries, owner, stale_after_s, progress)
        finally:
            os.chdir(previous)
    from scaler.runtime import configure_compilation_cache, configure_cpu

    configure_cpu()  # before JAX starts in this worker: one XLA CPU device per core
    configure_compilation_cache()
    from scaler.config import parse_run_config, run_id_of
    from scaler.store import Store
    from scaler.train.defaults import resolve

    runs = [resolve(parse_run_config(c, source="sweep run")) for c in configs]
    run_ids = [run_id_of(run.identity()) for run in runs]
    store, owner = Store(store_root), owner or new_owner()
    outcomes: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as held:
        keepers: dict[str, _ClaimKeeper] = {}
        for run_id in run_ids:
            status = store.read_status(run_id)
            if status["state"] in ("done", "diverged"):
                store.remove_dead_claim(run_id, stale_after_s)  # its worker died between finishing and releasing
                outcomes[run_id] = Outcome(run_id, status["state"], status.get("attempts", 0)).to_dict()
                continue
            try:
                keepers[run_id] = held.enter_context(held_claim(store, run_id, owner, stale_after_s))
            except RunClaimed:  # a live worker holds the run
                outcomes[run_id] = Outcome(run_id, "claimed").to_dict()
        claimed = [run for run, run_id in zip(runs, run_ids) if run_id in keepers]
        if claimed:
            outcomes.update(_attempts(claimed, store, retries, keepers, progress))
    return [outcomes[run_id] for run_id in run_ids]


def _attempts(runs: list[Any], store: Any, retries: int, keepers: dict[str, _ClaimKeeper],
              progress: Callable[[dict[str, Any]], None] | None) -> dict[str, dict[str, Any]]:
    """Train (resuming) under held claims, retrying failures; the outcomes by run id."""
    from scaler.config import run_id_of
    from scaler.train.branches import train_task

    run_ids = [run_id_of(run.identity()) for run in runs]

    def on_row(row: dict[str, Any]) -> None:
        keepers[row["run_id"]].check(row)
        if progress:
            progress(row)

    def attempts(run_id: str) -> int:
        return store.read_status(run_id).get("attempts", 0)

    for attempt in range(retries + 1):
        try:
            results = train_task(runs, store, progress=on_row)
            return {r.run_id: Outcome(r.run_id, r.state, attempts(r.run_id), r.final).to_dict() for r in results}
        except KeyboardInterrupt:
            raise
        except ClaimLost:  # every run of the stack goes back to the queue; the lost one is trained elsewhere
            return {run_id: Outcome(run_id, "claimed").to_dict() for run_id in run_ids}
        except Exception as err:  # noqa: BLE001 - recorded in status.json by train_stack; retried
            error = f"{type(err).__name__}: {err}"
            if attempt == retries:
                return {run_id: Outcome(run_id, "failed", attempts(run_id), error=error).to_dict() for run_id in run_ids}
            time.sleep(min(2.0**attempt, 30.0))
    raise AssertionError("unreachable")


Stacks = list[list[int]]  # indices of configs trained together (scaler/train/stacked.py); None: one run each


def run_local(
    configs: list[dict[str, Any]],
    store_root: str,
    retries: int = 0,
    workers: int = 1,
    on_outcome: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    poll_s: float = 2.0,
    stacks: Stacks | None = None,
) -> list[dict[str, Any]]:
    """Run every config here, stack by stack: in this process (workers=1, with per-step progress)
    or in a pool of `workers` processes. Runs held by another live submitter are waited for, and
    taken over if their claim goes stale, so the call returns when every run has an outcome."""
    owner = new_owner()
    outcomes: dict[int, dict[str, Any]] = {}
    pending = stacks or [[i] for i in range(len(configs))]
    while pending:
        if workers == 1:
            results = ((stack, execute_stack([configs[i] for i in stack], store_root, retries, owner,
                                             progress=on_step)) for stack in pending)
        else:
            results = _run_pool(configs, pending, store_root, retries, workers)
        waiting = []
        for stack, stack_outcomes in results:
            claimed = [i for i, outcome in zip(stack, stack_outcomes) if outcome["state"] == "claimed"]
            if claimed:
                waiting.append(claimed)
            for i, outcome in zip(stack, stack_outcomes):
                if outcome["state"] != "claimed":
                    outcomes[i] = outcome
                    if on_outcome:
                        on_outcome(outcome)
        pending = waiting
        if pending:
            time.sleep(poll_s)
    return [outcomes[i] for i in range(len(configs))]


def _run_pool(configs, stacks: Stacks, store_root: str, retries: int, workers: int):
    """(stack, outcomes) pairs as the stacks finish, from `workers` fresh processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from scaler.runtime import DEVICE_COUNT_FLAG

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: JAX is not fork-safe
    flags = os.environ.get("XLA_FLAGS", "")
    kept = " ".join(f for f in flags.split() if not f.startswith(DEVICE_COUNT_FLAG))
    devices = int(os.environ.get("SCALER_CPU_DEVICES", "0")) or max(1, (os.cpu_count() or 1) // workers)
    os.environ["XLA_FLAGS"] = f"{kept} {DEVICE_COUNT_FLAG}={devices}".strip()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent)
    try:  # the workers share the cores: each gets its share of XLA host devices (or SCALER_CPU_DEVICES)
        futures = {pool.submit(execute_stack, [configs[i] for i in stack], store_root, retries): stack
                   for stack in stacks}
        for future in as_completed(futures):
            yield futures[future], future.result()
        pool.shutdown(wait=True)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: finish nothing new
        raise
    finally:
        if flags:
            os.environ["XLA_FLAGS"] = flags
        else:
            os.environ.pop("XLA_FLAGS", None)


def die_with_parent() -> None:
    """In a pool worker: be killed (SIGKILL) when the parent process dies, so a killed `scaler run`
    leaves no worker training on (Linux prctl PR_SET_PDEATHSIG; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call: go now
        os._exit(1)


# -- the local engine (scaler.sweep.engines.make_runner gives it and the cluster engines) -------
OutcomeHook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LocalRunner:
    """Runs here: in this process (workers=1, with per-step progress) or a pool of processes."""

    workers: int = 1
    name: str = "local"

    def run(self, configs: list[dict[str, Any]], store_root: str, retries: int = 0,
            on_outcome: OutcomeHook | None = None, on_step: OutcomeHook | None = None,
            stacks: Stacks | None = None) -> list[dict[str, Any]]:
        return run_local(configs, store_root, retries, self.workers, on_outcome=on_outcome, on_step=on_step,
                         stacks=stacks)
