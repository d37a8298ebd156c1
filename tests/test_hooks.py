"""mulinterp.hooks on a tiny untrained model (2×2 task, CPU): each factory edits exactly what
it says, and hooks never outlive their ``with`` block."""

from __future__ import annotations

import pytest
import torch

from mulinterp.hooks import attach, knockout_edges, mean_ablate, patch, patch_pattern, record, zero_ablate
from mulinterp.models import MulModel, get_preset
from mulinterp.task import MulTask

TASK = MulTask(2, 2)
Z0, PAT0, RESID0 = "blocks.0.attn.hook_z", "blocks.0.attn.hook_pattern", "blocks.0.hook_resid_pre"


@pytest.fixture(scope="module")
def model(tiny22):
    # the session's shared tiny model: every test here leaves it without hooks (and checks that)
    assert tiny22.task == TASK and n_hooks(tiny22.model) == 0
    return tiny22.model


@pytest.fixture(scope="module")
def tokens():
    a, b = TASK.sample(6, seed=1)
    return TASK.encode(a, b)


@pytest.fixture(scope="module")
def clean(model, tokens):
    with torch.no_grad():
        return model.run_with_cache(tokens)


def n_hooks(model) -> int:
    """Forward hooks registered on any hook point (aliases resolve to the same object)."""
    points = {id(hp): hp for hp in model.hook_dict.values()}.values()
    return sum(len(hp._forward_hooks) for hp in points)


def run(model, tokens, hooks, names=()):
    with torch.no_grad(), attach(model, hooks), record(model, names) as acts:
        logits = model(tokens)
    return logits, acts


def test_record_captures_shapes_and_values(model, tokens, clean):
    _, cache = clean
    names = [RESID0, PAT0, Z0, "blocks.1.hook_mlp_out", "hook_embed"]
    with torch.no_grad(), record(MulModel(model, TASK, get_preset("tiny")), names) as acts:
        model(tokens)
    b, s = tokens.shape
    assert set(acts) == set(names)  # keyed by the names asked for, even for aliases like hook_z
    assert acts[RESID0].shape == (b, s, 32)
    assert acts[PAT0].shape == (b, 4, s, s)
    assert acts[Z0].shape == (b, s, 4, 8)
    for name in names:
        torch.testing.assert_close(acts[name], cache[name])
        assert not acts[name].requires_grad
    assert n_hooks(model) == 0


def test_zero_ablate_one_head_touches_only_that_head(model, tokens, clean):
    logits_clean, cache = clean
    logits, acts = run(model, tokens, [zero_ablate(Z0, head=1)], [Z0])
    z = acts[Z0]
    assert torch.all(z[:, :, 1] == 0)
    keep = [0, 2, 3]
    torch.testing.assert_close(z[:, :, keep], cache[Z0][:, :, keep])
    assert not torch.allclose(logits, logits_clean)


def test_zero_ablate_positions_and_head(model, tokens, clean):
    _, cache = clean
    _, acts = run(model, tokens, [zero_ablate(Z0, head=2, positions=[3, 5])], [Z0])
    z, z0 = acts[Z0], cache[Z0]
    assert torch.all(z[:, [3, 5], 2] == 0)
    untouched = torch.ones_like(z, dtype=torch.bool)
    untouched[:, [3, 5], 2] = False
    torch.testing.assert_close(z[untouched], z0[untouched])

    _, acts = run(model, tokens, [zero_ablate(RESID0, positions=4)], [RESID0])
    r = acts[RESID0]
    assert torch.all(r[:, 4] == 0)
    torch.testing.assert_close(r[:, :4], cache[RESID0][:, :4])
    torch.testing.assert_close(r[:, 5:], cache[RESID0][:, 5:])


def test_mean_ablate_sets_the_mean_only_where_asked(model, tokens, clean):
    logits_clean, cache = clean
    mean = cache[Z0].mean(0)
    logits, acts = run(model, tokens, [mean_ablate(Z0, mean, head=0, positions=slice(2, 6))], [Z0])
    z = acts[Z0]
    torch.testing.assert_close(z[:, 2:6, 0], mean[2:6, 0].expand_as(z[:, 2:6, 0]))
    torch.testing.assert_close(z[:, :2], cache[Z0][:, :2])
    torch.testing.assert_close(z[:, 2:6, 1:], cache[Z0][:, 2:6, 1:])
    assert not torch.allclose(logits, logits_clean)
    with pytest.raises(ValueError, match="does not broadcast"):
        run(model, tokens, [mean_ablate(Z0, torch.zeros(3, 3))])
    assert n_hooks(model) == 0


def test_patch_all_of_resid_pre_0_restores_clean_logits(model, tokens, clean):
    logits_clean, cache = clean
    corrupted = tokens.flip(0)
    with torch.no_grad():
        logits_corrupt = model(corrupted)
    assert not torch.allclose(logits_corrupt, logits_clean)
    logits, _ = run(model, corrupted, [patch(RESID0, cache[RESID0])])
    torch.testing.assert_close(logits, logits_clean)
    # at positions only: the patched positions (and everything before them) match the clean run
    logits, _ = run(model, corrupted, [patch(RESID0, cache[RESID0], positions=list(range(5)))])
    torch.testing.assert_close(logits[:, :5], logits_clean[:, :5])
    assert not torch.allclose(logits[:, 5:], logits_clean[:, 5:])


def test_patch_one_head(model, tokens, clean):
    _, cache = clean
    corrupted = tokens.flip(0)
    with torch.no_grad():
        _, cache_corrupt = model.run_with_cache(corrupted)
    _, acts = run(model, corrupted, [patch(Z0, cache[Z0], head=3)], [Z0])
    torch.testing.assert_close(acts[Z0][:, :, 3], cache[Z0][:, :, 3])
    torch.testing.assert_close(acts[Z0][:, :, :3], cache_corrupt[Z0][:, :, :3])
    with pytest.raises(ValueError, match="shape"):
        run(model, corrupted[:2], [patch(Z0, cache[Z0])])
    assert n_hooks(model) == 0


def test_patch_pattern(model, tokens, clean):
    _, cache = clean
    corrupted = tokens.flip(0)
    with torch.no_grad():
        _, cache_corrupt = model.run_with_cache(corrupted)
    _, acts = run(model, corrupted, [patch_pattern(0, 2, cache[PAT0], query_positions=[7, 8])], [PAT0])
    p, pc = acts[PAT0], cache_corrupt[PAT0]
    torch.testing.assert_close(p[:, 2, [7, 8]], cache[PAT0][:, 2, [7, 8]])
    other = torch.ones_like(p, dtype=torch.bool)
    other[:, 2, [7, 8]] = False
    torch.testing.assert_close(p[other], pc[other])

    # a hand-made one-head pattern: every query attends to position 0 only
    s = tokens.shape[1]
    bos_only = torch.zeros(tokens.shape[0], s, s)
    bos_only[:, :, 0] = 1
    logits, acts = run(model, tokens, [patch_pattern(0, 1, bos_only)], [PAT0, Z0])
    torch.testing.assert_close(acts[PAT0][:, 1], bos_only)
    # every position's z for that head is then the value vector at position 0
    z1 = acts[Z0][:, :, 1]
    torch.testing.assert_close(z1, z1[:, :1].expand_as(z1))


def test_knockout_edges_zero_and_renormalise(model, tokens, clean):
    logits_clean, cache = clean
    edges = [(1, 5, 2), (1, 5, 3), (3, 9, 0), (0, 0, 0)]
    logits, acts = run(model, tokens, [knockout_edges(0, edges)], [PAT0])
    p, p0 = acts[PAT0], cache[PAT0]
    for h, q, k in edges:
        assert torch.all(p[:, h, q, k] == 0)
    rows = torch.tensor([(h, q) for h, q, _ in edges])
    sums = p[:, rows[:, 0], rows[:, 1]].sum(-1)
    torch.testing.assert_close(sums[:, :3], torch.ones_like(sums[:, :3]))
    assert torch.all(sums[:, 3] == 0)  # query 0 sees only key 0: nothing left, stays zero
    # renormalised rows keep the relative weights of the surviving keys
    kept = p0[:, 1, 5].clone()
    kept[:, [2, 3]] = 0
    torch.testing.assert_close(p[:, 1, 5], kept / kept.sum(-1, keepdim=True))
    # other rows are untouched
    untouched = torch.ones_like(p, dtype=torch.bool)
    untouched[:, rows[:, 0], rows[:, 1]] = False
    torch.testing.assert_close(p[untouched], p0[untouched])
    assert not torch.allclose(logits, logits_clean)


def test_hooks_removed_when_the_body_raises(model, tokens, clean):
    logits_clean, _ = clean
    assert n_hooks(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with attach(model, [zero_ablate(Z0), knockout_edges(1, [(0, 3, 1)])]), record(model, [RESID0]):
            assert n_hooks(model) == 3
            raise RuntimeError("boom")
    assert n_hooks(model) == 0 and model.list_hooks() == {}
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), logits_clean)


def test_attach_leaves_outside_hooks_alone(model, tokens):
    with model.hooks(fwd_hooks=[zero_ablate(RESID0, positions=0)]):
        with attach(model, [zero_ablate(Z0, head=0)]):
            assert n_hooks(model) == 2
        assert n_hooks(model) == 1
    assert n_hooks(model) == 0


def test_out_of_range_indices_raise_clear_errors(model, tokens):
    with pytest.raises(ValueError, match="layers 0–1"):
        with attach(model, [knockout_edges(5, [(0, 1, 0)])]):
            pass
    with pytest.raises(ValueError, match="no hook point named"):
        with record(model, ["blocks.0.hook_nonsense"]):
            pass
    with pytest.raises(ValueError, match="heads 0–3"):
        run(model, tokens, [zero_ablate(Z0, head=4)])
    with pytest.raises(ValueError, match="positions 0–11"):
        run(model, tokens, [patch(RESID0, torch.zeros(6, 12, 32), positions=[12])])
    with pytest.raises(ValueError, match="valid 0–3"):
        run(model, tokens, [knockout_edges(0, [(7, 3, 1)])])
    with pytest.raises(ValueError, match="per-head"):
        run(model, tokens, [zero_ablate(RESID0, head=0)])
    assert n_hooks(model) == 0
    with pytest.raises(ValueError, match="after query"):
        knockout_edges(0, [(0, 2, 5)])
    with pytest.raises(ValueError, match="0-based"):
        zero_ablate(Z0, head=-1)


def test_hook_names_from_the_helper_are_hook_points_of_the_bridge(tiny22):
    from mulinterp.hooks import hook_name
    from mulinterp.hooks.names import hook_layer

    names = [hook_name(p) for p in ("embed", "pos_embed", "ln_final_scale")]
    names += [
        hook_name(p, layer)
        for layer in range(tiny22.n_layers)
        for p in (
            "resid_pre",
            "resid_mid",
            "resid_post",
            "attn_out",
            "mlp_out",
            "q",
            "k",
            "v",
            "z",
            "pattern",
            "attn_scores",
            "attn.hook_z",
            "hook_mlp_out",
        )
    ]
    missing = [n for n in names if n not in tiny22.model.hook_dict]
    assert not missing
    assert hook_name("z", 1) == "blocks.1.attn.hook_z" and hook_layer(hook_name("pattern", 1)) == 1
    with pytest.raises(ValueError, match="inside a block"):
        hook_name("resid_pre")
    assert tiny22.device == torch.device("cpu")
