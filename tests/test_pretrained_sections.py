"""The "The real thing" sections of notebooks 04, 05 and 07 with the weights *present*.

Offline, each section prints one line (that run is the ordinary nbval baseline). Here tiny
random checkpoints in the Hugging Face layout stand in for bert-base-uncased, gpt2 and
mamba-130m under COURSE_PRETRAINED_DIR, and strict nbval (the Makefile's flags) runs the
committed notebooks: the section's cells are ``# NBVAL_IGNORE_OUTPUT``, so they must simply
run to the end, their assertions included. A recorder plugin (tests/pretrained_fakes.py)
shows that they did take the weights path. Nothing is downloaded.

This run is also these three notebooks' pass under PyTorch's portable kernels with three
threads (ATEN_CPU_CAPABILITY=default, COURSE_THREADS=3): every cell outside the section is
compared strictly there, so `make test`'s second nbval pass leaves 04, 05 and 07 to it instead
of executing them a fourth time.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from pretrained_fakes import build_fake_pretrained, output_record, plant_wrong_shape  # noqa: E402

from course_lib.experiments import bert, gpt, mamba  # noqa: E402
from course_lib.pretrained import find_pretrained, unavailable_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NBVAL = ["--nbval", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]
NOTEBOOKS = {"bert-base-uncased": "04_bert.ipynb", "gpt2": "05_gpt.ipynb", "mamba-130m": "07_mamba.ipynb"}
DEMOS = {
    "bert-base-uncased": bert.real_model_demo,
    "gpt2": gpt.real_model_demo,
    "mamba-130m": mamba.real_model_demo,
}
# a tensor of each fake checkpoint (names as save_pretrained writes them)
PLANTED = {
    "bert-base-uncased": "bert.encoder.layer.1.intermediate.dense.weight",
    "gpt2": "transformer.h.1.mlp.c_fc.bias",
    "mamba-130m": "backbone.layers.1.mixer.A_log",
}


def section_cells(cells: list[dict]) -> list[dict]:
    """The real-model cells of one notebook: the one that looks for the weights, and those that
    run only when they were found (offline those print nothing at all)."""
    return [c for c in cells if "find_pretrained(" in c["source"] or "if folder is not None" in c["source"]]


def assert_weights_path(name: str, cells: list[dict]) -> None:
    """The cells one notebook ran took the weights path: every real-model cell has an output,
    none says the weights are missing, and the first prints more than the one offline line."""
    assert len(cells) > 20, f"{name}: only {len(cells)} cells recorded"
    section = section_cells(cells)
    assert len(section) >= 2, f"{name}: real-model cells not found among {len(cells)}"
    for cell in section:
        texts = "".join(o["text"] for o in cell["outputs"])
        assert cell["outputs"], f"{name}: no output from the weights path of\n{cell['source']}"
        assert f"{name} weights not found" not in texts, f"{name}: the section took the offline path"
        assert not [o for o in cell["outputs"] if o["type"] == "error"], texts
    printed = "".join(o["text"] for o in section[0]["outputs"] if o["type"] == "stream")
    assert printed.count("\n") >= 3, printed


@pytest.mark.slow
def test_notebooks_pass_strict_nbval_with_the_weights_present(tmp_path):
    build_fake_pretrained(tmp_path / "pretrained")
    record = tmp_path / "cells.jsonl"
    env = dict(
        os.environ,
        COURSE_PRETRAINED_DIR=str(tmp_path / "pretrained"),
        COURSE_NBVAL_RECORD=str(record),
        ATEN_CPU_CAPABILITY="default",  # also the portable-kernel pass of these notebooks
        COURSE_THREADS="3",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
    )
    env.pop("PYTEST_XDIST_WORKER", None)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pretrained_fakes", "-q"]
    command += NBVAL + [f"notebooks/{nb}" for nb in NOTEBOOKS.values()]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]

    cells = [json.loads(line) for line in record.read_text().splitlines()]
    for name, notebook in NOTEBOOKS.items():
        assert_weights_path(name, [c for c in cells if c["notebook"] == notebook])


def test_sections_are_found_in_the_committed_notebooks():
    """The cells the nbval run checks exist, are ignored by nbval and print one line offline
    (the committed baseline), and on that offline baseline the weights-path check fails."""
    for name, notebook in NOTEBOOKS.items():
        cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
        code = [
            {"source": "".join(c["source"]), "outputs": [output_record(o) for o in c["outputs"]]}
            for c in cells
            if c["cell_type"] == "code"
        ]
        section = section_cells(code)
        assert len(section) >= 2 and all(c["source"].startswith("# NBVAL_IGNORE_OUTPUT") for c in section)
        assert f'find_pretrained("{name}")' in section[0]["source"]
        assert unavailable_line(name).startswith(f"{name} weights not found")  # the phrase checked
        stored = "".join(o["text"] for o in section[0]["outputs"])
        assert stored.count("\n") == 1 and f"{name} weights not found" in stored, stored
        assert all(not c["outputs"] for c in section[1:])
        with pytest.raises(AssertionError, match="no output from the weights path|offline path"):
            assert_weights_path(name, code)


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_a_wrong_shape_in_the_checkpoint_stops_the_section_with_a_clear_error(name, tmp_path, monkeypatch):
    folder, _ = build_fake_pretrained(tmp_path, names=[name])[name]
    key = PLANTED[name]
    saved, planted = plant_wrong_shape(folder, key)
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path))
    assert find_pretrained(name) == folder  # the notebook's cell takes the weights path
    expected = (
        rf"{re.escape(key)}.*expected shape {re.escape(str(saved))}.*received {re.escape(str(planted))}"
    )
    with pytest.raises(ValueError, match=expected):
        DEMOS[name](find_pretrained(name))
