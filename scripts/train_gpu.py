"""Train the bundled 4×4 reference models on one GPU inside a fixed wall-clock budget.

    python scripts/train_gpu.py --out runs/ --budget 420

Starts one worker process per run (SFT, two ICoT and two aux variants) on the same GPU. Each
worker first measures its own step rate under the shared load (``--calibrate`` steps), then
sizes its run to the budget: ``steps = rate × budget``, and for ICoT the removal rate so that
the whole CoT is gone at ``removal_frac`` of the steps. Workers checkpoint every
``checkpoint_every`` steps and resume from ``OUT/NAME.safetensors.resume`` when started again.
The parent then picks the best ICoT and aux variant by validation exact match, measures
every kept model on 10 000 test-split problems in fp32 and with bf16-rounded weights, and
writes bf16 checkpoints, telemetry and ``summary.json`` to ``--export``.

Tested on CPU with ``--preset tiny --digits 2x2 --budget 20``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _stub_datasets() -> None:
    """TransformerLens imports ``datasets`` for its evals/tokenisation helpers, which we never
    call. GPU images without it get an empty stand-in (the same one the campaign installs as
    sitecustomize) so the import succeeds."""
    import runpy

    runpy.run_path(str(Path(__file__).with_name("device_sitecustomize.py")))


# First H100 call (runs/gpu1): sft, icot-a (lr 5e-4, batch 256, removal done at 50 %) and
# icot-b (lr 3e-4, 70 %) — both ICoT runs removed ~31 k examples per token and collapsed into
# the SFT optimum; the aux runs crashed (integer einsum on CUDA, fixed). Second call: slower
# removal (larger batch, 80 %) and the aux runs again, capped at the SFT run's budget.
RUNS: dict[str, dict] = {
    "sft": {"regime": "sft", "lr": 1e-3, "batch": 512},
    "icot-a": {"regime": "icot", "lr": 5e-4, "batch": 256, "removal_frac": 0.5},
    "icot-b": {"regime": "icot", "lr": 3e-4, "batch": 256, "removal_frac": 0.7},
    "icot-c": {"regime": "icot", "lr": 5e-4, "batch": 1024, "removal_frac": 0.8},
    "icot-d": {"regime": "icot", "lr": 1e-3, "batch": 512, "removal_frac": 0.8},
    "aux-a": {"regime": "aux", "lr": 1e-3, "batch": 512, "aux_weight": 1.0},
    "aux-b": {"regime": "aux", "lr": 1e-3, "batch": 512, "aux_weight": 3.0},
}


def worker(name: str, args) -> None:
    _stub_datasets()
    import torch

    from mulinterp.models import resume_path
    from mulinterp.training import TrainConfig, Trainer

    spec = dict(RUNS[name])
    removal_frac = spec.pop("removal_frac", None)
    base = dict(
        digits=args.digits,
        preset=args.preset,
        warmup=500,
        seed=args.seed,
        telemetry_every=250,
        eval_every=2000,
        eval_n=2000,
        checkpoint_every=2000,
        removal_smoothing=4.0,
        remove_per_epoch=8.0,
    )
    out = Path(args.out) / f"{name}.safetensors"
    resume = resume_path(out).is_file()
    t_start = time.time()
    if not resume:  # size the run from a calibration under the shared load
        cal = Trainer(
            TrainConfig(**{**base, **spec, "steps": 10**9, "warmup": 10}), Path(args.out) / f".{name}-cal.safetensors"
        )
        cal.run(stop_after=20, progress=False)
        t0 = time.time()
        cal.run(stop_after=args.calibrate, progress=False)
        rate = args.calibrate / (time.time() - t0)
        del cal
        remaining = args.budget - (time.time() - t_start)
        steps = max(100, int(rate * remaining * 0.92))
        if args.max_examples:
            steps = min(steps, args.max_examples // spec["batch"])
    else:
        steps = json.loads((Path(args.out) / f"{name}.plan.json").read_text())["steps"]
    cfg_d = {**base, **spec, "steps": steps}
    if removal_frac is not None:
        from mulinterp.task import MulTask

        cot = MulTask.parse(args.digits).cot_len
        cfg_d["epoch_size"] = max(1, int(removal_frac * steps * spec["batch"] * cfg_d["remove_per_epoch"] / cot))
    cfg = TrainConfig(**cfg_d)
    (Path(args.out) / f"{name}.plan.json").write_text(json.dumps({"steps": steps, "config": cfg.to_dict()}))
    trainer = Trainer(cfg, out)
    if resume:
        trainer.load_resume()
    remaining = args.budget - (time.time() - t_start)
    print(f"[{name}] steps={steps} budget_left={remaining:.0f}s device={trainer.device}", flush=True)
    m = trainer.run(time_budget=remaining, progress=False)
    print(f"[{name}] done step={trainer.step} val={m.meta['metrics'].get('val')}", flush=True)
    torch.cuda.empty_cache() if torch.cuda.is_available() else None


def export(args) -> None:
    _stub_datasets()
    import torch

    from mulinterp.evaluation import evaluate_generated
    from mulinterp.models import load, save, telemetry_path

    runs = Path(args.out)
    exp = Path(args.export)
    exp.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    summary: dict = {}
    for name in RUNS:
        p = runs / f"{name}.safetensors"
        if p.is_file():
            m = load(p, device=device)
            summary[name] = {
                "val": m.meta["metrics"].get("val"),
                "steps": m.meta["steps"],
                "cost": m.meta["training_cost"],
            }

    def best(prefix: str) -> str | None:
        cands = [n for n in summary if n.startswith(prefix) and summary[n]["val"]]
        return max(cands, key=lambda n: summary[n]["val"]["exact_match"]) if cands else None

    chosen = {"sft-4x4": "sft" if "sft" in summary else None, "icot-4x4": best("icot"), "aux-4x4": best("aux")}
    summary["chosen"] = chosen
    for bundle, name in chosen.items():
        if name is None:
            continue
        m = load(runs / f"{name}.safetensors", device=device)
        fp32 = evaluate_generated(m.model, m.task, args.test_n, seed=2025, device=device)
        tmp = exp / f"{bundle}.safetensors"
        save(m, tmp, dtype=torch.bfloat16)
        mb = load(tmp, device=device)
        bf16 = evaluate_generated(mb.model, mb.task, args.test_n, seed=2025, device=device)
        m.meta["name"] = bundle
        m.meta["run"] = name
        m.meta["metrics"]["test_fp32"] = fp32.to_dict()
        m.meta["metrics"]["test"] = bf16.to_dict()
        m.meta["stored_dtype"] = "bfloat16"
        save(m, tmp, dtype=torch.bfloat16)
        tel = telemetry_path(runs / f"{name}.safetensors")
        if tel.is_file():
            telemetry_path(exp / f"{bundle}.safetensors").write_bytes(tel.read_bytes())
        summary[bundle] = {"run": name, "test_fp32": fp32.to_dict(), "test_bf16": bf16.to_dict()}
        print(
            f"[export] {bundle} <- {name}: fp32 {fp32.exact_match:.4f} bf16 {bf16.exact_match:.4f} {bf16.per_digit}",
            flush=True,
        )
    (exp / "summary.json").write_text(json.dumps(summary, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="working folder for checkpoints, resume files and telemetry")
    ap.add_argument("--export", help="folder for the chosen bf16 checkpoints + summary (default OUT/export)")
    ap.add_argument("--budget", type=float, default=420, help="training wall-clock seconds per worker")
    ap.add_argument("--calibrate", type=int, default=100, help="steps timed to size the run")
    ap.add_argument("--preset", default="gpu")
    ap.add_argument("--digits", default="4x4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-n", type=int, default=10_000)
    ap.add_argument("--max-examples", type=int, default=0, help="cap on steps × batch per run (0: none)")
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of " + ",".join(RUNS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.export = args.export or str(Path(args.out) / "export")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args.worker, args)
        return
    names = [n for n in args.runs.split(",") if n]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    procs = []
    for n in names:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            n,
            "--out",
            args.out,
            "--budget",
            str(args.budget),
            "--calibrate",
            str(args.calibrate),
            "--max-examples",
            str(args.max_examples),
            "--preset",
            args.preset,
            "--digits",
            args.digits,
            "--seed",
            str(args.seed),
        ]
        log = open(Path(args.out) / f"{n}.log", "a")
        procs.append((n, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for n, p, log in procs:
        p.wait()
        log.close()
        print(
            f"[{n}] exit {p.returncode}; log tail:\n"
            + "".join((Path(args.out) / f"{n}.log").read_text().splitlines(True)[-3:]),
            flush=True,
        )
    export(args)


if __name__ == "__main__":
    main()
