"""Figures for heads, the attention DAG, geometry and learning dynamics.

Thin: every function takes what a :mod:`mulinterp.circuits` analysis returned and draws it.
Layer and head labels are 1-based as in the paper (``L1H3`` = ``blocks.0``, head 2).
"""

from __future__ import annotations

import html as _html

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from mulinterp.hooks.names import head_label, layer_label

DIGIT_COLOURS = qualitative.Plotly  # 10 distinct colours, one per digit value
HEAD_COLOURS = qualitative.Dark24  # one per (layer, head) in the DAG


def heads_figure(table) -> go.Figure:
    """One heatmap per layer: heads × answer timesteps, colour = role score, text = role."""
    att = table.attention
    n_layers, n_heads, n_c = att.n_layers, att.n_heads, att.task.n_c
    fig = make_subplots(rows=1, cols=n_layers, subplot_titles=[layer_label(l) for l in range(n_layers)])
    for layer in range(n_layers):
        z = [[0.0] * n_c for _ in range(n_heads)]
        text = [[""] * n_c for _ in range(n_heads)]
        for r in table.select(layer=layer):
            z[r.head][r.position] = r.score
            short = {"pair": "·".join(r.targets), "retrieve": "←" + ",".join(r.targets)}.get(r.role, r.role)
            text[r.head][r.position] = short
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[f"c{k}" for k in range(n_c)],
                y=[f"H{h + 1}" for h in range(n_heads)],
                text=text,
                texttemplate="%{text}",
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=layer == n_layers - 1,
                hovertemplate="%{y} at timestep %{x}: %{text} (score %{z:.2f})<extra></extra>",
            ),
            row=1,
            col=layer + 1,
        )
    fig.update_layout(title=f"Attention roles (n = {att.n}); x = timestep named by the digit it predicts")
    return fig


def attention_view_html(att, layer: int, head: int | None = None) -> str:
    """A self-contained circuitsvis page of the mean attention of one head (or a whole layer).

    ``layer``/``head`` are 0-based; tokens are labelled ``a1``, ``b2``, ``c3`` … by content.
    """
    import circuitsvis.attention as cva

    labels = att.task.token_labels("plain")[: att.pattern.shape[-1]]
    heads = [head] if head is not None else list(range(att.n_heads))
    rendered = cva.attention_patterns(tokens=labels, attention=att.pattern[layer, heads])
    names = ", ".join(head_label(layer, h) for h in heads)
    title = _html.escape(f"Mean attention over {att.n} problems: {names}")
    # local_src inlines the JS bundle, so the page works offline (str() would point to a CDN)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h3>{title}</h3>{rendered.local_src}</body></html>"
    )


def dag_figure(dag, knock=None) -> go.Figure:
    """The attention DAG: operands at the bottom, one row of sites per layer, outputs on top."""
    task = dag.task
    pos: dict[str, tuple[float, float]] = {}
    n_ops = task.n_a + task.n_b
    span = max(task.n_c - 1, 1)
    for idx in range(n_ops):
        name = f"a{idx}" if idx < task.n_a else f"b{idx - task.n_a}"
        pos[name] = (idx * span / max(n_ops - 1, 1), 0.0)
    for n in dag.nodes:
        if n.kind == "site":
            pos[n.id] = (float(n.index), float(n.layer + 1))
        elif n.kind == "output":
            pos[n.id] = (float(n.index), float(dag.n_layers + 1))
    fig = go.Figure()
    for e in dag.edges:
        (x0, y0), (x1, y1) = pos[e.source], pos[e.target]
        if e.kind == "attention":
            carried = ", ".join(f"a{i}·b{j}" for i, j in e.carries) or "—"
            hover = (
                f"{e.source} → {e.target}<br>{head_label(e.layer, e.head)}"
                f"<br>weight {e.weight:.2f}<br>carries {carried}"
            )
            colour = HEAD_COLOURS[(e.layer * dag.n_heads + e.head) % len(HEAD_COLOURS)]
            width, dash = 1 + 6 * e.weight, "solid"
        else:
            hover, width, colour, dash = f"{e.source} → {e.target} ({e.kind})", 1, "lightgrey", "dot"
        # y0 == y1 happens for layer-0 edges from emitted digits drawn on the output row; bend them
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2 + (0.3 if y0 == y1 else 0)
        fig.add_trace(
            go.Scatter(
                x=[x0, xm, x1],
                y=[y0, ym, y1],
                mode="lines",
                line=dict(width=width, color=colour, dash=dash),
                hoverinfo="text",
                text=hover,
                showlegend=False,
            )
        )
    kinds = {"operand": "#636EFA", "site": "#00CC96", "output": "#EF553B"}
    for kind, colour in kinds.items():
        nodes = [n for n in dag.nodes if n.kind == kind]
        fig.add_trace(
            go.Scatter(
                x=[pos[n.id][0] for n in nodes],
                y=[pos[n.id][1] for n in nodes],
                mode="markers+text",
                name=kind,
                text=[n.id for n in nodes],
                textposition="top center",
                marker=dict(size=16, color=colour),
                hovertext=[
                    f"{n.id}<br>carries " + (", ".join(f"a{i}·b{j}" for i, j in n.carries) or "—") for n in nodes
                ],
                hoverinfo="text",
            )
        )
    title = f"Attention DAG (mean weight ≥ {dag.threshold}); edge colour = head (hover for which), width = weight"
    if knock is not None:
        title += (
            f"<br>knockout of {knock.n_edges} edges: exact {knock.clean.exact_match:.3f} → {knock.dag.exact_match:.3f}"
            f" (random: {', '.join(f'{r.exact_match:.3f}' for r in knock.random)})"
        )
    fig.update_layout(
        title=title,
        xaxis=dict(title="timestep (digit predicted)", showgrid=False),
        yaxis=dict(
            tickvals=list(range(dag.n_layers + 2)),
            ticktext=["operands"] + [f"layer {l + 1}" for l in range(dag.n_layers)] + ["outputs"],
        ),
        hovermode="closest",
    )
    return fig


def _scatter3d(coords, values, name_of_digit: str, scene: str):
    traces = []
    for d in range(10):
        sel = values == d
        if not bool(sel.any()):
            continue
        c = coords[sel]
        traces.append(
            go.Scatter3d(
                x=c[:, 0].tolist(),
                y=c[:, 1].tolist(),
                z=c[:, 2].tolist(),
                mode="markers",
                marker=dict(size=2, color=DIGIT_COLOURS[d]),
                name=f"{name_of_digit}={d}",
                legendgroup=name_of_digit,
                scene=scene,
            )
        )
    return traces


def minkowski_figure(res) -> go.Figure:
    """3-D PCA of a head's output, coloured by one digit (left) and by the other (right)."""
    fig = make_subplots(
        rows=1,
        cols=2,
        specs=[[{"type": "scene"}, {"type": "scene"}]],
        subplot_titles=[f"coloured by {res.digits[0]}", f"coloured by {res.digits[1]}"],
    )
    for col in range(2):
        for t in _scatter3d(res.coords, res.values[:, col], res.digits[col], f"scene{'' if col == 0 else 2}"):
            fig.add_trace(t, row=1, col=col + 1)
    fig.update_layout(
        title=(
            f"{head_label(res.layer, res.head)} output at the c{res.position}"
            f" timestep; additive R² {res.fit.additive_r2:.3f} vs interaction R² {res.fit.interaction_r2:.3f}"
        )
    )
    return fig


def fourier_figure(results: dict) -> go.Figure:
    """Cumulative Fourier R² per digit object, one line per model (``{name: FourierResult}``)."""
    objects = list(next(iter(results.values())).cumulative)
    fig = make_subplots(rows=1, cols=len(objects), subplot_titles=objects, shared_yaxes=True)
    for mi, (name, res) in enumerate(results.items()):
        for oi, obj in enumerate(objects):
            steps = list(res.cumulative[obj])
            fig.add_trace(
                go.Scatter(
                    x=["+" + s if i else s for i, s in enumerate(steps)],
                    y=list(res.cumulative[obj].values()),
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=oi == 0,
                    line=dict(color=DIGIT_COLOURS[mi % 10]),
                ),
                row=1,
                col=oi + 1,
            )
    fig.update_yaxes(range=[0, 1.02], title_text="R² (cumulative)", col=1)
    fig.update_layout(title="Fourier digit basis: R² as frequencies are added")
    return fig


def prism_figure(res, name: str = "") -> go.Figure:
    """3-D PCA of the final residual stream at the ``c_k`` timestep, coloured by the true ``c_k``."""
    fig = go.Figure(_scatter3d(res.prism_coords, res.prism_digit, f"c{res.prism_position}", "scene"))
    ev = ", ".join(f"{float(x):.2f}" for x in res.prism_explained)
    fig.update_layout(title=f"{name} final residual at the c{res.prism_position} timestep (PCA, explained {ev})")
    return fig


def dynamics_figure(runs: list) -> go.Figure:
    """Per-position loss (top) and gradient norm (bottom) over training steps, one column per model."""
    fig = make_subplots(
        rows=2,
        cols=len(runs),
        shared_xaxes=False,
        subplot_titles=[f"{d.name}: loss" for d in runs] + [f"{d.name}: gradient norm" for d in runs],
    )
    for col, d in enumerate(runs, 1):
        y = [f"c{k}" for k in range(d.n_c)]
        fig.add_trace(
            go.Heatmap(
                z=d.pos_loss.T.tolist(),
                x=d.steps,
                y=y,
                colorscale="Viridis",
                zmin=0,
                zmax=2.5,
                showscale=col == len(runs),
                colorbar=dict(title="loss", y=0.78, len=0.45),
                hovertemplate="step %{x}, %{y}: loss %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Heatmap(
                z=d.grad_norm.T.tolist(),
                x=d.steps,
                y=y,
                colorscale="Magma",
                showscale=col == len(runs),
                colorbar=dict(title="‖∇‖", y=0.22, len=0.45),
                hovertemplate="step %{x}, %{y}: grad norm %{z:.3f}<extra></extra>",
            ),
            row=2,
            col=col,
        )
    fig.update_xaxes(title_text="step", row=2)
    fig.update_layout(title="Learning dynamics per answer position (loss ln 10 ≈ 2.30 = chance)")
    return fig


__all__ = [
    "heads_figure",
    "attention_view_html",
    "dag_figure",
    "minkowski_figure",
    "fourier_figure",
    "prism_figure",
    "dynamics_figure",
]
