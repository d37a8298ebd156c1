"""Figures: thin plotly functions over the data that ``mulinterp.circuits`` returns.

``write_figure`` saves a figure as self-contained HTML (plotly.js inlined, works offline) or
as PNG by extension.
"""

from __future__ import annotations

from pathlib import Path

from mulinterp.io import atomic_write_bytes, check_writable


def write_figure(fig, path: Path) -> Path:
    """Save ``fig`` to ``path`` (``.html`` self-contained, or ``.png``); returns the path."""
    path = Path(path)
    check_writable(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        atomic_write_bytes(path, fig.to_html(include_plotlyjs=True, full_html=True).encode())
    elif suffix == ".png":
        from mulinterp.viz.static import to_png

        atomic_write_bytes(path, to_png(fig))
    else:
        raise ValueError(f"cannot save a figure as {suffix or 'a file without extension'}: use .html or .png")
    return path
