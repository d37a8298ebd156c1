"""Hook factories: each returns a ``(hook_name, fn)`` pair ready for :func:`attach`.

Where an edit lands depends on the hook point's layout (TransformerLens's shapes):

=============================================  ==========================  ========  ========
hook point                                     shape                       head dim  pos dim
=============================================  ==========================  ========  ========
``attn.hook_z`` / ``hook_q`` / ``hook_k`` /    ``[batch, pos, head, d]``   2         1
``hook_v`` / ``hook_result``
``attn.hook_pattern`` / ``hook_attn_scores``   ``[batch, head, q, k]``     1         2 (query)
everything else (``hook_resid_pre`` …)         ``[batch, pos, d]``         —         1
=============================================  ==========================  ========  ========

``positions`` may be an int, a list of ints, a slice or an integer tensor; ``head`` an int.
The functions never edit an activation in place (they return an edited copy), so they are safe
under autograd and never change a tensor someone else recorded.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mulinterp.hooks.context import HookFn
from mulinterp.hooks.names import hook_name

Positions = int | Sequence[int] | slice | Int[Tensor, " n"] | None

_HEAD_DIM2 = (
    "attn.hook_z",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_result",
    "attn.q.hook_out",
    "attn.k.hook_out",
    "attn.v.hook_out",
    "attn.o.hook_in",
)
_HEAD_DIM1 = ("attn.hook_pattern", "attn.hook_attn_scores")


def _layout(name: str) -> tuple[int, int | None]:
    """``(pos_dim, head_dim)`` of the activation at hook point ``name``."""
    if name.endswith(_HEAD_DIM1):
        return 2, 1
    if name.endswith(_HEAD_DIM2):
        return 1, 2
    return 1, None


def _check_index(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an int (0-based), got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be ≥ 0 (indices are 0-based, negatives are not allowed), got {value}")


def _check_positions(positions: Positions) -> None:
    if positions is None or isinstance(positions, slice):
        return
    if isinstance(positions, Tensor):
        if positions.dtype == torch.bool or positions.is_floating_point():
            raise ValueError("positions must be an integer tensor of indices, not a mask or floats")
        if positions.numel() and int(positions.min()) < 0:
            raise ValueError(f"positions must be ≥ 0, got {positions.tolist()}")
        return
    for p in [positions] if isinstance(positions, numbers.Integral) else positions:
        _check_index(p, "position")


def _index(name: str, act: Tensor, head: int | None, positions: Positions) -> tuple[Any, ...]:
    """The index tuple that selects ``head`` / ``positions`` of ``act`` (range-checked)."""
    pos_dim, head_dim = _layout(name)
    idx: list[Any] = [slice(None)] * act.ndim
    if head is not None:
        if head_dim is None:
            raise ValueError(
                f"head= only applies to per-head hook points (attn.hook_z, attn.hook_pattern …), not {name!r}"
            )
        n_heads = act.shape[head_dim]
        if head >= n_heads:
            raise ValueError(f"head {head} is out of range for {name!r}: this model has heads 0–{n_heads - 1}")
        idx[head_dim] = slice(head, head + 1)  # a slice keeps the dim, so both sides of an assignment line up
    if positions is not None:
        n_pos = act.shape[pos_dim]
        if isinstance(positions, numbers.Integral):
            positions = int(positions)
            pos: Any = slice(positions, positions + 1)
            top = positions
        elif isinstance(positions, slice):
            pos, top = positions, None
        else:
            pos = torch.as_tensor(positions, dtype=torch.long, device=act.device)
            top = int(pos.max()) if pos.numel() else None
        if top is not None and top >= n_pos:
            raise ValueError(f"position {top} is out of range for {name!r}: the sequence has positions 0–{n_pos - 1}")
        idx[pos_dim] = pos
    return tuple(idx)


def _replace(name: str, head: int | None, positions: Positions, value_of) -> HookFn:
    """A hook that replaces the selected part of the activation by ``value_of(act)``'s part."""

    def hook(act: Float[Tensor, "batch ..."], hook: Any) -> Float[Tensor, "batch ..."]:
        value = value_of(act)
        if head is None and positions is None:
            return value.clone()  # a fresh tensor: never hand the model (an expanded view of) the caller's cache
        idx = _index(name, act, head, positions)
        out = act.clone()
        out[idx] = value[idx]
        return out

    return hook


def zero_ablate(name: str, head: int | None = None, positions: Positions = None) -> tuple[str, HookFn]:
    """Set the activation at ``name`` to zero — all of it, or one head and/or some positions.

    Zero ablation asks "what if this component wrote nothing?". It is blunt (zero may be far
    from any activation the model ever sees), which is why :func:`mean_ablate` is often
    preferred; but for ``attn.hook_z`` it is exactly "delete this head's output". Silencing
    L2H3 (``blocks.1``, head 2):

    >>> zero_ablate("blocks.1.attn.hook_z", head=2)                 # doctest: +ELLIPSIS
    ('blocks.1.attn.hook_z', <function ...>)
    """
    if head is not None:
        _check_index(head, "head")
    _check_positions(positions)
    return name, _replace(name, head, positions, torch.zeros_like)


def mean_ablate(
    name: str, mean: Float[Tensor, "..."], head: int | None = None, positions: Positions = None
) -> tuple[str, HookFn]:
    """Replace the activation at ``name`` by its mean over a reference batch.

    ``mean`` must broadcast to the activation; usually ``cache[name].mean(0)`` (one mean per
    position, shape = activation shape without batch). Mean ablation removes the
    *problem-specific* information a component carries while keeping its average
    contribution, so downstream layers still see an in-distribution input.

    >>> _, cache = model.run_with_cache(reference_tokens)                 # doctest: +SKIP
    >>> mean_ablate("blocks.0.hook_mlp_out", cache["blocks.0.hook_mlp_out"].mean(0))  # doctest: +SKIP
    """
    if head is not None:
        _check_index(head, "head")
    _check_positions(positions)
    mean = mean.detach()

    def value_of(act: Tensor) -> Tensor:
        try:
            return mean.to(act.device, act.dtype).expand_as(act)
        except RuntimeError:
            raise ValueError(
                f"mean of shape {tuple(mean.shape)} does not broadcast to {name!r}'s activation "
                f"{tuple(act.shape)}; pass cache[name].mean(0)"
            ) from None

    return name, _replace(name, head, positions, value_of)


def patch(
    name: str, source: Float[Tensor, "batch ..."], positions: Positions = None, head: int | None = None
) -> tuple[str, HookFn]:
    """Activation patching: overwrite the activation at ``name`` with ``source``.

    Run the model on a *corrupted* input and paste in the activation from a *clean* run
    (``source = clean_cache[name]``). If the clean output comes back, the patched component
    (at those positions / that head) carries the information that distinguishes the two
    inputs. ``source`` has the activation's shape, batch included (a batch of 1 broadcasts).

    >>> _, clean = model.run_with_cache(clean_tokens)                      # doctest: +SKIP
    >>> with attach(model, [patch("blocks.1.hook_resid_pre", clean["blocks.1.hook_resid_pre"], positions=[7])]):
    ...     patched_logits = model(corrupted_tokens)                       # doctest: +SKIP
    """
    if head is not None:
        _check_index(head, "head")
    _check_positions(positions)
    source = source.detach()

    def value_of(act: Tensor) -> Tensor:
        if source.shape != act.shape and not (source.shape[0] == 1 and source.shape[1:] == act.shape[1:]):
            raise ValueError(
                f"patch source for {name!r} has shape {tuple(source.shape)}, but the activation has "
                f"{tuple(act.shape)} (same batch and sequence length needed)"
            )
        return source.to(act.device, act.dtype).expand_as(act)

    return name, _replace(name, head, positions, value_of)


def patch_pattern(
    layer: int,
    head: int,
    source_pattern: Float[Tensor, "batch head query key"] | Float[Tensor, "batch query key"],
    query_positions: Positions = None,
) -> tuple[str, HookFn]:
    """Patch one head's attention pattern (``blocks.{layer}.attn.hook_pattern``).

    The head then reads values *where the source says*, but still reads the current run's
    values: this separates "where a head looks" from "what it finds there". ``source_pattern``
    is either a cached pattern ``[batch, head, query, key]`` (the ``head`` row is used) or one
    head's pattern ``[batch, query, key]``, e.g. a hand-made one. ``query_positions`` limits
    the patch to those query rows.

    >>> patch_pattern(1, 2, clean["blocks.1.attn.hook_pattern"], query_positions=[9])  # doctest: +SKIP
    """
    _check_index(layer, "layer")
    _check_index(head, "head")
    name = hook_name("pattern", layer)
    if source_pattern.ndim == 3:
        # One head's pattern: hold it at `head`'s slot of an otherwise unused full tensor.
        one_head = source_pattern.detach()

        def value_of(act: Tensor) -> Tensor:
            if one_head.shape[-2:] != act.shape[-2:] or one_head.shape[0] not in (1, act.shape[0]):
                raise ValueError(
                    f"source pattern has shape {tuple(one_head.shape)}, expected [batch, query, key] = "
                    f"{(act.shape[0], *act.shape[2:])}"
                )
            full = torch.zeros_like(act)
            full[:, head] = one_head.to(act.device, act.dtype)
            return full

        _check_positions(query_positions)
        return name, _replace(name, head, query_positions, value_of)
    if source_pattern.ndim != 4:
        raise ValueError(
            f"source pattern must be [batch, head, query, key] or [batch, query, key], got shape {tuple(source_pattern.shape)}"
        )
    return patch(name, source_pattern, positions=query_positions, head=head)


def knockout_edges(layer: int, edges: Iterable[tuple[int, int, int]]) -> tuple[str, HookFn]:
    """Remove attention edges ``(head, query_pos, key_pos)`` in layer ``layer``.

    Each listed weight of ``blocks.{layer}.attn.hook_pattern`` is set to 0 and its query row
    renormalised to sum to 1, so the head spreads the removed attention over the keys it still
    sees (the paper's "attention knockout"); a row with nothing left stays all zero. The same
    edges are cut for every item of the batch. Below, in L1H2 (``blocks.0``, head 1) query 9
    no longer reads keys 2 and 3:

    >>> knockout_edges(0, [(1, 9, 2), (1, 9, 3)])   # doctest: +ELLIPSIS
    ('blocks.0.attn.hook_pattern', <function ...>)
    """
    _check_index(layer, "layer")
    edges = [tuple(e) for e in edges]
    for e in edges:
        if len(e) != 3:
            raise ValueError(f"an edge is (head, query_pos, key_pos), got {e!r}")
        h, q, k = e
        _check_index(h, "head")
        _check_index(q, "query position")
        _check_index(k, "key position")
        if k > q:
            raise ValueError(f"edge {e}: key position {k} is after query position {q}; causal attention never uses it")
    name = hook_name("pattern", layer)
    ids = torch.tensor(edges, dtype=torch.long).reshape(-1, 3)
    masks: dict[tuple, tuple[Tensor, Tensor]] = {}

    def keep_mask(act: Tensor) -> tuple[Float[Tensor, "head query key"], Bool[Tensor, "head query 1"]]:
        key = (tuple(act.shape[1:]), act.device, act.dtype)
        if key not in masks:  # built once per shape, then reused for every forward pass
            n_heads, n_q, n_k = act.shape[1:]
            if len(ids):
                h, q, k = ids.unbind(1)
                for what, vals, n in (("head", h, n_heads), ("query position", q, n_q), ("key position", k, n_k)):
                    if int(vals.max()) >= n:
                        raise ValueError(f"{what} {int(vals.max())} is out of range for {name!r}: valid 0–{n - 1}")
            keep = torch.ones(n_heads, n_q, n_k, dtype=act.dtype)
            keep[ids[:, 0], ids[:, 1], ids[:, 2]] = 0
            affected = (keep == 0).any(dim=-1, keepdim=True)
            masks[key] = (keep.to(act.device), affected.to(act.device))
        return masks[key]

    def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        keep, affected = keep_mask(pattern)
        cut = pattern * keep
        row_sum = cut.sum(dim=-1, keepdim=True)
        renormalised = cut / row_sum.clamp_min(torch.finfo(cut.dtype).tiny)
        # Untouched rows are passed through exactly (no division by a sum of ≈1).
        return torch.where(affected & (row_sum > 0), renormalised, cut)

    return name, hook


__all__ = ["zero_ablate", "mean_ablate", "patch", "patch_pattern", "knockout_edges"]
