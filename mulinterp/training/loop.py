"""The training loop shared by the three regimes (sft, icot, aux).

One loop; the regime decides the layout of the batch (plain or CoT with removal), which
positions carry loss, and whether the running-sum probe adds its MSE.

Resumability: every ``checkpoint_every`` steps the loop writes the model checkpoint ``OUT``
(e.g. ``model.safetensors``) and the resume file ``OUT.resume`` (``model.safetensors.resume``,
safetensors) holding weights, optimizer moments, the data generator's RNG state and the
counters; every ``telemetry_every`` steps it appends a row to ``model.telemetry.jsonl``. The
companion names come from :func:`mulinterp.models.resume_path` and
:func:`mulinterp.models.telemetry_path`, the one place they are spelled. ``resume=True``
continues bit-for-bit on CPU: "N steps straight" and "N/2 steps, stop, resume, N/2 steps"
give identical weights (tested).

Moving a run between devices (CPU ↔ CUDA) keeps weights, AdamW moments and counters; only the
data generator's state cannot cross (CPU and CUDA generators keep different states), so it is
re-seeded from (seed, step) and the step is recorded in the counters (``rng_reseeded``).
Wall time is kept per device (``wall_by_device``) so a run's cost adds up across machines.

SIGTERM (and SIGINT) make the loop stop after the current step with its state saved, so a
campaign can stop a run at any time without losing work.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor
from tqdm.auto import tqdm

from mulinterp.arithmetic import ground_truth
from mulinterp.evaluation import evaluate
from mulinterp.io import atomic_write_bytes, check_writable
from mulinterp.models import MulModel, build_model, get_preset, resume_path, safetensors_metadata, save, telemetry_path
from mulinterp.task import MulTask
from mulinterp.training.aux import RunningSumProbe
from mulinterp.training.config import TrainConfig
from mulinterp.training.data import make_batch, remove_cot, scheduled_removal
from mulinterp.training.precision import cpu_flags, resolve_cpu_bf16


def answer_scores(
    logits: Float[Tensor, "batch n_c d_vocab"], truth: Int[Tensor, "batch n_c"]
) -> tuple[Float[Tensor, " n_c"], Float[Tensor, ""], Float[Tensor, " n_c"]]:
    """Teacher-forced answer logits scored against the true digits: accuracy per digit, exact
    match (every digit right) and cross-entropy per digit (nats; ln 10 = 2.303 is chance)."""
    logits = logits.float()
    ok = logits.argmax(-1) == truth
    loss = -logits.log_softmax(-1).gather(-1, truth[..., None])[..., 0].mean(0)
    return ok.float().mean(0), ok.all(1).float().mean(), loss


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA GPU is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


class Trainer:
    """Holds the model, optimizer, probe and counters of one training run."""

    def __init__(self, cfg: TrainConfig, out: str | Path):
        self.cfg, self.out = cfg, Path(out)
        self.task: MulTask = cfg.task
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(os.cpu_count() or 1)
        self.cpu_bf16, note = resolve_cpu_bf16(cfg.cpu_bf16, cpu_flags())
        if note and self.device.type == "cpu":
            print(note, file=sys.stderr)
        self.spec = get_preset(cfg.preset)
        self.model = build_model(self.task, self.spec, seed=cfg.seed, device=self.device)
        self.net = self.model.original_model  # the plain nn.Module the bridge wraps (same tensors)
        self.probe: RunningSumProbe | None = None
        self._z: torch.Tensor | None = None
        self._hooked = False
        if cfg.regime == "aux":
            if not 0 <= cfg.aux_layer < self.spec.n_layers:
                raise ValueError(f"aux_layer {cfg.aux_layer} out of range 0–{self.spec.n_layers - 1} (0-based)")
            heads = list(cfg.aux_heads) if cfg.aux_heads is not None else list(range(self.spec.n_heads))
            bad = [h for h in heads if not 0 <= h < self.spec.n_heads]
            if bad:
                raise ValueError(f"aux_heads {bad} out of range 0–{self.spec.n_heads - 1} (0-based)")
            self.probe = RunningSumProbe(self.task, heads, self.spec.d_head, cfg.aux_layer, scale=cfg.aux_scale)
            self.probe = self.probe.to(self.device)
        self.params = list(self.net.parameters()) + (list(self.probe.parameters()) if self.probe else [])
        self.opt = self._new_optimizer()
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.step = 0
        self.examples = 0
        self.last_removed = 0
        # gated removal (cfg.removal_gate): tokens removed so far and the examples seen when the
        # last one went; None until first used, so a fork of a scheduled run starts from its state
        self.gate_removed: int | None = None
        self.gate_since = 0
        self.wall = 0.0
        self.wall_by_device: dict[str, float] = {}
        self.rng_reseeded: list[int] = []
        self.warm_start: dict[str, Any] | None = None
        self.metrics: dict[str, Any] = {}
        self._stop_requested = False
        self.forward = self.net
        if cfg.compile and self.device.type == "cuda":
            self.forward = torch.compile(self.net, dynamic=True)
        g = torch.Generator(device=self.device)
        g.manual_seed(10_000 + cfg.seed)
        self.probe_a, self.probe_b = self.task.sample(64, "val", generator=g)
        self.mon_a, self.mon_b = self.task.sample(512, "val", generator=g)

    # ----- pieces -----------------------------------------------------------------------
    def _grab_z(self, module, args):
        self._z = args[0]

    @contextmanager
    def _probe_hook(self) -> Iterator[None]:
        """While training an aux run: keep the probe layer's hook_z (the input of its output
        projection) for the probe loss. Removed on exit, even on error, so the model a run
        returns carries no hook (nor a reference to the trainer)."""
        if self.probe is None or self._hooked:  # re-entrant: telemetry inside the loop's hook
            yield
            return
        handle = self.net.layers[self.cfg.aux_layer].attn.o.register_forward_pre_hook(self._grab_z)
        self._hooked = True
        try:
            yield
        finally:
            handle.remove()
            self._hooked = False
            self._z = None

    def _new_optimizer(self) -> torch.optim.Optimizer:
        kw: dict[str, Any] = {"fused": True} if self.device.type == "cuda" else {}
        return torch.optim.AdamW(
            self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, betas=(0.9, 0.98), **kw
        )

    def _autocast(self):
        enabled = self.cfg.amp if self.device.type == "cuda" else self.cpu_bf16
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def removed_now(self) -> int:
        if self.cfg.regime != "icot":
            return 0
        cfg = self.cfg
        if cfg.removal_gate is not None:
            if self.gate_removed is None:
                self.gate_removed, self.gate_since = self.last_removed, self.examples
            return self.gate_removed
        return scheduled_removal(
            self.examples,
            cfg.remove_per_epoch,
            cfg.epoch_size,
            self.task.cot_len,
            cfg.removal_from_examples,
            cfg.removal_from_tokens,
        )

    def answer_z(self, start: torch.Tensor) -> torch.Tensor:
        """hook_z at the answer positions: [batch, n_c, n_heads, d_head]."""
        assert self._z is not None
        idx = start[:, None] + torch.arange(self.task.n_c, device=self.device)
        z = torch.gather(self._z, 1, idx[:, :, None].expand(-1, -1, self._z.shape[-1]))
        return z.view(z.shape[0], self.task.n_c, self.spec.n_heads, self.spec.d_head)

    def losses(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        with self._autocast():
            logits = self.forward(batch.tokens[:, :-1])
        mask = batch.loss_mask[:, :-1]
        ce = F.cross_entropy(logits.float()[mask], batch.tokens[:, 1:][mask])
        aux = None
        if self.probe is not None:
            c_hat = ground_truth(batch.a, batch.b, self.task.n_a, self.task.n_b).c_hat
            pred = self.probe(self.answer_z(batch.answer_start).float())
            aux = F.mse_loss(pred, self.probe.normalise(c_hat))
        return ce, aux

    # ----- telemetry --------------------------------------------------------------------
    def per_position(self) -> tuple[list[float], list[float]]:
        """Per-answer-position loss and gradient norm ‖∂loss_k/∂θ‖ on a fixed val batch."""
        tokens = self.task.encode(self.probe_a, self.probe_b, "plain")
        pos = self.task.answer_positions("plain").to(self.device)
        with self._autocast():
            logits = self.net(tokens[:, :-1])
        lp = (
            F.cross_entropy(logits.float()[:, pos].flatten(0, 1), tokens[:, pos + 1].flatten(), reduction="none")
            .view(len(tokens), -1)
            .mean(0)
        )
        norms = []
        params = list(self.net.parameters())
        for k in range(self.task.n_c):
            grads = torch.autograd.grad(lp[k], params, retain_graph=k < self.task.n_c - 1, allow_unused=True)
            norms.append(float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))))
        return [round(float(x), 5) for x in lp.detach()], [round(x, 6) for x in norms]

    def aux_rmse(self) -> list[float]:
        """The training probe's error per answer position, in units of ĉ_k (RMSE on the monitor
        problems, plain layout). The aux loss is a standardised MSE averaged over positions, so a
        small total can hide one position the probe cannot read: this shows which (at 4×4, ĉ_3
        has σ ≈ 43, so a standardised MSE of 0.005 is still ±3 in ĉ units; with ``aux_scale``
        the loss itself is in ĉ units)."""
        assert self.probe is not None
        a, b = self.mon_a, self.mon_b
        tokens = self.task.encode(a, b, "plain")[:, :-1]
        start = torch.full((len(a),), self.task.answer_start("plain"), device=self.device)
        self.net.eval()
        with torch.no_grad(), self._probe_hook(), self._autocast():
            self.net(tokens)
            pred = self.probe(self.answer_z(start).float())
        self.net.train()
        c_hat = ground_truth(a, b, self.task.n_a, self.task.n_b).c_hat
        return [round(float(x), 3) for x in self.probe.rmse(pred, c_hat)]

    def monitor(self, n: int | None = None):
        self.net.eval()
        a, b = (self.mon_a, self.mon_b) if n is None else self.task.sample(n, "val", seed=4321, device=self.device)

        def fwd(x):
            with self._autocast():
                return self.net(x)

        res = evaluate(fwd, self.task, a, b, source="val split")
        self.net.train()
        return res

    def current_lr(self) -> float:
        """The lr of the next step: the recipe's schedule, times the per-stage cool-down's
        factor while a gated ICoT stage waits (``gate_cooldown_after``), and after the last
        removal too where ``plain_cooldown`` is on."""
        cfg = self.cfg
        lr = cfg.lr_at(self.step)
        if self.gate_removed is not None and (self.gate_removed < self.task.cot_len or cfg.plain_cooldown):
            lr *= cfg.stage_lr_factor(self.steps_at_stage())
        return lr

    def steps_at_stage(self) -> int:
        """Steps taken since the gate last opened (a gated ICoT run)."""
        return (self.examples - self.gate_since) // self.cfg.batch

    def fall_ended(self) -> bool:
        """``plain_cooldown``: whether the step just taken, in the plain layout after the last
        removal, was the last of a fall on the telemetry grid (where val is read)."""
        cfg = self.cfg
        if not cfg.plain_cooldown or self.gate_removed is None or self.gate_removed < self.task.cot_len:
            return False
        return cfg.ends_fall(self.steps_at_stage() - 1, cfg.telemetry_every)

    def maybe_open_gate(self, stage_exact: float) -> None:
        """Gated removal: the next CoT token goes once ``epoch_size / remove_per_epoch`` examples
        have passed since the last one *and* the answers at the current stage are right on at
        least ``removal_gate`` of the monitor problems. Deng's schedule removes on time whether
        or not the model has recovered from the previous removal; at small width the stage
        accuracy dips after each removal and a stage removed before it recovers is not
        internalised (docs/training-runs/campaign.md, session 3). The last ``ungated_last``
        tokens wait for the time alone."""
        cfg = self.cfg
        if cfg.removal_gate is None or self.gate_removed is None or self.gate_removed >= self.task.cot_len:
            return
        waited = self.examples - self.gate_since >= cfg.epoch_size / cfg.remove_per_epoch
        ungated = self.task.cot_len - self.gate_removed <= cfg.ungated_last
        if waited and (ungated or stage_exact >= cfg.removal_gate):
            self.gate_removed += 1
            self.gate_since = self.examples

    def stage_metrics(self, removed: int) -> dict[str, list[float] | float]:
        """Answers of an ICoT run *at its removal stage*: the monitor problems in the CoT layout
        with ``removed`` tokens gone (no random offset), answer digits teacher-forced.

        While CoT tokens remain, the plain-layout monitor says nothing about internalisation
        (the model has not seen that layout yet); this does: a stage whose middle digits fall to
        chance is where internalisation broke. Returns the telemetry keys ``stage_digit_acc``
        (per digit), ``stage_exact`` (every digit right: teacher forcing and greedy decoding
        agree) and ``stage_digit_loss`` (per-digit cross-entropy, nats). The loss is there for
        walls: a digit at chance reads ln 10 = 2.303, and the first sign of its being learned
        has been a loss a little under that while the accuracy still reads chance
        (campaign.md, session 6).
        """
        a, b = self.mon_a, self.mon_b
        with self._autocast():
            logits = self.stage_logits(a, b, removed)
        acc, exact, loss = answer_scores(logits, self.task.true_answer(a, b))
        return {
            "stage_digit_acc": [round(float(x), 4) for x in acc],
            "stage_exact": round(float(exact), 4),
            "stage_digit_loss": [round(float(x), 4) for x in loss],
        }

    def stage_logits(
        self, a: torch.Tensor, b: torch.Tensor, removed: int, chunk: int = 512
    ) -> Float[Tensor, "batch n_c d_vocab"]:
        """Logits at the answer positions of problems (a, b) in the CoT layout with ``removed``
        tokens gone (no random offset), answer digits teacher-forced; ``chunk`` problems per
        forward pass, in eval mode (restored to train mode after)."""
        tokens, idx = self.stage_tokens(a, b, removed)
        self.net.eval()
        try:
            with torch.no_grad():
                logits = torch.cat([self.net(part).float() for part in tokens.split(chunk)])
        finally:
            self.net.train()
        return torch.gather(logits, 1, idx[:, :, None].expand(-1, -1, logits.shape[-1]))

    def stage_tokens(
        self, a: torch.Tensor, b: torch.Tensor, removed: int
    ) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch n_c"]]:
        """Problems (a, b) in the CoT layout with ``removed`` tokens gone (no random offset), and
        for each the positions whose next-token prediction is c_0 … c_{n_c−1}."""
        tokens, start = remove_cot(self.task.encode(a, b, "cot"), self.task, torch.full_like(a, removed))
        return tokens, start[:, None] + torch.arange(self.task.n_c, device=start.device)

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"

    def write_telemetry(self, row: dict[str, Any]) -> None:
        with telemetry_path(self.out).open("a") as f:
            f.write(json.dumps(row) + "\n")

    # ----- checkpoints ------------------------------------------------------------------
    def mul_model(self) -> MulModel:
        removed = self.removed_now()
        meta = {
            "regime": self.cfg.regime,
            "preset": self.cfg.preset,
            "steps": self.step,
            "batch": self.cfg.batch,
            "examples": self.examples,
            "seed": self.cfg.seed,
            "recipe": self.cfg.to_dict(),
            "metrics": self.metrics,
            "cot_remaining": self.task.cot_len - removed if self.cfg.regime == "icot" else 0,
            "training_cost": {
                "device": self.device_name,
                "threads": torch.get_num_threads(),
                "wall_seconds": round(self.wall, 1),
                "wall_by_device": {k: round(v, 1) for k, v in self.wall_by_device.items()},
                "steps": self.step,
                "batch": self.cfg.batch,
            },
        }
        if self.warm_start:
            meta["warm_start"] = self.warm_start
        extras = self.probe.extras() if self.probe else {}
        return MulModel(self.model, self.task, self.spec, meta, extras)

    def save_checkpoint(self) -> None:
        save(self.mul_model(), self.out)
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.probe:
            tensors.update({f"probe.{k}": v.detach().cpu().contiguous() for k, v in self.probe.state_dict().items()})
        opt_state = self.opt.state_dict()
        for i, st in opt_state["state"].items():
            for key, val in st.items():
                tensors[f"opt.{i}.{key}"] = val.detach().cpu().contiguous()
        tensors["rng"] = self.gen.get_state().cpu()
        meta = {
            "config": json.dumps(self.cfg.to_dict()),
            "counters": json.dumps(
                {
                    "step": self.step,
                    "examples": self.examples,
                    "last_removed": self.last_removed,
                    "gate_removed": self.gate_removed,
                    "gate_since": self.gate_since,
                    "wall": self.wall,
                    "wall_by_device": self.wall_by_device,
                    "rng_reseeded": self.rng_reseeded,
                    "warm_start": self.warm_start,
                    "metrics": self.metrics,
                }
            ),
            "param_groups": json.dumps(opt_state["param_groups"]),
        }
        atomic_write_bytes(resume_path(self.out), st_save(tensors, metadata=meta))

    def load_resume(self) -> None:
        path = resume_path(self.out)
        if not path.is_file():
            raise ValueError(f"cannot resume: no resume file {path}")
        data = path.read_bytes()
        try:
            tensors = st_load(data)
        except Exception as e:  # noqa: BLE001 - any decode failure means a damaged file
            raise ValueError(f"resume file {path} is damaged: {e}") from None
        meta = safetensors_metadata(path, data, "resume file")
        saved = TrainConfig.from_dict(json.loads(meta["config"]))
        for key in ("regime", "digits", "preset"):
            if getattr(saved, key) != getattr(self.cfg, key):
                raise ValueError(
                    f"resume file {path} is from a run with {key}={getattr(saved, key)!r}, this run has {getattr(self.cfg, key)!r}"
                )
        self.model.load_state_dict({k[6:]: v.to(self.device) for k, v in tensors.items() if k.startswith("model.")})
        if self.probe:  # in this run's normalisation, which a fork may have changed (aux_scale)
            self.probe.adopt_from(tensors, "probe.")
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, key = k.split(".", 2)
                state.setdefault(int(i), {})[key] = v if key == "step" else v.to(self.device)
        groups = json.loads(meta["param_groups"])
        for g in groups:  # fused AdamW exists on CUDA only; the flag must follow the device
            if "fused" in g:
                g["fused"] = True if self.device.type == "cuda" else None
        self.opt.load_state_dict({"state": state, "param_groups": groups})
        c = json.loads(meta["counters"])
        self.step, self.examples, self.last_removed, self.wall = c["step"], c["examples"], c["last_removed"], c["wall"]
        self.wall_by_device = c.get("wall_by_device") or {"cpu": self.wall}  # older files: CPU runs only
        self.gate_removed, self.gate_since = c.get("gate_removed"), c.get("gate_since", 0)
        self.rng_reseeded = list(c.get("rng_reseeded", []))
        self.warm_start = c.get("warm_start")
        self.metrics = c.get("metrics", {})
        try:
            self.gen.set_state(tensors["rng"])
        except RuntimeError:  # the state of a generator on another device type (CPU ↔ CUDA)
            self.gen.manual_seed(self.cfg.seed * 1_000_003 + self.step)
            self.rng_reseeded.append(self.step)
        tel = telemetry_path(self.out)
        if tel.is_file():  # drop rows written after the checkpoint we resume from
            rows = [ln for ln in tel.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
            tel.write_text("".join(r + "\n" for r in rows))

    def warm_start_from(self, path: str | Path) -> None:
        """Initial weights (and the aux probe, if both have one) from a checkpoint; fresh optimizer."""
        from mulinterp.models import load, sha256

        src = load(path, device=self.device)
        if src.task != self.task:
            raise ValueError(
                f"cannot warm-start from {path}: it is a {src.task.name} model, this run is {self.task.name}"
            )
        if src.spec != self.spec:
            raise ValueError(
                f"cannot warm-start from {path}: its width {src.spec} differs from preset {self.cfg.preset!r}"
            )
        self.model.load_state_dict(src.model.state_dict())
        if self.probe is not None and "aux.weight" in src.extras:
            if src.extras["aux.weight"].shape == self.probe.weight.shape:
                self.probe.adopt_from(src.extras, "aux.")
        self.opt = self._new_optimizer()
        self.warm_start = {
            "from": str(path),
            "sha256": sha256(Path(path)),
            "its_steps": src.meta.get("steps"),
            "its_examples": src.meta.get("examples"),
            "its_regime": src.meta.get("regime"),
        }

    def request_stop(self, *_: Any) -> None:
        """Finish the current step, save, and return (installed for SIGTERM/SIGINT by :meth:`run`).

        A second request while the first is pending aborts at once (``KeyboardInterrupt``).
        """
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True

    # ----- the loop ---------------------------------------------------------------------
    def run(self, stop_after: int | None = None, time_budget: float | None = None, progress: bool = True) -> MulModel:
        """Train until ``cfg.steps`` (or ``stop_after`` more steps / ``time_budget`` seconds)."""
        cfg = self.cfg
        self.net.train()
        start_step, t0 = self.step, time.time()
        wall0 = self.wall
        dev_wall0 = self.wall_by_device.get(self.device_name, 0.0)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress, desc=f"{cfg.regime} {self.task.name}")
        stopped_early = False
        previous = self._install_stop_handlers()
        try:
            with self._probe_hook():
                while self.step < cfg.steps:
                    if (
                        (stop_after is not None and self.step - start_step >= stop_after)
                        or (time_budget is not None and time.time() - t0 >= time_budget)
                        or self._stop_requested
                        or self._reached_target()
                    ):
                        stopped_early = True
                        break
                    postfix = self._one_step(t0, wall0, dev_wall0)
                    if postfix:
                        bar.set_postfix(**postfix)
                    bar.update(1)
        finally:
            self._restore_stop_handlers(previous)
            bar.close()
        if not stopped_early or stop_after is None:  # a finished or timed-out run gets its final eval
            self.metrics["val"] = self.monitor(cfg.eval_n).to_dict()
        self.save_checkpoint()
        self.net.eval()
        return self.mul_model()

    def _reached_target(self) -> bool:
        target = self.cfg.stop_at_exact
        val = self.metrics.get("val")
        return target is not None and val is not None and val.get("exact_match", 0.0) >= target

    def _install_stop_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def _restore_stop_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _one_step(self, t0: float, wall0: float, dev_wall0: float) -> dict[str, Any] | None:
        """One optimizer step plus its telemetry/eval/checkpoint duties; a progress postfix or None."""
        cfg = self.cfg
        postfix = None
        removed = self.removed_now()
        if cfg.regime == "icot" and removed > self.last_removed:
            if cfg.reset_optimizer:
                self.opt.state.clear()
            self.last_removed = removed
        batch = make_batch(
            self.task, cfg.batch, self.gen, cfg.regime, removed, cfg.removal_smoothing, cfg.nx1_share, cfg.nx2_share
        )
        lr = self.current_lr()
        for g in self.opt.param_groups:
            g["lr"] = lr
        ce, aux = self.losses(batch)
        loss = ce + cfg.aux_weight * aux if aux is not None else ce
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        self.step += 1
        self.examples += cfg.batch
        self.wall = wall0 + time.time() - t0
        self.wall_by_device[self.device_name] = dev_wall0 + time.time() - t0
        if self.step % cfg.telemetry_every == 0 or self.step == cfg.steps:
            pos_loss, grad_norm = self.per_position()
            res = self.monitor()
            row = {
                "step": self.step,
                "examples": self.examples,
                "wall": round(self.wall, 1),
                "lr": lr,
                "loss": round(ce.item(), 5),
                "aux_loss": None if aux is None else round(aux.item(), 5),
                "cot_removed": removed,
                "cot_remaining": self.task.cot_len - removed if cfg.regime == "icot" else 0,
                "pos_loss": pos_loss,
                "grad_norm": grad_norm,
                "digit_acc": res.per_digit,
                "exact_match": res.exact_match,
            }
            if self.probe is not None:
                row["aux_rmse"] = self.aux_rmse()
            if cfg.regime == "icot" and removed < self.task.cot_len:
                row.update(self.stage_metrics(removed))
                self.maybe_open_gate(row["stage_exact"])
            elif self.fall_ended():  # the lr is at its lowest: read val here, where stop_at_exact looks
                val = self.monitor(cfg.eval_n)
                self.metrics["val"] = val.to_dict()
                row.update(val_exact_match=val.exact_match, val_digit_acc=val.per_digit)
            self.write_telemetry(row)
            postfix = {"loss": f"{ce.item():.3f}", "exact": f"{res.exact_match:.3f}", "cot_left": row["cot_remaining"]}
        if self.step % cfg.eval_every == 0:
            self.metrics["val"] = self.monitor(cfg.eval_n).to_dict()
        if self.step % cfg.checkpoint_every == 0:
            self.save_checkpoint()
        return postfix


def train(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    stop_after: int | None = None,
    time_budget: float | None = None,
    progress: bool = True,
) -> MulModel:
    """Train one model; see :class:`Trainer`. Returns the trained :class:`MulModel`."""
    out = Path(out)
    check_writable(out)
    trainer = Trainer(cfg, out)
    if resume:
        trainer.load_resume()
    else:
        if cfg.init_from:
            trainer.warm_start_from(cfg.init_from)
        telemetry_path(out).unlink(missing_ok=True)
    return trainer.run(stop_after=stop_after, time_budget=time_budget, progress=progress)
