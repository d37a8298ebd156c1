"""``mulinterp attribute``, ``dla``, ``patch`` and ``probe`` (paper §3.1 and the circuit tools)."""

from __future__ import annotations

import math
import re

from mulinterp.cli.common import (
    CLIError,
    add_analysis_args,
    check_n,
    default_model,
    emit_json,
    head_label,
    load_model,
    parse_layer_head,
    parse_position,
    save_figure,
)


def _num(x: float, digits: int = 4):
    """A float for JSON: rounded, NaN → null."""
    return None if math.isnan(x) else round(x, digits)


def _fmt(x: float, width: int = 6, digits: int = 2) -> str:
    return f"{'—':>{width}}" if math.isnan(x) else f"{x:{width}.{digits}f}"


def _component_label(name: str) -> str:
    """``L2H3`` → ``L2H3 (blocks.1, head 2)``, ``L1 MLP`` → ``L1 MLP (blocks.0)``."""
    m = re.fullmatch(r"L(\d+)H(\d+)", name)
    if m:
        return head_label(int(m.group(1)) - 1, int(m.group(2)) - 1)
    from mulinterp.hooks.names import component_label

    m = re.fullmatch(r"L(\d+) (.+)", name)
    return component_label(int(m.group(1)) - 1, m.group(2)) if m else name


# ----- attribute -------------------------------------------------------------------------
def cmd_attribute(args) -> int:
    from mulinterp.circuits.attribution import dependency_summary, logit_attribution, middle_digits

    check_n(args.n)
    m = load_model(args.model)
    att = logit_attribution(m, n=args.n, seed=args.seed, target=args.target, prefix=args.prefix)
    summary = dependency_summary(att, m.task)
    if args.out:
        from mulinterp.viz.dependencies import attribution_figure

        save_figure(attribution_figure({m.name: att}), args.out)
    if args.json:
        emit_json(
            {
                "model": m.name,
                "n": att.n,
                "rows": att.rows,
                "cols": att.cols,
                "matrix": [[_num(v) for v in row] for row in att.matrix.tolist()],
                "sem": [[_num(v) for v in row] for row in att.sem.tolist()],
                "summary": summary,
            }
        )
        return 0
    print(
        f"{m.name}: mean drop in the {args.target} c_k token's logit when one operand digit changes "
        f"({att.n} problems, teacher-forced, {args.prefix} answer prefix)"
    )
    print("      " + " ".join(f"{c:>6s}" for c in att.cols))
    for name, row in zip(att.rows, att.matrix.tolist()):
        print(f"  {name:3s} " + " ".join(_fmt(v) for v in row))
    ks = middle_digits(m.task)
    print(
        f"mean Δlogit over c{ks[0]}–c{ks[-1]}: cells c_k depends on (i ≤ k / j ≤ k) {summary['dependent']:.3f}, "
        f"cells it does not {_fmt(summary['independent'], 0, 3).strip()}"
    )
    return 0


# ----- dla -------------------------------------------------------------------------------
def cmd_dla(args) -> int:
    from mulinterp.circuits.dla import direct_logit_attribution

    check_n(args.n)
    m = load_model(args.model)
    k = parse_position(args.position, m.task.n_c)
    if args.top <= 0:
        raise CLIError(f"--top must be positive, got {args.top}")
    d = direct_logit_attribution(m, n=args.n, seed=args.seed, target=args.target)
    ranked = d.ranked(k, by=args.sort)[: args.top]
    sources = d.ranked_sources(k, top=args.sources) if args.sources > 0 else []
    if args.out:
        from mulinterp.viz.dependencies import dla_figure

        save_figure(dla_figure(d, k, top=args.top), args.out)
    logit, diff = float(d.model_logit[:, k].mean()), float(d.model_logit_diff[:, k].mean())
    if args.json:
        emit_json(
            {
                "model": m.name,
                "n": args.n,
                "position": k,
                "target": args.target,
                "model_logit": _num(logit),
                "model_logit_diff": _num(diff),
                "components": [
                    {"name": n, "label": _component_label(n), "logit": _num(a), "logit_diff": _num(b)}
                    for n, a, b in ranked
                ],
                "sources": [
                    {"layer": l + 1, "head": h + 1, "label": head_label(l, h), "source": s, "logit_diff": _num(v)}
                    for l, h, s, v in sources
                ],
            }
        )
        return 0
    print(f"{m.name}: direct logit attribution at c{k} ({args.n} problems, {args.target} digit vs the runner-up token)")
    print(f"  model: mean logit {logit:.3f}, mean logit difference {diff:.3f}  (the components below sum to these)")
    print(f"  {'component':34s} {'logit':>8s} {'logit diff':>11s}")
    for name, a, b in ranked:
        print(f"  {_component_label(name):34s} {a:8.3f} {b:11.3f}")
    if sources:
        print("  largest head × source-position shares of the logit difference:")
        for l, h, s, v in sources:
            print(f"  {head_label(l, h):28s} ← {s:5s} {v:8.3f}")
    return 0


# ----- patch -----------------------------------------------------------------------------
def _parse_patch_position(text: str, n_c: int) -> int | None:
    if text == "all":
        return None
    try:
        k = int(text.lstrip("c"))
    except ValueError:
        raise CLIError(
            f"--position must be an answer position 0–{n_c - 1} (or c0–c{n_c - 1}) or 'all', got {text!r}"
        ) from None
    return parse_position(k, n_c)


def cmd_patch(args) -> int:
    from mulinterp.circuits.patching import patch_head, patch_heads, prepare

    check_n(args.n)
    if args.top <= 0:
        raise CLIError(f"--top must be positive, got {args.top}")
    m = load_model(args.model)
    layer, head = parse_layer_head(m, args.layer, args.head)
    position = _parse_patch_position(args.position, m.task.n_c)
    setup = prepare(m, corrupt=args.corrupt, n=args.n, seed=args.seed)  # ValueError on a bad --corrupt
    where = "every position" if position is None else f"the position predicting c{position}"
    n_valid = setup.n_valid.tolist()
    if head is not None:
        res = patch_head(m, layer, head, position=position, setup=setup)
        effect = res.effect.tolist()
        if args.out:
            from mulinterp.viz.dependencies import patching_figure

            save_figure(patching_figure(res, title=f"Patching {head_label(layer, head)} at {where}"), args.out)
        if args.json:
            emit_json(
                {
                    "model": m.name,
                    "layer": layer + 1,
                    "head": head + 1,
                    "label": head_label(layer, head),
                    "position": "all" if position is None else position,
                    "corrupt": args.corrupt,
                    "effect": [_num(v) for v in effect],
                    "n_valid": n_valid,
                }
            )
            return 0
        print(
            f"{m.name}: patching {head_label(layer, head)} at {where} from clean into corrupted runs "
            f"(corrupt {args.corrupt}, {args.n} pairs); 0 = corrupted, 1 = clean"
        )
        for k, (v, nv) in enumerate(zip(effect, n_valid)):
            note = "  (no pair changes this digit)" if nv == 0 else f"  ({nv} pairs differ)"
            print(f"  c{k}: {_fmt(v)}{note}")
        return 0

    res = patch_heads(setup, position=position)
    effect = res.effect  # [layer, head, n_c]
    if layer is not None:  # --layer alone: that layer's heads
        effect = effect[layer : layer + 1]
    layers = range(m.n_layers) if layer is None else [layer]
    rows = [(l, h) for l in layers for h in range(m.n_heads)]
    matrix = effect.reshape(len(rows), -1)
    if args.out:
        from mulinterp.viz.dependencies import patching_figure

        save_figure(
            patching_figure(res, title=f"Patching each head's output at {where} (corrupt {args.corrupt})"), args.out
        )
    if args.json:
        emit_json(
            {
                "model": m.name,
                "corrupt": args.corrupt,
                "position": "all" if position is None else position,
                "rows": [f"L{l + 1}H{h + 1}" for l, h in rows],
                "labels": [head_label(l, h) for l, h in rows],
                "cols": res.labels[-1],
                "matrix": [[_num(v) for v in row] for row in matrix.tolist()],
                "n_valid": n_valid,
            }
        )
        return 0
    print(
        f"{m.name}: patching each head's output at {where} (corrupt {args.corrupt}, {args.n} pairs); "
        f"0 = corrupted, 1 = clean"
    )
    print("        " + " ".join(f"{c:>6s}" for c in res.labels[-1]))
    for (l, h), row in zip(rows, matrix.tolist()):
        print(f"  L{l + 1}H{h + 1}  " + " ".join(_fmt(v) for v in row))
    print("  pairs " + " ".join(f"{v:6d}" for v in n_valid))
    print(f"top heads per answer digit (top {args.top}):")
    for k in range(matrix.shape[1]):
        col = matrix[:, k]
        if n_valid[k] == 0 or col.isnan().all():
            print(f"  c{k}: —  (no pair changes this digit)")
            continue
        order = col.nan_to_num(float("-inf")).argsort(descending=True)[: args.top].tolist()
        print(f"  c{k}: " + ", ".join(f"{head_label(*rows[i])} {float(col[i]):.2f}" for i in order))
    return 0


# ----- probe -----------------------------------------------------------------------------
def cmd_probe(args) -> int:
    from mulinterp.circuits.probes import fit_probes

    check_n(args.n)
    if args.n_train < 2:
        raise CLIError(f"--n-train must be at least 2, got {args.n_train}")
    names = args.model or [default_model()]
    results = {}
    for name in names:
        m = load_model(name)
        results[m.name if m.name not in results else name] = fit_probes(
            m, target=args.target, heads=args.heads, n_train=args.n_train, n_test=args.n, seed=args.seed
        )
    if args.out:
        from mulinterp.viz.dependencies import probe_scatter

        n_c = min(len(r.positions) for r in results.values())
        site = args.site
        if site is not None:
            for r in results.values():
                r.site_index(site)  # ValueError naming the probed sites
        save_figure(probe_scatter(results, site=site, ks=range(min(2, n_c - 1), min(7, n_c))), args.out)
    if args.json:
        emit_json(
            {
                "target": args.target,
                "n_train": args.n_train,
                "n_test": args.n,
                "models": {
                    name: {
                        "sites": r.sites,
                        "positions": r.positions,
                        "mae": [[_num(v) for v in row] for row in r.mae.tolist()],
                        "r2": [[_num(v) for v in row] for row in r.r2.tolist()],
                    }
                    for name, r in results.items()
                },
            }
        )
        return 0
    for name, r in results.items():
        print(
            f"{name}: ridge probes for {args.target} (fit on {args.n_train} train problems, "
            f"scored on {args.n} test problems)"
        )
        width = max(len(s) for s in r.sites)
        for what, table in (("MAE", r.mae), ("R²", r.r2)):
            print(f"  {what:{width}s}  " + " ".join(f"{p:>6s}" for p in r.positions))
            for site, row in zip(r.sites, table.tolist()):
                print(f"  {site:{width}s}  " + " ".join(_fmt(v) for v in row))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "attribute", help="counterfactual logit attribution: operand digit × answer digit heatmap"
    )
    add_analysis_args(p, n=128)
    p.add_argument(
        "--target",
        choices=("predicted", "true"),
        default="predicted",
        help="track the token the model predicts on the clean run (default) or the true c_k",
    )
    p.add_argument(
        "--prefix",
        choices=("clean", "own"),
        default="clean",
        help="answer prefix of the corrupted run: the clean problem's (default; one token differs) or its own",
    )
    p.set_defaults(func=cmd_attribute)

    p = subparsers.add_parser("dla", help="direct logit attribution of c_K to embeddings, heads, MLPs")
    add_analysis_args(p, n=128)
    p.add_argument("--position", type=int, default=2, help="answer position K, i.e. the digit c_K (default 2)")
    p.add_argument("--top", type=int, default=10, help="components to list (default 10)")
    p.add_argument("--sources", type=int, default=5, help="head × source-position shares to list (default 5; 0 = none)")
    p.add_argument(
        "--sort",
        choices=("diff", "logit"),
        default="diff",
        help="rank by share of the logit difference (default) or of the logit",
    )
    p.add_argument(
        "--target",
        choices=("true", "predicted"),
        default="true",
        help="decompose the true c_K's logit (default) or the predicted token's",
    )
    p.set_defaults(func=cmd_dla)

    p = subparsers.add_parser(
        "patch", help="activation patching of attention heads between problems differing in one digit"
    )
    add_analysis_args(p, n=128)
    p.add_argument("--layer", type=int, help="layer of the head (1-based); without --head: sweep that layer's heads")
    p.add_argument("--head", type=int, help="head (1-based; needs --layer); without both: sweep all heads")
    p.add_argument(
        "--position",
        default="all",
        metavar="K|all",
        help="patch the head only at the position predicting c_K, or at all positions (default all)",
    )
    p.add_argument(
        "--corrupt",
        default="random",
        metavar="a1|b2|random",
        help="operand digit changed between clean and corrupted problems (default random: one per pair)",
    )
    p.add_argument("--top", type=int, default=3, help="heads listed per answer digit in a sweep (default 3)")
    p.set_defaults(func=cmd_patch)

    p = subparsers.add_parser(
        "probe", help="ridge probes for the running sum ĉ_k (or carries, s_k): MAE and R² per site"
    )
    add_analysis_args(p, n=256, multiple_models=True)
    p.add_argument(
        "--n-train", type=int, default=1024, help="training problems per probe (default 1024; --n is the test count)"
    )
    p.add_argument(
        "--target", choices=("c_hat", "carry", "s"), default="c_hat", help="quantity to probe (default c_hat)"
    )
    p.add_argument("--heads", action="store_true", help="also probe each head's output (attn.hook_z)")
    p.add_argument("--site", help="site shown in the --out scatter (default: last layer's resid_mid)")
    p.set_defaults(func=cmd_probe)
