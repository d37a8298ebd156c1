"""Names of hook points and model parts: the one place that spells ``blocks.{layer}``.

TransformerLens names every activation by a path: ``blocks.1.attn.hook_z`` is the per-head
attention output of the second layer. Hook names are the public contract between a model and
every analysis, so they are built here — :func:`hook_name`, in the spirit of TL's
``utils.get_act_name`` — rather than by hand-written f-strings scattered through the code:

>>> hook_name("z", 1)
'blocks.1.attn.hook_z'
>>> hook_name("resid_pre", 0), hook_name("hook_mlp_out", 1), hook_name("embed")
('blocks.0.hook_resid_pre', 'blocks.1.hook_mlp_out', 'hook_embed')

Human-facing labels name both numberings (the paper's 1-based ``L2H3`` and TL's 0-based
``blocks.1``, head 2), as the CLI and figures promise:

>>> head_label(1, 2), layer_label(0)
('L2H3 (blocks.1, head 2)', 'layer 1 (blocks.0)')
"""

from __future__ import annotations

import re

_BLOCK = re.compile(r"blocks\.(\d+)\.")

# short name → path inside a block (TL's get_act_name spellings)
_IN_BLOCK: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "pattern": "attn.hook_pattern",
    "attn_scores": "attn.hook_attn_scores",
}
# hook points outside the blocks
_TOP: dict[str, str] = {"embed": "hook_embed", "pos_embed": "hook_pos_embed", "ln_final_scale": "ln_final.hook_scale"}


def block(layer: int) -> str:
    """``block(1) == "blocks.1"``: the module path of layer ``layer`` (0-based)."""
    return f"blocks.{int(layer)}"


def hook_name(point: str, layer: int | None = None) -> str:
    """The full hook name of ``point`` (in layer ``layer`` for a per-block point).

    ``point`` is a short name (``"z"``, ``"pattern"``, ``"resid_mid"``, ``"mlp_out"`` …) or the
    path inside a block as TransformerLens writes it (``"attn.hook_z"``, ``"hook_resid_pre"``).
    """
    if layer is None:
        if point in _TOP:
            return _TOP[point]
        if point in _IN_BLOCK or point.startswith(("attn.", "hook_resid", "hook_attn_out", "hook_mlp_out")):
            raise ValueError(f"hook point {point!r} is inside a block: give its layer")
        return point
    return f"{block(layer)}.{_IN_BLOCK.get(point, point)}"


def hook_layer(name: str) -> int | None:
    """The 0-based layer of a per-block hook name (``None`` outside the blocks).

    >>> hook_layer("blocks.1.attn.hook_z"), hook_layer("hook_embed")
    (1, None)
    """
    m = _BLOCK.match(name)
    return int(m.group(1)) if m else None


def layer_label(layer: int) -> str:
    """0-based layer → ``layer 2 (blocks.1)``."""
    return f"layer {layer + 1} ({block(layer)})"


def component_label(layer: int, what: str) -> str:
    """0-based layer and a part → ``L1 MLP (blocks.0)``."""
    return f"L{layer + 1} {what} ({block(layer)})"


def head_label(layer: int, head: int) -> str:
    """0-based indices → ``L2H3 (blocks.1, head 2)``."""
    return f"L{layer + 1}H{head + 1} ({block(layer)}, head {head})"


__all__ = ["block", "hook_name", "hook_layer", "layer_label", "component_label", "head_label"]
