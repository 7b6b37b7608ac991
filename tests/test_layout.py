"""course_lib's layout follows the syllabus: a module imports only services and topics taught
at or before its own (00 word vectors < 01 attention < … < 07 Mamba < 08 modern decoders
< 09 RWKV and hybrids), and there is no import cycle. viz/checks/experiments/pretrained
modules take the level of the topic they are named after; everything else (common, training,
timing, source, data, the package roots) is a service that imports no topic at all."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "course_lib"

LEVEL = {
    "word_vectors": 0,
    "rnn": 0,
    "attention": 1,
    "positional": 2,
    "transformer": 3,
    "bert": 4,
    "gpt": 5,
    "gpt2": 5,
    "ssm": 6,
    "s4": 6,
    "scan": 7,
    "mamba": 7,
    "llama": 8,
    "rwkv": 9,
    "hybrid": 9,
}
SERVICE = -1


def level(module: str) -> int:
    """course_lib.viz.attention -> 1; course_lib.training -> SERVICE."""
    parts = module.split(".")[1:]
    return LEVEL.get(parts[-1], SERVICE) if parts else SERVICE


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_edges(root: Path) -> list[tuple[str, str, int]]:
    """(importer, imported course_lib module, line) for every import in the package, including
    imports inside functions (a lazy import does not make a forward dependency go away)."""
    known = {module_name(p, root) for p in root.rglob("*.py")}
    edges = []
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from course_lib.viz import attention` imports the submodule when there is one
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                    for a in node.names
                ]
            for target in targets:
                if target.split(".")[0] == root.name and target != me:
                    edges.append((me, target, node.lineno))
    return edges


def violations(edges) -> list[str]:
    bad = [
        f"{a} (level {level(a)}) imports {b} (level {level(b)}) at line {n}"
        for a, b, n in edges
        if level(b) > level(a) or (level(a) == SERVICE and level(b) != SERVICE)
    ]
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                bad.append("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return bad


def test_course_lib_imports_point_backwards_along_the_course():
    edges = import_edges(ROOT)
    assert len(edges) > 30  # the walk found the package's real imports
    assert violations(edges) == []


@pytest.mark.parametrize(
    "planted, expected",
    [
        (
            {"attention.py": "from course_lib.transformer import EncoderLayer\n", "transformer.py": ""},
            "course_lib.attention (level 1) imports course_lib.transformer (level 3) at line 1",
        ),
        (
            {"positional.py": "def f():\n    from course_lib.gpt import GPT\n", "gpt.py": ""},
            "course_lib.positional (level 2) imports course_lib.gpt (level 5) at line 2",
        ),
        (
            {"training.py": "import course_lib.attention\n", "attention.py": ""},
            "course_lib.training (level -1) imports course_lib.attention (level 1) at line 1",
        ),
        (
            {
                "common.py": "from course_lib.timing import t\n",
                "timing.py": "from course_lib.common import c\n",
            },
            "import cycle: course_lib.common -> course_lib.timing -> course_lib.common",
        ),
    ],
)
def test_the_layout_check_catches_a_planted_fault(tmp_path, planted, expected):
    pkg = tmp_path / "course_lib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in planted.items():
        (pkg / name).write_text(text)
    assert expected in violations(import_edges(pkg))


README = ROOT.parent / "README.md"


def layout_map(text: str) -> list[dict]:
    """The README's layout-map rows: {"nb": "05", "modules": [...], "tests": [...], ...}."""
    block = text.split("<!-- layout-map -->")[1].split("<!-- /layout-map -->")[0]
    rows = []
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = [re.findall(r"`([^`]+)`", c) for c in cells]
        rebuild = cells[5].split("→")
        rows.append(
            {
                "nb": cells[0],
                "modules": names[1] + names[2] + names[3],
                "tests": names[4],
                "tools": re.findall(r"`([^`]+)`", rebuild[0]),
                "checkpoints": re.findall(r"`([^`]+)`", rebuild[1]) if len(rebuild) > 1 else [],
            }
        )
    return rows


def layout_problems(text: str, root: Path) -> list[str]:
    repo, problems, listed = root.parent, [], set()
    for row in layout_map(text):
        for name in row["modules"]:
            dotted = f"{root.name}.{name}"
            listed.add(dotted)
            path = root.joinpath(*name.split("."))
            if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
                problems.append(f"{row['nb']}: module {dotted} does not exist")
            if (
                row["nb"].isdigit()
                and name.split(".")[0] in ("experiments", "checks", "viz")
                and level(dotted) not in (int(row["nb"]), SERVICE)
            ):
                problems.append(f"{row['nb']}: {dotted} belongs to topic {level(dotted)}")
        problems += [
            f"{row['nb']}: tests/{t}.py does not exist"
            for t in row["tests"]
            if not (repo / "tests" / f"{t}.py").is_file()
        ]
        problems += [
            f"{row['nb']}: tools/{t}.py does not exist"
            for t in row["tools"]
            if not (repo / "tools" / f"{t}.py").is_file()
        ]
        problems += [
            f"{row['nb']}: no data/{c}.safetensors"
            for c in row["checkpoints"]
            if not list((repo / "data").glob(f"{c}.safetensors"))
        ]
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        if name != root.name and name not in listed:
            problems.append(f"{name} is not in the README's layout map")
    return problems


def test_the_readme_layout_map_names_every_module_and_existing_files():
    assert layout_problems(README.read_text(), ROOT) == []


def test_the_layout_map_check_catches_a_planted_fault():
    text = README.read_text()
    assert "module course_lib.nowhere does not exist" in " ".join(
        layout_problems(text.replace("`s4`", "`s4`, `nowhere`"), ROOT)
    )
    assert "course_lib.s4 is not in the README's layout map" in layout_problems(
        text.replace("`ssm`, `s4`", "`ssm`"), ROOT
    )
    assert "06: tests/test_ssm_gone.py does not exist" in layout_problems(
        text.replace("`test_ssm`", "`test_ssm_gone`"), ROOT
    )
    assert "06: no data/ssm_longer.safetensors" in layout_problems(
        text.replace("`ssm_long`", "`ssm_longer`"), ROOT
    )
