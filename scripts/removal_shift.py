"""What the next CoT removals cost an ICoT state, with and without moving its positions along.

    git show 15792d2:runs/icot-4x4-w128f-gcd/model.safetensors > /tmp/gcd-277302.safetensors
    python scripts/removal_shift.py /tmp/gcd-277302.safetensors --left 3

Forward passes only. The state (trained with ``--left`` CoT tokens left) answers val problems
teacher-forced in the layouts with fewer tokens left, twice: with the position embeddings as
they are (every answer moves to positions it was not trained at), and with the rows from SEP on
moved along by the number of extra tokens removed, so SEP, the kept CoT tokens and the answer
sit on the embeddings they were trained with. The second is what Deng et al.'s ICoT option
``--keep_position`` does for the scheduled removal (their ``src/train.py``): if a digit still
falls to chance there, it was not the position shift that broke it but the removed tokens (the
model computes on or reads from the CoT positions). A last line keeps the trained layout but
gives each problem the CoT tokens of another: what the tokens' values carry, as against their
slots.
"""

from __future__ import annotations

import argparse

import torch
from jaxtyping import Float
from torch import Tensor

from mulinterp.models import MulModel, load
from mulinterp.training.data import remove_cot
from mulinterp.training.loop import answer_scores


def shifted_positions(w_pos: Float[Tensor, "n_ctx d_model"], sep: int, shift: int) -> Float[Tensor, "n_ctx d_model"]:
    """``w_pos`` with the rows from ``sep`` on taken from ``shift`` rows further on (the tail keeps its rows)."""
    out = w_pos.clone()
    if shift:
        out[sep : w_pos.shape[0] - shift] = w_pos[sep + shift :]
    return out


def stage_scores(m: MulModel, a: Tensor, b: Tensor, removed: int, shuffle_cot: bool = False) -> tuple[Tensor, float]:
    """Per-digit accuracy and exact match, teacher-forced, with ``removed`` CoT tokens gone;
    ``shuffle_cot`` gives each problem the CoT tokens left of another problem of the batch."""
    task = m.task
    tokens, start = remove_cot(task.encode(a, b, "cot"), task, torch.full_like(a, removed))
    if shuffle_cot:
        cot = slice(task.input_len, task.input_len + task.cot_len - removed)
        perm = torch.randperm(len(a), generator=torch.Generator().manual_seed(0))
        tokens[:, cot] = tokens[perm, cot]
    idx = start[:, None] + torch.arange(task.n_c)
    with torch.no_grad():
        logits = m.model(tokens)
    acc, exact, _ = answer_scores(
        torch.gather(logits, 1, idx[:, :, None].expand(-1, -1, logits.shape[-1])), task.true_answer(a, b)
    )
    return acc, float(exact)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="an ICoT state (runs/RUN/model.safetensors, or one taken from git history)")
    p.add_argument("--left", type=int, required=True, help="CoT tokens left in the stage the state was trained at")
    p.add_argument("--n", type=int, default=2000, help="val problems (default 2000)")
    p.add_argument("--seed", type=int, default=123, help="seed of the problems drawn (default 123)")
    args = p.parse_args()
    try:
        m = load(args.checkpoint)
    except ValueError as e:
        p.error(str(e))
    task = m.task
    if not 0 <= args.left <= task.cot_len:
        p.error(f"--left must be in [0, {task.cot_len}], got {args.left}")
    a, b = task.sample(args.n, split="val", seed=args.seed)
    w_pos = m.model.state_dict()["pos_embed.weight"].clone()
    sep = task.input_len - 1
    base = task.cot_len - args.left
    print(f"{args.checkpoint}: trained at {args.left} CoT left; {args.n} val problems, seed {args.seed}")
    for left in range(args.left, -1, -1):
        removed = task.cot_len - left
        for shift in sorted({0, removed - base}):
            m.model.load_state_dict({"pos_embed.weight": shifted_positions(w_pos, sep, shift)}, strict=False)
            acc, exact = stage_scores(m, a, b, removed)
            how = "positions moved along" if shift else "positions as trained "
            print(f"{left} left, {how}: exact {exact:6.1%}   c0..c{task.n_c - 1} " + " ".join(f"{x:.2f}" for x in acc))
    if args.left:
        # the kept tokens present but from other problems: what their values (not their slots) carry
        m.model.load_state_dict({"pos_embed.weight": w_pos}, strict=False)
        acc, exact = stage_scores(m, a, b, base, shuffle_cot=True)
        print(
            f"{args.left} left, CoT tokens shuffled: exact {exact:6.1%}   c0..c{task.n_c - 1} "
            + " ".join(f"{x:.2f}" for x in acc)
        )


if __name__ == "__main__":
    main()
