"""GPT-2's published weights in the course's own ``course_lib.gpt.GPT`` (notebook 05).

A Hugging Face GPT-2 folder (``gpt2``; ``gpt2-medium``/``-large``/``-xl`` by their config)
maps one to one onto ``GPT`` with ``activation="gelu_tanh"`` (GPT-2's GELU is the tanh
approximation, ``gelu_new``) and its LayerNorm ε. Two layout differences:

* GPT-2 stores its projections as ``Conv1D`` layers whose weight is (in, out), the transpose
  of ``nn.Linear``'s (out, in): ``c_attn`` (d, 3d) -> ``qkv_proj`` (3d, d) with the same
  [W_Q | W_K | W_V] column blocks, ``c_proj``, ``c_fc``, ``mlp.c_proj`` likewise;
* ``attn.bias`` / ``attn.masked_bias`` are causal-mask buffers, not weights (our attention
  builds its mask), and ``lm_head.weight`` is the token embedding again (tied), checked equal.

Keys: ``[transformer.]wte, wpe, h.{i}.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
mlp.c_proj}, ln_f`` (the hub's file has no ``transformer.`` prefix, ``save_pretrained`` of
``GPT2LMHeadModel`` writes one). Reference: huggingface/transformers,
models/gpt2/modeling_gpt2.py; official: openai/gpt-2, src/model.py.
"""
from __future__ import annotations

from pathlib import Path

import torch

from course_lib.gpt import GPT, GPTConfig
from course_lib.pretrained import assign_weights, read_hf_folder, require_settings

__all__ = ["gpt2_config", "gpt2_mapping", "load_gpt2", "GPT2_IGNORE"]

_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
# settings the course's GPT does not have: the value it needs for each
_REQUIRED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
             "add_cross_attention": False, "tie_word_embeddings": True}
GPT2_IGNORE = (r"\.attn\.bias$", r"\.attn\.masked_bias$")      # causal-mask buffers


def gpt2_config(hf_config: dict) -> GPTConfig:
    """A GPT-2 ``config.json`` (dict) -> GPTConfig; ValueError naming a field the course's GPT
    cannot represent (and its value)."""
    if hf_config.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"gpt2_config: expected model_type 'gpt2', received "
                         f"{hf_config.get('model_type')!r}")
    act = hf_config.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ValueError(f"gpt2_config: activation_function={act!r} is not supported "
                         f"(expected one of {sorted(_ACTIVATIONS)})")
    require_settings(hf_config, _REQUIRED, "gpt2_config", "GPT")
    d, nh = hf_config.get("n_embd", 768), hf_config.get("n_head", 12)
    if d % nh:
        raise ValueError(f"gpt2_config: n_embd={d} must be divisible by n_head={nh}")
    return GPTConfig(vocab_size=hf_config.get("vocab_size", 50257),
                     max_len=hf_config.get("n_positions", 1024), d_model=d,
                     n_layers=hf_config.get("n_layer", 12), n_heads=nh,
                     d_ff=hf_config.get("n_inner") or 4 * d, dropout=0.0,
                     activation=_ACTIVATIONS[act], eps=hf_config.get("layer_norm_epsilon", 1e-5))


def _conv1d(name: str):
    """Conv1D weight (in, out) -> nn.Linear weight (out, in): a transposed view, no copy (so
    F.linear(x, W) computes x @ W_conv, the product GPT-2's Conv1D computes)."""
    return lambda take: take(name).t()


def gpt2_mapping(config: GPTConfig, prefix: str = "transformer.") -> dict:
    """{course key: GPT-2 key or rule} for ``assign_weights``."""
    p = prefix
    mapping = {"token_emb.weight": f"{p}wte.weight", "pos_emb.table.weight": f"{p}wpe.weight",
               "norm_f.weight": f"{p}ln_f.weight", "norm_f.bias": f"{p}ln_f.bias"}
    for i in range(config.n_layers):
        ours, theirs = f"layers.{i}.", f"{p}h.{i}."
        for norm, ln in (("norm1", "ln_1"), ("norm2", "ln_2")):
            for kind in ("weight", "bias"):
                mapping[f"{ours}{norm}.{kind}"] = f"{theirs}{ln}.{kind}"
        for linear, conv in (("self_attn.qkv_proj", "attn.c_attn"),
                             ("self_attn.out_proj", "attn.c_proj"),
                             ("ffn.linear1", "mlp.c_fc"), ("ffn.linear2", "mlp.c_proj")):
            mapping[f"{ours}{linear}.weight"] = _conv1d(f"{theirs}{conv}.weight")
            mapping[f"{ours}{linear}.bias"] = f"{theirs}{conv}.bias"
    return mapping


def load_gpt2(folder: str | Path) -> GPT:
    """A GPT-2 checkpoint folder (config.json + model.safetensors) -> ``GPT`` in eval mode, all
    or nothing (``assign_weights`` checks every key and shape before loading)."""
    hf_config, tensors = read_hf_folder(folder)
    config = gpt2_config(hf_config)
    prefix = "transformer." if any(k.startswith("transformer.") for k in tensors) else ""
    head = tensors.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, tensors.get(f"{prefix}wte.weight", head)):
        raise ValueError(f"{folder}: lm_head.weight differs from {prefix}wte.weight: an untied "
                         f"read-out, which the course's GPT (tied, as GPT-2) cannot represent")
    with torch.device("meta"):                     # shapes only: the file's tensors become
        model = GPT(config)                        # the parameters (memory paid once)
    assign_weights(model, tensors, gpt2_mapping(config, prefix), source=str(folder),
                   ignore=GPT2_IGNORE, assign=True)
    return model.eval()
