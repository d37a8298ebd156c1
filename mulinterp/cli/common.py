"""Helpers shared by the subcommands: errors, model loading, 1-based layer/head labels, output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Without --model, commands read the bundled set that `mulinterp figures` draws (the one that
# meets the most bars, mulinterp.models.best_bundled_set): its ICoT model, or for `dynamics`
# its SFT and aux models. Resolved when the command runs, so that building the parser does
# not import torch, and so that the default follows the campaign's promotions.
DEFAULT_MODEL = None
DEFAULT_MODEL_HELP = "the best bundled set's icot model (the set `mulinterp figures` draws; see `mulinterp models`)"


def default_model(regime: str = "icot") -> str:
    """The bundled name of ``regime``'s model in the best bundled set (e.g. ``"icot-3x3"``)."""
    from mulinterp.models import best_bundled_set

    return best_bundled_set().names[regime]


class CLIError(ValueError):
    """Bad input: printed as one line on stderr, exit status 2."""


def emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None))


def add_model_arg(p, multiple: bool = False, default_help: str = DEFAULT_MODEL_HELP) -> None:
    if multiple:
        p.add_argument(
            "--model",
            action="append",
            metavar="NAME|FILE",
            help=f"bundled model name or checkpoint file (repeatable; default {default_help})",
        )
    else:
        p.add_argument(
            "--model",
            default=DEFAULT_MODEL,
            metavar="NAME|FILE",
            help=f"bundled model name or checkpoint file (default {default_help})",
        )


def add_set_args(p, note: str = "") -> None:
    """``--set DIGITS`` and ``--sft/--icot/--aux FILE``: one bundled set, any model replaced by a file."""
    p.add_argument(
        "--set",
        metavar="DIGITS",
        help="bundled set, e.g. 3x3 or 4x4 (default: the set that meets the most of the bars icot ≥ 99 %%, "
        f"aux ≥ 95 %%, sft < 5 %%, the larger task on a tie{note})",
    )
    for regime in ("sft", "icot", "aux"):
        p.add_argument(
            f"--{regime}",
            metavar="FILE",
            help=f"checkpoint to use instead of the set's bundled {regime} model "
            "(e.g. the paper's own model from `mulinterp import`)",
        )


def add_analysis_args(p, n: int = 256, multiple_models: bool = False, default_help: str = DEFAULT_MODEL_HELP) -> None:
    """The options every analysis takes: --model, --n, --seed, --json, --out."""
    add_model_arg(p, multiple_models, default_help)
    p.add_argument("--n", type=int, default=n, help=f"number of problems (default {n})")
    p.add_argument("--seed", type=int, default=0, help="seed for the problems drawn (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--out", metavar="FILE", help="save the figure (.html, or .png)")


def load_model(name: str | None):
    """A bundled name or checkpoint file; ``None`` is the default model (:func:`default_model`)."""
    from mulinterp.models import resolve

    return resolve(name or default_model())


def head_label(layer: int, head: int) -> str:
    """0-based indices → ``L2H3 (blocks.1, head 2)`` (:func:`mulinterp.hooks.names.head_label`)."""
    from mulinterp.hooks.names import head_label as label  # imported late: the CLI starts without torch

    return label(layer, head)


def parse_layer(layer: int, n_layers: int) -> int:
    """1-based CLI layer → 0-based TransformerLens index, or one clear error."""
    from mulinterp.hooks.names import block

    if not 1 <= layer <= n_layers:
        raise CLIError(
            f"layer {layer} is out of range: this model has layers 1–{n_layers} "
            f"(paper numbering; TransformerLens {block(0)}–{block(n_layers - 1)})"
        )
    return layer - 1


def parse_head(head: int, n_heads: int) -> int:
    if not 1 <= head <= n_heads:
        raise CLIError(
            f"head {head} is out of range: this model has heads 1–{n_heads} "
            f"(paper numbering; TransformerLens head index 0–{n_heads - 1})"
        )
    return head - 1


def parse_layer_head(m, layer: int | None, head: int | None) -> tuple[int | None, int | None]:
    """Validate 1-based ``--layer/--head`` against a loaded :class:`~mulinterp.models.MulModel`."""
    if (layer is None) != (head is None) and head is not None:
        raise CLIError("--head needs --layer")
    lyr = None if layer is None else parse_layer(layer, m.n_layers)
    hd = None if head is None else parse_head(head, m.n_heads)
    return lyr, hd


def parse_position(k: int, n_c: int) -> int:
    if not 0 <= k < n_c:
        raise CLIError(f"position {k} is out of range: answer digits are c0–c{n_c - 1}")
    return k


def check_n(n: int) -> int:
    if n <= 0:
        raise CLIError(f"--n must be positive, got {n}")
    return n


def save_figure(fig, out: str | None) -> None:
    """Write a plotly figure as self-contained HTML or PNG, chosen by extension."""
    if not out:
        return
    from mulinterp.viz import write_figure

    path = write_figure(fig, Path(out))
    print(f"wrote {path}", file=sys.stderr)
