"""Heads, DAG + knockout, geometry and dynamics on models whose answers we know by construction."""

import dataclasses
import json
import math

import pytest
import torch

from mulinterp.circuits.dag import build_dag, candidate_edges, control_edges, knockout
from mulinterp.circuits.dynamics import learned_steps, load_telemetry
from mulinterp.circuits.geometry import (
    FOURIER_STEPS,
    additive_fit,
    best_pair_head,
    fourier_analysis,
    fourier_cumulative,
    fourier_r2,
    minkowski,
)
from mulinterp.circuits.heads import head_table
from mulinterp.hooks import block
from mulinterp.models import MulModel, build_model, get_preset, save
from mulinterp.task import MulTask

# ---------------------------------------------------------------------------------------
# the planted model
#
# A 2×2 tiny model (answer_start 6: timesteps c0..c3 are positions 6..9) whose weights are
# written by hand. Token and position embeddings live in orthogonal, zero-mean unit directions,
# so every residual vector has the same norm and LayerNorm is an exact rescaling by 4.
# * digit d embeds on a circle, cos(2πd/10)·U0 + sin(2πd/10)·U1 (a pure k=1 Fourier embedding);
# * L1H1, L1H2, L1H3 (blocks.0, heads 0–2) are pair heads: at one timestep each, QK gives
#   a_i score 30 and b_j score 30 − ln 1.5 (weights 0.6 / 0.4, everything else ≈ e^-30); at
#   every other query they attend to SEP. Their OV copies the digit circle ×5.
# * L2H1 (blocks.1, head 0) retrieves: timestep c3 attends to timestep c1; OV is zero.
# * every other head has zero QK (uniform attention, ≤ 1/7 on any key) and zero OV; MLPs
#   write nothing; the unembedding reads the digit circle.
# So the output at c0..c2 is a function of the planted pair, and cutting any edge other than
# the planted ones removes ≤ e^-30 of some row (or touches a head that writes nothing): the
# greedy answers cannot change.
PLANTED_PAIRS = {(0, 0, 0): (0, 0), (0, 1, 1): (1, 0), (0, 2, 2): (1, 1)}  # (layer, head, k) -> (i, j)
PLANTED_EDGES = {(0, 0, 6, 0), (0, 0, 6, 3), (0, 1, 7, 1), (0, 1, 7, 3), (0, 2, 8, 1), (0, 2, 8, 4), (1, 0, 9, 7)}


def planted_model() -> MulModel:
    task, spec = MulTask(2, 2), get_preset("tiny")
    model = build_model(task, spec, seed=0)
    d, dh = spec.d_model, spec.d_head
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.cat([torch.ones(d, 1), torch.randn(d, d - 1, generator=g)], 1))[0]
    U = basis[:, 1:].T  # orthonormal directions orthogonal to (1, …, 1)
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    theta = 2 * math.pi * torch.arange(10) / 10
    sd["embed.weight"][:] = U[2]  # every non-digit token
    sd["embed.weight"][:10] = torch.cos(theta)[:, None] * U[0] + torch.sin(theta)[:, None] * U[1]
    P = sd["pos_embed.weight"]
    P[:] = U[3 : 3 + P.shape[0]]
    for key in sd:
        if key.endswith(("ln1.weight", "ln2.weight")) or key == "ln_final.weight":
            sd[key][:] = 1
    sd["unembed.weight"][:10] = sd["embed.weight"][:10]
    sd["unembed.bias"][10:] = -100  # only digits are ever predicted
    start, S, sep = task.answer_start(), 30.0, task.input_len - 1
    planted = {  # (layer, head) -> {query position: {key position: score}}
        (0, 0): {start + 0: {0: S, 3: S - math.log(1.5)}},
        (0, 1): {start + 1: {1: S, 3: S - math.log(1.5)}},
        (0, 2): {start + 2: {1: S, 4: S - math.log(1.5)}},
        (1, 0): {start + 3: {start + 1: S}},
    }
    for (layer, head), rows in planted.items():
        f = 4.0 if layer == 0 else 1.0  # LayerNorm scale (layer 1 gets a larger margin)
        qw, kw = sd[f"{block(layer)}.attn.q.weight"], sd[f"{block(layer)}.attn.k.weight"]
        for r, (q, keys) in enumerate(rows.items()):
            qw[head * dh + r] = P[q] * math.sqrt(dh) / f
            kw[head * dh + r] = sum(s * P[k] for k, s in keys.items()) / f
        rest = [q for q in range(P.shape[0]) if q not in rows]
        qw[head * dh + len(rows)] = P[rest].sum(0) * math.sqrt(dh) / f
        kw[head * dh + len(rows)] = S * P[sep] / f
        if layer == 0:
            sd["blocks.0.attn.v.weight"][head * dh : head * dh + 2] = U[:2] / 4
            sd["blocks.0.attn.o.weight"][:, head * dh : head * dh + 2] = 5 * U[:2].T
    model.load_state_dict(sd)
    return MulModel(model, task, spec, {"name": "planted"})


@pytest.fixture(scope="module")
def planted():
    return planted_model()


@pytest.fixture(scope="module")
def planted_table(planted):
    return head_table(planted, n=64, seed=0)


# ---------------------------------------------------------------------------------------
def test_planted_pair_and_retrieve_heads_are_identified_exactly(planted_table):
    pairs = {(r.layer, r.head, r.position): r for r in planted_table.pairs()}
    assert {k: r.pair for k, r in pairs.items()} == PLANTED_PAIRS
    for r in pairs.values():
        assert r.weights == pytest.approx((0.6, 0.4), abs=1e-3) and r.score == pytest.approx(1.0, abs=1e-4)
    (ret,) = planted_table.retrieves()
    assert (ret.layer, ret.head, ret.position, ret.targets) == (1, 0, 3, ("c1",))
    # a planted head at its other timesteps attends to SEP: a valid, uninteresting role
    other = planted_table.select(layer=0, head=0)[3]
    assert other.role == "other" and other.targets == ("SEP",)
    rec = next(r for r in planted_table.to_records() if r["role"] == "pair" and r["position"] == 1)
    assert {k: rec[k] for k in ("layer", "head", "position", "role", "targets")} == {
        "layer": 1,
        "head": 2,
        "position": 1,
        "role": "pair",
        "targets": ["a1", "b0"],
    }  # 1-based: blocks.0, head 1
    assert rec["weights"] == pytest.approx([0.6, 0.4], abs=1e-3) and rec["score"] == pytest.approx(1.0, abs=1e-3)
    assert [r["layer"] for r in planted_table.to_records(one_based=False)] == [r.layer for r in planted_table.rows]


def test_planted_dag_has_exactly_the_planted_edges(planted_table):
    import networkx as nx

    dag = build_dag(planted_table, threshold=0.25)
    assert dag.edge_keys() == PLANTED_EDGES
    assert dag.node("L1@c2").carries == ((1, 1),)
    assert dag.node("L2@c3").carries == ((1, 0),)  # retrieved from timestep c1
    g = dag.to_networkx()
    assert nx.is_directed_acyclic_graph(g) and g.number_of_edges() == len(dag.edges)
    assert json.loads(json.dumps(dag.to_dict()))["edges"]
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        build_dag(planted_table, threshold=1.0)


def test_knocking_out_the_dag_changes_answers_random_edges_do_not(planted, planted_table):
    from mulinterp.evaluation import evaluate

    dag = build_dag(planted_table, threshold=0.25)
    res = knockout(planted, dag, n=32, seed=0, n_random=3)
    a, b = planted.task.sample(32, "test", seed=0)
    assert evaluate(planted.model, planted.task, a, b).per_digit == res.clean.per_digit
    assert res.n_edges == 7 and len(res.random) == 3
    assert res.dag_agreement < 0.5
    assert res.random_agreement == [1.0, 1.0, 1.0]
    assert res.dag_mass == pytest.approx(4.0, abs=1e-3) and max(res.random_mass) < 7 / 7 + 1e-3
    assert all(r.per_digit == res.clean.per_digit for r in res.random)
    pool = set(candidate_edges(planted.task, 2, 4)) - PLANTED_EDGES
    assert all(len(d) == 7 and set(map(tuple, d)) <= pool for d in res.extra["random_edges"])
    d = res.to_dict()
    assert (d["clean"], d["dag"], d["random"]) == (
        res.clean.exact_match,
        res.dag.exact_match,
        [r.exact_match for r in res.random],
    )
    assert d["n_edges"] == 7 and d["n"] == 32 and d["dag_agreement"] == round(res.dag_agreement, 4)


def test_mass_control_draws_heavy_non_dag_edges(planted_table):
    dag = build_dag(planted_table)
    (light,), (heavy,) = control_edges(dag, 1, 0, "count"), control_edges(dag, 1, 0, "mass")

    def mass(edges):
        return sum(float(dag.pattern[e]) for e in edges)

    assert not set(heavy) & PLANTED_EDGES and mass(heavy) > 3 * mass(light)
    # mass-matched: the draw stops at the edge that takes it past the DAG's mass
    assert mass(heavy) >= mass(dag.edge_keys()) > mass(heavy[:-1])
    with pytest.raises(ValueError, match="control"):
        control_edges(dag, 1, 0, "nonsense")
    empty = dataclasses.replace(dag, edges=[e for e in dag.edges if e.kind != "attention"])
    assert control_edges(empty, 2, 0, "mass") == [[], []] == control_edges(empty, 2, 0, "count")


def test_minkowski_of_a_planted_pair_head_is_additive(planted, planted_table):
    best = best_pair_head(planted_table)
    assert best.is_pair_head and best.pair in PLANTED_PAIRS.values()
    res = minkowski(planted, layer=0, head=2, position=2, digits=("b1", "a1"), n=400, split="any")
    assert res.fit.additive_r2 > 0.999 and res.coords.shape == (400, 3)
    assert res.fit.first_r2 < res.fit.additive_r2 and res.fit.second_r2 < res.fit.additive_r2


def test_additive_fit_separates_minkowski_sums_from_interactions():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randint(10, (2000,), generator=g), torch.randint(10, (2000,), generator=g)
    f, h = torch.randn(10, 16, generator=g), torch.randn(10, 16, generator=g)
    mink = additive_fit(0.7 * f[u] + 0.3 * h[v] + 0.01 * torch.randn(2000, 16, generator=g), u, v)
    assert mink.additive_r2 > 0.99
    cell = torch.randn(10, 10, 16, generator=g)  # one independent point per (u, v): pure interaction
    inter = additive_fit(cell[u, v], u, v)
    assert inter.interaction_r2 > 0.999 and inter.additive_r2 < 0.3


def test_fourier_fit_of_planted_fourier_functions(planted):
    n = torch.arange(10.0)
    planted_fn = torch.stack([3 + torch.cos(2 * math.pi * n / 10), torch.sin(2 * math.pi * n / 5) - 2 * (-1) ** n])
    assert fourier_r2(planted_fn) == pytest.approx(1.0, abs=1e-9)
    curve = fourier_cumulative(torch.randn(64, 10, generator=torch.Generator().manual_seed(0)))
    assert list(curve) == list(FOURIER_STEPS) and curve["const"] == pytest.approx(0, abs=1e-9)
    assert (
        curve["k=4"] == pytest.approx(1.0)
        and 0.3 < fourier_r2(torch.randn(64, 10, generator=torch.Generator().manual_seed(1))) < 0.8
    )
    res = fourier_analysis(planted, n=16)
    assert res.r2["embed"] == pytest.approx(1.0, abs=1e-5)  # the digit circle is exactly k = 1
    assert res.prism_coords.shape == (16, 3) and res.prism_position == 2 and len(res.prism_parity_corr) == 3


def _telemetry(path, accs):
    rows = [
        {
            "step": 100 * (t + 1),
            "examples": 1000 * (t + 1),
            "loss": 1.0,
            "pos_loss": [2.3 if a < 0.5 else 0.1 for a in acc],
            "grad_norm": [1.0 / (t + 1)] * 3,
            "digit_acc": acc,
            "exact_match": 0.0,
            "cot_remaining": 0,
        }
        for t, acc in enumerate(accs)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dynamics_reads_telemetry_and_finds_learning_steps(tmp_path):
    from mulinterp.viz.mechanism import dynamics_figure

    path = _telemetry(tmp_path / "m.telemetry.jsonl", [[0.5, 0.1, 0.1], [0.95, 0.1, 0.1], [1.0, 0.92, 0.1]])
    d = load_telemetry(path)
    assert d.name == "m" and d.steps == [100, 200, 300]
    assert d.learned_step == [200, 300, None]
    assert d.summary()["plateau_digits"] == [2]
    assert learned_steps(d.digit_acc, d.steps, threshold=0.5) == [100, 300, None]
    fig = dynamics_figure([d, d])
    assert len(fig.data) == 4  # 2×2: loss and gradient norm, two models
    with pytest.raises(ValueError, match="no training telemetry"):
        load_telemetry(tmp_path / "nothing.safetensors")


def test_figures_build(planted, planted_table):
    from mulinterp.viz import mechanism as viz

    dag = build_dag(planted_table)
    assert viz.dag_figure(dag).data and viz.heads_figure(planted_table).data
    html = viz.attention_view_html(planted_table.attention, layer=0, head=2)
    assert "<html" in html and "b1" in html and "unpkg.com" not in html.split("<body>")[1][:2000]
    res = minkowski(planted, 0, 2, 2, n=200, split="any")
    assert viz.minkowski_figure(res).data
    four = fourier_analysis(planted, n=16)
    assert viz.fourier_figure({"planted": four}).data and viz.prism_figure(four).data


# ---------------------------------------------------------------------------------------
# CLI, end to end on a saved checkpoint


@pytest.fixture
def cli(monkeypatch):
    import mulinterp.cli as cli_mod

    # only this file's subcommands: keeps the test independent of the other command modules
    monkeypatch.setattr(cli_mod, "COMMAND_MODULES", ["mulinterp.cli.mechanism"])
    return cli_mod.main


def test_cli_end_to_end(cli, planted, tmp_path, capsys):
    ckpt = str(save(planted, tmp_path / "planted.safetensors"))
    assert (
        cli(["heads", "--model", ckpt, "--n", "32", "--json", "--layer", "1", "--html", str(tmp_path / "h.html")]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert {(r["layer"], r["head"], r["position"], r["role"]) for r in rows if r["role"] == "pair"} == {
        (1, 1, 0, "pair"),
        (1, 2, 1, "pair"),
        (1, 3, 2, "pair"),
    }
    assert (tmp_path / "h.html").stat().st_size > 0

    assert (
        cli(
            [
                "dag",
                "--model",
                ckpt,
                "--n",
                "32",
                "--knockout-n",
                "8",
                "--random",
                "1",
                "--json",
                "--out",
                str(tmp_path / "dag.html"),
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["knockout"]["n_edges"] == 7 == sum(e["kind"] == "attention" for e in out["edges"])
    assert {
        (e["layer"] - 1, e["head"] - 1, e["query_pos"], e["key_pos"]) for e in out["edges"] if e["kind"] == "attention"
    } == PLANTED_EDGES  # the JSON is 1-based
    assert {n["id"] for n in out["nodes"]} >= {"a0", "b1", "L1@c2", "L2@c3", "c3"}
    assert out["knockout"]["random"] == [out["knockout"]["clean"]] and (tmp_path / "dag.html").is_file()

    assert (
        cli(["geometry", "--model", ckpt, "--n", "300", "--json", "--layer", "1", "--head", "3", "--position", "2"])
        == 0
    )
    geo = json.loads(capsys.readouterr().out)
    assert set(geo["fourier_r2"]) == {"embed", "unembed", "mlp_out", "final_resid"}
    assert geo["minkowski"]["layer"] == 1 and geo["minkowski"]["head"] == 3 and geo["minkowski"]["additive_r2"] > 0.99

    tel = _telemetry(tmp_path / "run.telemetry.jsonl", [[0.5, 0.95, 0.1]])
    assert cli(["dynamics", "--model", str(tel), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["learned_step"] == [None, 100, None]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dag", "--threshold", "1.5"], "threshold"),
        (["dag", "--threshold", "0"], "threshold"),
        (["heads", "--layer", "3"], "layer 3 is out of range"),
        (["geometry", "--layer", "1", "--head", "5"], "head 5 is out of range"),
        (["geometry", "--position", "4"], "position 4 is out of range"),
        (["dynamics", "--model", "MODEL"], "no training telemetry"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(cli, planted, tmp_path, capsys, argv, message):
    ckpt = str(save(planted, tmp_path / "planted.safetensors"))
    argv = [ckpt if a == "MODEL" else a for a in argv]
    if "--model" not in argv:
        argv += ["--model", ckpt]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
