"""Linear probes: is the running sum ĉ_k linearly readable from the residual stream?

**What.** A *probe* is a small model trained to read a quantity off a network's activations.
Here it is ridge regression: at the position that predicts ``c_k``, take an activation
vector ``x`` (the residual stream after a layer's attention, ``blocks.{l}.hook_resid_mid``,
or after its MLP, ``hook_resid_post``; optionally one head's output ``attn.hook_z``) and fit

    ĉ_k ≈ w · x + b,     w = (XᵀX + λI)⁻¹ Xᵀy   (X, y centred; closed form),

one probe per (site, position). It is fitted on problems from the ``train`` split and scored
on the disjoint ``test`` split by mean absolute error (in units of ĉ_k) and R².

**Why.** To emit ``c_k`` and pass on its carry a model needs ``ĉ_k = s_k + r_{k-1}``, a number
that depends on every pair ``(a_i, b_j)`` with ``i + j ≤ k``. If it is linearly decodable at
the right place with small error, the model has computed it (the paper finds this in layer 2
of the ICoT model for ``c_2 … c_6``, and not in the SFT model). A probe only shows that the
information is *there*; whether the model *uses* it is a question for attribution and
patching. Probes for the carries ``r_k`` and the diagonal sums ``s_k`` are the same code with
another target.

**Choices.** Ridge (not plain least squares) because ``d_model`` features and a few thousand
problems are close to an exactly-determined fit; λ is given relative to the mean feature
variance (``alpha``), so it means the same at any width, and by default it is chosen per probe
from a small grid on a held-out fifth of the *training* problems. The sequence is
teacher-forced with the true answer, as during training.

Example::

    >>> r = fit_probes(load_pretrained("icot-4x4"), target="c_hat")      # doctest: +SKIP
    >>> r.sites[:2], r.mae.shape                                          # doctest: +SKIP
    (['blocks.0.hook_resid_mid', 'blocks.0.hook_resid_post'], torch.Size([4, 8]))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mulinterp.circuits.problems import answer_digits
from mulinterp.hooks import hook_name
from mulinterp.models import MulModel
from mulinterp.task import MulTask

Target = str  # one of TARGETS; checked in probe_targets (see Format in mulinterp.task for why not a Literal)
TARGETS: tuple[str, ...] = ("c_hat", "carry", "s")
ALPHAS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
_HEAD_SITE = re.compile(r"blocks\.(\d+)\.attn\.hook_z\[(\d+)\]")


# ---------------------------------------------------------------------------------------
# ridge regression, batched over independent problems (sites × positions)


def ridge_fit(
    x: Float[Tensor, "... n d"], y: Float[Tensor, "... n"], alpha: float | Sequence[float] = 1e-3
) -> tuple[Float[Tensor, "... d"], Float[Tensor, "..."]]:
    """Closed-form ridge regression ``y ≈ x·w + b`` (intercept unpenalised).

    ``λ = alpha × mean feature variance × n``, i.e. ``alpha`` is relative to the data's scale.
    Leading dims are independent problems solved in one ``torch.linalg.solve``. A sequence
    of alphas adds a leading dim to ``w`` and ``b`` (one fit per alpha, one Gram matrix).
    """
    alphas = torch.as_tensor(alpha, dtype=torch.float64)
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(-2, keepdim=True), y.mean(-1, keepdim=True)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.transpose(-1, -2) @ xc  # [..., d, d]
    rhs = xc.transpose(-1, -2) @ yc[..., None]  # [..., d, 1]
    scale = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)  # = mean variance · n
    lam = alphas.reshape(alphas.shape + (1,) * scale.ndim) * scale  # [(alpha,) ...]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    w = torch.linalg.solve(gram + lam[..., None, None] * eye, rhs.expand(lam.shape + rhs.shape[-2:]))[..., 0]
    b = y_mean[..., 0] - (x_mean[..., 0, :] * w).sum(-1)
    return w.float(), b.float()


def ridge_fit_cv(
    x: Float[Tensor, "... n d"], y: Float[Tensor, "... n"], alphas: Sequence[float], holdout: float = 0.2
) -> tuple[Float[Tensor, "... d"], Float[Tensor, "..."], Float[Tensor, "..."]]:
    """:func:`ridge_fit` with ``alpha`` chosen per problem from ``alphas``.

    Each alpha is fitted on the first ``1 − holdout`` of the rows and scored (MAE) on the rest;
    the best one is refitted on all rows. Returns ``(w, b, chosen alpha)``.
    """
    alphas = list(alphas)
    if len(alphas) == 1:
        w, b = ridge_fit(x, y, alphas[0])
        return w, b, torch.full(b.shape, float(alphas[0]))
    n_val = max(1, int(x.shape[-2] * holdout))
    w, b = ridge_fit(x[..., :-n_val, :], y[..., :-n_val], alphas)  # [alpha, ..., d], [alpha, ...]
    val_mae = (ridge_predict(x[..., -n_val:, :], w, b) - y[..., -n_val:]).abs().mean(-1)  # [alpha, ...]
    best = val_mae.argmin(0)
    w, b = ridge_fit(x, y, alphas)
    w = w.gather(0, best[None, ..., None].expand((1,) + w.shape[1:]))[0]
    b = b.gather(0, best[None])[0]
    return w, b, torch.tensor(alphas)[best]


def ridge_predict(
    x: Float[Tensor, "... n d"], w: Float[Tensor, "... d"], b: Float[Tensor, "..."]
) -> Float[Tensor, "... n"]:
    return (x.float() @ w[..., None])[..., 0] + b[..., None]


def regression_scores(pred: Float[Tensor, "... n"], true: Float[Tensor, "... n"]) -> tuple[Tensor, Tensor]:
    """``(MAE, R²)`` over the last dim; R² is NaN where the target is constant."""
    true = true.float()
    mae = (pred - true).abs().mean(-1)
    ss_res = ((pred - true) ** 2).sum(-1)
    ss_tot = ((true - true.mean(-1, keepdim=True)) ** 2).sum(-1)
    r2 = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-12), torch.full_like(ss_tot, float("nan")))
    return mae, r2


# ---------------------------------------------------------------------------------------
# activations and targets


def default_sites(n_layers: int, heads: int = 0) -> list[str]:
    """``resid_mid`` and ``resid_post`` of every layer, then (if ``heads``) each head's ``hook_z``."""
    sites = [hook_name(h, l) for l in range(n_layers) for h in ("resid_mid", "resid_post")]
    return sites + [f"{hook_name('z', l)}[{h}]" for l in range(n_layers) for h in range(heads)]


def _hook_of(site: str) -> tuple[str, int | None]:
    m = _HEAD_SITE.fullmatch(site)
    return (hook_name("z", int(m.group(1))), int(m.group(2))) if m else (site, None)


@torch.no_grad()
def collect(
    m: MulModel, a: Int[Tensor, " n"], b: Int[Tensor, " n"], sites: list[str], batch_size: int = 1024
) -> list[Float[Tensor, "n_c problem _d"]]:  # _d: unchecked, sites differ in width
    """Activations at each site, at the positions predicting ``c_0 …`` (one tensor per site)."""
    task, model = m.task, m.model
    device = m.device
    hooks = {_hook_of(s)[0] for s in sites}
    for name in hooks:
        if name not in model.hook_dict:
            raise ValueError(f"no activation {name!r} on this model (it has layers 0–{m.n_layers - 1})")
    pos = task.answer_positions().to(device)
    tokens = task.teacher_forced(a, b).to(device)
    chunks: list[dict[str, Tensor]] = []
    for lo in range(0, len(tokens), batch_size):
        _, cache = model.run_with_cache(tokens[lo : lo + batch_size], names_filter=lambda name: name in hooks)
        chunks.append({h: cache[h][:, pos].float().cpu() for h in hooks})
    out = []
    for site in sites:
        hook, head = _hook_of(site)
        act = torch.cat([c[hook] for c in chunks])  # [problem, n_c, d] or [problem, n_c, head, d_head]
        if head is not None:
            if head >= act.shape[2]:
                raise ValueError(f"head {head} is out of range in site {site!r}: heads 0–{act.shape[2] - 1}")
            act = act[:, :, head]
        out.append(act.transpose(0, 1))  # [n_c, problem, d]
    return out


def probe_targets(task: MulTask, a: Tensor, b: Tensor, target: Target = "c_hat") -> Int[Tensor, "problem n_c"]:
    """The quantity probed at each answer position: ``ĉ_k``, the carry ``r_k`` or ``s_k``."""
    if target not in TARGETS:
        raise ValueError(f"unknown probe target {target!r}; choose one of {', '.join(TARGETS)}")
    gt = task.ground_truth(a, b)
    return {"c_hat": gt.c_hat, "carry": gt.carry, "s": gt.s}[target]


# ---------------------------------------------------------------------------------------
# the analysis


@dataclass
class ProbeResult:
    """Test-split scores of one probe per (site, answer position)."""

    target: str
    sites: list[str]
    positions: list[str]
    mae: Float[Tensor, "site n_c"]
    r2: Float[Tensor, "site n_c"]
    predicted: Float[Tensor, "site n_c test"]
    true: Float[Tensor, "n_c test"]
    weight: list[Float[Tensor, "n_c _d"]]  # _d: unchecked, sites differ in width (a head is d_head wide)
    bias: Float[Tensor, "site n_c"]
    alpha: Float[Tensor, "site n_c"]  # the ridge strength used (chosen on held-out train rows)

    def site_index(self, site: str) -> int:
        if site not in self.sites:
            raise ValueError(f"no probe at {site!r}; probed sites: {', '.join(self.sites)}")
        return self.sites.index(site)


def fit_probes(
    m: MulModel,
    target: Target = "c_hat",
    sites: list[str] | None = None,
    heads: bool = False,
    n_train: int = 2048,
    n_test: int = 512,
    seed: int = 0,
    alpha: float | Sequence[float] = ALPHAS,
) -> ProbeResult:
    """Fit ridge probes on ``n_train`` train-split problems, score them on ``n_test`` test-split ones.

    ``sites`` defaults to every layer's ``resid_mid`` and ``resid_post`` (plus every head's
    ``attn.hook_z[h]`` when ``heads``). ``alpha`` is one ridge strength, or several to choose
    from per probe on a held-out fifth of the training problems (the test split is never used
    to choose).
    """
    alphas = [alpha] if isinstance(alpha, (int, float)) else list(alpha)
    task: MulTask = m.task
    if n_train <= 1 or n_test <= 0:
        raise ValueError(f"need n_train > 1 and n_test > 0, got {n_train} and {n_test}")
    sites = sites or default_sites(m.n_layers, m.n_heads if heads else 0)
    a_tr, b_tr = task.sample(n_train, "train", seed=seed)
    a_te, b_te = task.sample(n_test, "test", seed=seed)
    task.check_operands(a_tr, b_tr)
    y_tr = probe_targets(task, a_tr, b_tr, target).T.float()  # [n_c, problem]
    y_te = probe_targets(task, a_te, b_te, target).T.float()
    x_tr, x_te = collect(m, a_tr, b_tr, sites), collect(m, a_te, b_te, sites)
    weights, biases, chosen, preds = [], [], [], []
    for xt, xe in zip(x_tr, x_te):  # sites may differ in width (heads), positions are batched
        w, b, a_used = ridge_fit_cv(xt, y_tr, alphas)
        weights.append(w)
        biases.append(b)
        chosen.append(a_used)
        preds.append(ridge_predict(xe, w, b))
    pred = torch.stack(preds)  # [site, n_c, test]
    mae, r2 = regression_scores(pred, y_te[None])
    return ProbeResult(
        target=target,
        sites=list(sites),
        positions=answer_digits(task),
        mae=mae,
        r2=r2,
        predicted=pred,
        true=y_te,
        weight=weights,
        bias=torch.stack(biases),
        alpha=torch.stack(chosen),
    )


__all__ = [
    "ProbeResult",
    "fit_probes",
    "ridge_fit",
    "ridge_fit_cv",
    "ridge_predict",
    "regression_scores",
    "collect",
    "probe_targets",
    "default_sites",
    "TARGETS",
    "ALPHAS",
]
