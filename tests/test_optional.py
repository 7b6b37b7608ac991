"""A missing optional package never stops a notebook: the cell says what is missing and goes on.

bertviz is optional (``course_lib[colab]`` installs it on Colab; requirements.txt elsewhere).
Its three entry points are called here with bertviz made unimportable.
"""

from __future__ import annotations

import sys

import pytest
import torch

from course_lib.viz.bertviz import MISSING_NOTE, head_view, model_view
from course_lib.viz.transformer import encoder_decoder_view


@pytest.fixture
def no_bertviz(monkeypatch):
    monkeypatch.setitem(sys.modules, "bertviz", None)  # `import bertviz` raises ImportError
    with pytest.raises(ImportError):
        import bertviz  # noqa: F401


def _weights(layers=2, heads=2, t=3):
    return torch.rand(layers, heads, t, t).softmax(-1)


def test_views_without_bertviz_print_one_line_and_return(no_bertviz, capsys):
    tokens = ["a", "b", "c"]
    assert head_view(_weights(), tokens) is None
    assert model_view(_weights(), tokens) is None
    run = {
        "src_tokens": tokens,
        "dec_tokens": tokens,
        "encoder": _weights(),
        "decoder": _weights(),
        "cross": _weights(),
    }
    assert encoder_decoder_view(run) is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [MISSING_NOTE] * 3
    assert "pip install bertviz" in MISSING_NOTE


def test_views_with_bertviz_still_draw(capsys):
    pytest.importorskip("bertviz")
    head_view(_weights(), ["a", "b", "c"])
    assert MISSING_NOTE not in capsys.readouterr().out
