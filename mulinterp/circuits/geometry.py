"""Geometry of the representations: Minkowski sums and the Fourier digit basis.

**Minkowski sums (paper §3.3).** A head that attends to ``a_i`` with weight α and to ``b_j``
with weight 1−α outputs (through its OV circuit) ``α·OV(a_i) + (1−α)·OV(b_j)``: a point of
the *Minkowski sum* of two 10-point sets, one set per digit. Over all digit pairs the output
cloud is 10 copies of one 10-point pattern, shifted by the other — in a 3-D PCA, 10 clusters
by one digit each split into 10 sub-clusters by the other. The quantitative version of
"looks like a Minkowski sum" is a two-way ANOVA: how much of the output's variance does the
best *additive* model ``f(a_i) + g(b_j)`` explain (least squares on one-hot main effects),
compared with the full *interaction* model (one mean per ``(a_i, b_j)`` cell)? Both are
adjusted R² (the 100-cell model would otherwise fit noise). A pure Minkowski sum has
additive R² = interaction R²; their gap is what the head computes
*jointly* from the two digits. The interaction R² is below 1 whenever the head also reads
other digits.

**Fourier digit basis (paper §3.3).** Treat any per-digit quantity as a function of the digit
``n = 0..9`` — an embedding coordinate ``W_E[n, d]``, an unembedding column, a second-layer
MLP neuron's output direction projected on digit embeddings, the final residual stream
projected on the digit unembeddings — and ask how much of its variance over ``n`` the
low-frequency Fourier basis explains: constant, ``cos/sin(2πn/10)`` (k=1),
``cos/sin(2πn/5)`` (k=2) and the parity ``(−1)^n`` (k=5). R² is the usual centred one
(``1 − SS_res/SS_tot`` with SS_tot about each function's mean over ``n``), pooled over all
rows, so the constant alone scores 0; the full 10-function basis scores 1. The cumulative
curve adds constant, k=5, k=1, k=2, k=3, k=4 in that order. The paper's picture of the final
residual stream at the ``c_2`` timestep is a *pentagonal prism*: the k=5 parity axis splits
even from odd digits, and k=2 traces a pentagon in each.

**Intuition.** Both analyses measure structure, not use: a random embedding scores
R² ≈ 5/9 ≈ 0.56 on {const, k=1, k=2, k=5} by chance (those span 5 of the 9 non-constant
directions), so read the Fourier R² against that baseline.

Example::

    >>> res = minkowski(m, layer=0, head=2, position=2, digits=("b1", "a1"))   # doctest: +SKIP
    >>> res.fit.additive_r2, res.fit.interaction_r2                             # doctest: +SKIP
    >>> fourier_analysis(m).r2             # aux-4x4 (docs/results-circuits2.md)  # doctest: +SKIP
    {'embed': 0.68, 'unembed': 0.99, 'mlp_out': 0.62, 'final_resid': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from mulinterp.circuits.heads import HeadTable
from mulinterp.circuits.problems import draw_problems
from mulinterp.hooks import hook_name
from mulinterp.models import MulModel

# ---------------------------------------------------------------------------------------
# small numerical tools


def r2_score(x: Float[Tensor, "n d"], fitted: Float[Tensor, "n d"], n_params: int | None = None) -> float:
    """Pooled R² of ``fitted`` for ``x`` (variance about the column means).

    With ``n_params`` (the rank of the model, intercept included) it is the *adjusted* R²,
    ``1 − (SS_res / (n − p)) / (SS_tot / (n − 1))``, which does not reward a model for having
    many cells to fit noise with.
    """
    n = x.shape[0]
    ss_tot = ((x - x.mean(0)) ** 2).sum()
    ss_res = ((x - fitted) ** 2).sum()
    if not ss_tot > 0:
        return float("nan")
    if n_params is None:
        return float(1 - ss_res / ss_tot)
    if n <= n_params:
        raise ValueError(f"{n} samples cannot fit a model with {n_params} parameters; use more problems")
    return float(1 - (ss_res / (n - n_params)) / (ss_tot / (n - 1)))


def pca(x: Float[Tensor, "n d"], n_components: int = 3) -> tuple[Float[Tensor, "n k"], Float[Tensor, " k"]]:
    """Coordinates on the top principal components and their explained-variance ratios."""
    xc = (x - x.mean(0)).double()
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    k = min(n_components, vh.shape[0])
    coords = xc @ vh[:k].T
    explained = s[:k] ** 2 / (s**2).sum()
    return coords.float(), explained.float()


@dataclass(frozen=True)
class AdditiveFit:
    """Two-way ANOVA of a vector-valued response on two digit factors (adjusted R², pooled)."""

    additive_r2: float  # μ + f(u) + g(v): main effects only
    interaction_r2: float  # one mean per (u, v) cell
    first_r2: float  # f(u) alone
    second_r2: float  # g(v) alone
    n: int

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def additive_fit(x: Float[Tensor, "n d"], u: Int[Tensor, " n"], v: Int[Tensor, " n"], levels: int = 10) -> AdditiveFit:
    """How well ``x ≈ μ + f(u) + g(v)`` fits (least squares), against the cell-mean model.

    All four R² are *adjusted* for the model's size (see :func:`r2_score`): with 500 problems
    the 100-cell interaction model would otherwise score ≈ 0.2 on pure noise.

    >>> u, v = torch.randint(10, (500,)), torch.randint(10, (500,))
    >>> f, g = torch.randn(10, 4), torch.randn(10, 4)
    >>> round(additive_fit(f[u] + g[v], u, v).additive_r2, 6)
    1.0
    """
    x = x.double()
    u, v = u.long(), v.long()
    ou, ov = F.one_hot(u, levels).double(), F.one_hot(v, levels).double()
    cells = u * levels + v
    n_u, n_v, n_cells = len(u.unique()), len(v.unique()), len(cells.unique())

    def fit(design: Tensor) -> Tensor:
        # gelsd copes with the rank deficiency of one-hot main effects (no reference level needed)
        coef = torch.linalg.lstsq(design, x, driver="gelsd").solution
        return design @ coef

    ones = torch.ones(len(x), 1, dtype=torch.float64)
    return AdditiveFit(
        additive_r2=r2_score(x, fit(torch.cat([ones, ou, ov], 1)), n_u + n_v - 1),
        interaction_r2=r2_score(x, fit(F.one_hot(cells, levels * levels).double()), n_cells),
        first_r2=r2_score(x, fit(ou), n_u),
        second_r2=r2_score(x, fit(ov), n_v),
        n=len(x),
    )


# ---------------------------------------------------------------------------------------
# Minkowski sums of pair heads


def _digit(task, name: str) -> tuple[str, int]:
    """``"b1"`` → ``("b", 1)``, range-checked against the task."""
    side, idx = name[:1], name[1:]
    n = {"a": task.n_a, "b": task.n_b}.get(side)
    if n is None or not idx.isdigit() or not 0 <= int(idx) < n:
        raise ValueError(f"digit {name!r} must be a0–a{task.n_a - 1} or b0–b{task.n_b - 1}")
    return side, int(idx)


def _check_site(m: MulModel, layer: int, head: int, position: int) -> None:
    if not 0 <= layer < m.n_layers:
        raise ValueError(f"layer {layer} out of range 0–{m.n_layers - 1} (0-based)")
    if not 0 <= head < m.n_heads:
        raise ValueError(f"head {head} out of range 0–{m.n_heads - 1} (0-based)")
    if not 0 <= position < m.task.n_c:
        raise ValueError(f"position {position} out of range: answer digits are c0–c{m.task.n_c - 1}")


@torch.no_grad()
def head_output(
    m: MulModel, tokens: Int[Tensor, "batch seq"], layer: int, head: int, pos: int
) -> Float[Tensor, "batch d_model"]:
    """What one head writes into the residual stream at ``pos``: ``z @ W_O`` (bias excluded)."""
    name = hook_name("z", layer)
    # stop_at_layer: the blocks after this one cannot change its output, so skip them
    _, cache = m.model.run_with_cache(tokens, names_filter=lambda n: n == name, stop_at_layer=layer + 1)
    z = cache[name][:, pos, head]  # [batch, d_head]
    return (z @ m.model.W_O[layer, head]).cpu()


@dataclass
class MinkowskiResult:
    layer: int  # 0-based
    head: int
    position: int  # the timestep predicting c_k
    digits: tuple[str, str]  # e.g. ("b1", "a1"): colour by the first, then the second
    values: Int[Tensor, "n 2"]  # the two digits' values per problem
    coords: Float[Tensor, "n 3"]  # 3-D PCA of the head output
    explained: Float[Tensor, " 3"]
    fit: AdditiveFit

    def to_dict(self, one_based: bool = True) -> dict:
        off = 1 if one_based else 0
        return {
            "layer": self.layer + off,
            "head": self.head + off,
            "position": self.position,
            "digits": list(self.digits),
            "additive_r2": round(self.fit.additive_r2, 4),
            "interaction_r2": round(self.fit.interaction_r2, 4),
            "first_r2": round(self.fit.first_r2, 4),
            "second_r2": round(self.fit.second_r2, 4),
            "explained": [round(float(x), 4) for x in self.explained],
            "n": self.fit.n,
        }


def minkowski(
    m: MulModel,
    layer: int = 0,
    head: int = 2,
    position: int = 2,
    digits: tuple[str, str] = ("b1", "a1"),
    n: int = 1000,
    seed: int = 0,
    split: str = "test",
    a: Tensor | None = None,
    b: Tensor | None = None,
) -> MinkowskiResult:
    """PCA and additive-vs-interaction R² of one head's output at one timestep.

    Defaults are the paper's case: first-layer head 3 (``layer=0, head=2``) at the timestep
    predicting ``c_2``, coloured by ``b_1`` and ``a_1``.
    """
    task = m.task
    _check_site(m, layer, head, position)
    sides = [_digit(task, d) for d in digits]
    a, b = draw_problems(task, a, b, n, split, seed)
    gt = task.ground_truth(a, b)
    values = torch.stack([(gt.a if s == "a" else gt.b)[:, i] for s, i in sides], 1)
    tokens = task.encode(a, b, "plain")[:, :-1]
    out = head_output(m, tokens, layer, head, task.answer_position(position))
    coords, explained = pca(out)
    return MinkowskiResult(
        layer, head, position, tuple(digits), values, coords, explained, additive_fit(out, values[:, 0], values[:, 1])
    )


@dataclass(frozen=True)
class PairCandidate:
    layer: int
    head: int
    position: int
    pair: tuple[int, int]  # (i, j)
    weights: tuple[float, float]
    is_pair_head: bool  # False: no head passed the pair test; this is merely the sharpest

    @property
    def digits(self) -> tuple[str, str]:
        return (f"a{self.pair[0]}", f"b{self.pair[1]}")


def best_pair_head(table: HeadTable) -> PairCandidate:
    """The sharpest pair head of the table; if none passes the pair test, the
    ``(layer, head, timestep)`` whose best ``a_i`` and ``b_j`` weights have the largest minimum."""
    pairs = table.pairs()
    if pairs:
        r = pairs[0]
        return PairCandidate(r.layer, r.head, r.position, r.pair, r.weights, True)  # type: ignore[arg-type]
    att = table.attention
    w_a, i_best = att.a_mass.max(-1)
    w_b, j_best = att.b_mass.max(-1)
    flat = int(torch.minimum(w_a, w_b).flatten().argmax())
    layer, head, k = (int(x) for x in torch.unravel_index(torch.tensor(flat), w_a.shape))
    return PairCandidate(
        layer,
        head,
        k,
        (int(i_best[layer, head, k]), int(j_best[layer, head, k])),
        (float(w_a[layer, head, k]), float(w_b[layer, head, k])),
        False,
    )


def minkowski_best(m: MulModel, table: HeadTable, n: int = 1000, seed: int = 0, split: str = "test") -> MinkowskiResult:
    """:func:`minkowski` at the best pair head of ``table``, coloured by its ``b_j`` then ``a_i``."""
    c = best_pair_head(table)
    return minkowski(m, c.layer, c.head, c.position, (c.digits[1], c.digits[0]), n=n, seed=seed, split=split)


# ---------------------------------------------------------------------------------------
# Fourier digit basis

FOURIER_STEPS: tuple[str, ...] = ("const", "k=5", "k=1", "k=2", "k=3", "k=4")
PAPER_BASIS: tuple[str, ...] = ("const", "k=1", "k=2", "k=5")


def fourier_basis(terms: Sequence[str] = PAPER_BASIS) -> Float[Tensor, "10 f"]:
    """Columns: ``const`` → 1; ``k=5`` → (−1)^n; ``k=1..4`` → cos and sin of 2πkn/10."""
    n = torch.arange(10, dtype=torch.float64)
    cols = []
    for t in terms:
        if t == "const":
            cols.append(torch.ones(10, dtype=torch.float64))
        elif t == "k=5":
            cols.append(torch.cos(math.pi * n))
        elif t in ("k=1", "k=2", "k=3", "k=4"):
            k = int(t[2])
            cols += [torch.cos(2 * math.pi * k * n / 10), torch.sin(2 * math.pi * k * n / 10)]
        else:
            raise ValueError(f"unknown Fourier term {t!r}; use const, k=1 … k=5")
    return torch.stack(cols, 1)


def fourier_r2(values: Float[Tensor, "... 10"], terms: Sequence[str] = PAPER_BASIS) -> float:
    """Pooled R² of functions of the digit (last axis, n = 0..9) in a Fourier basis.

    >>> n = torch.arange(10.)
    >>> round(fourier_r2(torch.stack([torch.cos(2 * math.pi * n / 5), (-1) ** n])), 6)
    1.0
    """
    if values.shape[-1] != 10:
        raise ValueError(f"the last axis must index the 10 digits, got shape {tuple(values.shape)}")
    y = values.reshape(-1, 10).double().T  # [10 digits, rows]
    basis = fourier_basis(terms)
    fitted = basis @ torch.linalg.lstsq(basis, y).solution
    return r2_score(y, fitted)  # centred per function over the 10 digits, pooled over functions


def fourier_cumulative(values: Float[Tensor, "... 10"]) -> dict[str, float]:
    """R² as the terms of :data:`FOURIER_STEPS` are added one by one (ends at 1.0)."""
    return {step: fourier_r2(values, FOURIER_STEPS[: i + 1]) for i, step in enumerate(FOURIER_STEPS)}


@torch.no_grad()
def final_residual(m: MulModel, a: Tensor, b: Tensor) -> Float[Tensor, "batch seq d_model"]:
    """The final residual stream as the unembedding reads it (``ln_final.hook_normalized``)."""
    name = "ln_final.hook_normalized"
    _, cache = m.model.run_with_cache(m.task.encode(a, b, "plain")[:, :-1], names_filter=lambda x: x == name)
    return cache[name].cpu()


@torch.no_grad()
def digit_objects(m: MulModel, resid: Float[Tensor, "batch n_c d_model"]) -> dict[str, Tensor]:
    """The four per-digit objects of the paper, each ``[rows, 10]`` (a function of the digit per row).

    * ``embed`` — ``W_E[n, :]``, one row per model dimension;
    * ``unembed`` — ``W_U[:, n]``;
    * ``mlp_out`` — the last layer's MLP output weights projected on the digit embeddings,
      ``W_out @ W_E[n]ᵀ``, one row per neuron;
    * ``final_resid`` — ``resid`` (the final residual stream at the answer timesteps, see
      :func:`final_residual`) projected on the digit unembeddings, one row per
      (problem, timestep).
    """
    W_E, W_U = m.model.W_E[:10].cpu(), m.model.W_U[:, :10].cpu()
    W_out = m.model.blocks[m.n_layers - 1].mlp.W_out.cpu()  # [d_mlp, d_model]
    return {
        "embed": W_E.T,
        "unembed": W_U,
        "mlp_out": W_out @ W_E.T,
        "final_resid": einops.rearrange(resid @ W_U, "batch k n -> (batch k) n"),
    }


def _num(x: float) -> float | None:
    """Rounded for JSON; ``None`` for an undefined R² (an all-constant object, e.g. zero weights)."""
    return round(x, 4) if math.isfinite(x) else None


@dataclass
class FourierResult:
    r2: dict[str, float]  # object → R² on {const, k=1, k=2, k=5}
    cumulative: dict[str, dict[str, float]]  # object → step → R²
    prism_position: int
    prism_coords: Float[Tensor, "n 3"]  # PCA of the final residual at the c_k timestep
    prism_explained: Float[Tensor, " 3"]
    prism_digit: Int[Tensor, " n"]  # the true c_k of each problem (the colour)

    @property
    def prism_parity_corr(self) -> list[float]:
        """Correlation of each principal component with the parity (−1)^c_k: the prism's k=5 axis."""
        parity = (1 - 2 * (self.prism_digit % 2)).float()
        return [
            float(torch.corrcoef(torch.stack([self.prism_coords[:, i], parity]))[0, 1])
            for i in range(self.prism_coords.shape[1])
        ]

    def to_dict(self) -> dict:
        return {
            "fourier_r2": {k: _num(v) for k, v in self.r2.items()},
            "fourier_cumulative": {o: {s: _num(v) for s, v in c.items()} for o, c in self.cumulative.items()},
            "prism": {
                "position": self.prism_position,
                "explained": [round(float(x), 4) for x in self.prism_explained],
                "parity_corr": [_num(x) for x in self.prism_parity_corr],
            },
        }


@torch.no_grad()
def fourier_analysis(
    m: MulModel, n: int = 256, seed: int = 0, split: str = "test", prism_position: int = 2
) -> FourierResult:
    """Fourier R² of the four digit objects, the cumulative curves, and the prism PCA."""
    task = m.task
    prism_position = min(prism_position, task.n_c - 1)
    a, b = task.sample(n, split, seed=seed)
    resid = final_residual(m, a, b)
    objects = digit_objects(m, resid[:, task.answer_positions("plain")])
    coords, explained = pca(resid[:, task.answer_position(prism_position)])
    return FourierResult(
        r2={k: fourier_r2(v) for k, v in objects.items()},
        cumulative={k: fourier_cumulative(v) for k, v in objects.items()},
        prism_position=prism_position,
        prism_coords=coords,
        prism_explained=explained,
        prism_digit=task.ground_truth(a, b).c[:, prism_position],
    )


__all__ = [
    "AdditiveFit",
    "MinkowskiResult",
    "PairCandidate",
    "FourierResult",
    "FOURIER_STEPS",
    "PAPER_BASIS",
    "additive_fit",
    "pca",
    "head_output",
    "minkowski",
    "minkowski_best",
    "best_pair_head",
    "fourier_basis",
    "fourier_r2",
    "fourier_cumulative",
    "digit_objects",
    "final_residual",
    "fourier_analysis",
]
