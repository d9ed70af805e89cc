"""The environment's DuckDB file: how builds replace it and how readers open it.

A build never writes the committed file. It writes `.<name>.<pid>.tmp` beside it and,
only once every model and data test has passed, renames that over the committed file
(an atomic step on POSIX). Readers open the committed file read-only, so they see the
last good build whatever a build is doing, and never meet a write lock.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.errors import BuildBusy, BuildMissing, ConfigError, FunnelError, first_line
from funnel.project.config import Environment, require_outside_export

if TYPE_CHECKING:
    import duckdb

READ_RETRY_SECONDS = 3.0
INFO_SCHEMA = "_funnel"  # where a build records itself (build_info): what makes a database funnel's


def temp_path(database: Path) -> Path:
    return database.with_name(f".{database.name}.{os.getpid()}.tmp")


def _temp_glob(database: Path) -> list[Path]:
    return sorted(database.parent.glob(f".{database.name}.*.tmp*"))


def stale_temps(env: Environment) -> bool:
    """Whether temporary build files lie beside the database (a running or a dead build's)."""
    return bool(_temp_glob(env.database))


def remove_temp(path: Path) -> None:
    """Remove a temporary build file with its WAL and spill folder."""
    for leftover in (path, Path(f"{path}.wal"), Path(f"{path}.spill")):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


@contextlib.contextmanager
def build_lock(env: Environment, wait: float = 0.0) -> Iterator[None]:
    """Hold the environment's build lock; wait up to `wait` seconds for another build.

    The lock is an flock on `<database>.lock`: the kernel drops it when a process dies,
    so a killed build never leaves a stale lock behind.
    """
    lock_path = env.database.with_name(env.database.name + ".lock")
    try:
        env.database.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a+")
    except OSError as e:
        raise FunnelError(
            f"{env.database.parent}: cannot create the build folder ({e.strerror}); check its permissions."
        ) from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(handle, lock_path):
                    break
                # `funnel clean` removed the lock file while we waited on it: lock the new one.
                handle.close()
                handle = lock_path.open("a+")
                continue
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise BuildBusy(
                        f"another build of env '{env.name}' is running ({holder}); "
                        "wait for it to finish or rerun with --wait SECONDS."
                    ) from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        # We hold the lock, so any temporary file left here is from a build that died.
        for stale in _temp_glob(env.database):
            remove_temp(stale)
        yield
    finally:
        handle.close()  # releases the flock


def _same_file(handle: Any, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), path.stat())
    except FileNotFoundError:
        return False


DUCKDB_MAGIC = b"DUCK"  # at byte 8 of every DuckDB database file


@dataclass(frozen=True)
class Removed:
    """A build output `clean` removed (or, with `kept`, left and why)."""

    path: Path
    bytes: int
    kept: str | None = None


def clean(env: Environment) -> list[Removed]:
    """Remove what builds of `env` wrote: the database with its WAL and lock, temporary
    build files, the compiled-project cache and abandoned export scratch folders.

    Only files with the names funnel gives them, beside the env's database, are touched;
    a `database` that is not a DuckDB file (a path pointing at raw data by mistake) is
    kept. Raises BuildBusy while a build of `env` runs.
    """
    from funnel.outputs.files import SCRATCH_PREFIX

    folder = env.database.parent
    if not folder.is_dir():
        return []
    lock_path = env.database.with_name(env.database.name + ".lock")
    had_lock = lock_path.is_file()
    # Taking the lock removes dead builds' temporary files: measure them first.
    temps = {path: _bytes(path) for path in _temp_glob(env.database)}
    done: list[Removed] = []
    with build_lock(env, 0):
        done += [Removed(path, size) for path, size in temps.items() if not path.exists()]
        if env.database.is_file() or env.database.is_symlink():
            if env.database.is_symlink() or is_duckdb(env.database):
                done.append(_remove(env.database))
            else:
                done.append(Removed(env.database, 0, "not a DuckDB file; left as it is"))
        wal = Path(f"{env.database}.wal")
        if wal.is_file():
            done.append(_remove(wal))
        for path in [*_temp_glob(env.database), *sorted(folder.glob(f".funnel-manifest-{env.schema}.json*"))]:
            done.append(_remove(path))
        done += _remove_scratch(folder, SCRATCH_PREFIX)
        if lock_path.is_file():
            removed = _remove(lock_path)  # while holding it: a waiting build locks a new one
            if had_lock:
                done.append(removed)
    return done


def is_duckdb(path: Path) -> bool:
    """Whether the file starts like a DuckDB database (its magic bytes), whatever its state."""
    try:
        with path.open("rb") as f:
            return f.read(12)[8:12] == DUCKDB_MAGIC
    except OSError:
        return False


def _remove(path: Path) -> Removed:
    size = _bytes(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return Removed(path, size)


def _remove_scratch(folder: Path, prefix: str) -> list[Removed]:
    """Export scratch folders in `folder`, except those of an export or parity still running."""
    from funnel.outputs.files import remove_abandoned_scratch

    sizes = {path: _bytes(path) for path in sorted(folder.glob(f"{prefix}*"))}
    if sizes:
        remove_abandoned_scratch(folder)
    return [
        Removed(path, 0, "an export or parity is using it") if path.exists() else Removed(path, size)
        for path, size in sizes.items()
    ]


def _bytes(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def commit(temp: Path, database: Path) -> None:
    """Make `temp` the environment's database in one atomic rename, durably."""
    with open(temp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temp, database)
    dir_fd = os.open(database.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def is_machine_fault(error: Exception) -> bool:
    """True when DuckDB failed for want of disk or memory, whatever SQL it was running.

    A full disk shows up as an IO error, or as a failed commit or checkpoint that says so.
    """
    import duckdb

    if isinstance(error, duckdb.IOException | duckdb.OutOfMemoryException):
        return True
    text = str(error)
    return "No space left on device" in text or "Could not write file" in text


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block (they are delivered right after it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
    return duckdb.connect(str(path), config=settings)  # type: ignore[arg-type]


@contextlib.contextmanager
def read(env: Environment) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the environment's last committed build."""
    import duckdb

    if not env.database.exists():
        raise BuildMissing(f"no build of env '{env.name}' at {env.database}; run funnel build --env {env.name} first.")
    deadline = time.monotonic() + READ_RETRY_SECONDS
    while True:
        try:
            con = duckdb.connect(str(env.database), read_only=True)
            break
        except duckdb.Error as e:
            locked = isinstance(e, duckdb.IOException) and "lock" in str(e).lower()
            if not locked:
                raise _unreadable(env, e) from None
            if time.monotonic() >= deadline:
                raise BuildBusy(
                    f"{env.database}: cannot be opened ({first_line(e)}); close other programs using it and retry."
                ) from None
            time.sleep(0.1)
    try:
        yield con
    finally:
        con.close()


def _unreadable(env: Environment, error: Exception) -> FunnelError:
    """What to say about a database file DuckDB cannot open (not for want of a lock)."""
    path = env.database
    if "Permission denied" in str(error):
        return FunnelError(f"{path}: cannot be opened ({first_line(error)}); check its permissions.")
    if is_duckdb(path):  # funnel clean removes it
        return FunnelError(
            f"{path}: the database is damaged ({first_line(error)}); remove it with funnel clean --env {env.name}, "
            f"then run funnel build --env {env.name}."
        )
    return FunnelError(
        f"{path}: not a DuckDB database ({first_line(error)}); if it is a damaged build, delete it and run "
        f"funnel build --env {env.name}; if it is another file, point [{env.name}] database in {env.config_path.name} elsewhere."
    )


def require_replaceable(env: Environment) -> None:
    """Refuse a build of `env` whose `database` names a file a build must not replace.

    A build replaces the file by renaming a new one over it, whatever it held: a path that
    names the user's CSV or notes by mistake, a DuckDB database funnel did not write, or a
    place inside the export folder (where the lock and temporary files would land among
    the export's files) is a ConfigError naming the key, and nothing is written. A damaged
    build of funnel's is reported by `read`, with the way out (funnel clean).
    """
    import duckdb

    env.export_folder()  # an env that names no export builds nothing: say that first
    require_outside_export(env)
    path = env.database
    where = f"{env.config_path}: [{env.name}] database {path}"
    instead = f"point database at a file of its own, e.g. target/{env.name}.duckdb"
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_file():
        raise ConfigError(f"{where} is not a regular file, and a build would replace it; {instead}.")
    if committed_info(env) is not None:
        return  # the last build of this env
    if not is_duckdb(path):
        raise ConfigError(
            f"{where} is not a DuckDB file, and a build would replace it; if the file is yours, {instead}; "
            "if it is a damaged build, delete it."
        )
    with read(env) as con:  # a damaged or locked file is reported as such
        try:
            ours = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = 'build_info'",
                [INFO_SCHEMA],
            ).fetchone()
        except duckdb.Error as e:
            raise _unreadable(env, e) from None
    if not ours or not ours[0]:
        raise ConfigError(
            f"{where} is a DuckDB database funnel did not build (it has no {INFO_SCHEMA}.build_info), and a build "
            f"would replace it; {instead}."
        )


_info_cache: dict[tuple[object, ...], dict[str, Any] | None] = {}


def committed_info(env: Environment) -> dict[str, Any] | None:
    """What the committed build recorded about itself (`_funnel.build_info`), or None when
    there is no build, or one this version cannot read (the next build is then a full one).

    Read once per version of the file in a process: a build plans twice (before and under
    its lock), and opening a build costs some 10 ms.
    """
    try:
        stat = env.database.stat()
    except OSError:
        return None
    try:
        wal = env.database.with_name(env.database.name + ".wal").stat()
        wal_stat: tuple[int, int] | None = (wal.st_size, wal.st_mtime_ns)
    except OSError:
        wal_stat = None
    key = (str(env.database), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, wal_stat)
    if key not in _info_cache:
        _info_cache.clear()  # one version at a time is all a process needs
        _info_cache[key] = _read_info(env)
    info = _info_cache[key]
    return None if info is None else copy.deepcopy(info)


def _read_info(env: Environment) -> dict[str, Any] | None:
    import duckdb

    try:  # a file gone since committed_info's stat is a BuildMissing: None too
        with read(env) as con:
            row = con.execute("select info from _funnel.build_info").fetchone()
    except (FunnelError, duckdb.Error):
        return None
    try:
        info = json.loads(row[0]) if row else None
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


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


def failures_path(env: Environment) -> Path:
    return env.database.with_name(env.database.name + ".failures.json")


def save_failures(env: Environment, rows: list[Any]) -> None:
    """Keep the failing rows of a build that failed its tests (none: forget the last ones),
    where `funnel test --failures` finds them; the committed build is not touched."""
    path = failures_path(env)
    if not rows:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    from dataclasses import asdict
    from datetime import UTC, datetime

    data = {"failed_at": datetime.now(UTC).isoformat(timespec="seconds"), "tests": [asdict(r) for r in rows]}
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(temp, path)


def load_failures(env: Environment) -> dict[str, Any] | None:
    """What save_failures kept, or None."""
    try:
        data = json.loads(failures_path(env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def copy_committed(database: Path, temp: Path) -> None:
    """Start a partial (--select) build from a copy of the committed one."""
    try:
        shutil.copyfile(database, temp)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise FunnelError(f"{temp.parent}: no space left to copy the build; free some disk.") from None
        raise
