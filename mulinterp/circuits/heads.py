"""Which attention heads cache partial products, and which retrieve them.

**What.** For every head and every answer timestep we ask *where the head looks*: the mean
attention weight (over many problems) on each operand digit ``a_i``, ``b_j`` and on each
earlier answer timestep. A timestep is named by the digit it *predicts*: the query at
``answer_start + k`` is "timestep c_k".

**Why.** The paper's mechanism (§3.2) is a two-step attention circuit. In the first layer a
head at timestep ``c_k`` attends sharply to one *pair* of operand digits ``(a_i, b_j)`` and
writes information about their product into that timestep's residual stream — it *caches*
``a_i·b_j`` there. In the second layer a head at a later timestep attends to those earlier
timesteps and *retrieves* the cached pairs it needs for the running sum ``ĉ_k``. Reading the
attention statistics is the cheapest way to find candidate heads; :mod:`mulinterp.circuits.dag`
then tests them causally.

**Intuition.** Attention weights say where information *can* come from, not that it is used:
a head may look at ``a_1`` and ``b_1`` and still write nothing useful. So this module only
*classifies* heads by their attention; knockouts decide whether the classification matters.

Each ``(layer, head, timestep)`` gets one role:

* ``"pair"`` — most of its mass sits on one ``a_i`` plus one ``b_j`` (each ≥ ``min_weight``,
  together ≥ ``min_mass``). ``score`` is the mass on the pair (1.0 = perfectly sharp).
* ``"retrieve"`` — a layer ≥ 1 head with ≥ ``min_mass`` on *earlier* answer timesteps;
  ``targets`` names them (``"c1"`` = the timestep that predicts ``c_1``).
* ``"operand"`` — ≥ ``min_mass`` on operand digits, but not concentrated on one pair.
* ``"other"`` — none of these; ``targets`` lists where its mass does go (``"SEP"``,
  ``"self"`` …). "Attends to nothing interpretable" is a finding, not an error.

Example::

    >>> from mulinterp.models import load_pretrained                     # doctest: +SKIP
    >>> table = head_table(load_pretrained("aux-4x4"), n=1000)            # doctest: +SKIP
    >>> [r.label for r in table.pairs() if r.position == 2]                # doctest: +SKIP
    ['L1H4@c2 a1·b1', 'L1H1@c2 a0·b2', 'L1H3@c2 a2·b0']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from mulinterp.circuits.problems import draw_problems
from mulinterp.hooks import hook_name
from mulinterp.models import MulModel
from mulinterp.task import MulTask

Role = Literal["pair", "retrieve", "operand", "other"]


@dataclass
class TimestepAttention:
    """Mean attention patterns of every head, over ``n`` problems (teacher-forced inputs).

    ``pattern[l, h, q, p]`` is head ``h`` of layer ``l``'s mean weight from query ``q`` to key
    ``p`` over the input ``task.encode(a, b)[:, :-1]`` (the true answer digits in context).
    """

    pattern: Float[Tensor, "layer head query key"]
    task: MulTask
    n: int

    @property
    def n_layers(self) -> int:
        return self.pattern.shape[0]

    @property
    def n_heads(self) -> int:
        return self.pattern.shape[1]

    @property
    def answer_start(self) -> int:
        return self.task.answer_start("plain")

    @property
    def answer(self) -> Float[Tensor, "layer head n_c key"]:
        """Rows of the answer timesteps: ``answer[..., k, :]`` is the query predicting ``c_k``."""
        start = self.answer_start
        return self.pattern[:, :, start : start + self.task.n_c]

    @property
    def a_mass(self) -> Float[Tensor, "layer head n_c n_a"]:
        lo = self.task.a_position(0)
        return self.answer[..., lo : lo + self.task.n_a]

    @property
    def b_mass(self) -> Float[Tensor, "layer head n_c n_b"]:
        lo = self.task.b_position(0)
        return self.answer[..., lo : lo + self.task.n_b]

    @property
    def prev_mass(self) -> Float[Tensor, "layer head n_c n_c"]:
        """Mass from timestep ``c_k`` on each strictly earlier timestep ``c_k'`` (zero for k' ≥ k)."""
        start, n_c = self.answer_start, self.task.n_c
        block = self.answer[..., start : start + n_c]
        return block * torch.ones(n_c, n_c).tril(-1)

    def key_names(self) -> list[str]:
        """Name of each key position from the viewpoint of the DAG: operand digits by digit,
        answer positions by the timestep (predicted digit) they are, other tokens by token."""
        labels = self.task.token_labels("plain")[: self.pattern.shape[-1]]
        start = self.answer_start
        return [f"c{p - start}" if p >= start else lab for p, lab in enumerate(labels)]


@torch.no_grad()
def attention_by_timestep(
    m: MulModel,
    a: Tensor | None = None,
    b: Tensor | None = None,
    n: int = 256,
    seed: int = 0,
    split: str = "test",
    batch_size: int = 1024,
) -> TimestepAttention:
    """Mean attention pattern of every head over ``n`` problems, in one batched pass.

    Problems are ``(a, b)`` if given, else ``n`` drawn from ``split`` with ``seed``. Only the
    ``hook_pattern`` activations are cached (``names_filter``), and the batch mean is taken
    on the fly, so memory stays at one batch of patterns.
    """
    task = m.task
    a, b = draw_problems(task, a, b, n, split, seed)
    tokens = task.encode(a, b, "plain")[:, :-1]
    device = m.device
    names = [hook_name("pattern", layer) for layer in range(m.n_layers)]
    total = None
    for lo in range(0, len(tokens), batch_size):
        _, cache = m.model.run_with_cache(
            tokens[lo : lo + batch_size].to(device), names_filter=lambda name: name in names
        )
        summed = torch.stack([cache[name].float().sum(0) for name in names]).cpu()
        total = summed if total is None else total + summed
    assert total is not None, "no problems given"
    return TimestepAttention(pattern=total / len(tokens), task=task, n=len(tokens))


@dataclass(frozen=True)
class HeadRow:
    """One ``(layer, head, timestep)`` of the head table (0-based layer and head)."""

    layer: int
    head: int
    position: int  # k: this is the timestep that predicts c_k
    role: Role
    targets: tuple[str, ...]  # ("a1", "b2") for a pair; ("c0", "c1") timesteps for a retrieve
    weights: tuple[float, ...]  # mean attention weight on each target
    score: float  # pair: mass on the pair; retrieve: mass on earlier timesteps; else top mass
    pair: tuple[int, int] | None = None  # (i, j) of a pair head

    @property
    def label(self) -> str:
        """Paper-style label, 1-based: ``L1H3@c2 a1·b1``."""
        what = f" a{self.pair[0]}·b{self.pair[1]}" if self.pair else ""
        return f"L{self.layer + 1}H{self.head + 1}@c{self.position}{what}"

    def to_dict(self, one_based: bool = True) -> dict:
        off = 1 if one_based else 0
        return {
            "layer": self.layer + off,
            "head": self.head + off,
            "position": self.position,
            "role": self.role,
            "targets": list(self.targets),
            "weights": [round(w, 4) for w in self.weights],
            "score": round(self.score, 4),
        }


@dataclass
class HeadTable:
    """The tidy head table (``rows``) and the attention statistics it was read from."""

    rows: list[HeadRow]
    attention: TimestepAttention
    min_mass: float
    min_weight: float

    def pairs(self) -> list[HeadRow]:
        """Pair rows, sharpest first."""
        return sorted((r for r in self.rows if r.role == "pair"), key=lambda r: -r.score)

    def retrieves(self) -> list[HeadRow]:
        return sorted((r for r in self.rows if r.role == "retrieve"), key=lambda r: -r.score)

    def select(self, layer: int | None = None, head: int | None = None) -> list[HeadRow]:
        return [r for r in self.rows if (layer is None or r.layer == layer) and (head is None or r.head == head)]

    def to_records(self, one_based: bool = True) -> list[dict]:
        return [r.to_dict(one_based) for r in self.rows]


def classify_heads(att: TimestepAttention, min_mass: float = 0.5, min_weight: float = 0.1) -> list[HeadRow]:
    """Give each ``(layer, head, timestep)`` a role from its mean attention (see module doc)."""
    if not 0 < min_weight <= min_mass <= 1:
        raise ValueError(f"need 0 < min_weight ≤ min_mass ≤ 1, got min_weight={min_weight}, min_mass={min_mass}")
    task = att.task
    names = att.key_names()
    w_a, i_best = att.a_mass.max(-1)  # [layer head n_c]
    w_b, j_best = att.b_mass.max(-1)
    operand_mass = att.a_mass.sum(-1) + att.b_mass.sum(-1)
    prev, prev_total = att.prev_mass, att.prev_mass.sum(-1)
    start = att.answer_start
    rows: list[HeadRow] = []
    for layer in range(att.n_layers):
        for head in range(att.n_heads):
            for k in range(task.n_c):
                wa, wb = float(w_a[layer, head, k]), float(w_b[layer, head, k])
                if wa >= min_weight and wb >= min_weight and wa + wb >= min_mass:
                    i, j = int(i_best[layer, head, k]), int(j_best[layer, head, k])
                    rows.append(HeadRow(layer, head, k, "pair", (f"a{i}", f"b{j}"), (wa, wb), wa + wb, (i, j)))
                    continue
                if layer >= 1 and float(prev_total[layer, head, k]) >= min_mass:
                    w = prev[layer, head, k]
                    order = [int(p) for p in torch.argsort(w, descending=True) if float(w[p]) >= min_weight]
                    rows.append(
                        HeadRow(
                            layer,
                            head,
                            k,
                            "retrieve",
                            tuple(f"c{p}" for p in order),
                            tuple(float(w[p]) for p in order),
                            float(prev_total[layer, head, k]),
                        )
                    )
                    continue
                row = att.answer[layer, head, k]
                order = [int(p) for p in torch.argsort(row, descending=True) if float(row[p]) >= min_weight]
                targets = tuple("self" if p == start + k else names[p] for p in order)
                weights = tuple(float(row[p]) for p in order)
                if float(operand_mass[layer, head, k]) >= min_mass:
                    ops = [p for p in order if p in task.operand_positions]
                    rows.append(
                        HeadRow(
                            layer,
                            head,
                            k,
                            "operand",
                            tuple(names[p] for p in ops),
                            tuple(float(row[p]) for p in ops),
                            float(operand_mass[layer, head, k]),
                        )
                    )
                else:
                    rows.append(HeadRow(layer, head, k, "other", targets, weights, float(row.max())))
    return rows


def head_table(
    m: MulModel,
    n: int = 256,
    seed: int = 0,
    split: str = "test",
    min_mass: float = 0.5,
    min_weight: float = 0.1,
    a: Tensor | None = None,
    b: Tensor | None = None,
) -> HeadTable:
    """The module's entry point: attention statistics over ``n`` problems, then roles.

    >>> table = head_table(m, n=1000)  # m = load_pretrained("aux-4x4")    # doctest: +SKIP
    >>> table.pairs()[0].to_dict()                                         # doctest: +SKIP
    {'layer': 1, 'head': 2, 'position': 6, 'role': 'pair', 'targets': ['a3', 'b3'], ...}
    """
    att = attention_by_timestep(m, a, b, n=n, seed=seed, split=split)
    return HeadTable(classify_heads(att, min_mass, min_weight), att, min_mass, min_weight)


__all__ = [
    "TimestepAttention",
    "HeadRow",
    "HeadTable",
    "attention_by_timestep",
    "classify_heads",
    "head_table",
]
