"""The shared pretrained-weights machinery: safetensors only, all-or-nothing loading, one clear
line when weights are absent. (Each model's parity with `transformers` is in
test_pretrained_<model>.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from course_lib.pretrained import (
    SOURCES,
    assign_weights,
    find_pretrained,
    pretrained_dir,
    read_hf_folder,
    unavailable_line,
)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.proj = nn.Linear(3, 3)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.emb.weight  # a tied read-out: one tensor, two keys


def _source_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "wte": torch.randn(5, 3, generator=g),
        "dense.w": torch.randn(3, 3, generator=g),
        "dense.b": torch.randn(3, generator=g),
        "attn.bias": torch.ones(4, 4),
    }


MAPPING = {"emb.weight": "wte", "proj.weight": lambda take: take("dense.w").T, "proj.bias": "dense.b"}


def test_assign_weights_fills_every_key_and_follows_ties():
    model, src = Tied(), _source_tensors()
    assign_weights(model, src, MAPPING, "toy", ignore=(r"attn\.bias$",))
    assert torch.equal(model.emb.weight, src["wte"]) and torch.equal(model.out.weight, src["wte"])
    assert torch.equal(model.proj.weight, src["dense.w"].T)


@pytest.mark.parametrize(
    "fault, match",
    [
        ("drop_source", r"toy: missing key 'dense\.b' \(needed for proj\.bias, expected shape \(3,\)\)"),
        ("wrong_shape", r"toy: 'wte': expected shape \(5, 3\) for emb\.weight, received \(6, 3\)"),
        ("extra_source", r"unexpected keys the course model has no place for: \['extra'\]"),
        ("unmapped", r"course keys without a source \['proj\.bias'\]"),
        (
            "derived_shape",
            r"toy: \(derived for proj\.weight from dense\.w \(3, 2\)\): expected shape "
            r"\(3, 3\) for proj\.weight, received \(2, 3\)",
        ),
        ("not_ignored", r"unexpected keys .*\['attn\.bias'\]"),
    ],
)
def test_assign_weights_refuses_and_leaves_the_model_untouched(fault, match):
    model, src, mapping, ignore = Tied(), _source_tensors(), dict(MAPPING), (r"attn\.bias$",)
    if fault == "drop_source":
        del src["dense.b"]
    elif fault == "wrong_shape":
        src["wte"] = torch.zeros(6, 3)
    elif fault == "extra_source":
        src["extra"] = torch.zeros(1)
    elif fault == "derived_shape":
        src["dense.w"] = torch.zeros(3, 2)
    elif fault == "unmapped":
        del mapping["proj.bias"]
    else:
        ignore = ()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        assign_weights(model, src, mapping, "toy", ignore=ignore)
    for key, value in model.state_dict().items():  # nothing half-loaded
        assert torch.equal(value, before[key]), key


def test_read_hf_folder_reads_safetensors_and_refuses_pickles(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps({"n_embd": 3}))
    with pytest.raises(ValueError, match=r"expected .*model\.safetensors, but it has none"):
        read_hf_folder(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(
        ValueError,
        match=r"only pickle files \['pytorch_model\.bin'\], which the "
        r"course never loads",
    ):
        read_hf_folder(tmp_path)
    save_file({"w": torch.ones(2, dtype=torch.float16)}, str(tmp_path / "model.safetensors"))
    config, tensors = read_hf_folder(tmp_path)
    assert config == {"n_embd": 3} and tensors["w"].dtype == torch.float32
    with pytest.raises(ValueError, match=r"expected .*config\.json"):
        read_hf_folder(tmp_path / "nowhere")


def test_find_pretrained_needs_every_file_and_says_one_line_when_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path))
    assert pretrained_dir() == tmp_path
    assert find_pretrained("gpt2") is None
    line = unavailable_line("gpt2")
    assert "\n" not in line and str(tmp_path / "gpt2") in line
    assert "python tools/fetch_pretrained.py gpt2" in line
    folder = tmp_path / "gpt2"
    folder.mkdir()
    for name in SOURCES["gpt2"].files[:-1]:
        (folder / name).write_text("{}")
    assert find_pretrained("gpt2") is None  # one file still missing
    (folder / SOURCES["gpt2"].files[-1]).write_text("{}")
    assert find_pretrained("gpt2") == folder
    with pytest.raises(ValueError, match=r"unknown pretrained model 'gpt3': expected one of"):
        find_pretrained("gpt3")


def test_every_source_pins_a_full_commit():
    for name, src in SOURCES.items():
        assert len(src.revision) == 40 and int(src.revision, 16) >= 0, name
        assert "model.safetensors" in src.files and not any(f.endswith(".bin") for f in src.files)
        assert set(src.sha256) <= set(src.files), name


def test_assign_weights_can_fill_a_meta_model_without_copying():
    src = _source_tensors()
    with torch.device("meta"):
        model = Tied()
    assign_weights(model, src, MAPPING, "toy", ignore=(r"attn\.bias$",), assign=True)
    assert not any(p.is_meta for p in model.parameters())
    assert model.emb.weight.data_ptr() == src["wte"].data_ptr()  # handed over, not copied
    torch.testing.assert_close(model.out.weight, src["wte"])
    x = torch.tensor([[0, 3]])
    torch.testing.assert_close(
        model.out(model.proj(model.emb(x))), (src["wte"][x] @ src["dense.w"] + src["dense.b"]) @ src["wte"].T
    )


def test_assign_weights_names_what_a_meta_model_still_lacks():
    class WithBuffer(Tied):
        def __init__(self):
            super().__init__()
            self.register_buffer("table", torch.zeros(2), persistent=False)

    with torch.device("meta"):
        model = WithBuffer()
    with pytest.raises(ValueError, match=r"still on the meta device after loading .*\['table'\]"):
        assign_weights(model, _source_tensors(), MAPPING, "toy", ignore=(r"attn\.bias$",), assign=True)
