"""The training campaign: schedule, warm start, stopping, device moves, runs, cool-down, promotion."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mulinterp.cli import main
from mulinterp.models import load, resume_path, telemetry_path
from mulinterp.training import TrainConfig, train
from mulinterp.training.campaign import Campaign, cooldown, fork, parse_recipe_changes, run_campaign, widen
from mulinterp.training.lineage import lineage
from mulinterp.training.loop import Trainer
from mulinterp.training.promotion import README_BEGIN, README_END, bundled_table, promote, update_readme

REPO = Path(__file__).resolve().parents[1]


def tiny(**kw):
    base = dict(
        digits="2x2",
        preset="tiny",
        steps=30,
        batch=32,
        telemetry_every=10,
        eval_every=10,
        checkpoint_every=10,
        eval_n=64,
        device="cpu",
        schedule="constant",
        lr=3e-3,
        warmup=5,
    )
    return TrainConfig(**{**base, **kw})


def make_campaign(root: Path, runs: dict[str, dict], active: dict[str, bool] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, recipe in runs.items():
        (root / name).mkdir()
        (root / name / "recipe.json").write_text(json.dumps(tiny(**recipe).to_dict()))
    entries = [{"name": n, "bundle_as": n, "active": (active or {}).get(n, True)} for n in runs]
    (root / "campaign.json").write_text(json.dumps({"runs": entries}))
    return root


def test_constant_schedule_with_cooldown_branch():
    cfg = tiny(lr=1e-2, warmup=10, min_lr_frac=0.01, cooldown_from=100, cooldown_steps=50)
    assert cfg.lr_at(0) == pytest.approx(1e-3)
    assert cfg.lr_at(99) == pytest.approx(1e-2)  # constant until the branch point
    assert cfg.lr_at(125) == pytest.approx(1e-2 - 0.5 * (1e-2 - 1e-4))  # halfway down, linearly
    assert cfg.lr_at(150) == cfg.lr_at(10_000) == pytest.approx(1e-4)
    assert tiny(lr=1e-2, warmup=10).lr_at(10_000) == pytest.approx(1e-2)  # open-ended: never decays
    with pytest.raises(ValueError, match="cool-down"):
        tiny(cooldown_from=10, cooldown_steps=0)
    with pytest.raises(ValueError, match="stop_at_exact"):
        tiny(stop_at_exact=1.5)


def test_warm_start_copies_weights_and_starts_a_fresh_optimizer(tmp_path):
    src = train(tiny(steps=20), tmp_path / "src.safetensors", progress=False)
    t = Trainer(tiny(seed=7, init_from=str(tmp_path / "src.safetensors")), tmp_path / "w.safetensors")
    assert not torch.equal(t.model.state_dict()["embed.weight"], src.model.state_dict()["embed.weight"])
    t.warm_start_from(t.cfg.init_from)
    for k, v in src.model.state_dict().items():
        assert torch.equal(t.model.state_dict()[k], v), k
    assert t.step == 0 and not t.opt.state  # counters and AdamW moments start afresh
    m = train(
        tiny(seed=7, steps=5, init_from=str(tmp_path / "src.safetensors")), tmp_path / "w2.safetensors", progress=False
    )
    assert m.meta["warm_start"]["its_steps"] == 20 and len(m.meta["warm_start"]["sha256"]) == 64
    with pytest.raises(ValueError, match="width"):
        Trainer(tiny(preset="small"), tmp_path / "x.safetensors").warm_start_from(tmp_path / "src.safetensors")
    with pytest.raises(ValueError, match="2x2 model, this run is 2x3"):
        Trainer(tiny(digits="2x3"), tmp_path / "y.safetensors").warm_start_from(tmp_path / "src.safetensors")


def test_stop_at_exact_stops_a_run_that_reached_it(tmp_path):
    t = Trainer(tiny(steps=50, stop_at_exact=0.5), tmp_path / "m.safetensors")
    t.metrics["val"] = {"exact_match": 0.6}  # as if the last periodic validation had said so
    t.run(progress=False)
    assert t.step == 0 and resume_path(tmp_path / "m.safetensors").is_file()
    t = Trainer(tiny(steps=12, stop_at_exact=1.0), tmp_path / "n.safetensors")
    t.run(progress=False)
    assert t.step == 12  # not reached: the run goes on to its steps


def test_resume_on_another_device_type_reseeds_the_data_stream(tmp_path):
    out = tmp_path / "m.safetensors"
    train(tiny(steps=10), out, progress=False)
    tensors = load_file(resume_path(out))
    with safe_open(resume_path(out), "pt") as f:
        meta = f.metadata()
    tensors["rng"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    save_file(tensors, resume_path(out), metadata=meta)
    t = Trainer(tiny(steps=20), out)
    t.load_resume()
    assert t.rng_reseeded == [10] and t.step == 10
    assert "exp_avg" in t.opt.state[t.params[0]]  # the moments came across
    t.run(progress=False)
    assert t.step == 20
    counters = json.loads(safe_open(resume_path(out), "pt").metadata()["counters"])
    assert counters["rng_reseeded"] == [10] and counters["wall_by_device"]["cpu"] > 0


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    out = tmp_path / "m.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mulinterp.cli",
            "train",
            "--regime",
            "sft",
            "--digits",
            "2x2",
            "--preset",
            "tiny",
            "--steps",
            "1000000",
            "--batch",
            "32",
            "--telemetry-every",
            "10",
            "--checkpoint-every",
            "100000",
            "--eval-every",
            "100000",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while not telemetry_path(out).is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    step = json.loads(safe_open(resume_path(out), "pt").metadata()["counters"])["step"]
    assert 10 <= step < 100_000  # saved mid-run, not at a periodic checkpoint
    assert f"after {step} steps" in output


def test_campaign_runs_in_priority_order_and_records_sessions(tmp_path):
    root = make_campaign(
        tmp_path / "runs",
        {"a": {"steps": 20}, "b": {"steps": 20, "regime": "icot", "epoch_size": 64}, "c": {"steps": 20}},
        active={"c": False},
    )
    out = io.StringIO()
    statuses = run_campaign(root, budget_s=240, workers=1, out=out, min_slice_s=5, save_margin_s=1, report_every=1)
    assert [s["name"] for s in statuses] == ["a", "b"]  # c is inactive
    assert all(s["state"] == "out of steps" and s["step"] == 20 for s in statuses), out.getvalue()
    for name in ("a", "b"):
        st = json.loads((root / name / "status.json").read_text())
        assert st["step"] == 20 and st["wall_by_device"]["cpu"] > 0
        (session,) = [json.loads(x) for x in (root / name / "sessions.jsonl").read_text().splitlines()]
        assert session["step_from"] == 0 and session["step_to"] == 20 and session["exit"] == 0
        assert isinstance(session["cpu_native_bf16"], bool)  # explains a CPU session's speed
    assert not (root / "c" / "model.safetensors").exists()
    assert "nothing to train" in _run_quietly(root)
    out = io.StringIO()  # a budget shorter than one slice starts nothing, and says so
    assert run_campaign(root, budget_s=100, out=out, min_slice_s=120, names=["c"]) == []
    assert out.getvalue() == "not started, under 120 s of the budget left: c\n"
    # a finished run is left alone; raising its steps continues it from where it stopped
    recipe = json.loads((root / "a" / "recipe.json").read_text())
    (root / "a" / "recipe.json").write_text(json.dumps({**recipe, "steps": 30}))
    (st,) = run_campaign(root, budget_s=240, workers=2, out=io.StringIO(), min_slice_s=5, save_margin_s=1)
    assert st["name"] == "a" and st["step"] == 30
    rows = [json.loads(x) for x in (root / "a" / "sessions.jsonl").read_text().splitlines()]
    assert [(r["step_from"], r["step_to"]) for r in rows] == [(0, 20), (20, 30)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_campaign_cleanly_even_with_sigint_ignored(tmp_path, sig):
    # a runner started with `&` by a non-interactive shell inherits SIGINT ignored
    root = make_campaign(tmp_path / "runs", {"a": {"steps": 1_000_000, "checkpoint_every": 100_000}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "mulinterp.cli", "campaign", "--root", str(root), "run", "--budget", "600"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        start_new_session=True,  # so that a failing test can stop the runner's children too
    )
    tel = root / "a" / "model.telemetry.jsonl"
    deadline = time.time() + 120
    while not (tel.is_file() and tel.read_text().strip()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(sig)
    try:
        output, _ = proc.communicate(timeout=90)
    finally:
        try:  # whatever is left of the runner's process group (nothing, when the test passes)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 130, output
    assert "asking every run to save and stop" in output and "stopped a (exit 0)" in output
    (session,) = [json.loads(x) for x in (root / "a" / "sessions.jsonl").read_text().splitlines()]
    assert session["exit"] == 0 and session["step_to"] >= 10
    assert json.loads(safe_open(root / "a" / "model.safetensors.resume", "pt").metadata()["counters"])["step"] >= 10


def _run_quietly(root: Path) -> str:
    out = io.StringIO()
    run_campaign(root, budget_s=60, out=out, min_slice_s=5)
    return out.getvalue()


def test_cooldown_branch_leaves_the_run_untouched(tmp_path):
    root = make_campaign(tmp_path / "runs", {"a": {"steps": 1000, "min_lr_frac": 0.01}})
    run = Campaign.load(root).get("a")
    train(run.recipe(), run.checkpoint, stop_after=20, progress=False)
    before = run.resume_file.read_bytes()
    m = cooldown(run, 10)
    assert m.meta["steps"] == 30 and m.meta["recipe"]["cooldown_from"] == 20
    assert run.resume_file.read_bytes() == before
    assert not resume_path(run.folder / "cooldown.safetensors").exists()
    rows = [json.loads(x) for x in telemetry_path(run.folder / "cooldown.safetensors").read_text().splitlines()]
    assert rows[-1]["step"] == 30 and rows[-1]["lr"] < 3e-3 * 0.2  # decaying towards 3e-5
    with pytest.raises(ValueError, match="positive"):
        cooldown(run, 0)


def test_fork_continues_the_source_state_under_a_changed_recipe(tmp_path, capsys):
    root = make_campaign(tmp_path / "runs", {"a": {"steps": 30, "regime": "aux"}, "b": {"steps": 30}})
    camp = Campaign.load(root)
    src = camp.get("a")
    train(src.recipe(), src.checkpoint, stop_after=20, progress=False)
    same = fork(camp, "a", "a-same", {})
    assert main(["campaign", "--root", str(root), "fork", "a", "--as", "a-mix", "--set", "nx1_share=0.25"]) == 0
    assert "forked a at step 20 as a-mix" in capsys.readouterr().out
    camp = Campaign.load(root)
    assert [r.name for r in camp.runs] == ["a", "a-mix", "a-same", "b"]
    assert camp.get("a-mix").recipe().nx1_share == 0.25 and camp.get("a-mix").active
    assert json.loads((root / "campaign.json").read_text())["runs"][1]["forked_from"] == "a@20"
    # a fork without changes carries the whole state: it ends where the source itself would
    train(src.recipe(), src.checkpoint, resume=True, progress=False)
    train(same.recipe(), same.checkpoint, resume=True, progress=False)
    w_src, w_fork = load_file(src.checkpoint), load_file(same.checkpoint)
    assert all(torch.equal(w_src[k], w_fork[k]) for k in w_src)
    assert src.status()["step"] == same.status()["step"] == 30
    with pytest.raises(ValueError, match="already exists"):
        fork(camp, "a", "a-mix", {})
    with pytest.raises(ValueError, match="cannot change regime"):
        fork(camp, "a", "a-sft", {"regime": "sft"})
    with pytest.raises(ValueError, match="unknown recipe keys: nx1"):
        fork(camp, "a", "a-typo", {"nx1": 0.5})
    with pytest.raises(ValueError, match="no state to fork"):
        fork(camp, "b", "b2", {})
    assert not (root / "a-typo").exists() and not (root / "b2").exists()
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_recipe_changes(["aux_weight"])
    assert parse_recipe_changes(["aux_weight=3", "schedule=cosine"]) == {"aux_weight": 3, "schedule": "cosine"}


def test_widen_continues_a_run_at_a_wider_preset_from_its_state(tmp_path, capsys):
    from mulinterp.training.aux import aux_probe_rmse

    runs = {"i": {"regime": "icot", "epoch_size": 1200, "remove_per_epoch": 10}, "a": {"regime": "aux"}}
    root = make_campaign(tmp_path / "runs", runs)
    camp = Campaign.load(root)
    for name in runs:
        train(camp.get(name).recipe(), camp.get(name).checkpoint, stop_after=20, progress=False)
    argv = ["campaign", "--root", str(root), "widen", "i", "--as", "i-wide", "--preset", "small", "--fresh"]
    assert main(argv) == 0
    assert "widened i at step 20 to preset small as i-wide (new random head and MLP units" in capsys.readouterr().out
    aux_wide = widen(Campaign.load(root), "a", "a-wide", "small", {"lr": 1e-3})
    aux_fresh = widen(Campaign.load(root), "a", "a-fresh", "small", {}, fresh=True)
    camp = Campaign.load(root)
    assert [r.name for r in camp.runs] == ["i", "i-wide", "a", "a-fresh", "a-wide"]
    listed = json.loads((root / "campaign.json").read_text())["runs"]
    assert listed[1]["widened_from"] == "i@20" and listed[1]["fresh_units"] and "fresh_units" not in listed[4]
    src, wide = camp.get("i"), camp.get("i-wide")
    assert wide.recipe().preset == "small" and aux_wide.recipe().lr == 1e-3
    # the counters go on (an ICoT run stays at its removal stage; its cost includes the source's)
    keep = ("step", "examples", "last_removed", "wall")
    assert {k: wide.counters()[k] for k in keep} == {k: src.counters()[k] for k in keep}
    assert src.counters()["last_removed"] > 0
    assert wide.counters()["warm_start"]["from"] == "i@20"
    with safe_open(str(wide.resume_file), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("opt.")]  # a fresh AdamW
    # the wide checkpoint computes what the narrow one did, the aux probe included
    narrow_m, wide_m = load(src.checkpoint), load(wide.checkpoint)
    assert wide_m.spec.d_model == 2 * narrow_m.spec.d_model
    a, b = narrow_m.task.sample(32, "val", seed=5)
    x = narrow_m.task.encode(a, b, "cot")
    with torch.no_grad():
        torch.testing.assert_close(wide_m.model(x), narrow_m.model(x), atol=2e-4, rtol=1e-4)
    rmse = [aux_probe_rmse(load(r.checkpoint), n=64, seed=1) for r in (camp.get("a"), aux_wide, aux_fresh)]
    for wide_rmse in rmse[1:]:  # copied or fresh head dims, the probe reads the same ĉ
        torch.testing.assert_close(torch.as_tensor(wide_rmse), torch.as_tensor(rmse[0]), atol=1e-3, rtol=1e-3)
    train(wide.recipe(), wide.checkpoint, resume=True, progress=False)  # and it trains on, to its steps
    assert wide.status()["step"] == 30
    # bad input: one line, exit 2, nothing created
    assert main(["campaign", "--root", str(root), "widen", "i", "--as", "i-same", "--preset", "tiny"]) == 2
    assert "whole multiple" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot change regime"):
        widen(camp, "i", "i-sft", "small", {"regime": "sft"})
    assert not (root / "i-same").exists() and not (root / "i-sft").exists()


def test_progress_line_names_the_wall_digit_by_its_stage_loss(tmp_path, monkeypatch):
    from mulinterp.cli.campaign import _fmt_status
    from mulinterp.training.campaign import progress_line

    root = make_campaign(tmp_path / "runs", {"i": {"regime": "icot"}})
    run = Campaign.load(root).get("i")
    row = {
        "step": 120,
        "loss": 0.2,
        "cot_remaining": 3,
        "digit_acc": [0.1] * 4,
        "exact_match": 0.0,
        "stage_digit_acc": [1.0, 0.97, 0.1, 1.0],
        "stage_exact": 0.09,
        "stage_digit_loss": [0.001, 0.08, 2.2871, 0.002],
    }
    run.telemetry.write_text(json.dumps(row) + "\n")
    line = progress_line(run, 100, time.time() - 10)
    assert "stage exact   9.0%" in line and "digits 1.00 .97 .10 1.00" in line
    assert line.endswith("(worst c2 CE 2.287)")
    row.pop("stage_digit_loss")  # telemetry written before the loss was recorded: no worst digit
    run.telemetry.write_text(json.dumps(row) + "\n")
    assert "worst" not in progress_line(run, 100, time.time() - 10)
    assert " lr " not in progress_line(run, 100, time.time() - 10)  # no lr recorded: nothing said
    lr = Campaign.load(root).get("i").recipe().lr
    for rate, shown in [(lr, False), (lr / 3, True)]:  # the lr is named only while below the recipe's
        run.telemetry.write_text(json.dumps(row | {"step": 10_000, "lr": rate}) + "\n")
        assert (f"lr {lr / 3:.1e}" in progress_line(run, 100, time.time() - 10)) is shown
    # plain phase under plain_cooldown: the last val read at a fall's end, not the newest row's
    recipe = {"regime": "icot", "removal_gate": 0.9, "gate_cooldown_after": 10, "plain_cooldown": True}
    pcd = Campaign.load(make_campaign(tmp_path / "pcd", {"p": recipe})).get("p")
    plain = {"step": 400, "loss": 0.1, "cot_remaining": 0, "digit_acc": [0.9] * 4, "exact_match": 0.7}
    rows = [plain | {"step": 200, "val_exact_match": 0.981}, plain, plain | {"step": 600}]
    for each in (pcd, run):
        each.telemetry.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert progress_line(pcd, 100, time.time() - 10).endswith("(val 98.1% where the fall ended at step 200)")
    assert "where the fall ended" not in progress_line(run, 100, time.time() - 10)  # no plain_cooldown: not read
    # the status table shows that read too, for the saved state's step (its own row is at full rate)
    monkeypatch.setattr(
        pcd, "counters", lambda: {"step": 400, "examples": 1, "wall": 1.0, "metrics": {"val": {"exact_match": 0.5}}}
    )
    st = pcd.status()
    assert (st["val_exact"], st["fall_exact"], st["fall_step"]) == (0.5, 0.981, 200)
    assert "98.1%†" in _fmt_status(st) and "50.0%" not in _fmt_status(st)
    monkeypatch.setattr(run, "counters", lambda: {"step": 400, "examples": 1, "wall": 1.0})
    assert run.status()["fall_exact"] is None  # no plain_cooldown
    pcd.telemetry.write_text(json.dumps(row) + "\n")  # CoT left: no such read
    assert "where the fall ended" not in progress_line(pcd, 100, time.time() - 10)


def test_curve_prints_and_draws_stage_and_monitor_accuracy(tmp_path, capsys):
    from mulinterp.training.campaign import run_curve

    runs = {"i": {"steps": 30, "regime": "icot", "epoch_size": 1200, "remove_per_epoch": 10}, "s": {"steps": 20}}
    root = make_campaign(tmp_path / "runs", runs)
    camp = Campaign.load(root)
    for name in runs:
        train(camp.get(name).recipe(), camp.get(name).checkpoint, progress=False)
    c = run_curve(camp.get("i"))
    rows = [json.loads(x) for x in camp.get("i").telemetry.read_text().splitlines()]
    assert c.steps == [r["step"] for r in rows] == [10, 20, 30]
    assert c.cot_left == [r["cot_remaining"] for r in rows] and c.cot_left[0] > c.cot_left[-1] > 0
    assert c.stage_exact == [r["stage_exact"] for r in rows] and c.per_digit[0] == rows[0]["stage_digit_acc"]
    s = run_curve(camp.get("s"))
    last_s = json.loads(camp.get("s").telemetry.read_text().splitlines()[-1])
    assert s.cot_len == 0 and s.stage_exact == [None, None] and s.per_digit[-1] == last_s["digit_acc"]
    png = tmp_path / "curve.png"
    assert main(["campaign", "--root", str(root), "curve", "i", "s", "--rows", "2", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in out
    assert "i (icot): 3 telemetry rows" in out and "s (sft): 2 telemetry rows" in out
    assert len([ln for ln in out.splitlines() if ln.startswith("       ")]) == 4  # 2 rows per run
    assert main(["campaign", "--root", str(root), "curve", "i", "--rows", "40"]) == 0  # more rows than it has
    steps = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("       ")]
    assert steps == ["10", "20", "30"]
    assert main(["campaign", "--root", str(root), "curve", "i", "--json"]) == 0
    (got,) = json.loads(capsys.readouterr().out)
    assert got["steps"] == [10, 20, 30] and got["stage_exact"] == c.stage_exact
    assert main(["campaign", "--root", str(root), "curve", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_curve_lists_and_draws_the_val_reads_of_plain_cooldown(tmp_path, capsys):
    from mulinterp.training.campaign import run_curve
    from mulinterp.viz.training import campaign_curve_figure

    root = make_campaign(tmp_path / "runs", {"i": {"regime": "icot"}})
    run = Campaign.load(root).get("i")
    plain = {"loss": 0.1, "cot_remaining": 0, "digit_acc": [0.9] * 4, "exact_match": 0.7}
    rows = [plain | {"step": 200}, plain | {"step": 400, "val_exact_match": 0.981}, plain | {"step": 600}]
    run.telemetry.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_curve(run).fall_val == [None, 0.981, None]
    assert main(["campaign", "--root", str(root), "curve", "i"]) == 0
    assert "  val where a fall ended: 400 98.1%" in capsys.readouterr().out.splitlines()
    (marks,) = [t for t in campaign_curve_figure([run_curve(run)]).data if t.name == "val where a fall ended"]
    assert list(marks.x) == [400] and list(marks.y) == [0.981]


def test_curve_of_an_aux_run_shows_its_probe_error(tmp_path, capsys):
    from mulinterp.training.campaign import run_curve

    root = make_campaign(tmp_path / "runs", {"x": {"steps": 20, "regime": "aux"}})
    run = Campaign.load(root).get("x")
    train(run.recipe(), run.checkpoint, progress=False)
    rows = [json.loads(x) for x in run.telemetry.read_text().splitlines()]
    assert run_curve(run).aux_rmse == [r["aux_rmse"] for r in rows] and len(rows[-1]["aux_rmse"]) == 4
    assert main(["campaign", "--root", str(root), "curve", "x"]) == 0
    out = capsys.readouterr().out
    assert "aux probe's RMSE per c_k" in out
    last = [ln for ln in out.splitlines() if ln.startswith("       ")][-1]
    assert last.split()[-4:] == [f"{v:.1f}" for v in rows[-1]["aux_rmse"]]


def test_promotion_replaces_only_a_better_model_and_records_why(tmp_path):
    weak = tmp_path / "weak.safetensors"
    train(tiny(steps=2, regime="sft"), weak, progress=False)
    strong = tmp_path / "strong.safetensors"
    train(tiny(steps=300, regime="sft", lr=1e-2, eval_every=1000, telemetry_every=1000), strong, progress=False)
    bundle = tmp_path / "ck"
    bundle.mkdir()
    e1 = promote(weak, "sft-2x2", n=500, checkpoint_dir=bundle)
    e2 = promote(strong, "sft-2x2", n=500, checkpoint_dir=bundle)
    assert e2["test_exact_match"] > e1["test_exact_match"]
    assert e2["replaced"]["test_exact_match"] == e1["test_exact_match"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["sft-2x2"]["sha256"] == e2["sha256"] and (bundle / "sft-2x2.safetensors").is_file()
    assert load(bundle / "sft-2x2.safetensors").meta["steps"] == 300
    with pytest.raises(ValueError, match="does not beat"):
        promote(weak, "sft-2x2", n=500, checkpoint_dir=bundle)
    forced = promote(weak, "sft-2x2", n=500, checkpoint_dir=bundle, force=True, reason="width match")
    assert forced["promoted_because"] == "width match"
    with pytest.raises(ValueError, match="cannot be bundled as 'icot-2x2'"):
        promote(strong, "icot-2x2", n=500, checkpoint_dir=bundle)
    table = bundled_table(json.loads((bundle / "manifest.json").read_text()))
    assert "| `sft-2x2` | sft | d32 | 2 × 32 |" in table and table.count("\n") == 2
    met = forced["test_exact_match"] < 0.05  # the bar column says whether the model meets its set's bar
    assert ("| < 5 % met |" if met else "| < 5 % **missed** |") in table
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_BEGIN}\nold\n{README_END}\ntail\n")
    assert update_readme(readme, json.loads((bundle / "manifest.json").read_text()))
    assert "old" not in readme.read_text() and readme.read_text().endswith("tail\n")


def test_campaign_cli_status_and_bad_input(tmp_path, capsys):
    runs = {"a": {"steps": 10}, "an-icot-run": {"steps": 30, "regime": "icot", "epoch_size": 10**6}}
    root = make_campaign(tmp_path / "runs", runs)
    camp = Campaign.load(root)
    train(camp.get("a").recipe(), root / "a" / "model.safetensors", progress=False)
    # an ICoT run with its CoT still there, saved at step 20 while its telemetry went on to 30
    icot = camp.get("an-icot-run")
    train(icot.recipe(), icot.checkpoint, stop_after=20, progress=False)
    train(icot.recipe(), tmp_path / "later.safetensors", progress=False)
    shutil.copyfile(telemetry_path(tmp_path / "later.safetensors"), icot.telemetry)
    assert main(["campaign", "--root", str(root), "status"]) == 0
    out = capsys.readouterr().out
    assert "a " in out and "out of steps" in out
    assert "an-icot-run " in out and "%*" in out and "answers at its removal stage" in out
    assert main(["campaign", "--root", str(root), "status", "--json"]) == 0
    row, irow = json.loads(capsys.readouterr().out)
    assert row["step"] == 10 and row["d_model"] == 32 and row["stage_exact"] is None
    stage20 = [json.loads(x) for x in icot.telemetry.read_text().splitlines()][1]
    assert stage20["step"] == 20 and irow["step"] == 20  # the row of the saved state, not the last one
    assert irow["stage_per_digit"] == stage20["stage_digit_acc"] and irow["cot_left"] > 0
    assert main(["campaign", "--root", str(root), "cooldown", "nope", "--steps", "5"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["campaign", "--root", str(tmp_path / "none"), "status"]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "campaign.json").write_text('{"runs": [{"bundle_as": "x"}]}')
    assert main(["campaign", "--root", str(tmp_path / "bad"), "status"]) == 2
    assert "every entry of runs needs a name" in capsys.readouterr().err
    assert main(["campaign", "--root", str(root), "promote", "x.safetensors", "--as", "sft-2x2", "--force"]) == 2
    assert "--reason" in capsys.readouterr().err


def test_lineage_follows_forks_and_widenings_and_lands_in_the_manifest(tmp_path, capsys):
    root = make_campaign(
        tmp_path / "runs", {"a": {}, "b": {"nx1_share": 0.25}, "c": {"nx1_share": 0.25, "preset": "small"}}
    )
    spec = json.loads((root / "campaign.json").read_text())
    spec["runs"][1]["forked_from"] = "a@20"
    spec["runs"][2] |= {"widened_from": "b@50", "fresh_units": True}
    (root / "campaign.json").write_text(json.dumps(spec))
    chain = lineage(root, "c")
    assert [(s["run"], s["began"], s["parent"], s["at_step"], s["until_step"]) for s in chain] == [
        ("a", "scratch", None, 0, 20),
        ("b", "fork", "a", 20, 50),
        ("c", "widen (fresh units)", "b", 50, None),
    ]
    assert chain[0]["recipe"]["nx1_share"] == 0.0 and chain[0]["recipe"]["regime"] == "sft"  # the whole recipe
    assert chain[1]["recipe"] == {"nx1_share": 0.25} and chain[2]["recipe"] == {"preset": "small"}  # what changed
    assert main(["campaign", "--root", str(root), "lineage", "c"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "b: fork of a at step 20 → step 50; changed nx1_share=0.25"
    assert out[2] == "c: widen (fresh units) of b at step 50 → its latest state; changed preset=small"
    assert main(["campaign", "--root", str(root), "lineage", "nope"]) == 2
    assert "'nope' is not listed" in capsys.readouterr().err
    spec["runs"][0]["forked_from"] = "c@10"  # a cycle is one clear error, not a hang
    (root / "campaign.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="cycle"):
        lineage(root, "c")
    spec["runs"][0].pop("forked_from")
    (root / "campaign.json").write_text(json.dumps(spec))
    # a checkpoint promoted from a campaign run folder carries its lineage into the manifest
    train(tiny(steps=2, regime="sft", nx1_share=0.25), root / "b" / "model.safetensors", progress=False)
    (tmp_path / "ck").mkdir()
    entry = promote(root / "b" / "model.safetensors", "sft-2x2", n=100, checkpoint_dir=tmp_path / "ck")
    assert [s["run"] for s in entry["lineage"]] == ["a", "b"]
    manifest = json.loads((tmp_path / "ck" / "manifest.json").read_text())
    assert manifest["sft-2x2"]["lineage"][1]["recipe"] == {"nx1_share": 0.25}
