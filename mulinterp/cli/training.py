"""``mulinterp train``, ``mulinterp eval`` and ``mulinterp multiply``."""

from __future__ import annotations

from mulinterp.cli.common import DEFAULT_MODEL, DEFAULT_MODEL_HELP, CLIError, check_n, emit_json, load_model
from mulinterp.cli.core import parse_operand

# CLI flag → TrainConfig field; flags default to None so a recipe file's value survives
_OVERRIDES = {
    "regime": "regime",
    "digits": "digits",
    "preset": "preset",
    "steps": "steps",
    "batch": "batch",
    "lr": "lr",
    "seed": "seed",
    "device": "device",
    "warmup": "warmup",
    "schedule": "schedule",
    "weight_decay": "weight_decay",
    "remove_per_epoch": "remove_per_epoch",
    "epoch_size": "epoch_size",
    "smoothing": "removal_smoothing",
    "aux_weight": "aux_weight",
    "aux_scale": "aux_scale",
    "telemetry_every": "telemetry_every",
    "checkpoint_every": "checkpoint_every",
    "eval_every": "eval_every",
    "cpu_bf16": "cpu_bf16",
    "init": "init_from",
    "stop_at_exact": "stop_at_exact",
}


def cmd_train(args) -> int:
    from mulinterp.training import TrainConfig, train

    base = TrainConfig.from_file(args.config).to_dict() if args.config else {}
    for flag, key in _OVERRIDES.items():
        if getattr(args, flag) is not None:
            base[key] = getattr(args, flag)
    if args.aux_layer is not None:
        base["aux_layer"] = args.aux_layer - 1
    if args.aux_heads is not None:
        base["aux_heads"] = [int(h) - 1 for h in args.aux_heads.split(",")]
    if args.no_reset_optimizer:
        base["reset_optimizer"] = False
    if "regime" not in base:
        raise CLIError("--regime is required (sft, icot or aux) unless --config gives it")
    cfg = TrainConfig.from_dict(base)
    m = train(
        cfg,
        args.out,
        resume=args.resume,
        stop_after=args.stop_after,
        time_budget=args.time_budget,
        progress=not args.quiet,
    )
    val = m.meta["metrics"].get("val")
    msg = f"wrote {args.out} after {m.meta['steps']} steps"
    if val:
        msg += f"; val exact match {val['exact_match']:.4f}, per digit {val['per_digit']}"
    print(msg)
    return 0


def cmd_eval(args) -> int:
    import torch

    from mulinterp.evaluation import evaluate, evaluate_generated, evaluate_split
    from mulinterp.task import read_deng_file

    if args.data and args.all:
        raise CLIError("--all evaluates generated problems; it cannot be combined with --data")
    m = load_model(args.model)
    if args.data:
        task, problems = read_deng_file(args.data)
        if task != m.task:
            raise CLIError(f"{args.data} holds {task.name} problems but {args.model} is a {m.task.name} model")
        a = torch.tensor([p.a for p in problems])
        b = torch.tensor([p.b for p in problems])
        res = evaluate(m.model, m.task, a, b, source=str(args.data))
    elif args.all:
        res = evaluate_split(m.model, m.task, split=args.split)
    else:
        res = evaluate_generated(m.model, m.task, check_n(args.n), seed=args.seed, split=args.split)
    if args.json:
        emit_json({"model": args.model, **res.to_dict()})
        return 0
    print(f"{args.model} on {res.n} problems ({res.source}): exact match {100 * res.exact_match:.2f}%")
    print("per digit: " + "  ".join(f"c{k} {100 * v:.1f}%" for k, v in enumerate(res.per_digit)))
    twin = res.extra.get("commuted_twin")
    if twin:
        rows = [
            f"{label} {twin[key]['n']} problems, {_pct(twin[key]['exact_match'])}"
            for key, label in (("in_train", "in the training split:"), ("held_out", "held out too:"))
        ]
        print("by commuted twin b × a: " + "; ".join(rows))
    return 0


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def cmd_multiply(args) -> int:
    import torch

    from mulinterp.evaluation import greedy_answer

    a, b = parse_operand(args.a), parse_operand(args.b)
    m = load_model(args.model)
    try:
        m.task.check_operands(a, b)
    except ValueError as e:
        raise CLIError(f"{e} ({m.name} is a {m.task.name} model)") from None
    a_t, b_t = torch.tensor([a]), torch.tensor([b])
    digits = greedy_answer(m.model, m.task, a_t, b_t)[0].tolist()
    true = m.task.true_answer(a_t, b_t)[0].tolist()
    wrong = [k for k, (p, t) in enumerate(zip(digits, true)) if p != t]
    shown = "".join(str(d) if d < 10 else "?" for d in reversed(digits))
    if args.json:
        emit_json(
            {
                "a": a,
                "b": b,
                "model_digits": digits,
                "true_digits": true,
                "correct": not wrong,
                "wrong_positions": wrong,
            }
        )
        return 0
    label = args.model or m.name
    print(f"{label}: {a} × {b} = {shown}")
    print(f"{'true':>{len(label)}}: {a} × {b} = {str(a * b).zfill(m.task.n_c)}")
    if wrong:
        marks = "".join("^" if k in wrong else " " for k in reversed(range(m.task.n_c)))
        print(" " * (len(label) + len(f": {a} × {b} = ")) + marks)
        print("wrong digits: " + ", ".join(f"c{k}" for k in wrong) + " (c0 = least significant)")
    else:
        print("correct")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (sft, icot or aux) and write a checkpoint + telemetry",
        description="Train a 2-layer model on n×m multiplication. Writes OUT (safetensors "
        "checkpoint), OUT.resume (optimizer/RNG state for --resume) and OUT's .telemetry.jsonl "
        "beside it. Options left out come from --config (a recipe JSON, e.g. recipes/icot-4x4.json) "
        "or the defaults of mulinterp.training.TrainConfig.",
    )
    p.add_argument("--config", metavar="FILE", help="recipe JSON (keys of TrainConfig); flags override it")
    p.add_argument("--regime", choices=["sft", "icot", "aux"], help="training regime")
    p.add_argument("--digits", help="task, e.g. 4x4 or 2x3 (1–8 digits each)")
    p.add_argument("--preset", choices=["paper", "gpu", "cpu", "small", "tiny"], help="model width preset")
    p.add_argument("--steps", type=int, help="optimizer steps in total")
    p.add_argument("--batch", type=int, help="problems per step (fresh random problems every step)")
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--schedule", choices=["cosine", "constant"], help="after warm-up: cosine decay or constant")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    p.add_argument("--seed", type=int, help="seed for initialisation and data")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument(
        "--cpu-bf16",
        action="store_true",
        default=None,
        help="bf16 autocast on CPU where the CPU has AVX512-BF16/AMX (faster there); ignored, with a note, on CPUs that would emulate it",
    )
    p.add_argument("--remove-per-epoch", type=float, help="icot: CoT tokens removed per epoch of examples")
    p.add_argument("--epoch-size", type=int, help="icot: examples per epoch-equivalent")
    p.add_argument("--smoothing", type=float, help="icot: λ of the removal offset P(k) ∝ exp(−λk); inf disables")
    p.add_argument("--no-reset-optimizer", action="store_true", help="icot: keep AdamW state when removal grows")
    p.add_argument("--aux-weight", type=float, help="aux: weight λ of the probe MSE")
    p.add_argument(
        "--aux-scale",
        type=float,
        help="aux: divide every position's ĉ error by this one number (1: MSE in ĉ units); "
        "default: each position by its own std",
    )
    p.add_argument("--aux-layer", type=int, help="aux: layer whose hook_z the probe reads (1-based, default 2)")
    p.add_argument("--aux-heads", help="aux: comma-separated 1-based heads the probe reads (default all)")
    p.add_argument("--telemetry-every", type=int, help="steps between telemetry rows")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--eval-every", type=int, help="steps between validation evaluations")
    p.add_argument("--out", required=True, metavar="FILE", help="checkpoint to write (.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.resume")
    p.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="warm start: initial weights from CHECKPOINT (same task and width), fresh optimizer, "
        "counters from 0 (ignored with --resume)",
    )
    p.add_argument(
        "--stop-at-exact",
        type=float,
        metavar="X",
        help="stop (checkpointed) once the periodic validation exact match reaches X (e.g. 0.995)",
    )
    p.add_argument("--stop-after", type=int, metavar="N", help="stop (checkpointed) after N steps of this run")
    p.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop (checkpointed) after this wall time")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval",
        help="exact match and per-digit accuracy by greedy decoding",
        description="Evaluate MODEL (bundled name or checkpoint file) by greedy decoding on fresh "
        "held-out problems (--n random draws, or --all of them on small tasks), or on a Deng-format file with "
        "--data. Square tasks also report accuracy split by whether each problem's commuted twin "
        "b × a was in the training split (recalling the twin is not multiplying).",
    )
    p.add_argument("model", metavar="MODEL", help="bundled name (see `mulinterp models`) or checkpoint file")
    p.add_argument("--data", metavar="FILE", help="Deng-format file (INPUT||COT #### ANSWER per line)")
    p.add_argument("--n", type=int, default=10_000, help="generated problems (default 10000)")
    p.add_argument("--seed", type=int, default=2025, help="seed for generated problems (default 2025)")
    p.add_argument("--split", choices=["test", "val"], default="test", help="held-out split to draw from")
    p.add_argument(
        "--all",
        action="store_true",
        help="every problem of the split instead of --n random draws (tasks up to about 3x3)",
    )
    p.add_argument("--json", action="store_true", help='print {"exact_match", "per_digit", "n", …}')
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("multiply", help="ask a model for A × B and compare with the true product")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"bundled name or checkpoint (default {DEFAULT_MODEL_HELP})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_multiply)
