"""Build, check and re-point the course notebooks.

Notebooks are written as percent-format scripts in ``notebooks/src/NN_topic.py`` (readable diffs)
and built into ``notebooks/NN_topic.ipynb`` with their executed outputs (the nbval baseline).

    python tools/notebooks.py build [01 02 ...]   # src -> ipynb, then execute and store outputs
    python tools/notebooks.py sync  [01 ...]      # src -> ipynb sources, keep outputs if unchanged
    python tools/notebooks.py check               # every ipynb matches its src, and every number
                                                  # its prose states is shown or cited (claims.py)
    python tools/notebooks.py repoint URL [--branch B]   # point badges + Colab cells at a fork

Cell markers in a src file: ``# %%`` code, ``# %% [markdown]`` markdown (lines start with "# "),
``# %% [bootstrap]`` the generated Colab setup cell. A markdown line ``<!-- badges -->`` becomes
the Colab and Binder badges. The repository URL lives only in pyproject.toml ([tool.course]).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SRC = NOTEBOOKS / "src"
PYPROJECT = ROOT / "pyproject.toml"
README = ROOT / "README.md"
BADGES_MARK = "<!-- badges -->"


def course_config() -> dict:
    """The [tool.course] table of pyproject.toml: repository URL and branch."""
    import tomllib

    with open(PYPROJECT, "rb") as f:
        conf = tomllib.load(f)["tool"]["course"]
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", conf["repository"])
    if not match:
        raise SystemExit(
            f"[tool.course] repository must be https://github.com/OWNER/REPO, got {conf['repository']!r}"
        )
    conf["slug"] = f"{match.group(1)}/{match.group(2)}"
    return conf


def badges(name: str, conf: dict) -> str:
    """Markdown for the Colab and Binder badges of notebook ``name`` (e.g. '01_attention')."""
    slug, branch = conf["slug"], conf["branch"]
    colab = f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{name}.ipynb"
    binder = f"https://mybinder.org/v2/gh/{slug}/{branch}?urlpath=lab/tree/notebooks/{name}.ipynb"
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})"
    )


def bootstrap_source(conf: dict) -> str:
    """The first code cell: on Colab fetch the course and install course_lib; elsewhere nothing.

    It installs ``course_lib[colab]`` (the course package and bertviz) and nothing of Colab's
    own: every dependency is a range that Colab's packages already satisfy, so pip adds what is
    missing and upgrades nothing (torch, ipywidgets, ... stay Colab's). Run twice, or after
    *Restart session*, it finds everything in place and only changes directory.
    """
    return f'''# Colab only: fetch the course and install course_lib + bertviz, keeping Colab's own packages
# (torch, ipywidgets, ...). Everywhere else (JupyterLab, Binder) this cell does nothing.
import sys

if "google.colab" in sys.modules:
    import importlib.util, os, subprocess
    if not os.path.isdir("/content/course"):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{conf["branch"]}",
                        "{conf["repository"]}", "/content/course"], check=True)
    if not all(importlib.util.find_spec(m) for m in ("course_lib", "bertviz")):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e",
                        "/content/course[colab]"], check=True)
    sys.path.insert(0, "/content/course")  # the editable install is seen only after a restart
    os.chdir("/content/course/notebooks")'''


def parse_src(path: Path, conf: dict) -> list[tuple[str, str]]:
    """Read a percent-format script into [(cell_type, source)]."""
    cells, kind, lines = [], None, []

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.split("\n"))
            text = text.replace(BADGES_MARK, badges(path.stem, conf))
        elif kind == "bootstrap":
            kind_out = "code"
            cells.append((kind_out, bootstrap_source(conf)))
            return
        cells.append((kind, text))

    for line in path.read_text().split("\n"):
        marker = re.fullmatch(r"# %%(?: \[(\w+)\])?.*", line)
        if marker:
            flush()
            kind, lines = marker.group(1) or "code", []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def to_notebook(cells, old=None):
    """nbformat notebook from cells; outputs of unchanged code cells are carried over from old."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    previous = {}
    if old is not None:
        previous = {c.source: c for c in old.cells if c.cell_type == "code"}
        if "widgets" in old.metadata:  # the stored widget state (static views of the explorers)
            nb.metadata["widgets"] = old.metadata["widgets"]
    for index, (kind, source) in enumerate(cells):
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
            continue
        cell = nbformat.v4.new_code_cell(source)
        same_place = old.cells[index] if old is not None and index < len(old.cells) else None
        if source in previous:
            cell.outputs = previous[source].outputs
            cell.execution_count = previous[source].execution_count
            cell.metadata = previous[source].metadata
        elif "google.colab" in source and same_place is not None and "google.colab" in same_place.source:
            # the re-pointed Colab bootstrap cell: it prints nothing off Colab, keep its count
            cell.outputs = same_place.outputs
            cell.execution_count = same_place.execution_count
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):  # stable ids keep diffs small
        cell.id = f"c{i:03d}"
    return nb


def select(names: list[str]) -> list[Path]:
    srcs = sorted(SRC.glob("[0-9][0-9]_*.py"))
    if not names:
        return srcs
    chosen = [p for p in srcs if any(p.stem.startswith(n) for n in names)]
    if not chosen:
        raise SystemExit(f"no notebook source matches {names}; have {[p.stem for p in srcs]}")
    return chosen


def execute(nb, timeout: int = 600):
    """Run a notebook in notebooks/ with the same environment the test suite uses."""
    from nbclient import NotebookClient

    os.environ["COURSE_PROGRESS"] = "0"
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return nb


def cmd_build(names, run=True):
    import nbformat

    conf = course_config()
    for src in select(names):
        target = NOTEBOOKS / f"{src.stem}.ipynb"
        old = nbformat.read(target, as_version=4) if target.exists() else None
        nb = to_notebook(parse_src(src, conf), None if run else old)
        if run:
            start = time.perf_counter()
            execute(nb)
            print(f"{src.stem}: executed in {time.perf_counter() - start:.1f} s")
        nbformat.write(nb, target)
        print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size / 1024:.0f} KiB)")


def cmd_check() -> int:
    """Exit status 1 when an ipynb's sources differ from its src, or a src has no ipynb."""
    import nbformat

    conf, bad = course_config(), []
    for src in select([]):
        target = NOTEBOOKS / f"{src.stem}.ipynb"
        if not target.exists():
            bad.append(f"{target.name}: missing (run tools/notebooks.py build {src.stem[:2]})")
            continue
        want = parse_src(src, conf)
        have = [(c.cell_type, c.source) for c in nbformat.read(target, as_version=4).cells]
        if want != have:
            first = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
            bad.append(f"{target.name}: cell {first} differs from {src.relative_to(ROOT)}")
        unexecuted = [
            i
            for i, c in enumerate(nbformat.read(target, as_version=4).cells)
            if c.cell_type == "code" and c.execution_count is None
        ]
        if unexecuted:
            bad.append(f"{target.name}: code cells {unexecuted[:5]} have no stored outputs")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from claims import check as check_claims

    bad += check_claims(
        [NOTEBOOKS / f"{src.stem}.ipynb" for src in select([]) if (NOTEBOOKS / f"{src.stem}.ipynb").exists()]
    )
    for line in bad:
        print(line)
    print("notebooks match their sources" if not bad else f"{len(bad)} problem(s)")
    return 1 if bad else 0


def cmd_repoint(url: str, branch: str | None) -> None:
    """Point pyproject, README, every badge and Colab cell at another repository (a fork)."""
    if not re.fullmatch(r"https://github\.com/[^/]+/[^/]+?/?", url):
        raise SystemExit(f"expected https://github.com/OWNER/REPO, got {url!r}")
    old = course_config()
    text = PYPROJECT.read_text()
    text = re.sub(r'(?m)^repository = ".*"$', f'repository = "{url.rstrip("/")}"', text)
    if branch:
        text = re.sub(r'(?m)^branch = ".*"$', f'branch = "{branch}"', text)
    PYPROJECT.write_text(text)
    new = course_config()
    readme = README.read_text()
    for a, b in ((old["repository"], new["repository"]), (old["slug"], new["slug"])):
        readme = readme.replace(a, b)
    readme = readme.replace(f"/blob/{old['branch']}/", f"/blob/{new['branch']}/")
    readme = readme.replace(f"{new['slug']}/{old['branch']}?", f"{new['slug']}/{new['branch']}?")
    README.write_text(readme)
    cmd_build([], run=False)  # sources re-rendered, stored outputs kept
    print(f"re-pointed at {new['repository']} ({new['branch']})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("build", "sync"):
        p = sub.add_parser(name)
        p.add_argument("names", nargs="*")
    sub.add_parser("check")
    p = sub.add_parser("repoint")
    p.add_argument("url")
    p.add_argument("--branch")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        cmd_build(args.names)
    elif args.cmd == "sync":
        cmd_build(args.names, run=False)
    elif args.cmd == "check":
        return cmd_check()
    else:
        cmd_repoint(args.url, args.branch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
