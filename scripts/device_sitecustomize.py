"""Installed as ``sitecustomize`` on a lent GPU machine by ``scripts/campaign_device.sh``.

TransformerLens imports ``datasets`` for its evaluation and tokenisation helpers, which
mulinterp never calls. The GPU image has no ``datasets``; rather than carry it and its
dependencies, an empty stand-in is registered when the real one cannot be imported, in every
Python process the campaign starts (sitecustomize runs at interpreter start-up).
"""

import sys
import types

try:
    import datasets  # noqa: F401
except ImportError:
    for _name in ("datasets", "datasets.arrow_dataset", "datasets.iterable_dataset", "datasets.load"):
        sys.modules[_name] = types.ModuleType(_name)
    sys.modules["datasets.arrow_dataset"].Dataset = type("Dataset", (), {})
    sys.modules["datasets.iterable_dataset"].IterableDataset = type("IterableDataset", (), {})
    sys.modules["datasets.load"].load_dataset = lambda *a, **k: None
    sys.modules["datasets"].load_dataset = lambda *a, **k: None
    sys.modules["datasets"].Dataset = sys.modules["datasets.arrow_dataset"].Dataset
