"""The notebooks of examples/notebooks/, executed top to bottom in a real Jupyter kernel
(nbclient, ipykernel) against the real local stack, as a student would run them; and kept in
git without outputs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "examples" / "notebooks")
                   .glob("*.ipynb"))


def outputs(nb, kind: str) -> list[str]:
    """Every output of `kind` ("text/plain", "image/png", or "stream" for printed text)."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stream" and out.output_type == "stream":
                found.append(out.text)
            elif kind in out.get("data", {}):
                found.append(out.data[kind])
    return found


def test_the_notebooks_are_kept_without_outputs():
    assert {p.stem for p in NOTEBOOKS} >= set(CHECKS) | {"02_compare_runs", "03_search"}
    for path in NOTEBOOKS:
        doc = json.loads(path.read_text())
        for cell in doc["cells"]:
            assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_runs_against_the_local_stack(stack, path, tmp_path, monkeypatch):
    # The kernel finds the stack as a student's would: through the state folder `up` wrote.
    # It starts in a folder of its own, outside the checkout: no notebook may depend on
    # where it lies.
    monkeypatch.setenv("TRAINSERVE_STATE_DIR", str(stack.config.state_dir))
    monkeypatch.delenv("TRAINSERVE_API", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert outputs(nb, "image/png"), f"{path.name} drew no figure inline"
    CHECKS.get(path.stem, lambda nb: None)(nb)


def corner_labels(nb) -> None:
    answers = outputs(nb, "text/plain")  # the endpoint's labels for the four corners
    assert any(re.fullmatch(r"array\(\[[01], [01], [01], [01]\]\)", a) for a in answers), \
        answers


def quickstart(nb) -> None:
    printed = "".join(outputs(nb, "stream"))
    assert "epoch 20/20" in printed and "SUCCEEDED" in printed, printed[-2000:]
    corner_labels(nb)


def first_network(nb) -> None:
    printed = "".join(outputs(nb, "stream"))
    assert "epoch 15/15" in printed and "decision_boundary.png" in printed, printed[-2000:]
    assert len(outputs(nb, "image/png")) >= 2, "the curves and the decision boundary"
    corner_labels(nb)


def own_csv(nb) -> None:
    printed = "".join(outputs(nb, "stream"))
    assert re.search(r"smoker +categorical", printed), printed[-2000:]
    assert re.search(r"bmi +numeric +missing: [1-9]", printed), printed[-2000:]
    metrics = "".join(outputs(nb, "text/plain"))
    assert "test_disease_sensitivity" in metrics and "test_auc" in metrics, metrics[-2000:]
    # the raw rows' answers, by class name
    assert len(re.findall(r"\] -> (disease|healthy) \[", printed)) == 2, printed[-2000:]


CHECKS = {"01_quickstart": quickstart, "04_first_network_xor": first_network,
          "05_bring_your_own_csv": own_csv}
