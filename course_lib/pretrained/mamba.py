"""Mamba's published weights in the course's own ``course_lib.mamba.MambaLM`` (notebook 07).

A Hugging Face Mamba folder (``state-spaces/mamba-130m-hf``, and the larger ``-hf`` sizes by
their config) maps one to one onto ``MambaLM``: the course's block *is* the Mamba mixer. The
layout differences are names and one shape:

* ``backbone.embeddings`` -> ``token_emb``; ``backbone.layers.{i}.norm`` -> ``norms.{i}``;
  ``backbone.layers.{i}.mixer.*`` -> ``layers.{i}.*`` (in_proj, x_proj, dt_proj, A_log, D,
  out_proj under the same names); ``backbone.norm_f`` -> ``norm_f``;
* the depthwise conv is an ``nn.Conv1d`` with weight (d, 1, K): ours is ``conv_weight`` (d, K),
  the same numbers (a view), and its bias is ``conv_bias``;
* ``lm_head.weight`` is the embedding again (tied), checked equal when the file has it.

``residual_in_fp32`` only matters in half precision: the course runs in float32, where it is
the identity. Reference: huggingface/transformers, models/mamba/modeling_mamba.py; official:
state-spaces/mamba, mamba_ssm/models/mixer_seq_simple.py and mamba_ssm/modules/mamba_simple.py.
"""
from __future__ import annotations

from pathlib import Path

import torch

from course_lib.mamba import MambaConfig, MambaLM
from course_lib.pretrained import assign_weights, read_hf_folder, require_settings

__all__ = ["mamba_config", "mamba_mapping", "load_mamba", "MAMBA_130M"]

# settings MambaLM does not have: the value it needs for each
_REQUIRED = {"hidden_act": "silu", "tie_word_embeddings": True, "rms_norm": True}
MAMBA_130M = MambaConfig(vocab_size=50280, d_model=768, n_layers=24, d_state=16, expand=2,
                         d_conv=4, dt_rank=48)              # state-spaces/mamba-130m-hf


def _get(hf_config: dict, *names, default=None):
    """The first of ``names`` present in the config (HF names first, then the original ones)."""
    return next((hf_config[n] for n in names if n in hf_config), default)


def mamba_config(hf_config: dict) -> MambaConfig:
    """A Mamba ``config.json`` (dict) -> MambaConfig; ValueError naming a field the course's
    MambaLM cannot represent (and its value)."""
    if hf_config.get("model_type", "mamba") != "mamba":
        raise ValueError(f"mamba_config: model_type={hf_config['model_type']!r} is not supported "
                         f"(expected 'mamba')")
    require_settings(hf_config, _REQUIRED, "mamba_config", "MambaLM")
    d_model = _get(hf_config, "hidden_size", "d_model", default=768)
    expand = hf_config.get("expand", 2)
    inner = hf_config.get("intermediate_size", expand * d_model)
    if inner != expand * d_model:
        raise ValueError(f"mamba_config: intermediate_size={inner} must equal expand * hidden_size "
                         f"= {expand} * {d_model}")
    rank = hf_config.get("time_step_rank", "auto")
    if rank != "auto" and (not isinstance(rank, int) or rank < 1):
        raise ValueError(f"mamba_config: time_step_rank={rank!r} must be 'auto' or a positive int")
    return MambaConfig(vocab_size=hf_config.get("vocab_size", 50280), d_model=d_model,
                       n_layers=_get(hf_config, "num_hidden_layers", "n_layer", default=32),
                       d_state=hf_config.get("state_size", 16), expand=expand,
                       d_conv=hf_config.get("conv_kernel", 4),
                       dt_rank=0 if rank == "auto" else rank,
                       conv_bias=hf_config.get("use_conv_bias", True),
                       bias=hf_config.get("use_bias", False),
                       norm_eps=hf_config.get("layer_norm_epsilon", 1e-5))


def _conv_weight(name: str):
    """nn.Conv1d weight (d, 1, K) -> ours (d, K): a view (any other shape is passed on, so the
    shape check names it)."""
    def rule(take):
        w = take(name)
        return w[:, 0] if w.dim() == 3 and w.shape[1] == 1 else w
    return rule


def mamba_mapping(config: MambaConfig, prefix: str = "backbone.") -> dict:
    """{course key: Hugging Face key or rule} for ``assign_weights``."""
    p = prefix
    mapping = {"token_emb.weight": f"{p}embeddings.weight", "norm_f.weight": f"{p}norm_f.weight"}
    for i in range(config.n_layers):
        ours, mixer = f"layers.{i}.", f"{p}layers.{i}.mixer."
        mapping[f"norms.{i}.weight"] = f"{p}layers.{i}.norm.weight"
        names = ["in_proj.weight", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D",
                 "out_proj.weight"]
        names += ["in_proj.bias", "out_proj.bias"] if config.bias else []
        mapping.update({ours + n: mixer + n for n in names})
        mapping[ours + "conv_weight"] = _conv_weight(f"{mixer}conv1d.weight")
        if config.conv_bias:
            mapping[ours + "conv_bias"] = f"{mixer}conv1d.bias"
    return mapping


def load_mamba(folder: str | Path) -> MambaLM:
    """A Mamba checkpoint folder (config.json + model.safetensors) -> ``MambaLM`` in eval mode,
    all or nothing (``assign_weights`` checks every key and shape before loading). Built on the
    meta device, the model takes the file's tensors over: mamba-130m costs its weights once."""
    hf_config, tensors = read_hf_folder(folder)
    config = mamba_config(hf_config)
    prefix = "backbone." if any(k.startswith("backbone.") for k in tensors) else ""
    head = tensors.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, tensors.get(f"{prefix}embeddings.weight", head)):
        raise ValueError(f"{folder}: lm_head.weight differs from {prefix}embeddings.weight: an "
                         f"untied read-out, which the course's MambaLM (tied, as Mamba) cannot "
                         f"represent")
    mapping = mamba_mapping(config, prefix)
    with torch.device("meta"):       # no random init: the checkpoint's tensors are handed over
        model = MambaLM(config)
    assign_weights(model, tensors, mapping, source=str(folder), assign=True)
    return model.eval()
