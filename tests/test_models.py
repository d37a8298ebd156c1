import json

import pytest
import torch

from mulinterp.models import MulModel, get_preset, list_pretrained, load, load_pretrained, pretrained_path, save
from mulinterp.task import MulTask


def test_save_load_round_trip(tiny22, tmp_path):
    path = save(
        MulModel(tiny22.model, tiny22.task, tiny22.spec, {"regime": "sft", "steps": 3}, {"aux.w": torch.ones(2)}),
        tmp_path / "m.safetensors",
    )
    m = load(path)
    x = tiny22.task.encode(*tiny22.task.sample(8, seed=0))
    assert torch.equal(m.model(x), tiny22.model(x))
    assert m.task == MulTask(2, 2) and m.meta["steps"] == 3 and torch.equal(m.extras["aux.w"], torch.ones(2))
    assert not list(tmp_path.glob(".*tmp")), "atomic write left a temporary file"


def test_load_errors_say_what_is_wrong(tiny22, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "nope.safetensors")
    good = save(tiny22, tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="damaged|truncated"):
        load(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x03")
    with pytest.raises(ValueError, match="truncated or not a safetensors"):
        load(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="is for the 2x2 task, expected 4x4"):
        load(tmp_path / "m.safetensors", task=MulTask(4, 4))


def test_a_newer_checkpoint_format_is_one_clear_error(tiny22, tmp_path, monkeypatch):
    import mulinterp.models as models

    monkeypatch.setattr(models, "FORMAT_VERSION", "2")
    newer = save(tiny22, tmp_path / "newer.safetensors")
    monkeypatch.undo()
    for read in (load, models.read_metadata):
        with pytest.raises(ValueError, match="format version 2, newer than this mulinterp reads \\(up to 1\\)"):
            read(newer)
    assert models.read_metadata(save(tiny22, tmp_path / "current.safetensors"))["task"] == {"n_a": 2, "n_b": 2}


def test_loading_never_unpickles(tiny22, tmp_path):
    # a pickle (torch.save) file with a .safetensors name is refused, not executed
    torch.save({"x": torch.ones(1)}, tmp_path / "p.safetensors")
    with pytest.raises(ValueError):
        load(tmp_path / "p.safetensors")


def test_presets_and_registry():
    assert get_preset("paper").d_model == 768 and get_preset("paper").n_heads == 4
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="available: .*icot-4x4"):
        load_pretrained("gpt-4x4")
    assert {"icot-4x4", "sft-4x4", "aux-4x4", "aux-3x3", "icot-3x3"} <= set(list_pretrained())


def test_bundled_models_load_and_match_manifest():
    for name, info in list_pretrained().items():
        m = load_pretrained(name)
        assert f"{m.meta['regime']}-{m.task.name}" == name and m.spec.d_model == info["d_model"]
        assert m.meta["regime"] == info["regime"] and m.meta["steps"] == info["steps"]
        if "test_eval" in info:  # promoted by the campaign: measured at promotion, recorded with its draw
            assert info["test_eval"] == {
                "n": 10_000,
                "seed": 2025,
                "split": "test",
                "command": info["test_eval"]["command"],
            }
        else:  # the first GPU models carry their test result in their own metadata
            assert m.meta["metrics"]["test"]["exact_match"] == info["test_exact_match"]


def test_damaged_bundled_file_is_reported(monkeypatch, tmp_path):
    import mulinterp.models as models

    src = pretrained_path("sft-4x4")
    (tmp_path / "sft-4x4.safetensors").write_bytes(src.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "manifest.json").write_text(json.dumps({"sft-4x4": list_pretrained()["sft-4x4"]}))
    monkeypatch.setattr(models, "_checkpoint_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="damaged: checksum"):
        load_pretrained("sft-4x4")


def test_bundled_sets_and_their_bars():
    from mulinterp.models import BARS, best_bundled_set, bundled_set, bundled_sets, meets_bar

    def entry(x):
        return {"test_exact_match": x}

    manifest = {
        "sft-4x4": entry(0.001),
        "icot-4x4": entry(0.002),
        "aux-4x4": entry(0.03),
        "sft-3x3": entry(0.002),
        "icot-3x3": entry(0.996),
        "aux-3x3": entry(0.97),
        "icot-2x2": entry(1.0),
    }  # 2x2 is not a complete set
    assert [s.digits for s in bundled_sets(manifest)] == ["4x4", "3x3"]
    best = best_bundled_set(manifest)
    assert best.digits == "3x3" and best.meets_bars and best.names["icot"] == "icot-3x3"
    assert "3x3 set (sft 0.20 %, icot 99.60 %, aux 97.00 %) meets the bars" in best.describe()
    assert best.mechanism_regime == "icot"  # the paper reads the mechanism from ICoT once it learned
    assert bundled_set("4x4", manifest).mechanism_regime == "aux"  # a collapsed ICoT has no pair heads
    manifest["sft-3x3"] = entry(0.30)  # SFT learned 3x3: 2 bars met beat the 4x4 set's 1, and it says which missed
    best = best_bundled_set(manifest)
    assert (
        best.digits == "3x3" and best.bars_met == 2 and "does NOT meet the bars (misses sft < 5 %)" in best.describe()
    )
    manifest["aux-3x3"] = entry(0.94)  # a tie (1 bar each), one ICoT learned: that set
    assert best_bundled_set(manifest).digits == "3x3" and best_bundled_set(manifest).bars_met == 1
    manifest["icot-3x3"] = entry(0.5)  # a tie (1 bar each), no ICoT learned: the larger task
    manifest["sft-3x3"] = entry(0.002)
    assert best_bundled_set(manifest).digits == "4x4" and best_bundled_set(manifest).bars_met == 1
    manifest.update({"aux-4x4": entry(0.996), "icot-3x3": entry(0.999), "aux-3x3": entry(0.99)})
    manifest["sft-3x3"] = entry(0.32)  # today's manifest: 2 bars each, the 3x3 ICoT learned
    assert best_bundled_set(manifest).digits == "3x3"
    # widths (issue 11: all three the same width): an ICoT promoted at d128 beside the d512 SFT
    for name, width in [("sft-4x4", 512), ("icot-4x4", 128), ("aux-4x4", 128)] + [
        (f"{r}-3x3", 64) for r in "sft icot aux".split()
    ]:
        manifest[name]["d_model"] = width
    manifest["icot-4x4"] = {"test_exact_match": 0.996, "d_model": 128}
    mixed = bundled_set("4x4", manifest)
    assert mixed.bars_met == 3 and not mixed.same_width and not mixed.meets_bars
    assert "does NOT meet the bars (misses one width: sft d512, icot d128, aux d128)" in mixed.describe()
    assert best_bundled_set(manifest).digits == "4x4"  # three model bars beat the 3x3 set's two
    assert "d64" not in bundled_set("3x3", manifest).describe()  # one width: nothing to say
    manifest["sft-3x3"] = entry(0.01) | {"d_model": 64}
    assert best_bundled_set(manifest).digits == "3x3"  # meeting the bars at one width comes first
    manifest["sft-4x4"] = {"test_exact_match": 0.002, "d_model": 128}
    assert bundled_set("4x4", manifest).meets_bars and best_bundled_set(manifest).digits == "4x4"
    assert meets_bar("sft", 0.049) and not meets_bar("sft", BARS["sft"]) and meets_bar("icot", 0.99)
    with pytest.raises(ValueError, match="no complete bundled set for 2x2"):
        bundled_set("2x2", manifest)
    with pytest.raises(ValueError, match="no complete set"):
        best_bundled_set({})


def test_resolve_set_checks_files_against_the_set(tiny22, tmp_path):
    from mulinterp.models import build_model, resolve_set

    t22 = str(save(tiny22, tmp_path / "t22.safetensors"))
    t23 = MulModel(build_model(MulTask(2, 3), "tiny", seed=0), MulTask(2, 3), get_preset("tiny"), {"name": "t23"})
    f23 = str(save(t23, tmp_path / "t23.safetensors"))
    assert resolve_set("3x3").digits == "3x3"
    # three files of one task need no bundled set; of two tasks, the odd one is named
    assert resolve_set(None, {"sft": t22, "icot": t22, "aux": t22}, complete_without_set=True) is None
    with pytest.raises(ValueError, match=r"t23.safetensors is a 2x3 model; .*t22.safetensors is a 2x2 model"):
        resolve_set(None, {"sft": t22, "icot": t22, "aux": f23}, complete_without_set=True)
    with pytest.raises(ValueError, match="is a 2x2 model; the 3x3 set needs 3x3"):
        resolve_set("3x3", {"icot": t22})
    with pytest.raises(ValueError, match="no complete bundled set for 2x2"):  # a partial 2x2 set
        resolve_set(None, {"icot": t22})
    with pytest.raises(ValueError, match="unknown regime ict"):
        resolve_set(None, {"ict": t22})
