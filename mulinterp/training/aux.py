"""The auxiliary running-sum loss: linear probes from attention-head outputs to ĉ_k.

At every answer position (the one predicting ``c_k``) a linear map reads the selected heads'
outputs ``z`` of one layer (``blocks.{layer}.attn.hook_z``, default the second layer) and
predicts ĉ_k. Targets are standardised per position, ``(ĉ_k − mean_k) / std_k``, with the
mean and standard deviation measured once on 65 536 training-split problems (seed 0), so that
every position weighs the same in the MSE whatever its range (ĉ_3 of 4×4 reaches ~330, ĉ_0 at
most 81). The probe weights and the normalisation are saved with the model (``extras``).
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Float
from torch import Tensor, nn

from mulinterp.arithmetic import ground_truth
from mulinterp.task import MulTask


def c_hat_stats(task: MulTask, n: int = 65_536) -> tuple[Tensor, Tensor]:
    a, b = task.sample(n, "train", seed=0)
    c_hat = ground_truth(a, b, task.n_a, task.n_b).c_hat.float()
    return c_hat.mean(0), c_hat.std(0).clamp(min=1.0)


class RunningSumProbe(nn.Module):
    """ĉ̂_k = Σ_h ⟨W[k, h], z[pos_k, h]⟩ + bias_k, one linear map per (position, head)."""

    def __init__(self, task: MulTask, heads: list[int], d_head: int, layer: int):
        super().__init__()
        self.layer, self.heads = layer, list(heads)
        self.weight = nn.Parameter(torch.zeros(task.n_c, len(self.heads), d_head))
        self.bias = nn.Parameter(torch.zeros(task.n_c))
        mean, std = c_hat_stats(task)
        self.register_buffer("c_hat_mean", mean)
        self.register_buffer("c_hat_std", std)

    def forward(self, z: Float[Tensor, "batch n_c n_heads d_head"]) -> Float[Tensor, "batch n_c"]:
        z = z[:, :, self.heads]
        return einops.einsum(z, self.weight, "batch k h d, k h d -> batch k") + self.bias

    def normalise(self, c_hat: Tensor) -> Tensor:
        return (c_hat.float() - self.c_hat_mean) / self.c_hat_std

    def extras(self) -> dict[str, Tensor]:
        return {
            "aux.weight": self.weight.detach(),
            "aux.bias": self.bias.detach(),
            "aux.c_hat_mean": self.c_hat_mean,
            "aux.c_hat_std": self.c_hat_std,
            "aux.heads": torch.tensor(self.heads),
            "aux.layer": torch.tensor([self.layer]),
        }
