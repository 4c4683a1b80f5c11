"""The Python API as a notebook uses it: store -> fit -> recommend -> report, with public names only
(`import scaler`, nothing from scaler.cli), and the store's fit.json cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import scaler

TRUE = {"E": 1.8, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28}
KAPPA = {"raw": 1.0, "clean": 1.6}
RAW_BYTES, CLEAN_BYTES = 10**12, 5 * 10**11


def _tier(base: str | None, steps: list[str], n_bytes: int) -> dict:
    return {"base": base, "steps": steps, "synthetic": False, "documents": n_bytes // 10**4, "bytes": n_bytes,
            "train_documents": n_bytes // 10**4, "train_bytes": n_bytes, "yield_bytes": n_bytes / RAW_BYTES,
            "bytes_train_tokens": n_bytes, "bytes_yield": n_bytes / RAW_BYTES}


def _count(n_bytes: int) -> dict:
    return {"tokens": n_bytes, "bytes": n_bytes, "documents": n_bytes // 10**4, "bytes_per_token": 1.0}


REPORT = {  # a data build's report.json as `scaler data build` writes it, at a made-up scale (1 TB raw)
    "build_id": "synthetic", "eval_tier": "clean", "seconds": 10.0, "bytes_read": RAW_BYTES, "mb_per_s": 1e5,
    "sources": {"dir": {"ok": {"files": RAW_BYTES // 10**4, "bytes": RAW_BYTES}}},
    "split": {"train": {"documents": 10**8, "bytes": RAW_BYTES, "packages": 1000}},
    "steps": [{"tier": "clean", "step": "perplexity", "documents_in": 10**8, "documents_out": 5 * 10**7,
               "bytes_in": RAW_BYTES, "bytes_out": CLEAN_BYTES, "seconds": 10.0, "flops": 1e15,
               "removed": {"high-perplexity": {"documents": 5 * 10**7, "bytes": CLEAN_BYTES}}, "examples": {},
               "notes": {}}],
    "tiers": {"raw": _tier(None, [], RAW_BYTES), "clean": _tier("raw", ["perplexity"], CLEAN_BYTES)},
    "tokenizers": {"bytes": {"vocab_size": 257, "eos_id": 256, "seconds": 1.0, "eval": {},
                             "tiers": {"raw": _count(RAW_BYTES), "clean": _count(CLEAN_BYTES)}}},
}


def _loss(n: float, d: float) -> float:
    return TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]


def make_store(root: Path, seed: int = 0) -> scaler.Store:
    """2 tiers x 3 budgets x 4 sizes whose final losses follow a known law (clean: kappa 1.6)."""
    store, rng = scaler.Store(str(root)), np.random.default_rng(seed)
    for tier, kappa in KAPPA.items():
        for c in (1e15, 1e16, 1e17):
            for n in (1e6, 3e6, 1e7, 3e7):
                d = int(c / (6 * n))
                loss = _loss(n, kappa * d) * (1 + 0.002 * rng.standard_normal())
                run_id = f"{tier}-{int(np.log10(c))}-{int(np.log10(n) * 10)}"
                store.write_config(run_id, {"train": {"tokens": d, "seed": 0}, "data": {"mix": {tier: 1.0}}})
                store.write_json(run_id, "run_info.json", {"n_params": int(n), "flops": 6.0 * n * d})
                store.write_metrics(run_id, pl.DataFrame({"step": [1, 2], "tokens": [d // 2, d],
                                                          "eval_heldout_loss": [loss + 0.1, loss]}))
                store.write_status(run_id, "done")
    return store


def test_notebook_path_store_fit_recommend_report(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "report.json").write_text(json.dumps(REPORT))

    runs = scaler.load_runs(store)
    assert runs.height == 24 and set(runs["state"]) == {"done"}
    assert scaler.load_curves(store).height == 48
    data = scaler.from_store(store.root)
    fitted = scaler.fit_sweep(data, n_bootstrap=50, reference="raw")
    assert set(fitted["groups"]) == {"raw", "clean"}
    quality = fitted["quality"]
    assert quality["spec"]["reference"] == "raw"
    assert quality["derived"]["kappa_clean"] == pytest.approx(1.6, rel=0.1)
    lo, hi = quality["intervals"]["kappa_clean"]
    assert lo < quality["derived"]["kappa_clean"] < hi
    assert len(quality["bootstrap_theta"]) == 50

    rec = scaler.recommend(fitted, data_dir, budget_flops=1e19)
    assert rec.verdict in ("size", "cleaning") and 0.0 <= rec.probability <= 1.0
    assert rec.n_samples == 50
    assert any("1e+17" in line or "100x" in line or "extrapolat" in line for line in rec.lines())

    out = scaler.build_report(store.root, fitted, REPORT, tmp_path / "report", title="api",
                              recommendation=rec.to_json(), target_flops=1e19)
    page = Path(out["html"]).read_text()
    assert page.startswith("<!DOCTYPE html>") and f'<p class="headline"><strong>{rec.verdict_text[0].upper()}' in page
    curves = rec.crossover["curves"]  # the crossover figure: each tier's best loss and P(cleaning wins) by budget
    assert set(curves["best"]) == {"raw", "clean"} and len(curves["p_cleaning"]) == len(curves["budgets"])
    assert out["crossover"].exists()


def test_one_law_over_a_table(tmp_path: Path) -> None:
    n = np.repeat([1e6, 3e6, 1e7, 3e7], 3)
    d = np.tile([1e8, 1e9, 1e10], 4)
    csv = tmp_path / "runs.csv"
    pl.DataFrame({"params": n, "tokens": d, "loss": [_loss(a, b) for a, b in zip(n, d, strict=True)]}).write_csv(csv)
    result = scaler.fit(scaler.load_table(csv, n="params", d="tokens", loss="loss"), n_bootstrap=0)
    assert result["law"] == "chinchilla"
    assert result["derived"]["alpha"] == pytest.approx(TRUE["alpha"], rel=1e-3)
    assert scaler.laws.chinchilla().name == "chinchilla"


def test_fit_store_reuses_fit_json_only_when_its_key_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scaler import session

    store = make_store(tmp_path / "store")
    calls: list[tuple] = []
    real = session.sweep_json

    def counting(*args, **kwargs):
        calls.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "sweep_json", counting)
    first = scaler.fit_store(store, n_bootstrap=0)
    assert json.loads((tmp_path / "store" / "fit.json").read_text())["key"] == first["key"]
    assert scaler.fit_store(store, n_bootstrap=0) == first and len(calls) == 1  # same key: reused
    scaler.fit_store(store, n_bootstrap=3)  # bootstrap count
    scaler.fit_store(store, n_bootstrap=3, seed=1)  # seed
    scaler.fit_store(store, n_bootstrap=3, seed=1, reference="clean")  # reference tier
    assert len(calls) == 4
    scaler.fit_store(store, n_bootstrap=3, seed=1, reference="clean", law="mixing")  # the law
    scaler.fit_store(store, n_bootstrap=3, seed=1, reference="clean")
    assert len(calls) == 6
    run_id = "raw-15-60"
    metrics = store.read_metrics(run_id).with_columns(pl.col("eval_heldout_loss") + 0.01)
    store.write_metrics(run_id, metrics)  # a retrained run: another final loss
    scaler.fit_store(store, n_bootstrap=3, seed=1, reference="clean")
    assert len(calls) == 7
    for other in store.run_ids():  # a second eval set, 0.05 nats above the first
        store.write_metrics(other, store.read_metrics(other).with_columns(
            eval_other_loss=pl.col("eval_heldout_loss") + 0.05))
    scaler.fit_store(store, n_bootstrap=3, seed=1, reference="clean", eval_set="other")
    assert len(calls) == 8
    (tmp_path / "store" / "fit.json").write_text("{not json")
    scaler.fit_store(store, n_bootstrap=3, seed=1, reference="clean")  # unreadable: refitted, replaced
    assert len(calls) == 9
    saved = json.loads((tmp_path / "store" / "fit.json").read_text())
    assert saved["key"]["reference"] == saved["quality"]["spec"]["reference"] == "clean"


def test_quality_reference_is_explicit_whatever_the_order(tmp_path: Path) -> None:
    data = scaler.from_store(make_store(tmp_path / "store").root)
    as_raw = scaler.fit(data, "quality", n_bootstrap=0, reference="raw")
    as_clean = scaler.fit(data, "quality", n_bootstrap=0, reference="clean")
    assert as_raw["derived"]["kappa_clean"] == pytest.approx(1.6, rel=0.1)
    assert as_clean["derived"]["kappa_raw"] == pytest.approx(1 / 1.6, rel=0.1)
    with pytest.raises(scaler.ConfigError, match="reference 'web'"):
        scaler.fit(data, "quality", n_bootstrap=0, reference="web")


def test_the_code_task_is_fitted_beside_heldout_and_the_report_says_whether_the_verdicts_agree(tmp_path: Path) -> None:
    """Runs that record the code task's loss (humaneval_solution) whose tiers rank the other way:
    its fit is cached apart from fit.json, and the report names the disagreement."""
    store = make_store(tmp_path / "store")
    task_kappa = {"raw": 1.0, "clean": 0.4}  # cleaning that hurts the code task
    for run_id in scaler.load_runs(store)["run_id"].to_list():
        tier = run_id.split("-")[0]
        metrics = pl.read_parquet(Path(store.run_dir(run_id)) / "metrics.parquet")
        n = json.loads((Path(store.run_dir(run_id)) / "run_info.json").read_text())["n_params"]
        d = int(metrics["tokens"][-1])
        task = 0.5 + _loss(n, task_kappa[tier] * d)
        store.write_metrics(run_id, metrics.with_columns(pl.Series("eval_humaneval_solution_loss", [task + 0.1, task])))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "report.json").write_text(json.dumps(REPORT))
    heldout = scaler.fit_store(store, n_bootstrap=40)
    task = scaler.fit_store(store, eval_set="humaneval_solution", n_bootstrap=40)
    assert json.loads((tmp_path / "store" / "fit.json").read_text())["key"]["eval_set"] == "heldout"
    assert json.loads((tmp_path / "store" / "fit-humaneval_solution.json").read_text())["key"]["eval_set"] \
        == "humaneval_solution"
    rec, task_rec = (scaler.recommend(f, data_dir, budget_flops=1e18) for f in (heldout, task))
    assert (rec.winner, task_rec.winner) == ("clean", "raw") and task_rec.eval_set == "humaneval_solution"
    assert task_rec.lines()[0].startswith("loss on humaneval_solution")
    out = scaler.build_report(store.root, heldout, REPORT, tmp_path / "report", title="api",
                              recommendation=rec.to_json(), target_flops=1e18,
                              task_recommendation=task_rec.to_json())
    md = Path(out["markdown"]).read_text()
    assert "## The code task" in md and "The two verdicts disagree" in md and "spend on model size" in md
