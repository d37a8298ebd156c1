"""Every figure of the paper (PAPER.md §4) from the bundled models, in one call.

The models are one bundled *set* — ``sft-``, ``icot-`` and ``aux-`` of one task: by default
the set that meets the most bars (:data:`mulinterp.models.BARS`: the paper's contrast), the
larger task on a tie, or the set of the given checkpoints' task (``digits="3x3"`` picks one). The index page and the CLI say which set
was used and whether it meets the bars.

Any of the three models can be replaced by a checkpoint file (``checkpoints={"icot": FILE}``),
e.g. the paper's own models converted by ``mulinterp import``; the figures then carry that
checkpoint's name. The dynamics figure reads training telemetry that only the bundled models
have, so it is left out when the SFT or aux model is replaced.

Each builder asks :mod:`mulinterp.circuits` for the data and :mod:`mulinterp.viz` to draw it;
:func:`paper_figures` writes one file per figure per format plus an ``index.html``.
Files are rendered into a temporary folder beside the destination and moved into place only
when every figure succeeded, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import functools
import html
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from mulinterp.models import BundledSet

FORMATS = ("html", "png")
REGIMES = ("sft", "icot", "aux")


@dataclass
class FigureRecord:
    name: str
    title: str
    command: str
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Models:
    """Load each model once: a bundled name, or a checkpoint file given for its regime.

    ``labels[regime]`` is the name figures show: the bundled name (``"icot-4x4"``) or the
    checkpoint's own name.
    """

    def __init__(self, bundled: BundledSet, checkpoints: dict[str, str] | None = None) -> None:
        self._cache: dict = {}
        self.bundled = bundled
        self.files = {r: str(f) for r, f in (checkpoints or {}).items()}
        self.labels = dict(bundled.names)
        for regime, path in self.files.items():
            from mulinterp.models import read_metadata

            self.labels[regime] = str(read_metadata(path).get("name") or Path(path).stem)
        self._source = {self.labels[r]: self.files.get(r, name) for r, name in bundled.names.items()}

    def __call__(self, name: str):
        if name not in self._cache:
            from mulinterp.models import load, load_pretrained

            src = self._source.get(name, name)
            bundled = name in self.bundled.names.values()
            self._cache[name] = load(src) if src != name or not bundled else load_pretrained(name)
        return self._cache[name]


def accuracy_figure(results: dict) -> go.Figure:
    """Exact match and per-digit accuracy of several models (``{name: EvalResult}``)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], subplot_titles=["exact match", "per-digit accuracy"])
    for name, res in results.items():
        fig.add_trace(go.Bar(x=[name], y=[res.exact_match], name=name, showlegend=False), row=1, col=1)
        fig.add_trace(
            go.Scatter(
                x=[f"c{k}" for k in range(len(res.per_digit))], y=res.per_digit, mode="lines+markers", name=name
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(range=[0, 1.05])
    n = next(iter(results.values())).n
    fig.update_layout(title=f"Greedy-decoding accuracy on {n} held-out problems")
    return fig


def _builders(models: _Models, n: int) -> list[tuple[str, str, str, Callable[[], go.Figure]]]:
    from mulinterp.circuits import attribution, dag, dynamics, geometry, heads, probes
    from mulinterp.evaluation import evaluate_generated
    from mulinterp.models import mechanism_regime
    from mulinterp.viz import dependencies, mechanism

    sft, icot, aux = (models.labels[r] for r in REGIMES)

    @functools.cache
    def ev(k: str):
        return evaluate_generated(models(k).model, models(k).task, n, seed=2025)

    if "icot" in models.files:  # a given ICoT checkpoint: read the mechanism from it if it learned
        mech = models.labels[mechanism_regime(ev(icot).exact_match)]
    else:
        mech = models.labels[models.bundled.mechanism_regime]

    def accuracy():
        return accuracy_figure({k: ev(k) for k in (sft, icot, aux)})

    def attribution_fig():
        return dependencies.attribution_figure(
            {k: attribution.logit_attribution(models(k), n=n, seed=0) for k in (sft, icot)}
        )

    def probe_fig():
        return dependencies.probe_scatter({k: probes.fit_probes(models(k)) for k in (sft, icot)})

    # Mechanism figures read the model the paper reads them from, ICoT, when it met its bar;
    # otherwise aux, the one with cached pairs (BundledSet.mechanism_regime).
    @functools.cache
    def mech_table():  # shared by the roles, DAG and Minkowski figures
        return heads.head_table(models(mech), n=n, seed=0)

    def heads_fig():
        return mechanism.heads_figure(mech_table())

    def dag_fig():
        g = dag.build_dag(mech_table())
        return mechanism.dag_figure(g, dag.knockout(models(mech), g, n=min(n, 256), seed=0))

    def minkowski_fig():
        return mechanism.minkowski_figure(geometry.minkowski_best(models(mech), mech_table(), n=max(n, 1000), seed=0))

    def fourier_fig():
        return mechanism.fourier_figure(
            {k: geometry.fourier_analysis(models(k), n=n, seed=0) for k in (sft, icot, aux)}
        )

    def prism_fig():
        return mechanism.prism_figure(geometry.fourier_analysis(models(icot), n=max(n, 1000), seed=0), name=icot)

    def dynamics_fig():
        return mechanism.dynamics_figure(dynamics.dynamics([sft, aux]))

    arg = {label: models.files.get(r, label) for r, label in zip(REGIMES, (sft, icot, aux))}
    figures = [
        ("accuracy", "Exact match and per-digit accuracy, SFT vs ICoT vs aux", "mulinterp eval NAME --json", accuracy),
        (
            "attribution",
            "Long-range counterfactual logit attribution, SFT vs ICoT",
            f"mulinterp attribute --model {arg[sft]} / {arg[icot]}",
            attribution_fig,
        ),
        (
            "probe",
            "Probed vs true running sum ĉ_k, k = 2..6",
            f"mulinterp probe --model {arg[sft]} --model {arg[icot]}",
            probe_fig,
        ),
        (
            "attention_roles",
            f"Attention roles of every head at every answer step ({mech})",
            f"mulinterp heads --model {arg[mech]}",
            heads_fig,
        ),
        (
            "dag",
            f"The cache/retrieve attention graph and its knockout ({mech})",
            f"mulinterp dag --model {arg[mech]}",
            dag_fig,
        ),
        (
            "minkowski",
            f"Minkowski-sum PCA of the sharpest pair head ({mech})",
            f"mulinterp geometry --model {arg[mech]} --best",
            minkowski_fig,
        ),
        ("fourier", "Fourier-basis R² of digit objects", "mulinterp geometry --json", fourier_fig),
        (
            "prism",
            f"Final residual stream at c_2, PCA coloured by c_2 ({icot})",
            f"mulinterp geometry --model {arg[icot]}",
            prism_fig,
        ),
        (
            "dynamics",
            "Per-position loss and gradient norm over training, SFT vs aux",
            "mulinterp dynamics",
            dynamics_fig,
        ),
    ]
    if "sft" in models.files or "aux" in models.files:  # telemetry exists for the bundled models only
        figures = [f for f in figures if f[0] != "dynamics"]
    return figures


def check_request(
    out: Path, formats: list[str], checkpoints: dict[str, str] | None = None, digits: str | None = None
) -> BundledSet:
    """Validate before any work: formats, destination, bundled models and given checkpoints.

    Returns the bundled set the figures will use (``digits``, or the best one).
    """
    from mulinterp.models import resolve_set

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"unknown figure format {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    parent = out.resolve().parent
    if out.exists() and not out.is_dir():
        raise ValueError(f"cannot write figures to {out}: it is a file")
    if not parent.is_dir():
        raise ValueError(f"cannot write figures to {out}: folder {parent} does not exist")
    target = out if out.is_dir() else parent
    if not os.access(target, os.W_OK):
        raise ValueError(f"cannot write figures to {out}: {target} is not writable")
    chosen = resolve_set(digits, checkpoints)
    assert chosen is not None  # figures always read a bundled set
    return chosen


def paper_figures(
    out: str | Path = "figures",
    formats: list[str] | None = None,
    n: int = 256,
    progress: bool = True,
    checkpoints: dict[str, str] | None = None,
    digits: str | None = None,
) -> list[FigureRecord]:
    """Regenerate every paper figure into ``out``; returns what was written and how long each took.

    ``checkpoints`` replaces bundled models by regime, e.g. ``{"icot": "paper-icot.safetensors"}``;
    ``digits`` picks the bundled set (default: the best, see the module docstring). The
    index page says which set was used and whether it meets the bars.
    """
    from tqdm.auto import tqdm

    from mulinterp.viz import write_figure

    out = Path(out)
    formats = list(formats or FORMATS)
    chosen = check_request(out, formats, checkpoints, digits)
    models = _Models(chosen, checkpoints)
    records: list[FigureRecord] = []
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".figures-", dir=out.resolve().parent))
    except OSError as e:
        raise ValueError(f"cannot write figures to {out}: {e.strerror or e}") from None
    try:
        builders = _builders(models, n)
        for name, title, command, build in tqdm(builders, disable=not progress, desc="figures"):
            t0 = time.perf_counter()
            fig = build()
            rec = FigureRecord(name, title, command)
            for fmt in formats:
                write_figure(fig, tmp / f"{name}.{fmt}")
                rec.files.append(f"{name}.{fmt}")
            rec.seconds = time.perf_counter() - t0
            records.append(rec)
        (tmp / "index.html").write_text(_index(records, models_used(models)))
        out.mkdir(exist_ok=True)
        for f in tmp.iterdir():
            shutil.move(str(f), out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return records


def models_used(models: _Models) -> str:
    """One sentence: which models the figures show, and whether the bundled set meets the bars."""
    given = [f"{r} from {models.files[r]}" for r in REGIMES if r in models.files]
    return f"Models: {models.bundled.describe()}" + (f"; replaced: {', '.join(given)}" if given else "") + "."


def _index(records: list[FigureRecord], used: str = "") -> str:
    rows = []
    for r in records:
        links = " ".join(f'<a href="{html.escape(f)}">{html.escape(f.rsplit(".", 1)[1])}</a>' for f in r.files)
        png = next((f for f in r.files if f.endswith(".png")), None)
        img = f'<br><img src="{html.escape(png)}" width="640">' if png else ""
        rows.append(
            f"<h2>{html.escape(r.title)}</h2><p>{links} — <code>{html.escape(r.command)}</code> ({r.seconds:.1f} s){img}</p>"
        )
    head = (
        "<!doctype html><meta charset='utf-8'><title>mulinterp figures</title><h1>mulinterp: the paper's figures</h1>"
    )
    return head + (f"<p>{html.escape(used)}</p>" if used else "") + "".join(rows)
