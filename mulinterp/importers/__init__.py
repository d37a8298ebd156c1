"""Import the paper's own trained models into mulinterp checkpoints.

The authors released their three 2-layer, 4-head models in github ajyl/icot (``ckpts/``, Git
LFS). Two file formats, one module each:

* :mod:`~mulinterp.importers.gpt2_icot` — the ICoT model, a ``transformers`` GPT-2
  (``ckpts/2L4H/config.json`` + ``state_dict.bin``);
* :mod:`~mulinterp.importers.transformer_py` — the auxiliary-loss and SFT models, the
  authors' own ``src/transformer.py`` (``ckpts/aux_head/ckpt.pt``, ``ckpts/vanilla_ft/ckpt.pt``).

Each is converted into the same TransformerLens native bridge the rest of mulinterp uses, so
every analysis, figure and notebook runs on it unchanged. Two things make that work:

1. the **task** of an imported model is ``MulTask(4, 4, vocab="gpt2")`` — the paper's GPT-2
   prompt layout (:mod:`mulinterp.paper_tokens`), which the analyses ask for positions;
2. the **vocabulary** keeps all 50 257 GPT-2 tokens, reordered so digits are ids 0–9 (the
   permutation is exact: it renames tokens and changes no logit).

Files are read only with ``torch.load(weights_only=True)``; any problem (another format, a
truncated file, shapes that contradict ``config.json``) is one ``ValueError`` line.

>>> from mulinterp.importers import import_checkpoint          # doctest: +SKIP
>>> m, report = import_checkpoint("icot/ckpts/2L4H")            # doctest: +SKIP
>>> save(m, "paper-icot.safetensors")                            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from mulinterp import paper_tokens
from mulinterp.importers import gpt2_icot, transformer_py
from mulinterp.importers.reading import load_tensors
from mulinterp.models import ModelSpec, MulModel, build_model
from mulinterp.task import MulTask

PAPER_TASK = MulTask(4, 4, vocab="gpt2")


@dataclass
class ImportReport:
    """What the importer found, for printing and for the checkpoint's metadata."""

    format: str
    regime: str
    spec: ModelSpec
    files: list[str]
    probe_heads: list[int] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        s = self.spec
        out = [
            f"format     {self.format} ({', '.join(self.files)})",
            f"regime     {self.regime}",
            f"width      d_model {s.d_model}, {s.n_layers} layers × {s.n_heads} heads (d_head {s.d_head}), "
            f"MLP {s.mlp_width}, context {s.n_ctx}, {s.act_fn}",
            f"vocabulary {s.d_vocab} GPT-2 tokens, reordered: digits 0–9 first (ids 657…860 → 0…9)",
        ]
        if self.format == "transformer-py":
            heads = ", ".join(f"head {h}" for h in self.probe_heads) or "none (an SFT model)"
            out.append(f"probe      {heads}; {self.spec.n_heads} heads from {self.notes.get('n_heads_from')}")
        return out


def detect(path: Path) -> tuple[str, Path]:
    """``("icot-gpt2", folder)`` or ``("transformer-py", file)`` for a path, or one clear error."""
    path = Path(path)
    if path.is_dir():
        if (path / "state_dict.bin").is_file() and (path / "config.json").is_file():
            return "icot-gpt2", path
        if (path / "ckpt.pt").is_file():
            return "transformer-py", path / "ckpt.pt"
        raise ValueError(f"{path} holds neither config.json + state_dict.bin (ICoT) nor ckpt.pt (aux / SFT)")
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    if path.name == "config.json" or (path.name == "state_dict.bin" and (path.parent / "config.json").is_file()):
        return "icot-gpt2", path.parent
    return "transformer-py", path


def _source_sha256(files: list[str]) -> dict[str, str]:
    out = {}
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out[Path(f).name] = h.hexdigest()
    return out


def _reorder_vocab(state: dict[str, Tensor]) -> dict[str, Tensor]:
    order = paper_tokens.gpt2_order()
    return {
        **state,
        "embed.weight": state["embed.weight"][order],
        "unembed.weight": state["unembed.weight"][order],
        "unembed.bias": state["unembed.bias"][order],
    }


def import_checkpoint(
    path: str | Path, name: str | None = None, n_heads: int | None = None
) -> tuple[MulModel, ImportReport]:
    """Read one of the paper's checkpoints and return it as a :class:`~mulinterp.models.MulModel`."""
    fmt, where = detect(Path(path))
    extras: dict[str, Tensor] = {}
    if fmt == "icot-gpt2":
        spec, state, facts = gpt2_icot.read(where)
    else:
        state0 = load_tensors(where)
        if gpt2_icot.looks_like(state0):
            raise ValueError(f"{where} is a GPT-2 state dict: import the folder with its config.json instead")
        spec, state, extras, facts = transformer_py.read(where, state0, n_heads)
    if spec.d_vocab != paper_tokens.GPT2_VOCAB_SIZE:
        raise ValueError(f"{where}: vocabulary of {spec.d_vocab} tokens, not GPT-2's {paper_tokens.GPT2_VOCAB_SIZE}")
    if spec.n_ctx < PAPER_TASK.seq_len("plain"):
        raise ValueError(
            f"{where}: context of {spec.n_ctx} positions is shorter than the 4×4 prompt ({PAPER_TASK.seq_len('plain')})"
        )
    model = build_model(PAPER_TASK, spec)
    model.load_state_dict(_reorder_vocab(state), strict=True)
    model.eval()
    report = ImportReport(
        facts["format"],
        facts["regime"],
        spec,
        facts["files"],
        facts.get("probe_heads", []),
        {k: v for k, v in facts.items() if k not in ("format", "regime", "files", "probe_heads")},
    )
    meta = {
        "name": name or f"paper-{report.regime}",
        "regime": report.regime,
        "imported": {
            "from": "github ajyl/icot (Bai et al. 2025), converted by mulinterp import",
            "format": report.format,
            "files": [Path(f).name for f in report.files],
            "sha256": _source_sha256(report.files),
            "probe_heads": report.probe_heads,
            **report.notes,
        },
        "vocabulary": {
            "kind": "gpt2, reordered: mulinterp id i = GPT-2 id order[i]",
            "table": paper_tokens.table_metadata(),
            "rest": "every other GPT-2 id, ascending, from mulinterp id 15",
        },
        "layout": " ".join(PAPER_TASK.token_labels()),
    }
    return MulModel(model, PAPER_TASK, spec, meta, extras), report
