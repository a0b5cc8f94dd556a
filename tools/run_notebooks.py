"""Execute the notebooks in place, so that they are committed with their outputs.

``python tools/run_notebooks.py [NAME.ipynb ...]`` (part of ``make docs``) runs each
notebook of ``notebooks/`` top to bottom in a fresh kernel (nbclient) and writes it back
with its outputs (text, tables and charts as PNG images), without execution counts'
timestamps. ``tests/test_notebooks.py`` runs them too, and fails if one breaks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(path: Path) -> nbformat.NotebookNode:
    """Run ``path`` in a fresh kernel whose working folder is ``notebooks/``; return it."""
    notebook: nbformat.NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    for cell in notebook.cells:
        # Timings of the run would change the file at every run, for nothing.
        cell.get("metadata", {}).pop("execution", None)
    return notebook


def main(argv: list[str]) -> int:
    names = argv[1:] or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    for name in names:
        path = NOTEBOOKS / name
        nbformat.write(execute(path), path)  # type: ignore[no-untyped-call]
        print(f"executed {path.relative_to(NOTEBOOKS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
