"""End-to-end through the CLI entry point: show, models, train → eval → multiply, bad input."""

import json
import subprocess
import sys

import pytest

from mulinterp.cli import main

PAPER_LINE = (
    "9 1 7 3 * 9 4 3 3||1 7 4 3 3 + 0 6 7 8 4 1 ( 1 3 2 2 8 1 ) + 0 0 7 5 1 1 1 "
    "( 1 3 9 7 9 2 1 ) + 0 0 0 7 5 1 1 1 #### 1 3 9 4 5 4 2 1"
)


def test_show_deng_prints_the_paper_line_exactly(capsys):
    assert main(["show", "3719", "3349", "--format", "deng"]) == 0
    assert capsys.readouterr().out == PAPER_LINE + "\n"


def test_show_table_and_json(capsys):
    assert main(["show", "3719", "3349"]) == 0
    out = capsys.readouterr().out
    assert "3719 × 3349 = 12454931" in out and "81   53   99   94   45   34   12    1" in out
    assert main(["show", "12", "345", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["task"] == "2x3" and d["c"] == [0, 4, 1, 4, 0]


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["show", "0123", "5"], "leading zero"),
        (["show", "12a", "5"], "not a positive integer"),
        (["show", "123456789", "5"], "at most 8"),
        (["multiply", "371", "3349", "--model", "sft-4x4"], "exactly 4 digits"),
        (["eval", "no-such-model"], "available: "),
        (["train", "--regime", "sft", "--digits", "9x9", "--out", "x.safetensors"], "from 1 to 8"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_train_eval_multiply_round_trip(tmp_path, capsys):
    from mulinterp.evaluation import evaluate_generated
    from mulinterp.models import load

    paths = {regime: tmp_path / f"{regime}.safetensors" for regime in ("sft", "icot", "aux")}
    for regime, path in paths.items():  # one file per regime, each checked below
        assert (
            main(
                [
                    "train",
                    "--regime",
                    regime,
                    "--digits",
                    "2x2",
                    "--preset",
                    "tiny",
                    "--steps",
                    "30",
                    "--batch",
                    "32",
                    "--out",
                    str(path),
                    "--quiet",
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["models", *map(str, paths.values()), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["task"], r["regime"]) for r in rows[-3:]] == [("2x2", regime) for regime in paths]
    out = paths["aux"]
    for path in paths.values():  # the CLI reports what the library measures, seed 2025 by default
        assert main(["eval", str(path), "--n", "200", "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        m = load(path)
        expected = evaluate_generated(m.model, m.task, 200, seed=2025)
        assert d["n"] == 200 and d["exact_match"] == expected.exact_match and d["per_digit"] == expected.per_digit
    assert main(["eval", str(out), "--all", "--json"]) == 0  # every test problem of 2×2
    d = json.loads(capsys.readouterr().out)
    twin = d["commuted_twin"]
    assert d["n"] == 159 == twin["in_train"]["n"] + twin["held_out"]["n"]
    assert main(["eval", str(out), "--all", "--data", "x.txt"]) == 2
    assert main(["eval", "sft-4x4", "--all"]) == 2  # 81 M problems: refused, one line
    assert "too many to enumerate" in capsys.readouterr().err
    assert main(["multiply", "12", "34", "--model", str(out)]) == 0
    assert "true: 12 × 34 = 0408" in capsys.readouterr().out
    # a Deng file of another digit count is refused
    deng = tmp_path / "d.txt"
    deng.write_text("9 1 7 3 * 9 4 3 3||1 #### 1 3 9 4 5 4 2 1\n")
    assert main(["eval", str(out), "--data", str(deng)]) == 2


def test_default_model_is_the_best_sets_icot(capsys):
    from mulinterp.models import best_bundled_set

    best = best_bundled_set()
    n = int(best.digits.split("x")[0])
    a = b = int("7" * n)
    assert main(["multiply", str(a), str(b), "--json"]) == 0  # no --model: the best set's ICoT model
    assert json.loads(capsys.readouterr().out)["true_digits"] == [int(d) for d in reversed(str(a * b).zfill(2 * n))]
    assert main(["multiply", "1" * (n + 1), "1" * (n + 1)]) == 2  # the error names the model it defaulted to
    assert f"({best.names['icot']} is a {best.digits} model)" in capsys.readouterr().err


def test_console_script_help_and_version():
    r = subprocess.run([sys.executable, "-m", "mulinterp.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("mulinterp ")
    r = subprocess.run([sys.executable, "-m", "mulinterp.cli", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--resume" in r.stdout and "--aux-weight" in r.stdout


def test_figures_bad_input_leaves_nothing(tmp_path, capsys):
    assert main(["figures", "--out", str(tmp_path / "figs"), "--format", "svg"]) == 2
    assert "unknown figure format svg" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["figures", "--out", str(blocker)]) == 2
    assert main(["figures", "--out", str(tmp_path / "no" / "such" / "dir")]) == 2
    assert main(["figures", "--out", str(tmp_path / "figs"), "--set", "7x7"]) == 2
    assert "no complete bundled set for 7x7; sets: 4x4" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
