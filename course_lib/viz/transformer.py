"""Figures for the encoder-decoder Transformer (notebook 03): cross-attention alignments.

Cross-attention weights (t, s) say, for each target word being produced (row), how much it
reads each source word (column): for a translation model they form a soft *alignment*.
``plot_alignment`` draws one map with the true (gold) alignment marked; ``decoding_explorer``
steps through greedy decoding word by word; ``encoder_decoder_view`` opens bertviz's head view
with its encoder, decoder and cross tabs (needs internet for bertviz's JavaScript).
"""
from __future__ import annotations

import torch

from course_lib.transformer import greedy_decode
from course_lib.viz import Explorer, plot_attention, to_numpy
from course_lib.viz.bertviz import bertviz_view, prepare_attention, show

__all__ = ["plot_alignment", "decoding_explorer", "encoder_decoder_view", "translate_with_weights"]


def plot_alignment(weights, src_tokens: list[str], tgt_tokens: list[str], gold=None, ax=None,
                   title: str | None = None):
    """Heatmap of cross-attention (t, s): rows = target words, columns = source words.

    gold: optional sequence, gold[i] = index of the source word that target word i translates;
    drawn as red squares so the learned alignment can be compared with the true one.
    """
    w = to_numpy(weights)
    if w.shape != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"plot_alignment: expected weights of shape (t={len(tgt_tokens)}, "
                         f"s={len(src_tokens)}), received {w.shape}")
    im = plot_attention(w, src_tokens, tgt_tokens, ax=ax, title=title)
    ax = im.axes
    if gold is not None:
        rows = [i for i in range(min(len(gold), len(tgt_tokens)))]
        ax.scatter([gold[i] for i in rows], rows, s=120, facecolors="none", edgecolors="red",
                   marker="s", linewidths=1.5, label="true alignment")
    ax.set_xlabel("source word (English)")
    ax.set_ylabel("generated word (Kalo)")
    return im


def translate_with_weights(model, data, sentence: str) -> dict:
    """Greedy-translate one sentence; return tokens and every attention map (one sequence).

    Returns {"src_tokens", "out_tokens" (generated words + [EOS]), "cross" (layers, nh, n, s),
    "encoder" (layers, nh, s, s), "decoder" (layers, nh, n, n), "dec_tokens" ([BOS] + words)}.
    """
    src = data.encode_source([sentence])                                   # (1, s)
    out = greedy_decode(model, src).tokens[0]                              # (n,)
    keep = int((out != data.pad_id).sum())
    out = out[:keep]
    tgt_in = torch.cat([torch.tensor([data.bos_id]), out[:-1]])[None]     # (1, n) teacher forcing
    with torch.no_grad():
        _, w = model(src, tgt_in, need_weights=True)
    maps = {name: torch.stack([x[0] for x in w[name]])                   # (layers, nh, ., .)
            for name in ("cross", "encoder", "decoder")}
    return {"src_tokens": data.source.tokens(src[0]), "out_tokens": data.target.tokens(out),
            "dec_tokens": data.target.tokens(tgt_in[0]), **maps}


def decoding_explorer(model, data, sentences: list[str], golds: list | None = None) -> Explorer:
    """Step through greedy decoding: which source words does output word `step` attend to?

    Controls: sentence, decoding step, layer, head ("mean" = average of heads). The top panel
    shows the current word's cross-attention over the source; the bottom one the map so far.
    """
    import ipywidgets as widgets

    if not sentences:
        raise ValueError("decoding_explorer: expected at least one sentence, received none")
    runs = {s: translate_with_weights(model, data, s) for s in sentences}
    golds = dict(zip(sentences, golds)) if golds is not None else {}
    n_layers, n_heads = next(iter(runs.values()))["cross"].shape[:2]
    longest = max(r["cross"].shape[2] for r in runs.values())
    controls = {
        "sentence": widgets.Dropdown(options=list(sentences), description="sentence"),
        "step": widgets.IntSlider(0, 0, longest - 1, description="step"),
        "layer": widgets.IntSlider(n_layers - 1, 0, n_layers - 1, description="layer"),
        "head": widgets.Dropdown(options=["mean"] + list(range(n_heads)), description="head"),
    }

    def compute(sentence, step, layer, head):
        cross = runs[sentence]["cross"][layer]                             # (nh, n, s)
        w = cross.mean(0) if head == "mean" else cross[head]               # (n, s)
        step = min(step, w.shape[0] - 1)
        so_far = w.clone()
        so_far[step + 1:] = 0                                              # not generated yet
        return {"current": w[step], "so_far": so_far}

    def draw(fig, d, sentence, step, layer, head):
        run = runs[sentence]
        step = min(step, len(run["out_tokens"]) - 1)
        ax1, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 2.5]})
        ax1.bar(range(len(run["src_tokens"])), d["current"], color="tab:blue")
        gold = golds.get(sentence)
        if gold is not None and step < len(gold):
            ax1.bar([gold[step]], [d["current"][gold[step]]], color="tab:red", label="true source")
            ax1.legend(fontsize=7)
        ax1.set_xticks(range(len(run["src_tokens"])), run["src_tokens"], fontsize=8)
        ax1.set_ylim(0, 1)
        ax1.set_title(f"step {step}: output '{run['out_tokens'][step]}' reads … "
                      f"(layer {layer}, head {head})", fontsize=9)
        plot_alignment(d["so_far"], run["src_tokens"], run["out_tokens"], gold, ax=ax2)
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(6.5, 6.5))


def encoder_decoder_view(run: dict, layers: list[int] | None = None, decimals: int = 3):
    """bertviz head view with Encoder / Decoder / Cross tabs, from ``translate_with_weights``."""
    head_view = bertviz_view("head_view")
    if head_view is None:
        return

    src, dec = run["src_tokens"], run["dec_tokens"]
    show(head_view, encoder_attention=prepare_attention(run["encoder"], src, decimals, layers),
         decoder_attention=prepare_attention(run["decoder"], dec, decimals, layers),
         cross_attention=prepare_attention(run["cross"], dec, decimals, layers),
         encoder_tokens=src, decoder_tokens=dec)
