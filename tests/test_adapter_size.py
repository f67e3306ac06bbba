"""Issue 4's promise, kept by a test: every adapter stays thin.

An adapter moves bytes, sleeps until the core's next deadline and calls user code; what is
the same on every runtime lives in the shared modules.  ``tools/adapter_size.py`` counts code
lines the way ``cloc`` does (no blanks, comments or docstrings).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "adapter_size.py"
spec = importlib.util.spec_from_file_location("adapter_size", TOOL)
assert spec is not None
assert spec.loader is not None
adapter_size = importlib.util.module_from_spec(spec)
sys.modules["adapter_size"] = adapter_size
spec.loader.exec_module(adapter_size)

RUNTIME_IMPORTS = {
    "asyncio",
    "anyio",
    "trio",
    "curio",
    "socket",
    "selectors",
    "threading",
    "uvloop",
}


@pytest.mark.parametrize("name", sorted(adapter_size.ADAPTERS))
def test_adapter_is_within_the_limit(name: str) -> None:
    lines = adapter_size.sizes()[name]
    assert 0 < lines <= adapter_size.LIMIT, f"{name}: {lines} code lines"


def test_counting_skips_blanks_comments_and_docstrings(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text('"""Module\ndoc."""\n\n# comment\ndef f():\n    """Doc."""\n    return 1\n')
    assert adapter_size.code_lines(source) == 2


@pytest.mark.parametrize("module", adapter_size.SHARED)
def test_shared_modules_are_runtime_neutral(module: str) -> None:
    """What is shared must not do any runtime's I/O, or the line count would be a dodge."""
    tree = ast.parse((adapter_size.ROOT / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & RUNTIME_IMPORTS, f"{module} imports {imported & RUNTIME_IMPORTS}"
