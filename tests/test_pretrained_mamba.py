"""Mamba weights in the course's MambaLM (course_lib.pretrained.mamba), proven equal to
transformers' MambaForCausalLM on random-weight checkpoints written with save_pretrained.
Nothing is downloaded; transformers is a test-only dependency."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from course_lib.data.tokenizer import build_tokenizer  # noqa: E402
from course_lib.experiments.mamba import (  # noqa: E402
    real_model_demo,
    real_model_explorer,
    real_model_lines,
)
from course_lib.mamba import MambaConfig, MambaLM  # noqa: E402
from course_lib.pretrained import find_pretrained, unavailable_line  # noqa: E402
from hf_reference import max_logit_diff, random_reference, save, story_word_level  # noqa: E402
from course_lib.pretrained.mamba import MAMBA_130M, load_mamba, mamba_config  # noqa: E402

CONFIGS = {
    "small": dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, state_size=8),
    "wide, odd vocab, rank 5": dict(
        vocab_size=251, hidden_size=48, num_hidden_layers=3, state_size=16, time_step_rank=5, expand=3
    ),
    "no conv bias, biases, eps, K=3": dict(
        vocab_size=64,
        hidden_size=24,
        num_hidden_layers=1,
        state_size=4,
        conv_kernel=3,
        use_conv_bias=False,
        use_bias=True,
        layer_norm_epsilon=1e-3,
    ),
}


def hf_mamba(seed=0, **kw):
    """A MambaForCausalLM with random weights, norms, D and biases perturbed too."""
    return random_reference(
        transformers.MambaForCausalLM,
        transformers.MambaConfig(bos_token_id=None, eos_token_id=None, pad_token_id=None, **kw),
        seed,
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_and_greedy_tokens_equal_transformers(name, tmp_path):
    hf = hf_mamba(**CONFIGS[name])
    ours = load_mamba(save(hf, tmp_path))
    diff, prompt = max_logit_diff(ours, hf, CONFIGS[name]["vocab_size"])
    assert diff <= 1e-4, diff
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    mine = ours.generate(prompt, 20)  # course recurrent step
    assert mine.shape == (3, 25) and torch.equal(mine, theirs)


def test_config_mapping():
    c = mamba_config(
        {
            "model_type": "mamba",
            "hidden_size": 768,
            "num_hidden_layers": 24,
            "state_size": 16,
            "vocab_size": 50280,
            "intermediate_size": 1536,
            "time_step_rank": 48,
            "layer_norm_epsilon": 1e-5,
            "residual_in_fp32": True,
        }
    )
    assert c == MAMBA_130M and c.d_inner == 1536 and c.dt_rank == 48
    original = mamba_config({"d_model": 768, "n_layer": 24, "vocab_size": 50280})  # mamba_ssm names
    assert original == MAMBA_130M


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden_act", "gelu"),
        ("tie_word_embeddings", False),
        ("rms_norm", False),
        ("model_type", "mamba2"),
        ("intermediate_size", 100),
        ("time_step_rank", "half"),
    ],
)
def test_unsupported_config_raises(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        mamba_config({"hidden_size": 32, field: value})


def _rewrite(folder, change):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_missing_key_wrong_shape_and_extra_key_raise(tmp_path):
    hf = hf_mamba(**CONFIGS["small"])
    p = "backbone.layers."
    for case, change, message in [
        (
            "missing",
            lambda t: t.pop(f"{p}1.mixer.dt_proj.bias"),
            r"missing key 'backbone.layers.1.mixer.dt_proj.bias'.*expected shape \(64,\)",
        ),
        (
            "shape",
            lambda t: t.update({f"{p}0.mixer.A_log": torch.zeros(64, 7)}),
            r"A_log.*expected shape \(64, 8\).*received \(64, 7\)",
        ),
        (
            "conv",
            lambda t: t.update({f"{p}0.mixer.conv1d.weight": torch.zeros(64, 2, 4)}),
            r"expected shape \(64, 4\) for layers.0.conv_weight, received \(64, 2, 4\)",
        ),
        (
            "extra",
            lambda t: t.update({f"{p}0.mixer.B_norm.weight": torch.zeros(8)}),
            r"unexpected keys .*B_norm",
        ),
        ("untied", lambda t: t.update({"lm_head.weight": torch.zeros(97, 32)}), r"lm_head.weight differs"),
    ]:
        folder = save(hf, tmp_path / case)
        _rewrite(folder, change)
        with pytest.raises(ValueError, match=message):
            load_mamba(folder)


def test_nothing_half_loaded_and_no_pickle(tmp_path):
    from course_lib.pretrained import assign_weights, read_hf_folder
    from course_lib.pretrained.mamba import mamba_mapping

    folder = save(hf_mamba(**CONFIGS["small"]), tmp_path / "ok")
    hf_config, tensors = read_hf_folder(folder)
    model = MambaLM(mamba_config(hf_config))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["backbone.norm_f.weight"] = torch.zeros(31)  # one bad tensor among many
    with pytest.raises(ValueError, match="norm_f.weight"):
        assign_weights(model, tensors, mamba_mapping(model.config), "test")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pickled = tmp_path / "pickle"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    torch.save({"backbone.embeddings.weight": torch.zeros(2, 2)}, pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        load_mamba(pickled)


def test_a_hub_file_without_prefix_and_with_its_tied_head_loads(tmp_path):
    hf = hf_mamba(**CONFIGS["small"])
    folder = save(hf, tmp_path)

    def hub_layout(t):  # no "backbone." prefix, lm_head stored as well
        for k in list(t):
            t[k.removeprefix("backbone.")] = t.pop(k)
        t["lm_head.weight"] = t["embeddings.weight"].clone()

    _rewrite(folder, hub_layout)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(load_mamba(folder)(ids), hf(ids).logits, atol=1e-4, rtol=0)


def fake_mamba_folder(root):
    """A tiny random Mamba in the hub's layout under root/mamba-130m: config.json,
    model.safetensors and a WordLevel tokenizer.json over the course's story vocabulary."""
    tok = build_tokenizer()
    folder = root / "mamba-130m"
    hf = hf_mamba(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, state_size=8)
    save(hf, folder)
    story_word_level(folder)
    return folder, hf


def test_the_real_thing_section_runs_on_a_fake_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path / "empty"))
    assert find_pretrained("mamba-130m") is None and "mamba-130m" in unavailable_line("mamba-130m")
    folder, hf = fake_mamba_folder(tmp_path)
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path))
    assert find_pretrained("mamba-130m") == folder
    real = real_model_demo(find_pretrained("mamba-130m"))  # the notebook's code path
    lines = real_model_lines(real)
    assert len(lines) == 5 and "vocabulary 183" in lines[0]
    l = real["ids"].shape[1]
    assert real["out"].shape == (1, l + 20) and len(real["tokens"]) == l
    first, last = real["step_bytes"][1], real["step_bytes"][l + 20]  # memory does not grow
    assert first == last and real["state_bytes"] <= first
    theirs = hf.generate(real["ids"], max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(real["out"], theirs)  # the loaded model is HF's
    assert real["deltas"].shape == (2, l, 64) and (real["deltas"] > 0).all()
    explorer = real_model_explorer(real)
    explorer.controls["quantity"].value = "keep"
    assert ((explorer.data["values"] > 0) & (explorer.data["values"] < 1)).all()


def test_checkpoint_config_file_is_the_hub_layout(tmp_path):
    folder = save(hf_mamba(**CONFIGS["small"]), tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mamba" and config["hidden_size"] == 32
    assert mamba_config(config) == MambaConfig(vocab_size=97, d_model=32, n_layers=2, d_state=8)
