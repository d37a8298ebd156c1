"""Widening a model (Net2WiderNet): same function, head numbers kept, copies free to diverge."""

import pytest
import torch
from safetensors.torch import load as st_load

from mulinterp.models import ModelSpec, MulModel, build_model, checkpoint_bytes, get_preset
from mulinterp.task import MulTask
from mulinterp.training.widen import widen_factor, widen_probe_weight, widen_state_dict, widen_tensor

TASK = MulTask(3, 3)


def scrambled_model(spec: str = "tiny", seed: int = 0):
    """A fresh model whose every tensor (LayerNorm and biases too) is random, so each one matters."""
    model = build_model(TASK, spec, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.original_model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def state_of(model) -> dict[str, torch.Tensor]:
    """The tensors exactly as a checkpoint stores them."""
    return st_load(checkpoint_bytes(MulModel(model, TASK, get_preset("tiny"))))


def widened(model, preset: str, seed: int = 1, fresh: bool = False):
    wide = build_model(TASK, preset)
    init = build_model(TASK, preset, seed=seed + 1).state_dict() if fresh else None
    wide.load_state_dict(
        widen_state_dict(state_of(model), get_preset("tiny"), get_preset(preset), seed=seed, fresh=init)
    )
    return wide


def tokens(n: int = 16):
    a, b = TASK.sample(n, "val", seed=3)
    return TASK.encode(a, b, "cot")


@pytest.mark.parametrize("fresh", [False, True], ids=["copies", "fresh"])
@pytest.mark.parametrize("preset", ["small", "cpu"])  # d32 → d64 (× 2) and → d128 (× 4)
def test_widened_model_computes_the_same_logits(preset, fresh):
    narrow = scrambled_model()
    wide = widened(narrow, preset, fresh=fresh)
    x = tokens()
    with torch.no_grad():
        before, after = narrow(x), wide(x)
    assert before.abs().max() > 1.0  # a model that says something
    torch.testing.assert_close(after, before, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("fresh", [False, True], ids=["copies", "fresh"])
def test_each_head_keeps_its_attention_pattern(fresh):
    # head h of the wide model is made of head h's dimensions (and, fresh, new ones that score
    # nothing yet): the same pattern, head by head
    narrow = scrambled_model()
    wide = widened(narrow, "small", fresh=fresh)
    x = tokens(8)
    _, c0 = narrow.run_with_cache(x, names_filter=lambda n: n.endswith("hook_pattern"))
    _, c1 = wide.run_with_cache(x, names_filter=lambda n: n.endswith("hook_pattern"))
    for layer in range(2):
        p0, p1 = c0[f"blocks.{layer}.attn.hook_pattern"], c1[f"blocks.{layer}.attn.hook_pattern"]
        assert p0.shape == p1.shape
        torch.testing.assert_close(p1, p0, atol=1e-5, rtol=1e-4)
    # and the patterns differ from head to head, so a shuffled head order would have failed
    assert not torch.allclose(p0[:, 0], p0[:, 1], atol=1e-3)


def test_the_copies_get_different_gradients():
    # identical shares would keep every copy identical for ever (no extra width); random shares
    # make the two copies of each residual dimension receive different gradients at once
    wide = widened(scrambled_model(), "small")
    x = tokens()
    wide(x).logsumexp(-1).mean().backward()
    g = dict(wide.original_model.named_parameters())["tok_embed._original_component.weight"].grad
    assert g is not None and g.abs().max() > 0
    assert not torch.allclose(g[:, :32], g[:, 32:], atol=1e-6)  # residual dim r and its copy r + 32


def test_fresh_units_are_new_features_that_learn_from_the_first_step():
    # copies start as the features they copy; fresh units must not: new MLP neurons read the
    # residual with new weights and write nothing, new head dims score and write nothing, and
    # every one of those zeros gets a gradient at once
    narrow, d_head, d_mlp = scrambled_model(), 8, 128  # tiny: d_head 8, d_mlp 128 → small: 16, 256
    wide = widened(narrow, "small", fresh=True)
    params = {n.replace("._original_component", ""): p for n, p in wide.original_model.named_parameters()}
    w_in, w_out = params["layers.0.mlp.fc_in.weight"], params["layers.0.mlp.fc_out.weight"]
    w_k, w_o = params["layers.0.attn.k.weight"], params["layers.0.attn.o.weight"]
    new_dims = torch.arange(4 * 2 * d_head) % (2 * d_head) >= d_head  # the second half of each head
    assert w_in.shape[0] == 2 * d_mlp and w_out.shape[1] == 2 * d_mlp
    assert w_out[:, d_mlp:].abs().max() == 0 and w_in[d_mlp:].abs().max() > 0
    old_rows, new_rows = w_in[:d_mlp], w_in[d_mlp:]
    corr = torch.nn.functional.cosine_similarity(old_rows, new_rows, dim=1).abs()
    assert corr.max() < 0.9  # not a copy of the neuron in the same place (a copy would read 1.0)
    assert w_k[new_dims].abs().max() == 0 and w_o[:, new_dims].abs().max() == 0
    wide(tokens()).logsumexp(-1).mean().backward()
    assert w_out.grad[:, d_mlp:].abs().max() > 0
    assert w_k.grad[new_dims].abs().max() > 0 and w_o.grad[:, new_dims].abs().max() > 0


def test_probe_weights_read_the_widened_heads_the_same():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, 8, generator=g)
    z = torch.randn(5, 6, 4, 8, generator=g)
    wide_w = widen_probe_weight(w, 2, g)
    wide_z = torch.cat([z, z], dim=-1)  # what the widened heads output: each head's dims copied
    torch.testing.assert_close(
        torch.einsum("bkhd,khd->bk", wide_z, wide_w), torch.einsum("bkhd,khd->bk", z, w), atol=1e-5, rtol=1e-5
    )
    # fresh: the old dims come first in each head and keep their weights; the new dims, whatever
    # they output, are read with weight zero
    fresh_w = widen_probe_weight(w, 2, g, fresh=True)
    fresh_z = torch.cat([z, torch.randn(z.shape, generator=g)], dim=-1)
    torch.testing.assert_close(
        torch.einsum("bkhd,khd->bk", fresh_z, fresh_w), torch.einsum("bkhd,khd->bk", z, w), atol=1e-5, rtol=1e-5
    )


def test_bad_widening_is_one_clear_error():
    tiny = get_preset("tiny")
    with pytest.raises(ValueError, match="whole multiple"):
        widen_factor(tiny, ModelSpec(d_model=48))
    with pytest.raises(ValueError, match="whole multiple"):
        widen_factor(tiny, tiny)
    with pytest.raises(ValueError, match="keeps layers and heads"):
        widen_factor(tiny, ModelSpec(d_model=64, n_layers=3))
    with pytest.raises(ValueError, match="d_mlp"):
        widen_factor(tiny, ModelSpec(d_model=64, d_mlp=64))
    with pytest.raises(ValueError, match="not a tensor of a mulinterp model"):
        widen_tensor("blocks.0.attn.rotary.weight", torch.zeros(2, 2), tiny, 2, torch.Generator())
