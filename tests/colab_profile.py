"""The Colab profile: every notebook, run top to bottom as a Colab student runs it.

    python tests/colab_profile.py install   # online: .venv-colab with Colab's versions + bootstrap
    python tests/colab_profile.py run       # offline: every notebook, then the explorer tests

``install`` builds ``.venv-colab`` from ``tests/colab/requirements.txt`` (Colab's own versions,
as far as PyPI has them for this Python), links ``/content/course`` to this checkout (where
Colab's bootstrap cell clones the course) and runs the notebooks' bootstrap cell itself, with
``google.colab`` importable, in that environment: the cell's own ``pip install``. It fails if
the bootstrap changed the version of any package Colab already had (ipywidgets, torch, ...),
and writes what it added to ``artifacts/colab/installed.txt``. It then runs the bootstrap a
second time (a restarted session) and records how long that took.

``run`` executes every notebook in a kernel of that environment, started like Colab's (``google.colab``
imported, working directory ``/content``, progress bars on), with nbclient: the bootstrap cell
takes its Colab branch. Outputs are not compared (Colab's torch differs); a notebook fails if
any cell raises. Then ``tests/test_explorers.py`` runs in the same environment (ipywidgets 7.7).
The report, with each notebook's wall time, is ``artifacts/colab/report.txt``; exit 1 on any
failure. ``make colab-profile`` runs both; ``.ci/run`` calls it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-colab"
PY = VENV / "bin" / "python"
ART = ROOT / "artifacts" / "colab"
FAKE = ART / "fake-colab"  # google/colab/__init__.py: makes `import google.colab` work
CONTENT = Path("/content")
COURSE = CONTENT / "course"
KERNEL = "colab-profile"
sys.path.insert(0, str(ROOT / "tools"))


def freeze() -> dict[str, str]:
    out = subprocess.run(
        [str(PY), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out.stdout)}


def link_course() -> None:
    """/content/course -> this checkout (a link only: a real folder there is left alone)."""
    CONTENT.mkdir(exist_ok=True)
    if COURSE.is_symlink():
        COURSE.unlink()
    elif COURSE.exists():
        raise SystemExit(f"{COURSE} exists and is not a link: remove it to run the Colab profile")
    COURSE.symlink_to(ROOT, target_is_directory=True)


def fake_colab() -> None:
    pkg = FAKE / "google" / "colab"  # `google` stays a namespace package
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (colab profile)."""\n')


def bootstrap_code() -> str:
    from notebooks import bootstrap_source, course_config

    return bootstrap_source(course_config())


def run_bootstrap() -> float:
    """Run the notebooks' bootstrap cell in .venv-colab as Colab would; return its seconds."""
    code = "import google.colab\n" + bootstrap_code()
    env = {**os.environ, "PYTHONPATH": str(FAKE)}
    start = time.perf_counter()
    subprocess.run([str(PY), "-c", code], cwd=CONTENT, env=env, check=True)
    return time.perf_counter() - start


def install() -> int:
    ART.mkdir(parents=True, exist_ok=True)
    if VENV.exists():
        shutil.rmtree(VENV)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(PY), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["-r", str(ROOT / "tests" / "colab" / "requirements.txt")], check=True)
    before = freeze()
    link_course()
    fake_colab()
    first = run_bootstrap()
    after = freeze()
    changed = [f"{n}: {v} -> {after.get(n, 'removed')}" for n, v in before.items() if after.get(n) != v]
    added = sorted(f"{n}=={v}" for n, v in after.items() if n not in before)
    second = run_bootstrap()
    (ART / "installed.txt").write_text(
        f"bootstrap, first run: {first:.1f} s; second run (restarted session): {second:.1f} s\n"
        "added to Colab's packages:\n" + "\n".join(added) + "\n"
    )
    print(
        f"Colab profile: {len(before)} packages; the bootstrap added {len(added)} in "
        f"{first:.1f} s ({', '.join(a for a in added if a.split('==')[0] in ('course-lib', 'bertviz'))}); "
        f"a second run took {second:.1f} s"
    )
    if changed:
        print("the bootstrap changed packages Colab already has:\n" + "\n".join(changed))
        return 1
    return 0


def kernelspec(home: Path) -> None:
    """A kernel of .venv-colab that starts like Colab's: google.colab imported."""
    spec = home / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    launch = "import google.colab; from ipykernel import kernelapp; kernelapp.launch_new_instance()"
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(PY), "-c", launch, "-f", "{connection_file}"],
                "display_name": "Colab profile",
                "language": "python",
                "env": {
                    "PYTHONPATH": str(FAKE),
                    "COURSE_PROGRESS": "1",
                    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                },
            }
        )
    )


def execute(path: Path) -> tuple[float, str | None]:
    """Run one notebook (cwd /content, as Colab); (seconds, None) or (seconds, error line)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    # a last cell that proves the bootstrap took its Colab branch (it changes directory)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import os, sys\nassert 'google.colab' in sys.modules, 'not a Colab-like kernel'\n"
            f"assert os.path.samefile(os.getcwd(), '{COURSE / 'notebooks'}'), os.getcwd()"
        )
    )
    client = NotebookClient(
        nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(CONTENT)}}
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        cell = next(
            (
                i
                for i, c in enumerate(nb.cells)
                if c.cell_type == "code"
                and any(o.get("output_type") == "error" for o in c.get("outputs", []))
            ),
            "?",
        )
        lines = [l for l in str(exc).strip().splitlines() if l.strip()]
        return time.perf_counter() - start, f"cell {cell}: {lines[-1][:300]}"
    errors = [
        f"cell {i}: {o['ename']}"
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    return time.perf_counter() - start, (errors[0] if errors else None)


def run(names: list[str]) -> int:
    if not PY.exists() or not COURSE.is_symlink():
        print("no Colab profile: run `python tests/colab_profile.py install` first (online)")
        return 1
    versions = freeze()
    head = ", ".join(
        f"{n} {versions[n]}"
        for n in ("torch", "numpy", "matplotlib", "ipywidgets", "ipykernel", "bertviz", "course-lib")
        if n in versions
    )
    lines, failed, ran = [f"Colab profile ({head})"], 0, 0
    with tempfile.TemporaryDirectory() as home:
        kernelspec(Path(home))
        os.environ["JUPYTER_PATH"] = home + os.pathsep + os.environ.get("JUPYTER_PATH", "")
        for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            if names and not any(path.stem.startswith(n) for n in names):
                continue
            seconds, error = execute(path)
            failed, ran = failed + (error is not None), ran + 1
            lines.append(
                f"{path.stem:28s} {seconds:6.1f} s  "
                f"{'ran to its last cell' if error is None else 'STOPPED at ' + error}"
            )
            print(lines[-1], flush=True)
    tests = subprocess.run(
        [str(PY), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_explorers.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    summary = (tests.stdout.strip().splitlines() or ["(no output)"])[-1]
    lines.append(f"explorer tests under ipywidgets {versions.get('ipywidgets')}: {summary}")
    print(lines[-1])
    ran += 1
    if tests.returncode:
        print(tests.stdout[-4000:], tests.stderr[-2000:])
        failed += 1
    lines.append(f"colab: {ran - failed} passed, {failed} failed")  # notebooks + explorer tests
    print(lines[-1])
    ART.mkdir(parents=True, exist_ok=True)
    (ART / "report.txt").write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["install"]:
        sys.exit(install())
    if sys.argv[1:2] == ["run"]:
        sys.exit(run(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)
