"""A tiny English-like story language whose generator is known exactly (notebooks 04 and 05).

Every story introduces two characters, is set in one of four places, and then refers back:

    one day tom and mia went to the river .                       <- characters + setting
    later mia found a red shell and she was happy .               <- name copied, she agrees
    the ducks that tom saw near the bridge were sleepy .          <- ducks ... were (long range)
    so tom sat on the bank of the river .                         <- "bank" = river side
    when tom met mia , he gave her a green stone .                <- he / her agree with names
    at last mia and tom went home .                               <- the other name, copied

What makes context matter:
* **references**: names after the first sentence are always one of the two characters
  introduced (a model must copy them from the context: ln 2 instead of ln 12 nats);
* **agreement**: pronouns (he/she, him/her) follow the gender of the name they refer to; the
  verb (was/were) agrees with a noun several words back, across a relative clause;
* **ambiguous words**: "bank", "bat" and "bark" mean different things in different settings
  (river bank vs money bank, the animal vs the sports bat, the tree's bark vs the dog's bark);
  ``Story.senses`` lists each occurrence with its sense;
* **topic**: the setting (``Story.label``: river, town, forest, farm) is named once, at a
  position that depends on the opening, and colours the vocabulary of the whole story.

The entropy floor. The generator is one program that makes every random choice by emitting a
single token from an explicit distribution (``_Process.choose``); all other tokens are forced.
So the probability of a story is the product of its choices' probabilities, and the *same*
program run in "scoring" mode reads a story back and returns, for every token,

    -ln p(token_i | token_1 .. token_{i-1})   (0 for forced tokens),

the exact conditional the generator used. ``entropy_rate`` averages it over held-out stories:
no model can have a lower expected cross-entropy per token, so it is the floor a language
model's loss is compared to. Tokens counted: every word and punctuation token plus one end-of-
story token per story (what a GPT predicts after ``[BOS]``).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["Story", "generate_stories", "corpus_splits", "entropy_rate", "story_nll",
           "vocabulary", "LABELS", "AMBIGUOUS", "SPLIT_SIZES", "END", "NAMES", "MALE", "FEMALE",
           "PLACES", "OBJECTS", "ANIMALS", "SO_SENTENCES"]

END = "[EOS]"
LABELS = ("river", "town", "forest", "farm")
SPLIT_SIZES = {"train": 6000, "val": 500, "test": 500}

MALE = ("tom", "sam", "ben", "max", "leo", "jack")
FEMALE = ("anna", "mia", "lily", "emma", "zoe", "kate")
NAMES = MALE + FEMALE
MOVES = ("walked", "ran", "went", "hurried", "raced", "strolled", "rushed", "wandered")
COLOURS = ("red", "blue", "green", "small", "big", "shiny", "dark", "tiny", "white", "brown")
FEELINGS = ("happy", "sad", "glad", "scared", "proud", "tired", "calm", "excited", "angry",
            "lucky")
TRAITS = ("small", "big", "loud", "quiet", "hungry", "sleepy", "lazy", "busy", "wild", "shy")
PLACES = {"river": ("water", "bridge", "boat", "rocks", "mill", "shore"),
          "town": ("market", "shop", "street", "school", "square", "station"),
          "forest": ("trees", "path", "cave", "hill", "stream", "clearing"),
          "farm": ("barn", "field", "fence", "pond", "house", "garden")}
OBJECTS = {"river": ("fish", "stone", "shell", "frog", "stick", "net", "feather", "pebble"),
           "town": ("coin", "book", "hat", "key", "ticket", "map", "bag", "letter"),
           "forest": ("nut", "leaf", "feather", "mushroom", "berry", "pinecone", "stick", "stone"),
           "farm": ("pear", "bucket", "rope", "carrot", "hen", "lamb", "key", "basket")}
ANIMALS = {"river": (("duck", "ducks"), ("swan", "swans"), ("otter", "otters")),
           "town": (("cat", "cats"), ("pigeon", "pigeons"), ("mouse", "mice")),
           "forest": (("fox", "foxes"), ("owl", "owls"), ("wolf", "wolves")),
           "farm": (("cow", "cows"), ("goat", "goats"), ("pig", "pigs"))}
# "so" sentences: per setting, two variants told apart by their third token; (word, sense) marks
# the ambiguous word. N is the character's name.
SO_SENTENCES = {
    "river": (("so N sat on the bank of the river .", ("bank", "river")),
              ("so N saw a bat fly over the water .", ("bat", "animal"))),
    "town": (("so N took money from the bank .", ("bank", "money")),
             ("so N played with a bat and a ball .", ("bat", "sport"))),
    "forest": (("so N touched the bark of a tree .", ("bark", "tree")),
               ("so N saw a bat in the cave .", ("bat", "animal"))),
    "farm": (("so N heard the bark of the dog .", ("bark", "dog")),
             ("so N put the money in the bank .", ("bank", "money"))),
}
AMBIGUOUS = {"bank": ("river", "money"), "bat": ("animal", "sport"), "bark": ("tree", "dog")}
MIDDLE = ("then", "later", "the", "so", "when")   # first token of each middle sentence type
MIN_MIDDLE, MAX_MIDDLE = 3, 5


@dataclass
class Story:
    """One story: sentences of space-separated lower-case tokens, its setting and word senses.

    senses: (sentence index, word index in that sentence, word, sense) for every ambiguous word.
    """
    sentences: list[str]
    label: str
    senses: list[tuple[int, int, str, str]] = field(default_factory=list)
    characters: tuple[str, str] = ("", "")

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def tokens(self) -> list[str]:
        return self.text.split()


class _Process:
    """Runs the story program either sampling (rng) or scoring a given token list."""

    def __init__(self, rng: random.Random | None = None, tokens: list[str] | None = None):
        self.rng, self.given = rng, tokens
        self.out: list[str] = []
        self.nll: list[float] = []   # -ln p of each emitted token given everything before it

    def choose(self, options, probs=None) -> str:
        """Emit one of ``options`` (distinct tokens) with probabilities ``probs`` (uniform)."""
        probs = [1.0 / len(options)] * len(options) if probs is None else probs
        if self.given is None:
            i = _draw(self.rng.random(), probs)
        else:
            token = self._next()
            if token not in options:
                raise ValueError(f"token {len(self.out)} {token!r} has probability 0 under the "
                                 f"story generator here; expected one of {list(options)}")
            i = options.index(token)
            if probs[i] == 0:
                raise ValueError(f"token {len(self.out)} {token!r} has probability 0 under the "
                                 f"story generator here")
        self.out.append(options[i])
        self.nll.append(-math.log(probs[i]))
        return options[i]

    def emit(self, text: str) -> None:
        """Emit forced tokens (probability 1)."""
        tokens = text.split()
        if self.given is None:
            self.out += tokens
            self.nll += [0.0] * len(tokens)
            return
        for token in tokens:
            if self._next() != token:
                raise ValueError(f"token {len(self.out)} {self.given[len(self.out)]!r} has "
                                 f"probability 0 under the story generator; expected {token!r}")
            self.out.append(token)
            self.nll.append(0.0)

    def _next(self) -> str:
        if len(self.out) >= len(self.given):
            raise ValueError(f"story ends after {len(self.given)} tokens but the generator "
                             f"expects more (it stopped after {' '.join(self.out[-5:])!r})")
        return self.given[len(self.out)]


def _draw(u: float, probs) -> int:
    """Index i with P(i) = probs[i] from one uniform draw u in [0, 1) (inverse CDF)."""
    for i, p_i in enumerate(probs):
        u -= p_i
        if u < 0:
            return i
    return max(i for i, p_i in enumerate(probs) if p_i > 0)   # rounding at the very top


def _pronoun(name: str, case: str = "subject") -> str:
    male = name in MALE
    return {"subject": "he" if male else "she", "object": "him" if male else "her"}[case]


def _opening(p: _Process) -> tuple[str, str, str]:
    """First sentence: two distinct characters and the setting, in one of three word orders."""
    first = p.choose(("one", "in") + NAMES, [1 / 3, 1 / 3] + [1 / (3 * len(NAMES))] * len(NAMES))
    if first == "one":
        p.emit("day")
        a = p.choose(NAMES)
    elif first == "in":
        p.emit("the")
        setting = p.choose(LABELS)
        p.emit("lived")
        a = p.choose(NAMES)
    else:
        a = first
    p.emit("and")
    b = p.choose(tuple(n for n in NAMES if n != a))
    if first == "one":
        p.emit("went to the")
        setting = p.choose(LABELS)
    elif first != "in":
        p.emit("lived near the")
        setting = p.choose(LABELS)
    p.emit(".")
    return a, b, setting


def _middle(p: _Process, kind: str, chars: tuple[str, str], setting: str, senses: list, i: int):
    """One middle sentence of type ``kind`` (its first token was already emitted)."""
    if kind == "then":
        p.choose(chars)
        p.choose(MOVES)
        p.emit("to the")
        p.choose(PLACES[setting])
        p.emit("with a")
        p.choose(COLOURS)
        p.choose(OBJECTS[setting])
    elif kind == "later":
        name = p.choose(chars)
        p.emit("found a")
        p.choose(COLOURS)
        p.choose(OBJECTS[setting])
        p.emit(f"and {_pronoun(name)} was")
        p.choose(FEELINGS)
    elif kind == "the":
        forms = [f for pair in ANIMALS[setting] for f in pair]
        animal = p.choose(forms)
        p.emit("that")
        p.choose(chars)
        p.emit("saw near the")
        p.choose(PLACES[setting])
        p.emit("were" if forms.index(animal) % 2 else "was")
        p.choose(TRAITS)
    elif kind == "so":
        name = p.choose(chars)
        variants = SO_SENTENCES[setting]
        third = p.choose(tuple(v[0].split()[2] for v in variants))
        text, (word, sense) = next(v for v in variants if v[0].split()[2] == third)
        rest = text.split()[3:-1]
        p.emit(" ".join(rest))
        senses.append((i, 3 + rest.index(word), word, sense))
    else:  # "when"
        a = p.choose(chars)
        b = chars[1] if a == chars[0] else chars[0]
        p.emit(f"met {b} , {_pronoun(a)} gave {_pronoun(b, 'object')} a")
        p.choose(COLOURS)
        p.choose(OBJECTS[setting])
    p.emit(".")


def _story_program(p: _Process) -> Story:
    """The whole generator: opening, 3-5 middle sentences, the closing sentence, [EOS]."""
    a, b, setting = _opening(p)
    senses, starts = [], [0, len(p.out)]
    for n_middle in range(MAX_MIDDLE + 1):
        p_end = 0.0 if n_middle < MIN_MIDDLE else 1.0 / (MAX_MIDDLE + 1 - n_middle)
        kinds = ("at",) + MIDDLE
        kind = p.choose(kinds, [p_end] + [(1 - p_end) / len(MIDDLE)] * len(MIDDLE))
        if kind == "at":
            break
        _middle(p, kind, (a, b), setting, senses, len(starts) - 1)
        starts.append(len(p.out))
    p.emit("last")
    x = p.choose((a, b))
    p.emit(f"and {b if x == a else a} went home .")
    starts.append(len(p.out))
    p.emit(END)
    sentences = [" ".join(p.out[s:e]) for s, e in zip(starts[:-1], starts[1:])]
    return Story(sentences, setting, senses, (a, b))


def generate_stories(n_stories: int, seed: int = 0) -> list[Story]:
    """``n_stories`` stories sampled from the generator with a seeded ``random.Random``."""
    if not isinstance(n_stories, int) or n_stories < 0:
        raise ValueError(f"n_stories must be a non-negative int, got {n_stories!r}")
    rng = random.Random(seed)
    return [_story_program(_Process(rng=rng)) for _ in range(n_stories)]


@lru_cache(maxsize=4)
def _splits(seed: int) -> dict[str, tuple[Story, ...]]:
    return {name: tuple(generate_stories(n, seed=1000 * seed + k))
            for k, (name, n) in enumerate(SPLIT_SIZES.items())}


def corpus_splits(seed: int = 0) -> dict[str, list[Story]]:
    """Deterministic {"train", "val", "test"} story lists (sizes in ``SPLIT_SIZES``)."""
    return {name: list(stories) for name, stories in _splits(seed).items()}


def story_nll(story: Story | str) -> list[float]:
    """Exact -ln p(token | all previous tokens) under the generator, one per token + [EOS].

    Raises ValueError when the text could not have been generated (a probability-0 token).
    """
    text = story.text if isinstance(story, Story) else story
    tokens = text.split()
    if not tokens or tokens[-1] != END:
        tokens = tokens + [END]
    p = _Process(tokens=tokens)
    _story_program(p)
    if len(p.out) != len(tokens):
        raise ValueError(f"the generator stops after {len(p.out)} tokens, the text has "
                         f"{len(tokens)}: {' '.join(tokens[len(p.out):][:5])!r} is extra")
    return p.nll


def entropy_rate(stories: list[Story] | None = None, seed: int = 0, split: str = "val") -> float:
    """The generator's entropy per token in nats: the floor of a language model's loss.

        H = Σ_stories Σ_i -ln p(token_i | token_<i)  /  Σ_stories (len(story) + 1)

    computed exactly with the generator's own probabilities on held-out ``stories`` (default:
    the ``split`` of ``corpus_splits(seed)``); the +1 is the [EOS] token ending each story.
    """
    if stories is None:
        splits = corpus_splits(seed)
        if split not in splits:
            raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
        stories = splits[split]
    if not stories:
        raise ValueError("entropy_rate needs at least one story")
    total, count = 0.0, 0
    for story in stories:
        nll = story_nll(story)
        total, count = total + sum(nll), count + len(nll)
    return total / count


def vocabulary() -> list[str]:
    """Every word the generator can emit (sorted), without special tokens."""
    words = set(NAMES + MOVES + COLOURS + FEELINGS + TRAITS + LABELS + MIDDLE)
    for setting in LABELS:
        words |= set(PLACES[setting]) | set(OBJECTS[setting])
        words |= {f for pair in ANIMALS[setting] for f in pair}
        words |= {w for text, _ in SO_SENTENCES[setting] for w in text.split() if w != "N"}
    words |= set("one day in the lived and went to near . found a was that saw were met , "
                 "gave he she him her at last home".split())
    return sorted(words)
