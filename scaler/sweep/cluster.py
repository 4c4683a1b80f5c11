"""Cluster engines: run a sweep's runs as Ray tasks or SLURM jobs (through submitit).

Each stack of runs (one run by default; scaler/train/stacked.py) becomes one task or job that
calls `scaler.sweep.runners.execute_stack` on a worker: claim its runs in the store, train them
(resuming from their checkpoints), retry application failures up to `retries` times, release the
claims. A run already done is not trained again, and a run that a live
worker elsewhere holds comes back as state "claimed". Both engines return one Outcome dict per
config (run_id, state, attempts, final, error), in the input order, and call `progress(outcome)` as
each run finishes. A task or job that raised (a config that cannot be resolved on the worker, a
worker lost for good) comes back as a "failed" outcome with its error, not as an exception; its
run_id is "" when the driver cannot compute it either (e.g. a data folder only workers can read).

Requirements on the cluster:

- `store_root` must be reachable, under the same name, from every worker: a shared filesystem
  path (NFS, Lustre, ...) or an fsspec URL (gs://, s3://) whose package and credentials the
  workers have. A relative local path is made absolute before it is sent (workers do not run in
  the submitter's directory). The same holds for a run's `data.dir`.
- Workers need this package (and JAX) installed; JAX is imported only there, never by the driver.

Resource mapping (`resources`: the keys of `scaler.sweep.spec.Resources`; missing keys are not
requested):

=================  ==========================================  =================================
key                Ray task option                              submitit / SLURM parameter
=================  ==========================================  =================================
cpus               num_cpus (default 1); also the workers'      cpus_per_task
                   SCALER_CPU_DEVICES (XLA CPU devices)
gpus               num_gpus                                     gpus_per_node
memory_gb          memory = memory_gb * 2**30 bytes             mem_gb
tpu ("v4-8")       resources={"TPU": chips of the slice}        (refused: no TPUs on SLURM)
time_limit_min     (ignored: Ray has no task time limit)        timeout_min
partition          (ignored)                                    slurm_partition (SLURM only)
array_parallelism  (ignored)                                    slurm_array_parallelism (SLURM)
=================  ==========================================  =================================

A TPU slice name counts TensorCores for v2-v4 and v5p (two per chip: "v4-8" is 4 chips) and chips
for v5e ("v5litepod-8") and v6e ("v6e-8"). Ray's "TPU" resource counts the chips of one host, and
one run is one task, so only single-host slices are accepted.

Without `time_limit_min`, submitit's own default applies: 5 minutes on SLURM, 2 on the local
executor.

`local_ray_head()` starts a throwaway single-node Ray head on 127.0.0.1 (tests, benchmarks, trying
the Ray engine on one machine); `run_on_ray` never starts a cluster by itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from scaler.errors import ParameterError
from scaler.sweep.runners import STALE_AFTER_S, Outcome, Stacks, execute_stack

Progress = Callable[[dict[str, Any]], None] | None

WORKER_CRASH_RETRIES = 3  # Ray's max_retries: a task whose worker died is run again this often
CANCEL_GRACE_S = 15.0  # after Ctrl-C: how long cancelled Ray tasks get to record "pending", release claims
POLL_S = 1.0  # how often the SLURM engine asks submitit whether jobs finished
CONNECT_TIMEOUT_S = 10.0  # the Ray head's port must answer within this before ray.init is tried
GIB = 2**30
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 as the node address

# TensorCores per chip in the slice name, and the most chips one host has, per TPU generation.
_TPU_CORES_PER_CHIP = {"v2": 2, "v3": 2, "v4": 2, "v5p": 2, "v5litepod": 1, "v5e": 1, "v6e": 1}
_TPU_CHIPS_PER_HOST = {"v2": 4, "v3": 4, "v4": 4, "v5p": 4, "v5litepod": 8, "v5e": 8, "v6e": 8}


# -- shared helpers ------------------------------------------------------------------------------
def absolute_root(store_root: str) -> str:
    """A local path made absolute; an fsspec URL (scheme://...) as given."""
    return store_root if "://" in store_root else os.path.abspath(store_root)


def run_id_for(config: dict[str, Any]) -> str:
    """The run id `execute_run` will use (no JAX needed)."""
    from scaler.config import parse_run_config, run_id_of
    from scaler.train.defaults import resolve

    return run_id_of(resolve(parse_run_config(config, source="sweep run")).identity())


def failed_outcome(config: dict[str, Any], error: str) -> dict[str, Any]:
    """The outcome of a task or job that raised instead of returning one."""
    try:
        run_id = run_id_for(config)
    except Exception:  # noqa: BLE001 - e.g. a data folder that only the workers can read
        run_id = ""
    return Outcome(run_id, "failed", error=error).to_dict()


def _error_text(err: BaseException) -> str:
    """`Type: message` of the exception a task or job raised (unwrapping Ray's and submitit's)."""
    cause = getattr(err, "cause", None)  # ray.exceptions.RayTaskError wraps the task's exception
    err = cause if isinstance(cause, BaseException) else err
    text = str(err)
    marker = "Traceback (most recent call last):"  # submitit's FailedJobError carries the job's trace
    if marker not in text:
        return f"{type(err).__name__}: {text}".strip()
    lines = text.rsplit(marker, 1)[1].split("\n----------------------", 1)[0].strip("\n").splitlines()
    first = next((i for i, line in enumerate(lines) if not line.startswith(" ")), 0)
    name, sep, message = "\n".join(lines[first:]).partition(": ")
    return f"{name.rsplit('.', 1)[-1]}{sep}{message}"


def tpu_chips(tpu: str | int) -> int:
    """Chips of a single-host TPU slice: "v4-8" -> 4, "v5litepod-8" -> 8; an int is a chip count."""
    if isinstance(tpu, int):
        return tpu
    version, _, size = tpu.lower().partition("-")
    if version not in _TPU_CORES_PER_CHIP or not size.isdigit() or int(size) < _TPU_CORES_PER_CHIP[version]:
        raise ValueError(f"tpu: expected a slice name such as 'v4-8' or 'v6e-4' (got {tpu!r})")
    chips = int(size) // _TPU_CORES_PER_CHIP[version]
    if chips > _TPU_CHIPS_PER_HOST[version]:
        raise ValueError(f"tpu: {tpu} spans several hosts; a run is one task, so use a single-host slice "
                         f"(at most {_TPU_CHIPS_PER_HOST[version]} chips of {version})")
    return chips


# -- Ray -------------------------------------------------------------------------------------------
def ray_task_options(resources: dict[str, Any]) -> dict[str, Any]:
    """The `.options(...)` of one run's Ray task (see the table in the module docstring)."""
    options: dict[str, Any] = {"num_cpus": resources.get("cpus") or 1, "max_retries": WORKER_CRASH_RETRIES}
    if resources.get("gpus"):
        options["num_gpus"] = resources["gpus"]
    if resources.get("memory_gb"):
        options["memory"] = int(resources["memory_gb"] * GIB)
    if resources.get("tpu"):
        options["resources"] = {"TPU": tpu_chips(resources["tpu"])}
    return options


def _ray_task(configs: list[dict[str, Any]], store_root: str, retries: int, owner: str,
              workdir: str) -> list[dict[str, Any]]:
    """One stack of runs on a Ray worker, under an owner fixed for the task: when Ray retries the
    task after its worker crashed, the retry takes back the claims the dead attempt left (instead
    of finding the runs "claimed" until the claims go stale)."""
    from scaler.store import Store

    for config in configs:
        Store(store_root).release(run_id_for(config), owner)  # only removes a claim held by `owner`
    with _cancel_latch() as cancelled:

        def stop_if_cancelled(row: dict[str, Any]) -> None:
            if cancelled.is_set():
                raise KeyboardInterrupt  # ray.cancel's own interrupt was swallowed: raise it again

        return execute_stack(configs, store_root, retries, owner=owner, progress=stop_if_cancelled, workdir=workdir)


@contextlib.contextmanager
def _cancel_latch() -> Iterator[threading.Event]:
    """`ray.cancel` interrupts the task's main thread once (a simulated SIGINT). If it lands where
    Python cannot raise (JAX's garbage-collection callback prints "Exception ignored"), the task
    would train on with its claim held. The handler here also latches the request, so the next
    logged step raises it again and the run records "pending" and releases its claim."""
    cancelled = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancelled  # signal handlers live in the main thread only
        return

    def on_sigint(signum: int, frame: Any) -> None:
        cancelled.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield cancelled
    finally:
        signal.signal(signal.SIGINT, previous)


def run_on_ray(
    configs: list[dict[str, Any]],
    store_root: str,
    resources: dict[str, Any],
    retries: int = 0,
    address: str | None = None,
    progress: Progress = None,
    stacks: Stacks | None = None,
) -> list[dict[str, Any]]:
    """Run every stack of configs (default: each config alone) as one Ray task on the cluster at
    `address` (else RAY_ADDRESS); outcomes in input order. Ctrl-C cancels the unfinished tasks
    (they record "pending" and release their claims), disconnects and re-raises."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ParameterError("no Ray cluster to connect to: pass {address} HOST:PORT (the head's GCS address, "
                             "as printed by `ray start --head`) or set RAY_ADDRESS", "address")
    options, store_root = ray_task_options(resources), absolute_root(store_root)
    _check_reachable(address)
    env = {"SCALER_CPU_DEVICES": str(options["num_cpus"])}  # XLA CPU devices = cores asked for
    ray.init(address=address, runtime_env={"env_vars": env}, logging_level=logging.WARNING)
    try:
        task = ray.remote(_ray_task).options(**options)
        batch = uuid.uuid4().hex[:12]
        workdir = os.getcwd()  # where relative data folders are (workers start elsewhere)
        stacks = stacks or [[i] for i in range(len(configs))]
        refs = [task.remote([configs[i] for i in stack], store_root, retries, f"ray:{batch}:{j}", workdir)
                for j, stack in enumerate(stacks)]
        return _gather_ray(refs, stacks, configs, progress)
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # "auto", "ray://...": left to ray.init
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConnectionError(f"no Ray head answers at {address} ({err}); start one with `ray start --head` "
                              "and pass the address it prints") from None


def _gather_ray(refs: list[Any], stacks: Stacks, configs: list[dict[str, Any]],
                progress: Progress) -> list[dict[str, Any]]:
    """Wait for the tasks (one per stack) as they finish; on Ctrl-C (or any error) cancel the rest."""
    import ray

    index = {ref: j for j, ref in enumerate(refs)}
    outcomes: list[dict[str, Any] | None] = [None] * len(configs)
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            stack = stacks[index[ready[0]]]
            try:
                stack_outcomes = ray.get(ready[0])
            except ray.exceptions.RayError as err:
                stack_outcomes = [failed_outcome(configs[i], _error_text(err)) for i in stack]
            for i, outcome in zip(stack, stack_outcomes):
                outcomes[i] = outcome
                if progress:
                    progress(outcome)
    except BaseException:
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in the task: it records "pending", releases its claims
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE_S)
        raise
    return outcomes  # type: ignore[return-value]  # every slot filled


# -- SLURM (submitit) ---------------------------------------------------------------------------
def slurm_parameters(resources: dict[str, Any], cluster: str) -> dict[str, Any]:
    """`AutoExecutor.update_parameters` arguments; the slurm_* ones only for the SLURM executor."""
    if resources.get("tpu"):
        raise ValueError("tpu: the SLURM engine cannot request TPUs; use gpus/cpus, or the Ray engine")
    keys = {"cpus": ("cpus_per_task", int), "gpus": ("gpus_per_node", int), "memory_gb": ("mem_gb", float),
            "time_limit_min": ("timeout_min", int)}
    if cluster == "slurm":
        keys |= {"partition": ("slurm_partition", str), "array_parallelism": ("slurm_array_parallelism", int)}
    return {name: kind(resources[key]) for key, (name, kind) in keys.items() if resources.get(key) is not None}


def run_on_slurm(
    configs: list[dict[str, Any]],
    store_root: str,
    resources: dict[str, Any],
    retries: int = 0,
    folder: str | None = None,
    cluster: str | None = None,
    progress: Progress = None,
    stacks: Stacks | None = None,
) -> list[dict[str, Any]]:
    """Run every stack of configs (default: each config alone) as one job of a submitit job
    array; outcomes in input order.

    `cluster`: None picks SLURM when `sbatch` is available (else submitit's local executor),
    "slurm", "local" (subprocesses on this machine) or "debug" (in this process, one after the
    other). Job logs and pickles go to `folder` (default <store_root>/slurm; required when the store
    is a URL), which must be on a filesystem shared with the nodes. Ctrl-C cancels unfinished jobs.
    """
    import submitit

    store_root = absolute_root(store_root)
    if folder is None and "://" in store_root:
        raise ValueError(f"folder: needed for a store at {store_root}: a shared local path for submitit's job files")
    executor = submitit.AutoExecutor(folder=folder or f"{store_root}/slurm", cluster=cluster)
    executor.update_parameters(**slurm_parameters(resources, executor.cluster))
    stacks = stacks or [[i] for i in range(len(configs))]
    n = len(stacks)
    jobs = executor.map_array(execute_stack, [[configs[i] for i in stack] for stack in stacks], [store_root] * n,
                              [retries] * n, [None] * n, [STALE_AFTER_S] * n, [None] * n, [os.getcwd()] * n)
    return _gather_jobs(jobs, stacks, configs, progress)


def _gather_jobs(jobs: list[Any], stacks: Stacks, configs: list[dict[str, Any]],
                 progress: Progress) -> list[dict[str, Any]]:
    """Poll the jobs (one per stack) until all finished; a job that raised gives failed outcomes."""
    outcomes: list[dict[str, Any] | None] = [None] * len(configs)
    pending = dict(enumerate(jobs))
    try:
        while pending:
            for j, job in list(pending.items()):
                if not job.done():
                    continue
                del pending[j]
                try:
                    stack_outcomes = job.result()
                except Exception as err:  # noqa: BLE001 - submitit re-raises the job's error here
                    error = f"{_error_text(err)} (log: {job.paths.stderr})"
                    stack_outcomes = [failed_outcome(configs[i], error) for i in stacks[j]]
                for i, outcome in zip(stacks[j], stack_outcomes):
                    outcomes[i] = outcome
                    if progress:
                        progress(outcome)
            if pending:
                time.sleep(POLL_S)
    except BaseException:
        for job in pending.values():
            job.cancel(check=False)
        raise
    return outcomes  # type: ignore[return-value]  # every slot filled


# -- a local Ray head -------------------------------------------------------------------------------
@contextlib.contextmanager
def local_ray_head(num_cpus: int = 2, timeout_s: float = 60.0) -> Iterator[str]:
    """Start a single-node Ray head bound to 127.0.0.1 only; yield its address "127.0.0.1:PORT".

    Ray replaces 127.0.0.1 by the machine's address (and listens on all interfaces) unless
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; the head gets that setting, and so does this process
    while the block runs (a driver that resolved the address otherwise would wait for ever).
    The head runs `ray start --block` in a session of its own and is stopped by its process id
    (`ray stop` would stop every Ray instance of the machine). Its workers get this environment
    without XLA_FLAGS, so that SCALER_CPU_DEVICES decides their XLA CPU devices.
    """
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update({"RAY_USAGE_STATS_ENABLED": "0", RAY_LOOPBACK_ENV: "0"})
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray") or "ray"
    command = [ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
               f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats"]
    with tempfile.NamedTemporaryFile("w+", prefix="ray-head-", suffix=".log") as log:
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_started(head, log.name, timeout_s)
            with _loopback_driver():
                yield f"127.0.0.1:{port}"
        finally:
            _stop_head(head)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_started(head: subprocess.Popen[bytes], log_path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with open(log_path) as f:
            text = f.read()
        if "Ray runtime started" in text:
            return
        if head.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the local Ray head did not start:\n{text[-2000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def _loopback_driver() -> Iterator[None]:
    """Keep 127.0.0.1 as this process's Ray node address (ray reads the flag at import: set both)."""
    import ray._private.ray_constants as constants

    saved_env, saved_flag = os.environ.get(RAY_LOOPBACK_ENV), constants.ENABLE_RAY_CLUSTER
    os.environ[RAY_LOOPBACK_ENV], constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(RAY_LOOPBACK_ENV, None)
        else:
            os.environ[RAY_LOOPBACK_ENV] = saved_env


def _stop_head(head: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `ray start --block` (it stops the processes it started), then SIGKILL whatever
    is left in its process group. The head is reaped last, so its group id cannot be reused."""
    head.terminate()
    deadline = time.monotonic() + 60
    while os.waitid(os.P_PID, head.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)  # the group `start_new_session` made for the head
    head.wait()


# -- the engines behind one interface (scaler.sweep.engines.make_runner) ------------------------
@dataclasses.dataclass(frozen=True)
class RayRunner:
    """Each run a Ray task on the cluster at `address` (else RAY_ADDRESS)."""

    resources: dict[str, Any]
    address: str | None = None
    name: str = "ray"

    def run(self, configs: list[dict[str, Any]], store_root: str, retries: int = 0,
            on_outcome: Progress = None, on_step: Progress = None, stacks: Stacks | None = None) -> list[dict[str, Any]]:
        return run_on_ray(configs, store_root, self.resources, retries, address=self.address, progress=on_outcome,
                          stacks=stacks)


@dataclasses.dataclass(frozen=True)
class SlurmRunner:
    """One submitit job array on SLURM (or submitit's local/debug executors)."""

    resources: dict[str, Any]
    cluster: str | None = None
    name: str = "slurm"

    def run(self, configs: list[dict[str, Any]], store_root: str, retries: int = 0,
            on_outcome: Progress = None, on_step: Progress = None, stacks: Stacks | None = None) -> list[dict[str, Any]]:
        return run_on_slurm(configs, store_root, self.resources, retries, cluster=self.cluster, progress=on_outcome,
                            stacks=stacks)
