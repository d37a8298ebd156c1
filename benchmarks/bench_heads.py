"""Head table + attention DAG + edge knockout on a bundled model, on CPU.

    python benchmarks/bench_heads.py [--model icot-4x4] [--n 1000] [--loop-n 100] [--knockout-n 1000]

The head table's attention statistics come from one batched ``run_with_cache`` (only the
``hook_pattern`` activations kept). The reference computes the same statistics one problem
at a time — a forward pass per problem, as a notebook loop would — timed on ``--loop-n``
problems and scaled to ``--n``; both must agree. The knockout decodes greedily (8 forward
passes per condition) for clean, DAG-cut and ``--random`` random-cut runs, which is what
dominates the total.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mulinterp.circuits.dag import build_dag, knockout
from mulinterp.circuits.heads import attention_by_timestep, head_table
from mulinterp.models import load_pretrained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="icot-4x4")
    ap.add_argument("--n", type=int, default=1000, help="problems for the head table")
    ap.add_argument("--loop-n", type=int, default=100, help="problems the one-at-a-time reference is timed on")
    ap.add_argument("--knockout-n", type=int, default=1000, help="problems decoded for the knockout")
    ap.add_argument("--random", type=int, default=3, help="random-edge control draws")
    ap.add_argument("--threshold", type=float, default=0.25)
    args = ap.parse_args()
    m = load_pretrained(args.model)
    task = m.task
    a, b = task.sample(args.n, "test", seed=0)

    t0 = time.perf_counter()
    table = head_table(m, a=a, b=b)
    t_table = time.perf_counter() - t0

    loop_n = min(args.loop_n, args.n)
    t0 = time.perf_counter()
    total = sum(attention_by_timestep(m, a[i : i + 1], b[i : i + 1]).pattern for i in range(loop_n))
    t_loop = (time.perf_counter() - t0) * args.n / loop_n
    batched_subset = attention_by_timestep(m, a[:loop_n], b[:loop_n]).pattern
    assert torch.allclose(total / loop_n, batched_subset, atol=1e-5), "batched and per-problem statistics disagree"

    t0 = time.perf_counter()
    dag = build_dag(table, args.threshold)
    t_dag = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = knockout(m, dag, a[: args.knockout_n], b[: args.knockout_n], seed=0, n_random=args.random)
    t_knock = time.perf_counter() - t0

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.model} on CPU ({torch.get_num_threads()} threads, load average {load:.1f}), {args.n} problems")
    print(f"  attention statistics + head table, batched      {t_table:8.2f} s")
    print(
        f"  the same, one problem at a time                 {t_loop:8.2f} s  (timed on {loop_n}, scaled)"
        f"  ratio {t_loop / t_table:.0f}x"
    )
    print(f"  DAG build ({len(dag.attention_edges())} attention edges)              {t_dag:8.3f} s")
    print(f"  knockout: clean + DAG + {args.random} random, greedy, {res.clean.n} problems {t_knock:8.2f} s")
    print(f"  total (batched head table + DAG + knockout)     {t_table + t_dag + t_knock:8.2f} s")
    print(
        f"  exact match clean {res.clean.exact_match:.4f}, DAG cut {res.dag.exact_match:.4f}, "
        f"random {[round(r.exact_match, 4) for r in res.random]}"
    )


if __name__ == "__main__":
    main()
