"""The environment's DuckDB file: how builds replace it and how readers open it.

A build never writes the committed file. It writes `.<name>.<pid>.tmp` beside it and,
only once every model and data test has passed, renames that over the committed file
(an atomic step on POSIX). Readers open the committed file read-only, so they see the
last good build whatever a build is doing, and never meet a write lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel import atomic, workdir
from funnel.errors import BuildBusy, BuildMissing, FunnelError, first_line
from funnel.project.config import Environment

if TYPE_CHECKING:
    import duckdb

READ_RETRY_SECONDS = 3.0
INFO_SCHEMA = workdir.INFO_SCHEMA  # where a build records itself (build_info, funnel/build/record.py)


def commit(temp: Path, database: Path) -> None:
    """Make `temp` the environment's database in one atomic rename, durably."""
    atomic.replace(temp, database)


def is_machine_fault(error: Exception) -> bool:
    """True when DuckDB failed for want of disk or memory, whatever SQL it was running.

    A full disk shows up as an IO error, or as a failed commit or checkpoint that says so.
    """
    import duckdb

    if isinstance(error, duckdb.IOException | duckdb.OutOfMemoryException):
        return True
    text = str(error)
    return "No space left on device" in text or "Could not write file" in text


# A build's memory when the env sets no memory_limit: DuckDB's own default is 80 % of the
# machine's memory, and a 5M-deal build would take 3.7 GB of a laptop's. Beyond this DuckDB
# spills to disk (docs/benchmarks.md, "Peak memory"); 1M deals stay well below it.
DEFAULT_MEMORY_LIMIT_MB = 1500


def default_memory_limit() -> str | None:
    """DEFAULT_MEMORY_LIMIT_MB, or None (DuckDB's own default) on a machine with less memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    return f"{DEFAULT_MEMORY_LIMIT_MB}MB" if total * 0.8 > DEFAULT_MEMORY_LIMIT_MB * 2**20 else None


def connect(path: Path, env: Environment) -> duckdb.DuckDBPyConnection:
    """A read-write connection to a temporary build file, with the env's limits."""
    import duckdb

    settings: dict[str, str | int | bool] = {"temp_directory": f"{path}.spill", "preserve_insertion_order": False}
    if env.threads:
        settings["threads"] = env.threads
    if memory_limit := env.memory_limit or default_memory_limit():
        settings["memory_limit"] = memory_limit
    return quiet(duckdb.connect(str(path), config=settings))  # type: ignore[arg-type]


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """`con` without DuckDB's progress bar, which it draws on stdout for any query over 2 s:
    into the data of `funnel show -f csv > file`, the CLI's own progress and a notebook
    (the Python API prints nothing). A setting of the connection, not of the database: a
    `config=` one would clash with other connections to the same file in the process."""
    con.execute("set enable_progress_bar = false")
    return con


@contextlib.contextmanager
def read(env: Environment) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the environment's last committed build."""
    import duckdb

    if not env.database.exists():
        raise BuildMissing(f"no build of env '{env.name}' at {env.database}; run funnel build --env {env.name} first.")
    deadline = time.monotonic() + READ_RETRY_SECONDS
    while True:
        try:
            con = quiet(duckdb.connect(str(env.database), read_only=True))
            break
        except duckdb.Error as e:
            locked = isinstance(e, duckdb.IOException) and "lock" in str(e).lower()
            if not locked:
                raise unreadable(env, e) from None
            if time.monotonic() >= deadline:
                raise BuildBusy(
                    f"{env.database}: cannot be opened ({first_line(e)}); close other programs using it and retry."
                ) from None
            time.sleep(0.1)
    try:
        yield con
    finally:
        con.close()


def unreadable(env: Environment, error: Exception) -> FunnelError:
    """What to say about a database file DuckDB cannot open (not for want of a lock)."""
    path = env.database
    if "Permission denied" in str(error):
        return FunnelError(f"{path}: cannot be opened ({first_line(error)}); check its permissions.")
    if workdir.is_duckdb(path):  # funnel clean removes it
        return FunnelError(
            f"{path}: the database is damaged ({first_line(error)}); remove it with funnel clean --env {env.name}, "
            f"then run funnel build --env {env.name}."
        )
    return FunnelError(
        f"{path}: not a DuckDB database ({first_line(error)}); if it is a damaged build, delete it and run "
        f"funnel build --env {env.name}; if it is another file, point [{env.name}] database in {env.config_path.name} elsewhere."
    )


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, catalog: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """Every table and view of `schema` (in `catalog`, when given) with its (column, DuckDB type)s, in order.

    The one place that reads a build's shape: show, compare, export and parity all ask here.
    """
    query = "select table_name, column_name, data_type from information_schema.columns where table_schema = ?"
    params: list[Any] = [schema]
    if catalog:
        query += " and table_catalog = ?"
        params.append(catalog)
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in con.execute(query + " order by table_name, ordinal_position", params).fetchall():
        found.setdefault(table, []).append((column, data_type))
    return found


def copy_committed(database: Path, temp: Path) -> None:
    """Start a partial (--select) build from a copy of the committed one."""
    try:
        shutil.copyfile(database, temp)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise FunnelError(f"{temp.parent}: no space left to copy the build; free some disk.") from None
        raise
