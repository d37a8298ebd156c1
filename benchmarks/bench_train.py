"""Training throughput: our trainer vs a reference-style loop, same device, one run.

    python benchmarks/bench_train.py [--device cpu|cuda] [--preset cpu] [--steps 30]

Reference style (as in Deng et al.'s code): batch 32, fp32, examples built and CoT removed
one example at a time in Python, padded per batch. Ours: the configured batch, on-device
generation, vectorised removal, bf16 autocast on CUDA (and, as a second number on CPU, with
``--cpu-bf16``). Both train the same architecture;
the printout gives examples/s for each and the ratio, for ``sft`` and ``icot``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mulinterp.models import build_model
from mulinterp.task import PAD, MulTask
from mulinterp.training import TrainConfig, Trainer
from mulinterp.training.precision import cpu_has_native_bf16


def reference_examples_per_s(task: MulTask, preset: str, regime: str, steps: int, device: str) -> float:
    net = build_model(task, preset, seed=0, device=device).original_model
    opt = torch.optim.AdamW(net.parameters(), lr=5e-5)
    removed = 10 if regime == "icot" else task.cot_len
    import random

    rng = random.Random(0)

    def one() -> tuple[list[int], list[bool]]:
        a, b = rng.randint(1000, 9999), rng.randint(1000, 9999)
        toks = task.encode(torch.tensor([a]), torch.tensor([b]), "cot" if regime == "icot" else "plain")[0].tolist()
        if regime == "icot":
            k = removed + min(int(rng.expovariate(4.0)), task.cot_len - removed)
            toks = toks[: task.input_len] + toks[task.input_len + k :]
            mask = [i >= task.input_len - 1 for i in range(len(toks) - 1)]
        else:
            s = task.answer_start()
            mask = [s <= i < s + task.n_c for i in range(len(toks) - 1)]
        return toks, mask

    def step() -> None:
        exs = [one() for _ in range(32)]
        L = max(len(t) for t, _ in exs)
        tok = torch.tensor([t + [PAD] * (L - len(t)) for t, _ in exs], device=device)
        mask = torch.tensor([m + [False] * (L - 1 - len(m)) for _, m in exs], device=device)
        logits = net(tok[:, :-1])
        loss = F.cross_entropy(logits[mask], tok[:, 1:][mask])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return 32 * steps / (time.perf_counter() - t0)


def ours_examples_per_s(
    task: MulTask, preset: str, regime: str, steps: int, device: str, batch: int, cpu_bf16: bool = False
) -> float:
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(
            regime=regime,
            digits=task.name,
            preset=preset,
            steps=10**6,
            batch=batch,
            device=device,
            cpu_bf16=cpu_bf16,
            telemetry_every=10**6,
            eval_every=10**6,
            checkpoint_every=10**6,
            epoch_size=batch * 100,
        )
        tr = Trainer(cfg, Path(d) / "m.safetensors")
        tr.examples = cfg.epoch_size * 10 // 8  # same partial removal (10 tokens) as the reference
        tr.run(stop_after=2, progress=False)
        _sync(device)
        t0 = time.perf_counter()
        tr.run(stop_after=steps, progress=False)
        _sync(device)
        elapsed = time.perf_counter() - t0
    return batch * steps / elapsed


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    task = MulTask(4, 4)
    name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; preset {args.preset}")
    for regime in ("sft", "icot"):
        ref = reference_examples_per_s(task, args.preset, regime, args.steps, args.device)
        ours_steps = max(3, args.steps // 4)
        ours = ours_examples_per_s(task, args.preset, regime, ours_steps, args.device, args.batch)
        line = (
            f"{regime:>5}: reference-style {ref:,.0f} examples/s; mulinterp {ours:,.0f} examples/s ({ours / ref:.1f}x)"
        )
        # bf16 autocast is opt-in on CPU (--cpu-bf16) and honoured only where it is native; CUDA uses it by default
        if args.device == "cpu" and cpu_has_native_bf16():
            bf16 = ours_examples_per_s(task, args.preset, regime, ours_steps, args.device, args.batch, cpu_bf16=True)
            line += f"; with --cpu-bf16 {bf16:,.0f} examples/s ({bf16 / ref:.1f}x)"
        elif args.device == "cpu":
            line += "; --cpu-bf16 not measured (no native bf16 on this CPU: the trainer uses fp32)"
        print(line)


if __name__ == "__main__":
    main()
