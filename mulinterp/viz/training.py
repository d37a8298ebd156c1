"""Figures of training runs: a campaign run's accuracy over steps (``mulinterp campaign curve``)."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def campaign_curve_figure(curves: list) -> go.Figure:
    """One row per run (:class:`~mulinterp.training.campaign.RunCurve`): exact match over steps
    (monitor on the plain layout; for ICoT with CoT left, also at the removal stage, and the
    share of CoT left), and the per-digit answer accuracy as a heatmap."""
    fig = make_subplots(
        rows=len(curves),
        cols=2,
        column_widths=[0.45, 0.55],
        subplot_titles=[t for c in curves for t in (f"{c.name}: exact match", f"{c.name}: accuracy per digit")],
    )
    for row, c in enumerate(curves, 1):
        lines = [("monitor (plain layout)", c.exact, "#1f77b4", None)]
        if any(x is not None for x in c.stage_exact):
            lines.append(("at the removal stage", c.stage_exact, "#d62728", None))
        if c.cot_len:
            lines.append(("share of CoT left", [n / c.cot_len for n in c.cot_left], "#7f7f7f", "dash"))
        for name, y, colour, dash in lines:
            fig.add_trace(
                go.Scatter(
                    x=c.steps,
                    y=y,
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1,
                    line=dict(color=colour, dash=dash),
                ),
                row=row,
                col=1,
            )
        reads = [(step, x) for step, x in zip(c.steps, c.fall_val) if x is not None]
        if reads:  # plain_cooldown's val reads, each where a fall of the lr ended
            fig.add_trace(
                go.Scatter(
                    x=[step for step, _ in reads],
                    y=[x for _, x in reads],
                    mode="markers",
                    name="val where a fall ended",
                    legendgroup="fall_val",
                    marker=dict(color="#2ca02c", size=7),
                ),
                row=row,
                col=1,
            )
        n_c = max((len(d) for d in c.per_digit), default=0)
        z = [[d[k] if len(d) == n_c else None for d in c.per_digit] for k in range(n_c)]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=c.steps,
                y=[f"c{k}" for k in range(n_c)],
                colorscale="Viridis",
                zmin=0,
                zmax=1,
                showscale=row == 1,
                colorbar=dict(title="accuracy"),
                hovertemplate="step %{x}, %{y}: %{z:.2f}<extra></extra>",
            ),
            row=row,
            col=2,
        )
        fig.update_yaxes(range=[0, 1.02], row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(curves))
    fig.update_layout(
        title="Accuracy over training (per digit: at the removal stage where recorded)",
        height=320 * len(curves) + 120,
    )
    return fig


__all__ = ["campaign_curve_figure"]
