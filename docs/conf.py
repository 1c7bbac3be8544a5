"""Sphinx configuration for pdconnect's documentation (built with warnings as errors)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from docutils import nodes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pdconnect.version import __version__

project = "pdconnect"
author = "the pdconnect developers"
copyright = "2026, the pdconnect developers"
release = __version__
version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "_tools"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"pdconnect {release}"


def _drop_snippet_directives(app: Any, doctree: nodes.document) -> None:
    """Leave the test harness's ``<!-- snippet... -->`` comments out of the published pages.

    They hold hidden setup code for tests/test_docs_snippets.py; readers need not download it.
    """
    for node in list(doctree.findall(nodes.raw)):
        if node.get("format") == "html" and node.astext().lstrip().startswith("<!-- snippet"):
            node.parent.remove(node)


def setup(app: Any) -> dict[str, bool]:
    app.connect("doctree-read", _drop_snippet_directives)
    return {"parallel_read_safe": True}
