"""Notebook 05's experiments: the story task for a GPT, its loss against the entropy floor,
and the loader of the shipped tiny GPT (``data/gpt_tiny.safetensors``, ``tools/train_gpt.py``).

The task: every story becomes "[BOS] words [EOS]", right-padded with [PAD]; the loss is the
next-token loss of ``course_lib.gpt`` on every non-pad target, in nats per token, compared with
the generator's exact entropy rate (``course_lib.data.stories.entropy_rate``).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib.common import check_shapes, right_pad
from course_lib.gpt import GPT, GPTConfig, generate
from course_lib.pretrained import MANIFEST
from course_lib.pretrained.gpt2 import load_gpt2
from course_lib.training import data_dir, load_model
from course_lib.viz.attention import attention_weights_explorer

__all__ = ["encode_stories", "random_batch", "token_nll", "evaluate_loss", "load_gpt",
           "TINY_GPT", "repeated_random_tokens", "head_scores", "best_head", "real_model_demo",
           "real_model_lines", "real_model_explorer"]

TINY_GPT = "gpt_tiny.safetensors"


def encode_stories(stories, tokenizer) -> torch.Tensor:
    """Stories -> (n, t) int64 ids "[BOS] words [EOS]", right-padded with [PAD] (id 0)."""
    if not stories:
        raise ValueError("encode_stories: expected at least one story, received none")
    rows = [tokenizer.encode(f"[BOS] {s if isinstance(s, str) else s.text} [EOS]")
            for s in stories]
    return right_pad(rows, tokenizer.pad_id)                      # (n, t)


def random_batch(data: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                 pad_id: int = 0) -> torch.Tensor:
    """batch_size random rows of padded ids (n, t), trimmed to the longest row: (b, t')."""
    rows = data[torch.randint(0, len(data), (batch_size,), generator=generator)]   # (b, t)
    return rows[:, :int((rows != pad_id).sum(1).max())]


@torch.no_grad()
def token_nll(model: GPT, ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """-ln p(ids[:, i+1] | ids[:, :i+1]) for every position: (b, t) -> (b, t-1), NaN on pads."""
    logits = model(ids)                                           # (b, t, vocab)
    targets = ids[:, 1:]                                          # (b, t-1)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
    return nll.masked_fill(targets == pad_id, float("nan"))


@torch.no_grad()
def evaluate_loss(model: GPT, data: torch.Tensor, pad_id: int = 0, batch_size: int = 250) -> float:
    """Mean next-token loss (nats per token) over all non-pad targets of data (n, t)."""
    total, count = 0.0, 0
    model.eval()
    for i in range(0, len(data), batch_size):
        nll = token_nll(model, data[i:i + batch_size], pad_id)   # (b, t-1)
        keep = ~nll.isnan()
        total, count = total + nll[keep].sum().item(), count + int(keep.sum())
    return total / count


def load_gpt(path: str | Path | None = None) -> tuple[GPT, dict]:
    """The shipped tiny GPT (default ``data/gpt_tiny.safetensors``) in eval mode, with its
    metadata ``{"config": {"model", "task", "train"}, "metrics": {...}}``."""
    return load_model(data_dir() / TINY_GPT if path is None else path,
                      lambda config: GPT(GPTConfig(**config["model"])),
                      rebuild="python tools/train_gpt.py")


# ---------------------------------------------------------------------------------------------
# "The real thing": GPT-2 in the course's GPT (notebook 05, last section)

def repeated_random_tokens(vocab_size: int, half: int, batch: int = 4, seed: int = 0,
                           low: int = 0) -> torch.Tensor:
    """(batch, 2·half) ids: ``half`` random tokens in [low, vocab_size), then the same again."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(low, vocab_size, (batch, half), generator=g)        # (b, half)
    return torch.cat([first, first], dim=1)                                   # (b, 2 half)


def head_scores(maps: torch.Tensor, half: int) -> dict[str, torch.Tensor]:
    """Per-head scores on a repeated random sequence, from maps (n_layers, b, nh, t, t):

    * previous-token: mean over queries i >= 1 of w[i, i-1] (attention to the token before);
    * induction: mean over queries i in the second copy (i >= half + 1) of w[i, i - half + 1],
      the token that *followed* the earlier occurrence of the current token (what an induction
      head copies from: "A B ... A -> look at B").
    Random tokens carry no other structure, so only a head doing that job scores high.
    Returns {"previous": (n_layers, nh), "induction": (n_layers, nh)}, each in [0, 1]."""
    check_shapes([(maps, ("layers", "b", "nh", 2 * half, 2 * half), "maps")])
    i = torch.arange(1, 2 * half)
    previous = maps[..., i, i - 1].mean(dim=(1, 3))                           # (layers, nh)
    j = torch.arange(half + 1, 2 * half)
    induction = maps[..., j, j - half + 1].mean(dim=(1, 3))                   # (layers, nh)
    return {"previous": previous, "induction": induction}


def best_head(scores: torch.Tensor) -> tuple[int, int]:
    """(layer, head) of the largest score in (n_layers, nh)."""
    layer, head = divmod(int(scores.argmax()), scores.shape[1])
    return layer, head


@torch.no_grad()
def real_model_demo(folder, prompt: str = "one day tom and mia went to the river .",
                    n_new: int = 30, seed: int = 0) -> dict:
    """What notebook 05's last section runs on a GPT-2 folder (real weights, or a test's tiny
    random checkpoint): load it into the course's GPT, write text with the course's sampler and
    KV cache (checked against greedy decoding without the cache), and score every head on
    repeated random tokens. Returns the model, tokenizer, texts, scores, best heads and maps."""
    from tokenizers import Tokenizer      # the package of GPT-2's tokenizer.json (optional extra)

    folder = Path(folder)
    model, tokenizer = load_gpt2(folder), Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = torch.tensor([tokenizer.encode(prompt).ids])                        # (1, t)
    g = torch.Generator().manual_seed(seed)
    sampled = generate(model, ids, n_new, temperature=0.8, top_p=0.9, generator=g)
    greedy = generate(model, ids, 8, greedy=True)
    assert torch.equal(greedy, generate(model, ids, 8, greedy=True, use_cache=False))
    half = min(50, model.config.max_len // 2)
    vocab = min(model.config.vocab_size, tokenizer.get_vocab_size())       # ids with a name
    rep = repeated_random_tokens(vocab, half, seed=seed)                      # (4, 2 half)
    logits, maps = model(rep, need_weights=True)              # maps (layers, 4, nh, t, t)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), rep[:, 1:], reduction="none")
    del logits                                    # (4, t, vocab): 80 MB for GPT-2's vocabulary
    scores = head_scores(maps, half)
    real = {"model": model, "tokenizer": tokenizer, "prompt_ids": ids,
            "sampled": tokenizer.decode(sampled[0, ids.shape[1]:].tolist()),
            "greedy": tokenizer.decode(greedy[0, ids.shape[1]:].tolist()),
            "scores": scores, "previous_head": best_head(scores["previous"]),
            "induction_head": best_head(scores["induction"]), "half": half, "rep": rep,
            "maps": maps, "loss_first": float(nll[:, :half - 1].mean()),
            "loss_second": float(nll[:, half:].mean())}
    if (folder / MANIFEST).is_file() and model.config == GPTConfig.gpt2("gpt2"):
        # the fetched, SHA-256-checked weights: what only the real GPT-2 can show
        assert real["scores"]["previous"].max() > 0.5 and real["scores"]["induction"].max() > 0.3
        assert real["loss_second"] < real["loss_first"] - 1.0
    return real


def real_model_lines(real: dict) -> list[str]:
    """The lines notebook 05 prints about ``real_model_demo``'s result."""
    c, s = real["model"].config, real["scores"]
    (lp, hp), (li, hi) = real["previous_head"], real["induction_head"]
    return [f"GPT-2 folder in the course's GPT: {c.n_layers} layers, d_model {c.d_model}, "
            f"{c.n_heads} heads, vocabulary {c.vocab_size}",
            f"sampled (τ 0.8, top-p 0.9, KV cache): ...{real['sampled']}",
            f"greedy (cached == recomputed): ...{real['greedy']}",
            f"repeated random tokens ({real['half']} + {real['half']}): loss "
            f"{real['loss_first']:.2f} nats on the first copy, {real['loss_second']:.2f} on "
            f"the second",
            f"previous-token head: layer {lp} head {hp}, score {s['previous'][lp, hp]:.2f}",
            f"induction head:      layer {li} head {hi}, score {s['induction'][li, hi]:.2f}"]


def real_model_explorer(real: dict):
    """The course's attention explorer on the repeated random tokens, opened at the induction
    head (the previous-token head is one slider move away)."""
    tokens = [real["tokenizer"].id_to_token(int(i)) for i in real["rep"][0]]
    explorer = attention_weights_explorer({"repeated random tokens": {
        "weights": real["maps"][:, 0], "x_labels": tokens, "y_labels": tokens}})
    layer, head = real["induction_head"]
    explorer.controls["layer"].value, explorer.controls["head"].value = layer, head
    return explorer, tokens
