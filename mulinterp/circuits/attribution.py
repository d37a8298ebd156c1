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
from typing import Literal

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mulinterp.arithmetic import from_digits, to_digits
from mulinterp.task import MulTask

# ---------------------------------------------------------------------------------------
# operand digits: names, token positions, corruption (shared with mulinterp.circuits.patching)


def operand_digits(task: MulTask) -> list[str]:
    """Names of the operand digits in token order: ``['a0', …, 'a{n_a-1}', 'b0', …]``."""
    return [f"a{i}" for i in range(task.n_a)] + [f"b{j}" for j in range(task.n_b)]


def answer_digits(task: MulTask) -> list[str]:
    """``['c0', …, 'c{n_c-1}']``."""
    return [f"c{k}" for k in range(task.n_c)]


def digit_position(task: MulTask, index: int) -> int:
    """Token position of operand digit number ``index`` (in :func:`operand_digits` order)."""
    return index if index < task.n_a else index + 1  # skip the '*' between a and b


def parse_operand_digit(task: MulTask, spec: str) -> int:
    """``"a1"`` → its index in :func:`operand_digits` (``ValueError`` naming the valid range)."""
    s = str(spec).strip().lower()
    names = operand_digits(task)
    if s in names:
        return names.index(s)
    if len(s) >= 2 and s[0] in "ab" and s[1:].isdigit():
        n = task.n_a if s[0] == "a" else task.n_b
        raise ValueError(
            f"operand digit {spec!r} is out of range for the {task.name} task: "
            f"{s[0]} has digits {s[0]}0–{s[0]}{n - 1}"
        )
    raise ValueError(f"unknown operand digit {spec!r}: use a0–a{task.n_a - 1} or b0–b{task.n_b - 1}")


def check_operands(task: MulTask, a: Tensor, b: Tensor) -> None:
    """``ValueError`` unless every ``a`` has ``n_a`` digits and every ``b`` has ``n_b``."""
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D tensors of the same length, got {tuple(a.shape)} and {tuple(b.shape)}")
    for name, x, n in (("a", a, task.n_a), ("b", b, task.n_b)):
        if len(x) and (int(x.min()) < 10 ** (n - 1) or int(x.max()) >= 10**n):
            raise ValueError(f"digit-count mismatch: every {name} must have exactly {n} digits for the {task.name} model")


def draw_problems(task: MulTask, a: Tensor | None, b: Tensor | None, n: int, split: str, seed: int) -> tuple[Tensor, Tensor]:
    """The given operands (checked against the task), or ``n`` fresh ones from ``split``."""
    if a is None or b is None:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        a, b = task.sample(n, split, seed=seed)
    check_operands(task, a, b)
    return a, b


def corrupt_digit(
    task: MulTask,
    a: Int[Tensor, " batch"],
    b: Int[Tensor, " batch"],
    which: Int[Tensor, " batch"],
    generator: torch.Generator,
) -> tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Replace operand digit ``which[p]`` of problem ``p`` by a different random digit.

    Leading digits are redrawn from 1–9 so that ``a`` and ``b`` keep their digit counts.
    """
    digits = torch.cat([to_digits(a, task.n_a), to_digits(b, task.n_b)], dim=1)
    rows = torch.arange(len(a))
    old = digits[rows, which]
    leading = (which == task.n_a - 1) | (which == task.n_a + task.n_b - 1)
    # a shift by 1..9 (mod 10) — or by 1..8 on the digits 1..9 (mod 9) for a leading digit —
    # lands uniformly on one of the other allowed digits
    u = torch.rand(len(a), generator=generator).to(old.device)
    shift = 1 + (u * torch.where(leading, 8, 9)).long()
    new = torch.where(leading, 1 + (old - 1 + shift) % 9, (old + shift) % 10)
    digits = digits.clone()
    digits[rows, which] = new
    return from_digits(digits[:, : task.n_a]), from_digits(digits[:, task.n_a :])


def teacher_forced(task: MulTask, a: Tensor, b: Tensor, answer_of: tuple[Tensor, Tensor] | None = None) -> Int[Tensor, "batch seq"]:
    """``a * b SEP ANS c_0 … c_{n_c-2}``: every token some answer prediction reads.

    (``c_{n_c-1}`` and ``EOS`` are dropped: no prediction of an answer digit reads them.)
    The answer prefix is that of the problems ``answer_of`` if given.
    """
    end = task.answer_start() + task.n_c
    tokens = task.encode(a, b)[:, :end]
    if answer_of is not None:
        tokens[:, task.answer_start() + 1 :] = task.encode(*answer_of)[:, task.answer_start() + 1 : end]
    return tokens


def true_answer(task: MulTask, a: Tensor, b: Tensor) -> Int[Tensor, "batch n_c"]:
    """The answer digits ``c_0 … c_{n_c-1}`` (= their token ids)."""
    return to_digits(a.to(torch.int64) * b.to(torch.int64), task.n_c)


@torch.no_grad()
def answer_logits(model, tokens: Int[Tensor, "batch seq"], task: MulTask, batch_size: int = 2048) -> Float[Tensor, "batch n_c vocab"]:
    """Logits at the positions predicting ``c_0 … c_{n_c-1}``, in chunks of ``batch_size``."""
    pos = task.answer_positions().to(tokens.device)
    return torch.cat([model(tokens[i : i + batch_size])[:, pos] for i in range(0, len(tokens), batch_size)])


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
    m,
    n: int = 256,
    seed: int = 0,
    split: str = "test",
    a: Int[Tensor, " n"] | None = None,
    b: Int[Tensor, " n"] | None = None,
    target: Literal["predicted", "true"] = "predicted",
    prefix: Literal["clean", "own"] = "clean",
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

    clean = teacher_forced(task, a, b)
    corrupted = teacher_forced(task, a_cor, b_cor, answer_of=None if prefix == "own" else (a_rep, b_rep))
    # one batch: problem p's clean sequence followed by its n_rows corruptions
    tokens = torch.cat([clean[:, None], einops.rearrange(corrupted, "(p r) s -> p r s", p=n_prob)], dim=1)
    device = next(m.model.parameters()).device
    logits = answer_logits(m.model, einops.rearrange(tokens, "p v s -> (p v) s").to(device), task, batch_size)
    logits = einops.rearrange(logits.float().cpu(), "(p v) k vocab -> p v k vocab", p=n_prob)

    if target == "predicted":
        tgt = logits[:, 0].argmax(-1)
    else:
        tgt = true_answer(task, a, b)
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
    "operand_digits",
    "answer_digits",
    "digit_position",
    "parse_operand_digit",
    "corrupt_digit",
    "check_operands",
    "draw_problems",
    "teacher_forced",
    "true_answer",
    "answer_logits",
]
