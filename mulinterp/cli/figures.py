"""``mulinterp figures``: every paper figure from one set of bundled models."""

from __future__ import annotations

from mulinterp.cli.common import add_set_args


def cmd_figures(args) -> int:
    from pathlib import Path

    from mulinterp.cli.common import check_n
    from mulinterp.figures import check_request, paper_figures

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    given = {r: getattr(args, r) for r in ("sft", "icot", "aux") if getattr(args, r)}
    chosen = check_request(Path(args.out), formats, given, args.set)  # the set: --set, the files' task, or the best
    print(
        f"models: {chosen.describe()}"
        + (f"; replaced: {', '.join(f'{r} by {f}' for r, f in given.items())}" if given else "")
    )
    records = paper_figures(
        args.out, formats, n=check_n(args.n), progress=not args.quiet, checkpoints=given, digits=chosen.digits
    )
    total = sum(r.seconds for r in records)
    print(f"wrote {sum(len(r.files) for r in records)} files + index.html to {args.out}")
    for r in records:
        print(f"  {r.name:<16} {r.seconds:6.1f} s  {', '.join(r.files)}")
    print(f"  {'total':<16} {total:6.1f} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "figures",
        help="regenerate every paper figure (HTML + PNG) from the bundled models",
        description="Regenerate the figures of the paper (accuracy, attribution, probes, attention "
        "roles, DAG, Minkowski, Fourier, prism, dynamics) from one set of bundled models (see --set), offline "
        "on CPU, and say which set they show and whether it meets the bars. "
        "HTML is self-contained; PNG is drawn with matplotlib (plotly's own PNG export needs a "
        "browser download). Writes one file per figure per format and index.html.",
    )
    p.add_argument("--out", default="figures", help="output folder (default figures/)")
    p.add_argument("--format", default="html,png", help="comma-separated: html, png (default both)")
    p.add_argument("--n", type=int, default=256, help="problems per analysis (default 256)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set_args(p)
    p.set_defaults(func=cmd_figures)
