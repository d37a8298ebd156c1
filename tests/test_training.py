import json
import math

import pytest
import torch

from mulinterp.models import resume_path, telemetry_path
from mulinterp.task import D_VOCAB, PAD, MulTask
from mulinterp.training import TrainConfig, train
from mulinterp.training.data import (
    make_batch,
    nx1_operands,
    nx2_operands,
    removal_offsets,
    remove_cot,
    scheduled_removal,
)


def tiny_cfg(**kw):
    base = dict(
        digits="2x2",
        preset="tiny",
        steps=40,
        batch=32,
        telemetry_every=10,
        eval_every=20,
        checkpoint_every=20,
        eval_n=64,
        epoch_size=320,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def test_cot_removal_is_from_the_left_and_vectorised():
    task = MulTask(4, 4)
    a, b = torch.tensor([3719, 1234]), torch.tensor([3349, 5678])
    full = task.encode(a, b, "cot")
    out, start = remove_cot(full, task, torch.tensor([5, 46]))
    assert out[0, : task.input_len].tolist() == full[0, : task.input_len].tolist()
    assert out[0, task.input_len :].tolist()[:41] == full[0, task.input_len + 5 : task.input_len + 46].tolist()
    assert out[1, : task.seq_len("plain")].tolist() == task.encode(a, b, "plain")[1].tolist()
    assert (out[1, task.seq_len("plain") :] == PAD).all()
    assert start.tolist() == [task.answer_start("cot") - 5, task.answer_start("plain")]


def test_removal_schedule_and_offsets():
    assert scheduled_removal(0, 8, 1000, 46) == 0
    assert scheduled_removal(500, 8, 1000, 46) == 4
    assert scheduled_removal(10**9, 8, 1000, 46) == 46
    # anchored: 37 tokens gone at 3 700 examples, then 4 per 1 000 — none come back at the anchor
    assert scheduled_removal(3700, 4, 1000, 46, from_examples=3700, from_tokens=37) == 37
    assert scheduled_removal(4200, 4, 1000, 46, from_examples=3700, from_tokens=37) == 39
    assert scheduled_removal(10**9, 4, 1000, 46, from_examples=3700, from_tokens=37) == 46
    g = torch.Generator().manual_seed(0)
    k = removal_offsets(20000, 4.0, 10, g)
    p1 = (k == 1).float().mean() / (k == 0).float().mean()
    assert abs(p1 - math.exp(-4)) < 0.01 and k.max() <= 10
    assert (removal_offsets(10, math.inf, 10, g) == 0).all()


def test_loss_masks_per_regime():
    task, g = MulTask(2, 2), torch.Generator().manual_seed(0)
    sft = make_batch(task, 4, g, "sft")
    assert sft.loss_mask.sum(1).tolist() == [task.n_c] * 4  # answer digits only
    icot = make_batch(task, 4, g, "icot", removed=0, smoothing=math.inf)
    assert icot.loss_mask.sum(1).tolist() == [task.cot_len + 1 + task.n_c + 1] * 4  # everything after the input


def test_nx1_share_replaces_that_share_with_single_digit_operands():
    task, g = MulTask(4, 4), torch.Generator().manual_seed(0)
    a, b = task.sample(20_000, "train", generator=g)
    a2, b2 = nx1_operands(task, a, b, 0.25, g)
    changed = (a2 != a) | (b2 != b)
    assert 0.22 < changed.float().mean() < 0.28

    def one_nonzero(x: int) -> bool:
        return sum(ch != "0" for ch in str(x)) == 1

    pairs = list(zip(a2[changed].tolist(), b2[changed].tolist()))
    assert all(one_nonzero(x) or one_nonzero(y) for x, y in pairs)
    assert {len(str(x)) - 1 for x, _ in pairs if x < 1000} == {0, 1, 2}  # a at every lower place
    assert {len(str(y)) - 1 for _, y in pairs if y < 1000} == {0, 1, 2}  # and b
    assert task.in_split(a2, b2, "train").all()  # never a held-out problem
    assert torch.equal(nx1_operands(task, a, b, 0.0, g)[0], a)
    batch = make_batch(task, 64, torch.Generator().manual_seed(1), "aux", nx1_share=0.5)
    c = task.true_answer(batch.a, batch.b)
    assert torch.equal(batch.tokens[:, batch.answer_start[0] + 1 : batch.answer_start[0] + 1 + task.n_c], c)


def nonzero_places(x: int) -> tuple[int, ...]:
    return tuple(i for i, ch in enumerate(reversed(str(x))) if ch != "0")


def test_nx2_share_gives_operands_with_two_nonzero_digits_beside_the_nx1_share():
    task, g = MulTask(4, 4), torch.Generator().manual_seed(0)
    a, b = task.sample(20_000, "train", generator=g)
    a2, b2 = nx2_operands(task, a, b, 0.25, g)
    changed = (a2 != a) | (b2 != b)
    assert 0.22 < changed.float().mean() < 0.28
    pairs = list(zip(a[changed].tolist(), b[changed].tolist(), a2[changed].tolist(), b2[changed].tolist()))
    replaced = [x2 if x2 != x else y2 for x, y, x2, y2 in pairs]  # the operand that was redrawn
    assert all(len(nonzero_places(x)) == 2 for x in replaced)
    assert {nonzero_places(x) for x in replaced} == {(i, j) for i in range(4) for j in range(i + 1, 4)}
    assert task.in_split(a2, b2, "train").all()

    # beside an n×1 share: the n×1 pairs are the ones an n×1-only batch draws, n×2 fills its share
    # among the others, and the rest are full problems
    fa, fb = task.sample(20_000, "train", generator=torch.Generator().manual_seed(3))
    only1 = make_batch(task, 20_000, torch.Generator().manual_seed(3), "sft", nx1_share=0.25)
    both = make_batch(task, 20_000, torch.Generator().manual_seed(3), "sft", nx1_share=0.25, nx2_share=0.25)
    is_nx1 = (only1.a != fa) | (only1.b != fb)
    assert 0.22 < is_nx1.float().mean() < 0.28
    assert torch.equal(both.a[is_nx1], only1.a[is_nx1]) and torch.equal(both.b[is_nx1], only1.b[is_nx1])
    is_nx2 = ~is_nx1 & ((both.a != fa) | (both.b != fb))
    assert 0.22 < is_nx2.float().mean() < 0.28
    with pytest.raises(ValueError, match="nx2_share"):
        TrainConfig(nx1_share=0.5, nx2_share=0.5)


@pytest.mark.parametrize("regime", ["sft", "icot", "aux"])
def test_each_regime_trains_writes_checkpoint_and_telemetry(regime, tmp_path):
    out = tmp_path / f"{regime}.safetensors"
    m = train(tiny_cfg(regime=regime), out, progress=False)
    assert out.is_file() and resume_path(out).is_file()
    rows = [json.loads(line) for line in telemetry_path(out).read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert len(rows[0]["pos_loss"]) == len(rows[0]["grad_norm"]) == len(rows[0]["digit_acc"]) == 4
    assert m.meta["metrics"]["val"]["n"] == 64
    if regime == "aux":
        assert m.extras["aux.weight"].shape == (4, 4, 8)


def test_resume_gives_identical_weights(tmp_path):
    straight = train(tiny_cfg(regime="aux"), tmp_path / "a.safetensors", progress=False)
    train(tiny_cfg(regime="aux"), tmp_path / "b.safetensors", stop_after=20, progress=False)
    resumed = train(tiny_cfg(regime="aux"), tmp_path / "b.safetensors", resume=True, progress=False)
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(straight.extras["aux.weight"], resumed.extras["aux.weight"])
    assert telemetry_path(tmp_path / "a.safetensors").read_text().count("\n") == 4
    assert telemetry_path(tmp_path / "b.safetensors").read_text().count("\n") == 4


def test_icot_resume_also_identical(tmp_path):
    a = train(tiny_cfg(regime="icot"), tmp_path / "a.safetensors", progress=False)
    train(tiny_cfg(regime="icot"), tmp_path / "b.safetensors", stop_after=15, progress=False)
    b = train(tiny_cfg(regime="icot"), tmp_path / "b.safetensors", resume=True, progress=False)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_bad_configs_and_resume_mismatch(tmp_path):
    with pytest.raises(ValueError, match="unknown regime"):
        tiny_cfg(regime="rl")
    with pytest.raises(ValueError, match="unknown preset"):
        tiny_cfg(preset="xl")
    with pytest.raises(ValueError, match="from 1 to 8"):
        tiny_cfg(digits="9x2")
    train(tiny_cfg(regime="sft", steps=5), tmp_path / "m.safetensors", progress=False)
    with pytest.raises(ValueError, match="regime='sft'"):
        train(tiny_cfg(regime="icot", steps=5), tmp_path / "m.safetensors", resume=True, progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        train(tiny_cfg(), tmp_path / "no" / "m.safetensors", progress=False)


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_cpu_bf16_is_opt_in_and_trains(cpu_bf16, tmp_path, monkeypatch):
    from mulinterp.training import Trainer

    monkeypatch.setattr("mulinterp.training.loop.cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    trainer = Trainer(tiny_cfg(regime="sft", steps=5, cpu_bf16=cpu_bf16), tmp_path / "m.safetensors")
    tokens = trainer.task.encode(*trainer.task.sample(4, "train", seed=0), "plain")
    with trainer._autocast():
        logits = trainer.net(tokens)
    assert logits.dtype == (torch.bfloat16 if cpu_bf16 else torch.float32)
    m = trainer.run(progress=False)
    assert all(torch.isfinite(v).all() for v in m.model.state_dict().values())
    assert all(v.dtype == torch.float32 for v in trainer.net.parameters())  # master weights stay fp32


def test_cpu_bf16_falls_back_to_fp32_where_the_cpu_emulates_it(tmp_path, monkeypatch, capsys):
    from mulinterp.training import Trainer

    monkeypatch.setattr("mulinterp.training.loop.cpu_flags", lambda: frozenset({"avx", "avx2"}))
    trainer = Trainer(tiny_cfg(regime="sft", steps=2, cpu_bf16=True), tmp_path / "m.safetensors")
    assert "computing in fp32" in capsys.readouterr().err
    tokens = trainer.task.encode(*trainer.task.sample(4, "train", seed=0), "plain")
    with trainer._autocast():
        assert trainer.net(tokens).dtype == torch.float32


def test_cpu_flags_and_the_bf16_decision(tmp_path):
    from mulinterp.training.precision import cpu_flags, resolve_cpu_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}  # the first CPU's line
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert "bf16" in cpu_flags(info)
    assert cpu_flags(tmp_path / "absent") is None
    assert resolve_cpu_bf16(True, frozenset({"amx_bf16"})) == (True, None)
    assert resolve_cpu_bf16(True, frozenset({"bf16"})) == (True, None)  # ARM
    use, note = resolve_cpu_bf16(True, frozenset({"avx2"}))
    assert not use and "fp32" in note
    assert resolve_cpu_bf16(True, None) == (True, None)  # unreadable flags: the request stands
    assert resolve_cpu_bf16(False, frozenset({"amx_bf16"})) == (False, None)


def test_cpu_has_native_bf16_reads_this_machines_flags(monkeypatch):
    from mulinterp.training import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.cpu_has_native_bf16() is False
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert precision.cpu_has_native_bf16() is True


def test_evaluation_splits_by_commuted_twin():
    """An oracle that only knows problems whose twin b × a it was 'trained' on scores 1 and 0."""
    from mulinterp.arithmetic import to_digits
    from mulinterp.evaluation import evaluate_split

    task = MulTask(2, 2)

    def oracle(seq):
        digits = seq[:, : task.input_len]
        a = digits[:, 0] + 10 * digits[:, 1]
        b = digits[:, 3] + 10 * digits[:, 4]
        true = to_digits(a * b, task.n_c)
        k = seq.shape[1] - task.answer_start("plain") - 1  # digits written so far
        nxt = torch.where(task.in_split(b, a, "train"), true[:, k], (true[:, k] + 1) % 10)
        logits = torch.zeros(seq.shape[0], seq.shape[1], D_VOCAB)
        logits[:, -1] = torch.nn.functional.one_hot(nxt, D_VOCAB).float()
        return logits

    res = evaluate_split(oracle, task, "test")
    twin = res.to_dict()["commuted_twin"]
    assert twin["in_train"]["n"] + twin["held_out"]["n"] == res.n == len(task.enumerate_split("test")[0])
    assert twin["in_train"]["exact_match"] == 1.0 and twin["held_out"]["exact_match"] == 0.0
    assert twin["held_out"]["n"] > 0


def _trainer_hooks(module) -> list:
    """Hooks held by a Trainer (TransformerLens wires capture hooks of its own; those stay)."""
    from mulinterp.training import Trainer

    hooks = [h for mod in module.modules() for h in (*mod._forward_pre_hooks.values(), *mod._forward_hooks.values())]
    return [h for h in hooks if isinstance(getattr(h, "__self__", None), Trainer)]


def test_a_trained_aux_model_carries_no_hook(tmp_path):
    """The trainer's hook_z grab is removed when training ends, even when a step raises."""
    from mulinterp.training import Trainer

    t = Trainer(tiny_cfg(regime="aux", steps=5), tmp_path / "m.safetensors")
    seen = []
    one_step = t._one_step

    def spy(*args):
        seen.append(len(_trainer_hooks(t.net)))
        return one_step(*args)

    t._one_step = spy
    m = t.run(progress=False)
    assert seen == [1] * 5  # the hook is there while training …
    assert _trainer_hooks(m.model) == [] and _trainer_hooks(t.net) == []  # … and gone afterwards

    t = Trainer(tiny_cfg(regime="aux", steps=5), tmp_path / "n.safetensors")

    def boom(*_):
        raise RuntimeError("planted failure")

    t._one_step = boom
    with pytest.raises(RuntimeError, match="planted"):
        t.run(progress=False)
    assert _trainer_hooks(t.net) == []


def test_icot_telemetry_reports_answers_at_the_removal_stage(tmp_path):
    from mulinterp.training.loop import Trainer

    out = tmp_path / "icot.safetensors"
    train(tiny_cfg(regime="icot", steps=40, epoch_size=640, remove_per_epoch=4), out, progress=False)
    rows = [json.loads(line) for line in telemetry_path(out).read_text().splitlines()]
    staged = [r for r in rows if r["cot_remaining"] > 0]
    assert staged and all(len(r["stage_digit_acc"]) == 4 and 0 <= r["stage_exact"] <= 1 for r in staged)
    assert all(len(r["stage_digit_loss"]) == 4 and min(r["stage_digit_loss"]) > 0 for r in staged)
    assert all("stage_exact" not in r for r in rows if r["cot_remaining"] == 0)

    # an oracle that predicts each next token scores 1 at every stage; shifted by one it scores 0
    trainer = Trainer(tiny_cfg(regime="icot"), tmp_path / "oracle.safetensors")

    class Oracle(torch.nn.Module):
        shift = 1

        def forward(self, tokens):
            nxt = torch.roll(tokens, -self.shift, dims=1)
            return torch.nn.functional.one_hot(nxt, D_VOCAB).float()

    trainer.net = Oracle()
    right = math.log(math.e + D_VOCAB - 1) - 1  # CE of a one-hot logit on the right token
    for removed in (0, 3, trainer.task.cot_len - 1):
        m = trainer.stage_metrics(removed)
        assert (m["stage_digit_acc"], m["stage_exact"]) == ([1.0] * 4, 1.0)
        assert m["stage_digit_loss"] == pytest.approx([right] * 4, abs=1e-3)
    Oracle.shift = 2
    m = trainer.stage_metrics(3)
    assert m["stage_exact"] < 0.2
    # a wrong digit costs one nat more than a right one
    wrong = [1 - acc for acc in m["stage_digit_acc"]]
    assert m["stage_digit_loss"] == pytest.approx([right + w for w in wrong], abs=1e-3)


def test_gated_removal_waits_for_time_and_for_the_stage_to_recover(tmp_path):
    from mulinterp.training.loop import Trainer

    # 64 examples per token; the gate opens at 90 % stage exact match
    cfg = tiny_cfg(regime="icot", epoch_size=640, remove_per_epoch=10, removal_gate=0.9)
    t = Trainer(cfg, tmp_path / "g.safetensors")
    assert t.removed_now() == 0
    t.examples = 100
    t.maybe_open_gate(0.5)  # waited long enough, not recovered
    assert t.removed_now() == 0
    t.maybe_open_gate(0.95)
    assert t.removed_now() == 1 and t.gate_since == 100
    t.examples = 150
    t.maybe_open_gate(1.0)  # recovered, but only 50 examples since the last removal
    assert t.removed_now() == 1
    t.examples = 164
    t.maybe_open_gate(0.9)
    assert t.removed_now() == 2
    # a gated fork of a scheduled run starts where the schedule had got to
    f = Trainer(cfg, tmp_path / "f.safetensors")
    f.last_removed, f.examples = 7, 5000
    assert f.removed_now() == 7 and f.gate_since == 5000
    # the gate's state survives a resume
    out = tmp_path / "run.safetensors"
    train(tiny_cfg(regime="icot", removal_gate=0.9), out, stop_after=20, progress=False)
    r = Trainer(tiny_cfg(regime="icot", removal_gate=0.9), out)
    r.load_resume()
    assert r.gate_removed is not None and r.gate_since <= r.examples == 20 * 32
    with pytest.raises(ValueError, match="removal_gate"):
        tiny_cfg(regime="icot", removal_gate=1.5)


def test_the_last_tokens_can_go_on_time_without_the_gate(tmp_path):
    from mulinterp.training.loop import Trainer

    cfg = tiny_cfg(regime="icot", epoch_size=640, remove_per_epoch=10, removal_gate=0.9, ungated_last=2)
    t = Trainer(cfg, tmp_path / "u.safetensors")
    n = t.task.cot_len
    t.removed_now()
    t.gate_removed, t.gate_since, t.examples = n - 3, 0, 100
    t.maybe_open_gate(0.0)  # 3 left: still gated
    assert t.removed_now() == n - 3
    t.maybe_open_gate(0.9)
    assert t.removed_now() == n - 2 and t.gate_since == 100
    t.examples = 150
    t.maybe_open_gate(0.0)  # 2 left, ungated, but the time has not passed
    assert t.removed_now() == n - 2
    t.examples = 164
    t.maybe_open_gate(0.0)
    assert t.removed_now() == n - 1
    t.examples = 228
    t.maybe_open_gate(0.0)
    assert t.removed_now() == n
    t.examples = 1000
    t.maybe_open_gate(1.0)  # nothing left to remove
    assert t.removed_now() == n
    with pytest.raises(ValueError, match="ungated_last must be ≥ 0"):
        tiny_cfg(regime="icot", removal_gate=0.9, ungated_last=-1)
    with pytest.raises(ValueError, match="ungated_last needs removal_gate"):
        tiny_cfg(regime="icot", ungated_last=1)


def test_probe_rmse_is_in_c_hat_units():
    """A prediction off by exactly d in ĉ units has RMSE d at every position; an exact one 0."""
    from mulinterp.arithmetic import ground_truth
    from mulinterp.training.aux import RunningSumProbe

    task = MulTask(3, 3)
    probe = RunningSumProbe(task, [0, 1], 8, 1)
    a, b = task.sample(256, "val", seed=3)
    c_hat = ground_truth(a, b, 3, 3).c_hat
    exact = probe.normalise(c_hat)
    assert torch.allclose(probe.rmse(exact, c_hat), torch.zeros(task.n_c), atol=1e-4)
    off = probe.normalise(c_hat.float() + torch.tensor([2.0, -3, 2, -3, 2, -3]))
    assert torch.allclose(probe.rmse(off, c_hat), torch.tensor([2.0, 3, 2, 3, 2, 3]), atol=1e-3)


def test_aux_telemetry_rmse_matches_the_saved_probe(tmp_path):
    """The trainer's aux_rmse (its own hook on the training net) and aux_probe_rmse on the saved
    checkpoint (TransformerLens hook_z through the bridge) agree on the same problems."""
    from mulinterp.training import Trainer
    from mulinterp.training.aux import aux_probe_rmse

    t = Trainer(tiny_cfg(regime="aux"), tmp_path / "m.safetensors")
    m = t.run(progress=False)
    rows = [json.loads(line) for line in telemetry_path(tmp_path / "m.safetensors").read_text().splitlines()]
    assert all(len(r["aux_rmse"]) == 4 for r in rows)
    assert rows[-1]["step"] == 40
    saved = aux_probe_rmse(m, problems=(t.mon_a, t.mon_b))
    assert saved.tolist() == pytest.approx(rows[-1]["aux_rmse"], abs=2e-3)
    assert rows[0]["aux_rmse"] != rows[-1]["aux_rmse"]  # it tracks training, not a constant


def test_aux_probe_rmse_refuses_a_model_without_probe(tmp_path):
    from mulinterp.training.aux import aux_probe_rmse

    m = train(tiny_cfg(regime="sft", steps=10), tmp_path / "s.safetensors", progress=False)
    with pytest.raises(ValueError, match="no auxiliary probe"):
        aux_probe_rmse(m)


def test_stage_cooldown_factor_and_its_checks():
    cfg = TrainConfig(regime="icot", removal_gate=0.9, gate_cooldown_after=10, gate_cooldown_steps=20, min_lr_frac=0.1)
    # 1 until 10 steps, then down to 0.1 over 20 steps, then back up and down again (sawtooth)
    factors = [cfg.stage_lr_factor(n) for n in (0, 10, 20, 30, 31, 40, 50, 51)]
    assert factors == pytest.approx([1, 1, 0.55, 0.1, 1 - 0.9 / 20, 0.55, 0.1, 1 - 0.9 / 20])
    assert TrainConfig(regime="icot", removal_gate=0.9).stage_lr_factor(10**6) == 1.0  # off by default
    # with a rest: down over 20 steps, 5 steps at the full rate, then down again
    rest = TrainConfig(**{**cfg.to_dict(), "gate_cooldown_rest": 5})
    factors = [rest.stage_lr_factor(n) for n in (10, 20, 30, 31, 35, 36, 45, 55, 56)]
    assert factors == pytest.approx([1, 0.55, 0.1, 1, 1, 1 - 0.9 / 20, 0.55, 0.1, 1])
    with pytest.raises(ValueError, match="gate_cooldown_rest must be ≥ 0"):
        TrainConfig(regime="sft", gate_cooldown_rest=-1)  # checked even where no cool-down is on
    with pytest.raises(ValueError, match="needs removal_gate"):
        TrainConfig(regime="icot", gate_cooldown_after=10)
    with pytest.raises(ValueError, match="gate_cooldown_steps > 0"):
        TrainConfig(regime="icot", removal_gate=0.9, gate_cooldown_after=10, gate_cooldown_steps=0)


def test_a_held_stage_cools_down_and_a_removal_restores_the_lr(tmp_path):
    """A gate no tiny model can pass (every answer right) holds stage 0: the lr the telemetry
    records follows the per-stage cool-down; opening the gate restores the full lr."""
    from mulinterp.training import Trainer

    cfg = tiny_cfg(
        regime="icot", removal_gate=1.0, gate_cooldown_after=10, gate_cooldown_steps=20, min_lr_frac=0.1, warmup=1,
        schedule="constant", lr=1e-3,
    )  # fmt: skip
    t = Trainer(cfg, tmp_path / "m.safetensors")
    t.run(progress=False)
    rows = [json.loads(line) for line in telemetry_path(tmp_path / "m.safetensors").read_text().splitlines()]
    assert all(r["cot_removed"] == 0 and r["stage_exact"] < 1 for r in rows)
    # the row of step s records the lr of that step, taken after s - 1 steps at the stage
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * cfg.stage_lr_factor(r["step"] - 1) for r in rows])
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[2]["lr"] == pytest.approx(1e-3 * (1 - 19 / 20 * 0.9))
    assert rows[3]["lr"] > rows[2]["lr"]  # the sawtooth's second cycle began (step 31)
    t.gate_removed, t.gate_since = 1, t.examples  # what maybe_open_gate does when the gate opens
    assert t.current_lr() == pytest.approx(1e-3)


def _plain_phase_run(tmp_path, monkeypatch, **kw):
    """A tiny ICoT run put straight into its plain phase (every CoT token gone at step 0), with
    a sawtooth after 10 steps: falls over the steps taken after 11–30 and 41–60 steps at the
    stage, 10 full-rate steps between them. Val reads (``eval_n`` problems) are recorded."""
    from mulinterp.training import Trainer

    cfg = tiny_cfg(
        regime="icot", removal_gate=1.0, gate_cooldown_after=10, gate_cooldown_steps=20, gate_cooldown_rest=10,
        min_lr_frac=0.1, warmup=1, schedule="constant", lr=1e-3, steps=80, telemetry_every=5, eval_every=1000, **kw,
    )  # fmt: skip
    t = Trainer(cfg, tmp_path / "m.safetensors")
    t.gate_removed, t.gate_since = t.task.cot_len, 0  # what the gate leaves after the last removal
    reads, monitor = [], t.monitor

    def recording_monitor(n=None):
        res = monitor(n)
        if n == cfg.eval_n:
            reads.append(t.step)
        return res

    monkeypatch.setattr(t, "monitor", recording_monitor)
    t.run(progress=False)
    rows = [json.loads(line) for line in telemetry_path(tmp_path / "m.safetensors").read_text().splitlines()]
    return cfg, t, rows, reads


def test_plain_cooldown_keeps_the_sawtooth_after_the_last_removal_and_reads_val_where_falls_end(tmp_path, monkeypatch):
    cfg, t, rows, reads = _plain_phase_run(tmp_path, monkeypatch, plain_cooldown=True)
    assert all(r["cot_remaining"] == 0 and "stage_exact" not in r for r in rows)
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * cfg.stage_lr_factor(r["step"] - 1) for r in rows])
    assert min(r["lr"] for r in rows) < 2e-4  # it does fall
    # the last row of each fall on the 5-step grid (steps 30 and 60) carries a val read
    assert [r["step"] for r in rows if "val_exact_match" in r] == [30, 60]
    assert reads == [30, 60, 80]  # and the final eval of the finished run
    assert all(len(r["val_digit_acc"]) == t.task.n_c for r in rows if "val_exact_match" in r)
    # off (the default): the plain phase trains at the recipe's rate and reads val on schedule only
    (tmp_path / "off").mkdir()
    _, _, rows, reads = _plain_phase_run(tmp_path / "off", monkeypatch)
    assert {r["lr"] for r in rows} == {1e-3} and not any("val_exact_match" in r for r in rows)
    assert reads == [80]
    with pytest.raises(ValueError, match="plain_cooldown needs gate_cooldown_after"):
        TrainConfig(regime="icot", removal_gate=0.9, plain_cooldown=True)


def test_plain_cooldown_stops_the_run_on_the_weights_of_a_fall_that_clears_stop_at_exact(tmp_path, monkeypatch):
    """A read at a fall's end that clears the target stops the run before the next step, so the
    saved weights are the low-lr ones that were read."""
    from mulinterp.evaluation import EvalResult
    from mulinterp.training import Trainer

    def perfect_at_eval_n(self, n=None):
        return EvalResult(1.0 if n == 64 else 0.0, [1.0] * self.task.n_c, n or 0)

    monkeypatch.setattr(Trainer, "monitor", perfect_at_eval_n)
    _, t, rows, _ = _plain_phase_run(tmp_path, monkeypatch, plain_cooldown=True, stop_at_exact=0.99)
    assert t.step == 30 and rows[-1]["step"] == 30 and rows[-1]["val_exact_match"] == 1.0
    r = Trainer(t.cfg, tmp_path / "m.safetensors")
    r.load_resume()
    assert r.step == 30 and r.metrics["val"]["exact_match"] == 1.0


def test_aux_scale_weighs_c_hat_units_and_a_changed_scale_keeps_the_fitted_probe(tmp_path):
    """aux_scale=1 makes the aux loss the MSE in ĉ units; a run resumed under another
    normalisation (a fork with ``--set aux_scale=1``) keeps its fitted probe, so its loss is the
    standardised run's error re-weighted, not a probe fitted from zero."""
    import shutil

    from mulinterp.training import Trainer

    std_out, raw_out = tmp_path / "s" / "m.safetensors", tmp_path / "r" / "m.safetensors"
    std_out.parent.mkdir()
    raw_out.parent.mkdir()
    Trainer(tiny_cfg(regime="aux", steps=20), std_out).run(progress=False)
    shutil.copyfile(resume_path(std_out), resume_path(raw_out))
    std_run = Trainer(tiny_cfg(regime="aux", steps=20), std_out)
    raw_run = Trainer(tiny_cfg(regime="aux", steps=20, aux_scale=1.0), raw_out)
    std_run.load_resume()
    raw_run.load_resume()
    assert torch.equal(raw_run.probe.c_hat_std, torch.ones(4))  # 2×2: four answer digits
    sigma = std_run.probe.c_hat_std
    assert sigma.min() > 1.5  # the two normalisations differ, so the test can tell them apart
    assert raw_run.aux_rmse() == pytest.approx(std_run.aux_rmse(), abs=1e-3)  # same fit in ĉ units

    batch = make_batch(std_run.task, 64, torch.Generator().manual_seed(1), "aux", 0, math.inf)
    with std_run._probe_hook():
        _, aux_std = std_run.losses(batch)
        pred = std_run.probe(std_run.answer_z(batch.answer_start).float())
    with raw_run._probe_hook():
        _, aux_raw = raw_run.losses(batch)
    from mulinterp.arithmetic import ground_truth

    err = (pred - std_run.probe.normalise(ground_truth(batch.a, batch.b, 2, 2).c_hat)) * sigma  # ĉ units
    assert aux_std.item() == pytest.approx((err / sigma).pow(2).mean().item(), rel=1e-4)
    assert aux_raw.item() == pytest.approx(err.pow(2).mean().item(), rel=1e-3)
    assert aux_raw.item() > 2 * aux_std.item()
    with pytest.raises(ValueError, match="aux_scale must be positive"):
        tiny_cfg(regime="aux", aux_scale=0)
