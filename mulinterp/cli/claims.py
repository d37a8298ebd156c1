"""``mulinterp claims``: the README's claims table, measured on one set of models."""

from __future__ import annotations

import sys

from mulinterp.cli.common import add_set_args, check_n, emit_json


def cmd_claims(args) -> int:
    from mulinterp.claims import check_readme, claims, load_models, markdown, plain, update_readme

    n = check_n(args.n)
    if args.readme:
        from pathlib import Path

        from mulinterp.io import check_writable

        check_readme(args.readme)  # before minutes of work: exists, has the markers
        check_writable(Path(args.readme))
    given = {r: getattr(args, r) for r in ("sft", "icot", "aux") if getattr(args, r)}
    ms = load_models(args.set, given)
    rows = claims(ms.models, n=n, seed=args.seed, progress=not args.quiet, sources=ms.sources, mechanism=ms.mechanism)
    sentence = ms.sentence(rows)
    if args.json:
        emit_json({"models": sentence, "n": n, "seed": args.seed, "rows": [r.to_dict() for r in rows]})
    else:
        print(plain(rows, sentence))
    if args.readme:
        regenerate = " ".join(
            ["mulinterp claims"]
            + ([f"--set {ms.bundled.digits}"] if ms.bundled is not None else [])
            + [f"--{r} {f}" for r, f in given.items()]
            + [f"--n {n} --seed {args.seed} --readme {args.readme}"]
        )
        block = markdown(rows, f"{sentence} Regenerate with `{regenerate}`.")
        changed = update_readme(args.readme, block)
        print(f"{'updated' if changed else 'unchanged:'} {args.readme}", file=sys.stderr)
    return 0


# mulinterp.claims's defaults, repeated so that building the parser does not import torch
# (tests/test_claims.py checks they agree)
DEFAULT_N, EVAL_SEED, N_TRAIN, KNOCKOUT_N, MINKOWSKI_N = 512, 2025, 2048, 256, 1000


def register(sub) -> None:
    p = sub.add_parser(
        "claims",
        help="the paper's claims measured on one set of models: command, our number, verdict",
        description="Measure every claim of the paper (§3: accuracy, attribution, probes, pair and "
        "retrieve heads, DAG knockout, Minkowski sums, Fourier basis, prism, training dynamics) on the "
        "sft, icot and aux models of one bundled set (see --set), each with the mulinterp command that "
        "prints the same numbers and a verdict (reproduced / partly / not reproduced / —) decided by a "
        "fixed rule (mulinterp/claims.py). Exact match: N fresh test problems, seed "
        f"{EVAL_SEED} (as `mulinterp eval`); the other analyses: N problems drawn with --seed (ĉ probes "
        f"are also fitted on {N_TRAIN} training problems; the DAG knockout decodes at most {KNOCKOUT_N}; "
        f"the Minkowski fit uses at least {MINKOWSKI_N}). "
        "The pair-head, DAG and Minkowski rows read the icot model if it meets its bar, else aux. "
        "The dynamics rows need training telemetry (the bundled models have it; a checkpoint file has it "
        "if MODEL.telemetry.jsonl lies beside it), else they say so. Prints a plain table "
        "(or --json); --readme rewrites the table between the README's claims markers.",
    )
    add_set_args(p, "; not needed when --sft, --icot and --aux are all given")
    p.add_argument(
        "--n",
        type=int,
        default=DEFAULT_N,
        help=f"problems per analysis (default {DEFAULT_N}: ≈ 4 CPU-minutes on the 4x4 d512 models)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the analyses' problems (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object (rows with their raw numbers)")
    p.add_argument(
        "--readme",
        metavar="FILE",
        help="also replace the block between FILE's <!-- claims:begin … --> and <!-- claims:end --> "
        "markers with the table (the file is left as it is if nothing changed)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_claims)
