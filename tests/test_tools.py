"""tools/notebooks.py on a temporary copy of the course: check, sync and repoint.

The copy holds the tool, pyproject.toml, README.md and every notebook source that has a built
notebook, so nothing in the repository changes. `build` (which executes notebooks) is covered by
nbval and the budget, not here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [
    (src, ROOT / "notebooks" / f"{src.stem}.ipynb")
    for src in sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
    if (ROOT / "notebooks" / f"{src.stem}.ipynb").exists()
]
FORK = "https://github.com/teacher-example/fm-course-fork"


@pytest.fixture
def course(tmp_path) -> Path:
    """A copy of the tool, the config, the README and every (source, notebook) pair."""
    if not PAIRS:
        pytest.skip("no notebook has been built yet")
    (tmp_path / "tools").mkdir()
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "notebooks.py", tmp_path / "tools")
    shutil.copy(ROOT / "tools" / "claims.py", tmp_path / "tools")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for src, nb in PAIRS:
        shutil.copy(src, tmp_path / "notebooks" / "src" / src.name)
        shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    return tmp_path


def tool(course: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(course / "tools" / "notebooks.py"), *args],
        capture_output=True,
        text=True,
        cwd=course,
        timeout=120,
    )


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_check_passes_on_the_committed_notebooks(course):
    out = tool(course, "check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "notebooks match their sources" in out.stdout


def test_check_names_the_cell_that_differs_and_sync_repairs_it(course):
    src, nb = PAIRS[0]
    copy_src = course / "notebooks" / "src" / src.name
    text = copy_src.read_text()
    marker = "\n# %%\n"
    first_code = text.index(marker, text.index("# %% [bootstrap]")) + len(marker)
    copy_src.write_text(text[:first_code] + "x_added_by_test = 1\n" + text[first_code:])
    out = tool(course, "check")
    assert out.returncode == 1
    assert f"{nb.name}: cell" in out.stdout and "differs from" in out.stdout, out.stdout

    before = {
        c["source"] if isinstance(c["source"], str) else "".join(c["source"]): c
        for c in cells(course / "notebooks" / nb.name)
        if c["cell_type"] == "code"
    }
    synced = tool(course, "sync", src.stem[:2])
    assert synced.returncode == 0, synced.stderr
    after = cells(course / "notebooks" / nb.name)
    changed = [
        c for c in after if c["cell_type"] == "code" and "".join(c["source"]).startswith("x_added_by_test")
    ]
    assert len(changed) == 1 and changed[0]["outputs"] == [], "the edited cell loses its outputs"
    kept = [c for c in after if c["cell_type"] == "code" and "".join(c["source"]) in before]
    assert kept and all(c["outputs"] == before["".join(c["source"])]["outputs"] for c in kept), (
        "unchanged cells keep their stored outputs"
    )
    out = tool(course, "check")
    assert out.returncode == 1 and "no stored outputs" in out.stdout, (
        "check says the edited cell must be executed (build) before committing"
    )


def test_check_reports_a_source_without_notebook(course):
    src, nb = PAIRS[0]
    (course / "notebooks" / nb.name).unlink()
    out = tool(course, "check")
    assert out.returncode == 1 and f"{nb.name}: missing" in out.stdout, out.stdout


def test_repoint_rewrites_config_readme_badges_and_bootstrap(course):
    old_readme = (course / "README.md").read_text()
    out = tool(course, "repoint", FORK, "--branch", "teaching")
    assert out.returncode == 0, out.stdout + out.stderr
    pyproject = (course / "pyproject.toml").read_text()
    assert f'repository = "{FORK}"' in pyproject and 'branch = "teaching"' in pyproject
    readme = (course / "README.md").read_text()
    if "colab.research.google.com/github/" in old_readme:
        assert "teacher-example/fm-course-fork" in readme
    for _, nb in PAIRS:
        text = "".join("".join(c["source"]) for c in cells(course / "notebooks" / nb.name))
        assert (
            f"colab.research.google.com/github/teacher-example/fm-course-fork/blob/teaching/"
            f"notebooks/{nb.name}"
        ) in text, nb.name
        assert (
            f"mybinder.org/v2/gh/teacher-example/fm-course-fork/teaching?urlpath=lab/tree/notebooks/{nb.name}"
        ) in text, nb.name
        assert f'"{FORK}", "/content/course"' in text and '"--branch", "teaching"' in text
    check = tool(course, "check")
    assert "differs from" not in check.stdout, check.stdout  # sources re-rendered
    # Every stored output is kept, the re-pointed bootstrap cell's included: nothing to re-run.
    assert check.returncode == 0 and "no stored outputs" not in check.stdout, check.stdout


def test_repoint_refuses_a_url_that_is_not_a_github_repository(course):
    before = (course / "pyproject.toml").read_text()
    out = tool(course, "repoint", "https://gitlab.com/someone/course")
    assert out.returncode != 0 and "expected https://github.com/OWNER/REPO" in out.stderr
    assert (course / "pyproject.toml").read_text() == before


# ------------------------------------------------------------------ the claims check


def _notebook(prose: str, printed: str, code: str = "print(result)") -> dict:
    return {
        "cells": [
            {"cell_type": "markdown", "source": prose},
            {
                "cell_type": "code",
                "source": code,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}],
            },
        ]
    }


def test_claims_check_passes_numbers_the_notebook_prints_and_catches_a_planted_drift():
    sys.path.insert(0, str(ROOT / "tools"))
    from claims import unmatched_claims

    printed = "S6 accuracy 98.8% (3 seeds: 98.1-99.2), speed-up 1,250x\n"
    ok = "S6 reaches **98.8%** over 3 seeds and runs 1250× faster."
    assert unmatched_claims(_notebook(ok, printed)) == []
    drifted = unmatched_claims(_notebook(ok.replace("98.8", "97.5"), printed))
    assert [(i, n) for i, n, _ in drifted] == [(0, "97.5")]
    # same digits, other rounding: "98.80" is not "98.8", "99" is not "98.8"
    assert [n for _, n, _ in unmatched_claims(_notebook("about 99% and 98.80%", printed))] == ["99", "98.80"]


def test_claims_check_accepts_citations_math_code_and_notebook_numbers_only():
    sys.path.insert(0, str(ROOT / "tools"))
    from claims import unmatched_claims

    exempt = (
        "## 5. Results\n"
        "The paper reports 18.3% for S4 inside the Mamba block (Gu & Dao, 2023, Table 1).\n"
        "Wavelengths grow like $2\\pi \\cdot 10000^{2i/d}$; `d_model=64` is set in the code, "
        "see notebook 03 and [04 · BERT](04_bert.ipynb), §6 and 01_attention.\n"
        "1. first step\n"
    )
    assert unmatched_claims(_notebook(exempt, "nothing\n", code="d_model = 64")) == []
    uncited = "The paper reports 18.3% for S4 inside the Mamba block. We get 44.0%."
    assert [n for _, n, _ in unmatched_claims(_notebook(uncited, "44.0\n"))] == ["18.3"]
    # a citation covers its own sentence only
    two = "S4 gets 18.3% (Gu & Dao, 2023). Ours gets 51.2%."
    assert [n for _, n, _ in unmatched_claims(_notebook(two, "nothing\n"))] == ["51.2"]


def test_check_fails_on_a_number_the_prose_states_but_no_output_shows(course):
    _, nb = PAIRS[0]
    path = course / "notebooks" / nb.name
    data = json.loads(path.read_text())
    first_md = next(c for c in data["cells"] if c["cell_type"] == "markdown")
    first_md["source"] = "".join(first_md["source"]) + "\nIt measures 123.456 on every run.\n"
    path.write_text(json.dumps(data))
    out = tool(course, "check")
    assert out.returncode == 1 and "'123.456' is neither shown" in out.stdout, out.stdout


# ------------------------------------------------------------------ the determinism matrix


def test_determinism_matrix_names_a_cell_that_depends_on_kernels_or_threads(tmp_path):
    import nbformat

    sys.path.insert(0, str(ROOT / "tools"))
    import determinism

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("print('stable', round(0.1 + 0.2, 3))"),
        nbformat.v4.new_code_cell("import os\nprint('threads', os.environ['COURSE_THREADS'])"),
        nbformat.v4.new_code_cell("import torch\nprint('kernels', torch.backends.cpu.get_cpu_capability())"),
    ]
    path = tmp_path / "99_planted.ipynb"
    nbformat.write(nb, path)
    executed = determinism.execute(path, {"COURSE_THREADS": "1", "ATEN_CPU_CAPABILITY": "default"})
    nbformat.write(executed, path)  # the "committed" baseline
    lines = []
    status = determinism.matrix([path], [1, 3], determinism.sanitizers(), report=lines.append)
    text = "\n".join(lines)
    assert status == 1
    assert "cell 1: stored ['[stdout] threads 1'] -> got ['[stdout] threads 3']" in text, text
    assert "kernels=default  threads=1" in text and ": identical" in text, text
    if len(determinism.capabilities()) > 1:  # a CPU with vector kernels beyond default
        assert "cell 2: stored ['[stdout] kernels DEFAULT']" in text, text
    assert "cell 0" not in text, "a stable cell is never reported"


def test_perturbed_weights_run_flags_an_output_on_a_near_tie(tmp_path):
    import nbformat

    sys.path.insert(0, str(ROOT / "tools"))
    import determinism

    load = (
        "import torch\nfrom torch import nn\nm = nn.Linear(1, 1, bias=False)\n"
        "m.load_state_dict({'weight': torch.tensor([[0.1234565]], dtype=torch.float64)})\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(load + "m = m.double()\nprint('robust', round(m.weight.item(), 2))"),
        nbformat.v4.new_code_cell(load + "print('fragile', f'{m.weight.item():.9f}')"),
    ]
    path = tmp_path / "98_planted.ipynb"
    nbformat.write(nb, path)
    nbformat.write(determinism.execute(path, {}), path)  # the "committed" baseline
    lines = []
    status = determinism.perturbed([path], 1e-6, determinism.sanitizers(), report=lines.append)
    text = "\n".join(lines)
    assert status == 1 and "cell 1: stored ['[stdout] fragile" in text, text
    assert "cell 0" not in text, text
