"""The documentation's Python examples run and say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("page", ["rollouts.md"])
def test_the_python_examples_of_each_guide_run(
    page: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = _python_blocks(DOCS / page)
    assert blocks, f"{page} has no python example"
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), namespace)
    assert "laptop-1 installed 1 None" in capsys.readouterr().out


def test_every_doc_page_is_linked_from_the_readme() -> None:
    readme = README.read_text()
    for page in sorted(DOCS.rglob("*.md")):
        assert str(page.relative_to(DOCS.parent)) in readme, f"README does not link {page.name}"
