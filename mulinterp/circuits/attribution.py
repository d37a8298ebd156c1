"""Counterfactual logit attribution: which operand digits does each answer digit use?

**What.** Take a problem ``a × b`` and the model's logit for the digit it predicts at the
position that predicts ``c_k``. Now change *one* operand digit — say ``a_1`` — to a different
random digit and run the model again. The drop in that same logit,

    Δ(a_1, c_k) = logit_clean[c_k token] − logit_corrupted[c_k token],

says how much the model's answer at ``c_k`` rested on ``a_1``. Averaged over many problems and
done for every operand digit and every answer position it gives an ``(n_a + n_b) × n_c``
matrix (rows ``a0 … b0 …``, columns ``c0 …``): the paper's long-range-dependency heatmap.

**Why.** ``c_k`` depends on every ``a_i`` and ``b_j`` with ``i + j ≤ k`` (through the running
sum ``ĉ_k``, see :mod:`mulinterp.arithmetic`). A model that computes ``c_k`` correctly *must*
be sensitive to all of them; a model stuck in the SFT optimum is not, and its middle columns
stay pale. Unlike probing, this is causal: it measures what the model *uses*, not what it
merely represents.

**How it is done here.**

* The whole sequence is teacher-forced: ``a * b SEP ANS c_0 … c_{n_c-2}``, with the *clean*
  problem's true answer as prefix in both runs, so the corrupted run differs from the clean
  one in exactly one token (the operand digit). Pass ``prefix="own"`` to give the corrupted
  run its own true answer instead (then earlier answer tokens change too).
* The corrupted digit is a uniformly random *different* digit; a leading digit (``a_{n_a-1}``,
  ``b_{n_b-1}``) stays non-zero so the operand keeps its digit count.
* The tracked token is the one the model predicts on the clean run (``target="predicted"``,
  the paper's "originally predicted c_k"), or the true ``c_k`` (``target="true"``).
* One batched forward pass holds, for every problem, the clean sequence and all
  ``n_a + n_b`` corruptions (chunked to ``batch_size`` sequences).

Example::

    >>> from mulinterp.models import load_pretrained                     # doctest: +SKIP
    >>> att = logit_attribution(load_pretrained("icot-4x4"), n=256)       # doctest: +SKIP
    >>> att.matrix.shape, att.rows[:2], att.cols[:2]                      # doctest: +SKIP
    (torch.Size([8, 8]), ['a0', 'a1'], ['c0', 'c1'])
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mulinterp.circuits.problems import answer_digits, answer_logits, corrupt_digit, draw_problems, operand_digits
from mulinterp.models import MulModel
from mulinterp.task import MulTask

# ---------------------------------------------------------------------------------------
# the analysis


@dataclass
class Attribution:
    """Per-problem logit drops; ``matrix`` is their mean (rows: operand digits, cols: c_k)."""

    rows: list[str]
    cols: list[str]
    delta: Float[Tensor, "problem row col"]  # clean − corrupted logit of the tracked token
    target: Int[Tensor, "problem col"]  # the tracked token at each answer position
    clean_logit: Float[Tensor, "problem col"]

    @property
    def n(self) -> int:
        return self.delta.shape[0]

    @property
    def matrix(self) -> Float[Tensor, "row col"]:
        return self.delta.mean(0)

    @property
    def sem(self) -> Float[Tensor, "row col"]:
        """Standard error of ``matrix`` (for error bars)."""
        return self.delta.std(0) / max(self.n, 1) ** 0.5 if self.n > 1 else torch.zeros_like(self.matrix)


def logit_attribution(
    m: MulModel,
    n: int = 256,
    seed: int = 0,
    split: str = "test",
    a: Int[Tensor, " n"] | None = None,
    b: Int[Tensor, " n"] | None = None,
    target: str = "predicted",  # or "true"; choices are checked below, so str (see mulinterp.task.Format)
    prefix: str = "clean",  # or "own"
    batch_size: int = 2048,
) -> Attribution:
    """Counterfactual logit attribution of every operand digit for every answer digit.

    ``m`` is a :class:`~mulinterp.models.MulModel`. Problems are ``n`` draws from ``split``
    with ``seed`` (or the given ``a``, ``b``); the corruptions use the same seed.
    """
    task: MulTask = m.task
    if target not in ("predicted", "true"):
        raise ValueError(f"target must be 'predicted' or 'true', got {target!r}")
    if prefix not in ("clean", "own"):
        raise ValueError(f"prefix must be 'clean' or 'own', got {prefix!r}")
    a, b = draw_problems(task, a, b, n, split, seed)
    rows = operand_digits(task)
    n_prob, n_rows = len(a), len(rows)

    gen = torch.Generator().manual_seed(seed)
    which = einops.repeat(torch.arange(n_rows), "row -> (problem row)", problem=n_prob)
    a_rep = einops.repeat(a, "problem -> (problem row)", row=n_rows)
    b_rep = einops.repeat(b, "problem -> (problem row)", row=n_rows)
    a_cor, b_cor = corrupt_digit(task, a_rep, b_rep, which, gen)

    clean = task.teacher_forced(a, b)
    corrupted = task.teacher_forced(a_cor, b_cor, answer_of=None if prefix == "own" else (a_rep, b_rep))
    # one batch: problem p's clean sequence followed by its n_rows corruptions
    tokens = torch.cat([clean[:, None], einops.rearrange(corrupted, "(p r) s -> p r s", p=n_prob)], dim=1)
    device = m.device
    logits = answer_logits(m.model, einops.rearrange(tokens, "p v s -> (p v) s").to(device), task, batch_size)
    logits = einops.rearrange(logits.float().cpu(), "(p v) k vocab -> p v k vocab", p=n_prob)

    if target == "predicted":
        tgt = logits[:, 0].argmax(-1)
    else:
        tgt = task.true_answer(a, b)
    index = einops.repeat(tgt, "p k -> p v k 1", v=n_rows + 1)
    tracked = logits.gather(-1, index)[..., 0]  # [p, 1 + n_rows, n_c]
    delta = tracked[:, :1] - tracked[:, 1:]
    return Attribution(rows=rows, cols=answer_digits(task), delta=delta, target=tgt, clean_logit=tracked[:, 0])


def dependency_mask(task: MulTask) -> Bool[Tensor, "row col"]:
    """True where ``c_k`` depends on the operand digit: ``a_i`` with ``i ≤ k``, ``b_j`` with ``j ≤ k``."""
    idx = torch.cat([torch.arange(task.n_a), torch.arange(task.n_b)])
    return idx[:, None] <= torch.arange(task.n_c)[None, :]


def middle_digits(task: MulTask) -> list[int]:
    """``c_2 … c_{n_c-3}`` — the long-range digits an SFT model misses (all digits if n_c < 5)."""
    return list(range(2, task.n_c - 2)) if task.n_c >= 5 else list(range(task.n_c))


def dependency_summary(att: Attribution, task: MulTask, ks: range | list[int] | None = None) -> dict[str, float]:
    """Mean Δlogit over the cells ``c_k`` depends on, and over those it does not, for columns ``ks``.

    The default ``ks`` are :func:`middle_digits`.
    """
    ks = middle_digits(task) if ks is None else list(ks)
    mask = dependency_mask(task)[:, ks]
    mat = att.matrix[:, ks]
    out = {"dependent": float(mat[mask].mean()) if mask.any() else float("nan")}
    out["independent"] = float(mat[~mask].mean()) if (~mask).any() else float("nan")
    return out


__all__ = [
    "Attribution",
    "logit_attribution",
    "dependency_mask",
    "dependency_summary",
    "middle_digits",
]
