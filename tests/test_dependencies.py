"""Attribution, DLA, patching and probes on tiny models (CPU, fast).

Besides the generic tiny model, a *planted* model is built by hand: every component is
silent except one head, L2H3 (``blocks.1``, head 2), which attends from every position to the
digit ``a_1`` and copies it to the logits. Its circuit is known exactly, so each analysis must
find it — and find nothing else.
"""

from __future__ import annotations

import json

import pytest
import torch

from mulinterp.arithmetic import to_digits
from mulinterp.circuits import patching, probes, problems
from mulinterp.circuits.attribution import logit_attribution
from mulinterp.circuits.dla import direct_logit_attribution
from mulinterp.circuits.patching import Site, patch_head, patch_heads, prepare, run_patches
from mulinterp.circuits.problems import corrupt_digit, parse_operand_digit
from mulinterp.hooks import attach, block, knockout_edges
from mulinterp.hooks import patch as hooks_patch
from mulinterp.models import ModelSpec, MulModel, build_model, get_preset, save
from mulinterp.task import MulTask

TASK = MulTask(2, 2)
PLANT_LAYER, PLANT_HEAD, PLANT_DIGIT = 1, 2, 1  # L2H3 reads a_1


def n_hooks(model) -> int:
    points = {id(hp): hp for hp in model.hook_dict.values()}.values()
    return sum(len(hp._forward_hooks) for hp in points)


def planted_model(task: MulTask = TASK) -> MulModel:
    """All heads and MLPs silent except L2H3, which copies the digit a_1 to the logits."""
    spec = ModelSpec(d_model=64, n_layers=2, n_heads=4)
    model = build_model(task, spec, seed=0)
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}  # TransformerLens names
    for k in sd:
        if k.endswith("ln1.weight") or k.endswith("ln2.weight") or k == "ln_final.weight":
            sd[k] = torch.ones_like(sd[k])
    d_head, vocab, n_ctx = spec.d_head, sd["embed.weight"].shape[0], sd["pos_embed.weight"].shape[0]
    sd["embed.weight"][:, :vocab] = 4 * torch.eye(vocab)  # token one-hots: dims 0..17
    sd["pos_embed.weight"][:, vocab : vocab + n_ctx] = 4 * torch.eye(n_ctx)  # position one-hots: dims 18..
    out_dims = 40  # the head writes the digit into dims 40..49, which only the unembedding reads
    attn, r0 = f"{block(PLANT_LAYER)}.attn", PLANT_HEAD * d_head  # nn.Linear weights are [out, in]
    sd[f"{attn}.q.bias"][r0] = 1.0  # a constant query …
    sd[f"{attn}.k.weight"][r0, vocab + PLANT_DIGIT] = 10.0  # … that matches only a_1's position
    for d in range(10):
        sd[f"{attn}.v.weight"][r0 + d, d] = 1.0  # value: the digit's one-hot
        sd[f"{attn}.o.weight"][out_dims + d, r0 + d] = 1.0
        sd["unembed.weight"][d, out_dims + d] = 1.0  # logit of digit d
    model.load_state_dict(sd)
    return MulModel(model, task, spec, {"name": "planted"})


@pytest.fixture(scope="module")
def planted():
    return planted_model()


@pytest.fixture(scope="module")
def tiny(tiny22):
    assert n_hooks(tiny22.model) == 0
    return tiny22


def test_planted_model_predicts_a1(planted):
    a, b = TASK.sample(32, "any", seed=3)
    logits = problems.answer_logits(planted.model, TASK.teacher_forced(a, b), TASK)
    assert (logits.argmax(-1) == ((a // 10) % 10)[:, None]).all()


# ----- operand digits and corruption -----------------------------------------------------
def test_corrupt_digit_changes_one_digit_and_keeps_digit_counts():
    task = MulTask(3, 2)
    a, b = task.sample(2000, "any", seed=0)
    which = torch.randint(5, (2000,), generator=torch.Generator().manual_seed(1))
    a2, b2 = corrupt_digit(task, a, b, which, torch.Generator().manual_seed(2))
    old = torch.cat([to_digits(a, 3), to_digits(b, 2)], 1)
    new = torch.cat([to_digits(a2, 3), to_digits(b2, 2)], 1)
    changed = old != new
    assert (changed.sum(1) == 1).all() and (changed.float().argmax(1) == which).all()
    assert ((a2 >= 100) & (a2 < 1000) & (b2 >= 10) & (b2 < 100)).all()
    assert set(new[which == 0, 0].tolist()) == set(range(10))  # non-leading digits use all values


def test_operand_digit_parsing_and_positions():
    task = MulTask(4, 4)
    assert parse_operand_digit(task, "a1") == 1 and parse_operand_digit(task, "B2") == 6
    assert task.token_labels()[problems.digit_position(task, 6)] == "b2"
    with pytest.raises(ValueError, match="out of range.*a0–a3"):
        parse_operand_digit(task, "a4")
    with pytest.raises(ValueError, match="unknown operand digit"):
        parse_operand_digit(task, "c1")


# ----- attribution -------------------------------------------------------------------------
def test_attribution_finds_only_the_planted_digit(planted):
    att = logit_attribution(planted, n=24, seed=0)
    assert att.rows == ["a0", "a1", "b0", "b1"] and att.cols == ["c0", "c1", "c2", "c3"]
    assert att.delta.shape == (24, 4, 4)
    assert (att.matrix[1] > 1.0).all()  # changing a_1 always lowers the predicted digit's logit
    others = att.matrix[[0, 2, 3]]
    assert others.abs().max() < 1e-4


def test_attribution_is_zero_for_a_digit_nobody_attends_to(tiny):
    # knock out every attention edge into a_0's position: no later position can read a_0
    key = problems.digit_position(TASK, 0)
    seq = TASK.answer_start() + TASK.n_c
    edges = [(h, q, key) for h in range(4) for q in range(key + 1, seq)]
    with attach(tiny.model, [knockout_edges(0, edges), knockout_edges(1, edges)]):
        att = logit_attribution(tiny, n=16, seed=1)
    assert att.matrix[0].abs().max() < 1e-5
    assert att.matrix[1:].abs().max() > 1e-3  # the other digits still matter
    assert n_hooks(tiny.model) == 0


def test_attribution_other_digit_counts_and_bad_input(tiny):
    task = MulTask(3, 1)
    m = MulModel(build_model(task, "tiny", seed=1), task, get_preset("tiny"))
    att = logit_attribution(m, n=8, target="true", prefix="own")
    assert att.matrix.shape == (4, 4) and att.rows == ["a0", "a1", "a2", "b0"]
    with pytest.raises(ValueError, match="digit-count mismatch"):
        logit_attribution(tiny, a=torch.tensor([123]), b=torch.tensor([12]))


# ----- DLA ---------------------------------------------------------------------------------
@pytest.mark.parametrize("task", [TASK, MulTask(3, 1)], ids=str)
def test_dla_components_sum_to_the_logit(task):
    m = MulModel(build_model(task, "tiny", seed=2), task, get_preset("tiny"))
    d = direct_logit_attribution(m, n=16, seed=0)
    torch.testing.assert_close(d.logit.sum(-1), d.model_logit, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(d.logit_diff.sum(-1), d.model_logit_diff, atol=1e-4, rtol=1e-4)
    # the per-source split of each head adds up to that head's share
    heads = [d.components.index(f"L{l + 1}H{h + 1}") for l in range(2) for h in range(4)]
    torch.testing.assert_close(d.head_source.sum(-1).flatten(2), d.logit[..., heads], atol=1e-5, rtol=1e-5)
    assert (d.runner_up != d.target).all()
    assert (d.target == task.true_answer(*task.sample(16, "test", seed=0))).all()


def test_dla_credits_the_planted_head_and_its_source(planted):
    d = direct_logit_attribution(planted, n=16, target="predicted")
    for k in range(TASK.n_c):
        top, _, diff = d.ranked(k)[0]
        assert top == "L2H3" and diff > 1.0
        l, h, src, _ = d.ranked_sources(k, top=1)[0]
        assert (l, h, src) == (PLANT_LAYER, PLANT_HEAD, "a1")


# ----- patching ----------------------------------------------------------------------------
def test_patching_everything_is_one_and_nothing_is_zero(tiny):
    setup = prepare(tiny, corrupt="a1", n=48, seed=0)
    pos_a1 = problems.digit_position(TASK, 1)
    effect = run_patches(
        setup,
        [
            [Site("blocks.0.hook_resid_pre")],  # every position
            [Site("blocks.0.hook_resid_pre", pos_a1)],  # the one token that differs
            [Site("blocks.1.hook_resid_post")],  # the final residual stream
            [],  # nothing
            [Site("blocks.0.hook_resid_pre", 0)],  # a position that is the same in both runs
        ],
    )
    ok = setup.n_valid > 0
    assert ok.any()
    for row in (0, 1, 2):
        torch.testing.assert_close(effect[row][ok], torch.ones(int(ok.sum())), atol=1e-4, rtol=0)
    for row in (3, 4):
        torch.testing.assert_close(effect[row][ok], torch.zeros(int(ok.sum())), atol=1e-4, rtol=0)
    assert effect[:, ~ok].isnan().all()  # no pair differs there: undefined, not a ratio of noise


def test_batched_sweep_matches_one_variant_at_a_time(tiny):
    setup = prepare(tiny, corrupt="random", n=16, seed=2)
    sweep = patching.patch_head_positions(setup, batch_size=10_000)
    small = patching.patch_head_positions(setup, batch_size=16 * 13)  # 13 variants per forward, last chunk partial
    torch.testing.assert_close(sweep.effect, small.effect, equal_nan=True, atol=1e-5, rtol=1e-5)
    one = patch_head(tiny, 1, 3, position=2, setup=setup)
    torch.testing.assert_close(one.effect, sweep.effect[1, 3, TASK.answer_start() + 2], equal_nan=True)
    res = patching.patch_residual(setup)
    assert res.effect.shape == (5, TASK.answer_start() + TASK.n_c, TASK.n_c)
    assert patching.patch_layer_outputs(setup).labels[0] == ["L1 attn", "L1 MLP", "L2 attn", "L2 MLP"]


def test_batched_patching_equals_patching_by_hand(tiny):
    """run_patches (variants in the batch, forwards started at the patched layer) against a
    plain full forward per variant with mulinterp.hooks.patch."""
    setup = prepare(tiny, corrupt="b0", n=12, seed=4)
    variants = [
        [Site("blocks.1.attn.hook_z", 8, 2)],
        [Site("blocks.0.hook_mlp_out", 3)],
        [Site("blocks.0.attn.hook_z", None, 1), Site("blocks.1.hook_resid_mid", 9)],
    ]
    batched = run_patches(setup, variants)
    pos = TASK.answer_positions()
    for v, sites in enumerate(variants):
        hooks = [hooks_patch(s.hook, setup.clean_cache[s.hook], positions=s.position, head=s.head) for s in sites]
        with torch.no_grad(), attach(tiny.model, hooks):
            logits = tiny.model(setup.corrupted_tokens)[:, pos]
        ld = patching._logit_diff(logits, setup)
        torch.testing.assert_close(batched[v], setup.normalise(ld), equal_nan=True, atol=1e-5, rtol=1e-5)


def test_head_sweep_finds_the_planted_head(planted):
    setup = prepare(planted, corrupt="a1", n=24, seed=0)
    assert (setup.n_valid == 24).all()  # the planted model's answer always follows a_1
    effect = patch_heads(setup).effect  # [layer, head, k]
    torch.testing.assert_close(effect[PLANT_LAYER, PLANT_HEAD], torch.ones(TASK.n_c), atol=1e-3, rtol=0)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[PLANT_LAYER, PLANT_HEAD] = False
    assert effect[mask].abs().max() < 1e-3
    # at one answer position only: restores c_2 and nothing before it
    at2 = patch_head(planted, PLANT_LAYER, PLANT_HEAD, corrupt="a1", position=2, n=24).effect
    torch.testing.assert_close(at2, torch.tensor([0.0, 0.0, 1.0, 0.0]), atol=1e-3, rtol=0)


def test_patching_bad_input(tiny):
    with pytest.raises(ValueError, match="out of range"):
        patch_head(tiny, 2, 0, n=4)
    with pytest.raises(ValueError, match="unknown operand digit"):
        prepare(tiny, corrupt="c0", n=4)
    with pytest.raises(ValueError, match="position 4 is out of range"):
        patch_head(tiny, 0, 0, position=4, n=4)
    setup = prepare(tiny, n=4)
    with pytest.raises(ValueError, match="cannot patch"):
        run_patches(setup, [[Site("blocks.0.attn.hook_pattern")]])


def test_hooks_are_removed_when_an_analysis_raises(tiny, monkeypatch):
    setup = prepare(tiny, corrupt="a0", n=8)

    def exploding(clean, mask):
        def hook(act, hook):
            raise RuntimeError("boom inside the forward pass")

        return hook

    monkeypatch.setattr(patching, "_mask_hook", exploding)
    with pytest.raises(RuntimeError, match="boom"):
        patch_heads(setup)
    assert n_hooks(tiny.model) == 0
    monkeypatch.undo()
    assert patch_heads(setup).effect.shape == (2, 4, TASK.n_c)  # the model still works normally


# ----- probes ------------------------------------------------------------------------------
def test_ridge_probe_recovers_a_planted_linear_feature():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 600, 40, generator=g) * torch.linspace(0.1, 10, 40)  # features of very different scales
    w_true = torch.randn(3, 40, generator=g)
    y = (x @ w_true[..., None])[..., 0] + 7.0 + 0.01 * torch.randn(3, 600, generator=g)
    w, b, alpha = probes.ridge_fit_cv(x[:, :500], y[:, :500], probes.ALPHAS)
    pred = probes.ridge_predict(x[:, 500:], w, b)
    mae, r2 = probes.regression_scores(pred, y[:, 500:])
    assert (mae < 0.05).all() and (r2 > 0.999).all()
    torch.testing.assert_close(b, torch.full((3,), 7.0), atol=0.05, rtol=0)
    # pure noise: nothing to find
    _, r2_noise = probes.regression_scores(
        probes.ridge_predict(x[:, 500:], *probes.ridge_fit(x[:, :500], torch.randn(3, 500, generator=g))),
        torch.randn(3, 100, generator=g),
    )
    assert (r2_noise < 0.2).all()


def test_fit_probes_on_a_model(tiny):
    r = probes.fit_probes(tiny, target="carry", n_train=64, n_test=16, heads=True)
    assert r.sites[:2] == ["blocks.0.hook_resid_mid", "blocks.0.hook_resid_post"] and len(r.sites) == 4 + 8
    assert r.mae.shape == r.r2.shape == (12, TASK.n_c) and r.predicted.shape == (12, TASK.n_c, 16)
    assert r.weight[-1].shape == (TASK.n_c, 8)  # a head's output is d_head wide
    with pytest.raises(ValueError, match="unknown probe target"):
        probes.fit_probes(tiny, target="c")


def test_probe_scatter_plots_the_middle_digits_of_the_task(tiny):
    from mulinterp.viz.dependencies import probe_scatter

    r = probes.fit_probes(tiny, n_train=64, n_test=16)  # 2x2: answers c0..c3, middle digit c2 only
    titles = [a.text for a in probe_scatter({"m": r}).layout.annotations]
    assert len(titles) == 1 and titles[0].startswith("m: c2, MAE")
    with pytest.raises(ValueError, match="do not fit answers of 4 digits"):
        probe_scatter({"m": r}, ks=[2, 6])  # the paper's 4x4 columns on a 2x2 model


# ----- CLI ---------------------------------------------------------------------------------
@pytest.fixture()
def cli(monkeypatch):
    import mulinterp.cli as cli_mod

    monkeypatch.setattr(cli_mod, "COMMAND_MODULES", ["mulinterp.cli.dependencies"])  # only the commands under test
    return cli_mod.main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "planted.safetensors"
    save(planted_model(), path)
    return str(path)


def test_cli_json_outputs(cli, ckpt, capsys):
    assert cli(["attribute", "--model", ckpt, "--n", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == ["a0", "a1", "b0", "b1"] and out["cols"] == ["c0", "c1", "c2", "c3"]
    assert len(out["matrix"]) == 4 and out["matrix"][1][0] > 1.0

    assert cli(["patch", "--model", ckpt, "--layer", "2", "--head", "3", "--corrupt", "a1", "--n", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["layer"], out["head"], out["label"]) == (2, 3, "L2H3 (blocks.1, head 2)")
    assert out["effect"] == pytest.approx([1.0] * 4, abs=1e-3)

    assert cli(["patch", "--model", ckpt, "--corrupt", "a1", "--n", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"][6] == "L2H3" and len(out["matrix"]) == 8 and out["matrix"][6][0] == pytest.approx(1.0, abs=1e-3)

    assert cli(["probe", "--model", ckpt, "--n", "8", "--n-train", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    entry = out["models"]["planted"]
    assert entry["positions"] == ["c0", "c1", "c2", "c3"] and len(entry["mae"]) == len(entry["sites"]) == 4

    assert cli(["dla", "--model", ckpt, "--position", "1", "--n", "8"]) == 0
    assert "L2H3 (blocks.1, head 2)" in capsys.readouterr().out


def test_cli_text_output_and_figure(cli, ckpt, capsys, tmp_path):
    out_file = tmp_path / "patch.html"
    assert (
        cli(
            [
                "patch",
                "--model",
                ckpt,
                "--layer",
                "2",
                "--head",
                "3",
                "--corrupt",
                "a1",
                "--n",
                "8",
                "--out",
                str(out_file),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "L2H3 (blocks.1, head 2)" in text and "c3:   1.00" in text
    assert out_file.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["patch", "--layer", "3", "--head", "1"],
            "error: layer 3 is out of range: this model has layers 1–2 (paper numbering; TransformerLens blocks.0–blocks.1)",
        ),
        (
            ["patch", "--corrupt", "a2"],
            "error: operand digit 'a2' is out of range for the 2x2 task: a has digits a0–a1",
        ),
        (["patch", "--corrupt", "x"], "error: unknown operand digit 'x'"),
        (["patch", "--layer", "1", "--head", "1", "--position", "4"], "error: position 4 is out of range"),
        (["dla", "--position", "9"], "error: position 9 is out of range"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(cli, ckpt, capsys, argv, message):
    assert cli(argv[:1] + ["--model", ckpt, "--n", "4"] + argv[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
