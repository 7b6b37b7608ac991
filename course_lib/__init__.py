"""course_lib: the final, tested version of every mechanism in the course.

Foundation-model architectures, from attention to Mamba. Each notebook derives a mechanism;
this package keeps the version later notebooks import. One module per lecture topic, and an
import only ever points back along the course (tests/test_layout.py):

====  ===========================  ==========================================================
 nb   mechanism                    what the notebook does with it (``experiments.<topic>``)
====  ===========================  ==========================================================
 00   ``word_vectors``, ``rnn``    skip-gram neighbours; RNN translation with/without attention
 01   ``attention``                recall task; naive vs tiled (FlashAttention) memory
 02   ``positional``               "token k back" task across lengths and encodings
 03   ``transformer``              toy translation: exact match, what the heads do
 04   ``bert``                     pre-training and fine-tuning on the stories
 05   ``gpt``                      the story language model against its entropy floor
 06   ``ssm``, ``s4``              dense-A training, long-range classification, convergence
 07   ``scan``, ``mamba``          selective copying, induction heads
 08   ``llama``                    Llama-style vs GPT-2-style decoder; speculative decoding
 09   ``rwkv``, ``hybrid``         RWKV time mixing; hybrid vs pure models on recall
====  ===========================  ==========================================================

Beside them: ``pretrained`` (real GPT-2, BERT, Mamba weights in these classes), ``checks``
(exercise checkers) and ``viz`` (figures, explorers), each with one module per topic; and the
services every topic uses: ``common`` (one-line input checks, ``right_pad``,
``IGNORE_INDEX``), ``training`` (the loop, the one checkpoint loader), ``timing``, ``source``
(library code on the page) and ``data`` (generated corpora, tokenizer, synthetic tasks). The
README's layout map adds each topic's tests, training tool and checkpoints.

Glossary (one name per concept, lowercase axes everywhere)
----------------------------------------------------------
=========  ===============================================================
``b``      batch size
``t``      sequence length (``l`` in the SSM/Mamba modules, as in the papers)
``s``      length of the *source* sequence in cross-attention (keys/values)
``d``      model width, ``d_model``; SSM channels (Mamba: the inner width ``d_inner``)
``nh``     number of attention heads, ``n_heads`` (the paper's h)
``dh``     width of one head, ``d_head = d_model // n_heads``  (the lecture's d_k)
``vocab``  the vocabulary axis in shape comments (its size: ``vocab_size``); ``v`` is
           only ever the values tensor
``x, y``   a layer's input and output sequences (SSMs too: the Mamba paper's x, S4's u)
``h``      SSM hidden state (the Mamba paper's h, S4's x); never heads
``n``      SSM state size (``d_state``)
``q,k,v``  query, key, value tensors  (Q = X W_Q, K = X W_K, V = X W_V)
``A, B, C, D``  SSM matrices; ``A_bar, B_bar`` their discretized forms (Ā, B̄)
``delta``  the SSM step size Δ
``K_bar``  the SSM convolution kernel K̄ = (CB̄, CĀB̄, …, CĀ^{L-1}B̄)
``nkv``    key/value heads of grouped-query attention, ``n_kv_heads`` (08)
``v_c, u_o``  skip-gram's centre and context vectors (00)
``w, u``   RWKV's decay and current-token bonus (09)
=========  ===============================================================

Shape comments read like ``# (b, nh, t, dh)``. Masks are boolean with ``True`` = "may attend".
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__version__ = "0.1.0"
from course_lib.common import IGNORE_INDEX, ShapeError, check_shapes, check_token_ids, right_pad

__all__ = ["setup", "get_device", "IGNORE_INDEX", "ShapeError", "check_shapes", "check_token_ids",
           "right_pad"]


def get_device() -> torch.device:
    """The device course code runs on: CUDA when present, else CPU (COURSE_DEVICE overrides)."""
    name = os.environ.get("COURSE_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup(seed: int = 0, threads: int | None = None, verbose: bool = True) -> torch.device:
    """Make a notebook reproducible: seed Python, NumPy and torch, fix the thread count.

    Float sums depend on how work is split across threads, so the thread count is fixed
    (default 1, or COURSE_THREADS) to make printed numbers identical on every re-run.
    Returns the device (GPU when present) and prints one line saying what was chosen.
    """
    if threads is None:
        threads = int(os.environ.get("COURSE_THREADS", "1"))
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    device = get_device()
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    _setup_matplotlib()
    if verbose:
        print(f"course_lib {__version__}: seed={seed}, torch threads={threads}, device={device.type}")
    return device


def _setup_matplotlib() -> None:
    """PNG figures of a fixed size and dpi, so notebooks store small, stable images."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return
    matplotlib.rcParams.update({"figure.dpi": 72, "savefig.dpi": 72, "figure.figsize": (6, 4),
                                "svg.hashsalt": "course"})
