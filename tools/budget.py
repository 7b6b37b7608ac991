"""Resource budget: run every notebook offline and measure wall time and the kernel's peak memory.

    python tools/budget.py                # every notebooks/NN_*.ipynb
    python tools/budget.py 01 05          # some of them
    python tools/budget.py --max-seconds 60 --max-mb 1536 --max-total 360

Each notebook runs in a fresh kernel exactly as the test suite runs it (nbclient, cwd notebooks/,
COURSE_PROGRESS=0, COURSE_THREADS=1 unless set). The wall time counts from the kernel's start to
the end of the last cell (the kernel's CPU seconds are shown beside it: on a busy machine they
say what a quiet one would take); the peak memory is the kernel process tree's peak resident set
(VmHWM of the kernel and of any child it starts, read from /proc, sampled every 50 ms as a
fallback). Exit 1 when a notebook is over the time or memory limit, or the course over its total.
The course promises 60 s and 1.5 GB per notebook on a quiet 2-core machine and 6 minutes in all.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def notebooks(names: list[str]) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        found = [p for p in found if any(p.stem.startswith(n) for n in names)]
    return found


def _hwm_kib(pid: int) -> int:
    """Peak resident set (VmHWM) of one process in KiB, 0 when it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakMemory(threading.Thread):
    """Samples the peak RSS of a process and its children until stopped (bytes)."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.cpu = pid, every, 0, 0.0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        import psutil

        try:
            proc = psutil.Process(self.pid)
            procs = [proc] + proc.children(recursive=True)
        except psutil.Error:
            return
        for p in procs:
            hwm = _hwm_kib(p.pid) * 1024
            if not hwm:
                try:
                    hwm = p.memory_info().rss
                except psutil.Error:
                    hwm = 0
            self.peak = max(self.peak, hwm)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            time.sleep(self.every)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its children so far."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            total = 0.0
            for p in [proc] + proc.children(recursive=True):
                t = p.cpu_times()
                total += t.user + t.system
            return total
        except psutil.Error:
            return 0.0

    def stop(self) -> int:
        self.sample()
        self.cpu = self.cpu_seconds()
        self._stop_event.set()
        self.join()
        return self.peak


def measure(path: Path, timeout: int = 600) -> dict:
    """Execute one notebook in a fresh kernel; returns seconds, peak bytes and the error if any."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    start = time.perf_counter()
    error, monitor = None, None
    with client.setup_kernel():
        pid = _kernel_pid(client)
        if pid:
            monitor = PeakMemory(pid)
            monitor.start()
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        except Exception as exc:  # a failing cell: report it, the budget fails
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"
        finally:
            peak = monitor.stop() if monitor else 0
    return {
        "name": path.stem,
        "seconds": time.perf_counter() - start,
        "peak": peak,
        "cpu": monitor.cpu if monitor else float("nan"),
        "error": error,
    }


def _kernel_pid(client) -> int | None:
    km = client.km
    provisioner = getattr(km, "provisioner", None)
    process = getattr(provisioner, "process", None)
    return getattr(process, "pid", None)


def table(rows: list[dict], max_s: float, max_mb: float) -> str:
    lines = [
        f"{'notebook':<24} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}  verdict",
        f"{'-' * 24} {'-' * 8} {'-' * 8} {'-' * 8}  {'-' * 20}",
    ]
    for r in rows:
        mb = r["peak"] / 2**20
        problems = []
        if r["error"]:
            problems.append(f"ERROR {r['error']}")
        if r["seconds"] > max_s:
            problems.append(f"over {max_s:.0f} s")
        if mb > max_mb:
            problems.append(f"over {max_mb:.0f} MB")
        r["ok"] = not problems
        lines.append(
            f"{r['name']:<24} {r['seconds']:8.1f} {r['cpu']:8.1f} {mb:8.0f}  "
            f"{'ok' if not problems else '; '.join(problems)}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebook number prefixes (default: all)")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--max-mb", type=float, default=1536.0)
    parser.add_argument("--max-total", type=float, default=360.0, help="seconds for the course")
    args = parser.parse_args(argv)
    os.environ["COURSE_PROGRESS"] = "0"
    os.environ.setdefault("COURSE_THREADS", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    paths = notebooks(args.names)
    if not paths:
        print("no notebooks found under notebooks/")
        return 1
    rows = []
    for path in paths:
        rows.append(measure(path))
        r = rows[-1]
        print(
            f"  {r['name']}: {r['seconds']:.1f} s, {r['peak'] / 2**20:.0f} MB"
            + (f"  ({r['error']})" if r["error"] else ""),
            flush=True,
        )
    print()
    print(table(rows, args.max_seconds, args.max_mb))
    total = sum(r["seconds"] for r in rows)
    peak = max(r["peak"] for r in rows) / 2**20
    cpu = sum(r["cpu"] for r in rows)
    print(
        f"{'total':<24} {total:8.1f} {cpu:8.1f} {peak:8.0f}  "
        f"{'ok' if total <= args.max_total else f'over {args.max_total:.0f} s'}"
    )
    print(
        f"limits: {args.max_seconds:.0f} s and {args.max_mb:.0f} MB per notebook, "
        f"{args.max_total:.0f} s in all (cpu count {os.cpu_count()}, "
        f"load {os.getloadavg()[0]:.1f}: timings under load are inflated)"
    )
    ok = all(r["ok"] for r in rows) and total <= args.max_total
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
