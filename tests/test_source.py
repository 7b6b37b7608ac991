"""course_lib.source: the library's own code, shown in the notebooks under its equation."""

from __future__ import annotations

import inspect

import IPython.display
import pytest

from course_lib.attention import MultiHeadAttention, attention_naive
from course_lib.source import show_source, source_text


def test_source_text_is_the_running_code_without_its_docstring():
    text = source_text(attention_naive)
    full = inspect.getsource(attention_naive)
    assert text.startswith("def attention_naive(")
    assert attention_naive.__doc__.strip().splitlines()[0] not in text
    code_lines = [l for l in text.splitlines() if l.strip()]
    assert all(l in full for l in code_lines), "every shown line is a line of the source"
    assert compile(text, "<shown>", "exec"), "what is shown is valid Python"
    assert attention_naive.__doc__.strip().splitlines()[0] in source_text(attention_naive, docstring=True)


def test_methods_and_classes_are_dedented_and_keep_their_code():
    text = source_text(MultiHeadAttention.forward)
    assert text.startswith("def forward(")
    cls = source_text(MultiHeadAttention)
    assert cls.startswith("class MultiHeadAttention") and "def forward(" in cls
    assert '"""' not in cls


def test_a_removed_docstring_leaves_no_blank_line_under_its_header():
    from course_lib.scan import _ChunkedScan

    text = source_text(_ChunkedScan)
    header, second = text.splitlines()[:2]
    assert header.startswith("class _ChunkedScan") and second.strip(), text[:200]


def test_show_source_displays_one_markdown_code_block_per_object(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    show_source(attention_naive, MultiHeadAttention.forward)
    assert [type(o).__name__ for o in shown] == ["Markdown", "Markdown"]
    first = shown[0].data
    assert first.startswith("```python\n# course_lib/attention.py: attention_naive\n")
    assert first.endswith("```") and "def attention_naive(" in first
    assert "MultiHeadAttention.forward" in shown[1].data


@pytest.mark.parametrize("bad", [len, 3, MultiHeadAttention(8, 2)])
def test_show_source_rejects_what_has_no_python_source(bad):
    with pytest.raises(ValueError, match="expects a function, class or method"):
        source_text(bad)


def test_show_source_needs_an_object():
    with pytest.raises(ValueError, match="at least one"):
        show_source()
