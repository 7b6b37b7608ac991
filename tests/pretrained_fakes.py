"""Tiny random-weight checkpoints laid out as ``COURSE_PRETRAINED_DIR`` expects, for all three
real-model sections at once, plus a pytest plugin that records what nbval's cells printed.

The checkpoints come from the per-model tests' own builders (tests/test_pretrained_{bert,gpt2,
mamba}.py): ``<root>/<name>/`` with config.json, model.safetensors (saved by ``transformers``
from a random-weight model) and a WordLevel tokenizer.json over the course's story vocabulary.

As a plugin (``python -m pytest -p pretrained_fakes ...`` with tests/ on PYTHONPATH and
``COURSE_NBVAL_RECORD`` set to a file), every executed nbval cell appends one JSON line to that
file: the notebook, the cell's source and, per output, its type and its text (stream text,
text/plain, the error name and value). nbval itself keeps no executed notebook, and the outputs
of the real-model cells are ``# NBVAL_IGNORE_OUTPUT``: this is how a test sees that those
cells took the weights path.
"""

import json
import os
from pathlib import Path

from test_pretrained_bert import fake_bert_folder
from test_pretrained_gpt2 import _rewrite, fake_gpt2_folder
from test_pretrained_mamba import fake_mamba_folder

BUILDERS = {"bert-base-uncased": fake_bert_folder, "gpt2": fake_gpt2_folder, "mamba-130m": fake_mamba_folder}


def build_fake_pretrained(root: Path, names=tuple(BUILDERS)) -> dict:
    """Write a tiny random checkpoint for each of ``names`` under ``root``; returns
    {name: (folder, the transformers reference model)}."""
    return {name: BUILDERS[name](Path(root)) for name in names}


def plant_wrong_shape(folder: Path, key: str) -> tuple:
    """Drop the last row of tensor ``key`` in folder/model.safetensors; returns its shapes
    (as saved, as planted)."""
    shapes = {}

    def change(tensors):
        shapes["saved"] = tuple(tensors[key].shape)
        tensors[key] = tensors[key][:-1].clone()
        shapes["planted"] = tuple(tensors[key].shape)

    _rewrite(Path(folder), change)
    return shapes["saved"], shapes["planted"]


def output_record(out) -> dict:
    data = out.get("data", {})
    text = out.get("text", "") or data.get("text/plain", "")
    if out.get("output_type") == "error":
        text = f"{out.get('ename')}: {out.get('evalue')}"
    return {"type": out.get("output_type"), "text": text if isinstance(text, str) else "".join(text)}


def pytest_runtest_teardown(item):
    """nbval's cell items keep the outputs of their run in ``test_outputs``: record them."""
    record = os.environ.get("COURSE_NBVAL_RECORD")
    outputs = getattr(item, "test_outputs", None)
    if not record or outputs is None or not hasattr(item, "cell"):
        return
    line = {
        "notebook": Path(str(item.path)).name,
        "source": item.cell.source,
        "outputs": [output_record(o) for o in outputs],
    }
    with open(record, "a") as f:
        f.write(json.dumps(line) + "\n")
