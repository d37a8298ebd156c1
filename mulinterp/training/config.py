"""Training recipes: one dataclass, loadable from a JSON file kept in ``recipes/``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mulinterp.models import get_preset
from mulinterp.task import MulTask

REGIMES = ("sft", "icot", "aux")


@dataclass
class TrainConfig:
    regime: str = "sft"
    digits: str = "4x4"
    preset: str = "cpu"
    steps: int = 1000
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100  # linear warm-up steps
    schedule: str = "cosine"  # "cosine" (to min_lr_frac · lr) or "constant" after warm-up
    min_lr_frac: float = 0.1
    # cool-down branch of an open-ended (constant) run: from step ``cooldown_from`` the lr falls
    # linearly to min_lr_frac · lr over ``cooldown_steps`` steps, then stays there
    cooldown_from: int | None = None
    cooldown_steps: int = 0
    grad_clip: float = 1.0
    seed: int = 0
    # ICoT (Deng et al. stepwise internalisation)
    remove_per_epoch: float = 8.0  # CoT tokens removed per epoch-equivalent of examples
    epoch_size: int = 808_000  # examples per "epoch" (Deng's 4×4 training set size)
    # the schedule's anchor: from_tokens removed at from_examples, remove_per_epoch from there on
    # (a fork that slows the last removals sets it to its own state; see data.scheduled_removal)
    removal_from_examples: int = 0
    removal_from_tokens: int = 0
    # gated removal: the next token also waits until the answers at the current stage are
    # right on this share of the monitor problems (Trainer.maybe_open_gate); None: on schedule
    removal_gate: float | None = None
    # the last N CoT tokens go on the schedule's wait alone, without the gate. With learned
    # absolute positions every removal moves the answers, and the digit that walls a stage (c4
    # at 3, 2 and 1 tokens left) is learned again from chance at each stage; the last token (the
    # top digit of a·b_{n-1}) carries nothing c4 needs, so that stage's wall is the plain
    # layout's wall learned at positions the model then leaves (campaign.md, session 17)
    ungated_last: int = 0
    # per-stage cool-down of a gated run: once a stage has been trained ``gate_cooldown_after``
    # steps (counted from its token's removal) without the gate opening, the lr falls linearly
    # to min_lr_frac · lr over ``gate_cooldown_steps``, then jumps back and falls again (a
    # sawtooth, so a stage still being learned is not frozen); the next removal restores it
    # (TrainConfig.stage_lr_factor, Trainer.current_lr; docs/training-runs/campaign.md, session 4). None: off
    gate_cooldown_after: int | None = None
    gate_cooldown_steps: int = 1000
    # full-rate steps between two falls of the per-stage cool-down (0: back to back); session
    # 15: a stage still being learned keeps most of its steps at the full rate
    gate_cooldown_rest: int = 0
    # keep that sawtooth after the last CoT token is gone (the plain layout is the last stage)
    # and read val (eval_n problems) on the last telemetry row of every fall, where
    # stop_at_exact is then checked: the run stops on low-lr weights instead of waiting for a
    # full-rate read to clear the target (session 16; Trainer.current_lr, Trainer._one_step)
    plain_cooldown: bool = False
    removal_smoothing: float = 4.0  # λ of P(k) ∝ exp(−λk); math.inf disables the offset
    reset_optimizer: bool = True  # reset AdamW state when the scheduled removal grows
    # aux loss: λ · MSE of linear probes on blocks.{aux_layer}.attn.hook_z → normalised ĉ_k
    aux_weight: float = 1.0
    # the normalisation: None divides (ĉ_k − mean_k) by each position's std (every position weighs
    # the same); a number s divides every position by s, so the loss weighs the same error in ĉ
    # units the same everywhere (s = 1: MSE in ĉ units; docs/training-runs/campaign.md, session 6)
    aux_scale: float | None = None
    aux_layer: int = 1
    aux_heads: tuple[int, ...] | None = None  # None = all heads
    # share of each batch replaced by n×1 problems (one operand d·10^j; data.nx1_operands)
    nx1_share: float = 0.0
    # share replaced by n×2 problems (one operand with two non-zero digits; data.nx2_operands):
    # the step between one pair and the full sum, for a digit that needs three pairs and a carry
    # (c4 of 4×4; campaign.md, session 18)
    nx2_share: float = 0.0
    # bookkeeping
    eval_every: int = 500
    eval_n: int = 1000
    telemetry_every: int = 100
    checkpoint_every: int = 500
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on CPU too. Off by default: 1.5–1.9× faster on CPUs with AVX512-BF16/AMX
    # (measured: docs/benchmarks.md), about 10× slower where emulated, so the trainer honours it
    # only on a CPU with native bf16 and trains in fp32 elsewhere (training/precision.py).
    cpu_bf16: bool = False
    compile: bool = False
    # stop (checkpointed) once the periodic validation (eval_n problems) reaches this exact match
    stop_at_exact: float | None = None
    # warm start: initial weights from this checkpoint (same task and width), fresh optimizer
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"unknown regime {self.regime!r}; choose one of {', '.join(REGIMES)}")
        MulTask.parse(self.digits)  # validates digits
        get_preset(self.preset)
        if self.aux_heads is not None:
            self.aux_heads = tuple(int(h) for h in self.aux_heads)
        for name in ("steps", "batch", "eval_every", "telemetry_every", "checkpoint_every", "eval_n"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        if self.cooldown_from is not None and (self.cooldown_from < 0 or self.cooldown_steps <= 0):
            raise ValueError("a cool-down needs cooldown_from ≥ 0 and cooldown_steps > 0")
        if self.removal_from_examples < 0 or self.removal_from_tokens < 0:
            raise ValueError("removal_from_examples and removal_from_tokens must be ≥ 0")
        if self.removal_gate is not None and not 0 < self.removal_gate <= 1:
            raise ValueError(f"removal_gate must be in (0, 1], got {self.removal_gate}")
        if self.ungated_last < 0:
            raise ValueError(f"ungated_last must be ≥ 0, got {self.ungated_last}")
        if self.ungated_last and self.removal_gate is None:
            raise ValueError("ungated_last needs removal_gate (it exempts the last tokens from the gate)")
        if self.gate_cooldown_after is not None:
            if self.removal_gate is None:
                raise ValueError("gate_cooldown_after needs removal_gate (it cools a stage the gate holds)")
            if self.gate_cooldown_after < 0 or self.gate_cooldown_steps <= 0:
                raise ValueError("a per-stage cool-down needs gate_cooldown_after ≥ 0 and gate_cooldown_steps > 0")
        if self.plain_cooldown and self.gate_cooldown_after is None:
            raise ValueError("plain_cooldown needs gate_cooldown_after (it continues the per-stage cool-down)")
        if self.gate_cooldown_rest < 0:
            raise ValueError(f"gate_cooldown_rest must be ≥ 0, got {self.gate_cooldown_rest}")
        if self.aux_scale is not None and not self.aux_scale > 0:
            raise ValueError(f"aux_scale must be positive (or None: per-position std), got {self.aux_scale}")
        if not 0 <= self.nx1_share < 1:
            raise ValueError(f"nx1_share must be in [0, 1), got {self.nx1_share}")
        if not 0 <= self.nx2_share < 1 - self.nx1_share:
            raise ValueError(f"nx2_share must be ≥ 0 and leave full problems beside nx1_share, got {self.nx2_share}")
        if self.stop_at_exact is not None and not 0 < self.stop_at_exact <= 1:
            raise ValueError(f"stop_at_exact must be in (0, 1], got {self.stop_at_exact}")

    @property
    def task(self) -> MulTask:
        return MulTask.parse(self.digits)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if math.isinf(d["removal_smoothing"]):
            d["removal_smoothing"] = "inf"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown recipe keys: {', '.join(unknown)}")
        d = dict(d)
        if d.get("removal_smoothing") in ("inf", "Infinity"):
            d["removal_smoothing"] = math.inf
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except OSError as e:
            raise ValueError(f"cannot read recipe {path}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"recipe {path} is not valid JSON: {e}") from None

    def lr_at(self, step: int) -> float:
        """Warm-up, then cosine or constant; a cool-down branch, if set, overrides from its start."""
        if self.cooldown_from is not None and step >= self.cooldown_from:
            start = self._base_lr(self.cooldown_from)
            frac = min(1.0, (step - self.cooldown_from) / self.cooldown_steps)
            return start + (self.min_lr_frac * self.lr - start) * frac
        return self._base_lr(step)

    def stage_lr_factor(self, steps_at_stage: int) -> float:
        """The per-stage cool-down's lr multiplier after ``steps_at_stage`` steps at a gated
        stage: 1 until ``gate_cooldown_after``, then linearly down to ``min_lr_frac`` over
        ``gate_cooldown_steps``, then back to 1 for ``gate_cooldown_rest`` steps and down
        again, cycle after cycle (1 when the cool-down is off).

        Why a sawtooth and not one ramp to a floor: the lift a lower lr gives near the gate
        comes within a few hundred steps of the fall, and a stage it does not lift far enough
        needs the full rate to learn more. One ramp left icot-4x4-d64-gcd at a hard stage at
        lr 3e-6 for good (session 4: stage 31 at 77 %, where the constant-3e-4 arm also stood
        at the same number of steps into the stage). Why a rest between falls: a 600-step fall
        from 1e-3 lifted icot-4x4-w128f-nx1's stage (8 CoT left) from 79 % to 96 % within 400
        steps (session 15), while its stages took 1 400–8 200 steps at the full rate to come
        within reach of the gate; back-to-back falls would halve the rate of a stage that
        still has that much to learn."""
        if self.gate_cooldown_after is None or steps_at_stage <= self.gate_cooldown_after:
            return 1.0
        into = (steps_at_stage - self.gate_cooldown_after - 1) % (
            self.gate_cooldown_steps + self.gate_cooldown_rest
        ) + 1
        if into > self.gate_cooldown_steps:
            return 1.0  # resting at the full rate
        return 1.0 - into / self.gate_cooldown_steps * (1.0 - self.min_lr_frac)

    def ends_fall(self, steps_at_stage: int, every: int) -> bool:
        """Whether a step taken after ``steps_at_stage`` steps at a stage is the last of a
        per-stage fall on a grid of ``every`` steps: the step ``every`` later runs at a higher
        lr factor (the rest, or the next fall's start) than this one, which runs below 1."""
        now = self.stage_lr_factor(steps_at_stage)
        return now < 1.0 and self.stage_lr_factor(steps_at_stage + every) > now

    def _base_lr(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.schedule == "constant":
            return self.lr
        frac = (step - self.warmup) / max(1, self.steps - self.warmup)
        cos = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return self.lr * (self.min_lr_frac + (1 - self.min_lr_frac) * cos)
