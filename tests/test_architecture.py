"""The shape of the package, read from its source: imports point one way, the terminal
libraries stay in funnel/cli, heavy libraries are imported by the leaf that needs them, and
no module grows past a few screens.

Every `import` counts, also one inside a function (it runs when the function does); only
imports under `if TYPE_CHECKING:` (never run) are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "funnel"
TERMINAL = ("typer", "rich", "click")  # only funnel/cli draws on the terminal
HEAVY = ("duckdb", "pyspark", "py4j", "sqlglot", "plotly", "httpx", "psycopg", "jinja2", "pandas")
MAX_LINES = 450
# Longer for now, each being split by its owner (issue 24, item 4); the test says when one is done.
BEING_SPLIT: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported name, at module level) for every import that runs; `from a import b` gives `a.b`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    never_run = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if id(node) in never_run:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(f"{node.module}.{alias.name}", id(node) in top) for alias in node.names]
    return found


def funnel_module(name: str) -> str | None:
    """The module of funnel's that an imported name lives in (`funnel.build.record.write` -> `funnel.build.record`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the funnel modules it imports. The package itself (funnel/__init__.py: the
    version, and Project on first use) is left out: Python imports it before any of its
    modules whatever they say, so an edge to it says nothing about layering."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {funnel_module(name) for name, _ in imports(path) if name.split(".")[0] == "funnel"}
        graph[module] = {t for t in targets if t and t not in (module, "funnel")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_funnel_imports_point_one_way():
    found = cycles(import_graph())
    assert found == [], "import cycles (each a set of modules importing one another): " + "; ".join(
        " <-> ".join(c) for c in found
    )


# The rooms, top to bottom (README "Architecture"): a module imports its own room or a lower one.
ROOMS = [
    ("funnel.cli", "funnel.__main__"),
    ("funnel.api",),
    ("funnel.outputs",),
    ("funnel.build",),
    ("funnel.engine",),
    ("funnel.project", "funnel.pipedrive"),
    ("funnel.atomic", "funnel.workdir", "funnel.errors", "funnel.quoting", "funnel.names"),
]


def room(module: str) -> int:
    for number, prefixes in enumerate(ROOMS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return number
    raise AssertionError(f"{module} is in no room of ROOMS; add it where it belongs")


def test_every_module_imports_only_its_own_room_or_lower_ones():
    upward = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module != "funnel"
        for target in sorted(targets)
        if room(target) < room(module)
    ]
    assert upward == []


def test_typer_and_rich_are_imported_only_under_funnel_cli():
    bad = [
        f"{module} imports {name}"
        for module, path in MODULES.items()
        if not module.startswith("funnel.cli")
        for name, _ in imports(path)
        if name.split(".")[0] in TERMINAL
    ]
    assert bad == []


def test_heavy_libraries_are_imported_inside_the_function_that_needs_them():
    # `funnel --help` and every command that does not need them stay fast.
    bad = [
        f"{module} imports {name} at module level"
        for module, path in MODULES.items()
        for name, top in imports(path)
        if top and name.split(".")[0] in HEAVY
    ]
    assert bad == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_longer_than_a_few_screens(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]}: {lines} lines; split it where it holds two things"


def test_every_model_the_python_reads_by_name_is_in_the_shipped_project():
    from funnel import names

    sql = PACKAGE.parent / "sql"
    shipped = {p.stem for p in sql.rglob("*") if p.suffix in (".sql", ".csv")}
    named = {value for key, value in vars(names).items() if key.isupper() and isinstance(value, str)}
    named |= set(names.ONE_PIPELINE)
    assert named - shipped == set()


def test_only_funnel_atomic_renames_files_into_place():
    # Write-then-rename done by hand drifts (fsync forgotten, a temp file left): funnel/atomic.py does it.
    hand_written = [
        f"{module}: {call}"
        for module, path in MODULES.items()
        if module != "funnel.atomic"
        for call in ("os.replace(", "os.rename(", "signal.pthread_sigmask(")
        if call in path.read_text(encoding="utf-8")
    ]
    assert hand_written == []
