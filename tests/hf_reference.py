"""Shared by the pretrained-weights tests: random-weight `transformers` reference models saved
in the Hugging Face layout, and a WordLevel tokenizer.json over the course's story vocabulary
(nothing is downloaded)."""

from __future__ import annotations

import torch


def random_reference(model_cls, config, seed: int = 0):
    """``model_cls(config)`` in eval mode with every parameter (LayerNorms, biases, D too)
    perturbed, so no weight keeps its default and a mapping mistake shows in the logits."""
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def save(model, folder):
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def story_word_level(folder) -> None:
    """folder/tokenizer.json: whitespace-split WordLevel over the course's story vocabulary."""
    import tokenizers

    from course_lib.data.tokenizer import build_tokenizer

    vocab = build_tokenizer().token_to_id
    wordlevel = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    wordlevel.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    wordlevel.save(str(folder / "tokenizer.json"))


def max_logit_diff(ours, hf, vocab_size: int) -> tuple[float, torch.Tensor]:
    """Max |course logits - reference logits| on a fixed (3, 17) batch of random ids, and the
    batch's first 5 tokens as the prompt for the greedy-generation comparison."""
    ids = torch.randint(0, vocab_size, (3, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours(ids) - hf(ids).logits).abs().max().item()
    return diff, ids[:, :5]
