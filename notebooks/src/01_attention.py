# %% [markdown]
# # 01 · Attention
# <!-- badges -->
#
# A recurrent network reads a sentence one word at a time and squeezes everything it has seen
# into one state vector. **Attention** lets every position look at every other position directly
# and decide, from the content itself, where to look. It is the single mechanism the rest of
# this course is built on: the Transformer (03), BERT (04) and GPT (05) are stacks of it, and
# state-space models (06, 07) are best understood as a different answer to the same question.
#
# Papers: Bahdanau, Cho & Bengio, *Neural Machine Translation by Jointly Learning to Align and
# Translate* (2015); Vaswani et al., *Attention Is All You Need* (2017); Dao et al.,
# *FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness* (2022).

# %% [markdown]
# **Learning goals.** After this notebook you can
# 1. **derive** scaled dot-product attention from a soft database lookup,
# 2. **implement** it, with masks and multiple heads, and **verify** it against PyTorch
#    (`F.scaled_dot_product_attention`, `nn.MultiheadAttention`),
# 3. **measure** why the scores are divided by √d_k, and how tiling with an online softmax
#    (FlashAttention's idea) turns attention's O(t²) memory into O(t),
# 4. **visualize** attention maps and explore them interactively,
# 5. **train** a tiny attention model that solves associative recall, and read its attention map.

# %% [bootstrap]

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import IGNORE_INDEX, setup
from course_lib.attention import (MultiHeadAttention, attention, attention_naive, attention_tiled,
                                  causal_mask, merge_heads, padding_mask, split_heads)
from course_lib.checks.attention import (check_causal_mask, check_merge_softmax_stats,
                                         check_padding_mask, check_single_head_attention,
                                         check_split_heads)
from course_lib.data.synthetic import associative_recall
from course_lib.experiments.attention import attention_memory_rows, peak_tensor_bytes
from course_lib.source import show_source
from course_lib.training import accuracy, train
from course_lib.viz import plot_attention, plot_heads
from course_lib.viz.attention import attention_scores_explorer, attention_weights_explorer

device = setup(seed=0)

# %% [markdown]
# ## 1. Attention is a soft lookup
#
# Ask a database *"which restaurants near me are open at 9 pm?"*. Each restaurant has a **key**
# (what it is: distance, opening hours, …) and a **value** (what you get back: its rating).
# Your question is a **query** in the same feature space as the keys. A classic database returns
# the value of the one key that matches. Attention instead scores *every* key against the query,
# turns the scores into weights that sum to one, and returns the weighted **sum of the values**:
#
# $$ \text{score}_j = q \cdot k_j, \qquad
#    \alpha_j = \frac{e^{\text{score}_j}}{\sum_{j'} e^{\text{score}_{j'}}}, \qquad
#    \text{output} = \sum_j \alpha_j v_j .$$

# %%
# features per restaurant: [is near me, open at 9 pm, serves pizza]
names = ["Luigi's", "Noodle Bar", "Corner Cafe", "Late Taco", "Far Pizza"]
keys = torch.tensor([[1.0, 1.0, 1.0],    # near, open late, pizza
                     [1.0, 0.0, 0.0],    # near, closes early
                     [1.0, 1.0, 0.0],    # near, open late
                     [0.0, 1.0, 0.0],    # far, open late
                     [0.0, 0.0, 1.0]])   # far, closes early, pizza
values = torch.tensor([4.5, 4.0, 3.0, 4.8, 3.5])    # the rating each one returns
query = torch.tensor([2.0, 2.0, 0.0])               # "near me AND open at 9 pm" (pizza: don't care)

scores = keys @ query                                # (5,) one score per restaurant
weights = scores.softmax(dim=0)                      # (5,) sums to 1
answer = weights @ values                            # scalar: weighted average rating
for name, s, w in zip(names, scores, weights):
    print(f"{name:12s} score {s:4.1f}  weight {w:.3f}")
print(f"soft answer: {answer:.3f}   (hard lookup of the best key: {values[scores.argmax()]:.1f})")

# %% [markdown]
# Two restaurants match both wishes and share most of the weight; the others still get a little.
# The lookup is **differentiable**: nudging the query changes the weights smoothly, which is what
# lets a network *learn* what to ask for. In a network the queries, keys and values are not
# hand-written: they are linear projections of the token vectors $X \in \mathbb{R}^{t \times d}$,
#
# $$ Q = X W_Q, \qquad K = X W_K, \qquad V = X W_V, \qquad
#    W_Q, W_K \in \mathbb{R}^{d \times d_k},\ W_V \in \mathbb{R}^{d \times d_v}. $$
#
# ### Score functions
# The dot product $q \cdot k$ is one choice. Others from the literature: **additive** (Bahdanau)
# $w^\top \tanh(W_1 q + W_2 k)$, **general/bilinear** (Luong) $q^\top W k$, and **cosine**
# $q\cdot k / (\lVert q\rVert \lVert k\rVert)$. The dot product wins in practice because all
# scores of a sequence are one matrix product $QK^\top$, the fastest operation on any hardware.
# Softmax then acts as **focus**: a temperature $\tau$ in $\text{softmax}(s/\tau)$ sharpens
# ($\tau\to0$: a hard argmax lookup) or flattens ($\tau\to\infty$: a plain average).

# %%
for tau in (0.25, 1.0, 4.0):
    w = (scores / tau).softmax(dim=0)
    print(f"tau={tau:<4}  weights {[round(x, 3) for x in w.tolist()]}  answer {w @ values:.3f}")

# %% [markdown]
# ## 2. Scaled dot-product attention, and why √d_k
#
# For a whole sequence the lookups happen in parallel, one row per query:
#
# $$ \text{Attention}(Q, K, V) = \text{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V .$$
#
# **Why divide by $\sqrt{d_k}$?** If the entries of $q$ and $k$ are independent with mean 0 and
# variance 1, then $q\cdot k = \sum_{i=1}^{d_k} q_i k_i$ has variance $d_k$. Large scores push
# softmax into saturation: one weight near 1, the rest near 0, and the gradient
# $\partial\,\text{softmax}/\partial\,\text{score}$ vanishes. Dividing by $\sqrt{d_k}$ brings the
# variance back to 1 whatever the head width. Let us measure it.

# %%
def saturation_stats(d_k: int, scaled: bool, n_queries: int = 256, n_keys: int = 32, seed: int = 0):
    """Score std, mean max softmax weight and mean gradient norm for random q, k of width d_k."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_queries, d_k, generator=g)
    k = torch.randn(n_keys, d_k, generator=g)
    s = (q @ k.T) / (math.sqrt(d_k) if scaled else 1.0)        # (n_queries, n_keys)
    s.requires_grad_(True)
    w = s.softmax(-1)
    upstream = torch.randn(w.shape, generator=g)               # a random loss direction
    (w * upstream).sum().backward()
    return s.std().item(), w.max(-1).values.mean().item(), s.grad.norm(dim=-1).mean().item()

print(f"{'d_k':>5} | {'score std':>9} {'max w':>6} {'grad':>8} (unscaled) | "
      f"{'score std':>9} {'max w':>6} {'grad':>8} (scaled)")
rows = []
for d_k in (4, 16, 64, 256, 1024):
    u, s_ = saturation_stats(d_k, False), saturation_stats(d_k, True)
    rows.append((d_k, u, s_))
    print(f"{d_k:5d} | {u[0]:9.2f} {u[1]:6.3f} {u[2]:8.4f}            | "
          f"{s_[0]:9.2f} {s_[1]:6.3f} {s_[2]:8.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
dks = [r[0] for r in rows]
for col, label in ((1, "mean max weight"), (2, "mean gradient norm")):
    ax = axes[col - 1]
    ax.plot(dks, [r[1][col] for r in rows], "o-", label="q·k (unscaled)")
    ax.plot(dks, [r[2][col] for r in rows], "s-", label="q·k / √d_k")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_k")
    ax.set_title(label)
axes[1].set_yscale("log")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Unscaled, the score spread grows like √d_k, the largest weight climbs towards 1 (a one-hot
# row: the softmax has saturated) and the gradient that reaches the scores shrinks steadily
# (≈ 5× smaller at d_k = 1024, and still falling). Scaled, all three stay flat whatever the width.

# %%
assert abs(rows[-1][1][0] / math.sqrt(1024) - 1) < 0.1      # unscaled std ≈ √d_k
assert rows[-1][1][1] > 0.9 and rows[-1][2][1] < 0.3         # saturated vs not
assert rows[-1][2][2] > 4 * rows[-1][1][2]                  # scaled gradients are far larger

# %% [markdown]
# ### The matrix form, written out
# Our `attention_naive` writes the equation line by line: `scores = q @ k.transpose(-2, -1) *
# scale`, masked entries set to $-\infty$, softmax over keys, then `weights @ v`. This is the
# code `course_lib` runs (input checks are in `_check_qkv`):

# %%
show_source(attention_naive)

# %% [markdown]
# Substituting $Q = XW_Q$ and $K = XW_K$ gives the equal form
# $\text{softmax}(X W_Q W_K^\top X^\top / \sqrt{d_k})\, X W_V$: the product $W_Q W_K^\top$ is one
# $d\times d$ bilinear form that decides which pairs of tokens interact. Check both forms and
# PyTorch's fused kernel agree:

# %%
g = torch.Generator().manual_seed(0)
t, d, d_k = 6, 16, 8
X = torch.randn(t, d, generator=g)                            # (t, d)  six token vectors
W_Q, W_K, W_V = (torch.randn(d, d_k, generator=g) / math.sqrt(d) for _ in range(3))  # (d, d_k)
Q, K, V = X @ W_Q, X @ W_K, X @ W_V                           # (t, d_k) each

out_naive, A = attention_naive(Q, K, V)                       # (t, d_k), (t, t)
out_bilinear = ((X @ W_Q @ W_K.T @ X.T) / math.sqrt(d_k)).softmax(-1) @ (X @ W_V)
torch.testing.assert_close(out_naive, out_bilinear)
torch.testing.assert_close(out_naive, F.scaled_dot_product_attention(Q, K, V))
torch.testing.assert_close(A.sum(-1), torch.ones(t))          # every row is a distribution
print("naive == bilinear form == F.scaled_dot_product_attention; rows of A sum to 1")

# %% [markdown]
# ## 3. Multi-head attention
#
# One softmax gives each query one "focus". **Multi-head attention** runs $n_h$ attentions in
# parallel on $n_h$ slices of width $d_h = d/n_h$, concatenates them, and mixes them with $W_O$:
#
# $$ \text{head}_i = \text{Attention}(X W_Q^{(i)}, X W_K^{(i)}, X W_V^{(i)}), \qquad
#    \text{MHA}(X) = \text{Concat}(\text{head}_1, \dots, \text{head}_{n_h})\, W_O . $$
#
# (Vaswani et al. write the number of heads $h$. The course writes $n_h$, `nh` in shapes and
# `n_heads` in code, because from notebook 06 on $h$ is the hidden state of a state-space model.)
# It costs the same as one head of width $d$, because the $n_h$ projections are one $d\times d$
# matrix cut into column blocks. # Splitting is a reshape:
# `(b, t, d) -> (b, t, nh, dh) -> (b, nh, t, dh)`, and merging is its inverse:

# %%
show_source(split_heads, merge_heads)

# %% [markdown]
# The classic `.view().transpose()` idiom and einops' `rearrange` (used by `split_heads`) agree:

# %%
b, t, d, nh = 2, 5, 12, 3
x = torch.randn(b, t, d, generator=g)                                  # (b, t, d)
heads_view = x.view(b, t, nh, d // nh).transpose(1, 2)                 # (b, nh, t, dh)
torch.testing.assert_close(heads_view, split_heads(x, nh))
torch.testing.assert_close(merge_heads(split_heads(x, nh)), x)         # concat undoes split
print("view/transpose == rearrange; merge_heads(split_heads(x)) == x;", tuple(heads_view.shape))

# %% [markdown]
# `course_lib.attention.MultiHeadAttention` stacks $W_Q, W_K, W_V$ as one `qkv_proj` exactly like
# PyTorch's `nn.MultiheadAttention.in_proj_weight`, so we can copy PyTorch's weights in and demand
# the *same numbers* out: outputs and per-head weights, for self- and cross-attention.
# `project` computes $Q = XW_Q$ and $K, V$ from $X$ (self) or from a second sequence `memory`
# (cross); `forward` splits heads, attends (the fused kernel, or `attention_naive` when the
# weights are asked for), merges heads and applies $W_O$:

# %%
show_source(MultiHeadAttention.project, MultiHeadAttention.forward)

# %% [markdown]
# The check against PyTorch's module:

# %%
torch.manual_seed(0)
d_model, n_heads = 32, 4
reference = nn.MultiheadAttention(d_model, n_heads, batch_first=True).eval()
mha = MultiHeadAttention(d_model, n_heads).load_from_torch(reference).eval()

x = torch.randn(2, 7, d_model)                                         # (b, t, d)
memory = torch.randn(2, 9, d_model)                                    # (b, s, d) another sequence
with torch.no_grad():
    ref_out, ref_w = reference(x, x, x, average_attn_weights=False)    # self-attention
    out, w = mha(x, need_weights=True)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)                               # (b, nh, t, t)
    ref_cross, _ = reference(x, memory, memory)                        # cross-attention
    cross, w_cross = mha(x, memory, need_weights=True)
    torch.testing.assert_close(cross, ref_cross)
    torch.testing.assert_close(mha(x)[0], out)                         # fused path == naive path
print("self-attention weights", tuple(w.shape), "| cross-attention weights", tuple(w_cross.shape))

# %% [markdown]
# **Dropout** (training only) zeroes attention *weights*, as the paper's attention dropout and
# `F.scaled_dot_product_attention(dropout_p=p)` do, and scales the kept ones by $1/(1-p)$; with
# `need_weights=True` the weights returned are the dropped ones that multiplied $V$:

# %%
dropping = MultiHeadAttention(d_model, n_heads, dropout=0.5).load_from_torch(reference).train()
with torch.no_grad():
    out_d, w_d = dropping(x, need_weights=True)                        # (b, t, d), (b, nh, t, t)
    torch.testing.assert_close(out_d, dropping.out_proj(merge_heads(w_d @ dropping.project(x)[2])))
    kept = w_d != 0
    torch.testing.assert_close(w_d[kept], w[kept] / 0.5)               # survivors scaled by 1/(1-p)
assert 0.35 < kept.float().mean() < 0.65                              # about half are kept
print("in training mode: output == out_proj(dropped weights @ V); kept weights scaled by 1/(1-p)")

# %% [markdown]
# In **self-attention** queries, keys and values all come from the same sequence ($t\times t$
# maps). In **cross-attention** the queries come from one sequence and keys/values from another
# (the decoder reading the encoder in notebook 03): the map is $t\times s$, here 7 × 9.
#
# ## 4. Masks: padding and causality
#
# A mask removes keys from the softmax by setting their scores to $-\infty$ (course_lib's
# convention: boolean, `True` = *may attend*).
# - **Padding mask**: sequences in a batch have different lengths; the padded keys must get zero weight.
# - **Causal mask**: a language model predicting token $i+1$ must not see tokens after $i$;
#   query $i$ may attend to keys $j \le i$ only (lower-triangular).
#
# Both masks are one comparison of position indices:

# %%
show_source(causal_mask, padding_mask)

# %%
lengths = torch.tensor([7, 4])                                         # second sequence is padded
pad = padding_mask(lengths, 7)                                         # (b, 1, 1, s)
causal = causal_mask(7)                                                # (t, s)
with torch.no_grad():
    _, w_pad = mha(x, mask=pad, need_weights=True)                     # (b, nh, t, s)
    _, w_causal = mha(x, is_causal=True, need_weights=True)
    # PyTorch's boolean masks mean the opposite (True = blocked): invert them to compare
    ref_causal, _ = reference(x, x, x, attn_mask=~causal)
    torch.testing.assert_close(mha(x, is_causal=True)[0], ref_causal)
    ref_pad, _ = reference(x, x, x, key_padding_mask=~pad[:, 0, 0])
    torch.testing.assert_close(mha(x, mask=pad)[0], ref_pad)
    torch.testing.assert_close(mha(x, mask=causal)[0], mha(x, is_causal=True)[0])
assert w_pad[1, :, :, 4:].abs().max() == 0 and w_causal[0].triu(1).abs().max() == 0
print("padded keys and future keys get exactly zero weight; equal to nn.MultiheadAttention")

# %%
tokens = ["the", "cat", "sat", "on", "[PAD]", "[PAD]", "[PAD]"]
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
plot_attention(w[1, 0], tokens, tokens, ax=axes[0], title="no mask")
plot_attention(w_pad[1, 0], tokens, tokens, ax=axes[1], title="padding mask")
plot_attention(w_causal[1, 0], tokens, tokens, ax=axes[2], title="causal mask")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Naive vs fused attention: why the fused kernel is faster
#
# `attention_naive` materializes the full $(b, n_h, t, s)$ score and weight tensors in memory: at
# $t = 2048$ with 8 heads that is $8 \cdot 2048^2$ floats, 128 MiB *per tensor*, written and read
# back several times (scores, masked scores, softmax, product). `F.scaled_dot_product_attention`
# dispatches to fused kernels (FlashAttention-style on GPU, a blocked kernel on CPU) that compute
# softmax block by block with a running maximum and never store the full matrix. Same numbers,
# far less memory traffic. `course_lib`'s `MultiHeadAttention` uses the fused path unless you
# ask for the weights (`need_weights=True`, for plots). `attention` is that fused path:

# %%
show_source(attention)

# %%
t_long, nh_long, dh_long = 2048, 8, 64
bytes_per_map = nh_long * t_long * t_long * 4
print(f"one (nh, t, t) float32 map at t={t_long}: {bytes_per_map / 2**20:.0f} MiB")
q_l, k_l, v_l = (torch.randn(1, nh_long, t_long, dh_long, generator=g) for _ in range(3))
with torch.no_grad():
    torch.testing.assert_close(attention(q_l, k_l, v_l), attention_naive(q_l, k_l, v_l)[0],
                               atol=1e-5, rtol=1e-4)
print("fused == naive at t=2048")

# %%
# NBVAL_IGNORE_OUTPUT
from course_lib.timing import median_time

with torch.inference_mode():
    t_naive = median_time(lambda: attention_naive(q_l, k_l, v_l))
    t_fused = median_time(lambda: attention(q_l, k_l, v_l))
print(f"naive {t_naive * 1e3:.0f} ms, fused {t_fused * 1e3:.0f} ms, "
      f"fused is {t_naive / t_fused:.1f}x faster (1 thread; `python benchmarks/run.py` for more)")

# %% [markdown]
# ### FlashAttention's idea, from scratch: tiles and the online softmax
#
# How can a kernel compute softmax over a row it never holds in memory? Split the keys into
# blocks of $B$. For one query row, keep two running numbers over the blocks seen so far: the
# maximum score $m$ and the normaliser $\ell = \sum e^{s_j - m}$, plus the unnormalised output
# $o = \sum e^{s_j - m} v_j$. A new block of scores $S$ with values $V_j$ updates them
# (Milakov & Gimelshein, 2018; Dao et al., 2022, Algorithm 1):
#
# $$ m' = \max\big(m, \max_j S_j\big), \qquad
#    \ell' = e^{m - m'}\,\ell + \sum_j e^{S_j - m'}, \qquad
#    o' = e^{m - m'}\,o + \sum_j e^{S_j - m'}\, v_j, $$
#
# and after the last block $\text{out} = o / \ell$: exactly softmax$(S)\,V$, because every term
# was rescaled to the same final maximum. The factor $e^{m - m'}$ corrects what was accumulated
# against an older, smaller maximum. Doing this for a block of queries at a time, only a
# $(B, B)$ tile of scores exists at any moment: memory $O(t)$ instead of $O(t^2)$. The real
# kernels (Dao-AILab/flash-attention) add what Python cannot: the tiles live in the GPU's
# on-chip SRAM, and the backward pass recomputes them instead of storing them.

# %%
show_source(attention_tiled)

# %% [markdown]
# **Check.** Equal to `F.scaled_dot_product_attention` in values (several shapes, block sizes
# that do not divide $t$, causal and padding masks) and, for one size, in gradients:

# %%
g_tiled = torch.Generator().manual_seed(5)
for t_q, t_k, block in ((7, 7, 3), (64, 64, 16), (50, 70, 32), (33, 33, 128)):
    q_t, k_t, v_t = (torch.randn(2, 3, n, 8, generator=g_tiled) for n in (t_q, t_k, t_k))
    keep = padding_mask([t_k, t_k - 5], t_k)                           # (b, 1, 1, s)
    torch.testing.assert_close(attention_tiled(q_t, k_t, v_t, block_size=block),
                               F.scaled_dot_product_attention(q_t, k_t, v_t))
    torch.testing.assert_close(attention_tiled(q_t, k_t, v_t, is_causal=True, block_size=block),
                               F.scaled_dot_product_attention(q_t, k_t, v_t,
                                                              attn_mask=causal_mask(t_q, t_k)))
    torch.testing.assert_close(attention_tiled(q_t, k_t, v_t, mask=keep, block_size=block),
                               F.scaled_dot_product_attention(q_t, k_t, v_t, attn_mask=keep))
q_t, k_t, v_t = (torch.randn(2, 3, 40, 8, generator=g_tiled, requires_grad=True) for _ in range(3))
grads = {}
for name, fn in (("tiled", lambda: attention_tiled(q_t, k_t, v_t, is_causal=True, block_size=16)),
                 ("fused", lambda: F.scaled_dot_product_attention(q_t, k_t, v_t, is_causal=True))):
    grads[name] = torch.autograd.grad((fn() ** 2).sum(), (q_t, k_t, v_t))
for g_a, g_b in zip(grads["tiled"], grads["fused"]):
    torch.testing.assert_close(g_a, g_b)
print("attention_tiled == F.scaled_dot_product_attention: values (4 shapes x 3 masks) and "
      "gradients dq, dk, dv (t=40, causal, blocks of 16)")

# %% [markdown]
# **Measure the memory.** `peak_tensor_bytes` (in `course_lib.experiments.attention`) counts the
# bytes held at once by the tensors a call allocates, exactly (it follows every tensor PyTorch
# creates, so the figure is the same on every machine). One head, $d_h = 32$, blocks of 128:

# %%
show_source(peak_tensor_bytes)

# %%
lengths_mem = [256, 512, 1024, 2048]
memory_rows = attention_memory_rows(
    {"naive": lambda q, k, v: attention_naive(q, k, v)[0],
     "tiled": lambda q, k, v: attention_tiled(q, k, v, block_size=128)}, lengths_mem, d_head=32)
print(f"{'t':>6} | {'naive':>10} | {'tiled':>10} | naive bytes / t² | tiled bytes / t")
for r in memory_rows:
    print(f"{r['t']:>6} | {r['naive'] / 2**20:7.2f} MiB | {r['tiled'] / 2**20:7.2f} MiB | "
          f"{r['naive'] / r['t'] ** 2:16.2f} | {r['tiled'] / r['t']:15.0f}")
first, last = memory_rows[0], memory_rows[-1]
growth = last["t"] / first["t"]
print(f"t grows {growth:.0f}x: naive memory {last['naive'] / first['naive']:.0f}x, "
      f"tiled {last['tiled'] / first['tiled']:.1f}x")
assert last["naive"] / first["naive"] > 0.9 * growth ** 2               # quadratic
assert last["tiled"] / first["tiled"] < growth                           # at most linear

fig, ax = plt.subplots(figsize=(5, 3.2))
for name, style in (("naive", "o-"), ("tiled", "s-")):
    ax.loglog(lengths_mem, [r[name] / 2**20 for r in memory_rows], style, base=2, label=name)
ax.set(xlabel="sequence length t", ylabel="peak MiB (log scale)",
       title="peak memory of one attention call")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The naive version holds two $(t, t)$ float32 tensors at once (the scores and their softmax):
# its bytes per $t^2$ stay flat in the table above, so its memory is quadratic. The tiled
# version's peak is the output and a few $(B, B)$ and $(B, d_h)$ tiles: its bytes per $t$ fall
# towards a constant (the fixed tile cost dominates at small $t$), so its memory is linear. Same
# values, same gradients, a fraction of the memory at long lengths.

# %% [markdown]
# ## 6. See it: attention maps and an explorer
#
# A random (untrained) multi-head layer on a short sentence: each head already has its own
# pattern, decided only by the random $W_Q W_K^\top$. (Trained maps follow in section 7.)

# %%
sentence = "the cat that the dog chased ran away".split()
emb = torch.randn(len(sentence), d_model, generator=torch.Generator().manual_seed(3))
with torch.no_grad():
    _, w_sentence = mha(emb[None], need_weights=True)                 # (1, nh, t, t)
fig = plot_heads(w_sentence[0], sentence, sentence, ncols=4, size=2.4,
                 suptitle="random weights: 4 heads, self-attention")
plt.show()

# %% [markdown]
# **Explorer.** Pick an example, a head, switch the √d_k scaling and change the softmax
# temperature; the map redraws. Watch the unscaled maps with a wide head ($d_h = 64$) turn into
# one-hot rows (saturation), and a high temperature flatten every row.

# %%
def head_qk(module: MultiHeadAttention, tokens_x, x, memory=None):
    """Per-head queries and keys (nh, t, dh), (nh, s, dh) of one sequence, for the explorer."""
    with torch.no_grad():
        q, k, _ = module.project(x[None], None if memory is None else memory[None])
    return q[0], k[0]


wide = MultiHeadAttention(256, 4)                                      # dh = 64
emb_wide = torch.randn(len(sentence), 256, generator=torch.Generator().manual_seed(4))
q_s, k_s = head_qk(mha, sentence, emb)
q_w, k_w = head_qk(wide, sentence, emb_wide)
examples = {
    "sentence, dh=8": {"q": q_s, "k": k_s, "x_labels": sentence, "y_labels": sentence},
    "sentence, dh=8, causal": {"q": q_s, "k": k_s, "x_labels": sentence, "y_labels": sentence,
                               "mask": causal_mask(len(sentence))},
    "wide heads, dh=64": {"q": q_w * 3, "k": k_w * 3, "x_labels": sentence, "y_labels": sentence},
}
explorer = attention_scores_explorer(examples)

# %%
# NBVAL_IGNORE_OUTPUT
explorer

# %% [markdown]
# ## 7. Experiment: a tiny attention model learns associative recall
#
# **Task.** A sequence of key–value pairs `k1 v1 k2 v2 … k8 v8`, then a query marker and one of
# the keys; the model must output that key's value. No fixed position holds the answer: the model
# has to *find* the matching key and read the token after it — a content-based lookup, exactly
# what attention is for. (Random guessing scores 1/16 = 6%.)
#
# **Model.** Token + learned position embeddings, two causal self-attention layers
# (`course_lib.attention.MultiHeadAttention`), one feed-forward layer, a linear read-out. Two
# layers because the lookup has two steps: layer 1 lets each value token see its key (the
# previous token); layer 2 lets the query find the value whose key matches.

# %%
N_PAIRS, N_KEYS, N_VALUES = 8, 16, 16
VOCAB_SIZE = N_KEYS + N_VALUES + 1              # keys, values, the query marker
SEQ_LEN = 2 * N_PAIRS + 2


class RecallModel(nn.Module):
    """Embeddings -> 2 causal attention layers (residual, pre-norm) -> FFN -> logits (b, t, vocab)."""

    def __init__(self, vocab_size: int, max_len: int, d_model: int = 64, n_heads: int = 4,
                 n_layers: int = 2):
        super().__init__()
        self.token_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.attn = nn.ModuleList(MultiHeadAttention(d_model, n_heads) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.ffn = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model))
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens, need_weights=False):
        z = self.token_emb(tokens) + self.pos_emb(torch.arange(tokens.shape[1]))  # (b, t, d)
        maps = []
        for attn, norm in zip(self.attn, self.norms):
            out, w = attn(norm(z), is_causal=True, need_weights=need_weights)  # (b, t, d)
            z, maps = z + out, maps + [w]
        return self.head(z + self.ffn(z)), maps                              # (b, t, vocab)


torch.manual_seed(0)
model = RecallModel(VOCAB_SIZE, SEQ_LEN)
gen = torch.Generator().manual_seed(0)
x_test, y_test = associative_recall(2000, N_PAIRS, N_KEYS, N_VALUES, seed=123)  # held out


def get_batch(step):
    return associative_recall(64, N_PAIRS, N_KEYS, N_VALUES, generator=gen)


def loss_fn(model, x, y):
    logits, _ = model(x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)


result = train(model, get_batch, loss_fn, steps=500, lr=3e-3, warmup=50, desc="recall")
with torch.no_grad():
    test_acc = accuracy(model(x_test)[0], y_test)
print(f"final training loss {result.final_loss:.3f}; held-out accuracy {test_acc:.1%} "
      f"on {len(x_test)} sequences (chance {1 / N_VALUES:.0%})")
assert test_acc >= 0.95

# %% [markdown]
# **Read the attention map.** In layer 2, the query position (last row) should put its weight on
# the *value* that follows the matching key. Here is one test sequence:

# %%
x_one = x_test[:1]
with torch.no_grad():
    logits, maps = model(x_one, need_weights=True)


def token_name(i):
    i = int(i)
    return f"k{i}" if i < N_KEYS else ("?" if i == VOCAB_SIZE - 1 else f"v{i - N_KEYS}")


labels = [token_name(i) for i in x_one[0]]
query_key = int(x_one[0, -1])
match = [i for i in range(0, 2 * N_PAIRS, 2) if int(x_one[0, i]) == query_key][0]
layer2 = maps[1][0]                                                    # (nh, t, t)
strongest = layer2[:, -1].max(0).values.argmax().item()
print(f"query {labels[-1]}: matching key at position {match}, its value {labels[match + 1]} at "
      f"{match + 1}; layer-2 strongest weight from the query on position {strongest}; "
      f"model answers {token_name(logits[0, -1].argmax())}")
fig = plot_heads(layer2, labels, labels, ncols=4, size=2.8, suptitle="layer 2, all heads")
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
trained_explorer = attention_weights_explorer(
    {f"test sequence {i}": {"weights": torch.stack(model(x_test[i:i + 1], need_weights=True)[1])[:, 0],
                            "x_labels": [token_name(j) for j in x_test[i]],
                            "y_labels": [token_name(j) for j in x_test[i]]} for i in range(3)})
trained_explorer

# %% [markdown]
# ### bertviz
# [bertviz](https://github.com/jessevig/bertviz)'s `head_view` draws the same maps as lines between
# tokens; it accepts any list of per-layer `(1, nh, t, t)` tensors, so it works on our model.
# **It needs internet**: its JavaScript (require.js, d3, jQuery) comes from a CDN, and JupyterLab
# runs the stored JavaScript only in a trusted notebook. Offline, the view stays blank — the
# course's explorer above always works.

# %%
from course_lib.viz.bertviz import head_view

head_view(torch.stack(maps)[:, 0], labels)

# %% [markdown]
# ## 8. Exercises
# Each exercise has a checker that says *passed*, *what differs*, or *not implemented yet*.
# Replace `raise NotImplementedError` with your code and re-run the cell.
#
# **Exercise 1 — the causal mask.** Return a boolean `(t, t)` tensor, `True` where query `i` may
# attend to key `j` (that is, `j <= i`). Hint: `torch.tril`.

# %%
def my_causal_mask(t: int) -> torch.Tensor:
    raise NotImplementedError


check_causal_mask(my_causal_mask)

# %% [markdown]
# **Exercise 2 — single-head attention.** Given `q (..., t, dh)`, `k (..., s, dh)`,
# `v (..., s, dv)`, return `softmax(q kᵀ / √dh) v` of shape `(..., t, dv)`.

# %%
def my_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


check_single_head_attention(my_attention)

# %% [markdown]
# **Exercise 3 — heads from a projection.** Turn `x (b, t, d)` into `(b, nh, t, dh)` where head
# `i` holds features `i*dh … (i+1)*dh - 1`. Use `.view` and `.transpose` (no einops).

# %%
def my_split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    raise NotImplementedError


check_split_heads(my_split_heads)

# %% [markdown]
# **Exercise 4 — the padding mask.** Given `lengths (b,)` and the padded length `s`, return a
# boolean `(b, 1, 1, s)` mask that is `True` on the first `lengths[i]` keys of sequence `i` (the
# singleton axes broadcast over heads and queries).

# %%
def my_padding_mask(lengths: torch.Tensor, s: int) -> torch.Tensor:
    raise NotImplementedError


check_padding_mask(my_padding_mask)

# %% [markdown]
# **Exercise 5 — the online softmax step.** Two blocks of scores were summarised separately:
# block 1 by its maximum `m1` and normaliser `l1` $= \sum_j e^{s_j - m_1}$, block 2 by `m2`,
# `l2` (each a tensor with one entry per query row). Return `(m, l)` for both blocks together,
# without the scores. (`m1` may be $-\infty$: a block where nothing was visible, `l1` $= 0$.)

# %%
def my_merge_softmax_stats(m1, l1, m2, l2):
    raise NotImplementedError


check_merge_softmax_stats(my_merge_softmax_stats)

# %% [markdown]
# ## Summary
# - Attention is a differentiable lookup: scores $QK^\top/\sqrt{d_k}$, softmax, a weighted sum of $V$.
# - The √d_k keeps scores at unit variance; without it softmax saturates and gradients vanish (measured).
# - Multi-head attention = $n_h$ lookups on slices of the width, concatenated and mixed by $W_O$;
#   ours equals `nn.MultiheadAttention` to float precision, and uses the fused kernel when it can.
# - Tiled attention with the online softmax (FlashAttention's idea) gives the same values and
#   gradients with memory linear in $t$ instead of quadratic (measured).
# - Masks remove keys: padding (different lengths) and causal (no peeking at the future).
# - Now in `course_lib.attention`: `attention_naive`, `attention`, `attention_tiled`,
#   `causal_mask`, `padding_mask`, `split_heads`, `merge_heads`, `MultiHeadAttention`, `KVCache`
#   (used from notebook 03 on); the memory counter in `course_lib.experiments.attention`.
#
# **Next:** attention has no idea of *order* — shuffle the tokens and the outputs shuffle with
# them. Notebook [02 · Positional encodings](02_positional_encodings.ipynb) fixes that.
