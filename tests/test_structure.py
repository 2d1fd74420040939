"""The packages' import structure: townlet_env never imports townlet_agents, the agents
package uses the env's public modules only, and no modules import each other in a
circle, not even from inside a function. Read from the source, so it sees every import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("townlet_env", "townlet_agents")
#: What townlet_agents may import from the env: its top level and the public schema.
ENV_PUBLIC = {"townlet_env", "townlet_env.schema"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path) -> set[str]:
    """Modules `path` imports at run time (type-checking-only imports do not run)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            for alias in node.names:  # `from . import episodes` imports a module
                found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_env_never_imports_agents():
    for name, deps in _graph().items():
        if name.startswith("townlet_env"):
            assert not [d for d in deps if d.startswith("townlet_agents")], name


def test_agents_use_only_the_envs_public_modules():
    for name, deps in _graph().items():
        if name.startswith("townlet_agents"):
            private = {d for d in deps if d.startswith("townlet_env") and d not in ENV_PUBLIC}
            assert not private, f"{name} imports {sorted(private)}"


def test_no_import_circles():
    graph = _graph()
    # Package __init__ modules import their own submodules by design; a submodule that
    # imports its package's top level is fine as long as no circle runs between submodules.
    edges = {m: {d for d in deps if d not in PACKAGES} for m, deps in graph.items() if m not in PACKAGES}
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(m):
        state[m] = 1
        path.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                walk(d)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            walk(m)
