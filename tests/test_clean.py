"""Tests for scaler.data.clean: each rule on crafted files, then a real slice of the stdlib."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from scaler.data.clean import (
    CorruptParams,
    DecontaminateParams,
    ExactDedupParams,
    HeuristicsParams,
    MinSizeParams,
    corrupt,
    decontaminate,
    exact_dedup,
    heuristics,
    load_humaneval,
    min_size,
)
from scaler.data.documents import DOC_SCHEMA, REMOVED_SCHEMA, StepOutput, content_id, make_documents

NORMAL = '''"""Small helpers for parsing configuration values."""

from __future__ import annotations

import os


def parse_bool(value: str) -> bool:
    """True for the usual spellings of yes."""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        return default


class Settings:
    def __init__(self, debug: bool = False, workers: int = 1) -> None:
        self.debug = debug
        self.workers = workers

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(parse_bool(os.environ.get("DEBUG", "")), env_int("WORKERS", 1))
'''


def removed_by_path(docs: pl.DataFrame, out: StepOutput) -> dict[str, tuple[str, str]]:
    """path -> (reason, detail) of the removed documents (texts are distinct in these tests)."""
    path_of = dict(zip(docs["id"], docs["path"], strict=True))
    return {path_of[i]: (reason, detail) for i, reason, detail in out.removed.iter_rows()}


def check_contract(docs: pl.DataFrame, out: StepOutput) -> None:
    assert dict(out.kept.schema) == DOC_SCHEMA
    assert dict(out.removed.schema) == REMOVED_SCHEMA
    assert out.kept.height + out.removed.height == docs.height
    kept_paths = out.kept["path"].to_list()
    assert kept_paths == [p for p in docs["path"] if p in set(kept_paths)]  # input order


def run_one(step, params, text: str) -> tuple[str | None, str | None]:
    """(reason, detail) for one document, (None, None) when kept."""
    docs = make_documents([{"text": text}])
    out = step(docs, params)
    check_contract(docs, out)
    if out.removed.height == 0:
        return None, None
    return out.removed["reason"][0], out.removed["detail"][0]


# -- min-size ---------------------------------------------------------------------------------
def test_min_size_reasons():
    docstring_only = (
        '#!/usr/bin/env python\n# Copyright 2024 Someone\n"""A package.\n\nWith a long docstring.\n"""\n'
        "\n# nothing else\n"
    )
    texts = {
        "empty.py": "",
        "blank.py": "  \n\n\t\n",
        "init.py": "from .core import main\n",
        "docstring.py": docstring_only,
        "two.py": "import logging\nlogger = logging.getLogger(__name__)  # module logger\n",
        "normal.py": NORMAL,
        "three.py": '"""Doc."""\nimport logging\n\nlog = logging.getLogger("x")\nlog.setLevel(logging.INFO)\n',
    }
    docs = make_documents([{"text": t, "path": p} for p, t in texts.items()])
    out = min_size(docs, MinSizeParams())
    check_contract(docs, out)
    got = removed_by_path(docs, out)
    assert got["empty.py"][0] == got["blank.py"][0] == "empty"
    assert got["init.py"] == ("too-small", "23 bytes < 50")
    assert got["docstring.py"] == ("too-small", "0 code lines < 3")
    assert got["two.py"] == ("too-small", "2 code lines < 3")
    assert out.kept["path"].to_list() == ["normal.py", "three.py"]
    lenient = min_size(docs, MinSizeParams(min_bytes=0, min_code_lines=0))
    assert lenient.removed["reason"].to_list() == ["empty"] * 2


# -- heuristics -------------------------------------------------------------------------------
def code_lines(n: int) -> str:
    return "".join(f"value_{i} = compute(value_{i - 1}, step={i})\n" for i in range(1, n + 1))


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
BASE64_BLOB = "\n".join("".join(B64[(i * 7 + j) % 64] for j in range(76)) for i in range(30))
LICENCE = "".join(f"# comment line {i} of a long licence header\n" for i in range(20))
IMPORTS = "".join(f"from pkg.mod{i} import name{i}\n" for i in range(15))
PRINTS = "def main():\n" + "".join(f"    print('step {i}')\n" for i in range(8)) + "\nmain()\n"


@pytest.mark.parametrize(
    ("text", "reason", "detail_part"),
    [
        (NORMAL + "TABLE = '" + "ab " * 600 + "'\n", "long-line", "longest line 1,810 > 1,000"),
        ("".join(f"NAMES_{i} = ['{'x' * 140}']\n" for i in range(20)), "long-mean-line", "> 100"),
        ('BANNER = """\n' + ("-=" * 30 + "\n") * 30 + '"""\nprint(BANNER)\n', "low-alnum", "< 0.25"),
        (NORMAL + f'LOGO = """\n{BASE64_BLOB}\n"""\n', "encoded-data", "encoded run 2,311 chars > 1,024"),
        (
            "".join(f"ROW_{i} = '00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff'\n" for i in range(30)),
            "encoded-data",
            "encoded fraction",
        ),
        ("# Generated by the protocol buffer compiler.  DO NOT EDIT!\n" + NORMAL, "auto-generated", "DO NOT"),
        ('"""Settings.\n\nThis file is automatically generated."""\n' + NORMAL, "auto-generated", "automat"),
        ("# file generated by setuptools-scm\n" + NORMAL, "auto-generated", "generated by"),
        (NORMAL + "\ndef broken(:\n    pass\n", "syntax-error", "SyntaxError"),
        (NORMAL + "\nprint 'python 2'\n", "syntax-error", "print(...)? (line 32)"),
        (NORMAL.replace("import os", "import os\x00"), "syntax-error", "null"),  # ValueError in 3.11
        (LICENCE + code_lines(3), "too-many-comments", "comment lines 20/23 > 0.8"),
        (IMPORTS + code_lines(10), "too-many-imports", "import lines 15/25 > 0.3"),
        (PRINTS, "too-many-prints", "print lines 8/10 > 0.4"),
    ],
)
def test_heuristics_each_reason(text: str, reason: str, detail_part: str):
    got_reason, detail = run_one(heuristics, HeuristicsParams(), text)
    assert got_reason == reason
    assert detail_part in detail


def test_heuristics_keeps_normal_code():
    texts = [
        NORMAL,
        '"""AST nodes generated by the parser for the compiler."""\n' + NORMAL,  # a docstring, not a marker
        IMPORTS + "__all__ = ['name0']\n",  # a re-export module too small for the import rule
        "\ufeff" + NORMAL,  # byte-order mark
    ]
    docs = make_documents([{"text": t} for t in texts])
    out = heuristics(docs, HeuristicsParams())
    check_contract(docs, out)
    assert out.removed.height == 0
    assert out.kept.equals(docs)


def test_heuristics_first_failing_rule_wins_and_params_apply():
    both = NORMAL + "def broken(:\n" + "x = 1  # " + "y " * 600 + "\n"  # long line and a syntax error
    assert run_one(heuristics, HeuristicsParams(), both)[0] == "long-line"
    assert run_one(heuristics, HeuristicsParams(max_line_length=5000), both)[0] == "syntax-error"
    # too large to parse: judged by the other rules only
    unparsed = HeuristicsParams(max_line_length=5000, parse_max_bytes=100)
    assert run_one(heuristics, unparsed, both) == (None, None)
    imports = "".join(f"import mod{i}\n" for i in range(15)) + code_lines(10)
    assert run_one(heuristics, HeuristicsParams(import_min_code_lines=30), imports) == (None, None)


# -- exact-dedup ------------------------------------------------------------------------------
def test_exact_dedup_whitespace_changes_caught_distinct_kept():
    variant = NORMAL.replace("\n", "  \r\n").replace("    ", "\t") + "\n\n\n"
    other = NORMAL.replace("workers", "threads")
    docs = make_documents([
        {"text": NORMAL, "path": "a.py"},
        {"text": other, "path": "b.py"},
        {"text": variant, "path": "c.py"},
        {"text": NORMAL, "path": "d.py"},  # byte-identical copy: same id as a.py
    ])
    out = exact_dedup(docs, ExactDedupParams())
    check_contract(docs, out)
    assert out.kept["path"].to_list() == ["a.py", "b.py"]
    assert out.removed["reason"].to_list() == ["exact-duplicate"] * 2
    assert out.removed["id"].to_list() == [content_id(variant), content_id(NORMAL)]
    assert out.removed["detail"].to_list() == [content_id(NORMAL)] * 2
    exact = exact_dedup(docs, ExactDedupParams(normalise="none"))
    assert exact.kept["path"].to_list() == ["a.py", "b.py", "c.py"]


# -- decontaminate ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def humaneval() -> list[dict]:
    return load_humaneval()


def test_load_humaneval(humaneval):
    assert len(humaneval) == 164
    assert humaneval[0]["task_id"] == "HumanEval/0"
    assert {"task_id", "prompt", "canonical_solution", "test", "entry_point"} <= set(humaneval[0])


def test_decontaminate_catches_pasted_problems_keeps_lookalikes(humaneval):
    zero, five = humaneval[0], humaneval[5]
    # a pasted solution with its prompt inside an otherwise normal file, re-indented
    problem_zero = zero["prompt"] + zero["canonical_solution"]
    pasted = NORMAL + "\n\n" + problem_zero.replace("    ", "  ") + "\n" + code_lines(5)
    prompt_only = code_lines(3) + five["prompt"] + "    raise NotImplementedError\n"
    # same tokens, different punctuation spacing: not a substring, but every n-gram is shared
    reformatted = problem_zero.replace("(", " ( ")
    lookalike = (
        "from typing import List\n\n\ndef has_close_elements(values: List[float], limit: float) -> bool:\n"
        '    """Check whether any two values are closer than the limit."""\n'
        "    ordered = sorted(values)\n"
        "    return any(b - a < limit for a, b in zip(ordered, ordered[1:]))\n"
    )
    texts = {
        "pasted.py": pasted,
        "prompt.py": prompt_only,
        "ngram.py": reformatted,
        "lookalike.py": lookalike,
        "normal.py": NORMAL,
    }
    docs = make_documents([{"text": t, "path": p} for p, t in texts.items()])
    out = decontaminate(docs, DecontaminateParams())
    check_contract(docs, out)
    got = removed_by_path(docs, out)
    assert got["pasted.py"][0] == "humaneval-substring" and got["pasted.py"][1].startswith("HumanEval/0 ")
    assert got["prompt.py"] == ("humaneval-substring", "HumanEval/5 prompt")
    assert got["ngram.py"][0] == "humaneval-ngram" and "HumanEval/0" in got["ngram.py"][1]
    assert out.kept["path"].to_list() == ["lookalike.py", "normal.py"]
    solutions_only = DecontaminateParams(fields=("canonical_solution",), min_ngram_fraction=1.0)
    assert "prompt.py" in set(decontaminate(docs, solutions_only).kept["path"])


# -- corrupt ----------------------------------------------------------------------------------
def corpus(n: int) -> pl.DataFrame:
    rows = [{"text": NORMAL.replace("workers", f"workers_{i}"), "path": f"f{i}.py"} for i in range(n)]
    return make_documents(rows)


def test_corrupt_deterministic_synthetic_new_ids():
    docs = corpus(200)
    out = corrupt(docs, CorruptParams(fraction=0.5))
    again = corrupt(docs, CorruptParams(fraction=0.5))
    assert out.kept.equals(again.kept) and out.notes == again.notes
    assert dict(out.kept.schema) == DOC_SCHEMA and out.removed.height == 0
    assert out.kept["path"].to_list() == docs["path"].to_list()
    synthetic = out.kept.filter(pl.col("synthetic"))
    assert 60 < synthetic.height < 140
    assert sum(out.notes["corrupted"].values()) == synthetic.height
    assert all(v > 0 for v in out.notes["corrupted"].values())  # every kind drawn
    assert set(synthetic["id"]).isdisjoint(set(docs["id"]))
    for row in synthetic.iter_rows(named=True):
        assert row["id"] == content_id(row["text"])
        assert row["n_bytes"] == len(row["text"].encode())
        assert row["n_lines"] == make_documents([{"text": row["text"]}])["n_lines"][0]
    untouched = out.kept.filter(~pl.col("synthetic"))
    assert untouched.equals(docs.filter(pl.col("id").is_in(untouched["id"].implode())))
    other_seed = corrupt(docs, CorruptParams(fraction=0.5, seed=1)).kept
    assert not other_seed["synthetic"].equals(out.kept["synthetic"])


def test_corrupt_everything_changes_even_one_line_files():
    # shuffling the lines of a one-line file changes nothing: it must be garbled another way
    docs = make_documents([{"text": f"x_{i} = {i}", "path": f"one{i}.py"} for i in range(20)])
    out = corrupt(docs, CorruptParams(fraction=1.0, seed=3))
    assert out.kept["synthetic"].all()
    assert all(a != b for a, b in zip(out.kept["text"], docs["text"], strict=True))
    assert out.notes["corrupted"]["shuffled-lines"] == 0 and out.notes["fraction"] == 1.0


# -- params -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (MinSizeParams, {"min_lines": 3}),
        (HeuristicsParams, {"max_line_len": 10}),
        (HeuristicsParams, {"min_alnum_fraction": 1.5}),
        (ExactDedupParams, {"normalise": "tokens"}),
        (DecontaminateParams, {"fields": ("test",)}),
        (DecontaminateParams, {"fields": ()}),
        (CorruptParams, {"fraction": 0.0}),
        (CorruptParams, {"fraction": 1.5}),
        (CorruptParams, {"fraction": 0.5, "kind": "truncated"}),
        (CorruptParams, {}),
    ],
)
def test_bad_params_rejected(cls, kwargs):
    with pytest.raises(ValidationError):
        cls(**kwargs)


def test_params_frozen_and_documented():
    params = HeuristicsParams()
    with pytest.raises(ValidationError):
        params.max_line_length = 5  # type: ignore[misc]
    for cls in (MinSizeParams, HeuristicsParams, ExactDedupParams, DecontaminateParams, CorruptParams):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


# -- a real slice of the standard library -----------------------------------------------------
def test_stdlib_json_and_email_mostly_kept():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted([*(root / "json").glob("*.py"), *(root / "email").rglob("*.py")])
    rows = [{"text": f.read_text("utf-8"), "path": f.relative_to(root).as_posix()} for f in files]
    docs = make_documents(rows)
    assert docs.height >= 25
    sized = min_size(docs, MinSizeParams())
    cleaned = heuristics(sized.kept, HeuristicsParams())
    check_contract(sized.kept, cleaned)
    assert cleaned.kept.height >= 0.9 * docs.height, cleaned.removed
    assert "json/decoder.py" in set(cleaned.kept["path"]) and "email/message.py" in set(cleaned.kept["path"])
    assert decontaminate(cleaned.kept, DecontaminateParams()).removed.height == 0
    assert exact_dedup(cleaned.kept, ExactDedupParams()).removed.height == 0


def test_steps_keep_extra_columns():
    """The build adds a `row` column to the documents; every step must carry it through."""
    docs = corpus(6).with_row_index("row")
    steps = [
        (min_size, MinSizeParams()),
        (heuristics, HeuristicsParams()),
        (exact_dedup, ExactDedupParams()),
        (decontaminate, DecontaminateParams()),
        (corrupt, CorruptParams(fraction=1.0)),
    ]
    for step, params in steps:
        out = step(docs, params)
        assert out.kept.columns == docs.columns, step.__name__
        assert out.kept["row"].to_list() == list(range(6)), step.__name__
