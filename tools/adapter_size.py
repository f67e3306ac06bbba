"""Code lines per adapter: no blank lines, no comments, no docstrings (what ``cloc`` counts).

``python tools/adapter_size.py`` prints each adapter's files and total and the shared,
runtime-neutral modules beside them; ``tests/test_adapter_size.py`` keeps every adapter
within ``LIMIT`` lines, the promise that a new adapter is an afternoon's work.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "zenws_adapters"
#: The files of each adapter.
ADAPTERS = {
    "sync": ["sync.py"],
    "asyncio": ["asyncio.py"],
    "anyio (Trio)": ["anyio.py"],
    "curio": ["curio.py"],
}
#: Runtime-neutral modules every adapter builds on.
SHARED = ["_api.py", "_driver.py", "_common.py", "_errors.py"]
LIMIT = 300


def code_lines(path: Path) -> int:
    """Lines that are not blank, not ``#`` comments and not part of a docstring."""
    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, kinds) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    count = 0
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and number not in docstrings:
            count += 1
    return count


def sizes() -> dict[str, int]:
    """Code lines per adapter name."""
    return {name: sum(code_lines(ROOT / f) for f in files) for name, files in ADAPTERS.items()}


def main() -> int:
    for name, files in ADAPTERS.items():
        parts = ", ".join(f"{f} {code_lines(ROOT / f)}" for f in files)
        print(f"{name:14} {sum(code_lines(ROOT / f) for f in files):5}   ({parts})")
    print(f"{'shared':14} {sum(code_lines(ROOT / f) for f in SHARED):5}   ", end="")
    print("(" + ", ".join(f"{f} {code_lines(ROOT / f)}" for f in SHARED) + ")")
    over = {name: n for name, n in sizes().items() if n > LIMIT}
    if over:
        print(f"over the {LIMIT}-line limit: {over}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
