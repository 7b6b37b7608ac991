"""Notebook 07's experiments: the attention baseline, the task models' loader, the measurements.

- ``AttentionLM``: the Transformer baseline of the induction-heads experiment (causal pre-norm
  ``EncoderLayer`` of 03 + sinusoidal absolute positions of 02).
- ``build_model`` / ``load_model``: the models ``tools/train_mamba.py`` writes to
  ``data/mamba_*.safetensors`` (selective copying: Mamba, the LTI SSM in the same block, and
  that LTI SSM without the gate; induction heads: Mamba vs attention), through the course's one
  loader ``course_lib.training.load_model``.
- ``scored_loss``, ``last_token_accuracy``: the training loss and the induction-heads metric.
- ``scan_inputs``: random selective-scan inputs at Mamba-like sizes (notebook 07's timing and
  memory cells and ``benchmarks/bench_mamba.py``).
- ``state_write``: the size of what each token writes into the state, ‖B̄_t x_t‖.
- ``real_model_demo``: notebook 07's "The real thing" section (mamba-130m in ``MambaLM``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import IGNORE_INDEX, check_token_ids
from course_lib.mamba import MambaConfig, MambaLM
from course_lib.positional import SinusoidalPositional
from course_lib.pretrained.mamba import MAMBA_130M, load_mamba
from course_lib.scan import trace_scan
from course_lib.timing import median_time
from course_lib.training import load_model as _load_checkpoint
from course_lib.transformer import EncoderLayer
from course_lib.viz.mamba import selection_explorer

__all__ = ["AttentionLMConfig", "AttentionLM", "build_model", "load_model", "model_config",
           "scored_loss", "last_token_accuracy", "scan_inputs", "state_write", "real_model_demo",
           "real_model_lines", "real_model_explorer"]

REBUILD = "python tools/train_mamba.py"


@dataclass
class AttentionLMConfig:
    """The attention baseline: width, heads, layers and the positional table's length."""
    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    max_len: int = 8192


class AttentionLM(nn.Module):
    """Baseline: token_emb + sinusoidal (absolute) positions, causal pre-norm EncoderLayers."""

    def __init__(self, config: AttentionLMConfig):
        super().__init__()
        self.config = config
        self.token_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = SinusoidalPositional(config.d_model, config.max_len)
        self.layers = nn.ModuleList(EncoderLayer(config.d_model, config.n_heads, norm_first=True)
                                    for _ in range(config.n_layers))
        self.norm_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)       # not tied

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (b, l) -> logits (b, l, vocab)."""
        check_token_ids(tokens, self.config.vocab_size, "tokens", ("b", "l"))
        x = self.pos_emb(self.token_emb(tokens))                        # (b, l, d_model)
        for layer in self.layers:
            x, _ = layer(x, is_causal=True)
        return self.head(self.norm_f(x))                                # (b, l, vocab)


ARCHS = {"mamba": (MambaConfig, MambaLM), "attention": (AttentionLMConfig, AttentionLM)}


def model_config(arch: str, **model) -> dict:
    """The ``"arch"`` and ``"model"`` part of a checkpoint config: the full constructor config."""
    if arch not in ARCHS:
        raise ValueError(f"model_config: arch must be 'mamba' or 'attention', got {arch!r}")
    config = asdict(ARCHS[arch][0](**model))
    return {"arch": arch, "model": config}


def build_model(config: dict) -> nn.Module:
    """A model from a checkpoint's config {"arch": "mamba"|"attention", "model": {...}, ...}."""
    arch = config.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"build_model: arch must be 'mamba' or 'attention', got {arch!r}")
    config_cls, model_cls = ARCHS[arch]
    return model_cls(config_cls(**config["model"]))


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """A model written by tools/train_mamba.py: (model in eval mode, {"config", "metrics"})."""
    return _load_checkpoint(path, build_model, rebuild=REBUILD)


def scored_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the scored positions only (targets IGNORE_INDEX elsewhere)."""
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def last_token_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        tokens_per_batch: int = 8192) -> float:
    """Fraction of sequences whose last prediction equals y[:, -1] (induction heads), run in
    mini-batches of at most ``tokens_per_batch`` tokens (long test sequences stay in memory)."""
    step, correct = max(1, tokens_per_batch // x.shape[1]), 0
    for i in range(0, x.shape[0], step):
        correct += (model(x[i:i + step])[:, -1].argmax(-1) == y[i:i + step, -1]).sum().item()
    return correct / x.shape[0]


def scan_inputs(length: int, batch: int = 2, d: int = 64, n: int = 16, seed: int = 0) -> list:
    """Random selective-scan inputs [x, Δ, A, B, C, D] at Mamba-like sizes, requiring grad:
    x, Δ (batch, length, d), A (d, n) the S4D-real init, B, C (batch, length, n), D (d,)."""
    g = torch.Generator().manual_seed(seed)
    x, pre = torch.randn(batch, length, d, generator=g), torch.randn(batch, length, d, generator=g)
    A = -torch.arange(1.0, n + 1).repeat(d, 1)                          # (d, n)
    B, C = torch.randn(batch, length, n, generator=g), torch.randn(batch, length, n, generator=g)
    return [t.requires_grad_() for t in (x, F.softplus(pre - 3), A, B, C, torch.ones(d))]


def state_write(seen: dict) -> torch.Tensor:
    """‖B̄_t x_t‖ = Δ_t |x_t| ‖B_t‖ per token and channel (Euler B̄ = ΔB), from one layer of
    ``MambaLM.ssm_inputs``: (b, l, d)."""
    return seen["delta"] * seen["x"].abs() * seen["B"].norm(dim=-1, keepdim=True)


@torch.no_grad()
def real_model_demo(folder: str | Path, prompt: str = "The capital of France is Paris. The "
                    "capital of Italy is", n_new: int = 20) -> dict:
    """What notebook 07's last section runs on a Mamba folder (real weights, or a test's tiny
    random checkpoint): load it into the course's MambaLM, generate greedily with the recurrent
    ``step`` (checked against the parallel scan's argmax), measure the memory one step
    allocates at the first and at the last token, and read Δ of every layer on the prompt."""
    from tokenizers import Tokenizer        # the package of Mamba's tokenizer.json (optional extra)

    folder = Path(folder)
    model, tokenizer = load_mamba(folder), Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = torch.tensor([tokenizer.encode(prompt).ids])                  # (1, l)
    l, box = ids.shape[1], []
    seconds = median_time(lambda: box.append(model.generate(ids, n_new, return_state=True)),
                          repeats=1, warmup=0)
    out, states = box[0]                                                # (1, l + n_new)
    empty = model.init_state(1)
    first = trace_scan(lambda: model.step(ids[:, 0], empty))["forward_peak"]
    last = trace_scan(lambda: model.step(out[:, -1], states))["forward_peak"]   # one more token
    logits, deltas = model(out, need_deltas=True)                       # the parallel scan
    assert torch.equal(logits[0, l - 1:-1].argmax(-1), out[0, l:]), "step != scan greedy tokens"
    nll = F.cross_entropy(logits[0, :l - 1], out[0, 1:l]).item()       # on the prompt
    state = sum(t.numel() * t.element_size() for s in model.init_state(1) for t in s)
    real = {"model": model, "tokenizer": tokenizer, "ids": ids, "out": out,
            "tokens": [tokenizer.id_to_token(int(i)) for i in ids[0]],
            "generated": tokenizer.decode(out[0, l:].tolist()),
            "seconds_per_token": seconds / (out.shape[1] - 1), "state_bytes": state,
            "step_bytes": {1: first, out.shape[1]: last}, "prompt_nll": nll,
            "deltas": torch.stack([d[0, :l] for d in deltas]),          # (layers, l, d)
            "A": torch.stack([-torch.exp(b.A_log) for b in model.layers])}   # (layers, d, n)
    if model.config == MAMBA_130M:                    # what only the real weights can show
        assert nll < 6.0, f"prompt loss {nll:.2f} nats: not the trained mamba-130m?"
    return real


def real_model_lines(real: dict) -> list[str]:
    """The lines notebook 07 prints about ``real_model_demo``'s result."""
    c, (first, last) = real["model"].config, sorted(real["step_bytes"])
    n, mib = real["out"].shape[1], 2 ** 20
    kv = 2 * c.n_layers * n * c.d_model * 4                             # K and V, float32
    per_token = real["deltas"].mean(-1)                                 # (layers, l) mean Δ
    rel = (per_token / per_token.mean(-1, keepdim=True)).mean(0)        # (l,) over the layers
    top = rel.topk(min(3, rel.shape[0])).indices.tolist()
    return [f"Mamba folder in the course's MambaLM: {c.n_layers} layers, d_model {c.d_model}, "
            f"d_state {c.d_state}, vocabulary {c.vocab_size}",
            f"greedy, recurrent step (== the parallel scan's argmax): ...{real['generated']}",
            f"prompt loss {real['prompt_nll']:.2f} nats per token; "
            f"{real['seconds_per_token'] * 1e3:.0f} ms per token on this machine",
            f"memory one step allocates: {real['step_bytes'][first] / mib:.2f} MiB at token "
            f"{first}, {real['step_bytes'][last] / mib:.2f} MiB at token {last}; the state: "
            f"{real['state_bytes'] / mib:.2f} MiB (a Transformer's KV cache of the same "
            f"depth and width: {kv / mib:.2f} MiB at token {n}, growing with every token)",
            "largest mean Δ on the prompt (relative to each layer's mean, averaged over layers): "
            + ", ".join(f"{real['tokens'][i]!r} {rel[i]:.2f}" for i in top)]


def real_model_explorer(real: dict):
    """The selection explorer of §6 on the real sentence: Δ, keep, write of every layer."""
    return selection_explorer({"real sentence": {"tokens": real["tokens"],
                                                 "deltas": real["deltas"], "A": real["A"]}})
