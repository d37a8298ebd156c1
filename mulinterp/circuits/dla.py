"""Direct logit attribution (DLA): which components *write* the answer digit's logit?

**What.** The residual stream at the final position is a *sum*: token embedding + position
embedding + the output of every attention head (plus each layer's attention bias ``b_O``) +
the output of every MLP. The logits are a (nearly) linear function of that sum:

    logits = LN_final(resid) @ W_U + b_U
           = ((resid − mean(resid)) / scale) · w_ln @ W_U  +  (b_ln @ W_U + b_U).

Freeze the LayerNorm scale at the value it had in the forward pass (TransformerLens caches it
as ``ln_final.hook_scale``) and the map from the residual stream to the logits is *exactly*
linear, so each component's share of the logit of the correct digit ``c_k`` is

    DLA(component) = ((x_c − mean(x_c)) / scale) · w_ln @ W_U[:, c_k],

and the shares plus the constant bias term ``b_ln @ W_U + b_U`` add up to the model's logit.
(We keep ``W_U`` uncentred so that the sum is the logit itself; for the *logit difference*
to the runner-up token, also returned, centring would not change anything.) A head's output
is in turn a sum over the source positions it attends to, ``Σ_s pattern[q, s] · v_s W_O``, so
a head's share splits further by source position ("which digit did it bring?").

**Why.** DLA is the cheapest first look at a circuit: one forward pass, no interventions. It
says which heads and MLPs *directly* push the right digit up at each answer position. It does
not see indirect effects (a first-layer head whose output the second layer reads), and it
inherits a frozen-LayerNorm approximation when you ask "what if this component were absent"
— use :mod:`mulinterp.circuits.patching` for causal questions.

Example::

    >>> d = direct_logit_attribution(load_pretrained("icot-4x4"), n=64)    # doctest: +SKIP
    >>> d.components[:4]                                                    # doctest: +SKIP
    ['embed', 'pos_embed', 'L1H1', 'L1H2']
    >>> torch.allclose(d.logit.sum(-1), d.model_logit, atol=1e-4)           # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from mulinterp.circuits.problems import answer_digits, draw_problems
from mulinterp.hooks import hook_name
from mulinterp.models import MulModel
from mulinterp.task import MulTask

BIAS_TERM = "ln_final.b @ W_U + b_U"


@dataclass
class DLA:
    """Each component's direct share of the logit (and logit difference) at each answer position.

    ``logit[..., c]`` sums over ``c`` to ``model_logit`` (same for the differences).
    ``head_source[p, k, l, h, s]`` splits head ``(l, h)``'s share by source position ``s``.
    """

    components: list[str]
    logit: Float[Tensor, "problem n_c component"]
    logit_diff: Float[Tensor, "problem n_c component"]
    head_source: Float[Tensor, "problem n_c layer head src"]
    head_source_diff: Float[Tensor, "problem n_c layer head src"]
    model_logit: Float[Tensor, "problem n_c"]
    model_logit_diff: Float[Tensor, "problem n_c"]
    target: Int[Tensor, "problem n_c"]
    runner_up: Int[Tensor, "problem n_c"]
    source_labels: list[str]
    positions: list[str]

    def ranked(self, k: int, by: Literal["diff", "logit"] = "diff") -> list[tuple[str, float, float]]:
        """``(component, mean logit share, mean logit-diff share)`` at ``c_k``, largest |share| first."""
        lg, df = self.logit[:, k].mean(0), self.logit_diff[:, k].mean(0)
        key = df if by == "diff" else lg
        order = key.abs().argsort(descending=True)
        return [(self.components[i], float(lg[i]), float(df[i])) for i in order.tolist()]

    def ranked_sources(self, k: int, top: int = 10) -> list[tuple[int, int, str, float]]:
        """``(layer, head, source label, mean logit-diff share)`` at ``c_k``, largest |share| first."""
        mean = self.head_source_diff[:, k].mean(0)  # [layer, head, src]
        flat = mean.flatten()
        order = flat.abs().argsort(descending=True)[:top]
        n_heads, n_src = mean.shape[1], mean.shape[2]
        out = []
        for i in order.tolist():
            l, rest = divmod(i, n_heads * n_src)
            h, s = divmod(rest, n_src)
            out.append((l, h, self.source_labels[s], float(flat[i])))
        return out


def component_labels(n_layers: int, n_heads: int) -> list[str]:
    """``embed, pos_embed, L1H1 … L1H{H}, L1 attn bias, L1 MLP, …, <bias term>`` (1-based labels)."""
    labels = ["embed", "pos_embed"]
    for layer in range(n_layers):
        labels += [f"L{layer + 1}H{h + 1}" for h in range(n_heads)]
        labels += [f"L{layer + 1} attn bias", f"L{layer + 1} MLP"]
    return labels + [BIAS_TERM]


@torch.no_grad()
def direct_logit_attribution(
    m: MulModel,
    n: int = 256,
    seed: int = 0,
    split: str = "test",
    a: Int[Tensor, " n"] | None = None,
    b: Int[Tensor, " n"] | None = None,
    target: str = "true",  # or "predicted"; checked below, so str (see mulinterp.task.Format)
) -> DLA:
    """Decompose the logit of ``c_k`` (true digit by default) at every answer position.

    The runner-up is the highest-logit token other than the target.
    """
    task: MulTask = m.task
    model = m.model
    if target not in ("true", "predicted"):
        raise ValueError(f"target must be 'true' or 'predicted', got {target!r}")
    a, b = draw_problems(task, a, b, n, split, seed)
    n_layers, n_heads = m.n_layers, m.n_heads
    device = m.device
    tokens = task.teacher_forced(a, b).to(device)
    pos = task.answer_positions().to(device)

    wanted = {hook_name("embed"), hook_name("pos_embed"), hook_name("ln_final_scale")}
    for layer in range(n_layers):
        wanted |= {hook_name("v", layer), hook_name("pattern", layer), hook_name("mlp_out", layer)}
    logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in wanted)
    logits = logits[:, pos].float()

    tgt = logits.argmax(-1) if target == "predicted" else task.true_answer(a, b).to(device)
    others = logits.scatter(-1, tgt[..., None], float("-inf"))
    runner = others.argmax(-1)

    # LayerNorm with its scale frozen at the cached value is linear: centre, divide, then w·W_U
    scale = cache["ln_final.hook_scale"][:, pos]  # [p, n_c, 1]
    w_unembed = model.ln_final.w[:, None] * model.W_U  # [d, vocab]
    bias_logits = model.ln_final.b @ model.W_U + model.b_U  # [vocab]

    def to_vocab(x: Float[Tensor, "... d"]) -> Float[Tensor, "... vocab"]:
        return (x - x.mean(-1, keepdim=True)) @ w_unembed  # the linear map, before dividing by the scale

    def at_answers(x: Float[Tensor, "p k d"]) -> Float[Tensor, "p k vocab"]:
        return to_vocab(x) / scale

    # one [p, n_c, vocab] logit contribution per component, in component_labels order
    parts = [at_answers(cache["hook_embed"][:, pos]), at_answers(cache["hook_pos_embed"][:, pos])]
    src_logits = []  # per layer: [p, n_c, head, src, vocab]
    for layer in range(n_layers):
        v = cache[hook_name("v", layer)]  # [p, src, head, d_head]
        pattern = cache[hook_name("pattern", layer)][:, :, pos]  # [p, head, n_c, src]
        # head output at query k = Σ_src pattern[k, src] · v_src W_O: map each v_src W_O to the
        # vocabulary first (it is linear), then weight by the attention
        v_vocab = to_vocab(einops.einsum(v, model.W_O[layer], "p src head dh, head dh d -> p src head d"))
        by_src = einops.einsum(pattern, v_vocab, "p head k src, p src head vocab -> p k head src vocab")
        by_src = by_src / scale[..., None, None]
        src_logits.append(by_src)
        parts += list(by_src.sum(3).unbind(2))  # one per head
        parts.append(at_answers(model.b_O[layer].expand_as(cache["hook_embed"][:, pos])))
        parts.append(at_answers(cache[hook_name("mlp_out", layer)][:, pos]))
    parts.append(bias_logits.expand_as(parts[0]))
    comp_logits = torch.stack(parts, dim=2)  # [p, n_c, component, vocab]
    src_logits = torch.stack(src_logits, dim=2)  # [p, n_c, layer, head, src, vocab]

    def pick(x: Tensor, tok: Tensor) -> Tensor:  # x [p, k, ..., vocab], tok [p, k]
        idx = tok.reshape(tok.shape + (1,) * (x.ndim - 2)).expand(x.shape[:-1] + (1,))
        return x.gather(-1, idx)[..., 0]

    logit_t, logit_r = pick(comp_logits, tgt), pick(comp_logits, runner)
    n_src = tokens.shape[1]
    return DLA(
        components=component_labels(n_layers, n_heads),
        logit=logit_t.float().cpu(),
        logit_diff=(logit_t - logit_r).float().cpu(),
        head_source=pick(src_logits, tgt).float().cpu(),
        head_source_diff=(pick(src_logits, tgt) - pick(src_logits, runner)).float().cpu(),
        model_logit=pick(logits, tgt).cpu(),
        model_logit_diff=(pick(logits, tgt) - pick(logits, runner)).cpu(),
        target=tgt.cpu(),
        runner_up=runner.cpu(),
        source_labels=task.token_labels()[:n_src],
        positions=answer_digits(task),
    )


__all__ = ["DLA", "direct_logit_attribution", "component_labels", "BIAS_TERM"]
