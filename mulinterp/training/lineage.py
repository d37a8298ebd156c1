"""Where a campaign run's state came from: the chain of forks and widenings behind it.

A campaign run often continues another's state (``campaign fork`` / ``campaign widen`` record
``forked_from`` / ``widened_from`` = ``"SOURCE@STEP"`` in ``campaign.json``), so its own recipe
says only how its *last* segment was trained. The bundled aux-4x4, for one, was trained with
``nx1_share`` 0 up to step 100 912 and 0.25 after, which its recipe cannot say. The lineage
says it: one segment per run of the chain, oldest first, with the step at which it began, how
(from scratch, fork, widening), and the recipe keys it changed. ``campaign promote`` keeps it in
the manifest; ``campaign lineage RUN`` prints it.

Recipes are read as the run folders hold them now; a recipe edited in place between sessions
(rather than forked) shows only its last version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mulinterp.training.campaign import CAMPAIGN_FILE
from mulinterp.training.config import TrainConfig


def lineage(root: str | Path, name: str) -> list[dict[str, Any]]:
    """Run ``name``'s chain, oldest segment first.

    Each segment: ``run``, ``began`` (``scratch``, ``fork``, ``widen`` or ``widen (fresh
    units)``), ``parent`` and ``at_step`` (the parent's step it continued from; 0 from
    scratch), ``until_step`` (where the next segment took over; None for the last) and
    ``recipe`` (the whole recipe, defaults filled in, for the first segment; else the keys
    that differ from the parent's). Raises ``ValueError`` (one line) for an unknown run, a
    missing recipe or a cycle.
    """
    root = Path(root)
    spec_path = root / CAMPAIGN_FILE
    if not spec_path.is_file():
        raise ValueError(f"{root} is not a campaign folder (no {CAMPAIGN_FILE})")
    entries = {e["name"]: e for e in json.loads(spec_path.read_text())["runs"]}
    chain: list[dict[str, Any]] = []
    current: str | None = name
    while current is not None:
        if current not in entries:
            raise ValueError(f"run {current!r} is not listed in {spec_path}")
        if any(seg["run"] == current for seg in chain):
            raise ValueError(f"{spec_path}: the origins of {name!r} form a cycle at {current!r}")
        entry = entries[current]
        origin = entry.get("forked_from") or entry.get("widened_from")
        if origin is None:
            began, parent, at = "scratch", None, 0
        else:
            parent, _, step = origin.rpartition("@")
            began = "fork" if "forked_from" in entry else "widen (fresh units)" if entry.get("fresh_units") else "widen"
            at = int(step)
        chain.append({"run": current, "began": began, "parent": parent, "at_step": at})
        current = parent
    chain.reverse()
    previous: dict[str, Any] | None = None
    for i, seg in enumerate(chain):
        path = root / seg["run"] / "recipe.json"
        if not path.is_file():
            raise ValueError(f"run {seg['run']!r} has no recipe at {path}")
        recipe = TrainConfig.from_file(path).to_dict()  # defaults filled: older recipes omit them
        seg["until_step"] = chain[i + 1]["at_step"] if i + 1 < len(chain) else None
        seg["recipe"] = recipe if previous is None else {k: v for k, v in recipe.items() if previous.get(k) != v}
        previous = recipe
    return chain


def lineage_lines(chain: list[dict[str, Any]]) -> list[str]:
    """One readable line per segment, e.g. ``icot-4x4-w128f-nx1: fork of icot-4x4-w128f-lr1e3
    at step 189035 → its latest state; changed nx1_share=0.25``."""
    lines = []
    for seg in chain:
        how = (
            "from scratch"
            if seg["began"] == "scratch"
            else f"{seg['began']} of {seg['parent']} at step {seg['at_step']}"
        )
        until = f"step {seg['until_step']}" if seg["until_step"] is not None else "its latest state"
        items = ", ".join(f"{k}={v}" for k, v in seg["recipe"].items())
        what = f"recipe {items}" if seg["began"] == "scratch" else f"changed {items}" if items else "recipe unchanged"
        lines.append(f"{seg['run']}: {how} → {until}; {what}")
    return lines
