"""The attention DAG: from operand digits through cached timesteps to each answer digit.

**What.** A graph whose nodes are the operand digits ``a_i``, ``b_j``, the *sites*
``(layer, timestep)`` — the residual stream of one answer timestep after one layer — and
the answer digits ``c_k``. An attention edge ``u → L{l}@c{k}`` says that some head of layer
``l`` at the timestep predicting ``c_k`` puts a mean weight ≥ ``threshold`` on ``u``:

* on an operand position → source ``a_i`` / ``b_j``;
* on an earlier timestep ``c_k'`` (layer ≥ 1) → source the site ``L{l-1}@c{k'}``, i.e. what
  that timestep had written by the end of the previous layer;
* on an earlier timestep in the first layer → source the emitted digit ``c_{k'-1}`` (the
  token sitting there; the ``ANS`` token at ``c_0``'s timestep is no node).

Residual edges ``L{l-1}@c{k} → L{l}@c{k}`` and output edges ``L{last}@c{k} → c_k`` close
the graph. Each node and edge is annotated with the partial products ``a_i·b_j`` it
*carries*: a site carries the pair of every pair head (from :mod:`~mulinterp.circuits.heads`)
whose two operand edges made it into the DAG, plus whatever flows in along its edges.

**Why.** The paper's claim (§3.2) is that ICoT's attention edges form a binary-tree-like DAG
that caches pairwise products at early timesteps and retrieves them later — the long-range
dependency SFT never builds. Drawing the graph makes the claim concrete; *knocking it out*
tests it: set exactly those attention weights to zero (renormalising each row, so the head
still reads *something*), decode greedily, and compare with knocking out as many random
edges that are **not** in the DAG (several seeded draws). If the DAG is the circuit, the
first hurts far more than the second. The default control matches the *number* of edges, not
the attention *mass* they carry — DAG edges are heavy by construction (≥ threshold), random ones
light — so :class:`KnockoutResult` reports both masses, and ``control="mass"`` matches the
mass instead: it draws non-DAG edges in proportion to their weight (SEP, self and sink edges
included) until they carry as much mean attention as the DAG's edges.

**Intuition.** Mean attention over problems is a coarse summary: a head that attends to
``a_{i}`` only when ``b_j`` is large averages to a weak edge. The threshold trades
completeness for readability; the knockout is the check on whether what is left matters.

Example::

    >>> table = head_table(m, n=256)                                       # doctest: +SKIP
    >>> dag = build_dag(table, threshold=0.25)                              # doctest: +SKIP
    >>> res = knockout(m, dag, n=256)                                       # doctest: +SKIP
    >>> res.clean.exact_match, res.dag.exact_match, [r.exact_match for r in res.random]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from mulinterp.circuits.heads import HeadTable
from mulinterp.circuits.problems import draw_problems
from mulinterp.evaluation import EvalResult, greedy_answer, score
from mulinterp.models import MulModel
from mulinterp.task import MulTask

Pair = tuple[int, int]
EdgeKey = tuple[int, int, int, int]  # (layer, head, query position, key position), 0-based


@dataclass(frozen=True)
class Node:
    id: str  # "a1", "b0", "L1@c2" (paper numbering), "c2"
    kind: Literal["operand", "site", "output"]
    layer: int | None  # 0-based, sites only
    index: int  # digit index i / j / k; for a site, the timestep k
    carries: tuple[Pair, ...] = ()

    def to_dict(self, one_based: bool = True) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "layer": None if self.layer is None else self.layer + (1 if one_based else 0),
            "index": self.index,
            "carries": [list(p) for p in self.carries],
        }


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: Literal["attention", "residual", "output"]
    layer: int | None = None  # attention edges: 0-based layer and head
    head: int | None = None
    query_pos: int | None = None
    key_pos: int | None = None
    weight: float | None = None  # mean attention weight
    carries: tuple[Pair, ...] = ()

    @property
    def key(self) -> EdgeKey:
        assert self.kind == "attention"
        return (self.layer, self.head, self.query_pos, self.key_pos)  # type: ignore[return-value]

    def to_dict(self, one_based: bool = True) -> dict:
        off = 1 if one_based else 0
        d = {
            "source": self.source,
            "target": self.target,
            "kind": self.kind,
            "carries": [list(p) for p in self.carries],
        }
        if self.kind == "attention":
            d.update(
                layer=self.layer + off,
                head=self.head + off,
                query_pos=self.query_pos,
                key_pos=self.key_pos,
                weight=round(float(self.weight), 4),
            )
        return d


@dataclass
class AttentionDAG:
    nodes: list[Node]
    edges: list[Edge]
    threshold: float
    task: MulTask
    n_layers: int
    n_heads: int
    pattern: Tensor | None = None  # the mean attention [layer, head, query, key] it was read from

    def attention_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.kind == "attention"]

    def edge_keys(self) -> set[EdgeKey]:
        """``(layer, head, query_pos, key_pos)`` of every attention edge — what a knockout cuts."""
        return {e.key for e in self.attention_edges()}

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def to_dict(self, one_based: bool = True) -> dict:
        return {
            "nodes": [n.to_dict(one_based) for n in self.nodes],
            "edges": [e.to_dict(one_based) for e in self.edges],
            "threshold": self.threshold,
        }

    def to_networkx(self):
        """A ``networkx.MultiDiGraph`` (parallel edges = several heads between the same nodes)."""
        import networkx as nx

        g = nx.MultiDiGraph(threshold=self.threshold, task=self.task.name)
        for n in self.nodes:
            g.add_node(n.id, kind=n.kind, layer=n.layer, index=n.index, carries=list(n.carries))
        for e in self.edges:
            g.add_edge(
                e.source,
                e.target,
                kind=e.kind,
                layer=e.layer,
                head=e.head,
                query_pos=e.query_pos,
                key_pos=e.key_pos,
                weight=e.weight,
                carries=list(e.carries),
            )
        return g


def site_id(layer: int, k: int) -> str:
    """0-based layer → paper label: ``site_id(0, 2) == "L1@c2"``."""
    return f"L{layer + 1}@c{k}"


def eligible_keys(task: MulTask, layer: int, k: int) -> dict[int, str]:
    """Key positions a layer-``layer`` head at timestep ``c_k`` can read that are DAG nodes,
    mapped to the source node id (see the module docstring)."""
    keys = {task.a_position(i): f"a{i}" for i in range(task.n_a)}
    keys.update({task.b_position(j): f"b{j}" for j in range(task.n_b)})
    start = task.answer_start("plain")
    for kp in range(k):
        if layer >= 1:
            keys[start + kp] = site_id(layer - 1, kp)
        elif kp >= 1:
            keys[start + kp] = f"c{kp - 1}"  # the emitted digit sitting at that position
    return keys


def build_dag(table: HeadTable, threshold: float = 0.25) -> AttentionDAG:
    """Attention edges with mean weight ≥ ``threshold`` among operand / site / output nodes."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    att = table.attention
    task, n_layers, n_heads = att.task, att.n_layers, att.n_heads
    start = att.answer_start
    nodes: dict[str, Node] = {}
    for i in range(task.n_a):
        nodes[f"a{i}"] = Node(f"a{i}", "operand", None, i)
    for j in range(task.n_b):
        nodes[f"b{j}"] = Node(f"b{j}", "operand", None, j)

    edges: list[Edge] = []
    carries: dict[str, set[Pair]] = {}
    pair_of = {(r.layer, r.head, r.position): r.pair for r in table.rows if r.role == "pair"}
    for layer in range(n_layers):  # layer by layer, so every source's carries are known
        for k in range(task.n_c):
            target = site_id(layer, k)
            mine: set[Pair] = set(carries.get(site_id(layer - 1, k), set())) if layer else set()
            incoming: list[Edge] = []
            keys = eligible_keys(task, layer, k)
            for head in range(n_heads):
                row = att.pattern[layer, head, start + k]
                hits = {p: src for p, src in keys.items() if float(row[p]) >= threshold}
                pair = pair_of.get((layer, head, k))
                if pair and {task.a_position(pair[0]), task.b_position(pair[1])} <= set(hits):
                    mine.add(pair)
                for p, src in sorted(hits.items()):
                    if src.startswith(("a", "b")):
                        via = (pair,) if pair and src in (f"a{pair[0]}", f"b{pair[1]}") else ()
                    else:
                        via = tuple(sorted(carries.get(src, set())))
                    mine.update(via)
                    incoming.append(Edge(src, target, "attention", layer, head, start + k, p, float(row[p]), via))
            carries[target] = mine
            nodes[target] = Node(target, "site", layer, k, tuple(sorted(mine)))
            if layer:
                prev = site_id(layer - 1, k)
                edges.append(Edge(prev, target, "residual", carries=tuple(sorted(carries[prev]))))
            edges.extend(incoming)
    last = n_layers - 1
    for k in range(task.n_c):
        src = site_id(last, k)
        nodes[f"c{k}"] = Node(f"c{k}", "output", None, k, tuple(sorted(carries[src])))
        edges.append(Edge(src, f"c{k}", "output", carries=tuple(sorted(carries[src]))))
    return AttentionDAG(list(nodes.values()), edges, threshold, task, n_layers, n_heads, att.pattern)


# ---------------------------------------------------------------------------------------
# causal check: attention knockout


def knockout_forward(m: MulModel, edges: list[EdgeKey]):
    """A ``forward(tokens) -> logits`` that runs ``m`` with these attention edges cut.

    Greedy decoding calls it on growing prefixes, so each call cuts only the edges whose
    query lies inside the prefix.
    """
    from mulinterp.hooks import attach, knockout_edges

    by_layer: dict[int, list[tuple[int, int, int]]] = {}
    for layer, head, q, p in edges:
        by_layer.setdefault(layer, []).append((head, q, p))

    def forward(tokens: Tensor) -> Tensor:
        seq = tokens.shape[1]
        hooks = [knockout_edges(layer, [e for e in es if e[1] < seq]) for layer, es in by_layer.items()]
        with attach(m.model, hooks):
            return m.model(tokens)

    return forward


def candidate_edges(task: MulTask, n_layers: int, n_heads: int) -> list[EdgeKey]:
    """Every attention edge a DAG could contain (answer-timestep queries, node keys)."""
    start = task.answer_start("plain")
    return [
        (layer, head, start + k, p)
        for layer in range(n_layers)
        for head in range(n_heads)
        for k in range(task.n_c)
        for p in eligible_keys(task, layer, k)
    ]


@dataclass
class KnockoutResult:
    """Greedy accuracy clean, with the DAG's edges cut, and with as many random non-DAG edges cut.

    ``*_agreement`` is the fraction of problems whose greedy answer is unchanged from the
    clean run — meaningful even when the model is mostly wrong.
    """

    clean: EvalResult
    dag: EvalResult
    random: list[EvalResult]
    n_edges: int
    dag_agreement: float
    random_agreement: list[float]
    dag_mass: float | None = None  # Σ mean attention weight of the cut edges
    random_mass: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "clean": self.clean.exact_match,
            "dag": self.dag.exact_match,
            "random": [r.exact_match for r in self.random],
            "n_edges": self.n_edges,
            "clean_per_digit": self.clean.per_digit,
            "dag_per_digit": self.dag.per_digit,
            "random_per_digit": [r.per_digit for r in self.random],
            "dag_agreement": round(self.dag_agreement, 4),
            "random_agreement": [round(x, 4) for x in self.random_agreement],
            "dag_mass": None if self.dag_mass is None else round(self.dag_mass, 4),
            "random_mass": [round(x, 4) for x in self.random_mass],
            "n": self.clean.n,
        }


def control_edges(dag: AttentionDAG, n_draws: int, seed: int = 0, control: str = "count") -> list[list[EdgeKey]]:
    """``n_draws`` seeded sets of non-DAG edges to cut as a control for cutting the DAG.

    ``control="count"``: as many edges as the DAG has attention edges, uniformly among the
    candidate edges (:func:`candidate_edges`) not in the DAG — equal in number, but light,
    since everything heavy is in the DAG.
    ``control="mass"``: equal in attention mass. Among *all* causal edges from answer
    timesteps not in the DAG (keys that are no node included: ``SEP``, ``*``, the timestep
    itself), drawn without replacement with probability proportional to their mean weight,
    until the drawn edges' summed mean weight reaches the DAG edges' (the last edge drawn
    crosses it; the whole pool if it carries less). The harder control: heavy edges that are
    not the DAG, as much attention removed as the DAG cut removes.
    """
    in_dag = dag.edge_keys()
    k = len(in_dag)
    gen = torch.Generator().manual_seed(seed)
    if control == "count":
        pool = [e for e in candidate_edges(dag.task, dag.n_layers, dag.n_heads) if e not in in_dag]
        return [[pool[i] for i in torch.randperm(len(pool), generator=gen)[:k].tolist()] for _ in range(n_draws)]
    if control != "mass":
        raise ValueError(f"control must be 'count' or 'mass', got {control!r}")
    if dag.pattern is None:
        raise ValueError("a mass-matched control needs the DAG's attention pattern (build it with build_dag)")
    start = dag.task.answer_start("plain")
    pool = [
        (l, h, start + kk, p)
        for l in range(dag.n_layers)
        for h in range(dag.n_heads)
        for kk in range(dag.task.n_c)
        for p in range(start + kk + 1)
        if (l, h, start + kk, p) not in in_dag
    ]
    if k == 0 or not pool:  # a DAG without attention edges: nothing to match
        return [[] for _ in range(n_draws)]
    target = sum(float(dag.pattern[e]) for e in in_dag)
    weight = torch.tensor([float(dag.pattern[e]) for e in pool]).clamp_min(1e-12)
    draws = []
    for _ in range(n_draws):
        order = torch.multinomial(weight, len(pool), replacement=False, generator=gen)  # a weighted shuffle
        reached = torch.cumsum(weight[order], 0) >= target
        n_cut = int(reached.float().argmax()) + 1 if bool(reached.any()) else len(pool)
        draws.append([pool[i] for i in order[:n_cut].tolist()])
    return draws


@torch.no_grad()
def knockout(
    m: MulModel,
    dag: AttentionDAG,
    a: Tensor | None = None,
    b: Tensor | None = None,
    n: int = 64,
    seed: int = 0,
    split: str = "test",
    n_random: int = 3,
    control: str = "count",
) -> KnockoutResult:
    """Cut the DAG's attention edges (and, as control, ``n_random`` draws of as many non-DAG
    edges, see :func:`control_edges`, seeded by ``seed``) and decode greedily."""
    task = m.task
    a, b = draw_problems(task, a, b, n, split, seed)
    true = task.true_answer(a, b)
    dag_edges = sorted(dag.edge_keys())
    draws = control_edges(dag, n_random, seed, control)

    clean_pred = greedy_answer(lambda x: m.model(x), task, a, b)
    dag_pred = greedy_answer(knockout_forward(m, dag_edges), task, a, b)
    rand_preds = [greedy_answer(knockout_forward(m, d), task, a, b) for d in draws]

    def agree(pred: Tensor) -> float:
        return float((pred == clean_pred).all(-1).float().mean())

    def mass(edges: list[EdgeKey]) -> float | None:
        # random edges are below threshold by construction, so they remove far less attention
        if dag.pattern is None:
            return None
        return float(sum(dag.pattern[e] for e in edges)) if edges else 0.0

    return KnockoutResult(
        clean=score(clean_pred, true, "clean"),
        dag=score(dag_pred, true, f"{len(dag_edges)} DAG edges cut"),
        random=[
            score(p, true, f"{len(d)} random non-DAG edges cut ({control} control)") for p, d in zip(rand_preds, draws)
        ],
        n_edges=len(dag_edges),
        dag_agreement=agree(dag_pred),
        random_agreement=[agree(p) for p in rand_preds],
        dag_mass=mass(dag_edges),
        random_mass=[m_ for m_ in (mass(d) for d in draws) if m_ is not None],
        extra={"random_edges": draws, "control": control},
    )


__all__ = [
    "Node",
    "Edge",
    "AttentionDAG",
    "KnockoutResult",
    "build_dag",
    "knockout",
    "knockout_forward",
    "candidate_edges",
    "control_edges",
    "eligible_keys",
    "site_id",
]
