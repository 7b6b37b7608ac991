"""Every benchmark of the course in one table: ours vs the reference, measured in the same run.

    python benchmarks/run.py                 # all benchmarks/bench_*.py, full sizes
    python benchmarks/run.py --quick         # small sizes (a smoke run)
    python benchmarks/run.py attention ssm   # only bench_attention.py and bench_ssm.py

Each ``benchmarks/bench_<topic>.py`` has ``run(quick=False) -> list[dict]`` with rows
``{"name", "ours", "ours_s", "reference", "reference_s"}`` (medians of repeats, the two timed
in the same run on the same inputs, results asserted equal first). The ratio printed is
reference_s / ours_s: above 1, ours is faster. A module that fails is reported, the others run,
and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import traceback
from pathlib import Path

from course_lib.timing import format_rows

HERE = Path(__file__).resolve().parent
KEYS = ("name", "ours", "ours_s", "reference", "reference_s")


def modules(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if names:
        found = [p for p in found if p.stem.removeprefix("bench_") in names]
    return found


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect(path: Path, quick: bool) -> list[dict]:
    """run(quick) of one module, each row checked against the contract."""
    rows = load(path).run(quick=quick)
    for row in rows:
        missing = [k for k in KEYS if k not in row]
        if missing:
            raise ValueError(f"{path.name}: row {row.get('name', row)!r} lacks {missing}")
        row["topic"] = path.stem.removeprefix("bench_")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("topics", nargs="*", help="e.g. attention ssm (default: every bench_*.py)")
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    paths = modules(args.topics)
    if not paths:
        print(f"no benchmarks/bench_*.py matches {args.topics}")
        return 1
    rows, failed = [], []
    for path in paths:
        start = time.perf_counter()
        try:
            rows += collect(path, args.quick)
            print(f"  {path.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        except Exception:  # report and go on with the other modules
            failed.append(path.name)
            print(f"  {path.name} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    print(format_rows(rows, topic=True))
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        f"{' (quick sizes)' if args.quick else ''}; every pair timed in the same run."
    )
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
