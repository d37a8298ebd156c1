"""The claims table: rows equal what the analyses return, verdict rules, README block, CLI."""

from __future__ import annotations

import json
import math
import re
import shlex

import pytest

from mulinterp import claims as C
from mulinterp.models import MulModel, build_model, get_preset, save
from mulinterp.task import MulTask

N, SEED, N_TRAIN = 24, 3, 64
KEYS = [
    "sft_fails",
    "icot_succeeds",
    "aux_rescues",
    "attribution",
    "probe",
    "heads",
    "dag",
    "minkowski",
    "fourier",
    "prism",
    "sft_plateau",
    "aux_signal",
]


def _telemetry(path, accs: list[list[float]], grads: list[list[float]]) -> None:
    rows = [
        {
            "step": 100 * (t + 1),
            "examples": 1000 * (t + 1),
            "loss": 1.0,
            "pos_loss": [2.3 if a < 0.5 else 0.1 for a in acc],
            "grad_norm": g,
            "digit_acc": acc,
            "exact_match": 0.0,
            "cot_remaining": 0,
        }
        for t, (acc, g) in enumerate(zip(accs, grads))
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Three fresh tiny 2×2 models saved as checkpoints, with telemetry beside sft and aux:
    SFT learns c0, c1, c3 and leaves c2 at chance (its gradient shrinking to 5 % of its peak);
    aux also learns c2 at step 200."""
    task, spec = MulTask(2, 2), get_preset("tiny")
    folder = tmp_path_factory.mktemp("claims")
    models, files = {}, {}
    for seed, regime in enumerate(C.REGIMES):
        m = MulModel(build_model(task, spec, seed=seed), task, spec, {"name": f"tiny-{regime}", "regime": regime})
        models[regime] = m
        files[regime] = str(save(m, folder / f"tiny-{regime}.safetensors"))
    _telemetry(folder / "tiny-sft.telemetry.jsonl", [[0.95, 0.95, 0.1, 0.95]] * 2, [[1, 1, 1, 1], [1, 1, 0.05, 1]])
    _telemetry(
        folder / "tiny-aux.telemetry.jsonl", [[0.95, 0.95, 0.1, 0.95], [1, 1, 0.92, 1]], [[1, 1, 1, 1], [1, 1, 1, 1]]
    )
    return models, files


@pytest.fixture(scope="module")
def rows(tiny_set):
    models, files = tiny_set
    return {r.key: r for r in C.claims(models, n=N, seed=SEED, progress=False, sources=files, n_train=N_TRAIN)}


# ---------------------------------------------------------------------------------------
# every row, and its numbers are the analyses' own


def test_every_row_is_present_with_a_verdict_and_a_command(rows, tiny_set):
    assert list(rows) == KEYS
    for r in rows.values():
        assert r.verdict in C.VERDICTS and r.claim and r.ours and r.paper and r.rule
        assert r.command.startswith(("mulinterp ", "for M in "))
        seeds = (f"--seed {C.EVAL_SEED}",) if r.key.endswith(("fails", "succeeds", "rescues")) else (f"--seed {SEED}",)
        assert any(s in r.command for s in seeds) or "mulinterp dynamics" in r.command
        json.dumps(r.to_dict())  # raw numbers are JSON-ready
    assert tiny_set[1]["sft"] in rows["sft_fails"].command


def test_accuracy_rows_are_a_fresh_test_evaluation(rows, tiny_set):
    from mulinterp.evaluation import evaluate_generated

    models, _ = tiny_set
    for key, regime in (("sft_fails", "sft"), ("icot_succeeds", "icot"), ("aux_rescues", "aux")):
        res = evaluate_generated(models[regime].model, models[regime].task, N, seed=C.EVAL_SEED)
        assert rows[key].raw["exact_match"] == res.exact_match and rows[key].raw["per_digit"] == res.per_digit
        assert f"--n {N} --seed {C.EVAL_SEED}" in rows[key].command


def test_dependency_rows_equal_the_analyses(rows, tiny_set):
    from mulinterp.circuits.attribution import dependency_summary, logit_attribution
    from mulinterp.circuits.probes import fit_probes

    models, _ = tiny_set
    for regime, m in models.items():
        want = dependency_summary(logit_attribution(m, n=N, seed=SEED), m.task)
        assert rows["attribution"].raw["summary"][f"tiny-{regime}"] == want
        # the CLI fits every default site; the row fits one: the same numbers
        full = fit_probes(m, n_train=N_TRAIN, n_test=N, seed=SEED)
        got = rows["probe"].raw["mae"][f"tiny-{regime}"]
        assert got == pytest.approx(full.mae[full.site_index("blocks.1.hook_resid_mid")].tolist(), abs=1e-6)


def test_mechanism_rows_equal_the_analyses_on_the_mechanism_model(rows, tiny_set):
    from mulinterp.circuits.dag import build_dag, knockout
    from mulinterp.circuits.geometry import best_pair_head, minkowski_best
    from mulinterp.circuits.heads import head_table

    models, _ = tiny_set
    assert rows["heads"].raw["model"] == "tiny-aux"  # untrained ICoT misses its bar: aux stands in
    m = models["aux"]
    table = head_table(m, n=N, seed=SEED)
    assert rows["heads"].raw["pairs"] == [r.label for r in table.pairs() if r.layer == 0]
    assert rows["heads"].raw["retrieves"] == [r.label for r in table.retrieves() if r.layer >= 1]
    ko = knockout(m, build_dag(table, C.DAG_THRESHOLD), n=N, seed=SEED, n_random=C.KNOCKOUT_RANDOM, control="count")
    assert rows["dag"].raw["count"] == ko.to_dict()
    mk = minkowski_best(m, table, n=C.MINKOWSKI_N, seed=SEED)
    assert rows["minkowski"].raw["best"] == mk.to_dict()
    assert rows["minkowski"].raw["is_pair_head"] == best_pair_head(table).is_pair_head


def test_geometry_rows_equal_the_analyses(rows, tiny_set):
    from mulinterp.circuits.geometry import fourier_analysis

    for regime, m in tiny_set[0].items():
        four = fourier_analysis(m, n=N, seed=SEED)
        # (equal up to the last bit of a least-squares solve)
        assert rows["fourier"].raw["fourier_r2"][f"tiny-{regime}"] == pytest.approx(four.r2, rel=1e-9)
        assert rows["prism"].raw["parity_corr"][f"tiny-{regime}"] == pytest.approx(four.prism_parity_corr, rel=1e-9)
    assert rows["prism"].raw["position"] == 2


def test_dynamics_rows_read_the_telemetry(rows):
    sft, aux = rows["sft_plateau"], rows["aux_signal"]
    assert sft.raw["plateau_middle_digits"] == ["c2"] and sft.raw["learned_step"] == [100, 100, None, 100]
    assert sft.verdict == "reproduced"  # c2 at chance (half of the one middle digit), gradient at 5 % of its peak
    assert aux.raw["learned_step"]["tiny-aux"] == [100, 100, 200, 100]
    assert aux.verdict == "reproduced" and "c2 at step 200" in aux.ours


def test_a_row_that_cannot_be_computed_says_so(tiny_set):
    models, files = tiny_set
    got = {
        r.key: r
        for r in C.claims(models, n=8, seed=0, progress=False, sources={"sft": files["sft"]}, n_train=16)
        if r.key in ("sft_plateau", "aux_signal")
    }
    assert got["sft_plateau"].verdict == "reproduced"  # its telemetry was found beside the file
    assert got["aux_signal"].verdict == "—" and got["aux_signal"].raw == {}
    assert got["aux_signal"].ours.startswith("not computed:") and "tiny-aux" in got["aux_signal"].ours


def test_claims_refuses_an_incomplete_or_mixed_set(tiny_set):
    models, _ = tiny_set
    with pytest.raises(ValueError, match="missing: aux"):
        C.claims({"sft": models["sft"], "icot": models["icot"]}, progress=False)
    task = MulTask(2, 3)
    other = MulModel(build_model(task, "tiny"), task, get_preset("tiny"), {"name": "x"})
    with pytest.raises(ValueError, match="share one task"):
        C.claims({**models, "aux": other}, progress=False)


def test_model_set_sentence_and_mechanism(tiny_set, rows):
    from mulinterp.models import BundledSet

    models, files = tiny_set
    bundled = BundledSet("2x2", {"sft": 0.01, "icot": 0.995, "aux": 0.97})
    ms = C.ModelSet(models, files, bundled, {"aux": files["aux"]})
    assert ms.mechanism == "icot"  # the bundled ICoT meets its bar
    assert ms.sentence([]) == f"Models: {bundled.describe()}; replaced: aux by {files['aux']}."
    assert C.ModelSet(models, files, bundled, {"icot": files["icot"]}).mechanism is None  # decided afresh
    alone = C.ModelSet(models, files, None, files).sentence(list(rows.values()))
    assert alone.startswith(f"Models from files (sft {files['sft']} ") and "do NOT meet the bars" in alone


def test_mechanism_can_be_chosen(tiny_set):
    models, files = tiny_set
    got = {r.key: r for r in C.claims(models, n=8, seed=0, progress=False, sources=files, n_train=16, mechanism="icot")}
    assert got["heads"].raw["model"] == "tiny-icot" and got["heads"].ours.startswith("tiny-icot: ")
    with pytest.raises(ValueError, match="mechanism must be one of"):
        C.claims(models, progress=False, mechanism="paper")


def test_middle_digits():
    assert C.middle_digits(8) == [2, 3, 4, 5, 6]  # 4×4: the paper's c2..c6
    assert C.middle_digits(6) == [2, 3, 4] and C.middle_digits(4) == [2] and C.middle_digits(3) == [0, 1, 2]


# ---------------------------------------------------------------------------------------
# verdict rules on planted numbers, both sides of each threshold

R, P, X = "reproduced", "partly", "not reproduced"


@pytest.mark.parametrize(
    "got, want",
    [
        (C.verdict_fails(0.0099), R),
        (C.verdict_fails(0.01), P),
        (C.verdict_fails(0.0499), P),
        (C.verdict_fails(0.05), X),
        (C.verdict_succeeds(0.99, 0.99, 0.2, 0.2), R),
        (C.verdict_succeeds(0.989, 0.99, 0.40, 0.30), P),
        (C.verdict_succeeds(0.989, 0.99, 0.39, 0.30), X),
        (C.verdict_succeeds(0.95, 0.95, 0.0, 0.0), R),
        (C.verdict_attribution(2.0, 1.0), R),
        (C.verdict_attribution(1.9, 1.0), P),
        (C.verdict_attribution(1.0, 1.0), X),
        (C.verdict_attribution(0.0, -1.0), P),  # ≥ 2× a negative number is not enough: must be positive
        (C.verdict_probe(4.9, 10.0), R),
        (C.verdict_probe(5.0, 10.0), P),
        (C.verdict_probe(10.0, 10.0), X),
        (C.verdict_probe(math.nan, 10.0), X),
        (C.verdict_heads(5, 3, 3, 1), R),
        (C.verdict_heads(5, 3, 3, 0), P),
        (C.verdict_heads(5, 2, 3, 4), P),
        (C.verdict_heads(0, 0, 3, 4), X),
        (C.verdict_dag(0.0, [1.0]), "—"),
        (C.verdict_minkowski(True, 0.8), R),
        (C.verdict_minkowski(True, 0.79), P),
        (C.verdict_minkowski(False, 0.95), P),
        (C.verdict_minkowski(True, 0.49), X),
        (C.verdict_fourier(0.9, 0.78), R),
        (C.verdict_fourier(0.9, 0.79), P),
        (C.verdict_fourier(0.89, 0.0), X),
        (C.verdict_fourier(math.nan, 0.0), X),
        (C.verdict_prism(0.8, 0.49), R),
        (C.verdict_prism(0.8, 0.5), P),
        (C.verdict_prism(0.79, 0.0), X),
        (C.verdict_plateau(3, 5, 0.1), R),
        (C.verdict_plateau(3, 5, 0.11), P),
        (C.verdict_plateau(2, 5, 0.01), P),
        (C.verdict_plateau(0, 5, 0.01), X),
        (C.verdict_aux_signal([True, True], [False, False]), R),
        (C.verdict_aux_signal([True, False], [False, False]), P),
        (C.verdict_aux_signal([True, False], [True, False]), X),
        (C.verdict_aux_signal([], []), X),
    ],
)
def test_verdict_rules(got, want):
    assert got == want


def test_dag_is_decisive_only_when_it_changes_twice_what_every_control_does():
    assert C.dag_decisive(0.0, [0.6, 0.5])  # changes 100 %, controls ≤ 50 %
    assert not C.dag_decisive(0.0, [0.6, 0.4])  # a control changes 60 %
    assert not C.dag_decisive(0.0, [0.0])  # both change everything: not decisive
    assert not C.dag_decisive(1.0, [1.0])  # nothing changes


def test_every_rule_is_written_down():
    for fn in (C.verdict_fails, C.verdict_probe, C.dag_decisive, C.verdict_aux_signal):
        assert C._rule(fn) and "\n" not in C._rule(fn)


# ---------------------------------------------------------------------------------------
# the Markdown table and the README block


def test_markdown_table(rows):
    text = C.markdown(list(rows.values()), "Models: x.")
    lines = text.splitlines()
    assert lines[0] == "Models: x." and lines[2] == "| paper claim | command | our number | verdict | paper's number |"
    assert len(lines) == 4 + len(KEYS) and all(line.count(" | ") == 4 for line in lines[4:])
    piped = C.Claim("k", "a | b", "mulinterp x", "1", "2", "—", "r")
    assert "a \\| b" in C.markdown([piped])


def test_readme_block_is_replaced_idempotently(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# t\n\nintro\n\n<!-- claims:begin (an older comment) -->\nold table\n<!-- claims:end -->\n\n## Next\n"
    )
    assert C.update_readme(readme, "| new |") is True
    text = readme.read_text()
    assert text == f"# t\n\nintro\n\n{C.README_BEGIN}\n| new |\n{C.README_END}\n\n## Next\n"
    assert C.update_readme(readme, "| new |") is False and readme.read_text() == text
    assert C.update_readme(readme, "| newer |") is True and "| new |" not in readme.read_text()


@pytest.mark.parametrize(
    "content, message",
    [
        ("# no markers\n", "found 0 and 0"),
        (f"{C.README_BEGIN}\nx\n", "found 1 and 0"),
        (f"{C.README_END}\nx\n{C.README_BEGIN}\n", "before the begin marker"),
        (f"{C.README_BEGIN}\n{C.README_END}\n{C.README_BEGIN}\n{C.README_END}\n", "found 2 and 2"),
    ],
)
def test_a_readme_without_usable_markers_is_refused(tmp_path, content, message):
    readme = tmp_path / "README.md"
    readme.write_text(content)
    with pytest.raises(ValueError, match=message):
        C.update_readme(readme, "| x |")
    assert readme.read_text() == content


# ---------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def cli():
    import mulinterp.cli as cli_mod

    return cli_mod.main  # every command module: the table's commands use eval, attribute, probe, …


def _file_args(files):
    return [a for r in C.REGIMES for a in (f"--{r}", files[r])]


def test_cli_end_to_end_json_and_readme(cli, tiny_set, tmp_path, capsys):
    _, files = tiny_set
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{C.README_BEGIN}\n{C.README_END}\ntail\n")
    argv = ["claims", *_file_args(files), "--n", "8", "--seed", "1", "--quiet", "--readme", str(readme)]
    assert cli([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in out["rows"]] == KEYS and out["n"] == 8 and out["seed"] == 1
    assert out["models"].startswith("Models from files (sft ") and "do NOT meet the bars" in out["models"]
    text = readme.read_text()
    assert text.startswith(f"# t\n{C.README_BEGIN}\n{out['models']} Regenerate with `mulinterp claims --sft ")
    assert "| paper claim | command | our number | verdict | paper's number |" in text and text.endswith("tail\n")
    assert cli(argv) == 0  # the same numbers: the README is left as it is
    captured = capsys.readouterr()
    assert readme.read_text() == text and "unchanged" in captured.err
    assert "SFT fails on 2×2" in captured.out and f"$ mulinterp eval {files['sft']} --n 8" in captured.out


def _commands(command: str) -> list[str]:
    """The single commands a row's command stands for (``for M in …; do …; done`` expanded)."""
    loop = re.fullmatch(r"for M in (.+?); do (.+); done", command)
    if loop:
        return [loop.group(2).replace("$M", shlex.quote(m)) for m in shlex.split(loop.group(1))]
    return command.split("; ")


def test_each_rows_command_prints_the_rows_numbers(cli, tiny_set, capsys):
    """Run every command the table shows (with --json) and find the row's numbers in its output."""
    models, files = tiny_set
    got = C.claims(models, n=8, seed=1, progress=False, sources=files, n_train=N_TRAIN)
    label = {f: f"tiny-{r}" for r, f in files.items()}
    for r in got:
        outs = []
        for command in _commands(r.command):
            argv = shlex.split(command)
            assert argv[0] == "mulinterp"
            argv = argv[1:] + ([] if "--json" in argv else ["--json"])
            model = argv[argv.index("--model") + 1] if "--model" in argv else argv[1]
            assert cli(argv) == 0, command
            outs.append((label[model], json.loads(capsys.readouterr().out)))
        first = outs[0][1]
        if r.key in ("sft_fails", "icot_succeeds", "aux_rescues"):
            assert first["exact_match"] == pytest.approx(r.raw["exact_match"])
        elif r.key == "attribution":
            assert {m: o["summary"] for m, o in outs} == r.raw["summary"]
        elif r.key == "probe":
            for name, res in first["models"].items():
                site = res["sites"].index(r.raw["site"])
                assert res["mae"][site] == pytest.approx(r.raw["mae"][name], abs=1e-4)
        elif r.key == "heads":
            pairs = [
                f"L{o['layer']}H{o['head']}@c{o['position']} {o['targets'][0]}·{o['targets'][1]}"
                for o in first
                if o["role"] == "pair" and o["layer"] == 1
            ]
            assert sorted(pairs) == sorted(r.raw["pairs"])
        elif r.key == "dag":
            assert sum(e["kind"] == "attention" for e in first["edges"]) == r.raw["n_edges"]
            if r.raw["n_edges"]:
                assert first["knockout"]["dag_agreement"] == round(r.raw["count"]["dag_agreement"], 4)
                assert outs[1][1]["knockout"]["random_agreement"] == r.raw["mass"]["random_agreement"]
        elif r.key == "minkowski":
            assert first["minkowski"]["additive_r2"] == r.raw["best"]["additive_r2"]
            assert outs[1][1]["minkowski"]["additive_r2"] == r.raw["paper_case"]["additive_r2"]
        elif r.key == "fourier":
            for name, o in outs:
                want = r.raw["fourier_r2"][name]["final_resid"]
                assert o["fourier_r2"]["final_resid"] == pytest.approx(want, abs=1e-4)
        elif r.key == "prism":
            for name, o in outs:
                assert o["prism"]["parity_corr"] == pytest.approx(r.raw["parity_corr"][name], abs=1e-4)
        else:  # the dynamics rows
            steps = {o["name"]: o["learned_step"] for o in first}
            want = r.raw["learned_step"]
            assert steps["tiny-sft"] == (want if r.key == "sft_plateau" else want["tiny-sft"])


def test_cli_defaults_match_the_module():
    from mulinterp.cli import claims as cli_claims

    assert (cli_claims.DEFAULT_N, cli_claims.EVAL_SEED, cli_claims.N_TRAIN) == (C.DEFAULT_N, C.EVAL_SEED, C.N_TRAIN)
    assert (cli_claims.KNOCKOUT_N, cli_claims.MINKOWSKI_N) == (C.KNOCKOUT_N, C.MINKOWSKI_N)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "5x5"], "no complete bundled set for 5x5"),
        (["--n", "0"], "--n must be positive"),
        (["--sft", "MISSING"], "does not exist"),
        (["--sft", "SFT"], "is a 2x2 model; the 4x4 set needs 4x4"),
        (["--readme", "NOMARKERS"], "has no usable claims markers"),
        (["--readme", "MISSING"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(cli, tiny_set, tmp_path, capsys, extra, message):
    _, files = tiny_set
    (tmp_path / "README.md").write_text("# no markers\n")
    subst = {
        "MISSING": str(tmp_path / "missing.safetensors"),
        "SFT": files["sft"],
        "NOMARKERS": str(tmp_path / "README.md"),
    }
    argv = ["claims", "--quiet", *[subst.get(a, a) for a in extra]]
    if "--set" not in extra:
        argv += ["--set", "4x4"]
    if extra[0] == "--readme":
        argv += _file_args(files)
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert (tmp_path / "README.md").read_text() == "# no markers\n"
