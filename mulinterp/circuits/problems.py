"""The problems every analysis runs on: drawing them, naming their digits, corrupting one.

An analysis asks three things of its problems, and they are answered here once:

* **which problems** — :func:`draw_problems`: the operands the caller gave (checked against
  the task), or ``n`` seeded draws from a split;
* **what the digits are called** — :func:`operand_digits` (``a0 … b0 …``, the rows of an
  attribution matrix), :func:`answer_digits` (``c0 …``), :func:`parse_operand_digit` for
  user input, :func:`digit_position` for the token an operand digit sits on;
* **what a minimal change looks like** — :func:`corrupt_digit` replaces one operand digit by
  another, so a clean and a corrupted run differ in exactly one token (attribution, patching);
  :func:`answer_logits` reads the model's logits where it predicts the answer digits.

What belongs to the task itself — token positions, teacher-forced sequences, the true answer
digits, operand checks — is on :class:`~mulinterp.task.MulTask`
(:meth:`~mulinterp.task.MulTask.teacher_forced`, :meth:`~mulinterp.task.MulTask.true_answer`,
:meth:`~mulinterp.task.MulTask.answer_position` …).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mulinterp.arithmetic import from_digits, to_digits
from mulinterp.evaluation import Forward
from mulinterp.task import MulTask


def operand_digits(task: MulTask) -> list[str]:
    """Names of the operand digits in token order: ``['a0', …, 'a{n_a-1}', 'b0', …]``."""
    return [f"a{i}" for i in range(task.n_a)] + [f"b{j}" for j in range(task.n_b)]


def answer_digits(task: MulTask) -> list[str]:
    """``['c0', …, 'c{n_c-1}']``."""
    return [f"c{k}" for k in range(task.n_c)]


def digit_position(task: MulTask, index: int) -> int:
    """Token position of operand digit number ``index`` (in :func:`operand_digits` order)."""
    return task.operand_positions[index]


def parse_operand_digit(task: MulTask, spec: str) -> int:
    """``"a1"`` → its index in :func:`operand_digits` (``ValueError`` naming the valid range)."""
    s = str(spec).strip().lower()
    names = operand_digits(task)
    if s in names:
        return names.index(s)
    if len(s) >= 2 and s[0] in "ab" and s[1:].isdigit():
        n = task.n_a if s[0] == "a" else task.n_b
        raise ValueError(
            f"operand digit {spec!r} is out of range for the {task.name} task: {s[0]} has digits {s[0]}0–{s[0]}{n - 1}"
        )
    raise ValueError(f"unknown operand digit {spec!r}: use a0–a{task.n_a - 1} or b0–b{task.n_b - 1}")


def draw_problems(
    task: MulTask, a: Int[Tensor, " n"] | None, b: Int[Tensor, " n"] | None, n: int, split: str, seed: int
) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"]]:
    """The given operands (checked against the task), or ``n`` fresh ones from ``split``."""
    if a is None or b is None:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        a, b = task.sample(n, split, seed=seed)
    task.check_operands(a, b)
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


@torch.no_grad()
def answer_logits(
    model: Forward, tokens: Int[Tensor, "batch seq"], task: MulTask, batch_size: int = 2048
) -> Float[Tensor, "batch n_c vocab"]:
    """Logits at the positions predicting ``c_0 … c_{n_c-1}``, in chunks of ``batch_size``."""
    pos = task.answer_positions().to(tokens.device)
    return torch.cat([model(tokens[i : i + batch_size])[:, pos] for i in range(0, len(tokens), batch_size)])


__all__ = [
    "operand_digits",
    "answer_digits",
    "digit_position",
    "parse_operand_digit",
    "draw_problems",
    "corrupt_digit",
    "answer_logits",
]
