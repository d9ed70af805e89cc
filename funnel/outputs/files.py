"""The built models as files: `funnel export --format csv|parquet`, and what every export
starts from (which models, their columns, one result line per table).

DuckDB writes each model to a hidden temporary file that is renamed into place, so a
file appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from funnel.engine import database
from funnel.errors import ConfigError, ExportError, first_line
from funnel.project import definitions
from funnel.project.config import Environment
from funnel.quoting import quote_literal, relation

if TYPE_CHECKING:
    import duckdb

    from funnel.project.manifest import Manifest

FILE_FORMATS = ("csv", "parquet")
DEFINITIONS_FILE = "_funnel_definitions"  # beside the models when the build's definitions are not the defaults
SCRATCH_PREFIX = ".funnel-export-"  # + pid + "-" + random: a folder beside the env's build


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
    import duckdb

    if fmt not in FILE_FORMATS:
        raise ConfigError(f"--format {fmt}: files can be {', '.join(FILE_FORMATS)}.")
    env = manifest.env
    names = selected(manifest, select)
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
        _write_definitions(duck, out, fmt, definitions.recorded_vars(duck))
    return done


def _write_definitions(duck: duckdb.DuckDBPyConnection, out: Path, fmt: str, built_with: dict[str, object]) -> None:
    """`out/_funnel_definitions.<fmt>`: the non-default definitions (README "Definitions")
    the exported build counts with, one row each; none (and no stale file) for the defaults."""
    import duckdb

    final = out / f"{DEFINITIONS_FILE}.{fmt}"
    if not built_with:
        with contextlib.suppress(FileNotFoundError):
            final.unlink()
        return
    temp = out / f".{DEFINITIONS_FILE}.{fmt}.{os.getpid()}.tmp"
    options = "format csv, header true" if fmt == "csv" else "format parquet"
    values = ", ".join("(?, ?)" for _ in built_with)
    params = [str(p) for pair in built_with.items() for p in (pair[0], definitions.text(pair[1]))]
    try:
        duck.execute(
            f"copy (select * from (values {values}) as t(definition, value)) to {quote_literal(str(temp))} ({options})",
            params,
        )
        os.replace(temp, final)
    except (duckdb.Error, OSError) as e:
        raise ExportError(f"{final}: cannot be written ({first_line(e)}); check the folder and free space.") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def columns(duck: duckdb.DuckDBPyConnection, schema: str, name: str) -> list[tuple[str, str]]:
    """(column, DuckDB type) of a built model; ExportError when the build does not have it."""
    found = database.table_columns(duck, schema).get(name)
    if not found:
        raise ExportError(f"model {name} is not in the build of {schema}; run funnel build first.")
    return found


def selected(manifest: Manifest, select: str | None) -> list[str]:
    """The models an export writes: `select`, or the reporting layer."""
    return manifest.graph.select(select or "reporting")


@contextlib.contextmanager
def scratch_folder(env: Environment) -> Iterator[Path]:
    """A private folder beside the env's build for the CSV copies an export or parity writes.

    Beside the build rather than in /tmp, so that the next export or parity finds and
    removes what a killed one left (full copies of the tables). The folder's `lock` file is
    flocked while its owner lives; the kernel drops the lock when the owner dies, however.
    """
    parent = env.database.parent
    remove_abandoned_scratch(parent)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=parent))
    except OSError as e:
        raise ExportError(f"{parent}: cannot create a temporary folder ({e.strerror}); check its permissions.") from None
    # Lock first, then give the lock file its name: a folder whose `lock` can be locked is dead.
    handle = (folder / "lock.new").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(folder / "lock.new", folder / "lock")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        handle.close()


def remove_abandoned_scratch(parent: Path) -> None:
    """Remove the scratch folders of exports and parities that died (SIGKILL, power loss)."""
    for folder in parent.glob(f"{SCRATCH_PREFIX}*"):
        try:
            handle = (folder / "lock").open("r")
        except FileNotFoundError:
            # Killed before it named its lock, or still starting: only a dead owner's goes.
            owner = folder.name.removeprefix(SCRATCH_PREFIX).split("-")[0]
            if owner.isdigit() and not _alive(int(owner)):
                shutil.rmtree(folder, ignore_errors=True)
            continue
        except OSError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live export's
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
