"""Training batches, generated on the training device, and ICoT's CoT removal.

Stepwise internalisation (Deng et al., 2024): training starts on the full CoT layout; as
training proceeds, CoT tokens are removed *from the left* at a fixed rate. Each example's
removal gets a random extra offset ``k`` with ``P(k) ∝ exp(−λk)``, which smooths the
transition between removal stages. Once every CoT token is gone the layout is the plain one.

Removal is one ``gather`` per batch: position ``t`` of the shortened sequence reads position
``t`` of the full one before the CoT and ``t + removed`` after it; what runs past the end is
padding, masked out of the loss.

An optional share of each batch can be *n×1 problems* (:func:`nx1_operands`): one operand has a
single non-zero digit, so each answer digit depends on one digit pair plus carries — a
curriculum-free way to show the model, pair by pair, which positions feed which digit. A
further share can be *n×2 problems* (:func:`nx2_operands`): two non-zero digits, so a digit
depends on at most two pairs plus carries — the step between one pair and the full sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from mulinterp.task import PAD, MulTask


@dataclass
class Batch:
    tokens: Int[Tensor, "batch seq"]
    loss_mask: Bool[Tensor, "batch seq"]  # True where position t's prediction of token t+1 counts
    answer_start: Int[Tensor, " batch"]  # index of ANS (predicts c_0) per example
    a: Int[Tensor, " batch"]
    b: Int[Tensor, " batch"]


def scheduled_removal(
    examples_seen: int,
    remove_per_epoch: float,
    epoch_size: int,
    cot_len: int,
    from_examples: int = 0,
    from_tokens: int = 0,
) -> int:
    """CoT tokens removed (before the random offset) after ``examples_seen`` examples.

    ``remove_per_epoch`` tokens per ``epoch_size`` examples, counted from an anchor: ``from_tokens``
    tokens already removed at ``from_examples`` examples (default: none at the start). A fork
    that slows a running schedule anchors it at its own state, so no token comes back.
    """
    since = max(0, examples_seen - from_examples)
    return min(cot_len, from_tokens + int(math.floor(since / epoch_size * remove_per_epoch)))


def removal_offsets(n: int, smoothing: float, max_offset: int, generator: torch.Generator) -> Int[Tensor, " n"]:
    """Extra removal ``k ≥ 0`` per example with ``P(k) ∝ exp(−λk)``, truncated at ``max_offset``."""
    device = generator.device
    if math.isinf(smoothing) or max_offset <= 0:
        return torch.zeros(n, dtype=torch.int64, device=device)
    logits = -smoothing * torch.arange(max_offset + 1, dtype=torch.float32, device=device)
    probs = torch.softmax(logits, 0).expand(n, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def remove_cot(
    tokens: Int[Tensor, "batch seq"], task: MulTask, removed: Int[Tensor, " batch"]
) -> tuple[Int[Tensor, "batch shorter_seq"], Int[Tensor, " batch"]]:
    """Drop the first ``removed[i]`` CoT tokens of example ``i`` (left-aligned, PAD-filled).

    Returns the new tokens (trimmed to the longest example) and each ``ANS`` index.
    """
    seq = tokens.shape[1]
    removed = removed.clamp(0, task.cot_len)
    t = torch.arange(seq, device=tokens.device)[None, :]
    src = torch.where(t < task.input_len, t, t + removed[:, None])
    valid = src < seq
    out = torch.gather(tokens, 1, src.clamp(max=seq - 1))
    out = torch.where(valid, out, torch.full_like(out, PAD))
    new_len = seq - int(removed.min())
    return out[:, :new_len], task.answer_start("cot") - removed


def nx1_operands(
    task: MulTask,
    a: Int[Tensor, " batch"],
    b: Int[Tensor, " batch"],
    share: float,
    generator: torch.Generator,
) -> tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Replace a ``share`` of the pairs by n×1 problems, drawn from ``generator``.

    In a replaced pair one operand (``a`` or ``b``, each with probability ½) becomes ``d·10^j``:
    one non-zero digit ``d`` at a random place ``j``, zeros elsewhere (leading zeros included;
    the paper's n×1 problems, shifted to every place). Answer digit ``c_k`` then depends on the
    single pair ``(k − j, j)`` plus carries. Such operands lie outside the task's n-digit
    problems except at the leading place; a pair that lands there in the val or test split
    keeps its drawn operands, so no held-out problem is ever trained on.
    """
    a, b, _ = _sparse_operands(task, a, b, share, 1, generator)
    return a, b


def nx2_operands(
    task: MulTask,
    a: Int[Tensor, " batch"],
    b: Int[Tensor, " batch"],
    share: float,
    generator: torch.Generator,
) -> tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Replace a ``share`` of the pairs by n×2 problems: as :func:`nx1_operands`, but the
    replaced operand gets two non-zero digits at two distinct random places, so ``c_k`` depends
    on at most the two pairs ``(k − j₁, j₁)`` and ``(k − j₂, j₂)`` plus carries."""
    a, b, _ = _sparse_operands(task, a, b, share, 2, generator)
    return a, b


def _sparse_operands(
    task: MulTask,
    a: Int[Tensor, " batch"],
    b: Int[Tensor, " batch"],
    share: float,
    nonzero: int,
    generator: torch.Generator,
) -> tuple[Int[Tensor, " batch"], Int[Tensor, " batch"], Bool[Tensor, " batch"]]:
    """:func:`nx1_operands` with ``nonzero`` non-zero digits in the replaced operand, and which
    pairs were replaced. ``nonzero`` 1 draws exactly as the n×1 share always has, so a resumed
    run's batches do not change."""
    n, device = a.shape[0], a.device
    if share <= 0:
        return a, b, torch.zeros(n, dtype=torch.bool, device=device)
    pick = torch.rand(n, generator=generator, device=device) < share
    on_a = torch.rand(n, generator=generator, device=device) < 0.5
    n_digits = torch.where(on_a, task.n_a, task.n_b)
    if nonzero == 1:
        place = (torch.rand(n, generator=generator, device=device) * n_digits).long()[:, None]
    else:  # distinct places: the lowest random scores among the operand's own places
        width = max(task.n_a, task.n_b)
        scores = torch.rand(n, width, generator=generator, device=device)
        scores = scores.masked_fill(torch.arange(width, device=device)[None, :] >= n_digits[:, None], 2.0)
        place = scores.argsort(dim=1)[:, :nonzero]
    digit = torch.randint(1, 10, (n, nonzero), generator=generator, device=device)
    sparse = (digit * 10**place).sum(1)
    new_a, new_b = torch.where(on_a, sparse, a), torch.where(on_a, b, sparse)
    keep = pick & task.in_split(new_a, new_b, "train")
    return torch.where(keep, new_a, a), torch.where(keep, new_b, b), keep


def make_batch(
    task: MulTask,
    n: int,
    generator: torch.Generator,
    regime: str,
    removed: int = 0,
    smoothing: float = math.inf,
    nx1_share: float = 0.0,
    nx2_share: float = 0.0,
) -> Batch:
    """A fresh batch of training-split problems for ``regime`` (sft/aux: plain, icot: CoT),
    ``nx1_share`` of them n×1 problems (:func:`nx1_operands`) and ``nx2_share`` n×2 problems
    (:func:`nx2_operands`, drawn among the pairs the n×1 share left)."""
    a, b = task.sample(n, "train", generator=generator)
    a, b, used = _sparse_operands(task, a, b, nx1_share, 1, generator)
    if nx2_share > 0:
        a2, b2, _ = _sparse_operands(task, a, b, nx2_share / (1 - nx1_share), 2, generator)
        a, b = torch.where(used, a, a2), torch.where(used, b, b2)
    if regime != "icot" or removed >= task.cot_len:
        tokens = task.encode(a, b, "plain")
        start = torch.full((n,), task.answer_start("plain"), device=tokens.device)
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        if regime == "icot":  # loss on everything after the input
            mask[:, task.input_len - 1 : -1] = True
        else:  # answer digits only
            mask[:, start[0] : start[0] + task.n_c] = True
        return Batch(tokens, mask, start, a, b)
    full = task.encode(a, b, "cot")
    k = removal_offsets(n, smoothing, task.cot_len - removed, generator)
    tokens, start = remove_cot(full, task, removed + k)
    t = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    end = start + task.n_c + 1  # index of EOS
    mask = (t >= task.input_len - 1) & (t < end[:, None])
    return Batch(tokens, mask, start, a, b)
