"""Rendering a project's SQL files: Jinja with ref(), source(), config(), var(), this and
the project's macros (sql/macros/, as in dbt).

A file's Jinja is the user's code: whatever it raises becomes one ModelError naming the file
and line, and the macro's file and line when a macro raised it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.errors import ModelError, did_you_mean, first_line
from funnel.project.sources import SOURCES, Source
from funnel.quoting import relation

if TYPE_CHECKING:
    import jinja2

MACROS_FOLDER = "macros"
FUNCTIONS = ("ref", "source", "config", "var", "this")  # what every SQL file may call


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
    vars: tuple[str, ...] = ()  # the names var() was asked for


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
    asked: list[str] = []
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
        asked.append(key)
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
    except ModelError as e:
        # From ref(), source(), var(): it says what is wrong; where is the innermost template
        # frame, which is a macro's file and line when a macro called them.
        message = str(e).removeprefix(f"{path}: ")
        raise ModelError(f"{_where(e, path, macros)}: {message}") from None
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
    return Rendered(
        sql, tuple(dict.fromkeys(refs)), tuple(dict.fromkeys(read)), settings, leading_lines, tuple(dict.fromkeys(asked))
    )


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
