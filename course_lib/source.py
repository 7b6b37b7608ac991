"""The code on the page: show course_lib's own source in a notebook, right under its equation.

``show_source(attention_naive)`` displays the function as course_lib runs it, highlighted by
the notebook front end (a fenced Markdown code block: JupyterLab, Colab and GitHub all render
it, and its text/plain form is the same on every machine, so nbval stays stable). Docstrings are
left out by default: the notebook's Markdown above already says what the docstring says.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

__all__ = ["source_text", "show_source"]

_ROOT = Path(__file__).resolve().parent.parent


def _docstring_lines(tree: ast.AST) -> set[int]:
    """1-based line numbers of every docstring of a function or class in ``tree``."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def source_text(obj, docstring: bool = False) -> str:
    """The source of a function, class or method, dedented; without docstrings by default.

    Raises ValueError for objects that have no Python source (builtins, instances).
    """
    try:
        raw = textwrap.dedent(inspect.getsource(obj))
    except (TypeError, OSError) as exc:
        raise ValueError(f"show_source expects a function, class or method defined in Python, "
                         f"received {type(obj).__name__} ({exc})") from None
    if docstring:
        return raw.rstrip() + "\n"
    lines = raw.splitlines()
    drop = _docstring_lines(ast.parse(raw))
    # the blank line that separated a docstring from the code goes with it
    drop |= {i + 1 for i in drop if i < len(lines) and not lines[i].strip()}
    kept = [line for i, line in enumerate(lines, start=1) if i not in drop]
    return "\n".join(kept).rstrip() + "\n"


def _where(obj) -> str:
    try:
        path = Path(inspect.getsourcefile(obj)).resolve()
        return str(path.relative_to(_ROOT))
    except (TypeError, ValueError):
        return getattr(obj, "__module__", "?")


def show_source(*objects, docstring: bool = False) -> None:
    """Display each object's source as a highlighted code block headed by its file.

    ``show_source(split_heads, merge_heads)`` shows both, in order. Returns nothing (the display
    is the output), so a trailing expression prints no repr.
    """
    from IPython.display import Markdown, display

    if not objects:
        raise ValueError("show_source expects at least one function, class or method")
    for obj in objects:
        text = source_text(obj, docstring=docstring)
        name = getattr(obj, "__qualname__", getattr(obj, "__name__", "?"))
        display(Markdown(f"```python\n# {_where(obj)}: {name}\n{text}```"))
