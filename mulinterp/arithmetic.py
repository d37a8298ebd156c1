"""Ground truth for n_a × n_b multiplication, vectorised over a batch.

Notation follows the paper (index 0 = least significant digit):

* ``a_i``, ``b_j`` — operand digits; ``c_k`` — answer digits (``n_a + n_b`` of them).
* partial products ``a_i · b_j``; diagonal sums ``s_k = Σ_{i+j=k} a_i · b_j``.
* running sum ``ĉ_k = s_k + r_{k-1}`` (``r_{-1} = 0``), carry ``r_k = ⌊ĉ_k / 10⌋`` and
  ``c_k = ĉ_k mod 10``.

ĉ_k is the one number that suffices to emit ``c_k`` and pass the carry on, and it depends on
every pair ``(a_i, b_j)`` with ``i + j ≤ k`` — the long-range dependency the paper is about.

Example::

    >>> import torch
    >>> gt = ground_truth(torch.tensor([3719]), torch.tensor([3349]), 4, 4)
    >>> gt.c[0].tolist()
    [1, 3, 9, 4, 5, 4, 2, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Int
from torch import Tensor


def to_digits(x: Int[Tensor, " batch"], n: int) -> Int[Tensor, "batch n"]:
    """The ``n`` least-significant decimal digits of ``x``, least significant first."""
    powers = 10 ** torch.arange(n, device=x.device, dtype=torch.int64)
    return (x.to(torch.int64)[:, None] // powers) % 10


def from_digits(d: Int[Tensor, "batch n"]) -> Int[Tensor, " batch"]:
    """Inverse of :func:`to_digits`."""
    powers = 10 ** torch.arange(d.shape[-1], device=d.device, dtype=torch.int64)
    return (d.to(torch.int64) * powers).sum(-1)


@dataclass(frozen=True)
class GroundTruth:
    """Every intermediate quantity of the schoolbook algorithm, for a batch of problems."""

    a: Int[Tensor, "batch n_a"]
    b: Int[Tensor, "batch n_b"]
    partial_products: Int[Tensor, "batch n_a n_b"]  # a_i * b_j
    s: Int[Tensor, "batch n_c"]  # diagonal sums s_k
    c_hat: Int[Tensor, "batch n_c"]  # running sums ĉ_k
    carry: Int[Tensor, "batch n_c"]  # r_k
    c: Int[Tensor, "batch n_c"]  # answer digits c_k
    product: Int[Tensor, " batch"]


def ground_truth(a: Int[Tensor, " batch"], b: Int[Tensor, " batch"], n_a: int, n_b: int) -> GroundTruth:
    """Digits, partial products, s_k, carries and running sums for ``a × b``.

    Vectorised: the carry recursion is closed-form, because the carry into position k is the
    part of ``Σ_{k'<k} s_{k'}·10^{k'}`` above ``10^k``.
    """
    if n_a + n_b > 16:
        raise ValueError(f"n_a + n_b = {n_a + n_b} exceeds 16 digits, the int64 range of the ground truth")
    a_d, b_d = to_digits(a, n_a), to_digits(b, n_b)
    # integer einsum is not implemented on CUDA, so products and sums are written out
    pp = einops.rearrange(a_d, "batch i -> batch i 1") * einops.rearrange(b_d, "batch j -> batch 1 j")
    n_c = n_a + n_b
    # diag[i, j, k] = 1 where i + j == k; s_k = Σ_ij pp_ij diag_ijk
    i = torch.arange(n_a, device=a.device)[:, None, None]
    j = torch.arange(n_b, device=a.device)[None, :, None]
    k = torch.arange(n_c, device=a.device)[None, None, :]
    diag = (i + j == k).to(torch.int64)
    s = (einops.rearrange(pp, "batch i j -> batch i j 1") * diag).sum(dim=(1, 2))
    powers = 10 ** torch.arange(n_c, device=a.device, dtype=torch.int64)
    weighted = s * powers
    below = torch.cumsum(weighted, dim=-1) - weighted  # Σ_{k'<k} s_k' 10^k'
    carry_in = below // powers
    c_hat = s + carry_in
    return GroundTruth(
        a=a_d,
        b=b_d,
        partial_products=pp,
        s=s,
        c_hat=c_hat,
        carry=c_hat // 10,
        c=c_hat % 10,
        product=a.to(torch.int64) * b.to(torch.int64),
    )
