"""Binder and Colab health: the environment students get, and the links that lead them there.

Binder (repo2docker) installs ``binder/requirements.txt``: the CPU build of torch from the
PyTorch index, ``-r ../requirements.txt`` (the pinned course set) and ``-e .``. Colab opens one
notebook and runs its bootstrap cell, which clones the configured repository. Checked here:

* repo2docker accepts the configuration (``jupyter-repo2docker --no-build``) and pip-installs
  binder/requirements.txt, then runs binder/postBuild, which succeeds in this environment;
* binder/requirements.txt resolves (``pip install --dry-run --ignore-installed --report``, run
  online before the suite by ``python tests/test_binder_colab.py resolve``, which .ci/run
  calls through ``make binder-resolve``) to exactly the versions this suite runs on, with torch
  as the CPU build. The PyTorch index is unreachable here; the same wheel comes from pip's
  find-links (/opt/wheels), so the index line is left out of the resolution and checked as text;
* everything the notebooks import is installed and imports (in a fresh interpreter), and
  comes from a distribution the requirements pull in;
* every notebook's badges and Colab bootstrap cell point at the one repository and branch in
  pyproject.toml [tool.course] (tools/notebooks.py renders them).
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPORT = ROOT / "artifacts" / "binder-resolve.json"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
sys.path.insert(0, str(ROOT / "tools"))


def _requirement_lines(path: Path) -> list[str]:
    return [
        line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()
    ]


def _pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line, following `-r` includes."""
    pins = {}
    for line in _requirement_lines(path):
        if line.startswith("-r "):
            pins.update(_pins((path.parent / line[3:].strip()).resolve()))
        elif "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- resolution (online helper)


def offline_binder_requirements(dest: Path) -> Path:
    """binder/requirements.txt as pip sees it here: no PyTorch index, paths made absolute."""
    lines = []
    for line in _requirement_lines(BINDER / "requirements.txt"):
        if line.startswith(("--extra-index-url", "--index-url")):
            continue  # unreachable; the wheel is in find-links
        if line.startswith("-r "):
            line = f"-r {(BINDER / line[3:].strip()).resolve()}"
        elif line in ("-e .", "-e ./"):
            line = f"-e {ROOT}"
        lines.append(line)
    dest.write_text("\n".join(lines) + "\n")
    return dest


def resolve() -> int:
    """pip's resolution of binder/requirements.txt from scratch, as a JSON report (online)."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    req = offline_binder_requirements(REPORT.parent / "binder-requirements-offline.txt")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(REPORT),
        "-r",
        str(req),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if out.returncode:
        REPORT.unlink(missing_ok=True)
        print(out.stdout[-3000:], out.stderr[-3000:], sep="\n")
        return out.returncode
    n = len(json.loads(REPORT.read_text())["install"])
    print(f"binder/requirements.txt resolves to {n} distributions: {REPORT.relative_to(ROOT)}")
    return 0


# ---------------------------------------------------------------- tests


def test_binder_requirements_pin_the_cpu_torch_and_the_course():
    lines = _requirement_lines(BINDER / "requirements.txt")
    assert f"--extra-index-url {TORCH_CPU_INDEX}" in lines
    assert "-r ../requirements.txt" in lines and "-e ." in lines
    torch_pin = _pins(ROOT / "requirements.txt")["torch"]
    assert f"torch=={torch_pin}+cpu" in lines, f"binder must pin the CPU build of torch {torch_pin}"
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert runtime == f"python-{sys.version_info.major}.{sys.version_info.minor}", (
        f"binder/runtime.txt says {runtime}; the suite runs on {sys.version.split()[0]}"
    )


def test_repo2docker_accepts_the_configuration():
    exe = shutil.which("jupyter-repo2docker") or str(Path(sys.executable).parent / "jupyter-repo2docker")
    if not Path(exe).exists():
        pytest.skip("jupyter-repo2docker is not installed (requirements-dev.txt)")
    out = subprocess.run(
        [exe, "--no-build", "--no-run", str(ROOT)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    dockerfile = out.stdout
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert "./binder/postBuild" in dockerfile
    version = (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")
    assert f"python={version}" in out.stdout + out.stderr


def test_postbuild_succeeds():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        ["bash", str(BINDER / "postBuild")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_binder_resolution_matches_the_tested_environment():
    """The versions pip picks for Binder are the ones this suite runs on (torch: the CPU build)."""
    if not REPORT.exists():
        msg = (
            "no resolution report: run `python tests/test_binder_colab.py resolve` online "
            "first (`make binder-resolve`; .ci/run does)"
        )
        if os.environ.get("COURSE_REQUIRE_BINDER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    report = json.loads(REPORT.read_text())
    resolved = {_norm(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
    assert resolved.get("torch", "").endswith("+cpu"), f"torch resolved to {resolved.get('torch')}"
    differ = []
    for name, version in sorted(resolved.items()):
        if name == "course-lib":
            continue
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            differ.append(f"{name}=={version} (not installed here)")
            continue
        if have.split("+")[0] != version.split("+")[0]:
            differ.append(f"{name}: Binder {version}, tested {have}")
    assert not differ, "Binder would get other versions than the suite tests:\n" + "\n".join(differ)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return handler.type is None or any(
        getattr(k, "id", "") in ("ImportError", "ModuleNotFoundError") for k in kinds
    )


def notebook_imports() -> dict[str, list[str]]:
    """Module -> notebooks importing it (code cells; IPython magics and optional imports
    guarded by ``except ImportError`` skipped)."""
    found: dict[str, list[str]] = {}
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            source = "\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!")))
            tree = ast.parse(source)
            optional = {
                id(n)
                for t in ast.walk(tree)
                if isinstance(t, ast.Try) and any(_catches_import_error(h) for h in t.handlers)
                for stmt in t.body
                for n in ast.walk(stmt)
            }
            for node in ast.walk(tree):
                if id(node) in optional:  # `try: import x / except ImportError:`
                    continue
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name, [])
                    if path.stem not in found[name]:
                        found[name].append(path.stem)
    return found


def test_everything_the_notebooks_import_is_installed_and_imports():
    imports = notebook_imports()
    if not imports:
        pytest.skip("no notebooks yet")
    wanted = sorted(imports)
    code = (
        "import importlib, sys\nbad = []\n"
        f"for name in {wanted!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception as exc:\n        bad.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n"
    )
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT / "notebooks",
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, f"modules the notebooks import fail to import:\n{out.stdout}"


def _closure(roots: list[str]) -> set[str]:
    """Distributions pulled in by roots (their installed requirements, recursively)."""
    seen, todo = set(), [_norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            todo.append(_norm(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0]))
    return seen


def test_notebook_imports_come_from_the_binder_requirements():
    imports = notebook_imports()
    roots = list(_pins(ROOT / "requirements.txt")) + ["course-lib"]
    closure = _closure(roots)
    owners = md.packages_distributions()
    missing = []
    for module, users in sorted(imports.items()):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "course_lib":
            continue
        dists = {_norm(d) for d in owners.get(top, [])}
        if not dists & closure:
            missing.append(
                f"{module} (from {sorted(dists) or 'no distribution'}), used by {', '.join(users)}"
            )
    assert not missing, (
        "notebooks import modules that requirements.txt does not install "
        "(Binder and a fresh clone would fail):\n" + "\n".join(missing)
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_badges_and_bootstrap_point_at_the_configured_repository(path):
    from notebooks import badges, bootstrap_source, course_config

    conf = course_config()
    cells = json.loads(path.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells]
    assert cells[0]["cell_type"] == "markdown" and badges(path.stem, conf) in sources[0], (
        f"{path.name}: the first cell lacks the badges for {conf['repository']} ({conf['branch']})"
    )
    code = [s for c, s in zip(cells, sources) if c["cell_type"] == "code"]
    assert code and code[0] == bootstrap_source(conf), (
        f"{path.name}: the first code cell is not the Colab bootstrap for {conf['repository']}"
    )
    text = "\n".join(sources)
    for slug, branch, _name in re.findall(
        r"colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)/blob/([^/\s]+)/notebooks/"
        r"([^)\s]+?)\.ipynb",
        text,
    ):
        assert (slug, branch) == (conf["slug"], conf["branch"]), f"{path.name}: Colab link {slug}"
    for slug, branch in re.findall(r"mybinder\.org/v2/gh/([^/\s]+/[^/\s]+)/([^?\s)]+)", text):
        assert (slug, branch) == (conf["slug"], conf["branch"]), f"{path.name}: Binder link {slug}"
    clones = re.findall(r'"(https://github\.com/[^"]+)", "/content/course"', text)
    assert clones == [conf["repository"]], f"{path.name}: Colab clones {clones}"


def test_readme_links_point_at_the_configured_repository():
    from notebooks import course_config

    conf = course_config()
    readme = (ROOT / "README.md").read_text()
    slugs = set(re.findall(r"colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)/", readme))
    slugs |= set(re.findall(r"mybinder\.org/v2/gh/([^/\s]+/[^/\s]+)/", readme))
    slugs.discard("YOU/FORK")  # the instructors' placeholder
    assert slugs and slugs <= {conf["slug"]}, f"README links to {slugs}, configured {conf['slug']}"


if __name__ == "__main__":
    if sys.argv[1:] == ["resolve"]:
        sys.exit(resolve())
    print("usage: python tests/test_binder_colab.py resolve")
    sys.exit(2)
