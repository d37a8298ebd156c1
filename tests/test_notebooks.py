"""Execute every example notebook top to bottom (CPU, bundled models)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from mulinterp.models import best_bundled_set, list_pretrained

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "stored with outputs"
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # a notebook on the bundled models picks its set (best_bundled_set) and names none of them itself
    hard_coded = [name for name in list_pretrained() if name in source]
    assert not hard_coded, f"hard-coded bundled model names {hard_coded}: take them from SET.names"
    if "load_pretrained" in source:
        assert "best_bundled_set()" in source, "a notebook on the bundled models picks its set with best_bundled_set()"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    if "best_bundled_set()" in source:  # ... and says which set it used
        printed = "".join(
            o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
        )
        assert f"using {best_bundled_set().describe()}" in printed, "the notebook does not print which set it used"
