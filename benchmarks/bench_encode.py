"""Building 4×4 training examples as tensors: vectorised MulTask.encode vs a per-example loop.

    python benchmarks/bench_encode.py [--n 1000000]

The per-example reference builds each token list in Python (as a straightforward data
loader would) and is timed on a subset, then scaled; both run in this process, one thread.
"""

from __future__ import annotations

import argparse
import time

import torch

from mulinterp.task import ANS, EOS, LPAREN, MUL, PLUS, RPAREN, SEP, MulTask


def python_example(a: int, b: int, fmt: str) -> list[int]:
    digits = lambda x, n: [(x // 10**i) % 10 for i in range(n)]  # noqa: E731
    toks = digits(a, 4) + [MUL] + digits(b, 4) + [SEP]
    if fmt == "cot":
        running = 0
        for j in range(4):
            term = a * ((b // 10**j) % 10) * 10**j
            running += term
            toks += ([PLUS] if j else []) + digits(term, 5 + j)
            if 0 < j < 3:
                toks += [LPAREN] + digits(running, 5 + j) + [RPAREN]
    return toks + [ANS] + digits(a * b, 8) + [EOS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--ref-n", type=int, default=50_000, help="examples the Python loop is timed on")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = MulTask(4, 4)
    for fmt in ("plain", "cot"):
        t0 = time.perf_counter()
        a, b = task.sample(args.n, "train", seed=0)
        tokens = task.encode(a, b, fmt)
        fast = time.perf_counter() - t0
        al, bl = a[: args.ref_n].tolist(), b[: args.ref_n].tolist()
        t0 = time.perf_counter()
        ref = torch.tensor([python_example(x, y, fmt) for x, y in zip(al, bl)])
        slow = (time.perf_counter() - t0) * args.n / args.ref_n
        assert torch.equal(ref, tokens[: args.ref_n]), "the two implementations disagree"
        print(
            f"{fmt:>5}: vectorised {fast:.3f} s per {args.n:,} ({args.n / fast:,.0f}/s); per-example Python "
            f"{slow:.1f} s (timed on {args.ref_n:,}, scaled); ratio {slow / fast:.0f}x"
        )


if __name__ == "__main__":
    main()
