"""Write the example notebooks (without outputs) from the cell lists below.

    python examples/_build.py

Keeping the notebooks' source here makes them reviewable as code; CI executes the .ipynb files.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
NOTEBOOKS: dict[str, list[tuple]] = {}


def notebook(name: str, cells: list[tuple]) -> None:
    NOTEBOOKS[name] = cells


notebook(
    "01_quickstart",
    [
        (
            "md",
            "# mulinterp quickstart\n\nLoad a bundled model, ask it to multiply, look inside with `run_with_cache`, and view one head with circuitsvis.\n\n"
            "The bundled `icot-4x4` did **not** learn the task (see the README's status note): what you see below is the structure of a model stuck in the SFT optimum.",
        ),
        (
            "code",
            "from mulinterp.models import load_pretrained, list_pretrained\nfrom mulinterp.arithmetic import ground_truth\nfrom mulinterp.evaluation import evaluate_generated, greedy_answer\nimport torch\n\nfor name, info in list_pretrained().items():\n    print(f\"{name}: {info['regime']}, exact match {info['test_exact_match']:.2%}\")",
        ),
        (
            "code",
            "m = load_pretrained(\"icot-4x4\")\ntask = m.task\na, b = torch.tensor([3719]), torch.tensor([3349])\npred = greedy_answer(m.model, task, a, b)[0].tolist()\nprint('model digits (c0 first):', pred)\nprint('true digits  (c0 first):', ground_truth(a, b, 4, 4).c[0].tolist())",
        ),
        (
            "md",
            "## Inside the model\n\nEvery activation has a TransformerLens hook name. Positions are named by the digit they predict: the `ANS` token predicts `c0`.",
        ),
        (
            "code",
            "a, b = task.sample(32, 'test', seed=0)\ntokens = task.encode(a, b, 'plain')\nlogits, cache = m.model.run_with_cache(tokens)\nprint(task.token_labels())\nprint({k: tuple(cache[k].shape) for k in ['blocks.0.attn.hook_pattern', 'blocks.1.attn.hook_z', 'blocks.1.hook_resid_mid']})",
        ),
        (
            "code",
            "import circuitsvis as cv\nlabels = task.token_labels()\n# layer 1 (blocks.0), all heads, first problem\ncv.attention.attention_patterns(tokens=labels, attention=cache['blocks.0.attn.hook_pattern'][0])",
        ),
        (
            "code",
            "res = evaluate_generated(m.model, task, 500, seed=1)\nprint(f'exact match {res.exact_match:.2%}; per digit', res.per_digit)",
        ),
    ],
)

notebook(
    "06_train_your_own",
    [
        (
            "md",
            "# Train your own (2×2 digits, on a CPU)\n\nA tiny 2-layer model trains on 2×2 multiplication with plain SFT for 300 steps (under a minute on a free CPU core): it gets c0 and c3 right and the middle digits only partly. The full recipe, `mulinterp train --config recipes/sft-2x2.json --out m.safetensors` (the same settings for 8 000 steps, ≈ 4½ minutes), gets every held-out test problem right: docs/training-runs/cpu-small-tasks.md. Then we look at the model with the same tools as the 4×4 models.",
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
            "# Exploring a head: attention, patching, direct logit attribution\n\nLayers and heads are 0-based in Python (`layer=1, head=2` is the paper's L2H3).",
        ),
        (
            "code",
            "from mulinterp.models import load_pretrained\nfrom mulinterp.circuits import patching, dla\nfrom mulinterp.viz import dependencies\n\nm = load_pretrained('aux-4x4')   # the most structured bundled model\ntask = m.task\na, b = task.sample(64, 'test', seed=0)\n_, cache = m.model.run_with_cache(task.encode(a, b, 'plain'))\npat = cache['blocks.0.attn.hook_pattern'].mean(0)  # [head, query, key], averaged over problems\nlabels = task.token_labels()\nq = task.answer_positions()[2].item()   # the timestep that predicts c2\nfor h in range(m.n_heads):\n    top = pat[h, q].topk(2)\n    print(f'L1H{h+1} at c2 attends to', [(labels[i], round(w, 2)) for w, i in zip(top.values.tolist(), top.indices.tolist())])",
        ),
        (
            "md",
            "## Activation patching\n\nPatch one head's output from a clean run into a run where one operand digit was corrupted; 1 = restores the clean answer, 0 = no effect.",
        ),
        (
            "code",
            "res = patching.patch_head(m, layer=0, head=3, corrupt='a1', n=128, seed=0)\nprint('effect per answer digit:', [round(x, 2) for x in res.effect.tolist()])",
        ),
        ("md", "## Direct logit attribution for c2"),
        (
            "code",
            "d = dla.direct_logit_attribution(m, n=128, seed=0)\nfor name, logit, diff in d.ranked(2)[:6]:\n    print(f'{name:>10}: logit {logit:+.2f}, logit diff to runner-up {diff:+.2f}')\ndependencies.dla_figure(d, position=2)",
        ),
    ],
)

notebook(
    "03_attention_dag",
    [
        (
            "md",
            "# The attention DAG: pair heads, retrieve heads, the graph, the knockout check\n\nOn `aux-4x4` (the bundled model with the clearest pair heads). Our ICoT model did not learn the task, so we cannot show the paper's ICoT DAG.",
        ),
        (
            "code",
            "from mulinterp.models import load_pretrained\nfrom mulinterp.circuits import heads, dag\nfrom mulinterp.viz import mechanism\n\nm = load_pretrained('aux-4x4')\ntable = heads.head_table(m, n=256, seed=0)\nfor r in table.to_records():\n    if r['role'] in ('pair', 'retrieve'):\n        print(r)",
        ),
        (
            "code",
            "g = dag.build_dag(table, threshold=0.25)\nprint(len(g.edges), 'edges;', g.to_networkx())\nko = dag.knockout(m, g, n=16, seed=0, n_random=2)\nprint(ko.to_dict())\nmechanism.dag_figure(g, ko)",
        ),
        (
            "md",
            "**Caveat** (see docs/results-circuits2.md): random edges of the same *number* are lighter than DAG edges; `control='mass'` draws random edges by attention weight and is the fairer control.",
        ),
    ],
)

notebook(
    "04_geometry",
    [
        ("md", "# Geometry: Minkowski sums and the Fourier digit basis"),
        (
            "code",
            "from mulinterp.models import load_pretrained\nfrom mulinterp.circuits import geometry\nfrom mulinterp.viz import mechanism\n\nm = load_pretrained('aux-4x4')\n# aux's L1H4 attends to a1 and b1 at the c2 timestep\nres = geometry.minkowski(m, layer=0, head=3, position=2, digits=('b1', 'a1'), n=600, seed=0)\nprint('additive R^2', round(res.fit.additive_r2, 3), 'interaction model R^2', round(res.fit.interaction_r2, 3))\nmechanism.minkowski_figure(res)",
        ),
        (
            "code",
            "four = geometry.fourier_analysis(m, n=256, seed=0)\nprint({k: round(v, 3) for k, v in four.r2.items()})\nmechanism.prism_figure(four, name='aux-4x4')",
        ),
    ],
)

notebook(
    "05_why_sft_fails",
    [
        (
            "md",
            "# Teaching unit: why SFT fails to learn multiplication\n\n1. accuracy by digit, 2. which operand digits each output depends on, 3. whether the running sum ĉ_k is linearly decodable, 4. learning dynamics, 5. the auxiliary-loss fix. Exercises have hidden solutions (expand the collapsed cell).",
        ),
        (
            "code",
            "from mulinterp.models import load_pretrained\nfrom mulinterp.evaluation import evaluate_generated\nmodels = {name: load_pretrained(name) for name in ('sft-4x4', 'aux-4x4')}\nfor name, m in models.items():\n    r = evaluate_generated(m.model, m.task, 300, seed=1)\n    print(f'{name}: exact {r.exact_match:.1%}; per digit', r.per_digit)",
        ),
        (
            "md",
            "**Exercise 1.** Which digits does SFT learn? Using `mulinterp.arithmetic.ground_truth`, count for each c_k how many pairs (a_i, b_j) its running sum depends on. Is there a pattern?",
        ),
        (
            "code",
            "# Solution\nn = 4\nfor k in range(2 * n):\n    pairs = [(i, k - i) for i in range(n) if 0 <= k - i < n]\n    deps = [(i, j) for i in range(n) for j in range(n) if i + j <= k]\n    print(f'c{k}: {len(pairs)} pairs on its diagonal, ĉ_k depends on {len(deps)} pairs')",
            "hidden",
        ),
        (
            "code",
            "from mulinterp.circuits.attribution import logit_attribution\nfrom mulinterp.viz import dependencies\natts = {name: logit_attribution(m, n=128, seed=0) for name, m in models.items()}\ndependencies.attribution_figure(atts)",
        ),
        (
            "code",
            "from mulinterp.circuits.probes import fit_probes\nprobes = {name: fit_probes(m, n_train=512, n_test=256) for name, m in models.items()}\nfor name, p in probes.items():\n    i = p.site_index('blocks.1.hook_resid_mid')\n    print(name, 'ĉ MAE from layer-2 resid_mid, c0..c7:', [round(x, 1) for x in p.mae[i].tolist()])",
        ),
        (
            "md",
            "**Exercise 2.** The probe MAE is lowest where the model is accurate. Is a small MAE evidence that the model *uses* ĉ_k? What experiment would test that?",
        ),
        (
            "md",
            "*Solution:* no — decodability is correlational. Patch or ablate the probe direction (e.g. with `mulinterp.hooks.patch`) and measure the change in the c_k logit.",
            "hidden",
        ),
        (
            "code",
            "from mulinterp.circuits.dynamics import dynamics\nfrom mulinterp.viz import mechanism\nruns = dynamics(['sft-4x4', 'aux-4x4'])\nfor d in runs:\n    print(d.name, 'step each digit reached 90 %:', d.learned_step)\nmechanism.dynamics_figure(runs)",
        ),
        (
            "md",
            "**Exercise 3.** In the dynamics figure, do the middle digits' gradient norms vanish in SFT? Compare with the paper's claim.",
        ),
        (
            "md",
            "*Solution:* in our run they shrink by about half but do not vanish; the loss of c3–c5 stays at ln 10 ≈ 2.30 (chance). The aux loss keeps gradients flowing to c4/c5, which are being learned at the end of its run.",
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
