"""Every file funnel keeps beside an env's database, named here and nowhere else.

Beside `<database>` (target/dev.duckdb by default) a build and the commands around it keep:

    <database>.wal                   DuckDB's write-ahead log
    <database>.lock                  the build lock (flock; the holder's pid inside)
    .<database>.<pid>.tmp[.wal|.spill]  a build in progress (removed by the next build if it died)
    <database>.failures.json         the failing rows of the last build that failed its tests
    .funnel-manifest-<schema>.json   the compiled project, cached
    .funnel-export-<pid>-<random>/   an export's or parity's scratch copies
    spark-<env>.log, .spark-log4j2.properties   a Spark env's log and its settings

and `funnel docs` writes target/docs/index.html in the project; a writer of the cache,
the failing rows or the page killed before its rename leaves `.<file>.<pid>.tmp` beside
the file (atomic.temp_beside). `clean` removes exactly these, and never a file of another
name, nor a `database` that is not a DuckDB database funnel built (a CSV, the user's own
DuckDB file) with its WAL.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel import atomic
from funnel.errors import BuildBusy, ExportError, FunnelError

if TYPE_CHECKING:
    from funnel.project.config import Config, Environment

SCRATCH_PREFIX = ".funnel-export-"  # + pid + "-" + random: a folder beside the env's build
DOCS_FOLDER = Path("target") / "docs"  # funnel docs' default --out, in the project
DOCS_PAGE = "index.html"
DOCS_MARK = "<h1>funnel project · env "  # in every page funnel docs writes
DUCKDB_MAGIC = b"DUCK"  # at byte 8 of every DuckDB database file
INFO_SCHEMA = "_funnel"  # where a build records itself (build_info): what makes a database funnel's


def is_duckdb(path: Path) -> bool:
    """Whether the file starts like a DuckDB database (its magic bytes), whatever its state."""
    try:
        with path.open("rb") as f:
            return f.read(12)[8:12] == DUCKDB_MAGIC
    except OSError:
        return False


def wal_path(database: Path) -> Path:
    return database.with_name(database.name + ".wal")


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def manifest_cache(env: Environment) -> Path:
    return env.database.parent / f".funnel-manifest-{env.schema}.json"


def spark_log(env: Environment) -> Path:
    return env.database.parent / f"spark-{env.name}.log"


def spark_settings(env: Environment) -> Path:
    return env.database.parent / ".spark-log4j2.properties"


def temp_path(database: Path) -> Path:
    return atomic.temp_beside(database)


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
def build_lock(
    env: Environment, wait: float = 0.0, next_step: str = "wait for it to finish or rerun with --wait SECONDS"
) -> Iterator[None]:
    """Hold the environment's build lock; wait up to `wait` seconds for another build, then
    raise BuildBusy saying `next_step` (a build has --wait; clean does not).

    The lock is an flock on `<database>.lock`: the kernel drops it when a process dies,
    so a killed build never leaves a stale lock behind.
    """
    lock = lock_path(env.database)
    try:
        env.database.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a+")
    except OSError as e:
        raise FunnelError(
            f"{env.database.parent}: cannot create the build folder ({e.strerror}); check its permissions."
        ) from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(handle, lock):
                    break
                # `funnel clean` removed the lock file while we waited on it: lock the new one.
                handle.close()
                handle = lock.open("a+")
                continue
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise BuildBusy(f"another build of env '{env.name}' is running ({holder}); {next_step}.") from None
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


@dataclass(frozen=True)
class Removed:
    """A build output `clean` removed (or, with `kept`, left and why)."""

    path: Path
    bytes: int
    kept: str | None = None


def clean(env: Environment) -> list[Removed]:
    """Remove every file builds of `env` keep beside its database (see the top of this
    module), and nothing else; a `database` that is not a DuckDB database funnel built (a
    path naming raw data or the user's own database by mistake) is kept, with its WAL.
    Raises BuildBusy while a build of `env` runs.
    """
    folder = env.database.parent
    if not folder.is_dir():
        return []
    lock = lock_path(env.database)
    had_lock = lock.is_file()
    # Taking the lock removes dead builds' temporary files: measure them first.
    temps = {path: _bytes(path) for path in _temp_glob(env.database)}
    done: list[Removed] = []
    # No --wait for clean: waiting for a build only to delete what it publishes is seldom
    # wanted; a build is let finish or stopped (its pid is in the message), then cleaned.
    with build_lock(env, 0, "let it finish, or stop it, then run funnel clean again"):
        done += [Removed(path, size) for path, size in temps.items() if not path.exists()]
        theirs = None
        if env.database.is_file() or env.database.is_symlink():
            theirs = None if env.database.is_symlink() else _not_ours(env.database)
            done.append(Removed(env.database, 0, theirs) if theirs else _remove(env.database))
        cache = manifest_cache(env)
        kept = [failures_path(env), spark_log(env), spark_settings(env)]
        kept += [] if theirs else [wal_path(env.database)]  # a kept database's WAL may hold its last writes
        kept += [*_temp_glob(env.database), cache, *_dead_temps(cache)]
        done += [_remove(path) for path in kept if path.is_file() or path.is_symlink()]
        done += _remove_scratch(folder, SCRATCH_PREFIX)
        if lock.is_file():
            removed = _remove(lock)  # while holding it: a waiting build locks a new one
            if had_lock:
                done.append(removed)
    return done


def _not_ours(database: Path) -> str | None:
    """Why clean must leave the file at an env's `database` path, or None when it is a build
    of funnel's (or a damaged DuckDB file, which the readers send to clean).

    A build refuses to replace a DuckDB database without _funnel.build_info (the user's own,
    named by mistake); clean removed it, and the WAL beside it, which may hold its last writes.
    """
    if not is_duckdb(database):
        return "not a DuckDB file; left as it is"
    import duckdb

    try:
        with duckdb.connect(str(database), read_only=True) as con:
            found = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = 'build_info'",
                [INFO_SCHEMA],
            ).fetchone()
    except duckdb.ConnectionException:  # open in this process with other settings
        return "a program has it open; close it, then run funnel clean again"
    except duckdb.Error as e:
        if "lock" in str(e).lower():  # held by another process: never a build of funnel's, which write copies
            return "a program has it open; close it, then run funnel clean again"
        return None  # damaged
    return None if found and found[0] else f"a DuckDB database funnel did not build (no {INFO_SCHEMA}.build_info); left as it is"


def clean_project(config: Config) -> list[Removed]:
    """Remove the page `funnel docs` writes by default, the temporary files of one killed
    while writing it, and their folder when that is then empty."""
    page = config.root / DOCS_FOLDER / DOCS_PAGE
    if not page.parent.is_dir():
        return []
    done = [_remove(temp) for temp in _dead_temps(page)]
    if page.is_file() and not page.is_symlink():
        try:
            with page.open(encoding="utf-8", errors="replace") as f:
                head = f.read(64 << 10)
        except OSError:
            return done
        if DOCS_MARK not in head:
            return [*done, Removed(page, 0, "not a page of funnel docs; left as it is")]
        done.append(_remove(page))
    with contextlib.suppress(OSError):
        page.parent.rmdir()  # only when empty
    return done


def _dead_temps(path: Path) -> list[Path]:
    """The temporary files (atomic.temp_beside) of writers of `path` that died before their
    rename: `.<name>.<pid>.tmp` with no process `pid` (a live one's is still being written)."""
    found = []
    for temp in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")):
        pid = temp.name.removeprefix(f".{path.name}.").removesuffix(".tmp")
        if pid.isdigit() and not atomic.alive(int(pid)):
            found.append(temp)
    return found


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
    sizes = {path: _bytes(path) for path in sorted(folder.glob(f"{prefix}*"))}
    if sizes:
        remove_abandoned_scratch(folder)
    return [(Removed(path, 0, _why_kept(path, prefix)) if path.exists() else Removed(path, size)) for path, size in sizes.items()]


def _why_kept(path: Path, prefix: str) -> str:
    owner = path.name.removeprefix(prefix).split("-")[0]
    if path.is_dir() and not path.is_symlink() and owner.isdigit():
        return "an export or parity is using it"
    return "not an export's scratch folder; left as it is"  # a user's file that merely starts so


def _bytes(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


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
    atomic.write_text(path, json.dumps(data, indent=1))


def load_failures(env: Environment) -> dict[str, Any] | None:
    """What save_failures kept, or None."""
    try:
        data = json.loads(failures_path(env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
        atomic.replace(folder / "lock.new", folder / "lock", durable=False)
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
            if owner.isdigit() and not atomic.alive(int(owner)):
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
