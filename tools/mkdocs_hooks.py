"""MkDocs hooks (``mkdocs.yml``): pages generated from the code at build time.

``machines.md`` is rendered from the declarations (:func:`certflow.core.machines.diagrams_page`)
whenever the site is built, so its Mermaid diagrams are the machines' own; the committed
file is the same text (``make docs`` writes it, and a test fails if it is stale), for
readers of the repository.
"""

from __future__ import annotations

from typing import Any

from certflow.core.machines import diagrams_page


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """The generated text for the rules page, the page's own for every other page."""
    if page.file.src_uri == "machines.md":
        return diagrams_page()
    return markdown
