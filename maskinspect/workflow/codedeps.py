"""A stage's code: its script and every package module it imports, transitively, found by
reading the imports. A code change then makes exactly the stages that use the code stale, in
both front ends. Plumbing that cannot change an artifact's bytes (this graph, params
validation, the stage runner's error handling) is left out and not followed, or every stage
would rebuild when a key is added to the schema."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = "maskinspect"
PLUMBING = ("maskinspect/workflow/", "maskinspect/errors.py")


def is_plumbing(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in PLUMBING)


@lru_cache(maxsize=None)
def code_deps(script: str, root: Path) -> tuple[str, ...]:
    """The script and every package module it imports, transitively (paths relative to root)."""
    seen: set[str] = set()
    todo = [script]
    while todo:
        rel = todo.pop()
        if rel in seen or is_plumbing(rel):
            continue
        seen.add(rel)
        tree = ast.parse((root / rel).read_text(), filename=rel)
        for node in ast.walk(tree):
            for module in _imported(node, rel):
                path = _module_path(module, root)
                if path:
                    todo.append(path)
    if any(p.startswith(PACKAGE + "/") for p in seen):
        seen.add(f"{PACKAGE}/__init__.py")  # pins threads and vector ISA: part of every result
    return tuple(sorted(seen))


def _imported(node: ast.AST, rel: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if isinstance(node, ast.ImportFrom):
        if node.level and rel.startswith(PACKAGE + "/"):
            parts = Path(rel).parent.parts
            base = ".".join(parts[: len(parts) - (node.level - 1)])
            mod = base + ("." + node.module if node.module else "")
        elif node.module and node.module.split(".")[0] == PACKAGE:
            mod = node.module
        else:
            return []
        return [mod] + [f"{mod}.{a.name}" for a in node.names]
    return []


def _module_path(module: str, root: Path) -> str | None:
    parts = module.split(".")
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate.relative_to(root).as_posix()
    return None
