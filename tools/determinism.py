"""Do the notebooks print the same thing every time? Re-execute them N times and diff the text.

    python tools/determinism.py              # every notebook, 3 runs each
    python tools/determinism.py 01 05 --runs 2
    python tools/determinism.py --matrix     # one run per CPU-kernel set x thread count

``--perturb 1e-6`` re-executes each notebook once with every floating-point tensor that a model
loads (``nn.Module.load_state_dict``: all the shipped checkpoints) multiplied by
``1 + eps * noise(value)`` (a fixed function of the value): a stand-in for CPUs this machine
does not have (AVX-512, ARM).
An output that a relative change of 1e-6 in the weights alters sits on a rounding boundary or a
near-tie, which is where another CPU's kernels flip it.

``--matrix`` re-executes each notebook once under every combination of PyTorch's CPU kernel
sets (``ATEN_CPU_CAPABILITY``: ``default``, ``avx2``, ``avx512`` where this CPU has them) and
thread counts (``COURSE_THREADS`` 1 and 3 by default; ``--threads 1 2 4`` to choose) and names
every cell whose text differs from the committed notebook, with the differing values. A stored
output is a regression baseline only if it survives all of them.

Each run executes the notebook in a fresh kernel as the test suite does (nbclient, cwd
notebooks/, COURSE_PROGRESS=0, COURSE_THREADS=1). The outputs nbval compares (stdout, stderr,
text/plain, text/html, errors; after tests/nbval_sanitize.cfg; cells marked
``# NBVAL_IGNORE_OUTPUT`` left out) are compared with the committed notebook and between runs.
Prints one line per notebook and the first differences; exit 1 if any differ. A report, not a
test: it takes N times the whole course's run time.
"""

from __future__ import annotations

import argparse
import configparser
import difflib
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
COMPARED = ("text/plain", "text/html", "application/javascript", "image/svg+xml")


def sanitizers() -> list[tuple[re.Pattern, str]]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "tests" / "nbval_sanitize.cfg")
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def coalesce_streams(outputs: list) -> list:
    """Merge consecutive stream outputs of the same name: how the kernel splits printed text
    into messages depends on timing, the text does not (nbval merges them too)."""
    merged = []
    for o in outputs:
        if (
            o.output_type == "stream"
            and merged
            and merged[-1].output_type == "stream"
            and merged[-1].name == o.name
        ):
            merged[-1] = {**merged[-1], "text": merged[-1].text + o.text}
            merged[-1] = type(o)(merged[-1])
        else:
            merged.append(o)
    return merged


def text_outputs(nb, subs) -> list[tuple[int, str]]:
    """(cell index, sanitized text) of every compared output of every compared cell."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cell.source.lstrip().startswith("# NBVAL_IGNORE_OUTPUT"):
            continue
        for o in coalesce_streams(cell.get("outputs", [])):
            if o.output_type == "stream":
                text = f"[{o.name}] {o.text}"
            elif o.output_type == "error":
                text = f"[error] {o.ename}: {o.evalue}"
            else:
                data = o.get("data", {})
                text = "\n".join(f"[{k}] {data[k]}" for k in COMPARED if k in data)
            for pattern, replace in subs:
                text = pattern.sub(replace, text)
            out.append((i, text))
    return out


def execute(path: Path, env: dict | None = None):
    """Run the notebook in a fresh kernel; ``env`` updates the kernel's environment."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})  # the kernel inherits the environment at its start
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


PERTURB_HOOK = '''"""determinism.py --perturb: every state dict loaded is perturbed by a relative eps."""
import os

import torch

_EPS = float(os.environ["COURSE_PERTURB"])
_load = torch.nn.Module.load_state_dict


def _perturbed(self, state_dict, *args, **kwargs):
    # The noise is a fixed function of each value, so a weight copied into two models (ours and
    # PyTorch's reference) is perturbed the same way in both and equality checks still hold.
    noisy = {}
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point():
            noise = torch.sin(value.double() * 9973.0 + 0.5)
            value = (value.double() * (1 + _EPS * noise)).to(value.dtype)
        noisy[name] = value
    return _load(self, noisy, *args, **kwargs)


torch.nn.Module.load_state_dict = _perturbed
'''


def perturbed(paths: list[Path], eps: float, subs, report=None) -> int:
    """Run every notebook with its loaded weights perturbed by ``eps``; report changed cells."""
    import tempfile

    import nbformat

    report = report or (lambda line: print(line, flush=True))
    unstable = 0
    with tempfile.TemporaryDirectory() as hook:
        (Path(hook) / "sitecustomize.py").write_text(PERTURB_HOOK)
        path_var = os.pathsep.join(p for p in (hook, os.environ.get("PYTHONPATH")) if p)
        env = {"COURSE_PERTURB": repr(eps), "PYTHONPATH": path_var}
        for path in paths:
            stored = text_outputs(nbformat.read(path, as_version=4), subs)
            unstable += not run_against_stored(
                path, stored, env, f"weights x (1 + {eps:g} noise)", subs, report
            )
    report(f"{len(paths) - unstable} of {len(paths)} notebooks print the same with perturbed weights")
    return 1 if unstable else 0


def failure(exc: Exception) -> str:
    """A cell raised: its last error line, as the difference to report."""
    return f"failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"


def run_against_stored(path: Path, stored, env: dict, label: str, subs, report) -> bool:
    """Execute ``path`` once with ``env``, report ``label``, the time and each differing cell.
    Returns True when the run's text matches the stored outputs."""
    start = time.perf_counter()
    try:
        cells = differing_cells(stored, text_outputs(execute(path, env), subs))
    except Exception as exc:
        cells = [failure(exc)]
    report(
        f"{path.stem:28s} {label} ({time.perf_counter() - start:4.0f} s): "
        f"{'identical' if not cells else f'{len(cells)} cell(s) differ'}"
    )
    for line in cells:
        report("    " + line)
    return not cells


def capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run (default, avx2, avx512, ...)."""
    import torch

    native = torch.backends.cpu.get_cpu_capability().lower()
    order = ["default", "avx2", "avx512"]
    if native in order:
        return order[: order.index(native) + 1]
    return ["default", native]  # e.g. ARM: 'default' and 'sve256' or 'neon'


def differing_cells(stored, run) -> list[str]:
    """One line per cell whose text differs: the cell index and its first differing lines."""
    by_cell = lambda outs: {i: "".join(t for j, t in outs if j == i) for i, _ in outs}  # noqa: E731
    a, b = by_cell(stored), by_cell(run)
    lines = []
    for i in sorted(set(a) | set(b)):
        if a.get(i) == b.get(i):
            continue
        old = [l for l in a.get(i, "").splitlines() if l not in b.get(i, "").splitlines()]
        new = [l for l in b.get(i, "").splitlines() if l not in a.get(i, "").splitlines()]
        lines.append(f"cell {i}: stored {old[:2]} -> got {new[:2]}")
    return lines


def matrix(paths: list[Path], threads: list[int], subs, report=None) -> int:
    """Run every notebook under every (kernel set, thread count); report each unstable cell.

    ``report`` receives each line (default: print). Returns 1 when any run differs."""
    import nbformat

    report = report or (lambda line: print(line, flush=True))
    configs = [(cap, n) for cap in capabilities() for n in threads]
    unstable = 0
    for path in paths:
        stored = text_outputs(nbformat.read(path, as_version=4), subs)
        for cap, n in configs:
            env = {"ATEN_CPU_CAPABILITY": cap, "COURSE_THREADS": str(n)}
            unstable += not run_against_stored(
                path, stored, env, f"kernels={cap:8s} threads={n}", subs, report
            )
    total = len(paths) * len(configs)
    report(
        f"{total - unstable} of {total} (notebook, kernels, threads) runs match the stored "
        f"outputs; kernels tried: {', '.join(capabilities())}; threads: {threads}"
    )
    return 1 if unstable else 0


def first_difference(a, b, label_a: str, label_b: str, context: int = 3) -> str | None:
    if a == b:
        return None
    lines_a = [f"cell {i}: {line}" for i, t in a for line in t.splitlines()]
    lines_b = [f"cell {i}: {line}" for i, t in b for line in t.splitlines()]
    diff = list(difflib.unified_diff(lines_a, lines_b, label_a, label_b, n=context, lineterm=""))
    return "\n".join(diff[:40]) or f"{label_a} and {label_b}: different number of outputs"


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebook number prefixes (default: all)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--matrix", action="store_true", help="one run per CPU kernel set x thread count instead of --runs"
    )
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 3], help="thread counts for --matrix (default: 1 3)"
    )
    parser.add_argument(
        "--perturb", type=float, metavar="EPS", help="one run with loaded weights perturbed by a relative EPS"
    )
    args = parser.parse_args(argv)
    os.environ["COURSE_PROGRESS"] = "0"
    os.environ.setdefault("COURSE_THREADS", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    subs = sanitizers()
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.names:
        paths = [p for p in paths if any(p.stem.startswith(n) for n in args.names)]
    if args.matrix:
        return matrix(paths, args.threads, subs)
    if args.perturb:
        return perturbed(paths, args.perturb, subs)
    failed = 0
    for path in paths:
        stored = text_outputs(nbformat.read(path, as_version=4), subs)
        runs, problems, start = [], [], time.perf_counter()
        for r in range(args.runs):
            try:
                runs.append(text_outputs(execute(path), subs))
            except Exception as exc:  # a cell raised: that is a difference too
                problems.append(f"run {r + 1} {failure(exc)}")
                continue
            diff = first_difference(stored, runs[-1], "committed", f"run {r + 1}")
            if diff:
                problems.append(diff)
        verdict = "identical" if not problems else f"{len(problems)} difference(s)"
        print(
            f"{path.stem:28s} {len(stored):4d} outputs x {args.runs} runs "
            f"({time.perf_counter() - start:5.0f} s): {verdict}",
            flush=True,
        )
        for p in problems[:2]:
            print("    " + p.replace("\n", "\n    "))
        failed += bool(problems)
    print(f"{len(paths) - failed} of {len(paths)} notebooks print identical outputs in {args.runs} runs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
