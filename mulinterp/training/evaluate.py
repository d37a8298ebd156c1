"""Evaluation by greedy decoding (never teacher forcing).

The model sees the plain prompt ``a * b SEP ANS`` and writes ``n_c`` digits one at a time,
each conditioned on its own previous outputs.

For square tasks (``n_a == n_b``) every result also splits the problems by whether their
*commuted twin* ``b × a`` is in the training split. On small tasks (2×2 has 8 100 problems) a
model can score well on held-out problems by recalling the twin it was trained on rather than
by multiplying; the twin-held-out row is the stricter test of generalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from torch import Tensor

from mulinterp.arithmetic import to_digits
from mulinterp.task import MulTask


@torch.no_grad()
def greedy_answer(
    forward, task: MulTask, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"], batch_size: int = 2048
) -> Int[Tensor, "batch n_c"]:
    """The digits ``c_0..`` the model writes for each problem (any token id it emits is kept)."""
    outs = []
    for lo in range(0, len(a), batch_size):
        seq = task.prompt(a[lo : lo + batch_size], b[lo : lo + batch_size])
        for _ in range(task.n_c):
            nxt = forward(seq)[:, -1].float().argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
        outs.append(seq[:, -task.n_c :])
    return torch.cat(outs)


@dataclass
class EvalResult:
    exact_match: float
    per_digit: list[float]
    n: int
    source: str = "generated"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"exact_match": self.exact_match, "per_digit": self.per_digit, "n": self.n, "source": self.source,
                **self.extra}


def evaluate(forward, task: MulTask, a: Tensor, b: Tensor, source: str = "generated") -> EvalResult:
    """Exact match and per-digit accuracy (``c_0`` first) of greedy answers."""
    pred = greedy_answer(forward, task, a, b)
    true = to_digits(a.to(torch.int64) * b.to(torch.int64), task.n_c).to(pred.device)
    ok = pred == true
    extra = {}
    if task.n_a == task.n_b:
        twin = task.in_split(b, a, "train").to(ok.device)
        extra["commuted_twin"] = {
            name: {"n": int(sel.sum()), "exact_match": float(ok[sel].all(-1).float().mean()) if sel.any() else None}
            for name, sel in (("in_train", twin), ("held_out", ~twin))
        }
    return EvalResult(
        exact_match=float(ok.all(-1).float().mean()),
        per_digit=[round(float(x), 4) for x in ok.float().mean(0)],
        n=len(a),
        source=source,
        extra=extra,
    )


def evaluate_generated(forward, task: MulTask, n: int, seed: int = 1234, split: str = "test", device="cpu") -> EvalResult:
    """Evaluate on ``n`` fresh problems from a held-out split (default ``test``)."""
    a, b = task.sample(n, split, seed=seed, device=device)
    return evaluate(forward, task, a, b, source=f"{split} split, seed {seed}")


def evaluate_split(forward, task: MulTask, split: str = "test", device="cpu") -> EvalResult:
    """Evaluate on *every* problem of ``split`` (tasks small enough to enumerate, up to 3×3 or so)."""
    a, b = task.enumerate_split(split, device=device)
    return evaluate(forward, task, a, b, source=f"all of the {split} split")
