"""Data parallelism over local devices (scaler/train/step.py: a 1-D `data` mesh over the batch
axis): a run, and a stack of runs, trained on 4 CPU host devices give the losses of the same
training on one device, to fp32 rounding (the gradient's sum is split in another order). Each
device count runs in a fresh interpreter, since XLA fixes the host devices when JAX starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

TRAIN = """
import json, sys
import jax
from scaler.config import parse_run_config
from scaler.store import Store
from scaler.train import loop, step

assert jax.device_count() == {devices}
mesh = step.data_mesh(8)
assert (mesh.devices.size if mesh is not None else 1) == {devices}
store = Store(sys.argv[1])
configs = [parse_run_config(json.loads(raw)) for raw in sys.argv[2:]]
solo = loop.train_run(configs[0], store)
stack = loop.train_stack(configs, Store(sys.argv[1] + "-stack"))
out = {{"solo": store.read_metrics(solo.run_id).to_dict(as_series=False),
        "stack": [Store(sys.argv[1] + "-stack").read_metrics(r.run_id).to_dict(as_series=False) for r in stack]}}
print(json.dumps(out))
"""


def train_on(devices: int, folder: Path) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    configs = [tiny_config(seed=1), tiny_config(seed=2, lr=3e-3)]
    done = subprocess.run([sys.executable, "-c", TRAIN.format(devices=devices), str(folder / f"d{devices}"),
                           *[c.model_dump_json() for c in configs]], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    return {devices: train_on(devices, tmp_path_factory.mktemp(f"devices{devices}")) for devices in (1, 4)}


@pytest.mark.parametrize("what", ["solo", "stack"])
def test_four_devices_give_the_losses_of_one(what: str, trained: dict[int, dict]) -> None:
    one, four = trained[1][what], trained[4][what]
    for a, b in zip([one] if what == "solo" else one, [four] if what == "solo" else four):
        assert a["step"] == b["step"]
        for column in ("train_loss", "grad_norm", "eval_heldout_loss"):
            np.testing.assert_allclose(b[column], a[column], rtol=5e-5, err_msg=column)
