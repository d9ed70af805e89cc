"""The built models as files: `funnel export --format csv|parquet`, and what every export
starts from (which models, their columns, one result line per table).

DuckDB writes each model to a hidden temporary file that is renamed into place, so a
file appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from funnel import database
from funnel.config import Environment
from funnel.errors import ConfigError, ExportError, first_line
from funnel.manifest import compile_project
from funnel.quoting import quote_literal, relation

if TYPE_CHECKING:
    import duckdb

    from funnel.config import Project

FILE_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class Exported:
    table: str
    rows: int
    seconds: float


def export_files(
    project: Project,
    env: Environment,
    out: Path,
    fmt: str,
    select: str | None = None,
    on_table: Callable[[Exported], None] | None = None,
) -> list[Exported]:
    """Write the selected models as `out/<model>.<fmt>`; each file appears complete or not at all."""
    import duckdb

    if fmt not in FILE_FORMATS:
        raise ConfigError(f"--format {fmt}: files can be {', '.join(FILE_FORMATS)}.")
    names = selected(project, env, select)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    with database.read(env) as duck:
        for name in names:
            started = time.perf_counter()
            final = out / f"{name}.{fmt}"
            temp = out / f".{name}.{fmt}.{os.getpid()}.tmp"
            options = "format csv, header true" if fmt == "csv" else "format parquet"
            try:
                row = duck.execute(
                    f"copy (select * from {relation(env.schema, name)}) to {quote_literal(str(temp))} ({options})"
                ).fetchone()
                os.replace(temp, final)
            except (duckdb.Error, OSError) as e:
                raise ExportError(f"{final}: cannot be written ({first_line(e)}); check the folder and free space.") from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            item = Exported(name, int(row[0]) if row else 0, time.perf_counter() - started)
            done.append(item)
            if on_table:
                on_table(item)
    return done


def columns(duck: duckdb.DuckDBPyConnection, schema: str, name: str) -> list[tuple[str, str]]:
    """(column, DuckDB type) of a built model; ExportError when the build does not have it."""
    found = duck.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, name],
    ).fetchall()
    if not found:
        raise ExportError(f"model {name} is not in the build of {schema}; run funnel build first.")
    return found


def selected(project: Project, env: Environment, select: str | None) -> list[str]:
    """The models an export writes: `select`, or the reporting layer."""
    dag, _ = compile_project(project.sql_dir, env.schema, env.database.parent)
    return dag.select(select or "reporting")
