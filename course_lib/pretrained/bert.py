"""BERT's published weights in the course's own ``course_lib.bert.BertForPretraining`` (notebook 04).

A Hugging Face BERT folder (``bert-base-uncased``; other sizes by their config) maps one to one
onto ``BertForPretraining``: post-norm encoder layers with the exact (erf) GELU, LayerNorm
ε = ``layer_norm_eps`` (1e-12 for the published models), token + segment + position tables,
the pooler, the masked-LM head (dense, GELU, LayerNorm, then the token embedding as the read-out
matrix plus a bias) and the next-sentence head. Layout differences:

* BERT keeps W_Q, W_K, W_V as three (d, d) layers (``attention.self.query/key/value``); the
  course's ``qkv_proj`` stacks them as one (3d, d) matrix in that order;
* the hub's file uses TensorFlow-era LayerNorm names (``LayerNorm.gamma``/``beta``), what
  ``save_pretrained`` writes today says ``weight``/``bias``: both are read;
* ``cls.predictions.decoder.weight`` (when stored) is the token embedding again (tied), checked
  equal; ``embeddings.position_ids``/``token_type_ids`` are index buffers, not weights.

Keys: ``bert.embeddings.{word,position,token_type}_embeddings, bert.embeddings.LayerNorm,
bert.encoder.layer.{i}.{attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
intermediate.dense, output.{dense,LayerNorm}}, bert.pooler.dense, cls.predictions.{bias,
transform.{dense,LayerNorm}}, cls.seq_relationship``. Reference: huggingface/transformers,
models/bert/modeling_bert.py; official: google-research/bert, modeling.py and run_pretraining.py.
"""
from __future__ import annotations

from pathlib import Path

import torch

from course_lib.bert import BertConfig, BertForPretraining
from course_lib.pretrained import assign_weights, read_hf_folder, require_settings

__all__ = ["bert_config", "bert_mapping", "load_bert", "BERT_IGNORE"]

# settings the course's BERT does not have: the value it needs for each
_REQUIRED = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute",
             "is_decoder": False, "add_cross_attention": False, "tie_word_embeddings": True}
BERT_IGNORE = (r"embeddings\.position_ids$", r"embeddings\.token_type_ids$")   # index buffers


def bert_config(hf_config: dict) -> BertConfig:
    """A BERT ``config.json`` (dict) -> BertConfig; ValueError naming a field the course's BERT
    cannot represent (and its value). Dropout is kept for fine-tuning; a loaded model is in eval
    mode, where it does nothing."""
    require_settings(hf_config, _REQUIRED, "bert_config", "BERT")
    d, nh = hf_config.get("hidden_size", 768), hf_config.get("num_attention_heads", 12)
    if d % nh:
        raise ValueError(f"bert_config: hidden_size={d} must be divisible by "
                         f"num_attention_heads={nh}")
    return BertConfig(vocab_size=hf_config.get("vocab_size", 30522), d_model=d, n_heads=nh,
                      n_layers=hf_config.get("num_hidden_layers", 12),
                      d_ff=hf_config.get("intermediate_size", 3072),
                      max_len=hf_config.get("max_position_embeddings", 512),
                      n_segments=hf_config.get("type_vocab_size", 2),
                      dropout=hf_config.get("hidden_dropout_prob", 0.1),
                      pad_id=hf_config.get("pad_token_id") or 0,
                      layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12))


def _stacked(*names: str):
    """[W_Q; W_K; W_V] (or their biases) stacked along the output axis, as ``qkv_proj`` holds them."""
    return lambda take: torch.cat([take(name) for name in names], dim=0)


def bert_mapping(config: BertConfig) -> dict:
    """{course key: BERT key or rule} for ``assign_weights`` (LayerNorms named weight/bias)."""
    e = "bert.embeddings."
    mapping = {"bert.embeddings.token_emb.weight": f"{e}word_embeddings.weight",
               "bert.embeddings.segment_emb.weight": f"{e}token_type_embeddings.weight",
               "bert.embeddings.pos_emb.table.weight": f"{e}position_embeddings.weight"}
    pairs = [("bert.embeddings.norm", f"{e}LayerNorm"),
             ("pooler.dense", "bert.pooler.dense"), ("nsp", "cls.seq_relationship"),
             ("mlm.dense", "cls.predictions.transform.dense"),
             ("mlm.norm", "cls.predictions.transform.LayerNorm")]
    for i in range(config.n_layers):
        ours, theirs = f"bert.layers.{i}.", f"bert.encoder.layer.{i}."
        pairs += [(f"{ours}self_attn.out_proj", f"{theirs}attention.output.dense"),
                  (f"{ours}norm1", f"{theirs}attention.output.LayerNorm"),
                  (f"{ours}ffn.linear1", f"{theirs}intermediate.dense"),
                  (f"{ours}ffn.linear2", f"{theirs}output.dense"),
                  (f"{ours}norm2", f"{theirs}output.LayerNorm")]
        for kind in ("weight", "bias"):
            mapping[f"{ours}self_attn.qkv_proj.{kind}"] = _stacked(
                *(f"{theirs}attention.self.{w}.{kind}" for w in ("query", "key", "value")))
    for ours, theirs in pairs:
        for kind in ("weight", "bias"):
            mapping[f"{ours}.{kind}"] = f"{theirs}.{kind}"
    mapping["mlm.bias"] = "cls.predictions.bias"
    return mapping


def _modern_names(tensors: dict, source: str) -> dict:
    """LayerNorm.gamma/beta -> weight/bias; the stored tied decoder checked equal, then dropped."""
    out = {}
    for key, value in tensors.items():
        for old, new in ((".gamma", ".weight"), (".beta", ".bias")):
            if "LayerNorm" in key and key.endswith(old):
                key = key[:-len(old)] + new
        out[key] = value
    for key, twin in (("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
                      ("cls.predictions.decoder.bias", "cls.predictions.bias")):
        if key in out:
            value = out.pop(key)
            if twin in out and not torch.equal(value, out[twin]):
                raise ValueError(f"{source}: {key} differs from {twin}: an untied read-out, which "
                                 f"the course's BERT (tied, as the paper's) cannot represent")
    return out


def load_bert(folder: str | Path) -> BertForPretraining:
    """A BERT checkpoint folder (config.json + model.safetensors) -> ``BertForPretraining`` in
    eval mode, all or nothing (``assign_weights`` checks every key and shape before loading).
    The model is built on the meta device and takes the loaded tensors over: bert-base costs
    its 440 MB of weights once, not twice."""
    hf_config, tensors = read_hf_folder(folder)
    config = bert_config(hf_config)
    tensors = _modern_names(tensors, str(folder))
    with torch.device("meta"):       # no random init: the checkpoint's tensors are handed over
        model = BertForPretraining(config)
    assign_weights(model, tensors, bert_mapping(config), source=str(folder), ignore=BERT_IGNORE,
                   assign=True)
    return model.eval()
