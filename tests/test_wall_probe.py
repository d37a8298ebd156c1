"""scripts/wall_probe.py's two guards against misreading a probe table (session 9)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from mulinterp.arithmetic import ground_truth, to_digits
from mulinterp.task import MulTask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
wall_probe = importlib.import_module("wall_probe")  # a script, not part of the package


def stage(removed: int, regime: str = "icot") -> SimpleNamespace:
    """What wall_probe reads of a trainer: its task, regime and removal stage."""
    return SimpleNamespace(task=MulTask.parse("4x4"), cfg=SimpleNamespace(regime=regime), removed_now=lambda: removed)


def test_a_product_that_is_a_cot_token_at_the_stage_is_marked():
    t = stage(removed=33)  # 13 left: "… ) + 0 0 0 d3 d4 d5 d6 d7" of the term a·b3·10³
    a, b = t.task.sample(400, "val", seed=1)
    gt, left = ground_truth(a, b, 4, 4), wall_probe.cot_left(t, a, b)
    marks = {
        (i, j): wall_probe.cot_source(left, gt.partial_products[:, i, j] % 10)
        for i, j in ((0, 3), (1, 2), (2, 1), (3, 0))
    }
    assert marks == {(0, 3): "= cot8", (1, 2): "", (2, 1): "", (3, 0): ""}
    assert wall_probe.cot_source(left, gt.c[:, 3]) == ""  # c3 itself must be computed
    # one CoT token earlier (14 left), the running sum's digit 3 is still there, a0·b3 one further on
    assert wall_probe.cot_source(wall_probe.cot_left(stage(32), a, b), gt.partial_products[:, 0, 3] % 10) == "= cot9"


def test_an_aux_run_is_probed_in_the_plain_layout_where_nothing_is_a_cot_token():
    t = stage(removed=0, regime="aux")  # an aux trainer's removed_now() is 0, its layout plain
    assert wall_probe.removed(t) == t.task.cot_len
    a, b = t.task.sample(200, "val", seed=2)
    assert wall_probe.cot_left(t, a, b).shape == (200, 0)
    assert wall_probe.cot_source(wall_probe.cot_left(t, a, b), to_digits(a, 4)[:, 0]) == ""


def test_digits_alone_r2_is_the_linear_ceiling_of_a_product():
    a, b = MulTask.parse("4x4").sample(4000, "val", seed=3)
    x, y = to_digits(a, 4)[:, 0], to_digits(b, 4)[:, 1]
    alone = wall_probe.digits_only_r2(x, y, 3000)
    assert 0.78 < alone < 0.88  # 334 / 402 of the product's variance for independent uniform digits
    # a residual stream that holds the product itself scores ≈ 1, above the ceiling
    feats = torch.stack([x, y, x * y], -1).float()[None]
    assert float(wall_probe.r2(feats, x * y, 3000)[0]) > 0.99 > alone
