"""A training campaign: resumable runs whose whole state lives in a tracked folder.

The reference models need more wall time than one session has, so training is a *campaign*:
each run is a folder under ``runs/`` that any session (or a GPU call) can continue and then
commit. A run folder holds::

    runs/NAME/recipe.json              TrainConfig keys (works with `mulinterp train --config`)
    runs/NAME/model.safetensors        latest checkpoint (a normal mulinterp checkpoint)
    runs/NAME/model.safetensors.resume weights, AdamW moments, RNG, counters
    runs/NAME/model.telemetry.jsonl    per-position loss / grad norm / monitor accuracy
    runs/NAME/status.json              one-line summary, rewritten after every session
    runs/NAME/sessions.jsonl           one row per session: device, steps from → to, wall

and ``runs/campaign.json`` lists the runs in priority order with what each is for::

    {"runs": [{"name": "icot-3x3", "bundle_as": "icot-3x3", "active": true, "note": "..."}, ...]}

:func:`run_campaign` starts the first unfinished active runs, one process (one thread) per
worker, each with a wall-clock budget that ends before the campaign's; a worker whose run
finishes early takes the next one. Each process is an ordinary ``mulinterp train --resume``,
so what a campaign does can always be repeated by hand.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mulinterp.io import atomic_write_bytes
from mulinterp.models import get_preset, header_bytes, resume_path, safetensors_metadata, telemetry_path
from mulinterp.training.config import TrainConfig
from mulinterp.training.precision import cpu_has_native_bf16

CAMPAIGN_FILE = "campaign.json"
CHECKPOINT = "model.safetensors"
# a run is not started with less than this much of the budget left (start-up + one checkpoint)
MIN_SLICE_S = 120.0
# each run's own budget ends this long before the campaign's, so its final save fits
SAVE_MARGIN_S = 45.0


@dataclass
class CampaignRun:
    """One run folder of a campaign."""

    name: str
    folder: Path
    bundle_as: str | None = None
    active: bool = True
    note: str = ""

    @property
    def recipe_path(self) -> Path:
        return self.folder / "recipe.json"

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT

    @property
    def resume_file(self) -> Path:
        return resume_path(self.checkpoint)

    @property
    def telemetry(self) -> Path:
        return telemetry_path(self.checkpoint)

    @property
    def status_path(self) -> Path:
        return self.folder / "status.json"

    @property
    def sessions_path(self) -> Path:
        return self.folder / "sessions.jsonl"

    def recipe(self) -> TrainConfig:
        if not self.recipe_path.is_file():
            raise ValueError(f"run {self.name}: no recipe at {self.recipe_path}")
        return TrainConfig.from_file(self.recipe_path)

    def counters(self) -> dict[str, Any]:
        """Counters saved in the resume file (``{}`` for a run that has not started)."""
        if not self.resume_file.is_file():
            return {}
        meta = safetensors_metadata(self.resume_file, header_bytes(self.resume_file), "resume file")
        return json.loads(meta.get("counters", "{}"))

    def last_telemetry(self, up_to: int | None = None, having: str | None = None) -> dict[str, Any]:
        """The last telemetry row (``up_to``: the last one at or before that step; ``having``:
        the last one with that key, e.g. ``val_exact_match``, the reads of ``plain_cooldown``)."""
        if not self.telemetry.is_file():
            return {}
        last: dict[str, Any] = {}
        with self.telemetry.open() as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    if up_to is not None and row["step"] > up_to:
                        break
                    if having is None or having in row:
                        last = row
        return last

    def last_fall_read(self, up_to: int | None = None) -> dict[str, Any]:
        """The telemetry row of the last val read where an lr fall ended, for a ``plain_cooldown``
        run in its plain phase (``{}`` otherwise): its saved state and newest rows are at full rate,
        where val reads lower and noisier, so this is the read that shows its progress."""
        tel = self.last_telemetry(up_to=up_to)
        if not (tel and not tel.get("cot_remaining") and self.recipe().plain_cooldown):
            return {}
        return self.last_telemetry(up_to=up_to, having="val_exact_match")

    def status(self) -> dict[str, Any]:
        """The run's state from its files: steps, examples, CoT left, val accuracy, cost."""
        cfg = self.recipe()
        c = self.counters()
        step = int(c.get("step", 0))
        tel = self.last_telemetry(up_to=step)  # the row of the saved state, not of a run still going
        val = (c.get("metrics") or {}).get("val") or {}
        fall = self.last_fall_read(up_to=step) if c else {}
        if not c:
            state = "new"
        elif cfg.stop_at_exact is not None and val.get("exact_match", 0.0) >= cfg.stop_at_exact:
            state = "reached target"
        elif step >= cfg.steps:
            state = "out of steps"
        else:
            state = "in progress"
        return {
            "name": self.name,
            "bundle_as": self.bundle_as,
            "active": self.active,
            "state": state,
            "regime": cfg.regime,
            "digits": cfg.digits,
            "d_model": get_preset(cfg.preset).d_model,
            "step": step,
            "steps": cfg.steps,
            "batch": cfg.batch,
            "examples": int(c.get("examples", 0)),
            "cot_left": tel.get("cot_remaining", cfg.task.cot_len if cfg.regime == "icot" else 0),
            "train_loss": tel.get("loss"),
            "val_exact": val.get("exact_match"),
            "val_per_digit": val.get("per_digit"),
            "val_n": val.get("n"),
            # plain_cooldown in its plain phase: val where the last lr fall ended (None otherwise)
            "fall_step": fall.get("step"),
            "fall_exact": fall.get("val_exact_match"),
            "fall_per_digit": fall.get("val_digit_acc"),
            # an ICoT run with CoT left: answers at its removal stage (the plain-layout val says
            # nothing yet), on its monitor problems
            "stage_exact": tel.get("stage_exact"),
            "stage_per_digit": tel.get("stage_digit_acc"),
            "wall_s": round(float(c.get("wall", 0.0)), 1),
            # resume files written before wall_by_device existed come from CPU runs only
            "wall_by_device": {
                k: round(v, 1) for k, v in (c.get("wall_by_device") or ({"cpu": c["wall"]} if c else {})).items()
            },
            "target": cfg.stop_at_exact,
        }

    @property
    def finished(self) -> bool:
        return self.status()["state"] in ("reached target", "out of steps")

    def write_status(self) -> dict[str, Any]:
        st = self.status()
        atomic_write_bytes(self.status_path, (json.dumps(st) + "\n").encode())
        return st


@dataclass
class Campaign:
    root: Path
    runs: list[CampaignRun] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path = "runs") -> Campaign:
        root = Path(root)
        path = root / CAMPAIGN_FILE
        if not path.is_file():
            raise ValueError(f"no campaign at {root}: {path} does not exist")
        try:
            spec = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        runs = []
        for entry in spec.get("runs", []):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise ValueError(f"{path}: every entry of runs needs a name, got {entry!r}")
            runs.append(
                CampaignRun(
                    name, root / name, entry.get("bundle_as"), bool(entry.get("active", True)), entry.get("note", "")
                )
            )
            runs[-1].recipe()  # a missing or broken recipe is one clear error now, not mid-campaign
        return cls(root, runs)

    def get(self, name: str) -> CampaignRun:
        for r in self.runs:
            if r.name == name:
                return r
        raise ValueError(
            f"no run {name!r} in {self.root / CAMPAIGN_FILE}; runs: {', '.join(r.name for r in self.runs)}"
        )

    def select(self, names: list[str] | None = None) -> list[CampaignRun]:
        """Unfinished runs to train, in priority order (``names``: those runs, active or not)."""
        chosen = [self.get(n) for n in names] if names else [r for r in self.runs if r.active]
        return [r for r in chosen if not r.finished]


@dataclass
class RunCurve:
    """A run's telemetry as curves: what `campaign curve` prints and draws.

    ``per_digit`` is the answer accuracy per digit in the layout the run trains on: at the
    removal stage while an ICoT run has CoT left (``stage_exact`` set), the plain layout
    otherwise (``exact``, the monitor). ``aux_rmse``: an aux run's training probe error per
    position in ĉ units (rows written before that telemetry existed: ``None``). ``fall_val``:
    val exact match read where a fall of ``plain_cooldown`` ended. ``None`` where a row has no
    such number.
    """

    name: str
    regime: str
    cot_len: int
    steps: list[int]
    cot_left: list[int]
    exact: list[float | None]
    stage_exact: list[float | None]
    per_digit: list[list[float]]
    aux_rmse: list[list[float] | None]
    fall_val: list[float | None]


def run_curve(run: CampaignRun) -> RunCurve:
    cfg = run.recipe()
    if not run.telemetry.is_file():
        raise ValueError(f"run {run.name} has no telemetry yet ({run.telemetry} missing)")
    rows = [json.loads(line) for line in run.telemetry.read_text().splitlines() if line.strip()]
    return RunCurve(
        name=run.name,
        regime=cfg.regime,
        cot_len=cfg.task.cot_len if cfg.regime == "icot" else 0,
        steps=[r["step"] for r in rows],
        cot_left=[int(r.get("cot_remaining") or 0) for r in rows],
        exact=[r.get("exact_match") for r in rows],
        stage_exact=[r.get("stage_exact") for r in rows],
        per_digit=[r["stage_digit_acc"] if "stage_digit_acc" in r else r.get("digit_acc", []) for r in rows],
        aux_rmse=[r.get("aux_rmse") for r in rows],
        fall_val=[r.get("val_exact_match") for r in rows],
    )


# ---------------------------------------------------------------------------------------
# running


def train_command(run: CampaignRun, budget_s: float, device: str) -> list[str]:
    """The ``mulinterp train`` invocation that continues ``run`` for ``budget_s`` seconds."""
    cmd = [
        sys.executable,
        "-m",
        "mulinterp.cli",
        "train",
        "--config",
        str(run.recipe_path),
        "--out",
        str(run.checkpoint),
        "--time-budget",
        f"{budget_s:.0f}",
        "--device",
        device,
        "--quiet",
    ]
    if run.resume_file.is_file():
        cmd.append("--resume")
    return cmd


def digits_line(per_digit: list[float]) -> str:
    """Per-digit accuracies as ``1.00 .97 .24`` (what the status table and README tables show)."""
    return " ".join("1.00" if x >= 0.995 else f"{x:.2f}".lstrip("0") for x in per_digit)


def device_short(name: str) -> str:
    """``cpu`` → ``CPU``, ``NVIDIA H100 80GB HBM3`` → ``H100``."""
    return "CPU" if name == "cpu" else name.replace("NVIDIA ", "").split(" ")[0]


def progress_line(run: CampaignRun, step0: int, t_start: float) -> str:
    tel = run.last_telemetry()
    step = int(tel.get("step", step0))
    rate = (step - step0) / max(1e-9, time.time() - t_start)
    acc = digits_line(tel.get("digit_acc", []))
    cot = f"cot {tel['cot_remaining']:>2} left  " if tel.get("cot_remaining") else ""
    loss = f"loss {tel['loss']:.3f}  " if tel.get("loss") is not None else ""
    exact = f"monitor exact {100 * tel['exact_match']:5.1f}%  " if "exact_match" in tel else ""
    worst = ""
    if "stage_exact" in tel:  # an ICoT run with CoT left: its answers at the current stage say more
        exact, acc = f"stage exact {100 * tel['stage_exact']:5.1f}%  ", digits_line(tel["stage_digit_acc"])
        if tel.get("stage_digit_loss"):  # the wall's digit: chance reads ln 10 = 2.303
            k = max(range(len(tel["stage_digit_loss"])), key=tel["stage_digit_loss"].__getitem__)
            worst = f"  (worst c{k} CE {tel['stage_digit_loss'][k]:.3f})"
    recipe = run.recipe()
    lr = ""  # named only below the schedule's rate (a row records the lr its last step used)
    if tel.get("lr") is not None and tel["lr"] < 0.999 * recipe.lr_at(step - 1):
        lr = f"lr {tel['lr']:.1e}  "  # a per-stage cool-down is falling
    read = ""  # plain_cooldown, in the plain phase: val as last read where a fall ended
    if fall := run.last_fall_read():
        read = f"  (val {100 * fall['val_exact_match']:.1f}% where the fall ended at step {fall['step']})"
    return f"{run.name:<12} step {step:>7} (+{step - step0}, {rate:.1f}/s)  {cot}{loss}{lr}{exact}digits {acc}{worst}{read}"


def _device_label(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else device
    return "cpu"


def run_campaign(
    root: str | Path = "runs",
    budget_s: float = 3600.0,
    workers: int = 2,
    device: str = "cpu",
    names: list[str] | None = None,
    report_every: float = 300.0,
    out: io.TextIOBase | None = None,  # not typing.TextIO: io.StringIO is no subclass of it at run time
    min_slice_s: float = MIN_SLICE_S,
    save_margin_s: float = SAVE_MARGIN_S,
) -> list[dict[str, Any]]:
    """Continue the campaign's unfinished runs for ``budget_s`` seconds; returns their statuses.

    ``workers`` processes at a time (one CPU thread each); every run stops with its state
    saved before the budget ends. A progress line per run every ``report_every`` seconds.
    A run is not started with less than ``min_slice_s`` left; each run's own budget ends
    ``save_margin_s`` before the campaign's.
    """
    out = out or sys.stdout
    camp = Campaign.load(root)
    queue = camp.select(names)
    if not queue:
        print("nothing to train: every selected run is finished or inactive", file=out)
        return []
    deadline = time.time() + budget_s
    env = dict(os.environ)
    if device == "cpu":
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs: dict[str, tuple[subprocess.Popen, CampaignRun, int, float, TextIO]] = {}
    touched: list[CampaignRun] = []
    last_report = time.time()

    def start(run: CampaignRun) -> None:
        budget = deadline - time.time() - save_margin_s
        log = (run.folder / "last-session.log").open("w")
        proc = subprocess.Popen(train_command(run, budget, device), stdout=log, stderr=subprocess.STDOUT, env=env)
        step0 = int(run.counters().get("step", 0))
        procs[run.name] = (proc, run, step0, time.time(), log)
        touched.append(run)
        print(f"started {run.name} (pid {proc.pid}) at step {step0} with {budget:.0f} s", file=out, flush=True)

    def finish(name: str) -> None:
        proc, run, step0, t0, log = procs.pop(name)
        log.close()
        st = run.write_status()
        with run.sessions_path.open("a") as f:
            f.write(
                json.dumps(
                    {
                        "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "device": _device_label(device),
                        "step_from": step0,
                        "step_to": st["step"],
                        "wall_s": round(time.time() - t0, 1),
                        "exit": proc.returncode,
                        "val_exact": st["val_exact"],
                        # whether this CPU computes bf16 natively: the recipes ask for bf16
                        # autocast, honoured only there (training/precision.py), where a CPU
                        # session trains ≈ 1.8x faster; it explains steps/s across sessions
                        **({"cpu_native_bf16": cpu_has_native_bf16()} if device == "cpu" else {}),
                    }
                )
                + "\n"
            )
        tail = (run.folder / "last-session.log").read_text().strip().splitlines()[-1:] or [""]
        print(
            f"stopped {run.name} (exit {proc.returncode}) at step {st['step']}: {tail[0][-160:]}", file=out, flush=True
        )

    previous = _stop_on_signals()
    try:
        while queue or procs:
            while queue and len(procs) < workers and deadline - time.time() > min_slice_s:
                start(queue.pop(0))
            if not procs:
                break
            for name in [n for n, p in procs.items() if p[0].poll() is not None]:
                finish(name)
            if time.time() - last_report >= report_every:
                for _proc, run, step0, t0, _ in procs.values():
                    print(progress_line(run, step0, t0), file=out, flush=True)
                last_report = time.time()
            if time.time() > deadline + 60:  # a run that overstayed: ask it to save and stop
                for proc, *_ in procs.values():
                    proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
        if queue:  # a budget that ended (or was shorter than one slice) before these could start
            names_left = ", ".join(r.name for r in queue)
            print(f"not started, under {min_slice_s:.0f} s of the budget left: {names_left}", file=out, flush=True)
    except KeyboardInterrupt:
        print("interrupted: asking every run to save and stop …", file=out, flush=True)
        for proc, *_ in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name in list(procs):
            procs[name][0].wait()
            finish(name)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return [r.status() for r in touched]


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> dict[int, Any]:
    """SIGTERM and SIGINT both stop the campaign cleanly (every run saves, its session is
    recorded). Installed explicitly because a runner started in the background by a
    non-interactive shell inherits SIGINT *ignored*, and Python then never raises
    KeyboardInterrupt: ``kill -INT`` did nothing to such a runner (session 5). Returns the
    handlers to restore; none are touched outside the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, _interrupt)
    return previous


# ---------------------------------------------------------------------------------------
# forks and cool-down branches

# what a fork may not change: its state would not fit (the resume file refuses these too)
FIXED_RECIPE_KEYS = ("regime", "digits", "preset")


def parse_recipe_changes(items: list[str]) -> dict[str, Any]:
    """``["aux_weight=3", "nx1_share=0.25"]`` → ``{"aux_weight": 3, "nx1_share": 0.25}`` (JSON values,
    bare words as strings)."""
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"a recipe change is KEY=VALUE, got {item!r}")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    return changes


def _check_new_run(camp: Campaign, source: str, name: str, verb: str, changes: dict[str, Any], why: str) -> CampaignRun:
    """The source run of a fork or widen, after checking that ``name`` is free, the source has
    state, and ``changes`` leaves FIXED_RECIPE_KEYS alone (``why`` starts the error line)."""
    fixed = sorted(k for k in changes if k in FIXED_RECIPE_KEYS)
    if fixed:
        raise ValueError(f"{why}; cannot change {', '.join(fixed)}")
    src = camp.get(source)
    if any(r.name == name for r in camp.runs) or (camp.root / name).exists():
        raise ValueError(f"run {name!r} already exists in {camp.root}")
    if not src.resume_file.is_file():
        raise ValueError(f"run {source} has no state to {verb} yet ({src.resume_file} missing)")
    return src


def _register(camp: Campaign, src: CampaignRun, folder: Path, cfg: TrainConfig, note: str, origin: dict[str, Any]):
    """Write the new run's recipe and list it, active, right after ``src`` in campaign.json."""
    run = CampaignRun(folder.name, folder, src.bundle_as, True, note)
    atomic_write_bytes(run.recipe_path, (json.dumps(cfg.to_dict(), indent=1) + "\n").encode())
    spec_path = camp.root / CAMPAIGN_FILE
    spec = json.loads(spec_path.read_text())
    at = next(i for i, e in enumerate(spec["runs"]) if e.get("name") == src.name) + 1
    spec["runs"].insert(at, {"name": run.name, "bundle_as": src.bundle_as, "active": True, "note": note, **origin})
    atomic_write_bytes(spec_path, (json.dumps(spec, indent=1, ensure_ascii=False) + "\n").encode())
    camp.runs.insert(next(i for i, r in enumerate(camp.runs) if r.name == src.name) + 1, run)
    return run


def fork(camp: Campaign, source: str, name: str, changes: dict[str, Any], note: str = "") -> CampaignRun:
    """A new run ``name`` that continues ``source``'s latest state (weights, optimizer, RNG,
    counters, telemetry) under a changed recipe: one arm of an A/B at equal steps.

    The fork is listed right after its source in ``campaign.json``, active; the source is left
    as it is. Its counters (steps, examples, wall time) include the source's, so its cost is
    the whole cost of the model it trains.
    """
    src = _check_new_run(camp, source, name, "fork", changes, f"a fork keeps {', '.join(FIXED_RECIPE_KEYS)}")
    cfg = TrainConfig.from_dict({**src.recipe().to_dict(), **changes})  # unknown keys: one clear error
    folder = camp.root / name
    folder.mkdir(parents=True)
    for path in (src.checkpoint, src.resume_file, src.telemetry):
        if path.is_file():
            shutil.copyfile(path, folder / path.name)
    step = int(src.counters().get("step", 0))
    run = _register(camp, src, folder, cfg, note, {"forked_from": f"{source}@{step}"})
    run.write_status()
    return run


def widen(
    camp: Campaign,
    source: str,
    name: str,
    preset: str,
    changes: dict[str, Any],
    note: str = "",
    seed: int = 0,
    fresh: bool = False,
) -> CampaignRun:
    """A new run ``name`` that continues ``source`` at the wider ``preset``: its weights widened
    so that the model computes what it computed (:mod:`mulinterp.training.widen`), a fresh
    AdamW (moments of the narrow model have no wide counterpart), and its data RNG, counters
    and telemetry kept — so an ICoT run stays at its removal stage and its recorded cost
    includes the narrow model's. ``fresh``: the extra head and MLP units are new random ones
    (a fresh model's, seeded by ``seed``), not copies of the old.
    """
    import torch
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from mulinterp.models import build_model, sha256
    from mulinterp.training.loop import Trainer
    from mulinterp.training.widen import widen_factor, widen_probe_weight, widen_state_dict

    why = "widen sets the preset with --preset and keeps regime and digits"
    src = _check_new_run(camp, source, name, "widen", changes, why)
    old_cfg = src.recipe()
    cfg = TrainConfig.from_dict({**old_cfg.to_dict(), **changes, "preset": preset})
    old, new = get_preset(old_cfg.preset), get_preset(preset)
    f = widen_factor(old, new)
    data = src.resume_file.read_bytes()
    tensors = st_load(data)
    meta = safetensors_metadata(src.resume_file, data, "resume file")
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    init = None
    if fresh:
        init = build_model(cfg.task, new, seed=seed).state_dict()
    out = {f"model.{k}": v for k, v in widen_state_dict(model, old, new, seed=seed, fresh=init).items()}
    probe_rng = torch.Generator().manual_seed(seed + 1)
    for k, v in tensors.items():
        if k.startswith("probe."):
            out[k] = widen_probe_weight(v, f, probe_rng, fresh=fresh) if k == "probe.weight" else v
    out["rng"] = tensors["rng"]  # no "opt.*": the trainer starts a fresh AdamW
    counters = json.loads(meta["counters"])
    counters["warm_start"] = {
        "from": f"{source}@{counters['step']}",
        "sha256": sha256(src.resume_file),
        "widened": f"{old_cfg.preset} (d_model {old.d_model}) → {preset} (d_model {new.d_model}), seed {seed}"
        + (", fresh units" if fresh else ""),
        "its_steps": counters["step"],
        "its_examples": counters["examples"],
        "its_regime": old_cfg.regime,
        "its_warm_start": counters.get("warm_start"),  # the source's own origin, if it had one
    }
    folder = camp.root / name
    folder.mkdir(parents=True)
    resume = folder / src.resume_file.name
    new_meta = {**meta, "config": json.dumps(cfg.to_dict()), "counters": json.dumps(counters)}
    atomic_write_bytes(resume, st_save(out, metadata=new_meta))
    if src.telemetry.is_file():
        shutil.copyfile(src.telemetry, folder / src.telemetry.name)
    trainer = Trainer(cfg, folder / CHECKPOINT)
    trainer.load_resume()
    trainer.save_checkpoint()  # a wide checkpoint beside the state, and a resume file the trainer wrote
    origin = {"widened_from": f"{source}@{counters['step']}"} | ({"fresh_units": True} if fresh else {})
    run = _register(camp, src, folder, cfg, note, origin)
    run.write_status()
    return run


def cooldown(run: CampaignRun, steps: int, out: str | Path | None = None, device: str = "cpu", progress: bool = False):
    """A cool-down branch of ``run``: ``steps`` more steps with the lr falling linearly to
    ``min_lr_frac · lr``, written to ``out`` (default ``runs/NAME/cooldown.safetensors``).

    The run itself is untouched: the branch starts from a copy of its resume file, so the
    open-ended run can go on at its constant rate and be cooled down again later.
    """
    from mulinterp.training.loop import train

    if steps <= 0:
        raise ValueError(f"cool-down steps must be positive, got {steps}")
    if not run.resume_file.is_file():
        raise ValueError(f"run {run.name} has no state to cool down yet ({run.resume_file} missing)")
    out = Path(out) if out else run.folder / "cooldown.safetensors"
    step = int(run.counters()["step"])
    cfg = TrainConfig.from_dict(
        {
            **run.recipe().to_dict(),
            "device": device,
            "cooldown_from": step,
            "cooldown_steps": steps,
            "steps": step + steps,
            "stop_at_exact": None,
        }
    )
    shutil.copyfile(run.resume_file, resume_path(out))
    if run.telemetry.is_file():
        shutil.copyfile(run.telemetry, telemetry_path(out))
    try:
        model = train(cfg, out, resume=True, progress=progress)
    finally:
        resume_path(out).unlink(missing_ok=True)  # a branch is a checkpoint, not a run to continue
    return model
