"""Learning dynamics: when each answer digit is learned, and what the stuck ones look like.

**What.** The trainer logs, every few hundred steps, the loss and the gradient norm
``‖∂loss_k/∂θ‖`` *of each answer position separately* on a fixed validation batch, plus the
per-digit greedy accuracy (telemetry, ``mulinterp/training/loop.py``). This module reads that
JSONL log back into tensors ``[step, k]`` and summarises it.

**Why.** The paper's diagnosis of SFT (§3.4): ``c_0``, ``c_1`` and the last digit are learned
early, while the middle digits sit at chance — loss ≈ ln 10 ≈ 2.30 nats — and their gradients
*shrink* rather than grow: a local optimum that lacks the long-range structure, not a
learning-rate problem. The auxiliary running-sum loss gives the middle digits a signal. The
comparison is two heatmaps per model (loss and gradient norm over steps × positions) and the
step at which each digit first reaches ``threshold`` accuracy.

**Intuition.** A digit whose loss is flat at ln 10 while its gradient norm decays is not
"learning slowly": the model has found that, given what it computes, predicting the uniform
distribution for that digit is locally optimal.

Example::

    >>> d = load_telemetry("sft-4x4")                                       # doctest: +SKIP
    >>> d.learned_step                                                       # doctest: +SKIP
    [250, 1000, None, None, None, None, None, 500]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

CHANCE_LOSS = math.log(10)  # nats: the uniform guess over 10 digits


@dataclass
class Dynamics:
    """One model's telemetry as tensors (rows = telemetry steps, columns = c_0 … c_{n_c-1})."""

    name: str
    steps: list[int]
    examples: list[int]
    loss: list[float]
    pos_loss: Float[Tensor, "step n_c"]
    grad_norm: Float[Tensor, "step n_c"]
    digit_acc: Float[Tensor, "step n_c"]
    exact_match: list[float]
    cot_remaining: list[int]
    threshold: float = 0.9

    @property
    def n_c(self) -> int:
        return self.pos_loss.shape[1]

    @property
    def learned_step(self) -> list[int | None]:
        """First telemetry step at which each digit's accuracy is ≥ ``threshold`` (None: never)."""
        return learned_steps(self.digit_acc, self.steps, self.threshold)

    def summary(self) -> dict:
        """Final loss, accuracy and gradient norm per digit; which digits plateau at chance."""
        final_loss = self.pos_loss[-1]
        peak_grad = self.grad_norm.max(0).values
        plateau = [k for k in range(self.n_c) if float(final_loss[k]) >= 0.9 * CHANCE_LOSS]
        return {
            "name": self.name,
            "steps": self.steps[-1],
            "examples": self.examples[-1],
            "exact_match": round(self.exact_match[-1], 4),
            "learned_step": self.learned_step,
            "final_pos_loss": [round(float(x), 4) for x in final_loss],
            "final_digit_acc": [round(float(x), 4) for x in self.digit_acc[-1]],
            "final_grad_norm": [round(float(x), 4) for x in self.grad_norm[-1]],
            "grad_norm_final_over_peak": [round(float(x), 4) for x in self.grad_norm[-1] / peak_grad.clamp_min(1e-12)],
            "plateau_digits": plateau,
            "chance_loss": round(CHANCE_LOSS, 4),
            "cot_remaining_final": self.cot_remaining[-1],
        }


def learned_steps(digit_acc: Float[Tensor, "step n_c"], steps: list[int], threshold: float = 0.9) -> list[int | None]:
    """For each column, the first ``steps`` entry whose accuracy is ≥ ``threshold``."""
    hit = digit_acc >= threshold
    first = hit.float().argmax(0)
    return [steps[int(first[k])] if bool(hit[:, k].any()) else None for k in range(digit_acc.shape[1])]


def telemetry_file(source: str | Path) -> tuple[str, Path]:
    """``(name, path)`` of the telemetry of a bundled model, a checkpoint or a ``.jsonl`` file."""
    from mulinterp.models import list_pretrained, pretrained_path, telemetry_path

    text = str(source)
    bundled = list_pretrained()
    if text in bundled:
        entry = bundled[text]
        if not entry.get("telemetry"):
            raise ValueError(f"bundled model {text!r} has no training telemetry")
        return text, pretrained_path(text).with_name(entry["telemetry"])
    path = Path(text)
    if path.suffix == ".jsonl":
        return path.stem.removesuffix(".telemetry"), path
    if path.suffix == ".safetensors" or path.exists():
        return path.stem, telemetry_path(path)
    avail = ", ".join(sorted(bundled)) or "none bundled"
    raise ValueError(f"no bundled model or file named {text!r} (bundled: {avail})")


def load_telemetry(source: str | Path, threshold: float = 0.9) -> Dynamics:
    """Read the telemetry of a bundled model name, a checkpoint path or a ``.jsonl`` path.

    Raises ``ValueError`` with one line if there is none or it is unreadable.
    """
    name, path = telemetry_file(source)
    if not path.is_file():
        raise ValueError(f"model {name!r} has no training telemetry (expected {path})")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append((int(row["step"]), row))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"telemetry {path} line {lineno} is not a telemetry row: {e}") from None
    if not rows:
        raise ValueError(f"model {name!r} has no training telemetry ({path} is empty)")
    rows = [r for _, r in sorted(rows, key=lambda x: x[0])]
    try:
        return Dynamics(
            name=name,
            steps=[int(r["step"]) for r in rows],
            examples=[int(r.get("examples", 0)) for r in rows],
            loss=[float(r["loss"]) for r in rows],
            pos_loss=torch.tensor([r["pos_loss"] for r in rows], dtype=torch.float32),
            grad_norm=torch.tensor([r["grad_norm"] for r in rows], dtype=torch.float32),
            digit_acc=torch.tensor([r["digit_acc"] for r in rows], dtype=torch.float32),
            exact_match=[float(r["exact_match"]) for r in rows],
            cot_remaining=[int(r.get("cot_remaining") or 0) for r in rows],
            threshold=threshold,
        )
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"telemetry {path} is missing or has ragged per-position fields: {e}") from None


def dynamics(sources: list[str | Path], threshold: float = 0.9) -> list[Dynamics]:
    """The module's entry point: telemetry of several models, e.g. ``["sft-4x4", "aux-4x4"]``."""
    return [load_telemetry(s, threshold) for s in sources]


__all__ = ["Dynamics", "CHANCE_LOSS", "learned_steps", "telemetry_file", "load_telemetry", "dynamics"]
