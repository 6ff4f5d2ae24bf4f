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


#: The commands a user types (``python -m posture.X``), with their faces at the package's top level.
COMMANDS = ("agreement", "calibrate", "evaluate", "export", "finetune", "ingest", "predict", "synth", "watch")
#: The rooms under the commands, lowest first: a module may import from its own room and the rooms
#: before it, never from one after it (docs/architecture.md draws the same order).
ROOMS = ("runtime", "io", "pose", "data", "models", "evaluation", "runs", "inference", "training", "sitting")


def test_the_top_level_holds_only_the_commands_cli_and_the_face() -> None:
    top = {p.stem for p in (REPO / "posture").glob("*.py")} | {
        p.name for p in (REPO / "posture").iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    assert top == {"__init__", "cli", *COMMANDS, *ROOMS}


def test_a_command_module_is_a_thin_face_over_its_room() -> None:
    """A command file at the top imports :func:`main` from one room and runs it: the work is below."""
    for command in COMMANDS:
        path = REPO / "posture" / f"{command}.py"
        if not path.exists():
            continue  # a command package (ingest, synth): its __main__ is the face
        imported = {m for m, _, _ in _imports(f"posture.{command}", path, _modules("posture"))}
        rooms = {m.split(".")[1] for m in imported if m.startswith("posture.") and m != "posture.cli"}
        assert len(rooms) == 1 and rooms <= set(ROOMS), f"posture/{command}.py imports {imported}"
        assert len(path.read_text(encoding="utf-8").splitlines()) < 20, f"posture/{command}.py is more than a face"


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "posture" and parts[1] in ROOMS else None


def test_no_room_imports_from_a_room_above_it() -> None:
    graph = _import_graph("posture")
    upward = [
        f"{module} -> {imported}"
        for module, targets in sorted(graph.items())
        for imported in sorted(targets)
        if (src := _room(module)) and (dst := _room(imported)) and ROOMS.index(dst) > ROOMS.index(src)
    ]
    assert upward == []


def test_the_room_checker_sees_an_upward_import() -> None:
    assert _room("posture.pose.geometry") == "pose" and _room("posture.cli") is None
    assert ROOMS.index(_room("posture.sitting.session") or "") > ROOMS.index(_room("posture.io.video") or "")
