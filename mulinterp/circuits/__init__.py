"""Analyses that reverse-engineer the multiplication models; each module returns data.

One module per analysis, each with one clear public entry point and a docstring that teaches
the technique: ``heads`` (pair / retrieve heads), ``dag`` (the attention graph and its
knockout), ``geometry`` (Minkowski sums, Fourier digit basis), ``dynamics`` (per-digit
learning curves), and the attribution / patching / probe analyses. Figures live in
:mod:`mulinterp.viz`; nothing here plots or trains.
"""
