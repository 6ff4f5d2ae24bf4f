"""The package's shape: no import cycle in posture/ or app/, and no module reaching into another's
private names. Read from the source with ``ast`` (nothing is imported), so a new cycle or a new
``from x import _y`` fails here, in one place, naming the modules."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("posture", "app")


def _modules(*packages: str) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of ``packages`` (``pkg/__init__.py`` is ``pkg``)."""
    found = {}
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """Every import in the module, also inside functions: (module, names taken from it, line)."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [alias.name for alias in node.names]
            submodules = [n for n in names if f"{module}.{n}" in known]  # ``from pkg import submodule``
            out += [(f"{module}.{n}", [], node.lineno) for n in submodules]
            rest = [n for n in names if n not in submodules]
            if rest or not submodules:
                out.append((module, rest, node.lineno))
    return out


def _import_graph(*packages: str) -> dict[str, set[str]]:
    known = _modules(*packages)
    return {
        name: {m for m, _, _ in _imports(name, path, known) if m in known and m != name} for name, path in known.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_posture_or_app() -> None:
    """Imports inside functions count too: a lazy import hides a cycle from Python, not from the reader."""
    assert _cycles(_import_graph(*PACKAGES)) == []


def test_no_private_name_is_imported_from_another_module() -> None:
    """Imports everywhere (tests too); ``module._name`` attribute use in the product and benchmarks
    (tests may still reach a seam through ``monkeypatch``)."""
    known = _modules(*PACKAGES, "bench")
    product = set(known)
    known.update({p.stem: p for p in (REPO / "tests").glob("*.py")})
    offences = []
    for name, path in known.items():
        for module, names, line in _imports(name, path, known):
            if module.split(".")[0] not in (*PACKAGES, "bench") and module not in known:
                continue  # a third-party module's business
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[1:]):
                offences.append(f"{path.relative_to(REPO)}:{line}: {module} {private}")
        if name in product:
            offences += [
                f"{path.relative_to(REPO)}:{line}: {what}" for what, line in _private_attributes(name, path, known)
            ]
    assert offences == []


def _private_attributes(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """``module._name`` where ``module`` is a project module this file imported under that name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in known})
        elif isinstance(node, ast.ImportFrom) and node.module:
            aliases.update(
                {
                    a.asname or a.name: f"{node.module}.{a.name}"
                    for a in node.names
                    if f"{node.module}.{a.name}" in known
                }
            )
    return [
        (f"{aliases[node.value.id]}.{node.attr}", node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
