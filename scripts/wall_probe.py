"""What a run at a wall already computes for the stuck digit: linear probes at its position.

    python scripts/wall_probe.py icot-4x4-d64-g85-lr1e3 --digit 3 [--n 6000] [--seed 11]
    python scripts/wall_probe.py aux-4x4-d128 --digit 3

Where an answer digit c_k sits at chance, this reads the residual stream at the position that
predicts c_k (val problems; an ICoT run's CoT layout with its removed tokens gone, the plain
layout for an aux or SFT run) after each attention and MLP sub-layer, and fits linear probes on
75 % of the problems, scored on the rest: one-vs-rest ridge classifiers (chance .10) for c_k,
the diagonal sum s_k mod 10, the carry into k (mod 10), and each partial product a_i·b_j with
i + j = k (mod 10); and ridge regression (R²) for each a_i·b_j and for ĉ_k. Run on the digit
the model learned last as a reference: a digit it computes shows its partial products at the
position (sessions 7 and 9, campaign.md).

A digit target that equals one of the CoT tokens still left at the stage, on every problem, is
marked ``= cotT`` (T counts from the first token left): the model can copy it by attention, so
a high score there says nothing about what it computes. At 13 left on 4×4, a0·b3 mod 10 is the
digit 3 of the last CoT term a·b3·10³ (session 9, campaign.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from stage_loss import load_run, removed

from mulinterp.arithmetic import ground_truth, to_digits
from mulinterp.circuits.probes import regression_scores, ridge_fit, ridge_predict

SITES = ("blocks.0.hook_resid_mid", "blocks.0.hook_resid_post", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post")
LABELS = ("L0 attn", "L0 mlp", "L1 attn", "L1 mlp")


def residuals(trainer, a, b, k: int) -> torch.Tensor:
    """[site, problem, d_model] at the position that predicts c_k."""
    tokens, answer_pos = trainer.stage_tokens(a, b, removed(trainer))
    pos = answer_pos[:, k]
    out = []
    with torch.no_grad():
        for part, p in zip(tokens.split(500), pos.split(500)):
            _, cache = trainer.model.run_with_cache(part, names_filter=lambda n: n in SITES)
            rows = torch.arange(len(part))
            out.append(torch.stack([cache[s][rows, p].float() for s in SITES]))
    return torch.cat(out, 1)


def class_acc(x: torch.Tensor, y: torch.Tensor, n_fit: int) -> torch.Tensor:
    """Held-out accuracy of a one-vs-rest ridge classifier per site; ``y`` a digit 0–9."""
    onehot = F.one_hot(y, 10).T.float()  # [10, problem]
    xs = x[:, None].expand(-1, 10, -1, -1)  # [site, 10, problem, d]
    w, b = ridge_fit(xs[:, :, :n_fit], onehot[None, :, :n_fit].expand(len(x), -1, -1))
    scores = ridge_predict(xs[:, :, n_fit:], w, b)  # [site, 10, held-out]
    return (scores.argmax(1) == y[n_fit:]).float().mean(-1)


def r2(x: torch.Tensor, y: torch.Tensor, n_fit: int) -> torch.Tensor:
    yy = y.float()[None].expand(len(x), -1)
    w, b = ridge_fit(x[:, :n_fit], yy[:, :n_fit])
    return regression_scores(ridge_predict(x[:, n_fit:], w, b), yy[:, n_fit:])[1]


def cot_left(trainer, a, b) -> torch.Tensor:
    """[problem, left]: the CoT tokens still there at the run's stage (none for aux or SFT)."""
    return trainer.task.cot_tokens(a, b)[:, removed(trainer) :]


def cot_source(left: torch.Tensor, y: torch.Tensor) -> str:
    """``"= cotT"`` if the digit target ``y`` [problem] equals the T-th of the CoT tokens
    ``left`` [problem, left] on every problem, else ``""``."""
    same = (left == y[:, None]).all(0).nonzero().flatten().tolist()
    return f"= cot{same[0]}" if same else ""


def digits_only_r2(x_i: torch.Tensor, x_j: torch.Tensor, n_fit: int) -> float:
    """R² of the best affine map from the two digits themselves to their product: what a
    residual stream that holds a_i and b_j linearly, but not their product, scores (≈ .83 for
    uniform digits). A product's R² above this means the product is formed."""
    feats = torch.stack([x_i, x_j], -1).float()[None]  # [1, problem, 2]
    return float(r2(feats, x_i * x_j, n_fit)[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN")
    p.add_argument("--digit", type=int, required=True, help="the answer digit k of c_k")
    p.add_argument("--root", type=Path, default=Path("runs"))
    p.add_argument("--n", type=int, default=6000, help="val problems (default 6000)")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    torch.set_num_threads(1)
    t = load_run(args.root / args.run)
    k = args.digit
    if not 0 <= k < t.task.n_c:
        raise SystemExit(f"--digit must be in 0..{t.task.n_c - 1}, got {k}")
    a, b = t.task.sample(args.n, "val", seed=args.seed)
    x, gt, n_fit = residuals(t, a, b, k), ground_truth(a, b, t.task.n_a, t.task.n_b), int(0.75 * args.n)
    carry_in = gt.carry[:, k - 1] if k else torch.zeros_like(a)
    pairs = [(i, k - i) for i in range(t.task.n_a) if 0 <= k - i < t.task.n_b]
    digits = [(f"c{k}", gt.c[:, k]), (f"s{k} mod 10", gt.s[:, k] % 10), (f"carry into {k} mod 10", carry_in % 10)]
    digits += [(f"a{i}b{j} mod 10", gt.partial_products[:, i, j] % 10) for i, j in pairs]
    left = cot_left(t, a, b)
    rows = [(name, class_acc(x, y, n_fit), cot_source(left, y)) for name, y in digits]
    a_d, b_d = to_digits(a, t.task.n_a), to_digits(b, t.task.n_b)
    for i, j in pairs:
        alone = digits_only_r2(a_d[:, i], b_d[:, j], n_fit)
        rows.append((f"a{i}b{j} (R²)", r2(x, gt.partial_products[:, i, j], n_fit), f"digits alone {alone:.2f}"))
    rows.append((f"ĉ{k} (R²)", r2(x, gt.c_hat[:, k], n_fit), ""))
    print(
        f"{args.run}, step {t.step}, {left.shape[1]} CoT tokens left: position predicting c{k}, {args.n} val problems"
    )
    print(f"held-out accuracy (chance .10) or R², after each sub-layer (seed {args.seed})")
    print(f"{'':<20}" + "".join(f"{s:>9}" for s in LABELS))
    for name, v, source in rows:
        print(f"{name:<20}" + "".join(f"{float(x):>9.3f}" for x in v) + f"  {source}".rstrip())


if __name__ == "__main__":
    main()
