"""GPT-2 weights in the course's GPT (course_lib.pretrained.gpt2), proven equal to transformers'
GPT2LMHeadModel on random-weight checkpoints written with save_pretrained. Nothing is
downloaded; transformers is a test-only dependency."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from course_lib.data.tokenizer import build_tokenizer  # noqa: E402
from course_lib.experiments.gpt import (  # noqa: E402
    head_scores,
    real_model_demo,
    real_model_explorer,
    real_model_lines,
)
from course_lib.gpt import GPT, GPTConfig, generate  # noqa: E402
from course_lib.pretrained import find_pretrained, unavailable_line  # noqa: E402
from hf_reference import max_logit_diff, random_reference, save, story_word_level  # noqa: E402
from course_lib.pretrained.gpt2 import gpt2_config, load_gpt2  # noqa: E402

CONFIGS = {
    "small": dict(vocab_size=101, n_positions=64, n_embd=32, n_layer=2, n_head=4),
    "wide, odd vocab": dict(vocab_size=257, n_positions=48, n_embd=48, n_layer=3, n_head=3),
    "exact gelu, eps, n_inner": dict(
        vocab_size=50,
        n_positions=40,
        n_embd=64,
        n_layer=1,
        n_head=8,
        n_inner=80,
        activation_function="gelu",
        layer_norm_epsilon=1e-3,
    ),
}


def hf_gpt2(seed=0, **kw):
    """A GPT2LMHeadModel with random weights, LayerNorms and biases perturbed too."""
    return random_reference(
        transformers.GPT2LMHeadModel,
        transformers.GPT2Config(bos_token_id=None, eos_token_id=None, **kw),
        seed,
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_and_greedy_tokens_equal_transformers(name, tmp_path):
    hf = hf_gpt2(**CONFIGS[name])
    ours = load_gpt2(save(hf, tmp_path))
    diff, prompt = max_logit_diff(ours, hf, CONFIGS[name]["vocab_size"])
    assert diff <= 1e-4, diff
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    mine = generate(ours, prompt, 20, greedy=True)  # course KV cache
    assert mine.shape == (3, 25) and torch.equal(mine, theirs)


def test_config_mapping():
    c = gpt2_config(
        {
            "model_type": "gpt2",
            "n_embd": 1600,
            "n_layer": 48,
            "n_head": 25,
            "n_positions": 1024,
            "vocab_size": 50257,
        }
    )
    assert c == GPTConfig.gpt2("gpt2-xl")
    assert c.activation == "gelu_tanh" and c.eps == 1e-5 and c.d_ff == 6400


@pytest.mark.parametrize(
    "field, value",
    [
        ("scale_attn_by_inverse_layer_idx", True),
        ("add_cross_attention", True),
        ("tie_word_embeddings", False),
        ("scale_attn_weights", False),
        ("activation_function", "relu"),
        ("model_type", "bert"),
    ],
)
def test_unsupported_config_raises(field, value):
    with pytest.raises(ValueError, match=f"{field}|model_type"):
        gpt2_config({"n_embd": 32, "n_head": 4, field: value})
    with pytest.raises(ValueError, match="n_embd=30 must be divisible by n_head=4"):
        gpt2_config({"n_embd": 30, "n_head": 4})


def _rewrite(folder, change):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_missing_key_wrong_shape_and_extra_key_raise(tmp_path):
    hf = hf_gpt2(**CONFIGS["small"])
    for case, change, message in [
        (
            "missing",
            lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"),
            r"missing key 'transformer.h.1.mlp.c_fc.bias'.*expected shape \(128,\)",
        ),
        (
            "shape",
            lambda t: t.update({"transformer.wpe.weight": torch.zeros(63, 32)}),
            r"transformer.wpe.weight.*expected shape \(64, 32\).*received \(63, 32\)",
        ),
        (
            "conv1d",
            lambda t: t.update({"transformer.h.0.attn.c_attn.weight": torch.zeros(96, 32)}),
            r"expected shape \(96, 32\) for layers.0.self_attn.qkv_proj.weight, received \(32, 96\)",
        ),
        (
            "extra",
            lambda t: t.update({"transformer.h.0.attn.rotary": torch.zeros(3)}),
            r"unexpected keys .*transformer.h.0.attn.rotary",
        ),
        ("untied", lambda t: t.update({"lm_head.weight": torch.zeros(101, 32)}), r"lm_head.weight differs"),
    ]:
        folder = save(hf, tmp_path / case)
        _rewrite(folder, change)
        with pytest.raises(ValueError, match=message):
            load_gpt2(folder)


def test_nothing_half_loaded_and_no_pickle(tmp_path):
    from course_lib.pretrained import assign_weights, read_hf_folder
    from course_lib.pretrained.gpt2 import GPT2_IGNORE, gpt2_mapping

    hf = hf_gpt2(**CONFIGS["small"])
    folder = save(hf, tmp_path / "ok")
    config, tensors = read_hf_folder(folder)
    model = GPT(gpt2_config(config))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["transformer.ln_f.bias"] = torch.zeros(31)  # the last key checked
    with pytest.raises(ValueError, match="ln_f.bias"):
        assign_weights(model, tensors, gpt2_mapping(model.config), "test", GPT2_IGNORE)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pickled = tmp_path / "pickle"  # transformers 5 writes only safetensors:
    pickled.mkdir()  # make the old layout by hand
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    torch.save({"transformer.wte.weight": torch.zeros(2, 2)}, pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        load_gpt2(pickled)


def fake_gpt2_folder(root):
    """A tiny random GPT-2 in the hub's layout under root/gpt2: config.json, model.safetensors
    and a WordLevel tokenizer.json over the course's story vocabulary."""
    tok = build_tokenizer()
    folder = root / "gpt2"
    hf = hf_gpt2(vocab_size=tok.vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=4)
    save(hf, folder)
    story_word_level(folder)
    return folder, hf


def test_the_real_thing_section_runs_on_a_fake_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path / "empty"))
    assert find_pretrained("gpt2") is None and "gpt2" in unavailable_line("gpt2")
    folder, hf = fake_gpt2_folder(tmp_path)
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path))
    assert find_pretrained("gpt2") == folder
    real = real_model_demo(find_pretrained("gpt2"))  # the notebook's code path
    lines = real_model_lines(real)
    assert len(lines) == 6 and "vocabulary 183" in lines[0]
    assert len(real["sampled"].split()) == 30 and len(real["greedy"].split()) == 8
    with torch.no_grad():  # the loaded model is HF's
        torch.testing.assert_close(real["model"](real["rep"]), hf(real["rep"]).logits, atol=1e-4, rtol=0)
    assert real["maps"].shape == (2, 4, 4, 2 * real["half"], 2 * real["half"])
    explorer, tokens = real_model_explorer(real)
    assert len(tokens) == 2 * real["half"] and all(isinstance(w, str) for w in tokens)
    from course_lib.viz.bertviz import prepare_attention

    assert len(prepare_attention(real["maps"][:, 0], tokens, layers=[1])) == 1
    assert (explorer.controls["layer"].value, explorer.controls["head"].value) == real["induction_head"]


def test_head_scores_find_planted_heads():
    half = 6
    t = 2 * half
    maps = torch.full((2, 1, 3, t, t), 0.0)
    maps[:, :, :, :, 0] = 1.0  # attend to the first token
    i = torch.arange(1, t)
    maps[0, :, 2, i, :] = 0.0
    maps[0, :, 2, i, i - 1] = 1.0  # layer 0 head 2: previous
    j = torch.arange(half + 1, t)
    maps[1, :, 1, j, :] = 0.0
    maps[1, :, 1, j, j - half + 1] = 1.0  # layer 1 head 1: induction
    scores = head_scores(maps, half)
    assert scores["previous"][0, 2] == 1.0 and scores["previous"].flatten().topk(2).values[1] < 0.2
    assert scores["induction"][1, 1] == 1.0 and scores["induction"][0, 2] == 0.0
    with pytest.raises(ValueError, match="maps"):
        head_scores(maps[..., :-1], half)


def test_checkpoint_config_file_is_the_hub_layout(tmp_path):
    folder = save(hf_gpt2(**CONFIGS["small"]), tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_embd"] == 32


def test_hub_layout_without_prefix_and_with_mask_buffers(tmp_path):
    """The hub's gpt2 file was saved from GPT2Model: keys without "transformer.", plus the
    causal-mask buffers attn.bias (1, 1, n, n) of older transformers versions."""
    hf = hf_gpt2(**CONFIGS["small"])
    folder = save(hf, tmp_path)

    def hub(tensors):
        for key in list(tensors):
            tensors[key.removeprefix("transformer.")] = tensors.pop(key)
        for i in range(2):
            tensors[f"h.{i}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
            tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)

    _rewrite(folder, hub)
    ids = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (load_gpt2(folder)(ids) - hf(ids).logits).abs().max() <= 1e-4
