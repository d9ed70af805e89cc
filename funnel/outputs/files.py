"""The built models as files: `funnel export --format csv|parquet`, and what every export
starts from (which models, their columns, one result line per table).

DuckDB writes each model to a hidden temporary file that is renamed into place, so a
file appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from funnel import atomic
from funnel.build import record as records
from funnel.engine import database
from funnel.errors import ConfigError, ExportError, first_line
from funnel.names import ONE_PIPELINE
from funnel.outputs import query
from funnel.project import definitions
from funnel.quoting import quote_literal, relation

if TYPE_CHECKING:
    import duckdb

    from funnel.project.manifest import Manifest

FILE_FORMATS = ("csv", "parquet")
DEFINITIONS_FILE = "_funnel_definitions"  # beside the models when the build's definitions are not the defaults


@dataclass(frozen=True)
class Exported:
    table: str
    rows: int
    seconds: float


def export_files(
    manifest: Manifest,
    out: Path,
    fmt: str,
    select: str | None = None,
    on_table: Callable[[Exported], None] | None = None,
) -> list[Exported]:
    """Write the selected models as `out/<model>.<fmt>`; each file appears complete or not at all."""

    if fmt not in FILE_FORMATS:
        raise ConfigError(f"--format {fmt}: files can be {', '.join(FILE_FORMATS)}.")
    env = manifest.env
    names = selected(manifest, select)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    with database.read(env) as duck:
        for name in names:
            started = time.perf_counter()
            rows = _copy(duck, f"select * from {relation(env.schema, name)}", out / f"{name}.{fmt}")
            item = Exported(name, rows, time.perf_counter() - started)
            done.append(item)
            if on_table:
                on_table(item)
        built_with = records.recorded_vars(duck)
        # A file is read without funnel's titles: say which pipeline the models of one count.
        counted = query.counted_pipeline(duck) if set(names) & set(ONE_PIPELINE) else None
        _write_definitions(duck, out, fmt, built_with | ({"pipeline": counted} if counted is not None else {}))
    return done


def _write_definitions(duck: duckdb.DuckDBPyConnection, out: Path, fmt: str, built_with: dict[str, object]) -> None:
    """`out/_funnel_definitions.<fmt>`: the non-default definitions (README "Definitions")
    the exported build counts with, and the pipeline the models of one pipeline count, one
    row each; none (and no stale file) for the defaults of a funnel of every pipeline."""
    final = out / f"{DEFINITIONS_FILE}.{fmt}"
    if not built_with:
        with contextlib.suppress(FileNotFoundError):
            final.unlink()
        return
    values = ", ".join("(?, ?)" for _ in built_with)
    params = [str(p) for pair in built_with.items() for p in (pair[0], definitions.text(pair[1]))]
    _copy(duck, f"select * from (values {values}) as t(definition, value)", final, params)


def _copy(duck: duckdb.DuckDBPyConnection, query: str, final: Path, params: list[str] | None = None) -> int:
    """Write what `query` returns to `final` (CSV or Parquet, by its suffix) all-or-nothing; its row count."""
    import duckdb

    options = "format csv, header true" if final.suffix == ".csv" else "format parquet"
    try:
        with atomic.writing(final) as temp:
            row = duck.execute(f"copy ({query}) to {quote_literal(str(temp))} ({options})", params).fetchone()
    except (duckdb.Error, OSError) as e:
        raise ExportError(f"{final}: cannot be written ({first_line(e)}); check the folder and free space.") from None
    return int(row[0]) if row else 0


def columns(duck: duckdb.DuckDBPyConnection, schema: str, name: str) -> list[tuple[str, str]]:
    """(column, DuckDB type) of a built model; ExportError when the build does not have it."""
    found = database.table_columns(duck, schema).get(name)
    if not found:
        raise ExportError(f"model {name} is not in the build of {schema}; run funnel build first.")
    return found


def selected(manifest: Manifest, select: str | None) -> list[str]:
    """The models an export writes: `select`, or the reporting layer."""
    return manifest.graph.select(select or "reporting")
