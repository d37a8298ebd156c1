"""``mulinterp campaign``: status, run, fork, curve, cooldown, promote and readme for the training campaign."""

from __future__ import annotations

from pathlib import Path

from mulinterp.cli.common import CLIError, emit_json


def _fmt_status(st: dict, name_width: int = 12) -> str:
    from mulinterp.training.campaign import device_short, digits_line

    exact = "—" if st["val_exact"] is None else f"{100 * st['val_exact']:.1f}%"
    digits = digits_line(st["val_per_digit"] or [])
    if st["stage_exact"] is not None:  # only ICoT rows with CoT left carry one
        exact, digits = f"{100 * st['stage_exact']:.1f}%*", digits_line(st["stage_per_digit"])
    elif st.get("fall_exact") is not None:  # plain_cooldown, plain phase: the saved state is at full rate
        exact, digits = f"{100 * st['fall_exact']:.1f}%†", digits_line(st["fall_per_digit"] or [])
    cot = f"{st['cot_left']}" if st["regime"] == "icot" else "–"
    hours = st["wall_s"] / 3600
    devices = ",".join(device_short(d) for d in st["wall_by_device"]) or "–"
    ex = f"{st['examples'] / 1e6:.1f}M"
    return (
        f"{st['name']:<{name_width}} {st['digits']:<4} {st['regime']:<4} d{st['d_model']:<4} {st['step']:>7} {ex:>7} {cot:>4} "
        f"{exact:>7}  {digits:<40} {hours:5.2f} h {devices:<8} {st['state']}"
    )


def cmd_status(args) -> int:
    from mulinterp.training.campaign import Campaign

    camp = Campaign.load(args.root)
    rows = [r.status() for r in camp.runs]
    if args.json:
        emit_json(rows)
        return 0
    width = max([12, *(len(st["name"]) for st in rows)])
    print(
        f"{'run':<{width}} {'task':<4} {'reg':<4} {'width':<5} {'step':>7} {'exampl':>7} {'cot':>4} {'val ex':>7}  "
        f"{'val per digit c0…':<40} {'wall':>7} {'devices':<8} state"
    )
    for st in rows:
        print(_fmt_status(st, width) + ("" if st["active"] else " (inactive)"))
    if any(st["stage_exact"] is not None for st in rows):
        print(
            "* an ICoT run with CoT left: answers at its removal stage (CoT layout, teacher-forced), not the val split"
        )
    if any(st.get("fall_exact") is not None for st in rows):
        print(
            "† plain_cooldown after the last removal: val where the last lr fall ended (its saved state is at full rate;"
            " `--json` has both)"
        )
    return 0


def cmd_run(args) -> int:
    from mulinterp.training.campaign import run_campaign

    if args.budget <= 0:
        raise CLIError(f"--budget must be positive, got {args.budget}")
    if args.workers <= 0:
        raise CLIError(f"--workers must be positive, got {args.workers}")
    budget = args.budget * 60 if args.minutes else args.budget
    statuses = run_campaign(
        args.root,
        budget,
        workers=args.workers,
        device=args.device,
        names=args.run or None,
        report_every=args.report_every,
    )
    for st in statuses:
        print(_fmt_status(st))
    return 0


def cmd_cooldown(args) -> int:
    from mulinterp.training.campaign import Campaign, cooldown

    run = Campaign.load(args.root).get(args.run)
    m = cooldown(run, args.steps, args.out, device=args.device, progress=not args.quiet)
    val = m.meta["metrics"].get("val", {})
    out = args.out or run.folder / "cooldown.safetensors"
    print(
        f"wrote {out} after {m.meta['steps']} steps; val exact match {val.get('exact_match', float('nan')):.4f}, "
        f"per digit {val.get('per_digit')}"
    )
    return 0


def cmd_fork(args) -> int:
    from mulinterp.training.campaign import Campaign, fork, parse_recipe_changes

    camp = Campaign.load(args.root)
    run = fork(camp, args.run, args.name, parse_recipe_changes(args.set or []), note=args.note or "")
    st = run.status()
    changed = ", ".join(args.set or []) or "no recipe change"
    print(
        f"forked {args.run} at step {st['step']} as {run.name} ({changed}); it is active in {args.root}/campaign.json"
    )
    return 0


def cmd_widen(args) -> int:
    from mulinterp.training.campaign import Campaign, parse_recipe_changes, widen

    camp = Campaign.load(args.root)
    run = widen(
        camp,
        args.run,
        args.name,
        args.preset,
        parse_recipe_changes(args.set or []),
        note=args.note or "",
        seed=args.seed,
        fresh=args.fresh,
    )
    st = run.status()
    units = "new random head and MLP units" if args.fresh else "copied units"
    print(
        f"widened {args.run} at step {st['step']} to preset {args.preset} as {run.name} ({units}, fresh AdamW); "
        f"it is active in {args.root}/campaign.json"
    )
    return 0


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def cmd_curve(args) -> int:
    from mulinterp.training.campaign import Campaign, digits_line, run_curve

    if args.rows <= 0:
        raise CLIError(f"--rows must be positive, got {args.rows}")
    camp = Campaign.load(args.root)
    curves = [run_curve(camp.get(name)) for name in args.run]
    if args.out:
        from mulinterp.viz import write_figure
        from mulinterp.viz.training import campaign_curve_figure

        write_figure(campaign_curve_figure(curves), args.out)
    if args.json:
        from dataclasses import asdict

        emit_json([asdict(c) for c in curves])
        return 0
    for c in curves:
        n = len(c.steps)
        k = min(n, args.rows)  # evenly spaced, the first and the last row always among them
        picks = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
        rmse = any(x is not None for x in c.aux_rmse)  # aux runs: the probe's error per position
        width = max((len(digits_line(d)) for d in c.per_digit), default=0)
        print(f"{c.name} ({c.regime}): {n} telemetry rows, every {c.steps[0] if n else 0} steps")
        print(
            f"  {'step':>7} {'cot':>4} {'stage ex':>9} {'monitor':>8}  per digit c0… (at the stage where one is shown, else the monitor)"
            + ("; then the aux probe's RMSE per c_k, in ĉ units" if rmse else "")
        )
        for i in picks:
            cot = str(c.cot_left[i]) if c.cot_len else "–"
            err = "  " + (" ".join(f"{x:.1f}" for x in c.aux_rmse[i]) if c.aux_rmse[i] else "–") if rmse else ""
            print(
                f"  {c.steps[i]:>7} {cot:>4} {_pct(c.stage_exact[i]):>9} {_pct(c.exact[i]):>8}  "
                f"{digits_line(c.per_digit[i]):<{width if rmse else 0}}{err}"
            )
        reads = [(step, x) for step, x in zip(c.steps, c.fall_val) if x is not None][-args.rows :]
        if reads:  # plain_cooldown: val where each fall of the lr ended (the stop_at_exact reads)
            print("  val where a fall ended: " + ", ".join(f"{step} {_pct(x)}" for step, x in reads))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_promote(args) -> int:
    from mulinterp.training.promotion import promote, update_readme

    if args.force and not args.reason:
        raise CLIError("--force needs --reason (it is recorded in the manifest)")
    entry = promote(args.checkpoint, args.name, n=args.n, seed=args.seed, force=args.force, reason=args.reason or "")
    print(
        f"bundled {args.checkpoint} as {args.name}: test exact match {100 * entry['test_exact_match']:.2f}% "
        f"on {args.n} problems (seed {args.seed})"
        + (f"; replaced {100 * entry['replaced']['test_exact_match']:.2f}%" if "replaced" in entry else "")
    )
    if args.readme and update_readme(args.readme):
        print(f"updated the bundled-models table in {args.readme}")
    return 0


def cmd_lineage(args) -> int:
    from mulinterp.training.lineage import lineage, lineage_lines

    chain = lineage(args.root, args.run)
    if args.json:
        emit_json(chain)
    else:
        print("\n".join(lineage_lines(chain)))
    return 0


def cmd_readme(args) -> int:
    from mulinterp.training.promotion import bundled_table, update_readme

    if args.print:
        print(bundled_table())
        return 0
    print(f"{'updated' if update_readme(args.readme) else 'unchanged'}: {args.readme}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "campaign",
        help="the training campaign: status, run, fork, widen, curve, lineage, cooldown, promote",
        description="Resumable training runs kept in a folder (default runs/, one sub-folder per run, "
        "listed in runs/campaign.json in priority order). `status` prints the table without "
        "training; `run` continues the unfinished runs in the background of a session; `fork` "
        "continues a run under a changed recipe; `widen` continues it at a wider preset; `curve` prints or draws a run's accuracy over training; `lineage` lists the forks and widenings behind a run; `cooldown` "
        "branches a run with a decaying learning rate; `promote` bundles a checkpoint that beats the "
        "bundled model of its name. See docs/training-runs/campaign.md.",
    )
    p.add_argument("--root", default="runs", type=Path, help="campaign folder (default runs/)")
    csub = p.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)

    q = csub.add_parser("status", help="one line per run: steps, examples, CoT left, val accuracy, wall time")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_status)

    q = csub.add_parser(
        "run",
        help="continue every unfinished active run within a wall-clock budget",
        description="Continue the first unfinished active runs (priority order of campaign.json), "
        "one `mulinterp train --resume` process per worker (one thread each on CPU); each stops with "
        "its state saved before the budget ends; a worker whose run finishes takes the next one. "
        "Prints a progress line per run every --report-every seconds.",
    )
    q.add_argument(
        "--budget",
        type=float,
        required=True,
        help="wall-clock budget in seconds (or minutes with --minutes); no run starts with under 120 s left",
    )
    q.add_argument("--minutes", action="store_true", help="--budget is in minutes")
    q.add_argument("--workers", type=int, default=2, help="runs trained at once (default 2: one per core)")
    q.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    q.add_argument("--run", action="append", metavar="NAME", help="train only this run (repeatable), active or not")
    q.add_argument("--report-every", type=float, default=300, help="seconds between progress lines (default 300)")
    q.set_defaults(func=cmd_run)

    q = csub.add_parser(
        "cooldown",
        help="branch a run: N steps with the lr falling linearly to min_lr_frac·lr",
        description="Write a cool-down branch of RUN (default runs/RUN/cooldown.safetensors): N more "
        "steps from its latest state with the learning rate decaying linearly to min_lr_frac·lr. The "
        "run itself is not changed, so it can keep training at its constant rate.",
    )
    q.add_argument("run", metavar="RUN")
    q.add_argument("--steps", type=int, required=True, help="cool-down steps")
    q.add_argument("--out", type=Path, help="checkpoint to write")
    q.add_argument("--device", default="cpu")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_cooldown)

    q = csub.add_parser(
        "fork",
        help="a new run that continues RUN's state under a changed recipe (an A/B arm)",
        description="Copy RUN's latest state (weights, optimizer moments, RNG, counters, telemetry) "
        "into a new run folder NAME with the recipe changed by --set KEY=VALUE, and list it, active, "
        "right after RUN in campaign.json. Train both for the same steps to compare a change at equal "
        "cost. regime, digits and preset cannot change.",
    )
    q.add_argument("run", metavar="RUN")
    q.add_argument("--as", dest="name", required=True, metavar="NAME", help="the new run's name")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe change (repeatable; JSON values)")
    q.add_argument("--note", help="what the fork tests (kept in campaign.json)")
    q.set_defaults(func=cmd_fork)

    q = csub.add_parser(
        "widen",
        help="continue a run at a wider preset, its weights widened so that it computes the same",
        description="Copy RUN's latest state into a new run folder NAME at the wider --preset: every "
        "weight widened (each dimension copied, readers' entries split over the copies at random, "
        "so the logits are unchanged and the copies can diverge), a fresh AdamW, the data RNG, "
        "counters and telemetry kept (an ICoT run stays at its removal stage; the cost includes "
        "RUN's). The new width must be a whole multiple of RUN's, with the same layers and heads. "
        "--fresh copies only the residual stream and makes the extra MLP neurons and head dimensions "
        "new random units that start out writing nothing (the logits are unchanged too).",
    )
    q.add_argument("run", metavar="RUN")
    q.add_argument("--as", dest="name", required=True, metavar="NAME", help="the new run's name")
    q.add_argument("--preset", required=True, help="the wider preset (e.g. cpu: d_model 128)")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe change (repeatable; JSON values)")
    q.add_argument("--seed", type=int, default=0, help="seed of the random splits and fresh units (default 0)")
    q.add_argument(
        "--fresh", action="store_true", help="extra head and MLP units are new random ones, not copies of the old"
    )
    q.add_argument("--note", help="what the widened run tests (kept in campaign.json)")
    q.set_defaults(func=cmd_widen)

    q = csub.add_parser(
        "curve",
        help="a run's accuracy over training: monitor, stage (ICoT), CoT left, per digit",
        description="Print (and with --out draw) each RUN's telemetry as curves: exact match on the "
        "plain-layout monitor, for ICoT with CoT left the exact match at the removal stage and the "
        "CoT tokens left, and the accuracy per answer digit (at the stage where telemetry has one, else on the monitor).",
    )
    q.add_argument("run", metavar="RUN", nargs="+")
    q.add_argument("--rows", type=int, default=15, help="telemetry rows printed per run, evenly spaced (default 15)")
    q.add_argument("--out", type=Path, metavar="FILE", help="save the figure (.html or .png)")
    q.add_argument("--json", action="store_true", help="print the curves as JSON")
    q.set_defaults(func=cmd_curve)

    q = csub.add_parser(
        "promote",
        help="bundle a checkpoint as NAME if it beats the bundled NAME on the test split",
        description="Evaluate CHECKPOINT on --n fresh test-split problems (seed --seed); if its exact "
        "match beats the bundled model NAME (or there is none, or --force), copy it into "
        "mulinterp/checkpoints/ with its telemetry and record checksum, accuracy, recipe and cost in "
        "the manifest.",
    )
    q.add_argument("checkpoint", metavar="CHECKPOINT")
    q.add_argument("--as", dest="name", required=True, metavar="NAME", help="bundled name, e.g. icot-3x3")
    q.add_argument("--n", type=int, default=10_000, help="test problems (default 10000)")
    q.add_argument("--seed", type=int, default=2025, help="seed of the test draw (default 2025, as `mulinterp eval`)")
    q.add_argument("--force", action="store_true", help="replace even if not better (SFT: width/budget match)")
    q.add_argument("--reason", help="why (recorded in the manifest; required with --force)")
    q.add_argument("--readme", type=Path, help="also regenerate the bundled-models table in this README")
    q.set_defaults(func=cmd_promote)

    q = csub.add_parser(
        "lineage",
        help="the forks and widenings behind a run, oldest first, with the recipe keys each changed",
        description="Print RUN's chain of runs (campaign.json's forked_from / widened_from), oldest "
        "first: how each segment began, at which step of its parent, until which step, and the recipe "
        "keys it changed (the first segment's whole recipe). A run's own recipe says only how its last "
        "segment was trained; `promote` keeps this chain in the manifest.",
    )
    q.add_argument("run", metavar="RUN")
    q.add_argument("--json", action="store_true", help="the chain as JSON")
    q.set_defaults(func=cmd_lineage)

    q = csub.add_parser("readme", help="regenerate the README's bundled-models table from the manifest")
    q.add_argument("--readme", type=Path, default=Path("README.md"))
    q.add_argument("--print", action="store_true", help="print the table instead of writing it")
    q.set_defaults(func=cmd_readme)
