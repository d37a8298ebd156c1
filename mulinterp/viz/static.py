"""Static PNGs of plotly figures, drawn with matplotlib.

**Why not plotly's own export.** Plotly 6+ exports images through kaleido ≥ 1, which drives a
separately downloaded Chrome. That download is impossible offline (CI, clusters, a laptop on
a train), and the figures of this project must regenerate anywhere the tests run. So
:func:`to_png` reads the plotly figure — traces, subplot domains, titles, axes — and draws it
again with matplotlib's Agg renderer. It is not pixel-faithful to plotly; it is meant to be
readable and correct: the same data, colours scales, labels and layout. The interactive
HTML next to each PNG is the faithful version.

Supported: ``Heatmap`` (tick labels, colour bar, ``zmid`` → diverging scale, shared
``coloraxis``), ``Scatter``/``Scattergl`` (markers, lines, text, colour arrays, legend),
``Scatter3d`` and ``Bar`` (grouped, stacked or overlaid; vertical or horizontal), on a
``make_subplots`` grid or any layout whose axes have domains, plus paper- and data-anchored
annotations (subplot titles), the figure title and axis titles/ranges/log scales. Anything
else is named in a warning and in its panel instead of failing.

The figure is built on a ``matplotlib.figure.Figure`` with an Agg canvas rather than via
``pyplot`` + ``matplotlib.use("Agg")``: the result is the same Agg rendering, but it never
switches the backend of the caller's session (a notebook keeps its inline plots) and holds no
global figure state.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import numpy as np

# plotly's default margins (px) and the size used when a figure sets none
_MARGIN = {"l": 80, "r": 80, "t": 100, "b": 80}
_DPI, _SCALE = 100, 1.5
_DASHES = {"dash": "--", "dot": ":", "dashdot": "-.", "longdash": (0, (8, 3)), "longdashdot": (0, (8, 3, 2, 3))}


def to_png(fig) -> bytes:
    """Render a plotly ``Figure`` as PNG bytes (see the module docstring for what is drawn).

    >>> import plotly.graph_objects as go
    >>> to_png(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    import matplotlib  # imported here, not with the package: it is slow to load and optional at runtime
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lay = fig.layout
    rows, cols = _grid_shape(fig)
    width = lay.width or max(700, 380 * cols + 160)
    height = lay.height or max(450, 330 * rows + 180)
    mpl_fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(mpl_fig)
    margin = {k: (getattr(lay.margin, k) if getattr(lay.margin, k) is not None else v) for k, v in _MARGIN.items()}
    # plot area in figure fractions; plotly's "paper" coordinates map onto it
    box = (margin["l"] / width, margin["b"] / height, 1 - margin["r"] / width, 1 - margin["t"] / height)

    with matplotlib.rc_context({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 8}):
        painter = _Painter(fig, mpl_fig, box)
        for i, trace in enumerate(fig.data):
            painter.draw(i, trace)
        painter.finish()
        buf = io.BytesIO()
        mpl_fig.savefig(buf, format="png", dpi=_DPI * _SCALE, facecolor="white")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------
# plotly → matplotlib values


def _grid_shape(fig) -> tuple[int, int]:
    grid = getattr(fig, "_grid_ref", None)
    if grid:
        return len(grid), len(grid[0])
    return 1, 1


def _text(t: Any) -> str:
    """Plotly text (a string or a ``Title``) without its HTML markup."""
    if t is None:
        return ""
    if not isinstance(t, str):
        t = getattr(t, "text", None) or ""
    t = re.sub(r"<br\s*/?>", "\n", t, flags=re.I)
    return re.sub(r"<[^>]+>", "", t)


def _color(c: Any):
    """A plotly colour string (``'rgb(1,2,3)'``, ``'rgba(…)'``, hex, CSS name) for matplotlib."""
    if not isinstance(c, str):
        return c
    m = re.fullmatch(r"\s*rgba?\(([^)]*)\)\s*", c)
    if m:
        parts = [float(p) for p in m.group(1).split(",")]
        rgb = [p / 255 for p in parts[:3]]
        return (*rgb, parts[3] if len(parts) > 3 else 1.0)
    return c.strip()


def _cmap(scale: Any):
    """A matplotlib colormap from a plotly colour scale (``[(0, colour), …, (1, colour)]``)."""
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap

    if isinstance(scale, str):
        name = scale[:-2] if scale.endswith("_r") else scale
        for cand in (scale, name.lower(), name):
            if cand in colormaps:
                return colormaps[cand]
        import plotly.colors

        scale = plotly.colors.get_colorscale(scale)
    return LinearSegmentedColormap.from_list("plotly", [(float(f), _color(c)) for f, c in scale])


def _arr(v: Any) -> np.ndarray | None:
    return None if v is None else np.asarray(v)


def _is_numeric(v: np.ndarray) -> bool:
    return v.dtype.kind in "iufb"


def _tick_label(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


class _Painter:
    """Draws traces one by one onto the matplotlib axes of their plotly subplot."""

    def __init__(self, fig, mpl_fig, box: tuple[float, float, float, float]) -> None:
        self.fig, self.mpl, self.box = fig, mpl_fig, box
        self.lay = fig.layout
        self.axes: dict[tuple[str, ...], Any] = {}
        self.colorway = list(self.lay.template.layout.colorway or []) or [f"C{i}" for i in range(10)]
        self.colorbars_done: set[str] = set()
        self.bar_slots: dict[tuple[str, ...], list[int]] = {}
        self.stack_base: dict[tuple[str, ...], dict[Any, float]] = {}
        for i, t in enumerate(fig.data):
            if t.type == "bar":
                self.bar_slots.setdefault(self._key(t), []).append(i)

    # ----- subplots ----------------------------------------------------------------------
    @staticmethod
    def _key(trace) -> tuple[str, ...]:
        if trace.type == "scatter3d":
            return ("scene", trace.scene or "scene")
        # traces without cartesian axes (pie, sunburst …) fall back to the first panel
        return ("xy", getattr(trace, "xaxis", None) or "x", getattr(trace, "yaxis", None) or "y")

    @staticmethod
    def _layout_name(ref: str) -> str:
        """``'x2'`` → ``'xaxis2'``; ``'scene'`` stays."""
        return ref if ref.startswith("scene") else f"{ref[0]}axis{ref[1:]}"

    def _rect(self, xdom, ydom) -> list[float]:
        l, b, r, t = self.box
        x0, x1 = xdom or (0, 1)
        y0, y1 = ydom or (0, 1)
        return [l + x0 * (r - l), b + y0 * (t - b), (x1 - x0) * (r - l), (y1 - y0) * (t - b)]

    def ax_for(self, trace):
        key = self._key(trace)
        if key in self.axes:
            return self.axes[key]
        if key[0] == "scene":
            scene = self.lay[key[1]]
            ax = self.mpl.add_axes(self._rect(scene.domain.x, scene.domain.y), projection="3d")
            for dim in "xyz":
                getattr(ax, f"set_{dim}label")(_text(scene[f"{dim}axis"].title))
        else:
            xa, ya = self.lay[self._layout_name(key[1])], self.lay[self._layout_name(key[2])]
            ax = self.mpl.add_axes(self._rect(xa.domain, ya.domain))
        self.axes[key] = ax
        return ax

    # ----- traces ------------------------------------------------------------------------
    def draw(self, i: int, trace) -> None:
        ax = self.ax_for(trace)
        kind = "scatter" if trace.type == "scattergl" else trace.type
        drawer = getattr(self, f"_draw_{kind}", None)
        if drawer is None:
            warnings.warn(f"to_png: plotly trace type {trace.type!r} is not rendered in the PNG", stacklevel=3)
            ax.text(
                0.5,
                0.5,
                f"({trace.type} trace: see the HTML version)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
            return
        drawer(i, trace, ax)

    def _scale_of(self, trace, zs: list[np.ndarray], colorscale, cmid, cmin, cmax):
        """``(cmap, vmin, vmax, colorbar_owner)`` honouring a shared ``coloraxis``."""
        owner = f"trace{id(trace)}"
        coloraxis = getattr(trace, "coloraxis", None)
        if coloraxis:
            ca = self.lay[coloraxis]
            colorscale, cmid, cmin, cmax = ca.colorscale, ca.cmid, ca.cmin, ca.cmax
            zs = [
                np.asarray(t.z if t.type == "heatmap" else t.marker.color, dtype=float)
                for t in self.fig.data
                if getattr(t, "coloraxis", None) == coloraxis
                or getattr(getattr(t, "marker", None), "coloraxis", None) == coloraxis
            ]
            owner = coloraxis
        finite = np.concatenate([z[np.isfinite(z)].ravel() for z in zs]) if zs else np.array([])
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        if cmid is not None:  # symmetric around the midpoint, as plotly does
            half = max(abs(hi - cmid), abs(lo - cmid)) or 1.0
            lo, hi = cmid - half, cmid + half
        lo = cmin if cmin is not None else lo
        hi = cmax if cmax is not None else hi
        if colorscale is None:
            tmpl = self.lay.template.layout.colorscale
            colorscale = "RdBu_r" if cmid is not None else (tmpl.sequential or "viridis")
        return _cmap(colorscale), lo, hi, owner

    def _colorbar(self, mappable, ax, owner: str, title: Any) -> None:
        if owner in self.colorbars_done:
            return
        self.colorbars_done.add(owner)
        if owner.startswith("coloraxis"):
            title = self.lay[owner].colorbar.title
            # one bar for all subplots sharing the colour axis: in the right margin, as plotly does
            l, b, r, t = self.box
            cb = self.mpl.colorbar(mappable, cax=self.mpl.add_axes([r + 0.015, b, 0.015, t - b]))
        else:
            cb = self.mpl.colorbar(mappable, ax=ax, fraction=0.05, pad=0.02)
        if _text(title):  # on top, like plotly's default, so it never runs into a neighbour panel
            cb.ax.set_title(_text(title), fontsize=8, loc="left")

    def _draw_heatmap(self, i: int, t, ax) -> None:
        z = np.asarray(t.z, dtype=float)
        if z.ndim == 1:
            z = z[None, :]
        cmap, lo, hi, owner = self._scale_of(t, [z], t.colorscale, t.zmid, t.zmin, t.zmax)
        if t.reversescale:
            cmap = cmap.reversed()
        im = ax.imshow(z, aspect="auto", origin="lower", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        for axis, labels, n in (("x", t.x, z.shape[1]), ("y", t.y, z.shape[0])):
            labels = list(labels) if labels is not None else list(range(n))
            wide = max((len(_tick_label(v)) for v in labels), default=0) > 4  # e.g. training steps
            step = max(1, int(np.ceil(len(labels) / (12 if wide else 30))))
            ticks = list(range(0, min(n, len(labels)), step))
            getattr(ax, f"set_{axis}ticks")(ticks, [_tick_label(labels[k]) for k in ticks])
        if t.x is not None and z.shape[1] > 8 and max(len(_tick_label(v)) for v in t.x) > 2:
            ax.tick_params(axis="x", labelrotation=90)
        if t.texttemplate or t.text is not None:
            self._cell_text(ax, z, t)
        show = t.showscale if t.showscale is not None else True
        if t.coloraxis:
            show = self.lay[t.coloraxis].showscale is not False
        if show:
            title = self.lay[t.coloraxis].colorbar.title if t.coloraxis else t.colorbar.title
            self._colorbar(im, ax, owner, title)

    @staticmethod
    def _cell_text(ax, z: np.ndarray, t) -> None:
        text = np.asarray(t.text, dtype=object) if t.text is not None else None
        if z.size > 400:  # unreadable anyway
            return
        for r in range(z.shape[0]):
            for c in range(z.shape[1]):
                if text is not None and text.ndim == 2:
                    s = str(text[r, c])
                elif np.isfinite(z[r, c]):
                    s = f"{z[r, c]:.2g}"
                else:
                    continue
                ax.text(c, r, s, ha="center", va="center", fontsize=7)

    def _marker_style(self, i: int, t, n: int) -> dict[str, Any]:
        """Colour/size keyword arguments for ``ax.scatter`` (+ colorbar info)."""
        m = t.marker
        style: dict[str, Any] = {}
        color = m.color if m is not None else None
        if (
            color is not None
            and not isinstance(color, str)
            and np.asarray(color).dtype.kind in "iuf"
            and len(np.asarray(color)) == n
        ):
            c = np.asarray(color, dtype=float)
            cmap, lo, hi, owner = self._scale_of(m, [c], m.colorscale, m.cmid, m.cmin, m.cmax)
            if m.reversescale:
                cmap = cmap.reversed()
            style.update(
                c=c,
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                _owner=owner,
                _showscale=bool(m.showscale) or (m.coloraxis and self.lay[m.coloraxis].showscale is not False),
            )
        elif color is not None:
            style["color"] = [_color(c) for c in color] if not isinstance(color, str) else _color(color)
        else:
            style["color"] = self.colorway[i % len(self.colorway)]
        size = m.size if m is not None and m.size is not None else 6
        style["s"] = (np.asarray(size, dtype=float) * 0.9) ** 2
        if m is not None and m.opacity is not None:
            style["alpha"] = m.opacity
        return style

    def _label(self, t) -> str | None:
        if t.showlegend is False or not t.name or self.lay.showlegend is False:
            return None
        return _text(t.name)

    def _draw_scatter(self, i: int, t, ax) -> None:
        y = _arr(t.y)
        x = _arr(t.x)
        if y is None and x is None:
            return
        if x is None:
            x = np.arange(len(y))
        if y is None:
            y = np.arange(len(x))
        mode = t.mode or ("lines+markers" if len(x) < 20 else "lines")
        label = self._label(t)
        line_color = _color(t.line.color) if t.line is not None and t.line.color else None
        if "lines" in mode:
            dash = _DASHES.get(t.line.dash, "-") if t.line is not None and t.line.dash else "-"
            lw = t.line.width if t.line is not None and t.line.width else 1.6
            color = line_color or (self.colorway[i % len(self.colorway)])
            if isinstance(getattr(t.marker, "color", None), str) and not line_color:
                color = _color(t.marker.color)
            ax.plot(x, y, linestyle=dash, linewidth=lw, color=color, label=label if "markers" not in mode else None)
        if "markers" in mode:
            style = self._marker_style(i, t, len(x))
            owner, showscale = style.pop("_owner", None), style.pop("_showscale", False)
            if "lines" in mode and "c" not in style and line_color and t.marker.color is None:
                style["color"] = line_color
            sc = ax.scatter(x, y, label=label, zorder=3, **style)
            if showscale and owner:
                self._colorbar(sc, ax, owner, t.marker.colorbar.title)
        if "text" in mode and t.text is not None:
            texts = [t.text] * len(x) if isinstance(t.text, str) else list(t.text)
            for xv, yv, s in zip(x, y, texts):
                ax.annotate(_text(str(s)), (xv, yv), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)

    def _draw_scatter3d(self, i: int, t, ax) -> None:
        x, y, z = (_arr(v) for v in (t.x, t.y, t.z))
        if x is None or y is None or z is None:
            return
        mode = t.mode or "lines+markers"
        label = self._label(t)
        if "lines" in mode:
            color = (
                _color(t.line.color)
                if t.line is not None and isinstance(t.line.color, str)
                else self.colorway[i % len(self.colorway)]
            )
            ax.plot(x, y, z, color=color, label=label if "markers" not in mode else None)
        if "markers" in mode:
            style = self._marker_style(i, t, len(x))
            owner, showscale = style.pop("_owner", None), style.pop("_showscale", False)
            sc = ax.scatter(x, y, z, label=label, depthshade=False, **style)
            if showscale and owner:
                self._colorbar(sc, ax, owner, t.marker.colorbar.title)
        if "text" in mode and t.text is not None:
            texts = [t.text] * len(x) if isinstance(t.text, str) else list(t.text)
            for xv, yv, zv, s in zip(x, y, z, texts):
                ax.text(xv, yv, zv, _text(str(s)), fontsize=7)

    def _draw_bar(self, i: int, t, ax) -> None:
        horizontal = t.orientation == "h"
        cat, val = (_arr(t.y), _arr(t.x)) if horizontal else (_arr(t.x), _arr(t.y))
        if val is None:
            return
        if cat is None:
            cat = np.arange(len(val))
        val = val.astype(float)
        key = self._key(t)
        # categorical positions are shared by all bar traces of the subplot
        if not _is_numeric(cat):
            cats: list[Any] = []
            for j in self.bar_slots[key]:
                tj = self.fig.data[j]
                for c in (tj.y if horizontal else tj.x) or []:
                    if c not in cats:
                        cats.append(c)
            pos = np.array([cats.index(c) for c in cat], dtype=float)
            setter = ax.set_yticks if horizontal else ax.set_xticks
            setter(range(len(cats)), [_tick_label(c) for c in cats])
        else:
            pos = cat.astype(float)
            cats = []
        steps = np.diff(np.unique(pos))
        unit = float(steps.min()) if steps.size else 1.0
        mode = self.lay.barmode or "group"
        slots = self.bar_slots[key]
        width = 0.8 * unit
        base = None
        if mode == "group" and len(slots) > 1:
            width = 0.8 * unit / len(slots)
            pos = pos - 0.4 * unit + width * (slots.index(i) + 0.5)
        elif mode in ("stack", "relative"):
            acc = self.stack_base.setdefault(key, {})
            base = np.array([acc.get(p, 0.0) for p in pos])
            for p, v in zip(pos, val):
                acc[p] = acc.get(p, 0.0) + v
        m = t.marker
        if m is not None and m.color is not None:
            color = _color(m.color) if isinstance(m.color, str) else [_color(c) for c in m.color]
            if not isinstance(m.color, str) and np.asarray(m.color).dtype.kind in "iuf":
                cmap, lo, hi, _ = self._scale_of(
                    m, [np.asarray(m.color, dtype=float)], m.colorscale, m.cmid, m.cmin, m.cmax
                )
                color = cmap((np.asarray(m.color, dtype=float) - lo) / ((hi - lo) or 1.0))
        else:
            color = self.colorway[i % len(self.colorway)]
        err = _arr(t.error_y.array) if t.error_y is not None and t.error_y.array is not None else None
        alpha = 0.6 if mode == "overlay" else (t.opacity if t.opacity is not None else None)
        kw = dict(color=color, label=self._label(t), alpha=alpha)
        if horizontal:
            ax.barh(pos, val, height=width, left=base, xerr=err, **kw)
        else:
            ax.bar(pos, val, width=width, bottom=base, yerr=err, **kw)

    # ----- layout ------------------------------------------------------------------------
    def finish(self) -> None:
        lay = self.lay
        by_ref = {
            (axis, ref): ax
            for key, ax in self.axes.items()
            if key[0] == "xy"
            for axis, ref in (("x", key[1]), ("y", key[2]))
        }
        for (axis, ref), ax in by_ref.items():  # facets: plotly's `matches` is matplotlib's sharex/sharey
            other = by_ref.get((axis, lay[self._layout_name(ref)].matches or ""))
            if other is not None and other is not ax:
                getattr(ax, f"share{axis}")(other)
                other.autoscale(axis=axis)  # limits now cover the data of every sharing panel
        for key, ax in self.axes.items():
            if key[0] != "xy":
                continue
            for ref, axis in ((key[1], "x"), (key[2], "y")):
                la = lay[self._layout_name(ref)]
                title = _text(la.title)
                if title:
                    getattr(ax, f"set_{axis}label")(title)
                if la.type == "log":
                    getattr(ax, f"set_{axis}scale")("log")
                if la.range is not None:
                    lo, hi = la.range
                    if la.type == "log":
                        lo, hi = 10.0**lo, 10.0**hi
                    getattr(ax, f"set_{axis}lim")(lo, hi)
                if la.autorange == "reversed":
                    getattr(ax, f"invert_{axis}axis")()
                if la.showgrid:
                    ax.grid(True, axis=axis, alpha=0.3)
                if la.showticklabels is False:
                    ax.tick_params(axis=axis, labelleft=False, labelbottom=False)
                if la.visible is False:
                    getattr(ax, f"get_{axis}axis")().set_visible(False)
            if lay[self._layout_name(key[2])].scaleanchor:
                ax.set_aspect("equal", adjustable="box")
        for ax in self.axes.values():
            handles, labels = ax.get_legend_handles_labels()
            if labels and (len(labels) > 1 or lay.showlegend):
                ax.legend(loc="best", frameon=False)
        self._annotations()
        title = _text(lay.title)
        if title:
            self.mpl.suptitle(title, y=1 - 0.3 * (1 - self.box[3]), fontsize=12)

    def _annotations(self) -> None:
        l, b, r, t = self.box
        ha = {"left": "left", "right": "right", "center": "center"}
        va = {"top": "top", "bottom": "bottom", "middle": "center"}
        for ann in self.lay.annotations or ():
            text = _text(ann.text)
            if not text or ann.visible is False:
                continue
            size = ann.font.size if ann.font is not None and ann.font.size else None
            kw = dict(
                ha=ha.get(ann.xanchor, "center"),
                va=va.get(ann.yanchor, "center"),
                fontsize=(size * 0.75) if size else None,
            )
            xref, yref = ann.xref or "x", ann.yref or "y"
            if xref.startswith("paper") and yref.startswith("paper"):
                x = l + (ann.x if ann.x is not None else 0.5) * (r - l)
                y = b + (ann.y if ann.y is not None else 0.5) * (t - b)
                self.mpl.text(x, y, text, **kw)
                continue
            ax = self.axes.get(("xy", xref.split()[0], yref.split()[0]))
            if ax is not None and ann.x is not None and ann.y is not None:
                ax.text(ann.x, ann.y, text, **kw)
