"""``mulinterp show`` and ``mulinterp models``."""

from __future__ import annotations

import re

from mulinterp.cli.common import CLIError, emit_json


def parse_operand(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text or ""):
        raise CLIError(f"operand {text!r} is not a positive integer")
    if len(text) > 1 and text[0] == "0":
        raise CLIError(f"operand {text!r} has a leading zero")
    if len(text) > 8:
        raise CLIError(f"operand {text!r} has {len(text)} digits; at most 8 are supported")
    if int(text) == 0:
        raise CLIError("operands must be positive")
    return int(text)


def cmd_show(args) -> int:
    import torch

    from mulinterp.arithmetic import ground_truth
    from mulinterp.task import MulTask

    a, b = parse_operand(args.a), parse_operand(args.b)
    task = MulTask(len(args.a), len(args.b))
    if args.format == "deng":
        line = task.deng_line(a, b)
        emit_json({"line": line}) if args.json else print(line)
        return 0
    fmt = "cot" if args.format == "cot" else "plain"
    tokens = task.encode_ints([a], [b], fmt)[0]
    gt = ground_truth(torch.tensor([a]), torch.tensor([b]), task.n_a, task.n_b)
    table = {
        "s": gt.s[0].tolist(),
        "carry": gt.carry[0].tolist(),
        "c_hat": gt.c_hat[0].tolist(),
        "c": gt.c[0].tolist(),
    }
    if args.json:
        emit_json(
            {
                "task": task.name,
                "tokens": task.decode(tokens).split(),
                "ids": tokens.tolist(),
                "partial_products": gt.partial_products[0].tolist(),
                **table,
            }
        )
        return 0
    print(task.decode(tokens))
    if args.format is not None:
        return 0
    print(f"\n{a} × {b} = {a * b}   (digits least-significant first; k = answer position)")
    print("partial products a_i·b_j (rows i, columns j):")
    for i, row in enumerate(gt.partial_products[0].tolist()):
        print(f"  a{i}={gt.a[0, i].item()}: " + " ".join(f"{v:3d}" for v in row))
    print("\n  k  " + " ".join(f"{k:4d}" for k in range(task.n_c)))
    for name, label in (("s", "s_k"), ("carry", "r_k"), ("c_hat", "ĉ_k"), ("c", "c_k")):
        print(f"{label:>4} " + " ".join(f"{v:4d}" for v in table[name]))
    return 0


def cmd_models(args) -> int:
    from mulinterp.models import list_pretrained, read_metadata, task_digits

    rows = []
    for name, info in list_pretrained().items():
        cost = info.get("training_cost", {})
        rows.append(
            {
                "name": name,
                "source": "bundled",
                "task": info.get("digits") or name.rsplit("-", 1)[-1],
                "regime": info.get("regime"),
                "d_model": info.get("d_model"),
                "steps": info.get("steps"),
                "batch": info.get("batch"),
                "exact_match": info.get("test_exact_match"),
                "per_digit": info.get("test_per_digit"),
                "cost": f"{cost.get('device', '?')}, {cost.get('wall_seconds', '?')} s",
            }
        )
    for path in args.files or []:
        md = read_metadata(path)
        metrics = md.get("metrics", {})
        res = metrics.get("test") or metrics.get("val") or {}
        cost = md.get("training_cost", {})
        rows.append(
            {
                "name": path,
                "source": "file",
                "task": task_digits(md),
                "regime": md.get("regime"),
                "d_model": md["model"]["d_model"],
                "steps": md.get("steps"),
                "batch": md.get("batch"),
                "exact_match": res.get("exact_match"),
                "per_digit": res.get("per_digit"),
                "cost": f"{cost.get('device', '?')}, {cost.get('wall_seconds', '?')} s",
            }
        )
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print("no bundled models and no files given")
        return 0
    print(f"{'name':<28} {'task':<5} {'regime':<6} {'width':>5} {'steps':>7} {'batch':>5} {'exact':>7}  training cost")
    for r in rows:
        em = "?" if r["exact_match"] is None else f"{100 * r['exact_match']:.2f}%"
        steps, batch = ("?" if r[k] is None else r[k] for k in ("steps", "batch"))  # imported models have neither
        print(
            f"{r['name']:<28} {r['task']:<5} {r['regime'] or '?':<6} {r['d_model']:>5} {steps:>7} {batch:>5} {em:>7}  {r['cost']}"
        )
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "show",
        help="print a problem's tokens (and its partial products, s_k, carries, ĉ_k)",
        description="Print the token sequence of A × B. With --format deng: exactly the Deng-format "
        "line INPUT||COT #### ANSWER. Without --format: also a table of the partial products, "
        "diagonal sums s_k, carries r_k and running sums ĉ_k. Digit counts follow the operands.",
    )
    p.add_argument("a", help="first operand (1–8 digits, no leading zero)")
    p.add_argument("b", help="second operand")
    p.add_argument(
        "--format", choices=["plain", "cot", "deng"], help="plain or cot token layout, or the Deng text line"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("models", help="list bundled models (and given checkpoint files) with task and accuracy")
    p.add_argument("files", nargs="*", help="checkpoint files to list too")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)
