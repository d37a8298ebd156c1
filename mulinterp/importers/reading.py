"""Reading the paper's files safely, and the one-line errors every importer raises.

Everything goes through :func:`load_tensors`: ``torch.load(weights_only=True)``, which refuses
to run code hidden in a pickle, then a check that what came out is a flat ``{name: tensor}``
dict (or such a dict under one wrapper key). Every failure is a ``ValueError`` whose message
is one line naming the file, so the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# keys under which training scripts commonly nest the weights of a saved checkpoint
_WRAPPERS = ("state_dict", "model_state_dict", "model", "module")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


def load_tensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a ``torch.save``d state dict, loaded with ``weights_only=True``.

    A bare state dict is what the authors saved (``torch.save(model.state_dict(), …)``); a
    dict that wraps one under ``state_dict``/``model``/… is accepted too.
    """
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, a pickle of objects, random bytes: all one message
        raise ValueError(
            f"{path} is not a readable torch state dict (truncated, or not saved by torch.save): {_first_line(e)}"
        ) from None
    if isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        inner = [obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)]
        if inner:
            obj = inner[0]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    ):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict of named tensors")
    return obj


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {_first_line(e)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def take(state: dict[str, Tensor], key: str, shape: tuple[int, ...], path: Path, why: str = "") -> Tensor:
    """``state[key]`` as float32, or one line saying it is missing or has the wrong shape."""
    if key not in state:
        raise ValueError(f"{path}: tensor {key} is missing{why}")
    t = state[key]
    if tuple(t.shape) != shape:
        raise ValueError(f"{path}: tensor {key} has shape {tuple(t.shape)}, expected {shape}{why}")
    return t.detach().to(torch.float32)
