"""PNG export without kaleido: plotly figures redrawn by matplotlib (mulinterp.viz.static)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from mulinterp.viz import write_figure
from mulinterp.viz.static import to_png

PNG = b"\x89PNG\r\n\x1a\n"
LABELS = ["a0", "a1", "*", "b0", "b1", "SEP", "ANS", "c0", "c1", "c2", "c3", "EOS"]


def pixels(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")[..., :3]


def heatmaps() -> go.Figure:
    rng = np.random.default_rng(0)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["L1H1 (blocks.0, head 0)", "L1H2 (blocks.0, head 1)"])
    fig.add_trace(
        go.Heatmap(z=np.tril(rng.random((12, 12))), x=LABELS, y=LABELS, colorbar=dict(title="attention")), 1, 1
    )
    fig.add_trace(go.Heatmap(z=rng.normal(size=(12, 12)), x=LABELS, y=LABELS, zmid=0, texttemplate="%{z:.1f}"), 1, 2)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="attention <b>patterns</b>")
    return fig


def scatter() -> go.Figure:
    x = np.arange(30)
    fig = go.Figure(
        [
            go.Scatter(x=x, y=np.sin(x / 5), mode="lines", name="c0", line=dict(dash="dash")),
            go.Scatter(
                x=x,
                y=np.cos(x / 5),
                mode="markers",
                name="c1",
                marker=dict(color=x, colorscale="Viridis", showscale=True),
            ),
            go.Scatter(x=[1, 2], y=[0, 0.5], mode="markers+text", text=["a", "b"], name="labels"),
        ]
    )
    fig.update_layout(xaxis_title="step", yaxis_title="loss")
    return fig


def scatter3d() -> go.Figure:
    rng = np.random.default_rng(1)
    fig = go.Figure(
        go.Scatter3d(
            x=rng.random(40),
            y=rng.random(40),
            z=rng.random(40),
            mode="markers",
            marker=dict(color=np.arange(40), size=4),
            name="digits",
        )
    )
    fig.update_layout(scene=dict(xaxis_title="PC1", yaxis_title="PC2", zaxis_title="PC3"), title="geometry")
    return fig


def mixed() -> go.Figure:
    fig = make_subplots(
        rows=2, cols=2, specs=[[{}, {}], [{}, {"type": "scene"}]], subplot_titles=["heatmap", "bar", "scatter", "3d"]
    )
    fig.add_trace(go.Heatmap(z=[[0, 1], [2, 3]], x=["k0", "k1"], y=["q0", "q1"]), 1, 1)
    fig.add_trace(go.Bar(x=["c0", "c1", "c2"], y=[1, 2, 3], name="sft", error_y=dict(array=[0.1, 0.2, 0.1])), 1, 2)
    fig.add_trace(go.Bar(x=["c0", "c1", "c2"], y=[2, 1, 3], name="icot"), 1, 2)
    fig.add_trace(go.Scatter(x=[1, 2, 3], y=[1, 10, 100], name="loss"), 2, 1)
    fig.add_trace(go.Scatter3d(x=[0, 1], y=[0, 1], z=[0, 1], mode="lines+markers"), 2, 2)
    fig.update_yaxes(type="log", row=2, col=1)
    return fig


@pytest.mark.parametrize("make", [heatmaps, scatter, scatter3d, mixed])
def test_renders_png(make):
    png = to_png(make())
    assert png.startswith(PNG)
    img = pixels(png)
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert img.std() > 0.05  # something was drawn, not a blank page


def test_heatmap_uses_the_figure_colorscale():
    fig = go.Figure(go.Heatmap(z=[[0, 1]], colorscale=[[0, "rgb(255,0,0)"], [1, "rgb(0,0,255)"]], showscale=False))
    img = pixels(to_png(fig))
    red = np.all(np.abs(img - [1, 0, 0]) < 0.02, axis=-1)
    blue = np.all(np.abs(img - [0, 0, 1]) < 0.02, axis=-1)
    assert red.sum() > 1000 and blue.sum() > 1000
    assert abs(int(red.sum()) - int(blue.sum())) < 0.05 * red.sum()  # two equal cells


def test_unknown_trace_type_warns_but_renders():
    fig = go.Figure(go.Pie(values=[1, 2]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert to_png(fig).startswith(PNG)
    assert any("pie" in str(w.message) for w in caught)


def test_write_figure_png_and_self_contained_html(tmp_path):
    fig = heatmaps()
    png = write_figure(fig, tmp_path / "x.png")
    assert png.read_bytes().startswith(PNG)
    html = write_figure(fig, tmp_path / "x.html").read_text()
    assert "<html" in html.lower() and "Plotly.newPlot" in html
    assert '<script src="http' not in html
    with pytest.raises(ValueError, match=".pdf"):
        write_figure(fig, tmp_path / "x.pdf")
