"""Context managers that put hooks on a model for the length of a ``with`` block.

``attach`` is the one primitive: it adds ``(name, fn)`` pairs and removes exactly those hooks
on the way out, also when the body raises — a hook left behind by a failed cell would
silently corrupt every later forward pass in a notebook. ``record`` is ``attach`` with hooks
that copy activations into a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor

from mulinterp.hooks.names import hook_layer

HookFn = Callable[..., "Tensor | None"]
"""A TransformerLens hook: ``fn(activation, hook) -> new activation or None``."""


def bridge_of(model: Any) -> Any:
    """The TransformerLens bridge inside ``model`` (a ``MulModel`` or the bridge itself)."""
    inner = getattr(model, "model", None)
    return inner if inner is not None and hasattr(inner, "hook_dict") else model


def check_hook_name(model: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a hook point of ``model``.

    For ``blocks.{l}.…`` names the message gives the model's layer range, since a wrong layer
    is the usual mistake.
    """
    bridge = bridge_of(model)
    if name in bridge.hook_dict:
        return
    layer = hook_layer(name)
    n_layers = bridge.cfg.n_layers
    if layer is not None and layer >= n_layers:
        raise ValueError(f"layer {layer} in hook name {name!r} is out of range: this model has layers 0–{n_layers - 1}")
    raise ValueError(
        f"no hook point named {name!r} on this model "
        f"(e.g. 'blocks.0.hook_resid_pre', 'blocks.0.attn.hook_pattern', 'blocks.0.attn.hook_z')"
    )


@contextmanager
def attach(model: Any, fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator[Any]:
    """Add forward hooks for the duration of a ``with`` block, then remove them.

    ``fwd_hooks`` is a list of ``(hook_name, fn)`` pairs, as returned by the factories in
    :mod:`mulinterp.hooks` (``zero_ablate``, ``patch`` …) or written by hand. Every forward
    pass inside the block — ``model(tokens)``, ``model.run_with_cache(tokens)`` — runs with
    the hooks; afterwards (normally *or* because the body raised) they are gone, while hooks
    attached by anyone else are left alone. Yields the bridge.

    >>> with attach(model, [zero_ablate("blocks.1.attn.hook_z", head=2)]):   # doctest: +SKIP
    ...     ablated_logits = model(tokens)
    """
    bridge = bridge_of(model)
    fwd_hooks = list(fwd_hooks)
    for name, _ in fwd_hooks:
        if isinstance(name, str):  # TL also accepts name filters (callables); pass those through
            check_hook_name(bridge, name)
    # The bridge's own ``hooks`` context removes precisely the handles it added, in a
    # ``finally``, so nesting ``attach`` blocks or calling ``run_with_hooks`` inside is safe.
    with bridge.hooks(fwd_hooks=fwd_hooks):
        yield bridge


@contextmanager
def record(model: Any, names: Iterable[str]) -> Iterator[dict[str, Tensor]]:
    """Collect activations at ``names`` during the forward passes inside the block.

    Yields a dict that is filled ``name → activation`` (detached copies, so later edits and
    the autograd graph do not reach them). Each forward pass overwrites the previous one's
    entries. A hook point's activation is recorded as it is when this hook runs: after hooks
    attached *earlier* at the same point (an enclosing ``attach``), before later ones.

    >>> with record(model, ["blocks.0.attn.hook_pattern"]) as acts:          # doctest: +SKIP
    ...     model(tokens)
    >>> acts["blocks.0.attn.hook_pattern"].shape      # [batch, head, query, key]
    """
    names = list(dict.fromkeys(names))
    store: dict[str, Tensor] = {}

    def recorder(key: str) -> HookFn:
        # Keyed by the name the caller asked for: TL hands the hook the canonical name, which
        # can differ (``attn.hook_z`` is an alias of ``attn.o.hook_in``).
        def hook(act: Tensor, hook: Any) -> None:
            store[key] = act.detach().clone()

        return hook

    with attach(model, [(name, recorder(name)) for name in names]):
        yield store
