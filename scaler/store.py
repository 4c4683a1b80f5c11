"""The results store: one folder per run, atomic writes, loaded as polars frames.

Layout, under a root that is a local path or an fsspec URL (gs://, s3://, memory://)::

    <root>/runs/<run_id>/
        config.json       {"run_id": ..., "config": {...}}, the resolved RunConfig; never changes
        status.json       {"state": pending|running|done|failed|diverged, "attempts", "host",
                           "heartbeat", "created_at", "updated_at", ...}
        metrics.parquet   step, tokens, flops, train_loss, lr, grad_norm, tokens_per_s,
                          eval_<set>_loss (nats), eval_<set>_bpb; one row per logged step
        run_info.json     extra files written with write_json (e.g. n_params, flops_per_token)
        ckpt/             orbax checkpoints, written by the trainer (see ckpt_dir)
        claim.json        {"owner", "host", "pid", "claimed_at", "heartbeat"} while a worker holds the run

Claims: a worker takes a run by creating claim.json exclusively (O_EXCL on local disks, mode "xb"
through fsspec), keeps its heartbeat fresh, and deletes it when the run ends. A claim whose
heartbeat is older than `stale_after_s` (or whose process on this host is gone) belongs to a dead
worker: the first worker to create claim.json.takeover-<hash of that claim> replaces it. A worker
that finds its claim taken over stops. So two submitters, or a submitter and a cluster task, never
train the same run at once.

A run id (`scaler.config.run_id_of`) is the first 16 hex characters of the sha256 of the canonical
JSON of its config, so a re-submitted sweep finds its runs again. Every file is written under a
temporary name and renamed over the real one, so a reader sees the old file or the new one, never
half of either. All file access goes through fsspec; a non-local root needs only its fsspec
package (gcsfs, s3fs).
JSON files are strict JSON: NaN and infinities are refused (ValueError), write null instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
import polars as pl
from fsspec.implementations.local import LocalFileSystem

from scaler.config import canonical_json
from scaler.errors import StoreError

RUN_STATES = ("pending", "running", "done", "failed", "diverged")
CORRUPT = "corrupt"  # not written to status.json: a run with an unreadable file (Store.problems)

# One lock per process for status read-modify-write, so a heartbeat thread cannot undo a state
# change made by the main thread. (Module-level, so Store objects stay picklable for Ray.)
_STATUS_LOCK = threading.RLock()


def _number(value: Any, default: float) -> float:
    """A JSON number as a float; `default` for anything else (a hand-edited or damaged file)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _alive(claim: Mapping[str, Any]) -> bool:
    """False only when the claim's process is known dead (same host, no such pid)."""
    if claim.get("host") != socket.gethostname() or not isinstance(claim.get("pid"), int):
        return True
    try:
        os.kill(claim["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(claim["pid"])


def _stale(claim: Mapping[str, Any], stale_after_s: float) -> bool:
    """A claim nobody holds any more: its heartbeat is `stale_after_s` old, or its process is dead."""
    return time.time() - _number(claim.get("heartbeat"), 0.0) >= stale_after_s or not _alive(claim)


def _zombie(pid: int) -> bool:
    """A process that has exited but not been reaped (its parent was killed and nothing has reaped
    it yet). Told by psutil where it is installed (it comes with Ray); else assumed not."""
    try:
        import psutil
    except ImportError:
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def atomic_write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` to a temporary sibling of `path`, then rename it over `path`.

    On a local disk the rename is os.replace, which is atomic. On object stores a single object
    write is already all-or-nothing, and the move only publishes a complete object.
    The temporary file is removed if anything fails.
    """
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        if _is_local(fs):
            fs.makedirs(os.path.dirname(path), exist_ok=True)
            fs.pipe_file(tmp, data)
            os.replace(tmp, path)
        else:
            fs.pipe_file(tmp, data)
            fs.mv(tmp, path)
    except BaseException as err:
        try:
            fs.rm(tmp)
        except (FileNotFoundError, OSError):
            pass
        if isinstance(err, OSError):  # a full disk, a read-only or vanished folder: say where and why
            raise StoreError(f"{path}: cannot write ({err.strerror or err})") from err
        raise


def _dump_json(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def _check_name(name: str, what: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"bad {what}: {name!r}")
    return name


def filesystem(url: str, what: str = "store") -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec's filesystem and path for `url`; a missing filesystem package or an unknown protocol
    is a StoreError that says which package to install."""
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as err:  # e.g. "Install s3fs to access S3"
        raise StoreError(f"{what} {url}: its filesystem needs a package that is not installed ({err})") from None
    except ValueError as err:  # "Protocol not known: ..."
        raise StoreError(f"{what} {url}: {err}") from None


def check_writable_folder(url: str, what: str) -> None:
    """Fail before any work when `url`, a local folder, cannot be created or written: one
    StoreError naming `what`, the path and the cause. The folder is created (empty) if missing;
    remote URLs are left to the first write."""
    fs, path = filesystem(url, what)
    if not _is_local(fs):
        return
    probe = os.path.join(path, f".scaler-write-test-{uuid.uuid4().hex}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as err:
        cause = err.strerror or type(err).__name__
        blocker = next((p for p in _ancestors(path) if os.path.exists(p) and not os.path.isdir(p)), None)
        if blocker is not None:
            cause = f"{blocker} is a file, not a folder"
        raise StoreError(f"{what} {url}: cannot write there ({cause})") from None


def _ancestors(path: str) -> list[str]:
    path = os.path.abspath(path)
    out = [path]
    while os.path.dirname(path) != path:
        path = os.path.dirname(path)
        out.append(path)
    return out


class Store:
    """Reads and writes run folders under `root` (a local path or an fsspec URL)."""

    def __init__(self, root: str) -> None:
        self.root: str = str(root).rstrip("/") or "/"
        self.fs, self._base = filesystem(self.root)

    # -- paths ---------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> str:
        return f"{self.root}/runs/{_check_name(run_id, 'run id')}"

    def ckpt_dir(self, run_id: str) -> str:
        """Where orbax writes: an absolute OS path for local roots, else the full URL."""
        if _is_local(self.fs):
            return os.path.abspath(self._path(run_id, "ckpt"))
        return f"{self.run_dir(run_id)}/ckpt"

    def tracker_dir(self, run_id: str) -> str:
        """Where the run's trackers write (scaler/train/trackers.py): like ckpt_dir, an OS path for local roots."""
        if _is_local(self.fs):
            return os.path.abspath(self._path(run_id, "trackers"))
        return f"{self.run_dir(run_id)}/trackers"

    def _path(self, run_id: str, name: str = "") -> str:
        """Filesystem path (protocol stripped) of a run folder or a file in it."""
        path = f"{self._base}/runs/{_check_name(run_id, 'run id')}"
        return f"{path}/{_check_name(name, 'file name')}" if name else path

    # -- generic files -------------------------------------------------------------------------
    def _read_json_file(self, path: str) -> Any | None:
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreError(f"{path}: not valid JSON ({e})") from e

    def write_json(self, run_id: str, name: str, obj: Any) -> None:
        atomic_write_bytes(self.fs, self._path(run_id, name), _dump_json(obj))

    def read_json(self, run_id: str, name: str) -> Any | None:
        """The parsed file, or None if it does not exist."""
        return self._read_json_file(self._path(run_id, name))

    def write_sweep_json(self, name: str, obj: Any) -> None:
        """A file of the whole store (e.g. fit.json), beside `runs/`; atomic like a run's files."""
        atomic_write_bytes(self.fs, f"{self._base}/{_check_name(name, 'file name')}", _dump_json(obj))

    def read_sweep_json(self, name: str) -> Any | None:
        """A file of the whole store, parsed, or None if it does not exist."""
        return self._read_json_file(f"{self._base}/{_check_name(name, 'file name')}")

    # -- runs and configs ----------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        """Sorted ids of run folders that hold a config.json (half-created folders are skipped)."""
        runs = f"{self._base}/runs"
        try:
            entries = self.fs.ls(runs, detail=True)
        except FileNotFoundError:
            return []
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"]
        return sorted(n for n in names if self.fs.exists(f"{runs}/{n}/config.json"))

    def write_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Write config.json once; the same content again is a no-op, different content raises."""
        payload = {"run_id": run_id, "config": dict(config)}
        existing = self._read_json_file(self._path(run_id, "config.json"))
        if existing is not None:
            if canonical_json(existing) != canonical_json(payload):
                raise StoreError(
                    f"{self._path(run_id, 'config.json')}: already holds a different config "
                    f"(run id collision or corruption)"
                )
            return
        atomic_write_bytes(self.fs, self._path(run_id, "config.json"), _dump_json(payload))

    def read_config(self, run_id: str) -> dict[str, Any]:
        path = self._path(run_id, "config.json")
        doc = self._read_json_file(path)
        if doc is None:
            raise StoreError(f"{path}: missing")
        if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
            raise StoreError(f"{path}: expected an object with a 'config' object")
        return doc["config"]

    # -- status --------------------------------------------------------------------------------
    def read_status(self, run_id: str) -> dict[str, Any]:
        """The run's status; {"state": "pending"} if none was written yet."""
        path = self._path(run_id, "status.json")
        doc = self._read_json_file(path)
        if doc is None:
            return {"state": "pending"}
        if not isinstance(doc, dict) or doc.get("state") not in RUN_STATES:
            raise StoreError(f"{path}: expected an object whose 'state' is one of {RUN_STATES}")
        return doc

    def write_status(self, run_id: str, state: str, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json and set state, updated_at and host; return the result."""
        if state not in RUN_STATES:
            raise ValueError(f"state must be one of {RUN_STATES}, got {state!r}")
        with _STATUS_LOCK:
            now = time.time()
            status = {**self.read_status(run_id), **fields}
            status.update(state=state, updated_at=now, host=socket.gethostname())
            status.setdefault("created_at", now)
            self.write_json(run_id, "status.json", status)
        return status

    def heartbeat(self, run_id: str) -> None:
        """Record that the run is alive: status.json "heartbeat" = time.time()."""
        with _STATUS_LOCK:
            status = self.read_status(run_id)
            status["heartbeat"] = time.time()
            self.write_json(run_id, "status.json", status)

    # -- claims --------------------------------------------------------------------------------
    def _create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` holding `data` unless it exists; False if it did. On a local disk the file
        appears whole (a hard link to a written temporary file), so a kill never leaves an empty
        claim that would block the run until it goes stale."""
        if _is_local(self.fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.EOPNOTSUPP):
                    raise
                return self._create_exclusive_in_place(path, data)  # a filesystem without hard links
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        try:
            with self.fs.open(path, "xb") as f:
                f.write(data)
            return True
        except FileExistsError:
            return False

    @staticmethod
    def _create_exclusive_in_place(path: str, data: bytes) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def read_claim(self, run_id: str) -> dict[str, Any] | None:
        """The claim, or None when there is none or it is not a claim object (being written, torn,
        or garbage such as `[]`: `claim` takes such a file over once it is stale)."""
        try:
            held = self._read_json_file(self._path(run_id, "claim.json"))
        except StoreError:
            return None
        return held if isinstance(held, dict) else None

    def _raw(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def _age_s(self, path: str) -> float:
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return 0.0
        mtime = info.get("mtime") or info.get("created") or time.time()
        return time.time() - float(getattr(mtime, "timestamp", lambda: mtime)())

    def claim(self, run_id: str, owner: str, stale_after_s: float = 120.0) -> bool:
        """Take the run for `owner`; False if a live worker holds it.

        A stale claim (old heartbeat, or its process on this host gone, or a torn file older than
        `stale_after_s`) is taken over by whoever first creates `claim.json.takeover-<hash of the
        stale content>`; the winner checks the claim is still that content, then replaces it."""
        now = time.time()
        payload = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "claimed_at": now, "heartbeat": now}
        path, data = self._path(run_id, "claim.json"), _dump_json(payload)
        if self._create_exclusive(path, data):
            return True
        raw = self._raw(path)
        if raw is None:
            return self._create_exclusive(path, data)  # released in between
        try:
            held = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            held = None
        if not isinstance(held, dict):  # torn or garbage: stale once it is old enough
            held = None
        if held is None:
            if self._age_s(path) < stale_after_s:
                return False  # being written
        elif not _stale(held, stale_after_s):
            return False
        lock = f"{path}.takeover-{hashlib.sha256(raw).hexdigest()[:16]}"
        if not self._create_exclusive(lock, data) or self._raw(path) != raw:
            return False  # another taker won, or the owner came back
        atomic_write_bytes(self.fs, path, data)
        return True

    def claim_is_live(self, run_id: str) -> bool:
        """Whether a worker may still hold the run: a claim exists and its process is not known to
        be dead (on this host a dead pid is known at once; elsewhere the heartbeat goes stale)."""
        held = self.read_claim(run_id)
        return held is not None and _alive(held)

    def remove_dead_claim(self, run_id: str, stale_after_s: float = 120.0) -> None:
        """Delete a claim whose worker is gone (a dead process on this host, or a heartbeat older
        than `stale_after_s`): what a worker killed after finishing its run, before releasing it,
        leaves behind. A live claim is left alone."""
        held = self.read_claim(run_id)
        if held is None or not _stale(held, stale_after_s):
            return
        try:
            self.fs.rm(self._path(run_id, "claim.json"))
        except FileNotFoundError:
            pass

    def refresh_claim(self, run_id: str, owner: str) -> bool:
        """Renew the heartbeat of our claim; False if it is no longer ours (taken over)."""
        held = self.read_claim(run_id)
        if not held or held.get("owner") != owner:
            return False
        atomic_write_bytes(self.fs, self._path(run_id, "claim.json"), _dump_json({**held, "heartbeat": time.time()}))
        return True

    def release(self, run_id: str, owner: str) -> None:
        held = self.read_claim(run_id)
        if held and held.get("owner") == owner:
            path = self._path(run_id, "claim.json")
            for stale_lock in self.fs.glob(f"{path}.takeover-*"):
                self.fs.rm(stale_lock)
            try:
                self.fs.rm(path)
            except FileNotFoundError:
                pass

    # -- damaged files -------------------------------------------------------------------------
    def problems(self, run_id: str) -> list[tuple[str, str]]:
        """The run's files that cannot be read, as (file name, what is wrong); [] for a sound run."""
        has_config = self.fs.exists(self._path(run_id, "config.json"))  # none: half-created, or set aside
        checks = {"config.json": lambda: self.read_config(run_id) if has_config else None,
                  "status.json": lambda: self.read_status(run_id),
                  "run_info.json": lambda: self.read_json(run_id, "run_info.json"),
                  "metrics.parquet": lambda: self.read_metrics(run_id)}
        found = []
        for name, read in checks.items():
            try:
                read()
            except StoreError as err:
                found.append((name, str(err)))
        return found

    def state_of(self, run_id: str) -> str:
        """status.json's state, or "corrupt" when one of the run's files cannot be read."""
        return CORRUPT if self.problems(run_id) else self.read_status(run_id)["state"]

    def set_aside(self, run_id: str) -> list[str]:
        """Move the run's unreadable files aside (renamed `<name>.corrupt-<unix time>`, never
        deleted), so the run can be trained again from what is sound; the new names."""
        moved = []
        stamp = int(time.time())
        for name, _ in self.problems(run_id):
            source = self._path(run_id, name)
            target = f"{source}.corrupt-{stamp}"
            self.fs.mv(source, target)
            moved.append(target)
        return moved

    # -- metrics -------------------------------------------------------------------------------
    def write_metrics(self, run_id: str, metrics: pl.DataFrame) -> None:
        """Replace metrics.parquet with `metrics` (whole file, atomically)."""
        buf = io.BytesIO()
        metrics.write_parquet(buf)
        atomic_write_bytes(self.fs, self._path(run_id, "metrics.parquet"), buf.getvalue())

    def read_metrics(self, run_id: str) -> pl.DataFrame:
        """The run's metrics; an empty frame if none were written."""
        path = self._path(run_id, "metrics.parquet")
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return pl.DataFrame()
        try:
            return pl.read_parquet(io.BytesIO(raw))
        except Exception as e:  # polars raises several error types for a bad file
            raise StoreError(f"{path}: not a readable parquet file ({e})") from e


# -- loading a whole store as frames -----------------------------------------------------------
def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"d_model": 64}} -> {"model_d_model": 64}; lists become JSON strings."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}_{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, sort_keys=True)
        else:
            flat[name] = value
    return flat


def _final_metrics(metrics: pl.DataFrame) -> dict[str, Any]:
    """final_step/tokens/flops from the row with the largest step; final_<eval_*|train_loss*>
    from the last row where that column is non-null."""
    final: dict[str, Any] = {"final_step": None, "final_tokens": None, "final_flops": None}
    if metrics.height == 0:
        return final
    if "step" in metrics.columns:
        metrics = metrics.sort("step")
    last = metrics.row(-1, named=True)
    for col in ("step", "tokens", "flops"):
        final[f"final_{col}"] = last.get(col)
    for col in metrics.columns:
        if col.startswith(("eval_", "train_loss")):
            values = metrics[col].drop_nulls()
            final[f"final_{col}"] = values[-1] if len(values) else None
    return final


def _as_store(root: str | Store) -> Store:
    return root if isinstance(root, Store) else Store(root)


def load_runs(root: str | Store) -> pl.DataFrame:
    """One row per run: run_id, state, flattened config, run_info.json scalars, final metrics.

    On a name clash the earlier source wins (run_id/state, then config, run_info, metrics). A run
    with an unreadable file is a row with state "corrupt" and `problem` (the file and the cause):
    the good runs come back whole, and the problems with them.
    """
    store = _as_store(root)
    rows = []
    for run_id in store.run_ids():
        try:
            row: dict[str, Any] = {"run_id": run_id, "state": store.read_status(run_id)["state"]}
            info = store.read_json(run_id, "run_info.json")
            scalars = {k: v for k, v in (info or {}).items() if isinstance(v, (bool, int, float, str))}
            parts = (_flatten(store.read_config(run_id)), scalars, _final_metrics(store.read_metrics(run_id)))
        except StoreError as err:  # one bad file never hides the other runs: this one is "corrupt"
            rows.append(pl.DataFrame({"run_id": [run_id], "state": [CORRUPT], "problem": [str(err)]}))
            continue
        for part in parts:
            for key, value in part.items():
                row.setdefault(key, value)
        rows.append(pl.DataFrame({k: [v] for k, v in row.items()}))
    if not rows:
        return pl.DataFrame(schema={"run_id": pl.String, "state": pl.String})
    return pl.concat(rows, how="diagonal_relaxed")


def load_curves(root: str | Store) -> pl.DataFrame:
    """All runs' metrics stacked, run_id first, sorted by run_id and step."""
    store = _as_store(root)
    frames = []
    for run_id in store.run_ids():
        try:
            metrics = store.read_metrics(run_id)
        except StoreError:
            continue  # a corrupt run (load_runs reports it)
        if metrics.height:
            frames.append(metrics.select(pl.lit(run_id).alias("run_id"), pl.all()))
    if not frames:
        return pl.DataFrame(schema={"run_id": pl.String, "step": pl.Int64})
    curves = pl.concat(frames, how="diagonal_relaxed")
    return curves.sort(["run_id", "step"] if "step" in curves.columns else "run_id")
