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
PAIRS = [(src, ROOT / "notebooks" / f"{src.stem}.ipynb")
         for src in sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
         if (ROOT / "notebooks" / f"{src.stem}.ipynb").exists()]
FORK = "https://github.com/teacher-example/fm-course-fork"


@pytest.fixture
def course(tmp_path) -> Path:
    """A copy of the tool, the config, the README and every (source, notebook) pair."""
    if not PAIRS:
        pytest.skip("no notebook has been built yet")
    (tmp_path / "tools").mkdir()
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "notebooks.py", tmp_path / "tools")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for src, nb in PAIRS:
        shutil.copy(src, tmp_path / "notebooks" / "src" / src.name)
        shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    return tmp_path


def tool(course: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(course / "tools" / "notebooks.py"), *args],
                          capture_output=True, text=True, cwd=course, timeout=120)


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

    before = {c["source"] if isinstance(c["source"], str) else "".join(c["source"]): c
              for c in cells(course / "notebooks" / nb.name) if c["cell_type"] == "code"}
    synced = tool(course, "sync", src.stem[:2])
    assert synced.returncode == 0, synced.stderr
    after = cells(course / "notebooks" / nb.name)
    changed = [c for c in after if c["cell_type"] == "code"
               and "".join(c["source"]).startswith("x_added_by_test")]
    assert len(changed) == 1 and changed[0]["outputs"] == [], "the edited cell loses its outputs"
    kept = [c for c in after if c["cell_type"] == "code" and "".join(c["source"]) in before]
    assert kept and all(c["outputs"] == before["".join(c["source"])]["outputs"] for c in kept), \
        "unchanged cells keep their stored outputs"
    out = tool(course, "check")
    assert out.returncode == 1 and "no stored outputs" in out.stdout, \
        "check says the edited cell must be executed (build) before committing"


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
        assert (f"colab.research.google.com/github/teacher-example/fm-course-fork/blob/teaching/"
                f"notebooks/{nb.name}") in text, nb.name
        assert (f"mybinder.org/v2/gh/teacher-example/fm-course-fork/teaching?urlpath=lab/tree/"
                f"notebooks/{nb.name}") in text, nb.name
        assert f'"{FORK}", "/content/course"' in text and '"--branch", "teaching"' in text
    check = tool(course, "check")
    assert "differs from" not in check.stdout, check.stdout    # sources re-rendered
    # Every stored output is kept, the re-pointed bootstrap cell's included: nothing to re-run.
    assert check.returncode == 0 and "no stored outputs" not in check.stdout, check.stdout


def test_repoint_refuses_a_url_that_is_not_a_github_repository(course):
    before = (course / "pyproject.toml").read_text()
    out = tool(course, "repoint", "https://gitlab.com/someone/course")
    assert out.returncode != 0 and "expected https://github.com/OWNER/REPO" in out.stderr
    assert (course / "pyproject.toml").read_text() == before
