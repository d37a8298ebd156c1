"""``mulinterp import``: the paper's released checkpoint formats, built synthetically.

The real files (github ajyl/icot ``ckpts/``) cannot be downloaded here, so each test writes a
small checkpoint in the published layout — real key names, GPT-2's 50 257-token vocabulary,
d_model 64, random weights — imports it, and checks the converted bridge against an
independent forward pass: ``transformers``' ``GPT2LMHeadModel`` for the ICoT format, and for
the authors' ``src/transformer.py`` format a reference forward written below from the
architecture facts (unbiased-variance LayerNorm with eps 1e-9, bias-free projections, exact GELU).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import DENG_FILE

from mulinterp import paper_tokens
from mulinterp.cli import main
from mulinterp.importers import PAPER_TASK
from mulinterp.models import load
from mulinterp.task import MulTask, read_deng_file

V, D, H, LAYERS = paper_tokens.GPT2_VOCAB_SIZE, 64, 4, 2


# ----- synthetic checkpoints in the published layouts -----------------------------------


def write_icot(folder, seed=0, n_positions=64):
    """``ckpts/2L4H``: config.json (GPT-2 config under base_model) + state_dict.bin (base_model.*)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_embd=D,
        n_layer=LAYERS,
        n_head=H,
        n_positions=n_positions,
        vocab_size=V,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
    )
    hf = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # make every parameter matter (GPT-2's init leaves LN at 1/0, biases at 0)
        for name, p in hf.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "ln" in name or "bias" in name else 0.05))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"base_model": cfg.to_dict(), "tokenizer_name": "gpt2"}))
    torch.save({f"base_model.{k}": v for k, v in hf.state_dict().items()}, folder / "state_dict.bin")
    return hf


def custom_state(seed=0, probe_heads=(1, 3), max_seq_len=128):
    """``ckpts/aux_head/ckpt.pt`` (``probe_heads``) or ``ckpts/vanilla_ft/ckpt.pt`` (none)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    s = {
        "emb.embedding": r(V, D),
        "pos_emb.pos_embedding": r(max_seq_len, D),
        "ln_final.std_scale": 1 + r(D, scale=0.2),
        "ln_final.mean_scale": r(D, scale=0.2),
        "unemb.unembedding.weight": r(V, D, scale=0.2),
    }
    for l in range(LAYERS):
        for w in ("Wq", "Wk", "Wv", "Wo"):
            s[f"layers.{l}.attn.{w}.weight"] = r(D, D, scale=D**-0.5)
        s[f"layers.{l}.mlp.up_proj.weight"] = r(4 * D, D, scale=D**-0.5)
        s[f"layers.{l}.mlp.down_proj.weight"] = r(D, 4 * D, scale=(4 * D) ** -0.5)
        for ln in ("ln1", "ln2"):
            s[f"layers.{l}.{ln}.std_scale"] = 1 + r(D, scale=0.2)
            s[f"layers.{l}.{ln}.mean_scale"] = r(D, scale=0.2)
    for h in probe_heads:
        s[f"linear_regression_heads.{h}.weight"] = r(1, D // H)
    return s


def reference_forward(s, tokens):
    """The authors' transformer.py forward, from the facts in PAPER.md / the issue (not our code)."""

    def ln(x, pre):
        mu = x.mean(-1, keepdim=True)
        std = (x.var(-1, keepdim=True) + 1e-9) ** 0.5  # unbiased variance
        return (x - mu) / std * s[pre + "std_scale"] + s[pre + "mean_scale"]

    batch, seq = tokens.shape
    x = s["emb.embedding"][tokens] + s["pos_emb.pos_embedding"][:seq]
    mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1)
    for l in range(LAYERS):
        p = f"layers.{l}."
        h = ln(x, p + "ln1.")
        q, k, v = (
            F.linear(h, s[p + f"attn.{w}.weight"]).view(batch, seq, H, D // H).transpose(1, 2)
            for w in ("Wq", "Wk", "Wv")
        )
        att = (q @ k.transpose(-2, -1) / math.sqrt(D // H)).masked_fill(mask, float("-inf")).softmax(-1)
        z = (att @ v).transpose(1, 2).reshape(batch, seq, D)
        x = x + F.linear(z, s[p + "attn.Wo.weight"])
        x = x + F.linear(
            F.gelu(F.linear(ln(x, p + "ln2."), s[p + "mlp.up_proj.weight"])), s[p + "mlp.down_proj.weight"]
        )
    return F.linear(ln(x, "ln_final."), s["unemb.unembedding.weight"])


@pytest.fixture(scope="module")
def paper_ckpts(tmp_path_factory):
    """The three synthetic checkpoints, imported once through the CLI (shared by the analysis tests)."""
    root = tmp_path_factory.mktemp("paper")
    hf = write_icot(root / "ckpts" / "2L4H")
    aux, sft = custom_state(1), custom_state(2, probe_heads=())
    for name, s in (("aux_head", aux), ("vanilla_ft", sft)):
        (root / "ckpts" / name).mkdir(parents=True)
        torch.save(s, root / "ckpts" / name / "ckpt.pt")
    out = {}
    for name, src in (("icot", "2L4H"), ("aux", "aux_head/ckpt.pt"), ("sft", "vanilla_ft")):
        out[name] = root / f"paper-{name}.safetensors"
        assert main(["import", str(root / "ckpts" / src), "--out", str(out[name])]) == 0
    return {"root": root, "hf": hf, "aux_state": aux, "sft_state": sft, **out}


# ----- logits equal an independent forward ----------------------------------------------


def problems(n=6, seed=0):
    a, b = PAPER_TASK.sample(n, "any", seed=seed)
    return PAPER_TASK.encode(a, b)


def test_icot_logits_match_transformers_gpt2(paper_ckpts):
    m = load(paper_ckpts["icot"])
    tokens = problems()
    with torch.no_grad():
        ours = m.model(tokens)
        ref = paper_ckpts["hf"](paper_tokens.to_gpt2(tokens)).logits[..., paper_tokens.gpt2_order()]
    assert ours.shape == ref.shape == (6, PAPER_TASK.seq_len(), V)
    assert (ours - ref).abs().max() < 1e-4
    assert m.spec.act_fn == "gelu_new" and m.spec.n_ctx == 64 and m.meta["regime"] == "icot"


@pytest.mark.parametrize("which", ["aux", "sft"])
def test_transformer_py_logits_match_reference_forward(paper_ckpts, which):
    m = load(paper_ckpts[which])
    tokens = problems(seed=1)
    with torch.no_grad():
        ours = m.model(tokens)
        ref = reference_forward(paper_ckpts[which + "_state"], paper_tokens.to_gpt2(tokens))[
            ..., paper_tokens.gpt2_order()
        ]
    assert (ours - ref).abs().max() < 1e-4
    assert m.meta["regime"] == which and m.spec.act_fn == "gelu" and m.spec.n_ctx == 128
    if which == "aux":
        assert m.meta["imported"]["probe_heads"] == [1, 3]
        assert torch.equal(
            m.extras["linear_regression_heads.3.weight"], paper_ckpts["aux_state"]["linear_regression_heads.3.weight"]
        )
    else:
        assert m.extras == {}


def test_vocabulary_reordering_is_a_permutation_digits_first():
    order = paper_tokens.gpt2_order()
    assert sorted(order.tolist()) == list(range(V))
    assert order[:10].tolist() == [657, 352, 362, 513, 604, 642, 718, 767, 807, 860]
    ids = torch.randint(V, (3, 7))
    assert torch.equal(paper_tokens.from_gpt2(paper_tokens.to_gpt2(ids)), ids)


def test_import_prints_what_it_found(paper_ckpts, tmp_path, capsys):
    out = tmp_path / "aux.safetensors"
    assert (
        main(["import", str(paper_ckpts["root"] / "ckpts" / "aux_head"), "--out", str(out), "--name", "paper-aux"]) == 0
    )
    text = capsys.readouterr().out
    for needle in (
        "transformer-py",
        "regime     aux",
        "d_model 64",
        "2 layers × 4 heads",
        "50257 GPT-2 tokens",
        "head 1, head 3",
        f"wrote {out}",
    ):
        assert needle in text, needle
    assert load(out).name == "paper-aux" and load(out).task == MulTask(4, 4) and load(out).task.vocab == "gpt2"
    assert main(["models", str(out)]) == 0 and "paper-aux" not in capsys.readouterr().err


# ----- the paper's prompt layout, checked on the Deng validation file --------------------


@pytest.mark.skipif(not DENG_FILE.is_file(), reason="../shared/data not beside the checkout")
def test_prompt_layout_matches_the_id_table_on_the_deng_file():
    """Rebuild each problem's GPT-2 ids from the file's *text* and the documented table alone
    (`` a * b `` + <eot><eot> + `` ####`` + answer + <eot>), and compare position by position."""
    gpt2 = {row.text: row.gpt2_id for row in paper_tokens.TABLE}
    _, probs = read_deng_file(DENG_FILE)
    a, b = torch.tensor([p.a for p in probs]), torch.tensor([p.b for p in probs])
    built = paper_tokens.to_gpt2(PAPER_TASK.encode(a, b))
    for p, row in zip(probs, built.tolist()):
        head = p.line.split("||")[0]  # "5 6 3 2 * 7 4 3 4", digits already least-significant first
        expected = [gpt2[" " + sym] for sym in head.split()] + [
            gpt2[" "],
            gpt2["<|endoftext|>"],
            gpt2["<|endoftext|>"],
            gpt2[" #"],
            gpt2["###"],
        ]
        expected += [gpt2[" " + d] for d in p.answer.split()] + [gpt2["<|endoftext|>"]]
        assert row == expected
    assert built[0, :14].tolist() == [642, 718, 513, 362, 1635, 767, 604, 513, 604, 220, 50256, 50256, 1303, 21017]
    assert PAPER_TASK.answer_start() == 13 and PAPER_TASK.token_labels()[13] == "ANS"
    assert [PAPER_TASK.b_position(j) for j in range(4)] == [5, 6, 7, 8]


# ----- bad input: one line, exit 2, nothing written -------------------------------------


def _refused(capsys, out, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))
    return err


def test_random_state_dict_is_refused(tmp_path, capsys):
    src, out = tmp_path / "other.pt", tmp_path / "x.safetensors"
    torch.save({"encoder.weight": torch.ones(3, 3), "decoder.bias": torch.zeros(3)}, src)
    assert "not the paper's transformer.py state dict" in _refused(capsys, out, ["import", str(src), "--out", str(out)])


def test_truncated_file_is_refused(tmp_path, capsys):
    src, out = tmp_path / "ckpt.pt", tmp_path / "x.safetensors"
    torch.save(custom_state(0, probe_heads=()), src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    assert "not a readable torch state dict" in _refused(capsys, out, ["import", str(src), "--out", str(out)])


def test_pickled_objects_are_refused_not_executed(tmp_path, capsys):
    src, out = tmp_path / "ckpt.pt", tmp_path / "x.safetensors"
    torch.save({"config": MulTask(4, 4), "w": torch.zeros(1)}, src)  # needs unpickling a class
    assert "not a readable torch state dict" in _refused(capsys, out, ["import", str(src), "--out", str(out)])


def test_shapes_contradicting_config_are_refused(tmp_path, capsys):
    folder, out = tmp_path / "2L4H", tmp_path / "x.safetensors"
    write_icot(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["base_model"]["n_embd"] = 128
    (folder / "config.json").write_text(json.dumps(cfg))
    err = _refused(capsys, out, ["import", str(folder), "--out", str(out)])
    assert "transformer.wte.weight has shape (50257, 64), expected (50257, 128)" in err


def test_extra_layer_beyond_config_is_refused(tmp_path, capsys):
    folder, out = tmp_path / "2L4H", tmp_path / "x.safetensors"
    write_icot(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["base_model"]["n_layer"] = 1
    (folder / "config.json").write_text(json.dumps(cfg))
    assert "not in a 1-layer GPT-2" in _refused(capsys, out, ["import", str(folder), "--out", str(out)])


def test_missing_path_and_bad_out_are_refused(tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    assert "does not exist" in _refused(capsys, out, ["import", str(tmp_path / "nope"), "--out", str(out)])
    assert "neither config.json" in _refused(capsys, out, ["import", str(tmp_path), "--out", str(out)])
    bad = tmp_path / "x.pt"
    assert "must be a .safetensors file" in _refused(capsys, bad, ["import", str(tmp_path), "--out", str(bad)])


# ----- every analysis and the figures run on imported checkpoints ------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "{icot}", "{aux}", "--json"],
        ["eval", "{icot}", "--n", "8", "--json"],
        ["multiply", "3719", "3349", "--model", "{sft}", "--json"],
        ["attribute", "--model", "{icot}", "--n", "4", "--json"],
        ["dla", "--model", "{icot}", "--n", "4", "--json"],
        ["patch", "--model", "{aux}", "--n", "4", "--json"],
        ["probe", "--model", "{sft}", "--n", "64", "--json"],
        ["heads", "--model", "{aux}", "--n", "8", "--json"],
        ["dag", "--model", "{aux}", "--n", "8", "--json"],
        ["geometry", "--model", "{icot}", "--n", "64", "--json"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_analysis_runs_on_an_imported_checkpoint(paper_ckpts, argv, capsys):
    argv = [a.format(**{k: str(paper_ckpts[k]) for k in ("icot", "aux", "sft")}) for a in argv]
    assert main(argv) == 0
    json.loads(capsys.readouterr().out)  # one JSON object: the analysis produced its result


@pytest.mark.skipif(not DENG_FILE.is_file(), reason="../shared/data not beside the checkout")
def test_eval_on_the_deng_file_accepts_an_imported_model(paper_ckpts, tmp_path, capsys):
    """The Deng file's 4×4 problems are the imported model's task (tasks compare by problems).
    (Its first 20 lines: greedy decoding over 50 257 tokens is slow on a shared CPU.)"""
    head = tmp_path / "deng-head.txt"
    head.write_text("".join(DENG_FILE.read_text().splitlines(keepends=True)[:20]))
    assert main(["eval", str(paper_ckpts["aux"]), "--data", str(head), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 20


def test_figures_from_given_checkpoints(paper_ckpts, tmp_path, monkeypatch, capsys):
    import functools

    from mulinterp.circuits import probes

    monkeypatch.setattr(probes, "fit_probes", functools.partial(probes.fit_probes, n_train=64, n_test=32))
    out = tmp_path / "figs"
    argv = ["figures", "--out", str(out), "--format", "html", "--n", "8", "--quiet"]
    for regime in ("sft", "icot", "aux"):
        argv += [f"--{regime}", str(paper_ckpts[regime])]
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "index.html",
            *(
                f"{n}.html"
                for n in ("accuracy", "attribution", "probe", "attention_roles", "dag", "minkowski", "fourier", "prism")
            ),
        ]
    )
    assert "paper-icot" in (out / "prism.html").read_text()  # figures carry the checkpoint's name
    index = (out / "index.html").read_text()  # says which set the figures show and what replaced it
    assert "Models: the 4x4 set (" in index and f"icot from {paper_ckpts['icot']}" in index
    assert main(["figures", "--out", str(tmp_path / "f2"), "--icot", str(tmp_path / "missing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
