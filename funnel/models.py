"""Models from files: discovery, Jinja rendering, the dependency graph and `--select`.

A model is one `.sql` file in any folder under `sql/` (its layer is the top folder:
`sql/reporting/sales/x.sql` is in `reporting`), or a `.csv` seed under `sql/seeds/`; the
file stem is its name. `sql/tests/` holds data tests. Rendering records every `ref()` and
`source()`, which gives the graph; order is topological with ties broken by (layer, name),
so runs are repeatable. The materialization comes from `config()` or the folder's default.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.config import DEFAULT_MATERIALIZATIONS, IDENTIFIER, MATERIALIZATIONS, Materialization
from funnel.errors import ConfigError, ModelError, did_you_mean, first_line
from funnel.quoting import relation
from funnel.sources import SOURCE_NAME, SOURCES, Source

if TYPE_CHECKING:
    import jinja2

    from funnel.selectors import Selector

LAYERS = ("seeds", "staging", "intermediate", "reporting")  # the usual ones, in run-order rank
TESTS_FOLDER, SEEDS_FOLDER, MACROS_FOLDER = "tests", "seeds", "macros"
FUNCTIONS = ("ref", "source", "config", "var", "this")  # what every SQL file may call
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
    tags: tuple[str, ...] = ()
    line_offset: int = 0  # line N of `sql` is line N + line_offset of the file (without Jinja loops)

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
        """Model names a selector picks (dbt's grammar, see funnel/selectors.py), in run order.

        None selects everything; a string is parsed first (the CLI passes parsed values).
        """
        from funnel.selectors import parse, resolve

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
        if name in found:
            raise ModelError(f"{path}: model name '{name}' is also used by {found[name][1]}; rename one.")
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
    macros = load_macros(sql_dir)
    seed_types = _seed_types(sql_dir, [n for n, (layer, _) in files.items() if layer == SEEDS_FOLDER])
    models: dict[str, Model] = {}
    for name, (layer, path) in files.items():
        if layer == SEEDS_FOLDER:
            models[name] = Model(name, layer, path, "table", "", seed_columns=seed_types[name])
        else:
            models[name] = _model(name, layer, path, schema, files, folders.get(layer, "table"), variables or {}, sources, macros)
    return Graph(models=models, order=_order(models), schema=schema, variables=dict(variables or {}))


@dataclass(frozen=True)
class MacroFile:
    """A file of sql/macros/: Jinja `{% macro %}` definitions every SQL file may call."""

    path: Path
    text: str
    names: tuple[str, ...]  # the macros it defines


def load_macros(sql_dir: Path) -> tuple[MacroFile, ...]:
    """The project's macros (every `.sql` file under sql/macros/), as dbt keeps them: each
    macro is callable by name from every model and SQL test. Raise ModelError naming the
    file for one that does not compile, holds anything but macro definitions and comments
    (a top-level config(), ref() or set would change every file that renders after it), or
    defines a name twice or one that would hide funnel's functions or Jinja's own."""
    import jinja2
    from jinja2 import nodes

    reserved = {*FUNCTIONS, *_jinja().globals, "self", "loop", "caller", "varargs", "kwargs"}
    found: list[MacroFile] = []
    defined: dict[str, Path] = {}
    for path in sorted(p for p in (sql_dir / MACROS_FOLDER).rglob("*.sql") if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8-sig")  # an editor's byte order mark is not text
            tree = _jinja().parse(text)
            _template(text, path)
        except jinja2.TemplateSyntaxError as e:
            raise ModelError(f"{path} line {e.lineno}: {e.message}") from None
        except UnicodeDecodeError:
            raise ModelError(f"{path}: not UTF-8 text.") from None
        except (RecursionError, SyntaxError, MemoryError):  # Python's own limits, met while compiling
            raise ModelError(f"{path}: the Jinja nests too deeply to compile; split it into smaller macros.") from None
        for node in tree.body:
            if isinstance(node, nodes.Macro):
                continue
            parts = node.nodes if isinstance(node, nodes.Output) else [node]
            for part in parts:
                if isinstance(part, nodes.TemplateData) and not part.data.strip():
                    continue
                text_before = (
                    part.data[: len(part.data) - len(part.data.lstrip())] if isinstance(part, nodes.TemplateData) else ""
                )
                raise ModelError(
                    f"{path} line {part.lineno + text_before.count(chr(10))}: a macros file holds only {{% macro %}} "
                    "definitions and comments; move this into a macro or a model."
                )
        names = tuple(node.name for node in tree.body if isinstance(node, nodes.Macro))
        for name in names:
            if name in reserved:
                raise ModelError(f"{path}: a macro named '{name}' would hide {name}() of every SQL file; rename it.")
            if name in defined:
                where = "earlier in this file" if defined[name] == path else f"in {defined[name]}"
                raise ModelError(f"{path}: macro '{name}' is also defined {where}; keep one.")
            defined[name] = path
        found.append(MacroFile(path, text, names))
    return tuple(found)


@dataclass(frozen=True)
class Rendered:
    sql: str
    refs: tuple[str, ...]
    sources: tuple[str, ...]
    settings: dict[str, Any]
    leading_lines: int = 0  # template lines before the first rendered one (for error lines)


def render(
    path: Path,
    schema: str,
    files: dict[str, tuple[str, Path]],
    name: str | None = None,
    variables: Mapping[str, Any] | None = None,
    sources: tuple[Source, ...] = SOURCES,
    macros: tuple[MacroFile, ...] = (),
) -> Rendered:
    """Render one Jinja SQL file, recording its ref() and source() calls and its config().

    `var('name')` reads `variables` (environments.toml [vars], [<env>.vars], --var), and
    `var('name', default)` falls back to the default when the project does not set it.
    The `macros` are callable by name; what they call (ref() included) counts for this file.
    """
    import jinja2

    given = variables or {}

    refs: list[str] = []
    read: list[str] = []
    settings: dict[str, Any] = {}

    def ref(target: str) -> str:
        if target not in files:
            raise ModelError(f"{path}: ref('{target}') names no model." + did_you_mean(target, list(files)))
        if target == name:
            raise ModelError(f"{path}: a model cannot ref() itself.")
        refs.append(target)
        return relation(schema, target)

    def source(source_name: str, table: str) -> str:
        known = {(s.source_name, s.table) for s in sources}
        if (source_name, table) not in known:
            choices = [f"{s}.{t}" for s, t in sorted(known)]
            raise ModelError(
                f"{path}: source('{source_name}', '{table}') is not declared." + did_you_mean(f"{source_name}.{table}", choices)
            )
        read.append(table)
        return relation(source_name, table)

    def config(**kwargs: Any) -> str:
        settings.update(kwargs)
        return ""

    def var(key: str, *default: Any) -> Any:
        if key in given:
            return given[key]
        if default:
            return default[0]
        raise ModelError(
            f"{path}: var('{key}') is not set; set it in [vars] of environments.toml or with --var {key}=VALUE, "
            "or give a default: var('name', default)." + did_you_mean(key, list(given))
        )

    this = relation(schema, name) if name else ""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not UTF-8 text.") from None
    # One namespace for the file and every macro (shared, not copied), so a macro may call
    # another macro, whichever file defines it.
    context: dict[str, Any] = {**_jinja().globals, "ref": ref, "source": source, "config": config, "this": this, "var": var}
    try:
        for macro_file in macros:
            # Defining the macros is all a macros file does (load_macros checked it); they
            # are taken from its context, so that private ones (_name) are there too.
            macro_template = _template(macro_file.text, macro_file.path)
            defining = macro_template.new_context(context, shared=True)
            for _ in macro_template.root_render_func(defining):
                pass
            context.update({n: defining.vars[n] for n in macro_file.names})
        sql = _template(text, path).render(context)
    except ModelError:
        raise  # from ref(), source(), var(): already says what is wrong
    except jinja2.TemplateSyntaxError as e:
        raise ModelError(f"{path} line {e.lineno}: {e.message}") from None
    except jinja2.UndefinedError as e:
        defined = [n for m in macros for n in m.names if not n.startswith("_")]
        raise ModelError(
            f"{_where(e, path, macros)}: {e.message}; SQL files may use ref(), source(), config(), var(), this"
            + (f" and the macros of sql/macros/ ({', '.join(defined)})." if defined else " and macros in sql/macros/.")
        ) from None
    except RecursionError:
        raise ModelError(f"{path}: the Jinja nests too deeply, or a macro calls itself without end.") from None
    except Exception as e:  # noqa: BLE001 - the file's Jinja is the user's code: whatever it raises is theirs
        # A macro called with too many arguments, 1 + 'x', a missing key, cycler() with no items.
        raise ModelError(f"{_where(e, path, macros)}: {first_line(e)}; fix the Jinja there.") from None
    body = sql.lstrip()
    leading_lines = sql[: len(sql) - len(body)].count("\n")
    sql = body.rstrip().rstrip(";").strip()
    if not sql:
        raise ModelError(f"{path}: the file is empty; write one select statement.")
    return Rendered(sql, tuple(dict.fromkeys(refs)), tuple(dict.fromkeys(read)), settings, leading_lines)


@functools.lru_cache(maxsize=1024)
def _template(text: str, path: Path) -> jinja2.Template:
    """The compiled template of the file at `path` holding `text`. Its code carries the
    path, so an error's traceback says which file and line raised it (`_where`)."""
    env = _jinja()
    return env.template_class.from_code(env, compile(_python(text), str(path), "exec"), env.make_globals(None), None)


@functools.lru_cache(maxsize=1024)
def _python(text: str) -> str:
    """The Python code Jinja writes for `text`. Writing it is most of a render, and a
    process that compiles a project more than once (`funnel compare`, definitions, the test
    suite) meets the same text again; the functions a file calls are given at render time."""
    return str(_jinja().compile(text, raw=True))


def _where(error: BaseException, path: Path, macros: tuple[MacroFile, ...]) -> str:
    """`path line N` where the Jinja of the file itself raised `error`, or `path (in
    <macros file> line N)` where a macro it called did: the innermost template frame."""
    files = {str(path), *(str(m.path) for m in macros)}
    found = None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename in files:
            found = (trace.tb_frame.f_code.co_filename, trace.tb_lineno)
        trace = trace.tb_next
    if found is None:
        return str(path)
    if found[0] == str(path):
        return f"{path} line {found[1]}"
    return f"{path} (in {found[0]} line {found[1]})"


@functools.cache
def _jinja() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


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
    )


def _seed_types(sql_dir: Path, names: list[str]) -> dict[str, dict[str, str]]:
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
        out[name] = columns
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
    from funnel.errors import first_line, shorten

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
