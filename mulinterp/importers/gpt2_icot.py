"""The ICoT checkpoint: a ``transformers`` GPT-2 inside the authors' ``ImplicitModel``.

Layout of ``ckpts/2L4H`` in github ajyl/icot (read from ``src/ImplicitModel.py``):

* ``config.json`` — an ``ImplicitModelConfig``; its ``base_model`` entry is the GPT-2 config
  as a dict (``GPT2Config(**config.base_model)``): ``n_embd``, ``n_layer``, ``n_head``,
  ``n_positions``, ``vocab_size``, ``activation_function``, ``layer_norm_epsilon`` …
* ``state_dict.bin`` — ``torch.save(ImplicitModel.state_dict())``: GPT-2's own keys with a
  ``base_model.`` prefix (``base_model.transformer.h.0.attn.c_attn.weight`` …).

GPT-2 stores its projections as ``Conv1D`` weights, shaped ``[in, out]``; the bridge's linear
layers are ``[out, in]``, so every matrix is transposed. ``c_attn`` holds Q, K and V side by
side (``[d, 3d]``) and is split in three; heads are consecutive ``d_head`` slices in both.
The unembedding is GPT-2's ``lm_head`` (tied to ``wte``; ``wte`` is used when the file has no
separate ``lm_head.weight``), with a zero bias, which GPT-2 does not have. Older
``transformers`` versions also saved the causal-mask buffers ``attn.bias`` and
``attn.masked_bias``; they are not weights and are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mulinterp.hooks.names import block
from mulinterp.importers.reading import load_tensors, read_json, take
from mulinterp.models import ModelSpec

PREFIX = "base_model."
_ACT = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu"}
_BUFFERS = (".attn.bias", ".attn.masked_bias")


def looks_like(state: dict[str, Tensor]) -> bool:
    return any(k.startswith(PREFIX + "transformer.") or k.startswith("transformer.h.") for k in state)


def gpt2_config(config_path: Path) -> dict[str, Any]:
    """The GPT-2 config dict inside ``config.json`` (``base_model``), or a flat GPT-2 config."""
    data = read_json(config_path)
    cfg = data.get("base_model", data)
    if not isinstance(cfg, dict) or "n_embd" not in cfg:
        hint = f" (base_model is {cfg!r}: a pretrained name, not a config)" if isinstance(cfg, str) else ""
        raise ValueError(f"{config_path} has no GPT-2 config (n_embd, n_layer, n_head) under base_model{hint}")
    return cfg


def spec_from_config(cfg: dict[str, Any], config_path: Path) -> ModelSpec:
    act = cfg.get("activation_function", "gelu_new")
    if act not in _ACT:
        raise ValueError(f"{config_path}: activation {act!r} is not supported (gelu_new or gelu)")
    if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("scale_attn_weights") is False:
        raise ValueError(f"{config_path}: non-standard attention scaling is not supported")
    try:
        d, n_layers, n_heads = int(cfg["n_embd"]), int(cfg["n_layer"]), int(cfg["n_head"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{config_path}: GPT-2 config lacks a usable {e}") from None
    if d % n_heads:
        raise ValueError(f"{config_path}: n_embd {d} is not divisible by n_head {n_heads}")
    d_mlp = cfg.get("n_inner") or 4 * d
    return ModelSpec(
        d_model=d,
        n_layers=n_layers,
        n_heads=n_heads,
        d_mlp=None if d_mlp == 4 * d else int(d_mlp),
        d_vocab=int(cfg.get("vocab_size", 50257)),
        n_ctx=int(cfg.get("n_positions", 1024)),
        act_fn=_ACT[act],
        eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
    )


def convert(state: dict[str, Tensor], spec: ModelSpec, path: Path) -> dict[str, Tensor]:
    """GPT-2 (``transformers``) weights → the bridge's state dict, vocabulary in GPT-2 order."""
    state = {k[len(PREFIX) :] if k.startswith(PREFIX) else k: v for k, v in state.items()}
    d, f, v, n_ctx = spec.d_model, spec.mlp_width, spec.d_vocab, spec.n_ctx
    why = " (from config.json)"

    def t(key: str, shape: tuple[int, ...]) -> Tensor:
        return take(state, key, shape, path, why)

    wte = t("transformer.wte.weight", (v, d))
    out = {
        "embed.weight": wte,
        "pos_embed.weight": t("transformer.wpe.weight", (n_ctx, d)),
        "ln_final.weight": t("transformer.ln_f.weight", (d,)),
        "ln_final.bias": t("transformer.ln_f.bias", (d,)),
        "unembed.weight": t("lm_head.weight", (v, d)) if "lm_head.weight" in state else wte,
        "unembed.bias": torch.zeros(v),
    }
    for layer in range(spec.n_layers):
        h, b = f"transformer.h.{layer}.", f"{block(layer)}."
        qkv_w = t(h + "attn.c_attn.weight", (d, 3 * d)).T  # [3d, d]: rows q | k | v
        qkv_b = t(h + "attn.c_attn.bias", (3 * d,))
        for i, name in enumerate("qkv"):
            out[b + f"attn.{name}.weight"] = qkv_w[i * d : (i + 1) * d]
            out[b + f"attn.{name}.bias"] = qkv_b[i * d : (i + 1) * d]
        out[b + "attn.o.weight"] = t(h + "attn.c_proj.weight", (d, d)).T
        out[b + "attn.o.bias"] = t(h + "attn.c_proj.bias", (d,))
        for ln in ("1", "2"):
            out[b + f"ln{ln}.weight"] = t(h + f"ln_{ln}.weight", (d,))
            out[b + f"ln{ln}.bias"] = t(h + f"ln_{ln}.bias", (d,))
        out[b + "mlp.in.weight"] = t(h + "mlp.c_fc.weight", (d, f)).T
        out[b + "mlp.in.bias"] = t(h + "mlp.c_fc.bias", (f,))
        out[b + "mlp.out.weight"] = t(h + "mlp.c_proj.weight", (f, d)).T
        out[b + "mlp.out.bias"] = t(h + "mlp.c_proj.bias", (d,))
    known = {k for k in state if k.endswith(_BUFFERS)} | {"lm_head.weight"}
    used = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight", "transformer.ln_f.bias"}
    used |= {
        f"transformer.h.{l}.{s}"
        for l in range(spec.n_layers)
        for s in (
            "attn.c_attn.weight",
            "attn.c_attn.bias",
            "attn.c_proj.weight",
            "attn.c_proj.bias",
            "ln_1.weight",
            "ln_1.bias",
            "ln_2.weight",
            "ln_2.bias",
            "mlp.c_fc.weight",
            "mlp.c_fc.bias",
            "mlp.c_proj.weight",
            "mlp.c_proj.bias",
        )
    }
    extra = sorted(set(state) - used - known)
    if extra:
        raise ValueError(
            f"{path}: tensors not in a {spec.n_layers}-layer GPT-2 per config.json: {', '.join(extra[:3])}"
        )
    return out


def read(folder: Path) -> tuple[ModelSpec, dict[str, Tensor], dict[str, Any]]:
    """``(spec, bridge state in GPT-2 order, source facts)`` from a ``ckpts/2L4H``-style folder."""
    config_path, weights = folder / "config.json", folder / "state_dict.bin"
    spec = spec_from_config(gpt2_config(config_path), config_path)
    state = load_tensors(weights)
    if not looks_like(state):
        raise ValueError(f"{weights} is not a GPT-2 state dict (no base_model.transformer.* tensors)")
    facts = {
        "format": "icot-gpt2",
        "files": [str(config_path), str(weights)],
        "regime": "icot",
        "tied_unembedding": "lm_head.weight" not in {k.removeprefix(PREFIX) for k in state},
    }
    return spec, convert(state, spec, weights), facts
