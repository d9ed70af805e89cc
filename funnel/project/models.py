"""Models from files: discovery, the dependency graph and `--select` (rendering: templates.py).

A model is one `.sql` file in any folder under `sql/` (its layer is the top folder:
`sql/reporting/sales/x.sql` is in `reporting`), or a `.csv` seed under `sql/seeds/`; the
file stem is its name. `sql/tests/` holds data tests, `sql/macros/` Jinja macros.
Rendering records every `ref()` and `source()`, which gives the graph; order is topological
with ties broken by (layer, name), so runs are repeatable. The materialization comes from
`config()` or the folder's default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.errors import ConfigError, ModelError, first_line
from funnel.project.config import DEFAULT_MATERIALIZATIONS, IDENTIFIER, MATERIALIZATIONS, Materialization
from funnel.project.sources import SOURCE_NAME, SOURCES, Source
from funnel.project.templates import MACROS_FOLDER, MacroFile, load_macros, render

if TYPE_CHECKING:
    from funnel.project.selectors import Selector

LAYERS = ("seeds", "staging", "intermediate", "reporting")  # the usual ones, in run-order rank
TESTS_FOLDER, SEEDS_FOLDER = "tests", "seeds"
RAW_SCHEMA = SOURCE_NAME


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    materialized: Materialization
    sql: str  # rendered; a single select
    refs: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    seed_columns: dict[str, str] = field(default_factory=dict)
    seed_optional: tuple[str, ...] = ()  # the seed's last columns, which its file may leave out (NULL)
    tags: tuple[str, ...] = ()
    line_offset: int = 0  # line N of `sql` is line N + line_offset of the file (without Jinja loops)
    vars: tuple[str, ...] = ()  # the var()s it reads: a change to one reruns it, selected or not

    @property
    def is_seed(self) -> bool:
        return self.layer == "seeds"


@dataclass(frozen=True)
class Graph:
    """The models of a project, rendered for one schema, in run order."""

    models: dict[str, Model]
    order: tuple[str, ...]
    schema: str
    variables: dict[str, Any] = field(default_factory=dict)  # what var() read when rendering

    def upstream(self, name: str) -> set[str]:
        return _walk(name, lambda n: self.models[n].refs)

    def downstream(self, name: str) -> set[str]:
        children: dict[str, list[str]] = {n: [] for n in self.models}
        for model in self.models.values():
            for parent in model.refs:
                children[parent].append(model.name)
        return _walk(name, lambda n: children[n])

    def select(self, selector: str | Selector | None, exclude: str | Selector | None = None) -> list[str]:
        """Model names a selector picks (dbt's grammar, see funnel/project/selectors.py), in run order.

        None selects everything; a string is parsed first (the CLI passes parsed values).
        """
        from funnel.project.selectors import parse, resolve

        chosen = parse(selector) if isinstance(selector, str) else selector
        dropped = parse(exclude, "--exclude") if isinstance(exclude, str) else exclude
        return resolve(self, chosen, dropped)


def _walk(start: str, next_of: Any) -> set[str]:
    seen: set[str] = set()
    stack = list(next_of(start))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(next_of(node))
    return seen


def discover(sql_dir: Path) -> dict[str, tuple[str, Path]]:
    """Every model file: name -> (layer, path). Names must be unique across folders.

    Every `.sql` file under sql/ is a model except those in sql/tests/ (data tests) and
    sql/macros/ (Jinja macros); one that cannot be a model is an error, never silently ignored.
    """
    if not sql_dir.is_dir():
        raise ConfigError(f"{sql_dir}: no sql/ folder; a project keeps its models in sql/<folder>/.")
    found: dict[str, tuple[str, Path]] = {}
    seeds = sorted((sql_dir / SEEDS_FOLDER).glob("*.csv"))
    for path in seeds + sorted(p for p in sql_dir.rglob("*.sql") if p.is_file()):  # a folder named x.sql is a folder
        parts = path.relative_to(sql_dir).parts
        if parts[0] in (TESTS_FOLDER, MACROS_FOLDER):
            continue
        if len(parts) == 1:
            raise ModelError(f"{path}: a model lives in a folder under sql/ (e.g. sql/reporting/); move it there.")
        if parts[0] == SEEDS_FOLDER and path.suffix == ".sql":
            raise ModelError(f"{path}: sql/seeds/ holds CSV seeds; move the model to another folder.")
        name = path.stem
        if not IDENTIFIER.fullmatch(name):
            raise ModelError(f"{path}: model file names must be plain identifiers (letters, digits, _).")
        same = next((other for other in found if other.lower() == name.lower()), None)
        if same == name:
            raise ModelError(f"{path}: model name '{name}' is also used by {found[name][1]}; rename one.")
        if same is not None:  # DuckDB (and Spark) ignore case: both would be one table, the last one built
            raise ModelError(
                f"{path}: model '{name}' and {found[same][1]} ('{same}') would be one relation, as database names "
                "ignore case; rename one."
            )
        found[name] = (parts[0], path)
    if not found:
        raise ModelError(f"{sql_dir}: no models found; add .sql files in a folder such as sql/staging/.")
    return found


def load(
    sql_dir: Path,
    schema: str,
    materializations: dict[str, str] | None = None,
    variables: Mapping[str, Any] | None = None,
    sources: tuple[Source, ...] = SOURCES,
) -> Graph:
    """Render every model for `schema` and order them; raise ModelError naming the file.

    `materializations`: folder -> "view" | "table", the default of the models in it.
    """
    folders = DEFAULT_MATERIALIZATIONS if materializations is None else materializations
    files = discover(sql_dir)
    _refuse_source_collisions(sql_dir, files, schema, sources)
    macros = load_macros(sql_dir)
    seed_types = _seed_types(sql_dir, [n for n, (layer, _) in files.items() if layer == SEEDS_FOLDER])
    models: dict[str, Model] = {}
    for name, (layer, path) in files.items():
        if layer == SEEDS_FOLDER:
            columns, optional = seed_types[name]
            models[name] = Model(name, layer, path, "table", "", seed_columns=columns, seed_optional=optional)
        else:
            models[name] = _model(name, layer, path, schema, files, folders.get(layer, "table"), variables or {}, sources, macros)
    return Graph(models=models, order=_order(models), schema=schema, variables=dict(variables or {}))


def _refuse_source_collisions(
    sql_dir: Path, files: dict[str, tuple[str, Path]], schema: str, sources: tuple[Source, ...]
) -> None:
    """A model or seed built into a source's schema under the source table's name (in any
    case) would replace the loaded table: refuse it before anything runs."""
    from funnel.project.sources import DECLARATIONS

    tables = {s.table.lower(): s for s in sources if s.source_name.lower() == schema.lower()}
    for name, (_, path) in files.items():
        source = tables.get(name.lower())
        if source is not None:
            declared = sql_dir / DECLARATIONS
            where = f"declared in {declared}" if declared.is_file() else f"{source.file_name} of the export"
            raise ModelError(
                f"{path}: model '{name}' would replace the source table {source.source_name}.{source.table} ({where}): "
                f"the env's schema '{schema}' is the source's, and database names ignore case; rename the model "
                "or give the env another schema in environments.toml."
            )


def _model(
    name: str,
    layer: str,
    path: Path,
    schema: str,
    files: dict[str, tuple[str, Path]],
    default: str,
    variables: Mapping[str, Any],
    sources: tuple[Source, ...],
    macros: tuple[MacroFile, ...] = (),
) -> Model:
    rendered = render(path, schema, files, name, variables, sources, macros)
    settings = dict(rendered.settings)
    materialized = settings.pop("materialized", default)
    tags = settings.pop("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) and IDENTIFIER.fullmatch(t) for t in tags):
        raise ModelError(f"{path}: tags must be a list of plain names, e.g. config(tags=['daily']).")
    if materialized not in MATERIALIZATIONS:
        raise ModelError(f"{path}: materialized='{materialized}' is not one of {', '.join(MATERIALIZATIONS)}.")
    if settings:
        raise ModelError(f"{path}: unknown config key(s) {', '.join(settings)}; models accept materialized and tags.")
    if layer != "staging" and rendered.sources:
        raise ModelError(f"{path}: only staging models read sources; ref() a staging model instead.")
    return Model(
        name,
        layer,
        path,
        materialized,
        rendered.sql,
        rendered.refs,
        rendered.sources,
        tags=tuple(tags),
        line_offset=rendered.leading_lines,
        vars=rendered.vars,
    )


def _seed_types(sql_dir: Path, names: list[str]) -> dict[str, tuple[dict[str, str], tuple[str, ...]]]:
    import tomllib

    path = sql_dir / "seeds" / "seeds.toml"
    if not names:
        return {}
    try:
        declared = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing; declare the columns of each seed there.") from None
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"{path}: invalid TOML: {e}.") from None
    out = {}
    for name in names:
        columns = declared.get(name, {}).get("columns")
        if not isinstance(columns, dict) or not columns:
            raise ModelError(f'{path}: declare [{name}] columns = {{ column = "TYPE", ... }} for sql/seeds/{name}.csv.')
        optional = declared[name].get("optional_columns", [])
        last = list(columns)[len(columns) - len(optional) :] if isinstance(optional, list) else None
        if optional != last or len(optional) == len(columns):
            raise ModelError(f"{path}: [{name}] optional_columns must name its last columns, in order, after at least one other.")
        out[name] = (columns, tuple(optional))
    extra = sorted(set(declared) - set(names))
    if extra:
        raise ModelError(f"{path}: [{extra[0]}] has no sql/seeds/{extra[0]}.csv.")
    return out


def _order(models: dict[str, Model]) -> tuple[str, ...]:
    from graphlib import CycleError, TopologicalSorter

    rank = {name: (LAYERS.index(m.layer) if m.layer in LAYERS else len(LAYERS), m.layer, name) for name, m in models.items()}
    sorter = TopologicalSorter({name: m.refs for name, m in models.items()})
    try:
        sorter.prepare()
    except CycleError as e:
        cycle = e.args[1]
        raise ModelError(
            f"{models[cycle[0]].path}: dependency cycle {' -> '.join(cycle)}; remove one of these ref() calls."
        ) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return tuple(order)


LINE_OF_ERROR = re.compile(r"LINE (\d+): ?(.*)")


def file_line(model: Model, line: int, snippet: str = "") -> int:
    """The line of the model's file that line `line` of its rendered SQL came from.

    Jinja keeps lines, so the rendered line plus the blank lines stripped before it is the
    answer; where a loop changed the count, the line holding DuckDB's snippet nearest to
    that guess is.
    """
    guess = line + model.line_offset
    lines = model.path.read_text(encoding="utf-8").splitlines()
    text = snippet.strip().strip(".").strip()
    if text and not (0 < guess <= len(lines) and text in lines[guess - 1]):
        hits = [i + 1 for i, candidate in enumerate(lines) if text in candidate]
        if hits:
            guess = min(hits, key=lambda i: abs(i - guess))
    return guess


def describe_sql_error(model: Model, message: str) -> str:
    """`path line N: <DuckDB's first line> near '<text>'` for an error DuckDB raised on a model."""
    from funnel.errors import shorten

    found = LINE_OF_ERROR.search(message)
    if not found:
        return f"{model.path}: {first_line(message)}"
    line = file_line(model, int(found.group(1)), found.group(2))
    return f"{model.path} line {line}: {first_line(message)} (in {shorten(found.group(2).strip(), 60)!r})"


def syntax_errors(graph: Graph, names: list[str]) -> list[str]:
    """Each selected model whose SQL does not parse, as `path line N: message`, without a build."""
    import json

    import duckdb

    problems = []
    with duckdb.connect() as con:
        con.execute("set enable_progress_bar = false")  # DuckDB's bar goes to stdout (funnel/engine/database.py, quiet)
        for name in names:
            model = graph.models[name]
            if model.is_seed:
                continue
            row = con.execute("select json_serialize_sql(?)", [model.sql]).fetchone()
            result = json.loads(row[0]) if row else {}
            if result.get("error"):
                position = int(result.get("position", 0) or 0)
                line = model.sql[:position].count("\n") + 1
                snippet = model.sql.splitlines()[line - 1] if model.sql else ""
                where = file_line(model, line, snippet)
                problems.append(f"{model.path} line {where}: {result.get('error_message')} (in {snippet.strip()[:60]!r})")
    return problems
