"""Activation patching: which activations *carry* the information about one operand digit?

**What.** Make pairs of problems that differ in a single operand digit — a *clean* problem
and a *corrupted* one (``a_1`` changed, say). Run both. Then run the corrupted problem again,
but paste in ("patch") one activation from the clean run: the residual stream at one
(layer, position), one layer's attention or MLP output, or one head's output. If the model's
answer at ``c_k`` swings back to the clean answer, that activation carries what ``c_k``
needs to know about the changed digit.

**The metric.** At the position predicting ``c_k`` let ``t`` be the clean run's answer token
and ``t'`` the corrupted run's. The logit difference ``LD = logit[t] − logit[t']`` is high on
the clean run and low on the corrupted one, and the patched run is reported as

    effect = (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted),

so 0 means "patching did nothing" and 1 means "patching restored the clean answer fully".
LDs are averaged over the pairs whose answers differ at ``c_k`` before dividing (pairs with
``t = t'`` carry no signal); a position where no pair differs — or where the model does not
tell the two apart at all — is NaN rather than a ratio of noise. By default ``t`` and ``t'``
are the tokens the model *predicts* (``answer="predicted"``), so the normalisation is well
defined even for a model that gets ``c_k`` wrong; ``answer="true"`` uses the true digits.

**Why.** Attribution (:mod:`mulinterp.circuits.attribution`) says *that* ``c_k`` depends on
``a_1``; patching says *where the information travels*: through which residual positions,
layers and heads. Sweeping the patch over (layer, position) draws the information flow, and
over (layer, head) it finds the heads that move the digit — for the paper's ICoT model, the
first-layer heads that cache pairs ``(a_i, b_j)`` at earlier answer steps and the second-layer
heads that retrieve them.

**How it is done here.** Both prompts are teacher-forced with the *clean* problem's true
answer as prefix (``prefix="clean"``), so a pair differs in exactly one token; one clean run
is cached and one corrupted run is kept. Every patch variant (a list of :class:`Site`) is a
slice of one big batch: the corrupted sequences are repeated once per variant and a single
hook per activation pastes the clean values where each variant's mask says. A sweep over 144
(layer, head, position) variants is thus a handful of large forward passes instead of tens of
thousands of small ones (see ``benchmarks/bench_patching.py``). A patch in layer ``l`` cannot
change anything below it, so those forward passes start at layer ``l`` from the corrupted
run's cached residual stream.

Example::

    >>> setup = prepare(load_pretrained("icot-4x4"), corrupt="a1", n=128)   # doctest: +SKIP
    >>> heads = patch_heads(setup)             # effect[layer, head, k]      # doctest: +SKIP
    >>> patch_head(m, layer=1, head=2, corrupt="b2").effect   # L2H3, per c_k  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mulinterp.circuits.problems import answer_digits, corrupt_digit, draw_problems, operand_digits, parse_operand_digit
from mulinterp.hooks import attach, hook_name
from mulinterp.hooks.names import hook_layer
from mulinterp.models import MulModel
from mulinterp.task import MulTask

RESID_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
HEAD_HOOK = "attn.hook_z"


@dataclass(frozen=True)
class Site:
    """Patch the activation at ``hook`` — at token ``position`` and ``head`` (``None`` = all).

    ``hook`` is ``blocks.{l}.hook_resid_pre|mid|post``, ``blocks.{l}.hook_attn_out``,
    ``blocks.{l}.hook_mlp_out`` or ``blocks.{l}.attn.hook_z`` (the only one with heads).
    """

    hook: str
    position: int | None = None
    head: int | None = None


@dataclass
class PatchSetup:
    """Clean/corrupted pairs, the clean run's activations and the two reference logit differences."""

    m: MulModel
    clean_tokens: Int[Tensor, "pair seq"]
    corrupted_tokens: Int[Tensor, "pair seq"]
    corrupted_digit: Int[Tensor, " pair"]  # index into operand_digits(task)
    clean_answer: Int[Tensor, "pair n_c"]  # t: token compared at each answer position
    corrupted_answer: Int[Tensor, "pair n_c"]  # t'
    valid: Bool[Tensor, "pair n_c"]  # t != t'
    clean_cache: dict[str, Tensor]
    corrupted_resid: list[Tensor]  # blocks.{l}.hook_resid_pre of the corrupted run, per layer
    clean_ld: Float[Tensor, " n_c"]
    corrupted_ld: Float[Tensor, " n_c"]

    @property
    def task(self) -> MulTask:
        return self.m.task

    @property
    def n_valid(self) -> Int[Tensor, " n_c"]:
        return self.valid.sum(0)

    def mean_ld(self, ld: Float[Tensor, "... pair n_c"]) -> Float[Tensor, "... n_c"]:
        """Mean logit difference over the pairs whose answers differ at each ``c_k``."""
        valid = self.valid.to(ld.dtype)
        return (ld * valid).sum(-2) / valid.sum(0).clamp_min(1)

    def normalise(self, ld: Float[Tensor, "... pair n_c"]) -> Float[Tensor, "... n_c"]:
        """Mean LD over valid pairs, mapped so that corrupted = 0 and clean = 1 (NaN if undefined)."""
        gap = self.clean_ld - self.corrupted_ld
        effect = (self.mean_ld(ld) - self.corrupted_ld) / gap
        undefined = (self.n_valid == 0) | (gap.abs() < 1e-6)
        return torch.where(undefined, torch.full_like(effect, float("nan")), effect)


@dataclass
class PatchResult:
    """``effect[..., k]``: normalised effect at ``c_k``; ``labels[d]`` names the entries of dim ``d``."""

    effect: Float[Tensor, "... n_c"]
    labels: list[list[str]]
    n_valid: Int[Tensor, " n_c"]
    clean_ld: Float[Tensor, " n_c"]
    corrupted_ld: Float[Tensor, " n_c"]


def _logit_diff(logits: Float[Tensor, "... pair n_c vocab"], setup: PatchSetup) -> Float[Tensor, "... pair n_c"]:
    """``logit[t] − logit[t']`` for each pair (any leading variant dims broadcast)."""

    def pick(tok: Tensor) -> Tensor:
        idx = tok.to(logits.device)[..., None].expand(logits.shape[:-1] + (1,))
        return logits.gather(-1, idx)[..., 0]

    return (pick(setup.clean_answer) - pick(setup.corrupted_answer)).float().cpu()


def _patchable(name: str) -> None:
    parts = name.split(".")
    if not (len(parts) >= 3 and parts[0] == "blocks" and ".".join(parts[2:]) in RESID_HOOKS + (HEAD_HOOK,)):
        raise ValueError(
            f"cannot patch {name!r}: use blocks.L.hook_resid_pre|mid|post, blocks.L.hook_attn_out, "
            f"blocks.L.hook_mlp_out or blocks.L.attn.hook_z"
        )


def _patchable_names(n_layers: int) -> list[str]:
    return [hook_name(h, l) for l in range(n_layers) for h in RESID_HOOKS + (HEAD_HOOK,)]


@torch.no_grad()
def prepare(
    m: MulModel,
    corrupt: str = "random",
    n: int = 256,
    seed: int = 0,
    split: str = "test",
    a: Int[Tensor, " n"] | None = None,
    b: Int[Tensor, " n"] | None = None,
    answer: str = "predicted",  # or "true"; choices are checked below, so str (see mulinterp.task.Format)
    prefix: str = "clean",  # or "own"
) -> PatchSetup:
    """Build clean/corrupted pairs and run each side once.

    ``corrupt`` is an operand digit (``"a1"``, ``"b2"``) changed in every pair, or
    ``"random"``: each pair changes one operand digit chosen at random.
    """
    task: MulTask = m.task
    model = m.model
    if answer not in ("predicted", "true"):
        raise ValueError(f"answer must be 'predicted' or 'true', got {answer!r}")
    if prefix not in ("clean", "own"):
        raise ValueError(f"prefix must be 'clean' or 'own', got {prefix!r}")
    a, b = draw_problems(task, a, b, n, split, seed)
    gen = torch.Generator().manual_seed(seed)
    if str(corrupt).strip().lower() == "random":
        which = torch.randint(len(operand_digits(task)), (len(a),), generator=gen)
    else:
        which = torch.full((len(a),), parse_operand_digit(task, corrupt), dtype=torch.long)
    a_cor, b_cor = corrupt_digit(task, a, b, which, gen)

    device = m.device
    clean = task.teacher_forced(a, b)
    corrupted = task.teacher_forced(a_cor, b_cor, answer_of=None if prefix == "own" else (a, b))
    pos = task.answer_positions().to(device)
    names = set(_patchable_names(m.n_layers))
    clean_logits, cache = model.run_with_cache(clean.to(device), names_filter=lambda name: name in names)
    clean_logits = clean_logits[:, pos]
    resid_names = [hook_name("resid_pre", l) for l in range(m.n_layers)]
    corrupted_logits, corrupted_cache = model.run_with_cache(
        corrupted.to(device), names_filter=lambda name: name in resid_names
    )
    corrupted_logits = corrupted_logits[:, pos]
    if answer == "predicted":
        t, t_prime = clean_logits.argmax(-1).cpu(), corrupted_logits.argmax(-1).cpu()
    else:
        t, t_prime = task.true_answer(a, b), task.true_answer(a_cor, b_cor)
    setup = PatchSetup(
        m=m,
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        corrupted_digit=which,
        clean_answer=t,
        corrupted_answer=t_prime,
        valid=t != t_prime,
        clean_cache={name: cache[name] for name in names},
        corrupted_resid=[corrupted_cache[name] for name in resid_names],
        clean_ld=torch.zeros(task.n_c),
        corrupted_ld=torch.zeros(task.n_c),
    )
    setup.clean_ld = setup.mean_ld(_logit_diff(clean_logits, setup))
    setup.corrupted_ld = setup.mean_ld(_logit_diff(corrupted_logits, setup))
    return setup


def _mask_hook(clean: Tensor, mask: Bool[Tensor, "variant ..."]):
    """A hook for a batch laid out as (variant, pair): paste ``clean`` where ``mask`` says."""

    def hook(act: Tensor, hook) -> Tensor:
        act = einops.rearrange(act, "(v p) ... -> v p ...", v=mask.shape[0])
        # mask is [v, pos] or [v, pos, head]: add the pair axis and the trailing feature axis
        m = mask.to(act.device)[:, None, ..., None]
        return einops.rearrange(torch.where(m, clean[None], act), "v p ... -> (v p) ...")

    return hook


@torch.no_grad()
def run_patches(
    setup: PatchSetup, variants: Sequence[Sequence[Site]], batch_size: int = 2048
) -> Float[Tensor, "variant n_c"]:
    """The normalised effect of each variant (a list of sites patched together) at each ``c_k``.

    The generic engine behind every sweep: ``batch_size`` bounds the sequences per forward.
    An empty variant patches nothing and gives 0.
    """
    task = setup.task
    n_pairs, seq = setup.corrupted_tokens.shape
    n_layers, n_heads = setup.m.n_layers, setup.m.n_heads
    for sites in variants:
        for s in sites:
            _patchable(s.hook)
            if s.hook not in setup.clean_cache:
                raise ValueError(f"cannot patch {s.hook!r}: this model has layers 0–{n_layers - 1}")
            if s.position is not None and not 0 <= s.position < seq:
                raise ValueError(f"position {s.position} is out of range: sequences have positions 0–{seq - 1}")
            if s.head is not None and (not s.hook.endswith(HEAD_HOOK) or not 0 <= s.head < n_heads):
                raise ValueError(
                    f"head {s.head} is invalid for {s.hook!r}: heads 0–{n_heads - 1} exist on attn.hook_z only"
                )
    # A patch in layer l leaves layers < l exactly as in the corrupted run, so each variant's
    # forward starts at its first patched layer, from the corrupted run's residual stream.
    first_layer = [min((hook_layer(s.hook) for s in sites), default=n_layers - 1) for sites in variants]
    per_chunk = max(1, batch_size // n_pairs)
    effect = torch.zeros(len(variants), task.n_c)
    for start in sorted(set(first_layer)):
        group = [i for i, l in enumerate(first_layer) if l == start]
        for lo in range(0, len(group), per_chunk):
            chunk = group[lo : lo + per_chunk]
            effect[chunk] = _run_chunk(setup, [variants[i] for i in chunk], start)
    return effect


def _run_chunk(setup: PatchSetup, chunk: Sequence[Sequence[Site]], start: int) -> Float[Tensor, "variant n_c"]:
    """One forward pass for ``len(chunk)`` variants, laid out as (variant, pair) in the batch."""
    model = setup.m.model
    seq, n_heads = setup.corrupted_tokens.shape[1], setup.m.n_heads
    masks: dict[str, Tensor] = {}
    for v, sites in enumerate(chunk):
        for s in sites:
            if s.hook not in masks:
                shape = (len(chunk), seq, n_heads) if s.hook.endswith(HEAD_HOOK) else (len(chunk), seq)
                masks[s.hook] = torch.zeros(shape, dtype=torch.bool)
            idx = (v, slice(None) if s.position is None else s.position)
            if s.head is not None:
                idx += (s.head,)
            masks[s.hook][idx] = True
    hooks = [(name, _mask_hook(setup.clean_cache[name], mask)) for name, mask in masks.items()]
    resid = einops.repeat(setup.corrupted_resid[start], "p s d -> (v p) s d", v=len(chunk))
    pos = setup.task.answer_positions().to(resid.device)
    with attach(model, hooks):
        logits = model(resid, start_at_layer=start)[:, pos]
    ld = _logit_diff(einops.rearrange(logits, "(v p) k vocab -> v p k vocab", v=len(chunk)), setup)
    return setup.normalise(ld)


def _result(setup: PatchSetup, effect: Tensor, labels: list[list[str]]) -> PatchResult:
    shape = tuple(len(x) for x in labels) + (setup.task.n_c,)
    return PatchResult(
        effect=effect.reshape(shape),
        labels=labels + [answer_digits(setup.task)],
        n_valid=setup.n_valid,
        clean_ld=setup.clean_ld,
        corrupted_ld=setup.corrupted_ld,
    )


def _answer_token_position(task: MulTask, position: int | None) -> int | None:
    """Answer index ``k`` → the token position predicting ``c_k``."""
    if position is None:
        return None
    if not 0 <= position < task.n_c:
        raise ValueError(f"position {position} is out of range: answer digits are c0–c{task.n_c - 1}")
    return task.answer_position(position)


# ---------------------------------------------------------------------------------------
# sweeps: thin specialisations of run_patches


def patch_residual(setup: PatchSetup, batch_size: int = 2048) -> PatchResult:
    """Residual stream by (site, token position): ``resid_pre`` and ``resid_mid`` of each layer, then the final ``resid_post``."""
    n_layers = setup.m.n_layers
    hooks = [hook_name(h, l) for l in range(n_layers) for h in ("resid_pre", "resid_mid")]
    hooks.append(hook_name("resid_post", n_layers - 1))
    seq = setup.corrupted_tokens.shape[1]
    variants = [[Site(h, p)] for h in hooks for p in range(seq)]
    effect = run_patches(setup, variants, batch_size)
    return _result(setup, effect, [hooks, setup.task.token_labels()[:seq]])


def patch_layer_outputs(setup: PatchSetup, per_position: bool = False, batch_size: int = 2048) -> PatchResult:
    """Each layer's attention output and MLP output (``L1 attn``, ``L1 MLP``, …), at all positions or per position."""
    n_layers = setup.m.n_layers
    hooks = [hook_name(h, l) for l in range(n_layers) for h in ("attn_out", "mlp_out")]
    names = [f"L{l + 1} {w}" for l in range(n_layers) for w in ("attn", "MLP")]
    seq = setup.corrupted_tokens.shape[1]
    if not per_position:
        return _result(setup, run_patches(setup, [[Site(h)] for h in hooks], batch_size), [names])
    variants = [[Site(h, p)] for h in hooks for p in range(seq)]
    return _result(setup, run_patches(setup, variants, batch_size), [names, setup.task.token_labels()[:seq]])


def patch_heads(setup: PatchSetup, position: int | None = None, batch_size: int = 2048) -> PatchResult:
    """Each head's output (``hook_z``) by (layer, head), at every position or only at the one predicting ``c_position``."""
    n_layers, n_heads = setup.m.n_layers, setup.m.n_heads
    tok = _answer_token_position(setup.task, position)
    variants = [[Site(hook_name(HEAD_HOOK, l), tok, h)] for l in range(n_layers) for h in range(n_heads)]
    effect = run_patches(setup, variants, batch_size)
    return _result(setup, effect, [[f"L{l + 1}" for l in range(n_layers)], [f"H{h + 1}" for h in range(n_heads)]])


def patch_head_positions(setup: PatchSetup, batch_size: int = 2048) -> PatchResult:
    """Each head's output by (layer, head, token position) — the finest sweep."""
    n_layers, n_heads = setup.m.n_layers, setup.m.n_heads
    seq = setup.corrupted_tokens.shape[1]
    variants = [
        [Site(hook_name(HEAD_HOOK, l), p, h)] for l in range(n_layers) for h in range(n_heads) for p in range(seq)
    ]
    effect = run_patches(setup, variants, batch_size)
    labels = [
        [f"L{l + 1}" for l in range(n_layers)],
        [f"H{h + 1}" for h in range(n_heads)],
        setup.task.token_labels()[:seq],
    ]
    return _result(setup, effect, labels)


def patch_head(
    m: MulModel,
    layer: int,
    head: int,
    corrupt: str = "random",
    position: int | None = None,
    n: int = 256,
    seed: int = 0,
    split: str = "test",
    setup: PatchSetup | None = None,
) -> PatchResult:
    """Patch one head (0-based ``layer``, ``head``) at all positions or at the one predicting ``c_position``.

    Returns the normalised effect at each answer position (``result.effect[k]``). Pass a
    ready ``setup`` to reuse its pairs.
    """
    n_layers, n_heads = m.n_layers, m.n_heads
    if not 0 <= layer < n_layers:
        raise ValueError(
            f"layer {layer} is out of range: this model has layers 0–{n_layers - 1} (TransformerLens numbering)"
        )
    if not 0 <= head < n_heads:
        raise ValueError(
            f"head {head} is out of range: this model has heads 0–{n_heads - 1} (TransformerLens numbering)"
        )
    tok = _answer_token_position(m.task, position)
    setup = setup or prepare(m, corrupt=corrupt, n=n, seed=seed, split=split)
    effect = run_patches(setup, [[Site(hook_name(HEAD_HOOK, layer), tok, head)]])
    return _result(setup, effect[0], [])


__all__ = [
    "Site",
    "PatchSetup",
    "PatchResult",
    "prepare",
    "run_patches",
    "patch_residual",
    "patch_layer_outputs",
    "patch_heads",
    "patch_head_positions",
    "patch_head",
]
