"""Write the example notebooks (without outputs) from the cell lists below.

    python examples/_build.py

Keeping the notebooks' source here makes them reviewable as code; CI executes the .ipynb files.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
NOTEBOOKS: dict[str, list[tuple]] = {}


def notebook(name: str, cells: list[tuple]) -> None:
    NOTEBOOKS[name] = cells


def code(src: str) -> str:
    """A code cell's source, written as an indented triple-quoted string below."""
    return dedent(src).strip("\n")


# The first code cell of every notebook that reads bundled models: it picks the set and says which.
PICK_SET = """
from mulinterp.models import best_bundled_set, bundled_set, load_pretrained

# Bundled models come in sets: sft-, icot- and aux- of one task. By default the set that
# meets the most bars (the paper's contrast), the larger task on a tie. To choose
# another set:  SET = bundled_set("4x4")
SET = best_bundled_set()
print("using", SET.describe())
print("models:", SET.names)
"""

# ... and, in the mechanism notebooks, which of its models the mechanism is read from, and why.
PICK_MECHANISM = """
from mulinterp.models import BARS

REGIME = SET.mechanism_regime  # "icot" if the bundled ICoT model met its bar, else "aux"
icot = f"the bundled ICoT model's exact match is {SET.exact['icot']:.2%}"
if REGIME == "icot":
    why = f"{icot} (bar {BARS['icot']:.0%}): it learned the task, and the paper reads the mechanism from ICoT"
else:
    why = f"{icot}, below its {BARS['icot']:.0%} bar: it did not learn the task and caches no pairs, so aux stands in"
m = load_pretrained(SET.names[REGIME])
task = m.task
print(f"mechanism model: {m.name} ({task.n_a}×{task.n_b} digits), because {why}")
"""

SET_MD = (
    "The first cell picks the *set* of bundled models (`sft-`, `icot-` and `aux-` of one task) — by default "
    "the one that meets the most of the paper's bars (`mulinterp.models.BARS`: ICoT ≥ 99 %, aux ≥ 95 %, "
    'SFT < 5 % exact match; the larger task on a tie), or `bundled_set("4x4")` for a given one — and prints which set it is and '
    "whether it meets the bars. Nothing below assumes which set that is: digit counts come from `m.task`, "
    "heads and positions from the analyses."
)

MECHANISM_MD = (
    "The mechanism (pair heads, the DAG, Minkowski sums) is read from the set's ICoT model if it met its bar, "
    "as in the paper, and otherwise from its aux model (`SET.mechanism_regime`); the first cell prints which, and why."
)

notebook(
    "01_quickstart",
    [
        (
            "md",
            "# mulinterp quickstart\n\nLoad a bundled model, ask it to multiply, look inside with `run_with_cache`, "
            "and view one head with circuitsvis.\n\n" + SET_MD + "\n\nWe use the set's ICoT model. Whether it "
            "learned the task is printed at the end; one that did not shows the structure of a model stuck in "
            "the SFT optimum.",
        ),
        (
            "code",
            code(PICK_SET)
            + "\n\n"
            + code(
                """
                from mulinterp.models import list_pretrained

                for name, info in list_pretrained().items():
                    print(f"{name}: {info['regime']}, exact match {info['test_exact_match']:.2%}")
                """
            ),
        ),
        (
            "code",
            code(
                """
                from mulinterp.evaluation import evaluate_generated, greedy_answer

                m = load_pretrained(SET.names["icot"])
                task = m.task  # task.n_a × task.n_b digits
                a, b = task.sample(1, "test", seed=0)  # one held-out problem of the task's size
                print(f"{m.name}: {a.item()} × {b.item()} = {a.item() * b.item()}")
                pred = greedy_answer(m.model, task, a, b)[0].tolist()
                print("model digits (c0 first):", pred)
                print("true digits  (c0 first):", task.ground_truth(a, b).c[0].tolist())
                """
            ),
        ),
        (
            "md",
            "## Inside the model\n\nEvery activation has a TransformerLens hook name. Positions are named by the "
            "digit they predict: the `ANS` token predicts `c0`.",
        ),
        (
            "code",
            code(
                """
                a, b = task.sample(32, "test", seed=0)
                tokens = task.encode(a, b, "plain")
                logits, cache = m.model.run_with_cache(tokens)
                print(task.token_labels())
                last = m.n_layers - 1
                names = ["blocks.0.attn.hook_pattern", f"blocks.{last}.attn.hook_z", f"blocks.{last}.hook_resid_mid"]
                print({k: tuple(cache[k].shape) for k in names})
                """
            ),
        ),
        (
            "code",
            code(
                """
                import circuitsvis as cv

                labels = task.token_labels()
                # layer 1 (blocks.0), all heads, first problem
                cv.attention.attention_patterns(tokens=labels, attention=cache["blocks.0.attn.hook_pattern"][0])
                """
            ),
        ),
        (
            "code",
            code(
                """
                from mulinterp.models import BARS, meets_bar

                res = evaluate_generated(m.model, task, 500, seed=1)
                print(f"{m.name}: exact match {res.exact_match:.2%} on {res.n} test problems; per digit", res.per_digit)
                # the verdict uses the exact match recorded for the bundled model (a larger test evaluation)
                learned = meets_bar("icot", SET.exact["icot"])
                print(f"recorded: {SET.exact['icot']:.2%}, so this ICoT model {'has' if learned else 'has NOT'} learned the task (bar ≥ {BARS['icot']:.0%})")
                print("set:", SET.describe())
                """
            ),
        ),
    ],
)

notebook(
    "06_train_your_own",
    [
        (
            "md",
            "# Train your own (2×2 digits, on a CPU)\n\nA tiny 2-layer model trains on 2×2 multiplication with plain SFT for 300 steps (under a minute on a free CPU core): it gets c0 and c3 right and the middle digits only partly. The full recipe, `mulinterp train --config recipes/sft-2x2.json --out m.safetensors` (the same settings for 8 000 steps, ≈ 4½ minutes), gets every held-out test problem right: docs/training-runs/cpu-small-tasks.md. Then we look at the model with the same tools as the bundled models.",
        ),
        (
            "code",
            "import tempfile, pathlib\nfrom mulinterp.training import TrainConfig, train\n\nout = pathlib.Path(tempfile.mkdtemp()) / 'sft-2x2.safetensors'\ncfg = TrainConfig(regime='sft', digits='2x2', preset='tiny', steps=300, batch=256, lr=1e-2, warmup=30,\n                  weight_decay=0.1, telemetry_every=50, eval_every=300, checkpoint_every=300, eval_n=500, device='cpu')\nm = train(cfg, out, progress=False)\nprint(m.meta['metrics']['val'])",
        ),
        (
            "md",
            "2×2 has only 8 100 problems, so held-out accuracy tests generalisation, not fitting. `evaluate_split` scores every test problem and splits them by whether the commuted twin b × a was in the training split: a memorising model does much better on the first group.",
        ),
        (
            "code",
            "from mulinterp.evaluation import evaluate_split\nres = evaluate_split(m.model, m.task, 'test')\nprint(res.to_dict())",
        ),
        (
            "code",
            "from mulinterp.circuits.dynamics import load_telemetry\nd = load_telemetry(out.with_name(out.stem + '.telemetry.jsonl'))\nprint('step each digit reached 90 %:', d.learned_step)",
        ),
        (
            "code",
            "from mulinterp.circuits.heads import head_table\nfrom mulinterp.circuits.attribution import logit_attribution\ntable = head_table(m, n=200, seed=0)\nfor rec in table.to_records()[:8]:\n    print(rec)\natt = logit_attribution(m, n=200, seed=0)\nprint(att.rows, att.cols)\nprint(att.matrix.round(decimals=2))",
        ),
    ],
)

notebook(
    "02_exploring_a_head",
    [
        (
            "md",
            "# Exploring a head: attention, patching, direct logit attribution\n\nLayers and heads are 0-based "
            "in Python (`layer=1, head=2` is the paper's L2H3).\n\n" + SET_MD + " " + MECHANISM_MD,
        ),
        ("code", code(PICK_SET) + "\n\n" + code(PICK_MECHANISM)),
        (
            "md",
            "## Where the heads look\n\nThe head table (`mulinterp.circuits.heads`) averages every head's "
            "attention over many problems; the head to explore is its sharpest *pair* head — one that attends "
            "to one digit of each operand, `a_i` and `b_j`, at one answer timestep `c_k`.",
        ),
        (
            "code",
            code(
                """
                from mulinterp.circuits import dla, geometry, heads, patching
                from mulinterp.viz import dependencies

                table = heads.head_table(m, n=256, seed=0)
                best = geometry.best_pair_head(table)
                L, H, k = best.layer, best.head, best.position
                weights = ", ".join(f"{d} {w:.2f}" for d, w in zip(best.digits, best.weights))
                print(f"explored head: L{L + 1}H{H + 1} (layer={L}, head={H}) at the c{k} timestep, on {weights}")
                if not best.is_pair_head:
                    print("  (no head passed the pair test: this is merely the sharpest candidate)")

                pat = table.attention.pattern[L]  # [head, query, key]: layer L, mean over problems
                labels = task.token_labels()
                q = task.answer_position(k)  # the timestep that predicts c_k
                for h in range(m.n_heads):
                    top = pat[h, q].topk(2)
                    print(f"L{L + 1}H{h + 1} at c{k} attends to", [(labels[i], round(w, 2)) for w, i in zip(top.values.tolist(), top.indices.tolist())])
                """
            ),
        ),
        (
            "md",
            "## Activation patching\n\nPatch that head's output from a clean run into a run where the operand "
            "digit it reads (`a_i`) was corrupted; 1 = restores the clean answer, 0 = no effect.",
        ),
        (
            "code",
            code(
                """
                res = patching.patch_head(m, layer=L, head=H, corrupt=best.digits[0], n=128, seed=0)
                print(f"patch L{L + 1}H{H + 1}, corrupt {best.digits[0]}; effect per answer digit:")
                print({f"c{j}": round(x, 2) for j, x in enumerate(res.effect.tolist())})
                """
            ),
        ),
        ("md", "## Direct logit attribution at the head's timestep"),
        (
            "code",
            code(
                """
                d = dla.direct_logit_attribution(m, n=128, seed=0)
                print(f"components writing c{k}:")
                for name, logit, diff in d.ranked(k)[:6]:
                    print(f"{name:>10}: logit {logit:+.2f}, logit diff to runner-up {diff:+.2f}")
                dependencies.dla_figure(d, position=k)
                """
            ),
        ),
    ],
)

notebook(
    "03_attention_dag",
    [
        (
            "md",
            "# The attention DAG: pair heads, retrieve heads, the graph, the knockout check\n\n"
            + SET_MD
            + " "
            + MECHANISM_MD,
        ),
        (
            "code",
            code(PICK_SET)
            + "\n\n"
            + code(PICK_MECHANISM)
            + "\n\n"
            + code(
                """
                from mulinterp.circuits import dag, heads
                from mulinterp.viz import mechanism

                table = heads.head_table(m, n=256, seed=0)
                print(len(table.pairs()), "pair and", len(table.retrieves()), "retrieve (layer, head, timestep)s:")
                for r in table.to_records():
                    if r["role"] in ("pair", "retrieve"):
                        print(r)
                """
            ),
        ),
        (
            "code",
            code(
                """
                g = dag.build_dag(table, threshold=0.25)
                print(len(g.edges), "edges;", g.to_networkx())
                ko = dag.knockout(m, g, n=16, seed=0, n_random=2)
                print(ko.to_dict())
                print(f"exact match: clean {ko.clean.exact_match:.0%}, {ko.n_edges} DAG edges cut {ko.dag.exact_match:.0%}, "
                      f"as many random edges cut {[f'{r.exact_match:.0%}' for r in ko.random]}")
                mechanism.dag_figure(g, ko)
                """
            ),
        ),
        (
            "md",
            "**Caveat** (see docs/results-circuits2.md): random edges of the same *number* are lighter than DAG "
            "edges; `control='mass'` draws random edges by attention weight until they carry the DAG's mass, the fairer control.",
        ),
    ],
)

notebook(
    "04_geometry",
    [
        (
            "md",
            "# Geometry: Minkowski sums and the Fourier digit basis\n\n"
            + SET_MD
            + " "
            + MECHANISM_MD
            + "\n\nA pair head that attends to `a_i` and `b_j` outputs a mix of what it reads from each: over "
            "all digit pairs, a *Minkowski sum* of two 10-point sets. `geometry.minkowski_best` takes the "
            "sharpest pair head of the head table; its additive R² (main effects of the two digits) close to "
            "the interaction R² (one mean per digit pair) is the Minkowski-sum signature.",
        ),
        ("code", code(PICK_SET) + "\n\n" + code(PICK_MECHANISM)),
        (
            "code",
            code(
                """
                from mulinterp.circuits import geometry, heads
                from mulinterp.viz import mechanism

                table = heads.head_table(m, n=256, seed=0)
                res = geometry.minkowski_best(m, table, n=600, seed=0)
                kind = "pair head" if geometry.best_pair_head(table).is_pair_head else "sharpest candidate (no head passed the pair test)"
                print(f"{kind}: L{res.layer + 1}H{res.head + 1} at the c{res.position} timestep, coloured by {res.digits}")
                print("additive R^2", round(res.fit.additive_r2, 3), "interaction model R^2", round(res.fit.interaction_r2, 3))
                mechanism.minkowski_figure(res)
                """
            ),
        ),
        (
            "code",
            code(
                """
                four = geometry.fourier_analysis(m, n=256, seed=0)
                print({k: round(v, 3) for k, v in four.r2.items()})
                mechanism.prism_figure(four, name=m.name)
                """
            ),
        ),
    ],
)

notebook(
    "05_why_sft_fails",
    [
        (
            "md",
            "# Teaching unit: why SFT fails to learn multiplication\n\n1. accuracy by digit, 2. which operand "
            "digits each output depends on, 3. whether the running sum ĉ_k is linearly decodable, 4. learning "
            "dynamics, 5. the auxiliary-loss fix. Exercises have hidden solutions (expand the collapsed cell).\n\n"
            + SET_MD
            + " We compare its SFT and aux models; how well each did is printed, not assumed.",
        ),
        (
            "code",
            code(PICK_SET)
            + "\n\n"
            + code(
                """
                from mulinterp.evaluation import evaluate_generated
                from mulinterp.models import BARS, meets_bar

                regimes = {SET.names[r]: r for r in ("sft", "aux")}  # bundled name → regime
                models = {name: load_pretrained(name) for name in regimes}
                for name, m in models.items():
                    r, regime = evaluate_generated(m.model, m.task, 300, seed=1), regimes[name]
                    print(f"{name}: exact {r.exact_match:.1%} on {r.n} test problems; per digit", r.per_digit)
                    # the bars are judged on the exact match recorded for the bundled model (a larger test evaluation)
                    met = "met" if meets_bar(regime, SET.exact[regime]) else "NOT met"
                    print(f"   recorded {SET.exact[regime]:.2%}; the {regime} bar ({'<' if regime == 'sft' else '≥'} {BARS[regime]:.0%}) is {met}")
                """
            ),
        ),
        (
            "md",
            "**Exercise 1.** Which digits does SFT learn? Using `mulinterp.arithmetic.ground_truth`, count for "
            "each c_k how many pairs (a_i, b_j) its running sum depends on. Is there a pattern?",
        ),
        (
            "code",
            code(
                """
                # Solution
                task = models[SET.names["sft"]].task
                for k in range(task.n_c):
                    pairs = [(i, k - i) for i in range(task.n_a) if 0 <= k - i < task.n_b]
                    deps = [(i, j) for i in range(task.n_a) for j in range(task.n_b) if i + j <= k]
                    print(f"c{k}: {len(pairs)} pairs on its diagonal, ĉ_k depends on {len(deps)} pairs")
                """
            ),
            "hidden",
        ),
        (
            "code",
            code(
                """
                from mulinterp.circuits.attribution import logit_attribution
                from mulinterp.viz import dependencies

                atts = {name: logit_attribution(m, n=128, seed=0) for name, m in models.items()}
                dependencies.attribution_figure(atts)
                """
            ),
        ),
        (
            "code",
            code(
                """
                from mulinterp.circuits.probes import fit_probes

                probes = {name: fit_probes(m, n_train=512, n_test=256) for name, m in models.items()}
                for name, p in probes.items():
                    site = f"blocks.{models[name].n_layers - 1}.hook_resid_mid"  # the last layer's resid_mid
                    mae = [round(x, 1) for x in p.mae[p.site_index(site)].tolist()]
                    print(name, f"ĉ MAE from {site}:", dict(zip(p.positions, mae)))
                """
            ),
        ),
        (
            "md",
            "**Exercise 2.** The probe MAE is lowest where the model is accurate. Is a small MAE evidence that "
            "the model *uses* ĉ_k? What experiment would test that?",
        ),
        (
            "md",
            "*Solution:* no — decodability is correlational. Patch or ablate the probe direction (e.g. with "
            "`mulinterp.hooks.patch`) and measure the change in the c_k logit.",
            "hidden",
        ),
        (
            "code",
            code(
                """
                from mulinterp.circuits.dynamics import dynamics
                from mulinterp.viz import mechanism

                runs = dynamics([SET.names["sft"], SET.names["aux"]])
                for d in runs:
                    print(d.name, "step each digit reached 90 %:", d.learned_step)
                mechanism.dynamics_figure(runs)
                """
            ),
        ),
        (
            "md",
            "**Exercise 3.** In the dynamics figure, do the middle digits' gradient norms vanish in SFT? Compare "
            "with the paper's claim (§3.4: the middle digits' loss sits at chance, ln 10 ≈ 2.30, while their "
            "gradients vanish) and with the aux run.",
        ),
        (
            "code",
            code(
                """
                # Solution: read the numbers behind the figure
                for d in runs:
                    s = d.summary()
                    print(d.name, "digits whose final loss is near chance (≥ 0.9 ln 10):", [f"c{k}" for k in s["plateau_digits"]])
                    print("   final loss per digit:", s["final_pos_loss"])
                    print("   gradient norm, final / peak, per digit:", s["grad_norm_final_over_peak"])
                """
            ),
            "hidden",
        ),
        (
            "md",
            "*Solution:* the digits whose final loss is near ln 10 are the ones the model never learned. For "
            "them, a final/peak gradient-norm ratio near 0 means the gradients vanished as the paper says; a "
            "ratio around ½ means they shrank but did not vanish. If the aux run has fewer digits at chance "
            "than the SFT run, the auxiliary loss gave those digits the signal SFT lacks.",
            "hidden",
        ),
    ],
)


def _cell(cell_id: str, kind: str, src: str, hidden: str = ""):
    cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
    cell.id = cell_id  # stable ids: rebuilding leaves unchanged cells unchanged in git
    if hidden:  # collapsed in Jupyter: exercise solutions
        cell.metadata["jupyter"] = {"source_hidden": True}
        cell.metadata["tags"] = ["solution"]
    return cell


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=[_cell(f"{name[:2]}-{i:02d}", *c) for i, c in enumerate(cells)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print("wrote", HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
