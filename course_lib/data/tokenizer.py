"""A word-level tokenizer for the story corpus (notebooks 04 and 05).

The story language has a closed vocabulary of under 200 words, so one token per word is the
clearest choice: ``encode`` splits on spaces and looks each word up; ``decode`` joins them back.
Special tokens come first with fixed ids, so every model of the course agrees on them:

    [PAD]=0  [UNK]=1  [CLS]=2  [SEP]=3  [MASK]=4  [BOS]=5  [EOS]=6,  then the words (sorted).

``[CLS]``/``[SEP]``/``[MASK]`` are BERT's (04), ``[BOS]``/``[EOS]`` GPT's (05). By default the
tokenizer is *strict*: an unknown word raises a ValueError naming it (a typo in a prompt should
not silently become ``[UNK]``); ``strict=False`` maps unknown words to ``[UNK]`` instead.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["WordTokenizer", "build_tokenizer", "SPECIALS", "PAD", "UNK", "CLS", "SEP", "MASK",
           "BOS", "EOS"]

PAD, UNK, CLS, SEP, MASK, BOS, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]"
SPECIALS = (PAD, UNK, CLS, SEP, MASK, BOS, EOS)


class WordTokenizer:
    """Words <-> ids. ``token_to_id`` / ``id_to_token`` are the two lookup tables."""

    def __init__(self, words: Iterable[str], strict: bool = True):
        words = sorted(set(words) - set(SPECIALS))
        bad = [w for w in words if not w or any(c.isspace() for c in w)]
        if bad:
            raise ValueError(f"vocabulary words must be non-empty and contain no spaces, got {bad[:5]}")
        self.id_to_token: list[str] = list(SPECIALS) + words
        self.token_to_id: dict[str, int] = {w: i for i, w in enumerate(self.id_to_token)}
        self.strict = strict
        for name in ("pad", "unk", "cls", "sep", "mask", "bos", "eos"):
            setattr(self, f"{name}_id", self.token_to_id[f"[{name.upper()}]"])

    @classmethod
    def from_stories(cls, stories, strict: bool = True) -> WordTokenizer:
        """Vocabulary = every token that occurs in ``stories`` (``Story`` objects or strings)."""
        words = set()
        for story in stories:
            words.update((story if isinstance(story, str) else story.text).split())
        return cls(words, strict=strict)

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, strict: bool | None = None) -> list[int]:
        """Space-separated words (special tokens allowed, e.g. "[BOS] tom ran") -> ids."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, received {type(text).__name__}")
        strict = self.strict if strict is None else strict
        words = [w if w in SPECIALS else w.lower() for w in text.split()]
        unknown = [w for w in words if w not in self.token_to_id]
        if unknown and strict:
            raise ValueError(f"unknown token(s) {sorted(set(unknown))[:8]} not in the vocabulary "
                             f"of {self.vocab_size} tokens (words are space-separated, e.g. "
                             f"'tom went to the river .'); pass strict=False to map them to {UNK}")
        return [self.token_to_id.get(w, self.unk_id) for w in words]

    def decode(self, ids, skip_special: bool = False) -> str:
        """ids (list or 1-D tensor) -> space-separated words; optionally drop special tokens."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects a 1-D sequence of ids, received shape "
                                 f"{tuple(ids.shape)}")
            ids = ids.tolist()
        words = []
        for i in ids:
            if not 0 <= int(i) < self.vocab_size:
                raise ValueError(f"id {i} outside the vocabulary [0, {self.vocab_size})")
            w = self.id_to_token[int(i)]
            if not (skip_special and w in SPECIALS):
                words.append(w)
        return " ".join(words)

    def tokens(self, ids) -> list[str]:
        """ids -> list of token strings (labels for plots)."""
        return self.decode(ids).split()

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, strict={self.strict})"


def build_tokenizer(strict: bool = True) -> WordTokenizer:
    """The tokenizer of the story corpus: every word the generator can emit + the specials."""
    from course_lib.data.stories import vocabulary

    return WordTokenizer(vocabulary(), strict=strict)
