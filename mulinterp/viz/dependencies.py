"""Figures for logit attribution, direct logit attribution, activation patching and probes.

Thin: every function takes what a :mod:`mulinterp.circuits` analysis returned and draws it
with plotly; save with :func:`mulinterp.viz.write_figure`. Layer and head labels are 1-based
as in the paper (``L2H3`` = ``blocks.1``, head 2).
"""

from __future__ import annotations

import math
import re

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _as_dict(results, default_name: str = "model") -> dict:
    return results if isinstance(results, dict) else {default_name: results}


def attribution_figure(results, title: str | None = None) -> go.Figure:
    """One heatmap per model of the mean logit drop; rows ``a_{n-1} … a_0, b_{n-1} … b_0`` as in the paper.

    ``results`` is an :class:`~mulinterp.circuits.attribution.Attribution` or a dict name → one.
    """
    results = _as_dict(results)
    fig = make_subplots(
        rows=1,
        cols=len(results),
        subplot_titles=[f"{name} (n = {r.n})" for name, r in results.items()],
        horizontal_spacing=0.12,
    )
    zmax = max(float(r.matrix.abs().max()) for r in results.values()) or 1.0
    for col, r in enumerate(results.values(), start=1):
        n_a = sum(row.startswith("a") for row in r.rows)
        order = list(reversed(range(n_a))) + list(reversed(range(n_a, len(r.rows))))
        z = r.matrix[order].tolist()
        sem = r.sem[order].tolist()
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=r.cols,
                y=[r.rows[i] for i in order],
                customdata=sem,
                zmid=0,
                zmin=-zmax,
                zmax=zmax,
                colorscale="RdBu_r",
                showscale=col == len(results),
                text=[[f"{v:.1f}" for v in row] for row in z],
                texttemplate="%{text}",
                hovertemplate="corrupt %{y} → %{x}: Δlogit %{z:.2f} ± %{customdata:.2f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(
        title=title
        or "Counterfactual logit attribution: drop in the predicted c_k's logit when one operand digit changes"
    )
    return fig


def dla_figure(dla, position: int, top: int = 12) -> go.Figure:
    """Horizontal bars: the ``top`` components' mean share of the logit difference (target − runner-up) at ``c_position``."""
    ranked = dla.ranked(position, by="diff")[:top]
    names = [r[0] for r in ranked][::-1]
    idx = [dla.components.index(n) for n in names]
    per = dla.logit_diff[:, position][:, idx]
    err = (per.std(0) / math.sqrt(max(per.shape[0], 1))).tolist()
    fig = go.Figure(
        go.Bar(
            x=per.mean(0).tolist(),
            y=names,
            orientation="h",
            error_x=dict(type="data", array=err),
            hovertemplate="%{y}: %{x:.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Direct logit attribution at c{position}: share of logit(target) − logit(runner-up), mean over {per.shape[0]} problems",
        xaxis_title="Δ logit difference",
        yaxis_title="component",
    )
    return fig


def patching_figure(result, k: int | None = None, title: str | None = None) -> go.Figure:
    """Heatmap(s) of a :class:`~mulinterp.circuits.patching.PatchResult` (0 = corrupted, 1 = clean).

    ``[rows, c_k]`` results are one heatmap; ``[layer, head, c_k]`` results become rows
    ``L1H1 …``; ``[rows, position, c_k]`` results (and ``[layer, head, position, c_k]``) are one
    heatmap per answer digit, or only ``c_k`` if ``k`` is given.
    """
    effect, labels = result.effect, [[_short(x) for x in dim] for dim in result.labels]
    answers = labels[-1]
    if effect.ndim >= 3 and len(labels[0]) and labels[0][0].startswith("L") and labels[1][0].startswith("H"):
        rows = [f"{l}{h}" for l in labels[0] for h in labels[1]]  # (layer, head) → one row each
        effect = effect.reshape((len(rows),) + tuple(effect.shape[2:]))
        labels = [rows] + labels[2:]
    style = dict(zmid=0, zmin=-1, zmax=1, colorscale="RdBu_r")
    if effect.ndim == 1:
        fig = go.Figure(go.Bar(x=answers, y=effect.tolist(), hovertemplate="%{x}: %{y:.2f}<extra></extra>"))
        fig.update_layout(
            yaxis_title="normalised effect", yaxis_range=[min(-0.1, float(effect.nan_to_num().min())), 1.1]
        )
    elif effect.ndim == 2:
        fig = go.Figure(
            go.Heatmap(
                z=effect.tolist(),
                x=answers,
                y=labels[0],
                **style,
                hovertemplate="patch %{y} → %{x}: %{z:.2f}<extra></extra>",
            )
        )
        fig.update_yaxes(autorange="reversed")
    else:
        ks = [k] if k is not None else list(range(len(answers)))
        cols = min(4, len(ks))
        fig = make_subplots(rows=math.ceil(len(ks) / cols), cols=cols, subplot_titles=[answers[i] for i in ks])
        for n, i in enumerate(ks):
            fig.add_trace(
                go.Heatmap(
                    z=effect[..., i].tolist(),
                    x=labels[1],
                    y=labels[0],
                    showscale=n == len(ks) - 1,
                    **style,
                    hovertemplate=f"patch %{{y}} at %{{x}} → {answers[i]}: %{{z:.2f}}<extra></extra>",
                ),
                row=n // cols + 1,
                col=n % cols + 1,
            )
            if n % cols:
                fig.update_yaxes(showticklabels=False, row=n // cols + 1, col=n % cols + 1)
        fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title=title or "Activation patching: fraction of the clean logit difference restored", margin=dict(l=110)
    )
    return fig


def _short(label: str) -> str:
    """``blocks.1.hook_resid_mid`` → ``L2 resid_mid`` for axis labels."""
    m = re.fullmatch(r"blocks\.(\d+)\.(?:hook_)?(.+)", label)
    return f"L{int(m.group(1)) + 1} {m.group(2).replace('attn.hook_', '')}" if m else label


def probe_scatter(results, site: str | None = None, ks=None, max_points: int = 400) -> go.Figure:
    """True vs probed ``ĉ_k`` for ``k`` in ``ks``: one row per model, MAE in each subplot's title.

    ``results`` is a :class:`~mulinterp.circuits.probes.ProbeResult` or a dict name → one;
    ``site`` defaults to the last layer's ``resid_mid`` (the paper's choice); ``ks`` to the
    middle digits ``2 … n_c − 2`` (the paper's ``c_2..c_6`` on 4×4).
    """
    results = _as_dict(results)
    n_c = min(len(r.positions) for r in results.values())
    ks = list(range(2, n_c - 1) if ks is None else ks)
    if not ks or max(ks) >= n_c:
        raise ValueError(f"probe positions {ks} do not fit answers of {n_c} digits")
    titles, cells = [], []
    for name, r in results.items():
        s = site or next((x for x in reversed(r.sites) if x.endswith("hook_resid_mid")), r.sites[-1])
        si = r.site_index(s)
        for k in ks:
            titles.append(f"{name}: {r.positions[k]}, MAE {float(r.mae[si, k]):.2f}")
            cells.append((r, si, k, s))
    fig = make_subplots(rows=len(results), cols=len(ks), subplot_titles=titles)
    for n, (r, si, k, _s) in enumerate(cells):
        true, pred = r.true[k][:max_points].tolist(), r.predicted[si, k][:max_points].tolist()
        lo, hi = min(true + pred), max(true + pred)
        row, col = n // len(ks) + 1, n % len(ks) + 1
        fig.add_trace(
            go.Scatter(
                x=true,
                y=pred,
                mode="markers",
                marker=dict(size=4, opacity=0.5, color="#1f77b4"),
                showlegend=False,
                hovertemplate="true %{x}, probed %{y:.1f}<extra></extra>",
            ),
            row=row,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                line=dict(color="grey", dash="dash"),
                showlegend=False,
                hoverinfo="skip",
            ),
            row=row,
            col=col,
        )
    fig.update_xaxes(title_text="true ĉ_k")
    fig.update_yaxes(title_text="probed", col=1)
    first = next(iter(results.values()))
    target = {"c_hat": "ĉ_k", "carry": "carry r_k", "s": "s_k"}.get(first.target, first.target)
    fig.update_layout(
        title=f"Linear probes for {target} at {site or 'the last layer resid_mid'} (test split)",
        height=260 * len(results) + 140,
        width=230 * len(ks) + 160,
    )
    return fig


__all__ = ["attribution_figure", "dla_figure", "patching_figure", "probe_scatter"]
