"""Cross-entropy and accuracy per answer digit of campaign runs *at their removal stage*.

    python scripts/stage_loss.py icot-4x4-d64-g85 icot-4x4-d64-g85-lr1e3 [--n 4096] [--seed 123]
    python scripts/stage_loss.py aux-4x4-d128 aux-4x4-d128-nx1 --nx1
    python scripts/stage_loss.py icot-4x4-w128f-ug1 icot-4x4-w128f-nx2 --nx2

The telemetry's stage accuracy uses 512 monitor problems and moves by ± 2 points from row to
row; at a stage where one digit is learned slowly (c2 with 14 CoT tokens left, session 5) the
cross-entropy on more problems shows the trend earlier. Reads each run's latest resume file
(a copy, in a scratch folder: loading a resume file trims the telemetry beside it), so it can
run while the campaign trains; val-split problems, CoT layout with the run's removed tokens
gone (the plain layout for an aux or SFT run), answer digits teacher-forced.

``--nx1`` scores n×1 problems instead (one operand d·10^j, drawn by
``mulinterp.training.data.nx1_operands`` from the val problems' seed): what an ``nx1_share`` run
trains on, where c_k depends on a single partial product. Most such operands have leading zeros
and lie outside every split, so this measures what the run learned from them, not a held-out
accuracy.

``--nx2`` scores n×2 problems (two non-zero digits in one operand, ``data.nx2_operands``): what
an ``nx2_share`` run adds, where c_k sums at most two partial products and a carry.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from mulinterp.training import TrainConfig, Trainer
from mulinterp.training.data import nx1_operands, nx2_operands
from mulinterp.training.loop import answer_scores


def load_run(run: Path) -> Trainer:
    """A trainer holding ``run``'s latest state, loaded from a copy of its resume file (loading
    trims the telemetry beside the file, and the campaign may be writing the run's own)."""
    if not (run / "model.safetensors.resume").is_file() or not (run / "recipe.json").is_file():
        raise SystemExit(f"{run} is not a campaign run folder (no recipe.json and model.safetensors.resume)")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(run / "model.safetensors.resume", Path(tmp) / "model.safetensors.resume")
        t = Trainer(TrainConfig.from_file(run / "recipe.json"), Path(tmp) / "model.safetensors")
        t.load_resume()
    return t


def removed(trainer: Trainer) -> int:
    """CoT tokens gone at the run's stage: all of them for an aux or SFT run (plain layout)."""
    return trainer.removed_now() if trainer.cfg.regime == "icot" else trainer.task.cot_len


def stage_loss(run: Path, n: int, seed: int, sparse: int = 0) -> tuple[int, int, list[float], list[float]]:
    """Step, CoT tokens left, CE and accuracy per answer digit; ``sparse`` 1 or 2 scores n×1 or
    n×2 problems instead of the val problems themselves."""
    t = load_run(run)
    gone = removed(t)
    a, b = t.task.sample(n, "val", seed=seed)
    if sparse:
        sparsify = {1: nx1_operands, 2: nx2_operands}[sparse]
        a, b = sparsify(t.task, a, b, 1.0, torch.Generator().manual_seed(seed))
    acc, _, ce = answer_scores(t.stage_logits(a, b, gone), t.task.true_answer(a, b))  # float, no autocast
    return t.step, t.task.cot_len - gone, ce.tolist(), acc.tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--root", type=Path, default=Path("runs"))
    p.add_argument("--n", type=int, default=4096, help="val problems (default 4096)")
    p.add_argument("--seed", type=int, default=123)
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--nx1", action="store_true", help="n×1 problems (one operand d·10^j) instead of val ones")
    kind.add_argument("--nx2", action="store_true", help="n×2 problems (two non-zero digits in one operand)")
    args = p.parse_args()
    torch.set_num_threads(1)
    for name in args.runs:
        sparse = 1 if args.nx1 else 2 if args.nx2 else 0
        step, left, ce, acc = stage_loss(args.root / name, args.n, args.seed, sparse)
        print(f"{name}: step {step}, {left} CoT tokens left" + (f", n×{sparse} problems" if sparse else ""))
        print("  CE  " + " ".join(f"{x:.3f}" for x in ce))
        print("  acc " + " ".join(f"{x:.3f}" for x in acc))


if __name__ == "__main__":
    main()
