"""Report text: how numbers and intervals are printed, and the two writers of one list of blocks.

A report is a list of `Block`s: ("h1"|"h2"|"h3"|"p", text), ("headline", bold text, text),
("list", [items]) or ("list", [items], "caveats"), ("table", headers, rows), ("img", key, path,
caption), ("pre", text). `to_markdown` writes them as report.md (images by relative path) and
`to_html` as a self-contained index.html (images as base64 data URIs, inline CSS, no external
reference), so both documents always say the same thing. `num`, `with_interval`, `pct` and
`plural` print the numbers every section uses ("–" for a missing value); `error_text` says why
a fit entry failed.
Details: docs/design.md §5.9 (the report).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Block", "num", "interval_text", "with_interval", "pct", "plural", "error_text", "to_markdown", "to_html"]

# Blocks: ("h1"|"h2"|"h3"|"p", text), ("headline", bold text, text), ("list", [items]), ("table", headers, rows),
# ("img", key, path, caption), ("pre", text)
Block = tuple


# --------------------------------------------------------------------------------------------
# numbers


def num(x: Any, digits: int = 4) -> str:
    """A number as the report prints it: integers with thousands separators, floats to `digits`
    significant digits, "–" for None."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e15 and digits >= 4:
            return f"{int(x):,}"
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        return f"{x:.{digits}g}"
    return str(x)


def interval_text(iv: Any) -> str:
    """"[lo, hi]"; "" when the interval is missing or open."""
    if not iv or len(iv) != 2 or any(v is None for v in iv):
        return ""
    return f"[{num(iv[0])}, {num(iv[1])}]"


def with_interval(value: Any, iv: Any) -> str:
    """"value [lo, hi]", or the value alone without an interval."""
    text = num(value)
    ivs = interval_text(iv)
    return f"{text} {ivs}" if ivs else text


def error_text(entry: Any) -> str:
    """Why a fit entry holds no result: its "error", else "missing"."""
    if isinstance(entry, Mapping) and entry.get("error"):
        return str(entry["error"])
    return "missing"


def pct(x: Any, digits: int = 2) -> str:
    """A percentage already in percent ("1.23%"); "–" for None."""
    return "–" if x is None else f"{x:.{digits}f}%"


def plural(k: int, one: str, many: str | None = None) -> str:
    """"1 run", "2 runs" ("2 <many>" when the plural is irregular)."""
    return f"{k} {one if k == 1 else (many or one + 's')}"


# --------------------------------------------------------------------------------------------
# writers


def to_markdown(blocks: Sequence[Block], out_dir: Path) -> str:
    """report.md: the blocks as Markdown, images by their path relative to `out_dir`."""
    lines: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + b[1], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "headline":
            lines += [f"> **{b[1]}** {b[2]}", ""]
        elif kind == "list":
            lines += [f"- {item}" for item in b[1]] + [""]
        elif kind == "table":
            headers, rows = b[1], b[2]
            esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            lines.append("| " + " | ".join(esc(h) for h in headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            rel = Path(b[2]).relative_to(out_dir).as_posix()
            lines += [f"![{b[1]}]({rel})", "", f"*{b[3]}*", ""]
        elif kind == "pre":
            lines += ["```", b[1].rstrip("\n"), "```", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#555}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
li{margin:.2em 0}.caveats li{color:#6a3d00}
.headline{font-size:1.15em;background:#eef4fb;border-left:4px solid #2a6cb0;padding:.7em 1em;margin:1em 0}
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    """index.html: the blocks as one self-contained page (images embedded, inline CSS)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "headline":
            out.append(f'<p class="headline"><strong>{e(b[1])}</strong> {e(b[2])}</p>')
        elif kind == "list":
            cls = ' class="caveats"' if len(b) > 2 and b[2] == "caveats" else ""
            out.append(f"<ul{cls}>" + "".join(f"<li>{e(str(i))}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in b[1]) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2]]
            out.append("</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(b[2]).read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{e(b[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(b[3])}</figcaption></figure>")
        elif kind == "pre":
            out.append(f"<pre>{e(b[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"

