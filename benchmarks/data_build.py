"""The whole data build over this machine's Python sources, and near-dedup against datasketch.

1. `scaler data build` (scaler.sweep.data_build.build_data: the data layer's build with the trainer's
   reference scorer) with the default spec (the interpreter's standard library and its
   site-packages; tiers raw, filtered, dedup, clean; byte tokens) into a temporary folder, timed
   end to end: MB/s and the seconds of every step. Goal: the whole machine's Python sources
   (about 130-220 MB) in under 5 minutes on 2 cores.
2. In the same command, benchmarks/near_dedup.py on the same corpus: scaler's NumPy MinHash-LSH
   against datasketch's MinHash/MinHashLSH (speed ratio and agreement of the removed sets).

Output: a few stderr lines per step, then two lines on stdout:

    build: mb=<x> docs=<n> seconds=<t> mb_per_s=<r> goal_s=300 <step>_s=<t> ...
    docs=<n> mb=<x> ours_s=<t> datasketch_s=<t> ratio=<r> removed_ours=<k> removed_ds=<k> agreement=<a>

    python benchmarks/data_build.py                 # everything (~3-4 minutes here)
    python benchmarks/data_build.py --sources stdlib --skip-datasketch
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from scaler.data.build import BuildSpec
from scaler.sweep.data_build import build_data


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", default=["stdlib", "site-packages"])
    parser.add_argument("--tokenizers", nargs="+", default=["bytes"])
    parser.add_argument("--skip-datasketch", action="store_true", help="only the build")
    args = parser.parse_args()

    spec = BuildSpec(sources=args.sources, tokenizers=args.tokenizers)
    with tempfile.TemporaryDirectory() as tmp:
        report = build_data(spec, Path(tmp) / "data")
    steps = " ".join(f"{s['step']}_s={s['seconds']:.1f}" for s in report["steps"])
    tokenize = " ".join(f"tokenize_{name}_s={t['seconds']:.1f}" for name, t in report["tokenizers"].items())
    docs = sum(v["documents"] for v in report["split"].values())
    for name, tier in report["tiers"].items():
        log(f"tier {name}: {tier['documents']} documents, {tier['bytes'] / 1e6:.1f} MB, yield {tier['yield_bytes']:.1%}")
    print(
        f"build: mb={report['bytes_read'] / 1e6:.1f} docs={docs} seconds={report['seconds']:.1f} "
        f"mb_per_s={report['mb_per_s']:.2f} goal_s=300 {steps} {tokenize}",
        flush=True,
    )
    if not args.skip_datasketch:
        near_dedup = Path(__file__).with_name("near_dedup.py")
        subprocess.run([sys.executable, str(near_dedup)], check=True)


if __name__ == "__main__":
    main()
