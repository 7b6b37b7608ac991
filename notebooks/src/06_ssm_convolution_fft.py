# %% [markdown]
# # 06 · State-space models: recurrence, convolution, FFT
# <!-- badges -->
#
# Attention compares every token with every other token: $O(t^2)$ time and memory. A
# **state-space model** (SSM) reads a sequence through a fixed-size state, like an RNN, but its
# update is *linear and time-invariant*. That one restriction buys three equivalent ways to run
# it: as a **recurrence** (one step per token: cheap generation), as a **convolution** with a
# kernel $\bar K$ (parallel training), and as an **FFT** convolution ($O(L \log L)$). S4 adds the
# missing piece, a matrix $A$ whose state provably *remembers* the input history, and turns
# SSMs into sequence models that reach thousands of steps back. Mamba (07) builds on all of it.
#
# Papers: Gu, Goel & Ré, *Efficiently Modeling Long Sequences with Structured State Spaces*
# (S4, ICLR 2022); Gu, Dao, Ermon, Rudra & Ré, *HiPPO: Recurrent Memory with Optimal Polynomial
# Projections* (NeurIPS 2020); Gu, Gupta, Goel & Ré, *On the Parameterization and Initialization
# of Diagonal State Space Models* (S4D, NeurIPS 2022); Rush & Karamcheti, *The Annotated S4*.

# %% [markdown]
# **Learning goals.** After this notebook you can
# 1. **derive** the discrete SSM from the continuous one (zero-order hold, bilinear) and see it
#    is a linear RNN,
# 2. **implement** the SSM three ways (recurrence, convolution with $\bar K$, FFT with the right
#    zero padding) and **verify** that they agree,
# 3. **measure** their cost against the sequence length,
# 4. **train** a dense $A$ directly, **explain** what goes wrong, and how HiPPO and the diagonal
#    S4D kernel fix it,
# 5. **train** (via a script) and **compare** an SSM classifier that sees 1,000 steps back with
#    one that cannot.

# %% [bootstrap]

# %%
import math
import statistics
from functools import partial

import matplotlib.pyplot as plt
import torch

from course_lib import setup
from course_lib.checks.ssm import check_discretize_zoh, check_fft_conv, check_kernel_powers
from course_lib.data.synthetic import long_range_batch
from course_lib.experiments.ssm import (DenseSSM, discretization_errors, fit_kernel, load_dense_sweep,
                                        load_ssm_classifier, rk4_states)
from course_lib.s4 import (SSMLayer, hippo_legs, init_ssm, legs_memory, legs_reconstruct, s4d_kernel,
                           s4d_lin_init)
from course_lib.source import show_source
from course_lib.ssm import (causal_conv, discretize_bilinear, discretize_euler, discretize_zoh,
                            discretize_zoh_diag, fft_conv, ssm_kernel, ssm_kernel_powers,
                            ssm_recurrence)
from course_lib.timing import median_time
from course_lib.training import accuracy
from course_lib.viz.ssm import plot_eigenvalues, plot_kernel_magnitudes, ssm_kernel_explorer

device = setup(seed=0)
torch.set_default_dtype(torch.float64)   # exact comparisons in the derivations; the model is float32

# %% [markdown]
# ## 1. The continuous state-space model
#
# A 1-D input signal $x(t)$ drives an $n$-dimensional hidden state $h(t)$; a 1-D output $y(t)$
# reads it:
#
# $$ h'(t) = A\,h(t) + B\,x(t), \qquad y(t) = C\,h(t) + D\,x(t), \qquad
#    A \in \mathbb{R}^{n\times n},\ B \in \mathbb{R}^{n\times 1},\
#    C \in \mathbb{R}^{1\times n},\ D \in \mathbb{R}. $$
#
# **Notation.** The lectures and the S4 paper write $u$ for the input and $x$ for the state. From
# here on this course writes $x$ for the input, $h$ for the hidden state and $y$ for the output,
# as the Mamba paper and notebook 07 do; $d$ counts channels and $n$ is the state size.
#
# $D x$ does not touch the state: it is a **feed-through** from the SSM's input straight to its
# output, inside the SSM. It is *not* the residual connection of a deep network, which adds a
# whole layer's input to that layer's output: `SSMClassifier` (section 11) has both, $D_c x_c$
# inside every channel of each `SSMLayer` and $x + \mathrm{SSMLayer}(\mathrm{LayerNorm}(x))$
# around each layer. Everything interesting happens in $A$: its eigenvalues decide how
# fast the state forgets ($\mathrm{Re}\,\lambda < 0$: decays; $> 0$: blows up) and whether it
# oscillates ($\mathrm{Im}\,\lambda \ne 0$). A small example with $n = 4$:

# %%
g = torch.Generator().manual_seed(0)
n = 4
blocks = torch.tensor([[-0.3, 3.0, 0.0, 0.0],                  # a slow oscillation: -0.3 ± 3i
                       [-3.0, -0.3, 0.0, 0.0],
                       [0.0, 0.0, -1.0, 1.0],                  # a fast decay: -1 ± 1i
                       [0.0, 0.0, -1.0, -1.0]])
Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))         # a random rotation of the state
A = Q @ blocks @ Q.T                                           # (n, n)
B = torch.randn(n, 1, generator=g)                             # (n, 1)
C = torch.randn(1, n, generator=g)                             # (1, n)
D = 0.5
print("eigenvalues of A:", [f"{complex(z):.2f}" for z in torch.linalg.eigvals(A)])

# %% [markdown]
# ## 2. Discretization: from $h'(t)$ to $h_k$
#
# A computer sees samples $x_k = x(k\Delta)$ with a step $\Delta$ (`delta`). Assume $x$ is held
# constant over each step (**zero-order hold**, ZOH) and solve the linear ODE exactly over one step:
#
# $$ h_k = \underbrace{e^{\Delta A}}_{\bar A} h_{k-1}
#        + \underbrace{\int_0^\Delta e^{sA}\,ds\; B}_{\bar B}\,x_k,
#    \qquad \bar B = A^{-1}\left(e^{\Delta A} - I\right) B . $$
#
# The **bilinear** (Tustin) rule, used by S4, replaces the exponential by a rational approximation
# that maps the stable half-plane exactly onto the unit disk:
#
# $$ \bar A = (I - \tfrac{\Delta}{2}A)^{-1}(I + \tfrac{\Delta}{2}A), \qquad
#    \bar B = (I - \tfrac{\Delta}{2}A)^{-1}\,\Delta B . $$
#
# `course_lib.ssm.discretize_zoh` computes both ZOH blocks at once from one matrix exponential,
# $\exp\!\big(\Delta \left[\begin{smallmatrix} A & B \\ 0 & 0 \end{smallmatrix}\right]\big)
# = \left[\begin{smallmatrix} \bar A & \bar B \\ 0 & I \end{smallmatrix}\right]$, so it never
# inverts $A$ (a singular $A$ works). Both rules as `course_lib` runs them, then a check
# against the formula:

# %%
show_source(discretize_zoh, discretize_bilinear)

# %%
delta = 0.1
A_bar, B_bar = discretize_zoh(A, B, delta)                     # (n, n), (n, 1)
torch.testing.assert_close(A_bar, torch.linalg.matrix_exp(delta * A))
torch.testing.assert_close(B_bar, torch.linalg.solve(A, (A_bar - torch.eye(n)) @ B))
A_bil, B_bil = discretize_bilinear(A, B, delta)
print(f"ZOH vs bilinear at Δ={delta}: max |Ā diff| = {(A_bar - A_bil).abs().max():.1e}, "
      f"max |B̄ diff| = {(B_bar - B_bil).abs().max():.1e}")

# %% [markdown]
# ZOH is *exact* for a held input: ten steps of $\Delta/10$ land on the same state as one step of
# $\Delta$. The figure shows the step response $x(t) = 1$ at a coarse $\Delta = 0.25$: ZOH sits on
# the exact curve and bilinear is close, while the naive Euler step $\bar A = I + \Delta A$
# **explodes** although the continuous system is stable: $|1 + \Delta\lambda| = |0.925 + 0.75i| > 1$
# for $\lambda = -0.3 + 3i$. Whether a discrete SSM is stable is decided by the eigenvalues of
# $\bar A$ against the unit circle (section 7); ZOH ($|e^{\Delta\lambda}| = e^{\Delta\,\mathrm{Re}\lambda}$)
# and bilinear keep every stable $A$ stable, for every $\Delta$.

# %%
A_small, B_small = discretize_zoh(A, B, delta / 10)
h = torch.zeros(n, 1)                                          # the hidden state
for _ in range(10):
    h = A_small @ h + B_small                                  # x = 1 held for 10 small steps
torch.testing.assert_close(h, B_bar)                           # == one big step from h = 0
print("10 ZOH steps of Δ/10 == 1 step of Δ")

# %%
def step_response(A_bar, B_bar, steps):
    """y_k for x_k = 1, k = 0..steps-1."""
    return ssm_recurrence(A_bar, B_bar, C, torch.ones(steps), D=D)


coarse, T = 0.25, 10.0
exact = step_response(*discretize_zoh(A, B, 0.01), int(T / 0.01))
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(torch.arange(1, len(exact) + 1) * 0.01, exact, "k", lw=2, label="exact (fine ZOH)")
k = torch.arange(1, int(T / coarse) + 1) * coarse
euler = discretize_euler(A, B, coarse)                         # (I + ΔA, ΔB)
for name, (Ab, Bb), style in (("ZOH", discretize_zoh(A, B, coarse), "o"),
                              ("bilinear", discretize_bilinear(A, B, coarse), "s"),
                              ("Euler", euler, "x")):
    ax.plot(k, step_response(Ab, Bb, len(k)), style, ms=4, label=f"{name}, Δ={coarse}")
ax.set_ylim(exact.min() - 1, exact.max() + 1)                  # Euler leaves the chart
ax.set_xlabel("time t")
ax.set_ylabel("y(t)")
ax.set_title("step response", fontsize=10)
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()
print("largest |eigenvalue| of Ā:", {name: round(torch.linalg.eigvals(M).abs().max().item(), 3)
      for name, M in (("ZOH", discretize_zoh(A, B, coarse)[0]),
                      ("bilinear", discretize_bilinear(A, B, coarse)[0]), ("Euler", euler[0]))})

# %% [markdown]
# ### Check: the discrete SSM converges to the continuous one as $\Delta \to 0$
#
# Section 1's SSM is an ODE, and a discretization is only worth its name if its states approach
# the ODE's solution $h(t)$ as the step shrinks. Measure it. The input is constant on each unit
# interval, $x(t) = x_j$ for $t \in (j, j+1]$ (eight intervals, values set in the cell), and
# $\Delta = 2^{-5}, \dots, 2^{-9}$ (powers of two, so the input is also constant over every
# step). The reference $h(t)$ comes from a *different* method, the classical fourth-order
# Runge-Kutta integrator (RK4) at step $2^{-10}$, which only ever evaluates $h' = Ah + Bx$. What
# theory says: ZOH solves the ODE **exactly** over a step with a constant input (only rounding
# is left), bilinear is the trapezoidal rule (error $\propto \Delta^2$), Euler is first order
# (error $\propto \Delta$). The observed order is $\log_2$ of the ratio of the errors at
# $\Delta$ and $\Delta/2$.

# %%
show_source(rk4_states, discretization_errors)

# %%
values = torch.tensor([1.0, -0.5, 2.0, 0.0, 1.5, -1.0, 0.5, 1.0])   # x(t) on (0, 1], (1, 2], ...
deltas = [2.0 ** -k for k in range(5, 10)]                           # 1/32 ... 1/512
errors = discretization_errors(A, B, values, deltas)                 # rule -> max_k |h_k - h(kΔ)|
orders = {rule: [math.log2(e / e_half) for e, e_half in zip(errs, errs[1:])]
          for rule, errs in errors.items() if rule != "ZOH"}
assert max(errors["ZOH"]) < 1e-8                                     # exact up to rounding
print("ZOH:      max state error < 1e-8 at every Δ (exact for a held input)")
for rule, errs in errors.items():
    if rule != "ZOH":
        print(f"{rule + ':':9s} max state error " + ", ".join(f"{e:.1e}" for e in errs)
              + ";  observed order " + ", ".join(f"{o:.1f}" for o in orders[rule]))
assert all(abs(o - 2) < 0.1 for o in orders["bilinear"]) and abs(orders["Euler"][-1] - 1) < 0.1

# %%
fig, ax = plt.subplots(figsize=(5, 3.3))
for rule, style in (("ZOH", "o-"), ("bilinear", "s-"), ("Euler", "x-")):
    ax.loglog(deltas, [max(e, 1e-16) for e in errors[rule]], style, label=rule)
for order, rule in ((1, "Euler"), (2, "bilinear")):                 # slopes 1 and 2, offset x3
    ax.loglog(deltas, [3 * errors[rule][0] * (d / deltas[0]) ** order for d in deltas], "k:", lw=0.8)
ax.text(0.5, 0.06, "ZOH: rounding only", transform=ax.transAxes, fontsize=8, ha="center")
ax.set_xticks(deltas, [f"1/{round(1 / d)}" for d in deltas])
ax.minorticks_off()
ax.set_xlabel("step Δ")
ax.set_ylabel("max |h_k - h(kΔ)|")
ax.set_title("convergence to the ODE solution (dotted: ∝ Δ and ∝ Δ²)", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Bilinear halves its step and quarters its error: second order, as promised. Euler's observed
# order starts above 1 at the largest $\Delta$ (there $|1 + \Delta\lambda|$ is close to 1 for the
# slow oscillation, and the error is far from its asymptotic regime) and settles to 1. ZOH sits at
# the rounding floor for every $\Delta$: for a held input it *is* the solution of the ODE, which is
# why Mamba uses it for $\bar A$ (Gu & Dao, 2023), and why one step of $\Delta$ equalled ten
# steps of $\Delta/10$ above.

# %% [markdown]
# ## 3. The recurrence: a linear RNN
#
# $$ h_k = \bar A\, h_{k-1} + \bar B\, x_k, \qquad y_k = C\, h_k + D\, x_k, \qquad h_{-1} = 0 . $$
#
# This is an RNN whose update has **no nonlinearity** and the **same matrices at every step**.
# Generation is cheap (one $n\times n$ matrix-vector product per token, constant memory), but
# training a recurrence means $L$ sequential steps. `ssm_recurrence` is that loop:

# %%
show_source(ssm_recurrence)

# %%
L = 64
x = torch.randn(L, generator=g)                                # (l,) an input signal
y_rec, states = ssm_recurrence(A_bar, B_bar, C, x, D=D, return_states=True)   # (l,), (l, n)
print("states:", tuple(states.shape), "  y[:4] =", [round(v, 4) for v in y_rec[:4].tolist()])
torch.testing.assert_close(y_rec[0], (C @ B_bar)[0, 0] * x[0] + D * x[0])      # h_0 = B̄ x_0

# %% [markdown]
# ## 4. Unrolling the recurrence: the kernel $\bar K$
#
# Because the update is linear and time-invariant, unroll it from $h_{-1}=0$:
# $h_k = \sum_{j=0}^{k} \bar A^{j}\bar B\, x_{k-j}$, so
#
# $$ y_k = \sum_{j=0}^{k} \bar K_j\, x_{k-j} + D x_k, \qquad
#    \bar K = \left(C\bar B,\ C\bar A\bar B,\ C\bar A^2\bar B,\ \dots,\ C\bar A^{L-1}\bar B\right). $$
#
# The SSM *is* a causal convolution $y = \bar K * x$ with a kernel as long as the sequence.
# `ssm_kernel_powers` follows the definition (one power at a time); `ssm_kernel` gets the same
# numbers with $\log_2 L$ matrix products by doubling $[\bar B, \dots, \bar A^{j-1}\bar B] \to$
# $[\ \cdot\ ,\ \bar A^{j}\,\cdot\ ]$. `causal_conv` is the direct convolution, one shifted
# multiply-add per kernel tap.

# %%
show_source(ssm_kernel_powers, ssm_kernel, causal_conv)

# %%
K_bar = ssm_kernel(A_bar, B_bar, C, L)                         # (l,)
torch.testing.assert_close(K_bar, ssm_kernel_powers(A_bar, B_bar, C, L))
y_conv = causal_conv(x, K_bar) + D * x                         # direct: O(L²)
torch.testing.assert_close(y_conv, y_rec)
print("recurrence == direct convolution with K̄;  K̄[:4] =", [round(v, 4) for v in K_bar[:4].tolist()])

# %% [markdown]
# ## 5. FFT convolution, and the wrap-around trap
#
# The Fourier transform turns convolution into a product: $\widehat{K * x} = \hat K \cdot \hat x$,
# and the FFT computes $\hat x$ in $O(L \log L)$. But the *discrete* Fourier transform of length
# $N$ multiplies **circular** convolutions: indices wrap modulo $N$,
#
# $$ (\bar K \circledast x)_k = \sum_{j=0}^{N-1} \bar K_j\, x_{(k-j) \bmod N}, $$
#
# so with $N = L$ the output at step $k$ also receives $\bar K_j x_{L+k-j}$: the **end of the
# signal leaks into its start** (the model sees the future!). Zero-padding both to $N = 2L$ puts
# every wrapped term into the second half, which is thrown away:
# $y = \mathrm{irfft}(\mathrm{rfft}(x, 2L)\cdot\mathrm{rfft}(\bar K, 2L))[:L]$.

# %%
show_source(fft_conv)

# %%
y_fft = fft_conv(x, K_bar) + D * x                             # zero-padded to 2L
torch.testing.assert_close(y_fft, y_rec)
print("recurrence == direct convolution == FFT convolution (3 ways agree)")

y_circ = fft_conv(x, K_bar, pad=False) + D * x                 # N = L: circular
wrapped = torch.stack([sum(K_bar[j] * x[(k - j) % L] for j in range(L)) for k in range(L)]) + D * x
torch.testing.assert_close(y_circ, wrapped)
err = (y_circ - y_rec).abs()
print(f"without padding: max error {err.max():.3f} at step {err.argmax().item()}, "
      f"mean error on the first 8 steps {err[:8].mean():.3f}, on the last 8 {err[-8:].mean():.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
axes[0].plot(K_bar, "C2")
axes[0].set_title("kernel K̄ (Δ = 0.1, n = 4)", fontsize=10)
axes[0].set_xlabel("lag j")
axes[1].plot(y_rec, "k", lw=2, label="recurrence = conv = padded FFT")
axes[1].plot(y_circ, "C3--", label="FFT without padding (wraps)")
axes[1].set_xlabel("step k")
axes[1].legend(fontsize=8)
axes[1].set_title("outputs", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The error sits at the start, where the kernel is large and the wrapped-in samples from the end
# of $x$ are weighted most; it fades as $\bar K$ decays.
#
# ## 6. Cost against the length $L$
#
# Direct convolution: $L^2/2$ multiply-adds. Recurrence: $L$ sequential steps of $O(n^2)$ work
# (each a separate Python-level operation). Kernel by doubling + FFT: $O(n^2 L + L\log L)$ in a
# handful of large operations. Timed here on one thread; the last line prints, for this run, how
# many times faster the kernel + FFT path is than each of the other two at the longest $L$.
# Timings change from run to run and machine to machine, so nbval does not compare this cell's
# output: on the busy 2-core course machine the ratios ranged from tens to hundreds of times.
# The figure's shape is what stays put. At these lengths the direct convolution and the
# recurrence both pay for one Python-level operation per kernel tap or per step, so both grow
# roughly in proportion to $L$, well below the dotted $L^2$ line (the multiply-adds are not yet
# what costs); the kernel + FFT path is a handful of large operations and stays far below both.
# `python benchmarks/bench_ssm.py` times the same comparison with repeats and also against
# PyTorch's own direct `F.conv1d`.

# %%
# NBVAL_IGNORE_OUTPUT
lengths, cost = [256, 1024, 4096, 16384], {"direct conv": [], "recurrence": [], "kernel + FFT": []}
A16, B16, C16 = (M.float() for M in init_ssm("hippo", 16))
A16_bar, B16_bar = discretize_zoh(A16, B16, 0.01)
runs = {"direct conv": lambda x, K: causal_conv(x, K),
        "recurrence": lambda x, K: ssm_recurrence(A16_bar, B16_bar, C16, x),
        "kernel + FFT": lambda x, K: fft_conv(x, ssm_kernel(A16_bar, B16_bar, C16, x.shape[-1]))}
for Lt in lengths:
    xt = torch.randn(Lt, dtype=torch.float32)                  # (l,)
    Kt = ssm_kernel(A16_bar, B16_bar, C16, Lt)
    for name, run in runs.items():                             # the slow two: one timed call
        slow = name != "kernel + FFT"
        cost[name].append(median_time(partial(run, xt, Kt), repeats=1 if slow else 5,
                                      warmup=0 if slow else 1))
fig, ax = plt.subplots(figsize=(5, 3.5))
for name, ts in cost.items():
    ax.loglog(lengths, ts, "o-", label=name)
ax.loglog(lengths, [cost["direct conv"][0] * (l / lengths[0]) ** 2 for l in lengths], "k:", label="∝ L²")
ax.set_xlabel("sequence length L")
ax.set_ylabel("seconds")
ax.legend(fontsize=8)
plt.show()
speedup = {name: cost[name][-1] / cost["kernel + FFT"][-1] for name in ("direct conv", "recurrence")}
print(f"at L = {lengths[-1]} (this run): kernel + FFT {speedup['direct conv']:.0f}x "
      f"faster than the direct convolution, {speedup['recurrence']:.0f}x "
      "faster than the recurrence")

# %% [markdown]
# ## 7. Training a dense $A$ directly
#
# Diagonalize $\bar A = V \Lambda V^{-1}$: then $\bar K_k = C V \Lambda^k V^{-1} \bar B =
# \sum_i (CV)_i\,(V^{-1}\bar B)_i\, \bar\lambda_i^{\,k}$. Every eigenvalue contributes a geometric
# sequence: $|\bar\lambda| > 1$ **explodes**, $|\bar\lambda| < 1$ **vanishes** like
# $|\bar\lambda|^k$, so the kernel (and the gradient through it, exactly as in an RNN) only
# reaches about $1/(1-|\bar\lambda|)$ steps. With ZOH, $\bar\lambda = e^{\Delta\lambda}$. A random
# $A$ has about half its eigenvalues in the right half-plane: its kernel **explodes**. Shift it to
# be stable and it decays at the rate of its slowest eigenvalue: to remember far, training has to
# hold eigenvalues just inside the unit circle, where one step too far makes them explode (the
# RNN dilemma). HiPPO's eigenvalues are $-1, -2, \dots, -n$: stable for **every** $\Delta$, and
# $\Delta$ alone sets how far back the kernel reaches (about $1/\Delta$ steps), which S4 learns
# per channel. First the kernels at initialization:

# %%
A_rand, B_rand, C_rand = init_ssm("random", 16)
shift = torch.linalg.eigvals(A_rand).real.max() + 0.5
A_hippo, B_hippo, C_hippo = init_ssm("hippo", 16)
cases = {"random A, Δ=0.01": (A_rand, B_rand, C_rand, 0.01),
         "random A shifted stable, Δ=0.01": (A_rand - shift * torch.eye(16), B_rand, C_rand, 0.01),
         "HiPPO, Δ=0.01": (A_hippo, B_hippo, C_hippo, 0.01),
         "HiPPO, Δ=0.001": (A_hippo, B_hippo, C_hippo, 0.001)}
kernels, eigs = {}, {}
for name, (A_c, B_c, C_c, delta_c) in cases.items():
    Ab, Bb = discretize_zoh(A_c, B_c, delta_c)
    kernels[name] = ssm_kernel(Ab, Bb, C_c, 1024)
    eigs[name] = torch.linalg.eigvals(Ab)
    print(f"{name:32s} max |λ̄| = {eigs[name].abs().max():.4f}   "
          f"|K̄_1023| / |K̄_0| = {kernels[name][-1].abs() / kernels[name][0].abs():.1e}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
plot_eigenvalues({k.split(",")[0]: v for k, v in eigs.items() if "0.001" not in k}, ax=ax1,
                 title="eigenvalues of Ā (Δ = 0.01)")
ax1.set_xlim(0.84, 1.02)
ax1.set_ylim(-0.012, 0.012)
ax1.set_aspect("auto")
plot_kernel_magnitudes(kernels, ax=ax2, title="kernel magnitude at initialization")
fig.tight_layout()
plt.show()

# %% [markdown]
# Now train them. The task needs memory: the output is the mean of the inputs from 500 up to (not
# including) 600 steps back, $y_k = \tfrac{1}{100}\sum_{500 \le j < 600} x_{k-j}$, i.e. the target
# kernel is a box on those lags. For a white-noise input the expected squared error of an SSM with
# kernel $\bar K$ on this task is exactly $\sum_j (\bar K_j - K^{\star}_j)^2$, so `fit_kernel`
# trains on that (the task's population loss, no sampling noise), divided by
# $\sum_j {K^\star_j}^2$: outputting zero scores 1. `DenseSSM` is the naive parameterization, a
# dense $A$ $(n \times n)$, $B$, $C$ and $\log\Delta$, all trained by Adam, nothing keeping $A$
# stable. Three starts, same everything else:

# %%
lags = torch.arange(1024)
K_target = ((lags >= 500) & (lags < 600)).double() / 100                 # (l,) the box
starts = {"naive random A": (A_rand, B_rand, C_rand),
          "random A shifted stable": (A_rand - shift * torch.eye(16), B_rand, C_rand),
          "HiPPO": (A_hippo, B_hippo, C_hippo)}
trained, history = {}, {}
for name, (A0, B0, C0) in starts.items():
    trained[name] = DenseSSM(A0, B0, C0, delta=0.01)          # A, B, C, log Δ all trainable
    history[name] = fit_kernel(trained[name], K_target, steps=300, lr=1e-2)
    (_, loss0, radius0), (steps, loss1, radius1) = history[name][0], history[name][-1]
    print(f"{name:24s} loss {loss0:9.3g} -> {loss1:.3g} after {steps} steps;   "
          f"max |λ̄| {radius0:.4f} -> {radius1:.4f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for name, hist in history.items():
    steps_h, losses_h, radii_h = zip(*hist)
    axes[0].semilogy(steps_h, losses_h, label=name)
    axes[1].plot(steps_h, radii_h, label=name)
    with torch.no_grad():
        axes[2].plot(trained[name].kernel(1024), lw=1, label=name)
axes[0].axhline(1, color="k", ls=":", lw=0.8)
axes[0].set_title("loss (1 = output zero)", fontsize=10)
axes[1].axhline(1, color="k", ls=":", lw=0.8)
axes[1].set_title("max |λ̄| during training", fontsize=10)
axes[2].plot(K_target, "k", lw=1.5, label="target")
axes[2].set_ylim(-0.01, 0.02)                                  # the naive kernel leaves the chart
axes[2].set_title("trained kernels K̄", fontsize=10)
for ax in axes:
    ax.set_xlabel("step" if ax is not axes[2] else "lag")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# One seed and one learning rate prove little. `python tools/train_ssm.py --dense-a` ran the
# same training for three seeds (of $A$, $B$, $C$) and three learning rates per start and saved
# all the trained SSMs; here they are loaded and re-measured (the loss, $\max|\bar\lambda|$, and
# how large the kernel gets on lags the training never saw, up to $8\times$ the trained length):

# %%
sweep, sweep_meta = load_dense_sweep()                          # run name -> trained DenseSSM
rows = {}
with torch.no_grad():
    for key, model in sweep.items():
        K_far = model.kernel(8 * 1024)                                # (8l,)
        loss = ((K_far[:1024] - K_target) ** 2).sum() / (K_target ** 2).sum()
        rows[key] = (loss.item(), model.spectral_radius(),
                     (K_far[1024:].abs().max() / K_far[:1024].abs().max()).item())
for start, live in zip(sweep_meta["config"]["train"]["inits"], trained.values()):  # live: seed 0, lr 0.01
    torch.testing.assert_close(sweep[f"{start}_seed0_lr1"].A, live.A, rtol=1e-6, atol=1e-8)
    runs = [v for k, v in rows.items() if k.startswith(start + "_")]
    print(f"{start:7s} ({len(runs)} runs): loss median {statistics.median(r[0] for r in runs):.3g} "
          f"(range {min(r[0] for r in runs):.3g} to {max(r[0] for r in runs):.3g}), loss > 1 in "
          f"{sum(r[0] > 1 for r in runs)}; max |λ̄| > 1 in {sum(r[1] > 1 for r in runs)}; largest |K̄| "
          f"past the trained lags / inside: median {statistics.median(r[2] for r in runs):.2g}")

# %% [markdown]
# What happens, measured:
#
# - **The naive random $A$ never recovers.** Its kernel starts out exploding, and in every run
#   the loss stays far above 1 (worse than outputting zero) and $\bar A$ keeps an eigenvalue
#   outside the unit circle: training shrinks the damage within the trained lags but does not
#   pull the eigenvalue back in, and past them the kernel grows by many orders of magnitude.
# - **Started stable, training pushes the eigenvalues to the unit circle.** To reach 600 steps
#   back, the slowest mode must decay by less than about $1/600$ per step, so both the shifted
#   random $A$ and HiPPO end with $\max|\bar\lambda|$ within a hair of 1, and a few runs cross it:
#   their kernels grow without bound past the trained length, the RNN dilemma in the flesh.
# - **HiPPO beats the stable random start in the median, not in every run**: the ranges
#   overlap. On this small task (one SISO SSM, a box kernel) a stable start matters more than
#   HiPPO's structure. What HiPPO adds is a state that provably stores the history (next
#   section) and stability for every $\Delta$; S4D (section 9) then keeps $A$ diagonal with
#   $\mathrm{Re}\,a < 0$ built into the parameterization, so no training step can make it explode.

# %% [markdown]
# ## 8. HiPPO: a state that remembers the history
#
# HiPPO asks: which $A, B$ make the state $h(t)$ the best polynomial summary of the *whole*
# history $x(s),\ 0 \le s \le t$? For the uniform measure on $[0, t]$ (LegS) the answer is the
# state of Legendre coefficients, updated by
#
# $$ A_{nk} = -\begin{cases} \sqrt{2n+1}\sqrt{2k+1} & n > k \\ n+1 & n = k \\ 0 & n < k \end{cases},
#    \qquad B_n = \sqrt{2n+1}, \qquad h'(t) = \tfrac{1}{t}\big(A h(t) + B x(t)\big), $$
#
# and the history can be **read back** from the state alone:
# $x(s) \approx \sum_{n} h_n(t)\,\sqrt{2n+1}\,P_n(2s/t - 1)$ ($P_n$ the Legendre polynomials).
# `legs_memory` runs this recurrence (bilinear, step $1/k$); `legs_reconstruct` reads it back.

# %%
show_source(hippo_legs, legs_memory, legs_reconstruct)

# %%
A_legs, B_legs = hippo_legs(4)
print("HiPPO-LegS A (n=4):\n", (A_legs + 0.0).numpy().round(2), "\nB:", B_legs[:, 0].numpy().round(2))

# %%
t_grid = torch.linspace(0, 1, 1000)
signal = torch.sin(10 * t_grid) * torch.exp(-2 * t_grid) + 0.4 * (t_grid > 0.6) + 0.3 * t_grid  # (l,)
memory = {}
for n_legs in (8, 16, 32, 64):
    h_hist = legs_memory(signal, n_legs)                           # (l, n) states after every step
    memory[n_legs] = legs_reconstruct(h_hist[-1], len(signal))     # the whole history from h_999
    half = legs_reconstruct(h_hist[499], 500)                   # the first half from h_499
    print(f"n = {n_legs:2d}: mean |error| reading all 1000 steps back from one state: "
          f"{(memory[n_legs] - signal).abs().mean():.4f}; first 500 from h_499: "
          f"{(half - signal[:500]).abs().mean():.4f}")
assert (memory[64] - signal).abs().mean() < 0.01

# %%
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(signal, "k", lw=2.5, label="input x (1000 steps)")
for n_legs in (8, 32):
    ax.plot(memory[n_legs], lw=1.2, label=f"read back from the final state, n = {n_legs}")
ax.set_xlabel("step")
ax.legend(fontsize=8, loc="lower right")
ax.set_title("HiPPO-LegS: the state h_999 stores the whole history", fontsize=10)
plt.show()

# %% [markdown]
# 1000 input values are summarized in 32 numbers, and the summary degrades gracefully: smooth
# parts survive, the jump is blurred (a polynomial cannot jump). S4 uses this $A$ with a fixed,
# learned $\Delta$ (a time-invariant SSM, so the kernel view still applies); the scaled version
# above is the cleanest way to *see* the memory.
#
# ## 9. S4D: a diagonal $A$ and the Vandermonde kernel
#
# Computing $\bar K$ from a dense $A$ costs matrix powers. If $A = \mathrm{diag}(a_1, \dots, a_n)$
# (complex, $\mathrm{Re}\,a_i < 0$), ZOH acts entry by entry, $\bar A_i = e^{\Delta a_i}$,
# $\bar B_i = (e^{\Delta a_i}-1)/a_i \cdot B_i$ (`discretize_zoh_diag`), and the kernel is one
# matrix product with a **Vandermonde matrix** $V_{ik} = \bar A_i^{\,k} = e^{k\Delta a_i}$:
#
# $$ \bar K_k = \mathrm{Re} \sum_{i=1}^{n} C_i \bar B_i\, \bar A_i^{\,k}
#    = \mathrm{Re}\,\big[(C \odot \bar B)\, V\big]_k . $$
#
# S4D-Lin initializes $a_k = -\tfrac12 + i\pi k$: a bank of damped oscillators at increasing
# frequencies (diagonal SSMs initialized this way match S4 on the Long Range Arena: Gu, Gupta,
# Goel & Ré, 2022). The $n$ modes are complex and the kernel keeps the real part:
# $\mathrm{Re}\,(z) = (z + \bar z)/2$, so each complex mode stands for itself and its conjugate,
# and $n$ complex modes are a real SSM with $2n$ state dimensions (S4D writes a real state size
# $N$ as $N/2$ complex pairs; our `d_state` counts the complex modes). The diagonal ZOH, the
# S4D-Lin initialization and the Vandermonde kernel:

# %%
show_source(discretize_zoh_diag, s4d_lin_init, s4d_kernel)

# %% [markdown]
# Check the fast kernel against the dense definition, for three channels with different $\Delta$:

# %%
d, n_d, L_d = 3, 16, 200                                        # channels, complex modes, length
A_diag = s4d_lin_init(d, n_d).to(torch.complex128)              # (d, n)
B_diag = torch.ones(d, n_d, dtype=torch.complex128)
C_diag = torch.randn(d, n_d, 2, generator=g)
C_diag = torch.complex(C_diag[..., 0], C_diag[..., 1])          # (d, n)
deltas = torch.tensor([0.01, 0.05, 0.2])                        # (d,)
K_fast = s4d_kernel(A_diag, B_diag, C_diag, deltas, L_d)        # (d, l) one vectorized step
for c in range(d):
    Ab, Bb = discretize_zoh(torch.diag(A_diag[c]), B_diag[c], deltas[c])   # dense (n, n)
    torch.testing.assert_close(K_fast[c], ssm_kernel(Ab, Bb, C_diag[c], L_d).real)
print("Vandermonde kernel == dense C Ā^k B̄ for", d, "channels")

# %% [markdown]
# Nothing is lost for a diagonalizable $A$: with $A = V\Lambda V^{-1}$, the SSM $(\Lambda, V^{-1}B,
# CV)$ has exactly the same kernel. But HiPPO's eigenvectors are numerically useless (their
# condition number grows exponentially with $n$), which is why S4 used a
# "normal plus low-rank" form and S4D starts from well-behaved diagonal values directly:

# %%
A_stable = A_rand - shift * torch.eye(16)
lam, V = torch.linalg.eig(A_stable)                            # A = V diag(λ) V^{-1}
B_eig = torch.linalg.solve(V, B_rand.to(V.dtype))[:, 0]        # (n,)
C_eig = (C_rand.to(V.dtype) @ V)[0]                            # (n,)
Ab, Bb = discretize_zoh(A_stable, B_rand, 0.1)
K_dense = ssm_kernel(Ab, Bb, C_rand, 100)
K_diag = s4d_kernel(lam[None], B_eig[None], C_eig[None], 0.1, 100)[0]
torch.testing.assert_close(K_diag, K_dense)
print(f"diagonalized random A: same kernel;  cond(V) = {torch.linalg.cond(V).real:.0f}")
for n_legs in (4, 8, 16):
    cond = torch.linalg.cond(torch.linalg.eig(hippo_legs(n_legs)[0])[1]).real
    print(f"HiPPO-LegS n = {n_legs:2d}: cond(V) > 10^{int(math.log10(cond))}")

# %% [markdown]
# ### Explore the kernel
# Change $\Delta$, the state size $n$ and the initialization of $A$. Things to try: the random
# $A$ at large $\Delta$ (watch $\log_{10}|\bar K|$ climb and the eigenvalues leave the circle);
# HiPPO with small vs large $\Delta$ (a longer or shorter memory: $\Delta$ sets the time scale);
# the diagonal S4D-Lin with growing $n$ (more oscillators, a richer kernel).

# %%
# NBVAL_IGNORE_OUTPUT
explorer = ssm_kernel_explorer(length=256)
explorer

# %% [markdown]
# ## 10. An SSM layer
#
# A deep SSM treats each of the $d$ = `d_model` features as its own 1-D signal: **$d$ independent
# SSMs** (each with its own $\Delta$, $A$, $C$, $D$), computed together as one FFT convolution,
# then a **linear layer mixes the channels** and an **activation** follows:
#
# $$ z_c = \bar K_c * x_c + D_c x_c \quad (c = 1..d), \qquad y = \mathrm{GELU}\big(\mathrm{Linear}(z)\big). $$
#
# The order is *mix, then activate*, as on the lecture's slide. S4's reference code does it the
# other way round (GELU on the SSM output, then the linear layer); both put one nonlinearity
# between consecutive SSMs, and the course keeps the slide's order. `SSMLayer` uses the S4D
# kernel ($B = 1$, learnable $\log\Delta$, $A = -e^{a} + i\,a_{\mathrm{im}}$ so $\mathrm{Re}\,A<0$
# always, complex $C$; `d_state` complex modes, i.e. twice as many real state dimensions):

# %%
show_source(SSMLayer.kernel, SSMLayer.forward)

# %% [markdown]
# Check channel 0 against its own recurrence:

# %%
torch.set_default_dtype(torch.float32)
torch.manual_seed(0)
layer = SSMLayer(d_model=8, d_state=16)
x_layer = torch.randn(2, 300, 8)                               # (b, l, d)
with torch.no_grad():
    y_layer = layer(x_layer)                                   # (b, l, d)
    K_layer = layer.kernel(300)                                # (d, l)
    A0 = torch.complex(-torch.exp(layer.a_log[0]), layer.a_im[0])                    # (n,)
    A0_bar, B0_bar = discretize_zoh_diag(A0, torch.ones_like(A0), torch.exp(layer.log_delta[0]))
    C0 = torch.view_as_complex(layer.C[0])                                            # (n,)
    z0 = ssm_recurrence(torch.diag(A0_bar), B0_bar, C0, x_layer[:, :, 0].to(A0.dtype)).real
    z_fft = fft_conv(x_layer[:, :, 0], K_layer[0])
torch.testing.assert_close(z_fft, z0, atol=1e-4, rtol=1e-4)
print("layer output:", tuple(y_layer.shape), "; channel 0: FFT kernel path == its recurrence")
print("Δ per channel:", [round(v, 4) for v in torch.exp(layer.log_delta).tolist()])

# %% [markdown]
# ## 11. Experiment: seeing 1,000 steps back
#
# **Where this comes from.** Long-range benchmarks test exactly this: an answer that depends on
# tokens thousands of steps away. The Long Range Arena (Tay et al., 2021) collects six such tasks,
# and its hardest, **Path-X**, asks whether two marked points of a 128 × 128 image are joined by
# a dashed path, with the image read pixel by pixel as one sequence of 16,384 tokens (Tay et al.,
# 2021). Every model in the LRA paper failed it, scoring no better than chance (Tay et al., 2021,
# Table 1). S4 was, in its authors' words, "the first model to solve the difficult LRA Path-X
# task (length-16384)" (Gu et al., 2022, Table 4). Our task is a toy of the same kind, sized
# for a CPU:
#
# The task (`long_range_batch`): sequences of **1024 tokens**. The class (one of 8) appears
# only among the **first 128** positions, as scattered copies of a class token; every other
# position is noise. The model reads its answer at the **last** position, so the evidence lies
# far back (the first cell prints how far). Two `SSMClassifier`s of identical size (the second
# cell prints their configuration: $d$ channels, $n$ complex modes per channel, that is $2n$ real
# state dimensions), trained on CPU by
#
#     python tools/train_ssm.py
#
# - **long**: S4D kernels as long as the input;
# - **local** (the baseline): the same model with every kernel cut to its first 64 taps: a
#   convolutional network that cannot see further back than 2 × 64 positions.
#
# Both checkpoints ship in `data/`, with the accuracy the script measured on its own 512
# held-out sequences and its training time in their metadata. Here we load them and test them
# on 256 fresh sequences; the cell prints both figures.

# %%
tokens, labels = long_range_batch(1, 1024, generator=torch.Generator().manual_seed(5))
print("label:", labels.item(), "\nfirst 40 tokens:", tokens[0, :40].tolist(),
      "\nlast 20 tokens: ", tokens[0, -20:].tolist())
print(f"the class tokens sit in the first {1024 // 8} positions: at least {1024 - 1024 // 8} steps "
      "before the last position")

# %%
models, info = {}, {}
for name in ("ssm_long", "ssm_local"):
    models[name], info[name] = load_ssm_classifier(name)
task, recipe = info["ssm_long"]["config"]["task"], info["ssm_long"]["config"]["train"]
tokens_test, labels_test = long_range_batch(256, task["length"], task["n_classes"], task["n_noise"],
                                            task["span"], generator=torch.Generator().manual_seed(2024))
config = info["ssm_long"]["config"]["model"]
print(f"both models: {config['n_layers']} SSM layers, d = {config['d_model']} channels, "
      f"n = {config['d_state']} complex modes per channel (= {2 * config['d_state']} real state dimensions)")
results = {}
with torch.no_grad():
    for name, model in models.items():
        logits = torch.cat([model(tokens_test[i:i + 128]) for i in range(0, 256, 128)])   # (256, 8)
        results[name] = accuracy(logits, labels_test)
        m = info[name]["metrics"]
        print(f"{name:10s} accuracy on 256 fresh sequences {results[name]:.3f}   (the script measured "
              f"{m['test_accuracy']:.3f} on its 512; {m['params']} parameters, {recipe['steps']} steps "
              f"of batch {recipe['batch']}, trained in {m['train_wall_s']:.0f} s of wall time)")
chance = 1 / task["n_classes"]
print(f"chance: {chance:.3f} (standard error of an accuracy measured on 256 sequences at chance: "
      f"{math.sqrt(chance * (1 - chance) / 256):.3f})")
assert results["ssm_long"] > 0.9 and results["ssm_local"] < 0.3

# %%
with torch.no_grad():
    K_long = models["ssm_long"].layers[0].ssm.kernel(1024)     # (d, l)
    K_local = models["ssm_local"].layers[0].ssm.kernel(1024)
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), sharey=True)
for ax, K, title in ((axes[0], K_long, "long model, layer 1"), (axes[1], K_local, "local model, layer 1")):
    for c in range(0, 32, 4):
        ax.plot(K[c].abs().clamp_min(1e-8).log10(), lw=0.8)
    ax.set_title(title + ": log10 |K̄| of 8 channels", fontsize=9)
    ax.set_xlabel("lag")
fig.tight_layout()
plt.show()

# %% [markdown]
# The long model's trained kernels keep a slowly decaying tail across the full 1024 lags and it
# classifies the fresh sequences perfectly. The local model's kernels stop at 64 taps, and its
# accuracy, on the fresh sequences as on the script's, is within one standard error of chance:
# whatever it learned, it cannot see the class tokens.
#
# ## 12. Exercises
# Each exercise has a checker that says *passed*, *what differs*, or *not implemented yet*.
#
# **Exercise 1 — zero-order hold.** Given `A (n, n)`, `B (n, 1)` and a step `delta`, return
# `(A_bar, B_bar)` with $\bar A = e^{\Delta A}$, $\bar B = A^{-1}(e^{\Delta A} - I)B$.
# Hint: `torch.linalg.matrix_exp`, `torch.linalg.solve`.

# %%
def my_discretize_zoh(A: torch.Tensor, B: torch.Tensor, delta: float):
    raise NotImplementedError


check_discretize_zoh(my_discretize_zoh)

# %% [markdown]
# **Exercise 2 — FFT convolution with the right padding.** Given `x (..., l)` and
# `K (..., l)`, return the causal convolution $y_k = \sum_{j \le k} K_j x_{k-j}$ of shape
# `(..., l)` using `torch.fft.rfft` / `irfft`. (Forget the padding and the checker will notice.)

# %%
def my_fft_conv(x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


check_fft_conv(my_fft_conv)

# %% [markdown]
# **Exercise 3 — the kernel by powers of $\bar A$.** Given `A_bar (n, n)`, `B_bar (n, 1)`,
# `C (1, n)` and `length`, return $\bar K = (C\bar B, C\bar A\bar B, \dots, C\bar A^{L-1}\bar B)$
# as a 1-D tensor of shape `(length,)`. Never form $\bar A^k$ explicitly: update a vector.

# %%
def my_kernel_powers(A_bar: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor, length: int):
    raise NotImplementedError


check_kernel_powers(my_kernel_powers)

# %% [markdown]
# ## Summary
# - A continuous SSM $h' = Ah + Bx,\ y = Ch + Dx$ becomes, by zero-order hold ($\bar A = e^{\Delta A}$)
#   or bilinear discretization, a **linear RNN** $h_k = \bar A h_{k-1} + \bar B x_k$ ($D x$ is a
#   feed-through inside the SSM, not the network's residual connection).
# - Unrolled, it is a causal **convolution** with $\bar K = (C\bar A^k\bar B)_k$; recurrence, direct
#   convolution and zero-padded **FFT** convolution agree (checked), and without padding the FFT
#   wraps the end of the signal into its start.
# - Cost: the kernel + FFT path is $O(L\log L)$ and, at $L = 16384$, tens to hundreds of times
#   faster than the direct convolution and the recurrence (the ratio varies between runs).
# - Trained directly, a dense $A$ started at random keeps exploding; started stable, training
#   drives its eigenvalues to the unit circle and sometimes across it. **HiPPO** gives a state
#   that stores the history (we read 1000 steps back from 32 numbers); **S4D** keeps $A$
#   diagonal with $\mathrm{Re}\,A < 0$ by construction and gets the kernel from one Vandermonde
#   product ($n$ complex modes = $2n$ real state dimensions).
# - An SSM layer = $d$ independent SSMs + linear mixing + GELU; stacked with residual
#   connections, it solves a task that needs 1000 steps of memory where a local-kernel model
#   stays at chance.
# - Now in `course_lib.ssm`: `discretize_zoh`, `discretize_bilinear`, `discretize_euler`,
#   `discretize_zoh_diag`, `ssm_recurrence`, `ssm_kernel`, `causal_conv`, `fft_conv`; in
#   `course_lib.s4`: `hippo_legs`, `legs_memory`, `s4d_kernel`, `SSMLayer`; this notebook's
#   experiments (`DenseSSM`, `fit_kernel`, `discretization_errors`, `SSMClassifier`) are in
#   `course_lib.experiments.ssm`.
#
# **Next:** every SSM here is *time-invariant*: the same $\bar A, \bar B$ at every token, so it
# cannot decide to remember one token and ignore another. Notebook
# [07 · Mamba](07_mamba.ipynb) makes $\Delta, B, C$ depend on the input: a *selective* SSM.
