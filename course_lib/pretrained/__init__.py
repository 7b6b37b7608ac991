"""Real pretrained weights (GPT-2, BERT, Mamba) in the course's own classes.

The course's models are written from the lectures' equations; this package shows they *are*
the published architectures by loading the published weights into them. A checkpoint comes in
the Hugging Face layout (a folder with ``config.json``, ``model.safetensors`` and
``tokenizer.json``, as the hub serves them and ``save_pretrained`` writes them). Each model has
its own mapping module (``gpt2``, ``bert``, ``mamba``) built on the two functions here:
``read_hf_folder`` (safetensors only: a folder with only a pickle is refused) and
``assign_weights`` (every key accounted for and every shape checked *before* the model is
touched, so a model is never half-loaded).

Weights are never needed by a test or by CI: ``python tools/fetch_pretrained.py NAME`` (online,
once) downloads the pinned revision into ``pretrained_dir()`` and checks each file's SHA-256;
a notebook section that uses them prints ``unavailable_line(name)`` and moves on when they are
not there.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Source", "SOURCES", "pretrained_dir", "find_pretrained", "read_hf_folder",
           "assign_weights", "require_settings", "unavailable_line", "MANIFEST"]

MANIFEST = "course-manifest.json"   # written by tools/fetch_pretrained.py once every hash matched


@dataclass(frozen=True)
class Source:
    """One hub repository at a pinned revision. ``sha256`` holds the digests known when the pin
    was written; a file without one is checked against the hub's own LFS/ETag digest for that
    revision at download time (tools/fetch_pretrained.py) and recorded in the manifest."""
    repo: str
    revision: str
    files: tuple[str, ...] = ("config.json", "model.safetensors", "tokenizer.json")
    sha256: dict = field(default_factory=dict)


SOURCES = {
    "gpt2": Source(
        "openai-community/gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e",
        sha256={"model.safetensors": "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
                "config.json": "0daed7749b4f02b8f76240d5444551d7b08712dab4d0adb8239c56ba823bb7b4",
                "tokenizer.json": "8414cab924d8b9b33013f0d221c5862f365ee9be39c5c2bfae8a5a9e970478a6"}),
    "bert-base-uncased": Source(
        "google-bert/bert-base-uncased", "86b5e0934494bd15c9632b12f734a8a67f723594"),
    "mamba-130m": Source(
        "state-spaces/mamba-130m-hf", "5708daa364c50b880e7bd92eab456e0d34492ee9",
        sha256={"tokenizer.json": "3cf430678137c8491ca82fb7092ee49e44ad38857fffe1e4a4a5ed860139a5b8"}),
}


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown pretrained model {name!r}: expected one of {sorted(SOURCES)}")
    return SOURCES[name]


def pretrained_dir() -> Path:
    """Where fetched weights live: ``$COURSE_PRETRAINED_DIR`` (e.g. a shared class folder on a
    JupyterHub), else the repository's git-ignored ``data/pretrained``."""
    env = os.environ.get("COURSE_PRETRAINED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "pretrained"


def find_pretrained(name: str) -> Path | None:
    """The folder holding ``name``'s files (``pretrained_dir() / name``) if every file of its
    source is there, else None. (The SHA-256 check happens once, when the files are fetched.)"""
    folder = pretrained_dir() / name
    return folder if all((folder / f).is_file() for f in _source(name).files) else None


def unavailable_line(name: str) -> str:
    """The one line a notebook prints when ``name``'s weights are not on this machine (the
    folder relative to the repository when it lies inside it, so stored outputs carry no
    machine's absolute path)."""
    folder = pretrained_dir() / name
    repo = Path(__file__).resolve().parents[2]
    shown = folder.relative_to(repo) if folder.is_relative_to(repo) else folder
    return (f"{name} weights not found in {shown}: skipping this section (online, run "
            f"`pip install -e '.[pretrained]'` and `python tools/fetch_pretrained.py {name}` "
            f"once, or set COURSE_PRETRAINED_DIR to a folder that has them).")


def require_settings(hf_config: dict, required: dict, who: str, model: str) -> None:
    """ValueError naming the first config field whose value the course's ``model`` cannot
    represent (``required``: {field: the only value it supports}; absent fields pass)."""
    for name, need in required.items():
        if hf_config.get(name, need) != need:
            raise ValueError(f"{who}: {name}={hf_config[name]!r} is not supported by the "
                             f"course's {model} (expected {need!r})")


def read_hf_folder(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A checkpoint folder in the Hugging Face layout -> (config.json as a dict, every tensor of
    model.safetensors as float32 on the CPU). Never unpickles: a folder that has only
    ``pytorch_model.bin`` is refused with a ValueError saying so."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    if not config_path.is_file():
        raise ValueError(f"read_hf_folder: expected {config_path}, received a folder without it")
    if not weights_path.is_file():
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        why = (f"it has only pickle files {pickles}, which the course never loads (save with "
               f"safe_serialization=True)" if pickles else "it has none")
        raise ValueError(f"read_hf_folder: expected {weights_path}, but {why}")
    config = json.loads(config_path.read_text())
    tensors = {k: v.float() if v.is_floating_point() else v
               for k, v in load_file(str(weights_path)).items()}
    return config, tensors


def assign_weights(model: nn.Module, tensors: dict[str, torch.Tensor],
                   mapping: dict[str, str | Callable[[Callable], torch.Tensor]], source: str,
                   ignore: tuple[str, ...] = (), assign: bool = False) -> nn.Module:
    """Fill ``model`` from a foreign state dict, all or nothing.

    mapping: {course state_dict key: source key, or a function ``rule(take)`` that builds the
    tensor from source tensors fetched with ``take(source_key)`` (a transpose, a slice)}.
    Before the model is touched, checks that every course key is mapped (a key whose parameter
    is tied to an already-mapped one, e.g. a read-out sharing the embedding, may be left out),
    every source tensor is used or matches a regex in ``ignore`` (e.g. a causal-mask buffer),
    and every shape agrees; any failure raises a ValueError naming the key and the expected vs
    received shape. Then loads the complete state dict strictly.

    assign=True hands the source tensors to the model instead of copying them
    (``load_state_dict(assign=True)``): build the model on the meta device
    (``with torch.device("meta"): model = ...``) and a real-size model costs its weights' memory
    once, not twice. Anything still on the meta device afterwards (a buffer the state dict does
    not hold) raises a ValueError naming it."""
    own = model.state_dict(keep_vars=True)     # the Parameter objects: tied ones are one object
    first = {}
    for key, value in own.items():
        first.setdefault(id(value), key)
    needed = [k for k, v in own.items() if first[id(v)] == k]
    missing = [k for k in needed if k not in mapping]
    unknown = [k for k in mapping if k not in own]
    if missing or unknown:
        raise ValueError(f"{source}: the mapping does not fit the model: course keys without a "
                         f"source {missing[:5]}, mapped keys the model lacks {unknown[:5]}")
    used, state, current = set(), {}, {}

    def take(name: str) -> torch.Tensor:                # a source tensor, marked as used
        if name not in tensors:
            key = current["key"]
            raise ValueError(f"{source}: missing key {name!r} (needed for {key}, expected "
                             f"shape {tuple(own[key].shape)})")
        used.add(name)
        current["taken"].append(f"{name} {tuple(tensors[name].shape)}")
        return tensors[name]

    for key in needed:
        current.update(key=key, taken=[])
        rule = mapping[key]
        value = take(rule) if isinstance(rule, str) else rule(take)
        if tuple(value.shape) != tuple(own[key].shape):
            name = (repr(rule) if isinstance(rule, str) else
                    f"(derived for {key} from {', '.join(current['taken'])})")
            raise ValueError(f"{source}: {name}: expected shape {tuple(own[key].shape)} for "
                             f"{key}, received {tuple(value.shape)}")
        state[key] = value.to(own[key].dtype)
    for key, value in own.items():                                  # tied duplicates
        if key not in state:
            state[key] = state[first[id(value)]]
    unused = [k for k in tensors if k not in used and not any(re.search(p, k) for p in ignore)]
    if unused:
        raise ValueError(f"{source}: unexpected keys the course model has no place for: "
                         f"{sorted(unused)[:5]} ({len(unused)} in all)")
    model.load_state_dict(state, strict=True, assign=assign)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{source}: still on the meta device after loading (not in the state "
                         f"dict; build these for real): {left[:5]}")
    return model
