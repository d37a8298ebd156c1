"""Evaluation by greedy decoding (never teacher forcing): exact match and per-digit accuracy.

Used by training (validation during a run, promotion of campaign checkpoints), by the
analyses (the DAG knockout decodes with edges cut) and by the CLI, figures and notebooks —
so it lives beside :mod:`mulinterp.task` and :mod:`mulinterp.models`, not inside training.

The model sees the plain prompt ``a * b SEP ANS`` and writes ``n_c`` digits one at a time,
each conditioned on its own previous outputs. :func:`score` turns predicted and true digits
into an :class:`EvalResult`; it is the one place where "exact match" is defined.

For square tasks (``n_a == n_b``) :func:`evaluate` also splits the problems by whether their
*commuted twin* ``b × a`` is in the training split. On small tasks (2×2 has 8 100 problems) a
model can score well on held-out problems by recalling the twin it was trained on rather than
by multiplying; the twin-held-out row is the stricter test of generalisation.

Example::

    >>> from mulinterp.models import load_pretrained                     # doctest: +SKIP
    >>> m = load_pretrained("icot-4x4")                                   # doctest: +SKIP
    >>> evaluate_generated(m.model, m.task, 500, seed=1).exact_match      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mulinterp.task import MulTask

Forward = Callable[[Int[Tensor, "batch seq"]], Float[Tensor, "batch seq vocab"]]
"""Anything that maps tokens to logits: a bridge, or a wrapper that runs it with hooks."""


@torch.no_grad()
def greedy_answer(
    forward: Forward, task: MulTask, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"], batch_size: int = 2048
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
    per_digit: list[float]  # accuracy at c_0, c_1, … (least significant first)
    n: int
    source: str = "generated"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "exact_match": self.exact_match,
            "per_digit": self.per_digit,
            "n": self.n,
            "source": self.source,
            **self.extra,
        }


def score(pred: Int[Tensor, "batch n_c"], true: Int[Tensor, "batch n_c"], source: str = "generated") -> EvalResult:
    """Exact match (every digit right) and per-digit accuracy of predicted answer digits."""
    ok = pred == true.to(pred.device)
    return EvalResult(
        exact_match=float(ok.all(-1).float().mean()),
        per_digit=[round(float(x), 4) for x in ok.float().mean(0)],
        n=len(pred),
        source=source,
    )


def evaluate(
    forward: Forward, task: MulTask, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"], source: str = "generated"
) -> EvalResult:
    """Exact match and per-digit accuracy (``c_0`` first) of greedy answers."""
    pred = greedy_answer(forward, task, a, b)
    true = task.true_answer(a, b).to(pred.device)
    res = score(pred, true, source)
    if task.n_a == task.n_b:
        ok = (pred == true).all(-1)
        twin = task.in_split(b, a, "train").to(ok.device)
        res.extra["commuted_twin"] = {
            name: {"n": int(sel.sum()), "exact_match": float(ok[sel].float().mean()) if sel.any() else None}
            for name, sel in (("in_train", twin), ("held_out", ~twin))
        }
    return res


def evaluate_generated(
    forward: Forward, task: MulTask, n: int, seed: int = 1234, split: str = "test", device: str | torch.device = "cpu"
) -> EvalResult:
    """Evaluate on ``n`` fresh problems from a held-out split (default ``test``)."""
    a, b = task.sample(n, split, seed=seed, device=device)
    return evaluate(forward, task, a, b, source=f"{split} split, seed {seed}")


def evaluate_split(
    forward: Forward, task: MulTask, split: str = "test", device: str | torch.device = "cpu"
) -> EvalResult:
    """Evaluate on *every* problem of ``split`` (tasks small enough to enumerate, up to 3×3 or so)."""
    a, b = task.enumerate_split(split, device=device)
    return evaluate(forward, task, a, b, source=f"all of the {split} split")


__all__ = ["Forward", "EvalResult", "greedy_answer", "score", "evaluate", "evaluate_generated", "evaluate_split"]
