"""The auxiliary-loss and SFT checkpoints: the authors' own ``src/transformer.py`` model.

Layout of ``ckpts/aux_head/ckpt.pt`` and ``ckpts/vanilla_ft/ckpt.pt`` in github ajyl/icot — a
bare ``torch.save(model.state_dict())`` (``src/model_utils.py`` loads it straight into the
model) with these tensors (``D`` = width, 768 in the paper; ``nn.Linear`` weights ``[out, in]``):

==================================  ==============  ==========================================
key                                 shape           meaning
==================================  ==============  ==========================================
``emb.embedding``                   ``[V, D]``      token embedding (``V`` = 50 257, GPT-2's)
``pos_emb.pos_embedding``           ``[128, D]``    learned positions (``max_seq_len`` 128)
``layers.{l}.ln1.std_scale``        ``[D]``         LayerNorm gain (``mean_scale``: its bias)
``layers.{l}.attn.Wq/Wk/Wv.weight`` ``[D, D]``      no biases; heads are consecutive slices
``layers.{l}.attn.Wo.weight``       ``[D, D]``      no bias
``layers.{l}.mlp.up_proj.weight``   ``[4D, D]``     no bias, exact GELU (``F.gelu``)
``layers.{l}.mlp.down_proj.weight`` ``[D, 4D]``     no bias
``ln_final.std_scale/mean_scale``   ``[D]``
``unemb.unembedding.weight``        ``[V, D]``      untied, no bias
``linear_regression_heads.{h}``     ``[1, D/H]``    aux only: the ĉ probe on head ``h``'s output
==================================  ==============  ==========================================

**Differences folded into the weights** (each exact, so the logits are unchanged):

* *Unbiased variance.* The authors' LayerNorm divides by ``sqrt(x.var() + 1e-9)`` —
  ``x.var()`` is the *unbiased* variance, ``D/(D-1)`` times the biased one TransformerLens
  (and ``nn.LayerNorm``) uses. Since ``sqrt(var_u + ε) = sqrt(D/(D-1)) · sqrt(var_b + ε')``
  with ``ε' = ε (D-1)/D``, the gain is multiplied by ``sqrt((D-1)/D)`` and the bridge's eps
  is ``1e-9 · (D-1)/D``. (``hook_scale`` therefore reports the biased standard deviation.)
* *Missing biases* (Q, K, V, O, both MLP layers, unembedding) become zeros.
* *GELU* is the exact erf form, so the bridge gets ``act_fn="gelu"`` (GPT-2's is ``gelu_new``).
* *Vocabulary* rows are reordered as for every imported model (:mod:`mulinterp.paper_tokens`).

The head count is not stored in the file. It is read from the probe (``D / d_head`` of
``linear_regression_heads``) when there is one, else taken as the paper's 4 (``n_heads``).
Tensors of training-time probes in other versions of the file (``partial_sum_predictors.*``,
``output_mse_probe.*``) and the aux probe are kept as the checkpoint's extras, not used.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mulinterp.hooks.names import block
from mulinterp.importers.reading import load_tensors, take
from mulinterp.models import ModelSpec

PROBE_PREFIXES = ("linear_regression_heads.", "partial_sum_predictors.", "output_mse_probe.")
EPS = 1e-9


def looks_like(state: dict[str, Tensor]) -> bool:
    return "emb.embedding" in state and "unemb.unembedding.weight" in state


def probe_heads(state: dict[str, Tensor]) -> list[int]:
    """Head indices of the released aux probe (``linear_regression_heads.{h}.weight``)."""
    return sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"linear_regression_heads\.(\d+)\.weight", k)))


def infer_spec(state: dict[str, Tensor], path: Path, n_heads: int | None = None) -> ModelSpec:
    emb, pos = state["emb.embedding"], state.get("pos_emb.pos_embedding")
    if emb.ndim != 2 or pos is None or pos.ndim != 2:
        raise ValueError(f"{path}: emb.embedding / pos_emb.pos_embedding are missing or not matrices")
    v, d = emb.shape
    layers = {int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    if not layers or layers != set(range(max(layers) + 1)):
        raise ValueError(f"{path}: layers are missing or not numbered 0..L-1 (found {sorted(layers)})")
    heads = probe_heads(state)
    if n_heads is None and heads:
        d_head = state[f"linear_regression_heads.{heads[0]}.weight"].shape[-1]
        n_heads = d // d_head if d_head and d % d_head == 0 else None
    n_heads = n_heads or 4
    if d % n_heads:
        raise ValueError(f"{path}: width {d} is not divisible by {n_heads} heads")
    up = state.get("layers.0.mlp.up_proj.weight")
    d_mlp = up.shape[0] if up is not None and up.ndim == 2 else 4 * d
    return ModelSpec(
        d_model=d,
        n_layers=len(layers),
        n_heads=n_heads,
        d_mlp=None if d_mlp == 4 * d else d_mlp,
        d_vocab=v,
        n_ctx=pos.shape[0],
        act_fn="gelu",
        eps=EPS * (d - 1) / d,
    )


def convert(state: dict[str, Tensor], spec: ModelSpec, path: Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(bridge state in GPT-2 vocabulary order, extras)`` — see the module docstring."""
    d, f, v = spec.d_model, spec.mlp_width, spec.d_vocab
    gain = math.sqrt((d - 1) / d)  # unbiased → biased variance

    def t(key: str, shape: tuple[int, ...]) -> Tensor:
        return take(state, key, shape, path)

    out = {
        "embed.weight": t("emb.embedding", (v, d)),
        "pos_embed.weight": t("pos_emb.pos_embedding", (spec.n_ctx, d)),
        "ln_final.weight": t("ln_final.std_scale", (d,)) * gain,
        "ln_final.bias": t("ln_final.mean_scale", (d,)),
        "unembed.weight": t("unemb.unembedding.weight", (v, d)),
        "unembed.bias": torch.zeros(v),
    }
    used = {
        "emb.embedding",
        "pos_emb.pos_embedding",
        "ln_final.std_scale",
        "ln_final.mean_scale",
        "unemb.unembedding.weight",
    }
    for layer in range(spec.n_layers):
        src, b = f"layers.{layer}.", f"{block(layer)}."
        for ours, theirs in (("q", "Wq"), ("k", "Wk"), ("v", "Wv"), ("o", "Wo")):
            out[b + f"attn.{ours}.weight"] = t(src + f"attn.{theirs}.weight", (d, d))
            out[b + f"attn.{ours}.bias"] = torch.zeros(d)
            used.add(src + f"attn.{theirs}.weight")
        for ln in ("1", "2"):
            out[b + f"ln{ln}.weight"] = t(src + f"ln{ln}.std_scale", (d,)) * gain
            out[b + f"ln{ln}.bias"] = t(src + f"ln{ln}.mean_scale", (d,))
            used |= {src + f"ln{ln}.std_scale", src + f"ln{ln}.mean_scale"}
        out[b + "mlp.in.weight"] = t(src + "mlp.up_proj.weight", (f, d))
        out[b + "mlp.in.bias"] = torch.zeros(f)
        out[b + "mlp.out.weight"] = t(src + "mlp.down_proj.weight", (d, f))
        out[b + "mlp.out.bias"] = torch.zeros(d)
        used |= {src + "mlp.up_proj.weight", src + "mlp.down_proj.weight"}
    extras = {k: x.detach().to(torch.float32) for k, x in state.items() if k.startswith(PROBE_PREFIXES)}
    for h in probe_heads(state):
        take(
            state,
            f"linear_regression_heads.{h}.weight",
            (1, spec.d_head),
            path,
            f" ({spec.n_heads} heads of width {spec.d_head})",
        )
    unknown = sorted(set(state) - used - set(extras))
    if unknown:
        raise ValueError(
            f"{path}: tensors not in the paper's {spec.n_layers}-layer transformer.py model: {', '.join(unknown[:3])}"
        )
    return out, extras


def read(
    path: Path, state: dict[str, Tensor] | None = None, n_heads: int | None = None
) -> tuple[ModelSpec, dict[str, Tensor], dict[str, Tensor], dict[str, Any]]:
    """``(spec, bridge state, extras, source facts)`` from a ``ckpt.pt`` of the custom format."""
    state = load_tensors(path) if state is None else state
    if not looks_like(state):
        raise ValueError(f"{path} is not the paper's transformer.py state dict (no emb.embedding / unemb.unembedding)")
    spec = infer_spec(state, path, n_heads)
    bridge, extras = convert(state, spec, path)
    heads = probe_heads(state)
    facts = {
        "format": "transformer-py",
        "files": [str(path)],
        "regime": "aux" if heads else "sft",
        "probe_heads": heads,
        "n_heads_from": "probe width"
        if heads and n_heads is None
        else ("--n-heads" if n_heads else "the paper's 2L4H (not stored in the file)"),
    }
    return spec, bridge, extras, facts
