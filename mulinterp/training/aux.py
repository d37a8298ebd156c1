"""The auxiliary running-sum loss: linear probes from attention-head outputs to ĉ_k.

At every answer position (the one predicting ``c_k``) a linear map reads the selected heads'
outputs ``z`` of one layer (``blocks.{layer}.attn.hook_z``, default the second layer) and
predicts ĉ_k. By default targets are standardised per position, ``(ĉ_k − mean_k) / std_k``,
with the mean and standard deviation measured once on 65 536 training-split problems (seed 0),
so that every position weighs the same in the MSE whatever its range (ĉ_3 of 4×4 reaches ~330,
ĉ_0 at most 81). With ``scale=s`` every position is divided by the same ``s`` instead, so an
error of one unit of ĉ costs the same at every position (standardising charges it least where
the range is widest: at ĉ_3 of 4×4, std 43, about 1 850 times less than in ĉ units). The probe
weights and the normalisation are saved with the model (``extras``).
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Float
from torch import Tensor, nn

from mulinterp.arithmetic import ground_truth
from mulinterp.models import MulModel
from mulinterp.task import MulTask


def c_hat_stats(task: MulTask, n: int = 65_536) -> tuple[Tensor, Tensor]:
    a, b = task.sample(n, "train", seed=0)
    c_hat = ground_truth(a, b, task.n_a, task.n_b).c_hat.float()
    return c_hat.mean(0), c_hat.std(0).clamp(min=1.0)


# what a saved probe holds (its parameters and its normalisation), in this order
PROBE_STATE = ("weight", "bias", "c_hat_mean", "c_hat_std")


class RunningSumProbe(nn.Module):
    """ĉ̂_k = Σ_h ⟨W[k, h], z[pos_k, h]⟩ + bias_k, one linear map per (position, head)."""

    def __init__(
        self,
        task: MulTask,
        heads: list[int],
        d_head: int,
        layer: int,
        stats: tuple[Tensor, Tensor] | None = None,
        scale: float | None = None,
    ):
        super().__init__()
        self.layer, self.heads = layer, list(heads)
        self.weight = nn.Parameter(torch.zeros(task.n_c, len(self.heads), d_head))
        self.bias = nn.Parameter(torch.zeros(task.n_c))
        mean, std = stats if stats is not None else c_hat_stats(task)  # a saved probe brings its own
        if scale is not None:
            std = torch.full_like(std, float(scale))
        self.register_buffer("c_hat_mean", mean)
        self.register_buffer("c_hat_std", std)

    def forward(self, z: Float[Tensor, "batch n_c n_heads d_head"]) -> Float[Tensor, "batch n_c"]:
        z = z[:, :, self.heads]
        return einops.einsum(z, self.weight, "batch k h d, k h d -> batch k") + self.bias

    def normalise(self, c_hat: Tensor) -> Tensor:
        return (c_hat.float() - self.c_hat_mean) / self.c_hat_std

    def rmse(self, pred: Float[Tensor, "batch n_c"], c_hat: Tensor) -> Float[Tensor, " n_c"]:
        """Per-position RMSE of standardised predictions ``pred`` against the true ĉ_k, in ĉ units."""
        err = (pred - self.normalise(c_hat)) * self.c_hat_std
        return err.pow(2).mean(0).sqrt()

    @torch.no_grad()
    def adopt(self, weight: Tensor, bias: Tensor, mean: Tensor, std: Tensor) -> None:
        """Take over a probe saved under another normalisation (``mean``, ``std``): the same
        predictions in ĉ units, expressed in this probe's. A fork that changes ``aux_scale``
        keeps its fitted probe this way instead of starting the fit again. Under the same
        normalisation (a plain resume) the saved tensors are taken as they are, bit for bit."""
        same = torch.allclose(std.to(self.c_hat_std), self.c_hat_std) and torch.allclose(
            mean.to(self.c_hat_mean), self.c_hat_mean
        )
        if same:
            self.load_state_dict({"weight": weight, "bias": bias, "c_hat_mean": mean, "c_hat_std": std})
            return
        ratio = std.to(self.c_hat_std) / self.c_hat_std
        self.weight.copy_(weight.to(self.weight) * ratio[:, None, None])
        self.bias.copy_(
            (bias.to(self.bias) * std.to(self.bias) + mean.to(self.bias) - self.c_hat_mean) / self.c_hat_std
        )

    def adopt_from(self, tensors: dict[str, Tensor], prefix: str) -> None:
        """:meth:`adopt` the probe saved in ``tensors`` under ``prefix`` ("probe." in a resume
        file, "aux." in a checkpoint's extras)."""
        self.adopt(*(tensors[prefix + k] for k in PROBE_STATE))

    @classmethod
    def from_extras(cls, task: MulTask, extras: dict[str, Tensor]) -> RunningSumProbe:
        """The probe an aux checkpoint carries (``MulModel.extras``), as it was when saved."""
        if "aux.weight" not in extras:
            raise ValueError("this checkpoint carries no auxiliary probe (not an aux model)")
        stats = (extras["aux.c_hat_mean"], extras["aux.c_hat_std"])
        heads, layer = extras["aux.heads"].long().tolist(), int(extras["aux.layer"][0])
        probe = cls(task, heads, extras["aux.weight"].shape[-1], layer, stats=stats)
        probe.load_state_dict({k: extras[f"aux.{k}"] for k in PROBE_STATE})
        return probe

    def extras(self) -> dict[str, Tensor]:
        return {
            "aux.weight": self.weight.detach(),
            "aux.bias": self.bias.detach(),
            "aux.c_hat_mean": self.c_hat_mean,
            "aux.c_hat_std": self.c_hat_std,
            "aux.heads": torch.tensor(self.heads),
            "aux.layer": torch.tensor([self.layer]),
        }


def aux_probe_rmse(
    m: MulModel,
    n: int = 2048,
    seed: int = 0,
    split: str = "val",
    problems: tuple[Tensor, Tensor] | None = None,
) -> Float[Tensor, " n_c"]:
    """An aux checkpoint's own training probe, evaluated: per-position RMSE in ĉ units on ``n``
    problems of ``split`` drawn with ``seed``, or on the given ``problems`` (a, b) — the
    telemetry's ``aux_rmse``, for a saved model.

    >>> aux_probe_rmse(load_pretrained("aux-3x3"), seed=7).round(decimals=2)  # doctest: +SKIP
    tensor([0.52, 1.29, 2.73, 1.38, 0.56, 0.06])
    """
    from mulinterp.hooks import hook_name, record

    probe = RunningSumProbe.from_extras(m.task, m.extras)
    a, b = problems if problems is not None else m.task.sample(n, split, seed=seed)
    tokens = m.task.encode(a, b, "plain")[:, :-1]
    name = hook_name("z", probe.layer)
    with torch.no_grad(), record(m.model, [name]) as acts:
        m.model(tokens)
        pred = probe(acts[name][:, m.task.answer_positions("plain")].float())
    return probe.rmse(pred, ground_truth(a, b, m.task.n_a, m.task.n_b).c_hat)
