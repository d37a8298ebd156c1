"""Hooks: read and edit a model's activations by name, for one ``with`` block at a time.

**What.** A TransformerLens model (here a TL 4 ``TransformerBridge``, the successor of
``HookedTransformer``) has a *hook point* at every interesting activation, named as in
TransformerLens: ``hook_embed``, ``blocks.{l}.hook_resid_pre`` / ``hook_resid_mid`` /
``hook_resid_post``, ``blocks.{l}.attn.hook_pattern`` ``[batch, head, query, key]``,
``blocks.{l}.attn.hook_z`` ``[batch, pos, head, d_head]``, ``blocks.{l}.hook_attn_out``,
``blocks.{l}.hook_mlp_out``. A *hook* is a function ``fn(activation, hook)`` called with the
activation as the forward pass goes through that point; if it returns a tensor, the model
continues with that tensor instead. Layers, heads and positions are 0-based here
(``blocks.1`` head 2 is the paper's L2H3).

**Why.** Reading activations tells you what is represented; *editing* them tells you what is
*used*. The classic interventions are all one-line edits at a hook point:

* ``zero_ablate`` / ``mean_ablate`` — remove a component (a head, an MLP, some positions)
  and see what breaks;
* ``patch`` — paste the activation from a clean run into a corrupted run and see what is
  restored (activation patching); ``patch_pattern`` does it for one head's attention;
* ``knockout_edges`` — cut single attention edges (query → key) and renormalise, to test
  which information *flows* where (e.g. does the ``c_k`` position need to read ``a_i``?).

Build names with :func:`hook_name` (``hook_name("z", 1) == "blocks.1.attn.hook_z"``).

**How.** Each factory returns a ``(hook_name, fn)`` pair; :func:`attach` applies a list of
them for the length of a ``with`` block and always removes them again; :func:`record`
collects activations in a dict::

    from mulinterp.hooks import attach, record, zero_ablate, patch

    _, clean = model.run_with_cache(clean_tokens)
    with attach(model, [zero_ablate("blocks.1.attn.hook_z", head=2)]):
        ablated = model(tokens)                     # L2H3 silenced
    with attach(model, [patch("blocks.0.hook_resid_pre", clean["blocks.0.hook_resid_pre"], positions=[3])]):
        patched = model(corrupted_tokens)           # clean a_3 pasted in
    with record(model, ["blocks.0.attn.hook_pattern"]) as acts:
        model(tokens)
    acts["blocks.0.attn.hook_pattern"]              # [batch, head, query, key]
"""

from mulinterp.hooks.context import HookFn, attach, record
from mulinterp.hooks.factories import knockout_edges, mean_ablate, patch, patch_pattern, zero_ablate
from mulinterp.hooks.names import block, head_label, hook_name, layer_label

__all__ = [
    "HookFn",
    "attach",
    "record",
    "zero_ablate",
    "mean_ablate",
    "patch",
    "patch_pattern",
    "knockout_edges",
    "hook_name",
    "block",
    "head_label",
    "layer_label",
]
