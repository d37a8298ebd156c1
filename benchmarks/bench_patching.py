"""Activation patching of every (layer, head, position): batched sweep vs one forward per patch.

    python benchmarks/bench_patching.py [--model icot-4x4] [--n 512] [--ref-variants 2] [--threads 1]

The batched sweep is :func:`mulinterp.circuits.patching.patch_head_positions`: all
``n_layers × n_heads × seq`` variants of ``n`` clean/corrupted pairs, many variants per forward
pass, each pass starting at the patched layer. The naive reference is what one writes first:
for every (problem, layer, head, position), one forward pass of one corrupted sequence with
``mulinterp.hooks.patch`` pasting that head's clean output at that position. It is timed on
``--ref-variants`` whole variants (every problem, so its normalised effect can be checked
against the batched one) and *extrapolated* to the full sweep, as the output says. Both run
in this process on the CPU, after one shared ``prepare`` (clean and corrupted runs), which is
timed separately.
"""

from __future__ import annotations

import argparse
import time

import torch

from mulinterp.circuits.patching import HEAD_HOOK, patch_head_positions, prepare
from mulinterp.hooks import attach, hook_name, patch
from mulinterp.models import resolve


def naive_effect(setup, layer: int, head: int, position: int) -> torch.Tensor:
    """One forward per problem: the normalised effect of patching one head at one position."""
    model, task = setup.m.model, setup.task
    name = hook_name(HEAD_HOOK, layer)
    pos = task.answer_positions()
    lds = []
    for p in range(len(setup.corrupted_tokens)):
        with (
            torch.no_grad(),
            attach(model, [patch(name, setup.clean_cache[name][p : p + 1], positions=position, head=head)]),
        ):
            logits = model(setup.corrupted_tokens[p : p + 1])[:, pos]
        t, t_prime = setup.clean_answer[p], setup.corrupted_answer[p]
        k = torch.arange(task.n_c)
        lds.append(logits[0, k, t] - logits[0, k, t_prime])
    return setup.normalise(torch.stack(lds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="icot-4x4")
    ap.add_argument("--n", type=int, default=512, help="problem pairs (default 512)")
    ap.add_argument(
        "--ref-variants", type=int, default=2, help="(layer, head, position) variants the naive loop is timed on"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine more threads are slower)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = resolve(args.model)
    n_layers, n_heads = m.n_layers, m.n_heads

    t0 = time.perf_counter()
    setup = prepare(m, corrupt="random", n=args.n, seed=0)
    t_prepare = time.perf_counter() - t0
    seq = setup.corrupted_tokens.shape[1]
    n_variants = n_layers * n_heads * seq

    t0 = time.perf_counter()
    sweep = patch_head_positions(setup)
    t_batched = time.perf_counter() - t0

    # the naive loop, on a few variants at answer positions (where patches matter), all problems
    picks = [
        (l, h, task_pos)
        for l, h, task_pos in [(n_layers - 1, 0, m.task.answer_start() + 2), (0, n_heads - 1, m.task.answer_start())]
    ][: args.ref_variants]
    t0 = time.perf_counter()
    worst = 0.0
    for l, h, p in picks:
        ref = naive_effect(setup, l, h, p)
        diff = (ref - sweep.effect[l, h, p]).nan_to_num().abs().max().item()
        worst = max(worst, diff)
    t_ref = time.perf_counter() - t0
    forwards_ref = len(picks) * args.n
    forwards_full = n_variants * args.n
    t_naive = t_ref / forwards_ref * forwards_full

    print(
        f"model {m.name} (d_model {m.spec.d_model}, {n_layers} layers × {n_heads} heads), {args.n} pairs, "
        f"{seq} positions → {n_variants} (layer, head, position) variants, {forwards_full:,} patched runs; "
        f"CPU, {args.threads} threads"
    )
    print(f"  prepare (clean + corrupted run, shared): {t_prepare:.1f} s")
    print(f"  batched sweep:  {t_batched:.1f} s")
    print(
        f"  naive loop:     {t_naive:.0f} s  (EXTRAPOLATED from {forwards_ref:,} single-sequence forwards timed "
        f"in {t_ref:.1f} s, {1000 * t_ref / forwards_ref:.1f} ms each)"
    )
    print(
        f"  ratio naive / batched: {t_naive / t_batched:.0f}x   (max |effect difference| on the timed variants: {worst:.1e})"
    )


if __name__ == "__main__":
    main()
