"""Model presets, building hooked transformers, safetensors checkpoints, bundled registry.

Models are TransformerLens 4 native bridges (``TransformerBridge.boot_native``) — the TL 4
successor of ``HookedTransformer``: every residual stream, attention pattern and MLP output
has its classic hook name (``blocks.{l}.hook_resid_mid``, ``blocks.{l}.attn.hook_pattern``,
``blocks.{l}.attn.hook_z`` …) and ``run_with_cache`` / ``run_with_hooks`` work.

A checkpoint is one ``.safetensors`` file: the bridge's state dict (TL names), optional
extra tensors (the aux-loss probe, under ``extra.``), and JSON metadata (task, model config,
regime, steps, seed, metrics, training cost). Loading never unpickles.

Example::

    >>> from mulinterp.models import load_pretrained            # doctest: +SKIP
    >>> m = load_pretrained("icot-4x4")                         # doctest: +SKIP
    >>> logits, cache = m.model.run_with_cache(m.task.prompt(*m.task.sample(8)))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from mulinterp.io import atomic_write_bytes
from mulinterp.task import MulTask

if TYPE_CHECKING:
    # Only for the annotations: importing TransformerLens takes seconds, and reading a
    # checkpoint's metadata or listing the bundled models needs none of it. (The test suite's
    # run-time type checker cannot resolve this name, so it treats the field as unchecked.)
    from transformer_lens.model_bridge import TransformerBridge

FORMAT_VERSION = "1"

JSONValue = str | int | float | bool | None | list | dict
"""A value in a checkpoint's JSON metadata or the bundled manifest."""


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a GPT-2-style decoder (GELU MLP, LayerNorm, learned positions).

    The last four fields matter only for imported models (:mod:`mulinterp.importers`); their
    defaults are what every model trained here uses: the task's vocabulary and CoT context,
    GPT-2's tanh-approximated GELU, LayerNorm eps 1e-5.
    """

    d_model: int
    n_layers: int = 2
    n_heads: int = 4
    d_mlp: int | None = None  # default 4 × d_model
    d_vocab: int | None = None  # default: the task's vocabulary
    n_ctx: int | None = None  # default: the task's CoT layout length
    act_fn: str = "gelu_new"
    eps: float = 1e-5

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON form for checkpoint metadata: fields left at their default are omitted, so a
        model trained here writes exactly the four fields it always wrote."""
        d = asdict(self)
        return {f.name: d[f.name] for f in fields(self) if f.name in _CORE_FIELDS or d[f.name] != f.default}

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mlp_width(self) -> int:
        return self.d_mlp or 4 * self.d_model


_CORE_FIELDS = ("d_model", "n_layers", "n_heads", "d_mlp")

PRESETS: dict[str, ModelSpec] = {
    "paper": ModelSpec(d_model=768),  # the paper's 2L4H width
    "gpu": ModelSpec(d_model=512),  # what the bundled models use (see README: size/transfer limits)
    "cpu": ModelSpec(d_model=128),  # trainable on a laptop CPU in hours
    "small": ModelSpec(d_model=64),  # the 4×4 campaign's CPU width (docs/training-runs/campaign.md)
    "tiny": ModelSpec(d_model=32),  # unit tests and 2×2 demos
}


def get_preset(name: str) -> ModelSpec:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def build_model(
    task: MulTask, spec: ModelSpec | str, seed: int = 0, device: str | torch.device = "cpu"
) -> TransformerBridge:
    """A freshly initialised hooked transformer for ``task``.

    The context holds the full CoT layout, so the same model serves SFT, ICoT and aux.
    """
    import transformer_lens.model_bridge.sources.native  # noqa: F401  (registers boot_native)
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    if isinstance(spec, str):
        spec = get_preset(spec)
    if spec.d_model % spec.n_heads:
        raise ValueError(f"d_model {spec.d_model} is not divisible by n_heads {spec.n_heads}")
    cfg = TransformerBridgeConfig(
        d_model=spec.d_model,
        d_head=spec.d_head,
        n_layers=spec.n_layers,
        n_heads=spec.n_heads,
        d_mlp=spec.mlp_width,
        n_ctx=spec.n_ctx or task.seq_len("cot"),
        d_vocab=spec.d_vocab or task.d_vocab,
        act_fn=spec.act_fn,
        eps=spec.eps,
        normalization_type="LN",
        seed=seed,
        model_name=f"mulinterp-{task.name}",
    )
    model = TransformerBridge.boot_native(cfg, device=device)
    model.eval()
    return model


@dataclass
class MulModel:
    """A trained (or fresh) model together with its task and metadata.

    ``model`` is the TransformerLens bridge: call it on tokens for logits, or use its
    ``run_with_cache`` / ``hooks``; the properties here are what analyses ask of a model.
    """

    model: TransformerBridge
    task: MulTask
    spec: ModelSpec
    meta: dict[str, JSONValue] = field(default_factory=dict)  # name, regime, steps, seed, metrics …
    extras: dict[str, Tensor] = field(default_factory=dict)  # e.g. aux probe weights

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "model"))

    @property
    def device(self) -> torch.device:
        """Where the weights live (inputs must be moved there)."""
        return next(self.model.parameters()).device

    @property
    def n_layers(self) -> int:
        return self.spec.n_layers

    @property
    def n_heads(self) -> int:
        return self.spec.n_heads


def resume_path(out: str | Path) -> Path:
    """The resume file beside checkpoint ``out``: ``model.safetensors`` → ``model.safetensors.resume``."""
    out = Path(out)
    return out.with_name(out.name + ".resume")


def telemetry_path(out: str | Path) -> Path:
    """The training telemetry beside checkpoint ``out``: ``model.safetensors`` → ``model.telemetry.jsonl``."""
    out = Path(out)
    return out.with_name(out.stem + ".telemetry.jsonl")


def checkpoint_bytes(m: MulModel, dtype: torch.dtype | None = None) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in m.model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in m.extras.items()})
    metadata = {
        "format": "mulinterp",
        "format_version": FORMAT_VERSION,
        "task": json.dumps(m.task.to_dict()),
        "model": json.dumps(m.spec.to_dict()),
        "meta": json.dumps(m.meta, sort_keys=True),
    }
    return st_save(tensors, metadata=metadata)


def save(m: MulModel, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write one safetensors file atomically (``dtype`` e.g. ``torch.bfloat16`` to halve it)."""
    path = Path(path)
    atomic_write_bytes(path, checkpoint_bytes(m, dtype))
    return path


def safetensors_metadata(path: Path, data: bytes, what: str = "checkpoint") -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file from its leading bytes (8-byte length + JSON
    header), without reading tensors; ``ValueError`` naming ``what`` if truncated or foreign."""
    if len(data) < 8:
        raise ValueError(f"{what} {path} is truncated or not a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{what} {path} is truncated: header says {n} bytes, file has {len(data) - 8}")
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        raise ValueError(f"{what} {path} is not a safetensors file (unreadable header)") from None
    return header.get("__metadata__") or {}


def header_bytes(path: Path) -> bytes:
    """The leading bytes of a safetensors file (8-byte length + JSON header), without its tensors."""
    with Path(path).open("rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        return head + f.read(n)


def _read_header(path: Path, data: bytes) -> dict[str, str]:
    meta = safetensors_metadata(path, data)
    if meta.get("format") != "mulinterp":
        raise ValueError(f"checkpoint {path} is not a mulinterp checkpoint (no mulinterp metadata)")
    version = meta.get("format_version", FORMAT_VERSION)
    if not version.isdigit():
        raise ValueError(f"checkpoint {path} has an unreadable format version {version!r}")
    if int(version) > int(FORMAT_VERSION):
        raise ValueError(
            f"checkpoint {path} has format version {version}, newer than this mulinterp reads "
            f"(up to {FORMAT_VERSION}): upgrade mulinterp"
        )
    return meta


def load(path: str | Path, device: str | torch.device = "cpu", task: MulTask | None = None) -> MulModel:
    """Load a checkpoint written by :func:`save`.

    Raises ``ValueError`` naming the problem for a missing, truncated, foreign or mismatched
    file; ``task`` (if given) must match the checkpoint's task.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    meta = _read_header(path, data)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ValueError(f"checkpoint {path} is damaged: {e}") from None
    ck_task = MulTask(**json.loads(meta["task"]))
    if task is not None and task != ck_task:
        raise ValueError(f"checkpoint {path} is for the {ck_task.name} task, expected {task.name}")
    spec = ModelSpec(**json.loads(meta["model"]))
    model = build_model(ck_task, spec, device=device)
    state = {k: v for k, v in tensors.items() if not k.startswith("extra.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match its model config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ValueError(
                f"checkpoint {path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
            )
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    model.eval()
    extras = {k[len("extra.") :]: v.to(torch.float32).to(device) for k, v in tensors.items() if k.startswith("extra.")}
    return MulModel(model=model, task=ck_task, spec=spec, meta=json.loads(meta["meta"]), extras=extras)


def task_digits(metadata: dict[str, JSONValue]) -> str:
    """``"4x4"``: the task of a checkpoint's metadata (:func:`read_metadata`), as sets and tasks name it."""
    task = metadata["task"]
    return f"{task['n_a']}x{task['n_b']}"  # type: ignore[index]


def read_metadata(path: str | Path) -> dict[str, JSONValue]:
    """Task, model spec and metadata of a checkpoint without building the model."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    meta = _read_header(path, header_bytes(path))
    return {"task": json.loads(meta["task"]), "model": json.loads(meta["model"]), **json.loads(meta["meta"])}


# ---------------------------------------------------------------------------------------
# bundled checkpoints


def _checkpoint_dir() -> Path:
    return Path(str(resources.files("mulinterp") / "checkpoints"))


def _manifest() -> dict[str, dict[str, JSONValue]]:
    path = _checkpoint_dir() / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def list_pretrained() -> dict[str, dict[str, JSONValue]]:
    """Bundled models by name, with the summary recorded in the manifest."""
    return _manifest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pretrained_path(name: str) -> Path:
    manifest = _manifest()
    if name not in manifest:
        avail = ", ".join(sorted(manifest)) or "none are bundled yet"
        raise ValueError(f"no bundled model named {name!r}; available: {avail}")
    path = _checkpoint_dir() / manifest[name]["file"]
    if not path.is_file():
        raise ValueError(f"bundled model {name!r} is missing its file {path.name}; reinstall mulinterp")
    if sha256(path) != manifest[name]["sha256"]:
        raise ValueError(f"bundled model {name!r} is damaged: checksum of {path.name} does not match the manifest")
    return path


def load_pretrained(name: str, device: str | torch.device = "cpu") -> MulModel:
    """Load a bundled model by name (e.g. ``"icot-4x4"``), checking its checksum."""
    m = load(pretrained_path(name), device=device)
    m.meta.setdefault("name", name)
    return m


def resolve(name_or_path: str, device: str | torch.device = "cpu") -> MulModel:
    """A bundled name or a checkpoint path."""
    if name_or_path in _manifest():
        return load_pretrained(name_or_path, device)
    if Path(name_or_path).suffix == ".safetensors" or Path(name_or_path).exists():
        m = load(name_or_path, device=device)
        m.meta.setdefault("name", Path(name_or_path).stem)
        return m
    return load_pretrained(name_or_path, device)  # raises with the list of names


# ---------------------------------------------------------------------------------------
# bundled sets: sft-, icot- and aux-NxM of one task, and whether they show the paper's contrast

#: Exact match on the test split that a bundled set must show (the paper's contrast, with a
#: margin): ICoT and aux at least these, SFT below its number.
BARS: dict[str, float] = {"icot": 0.99, "aux": 0.95, "sft": 0.05}
SET_REGIMES = ("sft", "icot", "aux")


def meets_bar(regime: str, exact_match: float) -> bool:
    return exact_match < BARS["sft"] if regime == "sft" else exact_match >= BARS[regime]


def mechanism_regime(icot_exact: float) -> str:
    """The model the mechanism (pair heads, DAG, Minkowski sums) is read from, given the ICoT
    model's exact match.

    The paper reads it from ICoT; an ICoT model that missed its bar did not learn the task and
    caches no pairs (docs/results-circuits2.md), so aux stands in for it.
    """
    return "icot" if meets_bar("icot", icot_exact) else "aux"


@dataclass(frozen=True)
class BundledSet:
    """The three bundled models of one task (``digits`` e.g. ``"3x3"``) and their bars.

    A set meets the bars only when its three models also share one width (issue 11: "all three
    the same width"): an SFT baseline at d512 beside ICoT and aux at d128 shows each model's
    number but not the paper's controlled contrast, so such a set counts its bars (for choosing
    the best set) yet says that it mixes widths instead of claiming the bars.
    """

    digits: str
    exact: dict[str, float]  # regime → test exact match recorded in the manifest
    widths: dict[str, int] = field(default_factory=dict)  # regime → d_model, where the manifest has it

    @property
    def names(self) -> dict[str, str]:
        return {r: f"{r}-{self.digits}" for r in SET_REGIMES}

    @property
    def bars_met(self) -> int:
        return sum(meets_bar(r, self.exact[r]) for r in SET_REGIMES)

    @property
    def same_width(self) -> bool:
        """False only when the manifest gives the models different widths."""
        return len(set(self.widths.values())) <= 1

    @property
    def meets_bars(self) -> bool:
        return self.bars_met == len(SET_REGIMES) and self.same_width

    @property
    def mechanism_regime(self) -> str:
        """The model the mechanism is read from (:func:`mechanism_regime`)."""
        return mechanism_regime(self.exact["icot"])

    def describe(self) -> str:
        parts = ", ".join(f"{r} {100 * self.exact[r]:.2f} %" for r in SET_REGIMES)
        missed = [
            f"{r} {'<' if r == 'sft' else '≥'} {100 * BARS[r]:.0f} %"
            for r in SET_REGIMES
            if not meets_bar(r, self.exact[r])
        ]
        if not self.same_width:
            widths = ", ".join(f"{r} d{self.widths[r]}" for r in SET_REGIMES if r in self.widths)
            missed.append(f"one width: {widths}")
        verdict = "meets the bars" if self.meets_bars else f"does NOT meet the bars (misses {', '.join(missed)})"
        return f"the {self.digits} set ({parts}) {verdict}"


def bundled_sets(manifest: dict[str, dict[str, JSONValue]] | None = None) -> list[BundledSet]:
    """Every task with all three regimes bundled, larger tasks first (4×4 before 3×3)."""
    manifest = _manifest() if manifest is None else manifest
    tasks = {name.split("-", 1)[1] for name in manifest if name.split("-", 1)[0] in SET_REGIMES and "-" in name}
    sets = []
    for digits in tasks:
        names = [f"{r}-{digits}" for r in SET_REGIMES]
        if all(n in manifest for n in names):
            exact = {r: float(manifest[n]["test_exact_match"]) for r, n in zip(SET_REGIMES, names)}
            widths = {r: int(manifest[n]["d_model"]) for r, n in zip(SET_REGIMES, names) if "d_model" in manifest[n]}
            sets.append(BundledSet(digits, exact, widths))
    return sorted(sets, key=lambda s: tuple(-int(x) for x in s.digits.split("x")))


def best_bundled_set(manifest: dict[str, dict[str, JSONValue]] | None = None) -> BundledSet:
    """The set that meets the most bars; on a tie the one whose ICoT learned, then the larger task.

    So a set that meets all three wins, and while none does, a set whose ICoT and aux models
    learned the task is preferred to a larger one whose models collapsed (a 3×3 set with SFT
    above its bar still shows learned mechanisms; a 4×4 set that meets only SFT's bar does not).
    ICoT breaks a tie because the paper reads the mechanism (pair heads, the cache/retrieve DAG,
    ĉ in layer 2) from ICoT: a 3×3 set with ICoT and aux learned beats a 4×4 set with SFT and
    aux at their bars but ICoT collapsed (the state after session 10). A set that meets the bars
    at one width comes before all others; one whose models meet their bars at mixed widths
    still counts three bars against the rest (it shows the contrast, and says it mixes widths).
    """
    sets = bundled_sets(manifest)  # larger tasks first; max keeps the first of equals
    if not sets:
        raise ValueError("no complete set of bundled models (sft-, icot- and aux- of one task); reinstall mulinterp")
    return max(sets, key=lambda s: (s.meets_bars, s.bars_met, s.mechanism_regime == "icot"))


def bundled_set(digits: str, manifest: dict[str, dict[str, JSONValue]] | None = None) -> BundledSet:
    for s in bundled_sets(manifest):
        if s.digits == digits:
            return s
    avail = ", ".join(s.digits for s in bundled_sets(manifest)) or "none"
    raise ValueError(f"no complete bundled set for {digits}; sets: {avail}")


def resolve_set(
    digits: str | None, files: Mapping[str, str] | None = None, *, complete_without_set: bool = False
) -> BundledSet | None:
    """The bundled set an analysis of the three regimes reads, any regime replaced by a file.

    ``digits`` names the set; without it, the set of the given files' task; with no files, the
    best set (:func:`best_bundled_set`). Checked before anything loads, one ``ValueError`` each:
    unknown regimes, missing, damaged or foreign files, files of another task than the set's,
    damaged bundled models. With ``complete_without_set`` a file for every regime and no
    ``digits`` need no bundled set (``None``; the files must then share one task).
    """
    files = dict(files or {})
    unknown = sorted(set(files) - set(SET_REGIMES))
    if unknown:
        raise ValueError(f"unknown regime {', '.join(unknown)} for a checkpoint; choose from {', '.join(SET_REGIMES)}")
    tasks = {r: task_digits(read_metadata(path)) for r, path in files.items()}  # raises if missing or foreign
    complete = complete_without_set and len(files) == len(SET_REGIMES) and digits is None
    digits = digits or next(iter(tasks.values()), None)
    chosen = None if complete else bundled_set(digits) if digits else best_bundled_set()
    want = chosen.digits if chosen else digits
    for r, task in tasks.items():
        if task != want:
            need = f"the {want} set needs {want}" if chosen else f"{next(iter(files.values()))} is a {want} model"
            raise ValueError(f"{files[r]} is a {task} model; {need} (choose the set with --set)")
    for r, name in chosen.names.items() if chosen else ():
        if r not in files:
            pretrained_path(name)  # raises if missing or damaged
    return chosen
