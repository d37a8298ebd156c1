"""Widen a trained model to a larger d_model without changing what it computes (Net2WiderNet).

Why: a 4×4 ICoT run at d64 reached the stage where c2 must first be computed with no CoT token
holding it after ≈ 45 000 steps, and then sat there (docs/training-runs/campaign.md, sessions 4
and 5). Training a d128 run to the same stage from scratch costs ≈ 8 more CPU hours; widening
the d64 state answers "is the width the wall?" at once, from the same point.

Every dimension of the old model is copied ``f = new / old`` times (``f`` a whole number, the
same for d_model, d_head and d_mlp; the number of layers and heads stays):

- the residual stream ``x' = x[R]`` with ``R(r') = r' mod d``: LayerNorm sees the same mean and
  variance, so its output is the old one, copied;
- every weight that *writes* a copied dimension copies its rows (embeddings, LayerNorm, the
  q/k/v and MLP-in outputs, the attention and MLP outputs);
- every weight that *reads* copied inputs splits each entry over the ``f`` copies with random
  shares that sum to one, so the sum is the old one and the copies get different gradients
  (identical shares would keep the copies identical for ever: no extra width at all);
- q is scaled by ``1/sqrt(f)``: a head's dot product sums ``f`` copies while the attention
  scale ``1/sqrt(d_head)`` falls only by ``sqrt(f)``.

The logits of the widened model equal the old ones up to float rounding (tested). The head
dimensions are copied within each head (head h of the wide model holds copies of head h), so
head numbers mean the same before and after.

**Fresh units** (``fresh=`` a freshly initialised wide model's tensors). A copied MLP neuron
starts as the feature it copies, and so does a copied head dimension: the extra width begins as
what the model already had. With ``fresh`` only the residual stream is copied (LayerNorm needs
it); the extra MLP neurons and the extra dimensions of each head are new random units, added so
that the function is still the same:

- an extra MLP neuron reads the residual with the fresh model's weights and writes nothing
  (its ``mlp.out`` column is zero);
- an extra head dimension gets the fresh model's q and v rows, a zero k row (so no score
  changes) and a zero ``attn.o`` column (so its value is not written);
- the old units keep their weights unsplit, and q's old rows are scaled by ``sqrt(f)``: the dot
  product is the old one while ``1/sqrt(d_head)`` falls by ``sqrt(f)``.

Each zero has a non-zero gradient at once (a k row through the random q, an output column
through the random value or activation), so the new units start learning from the first step.
Why: the 4×4 ICoT run at d64 sat at chance on c3 for 45 000 steps at its 13-left stage
(campaign.md, session 6); whether *new* features, rather than copies of the old, get it
past that is what a fresh widening measures.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from mulinterp.models import ModelSpec

# which axis of each checkpoint tensor is which kind of dimension: "r" residual, "h" head
# dimensions (n_heads · d_head, grouped by head), "m" MLP hidden, "-" left as it is; upper
# case marks the axis a weight *reads* (its entries are split over the copies). Linear
# weights are (out, in), as in the checkpoint; embeddings are (vocab or position, d_model).
_LAYOUT: dict[str, tuple[str, ...]] = {
    "embed.weight": ("-", "r"),
    "pos_embed.weight": ("-", "r"),
    "ln1.weight": ("r",),
    "ln1.bias": ("r",),
    "ln2.weight": ("r",),
    "ln2.bias": ("r",),
    "ln_final.weight": ("r",),
    "ln_final.bias": ("r",),
    "attn.q.weight": ("h", "R"),
    "attn.q.bias": ("h",),
    "attn.k.weight": ("h", "R"),
    "attn.k.bias": ("h",),
    "attn.v.weight": ("h", "R"),
    "attn.v.bias": ("h",),
    "attn.o.weight": ("r", "H"),
    "attn.o.bias": ("r",),
    "mlp.in.weight": ("m", "R"),
    "mlp.in.bias": ("m",),
    "mlp.out.weight": ("r", "M"),
    "mlp.out.bias": ("r",),
    "unembed.weight": ("-", "R"),
    "unembed.bias": ("-",),
}


def widen_factor(old: ModelSpec, new: ModelSpec) -> int:
    """The copy factor from ``old`` to ``new``, or a one-line ValueError saying why there is none."""
    if (old.n_layers, old.n_heads) != (new.n_layers, new.n_heads):
        raise ValueError(
            f"widening keeps layers and heads: {old.n_layers}L{old.n_heads}H cannot become {new.n_layers}L{new.n_heads}H"
        )
    if new.d_model <= old.d_model or new.d_model % old.d_model:
        raise ValueError(
            f"cannot widen d_model {old.d_model} to {new.d_model}: the new width must be a whole multiple (> 1) of the old"
        )
    f = new.d_model // old.d_model
    if new.mlp_width != f * old.mlp_width:
        raise ValueError(f"d_mlp {new.mlp_width} is not {f} × {old.mlp_width}")
    return f


def _copy_index(kind: str, size: int, f: int, d_head: int) -> Tensor:
    """For each index of the widened axis, the old index it copies."""
    new = torch.arange(size * f)
    if kind != "h":
        return new % size
    head, within = new // (d_head * f), new % (d_head * f)
    return head * d_head + within % d_head


def _shares(idx: Tensor, shape: tuple[int, ...], axis: int, generator: torch.Generator) -> Tensor:
    """Random shares for an axis whose entries copy old indices ``idx``: uniform in [0.5, 1.5],
    divided by their sum over the copies of each old index (so they sum to one there)."""
    r = torch.rand(shape, generator=generator) + 0.5
    size = int(idx.max()) + 1
    sums_shape = list(shape)
    sums_shape[axis] = size
    sums = torch.zeros(sums_shape).index_add(axis, idx, r)
    return r / sums.index_select(axis, idx)


def _old_units(kind: str, size: int, f: int, d_head: int) -> Tensor:
    """For each index of a widened head or MLP axis: does it hold an old unit (not a fresh one)?"""
    new = torch.arange(size * f)
    return new % (d_head * f) < d_head if kind == "h" else new < size


def widen_tensor(
    name: str,
    t: Float[Tensor, "..."],
    old: ModelSpec,
    f: int,
    generator: torch.Generator,
    fresh: Float[Tensor, "..."] | None = None,
) -> Float[Tensor, "..."]:
    """One checkpoint tensor (``blocks.0.attn.q.weight``, ``embed.weight`` …) widened ``f``
    times; with ``fresh`` (the same tensor of a freshly initialised wide model) the extra head
    and MLP units are new, not copies (module docstring)."""
    key = name.split(".", 2)[2] if name.startswith("blocks.") else name
    if key not in _LAYOUT:
        raise ValueError(f"cannot widen {name!r}: not a tensor of a mulinterp model")
    kinds = _LAYOUT[key]
    out = t.float()
    index: dict[int, Tensor] = {}
    for axis, kind in enumerate(kinds):
        if kind != "-":
            index[axis] = _copy_index(kind.lower(), out.shape[axis], f, old.d_head)
            out = out.index_select(axis, index[axis])
    for axis, kind in enumerate(kinds):
        if kind == "R" or (kind.isupper() and fresh is None):  # reads copied values: split over the copies
            out = out * _shares(index[axis], tuple(out.shape), axis, generator)
    if fresh is not None:
        if fresh.shape != out.shape:
            raise ValueError(f"fresh tensor {name!r} has shape {tuple(fresh.shape)}, not {tuple(out.shape)}")
        for axis, kind in enumerate(kinds):
            if kind.lower() not in ("h", "m"):
                continue
            new = ~_old_units(kind.lower(), t.shape[axis], f, old.d_head)
            shape = [1] * out.dim()
            shape[axis] = -1
            new = new.view(shape).expand_as(out)
            if kind.isupper() or key.startswith("attn.k."):
                out = out.masked_fill(new, 0.0)  # a fresh unit is not written (o, mlp.out), scores unchanged (k)
            else:
                out = torch.where(new, fresh.float(), out)  # a fresh unit reads with new weights (q, v, mlp.in)
    if key in ("attn.q.weight", "attn.q.bias"):
        if fresh is None:
            out = out / math.sqrt(f)
        else:
            old_rows = _old_units("h", t.shape[0], f, old.d_head).view(-1, *[1] * (out.dim() - 1))
            out = torch.where(old_rows, out * math.sqrt(f), out)
    return out.to(t.dtype).contiguous()


def widen_state_dict(
    state: dict[str, Tensor],
    old: ModelSpec,
    new: ModelSpec,
    seed: int = 0,
    fresh: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """A checkpoint's model tensors (names as in ``model.safetensors``) widened from ``old`` to
    ``new``; ``fresh``: a freshly initialised ``new`` model's tensors, for fresh extra units."""
    f = widen_factor(old, new)
    g = torch.Generator().manual_seed(seed)
    if fresh is not None and set(fresh) != set(state):
        raise ValueError("the fresh model's tensors are not the ones of the model being widened")
    return {k: widen_tensor(k, v, old, f, g, None if fresh is None else fresh[k]) for k, v in sorted(state.items())}


def widen_probe_weight(
    weight: Float[Tensor, "n_c heads d_head"], f: int, generator: torch.Generator, fresh: bool = False
) -> Float[Tensor, "n_c heads wide_d_head"]:
    """An aux probe's weight, which reads each head's ``z``: its d_head axis is copied and split
    (``fresh``: the old dimensions keep their weights and the fresh ones get zero)."""
    d_head = weight.shape[-1]
    if fresh:
        return torch.cat([weight, weight.new_zeros(*weight.shape[:-1], d_head * (f - 1))], dim=-1).contiguous()
    idx = _copy_index("r", d_head, f, d_head)  # within one head: a plain tiling
    out = weight.float().index_select(2, idx)
    return (out * _shares(idx, tuple(out.shape), 2, generator)).to(weight.dtype).contiguous()
