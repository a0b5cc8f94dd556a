"""The notebooks run top to bottom without error, in a real kernel, and are committed with
the outputs they produce (text, tables, charts as PNG images)."""

from __future__ import annotations

import base64

import nbformat
import pytest

from tools.run_notebooks import NOTEBOOKS, execute

# What each notebook must show, from its committed outputs and from a fresh run: texts,
# and how many images (charts) it has.
EXPECTED: dict[str, tuple[tuple[str, ...], int]] = {
    "rollout_simulation.ipynb": (("ImportCertificate", "== View details"), 0),
    "01_one_rollout.ipynb": (
        ("push the root (attempt 1) to 5,000 devices", "forced import", "reenroll_required"),
        1,
    ),
    "02_what_if.ipynb": (("100 runs of 2,000 devices", "retries + distributed_and_expired"), 1),
    "03_forecast_day_6.ipynb": (
        ("forecast at 2026-07-07 11:00 UTC", "with one manual extension"),
        1,
    ),
    "04_certificate_checks.ipynb": (
        ("<code>trust_private</code>", "<code>host_mismatch</code>"),
        0,
    ),
}


def _outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]


def _text(outputs: list[nbformat.NotebookNode]) -> str:
    parts = []
    for output in outputs:
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "".join(parts)


def _images(outputs: list[nbformat.NotebookNode]) -> int:
    found = 0
    for output in outputs:
        png = output.get("data", {}).get("image/png")
        if png:
            assert base64.b64decode(png).startswith(b"\x89PNG")
            found += 1
    return found


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_committed_with_its_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)  # type: ignore[no-untyped-call]
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "run tools/run_notebooks.py"
    outputs = _outputs(notebook)
    texts, images = EXPECTED[name]
    for text in texts:
        assert text in _text(outputs)
    assert _images(outputs) == images


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_without_error(name: str) -> None:
    notebook = execute(NOTEBOOKS / name)  # raises CellExecutionError, naming the cell
    outputs = _outputs(notebook)
    assert not [output for output in outputs if output.output_type == "error"]
    texts, images = EXPECTED[name]
    for text in texts:
        assert text in _text(outputs)
    assert _images(outputs) == images
