"""The README's notebook example runs as written: a table, `fit`, `predict`, `recommend`,
`build_report`, on the Chinchilla runs the repository ships (anchors/chinchilla)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _notebook_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's 'From Python' section holds one python block"
    return blocks[0]


def test_the_readme_notebook_example_runs_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    code = _notebook_block()
    assert len(code.strip().splitlines()) < 15
    shutil.copytree(ROOT / "anchors" / "chinchilla", tmp_path / "anchors" / "chinchilla")
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    finally:
        os.chdir(cwd)
    printed = out.getvalue()
    first = printed.splitlines()[0]
    assert first in (ROOT / "README.md").read_text(), first  # the README quotes what it prints
    assert "best N 7.32e+10, D 1.31e+12" in printed
    assert (tmp_path / "reports" / "notebook" / "index.html").is_file()
