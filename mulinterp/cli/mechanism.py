"""``mulinterp heads``, ``dag``, ``geometry`` and ``dynamics`` (paper §3.2–3.4)."""

from __future__ import annotations

import sys

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


def _check_threshold(t: float) -> float:
    if not 0 < t < 1:
        raise CLIError(f"--threshold must be strictly between 0 and 1, got {t}")
    return t


def _write_text(path: str, text: str) -> None:
    from pathlib import Path

    from mulinterp.io import atomic_write_bytes, check_writable

    check_writable(Path(path))
    atomic_write_bytes(Path(path), text.encode())
    print(f"wrote {path}", file=sys.stderr)


# ----- heads ---------------------------------------------------------------------------
def cmd_heads(args) -> int:
    from mulinterp.circuits.heads import head_table

    check_n(args.n)
    m = load_model(args.model)
    layer, head = parse_layer_head(m, args.layer, args.head)
    table = head_table(m, n=args.n, seed=args.seed, min_mass=args.min_mass, min_weight=args.min_weight)
    rows = table.select(layer, head)
    if args.html:
        from mulinterp.viz.mechanism import attention_view_html

        _write_text(args.html, attention_view_html(table.attention, 0 if layer is None else layer, head))
    if args.out:
        from mulinterp.viz.mechanism import heads_figure

        save_figure(heads_figure(table), args.out)
    if args.json:
        emit_json([r.to_dict() for r in rows])
        return 0
    print(f"{m.name}: attention roles over {args.n} problems (timestep c_k = the position predicting c_k)")
    for r in rows:
        if args.all or r.role != "other" or layer is not None:
            what = ", ".join(f"{t} {w:.2f}" for t, w in zip(r.targets, r.weights)) or "—"
            print(f"  {head_label(r.layer, r.head):28s} c{r.position}  {r.role:8s} score {r.score:.2f}  {what}")
    counts = {role: sum(r.role == role for r in rows) for role in ("pair", "retrieve", "operand", "other")}
    print(
        "  "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + ("" if args.all or layer is not None else "  (--all lists 'other' rows)")
    )
    return 0


# ----- dag -----------------------------------------------------------------------------
def cmd_dag(args) -> int:
    from mulinterp.circuits.dag import build_dag, knockout
    from mulinterp.circuits.heads import head_table

    _check_threshold(args.threshold)
    check_n(args.n)
    check_n(args.knockout_n)
    if args.random < 0:
        raise CLIError(f"--random must be ≥ 0, got {args.random}")
    m = load_model(args.model)
    table = head_table(m, n=args.n, seed=args.seed)
    dag = build_dag(table, args.threshold)
    knock = (
        None
        if args.no_knockout
        else knockout(m, dag, n=args.knockout_n, seed=args.seed, n_random=args.random, control=args.control)
    )
    if args.out:
        from mulinterp.viz.mechanism import dag_figure

        save_figure(dag_figure(dag, knock), args.out)
    if args.json:
        emit_json(
            {**dag.to_dict(), "knockout": None if knock is None else {**knock.to_dict(), "control": args.control}}
        )
        return 0
    att_edges = dag.attention_edges()
    print(
        f"{m.name}: attention DAG, mean weight ≥ {args.threshold} over {args.n} problems: {len(att_edges)} attention edges "
        "(source → site; sites L{layer}@c{k} are named by the digit their timestep predicts)"
    )
    for e in att_edges:
        carried = ", ".join(f"a{i}·b{j}" for i, j in e.carries)
        print(f"  {e.source:>7s} → {e.target:7s} {head_label(e.layer, e.head):28s} w {e.weight:.2f}  {carried}")
    if knock is not None:
        masses = ", ".join(f"{x:.2f}" for x in knock.random_mass)
        print(
            f"knockout ({knock.n_edges} edges, {knock.clean.n} problems, greedy decoding; attention mass cut: "
            f"DAG {knock.dag_mass:.2f}, random ({args.control} control) {masses}):"
        )
        print(f"  clean   exact {knock.clean.exact_match:.4f}  per digit {knock.clean.per_digit}")
        print(
            f"  DAG cut exact {knock.dag.exact_match:.4f}  per digit {knock.dag.per_digit}  unchanged answers {knock.dag_agreement:.3f}"
        )
        for r, ag in zip(knock.random, knock.random_agreement):
            print(f"  random  exact {r.exact_match:.4f}  per digit {r.per_digit}  unchanged answers {ag:.3f}")
    return 0


# ----- geometry ------------------------------------------------------------------------
def cmd_geometry(args) -> int:
    from mulinterp.circuits.geometry import best_pair_head, fourier_analysis, minkowski
    from mulinterp.circuits.heads import head_table

    check_n(args.n)
    check_n(args.fourier_n)
    m = load_model(args.model)
    layer, head = parse_layer_head(m, args.layer, args.head)
    if (layer is None) != (head is None):
        raise CLIError("--layer and --head go together")
    if args.best and layer is not None:
        raise CLIError("--best picks the head itself; drop --layer/--head")
    position = parse_position(args.position, m.task.n_c)
    digits = tuple(d.strip() for d in args.digits.split(","))
    if len(digits) != 2:
        raise CLIError(f"--digits takes two digits like b1,a1, got {args.digits!r}")
    best = None
    if args.best:
        best = best_pair_head(head_table(m, n=min(args.n, 256), seed=args.seed))
        layer, head, position, digits = best.layer, best.head, best.position, (best.digits[1], best.digits[0])
    elif layer is None:
        layer, head = 0, min(2, m.n_heads - 1)  # the paper's first-layer head 3
    mk = minkowski(m, layer, head, position, digits, n=args.n, seed=args.seed)  # type: ignore[arg-type]
    four = fourier_analysis(m, n=args.fourier_n, seed=args.seed)
    if args.out:
        from mulinterp.viz.mechanism import minkowski_figure

        save_figure(minkowski_figure(mk), args.out)
    if args.fourier_out:
        from mulinterp.viz.mechanism import fourier_figure

        save_figure(fourier_figure({m.name: four}), args.fourier_out)
    if args.prism_out:
        from mulinterp.viz.mechanism import prism_figure

        save_figure(prism_figure(four, m.name), args.prism_out)
    out = {**four.to_dict(), "minkowski": mk.to_dict()}
    if best is not None:
        out["best_pair"] = {
            "layer": best.layer + 1,
            "head": best.head + 1,
            "position": best.position,
            "pair": list(best.pair),
            "weights": [round(w, 4) for w in best.weights],
            "is_pair_head": best.is_pair_head,
        }
    if args.json:
        emit_json(out)
        return 0
    print(f"{m.name}: Fourier R² on {{const, k=1, k=2, k=5}} (chance ≈ 0.56):")
    for k, v in four.r2.items():
        curve = " ".join(f"{s} {x:.3f}" for s, x in four.cumulative[k].items())
        print(f"  {k:12s} {v:.3f}   cumulative: {curve}")
    pc = ", ".join(f"{x:+.2f}" for x in four.prism_parity_corr)
    print(
        f"  prism: final residual at the c{four.prism_position} timestep, PCA explained "
        f"{', '.join(f'{float(x):.2f}' for x in four.prism_explained)}; correlation of PC1–3 with parity (−1)^c: {pc}"
    )
    tag = (
        ""
        if best is None
        else ("  (best pair head)" if best.is_pair_head else "  (no pair head passes; sharpest candidate)")
    )
    print(
        f"Minkowski: {head_label(mk.layer, mk.head)} at the c{mk.position} timestep, digits {mk.digits[0]}, {mk.digits[1]}{tag}"
    )
    f = mk.fit
    print(
        f"  additive R² {f.additive_r2:.3f}   interaction R² {f.interaction_r2:.3f}   "
        f"{mk.digits[0]} alone {f.first_r2:.3f}   {mk.digits[1]} alone {f.second_r2:.3f}   (n = {f.n})"
    )
    return 0


# ----- dynamics ------------------------------------------------------------------------
def cmd_dynamics(args) -> int:
    from mulinterp.circuits.dynamics import dynamics

    if not 0 < args.threshold <= 1:
        raise CLIError(f"--threshold must be in (0, 1], got {args.threshold}")
    runs = dynamics(args.model or [default_model("sft"), default_model("aux")], threshold=args.threshold)
    if args.out:
        from mulinterp.viz.mechanism import dynamics_figure

        save_figure(dynamics_figure(runs), args.out)
    summaries = [d.summary() for d in runs]
    if args.json:
        emit_json(summaries)
        return 0
    for s in summaries:
        print(f"{s['name']}: {s['steps']} steps, final exact match {s['exact_match']:.4f}")
        learned = ", ".join(f"c{k} {'never' if st is None else st}" for k, st in enumerate(s["learned_step"]))
        print(f"  step each digit first reaches accuracy ≥ {args.threshold}: {learned}")
        print(f"  final loss per position:      {s['final_pos_loss']}  (chance {s['chance_loss']})")
        print(f"  final grad norm / its peak:   {s['grad_norm_final_over_peak']}")
        print(f"  at chance (loss ≥ 0.9·ln 10): {[f'c{k}' for k in s['plateau_digits']] or 'none'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("heads", help="classify attention heads: pair (cache a_i·b_j), retrieve, other")
    add_analysis_args(p, n=256)
    p.add_argument("--layer", type=int, help="only this layer (1-based)")
    p.add_argument("--head", type=int, help="only this head (1-based; needs --layer)")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write a circuitsvis attention view (the chosen head, or all heads of the layer; default layer 1)",
    )
    p.add_argument("--min-mass", type=float, default=0.5, help="mass a role needs (default 0.5)")
    p.add_argument("--min-weight", type=float, default=0.1, help="weight each target needs (default 0.1)")
    p.add_argument("--all", action="store_true", help="also list heads with role 'other'")
    p.set_defaults(func=cmd_heads)

    p = subparsers.add_parser("dag", help="attention DAG of cached partial products, with an edge-knockout check")
    add_analysis_args(p, n=256)
    p.add_argument(
        "--knockout-n",
        type=int,
        default=16,
        help="problems decoded greedily for the knockout (default 16: CPU-fast, coarse; use 1000 on a GPU)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.25,
        help="minimum mean attention weight of an edge, in (0, 1) (default 0.25)",
    )
    p.add_argument("--random", type=int, default=3, help="random-edge control draws (default 3)")
    p.add_argument(
        "--control",
        choices=["count", "mass"],
        default="count",
        help="random edges: as many as the DAG has, uniform among non-DAG node edges (count, default), or drawn by attention weight until they carry the DAG's attention mass (mass)",
    )
    p.add_argument("--no-knockout", action="store_true", help="only build the graph")
    p.set_defaults(func=cmd_dag)

    p = subparsers.add_parser("geometry", help="Minkowski sums of a pair head; Fourier digit basis; pentagonal prism")
    add_analysis_args(p, n=1000)  # --n: problems for the Minkowski fit (100 digit-pair cells)
    p.add_argument("--layer", type=int, help="layer of the head (1-based; default 1, the paper's case)")
    p.add_argument("--head", type=int, help="head (1-based; default 3, the paper's case)")
    p.add_argument("--position", type=int, default=2, help="answer timestep k, the one predicting c_k (default 2)")
    p.add_argument("--digits", default="b1,a1", help="the two operand digits to colour by (default b1,a1)")
    p.add_argument(
        "--best",
        action="store_true",
        help="use the sharpest pair head found by `heads` (its timestep and digits; ignores --position, --digits)",
    )
    p.add_argument(
        "--fourier-n",
        type=int,
        default=256,
        help="problems for the final-residual Fourier fit and the prism PCA (default 256)",
    )
    p.add_argument("--fourier-out", metavar="FILE", help="save the cumulative Fourier R² figure")
    p.add_argument("--prism-out", metavar="FILE", help="save the 3-D PCA of the final residual at c_2")
    p.set_defaults(func=cmd_geometry)

    p = subparsers.add_parser("dynamics", help="per-position loss and gradient norm over training (telemetry)")
    add_analysis_args(
        p, multiple_models=True, default_help="the best bundled set's sft and aux models (see `mulinterp models`)"
    )
    p.add_argument(
        "--threshold", type=float, default=0.9, help="accuracy at which a digit counts as learned (default 0.9)"
    )
    p.set_defaults(func=cmd_dynamics)
